//! What the tool records and shows is true: grid axes and values that
//! would name variants after values never used, the history's metrics,
//! commit and size, predictions from stale models, exports and gc in the
//! tool's own places, time limits that overflow, and the wording of
//! reasons and refusals.

use std::fs;

use crate::common::*;

fn json(run: Run) -> serde_json::Value {
    serde_json::from_slice(&run.ok().0.stdout).expect("JSON")
}

/// The tiny study with its `variants:` replaced by `block` (YAML lines
/// under the train stage).
fn tiny_with(block: &str) -> Project {
    tiny_project(|s| {
        let variants = format!("    variants:\n{MAIN_AND_SLOW}");
        assert!(s.contains(&variants));
        s.replace(&variants, block)
    })
}

#[test]
fn overlapping_matrix_axes_are_refused() {
    let t = tiny_with(
        "    matrix:\n      plateau.patience: [1, 3]\n      plateau: {on: {factor: 0.5, patience: 2}, off: null}\n",
    );
    t.run(&["status"]).exits(2).has("pipeline.yaml:").has(
        "stage `train`: matrix axes `plateau.patience` and `plateau` both set `plateau.patience`",
    );
    let p = Project::with(
        r#"
stages:
  s:
    kind: cmd
    params: {a: {b: 0}}
    matrix:
      a.b: [1, 2]
      a: {p: {b: 3}, q: {b: 4}}
    cmd: "echo ${params.a.b} > out-${variant}.txt"
    outs: ["out-${variant}.txt"]
"#,
    );
    p.run(&["status"])
        .exits(2)
        .has("stage `s`: matrix axes `a.b` and `a` both set `a.b`");
    // Axes that touch different keys of one mapping are fine.
    let p = Project::with(
        r#"
stages:
  s:
    kind: cmd
    params: {a: {b: 0, c: 0}}
    matrix:
      a.b: [1, 2]
      a: {p: {c: 3}, q: {c: 4}}
    cmd: "echo ${params.a.b} ${params.a.c} > out-${variant}.txt"
    outs: ["out-${variant}.txt"]
"#,
    );
    p.run(&["status"]).ok().has("a.b=1+a=p");
}

#[test]
fn equal_values_spelled_differently_are_refused() {
    let t = tiny_with("    matrix:\n      weight_decay: [-0.0, 0.0, 0]\n");
    t.run(&["status"])
        .exits(2)
        .has("stage `train`: matrix `weight_decay` lists `-0.0` and `0.0`, which are the same value for the stage");
    let t = tiny_with("    matrix:\n      lr: [1, 1.0]\n");
    t.run(&["status"])
        .exits(2)
        .has("matrix `lr` lists `1` and `1.0`, which are the same value");
    let p = Project::with(
        "stages:\n  s:\n    kind: cmd\n    params: {x: 0}\n    matrix: {x: [2, 2.0]}\n    cmd: \"echo ${params.x} > o-${variant}\"\n    outs: [\"o-${variant}\"]\n",
    );
    p.run(&["status"])
        .exits(2)
        .has("matrix `x` lists `2` and `2.0`");
    // Distinct values still make distinct variants.
    let t = tiny_with("    matrix:\n      weight_decay: [0, 0.01]\n");
    t.edit_pipeline("reference: main", "reference: weight_decay=0");
    t.run(&["status"]).ok().has("train@weight_decay=0.01");
}

