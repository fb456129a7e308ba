//! Records written by someone else (a remote, a project sharing the
//! cache) are checked before anything in them becomes a file name: a
//! hostile record changes nothing outside the project's outputs and the
//! cache, and never hangs or panics the run.

use crate::common::Project;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One stage writing a directory of two files, with a directory remote.
fn pipeline(remote: &Path) -> String {
    format!(
        "settings:\n  remotes:\n    origin: {}\nstages:\n  make:\n    kind: cmd\n    cmd: \"mkdir -p out/sub && echo a > out/a && echo b > out/sub/b\"\n    outs: [out]\n",
        remote.display()
    )
}

/// A project that ran and pushed, its remote, and its record there.
fn pushed() -> (Project, PathBuf, PathBuf) {
    let a = Project::new();
    let remote = a.outside().join("remote");
    fs::create_dir(&remote).unwrap();
    a.pipeline(&pipeline(&remote));
    a.run(&["run"]).ok();
    a.run(&["push"]).ok().has("1 pushed");
    let run = fs::read_dir(remote.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (a, remote, run)
}

/// A directory's hash as the cache computes it, so that a forged record
/// is consistent and only its paths or hashes are hostile.
fn dir_hash(files: &[Value]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"dir\0");
    for f in files {
        h.update(f["rel"].as_str().unwrap_or_default().as_bytes());
        h.update(b"\0");
        h.update(f["hash"].as_str().unwrap_or_default().as_bytes());
        h.update(if f["exec"].as_bool() == Some(true) {
            b"\0x\n"
        } else {
            b"\0-\n"
        });
    }
    h.finalize().to_hex().to_string()
}

