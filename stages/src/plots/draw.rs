//! The kinds of chart every picture is made of: heatmaps, lines, bars,
//! image grids, a forest of intervals and scatter plots.

use super::*;
use crate::contract::CLASS_NAMES;
use learn::data::dataset::{Dataset, Split};
use plotters::coord::Shift;

/// A heatmap of `m` (rows × cols), darker for larger values, annotated.
pub(super) fn heatmap<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    m: &[Vec<f64>],
    rows: &[String],
    cols: &[String],
    fmt: &dyn Fn(f64) -> String,
    from_zero: bool,
) -> Drawn {
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

pub(super) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
    /// A shaded band around the line: (x, low, high) per point.
    pub band: Vec<(f64, f64, f64)>,
}

pub(super) fn lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x: (&str, f64, f64),
    y: (&str, f64, f64),
    series: &[Series],
) -> Drawn {
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
pub(super) fn bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    series: &[(&str, Vec<f64>)],
    y: (f64, f64),
) -> Drawn {
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
pub(super) fn grid<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    data: &Dataset,
    split: &Split,
    items: &[(usize, usize)],
) -> Drawn {
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

/// Scores against one parameter: filled dots for complete trials, rings
/// for those stopped at a rung; categories spread along the x axis.
pub(super) fn scatter<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    key: &str,
    points: &[(f64, f64, bool)],
    labels: Option<&[String]>,
) -> Drawn {
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

/// An AUC to four places, or `n/a` where the test set cannot define it.
pub(super) fn auc_text(auc: Option<f64>) -> String {
    auc.map_or_else(|| "n/a".to_string(), |a| format!("{a:.4}"))
}
