//! The Slurm executor against a real cluster (CI starts one with
//! ../shared/tools/slurm-local/start-slurm.sh and exports SLURM_CONF).
//! Without a cluster these tests say they skipped, which fails them
//! where FMNIST_PIPE_NO_SKIPS=1 (as in CI).

use crate::common::*;
use std::fs;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cluster has two CPUs: one test at a time keeps waits predictable.
static CLUSTER: Mutex<()> = Mutex::new(());

/// Holds the cluster for one test, or `None` (and why) without one.
fn cluster() -> Option<std::sync::MutexGuard<'static, ()>> {
    let up = Command::new("squeue")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        crate::common::skip(crate::common::Lacks::Slurm, "no Slurm cluster (start one with ../shared/tools/slurm-local/start-slurm.sh, then export SLURM_CONF)");
        return None;
    }
    Some(CLUSTER.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Waits (up to 60 s: the cluster may be busy) for a file.
fn appears(path: &std::path::Path) {
    let until = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The job's state as squeue lists it. A query that fails or lists
/// nothing (slurmctld busy while the whole suite runs) is asked again for
/// a few seconds before the empty answer is believed.
fn job_state(id: &str) -> String {
    let mut last = String::new();
    for _ in 0..25 {
        let out = Command::new("squeue")
            .args(["-h", "-t", "all", "-o", "%T", "-j", id])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !state.is_empty() {
            return state;
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!("squeue -j {id} listed nothing for 5 s: {last}");
    String::new()
}

/// The comparison table without its columns of times and speeds.
fn table_without_times(p: &Project) -> Vec<Vec<String>> {
    let t: serde_json::Value = serde_json::from_str(&p.read("outputs/compare/table.json")).unwrap();
    let cols: Vec<&str> = t["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let timed: Vec<bool> = cols
        .iter()
        .map(|c| c.contains("time") || c.contains("/s"))
        .collect();
    t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(i, _)| !timed[*i])
                .map(|(_, c)| c.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

const TWO: &str = "      main: {}\n      slow: {lr: 0.0003}\n";

#[test]
fn the_study_on_slurm_matches_the_local_executor() {
    let Some(_c) = cluster() else { return };
    let local = Project::new();
    let files = write_data(&local.dir().join("data"));
    local.pipeline(&tiny_study(&files, TWO, "main"));
    local.run(&["run"]).ok();
    let slurm = Project::new();
    write_data(&slurm.dir().join("data"));
    slurm.pipeline(&tiny_study(&files, TWO, "main"));
    slurm
        .run(&["run", "--executor", "slurm"])
        .ok()
        .has("7 ran, 0 cached, 0 failed")
        .has("train@main: submitted as Slurm job ")
        .has("main (ref)");
    for v in ["main", "slow"] {
        let f = format!("outputs/evaluate@{v}/predictions.csv");
        assert!(
            local.read(&f) == slurm.read(&f),
            "{f} differs between the executors"
        );
    }
    assert_eq!(table_without_times(&local), table_without_times(&slurm));
    // Each job measured where it ran, as the local run was.
    let trace = slurm.run(&["trace", "--json"]).ok().stdout();
    let t: serde_json::Value = serde_json::from_str(&trace).unwrap();
    let stages = t["stages"].as_array().unwrap();
    assert_eq!(
        (t["executor"].as_str(), stages.len()),
        (Some("slurm"), 7),
        "{t}"
    );
    for e in stages {
        assert!(e["cpu_s"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["peak_rss_mb"].as_f64().unwrap() > 1.0, "{e}");
        assert!(
            e["queue_s"].as_f64().is_some() && e["node"].is_string(),
            "{e}"
        );
    }
    // What Slurm ran is cached like the rest.
    slurm
        .run(&["run", "--executor", "slurm"])
        .ok()
        .has("0 ran, 7 cached");
}

#[test]
fn a_command_s_job_is_measured_on_its_node() {
    let Some(_c) = cluster() else { return };
    let p = Project::with(
        r#"stages:
  big:
    kind: cmd
    cmd: |
      python3 -c "import time; b = bytearray(b'x') * (200 << 20)
      while time.process_time() < 1: pass" && touch big.txt
    outs: [big.txt]
"#,
    );
    p.run(&["run", "--executor", "slurm"]).ok();
    let trace = p.run(&["trace", "--json"]).ok().stdout();
    let t: serde_json::Value = serde_json::from_str(&trace).unwrap();
    let e = &t["stages"][0];
    let mb = e["peak_rss_mb"].as_f64().unwrap();
    assert!((200.0..=220.0).contains(&mb), "200 MiB within 10%: {e}");
    let cpu = e["cpu_s"].as_f64().unwrap();
    assert!((1.0..=1.5).contains(&cpu), "{e}");
    assert_eq!(e["outcome"], "done");
}

#[test]
fn a_failing_job_is_reported_with_its_exit_status_and_log() {
    let Some(_c) = cluster() else { return };
    let p = Project::with(
        "stages:\n  bad:\n    kind: cmd\n    cmd: \"echo working; echo oops >&2; exit 3\"\n    outs: [x]\n",
    );
    let out = p.run(&["run", "--executor", "slurm"]).exits(1).stdout();
    let failed = out
        .lines()
        .find(|l| l.starts_with("FAILED   bad: Slurm job "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        failed.ends_with(" FAILED: exited with status 3"),
        "{failed}"
    );
    assert!(
        out.contains("         | working\n         | oops\n"),
        "{out}"
    );
    assert!(out.contains("full log: ./cache/logs/bad.log"), "{out}");
    assert_eq!(p.state_of("bad").0, "new", "nothing was recorded");
}

/// `run --executor slurm` started in `p`, once its job wrote `job.id`:
/// the run and the job's id.
fn submitted(p: &Project) -> (std::process::Child, String) {
    let child = p
        .cmd(&["run", "--executor", "slurm"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    appears(&p.path("job.id"));
    (child, p.read("job.id").trim().to_string())
}

const SLEEPER: &str = "stages:\n  sleeper:\n    kind: cmd\n    cmd: \"echo $SLURM_JOB_ID > job.id; sleep 300; touch x\"\n    outs: [x]\n";

#[test]
fn a_job_cancelled_with_scancel_is_reported_as_cancelled() {
    let Some(_c) = cluster() else { return };
    let p = Project::with(SLEEPER);
    let (child, id) = submitted(&p);
    assert!(Command::new("scancel").arg(&id).status().unwrap().success());
    let run = Run(child.wait_with_output().unwrap()).exits(1);
    run.has(&format!("FAILED   sleeper: Slurm job {id} was CANCELLED"))
        .has("(scancel, or an administrator)");
}

#[test]
fn sigint_cancels_the_jobs_and_records_nothing() {
    let Some(_c) = cluster() else { return };
    let p = Project::with(SLEEPER);
    let (child, id) = submitted(&p);
    assert_eq!(job_state(&id), "RUNNING");
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let run = Run(child.wait_with_output().unwrap()).exits(130);
    run.has("interrupted");
    assert_eq!(job_state(&id), "CANCELLED", "the job was cancelled");
    assert!(!p.path("x").exists());
    assert_eq!(
        p.state_of("sleeper"),
        ("new".to_string(), Some("never run".to_string())),
        "nothing was recorded"
    );
}

/// After `kill -9` of the orchestrator its job runs on; the next run
/// cancels it before running the stage again.
#[test]
fn a_run_after_a_killed_one_cancels_the_job_it_left() {
    let Some(_c) = cluster() else { return };
    let p = Project::with(
        "stages:\n  sleeper:\n    kind: cmd\n    cmd: \"echo $SLURM_JOB_ID > job.id; [ -e second ] || sleep 300; touch x\"\n    outs: [x]\n",
    );
    let (mut child, id) = submitted(&p);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(job_state(&id), "RUNNING", "kill -9 cannot reach the job");
    fs::write(p.path("second"), "").unwrap();
    p.run(&["run", "--executor", "slurm"])
        .ok()
        .has(&format!("warning: cancelled Slurm job {id} (sleeper), left queued or running by a run that was killed; sleeper runs again if it is stale"))
        .has("1 ran");
    assert_eq!(job_state(&id), "CANCELLED");
    assert!(p.path("x").exists());
}

/// `scontrol requeue` does to a running job what preemption does; the
/// training starts again and resumes from its saved epoch, and ends with
/// the weights of an uninterrupted run.
#[test]
fn a_requeued_training_resumes_and_ends_bit_identical() {
    let Some(_c) = cluster() else { return };
    let one = "      main: {}\n      other: {lr: 0.0003}\n";
    let slow_study = |files: &str| {
        let y = tiny_study(files, one, "main")
            .replace("epochs: 1", "epochs: 4")
            .replace(
                "model: {layers: [{conv: {out: 4, kernel: 3, padding: 1}}, batchnorm, relu, {maxpool: 2}, flatten, {linear: 10}]}",
                "model: main-cnn",
            );
        assert!(y.contains("epochs: 4") && y.contains("main-cnn"));
        y
    };
    let local = Project::new();
    let files = write_data(&local.dir().join("data"));
    local.pipeline(&slow_study(&files));
    local.run(&["run", "train@main"]).ok();

    let p = Project::new();
    write_data(&p.dir().join("data"));
    p.pipeline(&slow_study(&files));
    let child = p
        .cmd(&["run", "-v", "--executor", "slurm", "train@main"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The state saved after the first epoch.
    let resume = p.path("cache/resume");
    let until = Instant::now() + Duration::from_secs(120);
    let progress = loop {
        let found = fs::read_dir(&resume).ok().and_then(|mut d| {
            let dir = d.next()?.ok()?.path();
            Some(dir.join("progress.json")).filter(|f| f.exists())
        });
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < until, "no epoch was saved");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(progress.exists());
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i|%j|%Z"])
        .output()
        .unwrap();
    let dir = p.dir().canonicalize().unwrap();
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.get(1) == Some(&"train@main") && f.get(2) == dir.to_str().as_ref())
                .then(|| f[0].to_string())
        })
        .expect("the training's job");
    assert!(Command::new("scontrol")
        .args(["requeue", &id])
        .status()
        .unwrap()
        .success());
    // A requeued job waits some time before it may start again; an
    // administrator (here, the test) can let it start now.
    let until = Instant::now() + Duration::from_secs(30);
    while job_state(&id) != "PENDING" {
        assert!(Instant::now() < until, "job {id} was not requeued");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Released at once, the job can start before the node has cleaned up
    // after the first attempt, and Slurm fails it ("Job credential
    // revoked"): Slurm's own delay exists for that; 2 s is enough here.
    std::thread::sleep(Duration::from_secs(2));
    Command::new("scontrol")
        .args(["update", &format!("JobId={id}"), "StartTime=now"])
        .status()
        .unwrap();
    let run = Run(child.wait_with_output().unwrap()).ok();
    run.has("train@main: resuming from epoch ");
    let f = "outputs/train@main/model.safetensors";
    assert!(
        fs::read(local.path(f)).unwrap() == fs::read(p.path(f)).unwrap(),
        "the requeued training's weights differ from an uninterrupted run's"
    );
}

#[test]
fn a_job_sbatch_refuses_fails_its_stage_with_sbatch_s_words() {
    let Some(_c) = cluster() else { return };
    let p = Project::with(
        "settings:\n  slurm: {partition: nosuch}\nstages:\n  a:\n    kind: cmd\n    cmd: touch x\n    outs: [x]\n",
    );
    p.run(&["run", "--executor", "slurm"])
        .exits(1)
        .has("FAILED   a: sbatch refused the job: sbatch: error: invalid partition specified: nosuch; check settings.slurm and the stage's resources in the pipeline file (`run --executor slurm --dry-run` shows the flags)");
    assert!(!p.path("x").exists());
}

#[test]
fn without_slurm_the_run_stops_before_anything_runs() {
    let p = Project::with(SLEEPER);
    Run(p
        .cmd(&["run", "--executor", "slurm"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap())
    .exits(2)
    .stderr_is("error: the Slurm executor needs sbatch, squeue and scontrol on PATH (No such file or directory (os error 2)); run on a login node of the cluster, or use `--executor local`\n");
    assert!(!p.path("cache").exists(), "nothing written");
}

#[test]
fn dry_run_prints_the_sbatch_line_of_each_stage() {
    // No cluster needed: nothing is submitted.
    let p = Project::with(
        "settings:\n  slurm: {partition: batch, account: lab, extra: [\"--qos=normal\"]}\nstages:\n  fit:\n    kind: cmd\n    resources: {cpus: 4, gpus: 2, mem_mb: 2000, time: 1h30m}\n    cmd: \"python fit.py 'a b'\"\n    outs: [m]\n",
    );
    let dir = p.dir().canonicalize().unwrap();
    p.run(&["run", "--executor", "slurm", "--dry-run"])
        .ok()
        .stdout_is(&format!(
            "would run  fit  (never run)\n         sbatch --parsable --job-name=fit --chdir={} --output=./cache/logs/fit.log --error=./cache/logs/fit.log --open-mode=append --requeue --cpus-per-task=4 --mem=2000M --gres=gpu:2 --time=01:30:00 --partition=batch --account=lab --qos=normal  # runs: sh -c 'python fit.py '\\''a b'\\'''\n",
            dir.display()
        ));
    assert!(!p.path("cache").exists(), "a dry run writes nothing");
}

/// A stage's own `slurm:` replaces the partition and account of
/// settings.slurm and adds its flags; checked at load like the settings.
#[test]
fn a_stage_has_its_own_partition_account_and_flags() {
    // No cluster needed: nothing is submitted.
    let p = Project::with(
        "settings:\n  slurm: {partition: batch, account: lab, extra: [\"--qos=normal\"]}\nstages:\n  prep:\n    kind: cmd\n    cmd: \"true\"\n    outs: [p]\n  fit:\n    kind: cmd\n    needs: [prep]\n    slurm: {partition: gpu, extra: [\"--constraint=a100\"]}\n    cmd: \"true\"\n    outs: [m]\n",
    );
    let out = p
        .run(&["run", "--executor", "slurm", "--dry-run"])
        .ok()
        .stdout();
    let line = |stage: &str| sbatch_line(&out, stage);
    assert!(
        line("prep").contains("--partition=batch --account=lab --qos=normal  #"),
        "{out}"
    );
    assert!(
        line("fit").contains("--partition=gpu --account=lab --qos=normal --constraint=a100  #"),
        "{out}"
    );
    let bad = Project::with("stages:\n  fit:\n    kind: cmd\n    slurm: {partition: \"two words\"}\n    cmd: \"true\"\n    outs: [m]\n");
    bad.run(&["status"])
        .exits(2)
        .has("pipeline.yaml:4:")
        .has("stages.fit.slurm.partition must be one word");
}

/// settings.resources gives each kind's stages their default resources;
/// a stage's own `resources` (or `threads`) win, key by key; checked at load.
#[test]
fn settings_give_each_kind_default_resources() {
    // No cluster needed: nothing is submitted.
    let p = Project::with(
        "settings:\n  resources:\n    cmd: {cpus: 2, time: 2h, mem_mb: 3000}\nstages:\n  prep:\n    kind: cmd\n    cmd: \"true\"\n    outs: [p]\n  fit:\n    kind: cmd\n    needs: [prep]\n    resources: {cpus: 4}\n    cmd: \"true\"\n    outs: [m]\n",
    );
    let out = p
        .run(&["run", "--executor", "slurm", "--dry-run"])
        .ok()
        .stdout();
    let line = |stage: &str| sbatch_line(&out, stage);
    assert!(
        line("prep").contains("--cpus-per-task=2 --mem=3000M --time=02:00:00"),
        "{out}"
    );
    assert!(
        line("fit").contains("--cpus-per-task=4 --mem=3000M --time=02:00:00"),
        "{out}"
    );
    Project::with(
        "settings:\n  resources:\n    trian: {cpus: 2}\nstages:\n  t:\n    kind: train\n",
    )
    .run(&["status"])
    .exits(2)
    .has("pipeline.yaml:3:5: settings.resources: unknown variant `trian`")
    .has("settings.resources is keyed by kind");
    Project::with(
        "settings:\n  resources:\n    train: {cpus: 0}\nstages:\n  t:\n    kind: train\n",
    )
    .run(&["status"])
    .exits(2)
    .has("settings.resources.train.cpus must be at least 1");
}

/// The sbatch line `--dry-run` prints under a stage's line.
fn sbatch_line(out: &str, stage: &str) -> String {
    out.lines()
        .skip_while(|l| !l.contains(&format!("  {stage}  ")))
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// A search and its confirmation as Slurm jobs: trials pause and are
/// promoted as jobs, and the search is the local executor's: the same
/// trials promoted, the same curves.
#[test]
fn a_search_and_its_confirmation_run_on_slurm() {
    use crate::search::{curves, searching};
    let Some(_c) = cluster() else { return };
    let Some(data) = real_data() else { return };
    let confirm = Some("{top: 1, seeds: [101, 102]}");
    let local = Project::new();
    local.pipeline(&searching(data, 4, 2, confirm));
    local.run(&["run"]).ok();
    let slurm = Project::new();
    slurm.pipeline(&searching(data, 4, 2, confirm));
    let out = slurm
        .run(&["run", "--executor", "slurm"])
        .ok()
        .has("train@trial-01: submitted as Slurm job ")
        .has("promoted by the search at epoch 1/2")
        .has("Confirmed on fresh seeds")
        .stdout();
    assert!(out.contains("confirm.train@reference~seed102"), "{out}");
    assert_eq!(curves(&local), curves(&slurm));
    slurm
        .run(&["run", "--executor", "slurm"])
        .ok()
        .lacks("running ");
}