/// Two variants of a training that come out the same, or a variant whose
/// overrides change nothing, would compare a configuration with itself:
/// refused at the variant's line, saying which value is the default; the
/// same, naming the `-S`, when one makes a variant equal to another. A command's variants may be
/// equal (it can read its variant's name).
#[test]
fn variants_that_train_the_same_configuration_are_refused() {
    let t = tiny_with("    variants:\n      main: {}\n      no-aug: {augment: []}\n");
    let line = t
        .read("pipeline.yaml")
        .lines()
        .position(|l| l.contains("no-aug:"))
        .unwrap()
        + 1;
    t.run(&["status"])
        .exits(2)
        .has(&format!("pipeline.yaml:{line}:7: variant `no-aug` of stage `train` changes nothing: the stage's params already give augment: [] (the default)"));
    let t = tiny_with(
        "    variants:\n      main: {}\n      a: {lr: 0.01}\n      b: {lr: 0.01, augment: []}\n",
    );
    t.run(&["status"])
        .exits(2)
        .has("stage `train`: variants `a` and `b` have the same parameters");
    // With seeds, named by the variants, not their replicates.
    let t = tiny_with(
        "    seeds: [1, 2]\n    variants:\n      a: {lr: 0.01}\n      b: {lr: 0.01, augment: []}\n",
    );
    t.edit_pipeline("reference: main", "reference: a");
    t.run(&["status"])
        .exits(2)
        .has("stage `train`: variants `a` and `b` have the same parameters");
    // Distinct variants load; `-S` that makes two equal is refused.
    let t = tiny_with("    variants:\n      main: {}\n      fast: {lr: 0.01}\n");
    t.run(&["status"]).ok();
    t.run(&["status", "-S", "train.lr=0.01"])
        .exits(2)
        .has("-S train.lr=0.01: variant `fast` of stage `train` changes nothing");
    let p = Project::with(
        "stages:\n  s:\n    kind: cmd\n    params: {x: 1}\n    variants: {a: {}, b: {x: 1}}\n    cmd: \"echo $FMNIST_PIPE_VARIANT > o-${variant}\"\n    outs: [\"o-${variant}\"]\n",
    );
    p.run(&["status"]).ok();
}

/// The history pairs parameters only with metrics measured under them; a
/// model that is not fresh answers `predict` with a warning; exports and
/// gc keep to what the tool owns; `log -n 0` says the truth.
#[test]
fn what_a_study_records_and_answers_is_true() {
    let t = tiny_project(|s| s);
    t.run(&["run"]).ok();
    t.run(&["log", "-n", "0"])
        .ok()
        .lacks("no runs recorded yet")
        .has("no runs shown (-n 0); the newest of the history is run 1");

    // Change one variant, retrain it alone: its evaluation is now stale.
    t.edit_pipeline("slow: {lr: 0.0003}", "slow: {lr: 0.001}");
    // A picture for predict: stale model, warned, still answered.
    let img = image::GrayImage::from_fn(28, 28, |_, y| {
        image::Luma([if y / 3 == 2 { 200 } else { 10 }])
    });
    img.save(t.path("pic.png")).unwrap();
    let r = t.run(&["predict", "-m", "train@slow", "pic.png"]).ok();
    assert!(
        r.stderr().contains("warning: train@slow is not fresh (param lr changed (0.0003 => 0.001)); these answers come from the model it last trained"),
        "{}",
        r.stderr()
    );
    assert!(r.stdout().contains("pic.png"), "{}", r.stdout());
    let v = json(t.run(&["predict", "-m", "train@slow", "--json", "pic.png"]));
    assert_eq!(v["model"]["stale"], "param lr changed (0.0003 => 0.001)");
    t.run(&["predict", "-m", "train@slow", "--fresh", "pic.png"])
        .exits(4)
        .has("the model of train@slow is stale (param lr changed (0.0003 => 0.001))");
    let v = json(t.run(&["predict", "-m", "train@main", "--json", "pic.png"]));
    assert_eq!(v["model"]["stale"], serde_json::Value::Null);

    t.run(&["run", "train@slow"]).ok();
    let d = json(t.run(&["diff", "--json"]));
    assert_eq!(d["params"][0]["param"], "train@slow.lr");
    let slow: Vec<&serde_json::Value> = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["stage"] == "evaluate@slow")
        .collect();
    assert!(!slow.is_empty());
    for m in slow {
        assert_eq!(m["new_stale"], true, "{m}");
        assert_eq!(m["new"], serde_json::Value::Null, "{m}");
        assert_eq!(m["change"], serde_json::Value::Null, "{m}");
    }
    let text = t.run(&["diff"]).ok().stdout();
    assert!(text.contains("stale"), "{text}");
    assert!(
        text.lines()
            .filter(|l| l.contains("evaluate@slow"))
            .all(|l| l.contains("stale") && !l.contains("+0.0000")),
        "no change attributed:\n{text}"
    );
    // Once evaluated, the new metrics are recorded and compared.
    t.run(&["run"]).ok();
    let d = json(t.run(&["diff", "1", "3", "--json"]));
    let acc = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["stage"] == "evaluate@slow" && m["metric"] == "accuracy")
        .cloned()
        .unwrap();
    assert!(acc["new"].is_f64() && acc["old"].is_f64(), "{acc}");

    // Exports go only where the tool neither deletes nor owns files.
    t.run(&[
        "export",
        "train@main",
        "--format",
        "onnx",
        "-o",
        "outputs/train@main/m.onnx",
    ])
    .exits(2)
    .has("an output of stage train@main");
    t.run(&[
        "export",
        "train@main",
        "--format",
        "onnx",
        "-o",
        "cache/m.onnx",
    ])
    .exits(2)
    .has("lies inside the cache directory");
    t.run(&[
        "export",
        "train@main",
        "--format",
        "onnx",
        "-o",
        "nowhere/m.onnx",
    ])
    .exits(2)
    .stderr_is("error: nowhere: no such directory; create it, or choose another -o\n");
    t.run(&["export", "train@main", "--format", "onnx", "-o", "m.onnx"])
        .ok();
    t.run(&["run"]).ok().has("0 ran");

    // A rerun killed after its start (the record left incomplete, the
    // outputs still the last completed run's), then the variant renamed:
    // gc removes what train@slow wrote, as it is.
    let record = t.path("cache/stages/train@slow.json");
    let mut r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&record).unwrap()).unwrap();
    r["complete"] = false.into();
    r["running"] = serde_json::json!({"pid": 4194300, "host": "gone", "start_ticks": 1});
    fs::write(&record, r.to_string()).unwrap();
    t.edit_pipeline("slow: {lr: 0.001}", "slower: {lr: 0.001}");
    t.run(&["gc"])
        .ok()
        .has("removed  outputs/train@slow  (output of train@slow)")
        .lacks("kept   ");
    assert!(!t.path("outputs/train@slow").exists());
}

