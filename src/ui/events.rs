//! What the engine tells the reporter. The engine never prints.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Event {
    /// `total` stages are considered; `to_run` of them are stale.
    Planned {
        total: usize,
    },
    Started {
        stage: String,
        reason: crate::state::fingerprint::DirtyReason,
        /// Threads a built-in parallel kind was given, and the GPUs held.
        threads: Option<usize>,
        gpus: Vec<String>,
    },
    /// The scheduler gave a stage what it asked for, `waited` after its
    /// inputs were done.
    Admitted {
        stage: String,
        waited: Duration,
        cpus: usize,
        gpus: usize,
    },
    /// What a stage's process used (see `stages::measure`); a later one
    /// for the same stage replaces an earlier (the parent's measure of a
    /// child replaces what the child said of itself).
    Measured {
        stage: String,
        usage: stages::measure::Usage,
    },
    /// A search's early stopping decided: `trial` goes on from `rung`
    /// epochs to `to`.
    Promoted {
        search: String,
        trial: String,
        rung: usize,
        to: usize,
        val_acc: f64,
    },
    /// A search's trials are all decided: its report can run.
    SearchSettled {
        search: String,
    },
    /// A stage went to the cluster as job `job`.
    Submitted {
        stage: String,
        job: String,
    },
    /// What a running stage is doing: a milestone (an epoch done) is a
    /// line where there is no live line (a log, a pipe, CI), even without
    /// `-v`; a notice (a saved state thrown away) is a line everywhere.
    Progress {
        stage: String,
        step: stages::Step,
        fraction: Option<f64>,
    },
    /// Slurm put the stage's job back in the queue: it starts again.
    Requeued {
        stage: String,
        job: String,
    },
    Cached {
        stage: String,
    },
    Restored {
        stage: String,
        paths: Vec<String>,
        /// The remote it was fetched from, if it was.
        from: Option<String>,
        /// How long the run that computed it took: the time saved.
        took: Duration,
    },
    /// Another run (of this or another project) is computing the result
    /// this stage needs; the stage waits, then restores it.
    Waiting {
        stage: String,
        holder: String,
    },
    /// A cache object was bad; the stage reruns instead of being restored.
    CacheCorrupt {
        stage: String,
        path: String,
    },
    Finished {
        stage: String,
        elapsed: Duration,
    },
    Failed {
        stage: String,
        failure: Failure,
        /// The last lines of the stage's output, where it has some.
        tail: Option<String>,
        log: Option<PathBuf>,
    },
    /// Stopped by a signal (Ctrl-C, `kill`, `timeout`) before it finished.
    Interrupted {
        stage: String,
        /// Where the next run takes it up (a training's last saved epoch).
        resume: Option<crate::state::fingerprint::ResumePoint>,
    },
    Skipped {
        stage: String,
        because: String,
        /// `because` failed; else it was not pulled.
        failed: bool,
    },
    /// `run --pull`: the remote's result could not be used (the stage
    /// runs here instead).
    NotFetched {
        stage: String,
        failure: Failure,
    },
    /// `pull`: the stage is stale here and its result is not on the remote.
    NotPulled {
        stage: String,
        remote: String,
        reason: crate::state::fingerprint::DirtyReason,
    },
    /// A Slurm job a killed run left queued or running, cancelled.
    LeftoverCancelled {
        stage: String,
        job: String,
    },
    /// The run could not be added to the history: the error, its cause,
    /// and the history's file.
    NotInHistory {
        error: String,
        path: std::path::PathBuf,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub ran: usize,
    pub cached: usize,
    pub restored: usize,
    pub failed: usize,
    pub skipped: usize,
    /// `pull`: stale stages the remote had no result for.
    pub not_pulled: usize,
    /// Stages not started because an earlier failure stopped the run.
    pub not_started: usize,
    /// Stages a stop signal cut short.
    pub interrupted: usize,
    pub wall: Duration,
    /// Stages that are up to date after the run (ran, cached or restored).
    pub done: std::collections::BTreeSet<String>,
    /// Stages that failed.
    pub failed_stages: std::collections::BTreeSet<String>,
}

/// Why a stage failed, as data: the reporter words it.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A declared dep does not exist.
    DepMissing {
        path: String,
    },
    DepUnreadable {
        path: String,
        error: String,
    },
    /// A confirm stage asked for before its search has finished.
    WaitsForSearch {
        search: String,
    },
    /// This machine can never give what the stage asks for.
    CannotRunHere {
        why: String,
    },
    /// An output (or a restore) the tool will not touch.
    Refused(crate::state::ownership::Refusal),
    /// The stage succeeded without writing a declared output.
    NotProduced {
        output: String,
    },
    OutputUnreadable {
        output: String,
        error: String,
    },
    /// A `cmd` stage's command ended badly (`command exited with status 3`).
    Command {
        how: String,
    },
    /// An input another stage wrote is corrupt; what was done about it.
    InputCorrupt {
        path: String,
        problem: String,
        remedy: Remedy,
    },
    /// The stage reported an error, with its causes.
    Error {
        chain: String,
    },
    /// The stage's process ended without saying how (a panic, a kill).
    Crashed {
        how: String,
    },
    /// A Slurm job ended badly.
    Job(JobFailure),
    /// A remote's record of the stage's result cannot be used: it is
    /// malformed, or its objects are missing or do not hash to their names.
    RemoteDamaged {
        remote: String,
        damage: crate::state::runs::Damage,
    },
    /// The cache or workspace failed the run.
    Environment {
        error: String,
    },
}

/// How a Slurm job ended badly, and whether it left its log.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFailure {
    pub end: JobEnd,
    /// The log it should have written and did not.
    pub no_log: Option<PathBuf>,
}

/// How a Slurm job ended badly (`id` is its job ID).
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    /// sbatch refused it; its first line of reason.
    Refused {
        reason: String,
    },
    /// Slurm no longer knows it (purged while the run waited).
    Lost {
        id: String,
    },
    /// Its node could not see the program or the job description.
    NotShared {
        id: String,
    },
    /// It completed without the stage saying it was done.
    Silent {
        id: String,
    },
    Killed {
        id: String,
        signal: i32,
    },
    Panicked {
        id: String,
    },
    Exited {
        id: String,
        status: i32,
    },
    /// `reason`: Slurm's, where it gave one.
    Cancelled {
        id: String,
        reason: Option<String>,
    },
    Timeout {
        id: String,
    },
    OutOfMemory {
        id: String,
    },
    /// Any other state Slurm reports it ended in.
    Ended {
        id: String,
        state: String,
        reason: Option<String>,
    },
}

/// What the tool did about a corrupt input.
#[derive(Debug, Clone)]
pub enum Remedy {
    /// It is not the output of a stage the failed one needs.
    NotAnOutput,
    /// Another stage moved it away: the producer's copy is restored next.
    MovedAway { producer: String },
    /// It no longer held what the producer wrote: moved aside, kept.
    Quarantined { producer: String, to: PathBuf },
    /// The producer is marked stale and rebuilds next.
    ProducerStale { producer: String },
}
