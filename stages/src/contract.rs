//! What stage kinds exchange through files, in one place that every kind
//! uses and none owns: the output file names, the schemas of the files one
//! kind writes and another reads (`train.json`, `history.json`,
//! `metrics.json`, `predictions.csv`, the table), the class names, and the
//! stage-name rule. A kind depends on this and on the shared libraries
//! (`data`, `nn`, `metrics`, `plots`), never on another kind.

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// Fashion-MNIST's classes, by label (the network library's own).
pub use learn::{CLASSES, CLASS_NAMES};

/// preprocess: the dataset artifact (see `data::dataset`) and its counts.
pub const DATASET_FILE: &str = "dataset.fmnd";
pub const DATA_SUMMARY_FILE: &str = "summary.json";
/// preprocess: each split as NumPy arrays, for code outside the tool:
/// `test-images.npy` (uint8 N×28×28) and `test-labels.npy` (uint8 N).
pub const NPY_IMAGES_SUFFIX: &str = "-images.npy";
pub const NPY_LABELS_SUFFIX: &str = "-labels.npy";
/// train: weights (safetensors, the layer spec in its metadata), the
/// per-epoch history ([`EpochRecord`]s) and the run's summary ([`TrainSummary`]).
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const HISTORY_FILE: &str = "history.json";
pub const TRAIN_SUMMARY_FILE: &str = "train.json";
/// evaluate: [`EvalReport`], per-image predictions, ROC curves.
pub const METRICS_FILE: &str = "metrics.json";

/// The environment variable naming the file where a `cmd` stage may
/// append its own live lines (one JSON object each: `{"step": 3,
/// "val_acc": 0.91}`), shown on the run's live page.
pub const LIVE_ENV: &str = "FMNIST_PIPE_LIVE";

/// A stage's live file in a run's live directory: a training's epochs,
/// or a command's own lines.
pub fn live_file(dir: &std::path::Path, stage: &str) -> std::path::PathBuf {
    // Stage names are checked to be file names; a '/' never gets this
    // far, but a file name it stays.
    dir.join("stages")
        .join(format!("{}.jsonl", stage.replace('/', "_")))
}
pub const PREDICTIONS_FILE: &str = "predictions.csv";
pub const ROC_FILE: &str = "roc.json";
/// compare: the [`Table`] and the self-contained report.
pub const TABLE_FILE: &str = "table.json";
pub const REPORT_FILE: &str = "index.html";

/// One epoch of the history.
pub use learn::train::EpochRecord;

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
    /// Paused short of `epochs` by a search's early stopping (a rung):
    /// the saved state lets a promoted trial go on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    pub threads: usize,
    pub device: String,
    pub seed: u64,
}

/// Efficiency figures of an evaluated model. None: what the tool cannot
/// know of a model it did not train (a `cmd` stage's `predictions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Efficiency {
    pub parameters: Option<usize>,
    pub model_size_bytes: Option<usize>,
    pub training_seconds: Option<f64>,
    pub epochs_run: Option<usize>,
    pub best_epoch: Option<usize>,
    pub inference_img_per_s: Option<f64>,
    /// Median time of one inference batch of `batch_size` images.
    pub latency_ms_per_batch: Option<f64>,
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

/// What ran, for the report's run panel (compare's `run.json`): handed to
/// the kinds that describe a run by the orchestrator; not part of any
/// fingerprint, so a report kept from an earlier run names that run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// When the run began (RFC 3339, UTC) and as seconds since the epoch.
    pub started: String,
    pub started_unix: u64,
    pub tool_version: String,
    /// The commit checked out in the project, and whether the tree had
    /// changes besides what the tool writes; None outside git.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// The CPU model and its vector extensions.
    pub cpu: String,
    /// Cores this process may use, and the run's parallel jobs.
    pub cores: usize,
    pub jobs: usize,
    /// `local` or `slurm`.
    pub executor: String,
    /// The pipeline file as given, its text as the run read it, and the
    /// `-S` overrides applied to it.
    pub pipeline_file: String,
    pub pipeline_text: String,
    pub overrides: Vec<String>,
    /// The stage behind each variant a comparison may show (a train
    /// stage, or a command with `predictions:`; its first replicate), by
    /// variant.
    #[serde(default)]
    pub variant_params: std::collections::BTreeMap<String, VariantOrigin>,
}

