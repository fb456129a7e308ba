//! A search's decisions and trials; the comparison as it forms.

use crate::live::state::{RunState, StageLive, Standing};
use crate::live::trace;
use stages::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// A search's trials: how far each trained, its best validation
/// accuracy, and the early stopping's decisions as they were taken.
pub(super) fn search(h: &mut String, dir: &Path, state: &RunState) {
    if state.decisions.is_empty() {
        return;
    }
    h.push_str("<h2>Search</h2><table id=\"decisions\"><thead><tr><th>when</th><th>search</th><th>trial</th><th>decision</th><th>validation accuracy</th></tr></thead><tbody>");
    for d in &state.decisions {
        let what = match &d.trial {
            Some(_) => format!("promoted at epoch {}: goes on to epoch {}", d.rung, d.to),
            None => "every trial decided; the rest stopped where they are".into(),
        };
        let _ = write!(
            h,
            "<tr><td>+{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            trace::seconds(d.at - state.started),
            escape(&d.search),
            escape(d.trial.as_deref().unwrap_or("")),
            what,
            d.val_acc
                .map_or(String::new(), |a| format!("{:.2}%", 100.0 * a))
        );
    }
    h.push_str("</tbody></table>");
    let trials: Vec<&StageLive> = state.stages.iter().filter(|s| s.trial).collect();
    if trials.is_empty() {
        return;
    }
    h.push_str("<table id=\"trials\"><thead><tr><th>trial</th><th>state</th><th>epochs trained</th><th>best validation accuracy</th></tr></thead><tbody>");
    for s in trials {
        let lines: Vec<learn::train::EpochRecord> =
            crate::live::read_lines(&crate::live::stage_file(dir, &s.name));
        let best = lines.iter().map(|l| l.val_acc).fold(f64::NAN, f64::max);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.state.name(),
            lines.len(),
            if best.is_finite() {
                format!("{:.2}%", 100.0 * best)
            } else {
                String::new()
            }
        );
    }
    h.push_str("</tbody></table>");
}

/// The evaluations that have landed, by variant: the mean over seeds.
pub(super) fn comparison(h: &mut String, state: &RunState) {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in state.stages.iter().filter(|s| s.kind == "evaluate") {
        let (Some(acc), Some(g)) = (s.accuracy, &s.group) else {
            continue;
        };
        by.entry(g.clone()).or_default().push(acc);
    }
    if by.is_empty() {
        return;
    }
    let compared = state.stages.iter().any(|s| {
        s.kind == "compare"
            && matches!(
                s.state,
                Standing::Done | Standing::Cached | Standing::Restored | Standing::Pulled
            )
    });
    let _ = write!(
        h,
        "<h2>Comparison</h2><p class=\"meta\">{}</p><table id=\"comparison\"><thead><tr><th>variant</th><th>seeds</th><th>test accuracy (mean)</th><th>range over seeds</th></tr></thead><tbody>",
        if compared {
            "Every evaluation is in; the compare stage's report has the intervals and tests."
        } else {
            "Partial: the evaluations so far; the compare stage has not run yet."
        }
    );
    let mut rows: Vec<(String, Vec<f64>)> = by.into_iter().collect();
    rows.sort_by(|a, b| mean(&b.1).total_cmp(&mean(&a.1)));
    for (g, accs) in rows {
        let lo = accs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = accs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}%</td><td>{}</td></tr>",
            escape(&g),
            accs.len(),
            100.0 * mean(&accs),
            if accs.len() > 1 {
                format!("{:.2}–{:.2}%", 100.0 * lo, 100.0 * hi)
            } else {
                String::new()
            }
        );
    }
    h.push_str("</tbody></table>");
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}
