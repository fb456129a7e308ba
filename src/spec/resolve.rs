//! Raw pipeline -> concrete stages: variants and `foreach` expanded, params
//! merged and checked against their kind, names and paths validated.

use super::grid;
use super::load::{RawPipeline, RawSlurm, RawStage};
use super::locate::locate;
use super::protect::Protected;
use super::resources::Resources;
use super::subst::{substitute, Vars};
use crate::error::{Diagnostic, Result};
use serde_json::{Map, Value};
use stages::contract::{check_name, replicate_of, stage_name};
use stages::Kind;
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Settings {
    /// The pipeline file, as given.
    pub file: PathBuf,
    /// The directory holding the pipeline file; every relative path in it
    /// is relative to this directory.
    pub project_dir: PathBuf,
    /// The cache directory, relative to the project directory or absolute.
    pub cache: String,
    /// Where built-in kinds put their outputs, relative to the project.
    pub outputs: String,
    pub jobs: usize,
    pub device: String,
    pub executor: ExecutorKind,
    pub slurm: RawSlurm,
    /// `settings.resources`: default resources per kind.
    pub resources: BTreeMap<Kind, super::resources::RawResources>,
    /// `settings.remotes`, in declaration order.
    pub remotes: Vec<(String, RemoteSpec)>,
}

/// Where results are pushed to and pulled from.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteSpec {
    /// A directory (a shared file system); relative to the project.
    Dir(PathBuf),
    /// An S3 bucket (or an S3-compatible server at `endpoint`).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
    },
}

/// Where stages run: child processes here, or Slurm jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

impl ExecutorKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(Self::Local),
            "slurm" => Some(Self::Slurm),
            _ => None,
        }
    }
}

impl Settings {
    pub fn cache_dir(&self) -> PathBuf {
        self.project_dir.join(&self.cache)
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    /// Concrete name: `train@fast` for a variant, `prep` otherwise.
    pub name: String,
    /// The name declared in the YAML (`train`).
    pub base: String,
    pub variant: Option<String>,
    /// For a seed replicate, the name of its group (`train@main` for
    /// `train@main~seed1`): naming the group names every seed.
    pub group: Option<String>,
    pub kind: Kind,
    pub desc: Option<String>,
    /// Canonical parameters (defaults filled in, variant merged).
    pub params: Value,
    /// The substituted shell command (`cmd` stages only).
    pub cmd: Option<String>,
    /// Input files or directories, relative to the project directory
    /// (or absolute, for data outside it).
    pub deps: Vec<String>,
    /// Outputs, relative to the project directory.
    pub outs: Vec<String>,
    /// A `cmd` stage's predictions of the test set: one of its outputs
    /// or a file inside one, relative to the project directory.
    pub predictions: Option<String>,
    /// Stages this one needs: explicit `needs`, `foreach`, and any stage
    /// whose output is one of this stage's deps. Indices into
    /// [`Pipeline::stages`], sorted and unique.
    pub needs: Vec<usize>,
    pub resources: Resources,
    /// The compute device, for kinds that use one.
    pub device: Option<String>,
    /// Its sbatch settings: settings.slurm with the stage's own `slurm`.
    pub slurm: RawSlurm,
}

/// A search as the scheduler runs it: its trial stages (in order), the
/// stage that reports it, and asynchronous successive halving's rungs.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    pub report: usize,
    pub trials: Vec<usize>,
    /// Epochs at which trials are compared, increasing, below `epochs`.
    pub rungs: Vec<usize>,
    pub epochs: usize,
    pub keep: f64,
}

#[derive(Debug)]
pub struct Pipeline {
    pub settings: Settings,
    pub stages: Vec<Stage>,
    /// Each `search:`: its trials and early stopping, for the scheduler.
    pub searches: Vec<SearchPlan>,
    pub text: String,
    /// `-S` overrides applied to the file's parameters, as given.
    pub overrides: Vec<String>,
}

impl Pipeline {
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Resolves user-given stage names (a concrete name, or a base name
    /// meaning all its variants) to indices.
    pub fn select(&self, names: &[String]) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for name in names {
            let found: Vec<usize> = self
                .stages
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.name == *name || s.base == *name || s.group.as_ref() == Some(name)
                })
                .map(|(i, _)| i)
                .collect();
            if found.is_empty() {
                let mut d =
                    Diagnostic::new(&self.settings.file, format!("no stage named `{name}`"));
                let candidates: Vec<&str> = self
                    .stages
                    .iter()
                    .flat_map(|s| [s.name.as_str(), s.base.as_str()])
                    .collect();
                if let Some(s) = suggest(name, candidates) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.into());
            }
            out.extend(found);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

pub(super) struct Base<'a> {
    pub(super) name: &'a str,
    pub(super) raw: &'a RawStage,
    pub(super) params: Value,
    variants: Option<Vec<(String, Value)>>,
    /// `search:`: the checked search and each trial's values as shown.
    search: Option<(super::search::Search, Vec<Map<String, Value>>)>,
}

/// Points a message at a key of the pipeline file.
pub(super) struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    pub(super) fn at(&self, path: &[&str], message: String) -> Diagnostic {
        let d = Diagnostic::new(self.file, message);
        match locate(self.text, path) {
            Some((line, col)) => d.at(self.text, line, col),
            None => d,
        }
    }
}

/// A device this build can train and evaluate on; else what is wrong
/// and how to fix it. Checked when the pipeline loads, so nothing runs
/// first (whether a GPU is there is checked when a run starts).
fn check_device(device: &str) -> std::result::Result<(), (String, String)> {
    let cuda = device == "cuda"
        || device
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<u32>().is_ok());
    match device {
        "cpu" | "cpu-reference" => Ok(()),
        _ if cuda && !cfg!(feature = "cuda") => Err((
            format!("device `{device}`: this build has no CUDA support"),
            "rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit and the NVIDIA driver), or use `cpu`".into(),
        )),
        _ if cuda => Ok(()),
        _ => Err((
            format!("unknown device `{device}`"),
            "use `cpu`, `cpu-reference` (the GPU path on the CPU, for verification) or `cuda`".into(),
        )),
    }
}

/// Raw pipeline -> concrete stages, in three passes: each declared stage's
/// parameters and variants ([`declare`]), the concrete stages ([`expand`]),
/// and their dependencies ([`link`]).
pub fn resolve(raw: RawPipeline, text: String, file: &Path) -> Result<Pipeline> {
    let loc = Locator { file, text: &text };
    let (settings, protected) = resolve_settings(&raw, file, &loc)?;
    if raw.stages.0.is_empty() {
        return Err(loc
            .at(&["stages"], "the pipeline declares no stages".into())
            .help("add at least one stage under `stages:`")
            .into());
    }

    let bases = declare(&raw, &settings, &loc)?;
    let (mut stages, foreach_needs) = expand(&bases, &settings, &protected, &loc)?;
    link(&mut stages, &foreach_needs, &raw, &loc)?;
    select_references(&mut stages, &bases, &loc)?;
    let searches = super::confirm::link_searches(&mut stages);
    super::confirm::expand(&mut stages, &searches, &bases, &settings, &loc)?;
    // What a kind can check of the stages it reads, before anything runs.
    for s in &stages {
        let inputs: Vec<stages::Upstream<'_>> = s
            .needs
            .iter()
            .map(|&j| stages::Upstream {
                name: &stages[j].name,
                kind: stages[j].kind,
                predicts: stages[j].predictions.is_some(),
            })
            .collect();
        if let Err(m) = s.kind.check_inputs(&s.params, &inputs) {
            let field = if m.contains("reference variant") {
                "params"
            } else {
                "needs"
            };
            return Err(loc
                .at(
                    &["stages", &s.base, field],
                    format!("stage `{}`: {m}", s.name),
                )
                .into());
        }
    }
    Ok(Pipeline {
        settings,
        stages,
        searches,
        text,
        overrides: Vec::new(),
    })
}

