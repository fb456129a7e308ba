//! The local scheduler: ready trainings share the cores, GPUs are handed
//! out, and demands the machine cannot meet are refused by name.

use crate::common::*;
use std::fs;

const TWO: &str = "      main: {}\n      slow: {lr: 0.0003}\n";

/// Line numbers of the first line starting with each prefix.
fn first_line(out: &str, prefix: &str) -> usize {
    out.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{out}"))
}

#[test]
fn ready_trainings_run_side_by_side_and_train_the_same_weights() {
    let shared = Project::new();
    let files = write_data(&shared.dir().join("data"));
    let study = tiny_study(&files, TWO, "main");
    // Train and evaluate declare no threads: the scheduler shares the cores.
    let packed = study.replace("    threads: 1\n", "");
    assert_ne!(packed, study);
    let one_at_a_time = study.replace("    threads: 1\n", "    threads: 2\n");

    let a = Project::new();
    write_data(&a.dir().join("data"));
    a.pipeline(&packed);
    let out = a.run(&["run"]).ok().stdout();
    // Both started, each on one of the two cores, before either ended.
    let started = [
        first_line(&out, "running  train@main  (never run) on 1 thread"),
        first_line(&out, "running  train@slow  (never run) on 1 thread"),
    ];
    let first_done = first_line(&out, "done     train@");
    assert!(started.iter().all(|&s| s < first_done), "{out}");

    let b = Project::new();
    write_data(&b.dir().join("data"));
    b.pipeline(&one_at_a_time);
    let out = b.run(&["run"]).ok().stdout();
    assert!(
        first_line(&out, "done     train@main") < first_line(&out, "running  train@slow"),
        "with two threads each, one after the other:\n{out}"
    );
    for f in [
        "outputs/train@main/model.safetensors",
        "outputs/train@slow/model.safetensors",
        "outputs/evaluate@main/predictions.csv",
        "outputs/evaluate@slow/predictions.csv",
    ] {
        assert!(
            fs::read(a.path(f)).unwrap() == fs::read(b.path(f)).unwrap(),
            "{f} differs between 1 and 2 threads"
        );
    }
}

const GPUS: &str = r#"
settings: {jobs: 4}
stages:
  a:
    kind: cmd
    resources: {gpus: 1}
    cmd: "touch a.started; for i in $(seq 100); do [ -e b.started ] && break; sleep 0.05; done; echo $CUDA_VISIBLE_DEVICES > a.txt"
    outs: [a.txt]
  b:
    kind: cmd
    resources: {gpus: 1}
    cmd: "touch b.started; for i in $(seq 100); do [ -e a.started ] && break; sleep 0.05; done; echo $CUDA_VISIBLE_DEVICES > b.txt"
    outs: [b.txt]
  both:
    kind: cmd
    needs: [a, b]
    resources: {gpus: 2}
    cmd: "echo $CUDA_VISIBLE_DEVICES > both.txt"
    outs: [both.txt]
"#;

#[test]
fn each_stage_sees_only_the_gpus_it_holds() {
    let p = Project::with(GPUS);
    let out = p
        .cmd(&["run"])
        .env("CUDA_VISIBLE_DEVICES", "3,GPU-5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut held = [p.read("a.txt"), p.read("b.txt")];
    held.sort();
    assert_eq!(held, ["3\n", "GPU-5\n"], "side by side, one GPU each");
    assert_eq!(p.read("both.txt"), "3,GPU-5\n");
}

#[test]
fn a_demand_the_machine_cannot_meet_fails_that_stage_by_name() {
    let p = Project::with(GPUS);
    let out = p
        .cmd(&["run", "--keep-going"])
        .env("CUDA_VISIBLE_DEVICES", "7")
        .output()
        .unwrap();
    let run = Run(out).exits(1);
    let text = run.stdout();
    assert!(
        text.contains("FAILED   both: it cannot run on this machine: it asks for 2 GPUs and this machine shows 1; lower its resources, or run it where they are (`--executor slurm`)"),
        "{text}"
    );
    assert_eq!(p.read("a.txt"), "7\n");
    assert_eq!(p.read("b.txt"), "7\n");

    let big = Project::with(
        "stages:\n  big:\n    kind: cmd\n    resources: {mem_mb: 900000000}\n    cmd: touch big\n    outs: [big]\n",
    );
    big.run(&["run"])
        .exits(1)
        .has("FAILED   big: it cannot run on this machine: it asks for 900000000 MB of memory and this machine has ");
    assert!(!big.path("big").exists());
}

/// A finished training's evaluation takes the next free core ahead of a
/// training not yet started: results appear while the study runs.
#[test]
fn evaluations_start_ahead_of_trainings_not_yet_started() {
    let t = tiny_project(|s| s);
    each_evaluation_follows_its_training(&t);
}

/// On one core, each training's evaluation starts right after it, ahead
/// of the next training.
fn each_evaluation_follows_its_training(t: &Project) {
    let out = t.run(&["run", "-j", "1"]).ok().stdout();
    let started: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("running  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        started,
        [
            "download",
            "preprocess",
            "train@main",
            "evaluate@main",
            "train@slow",
            "evaluate@slow",
            "compare"
        ],
        "{out}"
    );
}

/// No idle core: when the short training ends and nothing else is ready,
/// the long one takes the free core from its next epoch, and its model is
/// the model it trains on one thread alone.
#[test]
fn a_training_takes_the_core_that_comes_free() {
    let study = |t: &Project| {
        let files = write_data(&t.dir().join("data"));
        let y = tiny_study(
            &files,
            "      short: {}\n      long: {epochs: 40}\n",
            "short",
        )
        .replace(
            "    threads: 1\n    params:\n      model:",
            "    params:\n      model:",
        );
        assert!(!y.contains("  train:\n    kind: train\n    needs: [preprocess]\n    threads: 1"));
        t.pipeline(&y);
    };
    let t = Project::new();
    study(&t);
    let out = t.run(&["run", "train"]).ok().stdout();
    assert!(
        out.contains("train@long: now on 2 threads (a core came free)"),
        "{out}"
    );
    assert!(!out.contains("train@short: now on"), "{out}");
    let alone = Project::new();
    study(&alone);
    let out = alone
        .run(&["run", "train@long", "--jobs", "1"])
        .ok()
        .stdout();
    assert!(!out.contains("now on"), "{out}");
    assert_eq!(
        fs::read(t.path("outputs/train@long/model.safetensors")).unwrap(),
        fs::read(alone.path("outputs/train@long/model.safetensors")).unwrap(),
        "the same bits on one thread and on two"
    );
}

/// The same with trainings that declare their cores and evaluations that
/// take a share: the order holds whatever the demands.
#[test]
fn an_evaluation_that_takes_a_share_starts_ahead_of_a_fixed_training() {
    let t = tiny_project(|s| {
        s.replace(
            "    foreach: train\n    needs: [preprocess]\n    threads: 1\n",
            "    foreach: train\n    needs: [preprocess]\n",
        )
    });
    assert!(!t
        .read("pipeline.yaml")
        .contains("needs: [preprocess]\n    threads: 1\n  compare"));
    each_evaluation_follows_its_training(&t);
}
