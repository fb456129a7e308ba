//! The live page: one self-contained HTML file (no script, style or
//! picture from elsewhere) made from a run's state and its live files.
//! Opened from the file, it reloads itself every few seconds until the
//! run ends; served by `serve`, it follows the run's events instead.

use super::state::{RunState, StageLive, Standing};
use super::trace;
use stages::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

mod curves;
mod tables;
mod timeline;

pub use timeline::lanes;

/// How the page is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the file: a meta refresh while the run runs.
    File,
    /// Through `serve`: server-sent events from this address.
    Served,
}

/// Stages listed one by one up to this many; above it, by declared stage.
const LISTED: usize = 60;

pub fn render(dir: &Path, state: &RunState, mode: Mode) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let ended = state.ended.as_ref();
    let status = ended.map_or("running", |e| e.how.as_str());
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">{}\
         <title>{} · run {}</title><style>{CSS}</style></head>\
         <body data-state=\"{status}\"><main>",
        if mode == Mode::File && ended.is_none() {
            "<meta http-equiv=\"refresh\" content=\"3\">"
        } else {
            ""
        },
        if ended.is_some() { "ended" } else { "live" },
        escape(&state.run)
    );
    header(&mut h, state);
    stage_table(&mut h, state);
    curves::curves(&mut h, dir, state);
    tables::search(&mut h, dir, state);
    tables::comparison(&mut h, state);
    timeline::timeline(&mut h, state);
    changes(&mut h, dir);
    h.push_str("</main>");
    if mode == Mode::Served {
        h.push_str(SCRIPT);
    }
    h.push_str("</body></html>\n");
    h
}

fn header(h: &mut String, state: &RunState) {
    let now = state
        .ended
        .as_ref()
        .map_or_else(stages::measure::unix_now, |e| e.at);
    let counts: Vec<String> = state
        .counts()
        .iter()
        .map(|(st, n)| format!("{n} {}", st.name()))
        .collect();
    let _ = write!(
        h,
        "<h1>Run {}</h1><p class=\"meta\">{} · executor {} · {} cores · started {} UTC · {} elapsed</p>",
        escape(&state.run),
        escape(&state.pipeline),
        escape(&state.executor),
        state.cores,
        crate::state::time::rfc3339(state.started as u64).replace(['T', 'Z'], " "),
        trace::seconds(now - state.started)
    );
    match &state.ended {
        Some(e) => {
            let _ = write!(
                h,
                "<p id=\"ending\" class=\"ending {}\">The run {}: {}. This page no longer changes.</p>",
                escape(&e.how),
                escape(&e.how),
                escape(&e.summary)
            );
        }
        None => {
            let _ = write!(
                h,
                "<p id=\"ending\" class=\"ending running\">Running: {}.</p>",
                counts.join(", ")
            );
        }
    }
}

fn bar(fraction: Option<f64>, st: Standing) -> String {
    let f = match st {
        Standing::Done | Standing::Cached | Standing::Restored | Standing::Pulled => 1.0,
        _ => fraction.unwrap_or(0.0).clamp(0.0, 1.0),
    };
    format!(
        "<span class=\"bar\"><span style=\"width:{:.0}%\"></span></span>",
        100.0 * f
    )
}

fn stage_table(h: &mut String, state: &RunState) {
    h.push_str("<h2>Stages</h2>");
    if state.stages.len() > LISTED {
        return grouped(h, state);
    }
    h.push_str(
        "<table id=\"stages\"><thead><tr><th>stage</th><th>kind</th><th>state</th><th>progress</th>\
         <th>time left</th><th>why it ran, or what it does</th></tr></thead><tbody>",
    );
    for s in &state.stages {
        let _ = write!(
            h,
            "<tr id=\"stage-{}\" data-state=\"{}\"><td>{}</td><td>{}</td><td><span class=\"st {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.state.name(),
            escape(&s.name),
            escape(&s.kind),
            s.state.name().replace(' ', "-"),
            s.state.name(),
            bar(s.fraction, s.state),
            eta(s),
            escape(s.reason_or_doing())
        );
    }
    h.push_str("</tbody></table>");
}

impl StageLive {
    fn reason_or_doing(&self) -> &str {
        match self.state {
            Standing::Running => self.doing.as_deref().or(self.reason.as_deref()),
            _ => self.reason.as_deref(),
        }
        .unwrap_or("")
    }
}

fn eta(s: &StageLive) -> String {
    if s.state != Standing::Running {
        return String::new();
    }
    if let Some(e) = s.eta_s {
        return trace::seconds(e);
    }
    // From how far it is and how long it took so far.
    match (s.fraction, s.started) {
        (Some(f), Some(t)) if f > 0.02 => {
            trace::seconds((stages::measure::unix_now() - t) * (1.0 - f) / f)
        }
        _ => String::new(),
    }
}

