//! Weights averaged over the steps (`ema`).

use crate::nn::generic::Flat;
use crate::nn::infer::Backend;

/// An exponential moving average of the weights and of the batch-norm
/// statistics (as timm's ModelEma keeps every entry of the state), updated
/// after every step: `avg = decay · avg + (1 − decay) · current`, starting
/// from the initial weights.
pub struct Ema<D: Backend> {
    pub decay: f32,
    pub params: Vec<Vec<f32>>,
    pub buffers: Vec<Vec<f32>>,
    /// The averaged weights on the device, for validation.
    pub(crate) tensors: Vec<Flat<D>>,
}

pub(crate) fn blend(avg: &mut [Vec<f32>], now: &[Vec<f32>], decay: f32) {
    use rayon::prelude::*;
    for (a, n) in avg.iter_mut().zip(now) {
        a.par_chunks_mut(1 << 14)
            .zip(n.par_chunks(1 << 14))
            .for_each(|(a, n)| {
                for (x, y) in a.iter_mut().zip(n) {
                    *x = decay * *x + (1.0 - decay) * *y;
                }
            });
    }
}