/// The settings, checked; and the places no stage may own.
fn resolve_settings(
    raw: &RawPipeline,
    file: &Path,
    loc: &Locator<'_>,
) -> Result<(Settings, Protected)> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let project_dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let s = &raw.settings;
    let cache = s.cache.as_deref().unwrap_or("cache");
    // An absolute cache may sit on another disk, or be shared; so may a
    // relative one that leads out of the project (`../shared-cache`),
    // which is taken as the absolute path it names.
    let outside = normalize(cache) == Err(NotInside::ClimbsOut);
    let cache = if Path::new(cache).is_absolute() || outside {
        super::protect::physical(&project_dir.join(cache))
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| err(&["settings", "cache"], "settings.cache is not UTF-8".into()))?
    } else {
        normalize(cache).map_err(|m| err(&["settings", "cache"], format!("settings.cache: {m}")))?
    };
    let outputs = normalize(s.outputs.as_deref().unwrap_or("outputs"))
        .map_err(|m| err(&["settings", "outputs"], format!("settings.outputs: {m}")))?;
    let protected = Protected::new(&project_dir, file, &cache, &outputs);
    // When the two collide, blame the one the file sets (outputs if both).
    let check = |key: &str, value: &str, why: Option<String>| -> Result<()> {
        match why {
            Some(why) => Err(err(
                &["settings", key],
                format!("settings.{key} `{value}` {why}"),
            )
            .help(format!(
                "give the {key} a directory of its own (the default is `{key}`)"
            ))
            .into()),
            None => Ok(()),
        }
    };
    let cache_check = || check("cache", &cache, protected.refuse_cache());
    let outputs_check = || check("outputs", &outputs, protected.refuse_outputs());
    if s.outputs.is_some() {
        outputs_check()?;
        cache_check()?;
    } else {
        cache_check()?;
        outputs_check()?;
    }
    let jobs = match s.jobs {
        Some(0) => {
            return Err(err(
                &["settings", "jobs"],
                "settings.jobs must be at least 1".into(),
            )
            .into())
        }
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let device = s.device.clone().unwrap_or_else(|| "cpu".into());
    if let Err((message, help)) = check_device(&device) {
        return Err(err(
            &["settings", "device"],
            format!("settings.device: {message}"),
        )
        .help(help)
        .into());
    }
    let executor = match s.executor.as_deref() {
        None => ExecutorKind::Local,
        Some(e) => ExecutorKind::parse(e).ok_or_else(|| {
            err(
                &["settings", "executor"],
                format!("settings.executor: unknown executor `{e}`"),
            )
            .help("use `local` or `slurm`")
        })?,
    };
    let slurm = s.slurm.clone().unwrap_or_default();
    check_slurm(&slurm, &["settings"], loc)?;
    let resources = s.resources.clone().unwrap_or_default();
    for (kind, r) in &resources {
        for (key, zero) in [("cpus", r.cpus == Some(0)), ("mem_mb", r.mem_mb == Some(0))] {
            if zero {
                return Err(err(
                    &["settings", "resources", kind.name(), key],
                    format!(
                        "settings.resources.{}.{key} must be at least 1",
                        kind.name()
                    ),
                )
                .into());
            }
        }
    }
    let mut remotes = Vec::new();
    for (name, v) in s.remotes.as_ref().map_or(&[][..], |r| &r.0[..]) {
        let at = |m: String| {
            err(
                &["settings", "remotes", name],
                format!("settings.remotes.{name}: {m}"),
            )
        };
        check_name(name).map_err(|m| at(format!("the name `{name}` {m}")))?;
        let spec = remote_spec(v, &project_dir).map_err(|(m, help)| at(m).help(help))?;
        remotes.push((name.clone(), spec));
    }
    let settings = Settings {
        file: file.to_path_buf(),
        project_dir,
        cache,
        outputs,
        jobs,
        device,
        executor,
        slurm,
        resources,
        remotes,
    };

    Ok((settings, protected))
}

/// sbatch settings (`settings.slurm`, or a stage's `slurm`) that sbatch
/// would refuse, refused at load with file:line; `at` is where they sit.
fn check_slurm(slurm: &RawSlurm, at: &[&str], loc: &Locator<'_>) -> Result<()> {
    let path = |key: &'static str| {
        let mut p: Vec<&str> = at.to_vec();
        p.push("slurm");
        p.push(key);
        p
    };
    let shown = at.join(".");
    for (key, value) in [("partition", &slurm.partition), ("account", &slurm.account)] {
        if value
            .as_deref()
            .is_some_and(|v| v.trim().is_empty() || v.contains(char::is_whitespace))
        {
            return Err(loc
                .at(&path(key), format!("{shown}.slurm.{key} must be one word"))
                .into());
        }
    }
    if let Some(x) = slurm.extra.iter().find(|x| !x.starts_with('-')) {
        return Err(loc
            .at(
                &path("extra"),
                format!("{shown}.slurm.extra: `{x}` is not an sbatch flag"),
            )
            .help("write each flag whole, with its value: `--qos=normal`")
            .into());
    }
    Ok(())
}

/// One `settings.remotes` entry: a directory, or an S3 mapping. Errors
/// come with their help.
fn remote_spec(
    v: &serde_yaml::Value,
    project: &Path,
) -> std::result::Result<RemoteSpec, (String, String)> {
    use serde_yaml::Value as Y;
    let form = "write a directory (`origin: /shared/fmnist-cache`) or `{url: s3://bucket/prefix, endpoint: http://host:9000, region: us-east-1}`".to_string();
    match v {
        Y::String(dir) if dir.trim().is_empty() => Err(("the directory is empty".into(), form)),
        Y::String(dir) if dir.starts_with("s3://") => Err((
            format!("`{dir}` is an S3 URL"),
            format!("write it as `{{url: {dir}}}` (with `endpoint` and `region` where needed)"),
        )),
        Y::String(dir) => Ok(RemoteSpec::Dir(project.join(dir))),
        Y::Mapping(m) => {
            let mut url = None;
            let (mut endpoint, mut region) = (None, None);
            for (k, val) in m {
                let key = k.as_str().unwrap_or_default();
                let text = val
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| (format!("`{key}` must be text"), form.clone()))?;
                match key {
                    "url" => url = Some(text),
                    "endpoint" => endpoint = Some(text),
                    "region" => region = Some(text),
                    other => {
                        return Err((
                            format!("unknown key `{other}`"),
                            "an S3 remote takes `url`, `endpoint` and `region`".into(),
                        ))
                    }
                }
            }
            let url = url.ok_or_else(|| ("an S3 remote needs `url`".to_string(), form.clone()))?;
            let rest = url
                .strip_prefix("s3://")
                .ok_or_else(|| (format!("`{url}` is not an s3:// URL"), form.clone()))?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err((format!("`{url}` names no bucket"), form));
            }
            if let Some(e) = &endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err((
                        format!("endpoint `{e}` is not an http:// or https:// URL"),
                        "write the server's address, e.g. `http://127.0.0.1:9000`".into(),
                    ));
                }
            }
            Ok(RemoteSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                endpoint,
                region,
            })
        }
        _ => Err(("must be a directory or a mapping".into(), form)),
    }
}

