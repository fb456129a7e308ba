//! The whole study on a tiny configuration: download → preprocess → train
//! variants → evaluate → compare, through the real binary.

use std::fs;
use std::path::Path;

use crate::common::{tiny_study as pipeline, write_data, Project};

const TWO: &str = "      main: {}\n      slow: {lr: 0.0003}\n";

#[test]
fn tiny_study_end_to_end() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    fs::write(t.dir().join("pipeline.yaml"), pipeline(&files, TWO, "main")).unwrap();
    let o = t.run(&["run"]);
    let out = o.text();
    assert!(o.status.success(), "{out}");
    assert!(out.contains("7 ran, 0 cached, 0 failed"), "{out}");
    assert!(
        out.contains("main (ref)") && out.contains("McNemar p"),
        "the table is printed:\n{out}"
    );

    let metrics: serde_json::Value = serde_json::from_slice(
        &fs::read(t.dir().join("outputs/evaluate@main/metrics.json")).unwrap(),
    )
    .unwrap();
    let acc = metrics["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "test accuracy {acc} is far above chance (0.1)");
    assert_eq!(metrics["metrics"]["test_images"], 200);
    assert_eq!(
        metrics["metrics"]["confusion"].as_array().unwrap().len(),
        10
    );
    for f in [
        "predictions.csv",
        "roc.json",
        "confusion.svg",
        "roc.svg",
        "loss.svg",
        "accuracy.svg",
        "samples.svg",
        "misclassified.svg",
    ] {
        assert!(
            t.dir().join("outputs/evaluate@slow").join(f).is_file(),
            "{f}"
        );
    }
    for f in [
        "table.md",
        "table.csv",
        "table.json",
        "comparison.json",
        "accuracy_f1.svg",
        "per_class_f1.svg",
        "validation_curves.svg",
        "index.html",
    ] {
        assert!(t.dir().join("outputs/compare").join(f).is_file(), "{f}");
    }
    let html = fs::read_to_string(t.dir().join("outputs/compare/index.html")).unwrap();
    assert!(
        html.contains("<svg") || html.contains("data:image/png"),
        "pictures are inline"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://") || html.contains("xmlns"),
        "no external assets"
    );
}

const THREE: &str = "      main: {}\n      slow: {lr: 0.0003}\n      wide: {batch_size: 16}\n";

/// The study of TWO variants, run once; the data's checksums returned.
fn studied() -> (Project, String) {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    t.pipeline(&pipeline(&files, TWO, "main"));
    t.run(&["run"]).ok();
    (t, files)
}

#[test]
fn a_second_run_with_nothing_changed_is_a_no_op_that_prints_the_table() {
    let (t, _) = studied();
    t.run(&["run"])
        .ok()
        .has("0 ran, 7 cached")
        .has("main (ref)");
    t.run(&["show"]).ok().has("main (ref)").lacks("stale");
}

#[test]
fn a_new_variant_trains_evaluates_and_compares_alone() {
    let (t, files) = studied();
    let table = t.read("outputs/compare/table.md");
    t.pipeline(&pipeline(&files, THREE, "main"));
    t.run(&["show"]).ok().has("note: this table is stale");
    t.run(&["run"])
        .ok()
        .has("3 ran, 6 cached")
        .has("running  train@wide")
        .has("running  evaluate@wide")
        .has("running  compare");
    let now = t.read("outputs/compare/table.md");
    assert!(now.contains("| wide |"), "{now}");
    assert_ne!(now, table);
}

#[test]
fn a_compare_parameter_reruns_compare_alone() {
    let (t, files) = studied();
    t.pipeline(&pipeline(&files, TWO, "slow"));
    t.run(&["run"])
        .ok()
        .has("1 ran, 6 cached")
        .has("running  compare  (param reference changed (\"main\" => \"slow\"))")
        .has("slow (ref)");
}

/// Refused when the pipeline loads (the new variant is not trained for
/// nothing), at the line of compare's params; the last table stays.
#[test]
fn a_reference_that_does_not_exist_is_refused_before_anything_runs() {
    let (t, files) = studied();
    let table = t.read("outputs/compare/table.md");
    t.pipeline(&pipeline(&files, THREE, "mian"));
    t.run(&["run"])
        .exits(2)
        .stdout_is("")
        .has("pipeline.yaml:37:5: stage `compare`: reference variant `mian` is not among the compared variants (main, slow, wide); set params.reference of the compare stage to one of them");
    assert_eq!(t.read("outputs/compare/table.md"), table);
    assert!(!t.path("outputs/train@wide").exists(), "nothing trained");
}

