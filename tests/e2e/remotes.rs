//! Remotes carry results between copies of a project: a directory (a
//! shared file system) and S3 (moto's standalone server on localhost,
//! where installed; CI sets FMNIST_PIPE_NO_SKIPS so it never skips).

use crate::common::{skip, Lacks, Project};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two stages: one writes a directory of `files` files, one reads it.
fn pipeline(remote: &str, files: usize) -> String {
    format!(
        "settings:\n  remotes:\n    {remote}\nstages:\n  make:\n    kind: cmd\n    params: {{files: {files}}}\n    cmd: \"mkdir -p big && for i in $(seq ${{params.files}}); do head -c 20000 /dev/urandom > big/f$i; done; echo made >> ../made.log\"\n    outs: [big]\n  sum:\n    kind: cmd\n    needs: [make]\n    cmd: \"cat big/* | cksum > sum.txt\"\n    outs: [sum.txt]\n"
    )
}

/// Every file under `dir` with its bytes; not the hidden ones a remote
/// writes before renaming them into place (nor those renamed meanwhile).
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(bytes) = fs::read(&p) {
            out.push((p.clone(), bytes));
        }
    }
    out.sort();
    out
}

/// The project's outputs, relative, with their bytes.
fn outputs(p: &Project) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = all_files(&p.path("big"))
        .into_iter()
        .map(|(f, b)| (f.strip_prefix(p.dir()).unwrap().to_path_buf(), b))
        .collect();
    out.push(("sum.txt".into(), fs::read(p.path("sum.txt")).unwrap()));
    out
}

/// A fresh copy of `p`: its pipeline only.
fn copy_of(p: &Project) -> Project {
    Project::with(&p.read("pipeline.yaml"))
}

#[test]
fn a_directory_remote_carries_results_to_a_fresh_copy() {
    let a = Project::new();
    let remote = a.outside().join("remote");
    fs::create_dir(&remote).unwrap();
    a.pipeline(&pipeline(&format!("origin: {}", remote.display()), 20));
    // A named stage must be fresh: it has no result to push before.
    a.run(&["push", "sum"])
        .exits(2)
        .stderr_is("error: make is not fresh (never run), so it has no result to push\n  help: run `fmnist-pipe run make` first\n");
    a.run(&["run"]).ok().has("2 ran");
    a.run(&["push"])
        .ok()
        .has("pushed   make  (20 files,")
        .has("2 pushed");
    a.run(&["push"])
        .ok()
        .has("0 pushed (0 files, 0 bytes), 2 already on origin");
    // A copy with `run --pull` runs nothing, with the same bytes.
    let b = copy_of(&a);
    b.run(&["run", "--pull"])
        .ok()
        .has("restored make  (big from remote `origin`)")
        .has("0 ran, 0 cached, 2 restored");
    assert_eq!(outputs(&a), outputs(&b));
    assert_eq!(
        fs::read_to_string(a.outside().join("made.log")).unwrap(),
        "made\n"
    );
    // `pull` into another copy; then `run` has nothing to do.
    let c = copy_of(&a);
    c.run(&["pull"]).ok().has("2 restored");
    c.run(&["run"]).ok().has("0 ran, 2 cached");
    assert_eq!(outputs(&a), outputs(&c));
}

