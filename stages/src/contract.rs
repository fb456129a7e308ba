//! What stage kinds exchange through files, in one place that every kind
//! uses and none owns: the output file names, the schemas of the files one
//! kind writes and another reads (`train.json`, `history.json`,
//! `metrics.json`, `predictions.csv`, the table), the class names, and the
//! stage-name rule. A kind depends on this and on the shared libraries
//! (`data`, `nn`, `metrics`, `plots`), never on another kind.

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Fashion-MNIST's classes, by label (the network library's own).
pub use learn::{CLASSES, CLASS_NAMES};

/// preprocess: the dataset artifact (see `data::dataset`) and its counts.
pub const DATASET_FILE: &str = "dataset.fmnd";
pub const DATA_SUMMARY_FILE: &str = "summary.json";
/// train: weights (safetensors, the layer spec in its metadata), the
/// per-epoch history ([`EpochRecord`]s) and the run's summary ([`TrainSummary`]).
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const HISTORY_FILE: &str = "history.json";
pub const TRAIN_SUMMARY_FILE: &str = "train.json";
/// evaluate: [`EvalReport`], per-image predictions, ROC curves.
pub const METRICS_FILE: &str = "metrics.json";
pub const PREDICTIONS_FILE: &str = "predictions.csv";
pub const ROC_FILE: &str = "roc.json";
/// compare: the [`Table`] and the self-contained report.
pub const TABLE_FILE: &str = "table.json";
pub const REPORT_FILE: &str = "index.html";

/// One epoch of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f32,
    pub seconds: f64,
    pub img_per_s: f64,
}

/// train.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub parameters: usize,
    pub model_size_bytes: usize,
    pub training_seconds: f64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_acc: f64,
    pub stopped_early: bool,
    pub threads: usize,
    pub device: String,
    pub seed: u64,
}

/// Efficiency figures of an evaluated model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Efficiency {
    pub parameters: usize,
    pub model_size_bytes: usize,
    pub training_seconds: f64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub inference_img_per_s: f64,
    /// Median time of one inference batch of `batch_size` images.
    pub latency_ms_per_batch: f64,
    pub batch_size: usize,
    pub threads: usize,
}

/// metrics.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub stage: String,
    pub train_stage: String,
    pub metrics: Metrics,
    pub efficiency: Efficiency,
    /// The training history, carried along for the comparison's charts.
    pub history: Vec<EpochRecord>,
}

/// A table any tool can print: what `fmnist-pipe run` and `show` render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
    /// One summary per compared variant (compare's table.json).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSummary>,
}

impl Table {
    /// The table as Markdown: the title in bold, the rows, the notes.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "**{}**\n\n| {} |\n|{}\n",
            self.title,
            self.columns.join(" | "),
            "---|".repeat(self.columns.len())
        );
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        for n in &self.notes {
            s.push_str(&format!("\n{n}\n"));
        }
        s
    }
}

/// One variant of a comparison, over its seed replicates. With one seed per
/// variant, the interval is Wilson's on the test set and the test McNemar's;
/// with several, both are Student t across seeds, paired by seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    pub variant: String,
    /// How many replicates (seeds) the variant has.
    pub seeds: usize,
    pub per_seed: Vec<SeedResult>,
    pub accuracy_mean: f64,
    /// Sample standard deviation across seeds (None for one seed).
    pub accuracy_sd: Option<f64>,
    pub accuracy_ci95: [f64; 2],
    pub macro_f1_mean: f64,
    pub macro_f1_ci95: Option<[f64; 2]>,
    /// Mean of the per-seed differences to the reference (None for it).
    pub delta_vs_reference: Option<f64>,
    pub delta_ci95: Option<[f64; 2]>,
    /// Seeds both this variant and the reference have.
    pub paired_seeds: usize,
    /// `paired t` or `McNemar exact`; None for the reference.
    pub test: Option<String>,
    pub p_value: Option<f64>,
    /// Holm-adjusted for every comparison in the table.
    pub p_adjusted: Option<f64>,
    /// `reference`, `better`, `worse`, `no detectable difference`, or
    /// `too few paired seeds`.
    pub verdict: String,
    pub parameters: usize,
    pub model_size_bytes: usize,
    /// Means over the seeds.
    pub training_seconds: f64,
    pub inference_img_per_s: f64,
}

