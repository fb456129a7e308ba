//! The cache remembers every completed run and is shared: a parameter
//! changed back, a renamed stage, a second clone and another project on
//! the same cache restore instead of running; projects on one cache
//! neither collide nor wait for each other, and a result two runs need at
//! once is computed once.

use crate::common::{Project, Run};
use std::fs;
use std::path::{Path, PathBuf};

/// A stage that sleeps, then writes its parameter; every run of it is
/// appended to `runs` (outside the project, shared by projects).
fn sleeper(name: &str, n: u32, runs: &Path, sleep: f32) -> String {
    format!(
        "stages:\n  {name}:\n    kind: cmd\n    params: {{n: {n}}}\n    cmd: \"sleep {sleep}; echo ${{params.n}} > out.txt; echo {name} >> {}\"\n    outs: [out.txt]\n",
        runs.display()
    )
}

fn with_cache(pipeline: &str, cache: &Path) -> String {
    format!("settings: {{cache: \"{}\"}}\n{pipeline}", cache.display())
}

fn lines(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_parameter_changed_back_is_restored_not_rerun() {
    let p = Project::new();
    let runs = p.outside().join("runs.log");
    p.pipeline(&sleeper("s", 1, &runs, 0.2));
    p.run(&["run"]).ok().has("1 ran");
    p.edit_pipeline("n: 1", "n: 2");
    p.run(&["run"]).ok().has("1 ran");
    assert_eq!(p.read("out.txt"), "2\n");
    p.edit_pipeline("n: 2", "n: 1");
    let (state, why) = p.state_of("s");
    assert_eq!(state, "dirty");
    let why = why.unwrap();
    assert!(
        why.starts_with("fresh in the cache: ran ") && why.ends_with(" as s; will be restored"),
        "{why}"
    );
    let json = p.run(&["status", "--json"]).ok().stdout();
    assert!(json.contains("\"kind\": \"in_cache\""), "{json}");
    p.run(&["run", "--dry-run"]).ok().has("fresh in the cache");
    p.run(&["run"])
        .ok()
        .has("restored s  (out.txt from cache)")
        .has("0 ran, 0 cached, 1 restored");
    assert_eq!(p.read("out.txt"), "1\n");
    assert_eq!(lines(&runs), 2, "the third run ran nothing");
    assert!(p.status().iter().all(|r| r.1 == "fresh"));
    // --force still reruns.
    p.run(&["run", "--force", "s"]).ok().has("1 ran");
    assert_eq!(lines(&runs), 3);
}

#[test]
fn a_renamed_command_stage_is_restored() {
    let p = Project::new();
    let runs = p.outside().join("runs.log");
    p.pipeline(&sleeper("s", 1, &runs, 0.0));
    p.run(&["run"]).ok();
    // The name is not part of what a command computes (the echo into the
    // shared log names it, so that line is rewritten: keep the command).
    let text = p.read("pipeline.yaml").replace("  s:\n", "  renamed:\n");
    p.pipeline(&text);
    p.run(&["run"]).ok().has("restored renamed").has("0 ran");
    assert_eq!(lines(&runs), 1);
}

/// Two clones of one project with one absolute cache: the second runs
/// nothing, with byte-identical outputs; each keeps its own history.
#[test]
fn a_second_clone_on_the_same_cache_runs_nothing() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let runs = shared.path().join("runs.log");
    let text = with_cache(&sleeper("s", 1, &runs, 0.2), &cache);
    let a = Project::with(&text);
    let b = Project::with(&text);
    a.run(&["run"]).ok().has("1 ran");
    b.run(&["run"]).ok().has("0 ran").has("1 restored");
    assert_eq!(
        fs::read(a.path("out.txt")).unwrap(),
        fs::read(b.path("out.txt")).unwrap()
    );
    assert_eq!(lines(&runs), 1);
    // Their records and histories are their own.
    assert!(b.status().iter().all(|r| r.1 == "fresh"));
    let log_a = a.run(&["log", "--json"]).ok().stdout();
    let log_b = b.run(&["log", "--json"]).ok().stdout();
    let count = |t: &str| {
        serde_json::from_str::<serde_json::Value>(t)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((count(&log_a), count(&log_b)), (1, 0), "{log_a}\n{log_b}");
}

/// Project B with a stage of the same name as A's, and another command,
/// on A's cache: neither sees the other's record, and gc in one keeps what
/// the other's records use.
#[test]
fn two_projects_with_a_stage_of_one_name_do_not_collide() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let runs = shared.path().join("runs.log");
    let a = Project::with(&with_cache(&sleeper("s", 1, &runs, 0.0), &cache));
    let b = Project::with(&with_cache(&sleeper("s", 2, &runs, 0.0), &cache));
    a.run(&["run"]).ok();
    b.run(&["run"]).ok().has("1 ran");
    assert!(
        a.status().iter().all(|r| r.1 == "fresh"),
        "{:?}",
        a.status()
    );
    a.run(&["run"]).ok().has("0 ran, 1 cached");
    // A forgets everything it can; B's result stays whole.
    a.edit_pipeline("  s:\n", "  t:\n");
    a.run(&["run"]).ok();
    a.run(&["gc", "--runs"]).ok();
    assert!(
        b.status().iter().all(|r| r.1 == "fresh"),
        "{:?}",
        b.status()
    );
    fs::remove_file(b.path("out.txt")).unwrap();
    b.run(&["run"]).ok().has("restored s").has("0 ran");
    assert_eq!(b.read("out.txt"), "2\n");
}