/// Where a compared variant comes from: its stage's declared name and
/// kind, and its parameters as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantOrigin {
    pub stage: String,
    pub kind: String,
    pub params: serde_json::Value,
}

/// What a variant changes from the reference, in words: its parameters
/// that differ (`dropout 0`), or, for a variant of another stage, which
/// stage it is and its parameters (`the cmd stage pytorch: epochs 5`).
pub fn variant_change(reference: &VariantOrigin, mine: &VariantOrigin) -> String {
    if mine.stage == reference.stage {
        let changes = changes_from(&reference.params, &mine.params);
        if changes.is_empty() {
            "the same parameters".into()
        } else {
            changes.join(", ")
        }
    } else {
        let own = changes_from(&serde_json::json!({}), &mine.params);
        let what = format!("the {} stage {}", mine.kind, mine.stage);
        if own.is_empty() {
            what
        } else {
            format!("{what}: {}", own.join(", "))
        }
    }
}

/// What `mine` changes from `base`, parameter by parameter in key order
/// (`dropout 0.5`, `plateau.factor 0.1`, `augment []`); the seed is left
/// out (replicates differ by it on purpose). Long values are shortened.
pub fn changes_from(base: &serde_json::Value, mine: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    use std::collections::BTreeMap;
    fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            // An empty mapping is a value, except at the top (no parameters).
            Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let flat = |v: &Value| {
        let mut out = BTreeMap::new();
        flatten("", v, &mut out);
        out.remove("seed");
        out
    };
    let (base, mine) = (flat(base), flat(mine));
    let mut keys: Vec<&String> = base.keys().chain(mine.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| base.get(*k) != mine.get(*k))
        .map(|k| {
            let shown = mine.get(k).map_or("unset".into(), |v| v.to_string());
            format!("{k} {}", shorten(&shown))
        })
        .collect()
}

/// compare: the run that made the report.
pub const RUN_FILE: &str = "run.json";

