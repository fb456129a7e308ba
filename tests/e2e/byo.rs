//! Bring your own training code: preprocess's NumPy splits, a `cmd`
//! stage's `predictions:` evaluated and compared beside trained models,
//! and the load-time and run-time checks of both.

use std::fs;

use crate::common::*;

/// A nearest-class-mean classifier in plain Python (no NumPy): it reads
/// preprocess's `.npy` splits, fits the class means on a seeded half of
/// the training images, and writes a softmax over the negative distances
/// for every test image. `MODE` spoils the file for the error tests.
const CLASSIFY: &str = r#"import math, random, struct, sys

def load(path):
    b = open(path, "rb").read()
    assert b[:6] == b"\x93NUMPY", path
    n = struct.unpack("<H", b[8:10])[0]
    header = b[10:10 + n].decode()
    dims = header.split("'shape': (")[1].split(")")[0]
    return tuple(int(x) for x in dims.split(",") if x.strip()), b[10 + n:]

seed, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
(tn, h, w), timg = load("outputs/preprocess/train-images.npy")
(tl,), tlab = load("outputs/preprocess/train-labels.npy")
(n, _, _), img = load("outputs/preprocess/test-images.npy")
assert tl == tn
d = h * w
rows = random.Random(seed).sample(range(tn), tn // 2)
sums, counts = [[0.0] * d for _ in range(10)], [0] * 10
for r in rows:
    c = tlab[r]
    counts[c] += 1
    s = sums[c]
    for k in range(d):
        s[k] += timg[r * d + k]
means = [[v / max(counts[c], 1) for v in sums[c]] for c in range(10)]
# pandas' `utf-8-sig` and Excel start the file with a byte-order mark.
with open(out, "w", encoding="utf-8-sig" if mode == "bom" else "utf-8") as f:
    f.write("index," + ",".join("prob_%d" % c for c in range(10)) + "\n")
    for i in range(n):
        if mode == "short" and i == n - 1:
            break
        x = img[i * d:(i + 1) * d]
        dist = [sum((x[k] - m[k]) ** 2 for k in range(d)) for m in means]
        z = [-(v - min(dist)) / (d * 100.0) for v in dist]
        e = [math.exp(v) for v in z]
        t = sum(e)
        p = [v / t for v in e]
        if mode == "logits" and i == 3:
            p = z
        f.write(str(i) + "," + ",".join("%.6f" % v for v in p) + "\n")
"#;

/// The bring-your-own-code guide's `train.py` options around
/// [`CLASSIFY`] (which reads preprocess's splits where `--data` says).
const TRAIN_PY: &str = r#"import argparse, os, sys
a = argparse.ArgumentParser()
a.add_argument("--seed", type=int, required=True)
a.add_argument("--epochs", type=int, default=5)
a.add_argument("--data", required=True)
a.add_argument("--out", required=True)
o = a.parse_args()
assert o.data == "outputs/preprocess", o.data
os.makedirs(os.path.dirname(o.out), exist_ok=True)
sys.argv = ["classify.py", str(o.seed), o.out, "ok"]
exec(open("classify.py").read())
"#;

/// The guide's example, as written, in the tiny study: its command stage
/// (run through `FMNIST_PIPE_PYTHON`), one evaluation per seed and the
/// comparison with the trained variants.
#[test]
fn the_guide_s_example_runs_as_written() {
    if byo_project("ok").is_none() {
        return;
    }
    let guide = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/guides/bring-your-own-code.md"
    ))
    .unwrap();
    let block = guide
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("evaluate-pytorch"))
        .expect("the guide's example");
    let t = tiny_project(|s| {
        s.replace(
            "  compare:\n    kind: compare\n    needs: [evaluate]\n",
            block,
        )
    });
    t.file("train.py", TRAIN_PY).file("classify.py", CLASSIFY);
    let run = Run(t
        .cmd(&["run"])
        .env("FMNIST_PIPE_PYTHON", "python3")
        .output()
        .unwrap())
    .ok();
    for seed in 1..=3 {
        assert!(t
            .path(&format!(
                "outputs/evaluate-pytorch@pytorch~seed{seed}/metrics.json"
            ))
            .exists());
    }
    assert!(run.stdout().contains("pytorch"), "{}", run.stdout());
}

