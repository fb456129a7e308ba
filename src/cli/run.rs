//! `run`: the stale stages, then the history's record and the tables.

use super::show::read_table;
use super::status::status_rows;
use super::RunArgs;
use crate::engine::interrupt::Running;
use crate::engine::run::RunOptions;
use crate::error::{exit, Error, Result};
use crate::spec::graph::Dag;
use crate::spec::{self, Pipeline};
use crate::state::hash::HashCache;
use crate::state::history;
use crate::state::store::Store;
use crate::ui::reporter::{Reporter, RowState};

/// `resolved`: the pipeline as resolved, before its confirm stages are
/// given finalists (`pipeline` and `dag`, as the searches' results on
/// disk give them now).
pub fn run(
    resolved: &Pipeline,
    (pipeline, dag): (&Pipeline, &Dag),
    reporter: &mut Reporter,
    args: &RunArgs,
    running: &Running,
) -> Result<i32> {
    if args.jobs == Some(0) {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    if args.dry_run {
        return dry_run(pipeline, dag, reporter, args);
    }
    if args.executor.unwrap_or(pipeline.settings.executor) == spec::ExecutorKind::Slurm {
        // Before the cache is touched: without a cluster nothing runs.
        crate::engine::executor::slurm::probe()?;
    } else {
        // Likewise without the GPUs the stages ask for (on a
        // cluster, the nodes have them, not this one).
        probe_gpus(pipeline)?;
    }
    let store = Store::open(&pipeline.settings);
    let _lock = store.lock(args.wait, &mut |holder| {
        reporter.waiting(&store.home().join("lock"), holder)
    })?;
    // Shared with the runs of other projects on this cache; `gc` waits.
    let _share = store.share()?;
    let remote = if args.pull {
        Some(std::sync::Arc::new(crate::state::remote::Remote::open(
            &pipeline.settings,
            args.remote.as_deref(),
        )?))
    } else {
        None
    };
    let hashes = HashCache::load(store.home().join("hashes.json"));
    let mut live = start_live(pipeline, &store, reporter, args);
    let opts = RunOptions {
        targets: args.stages.clone(),
        force: args.force.clone(),
        force_all: args.force_all,
        keep_going: args.keep_going,
        jobs: args.jobs,
        executor: args.executor,
        running: running.clone(),
        remote,
        only_pull: args.only_pull,
        failed_before: Default::default(),
        live: live.as_ref().map(|l| l.dir().to_path_buf()),
    };
    let mut ran: Vec<history::RanStage> = Vec::new();
    let mut started: std::collections::HashMap<String, usize> = Default::default();
    let begun = history::start(pipeline);
    let study = crate::engine::study::run(
        resolved,
        (pipeline, dag),
        &store,
        &hashes,
        &opts,
        &mut |e| {
            note_ran(&mut ran, &mut started, &e);
            if let Some(l) = live.as_mut() {
                if l.observe(&e) {
                    reporter.live_page(&l.page());
                }
            }
            reporter.event(e)
        },
    );
    let study = match study {
        Ok(s) => s,
        Err(e) => {
            if let Some(l) = live.take() {
                l.finish("failed", e.to_string());
            }
            return Err(e);
        }
    };
    let summary = study.summary;
    let idle = ran.is_empty() && summary.restored == 0 && summary.failed == 0;
    let live = live.and_then(|l| finish_live(l, &summary, idle, running));
    let (pipeline, dag) = match &study.expanded {
        Some((p, d)) => (p, d),
        None => (pipeline, dag),
    };
    reporter.summary(&summary);
    if !ran.is_empty() {
        record_run((pipeline, dag), reporter, (begun, ran), live)?;
    }
    // The comparison tables of the compare and confirm stages this run
    // covered and that are up to date.
    for s in &pipeline.stages {
        let tabled = matches!(s.kind, stages::Kind::Compare | stages::Kind::Confirm);
        if tabled && summary.done.contains(&s.name) {
            if let Some((t, _)) = read_table(pipeline, &store, s) {
                reporter.table(&t);
            }
        }
    }
    Ok(match (args.only_pull, summary.failed, summary.not_pulled) {
        // What could not be pulled was damaged or unreachable.
        (true, f, _) if f > 0 => exit::ENVIRONMENT,
        (true, _, n) if n > 0 => exit::STALE,
        (false, f, _) if f > 0 => exit::STAGE_FAILED,
        _ => exit::OK,
    })
}

/// Adds the run to the history: what ran, and the state after it.
fn record_run(
    (pipeline, dag): (&Pipeline, &Dag),
    reporter: &mut Reporter,
    (begun, ran): (history::Start, Vec<history::RanStage>),
    live: Option<String>,
) -> Result<()> {
    let path = history::path(pipeline);
    // Only what is fresh now is the result of the parameters
    // recorded: a stale evaluation measured something else.
    let fresh: std::collections::HashSet<String> = status_rows(pipeline, dag, &[], &[], false)?
        .into_iter()
        .filter(|r| r.state == RowState::Fresh)
        .map(|r| r.stage)
        .collect();
    let mut record = history::record(pipeline, begun, ran, &|s| fresh.contains(s));
    record.live = live;
    if let Err(e) = history::append(&path, record) {
        // The run itself succeeded; its record is what is lost.
        let cause = std::error::Error::source(&e)
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        reporter.event(crate::ui::events::Event::NotInHistory {
            error: format!("{e}{cause}"),
            path,
        });
    }
    Ok(())
}

/// `run --dry-run`: what would run and why (with the Slurm executor, the
/// sbatch line of each), and what the last measures say.
fn dry_run(pipeline: &Pipeline, dag: &Dag, reporter: &mut Reporter, args: &RunArgs) -> Result<i32> {
    let rows = status_rows(pipeline, dag, &args.stages, &args.force, args.force_all)?;
    let mut lines = std::collections::BTreeMap::new();
    if args.executor.unwrap_or(pipeline.settings.executor) == spec::ExecutorKind::Slurm {
        let store = Store::open(&pipeline.settings);
        for s in &pipeline.stages {
            lines.insert(
                s.name.clone(),
                crate::engine::executor::slurm::describe(s, &store),
            );
        }
    }
    reporter.dry_run(&rows, &lines);
    reporter.measured(&super::status::measured_warnings(pipeline));
    Ok(exit::OK)
}

/// The run's live directory, unless `--no-live`. Seeing the run is not
/// worth failing it for: without its directory the run goes on, and
/// says so.
fn start_live(
    pipeline: &Pipeline,
    store: &Store,
    reporter: &mut Reporter,
    args: &RunArgs,
) -> Option<crate::live::Live> {
    if args.no_live {
        return None;
    }
    let executor = match args.executor.unwrap_or(pipeline.settings.executor) {
        spec::ExecutorKind::Slurm => "slurm",
        spec::ExecutorKind::Local => "local",
    };
    match crate::live::Live::start(store.home(), pipeline, executor) {
        Ok(l) => Some(l),
        Err(e) => {
            reporter.no_live_page(&store.home().join(crate::live::RUNS), &e);
            None
        }
    }
}

/// The run's last page and its trace; the directory's name for the
/// history. A run that did nothing (`idle`) leaves no directory behind.
fn finish_live(
    live: crate::live::Live,
    summary: &crate::ui::events::Summary,
    idle: bool,
    running: &Running,
) -> Option<String> {
    let how = if summary.interrupted > 0 || running.stopping() {
        "interrupted"
    } else if summary.failed > 0 {
        "failed"
    } else {
        "finished"
    };
    let (name, dir) = (live.name(), live.dir().to_path_buf());
    live.finish(how, crate::ui::words::summary(summary));
    if idle {
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    Some(name)
}

/// Keeps what the history records of a run: each stage that ran, why,
/// and how it ended.
/// `running` maps a started stage to its place in `ran` (a linear search
/// per stage would make a run of thousands quadratic).
fn note_ran(
    ran: &mut Vec<history::RanStage>,
    running: &mut std::collections::HashMap<String, usize>,
    e: &crate::ui::events::Event,
) {
    use crate::ui::events::Event;
    match e {
        Event::Started { stage, reason, .. } => {
            running.insert(stage.clone(), ran.len());
            ran.push(history::RanStage {
                stage: stage.clone(),
                reason: reason.to_string(),
                outcome: "running".into(),
            })
        }
        Event::Finished { stage, .. } | Event::Failed { stage, .. } => {
            let outcome = if matches!(e, Event::Failed { .. }) {
                "failed"
            } else {
                "done"
            };
            if let Some(&k) = running.get(stage) {
                ran[k].outcome = outcome.into();
            }
        }
        _ => {}
    }
}

/// Every CUDA device a stage of `pipeline` names can be opened here.
#[cfg(feature = "cuda")]
fn probe_gpus(pipeline: &Pipeline) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for d in pipeline.stages.iter().filter_map(|s| s.device.as_deref()) {
        if stages::runtime::is_cuda(d) && seen.insert(d) {
            stages::runtime::cuda(d, 0).map_err(|e| Error::Usage(e.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn probe_gpus(_: &Pipeline) -> Result<()> {
    // Refused when the pipeline loaded.
    Ok(())
}