/// A table any tool can print: what `fmnist-pipe run` and `show` render.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
    /// One summary per compared variant (compare's table.json).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSummary>,
    /// Further tables printed after this one (a grid's main effects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<Table>,
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
        for t in &self.sections {
            s.push('\n');
            s.push_str(&t.markdown());
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
    /// None where the tool cannot know them (see [`Efficiency`]).
    pub parameters: Option<usize>,
    pub model_size_bytes: Option<usize>,
    /// Means over the seeds.
    pub training_seconds: Option<f64>,
    pub inference_img_per_s: Option<f64>,
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

/// The header of the predictions a `cmd` stage declares (`predictions:`):
/// the row of the image in `test-images.npy`, then one probability per
/// class (`prob_0`, `prob_1`, ...).
pub fn external_predictions_header(classes: usize) -> String {
    let mut h = String::from("index");
    for c in 0..classes {
        h.push_str(&format!(",prob_{c}"));
    }
    h
}

/// How far a row's probabilities may sum from 1 (six printed digits per
/// class round by at most 5e-7 each).
const SUM_TOLERANCE: f64 = 1e-3;

/// Reads a `cmd` stage's predictions (see [`external_predictions_header`])
/// for a test split of `n` images: the probabilities, `classes` per image,
/// in the split's order. Every row is checked: the index (in range, once
/// each), the count of values, each a probability, their sum 1. The error
/// names the line and says what to write instead.
pub fn read_external_predictions(text: &str, n: usize, classes: usize) -> Result<Vec<f32>, String> {
    let header = external_predictions_header(classes);
    // A UTF-8 byte-order mark (pandas' `utf-8-sig`, Excel) is not text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    match lines.next() {
        Some((_, h)) if h.replace(' ', "") == header => {}
        Some((_, h)) => {
            return Err(format!(
                "line 1 is `{}`, not the header `{header}`",
                shorten(h)
            ))
        }
        None => {
            return Err(format!(
                "is empty; write the header `{header}` and one row per test image"
            ))
        }
    }
    let mut probs = vec![f32::NAN; n * classes];
    let mut seen = vec![false; n];
    let mut rows = 0usize;
    for (line, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        rows += 1;
        let at = |what: String| format!("line {line}: {what}");
        let mut fields = l.split(',').map(str::trim);
        let index = fields.next().unwrap_or_default();
        let i: usize = index.parse().map_err(|_| {
            at(format!(
                "index `{}` is not a row number of test-images.npy",
                shorten(index)
            ))
        })?;
        if i >= n {
            return Err(at(format!(
                "index {i} is past the test split ({n} images: 0 to {})",
                n.saturating_sub(1)
            )));
        }
        if std::mem::replace(&mut seen[i], true) {
            return Err(at(format!(
                "index {i} appears a second time; write one row per test image"
            )));
        }
        let values: Vec<&str> = fields.collect();
        if values.len() != classes {
            return Err(at(format!(
                "{} probabilities, expected {classes} (one per class)",
                values.len()
            )));
        }
        let mut sum = 0.0f64;
        for (c, v) in values.iter().enumerate() {
            let p: f64 = v
                .parse()
                .map_err(|_| at(format!("prob_{c} `{}` is not a number", shorten(v))))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(at(format!(
                    "prob_{c} is {p}, not a probability in [0, 1]; write each row's softmax, not its logits"
                )));
            }
            sum += p;
            probs[i * classes + c] = p as f32;
        }
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(at(format!(
                "the probabilities sum to {sum:.6}, not 1; write each row's softmax"
            )));
        }
    }
    if rows != n {
        let missing = seen.iter().position(|s| !s).unwrap_or(0);
        return Err(format!(
            "holds {rows} rows, the test split has {n} images (test-images.npy); index {missing} is missing"
        ));
    }
    Ok(probs)
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s.to_string()
    }
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
    fn changes_are_listed_by_parameter_without_the_seed() {
        let base = serde_json::json!({"lr": 0.001, "seed": 1, "plateau": {"factor": 0.5, "patience": 2}, "augment": [{"hflip": 0.5}]});
        let mine = serde_json::json!({"lr": 0.001, "seed": 2, "plateau": {"factor": 0.1, "patience": 2}, "augment": [], "dropout": 0});
        assert_eq!(
            changes_from(&base, &mine),
            ["augment []", "dropout 0", "plateau.factor 0.1"]
        );
        assert!(changes_from(&base, &base).is_empty());
        let origin = |stage: &str, kind: &str, params| VariantOrigin {
            stage: stage.into(),
            kind: kind.into(),
            params,
        };
        let main = origin("train", "train", base.clone());
        assert_eq!(
            variant_change(&main, &origin("train", "train", mine)),
            "augment [], dropout 0, plateau.factor 0.1"
        );
        assert_eq!(
            variant_change(&main, &origin("train", "train", base.clone())),
            "the same parameters"
        );
        assert_eq!(
            variant_change(
                &main,
                &origin(
                    "pytorch",
                    "cmd",
                    serde_json::json!({"epochs": 5, "seed": 1})
                )
            ),
            "the cmd stage pytorch: epochs 5"
        );
        assert_eq!(
            variant_change(&main, &origin("pytorch", "cmd", serde_json::json!({}))),
            "the cmd stage pytorch"
        );
    }

    #[test]
    fn external_predictions_are_read_in_index_order_and_checked_row_by_row() {
        let ok = "index,prob_0,prob_1\n1,0.25,0.75\n0,1,0\n";
        assert_eq!(
            read_external_predictions(ok, 2, 2).unwrap(),
            vec![1.0, 0.0, 0.25, 0.75]
        );
        // Windows line ends and spaces after commas are fine.
        read_external_predictions("index, prob_0, prob_1\r\n0, 0.5, 0.5\r\n1,0,1\r\n", 2, 2)
            .unwrap();
        // So is a byte-order mark (pandas' `utf-8-sig`, Excel's CSV).
        assert_eq!(
            read_external_predictions(
                "\u{feff}index,prob_0,prob_1\r\n1,0.25,0.75\r\n0,1,0\r\n",
                2,
                2
            )
            .unwrap(),
            vec![1.0, 0.0, 0.25, 0.75]
        );
        let bad = |text: &str| read_external_predictions(text, 2, 2).unwrap_err();
        assert!(bad("").contains("is empty"));
        assert!(bad("idx,p0,p1\n")
            .contains("line 1 is `idx,p0,p1`, not the header `index,prob_0,prob_1`"));
        assert!(bad("index,prob_0,prob_1\n0,0.5,0.5\n").contains(
            "holds 1 rows, the test split has 2 images (test-images.npy); index 1 is missing"
        ));
        assert!(bad("index,prob_0,prob_1\n0,0.5,0.5\n2,0.5,0.5\n")
            .contains("line 3: index 2 is past the test split (2 images: 0 to 1)"));
        assert!(bad("index,prob_0,prob_1\n0,0.5,0.5\n0,0.5,0.5\n")
            .contains("line 3: index 0 appears a second time"));
        assert!(bad("index,prob_0,prob_1\n0,0.5\n").contains("line 2: 1 probabilities, expected 2"));
        assert!(bad("index,prob_0,prob_1\n0,2.3,-1.3\n").contains("line 2: prob_0 is 2.3, not a probability in [0, 1]; write each row's softmax, not its logits"));
        assert!(bad("index,prob_0,prob_1\n0,0.5,0.6\n")
            .contains("line 2: the probabilities sum to 1.100000, not 1"));
        assert!(bad("index,prob_0,prob_1\nx,0.5,0.5\n")
            .contains("line 2: index `x` is not a row number"));
        assert!(bad("index,prob_0,prob_1\n0,nan,0.5\n").contains("prob_0 is NaN"));
    }

    #[test]
    fn predictions_header_names_every_class() {
        assert_eq!(
            predictions_header(3),
            "index,source_index,label,predicted,p0,p1,p2"
        );
    }
}

