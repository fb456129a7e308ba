//! The loop's bit-for-bit tests: the same weights on any thread count,
//! on the AVX2 and AVX-512 kernels, fused or not, resumed or paused and
//! promoted; the generic path trains like the fast one; the plateau and
//! early stopping act.

use super::state::{self, Saved};
use super::*;
use crate::data::augment::{Augment, Rng};
use crate::data::dataset::{Dataset, Split};
use crate::nn::model::{Knobs, Model, ModelSpec};
use crate::nn::ops::Dev;
use crate::nn::optim::Rule;
use crate::nn::schedule::{PlateauSpec, Schedule, StepSpec};
use serde_json::json;
use std::path::Path;

/// Separable synthetic data: the class is drawn as a bright band, so a
/// few batches must take the model far above chance.
fn bands(n: usize, seed: u64) -> Split {
    let mut r = Rng::new(seed);
    let mut pixels = vec![0u8; n * 784];
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for (i, &c) in labels.iter().enumerate() {
        for y in 0..28 {
            for x in 0..28 {
                let band = (y / 3) == c as usize;
                let noise = (r.next_u64() % 60) as u8;
                pixels[i * 784 + y * 28 + x] = if band { 200 + noise / 2 } else { noise };
            }
        }
    }
    Split {
        name: String::new(),
        labels,
        indices: (0..n as u32).collect(),
        pixels,
    }
}

fn small_data() -> Dataset {
    let mut train = bands(400, 1);
    train.name = "train".into();
    let mut val = bands(100, 2);
    val.name = "validation".into();
    Dataset {
        rows: 28,
        cols: 28,
        mean: 0.5,
        std: 0.5,
        splits: vec![train, val],
    }
}

/// A training as these tests ask for it: a model, the learner's recipe
/// and the loop's plan, with the train kind's defaults (Adam, the
/// reference plateau, early stopping after 5 epochs, the zoo's knobs).
#[derive(Clone)]
struct Setup {
    model: ModelSpec,
    recipe: Recipe,
    epochs: usize,
    batch_size: usize,
    max_batches: Option<usize>,
    seed: u64,
    augment: Vec<Augment>,
    schedule: Schedule,
    patience: Option<usize>,
    /// The model's kernels, where not what the core gives.
    kernels: Option<crate::nn::simd::Family>,
}

/// Where and how far a training runs.
#[derive(Clone, Copy)]
struct On<'a> {
    device: &'a str,
    threads: usize,
    resume: Option<&'a Path>,
    stop_after: Option<usize>,
    grow: Option<&'a Path>,
}

impl On<'_> {
    fn cpu(threads: usize) -> On<'static> {
        On {
            device: "cpu",
            threads,
            resume: None,
            stop_after: None,
            grow: None,
        }
    }
}

impl Setup {
    fn model(&self) -> Model {
        let knobs = Knobs {
            dropout: 0.25,
            batchnorm: true,
            channels: None,
            hidden: None,
        };
        let layers = self.model.layers(&knobs).unwrap();
        let mut m = Model::new(layers, (1, 28, 28), 10, self.seed).unwrap();
        if let Some(f) = self.kernels {
            m.set_kernels(f);
        }
        m
    }

    fn plan(&self) -> Plan<'_> {
        Plan {
            epochs: self.epochs,
            batch_size: self.batch_size,
            max_batches: self.max_batches,
            seed: self.seed,
            augment: &self.augment,
            lr: self.recipe.lr,
            schedule: self.schedule.clone(),
            patience: self.patience,
        }
    }

    fn set_lr(&mut self, lr: f32) {
        self.recipe.lr = lr;
    }

    /// Trains `model` as `on` says, telling `observe`.
    fn train_on(
        &self,
        model: &mut Model,
        data: &Dataset,
        observe: &(dyn Fn(Event) + Sync),
        on: On<'_>,
    ) -> TrainReport {
        let learner = Learner::on(
            Dev::seed_from_u64(self.seed),
            on.device,
            model,
            &self.recipe,
        );
        fit(
            learner,
            model,
            data,
            &self.plan(),
            Threads::new(on.threads, on.grow),
            observe,
            (on.resume, on.stop_after),
        )
        .unwrap()
    }

    /// Trains on the CPU's fast path, saving its state in `resume`.
    fn train(
        &self,
        model: &mut Model,
        data: &Dataset,
        threads: usize,
        observe: &(dyn Fn(Event) + Sync),
        resume: Option<&Path>,
    ) -> TrainReport {
        let on = On {
            resume,
            ..On::cpu(threads)
        };
        self.train_on(model, data, observe, on)
    }
}

