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
    /// A stage went to the cluster as job `job`.
    Submitted {
        stage: String,
        job: String,
    },
    Progress {
        stage: String,
        message: String,
        fraction: Option<f64>,
    },
    Cached {
        stage: String,
    },
    Restored {
        stage: String,
        paths: Vec<String>,
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
        error: String,
        tail: Option<String>,
        log: Option<PathBuf>,
    },
    Skipped {
        stage: String,
        because: String,
    },
    /// Something the user should know that is not about one stage's outcome.
    Warning {
        text: String,
    },
    /// What a running stage says the user must hear (a saved state
    /// thrown away), shown without `-v`.
    Notice {
        stage: String,
        message: String,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub ran: usize,
    pub cached: usize,
    pub restored: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Stages not started because an earlier failure stopped the run.
    pub not_started: usize,
    pub wall: Duration,
    /// Stages that are up to date after the run (ran, cached or restored).
    pub done: std::collections::BTreeSet<String>,
}