/// The tiny study, a nearest-mean `cmd` stage with two seeds beside its
/// trained `main` and `slow`, and one comparison of all three.
fn byo_project(mode: &str) -> Option<Project> {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        skip(
            Lacks::Python,
            "python3 is not installed: the command stage under test is a Python script",
        );
        return None;
    }
    let t = tiny_project(|s| {
        s.replace(
            "  compare:\n    kind: compare\n    needs: [evaluate]\n",
            &format!(
                r#"  classify:
    kind: cmd
    needs: [preprocess]
    seeds: [1, 2]
    variants: {{nearest-mean: {{}}}}
    cmd: python3 classify.py ${{params.seed}} out/${{variant}}.csv {mode}
    deps: [classify.py]
    outs: ["out/${{variant}}.csv"]
    predictions: "out/${{variant}}.csv"
  evaluate-classify:
    kind: evaluate
    foreach: classify
  compare:
    kind: compare
    needs: [evaluate, evaluate-classify]
"#
            ),
        )
    });
    t.file("classify.py", CLASSIFY);
    Some(t)
}

#[test]
fn preprocess_writes_its_splits_as_numpy_arrays() {
    let t = tiny_project(|s| s);
    t.run(&["run", "preprocess"]).ok();
    let data =
        learn::data::dataset::Dataset::read(&t.path("outputs/preprocess/dataset.fmnd")).unwrap();
    for split in &data.splits {
        let images =
            fs::read(t.path(&format!("outputs/preprocess/{}-images.npy", split.name))).unwrap();
        let (shape, pixels) = learn::data::npy::decode_u8(&images).unwrap();
        assert_eq!(shape, vec![split.len(), 28, 28], "{}", split.name);
        assert_eq!(
            pixels,
            &split.pixels[..],
            "{}: the same images, in order",
            split.name
        );
        let labels =
            fs::read(t.path(&format!("outputs/preprocess/{}-labels.npy", split.name))).unwrap();
        let (shape, labels) = learn::data::npy::decode_u8(&labels).unwrap();
        assert_eq!(shape, vec![split.len()]);
        assert_eq!(labels, &split.labels[..]);
    }
    assert_eq!(data.split("test").unwrap().len(), 200);
}

