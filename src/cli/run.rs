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
use crate::ui::events::Summary;
use crate::ui::reporter::{Reporter, RowState};

pub fn run(
    pipeline: &Pipeline,
    dag: &Dag,
    reporter: &mut Reporter,
    args: &RunArgs,
    running: &Running,
    reload: &dyn Fn() -> Result<(Pipeline, Dag)>,
) -> Result<i32> {
    if args.jobs == Some(0) {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    if args.dry_run {
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
        return Ok(exit::OK);
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
    };
    let mut ran: Vec<history::RanStage> = Vec::new();
    let mut started: std::collections::HashMap<String, usize> = Default::default();
    let begun = history::start(pipeline);
    // A confirm stage's trainings are known once its search has finished:
    // the searches run first, then the pipeline is loaded again with them.
    let searches = searches_first(pipeline, dag, &opts.targets)?;
    let mut first: Option<Summary> = None;
    let reloaded;
    let (pipeline, dag) = if searches.is_empty() || args.only_pull {
        (pipeline, dag)
    } else {
        let opts1 = RunOptions {
            targets: searches,
            ..opts.clone()
        };
        let s1 = crate::engine::run::run(pipeline, dag, &store, &hashes, &opts1, &mut |e| {
            note_ran(&mut ran, &mut started, &e);
            reporter.event(e)
        })?;
        // With --keep-going a search with a failed trial goes on to its
        // confirm (the trial is not run twice).
        let stop = (s1.failed > 0 && !opts.keep_going) || s1.interrupted > 0 || running.stopping();
        first = Some(s1);
        if stop {
            (pipeline, dag)
        } else {
            reloaded = reload()?;
            (&reloaded.0, &reloaded.1)
        }
    };
    let summary: Summary = match first {
        Some(s1)
            if (s1.failed > 0 && !opts.keep_going) || s1.interrupted > 0 || running.stopping() =>
        {
            s1
        }
        first => {
            let opts2 = RunOptions {
                failed_before: first
                    .as_ref()
                    .map(|s| s.failed_stages.clone())
                    .unwrap_or_default(),
                ..opts.clone()
            };
            let s2 = crate::engine::run::run(pipeline, dag, &store, &hashes, &opts2, &mut |e| {
                note_ran(&mut ran, &mut started, &e);
                reporter.event(e)
            })?;
            match first {
                Some(s1) => merge(s1, s2),
                None => s2,
            }
        }
    };
    reporter.summary(&summary);
    if !ran.is_empty() {
        let path = history::path(pipeline);
        // Only what is fresh now is the result of the parameters
        // recorded: a stale evaluation measured something else.
        let fresh: std::collections::HashSet<String> = status_rows(pipeline, dag, &[], &[], false)?
            .into_iter()
            .filter(|r| r.state == RowState::Fresh)
            .map(|r| r.stage)
            .collect();
        let record = history::record(pipeline, begun, ran, &|s| fresh.contains(s));
        if let Err(e) = history::append(&path, record) {
            // The run itself succeeded; its record is what is lost.
            let cause = std::error::Error::source(&e)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            reporter.event(crate::ui::events::Event::Warning {
                text: format!(
                    "this run is not in the history: {e}{cause}; make {} a writable file (or move it away) for later runs to be recorded",
                    path.display()
                ),
            });
        }
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

/// The search report stages that the confirm stages of this run wait for
/// (or may get new finalists from): run first. Empty when none.
fn searches_first(pipeline: &Pipeline, dag: &Dag, targets: &[String]) -> Result<Vec<String>> {
    let n = pipeline.stages.len();
    let chosen = if targets.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(targets)?
    };
    let mask = dag.closure(pipeline, &chosen);
    let mut out: Vec<String> = Vec::new();
    for (i, s) in pipeline.stages.iter().enumerate() {
        if !mask[i] || s.kind != stages::Kind::Confirm {
            continue;
        }
        for &j in &s.needs {
            let r = &pipeline.stages[j];
            if spec::confirm::is_search_report(r) && !out.contains(&r.name) {
                out.push(r.name.clone());
            }
        }
    }
    Ok(out)
}

/// Two phases' summaries as one: what the first ran, the second finds fresh.
fn merge(a: Summary, b: Summary) -> Summary {
    let again = a.ran + a.restored;
    Summary {
        ran: a.ran + b.ran,
        cached: b.cached.saturating_sub(again),
        restored: a.restored + b.restored,
        failed: a.failed + b.failed,
        skipped: a.skipped + b.skipped,
        not_pulled: a.not_pulled + b.not_pulled,
        not_started: b.not_started,
        interrupted: a.interrupted + b.interrupted,
        wall: a.wall + b.wall,
        done: a.done.into_iter().chain(b.done).collect(),
        failed_stages: a.failed_stages.into_iter().chain(b.failed_stages).collect(),
    }
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
            stages::runtime::cuda(d, 0).map_err(Error::Usage)?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn probe_gpus(_: &Pipeline) -> Result<()> {
    // Refused when the pipeline loaded.
    Ok(())
}
