//! End-to-end: the real binary on a temporary project directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pipeline.yaml"), pipeline).unwrap();
        Project { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn write(&self, p: &str, text: &str) {
        let p = self.path(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn read(&self, p: &str) -> String {
        fs::read_to_string(self.path(p)).unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fmnist-pipe"));
        c.args(args).current_dir(self.dir.path()).env_remove("CI");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }
}

struct Run(Output);

impl Run {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    fn ok(self) -> Run {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The example of the pipeline reference, with a run counter per stage.
const EXAMPLE: &str = r#"
settings:
  cache: cache
  outputs: outputs
  jobs: 2
stages:
  prep:
    kind: cmd
    cmd: "echo prep >> runs.log; sort data/raw.txt > data/sorted.txt"
    deps: [data/raw.txt]
    outs: [data/sorted.txt]
  train:
    kind: cmd
    needs: [prep]
    params: {lr: 0.001, epochs: 3}
    variants:
      fast: {lr: 0.01}
      slow: {}
    cmd: "echo ${stage} >> runs.log; echo ${params.lr} ${params.epochs} > out/model-${variant}.txt"
    outs: ["out/model-${variant}.txt"]
  evaluate:
    kind: cmd
    foreach: train
    cmd: "echo ${stage} >> runs.log; cat out/model-${variant}.txt > out/eval-${variant}.txt"
    outs: ["out/eval-${variant}.txt"]
  compare:
    kind: cmd
    needs: [evaluate]
    cmd: "echo ${stage} >> runs.log; cat out/eval-*.txt > out/table.txt"
    outs: [out/table.txt]
"#;

fn example() -> Project {
    let p = Project::new(EXAMPLE);
    p.write("data/raw.txt", "c\nb\na\n");
    p
}

/// Stages that ran since the last call, in order.
fn ran(p: &Project) -> Vec<String> {
    let text = fs::read_to_string(p.path("runs.log")).unwrap_or_default();
    let _ = fs::remove_file(p.path("runs.log"));
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn status_json(p: &Project) -> Vec<(String, String, Option<String>)> {
    let out = p.run(&["status", "--json"]).ok().stdout();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn state_of(p: &Project, stage: &str) -> (String, Option<String>) {
    let s = status_json(p).into_iter().find(|r| r.0 == stage).unwrap();
    (s.1, s.2)
}

#[test]
fn example_runs_then_is_a_no_op_then_reruns_only_what_changed() {
    let p = example();
    assert!(status_json(&p)
        .iter()
        .all(|r| r.1 == "new" && r.2.as_deref() == Some("never run")));
    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("6 ran, 0 cached, 0 failed"), "{out}");
    assert_eq!(ran(&p).len(), 6);
    assert_eq!(p.read("data/sorted.txt"), "a\nb\nc\n");
    assert_eq!(p.read("out/table.txt"), "0.01 3\n0.001 3\n");
    assert!(status_json(&p)
        .iter()
        .all(|r| r.1 == "fresh" && r.2.is_none()));

    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("0 ran, 6 cached"), "{out}");
    assert!(ran(&p).is_empty());

    // A parameter of one variant: only that variant and what depends on it.
    fs::write(
        p.path("pipeline.yaml"),
        EXAMPLE.replace("fast: {lr: 0.01}", "fast: {lr: 0.02}"),
    )
    .unwrap();
    assert_eq!(
        state_of(&p, "train@fast"),
        (
            "dirty".into(),
            Some("param lr changed (0.01 => 0.02)".into())
        )
    );
    assert_eq!(
        state_of(&p, "evaluate@fast").1.as_deref(),
        Some("input train@fast is stale")
    );
    assert_eq!(state_of(&p, "train@slow").0, "fresh");
    let dry = p.run(&["run", "--dry-run"]).ok().stdout();
    assert!(
        dry.contains("would run  train@fast  (param lr changed (0.01 => 0.02))"),
        "{dry}"
    );
    assert!(ran(&p).is_empty(), "a dry run runs nothing");
    p.run(&["run"]).ok();
    assert_eq!(ran(&p), ["compare", "evaluate@fast", "train@fast"]);

    // A dep's content.
    p.write("data/raw.txt", "z\ny\n");
    assert_eq!(
        state_of(&p, "prep").1.as_deref(),
        Some("dep data/raw.txt changed")
    );
    p.run(&["run"]).ok();
    // prep's output changed, so train reruns; train's outputs are the same
    // bytes as before, so nothing after it does.
    assert_eq!(ran(&p), ["prep", "train@fast", "train@slow"]);
}

#[test]
fn same_bytes_from_upstream_do_not_rerun_downstream() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    // Same lines, another order: prep reruns, its output is identical.
    p.write("data/raw.txt", "a\nc\nb\n");
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
        state_of(&p, "train@fast").1.as_deref(),
        Some("output out/model-fast.txt missing (will be restored from cache)")
    );
    let dry = p.run(&["run", "--dry-run"]).ok().stdout();
    assert!(dry.contains("would restore  train@fast"), "{dry}");
    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("restored train@fast"), "{out}");
    assert!(ran(&p).is_empty());
    assert_eq!(p.read("out/model-fast.txt"), "0.01 3\n");
}

/// An output edited by hand is neither overwritten nor deleted: the stage
/// stops and says what to do; once the edit is moved away, the stage's own
/// version comes back from the cache.
#[test]
fn an_edited_output_is_kept_and_the_stage_says_what_to_do() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    p.write("out/table.txt", "edited by hand\n");
    assert_eq!(
        state_of(&p, "compare").1.as_deref(),
        Some("output out/table.txt modified since the stage wrote it (move it away; `run` then restores it from the cache)")
    );
    for args in [&["run"][..], &["run", "--force", "compare"][..]] {
        let r = p.run(args);
        assert_eq!(r.code(), 1, "{}", r.stdout());
        assert!(
            r.stdout().contains("FAILED   compare: out/table.txt was modified since compare wrote it; fmnist-pipe only deletes what it wrote\n         help: move out/table.txt away (or delete it) and run again; compare's own version is then restored from the cache"),
            "{}",
            r.stdout()
        );
        assert_eq!(p.read("out/table.txt"), "edited by hand\n");
        assert!(ran(&p).is_empty());
    }
    fs::rename(p.path("out/table.txt"), p.path("mine.txt")).unwrap();
    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("restored compare"), "{out}");
    assert_eq!(p.read("out/table.txt"), "0.01 3\n0.001 3\n");
    assert_eq!(p.read("mine.txt"), "edited by hand\n");
}

