//! The main CNN's training and inference throughput, for `fmnist-pipe
//! bench` (which compares it with the PyTorch twin).

use crate::contract::CLASSES;
use crate::runtime::{peak_rss_mb, tune_allocator};
use crate::train::{Learner, TrainParams};
use learn::data::batch::Batcher;
use learn::data::dataset::{Dataset, Split};
use learn::nn::infer::predict;
use serde::Serialize;
use std::time::Instant;

/// Throughput of the main CNN: figures for `fmnist-pipe bench`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub threads: usize,
    pub batch: usize,
    pub train_img_per_s: f64,
    pub eval_img_per_s: f64,
    pub peak_rss_mb: f64,
    pub data: String,
}

/// Why the speed could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] crate::train::Unbuildable),
    #[error("the dataset has no train split")]
    NoTrainSplit,
    #[error("cannot start its threads: {0}")]
    Threads(rayon::ThreadPoolBuildError),
}

/// Trains the main CNN for `batches` timed batches (after 3 warm-up ones)
/// and runs inference on 4,096 images, at `threads` threads.
pub fn bench(
    data: &Dataset,
    label: &str,
    threads: usize,
    batches: usize,
) -> Result<BenchReport, BenchError> {
    tune_allocator();
    let p: TrainParams =
        serde_json::from_value(serde_json::json!({"model": "main-cnn", "epochs": 1}))
            .expect("the main CNN's parameters are valid");
    let mut model = p.model(data.rows, data.cols)?;
    let train = data.split("train").ok_or(BenchError::NoTrainSplit)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(BenchError::Threads)?;
    pool.install(|| {
        let mut learner = Learner::new(&model, 1, 1e-3, (0.9, 0.999), 1e-8, 0.0);
        let b = Batcher {
            dataset: data,
            split: train,
            augment: &[],
            batch_size: 64,
            seed: 1,
            shuffle: true,
        };
        let order = b.order(0);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut timed = Vec::new();
        for k in 0..batches + 3 {
            b.fill(&order, 0, k % b.batches(), &mut x, &mut y);
            let t = Instant::now();
            learner.step(&mut model, std::mem::take(&mut x), &y, threads);
            if k >= 3 {
                timed.push(t.elapsed().as_secs_f64());
            }
        }
        timed.sort_by(f64::total_cmp);
        let median = timed[timed.len() / 2];
        let eval_split = train.head("bench", 4096, data.pixels_per_image());
        // A warm-up pass, then the timed one.
        let mut infer = || {
            let t = Instant::now();
            predict(
                &mut model,
                &learner.tensors,
                data,
                &eval_split,
                256,
                threads,
                (&learner.dev, &learner.engine),
            );
            t.elapsed().as_secs_f64()
        };
        infer();
        let seconds = infer();
        let eval = eval_split.len() as f64 / seconds;
        Ok(BenchReport {
            threads,
            batch: 64,
            train_img_per_s: 64.0 / median,
            eval_img_per_s: eval,
            peak_rss_mb: peak_rss_mb(),
            data: label.to_string(),
        })
    })
}

/// A synthetic dataset (random pixels) for benchmarks without the real data.
pub fn synthetic_dataset(n: usize) -> Dataset {
    let mut r = learn::data::augment::Rng::new(7);
    Dataset {
        rows: 28,
        cols: 28,
        mean: 0.5,
        std: 0.5,
        splits: vec![Split {
            name: "train".into(),
            labels: (0..n).map(|i| (i % CLASSES) as u8).collect(),
            indices: (0..n as u32).collect(),
            pixels: (0..n * 784).map(|_| (r.next_u64() & 0xff) as u8).collect(),
        }],
    }
}
