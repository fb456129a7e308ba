//! `export`: the model in PyTorch's and ONNX's terms, run by PyTorch and
//! ONNX Runtime (where installed; `FMNIST_PIPE_PYTHON` names the Python,
//! default `python3`) with the same probabilities as the evaluation.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The test images, normalized, and the evaluation's probabilities.
fn test_set(t: &Project) -> (Vec<f32>, Vec<f64>) {
    let summary: serde_json::Value =
        serde_json::from_str(&t.read("outputs/preprocess/summary.json")).unwrap();
    let (mean, std) = (
        summary["mean"].as_f64().unwrap() as f32,
        summary["std"].as_f64().unwrap() as f32,
    );
    let raw = learn::data::idx::read_gz(&t.path("data/t10k-images-idx3-ubyte.gz")).unwrap();
    let images = learn::data::idx::decode_images(Path::new("t10k"), &raw).unwrap();
    let (mut x, mut probs) = (Vec::new(), Vec::new());
    for line in t
        .read("outputs/evaluate@main/predictions.csv")
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        let src: usize = f[1].parse().unwrap();
        x.extend(
            images.pixels[src * 784..(src + 1) * 784]
                .iter()
                .map(|&p| (p as f32 / 255.0 - mean) / std),
        );
        probs.extend(f[4..].iter().map(|v| v.parse::<f64>().unwrap()));
    }
    (x, probs)
}

/// Runs tests/python/run_exported.py; None (and a line saying so) when
/// the framework is not installed, unless the environment requires it.
fn run_python(kind: &str, model: &Path, x: &[f32], dir: &Path) -> Option<Vec<f32>> {
    let python = std::env::var("FMNIST_PIPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let input = dir.join("x.f32");
    let output = dir.join("p.f32");
    fs::write(
        &input,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/run_exported.py");
    let o = Command::new(&python)
        .arg(script)
        .args([
            kind.as_ref(),
            model.as_os_str(),
            input.as_os_str(),
            output.as_os_str(),
        ])
        .output();
    let framework = if kind == "onnx" {
        crate::common::Lacks::OnnxRuntime
    } else {
        crate::common::Lacks::Torch
    };
    match o {
        Ok(o) if o.status.success() => Some(
            fs::read(&output)
                .unwrap()
                .chunks(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Ok(o) if o.status.code() == Some(3) => {
            crate::common::skip(
                framework,
                &format!(
                    "the {kind} check: {}",
                    String::from_utf8_lossy(&o.stderr)
                        .trim()
                        .trim_start_matches("skipped: ")
                ),
            );
            None
        }
        Err(e) => {
            crate::common::skip(
                crate::common::Lacks::Python,
                &format!("the {kind} check: cannot run {python}: {e}"),
            );
            None
        }
        other => panic!("{python} failed on the {kind} model: {other:?}"),
    }
}

fn same_probabilities(kind: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{kind}");
    let worst = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-5,
        "{kind}: probabilities differ by up to {worst}"
    );
}

#[test]
fn exported_models_give_the_evaluations_probabilities() {
    let t = tiny_project(|s| s);
    t.run(&["run"]).ok();
    let out = t.outside();
    let torch = out.join("model.safetensors");
    let onnx = out.join("model.onnx");
    // A file of the user's that a careless temporary name would hit.
    let keep = out.join("model.partial");
    fs::write(&keep, "mine").unwrap();
    t.run(&[
        "export",
        "train@main",
        "--format",
        "torch",
        "-o",
        torch.to_str().unwrap(),
    ])
    .ok()
    .has("train@main");
    t.run(&[
        "export",
        "train@main",
        "--format",
        "onnx",
        "-o",
        onnx.to_str().unwrap(),
    ])
    .ok();
    // No temporary file is left behind.
    let leftovers: Vec<_> = fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") && n != "model.partial")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Never over what is there.
    t.run(&[
        "export",
        "train@main",
        "--format",
        "onnx",
        "-o",
        onnx.to_str().unwrap(),
    ])
    .exits(2)
    .has("exists; remove it or choose another -o");
    t.run(&["export", "train", "--format", "onnx", "-o", "x.onnx"])
        .exits(2)
        .has("names 2 models");

    // The state_dict's names are PyTorch's, with the module's code beside.
    let bytes = fs::read(&torch).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert!(
        meta["torch_module"].contains("nn.Conv2d(1, 4, kernel_size=3, stride=1, padding=1),  # 0")
    );
    assert!(meta["fmnist-pipe"].contains("\"normalization\""));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0.bias",
            "0.weight",
            "1.bias",
            "1.num_batches_tracked",
            "1.running_mean",
            "1.running_var",
            "1.weight",
            "5.bias",
            "5.weight"
        ]
    );

    let (x, want) = test_set(&t);
    if let Some(p) = run_python("torch", &torch, &x, out) {
        same_probabilities("torch", &p, &want);
    }
    if let Some(p) = run_python("onnx", &onnx, &x, out) {
        same_probabilities("onnx", &p, &want);
    }
}