fn small_params() -> Setup {
    Setup {
        model: serde_json::from_value(json!({"layers": [
            {"conv": {"out": 4, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool": 2},
            "flatten", {"linear": 16}, "relu", {"dropout": 0.1}, {"linear": 10}]}))
        .unwrap(),
        recipe: Recipe::adam(0.003, (0.9, 0.999), 1e-8, 0.0),
        epochs: 2,
        batch_size: 32,
        max_batches: None,
        seed: 5,
        augment: serde_json::from_value(json!([{"hflip": 0.5}])).unwrap(),
        schedule: Schedule::reference(),
        patience: Some(5),
        kernels: None,
    }
}

/// The modern recipe: AdamW, cosine with warmup, weight averaging,
/// label smoothing, clipping, translation and erasing.
fn recipe_params() -> Setup {
    let base = small_params();
    Setup {
        recipe: Recipe {
            rule: Rule::AdamW,
            weight_decay: 0.05,
            label_smoothing: 0.1,
            grad_clip: Some(1.0),
            ema: Some(0.9),
            ..base.recipe.clone()
        },
        epochs: 3,
        schedule: serde_json::from_value(json!({"cosine": {"warmup_epochs": 1, "min_lr": 0.0001}}))
            .unwrap(),
        augment: serde_json::from_value(
            json!([{"hflip": 0.5}, {"translate": 2}, {"erase": {"p": 0.5}}]),
        )
        .unwrap(),
        ..base
    }
}

/// A fresh model trained in a pool of `threads` threads.
fn on_threads(data: &Dataset, p: &Setup, threads: usize) -> (Model, TrainReport) {
    let mut m = p.model();
    let r = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| p.train(&mut m, data, threads, &|_| {}, None));
    (m, r)
}

#[test]
fn learns_and_is_deterministic() {
    let data = small_data();
    let p = small_params();
    let run = |threads| on_threads(&data, &p, threads);
    let (m1, r1) = run(2);
    assert_eq!(r1.history.len(), 2);
    assert!(
        r1.history[1].train_loss < r1.history[0].train_loss || r1.history[0].train_loss < 1.0,
        "{:?}",
        r1.history
    );
    assert!(
        r1.best_val_acc > 0.6,
        "validation accuracy {} is not far above chance (0.1)",
        r1.best_val_acc
    );
    // The scheduler gives a training however many threads are free:
    // the weights must not depend on it.
    for threads in [2, 1, 3] {
        let (m2, r2) = run(threads);
        assert_eq!(
            m1.params, m2.params,
            "same seed, {threads} threads: bit-identical weights"
        );
        assert_eq!(m1.buffers, m2.buffers);
        assert_eq!(
            r1.history.iter().map(|h| h.val_acc).collect::<Vec<_>>(),
            r2.history.iter().map(|h| h.val_acc).collect::<Vec<_>>()
        );
    }
}

/// The main CNN's GEMMs are big enough to be split across threads: its
/// weights must not depend on how many there are.
#[test]
fn the_main_cnn_trains_the_same_on_any_thread_count() {
    let data = small_data();
    let mut p = small_params();
    p.model = ModelSpec::MainCnn;
    p.max_batches = Some(3);
    p.epochs = 1;
    let run = |threads| on_threads(&data, &p, threads).0;
    let one = run(1);
    for threads in [2, 3] {
        let m = run(threads);
        assert_eq!(one.params, m.params, "{threads} threads");
        assert_eq!(one.buffers, m.buffers, "{threads} threads");
    }
}

/// A few training steps of the main CNN (its Winograd layers, conv1
/// and the linear layers) give the same bits with the AVX2 kernels and
/// the AVX-512 ones, where the core has AVX-512.
#[test]
fn the_main_cnn_trains_the_same_bits_on_avx2_and_avx512() {
    use crate::nn::simd::Family;
    let Some(wide) = Family::avx512() else {
        // Straight to stderr: libtest captures `eprintln!` of a passing
        // test, and a skip must never read as a pass.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED the_main_cnn_trains_the_same_bits_on_avx2_and_avx512: this CPU has no AVX-512"
        );
        return;
    };
    let data = small_data();
    let mut p = small_params();
    p.model = ModelSpec::MainCnn;
    p.max_batches = Some(3);
    p.epochs = 1;
    p.kernels = Some(Family::AVX2);
    let (avx2, r2) = on_threads(&data, &p, 2);
    p.kernels = Some(wide);
    let (avx512, r5) = on_threads(&data, &p, 2);
    assert_eq!(avx2.params, avx512.params, "bit-identical weights");
    assert_eq!(avx2.buffers, avx512.buffers);
    assert_eq!(r2.history[0].val_loss, r5.history[0].val_loss);
}