/// Pass 1: each declared stage's canonical parameters and variants.
fn declare<'a>(
    raw: &'a RawPipeline,
    settings: &Settings,
    loc: &Locator<'_>,
) -> Result<Vec<Base<'a>>> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let mut bases = Vec::with_capacity(raw.stages.0.len());
    for (name, rs) in &raw.stages.0 {
        check_name(name).map_err(|m| err(&["stages", name], format!("stage name `{name}` {m}")))?;
        let at = |field: &'static str| vec!["stages", name.as_str(), field];
        match (rs.kind, &rs.cmd) {
            (Kind::Cmd, None) => {
                return Err(err(
                    &["stages", name],
                    format!("stage `{name}` is of kind cmd but has no `cmd`"),
                )
                .help("add `cmd: \"<shell command>\"` to the stage")
                .into())
            }
            (k, Some(_)) if k.is_builtin() => {
                return Err(err(
                    &at("cmd"),
                    format!(
                        "stage `{name}` is of kind {}, which takes no `cmd`",
                        k.name()
                    ),
                )
                .into())
            }
            _ => {}
        }
        if rs.kind.is_builtin() && !rs.outs.is_empty() {
            return Err(err(
                &at("outs"),
                format!(
                    "stage `{name}` is of kind {}, whose outputs go to `{}/{name}`: remove `outs`",
                    rs.kind.name(),
                    settings.outputs
                ),
            )
            .into());
        }
        if rs.kind == Kind::Search {
            return Err(err(
                &at("kind"),
                format!("stage `{name}`: kind search is made by `search:` on a train stage, not declared"),
            )
            .help("put `search: {space: ..., trials: N}` on the train stage to search")
            .into());
        }
        if rs.device.is_some() && !rs.kind.uses_device() {
            return Err(err(
                &at("device"),
                format!(
                    "stage `{name}` is of kind {}, which runs on no device",
                    rs.kind.name()
                ),
            )
            .help("`device` is for train and evaluate stages; remove it here")
            .into());
        }
        if let Some(Err((message, help))) = rs.device.as_deref().map(check_device) {
            return Err(err(&at("device"), format!("stage `{name}`: {message}"))
                .help(help)
                .into());
        }
        if rs.threads == Some(0) {
            return Err(err(
                &at("threads"),
                format!("stage `{name}`: threads must be at least 1"),
            )
            .into());
        }
        let given = rs.resources.clone().unwrap_or_default();
        if rs.threads.is_some() && given.cpus.is_some() {
            return Err(err(
                &at("threads"),
                format!("stage `{name}` gives both `threads` and `resources.cpus`"),
            )
            .help("keep `resources: {cpus: N}` (`threads: N` is its older spelling)")
            .into());
        }
        for (key, zero) in [
            ("cpus", given.cpus == Some(0)),
            ("mem_mb", given.mem_mb == Some(0)),
        ] {
            if zero {
                let mut path = at("resources");
                path.push(key);
                return Err(err(
                    &path,
                    format!("stage `{name}`: resources.{key} must be at least 1"),
                )
                .into());
            }
        }
        let given = Value::Object(rs.params.clone().map(|p| p.0).unwrap_or_default());
        let params = rs.kind.normalize_params(given).map_err(|m| {
            // Point at the offending key when the message names one.
            let mut path = at("params");
            if let Some(f) = m
                .split('`')
                .nth(1)
                .filter(|_| m.starts_with("unknown field"))
            {
                path.push(f);
            }
            err(&path, format!("stage `{name}`: invalid params: {m}"))
        })?;
        let (variants, search) = match searched_variants(name, rs, &params, loc)? {
            Some((v, s)) => (Some(v), Some(s)),
            None => (declared_variants(name, rs, &params, loc)?, None),
        };
        bases.push(Base {
            name,
            raw: rs,
            params,
            variants,
            search,
        });
    }

    Ok(bases)
}

/// A train stage's `search:`: its trials as variants (`trial-07`), each
/// with its parameters merged and checked; the search and the values as
/// a report shows them.
#[allow(clippy::type_complexity)]
fn searched_variants(
    name: &str,
    rs: &RawStage,
    params: &Value,
    loc: &Locator<'_>,
) -> Result<
    Option<(
        Vec<(String, Value)>,
        (super::search::Search, Vec<Map<String, Value>>),
    )>,
> {
    let Some(raw) = &rs.search else {
        return Ok(None);
    };
    let at = under_stage(loc, name);
    if rs.kind != Kind::Train {
        return Err(at(
            &["search".into()],
            format!(
                "stage `{name}` is of kind {}; only a train stage takes `search:`",
                rs.kind.name()
            ),
            None,
        )
        .into());
    }
    for (field, given) in [
        ("variants", rs.variants.is_some()),
        ("matrix", rs.matrix.is_some()),
        ("seeds", rs.seeds.is_some()),
        ("foreach", rs.foreach.is_some()),
    ] {
        if given {
            return Err(at(
                &[field.into()],
                format!("stage `{name}` has both `search` and `{field}`: a search's trials are its variants"),
                Some("search in a stage of its own; confirm the winner on several seeds with a `confirm` stage".into()),
            )
            .into());
        }
    }
    let epochs = params.get("epochs").and_then(Value::as_u64).unwrap_or(0) as usize;
    let search = super::search::parse(raw, epochs)
        .map_err(|e| at(&e.path, format!("stage `{name}`: {}", e.message), e.help))?;
    // Each searched key must be a parameter of the stage.
    for (key, d) in &search.space {
        let mut over = Map::new();
        grid::insert_dotted(&mut over, key, super::search::probe(d));
        let mut probe = params.clone();
        if let Err((bad, known)) = merge_override(&mut probe, &over, "", rs.kind.optional_params())
        {
            return Err(at(
                &["search".into(), "space".into(), key.clone()],
                format!("the search space of stage `{name}` varies `{bad}`, which is not a parameter of the stage"),
                Some(match suggest(&bad, known.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known parameters here: {}", known.join(", ")),
                }),
            )
            .into());
        }
        if let Err(m) = rs.kind.normalize_params(probe) {
            return Err(at(
                &["search".into(), "space".into(), key.clone()],
                format!("the search space of stage `{name}`: `{key}`: {m}"),
                None,
            )
            .into());
        }
    }
    let trials = super::search::trials(&search);
    let mut variants = Vec::with_capacity(trials.len());
    let mut shown = Vec::with_capacity(trials.len());
    for t in trials {
        let merged = merge_variant(name, rs, params, &t.pending, &at)?;
        variants.push((t.pending.name, merged));
        shown.push(t.shown);
    }
    Ok(Some((variants, (search, shown))))
}

/// A stage's variants, named, declared and by rule (`matrix`, `seeds`),
/// each with its parameters merged and checked.
fn declared_variants(
    name: &str,
    rs: &RawStage,
    params: &Value,
    loc: &Locator<'_>,
) -> Result<Option<Vec<(String, Value)>>> {
    let at = under_stage(loc, name);
    let grid_err =
        |e: grid::GridError| at(&e.path, format!("stage `{name}`: {}", e.message), e.help);
    let named = named_variants(name, rs, &at)?;
    let grid = match &rs.matrix {
        None => None,
        Some(m) => Some(grid::points(&m.0).map_err(grid_err)?),
    };
    let mut variants = grid::combine(named, grid).map_err(grid_err)?;
    if variants.is_some() && rs.foreach.is_some() {
        let what = if rs.variants.is_some() {
            "variants"
        } else {
            "matrix"
        };
        return Err(at(
            &["foreach".into()],
            format!("stage `{name}` has both `{what}` and `foreach`; use one"),
            None,
        )
        .into());
    }
    if let (Some(_), Some(target)) = (&rs.seeds, &rs.foreach) {
        // Replicating a `foreach` stage would name replicates of
        // replicates (`main~seed1~seed2`) and train nothing new.
        return Err(at(
            &["seeds".into()],
            format!("stage `{name}` has `seeds` and `foreach: {target}`: its variants are {target}'s, one per variant of {target}, so there is nothing of its own to replicate"),
            Some(format!("put `seeds` on `{target}`: each of its replicates then gets its own `{name}` stage")),
        )
        .into());
    }
    if let Some(seeds) = &rs.seeds {
        let Some(vs) = &variants else {
            return Err(at(
                &["seeds".into()],
                format!("stage `{name}` has `seeds` but no variants to replicate"),
                Some("declare the variants, even a single one: `variants: {main: {}}`".into()),
            )
            .into());
        };
        if rs.params.as_ref().is_some_and(|p| p.0.contains_key("seed")) {
            return Err(at(
                &["params".into(), "seed".into()],
                format!("stage `{name}` sets `seed` in params and `seeds` too"),
                Some("remove `seed` from params: `seeds` sets each replicate's seed".into()),
            )
            .into());
        }
        variants = Some(grid::replicate(vs, seeds).map_err(grid_err)?);
    }
    let Some(variants) = variants else {
        return Ok(None);
    };
    if rs.kind != Kind::Cmd {
        if let Some(named) = named_variants(name, rs, &at)? {
            check_changes(name, rs, params, &named, &at)?;
        }
    }
    let mut out = Vec::with_capacity(variants.len());
    for mut v in variants {
        grid::check_length(&v).map_err(grid_err)?;
        // `-S STAGE@POINT.KEY=VALUE` on a variant made by rule.
        for (_, key, value) in rs.point_overrides.iter().filter(|(n, _, _)| *n == v.name) {
            grid::insert_dotted(&mut v.over, key, value.clone());
        }
        let merged = merge_variant(name, rs, params, &v, &at)?;
        out.push((v.name, merged));
    }
    let axes = rs.matrix.iter().flat_map(|m| &m.0).map(|(k, _)| k.as_str());
    check_distinct(name, rs, &out, axes, loc)?;
    Ok(Some(out))
}

