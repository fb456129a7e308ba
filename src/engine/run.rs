//! Runs stale stages in dependency order, independent ones in parallel.

use crate::engine::board::{Assigned, Board, Budget, Outcome, Planned};
use crate::engine::context::{failed, Ctx};
use crate::engine::decide::{decide, Decision, Stale};
use crate::engine::executor::Executor;
use crate::engine::perform::{run_stage, Work};
use crate::engine::plan::{Planner, State};
use crate::engine::restore::{restore_run, try_restore, Restored};
use crate::engine::schedule::{Grant, Pool};
use crate::error::{Error, Result};
use crate::spec::graph::Dag;
use crate::spec::ExecutorKind;
use crate::spec::{Pipeline, Stage};
use crate::state::hash::HashCache;
use crate::state::remote::Fetched;
use crate::state::runs::RunEntry;
use crate::state::store::{Digest, Store};
use crate::ui::events::{Event, Failure, Summary};
use stages::asha::Known;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub targets: Vec<String>,
    pub force: Vec<String>,
    pub force_all: bool,
    pub keep_going: bool,
    pub jobs: Option<usize>,
    pub executor: Option<ExecutorKind>,
    /// Where started processes and jobs are registered for a stop.
    pub running: crate::engine::interrupt::Running,
    /// Where results of stale stages are fetched from before they run.
    pub remote: Option<std::sync::Arc<crate::state::remote::Remote>>,
    /// Fetch and restore only: a stage that would have to run does not.
    pub only_pull: bool,
    /// Stages that failed earlier in this command (a search's trial, before
    /// the confirm that follows it): taken as failed, not run again.
    pub failed_before: std::collections::BTreeSet<String>,
    /// The run's live directory (see `live`).
    pub live: Option<PathBuf>,
}

/// Jobs submitted at once to Slurm when `--jobs` does not say.
pub const SLURM_JOBS: usize = 100;

enum Msg {
    Event(Event),
    /// A stage's end, and for a search's trial what its outputs say.
    Done(usize, Result<Outcome>, Option<Known>),
}

/// Runs the targets (all stages when none) and what they need. The caller
/// holds the cache lock. Errors are environment errors (I/O, the cache);
/// stage failures are reported as events and counted in the summary.
pub fn run(
    pipeline: &Pipeline,
    dag: &Dag,
    store: &Store,
    hashes: &HashCache,
    opts: &RunOptions,
    report: &mut dyn FnMut(Event),
) -> Result<Summary> {
    let start = Instant::now();
    let n = pipeline.stages.len();
    let targets = if opts.targets.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(&opts.targets)?
    };
    let mask = dag.closure(pipeline, &targets);
    let mut forced = vec![opts.force_all; n];
    for i in pipeline.select(&opts.force)? {
        forced[i] = true;
    }
    let (executor, mut pool) = executor_and_pool(pipeline, store, opts)?;
    store.prepare()?;
    if let Executor::Slurm(s) = &executor {
        for (stage, job) in s.cancel_leftovers() {
            report(Event::LeftoverCancelled { stage, job });
        }
    }
    report(Event::Planned {
        total: mask.iter().filter(|&&m| m).count(),
    });
    let ctx = Ctx {
        running: &opts.running,
        remote: opts.remote.as_deref(),
        only_pull: opts.only_pull,
        failed_before: &opts.failed_before,
        planner: Planner {
            pipeline,
            store,
            hashes,
        },
        pipeline,
        store,
        jobs: match executor {
            Executor::Slurm(_) => opts.jobs.unwrap_or(SLURM_JOBS),
            _ => opts.jobs.unwrap_or(pipeline.settings.jobs),
        },
        executor,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        run_info: std::sync::OnceLock::new(),
        live: opts.live.clone(),
    };
    // What is fresh, assessed as `status` does (level by level, in
    // parallel): those stages are settled in the loop's thread, without a
    // thread, a grant or a scan of the ready set each, so a run with
    // nothing to do costs what `status` costs.
    // A fresh trial's outputs say how far it trained.
    let planned: Vec<Planned> = ctx
        .planner
        .assess_all(dag.order(), &mask, &forced)?
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let Some(a) = a else {
                return Planned::default();
            };
            let fresh = a.state == State::Fresh;
            let trial = (fresh && pipeline.is_trial(i))
                .then(|| ctx.planner.trial_progress(&pipeline.stages[i]))
                .flatten();
            Planned {
                digest: a.digest,
                fresh,
                trial,
            }
        })
        .collect();
    let mut board = Board::new(pipeline, dag, mask, planned, &pool);
    board.settle(board.roots(), report);
    let env_error = drive(
        &ctx,
        &mut board,
        &mut pool,
        &forced,
        opts.keep_going,
        report,
    );
    let mut summary = board.into_summary();
    summary.wall = start.elapsed();
    hashes.save();
    match env_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Where stages run, and the resources they share there.
