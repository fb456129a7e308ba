//! Inference: logits of a whole split, and their loss and accuracy.

use crate::data::batch::Batcher;
use crate::data::dataset::{Dataset, Split};
use crate::nn::generic::Net;
use crate::nn::model::Model;
use crate::nn::ops::{host, Dev, Param, T2};
use dfdx::prelude::*;

/// Which implementation computes a model on the CPU: the fast kernels
/// (`device: cpu`), or the device-generic path that runs on CUDA, on
/// dfdx's CPU device (`device: cpu-reference`: slow, for verification).
/// Both read and write the same parameters, so a checkpoint from one
/// evaluates on the other.
#[derive(Debug, Clone)]
pub enum Engine {
    Fast,
    Reference(Box<Net<Dev>>),
}

impl Engine {
    pub fn new(device: &str, model: &Model, dev: &Dev) -> Engine {
        if device == "cpu-reference" {
            Engine::Reference(Box::new(Net::new(model, dev)))
        } else {
            Engine::Fast
        }
    }

    /// Logits of `n` images (flattened channels-first, as batches hold
    /// them), recorded on a fresh tape of type `T` (`OwnedTape` to train).
    pub fn forward<T: Tape<f32, Dev> + Merge<NoneTape>>(
        &self,
        model: &mut Model,
        dev: &Dev,
        x: Vec<f32>,
        tensors: &[Param],
        train: bool,
        threads: usize,
    ) -> T2<T> {
        let (c, h, w) = model.input;
        let n = x.len() / (c * h * w);
        match self {
            Engine::Fast => {
                let xt = dev.tensor_from_vec(x, (n, c, h, w)).put_tape(T::default());
                model.forward(xt, tensors, train, threads)
            }
            Engine::Reference(net) => {
                let x = crate::nn::generic::channels_last(x, n, c, h * w);
                let xt = dev
                    .tensor_from_vec(x, (n, c * h * w))
                    .put_tape(T::default());
                net.forward(xt, tensors, &mut model.buffers, train)
            }
        }
    }
}

/// Cross-entropy loss and correct count of logits (n×classes) on the host.
pub fn score(logits: &[f32], labels: &[u8]) -> (f64, usize) {
    let c = logits.len() / labels.len().max(1);
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (row, &y) in logits.chunks(c).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64
            + row
                .iter()
                .map(|&v| ((v - max) as f64).exp())
                .sum::<f64>()
                .ln();
        loss += lse - row[y as usize] as f64;
        let arg = row
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
        correct += usize::from(arg == y as usize);
    }
    (loss / labels.len().max(1) as f64, correct)
}

/// Logits of every example of `split`, in order, in inference mode.
pub fn predict(
    model: &mut Model,
    tensors: &[Param],
    data: &Dataset,
    split: &Split,
    batch: usize,
    threads: usize,
    (dev, engine): (&Dev, &Engine),
) -> Vec<f32> {
    let b = Batcher {
        dataset: data,
        split,
        augment: &[],
        batch_size: batch,
        seed: 0,
        shuffle: false,
    };
    let order = b.order(0);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(split.len() * model.classes);
    for k in 0..b.batches() {
        b.fill(&order, 0, k, &mut x, &mut y);
        let logits: T2<NoneTape> =
            engine.forward(model, dev, std::mem::take(&mut x), tensors, false, threads);
        out.extend(host(&logits));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_counts_and_averages() {
        let logits = [2.0, 0.0, 0.0, 0.0, 5.0, 1.0];
        let (loss, correct) = score(&logits, &[0, 2]);
        assert_eq!(correct, 1);
        assert!(loss > 0.0);
    }
}