fn objects(p: &Project) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in fs::read_dir(p.path("cache/objects")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v
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
        state_of(&p, "prep").1.as_deref(),
        Some("output data/sorted.txt missing")
    );
    p.run(&["run"]).ok();
    assert_eq!(ran(&p), ["prep"]);
    assert!(obj.exists());
}

#[test]
fn failure_stops_dependents_reports_tail_and_exits_1() {
    let p = Project::new(
        r#"
stages:
  bad:
    kind: cmd
    cmd: "echo some context; echo the real problem >&2; exit 7"
    outs: [b.txt]
  after:
    kind: cmd
    needs: [bad]
    cmd: "touch a.txt"
    outs: [a.txt]
  independent:
    kind: cmd
    cmd: "sleep 0.3; touch i.txt"
    outs: [i.txt]
"#,
    );
    let r = p.run(&["run", "-j", "1"]);
    assert_eq!(r.code(), 1);
    let out = r.stdout();
    assert!(
        out.contains("FAILED   bad: command exited with status 7"),
        "{out}"
    );
    assert!(out.contains("| the real problem"), "{out}");
    assert!(
        out.contains("skipped  after  (needs bad, which failed)"),
        "{out}"
    );
    assert!(!p.path("a.txt").exists());
    assert_eq!(state_of(&p, "bad").0, "new");

    let r = p.run(&["run", "--keep-going", "-j", "1"]);
    assert_eq!(r.code(), 1);
    assert!(p.path("i.txt").exists(), "{}", r.stdout());
    assert_eq!(state_of(&p, "independent").0, "fresh");
    assert_eq!(state_of(&p, "after").0, "new");
}

