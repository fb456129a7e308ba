//! run's scheduling and targets, dag, show, gc and bench.

use crate::common::*;
use std::fs;

#[test]
fn independent_stages_run_in_parallel() {
    // Each stage waits for the other's marker: this only finishes when both
    // run at the same time.
    let p = Project::with(
        r#"
stages:
  a:
    kind: cmd
    cmd: "touch a.mark; i=0; while [ ! -f b.mark ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; test -f b.mark && touch a.out"
    outs: [a.out]
  b:
    kind: cmd
    cmd: "touch b.mark; i=0; while [ ! -f a.mark ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; test -f a.mark && touch b.out"
    outs: [b.out]
"#,
    );
    p.run(&["run", "-j", "2"]).ok();
}

#[test]
fn a_target_runs_with_what_it_needs_and_nothing_else() {
    let p = example();
    p.run(&["run", "train@slow"]).ok();
    assert_eq!(ran(&p), ["prep", "train@slow"]);
}

#[test]
fn force_reruns_a_fresh_stage_and_force_all_every_stage() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    p.run(&["run", "--force", "prep", "prep"]).ok();
    assert_eq!(ran(&p), ["prep"]);
    p.run(&["run", "--force-all"]).ok();
    assert_eq!(ran(&p).len(), 6);
}

#[test]
fn an_unknown_target_is_refused_with_a_suggestion() {
    example()
        .run(&["run", "trian"])
        .exits(2)
        .stdout_is("")
        .stderr_is("error: pipeline.yaml: no stage named `trian`\n  help: did you mean `train`?\n");
}

#[test]
fn dag_draws_the_tree_and_graphviz() {
    let p = example();
    p.run(&["dag"]).ok().stdout_is(
        "prep (cmd)
  train@fast (cmd)
    evaluate@fast (cmd)
      compare (cmd)
  train@slow (cmd)
    evaluate@slow (cmd)
      compare (cmd) (see above)
",
    );
    p.run(&["dag", "--dot"])
        .ok()
        .has("  \"train@fast\" -> \"evaluate@fast\";\n")
        .has("  \"evaluate@slow\" -> \"compare\";\n");
}

#[test]
fn show_and_bench_explain_what_is_missing() {
    let p = example();
    let r = p.run(&["show"]).ok();
    assert!(
        r.stdout()
            .contains("the pipeline has no compare or confirm stage"),
        "{}",
        r.stdout()
    );
    let r = p.run(&["bench", "--data", "missing.fmnd", "--no-torch"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("missing.fmnd: cannot read"),
        "{}",
        r.stderr()
    );
    let r = p.run(&["bench", "--threads", "0"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr()
            .contains("--threads, --batches and --repeat must be at least 1"),
        "{}",
        r.stderr()
    );
}

#[test]
fn bench_refuses_a_file_that_is_not_a_dataset_without_reading_it() {
    let p = example();
    let r = p.run(&["bench", "--data", "/dev/zero", "--no-torch"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("/dev/zero: not a regular file"),
        "{}",
        r.stderr()
    );
    p.file("big.fmnd", "\0".repeat(1 << 20));
    let r = p.run(&["bench", "--data", "big.fmnd", "--no-torch"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("bad magic"), "{}", r.stderr());
}

/// A renamed variant leaves a record and outputs behind: status says so,
/// gc removes them (a dry run first), and keeps what it cannot vouch for.
#[test]
fn orphans_are_shown_and_gc_removes_only_what_they_wrote() {
    let p = example();
    p.run(&["run"]).ok();
    fs::write(
        p.path("pipeline.yaml"),
        EXAMPLE.replace("      slow: {}\n", "      slower: {}\n"),
    )
    .unwrap();
    let out = p.run(&["status"]).ok().stdout();
    assert!(
        out.lines().any(|l| l.starts_with("orphaned  train@slow ") && l.ends_with("  no longer in the pipeline; its record and outputs (out/model-slow.txt) remain; `fmnist-pipe gc` removes them")),
        "{out}"
    );
    assert!(out.contains(", 2 orphaned"), "{out}");
    p.run(&["run"]).ok();
    // One orphan output edited by hand: kept.
    p.file("out/eval-slow.txt", "my notes\n");
    let objects_before = objects(&p).len();
    let dry = p.run(&["gc", "--dry-run"]).ok().stdout();
    assert!(
        dry.contains("would remove  out/model-slow.txt  (output of train@slow)"),
        "{dry}"
    );
    assert!(
        p.path("out/model-slow.txt").exists(),
        "a dry run removes nothing"
    );
    assert_eq!(objects(&p).len(), objects_before);
    let out = p.run(&["gc"]).ok().stdout();
    assert!(
        out.contains("removed  record and log of train@slow"),
        "{out}"
    );
    assert!(
        out.contains(
            "kept          out/eval-slow.txt  (it no longer holds what evaluate@slow wrote"
        ),
        "{out}"
    );
    assert!(!p.path("out/model-slow.txt").exists());
    assert_eq!(p.read("out/eval-slow.txt"), "my notes\n");
    assert!(!p.path("cache/stages/train@slow.json").exists());
    assert_eq!(
        objects(&p).len(),
        objects_before,
        "the remembered runs keep their objects"
    );
    assert!(out.contains("remembered runs and their objects"), "{out}");
    let out = p.run(&["gc", "--runs"]).ok().stdout();
    assert!(
        out.contains("remembered runs that no project's last run is"),
        "{out}"
    );
    assert!(
        objects(&p).len() < objects_before,
        "unreferenced objects removed: {out}"
    );
    // The pipeline is intact: nothing to run, nothing orphaned.
    assert!(p.status().iter().all(|r| r.1 == "fresh"));
    let again = p.run(&["gc"]).ok().stdout();
    assert!(again.contains("nothing to remove"), "{again}");
}

/// Anchors kept under `anchors:` and merged with `<<` into params and
/// variants: the stage's own keys win, and `<<` is not a parameter.
#[test]
fn merge_keys_fill_params_and_variants() {
    let p = Project::with(
        r#"
anchors:
  base: &base {lr: 0.1, epochs: 3, batch: 64}
  fast: &fast {lr: 0.5}
stages:
  train:
    kind: cmd
    params:
      <<: *base
      epochs: 5
    variants:
      slow: {}
      fast: {<<: [*fast, *base], batch: 32}
    cmd: "echo ${params.lr} ${params.epochs} ${params.batch} > out-${variant}.txt"
    outs: ["out-${variant}.txt"]
"#,
    );
    p.run(&["run"]).ok();
    assert_eq!(p.read("out-slow.txt"), "0.1 5 64\n");
    // Merged into the variant, base's epochs are an override too; of two
    // merged mappings the first wins (fast's lr).
    assert_eq!(p.read("out-fast.txt"), "0.5 3 32\n");
    // A change in the anchor is a change of the params that use it.
    let text = p.read("pipeline.yaml").replace("lr: 0.1,", "lr: 0.2,");
    p.pipeline(&text);
    p.run(&["status"])
        .ok()
        .has("dirty  train@slow  param lr changed (0.1 => 0.2)")
        .has("fresh  train@fast");
}
