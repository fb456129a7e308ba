//! The `confirm` kind: a search's finalists and a reference configuration,
//! each trained again on fresh seeds and evaluated on the test set once,
//! compared seed by seed: mean ± sd, t intervals, paired t tests against
//! the reference with Holm's correction over the finalists, a verdict.
//!
//! Beside each finalist: the validation accuracy that made it a finalist
//! (one seed, the best of many trials) and the validation accuracy it
//! reaches on the fresh seeds; the gap is the winner's curse.

use crate::contract::{
    replicate_of, variant_of, EvalReport, Table, METRICS_FILE, REPORT_FILE, TABLE_FILE,
};
use crate::html::{escape, head, table_html};
use crate::stats::{holm, mean_sd, paired_t_p, t_interval95};
use crate::{Kind, RunContext, StageError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The configuration every finalist is compared with.
pub const REFERENCE: &str = "reference";

/// Significance level of the verdicts, after Holm's correction.
const ALPHA: f64 = 0.05;

fn three() -> usize {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfirmParams {
    /// How many of the search's best complete trials to confirm.
    #[serde(default = "three")]
    pub top: usize,
    /// Fresh seeds: each configuration is trained once per seed.
    pub seeds: Vec<u64>,
    /// Overrides of the search stage's params: the configuration to beat.
    #[serde(default)]
    pub reference: Map<String, Value>,
    /// The finalists, filled in by the pipeline from the finished search
    /// (absent while it has not finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalists: Option<Vec<Finalist>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Finalist {
    pub trial: String,
    pub values: Map<String, Value>,
    /// Its best validation accuracy in the search.
    pub search_score: f64,
}

impl crate::context::Params for ConfirmParams {
    fn validate(&self) -> Result<(), String> {
        if self.top == 0 {
            return Err("`top` must be at least 1".into());
        }
        if self.seeds.is_empty() {
            return Err(
                "`seeds` is empty: list the fresh seeds, e.g. `seeds: [101, 102, 103, 104, 105]`"
                    .into(),
            );
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return Err(format!("`seeds` lists {s} twice"));
            }
        }
        Ok(())
    }
}

/// One configuration's confirmed results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confirmed {
    /// A trial's name, or `reference`.
    pub trial: String,
    pub params: Map<String, Value>,
    /// The finalist's search score (None for the reference).
    pub search_score: Option<f64>,
    /// Mean best validation accuracy over the fresh seeds.
    pub val_acc_mean: f64,
    pub accuracy_mean: f64,
    pub accuracy_sd: Option<f64>,
    pub accuracy_ci95: Option<[f64; 2]>,
    /// Test accuracy per seed, in `seeds` order.
    pub per_seed: Vec<(u64, f64)>,
    pub delta_vs_reference: Option<f64>,
    pub delta_ci95: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    pub p_adjusted: Option<f64>,
    pub verdict: String,
}

/// table.json: the printable table, and the figures as data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmTable {
    #[serde(flatten)]
    pub table: Table,
    pub seeds: Vec<u64>,
    pub reference: Confirmed,
    pub finalists: Vec<Confirmed>,
    /// The best confirmed finalist, if any is confirmed better.
    pub best: Option<String>,
}

fn fail(e: impl std::fmt::Display) -> StageError {
    StageError::Failed(e.to_string())
}

/// (test accuracy, best validation accuracy) of each seed of `config`.
fn results(
    ctx: &RunContext<'_>,
    config: &str,
    seeds: &[u64],
) -> Result<Vec<(f64, f64)>, StageError> {
    seeds
        .iter()
        .map(|&s| {
            let input = ctx
                .inputs
                .iter()
                .find(|i| {
                    i.kind == Kind::Evaluate
                        && replicate_of(variant_of(&i.stage)) == (config, Some(s))
                })
                .ok_or_else(|| {
                    StageError::Params(format!(
                        "the evaluation of {config} with seed {s} is not among the inputs of {}",
                        ctx.stage
                    ))
                })?;
            let path = input
                .paths
                .first()
                .cloned()
                .unwrap_or_default()
                .join(METRICS_FILE);
            let bytes = std::fs::read(&path).map_err(|e| StageError::corrupt(&path, e))?;
            let r: EvalReport =
                serde_json::from_slice(&bytes).map_err(|e| StageError::corrupt(&path, e))?;
            let val = r.history.iter().map(|h| h.val_acc).fold(0.0, f64::max);
            Ok((r.metrics.accuracy, val))
        })
        .collect()
}

