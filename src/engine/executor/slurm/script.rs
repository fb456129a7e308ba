//! What is submitted: sbatch's arguments and the job's script.

use super::super::{Shell, StageFailure};
use super::*;
use crate::error::Error;
use crate::spec::{RawSlurm, Resources};
use std::fs;
use std::path::{Path, PathBuf};

/// The sbatch command line `run --executor slurm` would give `stage`, and
/// what its job runs.
pub fn describe(stage: &crate::spec::Stage, store: &crate::state::store::Store) -> String {
    let workdir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let log = store.log_path(&stage.name);
    let job = store.job_path(&stage.name);
    let out = if stage.kind.is_builtin() {
        job.with_extension("out")
    } else {
        log.clone()
    };
    let args = sbatch_args(
        &stage.slurm,
        &stage.name,
        &workdir,
        stage.resources.cpus.unwrap_or(1),
        &stage.resources,
        &out,
        &log,
    );
    let runs = match &stage.cmd {
        Some(cmd) => format!("sh -c {}", sh_quote(cmd)),
        None => format!("fmnist-pipe __stage {}", job.display()),
    };
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    format!("sbatch {}  # runs: {runs}", args.join(" "))
}

/// The sbatch arguments for one stage (the script comes on stdin).
pub fn sbatch_args(
    settings: &RawSlurm,
    stage: &str,
    workdir: &Path,
    cpus: usize,
    resources: &Resources,
    stdout: &Path,
    stderr: &Path,
) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={stage}"),
        format!("--chdir={}", workdir.display()),
        format!("--output={}", stdout.display()),
        format!("--error={}", stderr.display()),
        // A requeued job adds to its log instead of erasing the first attempt's.
        "--open-mode=append".into(),
        "--requeue".into(),
        format!("--cpus-per-task={cpus}"),
    ];
    if let Some(m) = resources.mem_mb {
        a.push(format!("--mem={m}M"));
    }
    if resources.gpus > 0 {
        a.push(format!("--gres=gpu:{}", resources.gpus));
    }
    if let Some(t) = resources.time {
        a.push(format!("--time={}", t.slurm()));
    }
    if let Some(p) = &settings.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(acc) = &settings.account {
        a.push(format!("--account={acc}"));
    }
    a.extend(settings.extra.iter().cloned());
    a
}

/// `'text'` for sh, whatever it holds.
pub fn sh_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub(super) fn exports(env: &[(&'static str, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("export {k}={}\n", sh_quote(v)))
        .collect()
}

pub(super) fn not_visible(path: &str) -> String {
    format!(
        "if [ ! -e {path} ]; then\n  echo \"fmnist-pipe: \"{path}\" is not visible on node $(hostname): the program, the project and its cache must be on a file system every node shares\" >&2\n  exit {NOT_SHARED}\nfi\n"
    )
}

/// A `cmd` stage's job: the command run under `__measure`, which writes
/// what it used to `usage` (the node has the program: built-in stages
/// need it there too).
pub(super) fn shell_script(shell: &Shell<'_>, exe: &Path, usage: &Path) -> String {
    let dir = sh_quote(&shell.dir.display().to_string());
    let exe = sh_quote(&exe.display().to_string());
    format!(
        "#!/bin/sh\n# fmnist-pipe stage {}\n{}{}cd {dir} || exit {NOT_SHARED}\n{}exec {exe} __measure {} sh -c {}\n",
        shell.stage,
        not_visible(&exe),
        not_visible(&dir),
        exports(&shell.env),
        sh_quote(&usage.display().to_string()),
        sh_quote(shell.cmd)
    )
}

/// Where a `cmd` stage's job writes what it used.
pub(super) fn usage_path(log: &Path) -> PathBuf {
    log.with_extension("usage")
}

pub(super) fn job_script(exe: &Path, job: &Path, env: &[(&'static str, String)]) -> String {
    let exe = sh_quote(&exe.display().to_string());
    let job = sh_quote(&job.display().to_string());
    format!(
        "#!/bin/sh\n{}{}{}exec {exe} __stage {job}\n",
        not_visible(&exe),
        not_visible(&job),
        exports(env)
    )
}

pub(super) fn create_empty(path: &Path) -> Result<(), StageFailure> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| StageFailure::Env(Error::io("create the directory", parent, e)))?;
    }
    fs::File::create(path)
        .map(drop)
        .map_err(|e| StageFailure::Env(Error::io("create", path, e)))
}
