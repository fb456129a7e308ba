//! Asynchronous successive halving (ASHA) over a search's trials: when a
//! trial reaches a rung it goes on only if it is among the best `keep`
//! fraction of the trials that have reached that rung so far; a trial
//! stopped there may be promoted later, as more trials reach the rung.
//! Nothing waits for a rung to fill: a free core takes a promotion, or
//! else a trial not yet started.
//!
//! The state is each trial's validation accuracy per epoch, read from its
//! outputs: a rerun decides from what the trials recorded, so a search
//! killed, resumed or given more trials goes on from where it stands.

use crate::spec::SearchPlan;

/// What the scheduler knows of one trial.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trial {
    /// Validation accuracy after each epoch trained (None: not known yet).
    pub val_acc: Option<Vec<f64>>,
    /// Nothing more to train: every epoch, its own early stopping, or a
    /// failed run.
    pub finished: bool,
    /// Queued or running.
    pub busy: bool,
}

#[derive(Debug, Clone)]
pub struct Asha {
    pub rungs: Vec<usize>,
    pub epochs: usize,
    pub keep: f64,
    pub trials: Vec<Trial>,
    /// Every trial done and nothing to promote: the report may run.
    pub settled: bool,
}

impl Asha {
    pub fn new(plan: &SearchPlan) -> Asha {
        Asha {
            rungs: plan.rungs.clone(),
            epochs: plan.epochs,
            keep: plan.keep,
            trials: vec![Trial::default(); plan.trials.len()],
            settled: false,
        }
    }

    /// The epochs at which a trial's run pauses: the rungs, then the end.
    pub fn levels(&self) -> Vec<usize> {
        let mut l = self.rungs.clone();
        l.push(self.epochs);
        l
    }

    /// Where a run that starts after `done` epochs pauses: the first level
    /// at or after it (a state saved at a rung is decided there).
    pub fn stop_for(&self, done: usize) -> usize {
        self.levels()
            .into_iter()
            .find(|&l| l >= done.max(1))
            .unwrap_or(self.epochs)
    }

    /// A trial's score at rung `r`: its best validation accuracy in its
    /// first `r` epochs, once it has trained them (or finished short).
    fn score_at(&self, t: usize, r: usize) -> Option<f64> {
        let tr = &self.trials[t];
        let v = tr.val_acc.as_ref()?;
        if v.is_empty() || (v.len() < r && !tr.finished) {
            return None;
        }
        v.iter().take(r).copied().reduce(f64::max)
    }

    /// Trials to run now, with the epoch each pauses at: those past a rung
    /// but short of the next level (taken up where they stopped), then
    /// promotions, highest rung first, best first.
    pub fn promotions(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let reached = |t: usize| self.trials[t].val_acc.as_ref().map_or(0, Vec::len);
        let idle = |t: usize| {
            let tr = &self.trials[t];
            !tr.busy && !tr.finished && tr.val_acc.is_some()
        };
        for t in 0..self.trials.len() {
            if idle(t) && reached(t) > 0 && !self.levels().contains(&reached(t)) {
                out.push((t, self.stop_for(reached(t))));
            }
        }
        for (k, &r) in self.rungs.iter().enumerate().rev() {
            let mut at: Vec<(usize, f64)> = (0..self.trials.len())
                .filter_map(|t| self.score_at(t, r).map(|s| (t, s)))
                .collect();
            at.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let quota = (at.len() as f64 * self.keep).floor() as usize;
            let next = self.rungs.get(k + 1).copied().unwrap_or(self.epochs);
            for &(t, _) in at.iter().take(quota) {
                if idle(t) && reached(t) == r {
                    out.push((t, next));
                }
            }
        }
        out
    }

    /// Every trial known and idle, and nothing to promote.
    pub fn is_settled(&self) -> bool {
        self.trials.iter().all(|t| t.val_acc.is_some() && !t.busy) && self.promotions().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asha(n: usize) -> Asha {
        Asha::new(&SearchPlan {
            report: 0,
            trials: (0..n).collect(),
            rungs: vec![2, 5],
            epochs: 10,
            keep: 0.34,
        })
    }

    fn at(acc: &[f64]) -> Trial {
        Trial {
            val_acc: Some(acc.to_vec()),
            finished: false,
            busy: false,
        }
    }

    #[test]
    fn a_trial_goes_on_only_in_the_top_fraction_of_its_rung() {
        let mut a = asha(6);
        // The first trial at rung 2 is alone: 1 × 0.34 rounds down to none.
        a.trials[0] = at(&[0.80, 0.85]);
        assert!(a.promotions().is_empty());
        // Three at the rung: one goes on, the best.
        a.trials[1] = at(&[0.80, 0.90]);
        a.trials[2] = at(&[0.70, 0.75]);
        assert_eq!(a.promotions(), [(1, 5)]);
        a.trials[1].busy = true;
        assert!(a.promotions().is_empty());
        // Trial 1 at rung 5; three more at rung 2, of which trial 3 is
        // now the second best: with six at the rung, two go on.
        a.trials[1] = at(&[0.80, 0.90, 0.91, 0.92, 0.93]);
        a.trials[3] = at(&[0.86, 0.88]);
        a.trials[4] = at(&[0.60, 0.61]);
        a.trials[5] = at(&[0.50, 0.51]);
        assert_eq!(a.promotions(), [(3, 5)]);
        // Its best epoch counts, not its last.
        a.trials[3] = at(&[0.86, 0.88, 0.80, 0.80, 0.80]);
        // Two at rung 5: none goes on to the end (2 × 0.34 < 1)...
        assert!(a.promotions().is_empty());
        assert!(a.is_settled());
    }

    #[test]
    fn unknown_or_busy_trials_keep_the_search_open() {
        let mut a = asha(2);
        assert!(!a.is_settled());
        a.trials[0] = at(&[0.9, 0.9]);
        a.trials[1].busy = true;
        assert!(!a.is_settled());
        a.trials[1] = at(&[0.8, 0.8]);
        assert!(a.is_settled());
    }

    #[test]
    fn a_trial_between_levels_goes_on_to_the_next() {
        let mut a = asha(3);
        a.trials[0] = at(&[0.8, 0.8, 0.8]);
        assert_eq!(a.promotions(), [(0, 5)]);
        a.trials[0].finished = true;
        assert!(a.promotions().is_empty());
        assert_eq!(a.stop_for(0), 2);
        assert_eq!(a.stop_for(2), 2);
        assert_eq!(a.stop_for(3), 5);
        assert_eq!(a.stop_for(7), 10);
    }

    #[test]
    fn a_trial_that_stopped_itself_still_counts_at_later_rungs() {
        let mut a = asha(3);
        a.trials[0] = Trial {
            val_acc: Some(vec![0.95]),
            finished: true,
            busy: false,
        };
        a.trials[1] = at(&[0.8, 0.81]);
        a.trials[2] = at(&[0.7, 0.71]);
        // Three at rung 2 (the finished one with its best), one goes on:
        // the best, which has nothing left to train.
        assert!(a.promotions().is_empty());
    }
}
