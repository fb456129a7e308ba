//! Finding a trained model of the pipeline: by its train stage's name, or
//! the best variant of the last comparison; with the normalization its
//! training data had.

use crate::error::{ModelError, Result};
use crate::spec::{Pipeline, Stage};
use stages::contract::{
    Table, TrainSummary, DATA_SUMMARY_FILE, TABLE_FILE, TRAIN_SUMMARY_FILE, WEIGHTS_FILE,
};
use stages::Kind;
use std::path::PathBuf;

/// A trained model, ready to load.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub stage: String,
    pub weights: PathBuf,
    /// The training data's normalization: (x/255 - mean) / std.
    pub mean: f32,
    pub std: f32,
    /// Why this model, when it was not named.
    pub chosen: Option<String>,
    /// Why its train stage is not fresh (`status`'s reason), when it is not:
    /// the weights are from an earlier configuration or a run under way.
    pub stale: Option<String>,
}

fn out_dir(p: &Pipeline, s: &Stage) -> Option<PathBuf> {
    s.outs.first().map(|o| p.settings.project_dir.join(o))
}

/// The model of train stage `name` (a stage, or a group naming one), or
/// with None the best variant of the pipeline's comparison.
pub fn find(p: &Pipeline, name: Option<&str>) -> Result<ModelRef> {
    let (stage, chosen) = match name {
        Some(n) => (named(p, n)?, None),
        None => best(p)?,
    };
    let weights = out_dir(p, stage)
        .map(|d| d.join(WEIGHTS_FILE))
        .filter(|w| w.is_file())
        .ok_or_else(|| ModelError::NotTrained {
            stage: stage.name.clone(),
        })?;
    let (mean, std) = normalization(p, stage)?;
    Ok(ModelRef {
        stage: stage.name.clone(),
        weights,
        mean,
        std,
        chosen,
        stale: None,
    })
}

fn named<'a>(p: &'a Pipeline, name: &str) -> Result<&'a Stage> {
    let idx = p.select(&[name.to_string()])?;
    let trains: Vec<&Stage> = idx
        .iter()
        .map(|&i| &p.stages[i])
        .filter(|s| s.kind == Kind::Train)
        .collect();
    match trains[..] {
        [one] => Ok(one),
        [] => Err(ModelError::NotATrainStage {
            name: name.to_string(),
            example: p
                .stages
                .iter()
                .find(|s| s.kind == Kind::Train)
                .map_or("train@main".into(), |s| s.name.clone()),
        }
        .into()),
        _ => Err(ModelError::Ambiguous {
            name: name.to_string(),
            stages: trains.iter().map(|s| s.name.clone()).collect(),
        }
        .into()),
    }
}

/// The train stage behind the compared variant with the best validation
/// accuracy (of its seeds, the best one by the same measure). The test
/// set is never used to choose: that is what the table reports on.
fn best(p: &Pipeline) -> Result<(&Stage, Option<String>)> {
    let none = || ModelError::NoComparison;
    let compare = p
        .stages
        .iter()
        .rev()
        .find(|s| s.kind == Kind::Compare)
        .ok_or_else(none)?;
    let table: Table = out_dir(p, compare)
        .and_then(|d| std::fs::read(d.join(TABLE_FILE)).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(none)?;
    // Each variant's seeds: (train stage, its best validation accuracy).
    let mut scored = Vec::new();
    for v in &table.variants {
        let seeds: Vec<(&Stage, f64)> = v
            .per_seed
            .iter()
            .filter_map(|seed| {
                let evaluate = &p.stages[p.index_of(&seed.stage)?];
                let train = evaluate
                    .needs
                    .iter()
                    .map(|&i| &p.stages[i])
                    .find(|s| s.kind == Kind::Train)?;
                Some((train, validation_accuracy(p, train)?))
            })
            .collect();
        if seeds.is_empty() {
            continue;
        }
        let mean = seeds.iter().map(|s| s.1).sum::<f64>() / seeds.len() as f64;
        scored.push((v, mean, seeds));
    }
    let (variant, mean, seeds) = scored
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or_else(none)?;
    let (train, val) = seeds
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or_else(none)?;
    let why = format!(
        "the variant of {} with the best validation accuracy: {} at {:.2}%{} (its test accuracy, {:.2}%, was not used to choose)",
        compare.name,
        variant.variant,
        mean * 100.0,
        if seeds.len() > 1 {
            format!(
                " (mean of {} seeds; this seed {:.2}%)",
                seeds.len(),
                val * 100.0
            )
        } else {
            String::new()
        },
        variant.accuracy_mean * 100.0,
    );
    Ok((train, Some(why)))
}

/// The best validation accuracy a train stage's last run reached.
fn validation_accuracy(p: &Pipeline, train: &Stage) -> Option<f64> {
    let bytes = std::fs::read(out_dir(p, train)?.join(TRAIN_SUMMARY_FILE)).ok()?;
    let summary: TrainSummary = serde_json::from_slice(&bytes).ok()?;
    Some(summary.best_val_acc)
}

/// The normalization of the data `train` was trained on.
fn normalization(p: &Pipeline, train: &Stage) -> Result<(f32, f32)> {
    #[derive(serde::Deserialize)]
    struct Summary {
        mean: f32,
        std: f32,
    }
    let prep = train
        .needs
        .iter()
        .map(|&i| &p.stages[i])
        .find(|s| s.kind == Kind::Preprocess)
        .ok_or_else(|| ModelError::NoPreprocess {
            stage: train.name.clone(),
        })?;
    let path = out_dir(p, prep)
        .map(|d| d.join(DATA_SUMMARY_FILE))
        .unwrap_or_default();
    let bytes = std::fs::read(&path).map_err(|e| ModelError::Normalization {
        path: path.clone(),
        problem: e.to_string(),
        run: Some(prep.name.clone()),
    })?;
    let s: Summary = serde_json::from_slice(&bytes).map_err(|e| ModelError::Normalization {
        path: path.clone(),
        problem: e.to_string(),
        run: None,
    })?;
    Ok((s.mean, s.std))
}
