//! `settings:` checked: the cache and outputs, the executor, Slurm,
//! devices and remotes.

use super::load::{RawPipeline, RawSlurm};
use super::locate::Locator;
use super::outputs::{normalize, NotInside};
use super::pipeline::{ExecutorKind, RemoteSpec, Settings};
use super::protect::Protected;
use crate::error::Result;
use stages::contract::check_name;
use std::path::{Path, PathBuf};

/// A device this build can train and evaluate on; else what is wrong
/// and how to fix it. Checked when the pipeline loads, so nothing runs
/// first (whether a GPU is there is checked when a run starts).
pub(super) fn check_device(device: &str) -> std::result::Result<(), (String, String)> {
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

/// The cache and the outputs, checked against each other and the
/// project; and the places no stage may own.
fn places(
    raw: &RawPipeline,
    file: &Path,
    project_dir: &Path,
    loc: &Locator<'_>,
) -> Result<(String, String, Protected)> {
    let err = |path: &[&str], message: String| loc.at(path, message);
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
    let protected = Protected::new(project_dir, file, &cache, &outputs);
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
    Ok((cache, outputs, protected))
}

/// The settings, checked; and the places no stage may own.
pub(super) fn resolve_settings(
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
    let (cache, outputs, protected) = places(raw, file, &project_dir, loc)?;
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
pub(super) fn check_slurm(slurm: &RawSlurm, at: &[&str], loc: &Locator<'_>) -> Result<()> {
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
pub(super) fn remote_spec(
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
