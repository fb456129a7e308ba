//! The `evaluate` kind: a trained model on the test set — metrics,
//! per-image predictions, efficiency figures, pictures.

use crate::contract::{
    Efficiency, EpochRecord, EvalReport, TrainSummary, CLASS_NAMES, DATASET_FILE, HISTORY_FILE,
    METRICS_FILE, PREDICTIONS_FILE, ROC_FILE, TRAIN_SUMMARY_FILE, WEIGHTS_FILE,
};
use crate::metrics;
use crate::runtime::{check_device, tune_allocator};
use crate::{Kind, Progress, RunContext, StageError};
use learn::data::dataset::Dataset;
use learn::data::dataset::Split;
use learn::nn::checkpoint;
use learn::nn::generic::Net;
use learn::nn::infer::{predict, Backend, Engine};
use learn::nn::model::Model;
use learn::nn::ops::Dev;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Images per inference batch (also the batch of the latency figure).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Test-time augmentation: `[hflip]` averages the softmax of each
    /// image and of its mirror image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tta: Vec<Tta>,
}

/// One test-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tta {
    Hflip,
}

/// The split with every image mirrored left-right.
fn mirrored(test: &Split, rows: usize, cols: usize) -> Split {
    let mut pixels = test.pixels.clone();
    for img in pixels.chunks_mut(rows * cols) {
        for row in img.chunks_mut(cols) {
            row.reverse();
        }
    }
    Split {
        name: test.name.clone(),
        labels: test.labels.clone(),
        indices: test.indices.clone(),
        pixels,
    }
}

fn default_batch() -> usize {
    256
}

fn fail(e: impl ToString) -> StageError {
    StageError::Failed(e.to_string())
}

fn input_dir(
    ctx: &RunContext<'_>,
    kind: Kind,
    what: &str,
) -> Result<(String, PathBuf), StageError> {
    let found: Vec<&crate::Input> = ctx.inputs.iter().filter(|i| i.kind == kind).collect();
    match found.as_slice() {
        [one] => Ok((
            one.stage.clone(),
            one.paths.first().cloned().unwrap_or_default(),
        )),
        [] => Err(StageError::Params(format!(
            "stage {} needs a {what} stage: add it to `needs` (or use `foreach`)",
            ctx.stage
        ))),
        _ => Err(StageError::Params(format!(
            "stage {} needs exactly one {what} stage, it has {}",
            ctx.stage,
            found.len()
        ))),
    }
}

/// Reads a JSON file of an upstream stage's output.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::corrupt(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::corrupt(path, e))
}

impl crate::context::Params for EvaluateParams {
    fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        Ok(())
    }
}

/// On `dev`: the probabilities of every test image (with `mirror`, the
/// mean of the image's and its mirror's softmax), the images per second
/// of the whole pass, and the median latency of a full batch (ms).
fn measure<D: Backend>(
    dev: D,
    (device, model, data, test, mirror, batch, threads): (
        &str,
        &mut Model,
        &Dataset,
        &Split,
        Option<&Split>,
        usize,
        usize,
    ),
) -> (Vec<f32>, f64, f64) {
    let tensors = Net::upload(model, &dev);
    let engine = Engine::new(device, model, &dev);
    let on = (&dev, &engine);
    let k = model.classes;
    let pass = |model: &mut Model, split: &Split| {
        let mut p = predict(model, &tensors, data, split, batch, threads, on);
        metrics::softmax(&mut p, k);
        if let Some(m) = mirror.map(|_| mirrored(split, data.rows, data.cols)) {
            let mut q = predict(model, &tensors, data, &m, batch, threads, on);
            metrics::softmax(&mut q, k);
            for (a, b) in p.iter_mut().zip(&q) {
                *a = (*a + *b) / 2.0;
            }
        }
        p
    };
    let t = Instant::now();
    let probs = pass(model, test);
    let rate = test.len() as f64 / t.elapsed().as_secs_f64();
    // Latency: the median of a few full batches, as evaluated (with TTA).
    let first = test.head("latency", batch, data.pixels_per_image());
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            pass(model, &first);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (probs, rate, times[2])
}

/// What an evaluation measures.
enum Measured {
    /// A model the tool trained: its train stage's output directory.
    Model { stage: String, dir: PathBuf },
    /// A command's predictions of the test set (`predictions:`).
    Predictions { stage: String, file: PathBuf },
}

