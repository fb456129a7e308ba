//! What a comparison writes for people: the terminal's and Markdown's
//! table, CSV, and the self-contained HTML report with its run panel.

use super::*;
use crate::contract::{variant_of, RunInfo, Table};
use crate::format::group_digits;
use crate::html::{escape, picture, table_html};
use crate::StageError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub(super) fn render_table(rows: &[Row], reference: &str, n: usize, one_seed: bool) -> Table {
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
                row_label(&r.variant, is_ref),
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
                known(r.parameters, group_digits),
                known(r.model_size_bytes, |b| format!("{:.2} MB", b as f64 / 1e6)),
                known(r.training_seconds, format_secs),
                known(r.inference_img_per_s, |x| group_digits(x.round() as usize)),
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
            if one_seed {
                "Seeds were not replicated: `seeds` lists one seed, so each variant trained once and these tests compare two trained models on this test set, not two configurations; another seed may change the result. List more seeds in `seeds:` (e.g. `seeds: [1, 2, 3]`) to compare configurations.".into()
            } else {
                "Seeds were not replicated: each variant trained once, so these tests compare two trained models on this test set, not two configurations; another seed may change the result. Add `seeds:` to the train stage to compare configurations.".into()
            },
        ],
        variants: Vec::new(),
        sections: Vec::new(),
    }
}

/// A variant's name in the first column; the reference says so.
pub(super) fn row_label(variant: &str, is_ref: bool) -> String {
    if is_ref {
        format!("{variant} (ref)")
    } else {
        variant.to_string()
    }
}