/// Refuses a declared variant of a built-in kind whose overrides leave
/// the stage's params as they are (`no-aug: {augment: []}` where `augment`
/// is already `[]`): its name would claim a change the training never
/// made. A command may read its variant's name, so its variants are its own.
fn check_changes(
    name: &str,
    rs: &RawStage,
    params: &Value,
    named: &[grid::Pending],
    at: &At<'_>,
) -> Result<()> {
    let plain = |v: &grid::Pending| grid::Pending {
        name: v.name.clone(),
        path: v.path.clone(),
        over: Map::new(),
    };
    for v in named.iter().filter(|v| !v.over.is_empty()) {
        let base = merge_variant(name, rs, params, &plain(v), at)?;
        let changed = merge_variant(name, rs, params, v, at)?;
        let (mut a, mut b) = (String::new(), String::new());
        canonical_text(&base, &mut a);
        canonical_text(&changed, &mut b);
        if a == b {
            return Err(at(
                &v.path,
                format!(
                    "variant `{}` of stage `{name}` changes nothing: the stage's params already give {}",
                    v.name,
                    shown_overrides(&v.over, rs)
                ),
                Some(
                    "give it a value the stage does not have, or remove it (docs/pipeline.md lists each kind's defaults)"
                        .into(),
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// A variant's overrides as a reader wrote them, each one the stage's
/// params leave out marked as the default: `augment: [] (the default)`.
fn shown_overrides(over: &Map<String, Value>, rs: &RawStage) -> String {
    let stated = |k: &str| rs.params.as_ref().is_some_and(|p| p.0.contains_key(k));
    over.iter()
        .map(|(k, v)| {
            let default = if stated(k) { "" } else { " (the default)" };
            format!("{k}: {v}{default}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Points a message, with its help if any, at a path under the stage.
pub(super) type At<'a> = dyn Fn(&[String], String, Option<String>) -> Diagnostic + 'a;

/// [`At`] for stage `name`.
fn under_stage<'a>(
    loc: &'a Locator<'_>,
    name: &'a str,
) -> impl Fn(&[String], String, Option<String>) -> Diagnostic + 'a {
    move |path, message, help| {
        let mut p = vec!["stages", name];
        p.extend(path.iter().map(String::as_str));
        let d = loc.at(&p, message);
        match help {
            Some(h) => d.help(h),
            None => d,
        }
    }
}

/// One concrete stage of a declared one: its variant, its params, and the
/// stage it needs through `foreach`.
type Instance = (Option<String>, Value, Option<String>);

/// The variants a stage names under `variants`, checked.
pub(super) fn named_variants(
    name: &str,
    rs: &RawStage,
    at: &At,
) -> Result<Option<Vec<grid::Pending>>> {
    Ok(match &rs.variants {
        None => None,
        Some(vs) if vs.0.is_empty() => {
            return Err(at(
                &["variants".into()],
                format!("stage `{name}` declares an empty `variants`"),
                None,
            )
            .into())
        }
        Some(vs) => {
            let mut out = Vec::new();
            for (vname, over) in &vs.0 {
                let path = vec!["variants".to_string(), vname.clone()];
                check_name(vname)
                    .map_err(|m| at(&path, format!("variant name `{vname}` {m}"), None))?;
                out.push(grid::Pending {
                    name: vname.clone(),
                    path,
                    over: over.clone().map(|p| p.0).unwrap_or_default(),
                });
            }
            Some(out)
        }
    })
}

/// One variant's overrides merged into the stage's params and checked
/// against its kind.
fn merge_variant(
    name: &str,
    rs: &RawStage,
    params: &Value,
    v: &grid::Pending,
    at: &At<'_>,
) -> Result<Value> {
    let vname = &v.name;
    let mut merged = params.clone();
    // A command's params are its own: `seeds` gives it `${params.seed}`.
    if let (Kind::Cmd, Some(_), Value::Object(m)) = (rs.kind, &rs.seeds, &mut merged) {
        m.entry("seed").or_insert(Value::Null);
    }
    merge_override(&mut merged, &v.over, "", rs.kind.optional_params()).map_err(|(key, known)| {
        let mut p = v.path.clone();
        let in_matrix = p.first().is_some_and(|f| f == "matrix");
        if in_matrix {
            // The matrix key as written, dotted or not.
            if let Some(k) = rs.matrix.iter().flat_map(|m| &m.0).map(|(k, _)| k).find(|k| key == **k || key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}."))) {
                p.push(k.clone());
            }
        } else {
            p.extend(key.split('.').map(str::to_string));
        }
        if key == "seed" && rs.seeds.is_some() {
            return at(
                &["seeds".into()],
                format!("stage `{name}` has `seeds`, but kind {} has no `seed` parameter", rs.kind.name()),
                Some("`seeds` replicates kinds that take a seed: train, preprocess and cmd".into()),
            );
        }
        let message = if in_matrix {
            format!("the matrix of stage `{name}` varies `{key}`, which is not a parameter of the stage")
        } else {
            format!("variant `{vname}` of stage `{name}` overrides `{key}`, which is not a parameter of the stage")
        };
        at(
            &p,
            message,
            Some(match suggest(&key, known.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => {
                    format!("declare `{key}` under the stage's params to give it a default")
                }
                None => format!("known parameters here: {}", known.join(", ")),
            }),
        )
    })?;
    let merged = rs.kind.normalize_params(merged).map_err(|m| {
        at(
            &v.path,
            format!("variant `{vname}` of stage `{name}`: invalid params: {m}"),
            None,
        )
    })?;
    Ok(merged)
}

/// Refuses two variants whose parameters are equal as the stage's kind
/// reads them: grid points (`[-0.0, 0.0, 0]`, `[1, 1.0]`), or declared
/// variants of a built-in kind (after `-S`, or with a parameter at its
/// default): one configuration would be trained, and compared with
/// itself, under several names.
fn check_distinct<'k>(
    name: &str,
    rs: &RawStage,
    variants: &'k [(String, Value)],
    axes: impl Iterator<Item = &'k str>,
    loc: &Locator<'_>,
) -> Result<()> {
    let axes: Vec<&str> = axes.collect();
    // The declared variant a generated name starts with (`no-aug` of
    // `no-aug+lr=0.01~seed1`).
    let declared = |n: &'k str| -> Option<&'k str> {
        rs.variants.as_ref()?;
        replicate_of(n).0.split('+').next()
    };
    let mut seen: HashMap<String, &'k str> = HashMap::with_capacity(variants.len());
    for (vname, params) in variants {
        let mut key = String::new();
        canonical_text(params, &mut key);
        let Some(first) = seen.insert(key, vname) else {
            continue;
        };
        if let (Some(a), Some(b)) = (declared(first), declared(vname)) {
            if a != b {
                if rs.kind == Kind::Cmd {
                    // A command may read its variant's name.
                    continue;
                }
                return Err(loc
                    .at(
                        &["stages", name, "variants", b],
                        format!("stage `{name}`: variants `{a}` and `{b}` have the same parameters"),
                    )
                    .help(format!(
                        "make `{b}` differ from `{a}` or remove one; a `-S` override of the stage's params can make them equal too"
                    ))
                    .into());
            }
        }
        // The axes whose value names differ between the two points.
        let parts = |n: &'k str| -> Vec<(&'k str, &'k str)> {
            replicate_of(n)
                .0
                .split('+')
                .filter_map(|p| p.split_once('='))
                .collect()
        };
        let (a, b) = (parts(first), parts(vname));
        let differ: Vec<(&str, &str, &str)> = a
            .iter()
            .filter_map(|(k, x)| {
                b.iter()
                    .find(|(kb, y)| kb == k && y != x)
                    .map(|(_, y)| (*k, *x, *y))
            })
            .collect();
        let (path, message) = match differ[..] {
            [(axis, x, y)] if axes.contains(&axis) => (
                vec!["stages", name, "matrix", axis],
                format!(
                    "stage `{name}`: matrix `{axis}` lists `{x}` and `{y}`, which are the same value for the stage"
                ),
            ),
            _ => (
                vec!["stages", name, "matrix"],
                format!(
                    "stage `{name}`: variants `{first}` and `{vname}` have the same parameters"
                ),
            ),
        };
        return Err(loc.at(&path, message).help("list each value once").into());
    }
    Ok(())
}

/// A value's text with numbers compared by value: `0`, `0.0` and `-0.0`
/// are one number, and so are `1` and `1.0`.
fn canonical_text(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if x.fract() == 0.0 && x.abs() < 9.2e18 {
                    let _ = write!(out, "{}", x as i64);
                } else {
                    let _ = write!(out, "{x:?}");
                }
            }
        }
        Value::Array(a) => {
            out.push('[');
            for x in a {
                canonical_text(x, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (k, x) in m {
                let _ = write!(out, "{k:?}:");
                canonical_text(x, out);
                out.push(',');
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Pass 2: the concrete stages (variants and `foreach` expanded, names,
/// commands and paths substituted and checked); with each stage's
/// `foreach` partner, linked in [`link`].
fn expand(
    bases: &[Base<'_>],
    settings: &Settings,
    protected: &Protected,
    loc: &Locator<'_>,
) -> Result<(Vec<Stage>, Vec<Option<String>>)> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let base_names: Vec<&str> = bases.iter().map(|b| b.name).collect();
    let mut stages: Vec<Stage> = Vec::new();
    let mut foreach_needs: Vec<Option<String>> = Vec::new();
    for b in bases {
        let instances = instances(b, bases, &base_names, loc)?;
        for (k, (variant, params, need)) in instances.into_iter().enumerate() {
            // A trial says what the sampler drew (`dag`, `status`).
            let desc = match &b.search {
                Some((_, shown)) => shown.get(k).map(stages::confirm::values_text),
                None => b.raw.desc.clone(),
            };
            let name = stage_name(b.name, variant.as_deref());
            let vars = Vars {
                stage: &name,
                variant: variant.as_deref(),
                params: &params,
            };
            let sub = |field: &str, s: &str| {
                substitute(s, &vars).map_err(|m| {
                    err(
                        &["stages", b.name, field],
                        format!("stage `{}`: {m}", b.name),
                    )
                })
            };
            let cmd = b.raw.cmd.as_deref().map(|c| sub("cmd", c)).transpose()?;
            let mut deps = Vec::new();
            for d in &b.raw.deps {
                let d = sub("deps", d)?;
                let d = if Path::new(&d).is_absolute() {
                    d
                } else {
                    normalize(&d).map_err(|m| {
                        err(
                            &["stages", b.name, "deps"],
                            format!("stage `{}`: dep `{d}` {m}", b.name),
                        )
                    })?
                };
                deps.push(d);
            }
            let mut outs = Vec::new();
            if b.raw.kind.is_builtin() {
                outs.push(format!("{}/{name}", settings.outputs));
            }
            for o in &b.raw.outs {
                let o = sub("outs", o)?;
                let o = normalize(&o).map_err(|m| {
                    err(
                        &["stages", b.name, "outs"],
                        format!("stage `{}`: output `{o}` {m}", b.name),
                    )
                    .help("outputs must be inside the project directory")
                })?;
                outs.push(o);
            }
            check_outs(b, &name, &outs, &deps, settings, protected, loc)?;
            let predictions = match &b.raw.predictions {
                None => None,
                Some(p) => Some(predictions_path(b, &sub("predictions", p)?, &outs, loc)?),
            };
            let group = variant.as_deref().and_then(|v| match replicate_of(v) {
                (g, Some(_)) => Some(stage_name(b.name, Some(g))),
                _ => None,
            });
            let slurm = match &b.raw.slurm {
                None => settings.slurm.clone(),
                Some(own) => {
                    check_slurm(own, &["stages", b.name], loc)?;
                    RawSlurm {
                        partition: own.partition.clone().or(settings.slurm.partition.clone()),
                        account: own.account.clone().or(settings.slurm.account.clone()),
                        extra: settings
                            .slurm
                            .extra
                            .iter()
                            .chain(&own.extra)
                            .cloned()
                            .collect(),
                    }
                }
            };
            stages.push(Stage {
                name,
                slurm,
                base: b.name.to_string(),
                variant,
                group,
                kind: b.raw.kind,
                desc,
                params,
                cmd,
                deps,
                outs,
                predictions,
                needs: Vec::new(),
                resources: {
                    // The stage's own, else settings.resources of its kind.
                    let r = b.raw.resources.clone().unwrap_or_default();
                    let d = settings
                        .resources
                        .get(&b.raw.kind)
                        .cloned()
                        .unwrap_or_default();
                    Resources {
                        cpus: r.cpus.or(b.raw.threads).or(d.cpus),
                        gpus: r.gpus.or(d.gpus).unwrap_or(0),
                        mem_mb: r.mem_mb.or(d.mem_mb),
                        time: r.time.or(d.time),
                    }
                },
                device: b.raw.kind.uses_device().then(|| {
                    b.raw
                        .device
                        .clone()
                        .unwrap_or_else(|| settings.device.clone())
                }),
            });
            foreach_needs.push(need);
        }
        if let Some((search, shown)) = &b.search {
            stages.push(search_report(b, search, shown, settings, loc)?);
            foreach_needs.push(None);
        }
    }

    Ok((stages, foreach_needs))
}

/// The stage that reports a search (`train@search`): it needs every
/// trial (added once stages are linked) and writes search.json.
fn search_report(
    b: &Base<'_>,
    search: &super::search::Search,
    shown: &[Map<String, Value>],
    settings: &Settings,
    loc: &Locator<'_>,
) -> Result<Stage> {
    let name = stage_name(b.name, Some(SEARCH_VARIANT));
    let space: Map<String, Value> = b
        .raw
        .search
        .iter()
        .flat_map(|r| &r.space.0)
        .map(|(k, d)| (k.clone(), d.0.clone()))
        .collect();
    let trials: Vec<Value> = b
        .variants
        .iter()
        .flatten()
        .zip(shown)
        .map(|((trial, _), values)| serde_json::json!({"trial": trial, "values": values}))
        .collect();
    let params = serde_json::json!({
        "sampler": search.sampler.name(),
        "seed": search.seed,
        "epochs": b.params.get("epochs").cloned().unwrap_or(Value::Null),
        "rungs": search.rungs,
        "keep": search.keep,
        "space": space,
        "trials": trials,
    });
    let params = Kind::Search.normalize_params(params).map_err(|m| {
        loc.at(
            &["stages", b.name, "search"],
            format!("stage `{}`: {m}", b.name),
        )
    })?;
    Ok(Stage {
        outs: vec![format!("{}/{name}", settings.outputs)],
        name,
        base: b.name.to_string(),
        variant: Some(SEARCH_VARIANT.into()),
        group: None,
        kind: Kind::Search,
        desc: Some(format!("the report of the search of {}", b.name)),
        params,
        cmd: None,
        deps: Vec::new(),
        predictions: None,
        needs: Vec::new(),
        resources: Resources::default(),
        device: None,
        slurm: settings.slurm.clone(),
    })
}

/// The variant name of a search's report stage (`train@search`).
pub const SEARCH_VARIANT: &str = "search";

/// A compare stage's `reference` given as parameters (`{lr: 0.001}`)
/// becomes the name of the compared variant whose configuration is its
/// stage's parameters with these set (seeds aside): exactly one must be.
fn select_references(stages: &mut [Stage], bases: &[Base<'_>], loc: &Locator<'_>) -> Result<()> {
    for i in 0..stages.len() {
        if stages[i].kind != Kind::Compare {
            continue;
        }
        let Some(Value::Object(given)) = stages[i].params.get("reference").cloned() else {
            continue;
        };
        let at = |message: String| {
            loc.at(
                &["stages", &stages[i].base, "params", "reference"],
                format!("stage `{}`: {message}", stages[i].name),
            )
        };
        // Each compared variant (its first replicate): group, stage, params.
        let mut groups: Vec<(String, &str, Value)> = Vec::new();
        for &e in &stages[i].needs {
            for &t in &stages[e].needs {
                let s = &stages[t];
                let evaluable = s.kind == Kind::Train || s.predictions.is_some();
                if let (true, Some(v)) = (evaluable, &s.variant) {
                    let group = replicate_of(v).0;
                    if !groups.iter().any(|g| g.0 == group) {
                        groups.push((group.to_string(), &s.base, without_seed(&s.params)));
                    }
                }
            }
        }
        let over = nest_dotted(&given);
        let mut matches: Vec<String> = Vec::new();
        let mut bases_seen: Vec<&str> = Vec::new();
        for (_, base, _) in &groups {
            if bases_seen.contains(base) {
                continue;
            }
            bases_seen.push(base);
            let Some(b) = bases.iter().find(|b| b.name == *base) else {
                continue;
            };
            let mut target = b.params.clone();
            merge_override(&mut target, &over, "", b.raw.kind.optional_params()).map_err(
                |(key, _)| {
                    at(format!(
                        "reference sets `{key}`, which is not a parameter of stage `{base}`"
                    ))
                },
            )?;
            let target = b
                .raw
                .kind
                .normalize_params(target)
                .map_err(|m| at(format!("reference: {m}")))?;
            let target = without_seed(&target);
            matches.extend(
                groups
                    .iter()
                    .filter(|(_, gb, p)| gb == base && *p == target)
                    .map(|(g, _, _)| g.clone()),
            );
        }
        let written = format!(
            "{{{}}}",
            given
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
        match matches.as_slice() {
            [one] => {
                if let Value::Object(m) = &mut stages[i].params {
                    m.insert("reference".into(), Value::String(one.clone()));
                }
            }
            [] => {
                return Err(at(format!(
                    "no compared variant is its stage's parameters with {written} (compared: {})",
                    names.join(", ")
                ))
                .help("a variant matches when its parameters are the stage's `params` with these set (every other parameter as in `params`); name the reference instead, or set the parameters that tell it apart")
                .into())
            }
            several => {
                return Err(at(format!(
                    "{written} selects {} compared variants ({})",
                    several.len(),
                    several.join(", ")
                ))
                .help("set the parameters that tell them apart, or name the reference")
                .into())
            }
        }
    }
    Ok(())
}

/// Parameters without the seed: replicates of one variant differ by it.
fn without_seed(params: &Value) -> Value {
    let mut p = params.clone();
    if let Value::Object(m) = &mut p {
        m.remove("seed");
    }
    p
}

/// `{"plateau.factor": 0.5}` as `{"plateau": {"factor": 0.5}}`.
pub(super) fn nest_dotted(given: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in given {
        let mut parts: Vec<&str> = k.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut slot = &mut out;
        for p in parts {
            let next = slot
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            match next {
                Value::Object(m) => slot = m,
                _ => return out,
            }
        }
        let v = match v {
            Value::Object(m) => Value::Object(nest_dotted(m)),
            other => other.clone(),
        };
        slot.insert(last.to_string(), v);
    }
    out
}

/// A `cmd` stage's `predictions`, substituted: normalized, and one of the
/// stage's outputs or inside one (the command writes it; the cache keeps it).
fn predictions_path(
    b: &Base<'_>,
    path: &str,
    outs: &[String],
    loc: &Locator<'_>,
) -> Result<String> {
    let at = |message: String| loc.at(&["stages", b.name, "predictions"], message);
    if b.raw.kind != Kind::Cmd {
        return Err(at(format!(
            "stage `{}` is of kind {}, which takes no `predictions`",
            b.name,
            b.raw.kind.name()
        ))
        .help("`predictions` names the test-set predictions a cmd stage writes; evaluate reads a train stage's model itself")
        .into());
    }
    let p = normalize(path).map_err(|m| {
        at(format!("stage `{}`: predictions `{path}` {m}", b.name))
            .help("predictions must be one of the stage's outputs, inside the project directory")
    })?;
    let inside = outs.iter().any(|o| {
        p == *o
            || p.strip_prefix(o.as_str())
                .is_some_and(|r| r.starts_with('/'))
    });
    if !inside {
        return Err(at(format!(
            "stage `{}`: predictions `{p}` is not one of its outputs ({})",
            b.name,
            if outs.is_empty() {
                "it declares none".to_string()
            } else {
                outs.join(", ")
            }
        ))
        .help(format!(
            "add `{p}` (or its directory) to the stage's `outs`, so that the cache keeps it"
        ))
        .into());
    }
    Ok(p)
}

/// A stage's outputs may be deleted before it reruns: none may be a
/// protected place or hold one of the stage's own deps.
fn check_outs(
    b: &Base<'_>,
    name: &str,
    outs: &[String],
    deps: &[String],
    settings: &Settings,
    protected: &Protected,
    loc: &Locator<'_>,
) -> Result<()> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    for o in outs {
        // The tool deletes an output before its stage reruns.
        let field = if b.raw.kind.is_builtin() {
            "kind"
        } else {
            "outs"
        };
        if let Some(why) = protected.refuse(&settings.project_dir.join(o)) {
            return Err(err(
                &["stages", b.name, field],
                format!("stage `{name}`: output `{o}` {why}; a stage's outputs are deleted before it reruns"),
            )
            .help("give the stage a path of its own for what it writes, e.g. `out/{name}.txt`")
            .into());
        }
        if let Some(d) = deps
            .iter()
            .find(|d| *d == o || Path::new(d.as_str()).starts_with(o.as_str()))
        {
            return Err(err(
                &["stages", b.name, field],
                format!("stage `{name}`: output `{o}` holds its own dep `{d}`, which would be deleted before the stage runs"),
            )
            .help("write the result to another path than the stage reads")
            .into());
        }
    }
    Ok(())
}

/// A stage's instances: (variant, params, the `foreach` partner it needs)
/// for each variant, each variant of its `foreach` target, or just itself.
fn instances(
    b: &Base<'_>,
    bases: &[Base<'_>],
    base_names: &[&str],
    loc: &Locator<'_>,
) -> Result<Vec<Instance>> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    Ok(if let Some(vs) = &b.variants {
        vs.iter()
            .map(|(v, p)| (Some(v.clone()), p.clone(), None))
            .collect()
    } else if let Some(target) = &b.raw.foreach {
        let path = ["stages", b.name, "foreach"];
        let Some(t) = bases.iter().find(|x| x.name == target) else {
            let mut d = err(
                &path,
                format!(
                    "stage `{}` has `foreach: {target}`, but there is no stage `{target}`",
                    b.name
                ),
            );
            if let Some(s) = suggest(target, base_names.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            return Err(d.into());
        };
        if t.search.is_some() {
            return Err(err(
                &path,
                format!(
                    "stage `{}` has `foreach: {target}`, but `{target}` is a search: its trials are chosen by validation accuracy, and the test set is not read during a search",
                    b.name
                ),
            )
            .help(format!(
                "confirm the search's finalists on fresh seeds with a stage of `kind: confirm` and `needs: [{target}]`"
            ))
            .into());
        }
        let Some(tv) = &t.variants else {
            return Err(err(
                &path,
                format!(
                    "stage `{}` has `foreach: {target}`, but `{target}` has no variants",
                    b.name
                ),
            )
            .help(format!(
                "declare `variants` on `{target}`, or write `needs: [{target}]` instead"
            ))
            .into());
        };
        let at = under_stage(loc, b.name);
        let mut out = Vec::with_capacity(tv.len());
        for (v, _) in tv {
            // `-S STAGE@VARIANT.KEY=VALUE` on one of its instances.
            let mut over = Map::new();
            for (_, key, value) in b.raw.point_overrides.iter().filter(|(n, _, _)| n == v) {
                grid::insert_dotted(&mut over, key, value.clone());
            }
            let params = match over.is_empty() {
                true => b.params.clone(),
                false => {
                    let pending = grid::Pending {
                        name: v.clone(),
                        path: vec!["params".into()],
                        over,
                    };
                    merge_variant(b.name, b.raw, &b.params, &pending, &at)?
                }
            };
            out.push((Some(v.clone()), params, Some(stage_name(target, Some(v)))));
        }
        out
    } else {
        vec![(None, b.params.clone(), None)]
    })
}

/// Pass 3: dependencies: `needs`, `foreach`, and deps on other stages'
/// outputs; outputs shared or nested between stages are refused.
fn link(
    stages: &mut [Stage],
    foreach_needs: &[Option<String>],
    raw: &RawPipeline,
    loc: &Locator<'_>,
) -> Result<()> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut by_base: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in stages.iter().enumerate() {
        by_base.entry(s.base.as_str()).or_default().push(i);
        if let Some(g) = &s.group {
            by_base.entry(g.as_str()).or_default().push(i);
        }
    }
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    let owner = output_owners(stages, loc)?;
    // By name: a search per stage would make loading quadratic.
    let declared: HashMap<&str, &RawStage> =
        raw.stages.0.iter().map(|(n, s)| (n.as_str(), s)).collect();
    for (i, b) in stages.iter().enumerate() {
        let Some(raw) = declared.get(b.base.as_str()) else {
            continue;
        };
        for n in &raw.needs {
            let found: Vec<usize> = match index.get(n.as_str()) {
                Some(&j) => vec![j],
                None => by_base.get(n.as_str()).cloned().unwrap_or_default(),
            };
            if found.is_empty() {
                let mut d = err(
                    &["stages", &b.base, "needs"],
                    format!("stage `{}` needs `{n}`, but there is no such stage", b.base),
                );
                if let Some(s) = suggest(
                    n,
                    stages
                        .iter()
                        .flat_map(|s| [s.name.as_str(), s.base.as_str()]),
                ) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.into());
            }
            needs[i].extend(found);
        }
        if let Some(f) = &foreach_needs[i] {
            needs[i].push(index[f.as_str()]);
        }
        for d in &b.deps {
            // Ancestors of the dep that are outputs, and outputs under the dep.
            let mut p = d.as_str();
            loop {
                if let Some(&j) = owner.get(p) {
                    needs[i].push(j);
                }
                match p.rfind('/') {
                    Some(k) => p = &p[..k],
                    None => break,
                }
            }
            let lo = format!("{d}/");
            let hi = format!("{d}0"); // '0' sorts right after '/'
            needs[i].extend(owner.range(lo.as_str()..hi.as_str()).map(|(_, &j)| j));
        }
    }
    inherit_inputs(stages, &mut needs);
    for (i, mut n) in needs.into_iter().enumerate() {
        n.sort_unstable();
        n.dedup();
        // A stage reading its own output is not a dependency on itself
        // unless it said so in `needs` (which the graph reports as a cycle).
        stages[i].needs = n;
    }
    Ok(())
}

/// Each output path and the stage that writes it; an output shared by two
/// stages, or inside another stage's, is refused.
fn output_owners<'s>(stages: &'s [Stage], loc: &Locator<'_>) -> Result<BTreeMap<&'s str, usize>> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in stages.iter().enumerate() {
        for o in &s.outs {
            if let Some(&j) = owner.get(o.as_str()) {
                return Err(err(
                    &["stages", &s.base, "outs"],
                    format!(
                        "output `{o}` of stage `{}` is also an output of stage `{}`",
                        s.name, stages[j].name
                    ),
                )
                .help("give each stage its own output paths (use ${variant} in variant stages)")
                .into());
            }
            owner.insert(o, i);
        }
    }
    // Nested outputs would make one stage's output part of another's.
    let mut prev: Option<(&str, usize)> = None;
    for (&o, &i) in &owner {
        if let Some((p, j)) = prev {
            if o.starts_with(p) && o.as_bytes().get(p.len()) == Some(&b'/') {
                return Err(err(
                    &["stages", &stages[i].base, "outs"],
                    format!(
                        "output `{o}` of stage `{}` lies inside output `{p}` of stage `{}`",
                        stages[i].name, stages[j].name
                    ),
                )
                .into());
            }
        }
        prev = Some((o, i));
    }
    Ok(owner)
}

/// Inputs taken through another input (evaluate: its train stage's
/// dataset), where the stage names none of that kind itself.
fn inherit_inputs(stages: &[Stage], needs: &mut [Vec<usize>]) {
    for i in 0..stages.len() {
        for &(through, wanted) in stages[i].kind.inherited_inputs() {
            if needs[i].iter().any(|&j| stages[j].kind == wanted) {
                continue;
            }
            let via: Vec<usize> = needs[i]
                .iter()
                .copied()
                .filter(|&j| stages[j].kind == through)
                .collect();
            for j in via {
                let more: Vec<usize> = needs[j]
                    .iter()
                    .copied()
                    .filter(|&k| stages[k].kind == wanted)
                    .collect();
                needs[i].extend(more);
            }
        }
    }
}

/// Lexically normalizes a relative path; refuses absolute paths and paths
/// that climb out of the project directory.
fn normalize(p: &str) -> std::result::Result<String, NotInside> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(NotInside::Absolute);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or(NotInside::NotUtf8)?),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(NotInside::ClimbsOut);
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(NotInside::Absolute),
        }
    }
    if parts.is_empty() {
        return Err(NotInside::ProjectItself);
    }
    Ok(parts.join("/"))
}

/// Why a path is not one inside the project directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotInside {
    Absolute,
    /// Its `..` lead out of the project directory.
    ClimbsOut,
    ProjectItself,
    NotUtf8,
}

impl std::fmt::Display for NotInside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotInside::Absolute => "is absolute, outside the project directory",
            NotInside::ClimbsOut => "is outside the project directory",
            NotInside::ProjectItself => "is the project directory itself",
            NotInside::NotUtf8 => "is not UTF-8",
        })
    }
}

