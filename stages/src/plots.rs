//! Pictures, each as SVG and PNG: an evaluation's confusion matrix, ROC
//! curves, training curves and image grids; a comparison's charts.
//!
//! Text needs a TrueType font: DejaVu Sans (Debian's fonts-dejavu-core) or
//! the file named by FMNIST_PIPE_FONT. Without one, no pictures are drawn
//! ([`font_ready`] is false) and the kinds say so ([`crate::Step::NoFont`]).

use crate::contract::{EpochRecord, EvalReport, CLASS_NAMES};
use crate::metrics::argmax;
use learn::data::dataset::{Dataset, Split};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &str = "sans-serif";

/// Registers a font once; false when none is found.
pub fn font_ready() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let candidates = [
            std::env::var("FMNIST_PIPE_FONT").unwrap_or_default(),
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_string(),
        ];
        for c in candidates.iter().filter(|c| !c.is_empty()) {
            if let Ok(bytes) = std::fs::read(c) {
                // Fonts live for the whole process; leaking one is intended.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

type DrawResult = Result<(), String>;

/// Draws `f` to `<name>.svg` and `<name>.png` in `dir`.
macro_rules! both {
    ($dir:expr, $name:expr, $size:expr, $f:expr) => {{
        let svg = $dir.join(format!("{}.svg", $name));
        $f(SVGBackend::new(&svg, $size).into_drawing_area())
            .map_err(|e| format!("{}: {e}", svg.display()))?;
        {
            let png = $dir.join(format!("{}.png", $name));
            $f(BitMapBackend::new(&png, $size).into_drawing_area())
                .map_err(|e| format!("{}: {e}", png.display()))?;
        }
    }};
}

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("{x:?}")
}

pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// A heatmap of `m` (rows × cols), darker for larger values, annotated.
fn heatmap<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    m: &[Vec<f64>],
    rows: &[String],
    cols: &[String],
    fmt: &dyn Fn(f64) -> String,
    from_zero: bool,
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let (r, c) = (m.len() as i32, m.first().map_or(0, Vec::len) as i32);
    let max = m
        .iter()
        .flatten()
        .copied()
        .fold(f64::MIN, f64::max)
        .max(1e-12);
    let min = m.iter().flatten().copied().fold(f64::MAX, f64::min);
    // Counts and scores shade from zero; close values (a pivot of
    // accuracies) over their own range.
    let min = if from_zero {
        min.min(0.0)
    } else {
        min.min(max - 1e-9)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(10)
        .x_label_area_size(90)
        .y_label_area_size(110)
        .build_cartesian_2d(0..c, 0..r)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|_| String::new())
        .draw()
        .map_err(e)?;
    // Labels centred on their rows and columns.
    let label = (FONT, 12).into_font();
    for (j, name) in cols.iter().enumerate() {
        let (x0, _) = chart.backend_coord(&(j as i32, 0));
        let (x1, y) = chart.backend_coord(&(j as i32 + 1, 0));
        let style = label.clone().transform(FontTransform::Rotate90);
        root.draw(&Text::new(name.clone(), ((x0 + x1) / 2 + 6, y + 6), style))
            .map_err(e)?;
    }
    for (i, name) in rows.iter().enumerate() {
        let y = r - 1 - i as i32;
        let (x, y0) = chart.backend_coord(&(0, y + 1));
        let (_, y1) = chart.backend_coord(&(0, y));
        let width = (name.chars().count() as i32) * 7;
        root.draw(&Text::new(
            name.clone(),
            (x - width - 8, (y0 + y1) / 2 - 6),
            label.clone(),
        ))
        .map_err(e)?;
    }
    for (i, row) in m.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let t = ((v - min) / (max - min)).clamp(0.0, 1.0);
            let shade = RGBColor(
                (247.0 - 239.0 * t) as u8,
                (251.0 - 203.0 * t) as u8,
                (255.0 - 148.0 * t) as u8,
            );
            let y = r - 1 - i as i32;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(j as i32, y), (j as i32 + 1, y + 1)],
                    shade.filled(),
                )))
                .map_err(e)?;
            let color = if t > 0.55 { WHITE } else { BLACK };
            let (px, py) = chart.backend_coord(&(j as i32, y + 1));
            let (qx, qy) = chart.backend_coord(&(j as i32 + 1, y));
            root.draw(&Text::new(
                fmt(v),
                ((px + qx) / 2 - 10, (py + qy) / 2 - 6),
                (FONT, 12).into_font().color(&color),
            ))
            .map_err(e)?;
        }
    }
    root.present().map_err(e)
}

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    dashed: bool,
    /// A shaded band around the line: (x, low, high) per point.
    band: Vec<(f64, f64, f64)>,
}