/// The generic path (`cpu-reference`) trains like the fast kernels: the
/// same batches, dropout draws and Adam, gradients equal within
/// rounding, so two epochs end with training losses within 1e-3
/// (relative) and validation accuracies within 3 points.
#[test]
fn the_reference_path_trains_like_the_fast_path() {
    let data = small_data();
    let mut p = small_params();
    p.max_batches = Some(6);
    let run = |device: &str| {
        let mut m = p.model();
        let on = On {
            device,
            ..On::cpu(1)
        };
        p.train_on(&mut m, &data, &|_| {}, on)
    };
    let (fast, reference) = (run("cpu"), run("cpu-reference"));
    for (a, b) in fast.history.iter().zip(&reference.history) {
        let rel = (a.train_loss - b.train_loss).abs() / a.train_loss;
        assert!(
            rel < 1e-3,
            "epoch {}: {} vs {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert!(
            (a.val_acc - b.val_acc).abs() <= 0.03,
            "{} vs {}",
            a.val_acc,
            b.val_acc
        );
    }
}

/// Fused convolution blocks compute exactly what the separate ops do.
#[test]
fn fused_blocks_are_bit_identical() {
    let data = small_data();
    let mut p = small_params();
    p.model = ModelSpec::MainCnn;
    p.max_batches = Some(2);
    p.epochs = 1;
    let run = |fused: bool| {
        let mut m = p.model();
        m.set_fused(fused);
        p.train(&mut m, &data, 2, &|_| {}, None);
        m
    };
    let (a, b) = (run(true), run(false));
    assert_eq!(a.params, b.params);
    assert_eq!(a.buffers, b.buffers);
}

/// Interrupted after an epoch (here by a panic in the observer) and run
/// again with the same directory, a training takes up where it stopped
/// and ends bit-identical to an uninterrupted one.
#[test]
fn a_resumed_training_matches_an_uninterrupted_one_bit_for_bit() {
    let mut p = small_params();
    p.epochs = 3;
    p.schedule = Schedule::Plateau(PlateauSpec {
        factor: 0.5,
        patience: 0,
    });
    let r = resumes_bit_for_bit(&p);
    assert_eq!(r.history[2].lr, 0.0015, "the plateau's state came along");
}

/// A search's rung: paused after one epoch of three (cosine over all
/// three), then promoted (and given a second thread), a trial ends
/// bit-identical to a training never paused; the paused one's history
/// and state stop at epoch 1.
#[test]
fn a_paused_training_goes_on_bit_for_bit() {
    let mut p = recipe_params();
    p.epochs = 3;
    let data = small_data();
    let mut whole = p.model();
    let all = p.train(&mut whole, &data, 1, &|_| {}, None);
    assert!(!all.paused);
    let dir = tempfile::tempdir().unwrap();
    let mut m = p.model();
    let pause = On {
        resume: Some(dir.path()),
        stop_after: Some(1),
        ..On::cpu(1)
    };
    let first = p.train_on(&mut m, &data, &|_| {}, pause);
    assert!(first.paused);
    assert_eq!(first.history.len(), 1);
    assert_eq!(first.history[0].val_acc, all.history[0].val_acc);
    assert_eq!(state::saved_progress(dir.path()), Some((1, 3)));
    // Promoted, on one thread, and offered a second from its next
    // epoch: the same bits.
    let mut m = p.model();
    let offer = dir.path().join("grow");
    std::fs::write(&offer, "2\n").unwrap();
    let said = std::sync::Mutex::new(Vec::new());
    let promoted = On {
        resume: Some(dir.path()),
        grow: Some(&offer),
        ..On::cpu(1)
    };
    let rest = p.train_on(&mut m, &data, &|e| said.lock().unwrap().push(e), promoted);
    assert!(said.lock().unwrap().contains(&Event::Grown { threads: 2 }));
    assert!(!rest.paused);
    assert_eq!(m.params, whole.params, "bit-identical weights");
    let lrs = |h: &[EpochRecord]| h.iter().map(|e| (e.lr, e.val_acc)).collect::<Vec<_>>();
    assert_eq!(lrs(&rest.history), lrs(&all.history));
}

