//! Inference: logits of a whole split, and their loss and accuracy.

use crate::data::batch::Batcher;
use crate::data::dataset::{Dataset, Split};
use crate::nn::model::Model;
use crate::nn::ops::{host, Dev, Param};
use dfdx::prelude::*;

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
    dev: &Dev,
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
        let n = b.fill(&order, 0, k, &mut x, &mut y);
        let xt = dev.tensor_from_vec(std::mem::take(&mut x), (n, 1, data.rows, data.cols));
        out.extend(host(&model.forward(xt, tensors, false, threads)));
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