fn lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x: (&str, f64, f64),
    y: (&str, f64, f64),
    series: &[Series],
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x.1..x.2, y.1..y.2)
        .map_err(e)?;
    // Whole epochs only on an epoch axis.
    let epochs = x.0 == "epoch";
    let ticks = if epochs { (x.2 - x.1) as usize + 1 } else { 11 };
    let fmt = |v: &f64| {
        if epochs {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    chart
        .configure_mesh()
        .x_labels(ticks)
        .x_label_formatter(&fmt)
        .x_desc(x.0)
        .y_desc(y.0)
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    // Bands first, under every line.
    for s in series.iter().filter(|s| s.band.len() >= 2) {
        let outline: Vec<(f64, f64)> = s
            .band
            .iter()
            .map(|&(x, _, hi)| (x, hi))
            .chain(s.band.iter().rev().map(|&(x, lo, _)| (x, lo)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                s.color.mix(0.18).filled(),
            )))
            .map_err(e)?;
    }
    for s in series {
        let color = s.color;
        let style = ShapeStyle::from(&color).stroke_width(2);
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))
                .map_err(e)?
        } else {
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(e)?
        }
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        // A line needs two points: mark each one, so that a one-epoch
        // history still shows.
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

/// Grouped bars: one group per label, one bar per series.
fn bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    series: &[(&str, Vec<f64>)],
    y: (f64, f64),
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let n = labels.len();
    let k = series.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..n as f64, y.0..y.1)
        .map_err(e)?;
    let l = labels.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                l.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    let w = 0.8 / k as f64;
    for (s, (name, vals)) in series.iter().enumerate() {
        let color = palette(s);
        chart
            .draw_series(vals.iter().enumerate().map(|(i, &v)| {
                let x0 = i as f64 + 0.1 + s as f64 * w;
                Rectangle::new([(x0, y.0), (x0 + w * 0.95, v)], color.filled())
            }))
            .map_err(e)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        for (i, &v) in vals.iter().enumerate() {
            let x0 = i as f64 + 0.1 + s as f64 * w;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v:.3}"),
                    (x0, v),
                    (FONT, 11),
                )))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

/// A grid of images with a caption each, green when right, red when wrong.
fn grid<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    data: &Dataset,
    split: &Split,
    items: &[(usize, usize)],
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, (FONT, 22)).map_err(e)?;
    let cols = 6;
    let rows = items.len().div_ceil(cols).max(1);
    let cells = root.split_evenly((rows, cols));
    let n = data.pixels_per_image();
    for (cell, &(i, pred)) in cells.iter().zip(items) {
        let label = split.labels[i] as usize;
        let color = if pred == label {
            RGBColor(0, 140, 0)
        } else {
            RGBColor(200, 0, 0)
        };
        let (w, h) = cell.dim_in_pixel();
        let scale = ((w.min(h.saturating_sub(30))) as usize / data.cols.max(1)).max(1) as i32;
        let px = &split.pixels[i * n..(i + 1) * n];
        let x0 = (w as i32 - scale * data.cols as i32) / 2;
        for y in 0..data.rows {
            for x in 0..data.cols {
                let v = px[y * data.cols + x];
                if v < 16 {
                    continue; // the white background is already there
                }
                let g = 255 - v;
                let (ax, ay) = (x0 + x as i32 * scale, y as i32 * scale);
                cell.draw(&Rectangle::new(
                    [(ax, ay), (ax + scale, ay + scale)],
                    RGBColor(g, g, g).filled(),
                ))
                .map_err(e)?;
            }
        }
        let name = |c: usize| CLASS_NAMES.get(c).copied().unwrap_or("?");
        let caption = format!("{} / {}", name(label), name(pred));
        cell.draw(&Text::new(
            caption,
            (4, scale * data.rows as i32 + 4),
            (FONT, 12).into_font().color(&color),
        ))
        .map_err(e)?;
    }
    root.present().map_err(e)
}