/// What the search's results are written as.
pub const SEARCH_FILE: &str = "search.json";

/// One trial as the search left it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrialResult {
    pub trial: String,
    pub stage: String,
    pub values: Map<String, Value>,
    /// Epochs trained (the rung it stopped at, or all of them).
    pub epochs: usize,
    /// Trained to the end (or stopped by its own early stopping).
    pub complete: bool,
    /// Validation accuracy after each epoch.
    pub val_acc: Vec<f64>,
    /// The best of them: the search's score; none for a failed trial.
    pub score: Option<f64>,
    /// The trial's training failed: it has no score and is never ranked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    pub best_epoch: usize,
    pub training_seconds: f64,
}

/// search.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchResult {
    /// The search's parameters, hashed: a `confirm` stage takes its
    /// finalists only from the search the pipeline declares now.
    pub identity: String,
    pub sampler: String,
    pub seed: u64,
    pub epochs: usize,
    pub rungs: Vec<usize>,
    pub keep: f64,
    pub metric: String,
    pub trials: Vec<TrialResult>,
    /// Complete trials, best score first (ties: trial order).
    pub ranking: Vec<String>,
    /// Epochs trained over all trials, and what training every trial to
    /// the end would have taken.
    pub epochs_trained: usize,
    pub epochs_without_early_stopping: usize,
    /// Training time summed over the trials (one trial's threads at a time).
    pub training_seconds: f64,
}
