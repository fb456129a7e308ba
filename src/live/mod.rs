//! Seeing a run while it runs, and afterwards: each run gets a directory
//! `<cache home>/live/<run>/` holding
//!
//! - `state.json`: every stage's state, reason, times, slot and what it
//!   used ([`state::RunState`]), rewritten whole (temporary name, rename);
//! - `events.jsonl`: each change of state, appended (what `serve` streams;
//!   a byte offset is an event's id);
//! - `stages/<stage>.jsonl`: a training's epochs, one line each, appended
//!   as each ends; a `cmd` stage's own lines (`FMNIST_PIPE_LIVE`);
//! - `index.html`: the live page ([`page`]), rewritten at most every
//!   [`PAGE_EVERY`] and reloading itself until the run ends;
//! - `trace.json`: the trace ([`trace`]), written when the run ends.
//!
//! A reader never acts on a line without its newline: lines are written
//! whole in one append, and a torn last line is left for the next read.

pub mod page;
pub mod serve;

pub mod state;
pub mod trace;

use crate::ui::events::Event;
use state::{Change, Ending, RunState};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The page is rewritten at most this often.
pub const PAGE_EVERY: Duration = Duration::from_secs(2);
/// Where runs keep their directories, under the project's cache home.
pub const RUNS: &str = "live";
pub use stages::contract::live_file as stage_file;

