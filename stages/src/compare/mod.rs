//! The `compare` kind: one row per evaluated variant — accuracy with its
//! 95% interval, macro F1, the difference to a reference variant with
//! McNemar's exact test on the paired predictions, efficiency — as
//! Markdown, CSV and JSON, charts, and a self-contained HTML report.

mod grid;
mod render;
mod seeds;

use crate::contract::{
    read_predictions, replicate_of, variant_of, EvalReport, SeedResult, VariantSummary,
    METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE, RUN_FILE, TABLE_FILE,
};
use crate::metrics::{mcnemar_exact, wilson};
use crate::{Kind, Progress, RunContext, StageError};
use render::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The variant every other one is compared with: its name, or the
    /// parameters that select it (resolved to a name when the pipeline
    /// loads).
    #[serde(default = "default_reference")]
    pub reference: Reference,
    /// Named groups of variants whose validation curves get a chart of
    /// their own (e.g. a learning-rate study).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
}

/// A comparison's reference variant: by name (`main`), or by the
/// parameters that set it apart (`{lr: 0.001, dropout: 0.25}`: the
/// variant whose configuration is its stage's parameters with these set,
/// so a grid that gains an axis keeps its reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reference {
    Name(String),
    Params(serde_json::Map<String, serde_json::Value>),
}

impl Reference {
    /// The variant's name; None before parameters were resolved to one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Reference::Name(n) => Some(n),
            Reference::Params(_) => None,
        }
    }
}

fn default_reference() -> Reference {
    Reference::Name("main".into())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub variant: String,
    pub accuracy: f64,
    pub ci95: (f64, f64),
    pub macro_f1: f64,
    pub delta_accuracy: f64,
    /// Images only the reference got right, only this variant got right.
    pub discordant: (usize, usize),
    pub mcnemar_p: f64,
    /// None where the tool cannot know them (a command's model).
    pub parameters: Option<usize>,
    pub model_size_bytes: Option<usize>,
    pub training_seconds: Option<f64>,
    pub inference_img_per_s: Option<f64>,
}

/// A figure the tool does not know of a model it did not train or run
/// (a `cmd` stage's predictions).
pub const UNKNOWN: &str = "unknown";

/// A figure as the table shows it, or [`UNKNOWN`].
fn known<T>(v: Option<T>, show: impl Fn(T) -> String) -> String {
    v.map_or_else(|| UNKNOWN.to_string(), show)
}

/// The note under a table with figures the tool does not know.
fn unknown_note(from_commands: &[String]) -> Option<String> {
    (!from_commands.is_empty()).then(|| {
        format!(
            "{UNKNOWN}: the predictions of {} come from a command's own model, which the tool neither trained nor ran; its size, training time and speed are not known here.",
            from_commands.join(", ")
        )
    })
}

fn fail(e: impl ToString) -> StageError {
    StageError::Failed(e.to_string())
}

impl crate::context::Params for CompareParams {}

/// The compared variants (of the evaluate stages `stages`, in order; seed
/// replicates of one variant count once) and the reference's place among
/// them; checked when the pipeline loads too, so that a wrong reference is
/// found before anything trains.
pub fn check_compared(p: &CompareParams, stages: &[&str]) -> Result<(Vec<String>, usize), String> {
    let mut variants: Vec<String> = Vec::new();
    for s in stages {
        let group = replicate_of(variant_of(s)).0;
        if !variants.iter().any(|v| v == group) {
            variants.push(group.to_string());
        }
    }
    if variants.len() < 2 {
        return Err(format!(
            "compare needs at least two evaluated variants, it has {}{}: add variants to the train stage, or `needs: [evaluate]`",
            variants.len(),
            variants.first().map(|s| format!(" ({s})")).unwrap_or_default()
        ));
    }
    let Some(reference) = p.reference.name() else {
        return Err("params.reference given by parameters was not resolved to a variant".into());
    };
    match variants.iter().position(|v| v == reference) {
        Some(i) => Ok((variants, i)),
        None => Err(format!(
            "reference variant `{reference}` is not among the compared variants ({}); set params.reference of the compare stage to one of them",
            variants.join(", ")
        )),
    }
}