/// Rewrites the remote's record with `edit` applied to its first output's
/// files, the tree's hash made to fit.
fn forge(run: &Path, edit: impl Fn(&mut Vec<Value>)) {
    let mut v: Value = serde_json::from_slice(&fs::read(run).unwrap()).unwrap();
    let tree = &mut v["outputs"][0]["tree"];
    let mut files = tree["files"].as_array().unwrap().clone();
    edit(&mut files);
    tree["hash"] = Value::String(dir_hash(&files));
    tree["files"] = Value::Array(files);
    fs::write(run, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Every file under `dir` (not following links) with its bytes.
fn snapshot(dir: &Path, skip: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Runs `args` in `p`, killed if it takes over 60 s (a hang is a failure).
fn run_bounded(p: &Project, args: &[&str]) -> (i32, String) {
    let mut child = p
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`{}` hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_remote_record_cannot_choose_where_pull_writes() {
    let (a, _remote, run) = pushed();
    let victim = a.outside().join("victim");
    let original = fs::read(&run).unwrap();
    let escapes = [
        "../../victim".to_string(),
        "../victim".to_string(),
        victim.display().to_string(),
        "sub/../../../victim".to_string(),
    ];
    for rel in &escapes {
        fs::write(&run, &original).unwrap();
        forge(&run, |files| files[0]["rel"] = Value::String(rel.clone()));
        let b = Project::with(&a.read("pipeline.yaml"));
        let r = b.run(&["pull"]).exits(3);
        r.has("FAILED   make: remote `origin` holds a damaged record of its result (output out: the file path")
            .has("leaves its output); nothing of it was used")
            .has("help: push the stage again from a machine where it is fresh");
        assert!(!victim.exists(), "{rel}: written outside the project");
        assert!(!b.path("out").exists(), "{rel}: nothing restored");
        // `run --pull` computes it here instead.
        b.run(&["run", "--pull"])
            .ok()
            .has("warning: make: remote `origin` holds a damaged record")
            .has("make runs here instead");
        assert!(!victim.exists());
    }
    // A push from where it is whole replaces the damaged record.
    a.run(&["push"]).ok().has("pushed   make");
    let c = Project::with(&a.read("pipeline.yaml"));
    c.run(&["pull"]).ok().has("1 restored");
    assert_eq!(c.read("out/sub/b"), "b\n");
}

#[test]
fn a_remote_hash_never_names_a_file_outside_the_objects() {
    let (a, _remote, run) = pushed();
    let victim = a.outside().join("victim");
    fs::write(&victim, "mine").unwrap();
    let original = fs::read(&run).unwrap();
    let hashes = [
        format!("../{}", victim.display()),
        format!("../../../../../../..{}", victim.display()),
        // Multi-byte characters where the object's directory is cut off
        // made `pull` panic in a worker and hang.
        "é".repeat(32),
        "ABCDEF".into(),
    ];
    for h in &hashes {
        fs::write(&run, &original).unwrap();
        forge(&run, |files| files[0]["hash"] = Value::String(h.clone()));
        let b = Project::with(&a.read("pipeline.yaml"));
        let (code, text) = run_bounded(&b, &["pull"]);
        assert_eq!(code, 3, "{h}: {text}");
        assert!(text.contains("is not a content hash"), "{h}: {text}");
        assert!(!text.contains("panicked"), "{h}: {text}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "mine", "{h}");
    }
}

#[test]
fn a_record_planted_in_a_shared_cache_is_set_aside() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let text = format!(
        "settings:\n  cache: {}\nstages:\n  make:\n    kind: cmd\n    cmd: \"mkdir -p out && echo a > out/a && echo ran >> ../ran.log\"\n    outs: [out]\n",
        cache.display()
    );
    let a = Project::with(&text);
    a.run(&["run"]).ok();
    let entry = fs::read_dir(cache.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = shared.path().join("victim");
    forge(&entry, |files| {
        files[0]["rel"] = Value::String(format!(
            "../../{}",
            "../".repeat(8) + &victim.display().to_string()
        ))
    });
    let b = Project::with(&text);
    let key = entry.file_stem().unwrap().to_string_lossy().into_owned();
    b.run(&["status"]).has(&format!(
        "the run cache's record of this result (runs/{key}.json) is damaged (output out: the file path"
    ));
    b.run(&["run"]).ok().has("1 ran");
    assert!(!victim.exists());
    assert_eq!(b.read("out/a"), "a\n");
    // The stage's run replaced the damaged record: a third project restores.
    let c = Project::with(&text);
    c.run(&["run"]).ok().has("1 restored");
}

#[test]
fn push_repairs_a_damaged_record_and_says_what_is_missing() {
    let (a, remote, run) = pushed();
    // A missing object is missing, not "content does not match".
    let objects = snapshot(&remote.join("objects"), &[]);
    fs::remove_file(&objects[0].0).unwrap();
    let b = Project::with(&a.read("pipeline.yaml"));
    b.run(&["pull"])
        .exits(3)
        .has("remote `origin` holds an incomplete result for it (it lacks objects/")
        .lacks("does not match");
    // A damaged record on the remote is not `already on origin`.
    fs::write(&run, "{\"key\": 1}").unwrap();
    a.run(&["push"]).ok().has("pushed   make").has("1 pushed");
    b.run(&["pull"]).ok().has("1 restored");
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// Hostile values for each field of a record: paths, hashes, sizes and
/// JSON of the wrong shape.
fn mutate(v: &mut Value, rng: &mut Rng, outside: &Path) {
    let strings: Vec<Value> = [
        "..".to_string(),
        "../x".into(),
        format!("{}/fuzzed", outside.display()),
        "a/../../b".into(),
        "".into(),
        "é".repeat(40),
        "\u{0}".into(),
        "/".into(),
        "a//b".into(),
        "0".repeat(64),
        "f".repeat(65),
        format!("../{}", outside.display()),
    ]
    .into_iter()
    .map(Value::String)
    .collect();
    let others = [
        Value::Null,
        Value::Bool(true),
        serde_json::json!(-1),
        serde_json::json!(1e300),
        serde_json::json!(u64::MAX),
        serde_json::json!([]),
        serde_json::json!({}),
    ];
    if !v["outputs"][0]["tree"].is_object() {
        v["outputs"] = rng.pick(&others).clone();
        return;
    }
    let tree = &mut v["outputs"][0]["tree"];
    match rng.next() % 7 {
        0 if tree["files"][0].is_object() => tree["files"][0]["rel"] = rng.pick(&strings).clone(),
        1 if tree["files"][0].is_object() => tree["files"][0]["hash"] = rng.pick(&strings).clone(),
        2 => tree["hash"] = rng.pick(&strings).clone(),
        3 if tree["files"][0].is_object() => tree["files"][0]["size"] = rng.pick(&others).clone(),
        4 => tree["is_dir"] = rng.pick(&others).clone(),
        5 => v["outputs"] = rng.pick(&others).clone(),
        _ => {
            // A consistent tree with a hostile path: only the path is wrong.
            let mut files = tree["files"].as_array().cloned().unwrap_or_default();
            if let Some(f) = files.first_mut().filter(|f| f.is_object()) {
                f["rel"] = rng.pick(&strings).clone();
            }
            tree["hash"] = Value::String(dir_hash(&files));
            tree["files"] = Value::Array(files);
        }
    }
}

#[test]
fn random_hostile_records_change_nothing_outside() {
    let (a, remote, run) = pushed();
    let original: Value = serde_json::from_slice(&fs::read(&run).unwrap()).unwrap();
    let outside = a.outside().to_path_buf();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let b = Project::with(&a.read("pipeline.yaml"));
    for round in 0..40 {
        let mut v = original.clone();
        for _ in 0..=(rng.next() % 2) {
            mutate(&mut v, &mut rng, &outside);
        }
        fs::write(&run, serde_json::to_vec(&v).unwrap()).unwrap();
        let _ = fs::remove_dir_all(b.path("out"));
        // Everything but the project's outputs, the cache and the remote.
        let keep = [b.path("out"), b.path("cache"), remote.clone()];
        let before = snapshot(&outside, &keep);
        let (code, text) = run_bounded(&b, &["pull"]);
        assert!(
            code == 0 || code == 3,
            "round {round}: exit {code}\n{v}\n{text}"
        );
        assert!(!text.contains("panicked"), "round {round}\n{v}\n{text}");
        assert_eq!(before, snapshot(&outside, &keep), "round {round}\n{v}");
        if code == 0 {
            // Whatever was accepted is exactly what was pushed.
            assert_eq!(b.read("out/sub/b"), "b\n", "round {round}\n{v}");
        }
    }
}
