//! Seeing a run: its live files, the trace of what each stage used, the
//! live page in a browser (from the file, and through `serve`), and
//! `serve`'s refusals.

use crate::common::*;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Two commands with known appetites: 300 MiB held for a second, and two
/// processes each busy until it has used 2 s of CPU.
const APPETITES: &str = r#"stages:
  big:
    kind: cmd
    cmd: |
      python3 -c "import time; b = bytearray(b'x') * (300 << 20); time.sleep(1)" && touch big.txt
    outs: [big.txt]
    resources: {mem_mb: 200}
  busy:
    kind: cmd
    cmd: |
      spin='import time
      while time.process_time() < 2: pass'
      python3 -c "$spin" & python3 -c "$spin" & wait && touch busy.txt
    outs: [busy.txt]
    resources: {cpus: 2}
  talk:
    kind: cmd
    cmd: |
      for i in 1 2 3; do echo "{\"step\": $i, \"val_acc\": 0.$((i + 5))}" >> "$FMNIST_PIPE_LIVE"; done
      printf '{"step": 4, "val' >> "$FMNIST_PIPE_LIVE"
      echo done > talk.txt
    outs: [talk.txt]
"#;

fn has_python() -> bool {
    if Command::new("python3").arg("--version").output().is_ok() {
        return true;
    }
    skip(Lacks::Python, "python3 is not installed");
    false
}

/// The one live directory of the project's runs (its newest).
fn live_dir(p: &Project) -> PathBuf {
    let root = p.path("cache/live");
    let mut runs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    runs.sort();
    runs.pop().expect("a run directory")
}

#[test]
fn a_stage_is_traced_with_the_memory_and_cpu_it_used() {
    if !has_python() {
        return;
    }
    let p = Project::with(APPETITES);
    let out = p.run(&["run"]).ok();
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = live_dir(&p);
    assert!(
        text.contains(&format!(
            "live page: file://{}",
            dir.join("index.html").canonicalize().unwrap().display()
        )),
        "{text}"
    );
    let o = p.run(&["trace", "--json"]).ok();
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stage = |name: &str| {
        t["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["stage"] == name)
            .unwrap_or_else(|| panic!("{name} in {t}"))
            .clone()
    };
    let big = stage("big");
    let mb = big["peak_rss_mb"].as_f64().unwrap();
    assert!((300.0..=330.0).contains(&mb), "300 MiB within 10%: {big}");
    let busy = stage("busy");
    let cpu = busy["cpu_s"].as_f64().unwrap();
    assert!((3.9..=4.6).contains(&cpu), "two processes × 2 s: {busy}");
    assert_eq!(busy["cpus"], 2);
    assert_eq!(busy["outcome"], "done");
    assert!(busy["wall_s"].as_f64().unwrap() >= 2.0, "{busy}");
    // The command's own lines, the torn last one left out.
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.contains("val_acc per epoch"), "the command's curve");
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "the final page stays"
    );
    assert!(page.contains("The run finished: 3 ran"), "how it ended");
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["ended"]["how"], "finished");
    let events = fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert_eq!(
        events
            .lines()
            .filter(|l| l.contains("\"what\":\"done\""))
            .count(),
        3,
        "{events}"
    );
    // The history names the run's directory; the tab-separated form.
    let log = p.run(&["log", "--json"]).ok();
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert!(String::from_utf8_lossy(&log.stdout).contains(&name));
    let tsv = String::from_utf8_lossy(&p.run(&["trace", "1", "--tsv"]).ok().stdout).into_owned();
    assert!(
        tsv.starts_with("stage\tkind\toutcome\tstart_s\tqueue_s\twall_s\tcpu_s"),
        "{tsv}"
    );
    assert_eq!(tsv.lines().count(), 4, "{tsv}");
    // The table fits COLUMNS.
    let o = p.cmd(&["trace"]).env("COLUMNS", "100").output().unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    // What was measured, against what is declared.
    let st = p.run(&["status"]).ok();
    let said = String::from_utf8_lossy(&st.stdout);
    assert!(
        said.contains("warning: big: its last run peaked at")
            && said.contains("MB of memory, above its mem_mb: 200"),
        "{said}"
    );
    let dry = p.run(&["run", "--dry-run"]).ok();
    assert!(String::from_utf8_lossy(&dry.stdout).contains("warning: big: its last run peaked"));
    // A run with nothing to do leaves no directory behind.
    p.run(&["run"]).ok();
    assert_eq!(fs::read_dir(p.path("cache/live")).unwrap().count(), 1);
}

/// A command that runs until stopped.
const LONG: &str = r#"stages:
  quick:
    kind: cmd
    cmd: touch quick.txt
    outs: [quick.txt]
  long:
    kind: cmd
    cmd: touch started; sleep 60; touch long.txt
    deps: [quick.txt]
    outs: [long.txt]
"#;

