//! `search:` and `confirm`: trials as cached stages, early stopping that
//! pauses and promotes, a search killed and resumed or given more trials,
//! the finalists confirmed on fresh seeds; and bad declarations refused.

use crate::common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

/// A search of the shallow CNN on 1,000 real training images: `trials`
/// trials of `epochs` epochs, early stopping at epoch 1, and a confirm
/// stage with `confirm` (its params) when given.
pub(crate) fn searching(
    data: &Path,
    trials: usize,
    epochs: usize,
    confirm: Option<&str>,
) -> String {
    let mut y = format!(
        r#"settings:
  jobs: 2
stages:
  download:
    kind: download
    params: {{sources: ["{}"]}}
  preprocess:
    kind: preprocess
    needs: [download]
    params: {{validation: 500, limit: {{train: 1000, test: 1000}}}}
  train:
    kind: train
    needs: [preprocess]
    params: {{model: shallow-cnn, epochs: {epochs}, augment: []}}
    search:
      space:
        lr: {{loguniform: [0.0003, 0.01]}}
        label_smoothing: {{choice: [0, 0.1]}}
        schedule: {{choice: {{cosine: {{cosine: {{warmup_epochs: 1}}}}, plateau: {{plateau: {{factor: 0.5, patience: 1}}}}}}}}
      sampler: sobol
      trials: {trials}
      seed: 7
      early_stop: {{rungs: [1], keep: 0.5}}
"#,
        data.display()
    );
    if let Some(c) = confirm {
        y.push_str(&format!(
            "  confirm:\n    kind: confirm\n    needs: [train]\n    params: {c}\n"
        ));
    }
    y
}

