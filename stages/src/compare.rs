//! The `compare` kind: one row per evaluated variant — accuracy with its
//! 95% interval, macro F1, the difference to a reference variant with
//! McNemar's exact test on the paired predictions, efficiency — as
//! Markdown, CSV and JSON, charts, and a self-contained HTML report.

use crate::contract::{
    read_predictions, variant_of, EvalReport, Table, METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE,
    TABLE_FILE,
};
use crate::format::group_digits;
use crate::metrics::{mcnemar_exact, wilson};
use crate::{Kind, Progress, RunContext, StageError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The variant every other one is compared with.
    #[serde(default = "default_reference")]
    pub reference: String,
    /// Named groups of variants whose validation curves get a chart of
    /// their own (e.g. a learning-rate study).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
}

fn default_reference() -> String {
    "main".into()
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
    pub parameters: usize,
    pub model_size_bytes: usize,
    pub training_seconds: f64,
    pub inference_img_per_s: f64,
}

fn fail(e: impl ToString) -> StageError {
    StageError::Failed(e.to_string())
}

impl crate::kind::Params for CompareParams {}

/// The compared variants (of the evaluate stages `stages`, in order) and
/// the reference's place among them; checked when the pipeline loads too,
/// so that a wrong reference is found before anything trains.
pub fn check_compared(p: &CompareParams, stages: &[&str]) -> Result<(Vec<String>, usize), String> {
    if stages.len() < 2 {
        return Err(format!(
            "compare needs at least two evaluated variants, it has {}{}: add variants to the train stage, or `needs: [evaluate]`",
            stages.len(),
            stages.first().map(|s| format!(" ({s})")).unwrap_or_default()
        ));
    }
    let variants: Vec<String> = stages.iter().map(|s| variant_of(s).to_string()).collect();
    match variants.iter().position(|v| *v == p.reference) {
        Some(i) => Ok((variants, i)),
        None => Err(format!(
            "reference variant `{}` is not among the compared variants ({}); set params.reference of the compare stage to one of them",
            p.reference,
            variants.join(", ")
        )),
    }
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let p: CompareParams = crate::kind::parse_params(ctx.params)?;
    let inputs: Vec<(&str, &PathBuf)> = ctx
        .inputs
        .iter()
        .filter(|i| i.kind == Kind::Evaluate)
        .filter_map(|i| i.paths.first().map(|p| (i.stage.as_str(), p)))
        .collect();
    let stages: Vec<&str> = inputs.iter().map(|(s, _)| *s).collect();
    let (variants, ref_idx) = check_compared(&p, &stages).map_err(StageError::Params)?;
    let mut reports = Vec::new();
    let mut preds = Vec::new();
    for (_, dir) in &inputs {
        let path = dir.join(METRICS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StageError::corrupt(&path, e))?;
        let r: EvalReport =
            serde_json::from_slice(&bytes).map_err(|e| StageError::corrupt(&path, e))?;
        reports.push(r);
        let pred_path = dir.join(PREDICTIONS_FILE);
        preds.push(read_predictions(&pred_path).map_err(|e| StageError::corrupt(&pred_path, e))?);
    }
    (ctx.progress)(Progress {
        message: format!("{} variants", variants.len()),
        fraction: Some(0.3),
    });
    let reference = &preds[ref_idx];
    let mut rows = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let pr = &preds[i];
        if pr.len() != reference.len() || pr.iter().zip(reference).any(|(a, b)| a.0 != b.0) {
            return Err(fail(format!("variants `{v}` and `{}` were evaluated on different test sets; rerun their evaluate stages", p.reference)));
        }
        let correct = pr.iter().filter(|(y, p)| y == p).count();
        let (b, c) = reference.iter().zip(pr).fold((0, 0), |(b, c), (r, x)| {
            let (rok, xok) = (r.0 == r.1, x.0 == x.1);
            (b + usize::from(rok && !xok), c + usize::from(!rok && xok))
        });
        let r = &reports[i];
        rows.push(Row {
            variant: v.clone(),
            accuracy: r.metrics.accuracy,
            ci95: wilson(correct, pr.len(), 1.96),
            macro_f1: r.metrics.macro_avg.f1,
            delta_accuracy: r.metrics.accuracy - reports[ref_idx].metrics.accuracy,
            discordant: (b, c),
            mcnemar_p: mcnemar_exact(b, c),
            parameters: r.efficiency.parameters,
            model_size_bytes: r.efficiency.model_size_bytes,
            training_seconds: r.efficiency.training_seconds,
            inference_img_per_s: r.efficiency.inference_img_per_s,
        });
    }
    let table = render_table(&rows, &p.reference, reference.len());
    let write = |name: &str, bytes: &[u8]| {
        let path = ctx.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| StageError::io("write", path, e))
    };
    write(
        TABLE_FILE,
        &serde_json::to_vec_pretty(&table).map_err(fail)?,
    )?;
    write(
        "comparison.json",
        &serde_json::to_vec_pretty(&rows).map_err(fail)?,
    )?;
    write("table.md", markdown(&table).as_bytes())?;
    write("table.csv", csv(&rows).as_bytes())?;
    (ctx.progress)(Progress {
        message: crate::plots::font_missing().unwrap_or_else(|| "charts".into()),
        fraction: Some(0.6),
    });
    crate::plots::comparison(ctx.out_dir, &variants, &reports).map_err(fail)?;
    for (name, members) in &p.groups {
        let idx: Vec<usize> = members
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
        let dir = ctx.out_dir.join(format!("group-{name}"));
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        crate::plots::comparison(&dir, &sub_v, &sub_r).map_err(fail)?;
    }
    let html = report_html(ctx.out_dir, &table, &variants, &inputs, &p.groups)?;
    write(REPORT_FILE, html.as_bytes())
}

