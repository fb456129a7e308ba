//! Asynchronous successive halving (ASHA, Li et al. 2020), made
//! reproducible. When a trial reaches a rung it goes on only if it is
//! among the best `keep` fraction (rounded down) of the trials that have
//! reached that rung so far; one stopped there may be promoted later, as
//! more trials reach the rung. The next job is always a promotion if there
//! is one (highest rung first, best first), else the next trial.
//!
//! Which trials "have reached a rung so far" depends on the order in which
//! trials finish, which on several cores depends on timing. So the
//! decisions are those of one worker taking the jobs in that order: a pure
//! function of the trials' results ([`Asha::simulate`]). The scheduler runs
//! that sequence on every free core: a trial's first rung is always part of
//! it, so free cores start trials ahead; a promotion runs once the results
//! that decide it are in. The same search promotes the same trials on any
//! machine, with any number of cores, and a rerun decides from what the
//! trials recorded.

/// What is known of one trial: its validation accuracy after each epoch
/// trained, and whether it can train no further (all its epochs, its own
/// early stopping, or a failure).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    pub val_acc: Vec<f64>,
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Asha {
    /// Epochs at which trials are compared, increasing, below `epochs`.
    pub rungs: Vec<usize>,
    pub epochs: usize,
    pub keep: f64,
}

/// Where the sequence of jobs stands, given what is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Epochs each trial is trained to by the sequence so far.
    pub reached: Vec<usize>,
    /// Trials that stopped short of their job (their own early stopping).
    pub stopped: Vec<bool>,
    /// The job the sequence waits for: (trial, the epoch it trains to).
    pub next: Option<(usize, usize)>,
}

impl Sequence {
    /// Every job done: the search has settled.
    pub fn done(&self) -> bool {
        self.next.is_none()
    }
}

impl Asha {
    /// The epochs at which a trial's run pauses: the rungs, then the end.
    pub fn levels(&self) -> Vec<usize> {
        let mut l = self.rungs.clone();
        l.push(self.epochs);
        l
    }

    /// The first level at or after `done` epochs (at least the first).
    pub fn stop_for(&self, done: usize) -> usize {
        self.levels()
            .into_iter()
            .find(|&l| l >= done.max(1))
            .unwrap_or(self.epochs)
    }

    /// The sequence one worker would run, as far as `known` decides it
    /// (`None`: nothing known of that trial yet).
    pub fn simulate(&self, known: &[Option<Known>]) -> Sequence {
        let n = known.len();
        let mut s = Sequence {
            reached: vec![0; n],
            stopped: vec![false; n],
            next: None,
        };
        let first = self.rungs.first().copied().unwrap_or(self.epochs);
        let mut next_new = 0;
        loop {
            let job = self.promotion(&s, known).or_else(|| {
                (next_new < n).then(|| {
                    next_new += 1;
                    (next_new - 1, first)
                })
            });
            let Some((t, to)) = job else {
                return s;
            };
            match &known[t] {
                Some(k) if k.val_acc.len() >= to => s.reached[t] = to,
                Some(k) if k.finished => {
                    s.reached[t] = k.val_acc.len();
                    s.stopped[t] = true;
                }
                _ => {
                    s.next = Some((t, to));
                    return s;
                }
            }
        }
    }

    /// A trial's score at rung `r`: its best validation accuracy in its
    /// first `r` epochs as the sequence trained them.
    fn score_at(&self, s: &Sequence, known: &[Option<Known>], t: usize, r: usize) -> Option<f64> {
        if s.reached[t] < r && !s.stopped[t] {
            return None;
        }
        let k = known[t].as_ref()?;
        k.val_acc
            .iter()
            .take(r.min(s.reached[t]))
            .copied()
            .reduce(f64::max)
    }

