//! `predict`: a trained model's classes for pictures a person has.

use super::status::status_rows;
use super::PredictArgs;
use crate::error::{exit, Error, ModelError, Result};
use crate::spec::graph::Dag;
use crate::spec::Pipeline;
use crate::ui::reporter::{Reporter, RowState};
use std::path::PathBuf;

pub fn run(
    pipeline: &Pipeline,
    dag: &Dag,
    reporter: &mut Reporter,
    args: &PredictArgs,
) -> Result<i32> {
    let PredictArgs {
        paths,
        model,
        top,
        json,
        fresh,
    } = args;
    let mut m = crate::cli::models::find(pipeline, model.as_deref())?;
    m.stale = staleness(pipeline, dag, &m.stage)?;
    if let (true, Some(why)) = (*fresh, &m.stale) {
        return Err(Error::Stale {
            stage: m.stage.clone(),
            why: why.clone(),
        });
    }
    let files = picture_files(paths)?;
    let mut answers: Vec<(
        PathBuf,
        std::result::Result<learn::predict::Prepared, learn::predict::PictureError>,
    )> = files
        .into_iter()
        .map(|f| {
            let r = std::fs::read(&f)
                .map_err(learn::predict::PictureError::Read)
                .and_then(|b| learn::predict::prepare(&b));
            (f, r)
        })
        .collect();
    let ok: Vec<learn::predict::Prepared> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let probs =
        learn::predict::classify(&m.weights, (m.mean, m.std), &ok, threads).map_err(|problem| {
            ModelError::Weights {
                path: m.weights.clone(),
                problem: problem.to_string(),
            }
        })?;
    let mut probs = probs.into_iter();
    let rows: Vec<crate::ui::reporter::Prediction> = answers
        .drain(..)
        .map(|(file, r)| crate::ui::reporter::Prediction {
            file,
            result: r.map(|p| (p, probs.next().unwrap_or_default())),
        })
        .collect();
    reporter.predictions(&m, &rows, *top, *json);
    Ok(if rows.iter().any(|r| r.result.is_err()) {
        exit::STAGE_FAILED
    } else {
        exit::OK
    })
}

/// Why train stage `stage` is not fresh, as `status` says it; None when it is.
fn staleness(pipeline: &Pipeline, dag: &Dag, stage: &str) -> Result<Option<String>> {
    let rows = status_rows(pipeline, dag, &[stage.to_string()], &[], false)?;
    Ok(rows
        .into_iter()
        .find(|r| r.stage == stage)
        .filter(|r| r.state != RowState::Fresh)
        .map(|r| match (r.state, r.why) {
            (RowState::Running, _) => "it is being trained again right now".to_string(),
            (_, Some(why)) => why.to_string(),
            (state, None) => state.label().to_string(),
        }))
}

/// The pictures `paths` name: files as given, directories by their
/// .png/.jpg/.jpeg files, sorted.
fn picture_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io("list the pictures in", p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                            ["png", "jpg", "jpeg"].contains(&x.to_ascii_lowercase().as_str())
                        })
                })
                .collect();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no .png, .jpg or .jpeg files in this directory",
                    p.display()
                )));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}
