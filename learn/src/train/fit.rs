//! The training loop: epochs of steps, validation after each, the best
//! epoch kept, the plateau and early stopping, and the state saved after
//! each epoch so that a run resumed or promoted goes on bit for bit.

use super::learner::Learner;
use super::state::{self, Saved, Snapshot};
use super::threads::Threads;
use super::{EpochRecord, TrainReport};
use crate::data::augment::Augment;
use crate::data::batch::Batcher;
use crate::data::dataset::Dataset;
use crate::nn::infer::{predict, score, Backend};
use crate::nn::model::Model;
use crate::nn::schedule::Schedule;
use std::path::Path;
use std::time::Instant;

/// What a training is asked to do, beyond its learner's recipe.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub epochs: usize,
    pub batch_size: usize,
    /// At most this many batches an epoch.
    pub max_batches: Option<usize>,
    /// Seeds the order of the batches and their augmentation.
    pub seed: u64,
    pub augment: &'a [Augment],
    /// The base learning rate the schedule scales.
    pub lr: f32,
    pub schedule: Schedule,
    /// Stop after this many epochs without a better validation accuracy.
    pub patience: Option<usize>,
}

/// What the loop tells its observer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A saved state was not taken up: the training starts over.
    StartsOver(StartOver),
    /// A saved state was taken up after `done` of `epochs` epochs.
    Resumed { done: usize, epochs: usize },
    /// It now runs on more threads (a core came free).
    Grown { threads: usize },
    /// Every ten batches and at an epoch's end: the epoch's mean loss so
    /// far, its rate, and the time left for this run.
    Batch {
        epoch: usize,
        epochs: usize,
        batch: usize,
        batches: usize,
        /// The last epoch's validation accuracy.
        last_val_acc: Option<f64>,
        loss: f64,
        img_per_s: f64,
        eta_s: f64,
        /// Of the whole training.
        fraction: f64,
    },
    /// An epoch ended and was validated.
    Epoch {
        record: EpochRecord,
        epochs: usize,
        /// Its time with validation, measured as it is told.
        seconds: f64,
        eta_s: f64,
    },
}