#[test]
fn a_killed_run_s_trace_says_which_stages_were_cut_short() {
    let p = Project::with(LONG);
    let child = p.start(&["run"], "started");
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let o = p.run(&["trace"]).ok();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(local, interrupted)"), "{text}");
    assert!(text.contains("Cut short: long."), "{text}");
    let json = String::from_utf8_lossy(&p.run(&["trace", "--json"]).ok().stdout).into_owned();
    let t: serde_json::Value = serde_json::from_str(&json).unwrap();
    let outcomes: Vec<(&str, &str)> = t["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["stage"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("quick", "done"), ("long", "interrupted")]);
    let page = fs::read_to_string(live_dir(&p).join("index.html")).unwrap();
    assert!(
        page.contains("The run interrupted"),
        "the page says how it ended"
    );
}

/// `serve --port 0` in the project: the child and its address.
fn serve(p: &Project) -> (std::process::Child, String) {
    let mut child = p
        .cmd(&["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut said = Vec::new();
    let mut byte = [0u8; 1];
    while !said.ends_with(b"\n") && out.read(&mut byte).unwrap_or(0) == 1 {
        said.push(byte[0]);
    }
    let said = String::from_utf8(said).unwrap();
    let addr = said
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {said:?}"))
        .to_string();
    (child, addr)
}

/// A raw request; the status line's code and the body.
fn get(addr: &str, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (code, body)
}

fn plain(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

#[test]
fn serve_answers_its_own_pages_and_refuses_every_way_out() {
    let p = Project::with(LONG.replace("sleep 60", "sleep 0").as_str());
    p.run(&["run"]).ok();
    let name = live_dir(&p)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    p.file("cache/secret.txt", "not for the network");
    // A run directory that is a link out of the cache.
    let outside = p.outside().join("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    fs::write(
        outside.join("state.json"),
        fs::read(live_dir(&p).join("state.json")).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, p.path("cache/live/20200101T000000Z-1")).unwrap();
    let (mut child, addr) = serve(&p);
    let (code, body) = get(&addr, &plain("/"));
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!("/runs/{name}/")) && body.contains("#1"),
        "{body}"
    );
    assert!(
        !body.contains("20200101T000000Z-1"),
        "the link is not listed"
    );
    let (code, body) = get(&addr, &plain(&format!("/runs/{name}/")));
    assert_eq!(code, 200);
    assert!(body.contains("The run finished") && body.contains("EventSource"));
    for bad in [
        "/../secret.txt".to_string(),
        "/runs/../../secret.txt".into(),
        "/runs/%2e%2e/%2e%2e/secret.txt".into(),
        "/runs/%2E%2E%2Fsecret.txt".into(),
        format!("/runs/{name}/../../secret.txt"),
        format!("/runs/{name}/state.json"),
        format!("/runs/{name}%2f..%2f..%2fsecret.txt"),
        "//etc/passwd".into(),
        "/etc/passwd".into(),
        format!("{}/secret.txt", p.path("cache").display()),
        "/runs/20200101T000000Z-1/".into(),
        "/runs/20200101T000000Z-1/events".into(),
    ] {
        let (code, body) = get(&addr, &plain(&bad));
        assert_eq!(code, 404, "{bad}: {body}");
        assert!(!body.contains("not for the network"));
    }
    let (code, _) = get(
        &addr,
        &format!("GET http://{addr}/runs/{name}/ HTTP/1.1\r\n\r\n"),
    );
    assert_eq!(code, 404, "an absolute target");
    let (code, _) = get(
        &addr,
        &format!("POST /runs/{name}/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
    );
    assert_eq!(code, 405, "read-only");
    let (code, _) = get(&addr, "\r\n\r\n");
    assert_eq!(code, 400);
    // Events from the start, then after a dropped connection from where
    // the browser was.
    let (code, all) = get(&addr, &plain(&format!("/runs/{name}/events")));
    assert_eq!(code, 200);
    let ids: Vec<u64> = all
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert!(ids.len() >= 4 && all.contains("event: end"), "{all}");
    let (_, rest) = get(
        &addr,
        &format!(
            "GET /runs/{name}/events HTTP/1.1\r\nLast-Event-ID: {}\r\n\r\n",
            ids[1]
        ),
    );
    let again: Vec<u64> = rest
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert_eq!(again, ids[2..], "resumed after the last event seen");
    child.kill().ok();
    child.wait().ok();
    assert!(p.path("cache/secret.txt").exists());
}

fn chromium() -> Option<String> {
    let c = std::env::var("FMNIST_PIPE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    if Command::new(&c).arg("--version").output().is_err() {
        skip(
            Lacks::Chromium,
            &format!("{c} is not installed (apt-get install chromium)"),
        );
        return None;
    }
    Some(c)
}

/// Opens the live page in a frame; at each of its loads (it reloads itself
/// while the run runs) notes the run's and stage `gate`'s state, and
/// reads a large file to let real time pass between reloads (the browser
/// runs on virtual time).
const HARNESS: &str = r#"<!doctype html><html><body><iframe id="f" width="1000" height="700"></iframe><pre id="result">not loaded</pre>
<script>
var seen = [], loads = 0;
var f = document.getElementById("f");
function wait() { var x = new XMLHttpRequest(); x.open("GET", "BURN?" + loads, false); try { x.send(); } catch (e) {} }
f.addEventListener("load", function () {
  loads++;
  var d = f.contentDocument, run = d && d.body ? d.body.dataset.state || "none" : "none";
  var row = d && d.getElementById("stage-gate");
  var now = run + "/" + (row ? row.dataset.state : "none");
  if (seen[seen.length - 1] !== now) seen.push(now);
  document.getElementById("result").textContent = JSON.stringify({seen: seen, loads: loads, refresh: !!d.querySelector("meta[http-equiv=refresh]")});
  if (run === "running" || run === "none") { wait(); if (run === "none") setTimeout(function () { f.src = "PAGE?" + loads; }, 3000); }
});
f.src = "PAGE";
</script></body></html>"#;

fn browser(chromium: &str, home: &Path, url: &str) -> String {
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=3000000",
            "--dump-dom",
        ])
        .arg(url)
        .env("HOME", home)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny real study (two variants, two seeds, three epochs) behind a
/// stage that holds it for a few seconds.
fn gated_study() -> Project {
    tiny_project(|s| {
        s.replace("    variants:\n", "    seeds: [1, 2]\n    variants:\n")
            .replace("      epochs: 1\n", "      epochs: 3\n")
            .replace(
                "  train:\n    kind: train\n    needs: [preprocess]",
                "  gate:\n    kind: cmd\n    cmd: sleep 5 && touch gate.txt\n    outs: [gate.txt]\n  train:\n    kind: train\n    needs: [preprocess, gate]",
            )
    })
}

#[test]
fn a_browser_sees_the_live_page_change_from_the_file_and_through_serve() {
    let Some(chromium) = chromium() else { return };
    let burn = std::env::temp_dir().join(format!("fmnist-pipe-burn-{}", std::process::id()));
    fs::write(&burn, vec![7u8; 4 << 20]).unwrap();
    // From the file: reload after reload, the stage changes state.
    let p = gated_study();
    let mut run = p
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path("cache/live"));
    let dir = live_dir(&p);
    wait_for(&dir.join("index.html"));
    let harness = p.outside().join("harness.html");
    fs::write(
        &harness,
        HARNESS
            .replace(
                "PAGE",
                &format!("file://{}", dir.join("index.html").display()),
            )
            .replace("BURN", &format!("file://{}", burn.display())),
    )
    .unwrap();
    let dom = browser(
        &chromium,
        p.outside(),
        &format!("file://{}", harness.display()),
    );
    assert!(run.wait().unwrap().success());
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result: {dom}"));
    let r: serde_json::Value = serde_json::from_str(&result.replace("&quot;", "\"")).unwrap();
    let seen: Vec<String> = serde_json::from_value(r["seen"].clone()).unwrap();
    assert!(
        seen.iter().any(|s| s == "running/running"),
        "the gate seen running: {r}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("finished/done"),
        "{r}"
    );
    assert_eq!(r["refresh"], false, "the final page stops reloading: {r}");
    // The picture the guide shows.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    fs::create_dir_all(&shot).ok();
    Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1100,2100",
        ])
        .arg(format!(
            "--screenshot={}",
            shot.join("live-page.png").display()
        ))
        .arg(format!("file://{}", dir.join("index.html").display()))
        .env("HOME", p.outside())
        .output()
        .ok();
    let page = fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.contains("val_acc per epoch") && page.contains("id=\"comparison\""));
    assert!(page.contains("id=\"resources\"") && page.contains("Timeline"));

    // Through serve: the page follows the events, without reloading.
    let p = gated_study();
    let (mut server, addr) = serve(&p);
    let mut run = p
        .cmd(&["run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path("cache/live"));
    let name = live_dir(&p)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    wait_for(&live_dir(&p).join("state.json"));
    let dom = browser(
        &chromium,
        p.outside(),
        &format!("http://{addr}/runs/{name}/"),
    );
    assert!(run.wait().unwrap().success());
    server.kill().ok();
    server.wait().ok();
    fs::remove_file(&burn).ok();
    assert!(
        dom.contains("data-state=\"finished\""),
        "the final state: {dom}"
    );
    let updates: u32 = dom
        .split("data-updates=\"")
        .nth(1)
        .and_then(|r| r.split('"').next()?.parse().ok())
        .unwrap_or(0);
    assert!(updates >= 2, "updated by events: {updates}");
    let seen = dom.split("<pre id=\"seen\"").nth(1).unwrap_or("");
    let running = seen
        .find("gate: running")
        .unwrap_or_else(|| panic!("{seen}"));
    let done = seen.find("gate: done").unwrap_or_else(|| panic!("{seen}"));
    assert!(running < done && seen.contains("run finished"), "{seen}");
}