fn json(t: &Project, rel: &str) -> Value {
    serde_json::from_str(&t.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Each trial's validation accuracies, by trial.
pub(crate) fn curves(t: &Project) -> Vec<(String, Vec<f64>, bool)> {
    json(t, "outputs/train@search/search.json")["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["trial"].as_str().unwrap().to_string(),
                r["val_acc"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect(),
                r["complete"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `started  <stage>  (<reason>)` lines: (stage, reason).
fn started(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("running  "))
        .filter_map(|l| {
            let (stage, rest) = l.split_once("  (")?;
            let reason = rest.split(')').next()?;
            Some((stage.to_string(), reason.to_string()))
        })
        .collect()
}

/// The shorter of two runs of one trial is the start of the longer, bit
/// for bit: a trial's first epochs do not depend on where it paused.
pub(crate) fn same_prefix(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[test]
fn a_search_pauses_at_its_rung_promotes_the_best_and_reports_every_trial() {
    let Some(data) = real_data() else { return };
    let t = Project::new();
    t.pipeline(&searching(data, 8, 2, None));
    // Before it runs, each trial is a stage with its parameters.
    let dry = t.run(&["run", "--dry-run"]).ok().stdout();
    for k in 1..=8 {
        assert!(dry.contains(&format!("train@trial-0{k}")), "{dry}");
    }
    assert!(dry.contains("(never run)  [label_smoothing "), "{dry}");
    let tree = t.run(&["dag"]).ok().stdout();
    let line = tree
        .lines()
        .find(|l| l.trim_start().starts_with("train@trial-03 "))
        .unwrap_or_else(|| panic!("{tree}"));
    assert!(
        line.contains("[label_smoothing ")
            && line.contains(", lr 0.")
            && line.contains(", schedule "),
        "{line}"
    );
    let (_, reason) = t.state_of("train@trial-03");
    assert_eq!(reason.as_deref(), Some("never run"));
    let out = t.run(&["run"]).ok().stdout();
    let runs = started(&out);
    // 8 trials to epoch 1; the best half (4) at least promoted to epoch 2
    // (asynchronously, one promoted early may fall out of the top later).
    let promoted: Vec<&(String, String)> = runs
        .iter()
        .filter(|(_, r)| r.starts_with("promoted"))
        .collect();
    assert!((4..8).contains(&promoted.len()), "{out}");
    assert!(promoted
        .iter()
        .all(|(_, r)| r == "promoted by the search at epoch 1/2: trains on to epoch 2"));
    let c = curves(&t);
    assert_eq!(c.len(), 8);
    assert_eq!(c.iter().filter(|x| x.2).count(), promoted.len(), "{c:?}");
    // The best four at the rung are among them.
    let mut at_rung: Vec<(f64, bool)> = c.iter().map(|x| (x.1[0], x.2)).collect();
    at_rung.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert!(at_rung[..4].iter().all(|x| x.1), "{at_rung:?}");
    let r = json(&t, "outputs/train@search/search.json");
    assert_eq!(r["epochs_trained"], 8 + promoted.len());
    assert_eq!(r["epochs_without_early_stopping"], 16);
    assert_eq!(r["ranking"].as_array().unwrap().len(), promoted.len());
    assert!(t.path("outputs/train@search/index.html").is_file());
    // Nothing to do again; status says each trial is fresh.
    let again = t.run(&["run"]).ok().stdout();
    assert!(started(&again).is_empty(), "{again}");
    assert!(t
        .status()
        .iter()
        .all(|(s, state, _)| state == "fresh" || !s.starts_with("train")));

    // More trials: the first 8 stay as they are; only the new ones train,
    // and what they change at the rung is promoted.
    t.edit_pipeline("trials: 8", "trials: 12");
    let out = t.run(&["run"]).ok().stdout();
    for (stage, reason) in started(&out) {
        if reason == "never run" {
            let k: usize = stage
                .trim_start_matches("train@trial-")
                .parse()
                .unwrap_or(0);
            assert!(
                k > 8 || stage == "train@search",
                "{stage} trained from scratch:\n{out}"
            );
        }
    }
    let after = curves(&t);
    assert_eq!(after.len(), 12);
    for (a, b) in c.iter().zip(&after) {
        assert_eq!(a.0, b.0);
        assert!(same_prefix(&a.1, &b.1), "{a:?} vs {b:?}");
    }
    assert!(after.iter().filter(|x| x.2).count() >= 6, "{after:?}");
}

/// Killed in the middle, the search resumes: the trials that were done
/// stay done, the one cut short takes up from its saved state, and every
/// trial's curve is as an uninterrupted search's.
#[test]
fn a_killed_search_resumes_with_what_is_missing() {
    let Some(data) = real_data() else { return };
    let t = Project::new();
    t.pipeline(&searching(data, 8, 2, None));
    let mut child = t
        .cmd(&["run", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once four trials have reached their rung (the last may not be
    // recorded yet).
    for _ in 0..3000 {
        let done = (1..=8)
            .filter(|k| {
                t.path(&format!("outputs/train@trial-0{k}/history.json"))
                    .is_file()
            })
            .count();
        if done >= 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let fresh: Vec<String> = t
        .status()
        .into_iter()
        .filter(|(s, state, _)| state == "fresh" && s.starts_with("train@trial"))
        .map(|r| r.0)
        .collect();
    assert!(fresh.len() >= 3, "{fresh:?}");
    let out = t.run(&["run"]).ok().stdout();
    for (stage, reason) in started(&out) {
        assert!(
            !(fresh.contains(&stage) && reason == "never run"),
            "{stage} ran again from scratch:\n{out}"
        );
    }
    // The same search as one never killed: the same trials promoted, the
    // same curves, the same ranking.
    let whole = Project::new();
    whole.pipeline(&searching(data, 8, 2, None));
    whole.run(&["run"]).ok();
    assert_eq!(curves(&t), curves(&whole));
    let ranking = |p: &Project| json(p, "outputs/train@search/search.json")["ranking"].clone();
    assert_eq!(ranking(&t), ranking(&whole));
}

/// Which trials go on depends on their results only: on one core or two
/// (where trials finish in another order), the same search.
#[test]
fn the_same_search_promotes_the_same_trials_on_one_core_or_two() {
    let Some(data) = real_data() else { return };
    let one = Project::new();
    one.pipeline(&searching(data, 8, 2, None));
    one.run(&["run", "--jobs", "1"]).ok();
    let two = Project::new();
    two.pipeline(&searching(data, 8, 2, None));
    let out = two.run(&["run", "--jobs", "2"]).ok().stdout();
    assert_eq!(curves(&one), curves(&two), "{out}");
    let r = |p: &Project| json(p, "outputs/train@search/search.json");
    assert_eq!(r(&one)["ranking"], r(&two)["ranking"]);
    assert_eq!(r(&one)["epochs_trained"], r(&two)["epochs_trained"]);
}

/// A promoted trial's model is the model of the same configuration trained
/// without pausing, byte for byte.
#[test]
fn a_promoted_trial_ends_as_a_training_never_paused() {
    let Some(data) = real_data() else { return };
    let t = Project::new();
    t.pipeline(
        &searching(data, 2, 2, None)
            .replace("        lr: {loguniform: [0.0003, 0.01]}\n", "        lr: {choice: [0.002, 0.0005]}\n")
            .replace("        label_smoothing: {choice: [0, 0.1]}\n", "")
            .replace(
                "        schedule: {choice: {cosine: {cosine: {warmup_epochs: 1}}, plateau: {plateau: {factor: 0.5, patience: 1}}}}\n",
                "",
            )
            .replace("sampler: sobol", "sampler: grid"),
    );
    t.run(&["run"]).ok();
    let c = curves(&t);
    let (winner, _, _) = c
        .iter()
        .find(|x| x.2)
        .expect("one trial trained to the end");
    let lr = if winner == "trial-01" {
        "0.002"
    } else {
        "0.0005"
    };
    let plain = Project::new();
    plain.pipeline(&format!(
        r#"stages:
  download:
    kind: download
    params: {{sources: ["{}"]}}
  preprocess:
    kind: preprocess
    needs: [download]
    params: {{validation: 500, limit: {{train: 1000, test: 1000}}}}
  train:
    kind: train
    needs: [preprocess]
    params: {{model: shallow-cnn, epochs: 2, augment: [], lr: {lr}}}
"#,
        data.display()
    ));
    plain.run(&["run"]).ok();
    assert_eq!(
        fs::read(t.path(&format!("outputs/train@{winner}/model.safetensors"))).unwrap(),
        fs::read(plain.path("outputs/train/model.safetensors")).unwrap(),
        "byte-identical weights"
    );
}

#[test]
fn confirm_trains_the_finalists_and_the_reference_on_fresh_seeds() {
    let Some(data) = real_data() else { return };
    let t = Project::new();
    t.pipeline(&searching(
        data,
        6,
        2,
        Some("{top: 2, seeds: [101, 102, 103], reference: {lr: 0.001}}"),
    ));
    // Before the search has finished, confirm says it waits for it.
    let (state, reason) = t.state_of("confirm");
    assert_eq!(state, "dirty");
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .starts_with("waits for the search train to finish"),
        "{reason:?}"
    );
    let out = t.run(&["run"]).ok().stdout();
    // 2 finalists and the reference, 3 seeds each: trained and evaluated.
    let runs = started(&out);
    for config in ["reference", "trial-0"] {
        for s in [101, 102, 103] {
            assert!(
                runs.iter()
                    .any(|(st, _)| st.starts_with(&format!("confirm.train@{config}"))
                        && st.ends_with(&format!("~seed{s}"))),
                "{config} {s}:\n{out}"
            );
        }
    }
    assert_eq!(
        runs.iter()
            .filter(|(s, _)| s.starts_with("confirm.evaluate@"))
            .count(),
        9,
        "{out}"
    );
    assert!(
        out.contains("Confirmed on fresh seeds: test accuracy"),
        "{out}"
    );
    let table = json(&t, "outputs/confirm/table.json");
    let finalists = table["finalists"].as_array().unwrap();
    assert_eq!(finalists.len(), 2);
    let ranking = json(&t, "outputs/train@search/search.json")["ranking"].clone();
    for (k, f) in finalists.iter().enumerate() {
        assert_eq!(f["trial"], ranking[k]);
        for key in [
            "trial",
            "params",
            "search_score",
            "accuracy_mean",
            "accuracy_sd",
            "accuracy_ci95",
            "delta_vs_reference",
            "delta_ci95",
            "p_value",
            "p_adjusted",
            "verdict",
        ] {
            assert!(f.get(key).is_some(), "{key} in {f}");
        }
        // Every figure again from the evaluations' own metrics.
        let acc = |c: &str, s: u64| {
            json(
                &t,
                &format!("outputs/confirm.evaluate@{c}~seed{s}/metrics.json"),
            )["metrics"]["accuracy"]
                .as_f64()
                .unwrap()
        };
        let trial = f["trial"].as_str().unwrap();
        let d: Vec<f64> = [101, 102, 103]
            .iter()
            .map(|&s| acc(trial, s) - acc("reference", s))
            .collect();
        let mean = d.iter().sum::<f64>() / 3.0;
        assert!((f["delta_vs_reference"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!(f["p_adjusted"].as_f64().unwrap() >= f["p_value"].as_f64().unwrap());
    }
    assert_eq!(table["reference"]["trial"], "reference");
    // The reference is the train stage's params with lr 0.001.
    assert_eq!(table["reference"]["params"]["lr"], 0.001);
    // Again: nothing runs.
    let again = t.run(&["run"]).ok().stdout();
    assert!(started(&again).is_empty(), "{again}");
}

/// `pipeline` is refused by `status` with `message` at `line` (1-based).
#[track_caller]
fn refused_at(pipeline: &str, line: usize, message: &str) {
    let t = Project::new();
    t.pipeline(pipeline);
    let err = t.run(&["status"]).exits(2).stderr();
    assert!(
        err.contains(&format!("pipeline.yaml:{line}:")) && err.contains(message),
        "want line {line} and `{message}`:\n{err}"
    );
}

const BASE: &str = "stages:\n  prep:\n    kind: preprocess\n  train:\n    kind: train\n    needs: [prep]\n    params: {epochs: 4}\n    search:\n";

#[test]
fn bad_searches_are_refused_at_their_line() {
    let s = |rest: &str| format!("{BASE}{rest}");
    let cases: &[(String, usize, &str)] = &[
        (s("      space: {lrr: {uniform: [0.1, 0.2]}}\n      trials: 2\n"), 9, "varies `lrr`, which is not a parameter"),
        (s("      space:\n        lr: {choice: []}\n      trials: 2\n"), 10, "the choice is empty"),
        (s("      space:\n        lr: {uniform: [0.2, 0.1]}\n      trials: 2\n"), 10, "reversed or equal"),
        (s("      space:\n        lr: {loguniform: [0, 0.1]}\n      trials: 2\n"), 10, "loguniform needs bounds above 0"),
        (s("      space:\n        batch_size: {int: [32.5, 64]}\n      trials: 2\n"), 10, "int takes two integers"),
        (s("      space: {lr: {uniform: [0.1, 0.2]}}\n      trials: 2\n      early_stop: {rungs: [2, 1], keep: 0.5}\n"), 11, "rungs must be increasing"),
        (s("      space: {lr: {uniform: [0.1, 0.2]}}\n      trials: 2\n      early_stop: {rungs: [1, 4], keep: 0.5}\n"), 11, "rung 4 is not below the trials' 4 epochs"),
        (s("      space: {lr: {uniform: [0.1, 0.2]}}\n      trials: 2\n      early_stop:\n        rungs: [1]\n        keep: 1.5\n"), 13, "`keep: 1.5` is not in (0, 1)"),
        (s("      space: {lr: {uniform: [0.1, 0.2]}}\n      trials: 0\n"), 10, "`trials` is 0"),
        (s("      space: {lr: {uniform: [0.1, 0.2]}}\n      trials: 2\n      early_stop:\n        rungs: [1]\n        keep: 0.34\n"), 13, "with 2 trials and `keep: 0.34`, no trial goes on past rung 1"),
        (s("      space:\n        lr: {uniform: [0.1, 0.2]}\n      sampler: grid\n"), 10, "the grid sampler cannot enumerate `lr`"),
        (s("      space:\n        plateau.patiense: {int: [1, 3]}\n      trials: 2\n"), 10, "`plateau.patiense`: unknown field `patiense`"),
    ];
    for (yaml, line, message) in cases {
        refused_at(yaml, *line, message);
    }
}

#[test]
fn bad_confirms_are_refused_at_their_line() {
    let search =
        format!("{BASE}      space: {{lr: {{uniform: [0.001, 0.002]}}}}\n      trials: 3\n");
    let confirm = |body: &str| format!("{search}  confirm:\n    kind: confirm\n{body}");
    refused_at(
        &confirm("    needs: [train]\n    params: {seeds: [1, 42]}\n"),
        14,
        "seed 42 was used by the search",
    );
    refused_at(
        &confirm("    needs: [prep]\n    params: {seeds: [1]}\n"),
        13,
        "a confirm stage needs the search it confirms, and `prep` is not a search",
    );
    refused_at(
        &confirm("    needs: [train]\n    params: {top: 4, seeds: [1]}\n"),
        14,
        "`top: 4` is more than the search's 3 trials",
    );
    refused_at(
        &confirm("    needs: [train]\n    params: {seeds: [1], reference: {lrr: 1}}\n"),
        14,
        "the reference sets `lrr`",
    );
    // A search's trials are not evaluated on the test set one by one.
    refused_at(
        &format!("{search}  evaluate:\n    kind: evaluate\n    foreach: train\n"),
        13,
        "`train` is a search",
    );
}

/// Asynchronous: a trial is promoted as soon as it is among the best at
/// its rung so far, before the last trials have started.
#[test]
fn a_promotion_does_not_wait_for_the_rung_to_fill() {
    let Some(data) = real_data() else { return };
    let t = Project::new();
    t.pipeline(&searching(data, 8, 2, None));
    let out = t.run(&["run", "--jobs", "1"]).ok().stdout();
    let runs = started(&out);
    let first_promotion = runs
        .iter()
        .position(|(_, r)| r.starts_with("promoted"))
        .unwrap_or_else(|| panic!("{out}"));
    let last_start = runs
        .iter()
        .position(|(s, _)| s == "train@trial-08")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(first_promotion < last_start, "{out}");
    // The live page lists the decisions and every trial.
    let live = t.path("cache/live");
    let run = std::fs::read_dir(&live)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(page.contains("promoted at epoch"), "the decisions");
    let trials = page
        .split("id=\"trials\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no trials"));
    assert_eq!(
        trials.matches("train@trial-").count(),
        8,
        "every trial, and only trials"
    );
    // Rerun: the records are taken in before anything is decided; nothing
    // is promoted that the whole search did not promote.
    let again = t.run(&["run", "--jobs", "1"]).ok().stdout();
    assert!(started(&again).is_empty(), "{again}");
}

/// A search of two trials (a grid over the learning rate, 2 epochs,
/// stopping one at epoch 1) beside plain trainings of both points, with a
/// directory remote.
fn search_beside_plain(files: &str, remote: &Path) -> String {
    format!(
        r#"settings: {{jobs: 2, remotes: {{origin: {}}}}}
stages:
{}  train:
    kind: train
    needs: [preprocess]
    threads: 1
    params: &p
      model: {{layers: [{{conv: {{out: 4, kernel: 3, padding: 1}}}}, batchnorm, relu, {{maxpool: 2}}, flatten, {{linear: 10}}]}}
      epochs: 2
      batch_size: 32
      augment: []
    search:
      space:
        lr: {{choice: [0.003, 0.00001]}}
      sampler: grid
      trials: 2
      early_stop: {{rungs: [1], keep: 0.5}}
  plain:
    kind: train
    needs: [preprocess]
    threads: 1
    params: *p
    variants:
      fast: {{lr: 0.003}}
      slow: {{lr: 0.00001}}
"#,
        remote.display(),
        tiny_data(files)
    )
}

fn train_json(t: &Project, stage: &str) -> Value {
    json(t, &format!("outputs/{stage}/train.json"))
}

/// A trial paused at a rung is its own result: a plain training of the
/// same parameters never restores it as the whole training, here or
/// through a remote; the trial itself still restores it.
#[test]
fn a_paused_trial_is_never_handed_out_as_a_whole_training() {
    let a = Project::new();
    let files = write_data(&a.dir().join("data"));
    let remote = a.outside().join("remote");
    fs::create_dir(&remote).unwrap();
    a.pipeline(&search_beside_plain(&files, &remote));
    a.run(&["run", "train"]).ok();
    let paused: Vec<String> = ["train@trial-01", "train@trial-02"]
        .into_iter()
        .filter(|t| train_json(&a, t)["paused"] == Value::Bool(true))
        .map(str::to_string)
        .collect();
    assert_eq!(paused.len(), 1, "one trial stops at the rung");
    let (slow, fast) = if paused[0] == "train@trial-02" {
        ("plain@slow", "plain@fast")
    } else {
        ("plain@fast", "plain@slow")
    };
    // The finished trial is a whole training; the paused one is not.
    let (_, why) = a.state_of(fast);
    assert!(why.is_some_and(|w| w.starts_with("fresh in the cache")));
    // (It may take up the trial's saved state: the same bits as training
    // from scratch, tested in the trainer.)
    let (_, why) = a.state_of(slow);
    assert!(
        why.as_deref()
            .is_some_and(|w| !w.starts_with("fresh in the cache")),
        "{why:?}"
    );
    a.run(&["push"]).ok();
    // A copy pulls the search whole (the paused trial by its own key) and
    // the plain training that finished; the other is not on the remote.
    let b = Project::with(&a.read("pipeline.yaml"));
    fs::create_dir_all(b.dir().join("data")).unwrap();
    for e in fs::read_dir(a.dir().join("data")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), b.dir().join("data").join(e.file_name())).unwrap();
    }
    b.run(&["pull", "train"])
        .ok()
        .has("0 ran, 0 cached, 5 restored");
    assert_eq!(train_json(&b, &paused[0])["paused"], Value::Bool(true));
    b.run(&["pull", fast]).ok();
    b.run(&["pull", slow])
        .exits(4)
        .has(&format!("not pulled  {slow}"));
    // Run here, the plain training trains its two epochs.
    a.run(&["run", slow]).ok().has(&format!("done     {slow}"));
    let s = train_json(&a, slow);
    assert_eq!((s["epochs_run"].as_u64(), s.get("paused")), (Some(2), None));
    // And the search stays as it was: the paused trial fresh, paused.
    a.run(&["run", "train"]).ok().has("0 ran");
    assert_eq!(train_json(&a, &paused[0])["paused"], Value::Bool(true));
}

/// A search of three trials of which one diverges (its loss becomes NaN,
/// and the training fails), and a confirm of the best.
fn diverging(files: &str) -> String {
    format!(
        r#"settings: {{jobs: 2}}
stages:
{}  train:
    kind: train
    needs: [preprocess]
    threads: 1
    params:
      model: {{layers: [{{conv: {{out: 4, kernel: 3, padding: 1}}}}, batchnorm, relu, {{maxpool: 2}}, flatten, {{linear: 10}}]}}
      epochs: 2
      batch_size: 32
      augment: []
    search:
      space:
        lr: {{choice: {{huge: 1.0e30, ok: 0.003, slow: 0.001}}}}
      sampler: grid
      trials: 3
      early_stop: {{rungs: [1], keep: 0.5}}
  confirm:
    kind: confirm
    needs: [train]
    params: {{seeds: [101, 102], top: 1}}
"#,
        tiny_data(files)
    )
}

/// A failed trial is a trial without a score: under --keep-going the
/// search completes with the others, its report says the trial failed,
/// and the confirm runs on the finalists; without it the run stops, and
/// the report is not run on a missing result.
#[test]
fn a_failed_trial_leaves_the_search_to_finish_with_the_others() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    t.pipeline(&diverging(&files));
    t.run(&["run"])
        .exits(1)
        .has("FAILED   train@trial-01: the loss became NaN")
        .lacks("train@search  (")
        .lacks("is corrupt");
    let r = t.run(&["run", "--keep-going"]).exits(1);
    let r = r
        .has("FAILED   train@trial-01: the loss became NaN")
        .has("done     train@search")
        .has("done     confirm  ")
        .lacks("skipped")
        .lacks("is corrupt");
    // The trial ran once in the command, though the command ran twice.
    assert_eq!(r.stdout().matches("running  train@trial-01").count(), 1);
    let search = json(&t, "outputs/train@search/search.json");
    let failed = &search["trials"][0];
    assert_eq!(
        (
            &failed["trial"],
            &failed["failed"],
            &failed["score"],
            &failed["epochs"]
        ),
        (
            &Value::from("trial-01"),
            &Value::Bool(true),
            &Value::Null,
            &Value::from(0)
        )
    );
    assert!(!search["ranking"]
        .as_array()
        .unwrap()
        .contains(&Value::from("trial-01")));
    assert!(t
        .read("outputs/train@search/search.md")
        .contains("| trial-01 | huge | failed | — | — |"));
    // The confirm compares the one finalist with the reference.
    let confirm = json(&t, "outputs/confirm/table.json");
    assert_eq!(confirm["rows"].as_array().unwrap().len(), 2, "{confirm}");
}
