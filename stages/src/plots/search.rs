//! A search's charts: each trial's score against its values.

use super::*;
use std::path::Path;

use super::draw::*;

/// A search's pictures: every trial's validation curve (the rungs as
/// vertical lines), and the score against each searched parameter.
pub fn search(dir: &Path, r: &crate::contract::SearchResult, keys: &[String]) -> Drawn {
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
