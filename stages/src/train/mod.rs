//! The `train` kind: a model from the zoo or from YAML layers, trained with
//! Adam on the preprocessed data, selected on the validation split.

use crate::contract::{
    EpochRecord, TrainSummary, CLASSES, DATASET_FILE, HISTORY_FILE, TRAIN_SUMMARY_FILE,
    WEIGHTS_FILE,
};
use crate::runtime::{check_device, tune_allocator, DeviceError};
use crate::{Kind, Progress, RunContext, StageError, Step};
use learn::data::augment::{self, Augment};
use learn::data::dataset::Dataset;
use learn::nn::checkpoint;
use learn::nn::model::{Knobs, Model, ModelError, ModelSpec};
use learn::nn::ops::Dev;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use learn::train::state as resume;
pub use learn::train::{fit, Event, Learner, Plan, Recipe, StartOver, Threads, TrainReport};
use std::time::Instant;

/// ReduceLROnPlateau's settings (the older `plateau` key, and
/// `schedule: {plateau: ...}`).
pub type Plateau = learn::nn::schedule::PlateauSpec;

/// `optimizer`: which update rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    #[default]
    Adam,
    Adamw,
    Sgd,
}

/// Why the parameters make no model.
#[derive(Debug, thiserror::Error)]
pub enum Unbuildable {
    /// An augmentation that does not fit the images.
    #[error("{0}")]
    Augment(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// `ema: {decay}`: an exponential moving average of the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaSpec {
    pub decay: f32,
}

/// An optional field whose `null` means something (absent: None; null:
/// Some(None)).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    #[serde(default = "five")]
    pub patience: usize,
}

/// The `train` parameters; the defaults are the reference study's main run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    #[serde(default = "main_cnn")]
    pub model: ModelSpec,
    /// Dropout before the last layer of the zoo's models (0 for none).
    #[serde(default = "quarter")]
    pub dropout: f32,
    #[serde(default = "yes")]
    pub batchnorm: bool,
    /// Convolution widths of the zoo's CNNs (main-cnn: 3, shallow-cnn: 2).
    #[serde(default)]
    pub channels: Option<Vec<usize>>,
    /// Width of the hidden linear layer of the zoo's CNNs.
    #[serde(default)]
    pub hidden: Option<usize>,
    #[serde(default = "ten")]
    pub epochs: usize,
    #[serde(default = "sixty_four")]
    pub batch_size: usize,
    #[serde(default = "lr")]
    pub lr: f32,
    #[serde(default = "betas")]
    pub betas: [f32; 2],
    #[serde(default = "eps")]
    pub eps: f32,
    #[serde(default)]
    pub weight_decay: f32,
    /// `adam` (default), `adamw` or `sgd`. New fields are left out of the
    /// canonical form at their defaults, so that adding them changed no
    /// existing configuration's fingerprint beyond this release's.
    #[serde(default, skip_serializing_if = "is_default")]
    pub optimizer: OptimizerName,
    /// SGD's momentum in [0, 1) (default 0) and Nesterov's variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// The learning-rate schedule (default: plateau, factor 0.5, patience 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<learn::nn::schedule::Schedule>,
    /// The older spelling of `schedule: {plateau: ...}`; null for a
    /// constant rate. Refused beside `schedule`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub plateau: Option<Option<Plateau>>,
    /// CrossEntropyLoss(label_smoothing), in [0, 1).
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_smoothing: f32,
    /// An exponential moving average of the weights, used for validation,
    /// the best epoch and the saved model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<EmaSpec>,
    /// Clip the gradients' global norm to this before each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f32>,
    /// Stop after this many epochs without a better validation accuracy; null never stops early.
    #[serde(default = "early")]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(default)]
    pub augment: Vec<Augment>,
    #[serde(default = "seed")]
    pub seed: u64,
    /// Caps the batches per epoch (quick experiments, tests).
    #[serde(default)]
    pub max_batches: Option<usize>,
}

fn main_cnn() -> ModelSpec {
    ModelSpec::MainCnn
}
fn quarter() -> f32 {
    0.25
}
fn five() -> usize {
    5
}
fn ten() -> usize {
    10
}
fn sixty_four() -> usize {
    64
}
fn yes() -> bool {
    true
}
fn lr() -> f32 {
    0.001
}
fn betas() -> [f32; 2] {
    [0.9, 0.999]
}
fn eps() -> f32 {
    1e-8
}
fn early() -> Option<EarlyStopping> {
    Some(EarlyStopping { patience: 5 })
}
fn seed() -> u64 {
    42
}

