//! Training a model: the learner (weights, optimizer, averaged weights),
//! the loop over epochs with validation, the best epoch kept, the plateau
//! and early stopping, a state saved after each epoch to resume or go on
//! from, and the threads it grows onto. What happens is told to an
//! observer as [`Event`]s; the words are the caller's.

pub mod ema;
pub mod fit;
pub mod learner;
pub mod recipe;
pub mod state;
mod threads;

#[cfg(test)]
mod tests;

pub use fit::{fit, Event, Plan, StartOver, TrainError};
pub use learner::Learner;
pub use recipe::Recipe;
pub use threads::Threads;

use serde::{Deserialize, Serialize};

/// One epoch of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f32,
    pub seconds: f64,
    pub img_per_s: f64,
}

/// How a training went.
pub struct TrainReport {
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_val_acc: f64,
    pub stopped_early: bool,
    /// Epochs taken over from an interrupted run (0 when none).
    pub resumed_epochs: usize,
    /// Stopped at `stop_after`, short of `epochs`: a later run goes on.
    pub paused: bool,
}
