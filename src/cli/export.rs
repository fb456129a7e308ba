//! `export`: a trained model for another framework.

use super::ExportFormat;
use crate::error::{exit, Error, ExportRefusal, ModelError, Result};
use crate::spec::Pipeline;
use crate::ui::reporter::Reporter;
use std::path::{Path, PathBuf};

pub fn run(
    pipeline: &Pipeline,
    reporter: &mut Reporter,
    stage: &str,
    format: &ExportFormat,
    output: &std::path::PathBuf,
) -> Result<i32> {
    let m = crate::cli::models::find(pipeline, Some(stage))?;
    check_export_path(pipeline, output)?;
    if output.exists() {
        return Err(Error::Export {
            path: output.clone(),
            why: ExportRefusal::Exists,
        });
    }
    let bad = |problem: learn::nn::checkpoint::CheckpointError| ModelError::Weights {
        path: m.weights.clone(),
        problem: problem.to_string(),
    };
    let model = learn::nn::checkpoint::load(&m.weights).map_err(bad)?;
    let spec = serde_json::json!({
        "stage": m.stage,
        "layers": model.layers,
        "input": model.input,
        "classes": model.classes,
        "class_names": stages::contract::CLASS_NAMES,
        "normalization": {"mean": m.mean, "std": m.std, "formula": "(pixel / 255 - mean) / std"},
    })
    .to_string();
    let bytes = match format {
        ExportFormat::Torch => learn::export::torch(&model, &spec).map_err(bad)?,
        ExportFormat::Onnx => learn::export::onnx(&model, &spec),
    };
    // Whole or not at all: a temporary file of our own beside it
    // (created new, so nothing of the user's is ever replaced), renamed.
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = output.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("write the exported model", &tmp, e))?;
    std::io::Write::write_all(&mut file, &bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("write the exported model", output, e)
        })?;
    let what = match format {
        ExportFormat::Torch => "a PyTorch state_dict in safetensors",
        ExportFormat::Onnx => "ONNX",
    };
    reporter.text(&format!(
        "{} ({}) -> {} ({what}, {} bytes)\n",
        m.stage,
        m.weights.display(),
        output.display(),
        stages::format::group_digits(bytes.len())
    ));
    Ok(exit::OK)
}

/// An export may not go where the tool deletes or owns files (the rule
/// for a stage's `outs`), nor into a stage's output: the next run of that
/// stage would meet a file it did not write. A missing directory is named.
fn check_export_path(pipeline: &Pipeline, output: &Path) -> Result<()> {
    let settings = &pipeline.settings;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::Export {
            path: output.to_path_buf(),
            why: ExportRefusal::NoDirectory(parent),
        });
    }
    let protected = crate::spec::protect::Protected::new(
        &settings.project_dir,
        &settings.file,
        &settings.cache,
        &settings.outputs,
    );
    if let Some(why) = protected.refuse(output) {
        return Err(Error::Export {
            path: output.to_path_buf(),
            why: ExportRefusal::Protected(why),
        });
    }
    let here = crate::spec::protect::physical(output);
    for s in &pipeline.stages {
        for o in &s.outs {
            let out = crate::spec::protect::physical(&settings.project_dir.join(o));
            if here.starts_with(&out) {
                return Err(Error::Export {
                    path: output.to_path_buf(),
                    why: ExportRefusal::StageOutput {
                        out: o.clone(),
                        stage: s.name.clone(),
                    },
                });
            }
        }
    }
    Ok(())
}
