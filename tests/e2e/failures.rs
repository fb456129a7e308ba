//! Stages that fail: what is reported, what runs after, what is recorded.

use crate::common::*;
use std::fs;

#[test]
fn failure_stops_dependents_reports_tail_and_exits_1() {
    let p = Project::with(
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
    cmd: "touch i.txt"
    outs: [i.txt]
"#,
    );
    p.run(&["run", "-j", "1"]).exits(1).stdout_untimed_is(
        "live page: <page>
running  bad  (never run)
FAILED   bad: command exited with status 7
         last lines of output:
         | some context
         | the real problem
         full log: ./cache/logs/bad.log
skipped  after  (needs bad, which failed)
0 ran, 0 cached, 1 failed, 1 skipped, 1 not started (use --keep-going to run them) in <time>
",
    );
    assert!(!p.path("a.txt").exists());
    assert_eq!(p.state_of("bad").0, "new");

    let r = p.run(&["run", "--keep-going", "-j", "1"]);
    assert_eq!(r.code(), 1);
    assert!(p.path("i.txt").exists(), "{}", r.stdout());
    assert_eq!(p.state_of("independent").0, "fresh");
    assert_eq!(p.state_of("after").0, "new");
}

#[test]
fn a_stage_that_does_not_write_its_output_fails() {
    let p =
        Project::with("stages:\n  a:\n    kind: cmd\n    cmd: \"true\"\n    outs: [never.txt]\n");
    p.run(&["run"]).exits(1).stdout_untimed_is(
        "live page: <page>
running  a  (never run)
FAILED   a: the stage succeeded but did not produce its output never.txt
         full log: ./cache/logs/a.log
0 ran, 0 cached, 1 failed in <time>
",
    );
}

#[test]
fn failed_rerun_leaves_stage_stale_not_fresh() {
    let p = Project::with(
        "stages:\n  a:\n    kind: cmd\n    cmd: \"test -f ok && touch o\"\n    outs: [o]\n",
    );
    p.file("ok", "");
    p.run(&["run"]).ok();
    fs::remove_file(p.path("ok")).unwrap();
    p.run(&["run", "--force", "a"]);
    let (state, why) = p.state_of("a");
    assert_eq!(state, "dirty");
    // Not fresh by its own record; the run cache remembers the completed
    // run with the same inputs, and a plain `run` restores it.
    let why = why.unwrap_or_default();
    assert!(
        why.starts_with("fresh in the cache: ran ") && why.ends_with(" as a; will be restored"),
        "{why}"
    );
    p.run(&["run"]).ok().has("restored a").has("0 ran");
}

/// A dep that cannot be hashed makes its own stage fail, and only it.
#[test]
fn an_unreadable_dep_is_reported_for_its_stage_and_the_rest_goes_on() {
    let p = Project::with(
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
    let rows = p.status();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (state, reason) = p.state_of("loop");
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
    assert_eq!(p.state_of("fine").0, "fresh");
}