/// An evaluation's pictures.
pub fn evaluation(
    dir: &Path,
    r: &EvalReport,
    roc: &[Vec<(f64, f64)>],
    probs: &[f32],
    data: &Dataset,
    test: &Split,
) -> DrawResult {
    if !font_ready() {
        return Ok(());
    }
    let names: Vec<String> = r.metrics.per_class.iter().map(|c| c.name.clone()).collect();
    let conf: Vec<Vec<f64>> = r
        .metrics
        .confusion
        .iter()
        .map(|row| row.iter().map(|&v| v as f64).collect())
        .collect();
    let title = format!(
        "{}: confusion matrix (rows: true, columns: predicted)",
        r.stage
    );
    both!(dir, "confusion", (900, 800), |root| heatmap(
        root,
        &title,
        &conf,
        &names,
        &names,
        &|v| format!("{v:.0}"),
        true
    ));
    let series: Vec<Series> = roc
        .iter()
        .enumerate()
        .map(|(c, pts)| Series {
            name: format!(
                "{} (AUC {})",
                names[c],
                auc_text(r.metrics.per_class[c].auc)
            ),
            points: pts.clone(),
            color: palette(c),
            dashed: false,
            band: Vec::new(),
        })
        .collect();
    let title = format!(
        "{}: ROC curves, one vs rest (macro AUC {})",
        r.stage,
        auc_text(r.metrics.macro_auc)
    );
    both!(dir, "roc", (900, 700), |root| lines(
        root,
        &title,
        ("false positive rate", 0.0, 1.0),
        ("true positive rate", 0.0, 1.0),
        &series
    ));
    if !r.history.is_empty() {
        let epochs = r.history.len() as f64;
        let pts = |f: &dyn Fn(&EpochRecord) -> f64| {
            r.history
                .iter()
                .map(|h| (h.epoch as f64, f(h)))
                .collect::<Vec<_>>()
        };
        let loss = [
            Series {
                name: "train loss".into(),
                points: pts(&|h| h.train_loss),
                color: palette(0),
                dashed: false,
                band: Vec::new(),
            },
            Series {
                name: "validation loss".into(),
                points: pts(&|h| h.val_loss),
                color: palette(1),
                dashed: true,
                band: Vec::new(),
            },
        ];
        let top = r
            .history
            .iter()
            .map(|h| h.train_loss.max(h.val_loss))
            .fold(0.0, f64::max)
            * 1.1;
        let title = format!("{}: loss per epoch", r.stage);
        both!(dir, "loss", (800, 500), |root| lines(
            root,
            &title,
            ("epoch", 1.0, epochs.max(2.0)),
            ("loss", 0.0, top.max(0.1)),
            &loss
        ));
        let acc = [
            Series {
                name: "train accuracy".into(),
                points: pts(&|h| h.train_acc),
                color: palette(0),
                dashed: false,
                band: Vec::new(),
            },
            Series {
                name: "validation accuracy".into(),
                points: pts(&|h| h.val_acc),
                color: palette(1),
                dashed: true,
                band: Vec::new(),
            },
        ];
        let low = r
            .history
            .iter()
            .map(|h| h.train_acc.min(h.val_acc))
            .fold(1.0, f64::min);
        let title = format!("{}: accuracy per epoch", r.stage);
        both!(dir, "accuracy", (800, 500), |root| lines(
            root,
            &title,
            ("epoch", 1.0, epochs.max(2.0)),
            ("accuracy", (low - 0.05).max(0.0), 1.0),
            &acc
        ));
    }
    let k = r.metrics.per_class.len();
    let preds: Vec<usize> = probs.chunks(k).map(argmax).collect();
    let samples: Vec<(usize, usize)> = (0..test.len())
        .step_by((test.len() / 24).max(1))
        .take(24)
        .map(|i| (i, preds[i]))
        .collect();
    let title = format!("{}: sample predictions (true / predicted)", r.stage);
    both!(dir, "samples", (900, 700), |root| grid(
        root, &title, data, test, &samples
    ));
    let wrong: Vec<(usize, usize)> = (0..test.len())
        .filter(|&i| preds[i] != test.labels[i] as usize)
        .take(24)
        .map(|i| (i, preds[i]))
        .collect();
    let title = format!("{}: misclassified (true / predicted)", r.stage);
    both!(dir, "misclassified", (900, 700), |root| grid(
        root, &title, data, test, &wrong
    ));
    Ok(())
}

