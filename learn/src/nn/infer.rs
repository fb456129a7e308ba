//! Inference: logits of a whole split, and their loss and accuracy.

use crate::data::batch::Batcher;
use crate::data::dataset::{Dataset, Split};
use crate::nn::fast;
use crate::nn::generic::{Flat, Net};
use crate::nn::model::Model;
use crate::nn::ops::{Dev, Param, T2};
use dfdx::prelude::*;

/// A dfdx device the models run on: the CPU (fast kernels or the generic
/// path) or, in a CUDA build, a GPU (the generic path).
pub trait Backend: Device<f32> + RandomU64 {
    /// Whether the fast kernels run on this device.
    const FAST: bool;
    /// The fast kernels' logits; called only where [`Self::FAST`].
    fn fast<T: Tape<f32, Self>>(
        model: &mut Model,
        dev: &Self,
        x: Vec<f32>,
        tensors: &[Flat<Self>],
        train: bool,
        threads: usize,
    ) -> Logits<Self, T>;
}

/// A batch's logits, (N, classes).
pub type Logits<D, T> = Tensor<(usize, usize), f32, D, T>;

impl Backend for Dev {
    const FAST: bool = true;
    fn fast<T: Tape<f32, Self>>(
        model: &mut Model,
        dev: &Self,
        x: Vec<f32>,
        tensors: &[Param],
        train: bool,
        threads: usize,
    ) -> T2<T> {
        let (c, h, w) = model.input;
        let n = x.len() / (c * h * w);
        let xt = dev.tensor_from_vec(x, (n, c, h, w)).put_tape(T::default());
        model.forward(xt, tensors, train, threads)
    }
}

#[cfg(feature = "cuda")]
impl Backend for Cuda {
    const FAST: bool = false;
    fn fast<T: Tape<f32, Self>>(
        _: &mut Model,
        _: &Self,
        _: Vec<f32>,
        _: &[Flat<Self>],
        _: bool,
        _: usize,
    ) -> Logits<Self, T> {
        unreachable!("Engine::new never chooses the fast kernels off the CPU")
    }
}

/// Which implementation computes a model: the fast CPU kernels (`device:
/// cpu`), or the device-generic path: on a GPU (`cuda`), or on dfdx's CPU
/// device (`cpu-reference`: slow, for verification). All read and write
/// the same parameters, so a checkpoint from one evaluates on another.
#[derive(Debug, Clone)]
pub enum Engine<D: Backend = Dev> {
    Fast,
    Reference(Box<Net<D>>),
}

impl<D: Backend> Engine<D> {
    pub fn new(device: &str, model: &Model, dev: &D) -> Self {
        if D::FAST && device == "cpu" {
            Engine::Fast
        } else {
            Engine::Reference(Box::new(Net::new(model, dev)))
        }
    }

    /// Logits of `n` images (flattened channels-first, as batches hold
    /// them), recorded on a fresh tape of type `T` (`OwnedTape` to train).
    pub fn forward<T: Tape<f32, D>>(
        &self,
        model: &mut Model,
        dev: &D,
        x: Vec<f32>,
        tensors: &[Flat<D>],
        train: bool,
        threads: usize,
    ) -> Logits<D, T> {
        match self {
            Engine::Fast => D::fast(model, dev, x, tensors, train, threads),
            Engine::Reference(net) => {
                let (c, h, w) = model.input;
                let n = x.len() / (c * h * w);
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
pub fn predict<D: Backend>(
    model: &mut Model,
    tensors: &[Flat<D>],
    data: &Dataset,
    split: &Split,
    batch: usize,
    threads: usize,
    (dev, engine): (&D, &Engine<D>),
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
    if let Engine::Fast = engine {
        // The weights read once, the buffers reused from batch to batch.
        let params: Vec<Vec<f32>> = tensors.iter().map(|t| t.as_vec()).collect();
        let mut ws = fast::Workspace::default();
        for k in 0..b.batches() {
            b.fill(&order, 0, k, &mut x, &mut y);
            let n = y.len();
            let logits = fast::logits(model, &params, std::mem::take(&mut x), n, threads, &mut ws);
            out.extend_from_slice(&logits);
            ws.give_back(logits);
        }
        return out;
    }
    for k in 0..b.batches() {
        b.fill(&order, 0, k, &mut x, &mut y);
        let logits: Logits<D, NoneTape> =
            engine.forward(model, dev, std::mem::take(&mut x), tensors, false, threads);
        out.extend(logits.as_vec());
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