/// better / worse / no detectable difference, at 5% after adjustment.
fn verdict(p_adjusted: f64, delta: f64) -> &'static str {
    if p_adjusted < 0.05 && delta > 0.0 {
        "better"
    } else if p_adjusted < 0.05 && delta < 0.0 {
        "worse"
    } else {
        "no detectable difference"
    }
}

/// One evaluated replicate, read from its evaluate stage's files.
struct Evaluated {
    stage: String,
    seed: Option<u64>,
    report: EvalReport,
    preds: Vec<(u8, u8)>,
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let p: CompareParams = crate::context::parse_params(ctx.params)?;
    let inputs: Vec<(&str, &PathBuf)> = ctx
        .inputs
        .iter()
        .filter(|i| i.kind == Kind::Evaluate)
        .filter_map(|i| i.paths.first().map(|p| (i.stage.as_str(), p)))
        .collect();
    let stages: Vec<&str> = inputs.iter().map(|(s, _)| *s).collect();
    let (variants, ref_idx) = check_compared(&p, &stages).map_err(StageError::Params)?;
    let ref_name = variants[ref_idx].clone();
    let members = read_members(&inputs, &variants)?;
    (ctx.progress)(Progress {
        step: crate::Step::Variants {
            count: variants.len(),
        },
        fraction: Some(0.3),
    });
    let reference = &members[ref_idx][0].preds;
    for e in members.iter().flatten() {
        if e.preds.len() != reference.len()
            || e.preds.iter().zip(reference).any(|(a, b)| a.0 != b.0)
        {
            return Err(fail(format!("`{}` and the reference `{}` were evaluated on different test sets; rerun their evaluate stages", e.stage, members[ref_idx][0].stage)));
        }
    }
    let replicated = members.iter().any(|m| m.len() > 1);
    let write = |name: &str, bytes: &[u8]| {
        let path = ctx.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| StageError::io("write", path, e))
    };
    let table = if replicated {
        let reps: Vec<Vec<seeds::Replicate>> = members
            .iter()
            .map(|m| m.iter().map(replicate).collect())
            .collect();
        let summaries = seeds::summarize(&variants, &reps, ref_idx);
        write(
            "comparison.json",
            &serde_json::to_vec_pretty(&summaries).map_err(fail)?,
        )?;
        write("table.csv", seeds::csv(&summaries).as_bytes())?;
        seeds::render(&summaries, &ref_name, reference.len())
    } else {
        let rows: Vec<Row> = members
            .iter()
            .zip(&variants)
            .map(|(m, v)| single_row(v, &m[0], &members[ref_idx][0]))
            .collect();
        write(
            "comparison.json",
            &serde_json::to_vec_pretty(&rows).map_err(fail)?,
        )?;
        write("table.csv", csv(&rows).as_bytes())?;
        // `seeds: [1]` replicates once: the advice is to list more seeds.
        let one_seed = members.iter().all(|m| m[0].seed.is_some());
        let mut t = render_table(&rows, &ref_name, reference.len(), one_seed);
        t.variants = single_summaries(&rows, &members, ref_idx);
        t
    };
    let mut table = table;
    let from_commands: Vec<String> = variants
        .iter()
        .zip(&members)
        .filter(|(_, m)| m.iter().any(|e| e.report.efficiency.parameters.is_none()))
        .map(|(v, _)| v.clone())
        .collect();
    table.notes.extend(unknown_note(&from_commands));
    // A grid: each axis value's main effect, and the first two axes together.
    let accuracies: Vec<Vec<f64>> = members
        .iter()
        .map(|m| m.iter().map(|e| e.report.metrics.accuracy).collect())
        .collect();
    table
        .sections
        .extend(grid::main_effects(&variants, &accuracies));
    if let Some((a, b, m)) = grid::pivot(&variants, &accuracies) {
        crate::plots::pivot(ctx.out_dir, (&a.key, &a.values), (&b.key, &b.values), &m)
            .map_err(fail)?;
    }
    write(
        TABLE_FILE,
        &serde_json::to_vec_pretty(&table).map_err(fail)?,
    )?;
    write("table.md", table.markdown().as_bytes())?;
    (ctx.progress)(Progress {
        step: if crate::plots::font_ready() {
            crate::Step::Charts
        } else {
            crate::Step::NoFont
        },
        fraction: Some(0.6),
    });
    // Charts of each variant: its seeds' mean metrics, and its curves as
    // the mean over its seeds with a band.
    let reports: Vec<EvalReport> = members.iter().map(|m| mean_report(m)).collect();
    let histories: Vec<Vec<Vec<crate::contract::EpochRecord>>> = members
        .iter()
        .map(|m| m.iter().map(|e| e.report.history.clone()).collect())
        .collect();
    crate::plots::comparison(ctx.out_dir, &variants, &reports, &histories).map_err(fail)?;
    if replicated {
        let forest = forest_rows(&table, &ref_name, ref_idx);
        crate::plots::forest(ctx.out_dir, &ref_name, &forest).map_err(fail)?;
    }
    group_charts(ctx.out_dir, &p, &variants, &reports, &histories)?;
    if let Some(info) = ctx.run {
        write(RUN_FILE, &serde_json::to_vec_pretty(info).map_err(fail)?)?;
    }
    let html = report_html(ctx.out_dir, &table, &inputs, &p.groups, ctx.run)?;
    write(REPORT_FILE, html.as_bytes())
}