#[test]
fn time_limits_that_overflow_are_refused_and_slurm_forms_accepted() {
    let with_time = |time: &str| {
        Project::with(&format!(
            "stages:\n  s:\n    kind: cmd\n    cmd: \"true\"\n    resources: {{time: \"{time}\"}}\n"
        ))
    };
    for bad in [
        "144115188075855872-01:00:00",
        "99999999999999999999:00:00",
        "1-24:00:00",
    ] {
        with_time(bad)
            .run(&["status"])
            .exits(2)
            .has(&format!("time: `{bad}` is not a duration"))
            .has("`MM:SS`");
    }
    for (given, slurm) in [
        ("90:30", "01:30:30"),
        ("1-12", "1-12:00:00"),
        ("2-3:04", "2-03:04:00"),
    ] {
        with_time(given)
            .run(&["run", "--dry-run", "--executor", "slurm"])
            .ok()
            .has(&format!("--time={slurm}"));
    }
}

fn git(p: &Project, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .current_dir(p.dir())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The commit is the one the run started from; what the tool writes does
/// not make the tree dirty; an edit of the pipeline during the run is noted.
#[test]
fn the_history_records_the_commit_a_run_started_from() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::common::skip(crate::common::Lacks::Git, "git is not installed");
        return;
    }
    let p = Project::with(
        r#"
stages:
  a:
    kind: cmd
    cmd: "git -c user.name=t -c user.email=t@example.org commit -q --allow-empty -m during && echo a > out/a.txt"
    outs: [out/a.txt]
  b:
    kind: cmd
    needs: [a]
    params: {n: 1}
    cmd: "echo ${params.n} > out/b.txt"
    outs: [out/b.txt]
"#,
    );
    fs::create_dir_all(p.path("out")).unwrap();
    git(&p, &["init", "-q"]);
    git(&p, &["add", "pipeline.yaml"]);
    git(&p, &["commit", "-q", "-m", "start"]);
    let start = git(&p, &["rev-parse", "HEAD"]);
    p.run(&["run"]).ok();
    assert_ne!(
        git(&p, &["rev-parse", "HEAD"]),
        start,
        "the stage committed"
    );
    let log = json(p.run(&["log", "--json", "-n", "1"]));
    assert_eq!(log[0]["git"]["commit"], start.as_str());
    assert_eq!(
        log[0]["git"]["dirty"], false,
        "cache/ and out/ are the tool's: {log}"
    );
    assert_eq!(log[0]["pipeline_changed"], serde_json::Value::Null);

    // A file of the user's makes the tree dirty; an edit of the pipeline
    // file while the stage runs is recorded.
    p.file("notes.txt", "mine\n");
    p.edit_pipeline("{n: 1}", "{n: 2}").edit_pipeline(
        "> out/b.txt\"",
        "> out/b.txt; echo '# edited' >> pipeline.yaml\"",
    );
    p.run(&["run", "b"]).ok();
    let log = json(p.run(&["log", "--json", "-n", "1"]));
    assert_eq!(log[0]["git"]["dirty"], true);
    assert_eq!(log[0]["pipeline_changed"], true);
    p.run(&["log"]).ok().has("(pipeline edited during the run)");
}

