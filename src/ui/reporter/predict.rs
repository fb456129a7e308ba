//! `predict`'s answers.

use super::*;

/// A stop signal arrived (called from the signal thread, which then exits).
/// One picture given to `predict`: what it was prepared as and its class
/// probabilities, or why it could not be read.
pub struct Prediction {
    pub file: std::path::PathBuf,
    pub result: Result<(learn::predict::Prepared, Vec<f32>), learn::predict::PictureError>,
}

impl Reporter {
    /// `predict`: each picture's top classes, or what was wrong with it.
    pub fn predictions(
        &self,
        m: &crate::cli::models::ModelRef,
        rows: &[Prediction],
        top: usize,
        json: bool,
    ) {
        if let Some(why) = &m.stale {
            // Beside the answers, never in them: stdout stays the answers.
            let _ = writeln!(
                std::io::stderr().lock(),
                "warning: {} is not fresh ({why}); these answers come from the model it last trained. `fmnist-pipe run {}` brings it up to date; --fresh refuses stale models",
                m.stage, m.stage
            );
        }
        if json {
            let v = serde_json::json!({
                "model": {
                    "stage": m.stage,
                    "weights": m.weights.display().to_string(),
                    "chosen": m.chosen,
                    "stale": m.stale,
                },
                "predictions": rows.iter().map(|r| match &r.result {
                    Ok((p, probs)) => serde_json::json!({
                        "file": r.file.display().to_string(),
                        "inverted": p.inverted,
                        "size": [p.width, p.height],
                        "top": learn::predict::top(probs, top).iter().map(|(i, name, q)| serde_json::json!({
                            "class": i, "name": name, "probability": q,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(e) => serde_json::json!({
                        "file": r.file.display().to_string(),
                        "error": e.to_string(),
                    }),
                }).collect::<Vec<_>>(),
            });
            self.text(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
            return;
        }
        let mut text = format!("model: {} ({})\n", m.stage, m.weights.display());
        if let Some(why) = &m.chosen {
            text.push_str(&format!("       {why}\n"));
        }
        let width = rows
            .iter()
            .map(|r| r.file.display().to_string().chars().count())
            .max()
            .unwrap_or(0);
        for r in rows {
            let name = r.file.display().to_string();
            let pad = " ".repeat(width - name.chars().count());
            match &r.result {
                Ok((_, probs)) => {
                    let classes: Vec<String> = learn::predict::top(probs, top)
                        .iter()
                        .map(|(_, n, q)| format!("{n} {:.1}%", q * 100.0))
                        .collect();
                    text.push_str(&format!("{name}{pad}  {}\n", classes.join("   ")));
                }
                Err(e) => text.push_str(&format!("{name}{pad}  error: {e}\n")),
            }
        }
        self.text(&text);
    }
}