/// A study of many stages: a line per declared stage, its stages counted
/// by state, and the running ones named.
fn grouped(h: &mut String, state: &RunState) {
    let mut groups: BTreeMap<(usize, &str), Vec<&StageLive>> = BTreeMap::new();
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &state.stages {
        let n = order.len();
        let k = *order.entry(&s.base).or_insert(n);
        groups.entry((k, &s.base)).or_default().push(s);
    }
    h.push_str(
        "<table id=\"stages\"><thead><tr><th>stage</th><th>kind</th><th>stages</th><th>progress</th>\
         <th>by state</th><th>running now</th></tr></thead><tbody>",
    );
    for ((_, base), members) in groups {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        let mut progress = 0.0;
        for s in &members {
            *by.entry(s.state.name()).or_default() += 1;
            progress += match s.state {
                Standing::Running | Standing::Waiting => s.fraction.unwrap_or(0.0),
                _ => 1.0,
            };
        }
        let running: Vec<String> = members
            .iter()
            .filter(|s| s.state == Standing::Running)
            .take(5)
            .map(|s| format!("{} {}", escape(&s.name), eta(s)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(base),
            escape(&members[0].kind),
            members.len(),
            bar(Some(progress / members.len() as f64), Standing::Running),
            by.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            running.join("<br>")
        );
    }
    h.push_str("</tbody></table>");
}

/// The last changes, newest first.
fn changes(h: &mut String, dir: &Path) {
    // The file's tail only: it grows with the run, the page shows 15.
    let tail = stages::cmd::tail(&dir.join("events.jsonl"), 16).unwrap_or_default();
    let all: Vec<super::state::Change> = tail
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if all.is_empty() {
        return;
    }
    h.push_str("<h2>Latest changes</h2><ul id=\"changes\">");
    for c in all.iter().rev().take(15) {
        let _ = write!(
            h,
            "<li>{} {}{}</li>",
            crate::state::time::rfc3339(c.at as u64)
                .get(11..19)
                .unwrap_or(""),
            c.stage
                .as_ref()
                .map_or(String::new(), |s| format!("<b>{}</b>: ", escape(s))),
            escape(&c.what)
        );
    }
    h.push_str("</ul>");
}

const CSS: &str = "body{font:14px system-ui,sans-serif;color:#222;margin:0;background:#fafafa}\
main{max-width:1100px;margin:auto;padding:12px 20px}h1{font-size:20px;margin:8px 0}\
h2{font-size:16px;margin:22px 0 8px}.meta{color:#666;margin:4px 0}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}\
th{background:#f0f0f0;font-weight:600}.bar{display:inline-block;width:90px;height:9px;background:#eee;border-radius:3px;overflow:hidden}\
.bar span{display:block;height:100%;background:#4c8bd6}.st{padding:1px 6px;border-radius:8px;font-size:12px;background:#eee}\
.st.running{background:#cfe3ff}.st.done{background:#d4f4d4}.st.cached,.st.restored,.st.pulled{background:#ececec;color:#555}\
.st.failed{background:#ffd4d4}.st.interrupted,.st.not-started,.st.skipped{background:#fff0c2}\
.ending{padding:8px 12px;border-radius:4px;background:#eef4ff}.ending.finished{background:#e6f6e6}.ending.failed,.ending.interrupted{background:#ffecec}\
.charts{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;background:#fff;padding:6px}\
svg .grid{stroke:#eee}svg .tick{font-size:11px;fill:#555}svg .title{font-size:13px;font-weight:600}\
.key{display:inline-block;margin-right:10px;font-size:12px}.key i{display:inline-block;width:10px;height:10px;margin-right:4px}\
#changes{font-size:13px;color:#444}";

/// Served: the page follows the run's events, fetching itself again after
/// each (no reload), and keeps what it saw in its list of changes.
const SCRIPT: &str = r#"<script>
(function () {
  if (document.body.dataset.state !== "running" || !window.EventSource) return;
  var es = new EventSource("events");
  var seen = [];
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch("page").then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      document.querySelector("main").replaceWith(doc.querySelector("main"));
      document.body.dataset.state = doc.body.dataset.state;
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      var list = document.getElementById("seen");
      if (list) list.textContent = seen.join("\n");
      busy = false;
      if (again) { again = false; refresh(); }
    }, function () { busy = false; });
  }
  es.addEventListener("change", function (e) {
    var c = JSON.parse(e.data);
    seen.push((c.stage ? c.stage + ": " : "") + c.what);
    refresh();
  });
  es.addEventListener("end", function (e) {
    var c = JSON.parse(e.data);
    seen.push(c.what);
    es.close();
    refresh();
  });
})();
</script><pre id="seen" hidden></pre>"#;
