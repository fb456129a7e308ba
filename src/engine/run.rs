//! Runs stale stages in dependency order, independent ones in parallel.

use crate::engine::executor::{stage_env, Executor, JobFile, Shell, StageFailure};
use crate::engine::plan::{Assessment, Fp, Planner, State};
use crate::engine::schedule::{Demand, Grant, Pool, Ready};
use crate::engine::txn::{Txn, Unproduced};
use crate::error::{Error, Result};
use crate::spec::graph::Dag;
use crate::spec::ExecutorKind;
use crate::spec::{Pipeline, Stage};
use crate::state::files::remove_any;
use crate::state::fingerprint::DirtyReason;
use crate::state::fingerprint::Fingerprint;
use crate::state::hash::HashCache;
use crate::state::ownership::{self, Refusal};
use crate::state::remote::Fetched;
use crate::state::runs::{self, RunEntry};
use crate::state::store::{move_into_place, Digest, Record, RestoreError, Store};
use crate::ui::events::{Event, Failure, Remedy, Summary};
use stages::asha::{Asha, Known};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
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
}

/// Jobs submitted at once to Slurm when `--jobs` does not say.
pub const SLURM_JOBS: usize = 100;

enum Outcome {
    Cached(Digest),
    Restored(Digest),
    Ran(Digest),
    Failed,
    /// Failed earlier in this command (said then, counted then).
    FailedBefore,
    /// Cut short by a stop signal.
    Interrupted,
    /// `pull`: neither here nor on the remote; not run.
    NotPulled,
}

enum Msg {
    Event(Event),
    Done(usize, Result<Outcome>),
}

struct Ctx<'a> {
    running: &'a crate::engine::interrupt::Running,
    remote: Option<&'a crate::state::remote::Remote>,
    only_pull: bool,
    /// See [`RunOptions::failed_before`].
    failed_before: &'a std::collections::BTreeSet<String>,
    planner: Planner<'a>,
    pipeline: &'a Pipeline,
    store: &'a Store,
    executor: Executor,
    /// When the run began (seconds since the epoch), its parallel jobs,
    /// and what it is, described once for the kinds that report it.
    started_unix: u64,
    jobs: usize,
    run_info: std::sync::OnceLock<stages::contract::RunInfo>,
}

/// What the scheduler gave a stage, or why it cannot run here.
type Assigned = std::result::Result<Grant, String>;

/// How far a search's trial trains this time.
#[derive(Debug, Clone)]
struct Budget {
    /// The epochs at which it pauses (the rungs, then the end).
    levels: Vec<usize>,
    /// Promoted from a rung (epochs done) to this epoch.
    promote: Option<(usize, usize)>,
}

impl Budget {
    /// Where a run that starts after `done` epochs pauses.
    fn stop_for(&self, done: usize) -> usize {
        let last = self.levels.last().copied().unwrap_or(0);
        self.levels
            .iter()
            .copied()
            .find(|&l| l >= done.max(1))
            .unwrap_or(last)
    }
}

