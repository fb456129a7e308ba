//! The HTML report in a real browser (headless Chromium, where installed:
//! Debian's `chromium`; `FMNIST_PIPE_CHROMIUM` names another): it loads
//! from the file with the network cut off, logs nothing to the console,
//! every picture decodes, and the table sorts by a clicked column.

use std::fs;
use std::process::Command;

use crate::common::*;

/// Opens the report in a frame, checks it, sorts the table by column 2
/// (both ways), and writes what it found into `#result`.
const HARNESS: &str = r#"<!doctype html><html><body>
<iframe id="f" src="REPORT" width="1200" height="800"></iframe><pre id="result">not loaded</pre>
<script>
document.getElementById("f").addEventListener("load", function () {
  var d = this.contentDocument;
  var out = {};
  try {
    var imgs = Array.prototype.slice.call(d.images);
    out.images = imgs.length;
    out.broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
    out.svgs = d.querySelectorAll("svg").length;
    out.external = d.querySelectorAll("[src^='http'], [href^='http'], link[rel='stylesheet']").length;
    var table = d.getElementById("comparison");
    out.rows = table.tBodies[0].rows.length;
    var th = table.tHead.rows[0].cells[2];
    var col = function () {
      return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
        return parseFloat(r.cells[2].textContent);
      });
    };
    th.click();
    out.up = col();
    th.click();
    out.down = col();
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById("result").textContent = JSON.stringify(out);
});
</script></body></html>"#;

#[test]
fn the_report_loads_in_a_browser_with_every_picture_and_a_sortable_table() {
    let chromium = std::env::var("FMNIST_PIPE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    if Command::new(&chromium).arg("--version").output().is_err() {
        crate::common::skip(
            crate::common::Lacks::Chromium,
            &format!("{chromium} is not installed (apt-get install chromium)"),
        );
        return;
    }
    let t = tiny_project(|s| s.replace("    variants:\n", "    seeds: [1, 2, 3]\n    variants:\n"));
    t.run(&["run"]).ok();
    // One-epoch curves show their one point.
    let curve = t.read("outputs/evaluate@main~seed1/loss.svg");
    assert!(curve.contains("<circle"), "the point is drawn");

    let report = t.path("outputs/compare/index.html");
    let harness = t.outside().join("harness.html");
    fs::write(
        &harness,
        HARNESS.replace("REPORT", &format!("file://{}", report.display())),
    )
    .unwrap();
    let o = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", harness.display()))
        .env("HOME", t.outside())
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the page:\n{dom}\n{log}"));
    let r: serde_json::Value = serde_json::from_str(&result.replace("&quot;", "\""))
        .unwrap_or_else(|e| panic!("{e}: {result}"));
    assert_eq!(r["error"], serde_json::Value::Null, "{r}");
    assert!(r["images"].as_u64().unwrap() > 10, "{r}");
    assert_eq!(r["broken"], 0, "every picture decodes: {r}");
    assert_eq!(r["external"], 0, "nothing from the network: {r}");
    assert_eq!(r["rows"], 2, "{r}");
    let up: Vec<f64> = serde_json::from_value(r["up"].clone()).unwrap();
    let down: Vec<f64> = serde_json::from_value(r["down"].clone()).unwrap();
    assert!(up.windows(2).all(|w| w[0] <= w[1]), "ascending: {up:?}");
    assert!(
        down.windows(2).all(|w| w[0] >= w[1]),
        "descending: {down:?}"
    );
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") && l.contains("index.html"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
}

#[test]
fn the_report_says_what_ran_and_what_each_variant_changes() {
    let t = tiny_project(|s| s);
    let git = |args: &[&str]| {
        Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(t.dir())
            .args(args)
            .output()
            .map(|o| o.status.success())
    };
    let in_git = matches!(git(&["init", "-q"]), Ok(true));
    if in_git {
        assert_eq!(git(&["add", "."]).ok(), Some(true));
        assert_eq!(git(&["commit", "-qm", "study"]).ok(), Some(true));
    } else {
        skip(
            Lacks::Git,
            "git is not installed: the commit in the run panel is not checked",
        );
    }
    t.run(&["run", "-S", "train.epochs=2"]).ok();
    let run: serde_json::Value = serde_json::from_str(&t.read("outputs/compare/run.json")).unwrap();
    assert_eq!(run["pipeline_file"], "pipeline.yaml");
    assert_eq!(run["overrides"], serde_json::json!(["train.epochs=2"]));
    assert!(run["pipeline_text"]
        .as_str()
        .unwrap()
        .contains("kind: compare"));
    assert!(run["started"].as_str().unwrap().starts_with("20"));
    assert_eq!(run["tool_version"], env!("CARGO_PKG_VERSION"));
    assert!(!run["cpu"].as_str().unwrap().is_empty());
    let report = t.read("outputs/compare/index.html");
    for part in [
        "<h2>What ran</h2>",
        "<th>run started</th><td>20",
        "<th>pipeline</th><td>pipeline.yaml, with -S train.epochs=2</td>",
        "pipeline.yaml as run</summary><pre>settings:",
        "<h2>What each variant changes from main</h2>",
        "<li><b>slow</b>: lr 0.0003</li>",
    ] {
        assert!(report.contains(part), "`{part}` in the report");
    }
    if in_git {
        let commit = run["git_commit"].as_str().unwrap().to_string();
        assert_eq!(commit.len(), 40, "{run}");
        assert_eq!(
            run["git_dirty"], false,
            "the tool's own outputs do not count"
        );
        assert!(report.contains(&format!("<th>git commit</th><td>{commit}</td>")));
    }
}