/// Why a saved state was thrown away.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartOver {
    Damaged(String),
    DoesNotFit(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the dataset has no {0} split")]
    NoSplit(&'static str),
    #[error("the train and validation splits must not be empty")]
    EmptySplits,
    #[error("the loss became {loss} at epoch {epoch} batch {batch}: lower lr")]
    Diverged {
        loss: f64,
        epoch: usize,
        batch: usize,
    },
    /// The state after an epoch could not be saved.
    #[error(transparent)]
    Save(#[from] state::StateError),
}

/// The saved state a resumed training takes up: whole, for an epoch not
/// yet reached, and fitting the model; otherwise the observer hears why
/// it is thrown away (the training starts over).
fn take_up<D: Backend>(
    learner: &mut Learner<D>,
    model: &mut Model,
    epochs: usize,
    observe: &(dyn Fn(Event) + Sync),
    resume: Option<&Path>,
) -> Option<Saved> {
    let saved = match resume {
        Some(dir) => Saved::load(dir).unwrap_or_else(|why| {
            observe(Event::StartsOver(StartOver::Damaged(why.to_string())));
            None
        }),
        None => None,
    };
    // A state that does not fit is left alone: restore changes nothing then.
    saved
        .filter(|s| s.epochs_done < epochs)
        .and_then(|s| match learner.restore(model, &s) {
            Ok(()) => Some(s),
            Err(why) => {
                observe(Event::StartsOver(StartOver::DoesNotFit(why.to_string())));
                None
            }
        })
}

/// One pass over the training split: which epoch, of how many batches,
/// the last epoch's validation accuracy, and for the time left, when this
/// run and this epoch started, the steps done before this run, and the
/// steps in all.
#[derive(Clone, Copy)]
struct Pass {
    epoch: usize,
    batches: usize,
    last_val: Option<f64>,
    started: Instant,
    epoch_start: Instant,
    before: usize,
    total: usize,
}

/// One epoch's steps, told every ten batches: (summed loss, correct,
/// images seen).
fn epoch_steps<D: Backend>(
    learner: &mut Learner<D>,
    model: &mut Model,
    batcher: &Batcher<'_>,
    plan: &Plan<'_>,
    threads: usize,
    observe: &(dyn Fn(Event) + Sync),
    clock: &Pass,
) -> Result<(f64, usize, usize), TrainError> {
    let Pass {
        epoch,
        batches,
        last_val,
        ..
    } = *clock;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let order = batcher.order(epoch as u64);
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    // The rate of each step where the schedule says it (all but plateau,
    // whose rate the loop lowers between epochs).
    let scheduled = !matches!(plan.schedule, Schedule::Plateau(_));
    for k in 0..batches {
        if scheduled {
            let lr = plan
                .schedule
                .lr_at(plan.lr, epoch * batches + k, plan.epochs, batches);
            learner.opt.set_lr(lr);
        }
        let n = batcher.fill(&order, epoch as u64, k, &mut x, &mut y);
        let (l, c) = learner.step(model, std::mem::take(&mut x), &y, threads);
        if !l.is_finite() {
            return Err(TrainError::Diverged {
                loss: l,
                epoch: epoch + 1,
                batch: k + 1,
            });
        }
        loss_sum += l * n as f64;
        correct += c;
        seen += n;
        if k % 10 == 9 || k + 1 == batches {
            let done = epoch * batches + k + 1;
            let this_run = done - clock.before;
            observe(Event::Batch {
                epoch: epoch + 1,
                epochs: plan.epochs,
                batch: k + 1,
                batches,
                last_val_acc: last_val,
                loss: loss_sum / seen as f64,
                img_per_s: seen as f64 / clock.epoch_start.elapsed().as_secs_f64(),
                eta_s: clock.started.elapsed().as_secs_f64() / this_run as f64
                    * (clock.total - done) as f64,
                fraction: done as f64 / clock.total as f64,
            });
        }
    }
    Ok((loss_sum, correct, seen))
}

/// The best epoch's parameters and batch-norm buffers become the model's.
fn keep_best(model: &mut Model, (params, buffers): Snapshot) {
    for (t, d) in model.params.iter_mut().zip(params) {
        t.data = d;
    }
    for (t, d) in model.buffers.iter_mut().zip(buffers) {
        t.data = d;
    }
}

/// What the loop carries from one epoch to the next besides the learner.
struct Carried {
    history: Vec<EpochRecord>,
    best_acc: f64,
    best_epoch: usize,
    /// The best epoch's parameters and batch-norm buffers.
    best: Option<Snapshot>,
    plateau_best: f64,
    bad_epochs: usize,
    since_best: usize,
}

impl Carried {
    fn new(saved: Option<&Saved>) -> Carried {
        match saved {
            Some(s) => Carried {
                history: s.history.clone(),
                best_acc: s.best_acc,
                best_epoch: s.best_epoch,
                best: s.best.clone(),
                plateau_best: s.plateau_best,
                bad_epochs: s.bad_epochs,
                since_best: s.since_best,
            },
            None => Carried {
                history: Vec::new(),
                best_acc: f64::NEG_INFINITY,
                best_epoch: 0,
                best: None,
                plateau_best: f64::NEG_INFINITY,
                bad_epochs: 0,
                since_best: 0,
            },
        }
    }

    /// Takes in epoch `epoch`'s validation accuracy: the best epoch (its
    /// weights as validated, before the learner puts its own back), then
    /// the plateau's rate.
    fn judge<D: Backend>(
        &mut self,
        learner: &mut Learner<D>,
        model: &mut Model,
        plan: &Plan<'_>,
        (epoch, val_acc): (usize, f64),
    ) {
        if val_acc > self.best_acc {
            self.best_acc = val_acc;
            self.best_epoch = epoch + 1;
            self.since_best = 0;
            self.best = Some(learner.snapshot(model));
        } else {
            self.since_best += 1;
        }
        learner.after_validation(model);
        // ReduceLROnPlateau, mode max, relative threshold 1e-4 (PyTorch's defaults).
        if let Schedule::Plateau(pl) = &plan.schedule {
            if val_acc > self.plateau_best * (1.0 + 1e-4) {
                self.plateau_best = val_acc;
                self.bad_epochs = 0;
            } else {
                self.bad_epochs += 1;
                if self.bad_epochs > pl.patience {
                    learner.opt.set_lr(learner.opt.lr() * pl.factor);
                    self.bad_epochs = 0;
                }
            }
        }
    }

    /// The state saved after `epochs_done` epochs.
    fn saved<D: Backend>(&self, learner: &Learner<D>, model: &Model, epochs_done: usize) -> Saved {
        let opt = learner.opt.state();
        Saved {
            epochs_done,
            master: learner.master.clone(),
            buffers: model.buffers.iter().map(|b| b.data.clone()).collect(),
            adam_step: opt.step,
            adam_m: opt.first,
            adam_v: opt.second,
            lr: learner.opt.lr(),
            best: self.best.clone(),
            best_acc: self.best_acc,
            best_epoch: self.best_epoch,
            plateau_best: self.plateau_best,
            bad_epochs: self.bad_epochs,
            since_best: self.since_best,
            history: self.history.clone(),
            draws: learner.draws,
            ema: learner
                .ema
                .as_ref()
                .map(|e| (e.params.clone(), e.buffers.clone())),
        }
    }
}

/// Trains `model` in place on whichever device `learner` holds; on return
/// it holds the best weights by validation accuracy. `resume`: a
/// directory where the state after each epoch is saved, and from which a
/// saved state is taken up (the caller keys it so that a saved state
/// always belongs to this training). `stop_after`: pause after this many
/// epochs (a search's rung), the state saved for a later run to go on
/// from; the schedule is still that of `plan.epochs`, so the epochs run
/// are the same bits either way.
pub fn fit<D: Backend>(
    mut learner: Learner<D>,
    model: &mut Model,
    data: &Dataset,
    plan: &Plan<'_>,
    mut threads: Threads<'_>,
    observe: &(dyn Fn(Event) + Sync),
    (resume, stop_after): (Option<&Path>, Option<usize>),
) -> Result<TrainReport, TrainError> {
    // Only a CPU training moves to a grown pool's threads (see
    // `Threads::install`): a GPU's device stays on its thread.
    if !D::FAST {
        threads.fixed();
    }
    let train = data.split("train").ok_or(TrainError::NoSplit("train"))?;
    let val = data
        .split("validation")
        .ok_or(TrainError::NoSplit("validation"))?;
    if train.is_empty() || val.is_empty() {
        return Err(TrainError::EmptySplits);
    }
    let batcher = Batcher {
        dataset: data,
        split: train,
        augment: plan.augment,
        batch_size: plan.batch_size,
        seed: plan.seed,
        shuffle: true,
    };
    let batches = plan
        .max_batches
        .map_or(batcher.batches(), |m| m.min(batcher.batches()));
    let saved = take_up(&mut learner, model, plan.epochs, observe, resume);
    let first_epoch = saved.as_ref().map_or(0, |s| s.epochs_done);
    let mut c = Carried::new(saved.as_ref());
    if saved.is_some() {
        observe(Event::Resumed {
            done: first_epoch,
            epochs: plan.epochs,
        });
    }
    let mut stopped_early = false;
    let started = Instant::now();
    let last = stop_after.map_or(plan.epochs, |s| s.min(plan.epochs));
    for epoch in first_epoch..last.max(first_epoch) {
        if let Some(n) = threads.grown() {
            observe(Event::Grown { threads: n });
        }
        let t = Instant::now();
        let last_acc = c.history.last().map(|h| h.val_acc);
        let n = threads.now;
        let clock = Pass {
            epoch,
            batches,
            last_val: last_acc,
            started,
            epoch_start: t,
            before: first_epoch * batches,
            total: batches * plan.epochs,
        };
        let (loss_sum, correct, seen) = threads
            .install(|| epoch_steps(&mut learner, model, &batcher, plan, n, observe, &clock))?;
        let train_secs = t.elapsed().as_secs_f64();
        learner.for_validation(model);
        let logits = threads.install(|| {
            predict(
                model,
                learner.validation_weights(),
                data,
                val,
                256,
                n,
                (&learner.dev, &learner.engine),
            )
        });
        let (val_loss, val_correct) = score(&logits, &val.labels);
        let val_acc = val_correct as f64 / val.len() as f64;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss,
            val_acc,
            lr: learner.opt.lr(),
            seconds: t.elapsed().as_secs_f64(),
            img_per_s: seen as f64 / train_secs,
        };
        c.history.push(record.clone());
        let done = epoch + 1 - first_epoch;
        observe(Event::Epoch {
            record,
            epochs: plan.epochs,
            seconds: t.elapsed().as_secs_f64(),
            eta_s: started.elapsed().as_secs_f64() / done as f64 * (last - epoch - 1) as f64,
        });
        c.judge(&mut learner, model, plan, (epoch, val_acc));
        if plan.patience.is_some_and(|p| c.since_best >= p) {
            stopped_early = epoch + 1 < plan.epochs;
            break;
        }
        if let Some(dir) = resume.filter(|_| epoch + 1 < plan.epochs) {
            c.saved(&learner, model, epoch + 1).save(dir)?;
            state::write_progress(dir, epoch + 1, plan.epochs)?;
        }
    }
    if let Some(snapshot) = c.best {
        keep_best(model, snapshot);
    }
    let paused = !stopped_early && c.history.len() < plan.epochs;
    Ok(TrainReport {
        history: c.history,
        best_epoch: c.best_epoch,
        best_val_acc: c.best_acc,
        stopped_early,
        resumed_epochs: first_epoch,
        paused,
    })
}