#[test]
fn compare_with_one_variant_is_refused() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    fs::write(
        t.dir().join("pipeline.yaml"),
        pipeline(&files, "      main: {}\n", "main"),
    )
    .unwrap();
    t.run(&["run"])
        .exits(2)
        .has("stage `compare`: compare needs at least two evaluated variants, it has 1 (main)");
    assert!(!t.dir().join("outputs").exists(), "nothing ran");
}

#[test]
fn a_model_whose_shapes_do_not_fit_is_refused_before_anything_runs() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    let y = pipeline(&files, TWO, "main").replace("{linear: 10}]", "{linear: 12}]");
    fs::write(t.dir().join("pipeline.yaml"), y).unwrap();
    let o = t.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        o.text().contains("the last layer gives 12 outputs"),
        "{}",
        o.text()
    );
    assert!(!t.dir().join("cache").exists());
}

/// A test split without every class: AUCs that cannot be computed are
/// reported as such (null in metrics.json, n/a in the pictures), and the
/// study completes.
#[test]
fn metrics_that_cannot_be_computed_are_reported_not_a_crash() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    let y = pipeline(&files, TWO, "main").replace(
        "params: {validation: 100}",
        "params: {validation: 100, limit: {test: 3}}",
    );
    assert!(y.contains("limit"));
    fs::write(t.dir().join("pipeline.yaml"), y).unwrap();
    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    assert!(o.text().contains("main (ref)"), "{}", o.text());
    let m: serde_json::Value = serde_json::from_slice(
        &fs::read(t.dir().join("outputs/evaluate@main/metrics.json")).unwrap(),
    )
    .unwrap();
    let per_class = m["metrics"]["per_class"].as_array().unwrap();
    let undefined = per_class.iter().filter(|c| c["auc"].is_null()).count();
    assert!(undefined >= 7, "{undefined} classes without an AUC");
    assert!(per_class.iter().any(|c| c["auc"].is_f64()));
}

