//! Augmented batches per second on one core (target: above 50,000 img/s),
//! with plain normalized batches measured in the same run as the reference.
//!
//! cargo bench -p stages --bench augment

use learn::data::augment::Augment;
use learn::data::batch::Batcher;
use learn::data::dataset::{Dataset, Split};
use std::time::Instant;

fn throughput(d: &Dataset, augs: &[Augment]) -> f64 {
    let b = Batcher {
        dataset: d,
        split: &d.splits[0],
        augment: augs,
        batch_size: 64,
        seed: 1,
        shuffle: true,
    };
    let mut rates = Vec::new();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for epoch in 0..5 {
        let order = b.order(epoch);
        let t = Instant::now();
        for k in 0..b.batches() {
            b.fill(&order, epoch, k, &mut x, &mut y);
        }
        rates.push(d.splits[0].len() as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let n = 20_000;
    let d = Dataset {
        rows: 28,
        cols: 28,
        mean: 0.5,
        std: 0.5,
        splits: vec![Split {
            name: "train".into(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            indices: (0..n as u32).collect(),
            pixels: (0..n * 784).map(|i| ((i * 31) % 256) as u8).collect(),
        }],
    };
    let augs = [
        Augment::Rotate(10.0),
        Augment::Hflip(0.5),
        Augment::Crop {
            size: 28,
            padding: 4,
        },
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    let (aug, plain) = pool.install(|| (throughput(&d, &augs), throughput(&d, &[])));
    println!(
        "threads=1 augment_img_per_s={aug:.0} (target > 50000, {:.1}x target) plain_img_per_s={plain:.0} augment/plain={:.2}",
        aug / 50_000.0,
        aug / plain
    );
}
