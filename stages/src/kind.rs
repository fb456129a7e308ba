//! The registry of stage kinds: what each `Kind` checks, needs and runs,
//! dispatched to its module. The shared types are in [`crate::context`].

use crate::context::typed_params;
use crate::context::{Kind, RunContext, StageError, Upstream};
use serde_json::Value;

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