/// A project inside another, the cache inside the inner one: each has a
/// home of its own (they shared the cache's top, and the inner gc removed
/// the outer's records). The outer names the cache relatively, through
/// `..` for a third project beside them (it was refused).
#[test]
fn nested_projects_have_homes_of_their_own() {
    let outer = Project::new();
    let runs = outer.outside().join("runs.log");
    let inner_dir = outer.path("inner");
    fs::create_dir_all(&inner_dir).unwrap();
    fs::write(inner_dir.join("pipeline.yaml"), sleeper("s", 2, &runs, 0.0)).unwrap();
    outer.pipeline(&format!(
        "settings: {{cache: inner/cache}}\n{}",
        sleeper("s", 1, &runs, 0.0)
    ));
    let inner = |args: &[&str]| Run(outer.cmd(args).current_dir(&inner_dir).output().unwrap());
    outer.run(&["run"]).ok().has("1 ran");
    inner(&["run"]).ok().has("1 ran");
    inner(&["gc", "--runs"]).ok();
    outer.run(&["run"]).ok().has("0 ran, 1 cached");
    outer.run(&["gc", "--runs"]).ok();
    inner(&["run"]).ok().has("0 ran, 1 cached");
    assert_eq!(outer.read("out.txt"), "1\n");
    assert_eq!(
        fs::read_to_string(inner_dir.join("out.txt")).unwrap(),
        "2\n"
    );
    // A third project beside the outer one, on the same cache by `..`.
    let beside = outer.outside().join("beside");
    fs::create_dir_all(&beside).unwrap();
    fs::write(
        beside.join("pipeline.yaml"),
        format!(
            "settings: {{cache: ../proj/inner/cache}}\n{}",
            sleeper("s", 1, &runs, 0.0)
        ),
    )
    .unwrap();
    let r = Run(outer.cmd(&["run"]).current_dir(&beside).output().unwrap());
    // The outer project's result, restored from the shared cache.
    r.ok().has("restored s").has("0 ran");
    assert_eq!(fs::read_to_string(beside.join("out.txt")).unwrap(), "1\n");
}

fn spawn(p: &Project, args: &[&str]) -> std::process::Child {
    p.cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// A shell loop that waits up to 20 s for `path`, then goes on only if
/// it is there: the order of events held by files, not by sleeping.
fn await_file(path: &Path) -> String {
    let f = path.display();
    format!(
        "i=0; while [ ! -e {f} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; test -e {f}"
    )
}

/// Starts `p` with `args`, its output read as it comes: once a line
/// contains `seen`, `then` is created.
fn watch(
    p: &Project,
    args: &[&str],
    seen: &'static str,
    then: PathBuf,
) -> std::thread::JoinHandle<Run> {
    use std::io::BufRead;
    let mut child = spawn(p, args);
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
            if line.contains(seen) {
                fs::write(&then, "").unwrap();
            }
            text.push_str(&line);
            text.push('\n');
        }
        let mut output = child.wait_with_output().unwrap();
        output.stdout = text.into_bytes();
        Run(output)
    })
}