/// A comparison's charts.
/// The comparison's charts; `histories[i]` holds the training histories
/// of `variants[i]`'s seeds.
pub fn comparison(
    dir: &Path,
    variants: &[String],
    reports: &[EvalReport],
    histories: &[Vec<Vec<EpochRecord>>],
) -> DrawResult {
    if !font_ready() {
        return Ok(());
    }
    let acc: Vec<f64> = reports.iter().map(|r| r.metrics.accuracy).collect();
    let f1: Vec<f64> = reports.iter().map(|r| r.metrics.macro_avg.f1).collect();
    let low = acc.iter().chain(&f1).copied().fold(1.0, f64::min);
    let floor = ((low - 0.05) * 10.0).floor() / 10.0;
    both!(dir, "accuracy_f1", (1000, 550), |root| bars(
        root,
        "Test accuracy and macro F1 by variant",
        variants,
        &[("accuracy", acc.clone()), ("macro F1", f1.clone())],
        (floor.max(0.0), 1.02)
    ));
    let names: Vec<String> = reports
        .first()
        .map(|r| r.metrics.per_class.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let m: Vec<Vec<f64>> = reports
        .iter()
        .map(|r| r.metrics.per_class.iter().map(|c| c.f1).collect())
        .collect();
    both!(
        dir,
        "per_class_f1",
        (1000, 120 + 60 * variants.len() as u32),
        |root| heatmap(
            root,
            "F1 per class and variant",
            &m,
            variants,
            &names,
            &|v| format!("{v:.2}"),
            true
        )
    );
    // Each variant's validation accuracy per epoch: the mean over its
    // seeds, and with several seeds a band from the lowest to the highest.
    let series: Vec<Series> = histories
        .iter()
        .zip(variants)
        .enumerate()
        .map(|(i, (seeds, v))| {
            let epochs = seeds.iter().map(Vec::len).max().unwrap_or(0);
            let mut points = Vec::new();
            let mut band = Vec::new();
            for k in 0..epochs {
                let at: Vec<f64> = seeds
                    .iter()
                    .filter_map(|h| h.get(k).map(|r| r.val_acc))
                    .collect();
                let x = seeds
                    .iter()
                    .find_map(|h| h.get(k).map(|r| r.epoch as f64))
                    .unwrap_or(k as f64 + 1.0);
                points.push((x, at.iter().sum::<f64>() / at.len() as f64));
                if seeds.len() > 1 {
                    let lo = at.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = at.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    band.push((x, lo, hi));
                }
            }
            let name = if seeds.len() > 1 {
                format!("{v} (mean of {} seeds)", seeds.len())
            } else {
                v.clone()
            };
            Series {
                name,
                points,
                color: palette(i),
                dashed: false,
                band,
            }
        })
        // A command's predictions come without a training history.
        .filter(|s| !s.points.is_empty())
        .collect();
    let epochs = histories.iter().flatten().map(Vec::len).max().unwrap_or(1) as f64;
    let low = histories
        .iter()
        .flatten()
        .flatten()
        .map(|h| h.val_acc)
        .fold(1.0, f64::min);
    let title = if histories.iter().any(|h| h.len() > 1) {
        "Validation accuracy per epoch (mean over seeds; band: lowest to highest seed)"
    } else {
        "Validation accuracy per epoch"
    };
    both!(dir, "validation_curves", (900, 550), |root| lines(
        root,
        title,
        ("epoch", 1.0, epochs.max(2.0)),
        ("validation accuracy", (low - 0.02).max(0.0), 1.0),
        &series
    ));
    Ok(())
}

/// A grid's two first axes against each other: the mean test accuracy
/// (percent) of each pair of values, over the other axes and the seeds.
pub fn pivot(
    dir: &Path,
    (row_axis, rows): (&str, &[String]),
    (col_axis, cols): (&str, &[String]),
    m: &[Vec<f64>],
) -> DrawResult {
    if !font_ready() {
        return Ok(());
    }
    let title = format!("Mean test accuracy (%): {row_axis} (rows) by {col_axis} (columns)");
    let size = (
        (300 + 90 * cols.len()).min(2000) as u32,
        (200 + 50 * rows.len()).min(2000) as u32,
    );
    both!(dir, "pivot", size, |root| heatmap(
        root,
        &title,
        m,
        rows,
        cols,
        &|v| format!("{v:.2}"),
        false
    ));
    Ok(())
}

/// An AUC to four places, or `n/a` where the test set cannot define it.
fn auc_text(auc: Option<f64>) -> String {
    auc.map_or_else(|| "n/a".to_string(), |a| format!("{a:.4}"))
}

/// One row of a forest plot: a variant's mean difference to the reference
/// with its interval, and the per-seed differences.
pub struct ForestRow {
    pub label: String,
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
    pub points: Vec<f64>,
}

/// Each variant's accuracy difference to the reference, in percentage
/// points: the mean as a square, its 95% interval as a bar, each seed as a
/// dot, and the line of no difference.
pub fn forest(dir: &Path, reference: &str, rows: &[ForestRow]) -> DrawResult {
    if !font_ready() || rows.is_empty() {
        return Ok(());
    }
    let pp = |x: f64| x * 100.0;
    let values = rows.iter().flat_map(|r| {
        let ci = r.ci.map_or([r.mean, r.mean], |(a, b)| [a, b]);
        r.points.iter().copied().chain(ci).chain([r.mean])
    });
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| {
        (lo.min(pp(v)), hi.max(pp(v)))
    });
    let pad = ((hi - lo) * 0.1).max(0.2);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = rows.len();
    let title = format!("Accuracy difference to {reference} (pp), mean and 95% CI over seeds");
    both!(dir, "forest", (900, 90 + 55 * n as u32), |root| {
        forest_chart(root, &title, rows, (lo, hi))
    });
    Ok(())
}

