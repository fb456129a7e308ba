//! The run's board: what waits for what, what is ready, what is done,
//! and each search's early stopping (ASHA) as trials report.

use crate::engine::schedule::{Demand, Grant, Pool, Ready};
use crate::spec::graph::Dag;
use crate::spec::{Pipeline, Stage};
use crate::state::store::Digest;
use crate::ui::events::{Event, Summary};
use stages::asha::{Asha, Known};
use std::collections::BTreeMap;

pub(crate) enum Outcome {
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

/// A stage as assessed before the run: the digest its dependents would
/// see, whether it is fresh, and for a fresh search trial what its
/// outputs say of its training (None: unreadable).
#[derive(Debug, Clone, Default)]
pub(crate) struct Planned {
    pub digest: Option<Digest>,
    pub fresh: bool,
    pub trial: Option<Known>,
}

impl Outcome {
    /// The stage has a result (fresh, restored or run).
    pub(crate) fn has_result(&self) -> bool {
        matches!(
            self,
            Outcome::Cached(_) | Outcome::Restored(_) | Outcome::Ran(_)
        )
    }
}

/// What the scheduler gave a stage, or why it cannot run here.
pub(crate) type Assigned = std::result::Result<Grant, String>;

/// How far a search's trial trains this time.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// The epochs at which it pauses (the rungs, then the end).
    pub(crate) levels: Vec<usize>,
    /// Promoted from a rung (epochs done) to this epoch.
    pub(crate) promote: Option<(usize, usize)>,
}

impl Budget {
    /// Where this run pauses: a promotion's epoch, or the first level at
    /// or after the epochs its saved state has done (asked only then).
    pub(crate) fn stop_after(&self, done: impl FnOnce() -> usize) -> usize {
        match self.promote {
            Some((_, to)) => to,
            None => self.stop_for(done()),
        }
    }

    /// Where a run that starts after `done` epochs pauses.
    pub(crate) fn stop_for(&self, done: usize) -> usize {
        let last = self.levels.last().copied().unwrap_or(0);
        self.levels
            .iter()
            .copied()
            .find(|&l| l >= done.max(1))
            .unwrap_or(last)
    }
}

pub(crate) fn demand(s: &Stage) -> Demand {
    Demand {
        cpus: s.resources.cpus,
        parallel: s.kind.parallel(),
        gpus: s.resources.gpus,
        mem_mb: s.resources.mem_mb,
    }
}

/// A search as the run drives it: the jobs' sequence, what is known of
/// each trial, which are queued or running, and whether it has settled.
pub(crate) struct Search {
    asha: Asha,
    known: Vec<Option<Known>>,
    busy: Vec<bool>,
    settled: bool,
}

impl Search {
    pub(crate) fn new(plan: &crate::spec::SearchPlan) -> Search {
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
pub(crate) struct Board<'a> {
    pub(crate) pipeline: &'a Pipeline,
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
    planned: Vec<Planned>,
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
    /// When each stage became ready (its queue wait starts).
    ready_at: Vec<Option<std::time::Instant>>,
    /// A search's decisions since they were last reported.
    decisions: Vec<Event>,
}

impl<'a> Board<'a> {
    pub(crate) fn new(
        pipeline: &'a Pipeline,
        dag: &'a Dag,
        mask: Vec<bool>,
        planned: Vec<Planned>,
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
            .map(|i| trial_of[i].is_some() && planned[i].fresh)
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
            ready_at: vec![None; n],
            decisions: Vec::new(),
        }
    }

    /// The tally once the run is over: what was covered and never done
    /// counts as not started.
    pub(crate) fn into_summary(self) -> Summary {
        let mut summary = self.summary;
        summary.not_started = (0..self.mask.len())
            .filter(|&i| self.mask[i] && !self.done[i])
            .count();
        summary
    }

    /// The covered stages that need nothing.
    pub(crate) fn roots(&self) -> Vec<usize> {
        (0..self.mask.len())
            .filter(|&i| self.mask[i] && self.pending[i] == 0)
            .collect()
    }

