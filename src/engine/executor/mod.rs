//! Where a stage's work runs once the orchestrator decided it must: a
//! child process here ([`local`]) or a Slurm job ([`slurm`]). Both take the
//! same job description and report the same way; the orchestrator alone
//! checks outputs and writes records.

pub mod local;
pub mod slurm;

use crate::engine::schedule::Grant;
use crate::error::Error;
use crate::state::ownership::Refusal;
use crate::ui::events::Event;
use std::path::Path;

/// How a stage's work failed.
pub enum StageFailure {
    Cmd(stages::cmd::CmdError),
    /// A built-in stage's process ended without saying how: a panic, a kill.
    Crashed {
        how: String,
        tail: String,
    },
    /// A Slurm job ended badly, with its log's last lines.
    Job {
        failure: crate::ui::events::JobFailure,
        tail: String,
    },
    Kind(stages::StageError),
    Refused(Refusal),
    Env(Error),
}

/// A `cmd` stage's shell command and what it sees.
pub struct Shell<'a> {
    pub stage: &'a str,
    pub cmd: &'a str,
    pub dir: &'a Path,
    pub env: Vec<(&'static str, String)>,
    pub log: &'a Path,
    pub resources: &'a crate::spec::Resources,
    /// The stage's sbatch settings.
    pub slurm: &'a crate::spec::RawSlurm,
}

/// A built-in stage's job: its description, written to `path`, and where
/// its process's stderr goes.
pub struct JobFile<'a> {
    pub job: &'a stages::job::Job,
    pub path: &'a Path,
    pub log: &'a Path,
    pub env: Vec<(&'static str, String)>,
    pub resources: &'a crate::spec::Resources,
    /// The stage's sbatch settings.
    pub slurm: &'a crate::spec::RawSlurm,
}

pub enum Executor {
    /// Child processes, registered with the run's children.
    Local(stages::process::Children),
    Slurm(slurm::Slurm),
}

impl Executor {
    pub fn run_shell(
        &self,
        shell: &Shell<'_>,
        grant: &Grant,
        send: &(dyn Fn(Event) + Sync),
    ) -> Result<(), StageFailure> {
        match self {
            Executor::Local(children) => local::run_shell(shell, send, children),
            Executor::Slurm(s) => s.run_shell(shell, grant, send),
        }
    }

    pub fn run_job(
        &self,
        job: &JobFile<'_>,
        grant: &Grant,
        send: &(dyn Fn(Event) + Sync),
    ) -> Result<(), StageFailure> {
        match self {
            Executor::Local(children) => local::run_job(job, send, children),
            Executor::Slurm(s) => s.run_job(job, grant, send),
        }
    }
}

/// The environment a stage's work sees beyond the inherited one.
pub fn stage_env(
    stage: &crate::spec::Stage,
    grant: &Grant,
    live: Option<&Path>,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("FMNIST_PIPE_STAGE", stage.name.clone()),
        (
            "FMNIST_PIPE_VARIANT",
            stage.variant.clone().unwrap_or_default(),
        ),
        ("FMNIST_PIPE_THREADS", grant.cpus.to_string()),
    ];
    // A command's own live file; a training's epochs are written by the
    // orchestrator as they are told.
    if let (Some(dir), None) = (live, stage.kind.is_builtin().then_some(())) {
        env.push((
            stages::contract::LIVE_ENV,
            stages::contract::live_file(dir, &stage.name)
                .display()
                .to_string(),
        ));
    }
    if !grant.gpus.is_empty() {
        env.push(("CUDA_VISIBLE_DEVICES", grant.gpus.join(",")));
    }
    env
}