fn many(n: usize, tag: &str) -> String {
    let mut y = String::from("settings: {jobs: 2}\nstages:\n");
    for i in 0..n {
        let t = if i == 7 { tag } else { "" };
        y.push_str(&format!(
            "  s{i}:\n    kind: cmd\n    cmd: \"echo {i}{t} > out/s{i}.txt\"\n    outs: [out/s{i}.txt]\n"
        ));
    }
    y
}

fn history_bytes(p: &Project) -> u64 {
    let mut total = fs::metadata(p.path("cache/history.jsonl")).map_or(0, |m| m.len());
    for e in fs::read_dir(p.path("cache/history"))
        .into_iter()
        .flatten()
        .flatten()
    {
        total += e.metadata().unwrap().len();
    }
    total
}

/// A run that changes one stage of 2,000 adds a few kilobytes, not the
/// whole state; `log -n 1` reads only the newest run; gc compacts.
#[test]
fn the_history_grows_by_what_changed_and_reads_from_the_end() {
    let p = Project::with(&many(2000, ""));
    fs::create_dir_all(p.path("out")).unwrap();
    p.run(&["run"]).ok();
    let before = history_bytes(&p);
    p.pipeline(&many(2000, "x"));
    p.run(&["run"]).ok().has("1 ran");
    let added = history_bytes(&p) - before;
    assert!(added < 20_000, "one changed stage added {added} bytes");
    p.run(&["diff"])
        .ok()
        .has("s7.cmd")
        .has("\"echo 7 > out/s7.txt\"");

    // A line no reader can parse, at the start: only a reader that reaches
    // it says so.
    let h = p.read("cache/history.jsonl");
    fs::write(
        p.path("cache/history.jsonl"),
        format!("{{\"id\": 0, \"torn\n{h}"),
    )
    .unwrap();
    p.run(&["log", "-n", "1"]).ok().lacks("could not be read");
    p.run(&["log"])
        .ok()
        .has("1 line(s) of the history could not be read");
    p.run(&["gc"])
        .ok()
        .has("compacted  the run history: 2 runs kept, 1 unreadable lines dropped");
    p.run(&["log"]).ok().lacks("could not be read");
    p.run(&["diff", "1", "2"]).ok().has("s7.cmd");
}

/// Runs recorded in the first format (the whole state inline) are read as
/// they are, and gc rewrites them compactly with the same content.
#[test]
fn first_format_records_are_read_and_rewritten() {
    let p = example();
    fs::create_dir_all(p.path("cache")).unwrap();
    let old = |id: u64, lr: f64| {
        serde_json::json!({
            "id": id, "when": "2026-11-25T00:00:00Z", "git": null,
            "ran": [{"stage": "train@fast", "reason": "never run", "outcome": "done"}],
            "params": {"train@fast": {"lr": lr}},
            "metrics": {"evaluate@fast": {"accuracy": lr * 10.0}}
        })
        .to_string()
    };
    fs::write(
        p.path("cache/history.jsonl"),
        format!("{}\n{}\n", old(1, 0.01), old(2, 0.02)),
    )
    .unwrap();
    let before = p.run(&["diff", "1", "2", "--json"]).ok().stdout();
    assert!(before.contains("\"param\": \"train@fast.lr\""), "{before}");
    p.run(&["run"]).ok();
    assert_eq!(json(p.run(&["log", "--json", "-n", "1"]))[0]["id"], 3);
    p.run(&["gc"]).ok().has("2 runs rewritten compactly");
    assert_eq!(p.run(&["diff", "1", "2", "--json"]).ok().stdout(), before);
    assert!(!p.read("cache/history.jsonl").contains("\"params\""));
}