#[test]
fn a_stage_that_does_not_write_its_output_fails() {
    let p =
        Project::new("stages:\n  a:\n    kind: cmd\n    cmd: \"true\"\n    outs: [never.txt]\n");
    let r = p.run(&["run"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout().contains("did not produce its output never.txt"),
        "{}",
        r.stdout()
    );
}

#[test]
fn failed_rerun_leaves_stage_stale_not_fresh() {
    let p = Project::new(
        "stages:\n  a:\n    kind: cmd\n    cmd: \"test -f ok && touch o\"\n    outs: [o]\n",
    );
    p.write("ok", "");
    p.run(&["run"]).ok();
    fs::remove_file(p.path("ok")).unwrap();
    p.run(&["run", "--force", "a"]);
    assert_eq!(
        state_of(&p, "a"),
        (
            "dirty".into(),
            Some("last run was interrupted or failed".into())
        )
    );
}

#[test]
fn independent_stages_run_in_parallel() {
    // Each stage waits for the other's marker: this only finishes when both
    // run at the same time.
    let p = Project::new(
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
fn targets_force_and_dag() {
    let p = example();
    p.run(&["run", "train@slow"]).ok();
    assert_eq!(ran(&p), ["prep", "train@slow"]);
    p.run(&["run", "--force", "prep", "prep"]).ok();
    assert_eq!(ran(&p), ["prep"]);
    let r = p.run(&["run", "trian"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("did you mean `train`?"),
        "{}",
        r.stderr()
    );
    let tree = p.run(&["dag"]).ok().stdout();
    assert!(
        tree.starts_with(
            "prep (cmd)\n  train@fast (cmd)\n    evaluate@fast (cmd)\n      compare (cmd)\n"
        ),
        "{tree}"
    );
    let dot = p.run(&["dag", "--dot"]).ok().stdout();
    assert!(
        dot.contains("\"train@fast\" -> \"evaluate@fast\";"),
        "{dot}"
    );
    p.run(&["run", "--force-all"]).ok();
    assert_eq!(ran(&p).len(), 6);
}

/// Each invalid pipeline: exit 2 and a message naming the file and place.
#[test]
fn invalid_pipelines_are_located_and_exit_2() {
    let cases: &[(&str, &[u8], &[&str])] = &[
        ("syntax error", b"stages:\n  a: [1, 2\n", &["pipeline.yaml:"]),
        ("unknown field", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    dpes: [x]\n", &["pipeline.yaml:5:5", "unknown field `dpes`"]),
        ("unknown kind", b"stages:\n  a:\n    kind: shel\n", &["pipeline.yaml:3:11", "unknown variant `shel`"]),
        ("missing cmd", b"stages:\n  a:\n    kind: cmd\n", &["pipeline.yaml:2:3", "has no `cmd`"]),
        ("unknown need", b"stages:\n  prep:\n    kind: cmd\n    cmd: x\n  b:\n    kind: cmd\n    cmd: y\n    needs: [prepp]\n", &["pipeline.yaml:8:5", "did you mean `prep`?"]),
        ("cycle", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    needs: [b]\n  b:\n    kind: cmd\n    cmd: y\n    needs: [a]\n", &["pipeline.yaml:2:3", "a -> b -> a"]),
        ("duplicate", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n  a:\n    kind: cmd\n    cmd: y\n", &["pipeline.yaml:", "duplicate name `a`"]),
        ("unknown variant param", b"stages:\n  t:\n    kind: cmd\n    cmd: x\n    params: {lr: 1}\n    variants:\n      fast: {lrr: 2}\n", &["pipeline.yaml:7:7", "overrides `lrr`"]),
        ("foreach without variants", b"stages:\n  t:\n    kind: cmd\n    cmd: x\n  e:\n    kind: cmd\n    cmd: y\n    foreach: t\n", &["pipeline.yaml:8:5", "has no variants"]),
        ("empty", b"", &["pipeline.yaml: the pipeline file is empty"]),
        ("not utf-8", b"stages:\n  a:\n    kind: cmd\n    cmd: \"\xff\"\n", &["pipeline.yaml:4:11", "not valid UTF-8"]),
        ("output outside", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    outs: [../escape.txt]\n", &["pipeline.yaml:5:5", "outside the project directory"]),
    ];
    for (name, text, expected) in cases {
        let p = Project::new("");
        fs::write(p.path("pipeline.yaml"), text).unwrap();
        for args in [&["status"][..], &["run"][..]] {
            let r = p.run(args);
            assert_eq!(r.code(), 2, "{name}: {}", r.stderr());
            for e in *expected {
                assert!(
                    r.stderr().contains(e),
                    "{name}: expected {e:?} in\n{}",
                    r.stderr()
                );
            }
        }
        assert!(!p.path("cache").exists(), "{name}: nothing written");
    }
    let p = Project::new("");
    let r = p.run(&["status", "--file", "nope.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("nope.yaml: pipeline file not found"),
        "{}",
        r.stderr()
    );
    let r = p.run(&["frobnicate"]);
    assert_eq!(r.code(), 2);
}

const SLOW: &str = r#"
stages:
  slow:
    kind: cmd
    cmd: "echo partial > out.txt; touch started; sleep 30; echo whole > out.txt"
    outs: [out.txt]
"#;

fn wait_for(path: &Path) {
    for _ in 0..200 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn kill_9_mid_stage_leaves_nothing_fresh_and_the_next_run_reruns() {
    let fast = SLOW.replace("sleep 30", "true");
    let p = Project::new(&fast);
    p.run(&["run"]).ok();
    assert_eq!(p.read("out.txt"), "whole\n");
    fs::remove_file(p.path("started")).unwrap();
    // A slow version of the stage, killed in the middle.
    fs::write(p.path("pipeline.yaml"), SLOW).unwrap();
    let mut child = p
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path("started"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(p.read("out.txt"), "partial\n");
    assert_eq!(
        state_of(&p, "slow"),
        (
            "dirty".into(),
            Some("last run was interrupted or failed".into())
        )
    );
    // The lock died with its holder; the rerun completes.
    fs::write(p.path("pipeline.yaml"), &fast).unwrap();
    p.run(&["run"]).ok();
    assert_eq!(p.read("out.txt"), "whole\n");
    assert_eq!(state_of(&p, "slow").0, "fresh");
    assert_eq!(
        fs::read_dir(p.path("cache/tmp")).unwrap().count(),
        0,
        "staging cleared"
    );
}

#[test]
fn a_second_run_refuses_while_the_first_holds_the_lock() {
    let p = Project::new(SLOW);
    let mut child = p
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path("started"));
    let r = p.run(&["run"]);
    assert_eq!(r.code(), 3, "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("another fmnist-pipe run holds the lock"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains(&format!("pid {}", child.id())),
        "{}",
        r.stderr()
    );
    // status is read-only and works meanwhile, and names the runner.
    assert_eq!(
        state_of(&p, "slow"),
        (
            "running".into(),
            Some(format!(
                "running now (pid {} on {})",
                child.id(),
                fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap()
                    .trim()
            ))
        )
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        state_of(&p, "slow"),
        ("new".into(), Some("never run".into())),
        "nothing recorded by the killed run"
    );
}

/// A tmpfs mounted over a path for the length of a test (needs root; the
/// test says so and passes vacuously elsewhere).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(path.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Exit 3, what could not be done to which path, the cause and the fix.
fn assert_disk_full(r: &Run, action: &str, path: &str) {
    assert_eq!(r.code(), 3, "{}\n{}", r.stdout(), r.stderr());
    let err = r.stderr();
    assert!(err.contains(action) && err.contains(path), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("help: the disk is full"),
        "{err}"
    );
}

#[test]
fn full_disk_while_caching_is_reported_and_leaves_the_cache_consistent() {
    let p = Project::new("stages:\n  big:\n    kind: cmd\n    cmd: \"head -c 400000 /dev/zero > big.bin\"\n    outs: [big.bin]\n");
    let Some(mount) = Mount::tmpfs(&p.path("cache"), "256k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    assert_disk_full(&p.run(&["run"]), "could not copy into the cache", "big.bin");
    assert_eq!(state_of(&p, "big").0, "new", "nothing recorded as fresh");
    assert_eq!(
        fs::read_dir(p.path("cache/tmp")).unwrap().count(),
        0,
        "no partial object left in staging"
    );
    // Room made: the record of the interrupted run survives, the stage reruns.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=4m"])
        .arg(p.path("cache"))
        .status()
        .unwrap();
    assert!(grown.success());
    p.run(&["run"]).ok();
    assert_eq!(state_of(&p, "big").0, "fresh");
    drop(mount);
}

#[test]
fn show_and_bench_explain_what_is_missing() {
    let p = example();
    let r = p.run(&["show"]).ok();
    assert!(
        r.stdout().contains("the pipeline has no compare stage"),
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

const LATE: &str = r#"
stages:
  late:
    kind: cmd
    cmd: "touch started; sleep 1; echo late > late.txt"
    outs: [late.txt]
"#;

/// `kill`, `timeout` and Ctrl-C reach the orchestrator's pid alone: its
/// commands must stop too, and nothing is recorded as done. After `kill
/// -9` the kernel kills the shell (its parent-death signal).
#[test]
fn a_signal_to_the_orchestrator_alone_stops_its_commands() {
    for (sig, code) in [("TERM", Some(143)), ("INT", Some(130)), ("KILL", None)] {
        let p = Project::new(LATE);
        let child = p
            .cmd(&["run"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(&p.path("started"));
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), code, "SIG{sig}");
        if code.is_some() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!(
                    "interrupted by SIG{sig}: stopped 1 running command; stages that did not finish are recorded as stale"
                )),
                "{err}"
            );
        }
        // Past the moment the command would have written its output.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            !p.path("late.txt").exists(),
            "SIG{sig}: the command kept running"
        );
        assert_eq!(state_of(&p, "late").0, "new", "SIG{sig}");
        p.run(&["run"]).ok();
        assert_eq!(p.read("late.txt"), "late\n");
    }
}

#[test]
fn run_wait_says_whom_it_waits_for() {
    let p = Project::new(LATE);
    let mut first = p
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path("started"));
    let r = p.run(&["run", "--wait"]).ok();
    assert!(first.wait().unwrap().success());
    assert!(
        r.stdout()
            .contains(&format!("cache/lock (pid {} on", first.id())),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("0 ran, 1 cached"), "{}", r.stdout());
}

/// A dep that cannot be hashed makes its own stage fail, and only it.
#[test]
fn an_unreadable_dep_is_reported_for_its_stage_and_the_rest_goes_on() {
    let p = Project::new(
        r#"
stages:
  loop:
    kind: cmd
    cmd: "cat looped/x > a.txt"
    deps: [looped]
    outs: [a.txt]
  fine:
    kind: cmd
    cmd: "echo ok > b.txt"
    outs: [b.txt]
"#,
    );
    fs::create_dir_all(p.path("looped")).unwrap();
    std::os::unix::fs::symlink("self", p.path("looped/self")).unwrap();
    let rows = status_json(&p);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (state, reason) = state_of(&p, "loop");
    assert_eq!(state, "new");
    assert!(reason.is_some());
    let r = p.run(&["run", "--keep-going"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(
        r.stdout()
            .contains("FAILED   loop: dep looped cannot be read"),
        "{}",
        r.stdout()
    );
    assert_eq!(p.read("b.txt"), "ok\n");
    assert_eq!(state_of(&p, "fine").0, "fresh");
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
    p.write("out/eval-slow.txt", "my notes\n");
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
    assert!(
        objects(&p).len() < objects_before,
        "unreferenced objects removed"
    );
    // The pipeline is intact: nothing to run, nothing orphaned.
    assert!(status_json(&p).iter().all(|r| r.1 == "fresh"));
    let again = p.run(&["gc"]).ok().stdout();
    assert!(again.contains("nothing to remove"), "{again}");
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
        state_of(&p, "train@fast").1.as_deref(),
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

#[test]
fn a_directory_as_the_pipeline_file_is_a_usage_error() {
    let p = example();
    fs::create_dir_all(p.path("sub")).unwrap();
    let r = p.run(&["status", "--file", "sub"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("sub: is a directory, not a pipeline file"),
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
    p.write("big.fmnd", &"\0".repeat(1 << 20));
    let r = p.run(&["bench", "--data", "big.fmnd", "--no-torch"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("bad magic"), "{}", r.stderr());
}

fn download_pipeline(cache: &str, size: usize) -> (String, Vec<u8>) {
    let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let yaml = format!(
        "settings: {{cache: \"{cache}\"}}\nstages:\n  dl:\n    kind: download\n    params:\n      sources: [src]\n      files: {{a.gz: {}}}\n  use:\n    kind: cmd\n    cmd: \"wc -c < outputs/dl/a.gz > out/n.txt\"\n    deps: [outputs/dl]\n    outs: [out/n.txt]\n",
        stages::download::sha256_hex(&body)
    );
    (yaml, body)
}

/// The cache on another file system, named by an absolute path, and the
/// outputs directory on a third: staging, restores and replacement all
/// cross file systems (copy, then rename on the target).
#[test]
fn cache_and_outputs_on_other_file_systems() {
    let elsewhere = tempfile::tempdir().unwrap();
    let Some(cache_mount) = Mount::tmpfs(&elsewhere.path().join("cache"), "8m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let cache = elsewhere.path().join("cache").display().to_string();
    let (yaml, body) = download_pipeline(&cache, 100_000);
    let p = Project::new(&yaml);
    p.write("src/a.gz", "");
    fs::write(p.path("src/a.gz"), &body).unwrap();
    let outputs_mount = Mount::tmpfs(&p.path("outputs"), "8m").unwrap();
    let r = p.run(&["run"]).ok();
    assert!(r.stdout().contains("2 ran"), "{}", r.stdout());
    assert_eq!(fs::read(p.path("outputs/dl/a.gz")).unwrap(), body);
    assert_eq!(p.read("out/n.txt").trim(), "100000");
    assert!(Path::new(&cache).join("stages/dl.json").is_file());
    assert!(
        !p.path("cache").exists(),
        "nothing in the project's default cache"
    );
    fs::remove_file(p.path("outputs/dl/a.gz")).unwrap();
    let r = p.run(&["run"]).ok();
    assert!(r.stdout().contains("restored dl"), "{}", r.stdout());
    assert_eq!(fs::read(p.path("outputs/dl/a.gz")).unwrap(), body);
    let r = p.run(&["run", "--force-all"]).ok();
    assert!(r.stdout().contains("2 ran"), "{}", r.stdout());
    assert_eq!(fs::read(p.path("outputs/dl/a.gz")).unwrap(), body);
    let leftovers: Vec<_> = fs::read_dir(p.path("outputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["dl"], "no temporary siblings left");
    drop(outputs_mount);
    drop(cache_mount);
}

/// Out of space while a stage writes its own files, whichever stage: exit
/// 3, the path, and what to do.
#[test]
fn a_full_disk_while_a_stage_writes_exits_3_with_the_path_and_the_fix() {
    // A built-in kind (download) whose staging is on a full cache.
    let (yaml, body) = download_pipeline("cache", 400_000);
    let p = Project::new(&yaml);
    fs::create_dir_all(p.path("src")).unwrap();
    fs::write(p.path("src/a.gz"), &body).unwrap();
    let Some(mount) = Mount::tmpfs(&p.path("cache"), "256k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let r = p.run(&["run"]);
    assert_disk_full(&r, "could not write", "a.gz.partial");
    assert!(
        !r.stderr().contains("apt-get"),
        "no advice about the data source: {}",
        r.stderr()
    );
    drop(mount);

    // A cmd stage writing to a full disk.
    let p = Project::new(
        "stages:\n  big:\n    kind: cmd\n    cmd: \"head -c 400000 /dev/zero > full/big.bin\"\n    outs: [full/big.bin]\n",
    );
    let _mount = Mount::tmpfs(&p.path("full"), "256k").unwrap();
    let r = p.run(&["run"]);
    assert_eq!(r.code(), 3, "{}\n{}", r.stdout(), r.stderr());
    assert!(
        r.stderr()
            .contains("the disk holding ./full is full (stage big failed)")
            && r.stderr().contains("help: free space there"),
        "{}",
        r.stderr()
    );
}