fn measured(ctx: &RunContext<'_>) -> Result<Measured, StageError> {
    let found: Vec<&crate::Input> = ctx
        .inputs
        .iter()
        .filter(|i| i.kind == Kind::Train || i.predictions.is_some())
        .collect();
    match found.as_slice() {
        [one] => Ok(match &one.predictions {
            Some(file) => Measured::Predictions {
                stage: one.stage.clone(),
                file: file.clone(),
            },
            None => Measured::Model {
                stage: one.stage.clone(),
                dir: one.paths.first().cloned().unwrap_or_default(),
            },
        }),
        [] => Err(StageError::Params(format!(
            "stage {} needs the stage whose model it evaluates (a train stage, or a cmd stage with `predictions:`): add it to `needs` (or use `foreach`)",
            ctx.stage
        ))),
        _ => Err(StageError::Params(format!(
            "stage {} evaluates exactly one model, it has {}",
            ctx.stage,
            found.len()
        ))),
    }
}

/// A trained model on the test set: its logits (softmaxed by the caller),
/// its class count, efficiency figures and training history.
fn run_model(
    ctx: &RunContext<'_>,
    p: &EvaluateParams,
    device: &str,
    train_dir: &Path,
    data: &Dataset,
    test: &Split,
) -> Result<(Vec<f32>, usize, Efficiency, Vec<EpochRecord>), StageError> {
    let weights = train_dir.join(WEIGHTS_FILE);
    let mut model = checkpoint::load(&weights).map_err(|e| StageError::corrupt(&weights, e))?;
    let summary: TrainSummary = read_json(&train_dir.join(TRAIN_SUMMARY_FILE))?;
    let history: Vec<EpochRecord> = read_json(&train_dir.join(HISTORY_FILE))?;
    tune_allocator();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(ctx.threads)
        .build()
        .map_err(fail)?;
    let mirror = p.tta.contains(&Tta::Hflip).then_some(test);
    let (probs, img_per_s, latency) = pool
        .install(|| -> Result<_, crate::runtime::DeviceError> {
            let args = (
                device,
                &mut model,
                data,
                test,
                mirror,
                p.batch_size,
                ctx.threads,
            );
            if crate::runtime::is_cuda(device) {
                #[cfg(feature = "cuda")]
                return Ok(measure(crate::runtime::cuda(device, 0)?, args));
                #[cfg(not(feature = "cuda"))]
                return Err(crate::runtime::DeviceError::NoCuda {
                    device: device.to_string(),
                });
            }
            Ok(measure(Dev::seed_from_u64(0), args))
        })
        .map_err(fail)?;
    let efficiency = Efficiency {
        parameters: Some(model.parameter_count()),
        model_size_bytes: Some(summary.model_size_bytes),
        training_seconds: Some(summary.training_seconds),
        epochs_run: Some(summary.epochs_run),
        best_epoch: Some(summary.best_epoch),
        inference_img_per_s: Some(img_per_s),
        latency_ms_per_batch: Some(latency),
        batch_size: p.batch_size,
        threads: ctx.threads,
    };
    Ok((probs, model.classes, efficiency, history))
}