impl TrainParams {
    pub fn knobs(&self) -> Knobs {
        Knobs {
            dropout: self.dropout,
            batchnorm: self.batchnorm,
            channels: self.channels.clone(),
            hidden: self.hidden,
        }
    }

    pub fn check_values(&self) -> Result<(), String> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err("epochs and batch_size must be at least 1".into());
        }
        if self.max_batches == Some(0) {
            return Err(
                "max_batches must be at least 1 (or null: every batch of each epoch)".into(),
            );
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(format!(
                "eps must be a positive number (Adam divides by the root of its second moment plus eps), got {}",
                self.eps
            ));
        }
        if !self.lr.is_finite()
            || self.lr <= 0.0
            || !(0.0..1.0).contains(&self.betas[0])
            || !(0.0..1.0).contains(&self.betas[1])
        {
            return Err("lr must be positive and betas in [0, 1)".into());
        }
        if let Some(Some(p)) = &self.plateau {
            if !(p.factor > 0.0 && p.factor < 1.0) {
                return Err(format!(
                    "plateau.factor must be in (0, 1), got {}",
                    p.factor
                ));
            }
        }
        if self.schedule.is_some() && self.plateau.is_some() {
            return Err("give `schedule` or the older `plateau`, not both (`schedule: {plateau: {factor: 0.5, patience: 2}}` is the same as `plateau: {factor: 0.5, patience: 2}`)".into());
        }
        self.schedule().check(self.epochs)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "weight_decay must be at least 0, got {}",
                self.weight_decay
            ));
        }
        if self.optimizer != OptimizerName::Sgd
            && (self.momentum.is_some() || self.nesterov.is_some())
        {
            return Err("momentum and nesterov are settings of `optimizer: sgd`".into());
        }
        if let Some(m) = self.momentum {
            if !(0.0..1.0).contains(&m) {
                return Err(format!("momentum must be in [0, 1), got {m}"));
            }
        }
        if self.nesterov == Some(true) && self.momentum.unwrap_or(0.0) <= 0.0 {
            return Err("nesterov needs a momentum above 0".into());
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if let Some(e) = &self.ema {
            if !(e.decay > 0.0 && e.decay < 1.0) {
                return Err(format!("ema.decay must be in (0, 1), got {}", e.decay));
            }
        }
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(format!("grad_clip must be a positive max norm, got {c}"));
            }
        }
        Ok(())
    }

    /// The schedule in effect: `schedule`, else the older `plateau` key
    /// (null: constant), else the reference study's plateau.
    pub fn schedule(&self) -> learn::nn::schedule::Schedule {
        use learn::nn::schedule::Schedule;
        match (&self.schedule, &self.plateau) {
            (Some(s), _) => s.clone(),
            (None, Some(Some(p))) => Schedule::Plateau(p.clone()),
            (None, Some(None)) => Schedule::Constant,
            (None, None) => Schedule::reference(),
        }
    }

    /// The update rule and its settings.
    pub fn rule(&self) -> learn::nn::optim::Rule {
        use learn::nn::optim::Rule;
        match self.optimizer {
            OptimizerName::Adam => Rule::Adam,
            OptimizerName::Adamw => Rule::AdamW,
            OptimizerName::Sgd => Rule::Sgd {
                momentum: self.momentum.unwrap_or(0.0),
                nesterov: self.nesterov.unwrap_or(false),
            },
        }
    }

    /// Builds the model (checking shapes) for images of `rows`×`cols`.
    pub fn model(&self, rows: usize, cols: usize) -> Result<Model, Unbuildable> {
        let layers = self.params_layers()?;
        augment::validate(&self.augment, rows, cols).map_err(Unbuildable::Augment)?;
        Ok(Model::new(layers, (1, rows, cols), CLASSES, self.seed)?)
    }

    /// Checks the model's shapes without building it; returns its parameter count.
    pub fn check_model(&self, rows: usize, cols: usize) -> Result<usize, Unbuildable> {
        augment::validate(&self.augment, rows, cols).map_err(Unbuildable::Augment)?;
        Ok(Model::check(
            self.params_layers()?,
            (1, rows, cols),
            CLASSES,
        )?)
    }

    fn params_layers(&self) -> Result<Vec<learn::nn::model::LayerSpec>, ModelError> {
        self.model.layers(&self.knobs())
    }
}

