//! A grid's (`matrix`) compared variants by axis: the main effect of each
//! axis value (the mean test accuracy of every model trained with it,
//! over the other axes and the seeds) and, for two axes or more, the
//! first two against each other.
//!
//! The axes are read from the variants' names, which the pipeline makes
//! from the grid (`lr=0.01+dropout=0`, a named variant first:
//! `no-aug+lr=0.01`); variants whose names carry no `key=value` are not
//! part of a grid.

use crate::contract::Table;
use crate::format::group_digits;
use crate::stats::{mean_sd, t_interval95};

/// One axis: its key and its values in the grid's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// A variant's grid coordinates: (key, value) per `key=value` part.
pub fn coordinates(variant: &str) -> Vec<(String, String)> {
    variant
        .split('+')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The axes of the compared variants, each with at least two values; in
/// the order they appear (the grid's, first axis slowest).
pub fn axes(variants: &[String]) -> Vec<Axis> {
    let mut out: Vec<Axis> = Vec::new();
    for v in variants {
        for (k, val) in coordinates(v) {
            match out.iter_mut().find(|a| a.key == k) {
                Some(a) if !a.values.contains(&val) => a.values.push(val),
                Some(_) => {}
                None => out.push(Axis {
                    key: k,
                    values: vec![val],
                }),
            }
        }
    }
    out.retain(|a| a.values.len() >= 2);
    out
}

/// The value of `key` in a variant's name.
fn value_of<'a>(coords: &'a [(String, String)], key: &str) -> Option<&'a str> {
    coords
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The main effects as a table: per axis and value, how many variants and
/// models, the mean accuracy and its Student t interval over the models.
/// `models[i]` holds the test accuracies of `variants[i]`'s replicates.
/// None without an axis of two values or more.
pub fn main_effects(variants: &[String], models: &[Vec<f64>]) -> Option<Table> {
    let axes = axes(variants);
    if axes.is_empty() {
        return None;
    }
    let coords: Vec<Vec<(String, String)>> = variants.iter().map(|v| coordinates(v)).collect();
    let mut rows = Vec::new();
    for axis in &axes {
        for value in &axis.values {
            let members: Vec<usize> = (0..variants.len())
                .filter(|&i| value_of(&coords[i], &axis.key) == Some(value.as_str()))
                .collect();
            let acc: Vec<f64> = members.iter().flat_map(|&i| models[i].clone()).collect();
            if acc.is_empty() {
                continue;
            }
            let (mean, _) = mean_sd(&acc);
            rows.push(vec![
                axis.key.clone(),
                value.clone(),
                group_digits(members.len()),
                group_digits(acc.len()),
                format!("{:.2}%", mean * 100.0),
                t_interval95(&acc).map_or("—".into(), |(lo, hi)| {
                    format!("[{:.2}, {:.2}]", lo.max(0.0) * 100.0, hi.min(1.0) * 100.0)
                }),
            ]);
        }
    }
    Some(Table {
        title: "Main effects of the grid: test accuracy per axis value, over the other axes and the seeds".into(),
        columns: ["axis", "value", "variants", "models", "mean accuracy", "95% CI"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows,
        notes: vec![
            "Each value's mean is over every model trained with it: all the variants that share it (the other axes at each of their values) and their seeds. The interval is Student t over those models; they differ in the other axes too, so it is wide, and a main effect hides interactions (the pivot chart shows the first two axes together).".into(),
        ],
        variants: Vec::new(),
        sections: Vec::new(),
    })
}

/// The first two axes against each other: their values, and the mean
/// accuracy (percent) of every model at each pair (NaN where none).
pub fn pivot(variants: &[String], models: &[Vec<f64>]) -> Option<(Axis, Axis, Vec<Vec<f64>>)> {
    let axes = axes(variants);
    let (a, b) = (axes.first()?.clone(), axes.get(1)?.clone());
    let coords: Vec<Vec<(String, String)>> = variants.iter().map(|v| coordinates(v)).collect();
    let m = a
        .values
        .iter()
        .map(|va| {
            b.values
                .iter()
                .map(|vb| {
                    let acc: Vec<f64> = (0..variants.len())
                        .filter(|&i| {
                            value_of(&coords[i], &a.key) == Some(va.as_str())
                                && value_of(&coords[i], &b.key) == Some(vb.as_str())
                        })
                        .flat_map(|i| models[i].clone())
                        .collect();
                    if acc.is_empty() {
                        f64::NAN
                    } else {
                        mean_sd(&acc).0 * 100.0
                    }
                })
                .collect()
        })
        .collect();
    Some((a, b, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn axes_come_from_the_grid_names_in_order() {
        let v = names(&[
            "main",
            "lr=0.01+dropout=0",
            "lr=0.01+dropout=0.25",
            "lr=0.001+dropout=0",
            "lr=0.001+dropout=0.25",
            "no-aug+lr=0.01",
        ]);
        let a = axes(&v);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].key, "lr");
        assert_eq!(a[0].values, ["0.01", "0.001"]);
        assert_eq!(a[1].values, ["0", "0.25"]);
        assert!(axes(&names(&["main", "no-aug"])).is_empty());
        assert!(axes(&names(&["lr=0.1"])).is_empty(), "one value is no axis");
    }

    #[test]
    fn main_effects_average_over_the_other_axis_and_the_seeds() {
        let v = names(&["a=1+b=x", "a=1+b=y", "a=2+b=x", "a=2+b=y"]);
        let models = vec![
            vec![0.80, 0.82],
            vec![0.84, 0.86],
            vec![0.90, 0.90],
            vec![0.92, 0.92],
        ];
        let t = main_effects(&v, &models).unwrap();
        assert_eq!(t.rows.len(), 4);
        assert_eq!(t.rows[0][..5], ["a", "1", "2", "4", "83.00%"]);
        assert_eq!(t.rows[1][..5], ["a", "2", "2", "4", "91.00%"]);
        assert_eq!(t.rows[2][..5], ["b", "x", "2", "4", "85.50%"]);
        // mean 0.83, sd 0.02582, t(3) 3.182: ±4.11 points.
        assert_eq!(t.rows[0][5], "[78.89, 87.11]");
        let (a, b, m) = pivot(&v, &models).unwrap();
        assert_eq!((a.key.as_str(), b.key.as_str()), ("a", "b"));
        assert!((m[0][0] - 81.0).abs() < 1e-9 && (m[1][1] - 92.0).abs() < 1e-9);
        assert!(pivot(&names(&["a=1", "a=2"]), &models[..2]).is_none());
    }
}
