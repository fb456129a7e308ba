//! Shuffled, augmented, normalized batches: the same seed and epoch give
//! the same batches whatever the thread count.

use super::augment::{apply, Augment, Rng};
use super::dataset::{Dataset, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub struct Batcher<'a> {
    pub dataset: &'a Dataset,
    pub split: &'a Split,
    pub augment: &'a [Augment],
    pub batch_size: usize,
    pub seed: u64,
    pub shuffle: bool,
}

impl Batcher<'_> {
    /// The order of the examples in `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.split.len() as u32).collect();
        if self.shuffle {
            let mut rng =
                ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            order.shuffle(&mut rng);
        }
        order
    }

    pub fn batches(&self) -> usize {
        self.split.len().div_ceil(self.batch_size.max(1))
    }

    /// Fills batch `b` of `order` into `x` (N×rows×cols, normalized) and
    /// `y`; returns the batch's size.
    pub fn fill(
        &self,
        order: &[u32],
        epoch: u64,
        b: usize,
        x: &mut Vec<f32>,
        y: &mut Vec<u8>,
    ) -> usize {
        let start = b * self.batch_size;
        let items = &order[start..(start + self.batch_size).min(order.len())];
        let n = self.dataset.pixels_per_image();
        let (rows, cols) = (self.dataset.rows, self.dataset.cols);
        x.resize(items.len() * n, 0.0);
        y.clear();
        y.extend(items.iter().map(|&i| self.split.labels[i as usize]));
        x.par_chunks_mut(n)
            .zip(items.par_iter().enumerate())
            .for_each_init(
                || (Vec::with_capacity(n), vec![0.0f32; n]),
                |(a, scratch), (out, (k, &i))| {
                    let px = &self.split.pixels[i as usize * n..(i as usize + 1) * n];
                    if self.augment.is_empty() {
                        self.dataset.normalize(px, out);
                        return;
                    }
                    a.clear();
                    a.extend(px.iter().map(|&p| p as f32));
                    let mut rng = Rng::for_item(self.seed, epoch, (start + k) as u64);
                    apply(self.augment, a, scratch, rows, cols, &mut rng);
                    self.dataset.normalize_f32(a, out);
                },
            );
        items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> Dataset {
        let n = 50;
        Dataset {
            rows: 28,
            cols: 28,
            mean: 0.5,
            std: 0.5,
            splits: vec![Split {
                name: "train".into(),
                labels: (0..n).map(|i| (i % 10) as u8).collect(),
                indices: (0..n as u32).collect(),
                pixels: (0..n * 784).map(|i| (i * 7 % 251) as u8).collect(),
            }],
        }
    }

    fn epoch_batches(threads: usize, seed: u64, epoch: u64) -> Vec<(Vec<f32>, Vec<u8>)> {
        let d = dataset();
        let augs = vec![
            Augment::Rotate(10.0),
            Augment::Hflip(0.5),
            Augment::Crop {
                size: 28,
                padding: 4,
            },
        ];
        let b = Batcher {
            dataset: &d,
            split: &d.splits[0],
            augment: &augs,
            batch_size: 16,
            seed,
            shuffle: true,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let order = b.order(epoch);
            (0..b.batches())
                .map(|k| {
                    let (mut x, mut y) = (Vec::new(), Vec::new());
                    b.fill(&order, epoch, k, &mut x, &mut y);
                    (x, y)
                })
                .collect()
        })
    }

    #[test]
    fn same_seed_and_epoch_same_batches_whatever_the_threads() {
        let one = epoch_batches(1, 5, 2);
        assert_eq!(one.len(), 4);
        assert_eq!(one[3].1.len(), 2, "the last batch holds the remainder");
        assert_eq!(one, epoch_batches(2, 5, 2));
        assert_eq!(one, epoch_batches(3, 5, 2));
        assert_ne!(one, epoch_batches(1, 5, 3), "another epoch, another order");
        assert_ne!(one, epoch_batches(1, 6, 2), "another seed, another order");
        let all: usize = one.iter().map(|(_, y)| y.len()).sum();
        assert_eq!(all, 50);
        assert!(one[0].0.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
