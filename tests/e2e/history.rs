//! Run history: `log` lists the runs that ran something, `diff` shows what
//! changed between two of them, parameters and metrics.

use std::fs;

use crate::common::{tiny_study, write_data, Project};

fn study(t: &Project, slow_lr: &str) {
    let files = write_data(&t.dir().join("data"));
    let variants = format!("      main: {{}}\n      slow: {{lr: {slow_lr}}}\n");
    fs::write(
        t.dir().join("pipeline.yaml"),
        tiny_study(&files, &variants, "main"),
    )
    .unwrap();
}

#[test]
fn log_and_diff_after_a_parameter_change() {
    let t = Project::new();
    study(&t, "0.0003");
    t.run(&["log"]).ok().has("no runs recorded yet");
    t.run(&["diff"])
        .exits(2)
        .has("diff compares two runs and the history has 0");
    t.run(&["run"]).ok();
    // A run with nothing to do is not recorded.
    t.run(&["run"]).ok().has("0 ran");
    study(&t, "0.001");
    t.run(&["run"]).ok();

    let log = t.run(&["log"]).ok().stdout();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("│ ")).collect();
    assert_eq!(lines.len(), 3, "a header and two runs:\n{log}");
    assert!(lines[1].starts_with("│   2 "), "newest first:\n{log}");
    assert!(
        lines[1].contains(" 3 ┆ train@slow, evaluate@slow, compare"),
        "{log}"
    );
    assert!(
        lines[2].contains(" 7 ┆ download, preprocess, train@"),
        "{log}"
    );

    let d: serde_json::Value =
        serde_json::from_slice(&t.run(&["diff", "--json"]).ok().stdout).unwrap();
    assert_eq!(d["old_run"], 1);
    assert_eq!(d["new_run"], 2);
    let params = d["params"].as_array().unwrap();
    assert_eq!(params.len(), 1, "{params:?}");
    assert_eq!(params[0]["param"], "train@slow.lr");
    assert_eq!(params[0]["old"], 0.0003);
    assert_eq!(params[0]["new"], 0.001);
    let metric = |stage: &str, m: &str| {
        d["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["stage"] == stage && x["metric"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("{stage} {m}"))
    };
    let acc = |stage: &str| {
        let m: serde_json::Value =
            serde_json::from_str(&t.read(&format!("outputs/{stage}/metrics.json"))).unwrap();
        m["metrics"]["accuracy"].as_f64().unwrap()
    };
    let slow = metric("evaluate@slow", "accuracy");
    assert_eq!(slow["new"].as_f64().unwrap(), acc("evaluate@slow"));
    let change = slow["new"].as_f64().unwrap() - slow["old"].as_f64().unwrap();
    assert!((slow["change"].as_f64().unwrap() - change).abs() < 1e-12);
    let main = metric("evaluate@main", "accuracy");
    assert_eq!(main["change"], 0.0, "main did not change");

    let md = t.run(&["diff", "1", "2", "--md"]).ok().stdout();
    assert!(md.contains("| train@slow.lr | 0.0003 | 0.001 |"), "{md}");
    assert!(md.contains("| evaluate@slow | accuracy |"), "{md}");
    t.run(&["diff", "1", "7"])
        .exits(2)
        .has("no run 7 in the history (runs 1 to 2)");
    // The record names the commit where there is one: here, none.
    let rec: serde_json::Value =
        serde_json::from_slice(&t.run(&["log", "--json", "-n", "1"]).ok().stdout).unwrap();
    assert_eq!(rec[0]["id"], 2);
    assert_eq!(
        rec[0]["ran"][0]["reason"],
        "param lr changed (0.0003 => 0.001)"
    );
}

#[test]
fn a_history_that_cannot_be_written_costs_the_record_not_the_run() {
    let t = Project::new();
    study(&t, "0.0003");
    // Something in the way of the history file.
    fs::create_dir_all(t.path("cache/history.jsonl")).unwrap();
    let out = t.run(&["run"]).ok().text();
    assert!(out.contains("7 ran, 0 cached, 0 failed"), "{out}");
    assert!(
        out.contains("this run is not in the history")
            && out.contains("cache/history.jsonl")
            && out.contains("a writable file"),
        "{out}"
    );
}

/// After adding `seeds:` to a two-variant study, `diff` reads by variant:
/// the stages added and removed as counts and names, each variant's seeds
/// taken together, accuracies in percent; `--all` has every stage.
#[test]
fn diff_after_adding_seeds_reads_by_variant() {
    let t = Project::new();
    study(&t, "0.0003");
    t.run(&["run"]).ok();
    t.edit_pipeline(
        "    kind: train\n",
        "    kind: train\n    seeds: [1, 2, 3]\n",
    );
    t.run(&["run"]).ok();
    let out = t.run(&["diff"]).ok().stdout();
    assert!(
        out.lines().count() < 60,
        "{} lines:\n{out}",
        out.lines().count()
    );
    assert!(
        out.contains("Stages, run 1 → run 2: 12 added (evaluate@main~seed1, "),
        "{out}"
    );
    assert!(
        out.contains("4 removed (evaluate@main, evaluate@slow, train@main, train@slow)"),
        "{out}"
    );
    // One row per variant for the seed, not one per replicate.
    let seed_rows: Vec<&str> = out.lines().filter(|l| l.contains(".seed ")).collect();
    assert_eq!(seed_rows.len(), 2, "{out}");
    assert!(
        seed_rows[0].contains("42") && seed_rows[0].contains("[1,2,3]"),
        "{out}"
    );
    let accuracy = out
        .lines()
        .find(|l| l.contains("evaluate@main") && l.contains(" accuracy "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        accuracy.contains('%') && accuracy.contains(" pp"),
        "{accuracy}"
    );
    let all = t.run(&["diff", "--all"]).ok().stdout();
    assert!(all.lines().count() > out.lines().count(), "{all}");
    assert!(all.contains("evaluate@main~seed2"), "{all}");
}
