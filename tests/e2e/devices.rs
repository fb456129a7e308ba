//! `device: cpu-reference`: the device-generic path (the one that runs on
//! CUDA) on dfdx's CPU device, against the fast CPU kernels, on real
//! Fashion-MNIST images where Debian's package installed them.

use crate::common::*;

const PIPELINE: &str = r#"
settings: {jobs: 2}
stages:
  download:
    kind: download
    params: {sources: [/usr/share/datasets/fashion-mnist]}
  preprocess:
    kind: preprocess
    needs: [download]
    params: {validation: 100, limit: {train: 400, validation: 100, test: 300}}
  fast:
    kind: train
    needs: [preprocess]
    params: {model: main-cnn, epochs: 1, batch_size: 32, augment: [], seed: 1}
  reference:
    kind: train
    device: cpu-reference
    needs: [preprocess]
    params: {model: main-cnn, epochs: 1, batch_size: 32, augment: [], seed: 1}
  fast-on-fast:
    kind: evaluate
    needs: [fast, preprocess]
  reference-on-fast:
    kind: evaluate
    needs: [reference, preprocess]
  fast-on-reference:
    kind: evaluate
    device: cpu-reference
    needs: [fast, preprocess]
"#;

fn accuracy(p: &Project, stage: &str) -> f64 {
    let m: serde_json::Value =
        serde_json::from_str(&p.read(&format!("outputs/{stage}/metrics.json"))).unwrap();
    m["metrics"]["accuracy"].as_f64().unwrap()
}

#[test]
fn the_gpu_path_on_the_cpu_trains_and_evaluates_like_the_fast_kernels() {
    if real_data().is_none() {
        return;
    }
    let p = Project::with(PIPELINE);
    p.run(&["run"]).ok().has("7 ran");
    let fast = accuracy(&p, "fast-on-fast");
    let reference = accuracy(&p, "reference-on-fast");
    // One epoch on 400 images: both far above chance (0.1), within a few
    // points of each other (their rounding differs, so their training does).
    assert!(fast > 0.4 && reference > 0.4, "{fast} {reference}");
    assert!((fast - reference).abs() <= 0.05, "{fast} vs {reference}");
    // The same checkpoint on either path: the same predictions, but for
    // an image whose two best logits are within rounding of each other.
    let across = accuracy(&p, "fast-on-reference");
    assert!((across - fast).abs() <= 1.0 / 300.0, "{across} vs {fast}");
}
