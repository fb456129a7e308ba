//! A comparison's charts: each metric by variant, a grid's pivot, and a
//! confirmation's forest of differences.

use super::*;
use crate::contract::{EpochRecord, EvalReport};
use plotters::coord::Shift;
use std::path::Path;

use super::draw::*;

/// A comparison's charts.
/// The comparison's charts; `histories[i]` holds the training histories
/// of `variants[i]`'s seeds.
pub fn comparison(
    dir: &Path,
    variants: &[String],
    reports: &[EvalReport],
    histories: &[Vec<Vec<EpochRecord>>],
) -> Drawn {
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
) -> Drawn {
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
pub fn forest(dir: &Path, reference: &str, rows: &[ForestRow]) -> Drawn {
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

pub(super) fn forest_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    rows: &[ForestRow],
    (lo, hi): (f64, f64),
) -> Drawn {
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
