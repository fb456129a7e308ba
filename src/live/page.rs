//! The live page: one self-contained HTML file (no script, style or
//! picture from elsewhere) made from a run's state and its live files.
//! Opened from the file, it reloads itself every few seconds until the
//! run ends; served by `serve`, it follows the run's events instead.

use super::state::{RunState, StageLive, Standing};
use super::trace;
use stages::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// How the page is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the file: a meta refresh while the run runs.
    File,
    /// Through `serve`: server-sent events from this address.
    Served,
}

/// Stages listed one by one up to this many; above it, by declared stage.
const LISTED: usize = 60;
/// A chart draws at most this many points per series (evenly picked).
const POINTS: usize = 120;
/// Series drawn in colour (the best); the rest are grey.
const COLOURED: usize = 8;
const PALETTE: [&str; COLOURED] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

pub fn render(dir: &Path, state: &RunState, mode: Mode) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let ended = state.ended.as_ref();
    let status = ended.map_or("running", |e| e.how.as_str());
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">{}\
         <title>{} · run {}</title><style>{CSS}</style></head>\
         <body data-state=\"{status}\"><main>",
        if mode == Mode::File && ended.is_none() {
            "<meta http-equiv=\"refresh\" content=\"3\">"
        } else {
            ""
        },
        if ended.is_some() { "ended" } else { "live" },
        escape(&state.run)
    );
    header(&mut h, state);
    stage_table(&mut h, state);
    curves(&mut h, dir, state);
    search(&mut h, dir, state);
    comparison(&mut h, state);
    timeline(&mut h, state);
    changes(&mut h, dir);
    h.push_str("</main>");
    if mode == Mode::Served {
        h.push_str(SCRIPT);
    }
    h.push_str("</body></html>\n");
    h
}

fn header(h: &mut String, state: &RunState) {
    let now = state
        .ended
        .as_ref()
        .map_or_else(stages::measure::unix_now, |e| e.at);
    let counts: Vec<String> = state
        .counts()
        .iter()
        .map(|(st, n)| format!("{n} {}", st.name()))
        .collect();
    let _ = write!(
        h,
        "<h1>Run {}</h1><p class=\"meta\">{} · executor {} · {} cores · started {} UTC · {} elapsed</p>",
        escape(&state.run),
        escape(&state.pipeline),
        escape(&state.executor),
        state.cores,
        crate::state::time::rfc3339(state.started as u64).replace(['T', 'Z'], " "),
        trace::seconds(now - state.started)
    );
    match &state.ended {
        Some(e) => {
            let _ = write!(
                h,
                "<p id=\"ending\" class=\"ending {}\">The run {}: {}. This page no longer changes.</p>",
                escape(&e.how),
                escape(&e.how),
                escape(&e.summary)
            );
        }
        None => {
            let _ = write!(
                h,
                "<p id=\"ending\" class=\"ending running\">Running: {}.</p>",
                counts.join(", ")
            );
        }
    }
}

fn bar(fraction: Option<f64>, st: Standing) -> String {
    let f = match st {
        Standing::Done | Standing::Cached | Standing::Restored | Standing::Pulled => 1.0,
        _ => fraction.unwrap_or(0.0).clamp(0.0, 1.0),
    };
    format!(
        "<span class=\"bar\"><span style=\"width:{:.0}%\"></span></span>",
        100.0 * f
    )
}

fn stage_table(h: &mut String, state: &RunState) {
    h.push_str("<h2>Stages</h2>");
    if state.stages.len() > LISTED {
        return grouped(h, state);
    }
    h.push_str(
        "<table id=\"stages\"><thead><tr><th>stage</th><th>kind</th><th>state</th><th>progress</th>\
         <th>time left</th><th>why it ran, or what it does</th></tr></thead><tbody>",
    );
    for s in &state.stages {
        let _ = write!(
            h,
            "<tr id=\"stage-{}\" data-state=\"{}\"><td>{}</td><td>{}</td><td><span class=\"st {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.state.name(),
            escape(&s.name),
            escape(&s.kind),
            s.state.name().replace(' ', "-"),
            s.state.name(),
            bar(s.fraction, s.state),
            eta(s),
            escape(s.reason_or_doing())
        );
    }
    h.push_str("</tbody></table>");
}

impl StageLive {
    fn reason_or_doing(&self) -> &str {
        match self.state {
            Standing::Running => self.doing.as_deref().or(self.reason.as_deref()),
            _ => self.reason.as_deref(),
        }
        .unwrap_or("")
    }
}

