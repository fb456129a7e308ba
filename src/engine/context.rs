//! What every step of a stage's run shares: the run's settings, the
//! planner, the store and the executor.

use crate::engine::board::Outcome;
use crate::engine::executor::Executor;
use crate::engine::plan::Planner;
use crate::error::Result;
use crate::spec::{Pipeline, Stage};
use crate::state::store::Store;
use crate::ui::events::{Event, Failure};
use std::path::PathBuf;

pub(crate) struct Ctx<'a> {
    pub(crate) running: &'a crate::engine::interrupt::Running,
    pub(crate) remote: Option<&'a crate::state::remote::Remote>,
    pub(crate) only_pull: bool,
    /// See [`RunOptions::failed_before`].
    pub(crate) failed_before: &'a std::collections::BTreeSet<String>,
    pub(crate) planner: Planner<'a>,
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) store: &'a Store,
    pub(crate) executor: Executor,
    /// When the run began (seconds since the epoch), its parallel jobs,
    /// and what it is, described once for the kinds that report it.
    pub(crate) started_unix: u64,
    pub(crate) jobs: usize,
    pub(crate) run_info: std::sync::OnceLock<stages::contract::RunInfo>,
    /// The run's live directory, where a stage's own live file lies.
    pub(crate) live: Option<PathBuf>,
}

/// A stage that failed before or after its work: said, and counted.
pub(crate) fn failed(
    send: &(dyn Fn(Event) + Sync),
    stage: &Stage,
    failure: Failure,
    log: Option<PathBuf>,
) -> Result<Outcome> {
    send(Event::Failed {
        stage: stage.name.clone(),
        failure,
        tail: None,
        log,
    });
    Ok(Outcome::Failed)
}