#[test]
fn reasons_and_refusals_say_what_happened() {
    // Every removed input is named, not the first.
    let p = Project::with(
        r#"
stages:
  train:
    kind: cmd
    variants: {a: {}, b: {}, c: {}, d: {}, e: {}}
    cmd: "echo ${variant} > out-${variant}.txt"
    outs: ["out-${variant}.txt"]
  compare:
    kind: cmd
    needs: [train]
    cmd: "cat out-*.txt > table.txt"
    outs: [table.txt]
"#,
    );
    p.run(&["run"]).ok();
    p.edit_pipeline("{a: {}, b: {}, c: {}, d: {}, e: {}}", "{a: {}}");
    p.run(&["status"])
        .ok()
        .has("dirty     compare  4 inputs: train@b, train@c, train@d and 1 more removed");
    p.run(&["run"]).ok();
    p.edit_pipeline("{a: {}}", "{a: {}, b: {}, c: {}}");
    p.run(&["status"])
        .ok()
        .has("compare  inputs train@b and train@c added");

    // A replicate's name too long because of its seed says so.
    let long = "v".repeat(96);
    Project::with(&format!(
        "stages:\n  s:\n    kind: cmd\n    variants: {{{long}: {{}}}}\n    seeds: [1]\n    cmd: \"true\"\n"
    ))
    .run(&["status"])
    .exits(2)
    .has(&format!("`{long}` fits, but its seed replicate adds `~seed1` (6 characters): shorten the variant's name"))
    .lacks("matrix values");

    // `foreach` with `seeds`: refused with the reason and what to do.
    Project::with(
        "stages:\n  t:\n    kind: cmd\n    variants: {a: {}}\n    cmd: \"true\"\n  e:\n    kind: cmd\n    foreach: t\n    seeds: [1, 2]\n    cmd: \"true\"\n",
    )
    .run(&["status"])
    .exits(2)
    .has("stage `e` has `seeds` and `foreach: t`")
    .has("put `seeds` on `t`")
    .lacks("no variants to replicate");
}

/// `seeds: [1]` trains each variant once: the table's note asks for more
/// seeds, not for `seeds:`.
#[test]
fn one_seed_notes_ask_for_more_seeds() {
    let t = tiny_project(|s| s.replace("      lr: 0.003\n", "      lr: 0.003\n    seeds: [1]\n"));
    t.run(&["run"])
        .ok()
        .has("List more seeds in `seeds:`")
        .lacks("Add `seeds:` to the train stage");
}

/// Parameters a kind holds as f32 are shown as written, not widened
/// (`0.0005`, not `0.0004999999873689376`), in `status --json` and `diff`.
#[test]
fn parameters_are_shown_as_written() {
    let t = crate::common::tiny_project(|s| s);
    t.run(&["run", "train@main"]).ok();
    t.edit_pipeline("lr: 0.003", "lr: 0.0005");
    let json = t.run(&["status", "--json", "train@main"]).ok().stdout();
    assert!(json.contains("\"old\": 0.003,"), "{json}");
    assert!(json.contains("\"new\": 0.0005"), "{json}");
    assert!(!json.contains("0.00300000"), "{json}");
}

/// Off a terminal (a pipe, a log, CI), a training prints a line per epoch
/// without `-v`, with its validation accuracy; its log keeps them too.
#[test]
fn a_training_piped_to_a_file_prints_a_line_per_epoch() {
    let t = crate::common::tiny_project(|s| s.replace("epochs: 1", "epochs: 2"));
    let out = t.run(&["run", "train@main"]).ok().stdout();
    for e in ["epoch 1/2: train loss ", "epoch 2/2: train loss "] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("train@main: {e}")))
            .unwrap_or_else(|| panic!("no `{e}` line in\n{out}"));
        assert!(
            line.contains(", val acc ") && line.contains("%, lr 0.003, ") && line.contains(" ETA "),
            "{line}"
        );
    }
    let log = t.read("cache/logs/train@main.log");
    assert!(log.contains("train@main: epoch 2/2: train loss "), "{log}");
}