/// The model's parameter count, for `dag`.
pub fn describe(params: &serde_json::Value) -> Option<String> {
    let p: TrainParams = serde_json::from_value(params.clone()).ok()?;
    let n = p.check_model(28, 28).ok()?;
    Some(format!("{} parameters", crate::format::group_digits(n)))
}

/// Finds the preprocessed dataset among a stage's inputs.
pub fn dataset_path(ctx: &RunContext<'_>) -> Result<PathBuf, StageError> {
    ctx.inputs
        .iter()
        .find(|i| i.kind == Kind::Preprocess)
        .and_then(|i| i.paths.first())
        .map(|p| p.join(DATASET_FILE))
        .ok_or_else(|| {
            StageError::Params(format!(
                "stage {} needs a preprocess stage: add it to `needs`",
                ctx.stage
            ))
        })
}

impl crate::context::Params for TrainParams {
    /// Values, and the model's shapes for 28x28 Fashion-MNIST images, so a
    /// layer that does not fit is refused before anything runs.
    fn validate(&self) -> Result<(), String> {
        self.check_values()?;
        self.check_model(28, 28)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Training computes in f32: a value inside its range as written that
    /// f32 rounds onto the range's edge is refused as written (it was
    /// refused as "got 1").
    fn validate_written(params: &serde_json::Value) -> Result<(), String> {
        // Below 1 (and 1 excluded), and above 0 (0 excluded).
        const BELOW_ONE: [&str; 6] = [
            "/ema/decay",
            "/betas/0",
            "/betas/1",
            "/momentum",
            "/label_smoothing",
            "/plateau/factor",
        ];
        const ABOVE_ZERO: [&str; 5] =
            ["/lr", "/eps", "/ema/decay", "/plateau/factor", "/grad_clip"];
        let shown = |p: &str| {
            let mut s = p[1..].replace('/', ".");
            if let Some(i) = s.strip_prefix("betas.") {
                s = format!("betas[{i}]");
            }
            s
        };
        let at = |p: &str| params.pointer(p).and_then(serde_json::Value::as_f64);
        for p in BELOW_ONE {
            if let Some(x) = at(p).filter(|&x| x < 1.0 && x as f32 >= 1.0) {
                return Err(format!(
                    "{} is {x}, below 1 as written but 1 in single precision (f32), which training computes in; the largest f32 below 1 is {}",
                    shown(p),
                    1.0f32 - f32::EPSILON / 2.0
                ));
            }
        }
        for p in ABOVE_ZERO {
            if let Some(x) = at(p).filter(|&x| x > 0.0 && x as f32 == 0.0) {
                return Err(format!(
                    "{} is {x:e}, above 0 as written but 0 in single precision (f32), which training computes in; the smallest normal f32 is {:e}",
                    shown(p),
                    f32::MIN_POSITIVE
                ));
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let p: TrainParams = crate::context::parse_params(ctx.params)?;
    let device = ctx.device.unwrap_or("cpu");
    check_device(device)?;
    let data =
        Dataset::read(&dataset_path(ctx)?).map_err(|e| StageError::corrupt(e.path, e.problem))?;
    let mut model = p
        .model(data.rows, data.cols)
        .map_err(|e| StageError::Params(e.to_string()))?;
    if let Some(family) = ctx.kernels {
        model.set_kernels(family);
    }
    (ctx.progress)(Progress {
        step: Step::Parameters {
            count: model.parameter_count(),
        },
        fraction: Some(0.0),
    });
    tune_allocator();
    let t0 = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(ctx.threads)
        .build()
        .map_err(|e| StageError::Failed(e.to_string()))?;
    let report = pool
        .install(|| {
            train_on(
                &mut model,
                &data,
                &p,
                ctx.progress,
                &TrainOn {
                    device,
                    threads: ctx.threads,
                    resume: ctx.resume,
                    stop_after: ctx.stop_after,
                    grow: ctx.grow,
                },
            )
        })
        .map_err(|e| StageError::Failed(e.to_string()))?;
    // A resumed training counts the epochs of the runs before it too.
    let earlier: f64 = report.history[..report.resumed_epochs]
        .iter()
        .map(|e| e.seconds)
        .sum();
    let seconds = t0.elapsed().as_secs_f64() + earlier;
    // No stage name: the same training under another name (a renamed
    // variant, a seed replicate) is the same file, restored, not rerun.
    let weights = checkpoint::to_bytes(&model, &[("seed", p.seed.to_string())])
        .map_err(|e| StageError::Failed(e.to_string()))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = ctx.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| StageError::io("write", path, e))
    };
    write(WEIGHTS_FILE, &weights)?;
    write(
        HISTORY_FILE,
        &serde_json::to_vec_pretty(&report.history)
            .map_err(|e| StageError::Failed(e.to_string()))?,
    )?;
    let summary = TrainSummary {
        parameters: model.parameter_count(),
        model_size_bytes: weights.len(),
        training_seconds: seconds,
        epochs_run: report.history.len(),
        best_epoch: report.best_epoch,
        best_val_acc: report.best_val_acc,
        stopped_early: report.stopped_early,
        paused: report.paused,
        threads: ctx.threads,
        device: device.to_string(),
        seed: p.seed,
    };
    write(
        TRAIN_SUMMARY_FILE,
        &serde_json::to_vec_pretty(&summary).map_err(|e| StageError::Failed(e.to_string()))?,
    )
}

/// What a trained (or paused) train stage's outputs say of it: the
/// validation accuracy after each epoch, and whether it has finished
/// (false: paused at a search's rung, its state saved to go on).
pub fn progress_of(dir: &Path) -> Option<(Vec<f64>, bool)> {
    let history: Vec<EpochRecord> =
        serde_json::from_slice(&std::fs::read(dir.join(HISTORY_FILE)).ok()?).ok()?;
    let summary: TrainSummary =
        serde_json::from_slice(&std::fs::read(dir.join(TRAIN_SUMMARY_FILE)).ok()?).ok()?;
    Some((history.iter().map(|h| h.val_acc).collect(), !summary.paused))
}

/// How the training updates the weights.
pub fn recipe(p: &TrainParams) -> Recipe {
    Recipe {
        rule: p.rule(),
        lr: p.lr,
        betas: (p.betas[0], p.betas[1]),
        eps: p.eps,
        weight_decay: p.weight_decay,
        label_smoothing: p.label_smoothing,
        grad_clip: p.grad_clip,
        ema: p.ema.as_ref().map(|e| e.decay),
    }
}

/// What the loop is asked to do.
pub fn plan(p: &TrainParams) -> Plan<'_> {
    Plan {
        epochs: p.epochs,
        batch_size: p.batch_size,
        max_batches: p.max_batches,
        seed: p.seed,
        augment: &p.augment,
        lr: p.lr,
        schedule: p.schedule(),
        patience: p.early_stopping.as_ref().map(|e| e.patience),
    }
}

/// The loop's event as the stage's progress, with how far it is.
fn told(progress: &(dyn Fn(Progress) + Sync), event: Event) {
    let fraction = match &event {
        Event::Batch { fraction, .. } => Some(*fraction),
        Event::Epoch { record, epochs, .. } => Some(record.epoch as f64 / *epochs as f64),
        Event::Resumed { done, epochs } => Some(*done as f64 / *epochs as f64),
        Event::StartsOver(_) | Event::Grown { .. } => None,
    };
    progress(Progress {
        step: Step::Training { event },
        fraction,
    });
}

/// Why a training did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainFailure {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Train(#[from] learn::train::TrainError),
}