/// Rewrites one byte in the middle of a file in place, keeping its size and
/// its modification time (as a program that restores times would).
fn damage_in_place(path: &Path) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    fs::write(path, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// A stage's (state, reason), the reason empty when fresh.
fn status_of(t: &Project, stage: &str) -> (String, String) {
    let (state, reason) = t.state_of(stage);
    (state, reason.unwrap_or_default())
}

/// A damaged model with its size and time restored is seen: the train stage
/// is stale, nothing is evaluated on it, and the advice given works.
#[test]
fn an_in_place_edit_keeping_size_and_time_is_seen() {
    let (t, _) = studied();
    let model = t.dir().join("outputs/train@main/model.safetensors");
    let good = fs::read(&model).unwrap();
    damage_in_place(&model);
    assert_eq!(
        status_of(&t, "train@main"),
        (
            "dirty".into(),
            "output outputs/train@main modified since the stage wrote it (move it away; `run` then restores it from the cache)".into()
        )
    );
    assert_eq!(
        status_of(&t, "evaluate@main").1,
        "input train@main is stale"
    );
    let o = t.run(&["run"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.text());
    assert!(
        o.text().contains("FAILED   train@main: outputs/train@main holds changes since train@main wrote it (outputs/train@main/model.safetensors)"),
        "{}",
        o.text()
    );
    assert!(o.text().contains("skipped  evaluate@main"), "{}", o.text());
    // The advice: move it away; the stage's own version comes back and
    // nothing downstream reruns.
    fs::rename(&model, t.dir().join("damaged.safetensors")).unwrap();
    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    assert!(o.text().contains("restored train@main"), "{}", o.text());
    assert!(o.text().contains("0 ran"), "{}", o.text());
    assert_eq!(fs::read(&model).unwrap(), good);
}

/// Where the stat cache cannot see an edit (simulated here by an entry that
/// matches the damaged file), the stage that reads the file finds it
/// corrupt, moves it to the quarantine, and the next plain run recovers.
#[test]
fn a_stage_that_finds_its_input_corrupt_makes_the_next_run_recover() {
    let (t, _) = studied();
    let dataset = t.dir().join("outputs/preprocess/dataset.fmnd");
    let good = fs::read(&dataset).unwrap();
    damage_in_place(&dataset);
    // Fool the stat cache: the old hash, with the damaged file's metadata.
    let stat_path = t.dir().join("cache/hashes.json");
    let mut stat: serde_json::Value =
        serde_json::from_slice(&fs::read(&stat_path).unwrap()).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&dataset).unwrap();
        let (_, e) = stat
            .as_object_mut()
            .unwrap()
            .iter_mut()
            .find(|(k, _)| k.ends_with("/outputs/preprocess/dataset.fmnd"))
            .unwrap();
        e["size"] = m.len().into();
        e["mtime_ns"] = (m.mtime() as i64 * 1_000_000_000 + m.mtime_nsec()).into();
        e["ctime_ns"] = (m.ctime() as i64 * 1_000_000_000 + m.ctime_nsec()).into();
        e["ino"] = m.ino().into();
        e["dev"] = m.dev().into();
        e["hashed_at_ns"] = i64::MAX.into();
    }
    fs::write(&stat_path, serde_json::to_vec(&stat).unwrap()).unwrap();
    assert_eq!(status_of(&t, "preprocess").0, "fresh", "fooled");

    let o = t.run(&["run", "train@main", "--force", "train@main"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.text());
    let out = o.text();
    assert!(
        out.contains("FAILED   train@main: input outputs/preprocess/dataset.fmnd is corrupt: checksum mismatch")
            && out.contains("it no longer held what preprocess wrote: moved to")
            && out.contains("the next `fmnist-pipe run` restores preprocess's own version"),
        "{out}"
    );
    let quarantined: Vec<_> = fs::read_dir(t.dir().join("cache/quarantine"))
        .unwrap()
        .map(|e| e.unwrap().path().join("outputs/preprocess/dataset.fmnd"))
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_ne!(
        fs::read(&quarantined[0]).unwrap(),
        good,
        "kept, not deleted"
    );

    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    assert!(o.text().contains("restored preprocess"), "{}", o.text());
    assert_eq!(fs::read(&dataset).unwrap(), good);
    assert_eq!(status_of(&t, "train@main").0, "fresh");
    t.run(&["gc"])
        .ok()
        .has("cache/quarantine holds 1 file (")
        .has("gc keeps them");
    assert!(quarantined[0].exists());
}

/// A producer that recorded bytes its consumer cannot read (simulated by a
/// record made to agree with a damaged file) is invalidated and rebuilt.
#[test]
fn a_producer_that_recorded_a_corrupt_output_is_rebuilt() {
    let (t, _) = studied();
    let dataset = t.dir().join("outputs/preprocess/dataset.fmnd");
    let good = fs::read(&dataset).unwrap();
    damage_in_place(&dataset);
    let bad_hash = blake3::hash(&fs::read(&dataset).unwrap())
        .to_hex()
        .to_string();
    let record_path = t.dir().join("cache/stages/preprocess.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&fs::read(&record_path).unwrap()).unwrap();
    let tree = &mut record["outputs"][0]["tree"];
    let mut h = blake3::Hasher::new();
    h.update(b"dir\0");
    for f in tree["files"].as_array_mut().unwrap() {
        if f["rel"] == "dataset.fmnd" {
            f["hash"] = bad_hash.clone().into();
        }
        h.update(f["rel"].as_str().unwrap().as_bytes());
        h.update(b"\0");
        h.update(f["hash"].as_str().unwrap().as_bytes());
        h.update(b"\0-\n");
    }
    tree["hash"] = h.finalize().to_hex().to_string().into();
    fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(status_of(&t, "preprocess").0, "fresh");

    let o = t.run(&["run", "train@main", "--force", "train@main"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.text());
    assert!(
        o.text()
            .contains("preprocess is marked stale; the next `fmnist-pipe run` rebuilds it"),
        "{}",
        o.text()
    );
    let (state, reason) = status_of(&t, "preprocess");
    assert_eq!(state, "dirty");
    assert!(
        reason.starts_with(
            "invalidated: train@main found outputs/preprocess/dataset.fmnd corrupt (checksum mismatch"
        ),
        "{reason}"
    );
    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    assert!(o.text().contains("running  preprocess"), "{}", o.text());
    assert_eq!(fs::read(&dataset).unwrap(), good);
}

#[test]
fn show_prints_the_cached_table_when_the_output_was_deleted() {
    let (t, _) = studied();
    fs::remove_dir_all(t.dir().join("outputs/compare")).unwrap();
    let o = t.run(&["show"]);
    let out = o.text();
    assert!(o.status.success(), "{out}");
    assert!(out.contains("main (ref)"), "{out}");
    assert!(
        out.contains("note: outputs/compare is not in the workspace (deleted or changed); this is the cache's copy, and `fmnist-pipe run compare` restores it"),
        "{out}"
    );
    assert!(
        !t.dir().join("outputs/compare").exists(),
        "show writes nothing"
    );
}

/// The stage processes (`fmnist-pipe __stage JOB`) working in `dir`.
fn stage_processes(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let is_stage = cmdline.split(|&b| b == 0).any(|a| a == b"__stage");
            // A zombie keeps its cmdline but no longer has a cwd.
            is_stage && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir)
        })
        .collect()
}