/// A command's predictions, checked row by row against the test split.
/// What the tool cannot know of a model it did not run stays unknown.
fn read_predictions_of(
    stage: &str,
    file: &Path,
    p: &EvaluateParams,
    threads: usize,
    test: &Split,
) -> Result<(Vec<f32>, usize, Efficiency, Vec<EpochRecord>), StageError> {
    // As the pipeline names it (the project directory may be `.`).
    let file = file.strip_prefix(".").unwrap_or(file);
    let text = std::fs::read_to_string(file).map_err(|e| {
        fail(format!(
            "cannot read the predictions of `{stage}`, {}: {e}; its command must write them (one row per test image, the header `{}`)",
            file.display(),
            crate::contract::external_predictions_header(CLASS_NAMES.len())
        ))
    })?;
    let probs = crate::contract::read_external_predictions(&text, test.len(), CLASS_NAMES.len())
        .map_err(|e| {
            fail(format!(
                "the predictions of `{stage}`, {}, {e}",
                file.display()
            ))
        })?;
    let efficiency = Efficiency {
        parameters: None,
        model_size_bytes: None,
        training_seconds: None,
        epochs_run: None,
        best_epoch: None,
        inference_img_per_s: None,
        latency_ms_per_batch: None,
        batch_size: p.batch_size,
        threads,
    };
    Ok((probs, CLASS_NAMES.len(), efficiency, Vec::new()))
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let p: EvaluateParams = crate::context::parse_params(ctx.params)?;
    let device = ctx.device.unwrap_or("cpu");
    check_device(device)?;
    let what = measured(ctx)?;
    let (_, prep_dir) = input_dir(ctx, Kind::Preprocess, "preprocess")?;
    let data = Dataset::read(&prep_dir.join(DATASET_FILE))
        .map_err(|e| StageError::corrupt(e.path, e.problem))?;
    let test = data
        .split("test")
        .ok_or_else(|| fail("the dataset has no test split"))?;
    (ctx.progress)(Progress {
        step: crate::Step::TestImages { count: test.len() },
        fraction: Some(0.0),
    });
    let (train_stage, (probs, classes, efficiency, history)) = match what {
        Measured::Model { stage, dir } => {
            let got = run_model(ctx, &p, device, &dir, &data, test)?;
            (stage, got)
        }
        Measured::Predictions { stage, file } => {
            let got = read_predictions_of(&stage, &file, &p, ctx.threads, test)?;
            (stage, got)
        }
    };
    let names: Vec<&str> = CLASS_NAMES.iter().take(classes).copied().collect();
    let m = metrics::compute(&probs, &test.labels, &names);
    (ctx.progress)(Progress {
        step: crate::Step::Accuracy {
            accuracy: m.accuracy,
        },
        fraction: Some(0.8),
    });
    let report = EvalReport {
        stage: ctx.stage.to_string(),
        train_stage,
        efficiency,
        metrics: m,
        history,
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = ctx.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| StageError::io("write", path, e))
    };
    write(
        METRICS_FILE,
        &serde_json::to_vec_pretty(&report).map_err(fail)?,
    )?;
    let k = classes;
    let mut csv = crate::contract::predictions_header(k);
    csv.push('\n');
    for (i, (row, &y)) in probs.chunks(k).zip(&test.labels).enumerate() {
        let _ = write!(csv, "{i},{},{y},{}", test.indices[i], metrics::argmax(row));
        for v in row {
            let _ = write!(csv, ",{v:.6}");
        }
        csv.push('\n');
    }
    write(PREDICTIONS_FILE, csv.as_bytes())?;
    let roc: Vec<Vec<(f64, f64)>> = (0..k)
        .map(|c| {
            let scores: Vec<(f32, bool)> = probs
                .chunks(k)
                .zip(&test.labels)
                .map(|(r, &y)| (r[c], y as usize == c))
                .collect();
            metrics::roc_curve(&scores, 200)
        })
        .collect();
    write(ROC_FILE, &serde_json::to_vec(&roc).map_err(fail)?)?;
    if !crate::plots::font_ready() {
        (ctx.progress)(Progress {
            step: crate::Step::NoFont,
            fraction: None,
        });
    }
    crate::plots::evaluation(ctx.out_dir, &report, &roc, &probs, &data, test).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use learn::data::dataset::Split;

    fn ctx_run(train_dir: &Path, prep_dir: &Path, out: &Path) -> Result<(), StageError> {
        let inputs = vec![
            crate::Input {
                stage: "train@main".into(),
                kind: Kind::Train,
                paths: vec![train_dir.to_path_buf()],
                predictions: None,
                failed: false,
            },
            crate::Input {
                stage: "preprocess".into(),
                kind: Kind::Preprocess,
                paths: vec![prep_dir.to_path_buf()],
                predictions: None,
                failed: false,
            },
        ];
        let params = serde_json::json!({});
        let ctx = RunContext {
            stage: "evaluate@main",
            project_dir: out,
            params: &params,
            inputs: &inputs,
            out_dir: out,
            threads: 1,
            resume: None,
            stop_after: None,
            grow: None,
            device: None,
            kernels: None,
            run: None,
            progress: &|_| {},
        };
        run(&ctx)
    }

    #[test]
    fn missing_or_corrupt_model_is_named() {
        let d = tempfile::tempdir().unwrap();
        let (train_dir, prep_dir, out) = (
            d.path().join("train"),
            d.path().join("prep"),
            d.path().join("out"),
        );
        for p in [&train_dir, &prep_dir, &out] {
            std::fs::create_dir_all(p).unwrap();
        }
        let data = Dataset {
            rows: 28,
            cols: 28,
            mean: 0.5,
            std: 0.5,
            splits: vec![Split {
                name: "test".into(),
                labels: vec![1, 2],
                indices: vec![0, 1],
                pixels: vec![0; 2 * 784],
            }],
        };
        std::fs::write(prep_dir.join(DATASET_FILE), data.to_bytes()).unwrap();
        let e = ctx_run(&train_dir, &prep_dir, &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.safetensors is corrupt: cannot read"),
            "{e}"
        );
        std::fs::write(
            train_dir.join(WEIGHTS_FILE),
            b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}",
        )
        .unwrap();
        let e = ctx_run(&train_dir, &prep_dir, &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.safetensors is corrupt: not a valid safetensors file"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "nothing written"
        );
    }
}