fn summary(
    trial: &str,
    params: &Map<String, Value>,
    search_score: Option<f64>,
    seeds: &[u64],
    got: &[(f64, f64)],
    reference: Option<&[(f64, f64)]>,
) -> Confirmed {
    let acc: Vec<f64> = got.iter().map(|g| g.0).collect();
    let (mean, sd) = mean_sd(&acc);
    let val_acc_mean = got.iter().map(|g| g.1).sum::<f64>() / got.len().max(1) as f64;
    let deltas: Option<Vec<f64>> =
        reference.map(|r| got.iter().zip(r).map(|(a, b)| a.0 - b.0).collect());
    Confirmed {
        trial: trial.into(),
        params: params.clone(),
        search_score,
        val_acc_mean,
        accuracy_mean: mean,
        accuracy_sd: sd,
        accuracy_ci95: t_interval95(&acc).map(|(a, b)| [a, b]),
        per_seed: seeds.iter().copied().zip(acc.iter().copied()).collect(),
        delta_vs_reference: deltas.as_ref().map(|d| mean_sd(d).0),
        delta_ci95: deltas
            .as_ref()
            .and_then(|d| t_interval95(d))
            .map(|(a, b)| [a, b]),
        p_value: deltas.as_ref().and_then(|d| paired_t_p(d)),
        p_adjusted: None,
        verdict: String::new(),
    }
}