fn eta(s: &StageLive) -> String {
    if s.state != Standing::Running {
        return String::new();
    }
    if let Some(e) = s.eta_s {
        return trace::seconds(e);
    }
    // From how far it is and how long it took so far.
    match (s.fraction, s.started) {
        (Some(f), Some(t)) if f > 0.02 => {
            trace::seconds((stages::measure::unix_now() - t) * (1.0 - f) / f)
        }
        _ => String::new(),
    }
}

/// A study of many stages: a line per declared stage, its stages counted
/// by state, and the running ones named.
fn grouped(h: &mut String, state: &RunState) {
    let mut groups: BTreeMap<(usize, &str), Vec<&StageLive>> = BTreeMap::new();
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &state.stages {
        let n = order.len();
        let k = *order.entry(&s.base).or_insert(n);
        groups.entry((k, &s.base)).or_default().push(s);
    }
    h.push_str(
        "<table id=\"stages\"><thead><tr><th>stage</th><th>kind</th><th>stages</th><th>progress</th>\
         <th>by state</th><th>running now</th></tr></thead><tbody>",
    );
    for ((_, base), members) in groups {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        let mut progress = 0.0;
        for s in &members {
            *by.entry(s.state.name()).or_default() += 1;
            progress += match s.state {
                Standing::Running | Standing::Waiting => s.fraction.unwrap_or(0.0),
                _ => 1.0,
            };
        }
        let running: Vec<String> = members
            .iter()
            .filter(|s| s.state == Standing::Running)
            .take(5)
            .map(|s| format!("{} {}", escape(&s.name), eta(s)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(base),
            escape(&members[0].kind),
            members.len(),
            bar(Some(progress / members.len() as f64), Standing::Running),
            by.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            running.join("<br>")
        );
    }
    h.push_str("</tbody></table>");
}

/// One series of a chart: its points (x, mean, low, high).
struct Series {
    name: String,
    points: Vec<(f64, f64, f64, f64)>,
    score: f64,
}

/// Per-epoch curves, a chart per quantity, a line per variant: the mean
/// over its seeds, with the range of the seeds as a band.
fn curves(h: &mut String, dir: &Path, state: &RunState) {
    // quantity -> group -> x -> values over seeds.
    type Acc = BTreeMap<String, BTreeMap<String, BTreeMap<i64, Vec<f64>>>>;
    let mut acc: Acc = BTreeMap::new();
    for s in &state.stages {
        if matches!(
            s.state,
            Standing::Waiting | Standing::Cached | Standing::NotStarted
        ) {
            continue;
        }
        let lines: Vec<serde_json::Map<String, serde_json::Value>> =
            super::read_lines(&super::stage_file(dir, &s.name));
        if lines.is_empty() {
            continue;
        }
        let group = s.group.clone().unwrap_or_else(|| s.name.clone());
        for (k, l) in lines.iter().enumerate() {
            let x = ["epoch", "step"]
                .iter()
                .find_map(|f| l.get(*f).and_then(|v| v.as_f64()))
                .unwrap_or(k as f64 + 1.0) as i64;
            for (key, v) in l {
                let Some(v) = v.as_f64().filter(|v| v.is_finite()) else {
                    continue;
                };
                if matches!(
                    key.as_str(),
                    "epoch" | "step" | "seconds" | "img_per_s" | "lr"
                ) {
                    continue;
                }
                acc.entry(key.clone())
                    .or_default()
                    .entry(group.clone())
                    .or_default()
                    .entry(x)
                    .or_default()
                    .push(v);
            }
        }
    }
    if acc.is_empty() {
        return;
    }
    h.push_str("<h2>Curves</h2><p class=\"meta\">The mean over seeds, the band spanning them; the best variants in colour.</p><div class=\"charts\">");
    let order = ["val_acc", "train_loss", "val_loss", "train_acc"];
    let mut keys: Vec<&String> = acc.keys().collect();
    keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
    for key in keys.into_iter().take(6) {
        let higher = key.contains("acc");
        let series: Vec<Series> = acc[key]
            .iter()
            .map(|(g, xs)| {
                let mut points: Vec<(f64, f64, f64, f64)> = xs
                    .iter()
                    .map(|(&x, vs)| {
                        let mean = vs.iter().sum::<f64>() / vs.len() as f64;
                        let lo = vs.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        (x as f64, mean, lo, hi)
                    })
                    .collect();
                if points.len() > POINTS {
                    let step = points.len() as f64 / POINTS as f64;
                    let last = *points.last().unwrap_or(&(0.0, 0.0, 0.0, 0.0));
                    points = (0..POINTS)
                        .map(|k| points[(k as f64 * step) as usize])
                        .collect();
                    points.push(last);
                }
                let best = points
                    .iter()
                    .map(|p| if higher { p.1 } else { -p.1 })
                    .fold(f64::NEG_INFINITY, f64::max);
                Series {
                    name: g.clone(),
                    points,
                    score: best,
                }
            })
            .collect();
        chart(h, key, series);
    }
    h.push_str("</div>");
}

fn chart(h: &mut String, key: &str, mut series: Vec<Series>) {
    series.sort_by(|a, b| b.score.total_cmp(&a.score));
    let (w, ht, l, r, t, b) = (460.0, 260.0, 52.0, 12.0, 24.0, 34.0);
    let all = series.iter().flat_map(|s| &s.points);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in all {
        x0 = x0.min(p.0);
        x1 = x1.max(p.0);
        y0 = y0.min(p.2);
        y1 = y1.max(p.3);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1e-9_f64.max(y0.abs() * 0.01);
    }
    let pad = (y1 - y0) * 0.05;
    // Nothing below 0 (a loss, an accuracy), nothing above 100% (an
    // accuracy) is drawn room for.
    let share = key.contains("acc") && y1 <= 1.0;
    let (y0, y1) = (
        if y0 >= 0.0 {
            (y0 - pad).max(0.0)
        } else {
            y0 - pad
        },
        if share { (y1 + pad).min(1.0) } else { y1 + pad },
    );
    let sx = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let sy = |y: f64| t + (y1 - y) / (y1 - y0) * (ht - t - b);
    let _ = write!(
        h,
        "<figure><svg viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"{} per epoch\"><text x=\"{l}\" y=\"15\" class=\"title\">{} per epoch</text>",
        escape(key),
        escape(key)
    );
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        let _ = write!(
            h,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            w - r,
            sy(y),
            sy(y),
            l - 4.0,
            sy(y) + 4.0,
            if share {
                format!("{}%", tick(100.0 * y, 100.0 * (y1 - y0)))
            } else {
                tick(y, y1 - y0)
            }
        );
    }
    let xt = ((x1 - x0) / 5.0).ceil().max(1.0);
    let mut x = x0.ceil();
    while x <= x1 + 1e-9 {
        let _ = write!(
            h,
            "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            sx(x),
            ht - b + 14.0,
            x as i64
        );
        x += xt;
    }
    let _ = write!(
        h,
        "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">epoch (a command: its step)</text>",
        (l + w - r) / 2.0,
        ht - 4.0
    );
    // Grey first, so the coloured lines lie on top.
    for (k, s) in series.iter().enumerate().rev() {
        let colour = PALETTE.get(k).copied().unwrap_or("#bbbbbb");
        if s.points.iter().any(|p| p.3 > p.2) && k < COLOURED {
            let upper: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.3)))
                .collect();
            let lower: Vec<String> = s
                .points
                .iter()
                .rev()
                .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.2)))
                .collect();
            let _ = write!(
                h,
                "<polygon points=\"{} {}\" fill=\"{colour}\" opacity=\"0.15\"/>",
                upper.join(" "),
                lower.join(" ")
            );
        }
        let line: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        let _ = write!(
            h,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{}\"><title>{}</title></polyline>",
            line.join(" "),
            if k < COLOURED { 2 } else { 1 },
            escape(&s.name)
        );
        if s.points.len() == 1 {
            let p = s.points[0];
            let _ = write!(
                h,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                sx(p.0),
                sy(p.1)
            );
        }
    }
    h.push_str("</svg><figcaption>");
    for (k, s) in series.iter().enumerate().take(COLOURED) {
        let _ = write!(
            h,
            "<span class=\"key\"><i style=\"background:{}\"></i>{}</span>",
            PALETTE[k],
            escape(&s.name)
        );
    }
    if series.len() > COLOURED {
        let _ = write!(
            h,
            "<span class=\"key\"><i style=\"background:#bbbbbb\"></i>{} others</span>",
            series.len() - COLOURED
        );
    }
    h.push_str("</figcaption></figure>");
}