fn forest_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    rows: &[ForestRow],
    (lo, hi): (f64, f64),
) -> DrawResult {
    let pp = |x: f64| x * 100.0;
    let n = rows.len();
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(8 + 8 * labels.iter().map(String::len).max().unwrap_or(4) as u32)
        .build_cartesian_2d(lo..hi, 0f64..n as f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            if (y - i as f64 - 0.5).abs() < 0.01 {
                labels
                    .get(n.wrapping_sub(i + 1))
                    .cloned()
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("difference in test accuracy (percentage points)")
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, n as f64)],
            BLACK.stroke_width(1),
        )))
        .map_err(e)?;
    let w = (hi - lo) * 0.006;
    for (i, r) in rows.iter().enumerate() {
        // First row at the top.
        let y = (n - 1 - i) as f64 + 0.5;
        let color = palette(i + 1);
        if let Some((a, b)) = r.ci {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(pp(a), y), (pp(b), y)],
                    color.stroke_width(3),
                )))
                .map_err(e)?;
        }
        chart
            .draw_series(
                r.points
                    .iter()
                    .map(|&p| Circle::new((pp(p), y - 0.18), 4, color.mix(0.6).filled())),
            )
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(pp(r.mean) - w, y - 0.08), (pp(r.mean) + w, y + 0.08)],
                color.filled(),
            )))
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// A parameter name as part of a file name (`plateau.patience` stays).
pub fn file_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A search's pictures: every trial's validation curve (the rungs as
/// vertical lines), and the score against each searched parameter.
pub fn search(dir: &Path, r: &crate::contract::SearchResult, keys: &[String]) -> DrawResult {
    if !font_ready() || r.trials.is_empty() {
        return Ok(());
    }
    let series: Vec<Series> = r
        .trials
        .iter()
        .enumerate()
        .map(|(i, t)| Series {
            name: t.trial.clone(),
            points: t
                .val_acc
                .iter()
                .enumerate()
                .map(|(k, &a)| ((k + 1) as f64, a))
                .collect(),
            color: palette(i),
            dashed: !t.complete,
            band: Vec::new(),
        })
        .collect();
    let all = r.trials.iter().flat_map(|t| t.val_acc.iter().copied());
    let low = all.clone().fold(1.0, f64::min);
    let high = all.fold(0.0, f64::max);
    let title = format!(
        "Validation accuracy per epoch, {} trials (dashed: stopped at a rung)",
        r.trials.len()
    );
    let legend = series.len() <= 12;
    let series: Vec<Series> = if legend {
        series
    } else {
        series
            .into_iter()
            .map(|s| Series {
                name: String::new(),
                ..s
            })
            .collect()
    };
    both!(dir, "search_curves", (900, 550), |root| lines(
        root,
        &title,
        ("epoch", 1.0, (r.epochs as f64).max(2.0)),
        (
            "validation accuracy",
            (low - 0.01).max(0.0),
            (high + 0.005).min(1.0)
        ),
        &series
    ));
    for key in keys {
        let values: Vec<(&serde_json::Value, f64, bool)> = r
            .trials
            .iter()
            .filter_map(|t| Some((t.values.get(key)?, t.score?, t.complete)))
            .collect();
        let numeric = values.iter().all(|(v, _, _)| v.is_number());
        let mut labels: Vec<String> = Vec::new();
        let points: Vec<(f64, f64, bool)> = values
            .iter()
            .map(|(v, s, c)| {
                let x = if numeric {
                    v.as_f64().unwrap_or_default()
                } else {
                    let text = v.as_str().map_or(v.to_string(), str::to_string);
                    match labels.iter().position(|l| *l == text) {
                        Some(k) => k as f64,
                        None => {
                            labels.push(text);
                            (labels.len() - 1) as f64
                        }
                    }
                };
                (x, *s, *c)
            })
            .collect();
        let name = format!("search_{}", file_part(key));
        both!(dir, name, (550, 400), |root| scatter(
            root,
            key,
            &points,
            if numeric { None } else { Some(&labels[..]) },
        ));
    }
    Ok(())
}

/// Scores against one parameter: filled dots for complete trials, rings
/// for those stopped at a rung; categories spread along the x axis.
fn scatter<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    key: &str,
    points: &[(f64, f64, bool)],
    labels: Option<&[String]>,
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let (mut x0, mut x1) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    if labels.is_some() {
        (x0, x1) = (-0.5, x0.max(x1) + 0.5);
    } else {
        let pad = ((x1 - x0) * 0.05).max(1e-9);
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    let (y0, y1) = points
        .iter()
        .fold((1.0f64, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("best validation accuracy by {key}"), (FONT, 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, (y0 - 0.005).max(0.0)..(y1 + 0.005).min(1.0))
        .map_err(e)?;
    let names = labels.map(|l| l.to_vec());
    let fmt = move |v: &f64| match &names {
        Some(l) => {
            let k = v.round();
            if (v - k).abs() < 1e-6 && k >= 0.0 {
                l.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        }
        None => format!("{v:.3}"),
    };
    let ticks = labels.map_or(6, |l| l.len() * 4 + 1);
    chart
        .configure_mesh()
        .x_labels(ticks)
        .x_label_formatter(&fmt)
        .x_desc(key)
        .y_desc("best validation accuracy")
        .label_style((FONT, 12))
        .draw()
        .map_err(e)?;
    let color = palette(0);
    chart
        .draw_series(points.iter().map(|&(x, y, complete)| {
            let style = if complete {
                color.filled()
            } else {
                color.stroke_width(1)
            };
            Circle::new((x, y), 4, style)
        }))
        .map_err(e)?;
    Ok(())
}