/// Waits until `trainings` trainings in `t` have each saved a state after
/// an epoch (saved progress is kept by result, not by stage name, so the
/// caller says how many it started).
fn wait_for_saved_epoch(t: &Project, trainings: usize) {
    for _ in 0..400 {
        let saved = fs::read_dir(t.dir().join("cache/resume"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("progress.json").is_file())
            .count();
        if saved >= trainings {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("not {trainings} trainings saved a state");
}

/// The stage's process, killed in the middle of a training (as the
/// out-of-memory killer would): reported as such, the other training goes
/// on with --keep-going, and the rerun resumes.
#[test]
fn a_killed_stage_process_is_reported_and_the_rerun_resumes() {
    let t = Project::new();
    long_training(&t);
    let child = t
        .cmd(&["run", "train", "--keep-going"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // train@main and train@slow.
    wait_for_saved_epoch(&t, 2);
    let victim = stage_processes(&t.dir())
        .into_iter()
        .find(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("train@main")
        })
        .expect("train@main's process");
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "FAILED   train@main: the stage's process was killed by SIGKILL (the out-of-memory killer, or kill -9)"
        ),
        "{text}"
    );
    assert!(text.contains("done     train@slow"), "{text}");
    t.run(&["run", "train"])
        .ok()
        .has("resuming train@main from epoch ");
}

/// The tiny study's training made long enough to be killed in the middle.
fn long_training(t: &Project) {
    let files = write_data(&t.dir().join("data"));
    let y = pipeline(&files, TWO, "main").replace(
        "      epochs: 1\n",
        "      epochs: 150\n      early_stopping: null\n",
    );
    assert!(y.contains("epochs: 150"));
    t.pipeline(&y);
}

/// `run train@main`, killed (-9) once the training saved a state after an
/// epoch; returns when no stage process is left.
fn kill_mid_training(t: &Project) {
    let mut child = t
        .cmd(&["run", "train@main"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_saved_epoch(t, 1);
    let stage_pids = stage_processes(&t.dir());
    assert_eq!(stage_pids.len(), 1, "train@main runs in its own process");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel ends the stage's process with its parent.
    for _ in 0..200 {
        if stage_processes(&t.dir()).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        stage_processes(&t.dir()).is_empty(),
        "no stage left running after kill -9 of the orchestrator"
    );
}

/// `kill -9` of the orchestrator in the middle of a training: status says
/// where it will resume, the next run resumes there, and the model is
/// byte-identical to one trained without interruption.
#[test]
fn a_killed_training_resumes_and_matches_an_uninterrupted_one() {
    let t = Project::new();
    long_training(&t);
    kill_mid_training(&t);
    let (state, reason) = t.state_of("train@main");
    assert_eq!(state, "dirty");
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("last run was interrupted after epoch ")
            && reason.ends_with("/150; it resumes there"),
        "{reason}"
    );
    let epoch = reason
        .trim_start_matches("last run was interrupted after epoch ")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    t.run(&["run", "train@main"])
        .ok()
        .has(&format!("resuming train@main from epoch {epoch}/150"));
    assert!(
        fs::read_dir(t.dir().join("cache/resume")).map_or(0, |d| d.count()) == 0,
        "the saved state goes once the stage is recorded"
    );

    let whole = Project::new();
    long_training(&whole);
    whole.run(&["run", "train@main"]).ok().lacks("resuming");
    assert_eq!(
        fs::read(t.dir().join("outputs/train@main/model.safetensors")).unwrap(),
        fs::read(whole.dir().join("outputs/train@main/model.safetensors")).unwrap(),
        "byte-identical weights"
    );
}

/// A saved state damaged after a kill (a truncated file): no run calls it
/// a resume; without -v, one line says the training starts over, and the
/// stage's log keeps it.
#[test]
fn a_damaged_saved_state_is_said_to_start_over_not_to_resume() {
    let t = Project::new();
    long_training(&t);
    kill_mid_training(&t);
    let state = fs::read_dir(t.dir().join("cache/resume"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("state.fmnr"))
        .find(|p| p.is_file())
        .expect("a saved state");
    let (_, before) = t.state_of("train@main");
    assert!(before.unwrap_or_default().ends_with("it resumes there"));
    let bytes = fs::read(&state).unwrap();
    fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    // Before the damage, status promised a resume; after it, none.
    let (_, reason) = t.state_of("train@main");
    let reason = reason.unwrap_or_default();
    assert!(!reason.contains("resume"), "{reason}");
    let out = t.run(&["run", "train@main"]).ok().stdout();
    assert!(!out.contains("resuming"), "{out}");
    assert_eq!(
        out.matches("train@main: the saved training state is damaged (checksum mismatch); training starts over from epoch 1")
            .count(),
        1,
        "{out}"
    );
    let log = fs::read_to_string(t.dir().join("cache/logs/train@main.log")).unwrap();
    assert!(
        log.contains("the saved training state is damaged (checksum mismatch)"),
        "{log}"
    );
}

/// Ctrl-C in the middle of a training: the run says the stage was
/// interrupted (not failed) and after which epoch the next run resumes it,
/// the summary counts it as interrupted, and the next run resumes there.
#[test]
fn ctrl_c_says_what_was_interrupted_and_where_it_resumes() {
    let t = Project::new();
    long_training(&t);
    let child = t
        .cmd(&["run", "train@main"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_saved_epoch(&t, 1);
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .find(|l| {
            l.starts_with("stopped  train@main  (interrupted; the next run resumes it after epoch ")
        })
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.ends_with("/150)"), "{line}");
    assert!(
        !stdout.contains("FAILED") && !stdout.contains(" 1 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("0 failed, 1 interrupted"), "{stdout}");
    assert!(
        stderr.contains("interrupted by SIGINT: stopped 1 running command; stages that did not finish are recorded as stale: the next run takes them up"),
        "{stderr}"
    );
    let epoch = line
        .trim_start_matches(
            "stopped  train@main  (interrupted; the next run resumes it after epoch ",
        )
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (_, reason) = t.state_of("train@main");
    assert_eq!(
        reason.as_deref(),
        Some(
            format!("last run was interrupted after epoch {epoch}/150; it resumes there").as_str()
        )
    );
}

/// The program's file replaced while a study runs (a `cargo build` or
/// `cargo install` in another terminal): the stages started afterwards
/// still run, as the program that started the run.
#[test]
fn a_run_survives_its_program_file_being_replaced() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    let copy = t.outside().join("fmnist-pipe-copy");
    fs::copy(env!("CARGO_BIN_EXE_fmnist-pipe"), &copy).unwrap();
    // A command deletes the program before the built-in stage after it starts.
    t.pipeline(&format!(
        "stages:\n  rebuild:\n    kind: cmd\n    cmd: rm {}\n    outs: []\n  download:\n    kind: download\n    needs: [rebuild]\n    params:\n      sources: [data]\n      files:\n{files}",
        copy.display()
    ));
    let out = std::process::Command::new(&copy)
        .arg("run")
        .current_dir(t.dir())
        .output()
        .unwrap();
    let out = crate::common::Run(out).ok().text();
    assert!(!copy.exists());
    assert!(out.contains("2 ran, 0 cached, 0 failed"), "{out}");
    assert!(t
        .path("outputs/download/train-images-idx3-ubyte.gz")
        .exists());
}