fn render_table(rows: &[Row], reference: &str, n: usize) -> Table {
    let columns = [
        "variant",
        "accuracy [95% CI]",
        "macro F1",
        "Δ acc vs ref",
        "McNemar p",
        "params",
        "size",
        "train time",
        "infer img/s",
    ];
    let table_rows = rows
        .iter()
        .map(|r| {
            let is_ref = r.variant == reference;
            vec![
                if is_ref {
                    format!("{} (ref)", r.variant)
                } else {
                    r.variant.clone()
                },
                format!(
                    "{:.2}% [{:.2}, {:.2}]",
                    r.accuracy * 100.0,
                    r.ci95.0 * 100.0,
                    r.ci95.1 * 100.0
                ),
                format!("{:.4}", r.macro_f1),
                if is_ref {
                    "—".into()
                } else {
                    format!("{:+.2} pp", r.delta_accuracy * 100.0)
                },
                if is_ref {
                    "—".into()
                } else {
                    format_p(r.mcnemar_p)
                },
                group_digits(r.parameters),
                format!("{:.2} MB", r.model_size_bytes as f64 / 1e6),
                format_secs(r.training_seconds),
                format!("{:.0}", r.inference_img_per_s),
            ]
        })
        .collect();
    Table {
        title: format!("Fashion-MNIST test set ({} images), reference: {reference}", group_digits(n)),
        columns: columns.iter().map(|s| s.to_string()).collect(),
        rows: table_rows,
        notes: vec![
            "95% CI: Wilson score interval. McNemar p: exact two-sided test on the images where exactly one of the variant and the reference is right.".into(),
            "Model selection used the validation split only; the test set was seen once, here.".into(),
        ],
    }
}

fn format_p(p: f64) -> String {
    if p < 1e-300 {
        // Below what f64 can show: the difference is beyond any doubt.
        "< 1e-300".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn format_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// The table as Markdown.
pub fn markdown(t: &Table) -> String {
    let mut s = format!(
        "**{}**\n\n| {} |\n|{}\n",
        t.title,
        t.columns.join(" | "),
        "---|".repeat(t.columns.len())
    );
    for r in &t.rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    for n in &t.notes {
        let _ = write!(s, "\n{n}\n");
    }
    s
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from("variant,accuracy,ci95_low,ci95_high,macro_f1,delta_accuracy,only_reference_right,only_variant_right,mcnemar_p,parameters,model_size_bytes,training_seconds,inference_img_per_s\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{:.6e},{},{},{:.3},{:.1}",
            r.variant,
            r.accuracy,
            r.ci95.0,
            r.ci95.1,
            r.macro_f1,
            r.delta_accuracy,
            r.discordant.0,
            r.discordant.1,
            r.mcnemar_p,
            r.parameters,
            r.model_size_bytes,
            r.training_seconds,
            r.inference_img_per_s
        );
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An inline picture: PNG as a data URI when there is one, else the SVG.
fn picture(dir: &Path, name: &str) -> Option<String> {
    if let Ok(png) = std::fs::read(dir.join(format!("{name}.png"))) {
        return Some(format!(
            "<img alt=\"{name}\" src=\"data:image/png;base64,{}\">",
            base64(&png)
        ));
    }
    std::fs::read_to_string(dir.join(format!("{name}.svg")))
        .ok()
        .map(|svg| {
            // Drop the XML prolog so the SVG can sit inside HTML.
            svg.find("<svg")
                .map_or(svg.clone(), |i| svg[i..].to_string())
        })
}

fn report_html(
    out: &Path,
    t: &Table,
    variants: &[String],
    inputs: &[(&str, &PathBuf)],
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<String, StageError> {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>fmnist-pipe report</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img,svg{max-width:100%;height:auto}h2{margin-top:2em}.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}</style></head><body>");
    let _ = write!(
        h,
        "<h1>Ablation study report</h1><p>{}</p><table><tr>",
        escape(&t.title)
    );
    for c in &t.columns {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>");
    for r in &t.rows {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", escape(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    for n in &t.notes {
        let _ = write!(h, "<p><small>{}</small></p>", escape(n));
    }
    h.push_str("<h2>Comparison</h2>");
    for name in ["accuracy_f1", "per_class_f1", "validation_curves"] {
        h.push_str(&picture(out, name).unwrap_or_default());
    }
    for g in groups.keys() {
        let _ = write!(h, "<h2>{}: validation curves</h2>", escape(g));
        h.push_str(
            &picture(&out.join(format!("group-{g}")), "validation_curves").unwrap_or_default(),
        );
    }
    for (v, (_, dir)) in variants.iter().zip(inputs) {
        let _ = write!(h, "<h2 id=\"{0}\">{0}</h2><div class=\"grid\">", escape(v));
        for name in [
            "confusion",
            "roc",
            "loss",
            "accuracy",
            "samples",
            "misclassified",
        ] {
            if let Some(p) = picture(dir, name) {
                let _ = write!(h, "<div>{p}</div>");
            }
        }
        h.push_str("</div>");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(markdown(&t), "**T**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