/// Killed after its first epoch (by a panic in the observer) and run
/// again with the same directory, a training takes up where it stopped
/// and ends bit-identical to an uninterrupted one.
fn resumes_bit_for_bit(p: &Setup) -> TrainReport {
    let data = small_data();
    let whole = {
        let mut m = p.model();
        let r = p.train(&mut m, &data, 1, &|_| {}, None);
        (m, r)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut m = p.model();
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.train(
            &mut m,
            &data,
            1,
            &|e| {
                let second = matches!(e, Event::Batch { epoch: 2, .. });
                assert!(!second, "interrupted")
            },
            Some(dir.path()),
        )
    }));
    assert!(interrupted.is_err());
    assert_eq!(state::saved_progress(dir.path()), Some((1, p.epochs)));
    let said = std::sync::Mutex::new(Vec::new());
    let mut m = p.model();
    let r = p.train(
        &mut m,
        &data,
        1,
        &|e| said.lock().unwrap().push(e),
        Some(dir.path()),
    );
    let resumed = Event::Resumed {
        done: 1,
        epochs: p.epochs,
    };
    assert!(said.lock().unwrap().contains(&resumed));
    assert_eq!(m.params, whole.0.params, "bit-identical weights");
    assert_eq!(m.buffers, whole.0.buffers);
    // The same history, but for the clock.
    let untimed = |h: &[EpochRecord]| {
        h.iter()
            .map(|e| EpochRecord {
                seconds: 0.0,
                img_per_s: 0.0,
                ..e.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(untimed(&r.history), untimed(&whole.1.history));
    assert_eq!(r.best_epoch, whole.1.best_epoch);
    r
}

#[test]
fn the_modern_recipe_resumes_bit_for_bit() {
    let r = resumes_bit_for_bit(&recipe_params());
    // Cosine to 1e-4 over epochs 2 and 3: the last step's rate is near it.
    assert!(r.history[2].lr < 0.0005, "{:?}", r.history);
    assert!(r.history[0].lr > r.history[1].lr);
}

/// The recipe learns on both paths and, on the fast one, gives the
/// same bits on any thread count; SGD with Nesterov momentum learns.
#[test]
fn the_modern_recipe_learns_on_both_paths_and_any_thread_count() {
    let data = small_data();
    let p = recipe_params();
    let (one, r1) = on_threads(&data, &p, 1);
    assert!(r1.best_val_acc > 0.6, "{:?}", r1.history);
    let (two, _) = on_threads(&data, &p, 2);
    assert_eq!(one.params, two.params, "1 and 2 threads: the same bits");
    assert_eq!(one.buffers, two.buffers);
    let mut m = p.model();
    let reference = On {
        device: "cpu-reference",
        ..On::cpu(1)
    };
    let r = p.train_on(&mut m, &data, &|_| {}, reference);
    assert!(r.best_val_acc > 0.6, "{:?}", r.history);
    let mut sgd = small_params();
    sgd.recipe.rule = Rule::Sgd {
        momentum: 0.9,
        nesterov: true,
    };
    sgd.set_lr(0.02);
    sgd.schedule = Schedule::Step(StepSpec {
        milestones: vec![1],
        gamma: 0.5,
    });
    let (_, r) = on_threads(&data, &sgd, 1);
    assert!(r.best_val_acc > 0.6, "{:?}", r.history);
    assert_eq!((r.history[0].lr, r.history[1].lr), (0.02, 0.01));
}

/// A damaged state, or one that does not fit the model, is reported
/// and the training starts over.
#[test]
fn an_unusable_saved_state_starts_over() {
    let data = small_data();
    let mut p = small_params();
    p.epochs = 1;
    let mut whole = p.model();
    p.train(&mut whole, &data, 1, &|_| {}, None);
    let dir = tempfile::tempdir().unwrap();
    let misfit = Saved {
        epochs_done: 0,
        master: vec![vec![0.0; 3]],
        buffers: vec![],
        adam_step: 1,
        adam_m: vec![vec![0.0; 3]],
        adam_v: vec![vec![0.0; 3]],
        lr: 1.0,
        best: None,
        best_acc: 0.0,
        best_epoch: 0,
        plateau_best: 0.0,
        bad_epochs: 0,
        since_best: 0,
        history: vec![],
        draws: 0,
        ema: None,
    };
    let damaged = misfit.to_bytes().unwrap()[..40].to_vec();
    for bytes in [misfit.to_bytes().unwrap(), damaged] {
        std::fs::write(dir.path().join(state::STATE_FILE), bytes).unwrap();
        let said = std::sync::Mutex::new(Vec::new());
        let mut m = p.model();
        p.train(
            &mut m,
            &data,
            1,
            &|e| said.lock().unwrap().push(e),
            Some(dir.path()),
        );
        assert!(
            said.lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::StartsOver(_))),
            "{:?}",
            said.lock().unwrap()
        );
        assert_eq!(m.params, whole.params);
    }
}

#[test]
fn plateau_lowers_the_rate_and_early_stopping_stops() {
    let data = small_data();
    let mut p = small_params();
    p.epochs = 12;
    p.set_lr(1e-9); // nothing improves
    p.schedule = Schedule::Plateau(PlateauSpec {
        factor: 0.5,
        patience: 1,
    });
    p.patience = Some(3);
    p.max_batches = Some(1);
    let mut m = p.model();
    let r = p.train(&mut m, &data, 1, &|_| {}, None);
    assert!(r.stopped_early);
    assert_eq!(
        r.history.len(),
        4,
        "best at epoch 1, then 3 epochs without improvement"
    );
    assert!(r.history.last().unwrap().lr < 1e-9);
}
