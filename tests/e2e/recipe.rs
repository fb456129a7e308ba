//! The training vocabulary against PyTorch itself, where the Python named
//! by `FMNIST_PIPE_PYTHON` has torch (the unit tests check the same values
//! against constants computed by hand everywhere): the schedules' rates at
//! every step, two steps of AdamW, of SGD with Nesterov momentum and of
//! Adam with L2, and the label-smoothed loss with its gradient, each
//! within 1e-6 relative.

use learn::nn::optim::Rule;
use learn::nn::schedule::{CosineSpec, OneCycleSpec, Schedule, StepSpec};

use crate::common::{skip, Lacks};

fn close(ours: f64, theirs: f64, what: &str) {
    let tol = 1e-6 * theirs.abs().max(1e-9);
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours}, torch {theirs}"
    );
}

fn torch_values() -> Option<serde_json::Value> {
    let python = std::env::var("FMNIST_PIPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/recipe_reference.py"
    );
    let out = std::process::Command::new(&python).arg(script).output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            skip(Lacks::Torch, &format!(
                "{python} cannot compute the torch reference ({}); FMNIST_PIPE_PYTHON names a Python with torch",
                err.lines().last().unwrap_or_default()
            ));
            None
        }
        Err(e) => {
            skip(Lacks::Python, &format!("cannot run {python}: {e}"));
            None
        }
    }
}

#[test]
fn the_recipe_agrees_with_pytorch() {
    let Some(t) = torch_values() else { return };
    let rates = |key: &str| -> Vec<f64> { serde_json::from_value(t[key].clone()).unwrap() };
    let cosine = Schedule::Cosine(CosineSpec {
        warmup_epochs: 1,
        min_lr: 1e-4,
    });
    for (step, want) in rates("cosine").into_iter().enumerate() {
        close(
            cosine.lr_at(0.01, step, 4, 10) as f64,
            want,
            &format!("cosine step {step}"),
        );
    }
    let one = Schedule::Onecycle(OneCycleSpec {
        max_lr: 0.1,
        pct_start: 0.25,
        div_factor: 10.0,
        final_div_factor: 100.0,
    });
    for (step, want) in rates("onecycle").into_iter().enumerate() {
        close(
            one.lr_at(0.01, step, 10, 10) as f64,
            want,
            &format!("onecycle step {step}"),
        );
    }
    let multistep = Schedule::Step(StepSpec {
        milestones: vec![2, 3],
        gamma: 0.1,
    });
    for (step, want) in rates("step").into_iter().enumerate() {
        close(
            multistep.lr_at(0.1, step, 4, 10) as f64,
            want,
            &format!("step step {step}"),
        );
    }
    let grads = [vec![vec![0.5f32, -1.0]], vec![vec![0.25f32, 2.0]]];
    for (key, rule, wd) in [
        ("adamw", Rule::AdamW, 0.1),
        ("adam_l2", Rule::Adam, 0.1),
        (
            "sgd_nesterov",
            Rule::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            0.01,
        ),
    ] {
        let mut o = learn::nn::optim::build(rule, &[2], 0.1, (0.9, 0.999), 1e-8, wd);
        let mut p = vec![vec![1.0f32, -2.0]];
        for g in &grads {
            o.step(&mut p, g);
        }
        let want: Vec<f64> = serde_json::from_value(t[key].clone()).unwrap();
        for (i, w) in want.iter().enumerate() {
            close(p[0][i] as f64, *w, &format!("{key} parameter {i}"));
        }
    }
    let (loss, grad) =
        learn::nn::fast::cross_entropy(&[1.0, 2.0, 3.0, 0.5, 0.0, -0.5], &[2, 0], 3, 0.1);
    close(loss, t["smoothed_loss"].as_f64().unwrap(), "smoothed loss");
    let want: Vec<f64> = serde_json::from_value(t["smoothed_grad"].clone()).unwrap();
    for (i, w) in want.iter().enumerate() {
        close(grad[i] as f64, *w, &format!("smoothed gradient {i}"));
    }
}

/// The whole recipe as a variant, evaluated with test-time flips, through
/// the binary: it trains, learns, is recorded with its rate per epoch, and
/// the flips change the probabilities the evaluation writes.
#[test]
fn a_recipe_variant_with_test_time_flips_runs_through_the_pipeline() {
    let t = crate::common::tiny_project(|s| {
        s.replace(
            "      slow: {lr: 0.0003}\n",
            "      recipe: {optimizer: adamw, weight_decay: 0.05, schedule: {cosine: {warmup_epochs: 1}}, ema: {decay: 0.9}, label_smoothing: 0.1, grad_clip: 1.0, augment: [{translate: 2}, {erase: {p: 0.5}}]}\n",
        )
        .replace("      epochs: 1\n", "      epochs: 3\n")
    });
    t.run(&["run"]).ok();
    let metrics: serde_json::Value =
        serde_json::from_str(&t.read("outputs/evaluate@recipe/metrics.json")).unwrap();
    let acc = metrics["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "the recipe learns: {acc}");
    // Warmup over epoch 1, then cosine to 0 by the end of epoch 3.
    let lr: Vec<f64> = metrics["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["lr"].as_f64().unwrap())
        .collect();
    assert!((lr[0] - 0.003).abs() < 1e-6 && lr[2] < 1e-4, "{lr:?}");
    let plain = t.read("outputs/evaluate@recipe/predictions.csv");
    // Test-time flips: every evaluation reruns, and its probabilities change.
    t.run(&["status", "-S", "evaluate.tta=[hflip]"])
        .ok()
        .has("param tta added (= [\"hflip\"])");
    t.run(&["run", "-S", "evaluate.tta=[hflip]"]).ok();
    let flipped = t.read("outputs/evaluate@recipe/predictions.csv");
    assert_ne!(plain, flipped);
    assert_eq!(plain.lines().count(), flipped.lines().count());
    // A bad value is refused at load, the key named.
    t.edit_pipeline("ema: {decay: 0.9}", "ema: {decay: 1.5}");
    t.run(&["status"])
        .exits(2)
        .has("pipeline.yaml:")
        .has("ema.decay must be in (0, 1), got 1.5");
    // Checked as written, not as f32 rounds it.
    t.edit_pipeline("ema: {decay: 1.5}", "ema: {decay: 0.99999999}");
    t.run(&["status"])
        .exits(2)
        .has("pipeline.yaml:")
        .has("ema.decay is 0.99999999, below 1 as written but 1 in single precision (f32)");
    t.edit_pipeline(
        "ema: {decay: 0.99999999}",
        "ema: {decay: 0.9}, momentum: 0.9",
    );
    t.run(&["status"])
        .exits(2)
        .has("momentum and nesterov are settings of `optimizer: sgd`");
}