/// Printed tables fit the width COLUMNS gives: the least important columns
/// go first (a note names them), then cells wrap; off a terminal without
/// COLUMNS, the whole table.
#[test]
fn tables_fit_the_terminal() {
    let t = crate::common::tiny_project(|s| s);
    t.run(&["run"]).ok();
    let whole = t.run(&["show"]).ok().stdout();
    assert!(whole.contains("infer img/s"), "{whole}");
    for width in [100usize, 80, 60] {
        let out = crate::common::Run(
            t.cmd(&["show"])
                .env("COLUMNS", width.to_string())
                .output()
                .unwrap(),
        )
        .ok()
        .stdout();
        let widest = out.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            widest <= width,
            "COLUMNS={width}, a line of {widest}:\n{out}"
        );
        assert!(
            out.contains(&format!("Left out to fit {width} columns: infer img/s")),
            "{out}"
        );
        let log = crate::common::Run(
            t.cmd(&["log"])
                .env("COLUMNS", width.to_string())
                .output()
                .unwrap(),
        )
        .ok()
        .stdout();
        assert!(log.lines().all(|l| l.chars().count() <= width), "{log}");
    }
}

/// `-S STAGE.KEY=VALUE` sets a parameter for one command; the history
/// records it; without it, the file's values come back (from the cache).
#[test]
fn a_parameter_set_on_the_command_line_runs_and_is_recorded() {
    let p = example();
    p.run(&["run"]).ok();
    p.run(&["run", "-S", "train.epochs=5"])
        .ok()
        .has("running  train@slow  (param epochs changed (3 => 5))");
    assert_eq!(p.read("out/model-slow.txt"), "0.001 5\n");
    assert_eq!(p.read("out/model-fast.txt"), "0.01 5\n");
    p.run(&["log"]).ok().has("(-S train.epochs=5)");
    assert!(p
        .run(&["log", "--json"])
        .ok()
        .stdout()
        .contains("\"overrides\": [\n      \"train.epochs=5\"\n    ]"));
    // The file still says 3: stale without -S, fresh with it.
    assert_eq!(p.state_of("train@slow").0, "dirty");
    let fresh = p.run(&["status", "-S", "train.epochs=5"]).ok().stdout();
    assert!(fresh.contains("0 dirty"), "{fresh}");
    p.run(&["run"]).ok().has("0 ran").has("restored train@slow");
    assert_eq!(p.read("out/model-slow.txt"), "0.001 3\n");
    // One variant; a dotted key creates the mapping.
    p.run(&["run", "-S", "train@fast.lr=0.5", "--dry-run"])
        .ok()
        .has("train@fast")
        .lacks("train@slow ");
    p.run(&["run", "-S", "train.opt.beta=0.9"])
        .ok()
        .has("running  train@fast  (param opt added (= {\"beta\":0.9}))");
    // A variant may only change what its stage declares, as in the file.
    p.run(&["run", "-S", "train@fast.opt.beta=0.9"])
        .exits(2)
        .has(
        "variant `fast` of stage `train` overrides `opt`, which is not a parameter of the stage",
    );
    for (bad, why) in [
        (
            "nosuch.x=1",
            "-S nosuch.x=1: no stage of the pipeline starts `nosuch.x`",
        ),
        ("train.lr", "-S train.lr: no `=`"),
        (
            "train@nope.lr=1",
            "stage `train` declares no variant that starts `nope.lr`",
        ),
        ("train.lr=", "no value after `=`"),
        // Not null: the file refuses them too.
        (
            "train.lr=.inf",
            "-S train.lr=.inf: `.inf` is not a finite number",
        ),
        (
            "train.lr=.nan",
            "-S train.lr=.nan: `.nan` is not a finite number",
        ),
        ("train.lr=[1, -.inf]", "is not a finite number"),
    ] {
        p.run(&["run", "-S", bad])
            .exits(2)
            .has(why)
            .lacks("pipeline.yaml:");
    }
}