fn demand(s: &Stage) -> Demand {
    Demand {
        cpus: s.resources.cpus,
        parallel: s.kind.parallel(),
        gpus: s.resources.gpus,
        mem_mb: s.resources.mem_mb,
    }
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
            report(Event::Warning {
                text: format!("cancelled Slurm job {job} ({stage}), left queued or running by a run that was killed; {stage} runs again if it is stale"),
            });
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
    };
    // What is fresh, assessed as `status` does (level by level, in
    // parallel): those stages are settled in the loop's thread, without a
    // thread, a grant or a scan of the ready set each, so a run with
    // nothing to do costs what `status` costs.
    let planned: Vec<(Option<Digest>, bool)> = ctx
        .planner
        .assess_all(dag.order(), &mask, &forced)?
        .into_iter()
        .map(|a| a.map_or((None, false), |a| (a.digest, a.state == State::Fresh)))
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
    let mut summary = board.summary;
    summary.not_started = (0..n).filter(|&i| board.mask[i] && !board.done[i]).count();
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
            }
            running += 1;
            if ctx.failed_before.contains(&board.pipeline.stages[i].name) {
                let _ = tx.send(Msg::Done(i, Ok(Outcome::FailedBefore)));
                continue;
            }
            let inputs = board.inputs(i);
            let budget = board.budget(i);
            let grow = growable(ctx, i).then(|| grow_path(ctx, i));
            let tx = tx.clone();
            let force = forced[i];
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
                let _ = tx.send(Msg::Done(i, r));
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
        let (i, result) = match msg {
            Msg::Event(e) => {
                report(e);
                continue;
            }
            Msg::Done(i, result) => (i, result),
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
        if !board.finished(i, outcome, report) && !keep_going {
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

/// A search as the run drives it: the jobs' sequence, what is known of
/// each trial, which are queued or running, and whether it has settled.
struct Search {
    asha: Asha,
    known: Vec<Option<Known>>,
    busy: Vec<bool>,
    settled: bool,
}

impl Search {
    fn new(plan: &crate::spec::SearchPlan) -> Search {
        Search {
            asha: Asha {
                rungs: plan.rungs.clone(),
                epochs: plan.epochs,
                keep: plan.keep,
            },
            known: vec![None; plan.trials.len()],
            busy: vec![false; plan.trials.len()],
            settled: false,
        }
    }
}

/// The run's bookkeeping: what waits for what, what is ready, what is
/// done, and the tally.
struct Board<'a> {
    pipeline: &'a Pipeline,
    dag: &'a Dag,
    /// The stages this run covers: the targets and what they need.
    mask: Vec<bool>,
    /// Each stage's place in dependency order: its priority.
    pos: Vec<usize>,
    /// Inputs each stage still waits for.
    pending: Vec<usize>,
    digests: Vec<Option<Digest>>,
    done: Vec<bool>,
    /// The digest each stage was assessed with, and whether it was fresh.
    planned: Vec<(Option<Digest>, bool)>,
    /// What this machine can never give a stage (more GPUs or memory than
    /// it has): such a stage fails as soon as it is ready.
    impossible: Vec<Option<String>>,
    ready: Ready,
    doomed: Vec<usize>,
    summary: Summary,
    /// Each search's early stopping, and each trial stage's (search, trial).
    searches: Vec<Search>,
    trial_of: Vec<Option<(usize, usize)>>,
    /// A promoted trial's rung and the epoch it goes on to.
    promoted: Vec<Option<(usize, usize)>>,
    /// A trial assessed fresh and not yet found otherwise: its record is
    /// about to be taken in.
    expected: Vec<bool>,
}

impl<'a> Board<'a> {
    fn new(
        pipeline: &'a Pipeline,
        dag: &'a Dag,
        mask: Vec<bool>,
        planned: Vec<(Option<Digest>, bool)>,
        pool: &Pool,
    ) -> Self {
        let n = pipeline.stages.len();
        let pending = (0..n)
            .map(|i| {
                if mask[i] {
                    pipeline.stages[i].needs.len()
                } else {
                    0
                }
            })
            .collect();
        // Ready stages start in dependency order, trainings after every
        // other kind: an evaluation (seconds) takes the first free core
        // ahead of a training not yet started (minutes), so results
        // appear while the study runs.
        let mut pos = vec![0; n];
        for (k, &i) in dag.order().iter().enumerate() {
            pos[i] = k + if pipeline.stages[i].kind == stages::Kind::Train {
                n
            } else {
                0
            };
        }
        let ready = Ready::new(pipeline.stages.iter().map(demand).collect());
        let impossible = (0..n)
            .map(|i| mask[i].then(|| pool.impossible(ready.demand(i))).flatten())
            .collect();
        let mut trial_of = vec![None; n];
        for (s, plan) in pipeline.searches.iter().enumerate() {
            for (t, &i) in plan.trials.iter().enumerate() {
                trial_of[i] = Some((s, t));
            }
        }
        let expected = (0..n)
            .map(|i| trial_of[i].is_some() && planned[i].1)
            .collect();
        Board {
            pipeline,
            dag,
            mask,
            pos,
            pending,
            digests: vec![None; n],
            done: vec![false; n],
            planned,
            impossible,
            ready,
            doomed: Vec::new(),
            summary: Summary::default(),
            searches: pipeline.searches.iter().map(Search::new).collect(),
            expected,
            trial_of,
            promoted: vec![None; n],
        }
    }

    /// The covered stages that need nothing.
    fn roots(&self) -> Vec<usize> {
        (0..self.mask.len())
            .filter(|&i| self.mask[i] && self.pending[i] == 0)
            .collect()
    }

    /// Stages whose inputs are all done: a fresh one (whose inputs came out
    /// as assessed) settles at once and may free its dependents; the
    /// others wait for the scheduler.
    fn settle(&mut self, first: Vec<usize>, report: &mut dyn FnMut(Event)) {
        let mut work = first;
        while let Some(i) = work.pop() {
            let stage = &self.pipeline.stages[i];
            let as_assessed = stage
                .needs
                .iter()
                .all(|&j| self.digests[j] == self.planned[j].0);
            match (&self.planned[i], as_assessed) {
                ((Some(d), true), true) => {
                    report(Event::Cached {
                        stage: stage.name.clone(),
                    });
                    self.summary.cached += 1;
                    self.summary.done.insert(stage.name.clone());
                    self.digests[i] = Some(d.clone());
                    self.done[i] = true;
                    if self.trial_of[i].is_some() {
                        // A trial waits for the search to settle.
                        work.extend(self.trial_known(i));
                    } else {
                        work.extend(self.free_dependents(i));
                    }
                }
                _ if self.impossible[i].is_some() => self.doomed.push(i),
                _ => {
                    // A trial to run after all: the search does not wait for it.
                    if self.expected[i] {
                        self.expected[i] = false;
                        if let Some((s, _)) = self.trial_of[i] {
                            work.extend(self.search_step(s));
                        }
                    }
                    self.ready.insert(self.pos[i], i)
                }
            }
        }
    }

    /// `i` is done: its dependents that now wait for nothing.
    fn free_dependents(&mut self, i: usize) -> Vec<usize> {
        let mut freed = Vec::new();
        for c in self.dag.dependents(i) {
            if self.mask[c] {
                self.pending[c] -= 1;
                if self.pending[c] == 0 {
                    freed.push(c);
                }
            }
        }
        freed
    }

    /// What starts now: the stages that can never run here (to fail), and
    /// what the pool admits. They leave the ready queue.
    fn admit(&mut self, pool: &mut Pool) -> Vec<(usize, Assigned)> {
        let mut start: Vec<(usize, Assigned)> = Vec::new();
        for i in self.doomed.drain(..) {
            start.push((i, Err(self.impossible[i].clone().unwrap_or_default())));
        }
        // With no free slot nothing can start: the queue is not read.
        if pool.has_room() {
            for (i, g) in pool.admit_queue(&self.ready) {
                start.push((i, Ok(g)));
            }
        }
        for (i, _) in &start {
            self.ready.remove(self.pos[*i], *i);
            if let Some((s, t)) = self.trial_of[*i] {
                self.searches[s].busy[t] = true;
            }
        }
        start
    }

    /// The digests of the stages `i` needs, by name.
    fn inputs(&self, i: usize) -> BTreeMap<String, Digest> {
        self.pipeline.stages[i]
            .needs
            .iter()
            .map(|&j| {
                (
                    self.pipeline.stages[j].name.clone(),
                    self.digests[j].clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Takes in how stage `i` ended; false when it failed (everything
    /// downstream of it is then skipped).
    fn finished(&mut self, i: usize, outcome: Outcome, report: &mut dyn FnMut(Event)) -> bool {
        self.done[i] = true;
        let digest = match outcome {
            Outcome::Cached(d) => {
                self.summary.cached += 1;
                d
            }
            Outcome::Restored(d) => {
                self.summary.restored += 1;
                d
            }
            Outcome::Ran(d) => {
                self.summary.ran += 1;
                d
            }
            Outcome::Failed | Outcome::FailedBefore => {
                let name = &self.pipeline.stages[i].name;
                if matches!(outcome, Outcome::Failed) {
                    self.summary.failed += 1;
                    self.summary.failed_stages.insert(name.clone());
                }
                // A failed trial is a trial without a score: the search
                // goes on with the others, and its report says so.
                if let Some((s, t)) = self.trial_of[i] {
                    let search = &mut self.searches[s];
                    search.busy[t] = false;
                    search.known[t] = Some(Known {
                        val_acc: Vec::new(),
                        finished: true,
                    });
                    let freed = self.search_step(s);
                    self.settle(freed, report);
                    return false;
                }
                self.skip_downstream(i, report, true);
                return false;
            }
            // What depends on it is left not started: the run is ending.
            Outcome::Interrupted => {
                self.summary.interrupted += 1;
                return false;
            }
            Outcome::NotPulled => {
                self.summary.not_pulled += 1;
                self.skip_downstream(i, report, false);
                return true;
            }
        };
        self.digests[i] = Some(digest);
        self.summary
            .done
            .insert(self.pipeline.stages[i].name.clone());
        let freed = if self.trial_of[i].is_some() {
            self.trial_known(i)
        } else {
            self.free_dependents(i)
        };
        self.settle(freed, report);
        true
    }

    /// What a trial's run (or record) says of it, taken in; the job the
    /// search waits for queued, and once it has settled, its dependents
    /// freed.
    fn trial_known(&mut self, i: usize) -> Vec<usize> {
        let Some((s, t)) = self.trial_of[i] else {
            return Vec::new();
        };
        let dir = self
            .pipeline
            .settings
            .project_dir
            .join(&self.pipeline.stages[i].outs[0]);
        // Unreadable outputs: the report says so; the search goes on.
        let known = match stages::train::progress_of(&dir) {
            Some((val_acc, finished)) => Known { val_acc, finished },
            None => Known {
                val_acc: Vec::new(),
                finished: true,
            },
        };
        let search = &mut self.searches[s];
        search.known[t] = Some(known);
        search.busy[t] = false;
        self.search_step(s)
    }

    /// Queues the job search `s` waits for, ahead of trials not yet
    /// started; the stages freed once it has settled.
    fn search_step(&mut self, s: usize) -> Vec<usize> {
        let plan = &self.pipeline.searches[s];
        if self.searches[s].settled {
            return Vec::new();
        }
        // A trial that is fresh but not yet taken in (its inputs are
        // settling) decides jobs: wait for it. Trials still to train hold
        // nothing up: free cores start them ahead.
        let waiting = plan
            .trials
            .iter()
            .enumerate()
            .any(|(t, &i)| self.expected[i] && self.searches[s].known[t].is_none());
        if waiting {
            return Vec::new();
        }
        let search = &self.searches[s];
        let sequence = search.asha.simulate(&search.known);
        let Some((t, to)) = sequence.next else {
            self.searches[s].settled = true;
            let trials = plan.trials.clone();
            return trials
                .iter()
                .flat_map(|&i| self.free_dependents(i))
                .collect();
        };
        let i = plan.trials[t];
        if self.searches[s].busy[t] || !self.mask[i] {
            return Vec::new();
        }
        let n = self.pipeline.stages.len();
        let was = self.pos[i];
        // Ahead of trials not yet started: promotions first (ASHA).
        let ahead = if was >= n { was - n } else { was };
        match &self.searches[s].known[t] {
            Some(k) => {
                self.promoted[i] = Some((k.val_acc.len(), to));
                self.searches[s].busy[t] = true;
                self.done[i] = false;
                self.pos[i] = ahead;
                self.ready.insert(ahead, i);
            }
            // Not run yet: already queued as a new trial; it goes first.
            None if self.ready.contains(was, i) => {
                self.ready.remove(was, i);
                self.pos[i] = ahead;
                self.ready.insert(ahead, i);
            }
            None => {}
        }
        Vec::new()
    }

    /// How far a stage trains this time: for a trial, its levels and any
    /// promotion.
    fn budget(&self, i: usize) -> Option<Budget> {
        let (s, _) = self.trial_of[i]?;
        Some(Budget {
            levels: self.searches[s].asha.levels(),
            promote: self.promoted[i],
        })
    }

    fn skip_downstream(&mut self, i: usize, report: &mut dyn FnMut(Event), failed: bool) {
        let mut stack: Vec<usize> = self.dag.dependents(i).collect();
        while let Some(c) = stack.pop() {
            if self.mask[c] && !self.done[c] {
                self.done[c] = true;
                self.summary.skipped += 1;
                self.ready.remove(self.pos[c], c);
                report(Event::Skipped {
                    stage: self.pipeline.stages[c].name.clone(),
                    because: self.pipeline.stages[i].name.clone(),
                    failed,
                });
                stack.extend(self.dag.dependents(c));
            }
        }
    }
}

/// Decides and does what one stage needs: nothing, a restore, or a run.
/// The stage's record is read and its fingerprint built once, by the
/// assessment.
fn process(
    ctx: &Ctx<'_>,
    i: usize,
    inputs: BTreeMap<String, Digest>,
    (force, budget, grow): (bool, Option<Budget>, Option<PathBuf>),
    assigned: &Assigned,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    let stage = &ctx.pipeline.stages[i];
    let known: Vec<(String, Option<Digest>)> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let a = ctx.planner.assess(i, &known, force)?;
    let promoted = budget.as_ref().and_then(|b| b.promote);
    let reason = match (a.state, promoted) {
        // A trial paused at a rung, promoted: it trains on from its state.
        (State::Fresh, Some((from, to))) => DirtyReason::Promoted {
            from,
            to,
            epochs: budget
                .as_ref()
                .and_then(|b| b.levels.last().copied())
                .unwrap_or(to),
        },
        (State::Fresh, None) => {
            send(Event::Cached {
                stage: stage.name.clone(),
            });
            return Ok(Outcome::Cached(a.digest.unwrap_or_default()));
        }
        (State::New, _) => DirtyReason::NeverRun,
        (State::Dirty(r), _) => r,
    };
    if let DirtyReason::WaitsForSearch { search } = &reason {
        return failed(
            send,
            stage,
            Failure::Error {
                chain: format!("{} waits for the search {search}, which has not finished: run the whole pipeline (the search runs first, then its finalists)", stage.name),
            },
            None,
        );
    }
    let Assessment {
        record,
        fingerprint,
        key,
        mut entry,
        ..
    } = a;
    let (fp, key) = match (fingerprint, key) {
        (Some(fp), Some(key)) => (fp, key),
        _ => {
            let named = inputs
                .iter()
                .map(|(n, d)| (n.clone(), d.named.clone()))
                .collect();
            match ctx.planner.fingerprint(stage, named)? {
                Fp::Ok(fp) => {
                    let key = runs::key(stage, &fp, &inputs);
                    (fp, key)
                }
                Fp::DepMissing(d) => {
                    return failed(send, stage, Failure::DepMissing { path: d }, None);
                }
                Fp::DepUnreadable { path, error } => {
                    return failed(send, stage, Failure::DepUnreadable { path, error }, None);
                }
            }
        }
    };
    // What neither the workspace nor the cache has, the remote may.
    let mut from = None;
    if let Some(remote) = ctx
        .remote
        .filter(|_| entry.is_none() && fetchable(&reason) && promoted.is_none())
    {
        // A trial's paused runs too, once its whole training is not there.
        let mut fetched = Fetched::Absent;
        for (k, paused) in ctx.planner.run_keys(stage, &key) {
            fetched = match remote.fetch(ctx.store, &k, paused)? {
                Fetched::Absent => continue,
                other => other,
            };
            break;
        }
        match fetched {
            Fetched::Got(e) => {
                entry = Some(*e);
                from = Some(remote.name.clone());
            }
            Fetched::Absent => {}
            Fetched::Damaged(damage) => {
                let failure = Failure::RemoteDamaged {
                    remote: remote.name.clone(),
                    damage,
                };
                if ctx.only_pull {
                    return failed(send, stage, failure, None);
                }
                send(Event::NotFetched {
                    stage: stage.name.clone(),
                    failure,
                });
            }
        }
    }
    let reason = match entry {
        Some(entry) => match restore_run(
            ctx,
            stage,
            &entry,
            (Some(fp.clone()), &key, from),
            record.as_ref(),
            send,
        )? {
            Restored::Done(outcome) => return Ok(outcome),
            Restored::No(reason) => reason,
        },
        None => match try_restore(ctx, stage, reason, record.as_ref(), send)? {
            Restored::Done(outcome) => return Ok(outcome),
            Restored::No(reason) => reason,
        },
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
    // One computation of a result at a time, across runs and projects: a
    // run that finds it being computed waits, then restores it.
    let who = format!(
        "pid {} on {} ({} in {})",
        std::process::id(),
        crate::state::record::hostname(),
        stage.name,
        // Absolute: the waiting project may lie anywhere.
        crate::spec::protect::physical(&ctx.pipeline.settings.project_dir).display()
    );
    let _computing = ctx.store.claim(&key, &who, &mut |holder| {
        send(Event::Waiting {
            stage: stage.name.clone(),
            holder: holder.to_string(),
        })
    })?;
    if let Some(entry) = (!force && promoted.is_none())
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
    let stop_after = budget.map(|b| match b.promote {
        Some((_, to)) => to,
        None => b.stop_for(ctx.planner.resume_point(stage, &key).map_or(0, |r| r.epoch)),
    });
    // Inputs with no result: a search's report runs after a failed trial.
    let no_result: Vec<String> = inputs
        .iter()
        .filter(|(_, d)| d.named.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    run_stage(
        ctx,
        stage,
        reason,
        (fp, key),
        record.as_ref(),
        (grant, &no_result),
        (force, stop_after, grow),
        send,
    )
}

/// Reasons for which a remote's result may stand in for a run: not a
/// forced run, not one running elsewhere, not a result found corrupt.
fn fetchable(reason: &DirtyReason) -> bool {
    !reason.restorable()
        && !matches!(
            reason,
            DirtyReason::Forced | DirtyReason::Running { .. } | DirtyReason::Invalidated { .. }
        )
}

/// A stage that failed before or after its work: said, and counted.
fn failed(
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

enum Restored {
    Done(Outcome),
    /// Not restored: why the stage runs instead.
    No(DirtyReason),
}

/// Restores the outputs of a stage whose reason allows it; a cache that
/// no longer holds them turns the reason into `cache corrupt`.
fn try_restore(
    ctx: &Ctx<'_>,
    stage: &Stage,
    reason: DirtyReason,
    record: Option<&Record>,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Restored> {
    let Some(record) = record.filter(|_| reason.restorable()) else {
        return Ok(Restored::No(reason));
    };
    match restore(ctx, stage, record) {
        Ok(paths) => {
            send(Event::Restored {
                stage: stage.name.clone(),
                paths,
                from: None,
            });
            Ok(Restored::Done(Outcome::Restored(record.digest())))
        }
        Err(RestoreError::Io(e)) => Err(e),
        Err(RestoreError::Refused(refusal)) => {
            failed(send, stage, Failure::Refused(refusal), None).map(Restored::Done)
        }
        Err(RestoreError::Missing | RestoreError::Corrupt) => {
            let path = match &reason {
                DirtyReason::OutputMissing { path, .. } => path.clone(),
                _ => String::new(),
            };
            send(Event::CacheCorrupt {
                stage: stage.name.clone(),
                path: path.clone(),
            });
            Ok(Restored::No(DirtyReason::CacheCorrupt { path }))
        }
    }
}

/// Restores a stage from a completed run the run cache remembers (of this
/// or another stage name or project): its outputs put in place whole, and
/// a record as if the stage had run. The tool replaces only what it can
/// show it wrote; the outputs are claimed first, so a restore cut short
/// leaves them the tool's to clear. A missing or corrupt object makes the
/// cache forget the run, and the stage runs instead.
fn restore_run(
    ctx: &Ctx<'_>,
    stage: &Stage,
    entry: &RunEntry,
    (fp, key, from): (Option<Fingerprint>, &str, Option<String>),
    prev: Option<&Record>,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Restored> {
    let (Some(fp), Some(outputs)) = (fp, entry.outputs_for(stage)) else {
        return Ok(Restored::No(DirtyReason::NeverRun));
    };
    // What already holds the result is taken as it is (a renamed stage's
    // outputs); anything else must be the tool's to replace.
    for o in &outputs {
        let path = ctx.planner.path(&o.path);
        let same =
            matches!(ctx.planner.hashes.hash_path(&path), Ok(Some(t)) if t.hash == o.tree.hash);
        if same {
            continue;
        }
        if let Err(refusal) =
            ownership::check(ctx.planner.hashes, &stage.name, prev, &o.path, &path, true)
        {
            return failed(send, stage, Failure::Refused(refusal), None).map(Restored::Done);
        }
    }
    let mut started = Record::started(prev, &fp, &stage.outs);
    ctx.store.write_transient(&stage.name, &started)?;
    for (k, o) in outputs.iter().enumerate() {
        let staging = ctx
            .store
            .tmp_dir()
            .join(format!("restore-{}-{k}", stage.name));
        match place(ctx, o, &staging) {
            Ok(()) => {}
            Err(RestoreError::Io(e)) => return Err(e),
            Err(RestoreError::Refused(r)) => {
                return failed(send, stage, Failure::Refused(r), None).map(Restored::Done)
            }
            Err(RestoreError::Missing | RestoreError::Corrupt) => {
                let _ = remove_any(&staging);
                started.running = None;
                ctx.store.write_transient(&stage.name, &started)?;
                runs::forget(ctx.store, &entry.key)?;
                send(Event::CacheCorrupt {
                    stage: stage.name.clone(),
                    path: o.path.clone(),
                });
                return Ok(Restored::No(DirtyReason::CacheCorrupt {
                    path: o.path.clone(),
                }));
            }
        }
    }
    // Recorded under the stage's own key (its saved progress, its claims);
    // a paused training stays one.
    let mut record = Record::completed(fp, key.to_string(), outputs, entry.duration_s);
    record.paused = entry.paused;
    ctx.store.write_record(&stage.name, &record)?;
    send(Event::Restored {
        stage: stage.name.clone(),
        paths: record.outputs.iter().map(|o| o.path.clone()).collect(),
        from,
    });
    Ok(Restored::Done(Outcome::Restored(record.digest())))
}

/// Puts output `o` in place from the cache's objects, whole or not at
/// all: built in `staging`, then moved over what is there (which the
/// caller checked the tool may replace). Already in place: nothing to do.
fn place(
    ctx: &Ctx<'_>,
    o: &crate::state::store::Output,
    staging: &Path,
) -> std::result::Result<(), RestoreError> {
    let dest = ctx.planner.path(&o.path);
    if let Ok(Some(now)) = ctx.planner.hashes.hash_path(&dest) {
        if now.hash == o.tree.hash {
            return Ok(());
        }
    }
    let _ = remove_any(staging);
    if o.tree.is_dir {
        fs::create_dir_all(staging)
            .map_err(|e| RestoreError::Io(Error::io("create the staging directory", staging, e)))?;
    }
    for f in &o.tree.files {
        let p = if f.rel.is_empty() {
            staging.to_path_buf()
        } else {
            crate::state::store::join_inside(staging, &f.rel).ok_or(RestoreError::Missing)?
        };
        ctx.store.restore_file(&f.hash, &p, f.exec)?;
    }
    remove_path(&dest).map_err(RestoreError::Io)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| RestoreError::Io(Error::io("create the output directory", parent, e)))?;
    }
    move_into_place(staging, &dest).map_err(|e| RestoreError::Io(Error::io("restore", &dest, e)))
}

/// Runs a stage in a transaction: begun once its outputs may be replaced,
/// committed once its work succeeded, aborted otherwise.
#[allow(clippy::too_many_arguments)]
fn run_stage(
    ctx: &Ctx<'_>,
    stage: &Stage,
    reason: DirtyReason,
    (fp, key): (Fingerprint, String),
    prev: Option<&Record>,
    (grant, no_result): (&Grant, &[String]),
    (force, stop_after, grow): (bool, Option<usize>, Option<PathBuf>),
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    // The tool only replaces what it can show it wrote.
    if let Err(refusal) = check_outputs(ctx, stage, prev) {
        return failed(send, stage, Failure::Refused(refusal), None);
    }
    send(Event::Started {
        stage: stage.name.clone(),
        reason,
        threads: (stage.kind.parallel() && stage.kind.is_builtin()).then_some(grant.cpus),
        gpus: grant.gpus.clone(),
    });
    let project = &ctx.pipeline.settings.project_dir;
    let resume_key = key.clone();
    let mut txn = Txn::begin(ctx.store, ctx.planner.hashes, project, stage, fp, key, prev)?;
    // A saved training state is taken up only by a run with the same
    // fingerprint, and never when the stage is forced.
    let resume = txn.resume_dir(force)?;
    let epochs = stage
        .params
        .get("epochs")
        .and_then(serde_json::Value::as_u64);
    if stop_after.is_some_and(|s| epochs.is_some_and(|e| (s as u64) < e)) {
        txn.keep_progress();
    }
    let result = execute_stage(
        ctx,
        stage,
        prev,
        (grant, no_result),
        (resume.as_deref(), stop_after, grow.as_deref()),
        send,
    );
    if let Some(g) = &grow {
        let _ = fs::remove_file(g);
    }
    if let Err(e) = result {
        if ctx.running.stopping() {
            // Stopped by a signal: left for the next run to take up; the
            // signal thread exits once this run has reported.
            txn.leave();
            send(Event::Interrupted {
                stage: stage.name.clone(),
                resume: ctx.planner.resume_point(stage, &resume_key),
            });
            return Ok(Outcome::Interrupted);
        }
        txn.abort()?;
        return stage_failed(ctx, stage, e, send);
    }
    // What the training did, not what it was asked: a trial that stopped
    // early before its rung has finished.
    if stop_after.is_some() {
        let dir = ctx.planner.path(&stage.outs[0]);
        if let Some((accs, false)) = stages::train::progress_of(&dir) {
            txn.paused_after(accs.len());
        }
    }
    match txn.commit()? {
        Ok(done) => {
            send(Event::Finished {
                stage: stage.name.clone(),
                elapsed: done.elapsed,
            });
            Ok(Outcome::Ran(done.digest))
        }
        Err(Unproduced::Missing(output)) => failed(
            send,
            stage,
            Failure::NotProduced { output },
            Some(ctx.store.log_path(&stage.name)),
        ),
        Err(Unproduced::Unreadable { path, error }) => failed(
            send,
            stage,
            Failure::OutputUnreadable {
                output: path,
                error,
            },
            None,
        ),
    }
}

/// How a stage's work failed, said with its log where it has one; a full
/// disk or an environment error stops the run instead.
fn stage_failed(
    ctx: &Ctx<'_>,
    stage: &Stage,
    e: StageFailure,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    let log = Some(ctx.store.log_path(&stage.name));
    let (failure, tail, log) = match e {
        StageFailure::Cmd(stages::cmd::CmdError::Exit { status, tail }) => {
            if let Some(full) = full_disk(ctx, stage) {
                return Err(Error::DiskFull {
                    path: full,
                    during: format!("stage {} failed", stage.name),
                });
            }
            let how = stages::cmd::CmdError::Exit {
                status,
                tail: String::new(),
            }
            .to_string();
            (Failure::Command { how }, Some(tail), log)
        }
        StageFailure::Cmd(other) => (
            Failure::Error {
                chain: crate::error::chain(&other),
            },
            None,
            None,
        ),
        StageFailure::Kind(stages::StageError::InputCorrupt { path, problem }) => {
            let remedy = invalidate_producer(ctx, stage, &path, &problem)?;
            let shown = path
                .strip_prefix(&ctx.pipeline.settings.project_dir)
                .unwrap_or(&path);
            (
                Failure::InputCorrupt {
                    path: shown.display().to_string(),
                    problem,
                    remedy,
                },
                None,
                None,
            )
        }
        StageFailure::Kind(stages::StageError::Io {
            action,
            path,
            source,
        }) if is_disk_full(&source) => {
            return Err(Error::io(action, path, source));
        }
        StageFailure::Kind(e) => {
            if let Some(full) = full_disk(ctx, stage) {
                return Err(Error::DiskFull {
                    path: full,
                    during: format!("stage {} failed: {}", stage.name, crate::error::chain(&e)),
                });
            }
            (
                Failure::Error {
                    chain: crate::error::chain(&e),
                },
                None,
                None,
            )
        }
        StageFailure::Refused(r) => (Failure::Refused(r), None, None),
        StageFailure::Crashed { how, tail } => (Failure::Crashed { how }, Some(tail), log),
        StageFailure::Job { what, tail } => (
            Failure::Job { what },
            (!tail.is_empty()).then_some(tail),
            log,
        ),
        StageFailure::Env(e) => return Err(e),
    };
    send(Event::Failed {
        stage: stage.name.clone(),
        failure,
        tail,
        log,
    });
    Ok(Outcome::Failed)
}

/// Every declared output of `stage` may be removed or replaced.
fn check_outputs(ctx: &Ctx<'_>, stage: &Stage, prev: Option<&Record>) -> Result<(), Refusal> {
    for o in &stage.outs {
        let restorable = prev
            .and_then(|r| r.outputs.iter().find(|x| x.path == *o))
            .is_some_and(|x| x.tree.files.iter().all(|f| ctx.store.has_object(&f.hash)));
        ownership::check(
            ctx.planner.hashes,
            &stage.name,
            prev,
            o,
            &ctx.planner.path(o),
            restorable,
        )?;
    }
    Ok(())
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The first of the places stages write to whose file system has no room
/// left, if any: a stage that failed there most likely failed for that.
fn full_disk(ctx: &Ctx<'_>, stage: &Stage) -> Option<PathBuf> {
    let project = &ctx.pipeline.settings.project_dir;
    let mut places = vec![
        ctx.store.tmp_dir(),
        project.join(&ctx.pipeline.settings.outputs),
        project.to_path_buf(),
    ];
    // Where the stage's own outputs go (the nearest existing directory).
    for o in &stage.outs {
        let mut p = project.join(o);
        while !p.is_dir() && p.pop() {}
        places.push(p);
    }
    places.into_iter().find(|p| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statvfs fills the struct we own; the path is a C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_bavail == 0 }
    })
}

/// A kind found a file of an upstream output corrupt. Its producer must
/// not count as fresh: the file is checked again without the stat cache;
/// if it no longer holds what the producer wrote, it is moved to the
/// cache's quarantine (kept, not deleted) so the producer's own version is
/// restored; otherwise the producer's record is invalidated so it reruns.
/// Returns what the user is told.
fn invalidate_producer(ctx: &Ctx<'_>, stage: &Stage, path: &Path, problem: &str) -> Result<Remedy> {
    let project = &ctx.pipeline.settings.project_dir;
    let producer = stage
        .needs
        .iter()
        .map(|&j| &ctx.pipeline.stages[j])
        .find_map(|s| {
            s.outs
                .iter()
                .find(|o| path.starts_with(project.join(o)))
                .map(|o| (s, o))
        });
    let Some((producer, out)) = producer else {
        return Ok(Remedy::NotAnOutput);
    };
    let out_path = project.join(out);
    ctx.planner.hashes.forget(&out_path);
    let record = ctx.store.record(&producer.name).ok().flatten();
    // The file as the producer recorded it, and as it is now.
    let rel = path
        .strip_prefix(&out_path)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    let recorded = record
        .as_ref()
        .and_then(|r| r.outputs.iter().find(|o| o.path == *out))
        .and_then(|o| o.tree.files.iter().find(|f| f.rel == rel))
        .map(|f| f.hash.clone());
    let now = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => ctx.planner.hashes.hash_file(path, &m).ok(),
        _ => None,
    };
    match (now, recorded) {
        // Another stage moved it to the quarantine meanwhile.
        (None, Some(_)) => Ok(Remedy::MovedAway {
            producer: producer.name.clone(),
        }),
        (Some(now), Some(rec)) if now != rec => {
            let to = quarantine(ctx, &producer.name, project, path)?;
            Ok(Remedy::Quarantined {
                producer: producer.name.clone(),
                to,
            })
        }
        _ => {
            let why = format!(
                "{} found {} corrupt ({problem})",
                stage.name,
                path.strip_prefix(project).unwrap_or(path).display()
            );
            ctx.store.invalidate(&producer.name, &why)?;
            // Nor may the run cache hand the same bytes back.
            if let Some(key) = record.as_ref().and_then(|r| r.key.as_deref()) {
                runs::forget(ctx.store, key)?;
            }
            Ok(Remedy::ProducerStale {
                producer: producer.name.clone(),
            })
        }
    }
}

/// Moves `path` under `cache/quarantine/<time>-<stage>/`, keeping its
/// place relative to the project.
fn quarantine(ctx: &Ctx<'_>, stage: &str, project: &Path, path: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rel = path.strip_prefix(project).unwrap_or(path);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let dest = ctx
        .store
        .home()
        .join("quarantine")
        .join(format!("{secs}-{stage}"))
        .join(rel);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the quarantine directory", parent, e))?;
    }
    move_into_place(path, &dest).map_err(|e| Error::io("move into quarantine", path, e))?;
    Ok(dest)
}

fn remove_path(path: &Path) -> Result<(), Error> {
    remove_any(path).map_err(|e| Error::io("remove the old output", path, e))
}

fn execute_stage(
    ctx: &Ctx<'_>,
    stage: &Stage,
    prev: Option<&Record>,
    (grant, no_result): (&Grant, &[String]),
    (resume, stop_after, grow): (Option<&Path>, Option<usize>, Option<&Path>),
    send: &(dyn Fn(Event) + Sync),
) -> Result<(), StageFailure> {
    let project = &ctx.pipeline.settings.project_dir;
    for o in stage.outs.iter().filter(|_| !stage.kind.is_builtin()) {
        let path = project.join(o);
        remove_path(&path).map_err(StageFailure::Env)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                StageFailure::Env(Error::io("create the output directory", parent, e))
            })?;
        }
    }
    let log = ctx.store.log_path(&stage.name);
    if let Some(cmd) = &stage.cmd {
        let shell = Shell {
            stage: &stage.name,
            cmd,
            dir: project,
            env: stage_env(stage, grant),
            log: &log,
            resources: &stage.resources,
            slurm: &stage.slurm,
        };
        return ctx.executor.run_shell(&shell, grant, send);
    }
    // A built-in kind writes into staging; its output appears whole or not at all.
    let staging = ctx
        .store
        .tmp_dir()
        .join(format!("stage-{}-{}", std::process::id(), stage.name));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)
        .map_err(|e| StageFailure::Env(Error::io("create the staging directory", &staging, e)))?;
    let inputs: Vec<stages::Input> = stage
        .needs
        .iter()
        .map(|&j| {
            let s = &ctx.pipeline.stages[j];
            stages::Input {
                stage: s.name.clone(),
                kind: s.kind,
                paths: s.outs.iter().map(|o| project.join(o)).collect(),
                predictions: s.predictions.as_ref().map(|p| project.join(p)),
                failed: no_result.contains(&s.name),
            }
        })
        .collect();
    let job = stages::job::Job {
        stage: stage.name.clone(),
        kind: stage.kind,
        project_dir: project.clone(),
        params: stage.params.clone(),
        inputs,
        out_dir: staging.clone(),
        threads: grant.cpus,
        resume: resume.map(Path::to_path_buf),
        stop_after,
        grow: grow.map(Path::to_path_buf),
        device: stage.device.clone(),
        run: stage.kind.describes_run().then(|| {
            ctx.run_info
                .get_or_init(|| {
                    let executor = match ctx.executor {
                        Executor::Slurm(_) => "slurm",
                        _ => "local",
                    };
                    crate::state::history::describe_run(
                        ctx.pipeline,
                        ctx.started_unix,
                        ctx.jobs,
                        executor,
                    )
                })
                .clone()
        }),
    };
    let job_path = ctx.store.job_path(&stage.name);
    let bytes = serde_json::to_vec(&job).map_err(|e| {
        StageFailure::Env(Error::Internal(format!("the job of {}: {e}", stage.name)))
    })?;
    crate::state::files::write_atomic(&job_path, &bytes)
        .map_err(|e| StageFailure::Env(Error::io("write the job description", &job_path, e)))?;
    let file = JobFile {
        job: &job,
        path: &job_path,
        log: &log,
        env: stage_env(stage, grant),
        resources: &stage.resources,
        slurm: &stage.slurm,
    };
    let result = ctx.executor.run_job(&file, grant, send);
    let _ = fs::remove_file(&job_path);
    result?;
    // Checked again: the old output may have been edited while the stage ran.
    check_outputs(ctx, stage, prev).map_err(StageFailure::Refused)?;
    let dest = project.join(&stage.outs[0]);
    remove_path(&dest).map_err(StageFailure::Env)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| StageFailure::Env(Error::io("create the output directory", parent, e)))?;
    }
    move_into_place(&staging, &dest)
        .map_err(|e| StageFailure::Env(Error::io("move the output into place", &dest, e)))
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

/// Restores a stage's recorded outputs from the cache. Only what is
/// missing is written; an output holding anything the stage did not write
/// is refused, never overwritten.
fn restore(
    ctx: &Ctx<'_>,
    stage: &Stage,
    record: &Record,
) -> std::result::Result<Vec<String>, RestoreError> {
    let mut restored = Vec::new();
    for o in &record.outputs {
        // Only where the stage declares an output: the record is a file
        // in the cache, and the cache may be shared.
        if !stage.outs.contains(&o.path) {
            return Err(RestoreError::Missing);
        }
        let stage = stage.name.as_str();
        let root = ctx.planner.path(&o.path);
        let refuse = |why| {
            RestoreError::Refused(Refusal {
                path: o.path.clone(),
                stage: stage.to_string(),
                why,
                restorable: true,
            })
        };
        let now = ctx
            .planner
            .hashes
            .hash_path(&root)
            .map_err(|e| refuse(ownership::Why::Unreadable(e.to_string())))?;
        let present: Vec<&str> = match &now {
            Some(t) if t.hash == o.tree.hash => continue,
            Some(t) => match ownership::first_foreign(&o.tree, t) {
                None => t.files.iter().map(|f| f.rel.as_str()).collect(),
                Some(f) => {
                    let file = if f.is_empty() {
                        o.path.clone()
                    } else {
                        format!("{}/{f}", o.path)
                    };
                    return Err(refuse(ownership::Why::Modified(file)));
                }
            },
            None => Vec::new(),
        };
        for f in o
            .tree
            .files
            .iter()
            .filter(|f| !present.contains(&f.rel.as_str()))
        {
            let p = if f.rel.is_empty() {
                root.clone()
            } else {
                crate::state::store::join_inside(&root, &f.rel).ok_or_else(|| {
                    refuse(ownership::Why::Modified(format!("{}/{}", o.path, f.rel)))
                })?
            };
            ctx.store.restore_file(&f.hash, &p, f.exec)?;
        }
        restored.push(o.path.clone());
    }
    Ok(restored)
}
