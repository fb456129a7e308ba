//! Runs that are killed, stopped, or meet another run.

use crate::common::*;
use std::fs;
use std::process::Command;

const SLOW: &str = r#"
stages:
  slow:
    kind: cmd
    cmd: "echo partial > out.txt; touch started; sleep 30; echo whole > out.txt"
    outs: [out.txt]
"#;

const LATE: &str = r#"
stages:
  late:
    kind: cmd
    cmd: "echo $$ > shell.pid; touch started; sleep 1; echo late > late.txt"
    outs: [late.txt]
"#;

#[test]
fn kill_9_mid_stage_leaves_nothing_fresh_and_the_next_run_reruns() {
    let fast = SLOW.replace("sleep 30", "true");
    let p = Project::with(&fast);
    p.run(&["run"]).ok();
    assert_eq!(p.read("out.txt"), "whole\n");
    fs::remove_file(p.path("started")).unwrap();
    // A slow version of the stage, killed in the middle.
    fs::write(p.path("pipeline.yaml"), SLOW).unwrap();
    let mut child = p.start(&["run"], "started");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(p.read("out.txt"), "partial\n");
    assert_eq!(
        p.state_of("slow"),
        (
            "dirty".into(),
            Some("last run was interrupted or failed".into())
        )
    );
    // The lock died with its holder; the rerun completes.
    fs::write(p.path("pipeline.yaml"), &fast).unwrap();
    p.run(&["run"]).ok();
    assert_eq!(p.read("out.txt"), "whole\n");
    assert_eq!(p.state_of("slow").0, "fresh");
    assert_eq!(
        fs::read_dir(p.path("cache/tmp")).unwrap().count(),
        0,
        "staging cleared"
    );
}

#[test]
fn a_second_run_refuses_while_the_first_holds_the_lock() {
    let p = Project::with(SLOW);
    let mut child = p.start(&["run"], "started");
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
        p.state_of("slow"),
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
        p.state_of("slow"),
        ("new".into(), Some("never run".into())),
        "nothing recorded by the killed run"
    );
}

/// `kill`, `timeout` and Ctrl-C reach the orchestrator's pid alone: its
/// commands must stop too, and nothing is recorded as done. After `kill
/// -9` the kernel kills the shell (its parent-death signal).
#[test]
fn a_signal_to_the_orchestrator_alone_stops_its_commands() {
    for (sig, code) in [("TERM", Some(143)), ("INT", Some(130)), ("KILL", None)] {
        let p = Project::with(LATE);
        let child = p.start(&["run"], "started");
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
                    "interrupted by SIG{sig}: stopped 1 running command; stages that did not finish are recorded as stale: the next run takes them up"
                )),
                "{err}"
            );
        }
        // The shell that would write late.txt has ended, so it never will.
        wait_ended(p.read("shell.pid").trim().parse().unwrap());
        assert!(
            !p.path("late.txt").exists(),
            "SIG{sig}: the command kept running"
        );
        assert_eq!(p.state_of("late").0, "new", "SIG{sig}");
        p.run(&["run"]).ok();
        assert_eq!(p.read("late.txt"), "late\n");
    }
}

/// Waits (at most 10 s) until process `pid` has ended: gone, or a zombie,
/// which runs nothing more.
fn wait_ended(pid: u32) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(s)
                if s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z')) =>
            {
                return
            }
            Ok(_) => {}
        }
        assert!(
            std::time::Instant::now() < until,
            "process {pid} still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn run_wait_says_whom_it_waits_for() {
    let p = Project::with(LATE);
    let mut first = p.start(&["run"], "started");
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

/// A terminal that goes away (SIGHUP: a dropped SSH session) does not stop
/// a run: it finishes, and what it says goes on in cache/run.log.
#[test]
fn a_hangup_does_not_stop_a_run() {
    let p = Project::with(LATE);
    let child = p.start(&["run"], "started");
    assert!(Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.read("late.txt"), "late\n");
    assert_eq!(p.state_of("late").0, "fresh");
    let log = p.read("cache/run.log");
    assert!(
        log.contains("the terminal hung up (SIGHUP): the run goes on"),
        "{log}"
    );
    assert!(log.contains("1 ran, 0 cached, 0 failed"), "{log}");
}
