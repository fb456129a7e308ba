//! The stage-kind interface shared by every kind.

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

/// A progress report from a running stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// What is being done (`epoch 3/10`, `train-images-idx3-ubyte.gz`).
    pub message: String,
    /// Fraction done in [0, 1], when known.
    pub fraction: Option<f64>,
    /// Something the user must hear of even without `-v` (and that the
    /// stage's log keeps): a saved state thrown away, say.
    pub notice: bool,
    /// A step worth a line of its own in a log or off a terminal (an
    /// epoch done, with its validation accuracy); on a terminal it is the
    /// live line like any progress.
    pub milestone: bool,
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

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Cmd,
        Kind::Download,
        Kind::Preprocess,
        Kind::Train,
        Kind::Evaluate,
        Kind::Compare,
        Kind::Search,
        Kind::Confirm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Cmd => "cmd",
            Kind::Download => "download",
            Kind::Preprocess => "preprocess",
            Kind::Train => "train",
            Kind::Evaluate => "evaluate",
            Kind::Compare => "compare",
            Kind::Search => "search",
            Kind::Confirm => "confirm",
        }
    }

    /// Bumped whenever a kind's results could change for the same inputs and
    /// parameters, so that every stage of that kind reruns.
    pub fn version(self) -> u32 {
        match self {
            Kind::Cmd => 1,
            Kind::Download => 1,
            // 2: each split also as NumPy arrays (`test-images.npy`, ...).
            Kind::Preprocess => 2,
            // 2: 3×3 stride-1 convolutions by Winograd F(4×4, 3×3): the same
            // maths with other roundings, so every trained weight differs.
            Kind::Train => 2,
            // 2: heatmap labels centred on their rows and columns.
            // 3: every point of a curve marked (a one-epoch curve shows).
            // 4: Winograd convolutions in inference (logits round differently).
            Kind::Evaluate => 4,
            // 2: tiny p-values shown as "< 1e-300", digits grouped in the title.
            // 3: seed replicates aggregated; table.json's per-variant
            // summaries; curves' points marked; a sortable report table.
            // 4: inference rates with grouped digits (815,336).
            // 5: curves over seeds as a mean with a band; a grid's main
            // effects and pivot; the report's run panel.
            Kind::Compare => 5,
            Kind::Search => 1,
            // 2: the forest chart and the search's summary in the report.
            Kind::Confirm => 2,
        }
    }

    /// A one-line description of a stage from its canonical parameters
    /// (`dag` prints it): the model's parameter count for `train`.
    pub fn describe(self, params: &Value) -> Option<String> {
        match self {
            Kind::Train => crate::train::describe(params),
            _ => None,
        }
    }

    /// Kinds whose results depend on the compute device (part of their fingerprint).
    pub fn uses_device(self) -> bool {
        matches!(self, Kind::Train | Kind::Evaluate)
    }

    /// Inputs a stage of this kind takes through another of its inputs
    /// when it names none itself: (through, wanted). An evaluate stage
    /// reads the dataset its train stage trained on (or the command whose
    /// predictions it measures read).
    pub fn inherited_inputs(self) -> &'static [(Kind, Kind)] {
        match self {
            Kind::Evaluate => &[
                (Kind::Train, Kind::Preprocess),
                (Kind::Cmd, Kind::Preprocess),
            ],
            _ => &[],
        }
    }

    /// Kinds whose outputs name their stage or their inputs' stages (the
    /// evaluation report, the comparison table): a result of one stage
    /// name is not another's. The others' outputs are the same under any
    /// name.
    pub fn names_stages(self) -> bool {
        matches!(
            self,
            Kind::Evaluate | Kind::Compare | Kind::Search | Kind::Confirm
        )
    }

    /// Kinds whose outputs describe the run that made them (the report's
    /// run panel): the orchestrator hands them a [`crate::contract::RunInfo`].
    pub fn describes_run(self) -> bool {
        matches!(self, Kind::Compare)
    }

    /// Parameters a kind leaves out of its canonical form at their
    /// defaults (added after the form was fixed, so that existing
    /// configurations kept their fingerprints): a variant, a matrix or a
    /// reference may still set them.
    pub fn optional_params(self) -> &'static [&'static str] {
        match self {
            Kind::Train => &[
                "optimizer",
                "momentum",
                "nesterov",
                "schedule",
                "plateau",
                "label_smoothing",
                "ema",
                "grad_clip",
            ],
            Kind::Evaluate => &["tta"],
            _ => &[],
        }
    }

    /// Kinds whose work spreads over several threads; the others use one.
    pub fn parallel(self) -> bool {
        matches!(self, Kind::Train | Kind::Evaluate)
    }

    /// Kinds that save their state as they go and resume after an interruption.
    pub fn resumes(self) -> bool {
        matches!(self, Kind::Train)
    }

    /// Where a run of this kind with the state saved in `dir` takes up
    /// again: (steps done, steps), in the kind's unit (epochs for train).
    /// None without a whole saved state. The kind alone reads its files.
    pub fn resume_point(self, dir: &std::path::Path) -> Option<(usize, usize)> {
        match self {
            Kind::Train => crate::train::resume::saved_progress(dir),
            _ => None,
        }
    }

    /// Built-in kinds write into a directory the orchestrator gives them;
    /// `cmd` writes its declared outputs itself.
    pub fn is_builtin(self) -> bool {
        !matches!(self, Kind::Cmd)
    }

    /// Checks parameters against the kind's type and returns them in
    /// canonical form, defaults filled in.
    pub fn normalize_params(self, params: Value) -> Result<Value, String> {
        match self {
            Kind::Cmd => match params {
                Value::Object(_) => Ok(params),
                Value::Null => Ok(Value::Object(Default::default())),
                other => Err(format!("params must be a mapping, not {other}")),
            },
            Kind::Download => typed_params::<crate::download::DownloadParams>(params),
            Kind::Preprocess => typed_params::<crate::preprocess::PreprocessParams>(params),
            Kind::Train => typed_params::<crate::train::TrainParams>(params),
            Kind::Evaluate => typed_params::<crate::evaluate::EvaluateParams>(params),
            Kind::Compare => typed_params::<crate::compare::CompareParams>(params),
            Kind::Search => typed_params::<crate::search::SearchParams>(params),
            Kind::Confirm => typed_params::<crate::confirm::ConfirmParams>(params),
        }
    }

    /// Checks a stage's parameters against the stages it reads (name and
    /// kind of each), when the pipeline loads: what would otherwise fail
    /// only after everything before it ran.
    pub fn check_inputs(self, params: &Value, inputs: &[Upstream<'_>]) -> Result<(), String> {
        match self {
            Kind::Compare => {
                let p: crate::compare::CompareParams =
                    serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
                let evaluated: Vec<&str> = inputs
                    .iter()
                    .filter(|u| u.kind == Kind::Evaluate)
                    .map(|u| u.name)
                    .collect();
                crate::compare::check_compared(&p, &evaluated).map(|_| ())
            }
            Kind::Evaluate => {
                let names = |f: &dyn Fn(&Upstream<'_>) -> bool| -> Vec<&str> {
                    inputs.iter().filter(|u| f(u)).map(|u| u.name).collect()
                };
                let models = names(&|u| u.evaluable());
                match models.len() {
                    1 => {}
                    0 => return Err("evaluate needs the stage whose model it evaluates: a train stage, or a cmd stage that declares `predictions:`; add it to `needs`, or use `foreach: <that stage>`".into()),
                    n => return Err(format!("evaluate reads exactly one trained model or predictions, it has {n} ({}); use `foreach` to evaluate each variant", models.join(", "))),
                }
                let data = names(&|u| u.kind == Kind::Preprocess);
                match data.len() {
                    1 => Ok(()),
                    0 => Err("evaluate needs a preprocess stage for its test set: add it to `needs`".into()),
                    n => Err(format!("evaluate reads exactly one preprocess stage, it has {n} ({}); use `foreach` to evaluate each variant", data.join(", "))),
                }
            }
            _ => Ok(()),
        }
    }

    /// Runs a built-in kind. `cmd` stages go through [`crate::cmd::run_shell`].
    pub fn run(self, ctx: &RunContext<'_>) -> Result<(), StageError> {
        match self {
            Kind::Cmd => Err(StageError::Failed(format!(
                "stage {}: cmd stages run through cmd::run_shell",
                ctx.stage
            ))),
            Kind::Download => crate::download::run(ctx),
            Kind::Preprocess => crate::preprocess::run(ctx),
            Kind::Train => crate::train::run(ctx),
            Kind::Evaluate => crate::evaluate::run(ctx),
            Kind::Compare => crate::compare::run(ctx),
            Kind::Search => crate::search::run(ctx),
            Kind::Confirm => crate::confirm::run(ctx),
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

#[cfg(test)]
mod documented_defaults {
    use super::Kind;
    use serde_json::{Map, Value};

    /// docs/pipeline.md's table after `<!-- defaults of KIND -->`: each
    /// row's parameters (backticked in the first cell) and its default
    /// (the first backticked text of the second cell; `required`; or `—`
    /// for a default the table describes in words).
    fn table(kind: &str) -> Vec<(Vec<String>, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/pipeline.md");
        let text = std::fs::read_to_string(path).expect("docs/pipeline.md");
        let marker = format!("<!-- defaults of {kind} -->");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let rows: Vec<_> = text
            .lines()
            .skip_while(|l| l.trim() != marker)
            .skip(3)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let names = ticked(cells[1]);
                let default = match cells[2] {
                    "required" => "required".to_string(),
                    c if c.starts_with('—') => "—".to_string(),
                    c => ticked(c).join(", "),
                };
                (names, default)
            })
            .collect();
        assert!(!rows.is_empty(), "docs/pipeline.md has no `{marker}` table");
        rows
    }

    /// Every field the kind accepts, from its refusal of an unknown one.
    fn fields(kind: Kind) -> Vec<String> {
        let mut probe = Map::new();
        probe.insert("no-such-parameter".into(), Value::Null);
        let err = kind.normalize_params(Value::Object(probe)).unwrap_err();
        let list = err.split("expected one of").nth(1).unwrap_or_else(|| {
            err.split("expected")
                .nth(1)
                .unwrap_or_else(|| panic!("{err}"))
        });
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn check(kind: Kind, name: &str, required: Value, internal: &[&str]) {
        let rows = table(name);
        let base = kind
            .normalize_params(required.clone())
            .expect("the required parameters");
        let mut documented = Vec::new();
        for (names, default) in &rows {
            // `betas`, `eps` with `[0.9, 0.999]`, `1.0e-8`: one default each;
            // `mean`, `std` with `0.5`: one for both.
            let defaults: Vec<String> = if default.contains(", ") && names.len() > 1 {
                let yaml = format!("[{default}]");
                let v: Vec<serde_yaml::Value> = serde_yaml::from_str(&yaml).expect(&yaml);
                v.iter()
                    .map(|x| serde_yaml::to_string(x).unwrap())
                    .collect()
            } else {
                vec![default.clone(); names.len()]
            };
            for (key, default) in names.iter().zip(defaults) {
                documented.push(key.clone());
                match default.as_str() {
                    "—" => {}
                    "required" => {
                        let mut without = required.as_object().unwrap().clone();
                        without.remove(key);
                        assert!(
                            kind.normalize_params(Value::Object(without)).is_err(),
                            "{name}: `{key}` is documented as required"
                        );
                    }
                    text => {
                        let v: Value = serde_yaml::from_str(text)
                            .unwrap_or_else(|e| panic!("{name}.{key}: `{text}`: {e}"));
                        let mut with = required.as_object().unwrap().clone();
                        with.insert(key.clone(), v);
                        let got = kind
                            .normalize_params(Value::Object(with))
                            .unwrap_or_else(|e| panic!("{name}.{key}: `{text}`: {e}"));
                        assert_eq!(
                            got, base,
                            "{name}.{key}: docs/pipeline.md says the default is `{text}`"
                        );
                    }
                }
            }
        }
        let mut missing: Vec<String> = fields(kind)
            .into_iter()
            .filter(|f| !documented.contains(f) && !internal.contains(&f.as_str()))
            .collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "{name}: docs/pipeline.md does not list {missing:?}"
        );
        for d in &documented {
            assert!(fields(kind).contains(d), "{name}: `{d}` is not a parameter");
        }
    }

    #[test]
    fn the_documented_defaults_are_the_code_s() {
        let none = serde_json::json!({});
        check(Kind::Download, "download", none.clone(), &[]);
        check(Kind::Preprocess, "preprocess", none.clone(), &[]);
        check(Kind::Train, "train", none.clone(), &[]);
        check(Kind::Evaluate, "evaluate", none.clone(), &[]);
        check(Kind::Compare, "compare", none, &[]);
        // `finalists` is written by the tool once the search has finished.
        check(
            Kind::Confirm,
            "confirm",
            serde_json::json!({"seeds": [101, 102]}),
            &["finalists"],
        );
    }
}