#[test]
fn damaged_remote_objects_are_named_and_never_used() {
    let a = Project::new();
    let remote = a.outside().join("remote");
    fs::create_dir(&remote).unwrap();
    a.pipeline(&pipeline(&format!("origin: {}", remote.display()), 3));
    a.run(&["run"]).ok();
    a.run(&["push"]).ok();
    let objects = all_files(&remote.join("objects"));
    assert_eq!(objects.len(), 4);
    for (f, _) in &objects {
        fs::write(f, "not what its name says").unwrap();
    }
    let b = copy_of(&a);
    let r = b.run(&["pull"]).exits(3);
    assert!(
        r.stdout()
            .contains("FAILED   make: remote `origin` holds damaged files for it (content that does not match its name: objects/"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout()
            .contains("skipped  sum  (needs make, which failed)"),
        "{}",
        r.stdout()
    );
    assert!(
        !b.path("big").exists() && !b.path("sum.txt").exists(),
        "nothing damaged reaches the workspace"
    );
    assert!(crate::common::objects(&b).is_empty(), "nor the cache");
    // `run --pull` says so and computes it here.
    b.run(&["run", "--pull"])
        .ok()
        .has("warning: make: remote `origin` holds damaged files")
        .has("make runs here instead")
        .has("2 ran");
    // A push from where it is whole replaces the damaged copies.
    a.run(&["push"]).ok().has("pushed   make  (3 files,");
    let c = copy_of(&a);
    c.run(&["pull"]).ok().has("2 restored");
    assert_eq!(outputs(&a), outputs(&c));
}

/// A result whose files the local cache no longer holds whole is not sent.
#[test]
fn a_result_whose_objects_are_not_all_here_is_not_pushed() {
    let a = Project::new();
    let remote = a.outside().join("remote");
    fs::create_dir(&remote).unwrap();
    a.pipeline(&pipeline(&format!("origin: {}", remote.display()), 2));
    a.run(&["run"]).ok();
    let sum = fs::read(a.path("sum.txt")).unwrap();
    let object = crate::common::objects(&a)
        .into_iter()
        .find(|o| fs::read(o).unwrap() == sum)
        .unwrap();
    fs::remove_file(&object).unwrap();
    let r = a.run(&["push"]).exits(3);
    assert!(
        r.stdout()
            .contains("REFUSED  sum: the cache lacks 1 of its files, or holds them damaged"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("pushed   make"), "{}", r.stdout());
    assert_eq!(
        fs::read_dir(remote.join("runs")).unwrap().count(),
        1,
        "only make's run"
    );
}

/// A push killed in the middle of a run's files leaves no run visible,
/// and the next push finishes the job. The remote holds a FIFO where one
/// of the files goes: the push blocks there (reading what the remote
/// holds), so it is always killed midway, never after it finished.
#[test]
fn a_push_killed_midway_shows_nothing_and_the_next_one_finishes() {
    let a = Project::new();
    let remote = a.outside().join("remote");
    fs::create_dir(&remote).unwrap();
    a.pipeline(&pipeline(&format!("origin: {}", remote.display()), 300));
    a.run(&["run"]).ok();
    // make's objects, in the order a push sends them (sorted by hash).
    let sum = fs::read(a.path("sum.txt")).unwrap();
    let mut hashes: Vec<String> = crate::common::objects(&a)
        .into_iter()
        .filter(|o| fs::read(o).unwrap() != sum)
        .map(|o| {
            let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
            format!("{}{}", name(o.parent().unwrap()), name(&o))
        })
        .collect();
    hashes.sort();
    assert_eq!(hashes.len(), 300);
    let on_remote = |h: &str| remote.join("objects").join(&h[..2]).join(&h[2..]);
    let stop = hashes.len() / 2;
    let fifo = on_remote(&hashes[stop]);
    fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

    let mut push = a.cmd(&["push"]).stdout(Stdio::null()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while !hashes[..stop].iter().all(|h| on_remote(h).is_file()) {
        assert!(Instant::now() < until, "the push sent nothing in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        push.try_wait().unwrap().is_none(),
        "the push waits at the FIFO"
    );
    push.kill().unwrap();
    push.wait().unwrap();
    assert!(
        fs::read_dir(remote.join("runs")).map_or(0, |d| d.count()) == 0,
        "no run is visible before all its objects are"
    );
    fs::remove_file(&fifo).unwrap();
    // A copy pulling now finds nothing to restore, and nothing broken.
    let b = copy_of(&a);
    b.run(&["pull"]).exits(4).has("not pulled  make");
    a.run(&["push"]).ok().has("2 pushed");
    b.run(&["pull"]).ok().has("2 restored");
    assert_eq!(outputs(&a), outputs(&b));
}

#[test]
fn an_unusable_remote_is_named_with_the_fix() {
    let a = Project::with(&pipeline("origin: nowhere", 1));
    a.run(&["run"]).ok();
    a.run(&["push"]).exits(3).stderr_is(&format!(
        "error: remote `origin`: {0} is not a directory (or not mounted here)\n  help: create it (`mkdir -p {0}`), or point settings.remotes at an existing directory\n",
        "./nowhere"
    ));
    a.run(&["run", "--pull"]).exits(3).has("remote `origin`");
    let two = Project::with(&pipeline("a: x\n    b: y", 1));
    two.run(&["push"])
        .exits(2)
        .has("declares 2 remotes (a, b): say which with --remote");
    two.run(&["push", "--remote", "c"])
        .exits(2)
        .has("no remote `c`");
    let none = Project::with("stages:\n  s: {kind: cmd, cmd: 'true'}\n");
    none.run(&["pull"])
        .exits(2)
        .has("the pipeline declares no remote");
}

#[test]
fn remote_settings_are_checked_when_the_pipeline_loads() {
    for (remote, message) in [
        (
            "o: s3://bucket/p",
            "settings.remotes.o: `s3://bucket/p` is an S3 URL",
        ),
        (
            "o: {url: http://x}",
            "settings.remotes.o: `http://x` is not an s3:// URL",
        ),
        (
            "o: {url: s3://b, endpoint: localhost:9000}",
            "endpoint `localhost:9000` is not an http:// or https:// URL",
        ),
        (
            "o: {url: s3://b, bucket: b}",
            "settings.remotes.o: unknown key `bucket`",
        ),
        (
            "o: [a]",
            "settings.remotes.o: must be a directory or a mapping",
        ),
    ] {
        let p = Project::with(&pipeline(remote, 1));
        let r = p.run(&["status"]).exits(2);
        assert!(r.stderr().contains(message), "{remote}: {}", r.stderr());
        assert!(
            r.stderr().contains("pipeline.yaml:3:"),
            "file:line for {remote}: {}",
            r.stderr()
        );
    }
}

/// moto's standalone S3 server on a free port of localhost.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Option<Moto> {
    let program = std::env::var("FMNIST_PIPE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        skip(
            Lacks::S3Server,
            "no S3 server: `pip install 'moto[server]'` provides moto_server",
        );
        return None;
    };
    let m = Moto { child, port };
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "moto_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(m)
}

/// PUTs `body` at `path` of the server (moto does not check signatures):
/// a bucket, or an object overwritten behind the tool's back.
fn put(port: u16, path: &str, body: &str) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Overwrites an object behind the tool's back, as a client with keys would.
fn signed_put(port: u16, bucket: &str, key: &str, body: &[u8]) {
    use rusty_s3::S3Action;
    let endpoint = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let b = rusty_s3::Bucket::new(
        endpoint,
        rusty_s3::UrlStyle::Path,
        bucket.to_string(),
        "us-east-1",
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new("testing-key", "testing-secret-never-printed");
    let url = b
        .put_object(Some(&creds), key)
        .sign(Duration::from_secs(60));
    ureq::put(url.as_str()).send_bytes(body).unwrap();
}

fn make_bucket(port: u16, bucket: &str) {
    put(port, &format!("/{bucket}"), "");
}

fn s3_project(port: u16, bucket: &str) -> Project {
    Project::with(&pipeline(
        &format!("s3: {{url: s3://{bucket}/team/fmnist, endpoint: http://127.0.0.1:{port}, region: us-east-1}}"),
        5,
    ))
}

fn with_keys(mut c: Command) -> Command {
    c.env("AWS_ACCESS_KEY_ID", "testing-key")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-never-printed");
    c
}

#[test]
fn an_s3_remote_carries_results_to_a_fresh_copy() {
    let Some(m) = moto() else { return };
    make_bucket(m.port, "results");
    let a = s3_project(m.port, "results");
    a.run(&["run"]).ok();
    let push = crate::common::Run(with_keys(a.cmd(&["push"])).output().unwrap()).ok();
    assert!(push.stdout().contains("2 pushed"), "{}", push.stdout());
    let b = copy_of(&a);
    let run = crate::common::Run(with_keys(b.cmd(&["run", "--pull"])).output().unwrap()).ok();
    assert!(
        run.stdout().contains("0 ran, 0 cached, 2 restored"),
        "{}",
        run.stdout()
    );
    assert_eq!(outputs(&a), outputs(&b));
    for text in [push.text(), run.text()] {
        assert!(!text.contains("testing-secret"), "a secret printed: {text}");
    }
    for f in all_files(&b.path("cache")) {
        assert!(
            !String::from_utf8_lossy(&f.1).contains("testing-secret"),
            "a secret in {}",
            f.0.display()
        );
    }
    // Every object in the bucket damaged: a fresh copy's pull uses none.
    for o in crate::common::objects(&a) {
        let name = o.file_name().unwrap().to_string_lossy().into_owned();
        let dir = o
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        signed_put(
            m.port,
            "results",
            &format!("team/fmnist/objects/{dir}/{name}"),
            b"damaged",
        );
    }
    let c = copy_of(&a);
    let r = crate::common::Run(with_keys(c.cmd(&["pull"])).output().unwrap()).exits(3);
    assert!(
        r.stdout()
            .contains("FAILED   make: remote `s3` holds damaged files"),
        "{}",
        r.stdout()
    );
    assert!(!c.path("big").exists() && !c.path("sum.txt").exists());
    // A push from the copy that holds them whole repairs the bucket.
    let push = crate::common::Run(with_keys(a.cmd(&["push"])).output().unwrap()).ok();
    assert!(push.stdout().contains("2 pushed"), "{}", push.stdout());
    crate::common::Run(with_keys(c.cmd(&["pull"])).output().unwrap()).ok();
    assert_eq!(outputs(&a), outputs(&c));
}

#[test]
fn a_missing_bucket_and_an_unreachable_server_are_named() {
    let Some(m) = moto() else { return };
    let a = s3_project(m.port, "no-such-bucket");
    a.run(&["run"]).ok();
    let r = crate::common::Run(with_keys(a.cmd(&["push"])).output().unwrap()).exits(3);
    assert!(
        r.stderr()
            .contains("error: remote `s3`: the bucket does not exist"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("help: create the bucket"),
        "{}",
        r.stderr()
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = s3_project(closed, "results");
    let r = crate::common::Run(with_keys(b.cmd(&["pull"])).output().unwrap()).exits(3);
    assert!(
        r.stderr().contains("error: remote `s3`: cannot be reached"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr()
            .contains("help: check `endpoint` in settings.remotes"),
        "{}",
        r.stderr()
    );
}

/// A server that accepts every connection and drops it at once (after
/// reading the request): the transport error must not print the signed
/// URL, whose query holds the key ID and a signature.
#[test]
fn a_dropped_connection_prints_no_credential() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            drop(s);
        }
    });
    let a = s3_project(port, "results");
    a.run(&["run"]).ok();
    let b = copy_of(&a);
    for (p, cmd) in [
        (&a, &["push"][..]),
        (&b, &["pull"]),
        (&b, &["run", "--pull"]),
    ] {
        let out = with_keys(p.cmd(cmd)).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(3), "{cmd:?}: {text}");
        assert!(
            text.contains("remote `s3`: cannot be reached"),
            "{cmd:?}: {text}"
        );
        for secret in ["testing-key", "Signature", "X-Amz", "testing-secret"] {
            assert!(!text.contains(secret), "{cmd:?} prints {secret}: {text}");
        }
    }
}
