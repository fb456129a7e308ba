//! What reruns, what is restored, and why: the example pipeline of README.

use crate::common::*;
use std::fs;
use std::path::Path;

#[test]
fn a_first_run_runs_everything_then_nothing() {
    let p = example();
    assert!(p
        .status()
        .iter()
        .all(|r| r.1 == "new" && r.2.as_deref() == Some("never run")));
    p.run(&["run"]).ok().has("6 ran, 0 cached, 0 failed");
    assert_eq!(ran(&p).len(), 6);
    assert_eq!(p.read("data/sorted.txt"), "a\nb\nc\n");
    assert_eq!(p.read("out/table.txt"), "0.01 3\n0.001 3\n");
    assert!(p.status().iter().all(|r| r.1 == "fresh" && r.2.is_none()));
    p.run(&["run"])
        .ok()
        .stdout_untimed_is("0 ran, 6 cached, 0 failed in <time>\n");
    assert!(ran(&p).is_empty());
}

/// A parameter of one variant: that variant and what depends on it, said
/// by status and dry run, and nothing else reruns.
#[test]
fn a_changed_parameter_reruns_its_variant_and_what_follows() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    p.pipeline(&EXAMPLE.replace("fast: {lr: 0.01}", "fast: {lr: 0.02}"));
    p.run(&["status"]).ok().stdout_is(
        "fresh  prep
dirty  train@fast     param lr changed (0.01 => 0.02)
fresh  train@slow
dirty  evaluate@fast  input train@fast is stale
fresh  evaluate@slow
dirty  compare        input evaluate@fast is stale
3 fresh, 0 new, 3 dirty
",
    );
    p.run(&["run", "--dry-run"]).ok().stdout_is(
        "would run  train@fast  (param lr changed (0.01 => 0.02))
would run  evaluate@fast  (input train@fast is stale)
would run  compare  (input evaluate@fast is stale)
",
    );
    assert!(ran(&p).is_empty(), "a dry run runs nothing");
    p.run(&["run"]).ok();
    assert_eq!(ran(&p), ["compare", "evaluate@fast", "train@fast"]);
}

/// prep's output changes, so train reruns; train's outputs are the same
/// bytes as before, so nothing after it does.
#[test]
fn a_changed_dep_reruns_its_stage_and_stops_where_outputs_are_unchanged() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    p.file("data/raw.txt", "z\ny\n");
    assert_eq!(
        p.state_of("prep").1.as_deref(),
        Some("dep data/raw.txt changed")
    );
    p.run(&["run"]).ok();
    assert_eq!(ran(&p), ["prep", "train@fast", "train@slow"]);
}

#[test]
fn same_bytes_from_upstream_do_not_rerun_downstream() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    // Same lines, another order: prep reruns, its output is identical.
    p.file("data/raw.txt", "a\nc\nb\n");
    p.run(&["run"]).ok();
    assert_eq!(ran(&p), ["prep"]);
}

#[test]
fn deleted_output_is_restored_from_cache_without_rerunning() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    fs::remove_file(p.path("out/model-fast.txt")).unwrap();
    assert_eq!(
        p.state_of("train@fast").1.as_deref(),
        Some("output out/model-fast.txt missing (will be restored from cache)")
    );
    let dry = p.run(&["run", "--dry-run"]).ok().stdout();
    assert!(dry.contains("would restore  train@fast"), "{dry}");
    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("restored train@fast"), "{out}");
    assert!(ran(&p).is_empty());
    assert_eq!(p.read("out/model-fast.txt"), "0.01 3\n");
}

#[test]
fn several_changed_parameters_are_all_named() {
    let p = example();
    p.run(&["run"]).ok();
    fs::write(
        p.path("pipeline.yaml"),
        EXAMPLE.replace("fast: {lr: 0.01}", "fast: {lr: 0.02, epochs: 4}"),
    )
    .unwrap();
    assert_eq!(
        p.state_of("train@fast").1.as_deref(),
        Some("params epochs changed (3 => 4), lr changed (0.01 => 0.02)")
    );
    // The same reason as a structure, beside the sentence.
    let out = p.run(&["status", "--json"]).ok().stdout();
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["stage"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("train@fast")["why"],
        serde_json::json!({"kind": "params_changed", "changes": [
            {"path": "epochs", "old": 3, "new": 4},
            {"path": "lr", "old": 0.01, "new": 0.02}
        ]})
    );
    assert_eq!(
        row("evaluate@fast")["why"],
        serde_json::json!({"kind": "upstream_stale", "stage": "train@fast"})
    );
    assert_eq!(row("prep")["why"], serde_json::Value::Null);
    assert_eq!(row("prep")["reason"], serde_json::Value::Null);
}

fn corrupt(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, "garbage").unwrap();
}

#[test]
fn corrupt_or_deleted_cache_object_is_detected_and_rebuilt() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    let hash = blake3::hash(b"a\nb\nc\n").to_hex().to_string();
    let obj = objects(&p)
        .into_iter()
        .find(|o| o.to_string_lossy().ends_with(&hash[2..]))
        .unwrap();
    corrupt(&obj);
    fs::remove_file(p.path("data/sorted.txt")).unwrap();
    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("corrupt"), "{out}");
    assert_eq!(ran(&p), ["prep"], "rebuilt, not restored from a bad object");
    assert_eq!(p.read("data/sorted.txt"), "a\nb\nc\n");
    assert_eq!(
        fs::read(&obj).unwrap(),
        b"a\nb\nc\n",
        "the object was rewritten"
    );

    // A deleted object: the stage reruns.
    fs::remove_file(&obj).unwrap();
    fs::remove_file(p.path("data/sorted.txt")).unwrap();
    assert_eq!(
        p.state_of("prep").1.as_deref(),
        Some("output data/sorted.txt missing")
    );
    p.run(&["run"]).ok();
    assert_eq!(ran(&p), ["prep"]);
    assert!(obj.exists());
}