    /// The next promotion: highest rung first, best first (ties: the
    /// earlier trial).
    fn promotion(&self, s: &Sequence, known: &[Option<Known>]) -> Option<(usize, usize)> {
        for (k, &r) in self.rungs.iter().enumerate().rev() {
            let mut at: Vec<(usize, f64)> = (0..s.reached.len())
                .filter_map(|t| self.score_at(s, known, t, r).map(|x| (t, x)))
                .collect();
            at.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let quota = (at.len() as f64 * self.keep).floor() as usize;
            let next = self.rungs.get(k + 1).copied().unwrap_or(self.epochs);
            if let Some(&(t, _)) = at
                .iter()
                .take(quota)
                .find(|&&(t, _)| s.reached[t] == r && !s.stopped[t])
            {
                return Some((t, next));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asha() -> Asha {
        Asha {
            rungs: vec![2, 5],
            epochs: 10,
            keep: 0.5,
        }
    }

    /// A trial whose every epoch scores `acc` (its curve is flat).
    fn flat(acc: f64, epochs: usize) -> Option<Known> {
        Some(Known {
            val_acc: vec![acc; epochs],
            finished: epochs == 10,
        })
    }

    #[test]
    fn the_sequence_is_that_of_one_worker_whatever_else_is_known() {
        let a = asha();
        // Nothing known: the first job is trial 0 to its first rung.
        let s = a.simulate(&[None, None, None, None]);
        assert_eq!(s.next, Some((0, 2)));
        // Trials 0 and 1 at the rung: half of two is one, the better goes
        // on before trial 2 starts.
        let s = a.simulate(&[flat(0.80, 2), flat(0.90, 2), None, None]);
        assert_eq!(s.next, Some((1, 5)));
        // Trial 2 already ran ahead (another core): still, trial 1's
        // promotion comes first.
        let s = a.simulate(&[flat(0.80, 2), flat(0.90, 2), flat(0.95, 2), None]);
        assert_eq!(s.next, Some((1, 5)));
        // Trial 1 at 5 (alone there: it waits); with trial 2 three are at
        // rung 2, and one goes on: trial 2, the best, at once.
        let s = a.simulate(&[flat(0.80, 2), flat(0.90, 5), flat(0.95, 2), None]);
        assert_eq!(s.next, Some((2, 5)));
        assert_eq!(s.reached, [2, 5, 2, 0]);
        // Two at rung 5: one goes on to the end, trial 2.
        let s = a.simulate(&[flat(0.80, 2), flat(0.90, 5), flat(0.95, 5), None]);
        assert_eq!(s.next, Some((2, 10)));
        // Then trial 3 starts; four at rung 2 send two on (both have
        // gone): the search is done.
        let s = a.simulate(&[flat(0.80, 2), flat(0.90, 5), flat(0.95, 10), None]);
        assert_eq!(s.next, Some((3, 2)));
        let s = a.simulate(&[flat(0.80, 2), flat(0.90, 5), flat(0.95, 10), flat(0.70, 2)]);
        assert!(s.done(), "{s:?}");
        assert_eq!(s.reached, [2, 5, 10, 2]);
    }

    #[test]
    fn epochs_trained_beyond_the_sequence_do_not_count() {
        // Trial 0 trained to 10 in an earlier search; here it is alone at
        // rung 2 when trial 1 arrives, and trial 1 is better.
        let a = asha();
        let s = a.simulate(&[flat(0.80, 10), flat(0.90, 2)]);
        assert_eq!(s.next, Some((1, 5)));
        assert_eq!(s.reached, [2, 2]);
    }

    #[test]
    fn a_trial_that_stopped_itself_scores_its_best_and_goes_no_further() {
        let a = asha();
        let stopped = Some(Known {
            val_acc: vec![0.95],
            finished: true,
        });
        let s = a.simulate(&[stopped, flat(0.8, 2)]);
        // Both at rung 2; the quota of one goes to trial 0, which has
        // nothing left: no promotion, the search is done.
        assert!(s.done(), "{s:?}");
        assert_eq!((s.reached[0], s.stopped[0]), (1, true));
        assert_eq!(a.stop_for(0), 2);
        assert_eq!(a.stop_for(3), 5);
        assert_eq!(a.stop_for(7), 10);
    }

    #[test]
    fn without_rungs_every_trial_trains_to_the_end() {
        let a = Asha {
            rungs: vec![],
            epochs: 3,
            keep: 1.0,
        };
        let s = a.simulate(&[None, None]);
        assert_eq!(s.next, Some((0, 3)));
    }
}