/// Each compared variant's evaluations (its seeds'), read.
fn read_members(
    inputs: &[(&str, &PathBuf)],
    variants: &[String],
) -> Result<Vec<Vec<Evaluated>>, StageError> {
    let mut members: Vec<Vec<Evaluated>> = variants.iter().map(|_| Vec::new()).collect();
    for (stage, dir) in inputs {
        let (group, seed) = replicate_of(variant_of(stage));
        let path = dir.join(METRICS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StageError::corrupt(&path, e))?;
        let report: EvalReport =
            serde_json::from_slice(&bytes).map_err(|e| StageError::corrupt(&path, e))?;
        let pred_path = dir.join(PREDICTIONS_FILE);
        let preds = read_predictions(&pred_path).map_err(|e| StageError::corrupt(&pred_path, e))?;
        let g = variants.iter().position(|v| v == group).unwrap_or(0);
        members[g].push(Evaluated {
            stage: stage.to_string(),
            seed,
            report,
            preds,
        });
    }
    Ok(members)
}

/// Each variant's difference to the reference, its interval and its
/// per-seed differences, for the forest chart.
fn forest_rows(
    table: &crate::contract::Table,
    ref_name: &str,
    ref_idx: usize,
) -> Vec<crate::plots::ForestRow> {
    table
        .variants
        .iter()
        .filter(|s| s.variant != ref_name)
        .filter_map(|s| {
            Some(crate::plots::ForestRow {
                label: s.variant.clone(),
                mean: s.delta_vs_reference?,
                ci: s.delta_ci95.map(|c| (c[0], c[1])),
                points: s
                    .per_seed
                    .iter()
                    .filter_map(|r| {
                        let base = table.variants[ref_idx]
                            .per_seed
                            .iter()
                            .find(|b| b.seed == r.seed)?;
                        Some(r.accuracy - base.accuracy)
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The charts of each `groups:` entry, in `group-<name>/`.
fn group_charts(
    out_dir: &std::path::Path,
    p: &CompareParams,
    variants: &[String],
    reports: &[EvalReport],
    histories: &[Vec<Vec<crate::contract::EpochRecord>>],
) -> Result<(), StageError> {
    for (name, group) in &p.groups {
        let idx: Vec<usize> = group
            .iter()
            .map(|m| {
                variants.iter().position(|v| v == m).ok_or_else(|| {
                    StageError::Params(format!(
                        "group `{name}` names `{m}`, which is not a compared variant ({})",
                        variants.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let sub_v: Vec<String> = idx.iter().map(|&i| variants[i].clone()).collect();
        let sub_r: Vec<EvalReport> = idx.iter().map(|&i| reports[i].clone()).collect();
        let sub_h: Vec<Vec<Vec<crate::contract::EpochRecord>>> =
            idx.iter().map(|&i| histories[i].clone()).collect();
        let dir = out_dir.join(format!("group-{name}"));
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        crate::plots::comparison(&dir, &sub_v, &sub_r, &sub_h).map_err(fail)?;
    }
    Ok(())
}

fn replicate(e: &Evaluated) -> seeds::Replicate {
    seeds::Replicate {
        result: SeedResult {
            seed: e.seed,
            stage: e.stage.clone(),
            accuracy: e.report.metrics.accuracy,
            macro_f1: e.report.metrics.macro_avg.f1,
        },
        parameters: e.report.efficiency.parameters,
        model_size_bytes: e.report.efficiency.model_size_bytes,
        training_seconds: e.report.efficiency.training_seconds,
        inference_img_per_s: e.report.efficiency.inference_img_per_s,
    }
}

/// The first replicate's report with its metrics averaged over the seeds.
fn mean_report(m: &[Evaluated]) -> EvalReport {
    let mut r = m[0].report.clone();
    let n = m.len() as f64;
    r.metrics.accuracy = m.iter().map(|e| e.report.metrics.accuracy).sum::<f64>() / n;
    r.metrics.macro_avg.f1 = m.iter().map(|e| e.report.metrics.macro_avg.f1).sum::<f64>() / n;
    for (c, class) in r.metrics.per_class.iter_mut().enumerate() {
        class.f1 = m
            .iter()
            .map(|e| e.report.metrics.per_class.get(c).map_or(0.0, |x| x.f1))
            .sum::<f64>()
            / n;
    }
    r
}

/// Today's row of one trained model against the reference's.
fn single_row(v: &str, e: &Evaluated, reference: &Evaluated) -> Row {
    let pr = &e.preds;
    let correct = pr.iter().filter(|(y, p)| y == p).count();
    let (b, c) = reference
        .preds
        .iter()
        .zip(pr)
        .fold((0, 0), |(b, c), (r, x)| {
            let (rok, xok) = (r.0 == r.1, x.0 == x.1);
            (b + usize::from(rok && !xok), c + usize::from(!rok && xok))
        });
    let r = &e.report;
    Row {
        variant: v.to_string(),
        accuracy: r.metrics.accuracy,
        ci95: wilson(correct, pr.len(), 1.96),
        macro_f1: r.metrics.macro_avg.f1,
        delta_accuracy: r.metrics.accuracy - reference.report.metrics.accuracy,
        discordant: (b, c),
        mcnemar_p: mcnemar_exact(b, c),
        parameters: r.efficiency.parameters,
        model_size_bytes: r.efficiency.model_size_bytes,
        training_seconds: r.efficiency.training_seconds,
        inference_img_per_s: r.efficiency.inference_img_per_s,
    }
}

/// table.json's summaries when each variant trained once: Wilson intervals,
/// McNemar p-values, Holm over the table.
fn single_summaries(
    rows: &[Row],
    members: &[Vec<Evaluated>],
    reference: usize,
) -> Vec<VariantSummary> {
    let mut out: Vec<VariantSummary> = rows
        .iter()
        .zip(members)
        .enumerate()
        .map(|(i, (r, m))| {
            let is_ref = i == reference;
            VariantSummary {
                variant: r.variant.clone(),
                seeds: 1,
                per_seed: vec![replicate(&m[0]).result],
                accuracy_mean: r.accuracy,
                accuracy_sd: None,
                accuracy_ci95: [r.ci95.0, r.ci95.1],
                macro_f1_mean: r.macro_f1,
                macro_f1_ci95: None,
                delta_vs_reference: (!is_ref).then_some(r.delta_accuracy),
                delta_ci95: None,
                paired_seeds: usize::from(m[0].seed == members[reference][0].seed),
                test: (!is_ref).then(|| "McNemar exact".to_string()),
                p_value: (!is_ref).then_some(r.mcnemar_p),
                p_adjusted: None,
                verdict: String::new(),
                parameters: r.parameters,
                model_size_bytes: r.model_size_bytes,
                training_seconds: r.training_seconds,
                inference_img_per_s: r.inference_img_per_s,
            }
        })
        .collect();
    seeds::adjust(&mut out, reference, "untested");
    out
}

#[cfg(test)]
mod tests {
    use crate::contract::Table;
    use crate::html::base64;

    #[test]
    fn helpers() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        let t = Table {
            title: "T".into(),
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec!["1".into(), "2".into()]],
            notes: vec![],
            variants: vec![],
            sections: Vec::new(),
        };
        assert_eq!(t.markdown(), "**T**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