/// Deep-merges a variant's overrides into the stage's params; every key of
/// the override must already exist. On error: the dotted key and the keys
/// known at that level.
pub(super) fn merge_override(
    base: &mut Value,
    over: &Map<String, Value>,
    prefix: &str,
    optional: &[&str],
) -> std::result::Result<(), (String, Vec<String>)> {
    let Value::Object(map) = base else {
        return Err((prefix.trim_end_matches('.').to_string(), Vec::new()));
    };
    for (k, v) in over {
        let key = format!("{prefix}{k}");
        match (map.get_mut(k), v) {
            // A parameter the kind leaves out of the canonical form at its
            // default (`optimizer`, `ema`, ...): set it.
            (None, _) if prefix.is_empty() && optional.contains(&k.as_str()) => {
                map.insert(k.clone(), v.clone());
            }
            (None, _) => {
                let mut known: Vec<String> = map.keys().cloned().collect();
                if prefix.is_empty() {
                    known.extend(optional.iter().map(|s| s.to_string()));
                    known.sort();
                }
                return Err((key, known));
            }
            // A one-key mapping is a choice (`schedule: {plateau: ...}`):
            // another choice replaces it; the kind's types check the result.
            (Some(Value::Object(old)), Value::Object(sub))
                if old.len() == 1
                    && sub.len() == 1
                    && !old.contains_key(sub.keys().next().map_or("", String::as_str)) =>
            {
                map.insert(k.clone(), v.clone());
            }
            (Some(slot @ Value::Object(_)), Value::Object(sub)) => {
                merge_override(slot, sub, &format!("{key}."), &[])?
            }
            (Some(slot), v) => *slot = v.clone(),
        }
    }
    Ok(())
}