#[test]
fn a_command_s_predictions_are_evaluated_and_compared_with_trained_models() {
    let Some(t) = byo_project("ok") else { return };
    let out = t.run(&["run"]).ok().text();
    // download, preprocess, 2 x (train, evaluate), 2 seeds x (classify,
    // evaluate), compare.
    assert!(out.contains("11 ran, 0 cached, 0 failed"), "{out}");
    for seed in [1, 2] {
        let m: serde_json::Value = serde_json::from_str(&t.read(&format!(
            "outputs/evaluate-classify@nearest-mean~seed{seed}/metrics.json"
        )))
        .unwrap();
        let acc = m["metrics"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.9, "the class means separate the bands: {acc}");
        assert_eq!(
            m["train_stage"],
            format!("classify@nearest-mean~seed{seed}")
        );
        assert!(m["efficiency"]["parameters"].is_null(), "{m}");
        assert!(m["efficiency"]["training_seconds"].is_null());
        assert_eq!(m["history"], serde_json::json!([]));
        // The per-image predictions the comparison pairs by image.
        let preds = t.read(&format!(
            "outputs/evaluate-classify@nearest-mean~seed{seed}/predictions.csv"
        ));
        assert_eq!(preds.lines().count(), 201);
    }
    let table: serde_json::Value =
        serde_json::from_str(&t.read("outputs/compare/table.json")).unwrap();
    let variants: Vec<&str> = table["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["main", "slow", "nearest-mean"]);
    let nm = &table["variants"][2];
    assert_eq!(nm["seeds"], 2);
    assert!(nm["parameters"].is_null() && nm["training_seconds"].is_null());
    assert!(table["variants"][0]["parameters"].as_u64().unwrap() > 0);
    assert!(out.contains("nearest-mean"), "{out}");
    assert!(
        out.contains("unknown"),
        "figures the tool cannot know say so:\n{out}"
    );
    assert!(
        out.contains("the predictions of nearest-mean come from a command's own model"),
        "{out}"
    );
    let csv = t.read("outputs/compare/table.csv");
    assert!(
        csv.lines().any(|l| l.starts_with("nearest-mean,2,")),
        "{csv}"
    );
    let report = t.read("outputs/compare/index.html");
    assert!(report.contains("nearest-mean"));
    // Nothing is stale afterwards; a second run is a no-op.
    t.run(&["run"]).ok().has("0 ran");
}

#[test]
fn bad_predictions_fail_the_evaluation_naming_the_line_and_the_fix() {
    let Some(t) = byo_project("logits") else {
        return;
    };
    let out = t.run(&["run", "evaluate-classify"]).exits(1).text();
    assert!(
        out.contains("~seed1`, out/nearest-mean~seed1.csv, line 5: prob_0 is")
            || out.contains("~seed2`, out/nearest-mean~seed2.csv, line 5: prob_0 is"),
        "{out}"
    );
    assert!(
        out.contains("not a probability in [0, 1]; write each row's softmax, not its logits"),
        "{out}"
    );
    // The command's own result stands; only the evaluation failed.
    assert_eq!(t.state_of("classify@nearest-mean~seed1").0, "fresh");
    assert_eq!(t.state_of("classify@nearest-mean~seed2").0, "fresh");
    // A row missing: the count and the first missing index.
    t.edit_pipeline("out/${variant}.csv logits", "out/${variant}.csv short");
    let out = t.run(&["run", "evaluate-classify"]).exits(1).text();
    assert!(
        out.contains(
            "holds 199 rows, the test split has 200 images (test-images.npy); index 199 is missing"
        ),
        "{out}"
    );
    // Fixed, it is evaluated.
    t.edit_pipeline("out/${variant}.csv short", "out/${variant}.csv ok");
    t.run(&["run", "evaluate-classify"]).ok();
    // With a byte-order mark: the same metrics.
    let metrics = "outputs/evaluate-classify@nearest-mean~seed1/metrics.json";
    let metrics_of = |t: &Project| {
        let m: serde_json::Value = serde_json::from_str(&t.read(metrics)).unwrap();
        m["metrics"].clone()
    };
    let plain = metrics_of(&t);
    assert!(plain["accuracy"].is_number(), "{plain}");
    t.edit_pipeline("out/${variant}.csv ok", "out/${variant}.csv bom");
    t.run(&["run", "evaluate-classify"]).ok();
    assert!(t.read("out/nearest-mean~seed1.csv").starts_with('\u{feff}'));
    assert_eq!(metrics_of(&t), plain);
}

#[test]
fn another_predictions_file_is_another_evaluation() {
    let Some(t) = byo_project("ok") else { return };
    t.edit_pipeline(
        "cmd: python3 classify.py ${params.seed} out/${variant}.csv ok",
        "cmd: python3 classify.py ${params.seed} out/${variant}.csv ok && python3 classify.py 9 out/${variant}-other.csv ok",
    )
    .edit_pipeline(
        "outs: [\"out/${variant}.csv\"]",
        "outs: [\"out/${variant}.csv\", \"out/${variant}-other.csv\"]",
    );
    t.run(&["run", "evaluate-classify"]).ok();
    t.edit_pipeline(
        "predictions: \"out/${variant}.csv\"",
        "predictions: \"out/${variant}-other.csv\"",
    );
    let (state, why) = t.state_of("evaluate-classify@nearest-mean~seed1");
    assert_eq!(state, "dirty");
    assert_eq!(
        why.as_deref(),
        Some("predictions it evaluates changed (out/nearest-mean~seed1.csv => out/nearest-mean~seed1-other.csv)")
    );
    assert_eq!(
        t.state_of("classify@nearest-mean~seed1").0,
        "fresh",
        "the command need not rerun"
    );
}

#[test]
fn predictions_are_checked_when_the_pipeline_loads() {
    let t = tiny_project(|s| {
        s.replace(
            "    threads: 1\n    params:\n      model",
            "    threads: 1\n    predictions: out/p.csv\n    params:\n      model",
        )
    });
    t.run(&["status"])
        .exits(2)
        .has("stage `train` is of kind train, which takes no `predictions`");
    let t = tiny_project(|s| {
        s.replace(
            "  evaluate:\n    kind: evaluate\n    foreach: train\n",
            "  mine:\n    kind: cmd\n    cmd: touch out/p.csv\n    outs: [out/q.csv]\n    predictions: out/p.csv\n  evaluate:\n    kind: evaluate\n    foreach: train\n",
        )
    });
    t.run(&["status"])
        .exits(2)
        .has("stage `mine`: predictions `out/p.csv` is not one of its outputs (out/q.csv)")
        .has("add `out/p.csv` (or its directory) to the stage's `outs`");
    // A command without `predictions:` is no model to evaluate.
    let t = tiny_project(|s| {
        s.replace(
            "  evaluate:\n    kind: evaluate\n    foreach: train\n",
            "  mine:\n    kind: cmd\n    cmd: touch out/p.csv\n    outs: [out/p.csv]\n  evaluate-mine:\n    kind: evaluate\n    needs: [mine, preprocess]\n  evaluate:\n    kind: evaluate\n    foreach: train\n",
        )
    });
    t.run(&["status"])
        .exits(2)
        .has("evaluate needs the stage whose model it evaluates: a train stage, or a cmd stage that declares `predictions:`");
}

/// The Python named by `FMNIST_PIPE_PYTHON` (default python3), where it
/// has torch and numpy; None, saying so, where it has not.
fn python_with_torch() -> Option<String> {
    let python = std::env::var("FMNIST_PIPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            Lacks::Torch,
            &format!(
                "{python} has no torch and numpy (FMNIST_PIPE_PYTHON names a Python that has them)"
            ),
        );
    }
    ok.then_some(python)
}