    /// Stages whose inputs are all done: a fresh one (whose inputs came out
    /// as assessed) settles at once and may free its dependents; the
    /// others wait for the scheduler.
    pub(crate) fn settle(&mut self, first: Vec<usize>, report: &mut dyn FnMut(Event)) {
        let mut work = first;
        while let Some(i) = work.pop() {
            let stage = &self.pipeline.stages[i];
            let as_assessed = stage
                .needs
                .iter()
                .all(|&j| self.digests[j] == self.planned[j].digest);
            match (&self.planned[i], as_assessed) {
                (
                    Planned {
                        digest: Some(d),
                        fresh: true,
                        trial,
                    },
                    true,
                ) => {
                    let trial = trial.clone();
                    report(Event::Cached {
                        stage: stage.name.clone(),
                    });
                    self.summary.cached += 1;
                    self.summary.done.insert(stage.name.clone());
                    self.digests[i] = Some(d.clone());
                    self.done[i] = true;
                    if self.trial_of[i].is_some() {
                        // A trial waits for the search to settle.
                        work.extend(self.trial_known(i, trial));
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
                    self.ready_at[i] = Some(std::time::Instant::now());
                    self.ready.insert(self.pos[i], i)
                }
            }
        }
        for e in self.decisions.drain(..) {
            report(e);
        }
    }

    /// How long stage `i` has waited since it became ready.
    pub(crate) fn waited(&self, i: usize) -> std::time::Duration {
        self.ready_at[i].map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }

    /// `i` is done: its dependents that now wait for nothing.
    pub(crate) fn free_dependents(&mut self, i: usize) -> Vec<usize> {
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
    pub(crate) fn admit(&mut self, pool: &mut Pool) -> Vec<(usize, Assigned)> {
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
    pub(crate) fn inputs(&self, i: usize) -> BTreeMap<String, Digest> {
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
    pub(crate) fn finished(
        &mut self,
        i: usize,
        outcome: Outcome,
        trial: Option<Known>,
        report: &mut dyn FnMut(Event),
    ) -> bool {
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
            self.trial_known(i, trial)
        } else {
            self.free_dependents(i)
        };
        self.settle(freed, report);
        true
    }

    /// What a trial's run (or record) says of it, taken in (None: its
    /// outputs were unreadable; the report says so, the search goes on);
    /// the job the search waits for queued, and once it has settled, its
    /// dependents freed.
    pub(crate) fn trial_known(&mut self, i: usize, known: Option<Known>) -> Vec<usize> {
        let Some((s, t)) = self.trial_of[i] else {
            return Vec::new();
        };
        let known = known.unwrap_or(Known {
            val_acc: Vec::new(),
            finished: true,
        });
        let search = &mut self.searches[s];
        search.known[t] = Some(known);
        search.busy[t] = false;
        self.search_step(s)
    }

    /// Whether stage `i` is a search's trial.
    pub(crate) fn is_trial(&self, i: usize) -> bool {
        self.trial_of[i].is_some()
    }

    /// Queues the job search `s` waits for, ahead of trials not yet
    /// started; the stages freed once it has settled.
    pub(crate) fn search_step(&mut self, s: usize) -> Vec<usize> {
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
            self.decisions.push(Event::SearchSettled {
                search: self.pipeline.stages[plan.report].name.clone(),
            });
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
                self.decisions.push(Event::Promoted {
                    search: self.pipeline.stages[plan.report].name.clone(),
                    trial: self.pipeline.stages[i].name.clone(),
                    rung: k.val_acc.len(),
                    to,
                    val_acc: k.val_acc.iter().copied().fold(f64::NAN, f64::max),
                });
                self.promoted[i] = Some((k.val_acc.len(), to));
                self.ready_at[i] = Some(std::time::Instant::now());
                self.searches[s].busy[t] = true;
                self.done[i] = false;
                self.pos[i] = ahead;
                self.ready.insert(ahead, i);
            }
            // Not run yet: already queued as a new trial; it goes first.
            None if self.ready.contains(was, i) => {
                self.ready_at[i].get_or_insert_with(std::time::Instant::now);
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
    pub(crate) fn budget(&self, i: usize) -> Option<Budget> {
        let (s, _) = self.trial_of[i]?;
        Some(Budget {
            levels: self.searches[s].asha.levels(),
            promote: self.promoted[i],
        })
    }

    pub(crate) fn skip_downstream(
        &mut self,
        i: usize,
        report: &mut dyn FnMut(Event),
        failed: bool,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(yaml: &str) -> Pipeline {
        let raw: crate::spec::RawPipeline = serde_yaml::from_str(yaml).unwrap();
        crate::spec::resolve(
            raw,
            yaml.to_string(),
            std::path::Path::new("dir/pipeline.yaml"),
        )
        .unwrap()
    }

    /// a -> b -> c, and d on its own.
    const CHAIN: &str = "stages:
  a: {kind: cmd, cmd: 'true', outs: [a.txt]}
  b: {kind: cmd, cmd: 'true', needs: [a], outs: [b.txt]}
  c: {kind: cmd, cmd: 'true', needs: [b], outs: [c.txt]}
  d: {kind: cmd, cmd: 'true', outs: [d.txt]}
";

    fn digest(s: &str) -> Digest {
        Digest {
            named: s.into(),
            content: s.into(),
        }
    }

    fn fresh(s: &str) -> Planned {
        Planned {
            digest: Some(digest(s)),
            fresh: true,
            trial: None,
        }
    }

    fn stale() -> Planned {
        Planned::default()
    }

    /// What the board said, one line per event.
    fn said(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Cached { stage } => format!("cached {stage}"),
                Event::Skipped {
                    stage,
                    because,
                    failed,
                } => format!("skipped {stage} ({because}, failed {failed})"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Starts what the board admits and returns the stages' indices.
    fn admit(board: &mut Board<'_>, pool: &mut Pool) -> Vec<usize> {
        board
            .admit(pool)
            .into_iter()
            .map(|(i, g)| {
                pool.release(g.unwrap());
                i
            })
            .collect()
    }

    fn names(p: &Pipeline, is: &[usize]) -> Vec<String> {
        is.iter().map(|&i| p.stages[i].name.clone()).collect()
    }

    #[test]
    fn fresh_stages_settle_at_once_and_stale_ones_wait_for_a_core() {
        let p = pipeline(CHAIN);
        let dag = Dag::build(&p).unwrap();
        let mut pool = Pool::local(2, vec![], None);
        let planned = vec![fresh("A"), fresh("B"), stale(), fresh("D")];
        let mut board = Board::new(&p, &dag, vec![true; 4], planned, &pool);
        let mut events = Vec::new();
        board.settle(board.roots(), &mut |e| events.push(e));
        let mut s = said(&events);
        s.sort();
        assert_eq!(s, ["cached a", "cached b", "cached d"]);
        assert_eq!(names(&p, &admit(&mut board, &mut pool)), ["c"]);
        assert!(board.finished(2, Outcome::Ran(digest("C")), None, &mut |_| {}));
        let summary = board.into_summary();
        assert_eq!(
            (summary.cached, summary.ran, summary.not_started),
            (3, 1, 0)
        );
        assert_eq!(summary.done.len(), 4);
    }

    #[test]
    fn a_fresh_stage_runs_when_its_input_came_out_otherwise_than_assessed() {
        for (a_gives, b_runs) in [("A", false), ("A2", true)] {
            let p = pipeline(CHAIN);
            let dag = Dag::build(&p).unwrap();
            let mut pool = Pool::local(2, vec![], None);
            // `a` was stale, assessed as about to give A (its cache's).
            let planned = vec![
                Planned {
                    digest: Some(digest("A")),
                    fresh: false,
                    trial: None,
                },
                fresh("B"),
                fresh("C"),
                fresh("D"),
            ];
            let mut board = Board::new(&p, &dag, vec![true; 4], planned, &pool);
            board.settle(board.roots(), &mut |_| {});
            assert_eq!(names(&p, &admit(&mut board, &mut pool)), ["a"]);
            let mut events = Vec::new();
            board.finished(0, Outcome::Ran(digest(a_gives)), None, &mut |e| {
                events.push(e)
            });
            let started = names(&p, &admit(&mut board, &mut pool));
            if b_runs {
                assert_eq!(started, ["b"], "{a_gives}");
                assert!(said(&events).is_empty(), "{a_gives}: {events:?}");
            } else {
                assert!(started.is_empty(), "{a_gives}: {started:?}");
                assert_eq!(said(&events), ["cached b", "cached c"]);
            }
        }
    }

    #[test]
    fn a_failure_skips_what_depends_on_it_and_nothing_else() {
        let p = pipeline(CHAIN);
        let dag = Dag::build(&p).unwrap();
        let mut pool = Pool::local(2, vec![], None);
        let mut board = Board::new(&p, &dag, vec![true; 4], vec![stale(); 4], &pool);
        board.settle(board.roots(), &mut |_| {});
        let mut started = names(&p, &admit(&mut board, &mut pool));
        started.sort();
        assert_eq!(started, ["a", "d"]);
        let mut events = Vec::new();
        assert!(!board.finished(0, Outcome::Failed, None, &mut |e| events.push(e)));
        let mut s = said(&events);
        s.sort();
        assert_eq!(
            s,
            ["skipped b (a, failed true)", "skipped c (a, failed true)"]
        );
        assert!(board.finished(3, Outcome::Ran(digest("D")), None, &mut |_| {}));
        assert!(admit(&mut board, &mut pool).is_empty());
        let summary = board.into_summary();
        assert_eq!(
            (
                summary.failed,
                summary.skipped,
                summary.ran,
                summary.not_started
            ),
            (1, 2, 1, 0)
        );
        assert_eq!(summary.failed_stages.len(), 1);
    }

    #[test]
    fn a_result_not_pulled_skips_its_dependents_without_failing() {
        let p = pipeline(CHAIN);
        let dag = Dag::build(&p).unwrap();
        let mut pool = Pool::local(2, vec![], None);
        let mut board = Board::new(&p, &dag, vec![true; 4], vec![stale(); 4], &pool);
        board.settle(board.roots(), &mut |_| {});
        admit(&mut board, &mut pool);
        let mut events = Vec::new();
        assert!(board.finished(0, Outcome::NotPulled, None, &mut |e| events.push(e)));
        assert!(said(&events).contains(&"skipped b (a, failed false)".to_string()));
        let summary = board.into_summary();
        assert_eq!(
            (summary.not_pulled, summary.skipped, summary.failed),
            (1, 2, 0)
        );
    }

    #[test]
    fn stages_left_when_the_run_stops_count_as_not_started() {
        let p = pipeline(CHAIN);
        let dag = Dag::build(&p).unwrap();
        let pool = Pool::local(2, vec![], None);
        // Only c and what it needs are covered: d is not.
        let mask = dag.closure(&p, &[2]);
        let mut board = Board::new(&p, &dag, mask, vec![stale(); 4], &pool);
        board.settle(board.roots(), &mut |_| {});
        assert!(!board.finished(0, Outcome::Interrupted, None, &mut |_| {}));
        let summary = board.into_summary();
        assert_eq!((summary.interrupted, summary.not_started), (1, 2));
    }

    const SEARCH: &str = "stages:
  prep:
    kind: preprocess
  train:
    kind: train
    needs: [prep]
    params: {epochs: 4}
    search:
      space: {lr: {uniform: [0.1, 0.2]}}
      trials: 4
      early_stop: {rungs: [1], keep: 0.5}
";

    /// Plays a search through: each trial's accuracy is `acc[t]`; a run
    /// trains to its budget's stop. Returns what started, in order, with
    /// the promotion it carried.
    fn play(acc: [f64; 4], cores: usize) -> Vec<(String, Option<(usize, usize)>)> {
        let p = pipeline(SEARCH);
        let dag = Dag::build(&p).unwrap();
        let mut pool = Pool::local(cores, vec![], None);
        let mut planned = vec![stale(); p.stages.len()];
        planned[0] = fresh("P");
        let mut board = Board::new(&p, &dag, vec![true; p.stages.len()], planned, &pool);
        board.settle(board.roots(), &mut |_| {});
        let mut log = Vec::new();
        loop {
            let started = admit(&mut board, &mut pool);
            if started.is_empty() {
                break;
            }
            for i in started {
                let budget = board.budget(i);
                log.push((
                    p.stages[i].name.clone(),
                    budget.as_ref().and_then(|b| b.promote),
                ));
                let Some(budget) = budget else {
                    board.finished(i, Outcome::Ran(digest("R")), None, &mut |_| {});
                    continue;
                };
                let t = p.searches[0].trials.iter().position(|&x| x == i).unwrap();
                let stop = budget.stop_after(|| 0);
                let known = Known {
                    val_acc: (0..stop).map(|e| acc[t] + e as f64 / 100.0).collect(),
                    finished: stop == 4,
                };
                let d = digest(&format!("{t}-{stop}"));
                board.finished(i, Outcome::Ran(d), Some(known), &mut |_| {});
            }
        }
        log
    }

    #[test]
    fn a_search_promotes_its_best_trials_and_its_report_waits_for_them() {
        for cores in [1, 4] {
            let log = play([0.5, 0.9, 0.7, 0.8], cores);
            let trials = |promoted: bool| -> Vec<&str> {
                log.iter()
                    .filter(|(_, p)| p.is_some() == promoted)
                    .map(|(n, _)| n.as_str())
                    .filter(|n| n.contains("trial"))
                    .collect()
            };
            let mut first = trials(false);
            first.sort();
            assert_eq!(
                first,
                [
                    "train@trial-01",
                    "train@trial-02",
                    "train@trial-03",
                    "train@trial-04"
                ],
                "{cores} cores: {log:?}"
            );
            // Keep half: the two best at the rung train on to the end.
            let mut promoted = trials(true);
            promoted.sort();
            assert_eq!(
                promoted,
                ["train@trial-02", "train@trial-04"],
                "{cores}: {log:?}"
            );
            assert!(log
                .iter()
                .filter(|(_, p)| p.is_some())
                .all(|(_, p)| *p == Some((1, 4))));
            // The search's report starts last, once every trial has settled.
            assert_eq!(log.last().unwrap().0, "train@search", "{cores}: {log:?}");
        }
    }

    #[test]
    fn a_failed_trial_is_never_promoted_and_the_search_still_settles() {
        let p = pipeline(SEARCH);
        let dag = Dag::build(&p).unwrap();
        let mut pool = Pool::local(4, vec![], None);
        let mut planned = vec![stale(); p.stages.len()];
        planned[0] = fresh("P");
        let mut board = Board::new(&p, &dag, vec![true; p.stages.len()], planned, &pool);
        board.settle(board.roots(), &mut |_| {});
        let trials = p.searches[0].trials.clone();
        let mut started = admit(&mut board, &mut pool);
        started.sort();
        assert_eq!(started, trials);
        // trial-01 fails; the others pause at the rung.
        let mut events = Vec::new();
        assert!(!board.finished(trials[0], Outcome::Failed, None, &mut |e| events.push(e)));
        assert!(
            events.is_empty(),
            "a failed trial skips nothing: {events:?}"
        );
        for (k, &i) in trials.iter().enumerate().skip(1) {
            let known = Known {
                val_acc: vec![k as f64 / 10.0],
                finished: false,
            };
            board.finished(i, Outcome::Ran(digest("T")), Some(known), &mut |_| {});
        }
        let mut promoted = Vec::new();
        loop {
            let started = admit(&mut board, &mut pool);
            if started.is_empty() {
                break;
            }
            for i in started {
                if let Some(b) = board.budget(i) {
                    assert_ne!(i, trials[0], "the failed trial was promoted");
                    promoted.push(i);
                    let known = Known {
                        val_acc: vec![0.5; b.stop_after(|| 1)],
                        finished: true,
                    };
                    board.finished(i, Outcome::Ran(digest("F")), Some(known), &mut |_| {});
                } else {
                    assert_eq!(p.stages[i].name, "train@search");
                    board.finished(i, Outcome::Ran(digest("S")), None, &mut |_| {});
                }
            }
        }
        assert!(!promoted.is_empty());
        let summary = board.into_summary();
        assert_eq!(
            (summary.failed, summary.skipped, summary.not_started),
            (1, 0, 0)
        );
        assert!(summary.done.contains("train@search"));
    }
}
