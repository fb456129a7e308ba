//! The timeline (a lane per slot) and what each stage used.

use crate::live::state::RunState;
use crate::live::trace;
use stages::html::escape;
use std::fmt::Write;

/// The timeline draws at most this many bars (the longest); the resource
/// table lists at most this many stages one by one.
const BARS: usize = 400;
const ROWS: usize = 60;

/// One lane per slot: a stage takes the first lane free when it starts.
pub fn lanes(entries: &[trace::Entry]) -> Vec<usize> {
    let mut ends: Vec<f64> = Vec::new();
    entries
        .iter()
        .map(|e| {
            let k = ends
                .iter()
                .position(|&end| end <= e.start_s + 1e-6)
                .unwrap_or(ends.len());
            if k == ends.len() {
                ends.push(0.0);
            }
            ends[k] = e.start_s + e.wall_s;
            k
        })
        .collect()
}

fn kind_colour(kind: &str) -> &'static str {
    match kind {
        "train" => "#1f77b4",
        "evaluate" => "#2ca02c",
        "cmd" => "#9467bd",
        "compare" | "confirm" | "search" => "#ff7f0e",
        "download" | "preprocess" => "#8c564b",
        _ => "#7f7f7f",
    }
}

/// The timeline (a lane per slot, a bar per stage, coloured by kind) and
/// what each stage used.
pub(super) fn timeline(h: &mut String, state: &RunState) {
    let tr = trace::of(state);
    if tr.stages.is_empty() {
        return;
    }
    let ran: Vec<&trace::Entry> = tr
        .stages
        .iter()
        .filter(|e| !matches!(e.outcome.as_str(), "restored" | "pulled"))
        .collect();
    let owned: Vec<trace::Entry> = ran.iter().map(|e| (*e).clone()).collect();
    let lane = lanes(&owned);
    let span = owned
        .iter()
        .map(|e| e.start_s + e.wall_s)
        .fold(1.0, f64::max);
    let n = lane.iter().max().map_or(0, |m| m + 1);
    let (w, l, row) = (900.0, 60.0, 18.0);
    let ht = 30.0 + row * n as f64;
    let _ = write!(
        h,
        "<h2>Timeline</h2><figure><svg viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"timeline\">"
    );
    for k in 0..n {
        let _ = write!(
            h,
            "<text x=\"4\" y=\"{:.1}\" class=\"tick\">slot {}</text>",
            14.0 + row * k as f64 + 12.0,
            k + 1
        );
    }
    let sx = |s: f64| l + s / span * (w - l - 10.0);
    // A study of thousands of stages: its longest, on the lanes all took.
    let mut drawn: Vec<usize> = (0..owned.len()).collect();
    if drawn.len() > BARS {
        drawn.sort_by(|&a, &b| owned[b].wall_s.total_cmp(&owned[a].wall_s));
        drawn.truncate(BARS);
    }
    for (e, &k) in drawn.iter().map(|&i| (&owned[i], &lane[i])) {
        let y = 14.0 + row * k as f64;
        let _ = write!(
            h,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"{}><title>{} ({}): {} from +{}</title></rect>",
            sx(e.start_s),
            (sx(e.start_s + e.wall_s) - sx(e.start_s)).max(1.0),
            row - 3.0,
            kind_colour(&e.kind),
            if e.outcome == "failed" || e.outcome == "interrupted" {
                " stroke=\"#000\" stroke-dasharray=\"3 2\""
            } else {
                ""
            },
            escape(&e.stage),
            escape(&e.kind),
            trace::seconds(e.wall_s),
            trace::seconds(e.start_s)
        );
    }
    let _ = write!(
        h,
        "<text x=\"{l}\" y=\"{:.1}\" class=\"tick\">0</text><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text></svg><figcaption>",
        ht - 2.0,
        w - 10.0,
        ht - 2.0,
        trace::seconds(span)
    );
    let mut kinds: Vec<&str> = owned.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        let _ = write!(
            h,
            "<span class=\"key\"><i style=\"background:{}\"></i>{}</span>",
            kind_colour(k),
            escape(k)
        );
    }
    h.push_str("<span class=\"key\">dashed: failed or cut short</span>");
    if owned.len() > BARS {
        let _ = write!(
            h,
            "<span class=\"key\">the {BARS} longest of {} stages are drawn</span>",
            owned.len()
        );
    }
    h.push_str("</figcaption></figure>");
    resources(h, &tr);
}

/// What each stage used; for a study of many stages, what each declared
/// stage's used in all, then the longest stages.
fn resources(h: &mut String, tr: &trace::Trace) {
    let mut rows: Vec<&trace::Entry> = tr.stages.iter().collect();
    if rows.len() > ROWS {
        by_declared(h, tr);
        rows.sort_by(|a, b| b.wall_s.total_cmp(&a.wall_s));
        rows.truncate(20);
        let _ = write!(
            h,
            "<p class=\"meta\">The 20 longest of {} stages:</p>",
            tr.stages.len()
        );
    }
    h.push_str("<table id=\"resources\"><thead><tr><th>stage</th><th>outcome</th><th>queued</th><th>wall</th><th>CPU</th><th>cores used</th><th>peak memory</th><th>threads</th><th>where</th><th>saved</th></tr></thead><tbody>");
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or(String::new(), f);
    for e in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.stage),
            escape(&e.outcome),
            opt(e.queue_s, &trace::seconds),
            trace::seconds(e.wall_s),
            opt(e.cpu_s, &trace::seconds),
            opt(
                e.cpu_s.filter(|_| e.wall_s > 0.0).map(|c| c / e.wall_s),
                &|c| format!("{c:.2}")
            ),
            opt(e.peak_rss_mb, &|m| format!("{m:.0} MB")),
            if e.cpus > 0 { e.cpus.to_string() } else { String::new() },
            escape(e.node.as_deref().unwrap_or(&e.executor)),
            opt(e.saved_s, &trace::seconds)
        );
    }
    h.push_str("</tbody></table>");
}

/// A line per declared stage: how many of its stages, their wall and CPU
/// time in all, and the highest peak.
fn by_declared(h: &mut String, tr: &trace::Trace) {
    let mut by: std::collections::BTreeMap<&str, (usize, f64, f64, f64)> = Default::default();
    for e in &tr.stages {
        let base = e.stage.split('@').next().unwrap_or(&e.stage);
        let a = by.entry(base).or_default();
        a.0 += 1;
        a.1 += e.wall_s;
        a.2 += e.cpu_s.unwrap_or(0.0);
        a.3 = a.3.max(e.peak_rss_mb.unwrap_or(0.0));
    }
    h.push_str("<table id=\"by-stage\"><thead><tr><th>declared stage</th><th>stages</th><th>wall in all</th><th>CPU in all</th><th>highest peak memory</th></tr></thead><tbody>");
    for (base, (n, wall, cpu, peak)) in by {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{n}</td><td>{}</td><td>{}</td><td>{peak:.0} MB</td></tr>",
            escape(base),
            trace::seconds(wall),
            trace::seconds(cpu)
        );
    }
    h.push_str("</tbody></table>");
}