fn executor_and_pool(
    pipeline: &Pipeline,
    store: &Store,
    opts: &RunOptions,
) -> Result<(Executor, Pool)> {
    Ok(match opts.executor.unwrap_or(pipeline.settings.executor) {
        ExecutorKind::Local => (
            Executor::Local(opts.running.children.clone()),
            Pool::local(
                opts.jobs.unwrap_or(pipeline.settings.jobs),
                crate::engine::schedule::visible_gpus(),
                crate::engine::schedule::Memory::read(),
            ),
        ),
        ExecutorKind::Slurm => (
            Executor::Slurm(crate::engine::executor::slurm::Slurm::new(
                store.home(),
                opts.running.jobs.clone(),
            )?),
            Pool::jobs(opts.jobs.unwrap_or(SLURM_JOBS)),
        ),
    })
}

/// Starts what can start, one thread per stage, and takes in what they
/// report until nothing runs; the first environment error, if any.
fn drive(
    ctx: &Ctx<'_>,
    board: &mut Board<'_>,
    pool: &mut Pool,
    forced: &[bool],
    keep_going: bool,
    report: &mut dyn FnMut(Event),
) -> Option<Error> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut grants: BTreeMap<usize, Grant> = BTreeMap::new();
    let mut running = 0usize;
    let mut stop = false;
    let mut env_error: Option<Error> = None;
    std::thread::scope(|scope| loop {
        // After a failure (without --keep-going) nothing new starts.
        let start = if stop { Vec::new() } else { board.admit(pool) };
        for (i, assigned) in start {
            if let Ok(g) = &assigned {
                grants.insert(i, g.clone());
                report(Event::Admitted {
                    stage: board.pipeline.stages[i].name.clone(),
                    waited: board.waited(i),
                    cpus: g.cpus,
                    gpus: g.gpus.len(),
                });
            }
            running += 1;
            if ctx.failed_before.contains(&board.pipeline.stages[i].name) {
                let _ = tx.send(Msg::Done(i, Ok(Outcome::FailedBefore), None));
                continue;
            }
            let inputs = board.inputs(i);
            let budget = board.budget(i);
            let grow = growable(ctx, i).then(|| grow_path(ctx, i));
            let tx = tx.clone();
            let force = forced[i];
            let trial = board.is_trial(i);
            scope.spawn(move || {
                let send = |e: Event| {
                    let _ = tx.send(Msg::Event(e));
                };
                // A panic is a fault of the tool: the run still hears of
                // it and ends (it waited for ever for this stage before).
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    process(ctx, i, inputs, (force, budget, grow), &assigned, &send)
                }))
                .unwrap_or_else(|panic| Err(panicked(&ctx.pipeline.stages[i].name, &*panic)));
                // Read here, not on the loop's thread.
                let trial = (trial && r.as_ref().is_ok_and(Outcome::has_result))
                    .then(|| ctx.planner.trial_progress(&ctx.pipeline.stages[i]))
                    .flatten();
                let _ = tx.send(Msg::Done(i, r, trial));
            });
        }
        // No idle core: what nothing ready can use goes to the running
        // training with the fewest threads, from its next epoch.
        if !stop {
            while pool.free_cores() > 0 {
                let Some((&i, g)) = grants
                    .iter_mut()
                    .filter(|(&i, _)| growable(ctx, i))
                    .min_by_key(|(_, g)| g.cpus)
                else {
                    break;
                };
                let extra = pool.free_cores();
                pool.grow(g, extra);
                let path = grow_path(ctx, i);
                // Best effort: a training that misses it keeps its threads.
                let _ =
                    crate::state::files::write_atomic(&path, format!("{}\n", g.cpus).as_bytes());
            }
        }
        if running == 0 {
            break;
        }
        let Ok(msg) = rx.recv() else { break };
        let (i, result, trial) = match msg {
            Msg::Event(e) => {
                report(e);
                continue;
            }
            Msg::Done(i, result, trial) => (i, result, trial),
        };
        running -= 1;
        if let Some(g) = grants.remove(&i) {
            pool.release(g);
        }
        let outcome = result.unwrap_or_else(|e| {
            // The cache or workspace failed us: stop cleanly.
            report(Event::Failed {
                stage: board.pipeline.stages[i].name.clone(),
                failure: Failure::Environment {
                    error: e.to_string(),
                },
                tail: None,
                log: None,
            });
            env_error.get_or_insert(e);
            stop = true;
            Outcome::Failed
        });
        if !board.finished(i, outcome, trial, report) && !keep_going {
            stop = true;
        }
    });
    env_error
}