/// Where and how far a training runs.
#[derive(Debug, Clone, Copy)]
pub struct TrainOn<'a> {
    /// `cpu`, `cpu-reference` (the generic path), or a GPU.
    pub device: &'a str,
    pub threads: usize,
    /// Where the state after each epoch is saved and taken up from.
    pub resume: Option<&'a Path>,
    /// Pause after this many epochs (a search's rung), the state saved in
    /// `resume` for a later run to go on from; the schedule is still that
    /// of `p.epochs`, so the epochs run are the same bits either way.
    pub stop_after: Option<usize>,
    /// A file where the orchestrator writes a larger thread count when a
    /// core comes free, taken up between epochs (the results do not
    /// depend on the thread count).
    pub grow: Option<&'a Path>,
}

/// Trains `model` in place as `on` says; on return it holds the best
/// weights by validation accuracy. The orchestrator keys `on.resume` by
/// the stage's fingerprint, so a saved state always belongs to this
/// training.
pub fn train_on(
    model: &mut Model,
    data: &Dataset,
    p: &TrainParams,
    progress: &(dyn Fn(Progress) + Sync),
    on: &TrainOn<'_>,
) -> Result<TrainReport, TrainFailure> {
    let TrainOn {
        device,
        threads,
        resume,
        stop_after,
        grow,
    } = *on;
    let threads = Threads::new(threads, grow);
    let recipe = recipe(p);
    let plan = plan(p);
    let observe = |e: Event| told(progress, e);
    if crate::runtime::is_cuda(device) {
        #[cfg(feature = "cuda")]
        {
            let dev = crate::runtime::cuda(device, p.seed)?;
            let learner = Learner::on(dev, device, model, &recipe);
            // `fit` keeps a GPU's training on its thread.
            return fit(
                learner,
                model,
                data,
                &plan,
                threads,
                &observe,
                (resume, stop_after),
            )
            .map_err(TrainFailure::from);
        }
        #[cfg(not(feature = "cuda"))]
        return Err(DeviceError::NoCuda {
            device: device.to_string(),
        }
        .into());
    }
    let learner = Learner::on(Dev::seed_from_u64(p.seed), device, model, &recipe);
    fit(
        learner,
        model,
        data,
        &plan,
        threads,
        &observe,
        (resume, stop_after),
    )
    .map_err(TrainFailure::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_main_run() {
        let p: TrainParams = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(p.model, ModelSpec::MainCnn);
        assert_eq!(
            (p.epochs, p.batch_size, p.lr, p.dropout),
            (10, 64, 0.001, 0.25)
        );
        assert_eq!(p.plateau, None);
        assert_eq!(
            p.schedule(),
            learn::nn::schedule::Schedule::Plateau(Plateau {
                factor: 0.5,
                patience: 2
            })
        );
        assert_eq!(p.early_stopping, Some(EarlyStopping { patience: 5 }));
        assert!(serde_json::from_value::<TrainParams>(serde_json::json!({"lrr": 1})).is_err());
        let p: TrainParams =
            serde_json::from_value(serde_json::json!({"model": "logistic", "plateau": null}))
                .unwrap();
        assert_eq!(p.plateau, Some(None));
        assert_eq!(p.schedule(), learn::nn::schedule::Schedule::Constant);
        // `null` stays in the canonical form; an absent key stays absent.
        assert_eq!(
            serde_json::to_value(&p).unwrap()["plateau"],
            serde_json::Value::Null
        );
        let p: TrainParams = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(serde_json::to_value(&p).unwrap().get("plateau").is_none());
    }

    /// Out-of-range values of the recipe are refused with the key named.
    #[test]
    fn bad_recipe_values_are_refused_with_the_key() {
        use crate::context::Params;
        let bad = |v: serde_json::Value| {
            serde_json::from_value::<TrainParams>(v)
                .map_err(|e| e.to_string())
                .and_then(|p| p.validate())
                .unwrap_err()
        };
        for (v, key) in [
            (
                serde_json::json!({"optimizer": "rmsprop"}),
                "unknown variant `rmsprop`",
            ),
            (
                serde_json::json!({"momentum": 0.9}),
                "momentum and nesterov are settings of `optimizer: sgd`",
            ),
            (
                serde_json::json!({"optimizer": "sgd", "momentum": 1.0}),
                "momentum must be in [0, 1)",
            ),
            (
                serde_json::json!({"optimizer": "sgd", "nesterov": true}),
                "nesterov needs a momentum above 0",
            ),
            (
                serde_json::json!({"label_smoothing": 1.0}),
                "label_smoothing must be in [0, 1)",
            ),
            (
                serde_json::json!({"ema": {"decay": 1.0}}),
                "ema.decay must be in (0, 1)",
            ),
            (
                serde_json::json!({"grad_clip": 0}),
                "grad_clip must be a positive max norm",
            ),
            (
                serde_json::json!({"weight_decay": -0.1}),
                "weight_decay must be at least 0",
            ),
            (
                serde_json::json!({"schedule": "constant", "plateau": null}),
                "give `schedule` or the older `plateau`, not both",
            ),
            (
                serde_json::json!({"schedule": {"cosine": {"warmup_epochs": 10}}}),
                "schedule.cosine.warmup_epochs must be below epochs (10)",
            ),
            (
                serde_json::json!({"augment": [{"erase": {"p": 1.5}}]}),
                "erase: p must be in [0, 1]",
            ),
            (
                serde_json::json!({"augment": [{"translate": 0}]}),
                "translate: pixels must be at least 1",
            ),
        ] {
            let e = bad(v.clone());
            assert!(e.contains(key), "{v}: {e}");
        }
        // As written, not as f32 rounds them; and eps above 0.
        let written =
            |v: serde_json::Value| crate::context::typed_params::<TrainParams>(v).unwrap_err();
        for (v, key) in [
            (
                serde_json::json!({"ema": {"decay": 0.99999999}}),
                "ema.decay is 0.99999999, below 1 as written but 1 in single precision (f32), which training computes in; the largest f32 below 1 is 0.99999994",
            ),
            (
                serde_json::json!({"betas": [0.9, 0.999999999]}),
                "betas[1] is 0.999999999, below 1 as written",
            ),
            (
                serde_json::json!({"lr": 1e-50}),
                "lr is 1e-50, above 0 as written but 0 in single precision",
            ),
            (serde_json::json!({"eps": -1}), "eps must be a positive number"),
            (serde_json::json!({"eps": 0}), "eps must be a positive number"),
        ] {
            let e = written(v.clone());
            assert!(e.contains(key), "{v}: {e}");
        }
        crate::context::typed_params::<TrainParams>(
            serde_json::json!({"ema": {"decay": 0.9999999}}),
        )
        .unwrap();
        // Each new key at its default leaves the canonical form as it was.
        let p: TrainParams =
            serde_json::from_value(serde_json::json!({"optimizer": "adam", "label_smoothing": 0}))
                .unwrap();
        let canon = serde_json::to_value(&p).unwrap();
        for k in [
            "optimizer",
            "label_smoothing",
            "ema",
            "grad_clip",
            "schedule",
            "momentum",
        ] {
            assert!(canon.get(k).is_none(), "{k} in {canon}");
        }
    }

    /// The kind hands the loop what its parameters say: the recipe, the
    /// plan, and the older `plateau` key as the schedule.
    #[test]
    fn the_kind_gives_the_loop_its_params() {
        let p: TrainParams = serde_json::from_value(serde_json::json!({
            "optimizer": "sgd", "momentum": 0.9, "nesterov": true, "lr": 0.02,
            "betas": [0.8, 0.99], "eps": 1e-7, "weight_decay": 0.01,
            "label_smoothing": 0.1, "grad_clip": 2.0, "ema": {"decay": 0.9},
            "epochs": 7, "batch_size": 16, "max_batches": 3, "seed": 9,
            "augment": [{"hflip": 0.5}], "plateau": {"factor": 0.5, "patience": 1},
            "early_stopping": {"patience": 2}
        }))
        .unwrap();
        assert_eq!(
            recipe(&p),
            Recipe {
                rule: learn::nn::optim::Rule::Sgd {
                    momentum: 0.9,
                    nesterov: true
                },
                lr: 0.02,
                betas: (0.8, 0.99),
                eps: 1e-7,
                weight_decay: 0.01,
                label_smoothing: 0.1,
                grad_clip: Some(2.0),
                ema: Some(0.9),
            }
        );
        let plan = plan(&p);
        assert_eq!(
            (plan.epochs, plan.batch_size, plan.max_batches, plan.seed),
            (7, 16, Some(3), 9)
        );
        assert_eq!(
            (plan.lr, plan.patience, plan.augment.len()),
            (0.02, Some(2), 1)
        );
        assert_eq!(
            plan.schedule,
            learn::nn::schedule::Schedule::Plateau(Plateau {
                factor: 0.5,
                patience: 1
            })
        );
        let p: TrainParams =
            serde_json::from_value(serde_json::json!({"early_stopping": null})).unwrap();
        assert_eq!(super::plan(&p).patience, None);
        assert_eq!(recipe(&p).rule, learn::nn::optim::Rule::Adam);
    }

    /// The loop's events reach the stage's progress with how far it is.
    #[test]
    fn events_are_told_with_their_fraction() {
        let said = std::sync::Mutex::new(Vec::new());
        let keep = |p: Progress| said.lock().unwrap().push(p);
        told(&keep, Event::Resumed { done: 1, epochs: 4 });
        told(&keep, Event::Grown { threads: 2 });
        let said = said.into_inner().unwrap();
        assert_eq!(said[0].fraction, Some(0.25));
        assert_eq!(said[1].fraction, None);
        assert_eq!(
            said[1].step,
            Step::Training {
                event: Event::Grown { threads: 2 }
            }
        );
    }
}