/// Two projects on one cache, started together: their different stages
/// run side by side (neither waits for the other's lock), and the stage
/// they share is computed once, by whichever gets to it first; the other
/// waits for it and restores it.
#[test]
fn two_projects_at_once_go_side_by_side_and_compute_a_shared_result_once() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let counter = shared.path().join("computed.log");
    // Each `own` goes on only once the other project's has begun; the
    // `same` being computed, only once the other project waits for it.
    let here = |p: &str| shared.path().join(format!("{p}.here"));
    let waited = shared.path().join("waited");
    let pipeline = |own: &str, other: &str| {
        with_cache(
            &format!(
                "stages:\n  own:\n    kind: cmd\n    cmd: \"touch {}; {} && echo {own} > own.txt\"\n    outs: [own.txt]\n  same:\n    kind: cmd\n    cmd: \"{} && echo once >> {} && echo same > same.txt\"\n    outs: [same.txt]\n",
                here(own).display(),
                await_file(&here(other)),
                await_file(&waited),
                counter.display()
            ),
            &cache,
        )
    };
    let a = Project::with(&pipeline("a", "b"));
    let b = Project::with(&pipeline("b", "a"));
    let (ca, cb) = (
        watch(&a, &["run", "--jobs", "2"], "waiting  same", waited.clone()),
        watch(&b, &["run", "--jobs", "2"], "waiting  same", waited.clone()),
    );
    let (ra, rb) = (ca.join().unwrap().ok(), cb.join().unwrap().ok());
    // Each `own` saw the other's begin: they ran side by side.
    assert_eq!(
        (a.read("own.txt"), b.read("own.txt")),
        ("a\n".into(), "b\n".into())
    );
    assert_eq!(lines(&counter), 1, "`same` computed once");
    let both = format!("{}{}", ra.stdout(), rb.stdout());
    assert!(both.contains("restored same"), "{both}");
    // The one that waited names the other project's directory, absolute.
    let dirs =
        [a.dir(), b.dir()].map(|d| format!("(same in {})", d.canonicalize().unwrap().display()));
    assert!(
        both.contains("is computing the same result")
            && dirs.iter().any(|d| both.contains(d.as_str())),
        "{both}"
    );
    assert_eq!(a.read("same.txt"), b.read("same.txt"));
}

/// A training does not depend on its stage's name: renaming a variant,
/// or adding `seeds:` to a study that trained once, restores the training
/// already done (the evaluation, whose report names the variant, reruns).
#[test]
fn a_renamed_variant_and_a_matching_seed_restore_the_training() {
    let t = crate::common::tiny_project(|s| s);
    t.run(&["run"]).ok();
    let model = fs::read(t.path("outputs/train@main/model.safetensors")).unwrap();
    t.edit_pipeline("      main: {}\n", "      primary: {}\n")
        .edit_pipeline("reference: main", "reference: primary");
    t.run(&["run"])
        .ok()
        .has("restored train@primary")
        .lacks("running  train@primary")
        .has("running  evaluate@primary");
    assert_eq!(
        fs::read(t.path("outputs/train@primary/model.safetensors")).unwrap(),
        model
    );
    // The default seed is 42: the replicate with seed 42 is that training.
    t.edit_pipeline("    kind: train\n", "    kind: train\n    seeds: [42, 1]\n");
    t.run(&["run"])
        .ok()
        .has("restored train@primary~seed42")
        .lacks("running  train@primary~seed42")
        .has("running  train@primary~seed1");
    assert_eq!(
        fs::read(t.path("outputs/train@primary~seed42/model.safetensors")).unwrap(),
        model
    );
}

/// `gc` needs the cache to itself: while a run of another project on the
/// same cache is going, it refuses and says so (nothing removed).
#[test]
fn gc_refuses_while_another_project_runs_on_the_cache() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    // The run goes on only once gc has been refused.
    let go = shared.path().join("go");
    let slow = format!(
        "stages:\n  s:\n    kind: cmd\n    cmd: \"touch started; {} && echo s > out.txt\"\n    outs: [out.txt]\n",
        await_file(&go)
    );
    let a = Project::with(&with_cache(&slow, &cache));
    let b = Project::with(&with_cache(
        &sleeper("t", 1, &shared.path().join("runs.log"), 0.0),
        &cache,
    ));
    b.run(&["run"]).ok();
    let running = a.start(&["run"], "started");
    let r = b.run(&["gc", "--runs"]).exits(3);
    assert!(
        r.stderr().contains("error: gc needs the cache to itself, and a run (of this project or another sharing the cache) is using it")
            && r.stderr().contains("help: run gc again when no run is going"),
        "{}",
        r.stderr()
    );
    fs::write(&go, "").unwrap();
    Run(running.wait_with_output().unwrap()).ok().has("1 ran");
    b.run(&["gc", "--runs"]).ok();
    assert!(
        b.status().iter().all(|r| r.1 == "fresh"),
        "{:?}",
        b.status()
    );
}