/// `-S` addresses one grid point, one seed replicate and one instance of
/// a `foreach` stage; an override every variant would ignore is refused.
#[test]
fn an_override_reaches_one_grid_point_and_is_never_ignored() {
    let p = crate::common::Project::with(
        "stages:\n  s:\n    kind: cmd\n    params: {lr: 0.1, epochs: 1}\n    matrix: {lr: [0.01, 0.001]}\n    seeds: [1, 2]\n    cmd: \"echo ${params.lr} ${params.epochs} > out-${variant}.txt\"\n    outs: [\"out-${variant}.txt\"]\n  e:\n    kind: cmd\n    foreach: s\n    params: {k: 1}\n    cmd: \"echo ${params.k} > e-${variant}.txt\"\n    outs: [\"e-${variant}.txt\"]\n",
    );
    p.run(&[
        "run",
        "-S",
        "s@lr=0.01~seed1.epochs=2",
        "-S",
        "e@lr=0.001~seed2.k=7",
    ])
    .ok()
    .has("8 ran");
    assert_eq!(p.read("out-lr=0.01~seed1.txt"), "0.01 2\n");
    assert_eq!(p.read("out-lr=0.01~seed2.txt"), "0.01 1\n");
    assert_eq!(p.read("e-lr=0.001~seed2.txt"), "7\n");
    assert_eq!(p.read("e-lr=0.001~seed1.txt"), "1\n");
    // The history lists what ran with them.
    p.run(&["log"]).ok().has("-S s@lr=0.01~seed1.epochs=2");
    for (bad, why) in [
        (
            "s.lr=0.5",
            "-S s.lr=0.5: the matrix of `s` varies `lr`, so every grid point sets it and this would change nothing",
        ),
        (
            "s@lr=0.01~seed1.lr=0.5",
            "`s@lr=0.01~seed1` is named by its value of `lr`, which the matrix varies",
        ),
        (
            "s@lr=0.02~seed1.epochs=3",
            "stage `s` declares no variant that starts `lr=0.02~seed1.epochs` (its variants: lr=0.01~seed1,",
        ),
        ("s.seed=3", "-S s.seed=3: stage `s` sets `seed` in params and `seeds` too"),
        // The value's `=` is not taken into the key.
        ("s.lr=a.b=c", "-S s.lr=a.b=c: the matrix of `s` varies `lr`"),
    ] {
        p.run(&["run", "-S", bad]).exits(2).has(why).lacks("pipeline.yaml:");
    }
    // Every declared variant sets it: refused too.
    let q = crate::common::example();
    q.edit_pipeline("      slow: {}\n", "      slow: {lr: 0.001}\n");
    q.run(&["run", "-S", "train.lr=0.5"])
        .exits(2)
        .has("every variant of `train` sets `lr` itself, so this would change nothing; set one variant's instead: -S train@VARIANT.lr=VALUE");
    // An instance of a `foreach` stage changes what its stage declares.
    q.run(&["run", "-S", "evaluate@fast.x=1"])
        .exits(2)
        .has("-S evaluate@fast.x=1: variant `fast` of stage `evaluate` overrides `x`, which is not a parameter of the stage");
}

/// A built-in stage's parameter refused because of `-S` names the
/// option, not a line of the file; one the file sets wrong still names
/// its line.
#[test]
fn an_override_that_is_refused_names_the_option() {
    let t = crate::common::tiny_project(|s| s);
    t.run(&["status", "-S", "train.epochs=2", "-S", "train.eps=-1"])
        .exits(2)
        .stderr_is("error: -S train.eps=-1: stage `train`: invalid params: eps must be a positive number (Adam divides by the root of its second moment plus eps), got -1\n")
        .lacks("pipeline.yaml");
    t.edit_pipeline("      lr: 0.003\n", "      lr: 0.003\n      eps: 0\n");
    t.run(&["status", "-S", "train.epochs=2"])
        .exits(2)
        .has("pipeline.yaml:")
        .has("eps must be a positive number");
}

/// The printed table says what each variant changes from the reference.
#[test]
fn the_table_says_what_each_variant_changes() {
    let t = crate::common::tiny_project(|s| s);
    t.run(&["run"])
        .ok()
        .has("What each variant changes from main (as the pipeline says now): slow: lr 0.0003.");
    t.run(&["show"]).ok().has("slow: lr 0.0003.");
}
