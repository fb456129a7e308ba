//! What every stage kind shares: the `Kind` names, the context a kind
//! runs in (its inputs, where it writes, how it reports progress), its
//! errors, and its typed parameters. The kinds import this; the registry
//! (`kind.rs`) imports the kinds.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Every kind of stage a pipeline can declare (`kind:` in pipeline.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A shell command with declared dependencies and outputs.
    Cmd,
    /// Fetches the Fashion-MNIST files from the first source that has them.
    Download,
    /// Decodes, validates, splits and packs the data for training.
    Preprocess,
    /// Trains a model on the preprocessed data.
    Train,
    /// Measures a trained model on the test set.
    Evaluate,
    /// Compares evaluated variants: the table, significance tests, the report.
    Compare,
    /// A search's report (made by `search:` on a train stage, not declared).
    Search,
    /// A search's finalists trained again on fresh seeds, against a reference.
    Confirm,
}

/// One upstream stage's outputs, as a built-in kind sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// The upstream stage's name (`train@main`).
    pub stage: String,
    /// The upstream stage's kind.
    pub kind: Kind,
    /// Its output paths, absolute.
    pub paths: Vec<PathBuf>,
    /// A `cmd` stage's declared predictions of the test set (absolute):
    /// what `evaluate` measures in place of a trained model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<PathBuf>,
    /// The upstream stage failed in this run: it has no result, and what
    /// its paths hold (if anything) is not one. Only a search's report
    /// runs after a failed input (a failed trial).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

/// A stage another one reads, as the pipeline declares it (checked at load).
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    pub name: &'a str,
    pub kind: Kind,
    /// A `cmd` stage that declares `predictions:`.
    pub predicts: bool,
}

impl Upstream<'_> {
    /// Whether `evaluate` can measure this stage: a trained model, or a
    /// command's predictions of the test set.
    pub fn evaluable(&self) -> bool {
        self.kind == Kind::Train || (self.kind == Kind::Cmd && self.predicts)
    }
}

/// A progress report from a running stage: what it is doing, as data
/// (the reporter words it), and how far it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub step: Step,
    /// Fraction done in [0, 1], when known.
    pub fraction: Option<f64>,
}

/// What a running stage is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// download: a file being fetched, then where it came from.
    Fetching {
        file: String,
    },
    Fetched {
        file: String,
        source: String,
    },
    /// preprocess: decoding, splitting, writing.
    Phase {
        phase: Phase,
    },
    /// train: the model's size, then the loop's events.
    Parameters {
        count: usize,
    },
    Training {
        event: learn::train::Event,
    },
    /// evaluate: the test set's size, then the accuracy measured.
    TestImages {
        count: usize,
    },
    Accuracy {
        accuracy: f64,
    },
    /// compare: the variants compared, then its charts.
    Variants {
        count: usize,
    },
    Charts,
    /// No TrueType font was found: no pictures are drawn.
    NoFont,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Decoding,
    Splitting,
    Writing,
}

impl Step {
    /// Something the user must hear of even without `-v` (and that the
    /// stage's log keeps): a saved state thrown away, say.
    pub fn notice(&self) -> bool {
        matches!(
            self,
            Step::Training {
                event: learn::train::Event::StartsOver(_)
            }
        )
    }

    /// A step worth a line of its own in a log or off a terminal (an epoch
    /// done, with its validation accuracy); on a terminal it is the live
    /// line like any progress.
    pub fn milestone(&self) -> bool {
        use learn::train::Event;
        matches!(
            self,
            Step::Training {
                event: Event::Epoch { .. } | Event::Grown { .. }
            }
        )
    }
}

/// Everything a built-in kind needs to run one stage.
pub struct RunContext<'a> {
    pub stage: &'a str,
    pub project_dir: &'a Path,
    /// Canonical parameters, as returned by [`Kind::normalize_params`].
    pub params: &'a Value,
    pub inputs: &'a [Input],
    /// The directory the stage writes its outputs into (a staging directory;
    /// the orchestrator moves it into place after success).
    pub out_dir: &'a Path,
    pub threads: usize,
    /// Where a kind that can resume keeps its state between interrupted
    /// runs of the same stage with the same fingerprint (`train`).
    pub resume: Option<&'a Path>,
    /// For `train`: pause after this many epochs (a search's rung).
    pub stop_after: Option<usize>,
    /// For `train`: where the orchestrator writes a larger thread count
    /// when a core comes free (read between epochs).
    pub grow: Option<&'a Path>,
    /// `cpu` or `cuda`, for kinds that use a device.
    pub device: Option<&'a str>,
    /// For `train` on the CPU: the kernels its products run on, where the
    /// caller chooses (`bench --kernels`); None: what the core and
    /// `FMNIST_PIPE_KERNELS` give. The bits are the same either way.
    pub kernels: Option<learn::nn::simd::Family>,
    /// What run this is, for the kinds that describe it ([`Kind::describes_run`]).
    pub run: Option<&'a crate::contract::RunInfo>,
    pub progress: &'a (dyn Fn(Progress) + Sync),
}

/// Why a stage failed. As every error here, its message does not repeat
/// its cause: whoever prints it walks the `source()` chain.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("{0}")]
    Failed(String),
    #[error("could not {action} {path}")]
    Io {
        action: std::borrow::Cow<'static, str>,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of an upstream stage's output cannot be used: the orchestrator
    /// invalidates that stage so that the next run rebuilds it.
    #[error("input {path} is corrupt: {problem}")]
    InputCorrupt { path: PathBuf, problem: String },
}

impl StageError {
    pub fn corrupt(path: impl Into<PathBuf>, problem: impl ToString) -> Self {
        StageError::InputCorrupt {
            path: path.into(),
            problem: problem.to_string(),
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }
}

/// A kind's typed parameters: checked when the pipeline is loaded (so a
/// bad value is reported at its line in pipeline.yaml) and again when the
/// stage runs.
pub(crate) trait Params: serde::de::DeserializeOwned + Serialize {
    /// Value checks that serde's types cannot express.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Checks of the values as written, before they are read into their
    /// types (a value that rounding to f32 would carry out of its range).
    fn validate_written(_params: &Value) -> Result<(), String> {
        Ok(())
    }
}

/// Deserializes `params` into a kind's typed parameters and back, so that the
/// canonical form has every default filled in, unknown fields are refused
/// and values are checked.
pub(crate) fn typed_params<T: Params>(params: Value) -> Result<Value, String> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    T::validate_written(&params)?;
    let typed: T = serde_json::from_value(params).map_err(|e| e.to_string())?;
    typed.validate()?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// The typed, checked parameters of a running stage.
pub(crate) fn parse_params<T: Params>(params: &Value) -> Result<T, StageError> {
    let typed: T =
        serde_json::from_value(params.clone()).map_err(|e| StageError::Params(e.to_string()))?;
    typed.validate().map_err(StageError::Params)?;
    Ok(typed)
}
