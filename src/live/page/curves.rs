//! Per-epoch curves: a chart per quantity, a line per variant.

use crate::live::state::{RunState, Standing};
use stages::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// A chart draws at most this many points per series (evenly picked).
const POINTS: usize = 120;
/// Series drawn in colour (the best); the next are grey, up to `DRAWN`.
const COLOURED: usize = 8;
const DRAWN: usize = 48;
const PALETTE: [&str; COLOURED] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// One series of a chart: its points (x, mean, low, high).
struct Series {
    name: String,
    points: Vec<(f64, f64, f64, f64)>,
    score: f64,
}

/// Per-epoch curves, a chart per quantity, a line per variant: the mean
/// over its seeds, with the range of the seeds as a band.
pub(super) fn curves(h: &mut String, dir: &Path, state: &RunState) {
    // quantity -> group -> x -> values over seeds.
    type Acc = BTreeMap<String, BTreeMap<String, BTreeMap<i64, Vec<f64>>>>;
    let mut acc: Acc = BTreeMap::new();
    // Only the stages that have a file are read: one listing, not a
    // lookup per stage.
    let have: std::collections::HashSet<std::ffi::OsString> = std::fs::read_dir(dir.join("stages"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    for s in &state.stages {
        if matches!(
            s.state,
            Standing::Waiting | Standing::Cached | Standing::NotStarted
        ) {
            continue;
        }
        let file = crate::live::stage_file(dir, &s.name);
        if !file.file_name().is_some_and(|n| have.contains(n)) {
            continue;
        }
        let lines: Vec<serde_json::Map<String, serde_json::Value>> = crate::live::read_lines(&file);
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

/// A chart's size, margins and ranges.
struct Frame {
    w: f64,
    ht: f64,
    l: f64,
    r: f64,
    t: f64,
    b: f64,
    x: (f64, f64),
    y: (f64, f64),
    /// An accuracy: drawn in percent, never above 100%.
    share: bool,
}

impl Frame {
    fn new(key: &str, series: &[Series]) -> Frame {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in series.iter().flat_map(|s| &s.points) {
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
        let low = if y0 >= 0.0 {
            (y0 - pad).max(0.0)
        } else {
            y0 - pad
        };
        let high = if share { (y1 + pad).min(1.0) } else { y1 + pad };
        Frame {
            w: 460.0,
            ht: 260.0,
            l: 52.0,
            r: 12.0,
            t: 24.0,
            b: 34.0,
            x: (x0, x1),
            y: (low, high),
            share,
        }
    }

    fn sx(&self, x: f64) -> f64 {
        self.l + (x - self.x.0) / (self.x.1 - self.x.0) * (self.w - self.l - self.r)
    }

    fn sy(&self, y: f64) -> f64 {
        self.t + (self.y.1 - y) / (self.y.1 - self.y.0) * (self.ht - self.t - self.b)
    }

    fn label(&self, y: f64) -> String {
        let range = self.y.1 - self.y.0;
        if self.share {
            format!("{}%", tick(100.0 * y, 100.0 * range))
        } else {
            tick(y, range)
        }
    }

    /// `x,y` of each point, at the mean or at the band's edge.
    fn points(&self, s: &Series, at: impl Fn(&(f64, f64, f64, f64)) -> f64, back: bool) -> String {
        let mut pts: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", self.sx(p.0), self.sy(at(p))))
            .collect();
        if back {
            pts.reverse();
        }
        pts.join(" ")
    }
}

fn chart(h: &mut String, key: &str, mut series: Vec<Series>) {
    series.sort_by(|a, b| b.score.total_cmp(&a.score));
    let all = series.len();
    series.truncate(DRAWN);
    let f = Frame::new(key, &series);
    axes(h, key, &f);
    // Grey first, so the coloured lines lie on top.
    for (k, s) in series.iter().enumerate().rev() {
        let colour = PALETTE.get(k).copied().unwrap_or("#bbbbbb");
        if s.points.iter().any(|p| p.3 > p.2) && k < COLOURED {
            let _ = write!(
                h,
                "<polygon points=\"{} {}\" fill=\"{colour}\" opacity=\"0.15\"/>",
                f.points(s, |p| p.3, false),
                f.points(s, |p| p.2, true)
            );
        }
        let _ = write!(
            h,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{}\"><title>{}</title></polyline>",
            f.points(s, |p| p.1, false),
            if k < COLOURED { 2 } else { 1 },
            escape(&s.name)
        );
        if let [p] = s.points[..] {
            let _ = write!(
                h,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                f.sx(p.0),
                f.sy(p.1)
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
    if all > DRAWN {
        let _ = write!(
            h,
            "<span class=\"key\">the {DRAWN} best of {all} are drawn</span>"
        );
    }
    h.push_str("</figcaption></figure>");
}

/// The chart's frame: its title, grid, ticks and the x axis's name.
fn axes(h: &mut String, key: &str, f: &Frame) {
    let (w, ht, l, r, b) = (f.w, f.ht, f.l, f.r, f.b);
    let _ = write!(
        h,
        "<figure><svg viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"{} per epoch\"><text x=\"{l}\" y=\"15\" class=\"title\">{} per epoch</text>",
        escape(key),
        escape(key)
    );
    for k in 0..=4 {
        let y = f.y.0 + (f.y.1 - f.y.0) * k as f64 / 4.0;
        let _ = write!(
            h,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            w - r,
            f.sy(y),
            f.sy(y),
            l - 4.0,
            f.sy(y) + 4.0,
            f.label(y)
        );
    }
    let step = ((f.x.1 - f.x.0) / 5.0).ceil().max(1.0);
    let mut x = f.x.0.ceil();
    while x <= f.x.1 + 1e-9 {
        let _ = write!(
            h,
            "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            f.sx(x),
            ht - b + 14.0,
            x as i64
        );
        x += step;
    }
    let _ = write!(
        h,
        "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">epoch (a command: its step)</text>",
        (l + w - r) / 2.0,
        ht - 4.0
    );
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