/// One replicate's test metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: Option<u64>,
    pub stage: String,
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// The header of predictions.csv: the image's index in the test split, its
/// index in the source file, its label, the predicted class, then one
/// probability per class (`p0`, `p1`, ...).
pub fn predictions_header(classes: usize) -> String {
    let mut h = String::from("index,source_index,label,predicted");
    for c in 0..classes {
        h.push_str(&format!(",p{c}"));
    }
    h
}

/// Reads a predictions.csv: (label, predicted) per test image.
pub fn read_predictions(path: &Path) -> Result<Vec<(u8, u8)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| {
            let mut f = l.split(',').skip(2);
            let parse = |s: Option<&str>| s.and_then(|s| s.parse::<u8>().ok());
            match (parse(f.next()), parse(f.next())) {
                (Some(y), Some(p)) => Ok((y, p)),
                _ => Err(format!("{}: line {} is malformed", path.display(), i + 2)),
            }
        })
        .collect()
}

/// Joins a stage's base name and a variant: `train` + `main` -> `train@main`.
pub const VARIANT_SEPARATOR: char = '@';

/// Longest stage or variant name: names become file names.
pub const MAX_NAME: usize = 100;

/// The concrete name of a stage: `base`, or `base@variant`.
pub fn stage_name(base: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{base}{VARIANT_SEPARATOR}{v}"),
        None => base.to_string(),
    }
}

/// The variant of a concrete stage name (`evaluate@main` -> `main`), or
/// the name itself when it has none.
pub fn variant_of(stage: &str) -> &str {
    stage
        .split_once(VARIANT_SEPARATOR)
        .map_or(stage, |(_, v)| v)
}

/// Marks a seed replicate of a variant: `main` trained with seed 3 is the
/// variant `main~seed3` (stage `train@main~seed3`). `~` is refused in
/// declared names, so the mark cannot be mistaken.
pub const SEED_MARK: &str = "~seed";

/// The variant name of one seed replicate.
pub fn replicate_name(variant: &str, seed: u64) -> String {
    format!("{variant}{SEED_MARK}{seed}")
}

/// A variant's replicate group and seed: `main~seed3` -> (`main`, Some(3));
/// a variant that is not a replicate is its own group.
pub fn replicate_of(variant: &str) -> (&str, Option<u64>) {
    match variant.rsplit_once(SEED_MARK) {
        Some((group, seed)) if !group.is_empty() => match seed.parse() {
            Ok(n) => (group, Some(n)),
            Err(_) => (variant, None),
        },
        _ => (variant, None),
    }
}

/// Stage and variant names become file and directory names
/// (`outputs/<name>`, `cache/stages/<name>.json`) and `@`-joined stage
/// names: no separators, nothing hidden, never `.` or `..`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.starts_with('.') {
        return Err("starts with `.`: names become file names, and `.`, `..` and hidden names are refused; start with a letter or digit".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("is longer than {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains `{c}`: use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip() {
        assert_eq!(stage_name("train", Some("no-aug")), "train@no-aug");
        assert_eq!(stage_name("compare", None), "compare");
        assert_eq!(variant_of("evaluate@no-aug"), "no-aug");
        assert_eq!(variant_of("compare"), "compare");
        for bad in ["", ".", "..", ".git", "a@b", "a/b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"n".repeat(MAX_NAME + 1)).is_err());
        check_name("lr-0.01_x").unwrap();
        assert_eq!(replicate_name("main", 3), "main~seed3");
        assert_eq!(replicate_of("main~seed3"), ("main", Some(3)));
        assert_eq!(
            replicate_of("lr=0.01+dropout=0~seed12"),
            ("lr=0.01+dropout=0", Some(12))
        );
        assert_eq!(replicate_of("main"), ("main", None));
        assert_eq!(replicate_of("~seed3"), ("~seed3", None));
        assert!(check_name("main~seed3").is_err());
    }

    #[test]
    fn predictions_header_names_every_class() {
        assert_eq!(
            predictions_header(3),
            "index,source_index,label,predicted,p0,p1,p2"
        );
    }
}