/// The closest candidate to `name`, if any is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (c.len().max(name.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn resolve_text(text: &str) -> Result<Pipeline> {
        let raw: RawPipeline = serde_yaml::from_str(text).unwrap();
        resolve(raw, text.to_string(), Path::new("dir/pipeline.yaml"))
    }

    fn diag(text: &str) -> Diagnostic {
        match resolve_text(text) {
            Err(Error::Pipeline(d)) => *d,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("resolved"),
        }
    }

    const EXAMPLE: &str = r#"
stages:
  prep:
    kind: cmd
    cmd: "sort data/raw.txt > data/sorted.txt"
    deps: [data/raw.txt]
    outs: [data/sorted.txt]
  train:
    kind: cmd
    needs: [prep]
    params: {lr: 0.001, epochs: 3, opt: {beta: 0.9, eps: 1.0e-8}}
    variants:
      fast: {lr: 0.01, opt: {beta: 0.5}}
      slow: {}
    cmd: "echo ${params.lr} ${params.opt.beta} > out/model-${variant}.txt"
    outs: ["out/model-${variant}.txt"]
  evaluate:
    kind: cmd
    foreach: train
    cmd: "wc -c out/model-${variant}.txt > out/eval-${variant}.txt"
    deps: ["out/model-${variant}.txt"]
    outs: ["out/eval-${variant}.txt"]
  compare:
    kind: cmd
    needs: [evaluate]
    cmd: "cat out/eval-*.txt > out/table.txt"
    outs: [out/table.txt]