/// The error for a stage whose thread panicked.
fn panicked(stage: &str, panic: &(dyn std::any::Any + Send)) -> Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    Error::Internal(format!(
        "{stage}: {what} (a bug in fmnist-pipe; the run stopped, the cache is consistent: run again)"
    ))
}

/// Carries out what the planner decides for one stage: nothing, a
/// restore (from its record, the run cache or a remote), or a run.
fn process(
    ctx: &Ctx<'_>,
    i: usize,
    inputs: BTreeMap<String, Digest>,
    (force, budget, grow): (bool, Option<Budget>, Option<PathBuf>),
    assigned: &Assigned,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    let stage = &ctx.pipeline.stages[i];
    let s = match decide(&ctx.planner, i, &inputs, force, budget.as_ref())? {
        Decision::Fresh(digest) => {
            send(Event::Cached {
                stage: stage.name.clone(),
            });
            return Ok(Outcome::Cached(digest));
        }
        Decision::Fail(failure) => return failed(send, stage, failure, None),
        Decision::Stale(s) => *s,
    };
    let Stale {
        reason,
        fp,
        key,
        record,
        mut entry,
        fetch,
        own,
        recheck,
    } = s;
    let mut from = None;
    match fetch_remote(ctx, stage, fetch, send)? {
        Fetch::Got(e, remote) => {
            entry = Some(*e);
            from = Some(remote);
        }
        Fetch::Nothing => {}
        Fetch::Failed(failure) => return failed(send, stage, failure, None),
    }
    let restored = match (&entry, &record, own) {
        (Some(entry), _, _) => restore_run(
            ctx,
            stage,
            entry,
            (Some(fp.clone()), &key, from),
            record.as_ref(),
            send,
        )?,
        (None, Some(record), Some(missing)) => try_restore(ctx, stage, record, missing, send)?,
        _ => Restored::No(reason),
    };
    let reason = match restored {
        Restored::Done(outcome) => return Ok(outcome),
        Restored::No(reason) => reason,
    };
    if ctx.only_pull {
        send(Event::NotPulled {
            stage: stage.name.clone(),
            remote: ctx.remote.map(|r| r.name.clone()).unwrap_or_default(),
            reason,
        });
        return Ok(Outcome::NotPulled);
    }
    let grant = match assigned {
        Ok(g) => g,
        Err(why) => {
            return failed(
                send,
                stage,
                Failure::CannotRunHere { why: why.clone() },
                None,
            )
        }
    };
    let _computing = claim(ctx, stage, &key, send)?;
    if let Some(entry) = recheck
        .then(|| ctx.planner.remembered(stage, &key).ok().flatten())
        .flatten()
    {
        if let Restored::Done(outcome) = restore_run(
            ctx,
            stage,
            &entry,
            (Some(fp.clone()), &key, None),
            record.as_ref(),
            send,
        )? {
            return Ok(outcome);
        }
    }
    // A trial pauses at its next level: a promotion's, or the first at
    // or after where its saved state stands.
    let stop_after = budget
        .map(|b| b.stop_after(|| ctx.planner.resume_point(stage, &key).map_or(0, |r| r.epoch)));
    // Inputs with no result: a search's report runs after a failed trial.
    let no_result: Vec<String> = inputs
        .iter()
        .filter(|(_, d)| d.named.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    let work = Work {
        reason,
        fp,
        key,
        prev: record.as_ref(),
        grant,
        no_result: &no_result,
        force,
        stop_after,
        grow,
    };
    run_stage(ctx, stage, work, send)
}

/// What a remote gave for a stage.
enum Fetch {
    /// A completed run, and the remote's name.
    Got(Box<RunEntry>, String),
    Nothing,
    /// `pull` only: the remote's result is damaged.
    Failed(Failure),
}

/// Asks the run's remote for each of `keys` in turn: what neither the
/// workspace nor the cache has, a remote may. A damaged result is said,
/// and the stage runs here instead (`pull` fails it).
fn fetch_remote(
    ctx: &Ctx<'_>,
    stage: &Stage,
    keys: Vec<(String, Option<usize>)>,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Fetch> {
    let Some(remote) = ctx.remote.filter(|_| !keys.is_empty()) else {
        return Ok(Fetch::Nothing);
    };
    let mut fetched = Fetched::Absent;
    for (k, paused) in keys {
        fetched = match remote.fetch(ctx.store, &k, paused)? {
            Fetched::Absent => continue,
            other => other,
        };
        break;
    }
    Ok(match fetched {
        Fetched::Got(e) => Fetch::Got(e, remote.name.clone()),
        Fetched::Absent => Fetch::Nothing,
        Fetched::Damaged(damage) => {
            let failure = Failure::RemoteDamaged {
                remote: remote.name.clone(),
                damage,
            };
            if ctx.only_pull {
                return Ok(Fetch::Failed(failure));
            }
            send(Event::NotFetched {
                stage: stage.name.clone(),
                failure,
            });
            Fetch::Nothing
        }
    })
}

/// One computation of a result at a time, across runs and projects: a
/// run that finds it being computed waits (and says whose run it waits
/// for), then holds it until the returned claim is dropped.
fn claim(
    ctx: &Ctx<'_>,
    stage: &Stage,
    key: &str,
    send: &(dyn Fn(Event) + Sync),
) -> Result<crate::state::store::LockGuard> {
    let who = format!(
        "pid {} on {} ({} in {})",
        std::process::id(),
        crate::state::record::hostname(),
        stage.name,
        // Absolute: the waiting project may lie anywhere.
        crate::spec::protect::physical(&ctx.pipeline.settings.project_dir).display()
    );
    ctx.store.claim(key, &who, &mut |holder| {
        send(Event::Waiting {
            stage: stage.name.clone(),
            holder: holder.to_string(),
        })
    })
}

/// Trainings on this machine whose threads the scheduler chooses: they
/// take more when a core comes free.
fn growable(ctx: &Ctx<'_>, i: usize) -> bool {
    let s = &ctx.pipeline.stages[i];
    matches!(ctx.executor, Executor::Local(_))
        && s.kind == stages::Kind::Train
        && s.resources.cpus.is_none()
        && !s.device.as_deref().is_some_and(stages::runtime::is_cuda)
}

/// Where a training is offered more threads: this run's own file, so
/// that one a killed run left is never read.
fn grow_path(ctx: &Ctx<'_>, i: usize) -> PathBuf {
    ctx.store.tmp_dir().join(format!(
        "grow-{}-{}",
        std::process::id(),
        ctx.pipeline.stages[i].name
    ))
}
