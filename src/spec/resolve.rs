//! Raw pipeline -> concrete stages: variants and `foreach` expanded, params
//! merged and checked against their kind, names and paths validated.

use super::load::{RawPipeline, RawSlurm};
use super::protect::Protected;
use super::resources::Resources;
use super::subst::{substitute, Vars};
use crate::error::Result;
use serde_json::{Map, Value};
use stages::contract::{check_name, replicate_of, stage_name};
use stages::Kind;
use std::path::Path;

use super::locate::Locator;
use super::outputs::{check_outs, instances, link, normalize, predictions_path};
use super::pipeline::{Base, Pipeline, Settings, Stage, SEARCH_VARIANT};
use super::settings::{check_device, check_slurm, resolve_settings};
use super::variants::{declared_variants, merge_override, nest_dotted, searched_variants};

/// Raw pipeline -> concrete stages, in three passes: each declared stage's
/// parameters and variants ([`declare`]), the concrete stages ([`expand`]),
/// and their dependencies ([`link`]).
pub fn resolve(raw: RawPipeline, text: String, file: &Path) -> Result<Pipeline> {
    let loc = Locator::new(file, &text);
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
    let confirms = super::confirm::prepare(&mut stages, &searches, &bases, &loc)?;
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
        confirms,
        text,
        overrides: Vec::new(),
    })
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
        check_fields(name, rs, settings, loc)?;
        let at = |field: &'static str| vec!["stages", name.as_str(), field];
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

/// A declared stage's fields that do not depend on its parameters: a
/// `cmd` where its kind takes one, no `outs` on a built-in kind, a
/// device only where one is used, threads and resources at least 1.
fn check_fields(
    name: &str,
    rs: &crate::spec::RawStage,
    settings: &Settings,
    loc: &Locator<'_>,
) -> Result<()> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let at = |field: &'static str| vec!["stages", name, field];
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
            format!(
                "stage `{name}`: kind search is made by `search:` on a train stage, not declared"
            ),
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
    Ok(())
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
            let slurm = stage_slurm(b, settings, loc)?;
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
                resources: stage_resources(b, settings),
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

/// A stage's Slurm settings: its own over the pipeline's, `extra`
/// lines added after the pipeline's.
fn stage_slurm(b: &Base<'_>, settings: &Settings, loc: &Locator<'_>) -> Result<RawSlurm> {
    Ok(match &b.raw.slurm {
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
    })
}

/// A stage's resources: its own, else `settings.resources` of its kind.
fn stage_resources(b: &Base<'_>, settings: &Settings) -> Resources {
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

#[cfg(test)]
mod tests {
    use super::super::locate::suggest;
    use super::*;
    use crate::error::{Diagnostic, Error};

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