/// Whether `name` is what a run's directory is called: a stamp and a
/// process id (`20261208T101500Z-4242`), nothing a path could hide in.
pub fn is_run_name(name: &str) -> bool {
    let (stamp, pid) = match name.split_once('-') {
        Some(p) => p,
        None => return false,
    };
    stamp.len() == 16
        && stamp.bytes().enumerate().all(|(k, b)| match k {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
        && !pid.is_empty()
        && pid.len() <= 10
        && pid.bytes().all(|b| b.is_ascii_digit())
}

struct Shared {
    state: RunState,
    index: HashMap<String, usize>,
    /// Changes not yet appended to `events.jsonl`.
    changes: Vec<Change>,
    dirty: bool,
    done: bool,
    /// Something other than a fresh stage was told: until then nothing
    /// is written (a run with nothing to do writes nothing).
    active: bool,
}

/// The live files of one run, kept by a writer thread of their own: the
/// run's loop only updates the state in memory.
pub struct Live {
    dir: PathBuf,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    writer: Option<std::thread::JoinHandle<()>>,
    announced: bool,
}

impl Live {
    /// Makes the run's directory under `home` and starts the writer.
    pub fn start(
        home: &Path,
        pipeline: &crate::spec::Pipeline,
        executor: &str,
    ) -> std::io::Result<Live> {
        let stamp = crate::state::time::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
        .replace(['-', ':'], "");
        let name = format!("{stamp}-{}", std::process::id());
        let dir = home.join(RUNS).join(&name);
        std::fs::create_dir_all(dir.join("stages"))?;
        let state = RunState::new(pipeline, &name, executor);
        let shared = Arc::new((
            Mutex::new(Shared {
                state,
                index: HashMap::new(),
                changes: Vec::new(),
                dirty: true,
                done: false,
                active: false,
            }),
            Condvar::new(),
        ));
        let (d, s) = (dir.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("live-page".into())
            .spawn(move || write_loop(&d, &s))?;
        Ok(Live {
            dir,
            shared,
            writer: Some(writer),
            announced: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn page(&self) -> PathBuf {
        self.dir.join("index.html")
    }

    /// The run's directory name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Takes in an event; true the first time something is done (the
    /// page is then worth announcing).
    pub fn observe(&mut self, e: &Event) -> bool {
        if let Event::Progress {
            stage,
            step:
                stages::Step::Training {
                    event: learn::train::Event::Epoch { record, .. },
                },
            ..
        } = e
        {
            // Best effort: a full disk shows up where it matters, in the
            // stage's own outputs.
            let _ = append_line(&stage_file(&self.dir, stage), record);
        }
        let (lock, wake) = &*self.shared;
        let Ok(mut sh) = lock.lock() else {
            return false;
        };
        let sh = &mut *sh;
        if !matches!(e, Event::Cached { .. } | Event::Planned { .. }) && !sh.active {
            sh.active = true;
            wake.notify_one();
        }
        if let Some(c) = sh.state.observe(&mut sh.index, e) {
            sh.changes.push(c);
            sh.dirty = true;
            wake.notify_one();
        } else if !matches!(e, Event::Cached { .. }) {
            sh.dirty = true;
        }
        let first = !self.announced
            && matches!(
                e,
                Event::Started { .. } | Event::Restored { .. } | Event::Failed { .. }
            );
        self.announced |= first;
        first
    }

    /// The run is over: the last page (which no longer reloads), the last
    /// changes and the trace are written; the state as it ended comes back.
    pub fn finish(mut self, how: &str, summary: String) -> RunState {
        let (lock, wake) = &*self.shared;
        if let Ok(mut sh) = lock.lock() {
            let at = stages::measure::unix_now();
            sh.state.end(Ending {
                at,
                how: how.to_string(),
                summary: summary.clone(),
            });
            sh.changes.push(Change {
                at,
                stage: None,
                what: format!("run {how}: {summary}"),
            });
            sh.dirty = true;
            sh.done = true;
            wake.notify_one();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let (state, active) = lock
            .lock()
            .map(|sh| (sh.state.clone(), sh.active))
            .unwrap_or_else(|e| {
                let sh = e.into_inner();
                (sh.state.clone(), sh.active)
            });
        if !active {
            return state;
        }
        let _ = crate::state::files::write_atomic(
            &self.dir.join("trace.json"),
            &serde_json::to_vec_pretty(&trace::of(&state)).unwrap_or_default(),
        );
        state
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            let (lock, wake) = &*self.shared;
            if let Ok(mut sh) = lock.lock() {
                sh.done = true;
            }
            wake.notify_one();
            let _ = w.join();
        }
    }
}

/// Appends `value` as one JSON line, in one write.
pub fn append_line(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&line)
}

/// Writes what changed, at most every [`PAGE_EVERY`], until the run ends.
fn write_loop(dir: &Path, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, wake) = shared;
    let mut last: Option<Instant> = None;
    // A large run's files take long to write: the pause between writes is
    // at least ten times the last write, so writing never takes more than
    // a tenth of a core.
    let mut every = PAGE_EVERY;
    loop {
        let Ok(mut sh) = lock.lock() else { return };
        // Changes wait for the interval; the end does not.
        while !sh.done && (!sh.active || !sh.dirty || last.is_some_and(|t| t.elapsed() < every)) {
            let left = match last {
                Some(t) if sh.dirty => every.saturating_sub(t.elapsed()),
                _ => every,
            };
            sh = match wake.wait_timeout(sh, left.max(Duration::from_millis(10))) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
        let done = sh.done;
        if done && !sh.active {
            return;
        }
        sh.state.read_accuracies();
        let state = sh.state.clone();
        let changes = std::mem::take(&mut sh.changes);
        sh.dirty = false;
        drop(sh);
        let began = Instant::now();
        write_all(dir, &state, &changes);
        every = PAGE_EVERY.max(began.elapsed() * 10);
        last = Some(Instant::now());
        if done {
            return;
        }
    }
}

fn write_all(dir: &Path, state: &RunState, changes: &[Change]) {
    use crate::state::files::write_atomic;
    if !changes.is_empty() {
        let mut text = Vec::new();
        for c in changes {
            if let Ok(l) = serde_json::to_vec(c) {
                text.extend_from_slice(&l);
                text.push(b'\n');
            }
        }
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))
            .and_then(|mut f| f.write_all(&text));
    }
    if let Ok(json) = serde_json::to_vec(state) {
        let _ = write_atomic(&dir.join("state.json"), &json);
    }
    let html = page::render(dir, state, page::Mode::File);
    let _ = write_atomic(&dir.join("index.html"), html.as_bytes());
}

/// Reads a JSONL file's whole lines (a torn last line is left out).
pub fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let whole = match text.rfind('\n') {
        Some(k) => &text[..k],
        None => "",
    };
    whole
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The run directories under `home`, newest first.
pub fn runs(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.join(RUNS))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| is_run_name(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.reverse();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_stamps_and_nothing_else() {
        assert!(is_run_name("20261208T101500Z-4242"));
        for bad in [
            "..",
            "20261208T101500Z-",
            "20261208T101500Z-42/..",
            "2026120XT101500Z-1",
            "../20261208T101500Z-1",
            "20261208T101500Z-1 ",
        ] {
            assert!(!is_run_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_torn_last_line_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        append_line(&p, &serde_json::json!({"step": 1})).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"step\": 2, \"val")
            .unwrap();
        let lines: Vec<serde_json::Value> = read_lines(&p);
        assert_eq!(lines, [serde_json::json!({"step": 1})]);
    }
}