/// Holm over the finalists, and each one's verdict; the best confirmed.
pub fn judge(finalists: &mut [Confirmed]) -> Option<String> {
    let tested: Vec<usize> = (0..finalists.len())
        .filter(|&i| finalists[i].p_value.is_some())
        .collect();
    let ps: Vec<f64> = tested
        .iter()
        .filter_map(|&i| finalists[i].p_value)
        .collect();
    for (&i, q) in tested.iter().zip(holm(&ps)) {
        finalists[i].p_adjusted = Some(q);
    }
    for f in finalists.iter_mut() {
        let d = f.delta_vs_reference.unwrap_or(0.0);
        f.verdict = match f.p_adjusted {
            None => "not tested (one seed: list two or more)".into(),
            Some(q) if q < ALPHA && d > 0.0 => "confirmed better".into(),
            Some(q) if q < ALPHA && d < 0.0 => "confirmed worse".into(),
            Some(_) => "not confirmed".into(),
        };
    }
    finalists
        .iter()
        .filter(|f| f.verdict == "confirmed better")
        .max_by(|a, b| a.accuracy_mean.total_cmp(&b.accuracy_mean))
        .map(|f| f.trial.clone())
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn pp(x: f64) -> String {
    format!("{:+.2} pp", x * 100.0)
}

fn interval(ci: Option<[f64; 2]>, f: fn(f64) -> String) -> String {
    ci.map_or("—".into(), |[a, b]| format!("[{}, {}]", f(a), f(b)))
}

fn p_text(p: Option<f64>) -> String {
    match p {
        None => "—".into(),
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
    }
}

/// Parameter values as a line: `lr 0.0012, schedule cosine` (a named
/// choice by its name).
pub fn values_text(m: &Map<String, Value>) -> String {
    if m.is_empty() {
        return "the stage's params".into();
    }
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(t: &ConfirmTable) -> Table {
    let columns = [
        "configuration",
        "search val acc",
        "fresh-seed val acc",
        "test accuracy",
        "95% CI",
        "Δ vs reference",
        "95% CI of Δ",
        "p",
        "p (Holm)",
        "verdict",
    ];
    let row = |c: &Confirmed| {
        vec![
            c.trial.clone(),
            c.search_score.map_or("—".into(), pct),
            pct(c.val_acc_mean),
            format!(
                "{} ± {:.2}",
                pct(c.accuracy_mean),
                c.accuracy_sd.unwrap_or(0.0) * 100.0
            ),
            interval(c.accuracy_ci95, pct),
            c.delta_vs_reference.map_or("—".into(), pp),
            interval(c.delta_ci95, pp),
            p_text(c.p_value),
            p_text(c.p_adjusted),
            if c.trial == REFERENCE {
                "reference".into()
            } else {
                c.verdict.clone()
            },
        ]
    };
    let mut rows = vec![row(&t.reference)];
    rows.extend(t.finalists.iter().map(row));
    let mut notes = vec![format!(
        "Each configuration trained on the fresh seeds {:?} and evaluated on the test set once; mean ± sd over the seeds; paired t tests against the reference, seed by seed; Holm's correction over the {} finalists; a verdict at p (Holm) < {ALPHA}.",
        t.seeds,
        t.finalists.len()
    )];
    notes.push(format!("reference: {}", values_text(&t.reference.params)));
    for f in &t.finalists {
        notes.push(format!("{}: {}", f.trial, values_text(&f.params)));
    }
    let curse: Vec<String> = t
        .finalists
        .iter()
        .filter_map(|f| {
            f.search_score
                .map(|s| format!("{} {}", f.trial, pp(f.val_acc_mean - s)))
        })
        .collect();
    notes.push(format!(
        "The winner's curse, in validation accuracy from the search's seed to the fresh seeds: {}.",
        curse.join(", ")
    ));
    notes.push(match &t.best {
        Some(b) => format!("Best: {b}, confirmed better than the reference."),
        None => "No finalist is confirmed better than the reference: none is called best.".into(),
    });
    Table {
        title: "Confirmed on fresh seeds: test accuracy".into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
        notes,
        variants: vec![],
        sections: vec![],
    }
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let p: ConfirmParams = crate::context::parse_params(ctx.params)?;
    let Some(finals) = &p.finalists else {
        return Err(StageError::Params(format!(
            "{} waits for its search to finish: run the pipeline (the search runs first)",
            ctx.stage
        )));
    };
    if finals.is_empty() {
        return Err(StageError::Params(format!(
            "{}: the search has no finalist to confirm (no trial trained its last epoch: each stopped at a rung or failed); see the search's report, and give it more trials or a larger `keep`",
            ctx.stage
        )));
    }
    let base = results(ctx, REFERENCE, &p.seeds)?;
    let reference = summary(REFERENCE, &p.reference, None, &p.seeds, &base, None);
    let mut finalists = finals
        .iter()
        .map(|f| {
            let got = results(ctx, &f.trial, &p.seeds)?;
            Ok(summary(
                &f.trial,
                &f.values,
                Some(f.search_score),
                &p.seeds,
                &got,
                Some(&base),
            ))
        })
        .collect::<Result<Vec<_>, StageError>>()?;
    let best = judge(&mut finalists);
    let mut t = ConfirmTable {
        table: Table::default(),
        seeds: p.seeds.clone(),
        reference,
        finalists,
        best,
    };
    t.table = render(&t);
    let write = |name: &str, bytes: &[u8]| {
        let path = ctx.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| StageError::io("write", path, e))
    };
    write(TABLE_FILE, &serde_json::to_vec_pretty(&t).map_err(fail)?)?;
    write("table.md", t.table.markdown().as_bytes())?;
    // Each finalist's difference to the reference, seed by seed.
    let forest: Vec<crate::plots::ForestRow> = t
        .finalists
        .iter()
        .filter_map(|f| {
            Some(crate::plots::ForestRow {
                label: f.trial.clone(),
                mean: f.delta_vs_reference?,
                ci: f.delta_ci95.map(|[a, b]| (a, b)),
                points: f
                    .per_seed
                    .iter()
                    .zip(&t.reference.per_seed)
                    .map(|(a, b)| a.1 - b.1)
                    .collect(),
            })
        })
        .collect();
    crate::plots::forest(ctx.out_dir, REFERENCE, &forest).map_err(fail)?;
    let mut h = head("fmnist-pipe confirm");
    let _ = write!(h, "<h1>{}</h1>", escape(&t.table.title));
    h.push_str(&table_html(&t.table, "", "", ""));
    h.push_str(&crate::html::picture(ctx.out_dir, "forest").unwrap_or_default());
    // The search it confirms: its summary and every trial's curve.
    if let Some(dir) = ctx
        .inputs
        .iter()
        .find(|i| i.kind == Kind::Search)
        .and_then(|i| i.paths.first())
    {
        if let Ok(md) = std::fs::read_to_string(dir.join("search.md")) {
            let summary = md.lines().nth(2).unwrap_or_default();
            let _ = write!(h, "<h2>The search</h2><p>{}</p>", escape(summary));
        }
        h.push_str(&crate::html::picture(dir, "search_curves").unwrap_or_default());
        let _ = write!(
            h,
            "<p>Every trial, its values and its curve: <code>{}</code>.</p>",
            escape(&dir.join(REPORT_FILE).display().to_string())
        );
    }
    h.push_str("</body></html>\n");
    write(REPORT_FILE, h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(trial: &str, acc: &[f64], base: Option<&[f64]>) -> Confirmed {
        let got: Vec<(f64, f64)> = acc.iter().map(|&a| (a, a)).collect();
        let base: Option<Vec<(f64, f64)>> = base.map(|b| b.iter().map(|&a| (a, a)).collect());
        let seeds: Vec<u64> = (0..acc.len() as u64).collect();
        summary(
            trial,
            &Map::new(),
            Some(0.95),
            &seeds,
            &got,
            base.as_deref(),
        )
    }

    /// A search in which no trial trained its last epoch leaves nothing to
    /// confirm: the stage fails and says why, before it reads anything.
    #[test]
    fn no_finalist_is_a_failure_that_says_why() {
        let out = std::env::temp_dir();
        let run_with = |params: Value| {
            let ctx = RunContext {
                stage: "confirm",
                project_dir: std::path::Path::new("."),
                params: &params,
                inputs: &[],
                out_dir: &out,
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
        };
        match run_with(serde_json::json!({"seeds": [7], "finalists": []})) {
            Err(StageError::Params(m)) => assert!(
                m.contains("the search has no finalist to confirm") && m.contains("larger `keep`"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        match run_with(serde_json::json!({"seeds": [7]})) {
            Err(StageError::Params(m)) => assert!(m.contains("waits for its search"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_finalist_is_called_best_only_when_confirmed() {
        let r = [0.920, 0.921, 0.919, 0.922, 0.920];
        let mut f = vec![
            conf("trial-01", &[0.930, 0.932, 0.929, 0.933, 0.931], Some(&r)),
            conf("trial-02", &[0.921, 0.919, 0.922, 0.918, 0.921], Some(&r)),
        ];
        let best = judge(&mut f);
        assert_eq!(best.as_deref(), Some("trial-01"));
        assert_eq!(f[0].verdict, "confirmed better");
        assert_eq!(f[1].verdict, "not confirmed");
        assert!(f[0].p_adjusted.unwrap() >= f[0].p_value.unwrap());
        assert!((f[0].delta_vs_reference.unwrap() - 0.0106).abs() < 1e-9);
        let mut none = vec![conf(
            "trial-02",
            &[0.921, 0.919, 0.922, 0.918, 0.921],
            Some(&r),
        )];
        assert_eq!(judge(&mut none), None);
        let t = ConfirmTable {
            table: Table::default(),
            seeds: vec![1, 2, 3, 4, 5],
            reference: conf(REFERENCE, &r, None),
            finalists: f,
            best,
        };
        let rendered = render(&t);
        assert_eq!(rendered.rows.len(), 3);
        assert!(rendered.notes.iter().any(|n| n.contains("winner's curse")));
        // The printable table and the data live side by side in table.json.
        let json = serde_json::to_value(&t).unwrap();
        for key in ["reference", "finalists", "columns", "rows"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        for key in [
            "trial",
            "params",
            "search_score",
            "accuracy_mean",
            "accuracy_sd",
            "accuracy_ci95",
            "delta_vs_reference",
            "delta_ci95",
            "p_value",
            "p_adjusted",
            "verdict",
        ] {
            assert!(json["finalists"][0].get(key).is_some(), "{key}");
        }
    }
}