"#;

    #[test]
    fn expands_variants_and_foreach() {
        let p = resolve_text(EXAMPLE).unwrap();
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "prep",
                "train@fast",
                "train@slow",
                "evaluate@fast",
                "evaluate@slow",
                "compare"
            ]
        );
        let fast = &p.stages[1];
        assert_eq!(
            fast.cmd.as_deref(),
            Some("echo 0.01 0.5 > out/model-fast.txt")
        );
        assert_eq!(fast.params["opt"]["eps"], serde_json::json!(1.0e-8));
        assert_eq!(
            p.stages[2].cmd.as_deref(),
            Some("echo 0.001 0.9 > out/model-slow.txt")
        );
        assert_eq!(p.stages[1].needs, vec![0]);
        assert_eq!(
            p.stages[3].needs,
            vec![1],
            "evaluate@fast needs train@fast only"
        );
        assert_eq!(p.stages[5].needs, vec![3, 4]);
        assert_eq!(p.settings.project_dir, Path::new("dir"));
    }

    #[test]
    fn implicit_edge_from_dep_on_output() {
        let p = resolve_text(
            "stages:\n  a:\n    kind: cmd\n    cmd: x\n    outs: [d/x.txt]\n  b:\n    kind: cmd\n    cmd: y\n    deps: [d]\n",
        )
        .unwrap();
        assert_eq!(p.stages[1].needs, vec![0]);
    }

    #[test]
    fn unknown_variant_parameter() {
        let d = diag("stages:\n  t:\n    kind: cmd\n    cmd: x\n    params:\n      lr: 1\n    variants:\n      a:\n        lrr: 2\n");
        assert!(d.message.contains("overrides `lrr`"), "{}", d.message);
        assert_eq!(d.line, Some(9));
        assert!(d.help.unwrap().contains("lr"));
    }

    #[test]
    fn unknown_need_suggests() {
        let d = diag("stages:\n  prep:\n    kind: cmd\n    cmd: x\n  t:\n    kind: cmd\n    cmd: y\n    needs: [perp]\n");
        assert!(d.message.contains("needs `perp`"));
        assert_eq!(d.help.as_deref(), Some("did you mean `prep`?"));
        assert_eq!(d.line, Some(8));
    }

    #[test]
    fn foreach_without_variants() {
        let d = diag("stages:\n  t:\n    kind: cmd\n    cmd: x\n  e:\n    kind: cmd\n    cmd: y\n    foreach: t\n");
        assert!(d.message.contains("has no variants"), "{}", d.message);
    }

    #[test]
    fn missing_cmd() {
        let d = diag("stages:\n  t:\n    kind: cmd\n");
        assert!(d.message.contains("has no `cmd`"));
        assert_eq!(d.line, Some(2));
    }

    #[test]
    fn output_outside_project() {
        for out in ["../x", "/tmp/x", "a/../../x"] {
            let d = diag(&format!(
                "stages:\n  t:\n    kind: cmd\n    cmd: x\n    outs: [\"{out}\"]\n"
            ));
            assert!(
                d.message.contains("outside the project") || d.message.contains("absolute"),
                "{}",
                d.message
            );
        }
    }

    #[test]
    fn duplicate_and_nested_outputs() {
        let d = diag("stages:\n  a:\n    kind: cmd\n    cmd: x\n    outs: [o]\n  b:\n    kind: cmd\n    cmd: y\n    outs: [./o]\n");
        assert!(
            d.message.contains("also an output of stage `a`"),
            "{}",
            d.message
        );
        let d = diag("stages:\n  a:\n    kind: cmd\n    cmd: x\n    outs: [o]\n  b:\n    kind: cmd\n    cmd: y\n    outs: [o/p]\n");
        assert!(d.message.contains("lies inside"), "{}", d.message);
    }

    /// Values a kind refuses are reported at load, at the stage's params.
    #[test]
    fn kind_value_checks_are_located() {
        let cases = [
            ("download", "{sources: []}", "sources is empty"),
            ("download", "{files: {a.gz: abc}}", "is not a SHA-256"),
            ("preprocess", "{std: 0}", "std must be positive"),
            (
                "train",
                "{epochs: 0}",
                "epochs and batch_size must be at least 1",
            ),
            (
                "train",
                "{channels: [8, 8]}",
                "this model has 3 convolutions",
            ),
            (
                "evaluate",
                "{batch_size: 0}",
                "batch_size must be at least 1",
            ),
            (
                "train",
                "{max_batches: 0}",
                "max_batches must be at least 1",
            ),
            (
                "preprocess",
                "{limit: {test: 0}}",
                "limit.test must be at least 1",
            ),
            (
                "preprocess",
                "{validation: 0}",
                "validation must be at least 1",
            ),
        ];
        for (kind, params, want) in cases {
            let d = diag(&format!(
                "stages:\n  s:\n    kind: {kind}\n    params: {params}\n"
            ));
            assert!(d.message.contains(want), "{kind} {params}: {}", d.message);
            assert_eq!(d.line, Some(4), "{kind} {params}");
        }
    }

    #[test]
    fn devices() {
        let d = diag("stages:\n  t:\n    kind: train\n    device: tpu\n");
        assert!(d.message.contains("unknown device `tpu`"), "{}", d.message);
        assert_eq!(d.line, Some(4));
        let p = resolve_text("settings: {device: cpu-reference}\nstages:\n  t:\n    kind: train\n  c:\n    kind: cmd\n    cmd: x\n").unwrap();
        assert_eq!(
            p.stages[0].device.as_deref(),
            Some("cpu-reference"),
            "train uses the settings' device"
        );
        assert_eq!(p.stages[1].device, None, "cmd has no device");
        for bad in ["cuda:x", "cuda:", "cuda1"] {
            let d = diag(&format!(
                "stages:\n  t:\n    kind: train\n    device: \"{bad}\"\n"
            ));
            assert!(d.message.contains("unknown device"), "{bad}: {}", d.message);
        }
        let text = "settings: {device: cuda}\nstages:\n  t:\n    kind: train\n";
        if cfg!(feature = "cuda") {
            assert!(resolve_text(text).is_ok());
        } else {
            let d = diag(text);
            assert!(
                d.message
                    .starts_with("settings.device: device `cuda`: this build has no CUDA support"),
                "{}",
                d.message
            );
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("trian", ["train", "prep"]), Some("train".into()));
        assert_eq!(suggest("zzzzz", ["train", "prep"]), None);
    }

    #[test]
    fn stage_and_variant_names() {
        for bad in ["..", ".", ".hidden", "a/b", "a@b", ""] {
            let d = diag(&format!(
                "stages:\n  \"{bad}\":\n    kind: cmd\n    cmd: x\n"
            ));
            assert!(
                d.message.contains(&format!("stage name `{bad}`")),
                "{}",
                d.message
            );
        }
        let long = "n".repeat(stages::contract::MAX_NAME + 1);
        let d = diag(&format!("stages:\n  {long}:\n    kind: cmd\n    cmd: x\n"));
        assert!(d.message.contains("longer than 100"), "{}", d.message);
        resolve_text("stages:\n  lr-0.01_a:\n    kind: cmd\n    cmd: x\n").unwrap();
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./a//b/../c").unwrap(), "a/c");
        assert!(normalize(".").is_err());
    }
}