/// A tick's label with as many decimals as the range needs.
fn tick(v: f64, range: f64) -> String {
    let decimals = if range >= 50.0 {
        0
    } else if range >= 5.0 {
        1
    } else if range >= 0.5 {
        2
    } else if range >= 0.05 {
        3
    } else {
        4
    };
    format!("{v:.decimals$}")
}

/// A search's trials: how far each trained, its best validation
/// accuracy, and the early stopping's decisions as they were taken.
fn search(h: &mut String, dir: &Path, state: &RunState) {
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
    let trials: Vec<&StageLive> = state
        .stages
        .iter()
        .filter(|s| {
            state
                .decisions
                .iter()
                .any(|d| d.trial.as_ref() == Some(&s.name))
                || s.name.contains("trial")
        })
        .collect();
    if trials.is_empty() {
        return;
    }
    h.push_str("<table id=\"trials\"><thead><tr><th>trial</th><th>state</th><th>epochs trained</th><th>best validation accuracy</th></tr></thead><tbody>");
    for s in trials {
        let lines: Vec<learn::train::EpochRecord> =
            super::read_lines(&super::stage_file(dir, &s.name));
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
fn comparison(h: &mut String, state: &RunState) {
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
fn timeline(h: &mut String, state: &RunState) {
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
    for (e, &k) in owned.iter().zip(&lane) {
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
    h.push_str("<span class=\"key\">dashed: failed or cut short</span></figcaption></figure>");
    resources(h, &tr);
}

fn resources(h: &mut String, tr: &trace::Trace) {
    h.push_str("<table id=\"resources\"><thead><tr><th>stage</th><th>outcome</th><th>queued</th><th>wall</th><th>CPU</th><th>cores used</th><th>peak memory</th><th>threads</th><th>where</th><th>saved</th></tr></thead><tbody>");
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or(String::new(), f);
    for e in &tr.stages {
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

/// The last changes, newest first.
fn changes(h: &mut String, dir: &Path) {
    let all: Vec<super::state::Change> = super::read_lines(&dir.join("events.jsonl"));
    if all.is_empty() {
        return;
    }
    h.push_str("<h2>Latest changes</h2><ul id=\"changes\">");
    for c in all.iter().rev().take(15) {
        let _ = write!(
            h,
            "<li>{} {}{}</li>",
            crate::state::time::rfc3339(c.at as u64)
                .get(11..19)
                .unwrap_or(""),
            c.stage
                .as_ref()
                .map_or(String::new(), |s| format!("<b>{}</b>: ", escape(s))),
            escape(&c.what)
        );
    }
    h.push_str("</ul>");
}

const CSS: &str = "body{font:14px system-ui,sans-serif;color:#222;margin:0;background:#fafafa}\
main{max-width:1100px;margin:auto;padding:12px 20px}h1{font-size:20px;margin:8px 0}\
h2{font-size:16px;margin:22px 0 8px}.meta{color:#666;margin:4px 0}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}\
th{background:#f0f0f0;font-weight:600}.bar{display:inline-block;width:90px;height:9px;background:#eee;border-radius:3px;overflow:hidden}\
.bar span{display:block;height:100%;background:#4c8bd6}.st{padding:1px 6px;border-radius:8px;font-size:12px;background:#eee}\
.st.running{background:#cfe3ff}.st.done{background:#d4f4d4}.st.cached,.st.restored,.st.pulled{background:#ececec;color:#555}\
.st.failed{background:#ffd4d4}.st.interrupted,.st.not-started,.st.skipped{background:#fff0c2}\
.ending{padding:8px 12px;border-radius:4px;background:#eef4ff}.ending.finished{background:#e6f6e6}.ending.failed,.ending.interrupted{background:#ffecec}\
.charts{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;background:#fff;padding:6px}\
svg .grid{stroke:#eee}svg .tick{font-size:11px;fill:#555}svg .title{font-size:13px;font-weight:600}\
.key{display:inline-block;margin-right:10px;font-size:12px}.key i{display:inline-block;width:10px;height:10px;margin-right:4px}\
#changes{font-size:13px;color:#444}";

/// Served: the page follows the run's events, fetching itself again after
/// each (no reload), and keeps what it saw in its list of changes.
const SCRIPT: &str = r#"<script>
(function () {
  if (document.body.dataset.state !== "running" || !window.EventSource) return;
  var es = new EventSource("events");
  var seen = [];
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch("page").then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      document.querySelector("main").replaceWith(doc.querySelector("main"));
      document.body.dataset.state = doc.body.dataset.state;
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      var list = document.getElementById("seen");
      if (list) list.textContent = seen.join("\n");
      busy = false;
      if (again) { again = false; refresh(); }
    }, function () { busy = false; });
  }
  es.addEventListener("change", function (e) {
    var c = JSON.parse(e.data);
    seen.push((c.stage ? c.stage + ": " : "") + c.what);
    refresh();
  });
  es.addEventListener("end", function (e) {
    var c = JSON.parse(e.data);
    seen.push(c.what);
    es.close();
    refresh();
  });
})();
</script><pre id="seen" hidden></pre>"#;