pub(super) fn format_p(p: f64) -> String {
    if p < 1e-300 {
        // Below what f64 can show: the difference is beyond any doubt.
        "< 1e-300".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

pub(super) fn format_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

pub(super) fn csv(rows: &[Row]) -> String {
    let mut s = String::from("variant,accuracy,ci95_low,ci95_high,macro_f1,delta_accuracy,only_reference_right,only_variant_right,mcnemar_p,parameters,model_size_bytes,training_seconds,inference_img_per_s\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{:.6e},{},{},{},{}",
            r.variant,
            r.accuracy,
            r.ci95.0,
            r.ci95.1,
            r.macro_f1,
            r.delta_accuracy,
            r.discordant.0,
            r.discordant.1,
            r.mcnemar_p,
            r.parameters.map_or(String::new(), |n| n.to_string()),
            r.model_size_bytes.map_or(String::new(), |n| n.to_string()),
            r.training_seconds
                .map_or(String::new(), |t| format!("{t:.3}")),
            r.inference_img_per_s
                .map_or(String::new(), |x| format!("{x:.1}"))
        );
    }
    s
}

/// Click a column's header to sort the table by it (again: the other way).
/// Cells are compared by the first number in them when both have one
/// (`89.94% [..]`, `+2.71 pp`, `4.0e-22`, `1,701,578`), else (and the
/// variant names) as text;
/// `—` sorts last.
pub(super) const SORT_SCRIPT: &str = r#"<script>
(function () {
  var table = document.getElementById("comparison");
  var body = table.tBodies[0];
  function key(text) {
    var m = text.replace(/,/g, "").match(/[-+]?\d*\.?\d+(e[-+]?\d+)?/i);
    return m ? parseFloat(m[0]) : null;
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
    th.style.cursor = "pointer";
    th.addEventListener("click", function () {
      var up = th.getAttribute("data-order") !== "up";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) { o.removeAttribute("data-order"); });
      th.setAttribute("data-order", up ? "up" : "down");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        if (x === "—" || y === "—") { return (x === "—") - (y === "—"); }
        var kx = key(x), ky = key(y);
        var c = col > 0 && kx !== null && ky !== null ? kx - ky : x.localeCompare(y);
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
</script>"#;

/// What each compared variant changes from the reference's parameters.
pub(super) fn variant_changes_html(t: &Table, run: &RunInfo) -> String {
    let Some(reference) = t.variants.iter().find(|v| v.delta_vs_reference.is_none()) else {
        return String::new();
    };
    let Some(base) = run.variant_params.get(&reference.variant) else {
        return String::new();
    };
    let mut items = String::new();
    for v in t.variants.iter().filter(|v| v.variant != reference.variant) {
        let Some(mine) = run.variant_params.get(&v.variant) else {
            continue;
        };
        let text = crate::contract::variant_change(base, mine);
        let _ = write!(
            items,
            "<li><b>{}</b>: {}</li>",
            escape(&v.variant),
            escape(&text)
        );
    }
    if items.is_empty() {
        return String::new();
    }
    format!(
        "<h2>What each variant changes from {}</h2><ul>{items}</ul>",
        escape(&reference.variant)
    )
}

/// The run that made the report: when, what code, where, which pipeline.
pub(super) fn run_panel(run: &RunInfo) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(run.started_unix, |d| d.as_secs());
    let minutes = now.saturating_sub(run.started_unix) as f64 / 60.0;
    let commit = match (&run.git_commit, run.git_dirty) {
        (Some(c), Some(true)) => format!("{c} (with uncommitted changes)"),
        (Some(c), _) => c.clone(),
        (None, _) => "not in a git repository".into(),
    };
    let overrides = if run.overrides.is_empty() {
        String::new()
    } else {
        format!(", with -S {}", run.overrides.join(" -S "))
    };
    let rows = [
        (
            "run started",
            format!(
                "{} UTC",
                run.started.replace('T', " ").trim_end_matches('Z')
            ),
        ),
        ("report written", format!("{minutes:.1} min into the run")),
        ("git commit", commit),
        ("fmnist-pipe", run.tool_version.clone()),
        (
            "machine",
            format!(
                "{}, {} cores; {} parallel jobs ({})",
                run.cpu, run.cores, run.jobs, run.executor
            ),
        ),
        ("pipeline", format!("{}{overrides}", run.pipeline_file)),
    ];
    let mut h = String::from("<h2>What ran</h2><table class=\"run\">");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    let _ = write!(
        h,
        "</table><details><summary>{} as run</summary><pre>{}</pre></details>",
        escape(&run.pipeline_file),
        escape(&run.pipeline_text)
    );
    h
}

pub(super) fn report_html(
    out: &Path,
    t: &Table,
    inputs: &[(&str, &PathBuf)],
    groups: &BTreeMap<String, Vec<String>>,
    run: Option<&RunInfo>,
) -> Result<String, StageError> {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>fmnist-pipe report</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img,svg{max-width:100%;height:auto}h2{margin-top:2em}.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}table.run th,table.run td{text-align:left}pre{background:#f6f6f6;padding:8px;overflow:auto}</style></head><body>");
    let _ = write!(
        h,
        "<h1>Ablation study report</h1><p>{}</p>",
        escape(&t.title)
    );
    h.push_str(&table_html(
        t,
        " id=\"comparison\"",
        " title=\"sort by this column\"",
        SORT_SCRIPT,
    ));
    if let Some(run) = run {
        h.push_str(&variant_changes_html(t, run));
        h.push_str(&run_panel(run));
    }
    for section in &t.sections {
        let _ = write!(
            h,
            "<h2>{}</h2>{}",
            escape(&section.title),
            table_html(section, "", "", "")
        );
    }
    h.push_str("<h2>Comparison</h2>");
    for name in [
        "forest",
        "pivot",
        "accuracy_f1",
        "per_class_f1",
        "validation_curves",
    ] {
        h.push_str(&picture(out, name).unwrap_or_default());
    }
    for g in groups.keys() {
        let _ = write!(h, "<h2>{}: validation curves</h2>", escape(g));
        h.push_str(
            &picture(&out.join(format!("group-{g}")), "validation_curves").unwrap_or_default(),
        );
    }
    for (stage, dir) in inputs {
        let v = variant_of(stage);
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