#[test]
fn the_byo_pytorch_study_compares_a_pytorch_script_with_the_built_in_cnn() {
    let Some(python) = python_with_torch() else {
        return;
    };
    let Some(_) = real_data() else { return };
    let study = concat!(env!("CARGO_MANIFEST_DIR"), "/studies/byo-pytorch");
    let text = fs::read_to_string(format!("{study}/pipeline.yaml")).unwrap();
    // The study as it is, on a few thousand images for one epoch.
    let small = text
        .replace(
            "validation: 5000, seed: 42}",
            "validation: 500, seed: 42, limit: {train: 2000, test: 1000}}",
        )
        .replace("epochs: 5", "epochs: 1");
    assert_ne!(small, text);
    let t = Project::with(&small);
    t.file("train.py", fs::read(format!("{study}/train.py")).unwrap());
    let out = t
        .cmd(&["run"])
        .env("FMNIST_PIPE_PYTHON", &python)
        .output()
        .unwrap();
    let out = Run(out).ok().text();
    assert!(out.contains("15 ran, 0 cached, 0 failed"), "{out}");
    let table: serde_json::Value =
        serde_json::from_str(&t.read("outputs/compare/table.json")).unwrap();
    let v = table["variants"].as_array().unwrap();
    assert_eq!(v[0]["variant"], "fmnist-pipe");
    assert_eq!(v[1]["variant"], "pytorch");
    assert_eq!(v[1]["seeds"], 3);
    assert_eq!(v[1]["paired_seeds"], 3);
    let acc = v[1]["accuracy_mean"].as_f64().unwrap();
    assert!(acc > 0.6, "the PyTorch script learned: {acc}");
    assert!(out.contains("the predictions of pytorch come from a command's own model"));
}
