//! A stage's record: what the cache knows of its last run (its
//! fingerprint, outputs and runner), and the key the run cache holds that
//! run under.

use crate::state::fingerprint::Fingerprint;
use crate::state::hash::Tree;
use serde::{Deserialize, Serialize};
use std::fs;

/// What the cache knows of a stage's last run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// False from the moment the stage starts until it has succeeded and
    /// its outputs are stored: a killed run leaves `false` behind.
    pub complete: bool,
    /// False while the stage has never completed (its record only says
    /// that a run started).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub completed_once: bool,
    pub hash: String,
    pub fingerprint: Fingerprint,
    /// What the last complete run wrote.
    pub outputs: Vec<Output>,
    pub duration_s: f64,
    /// Outputs the tool cleared when the current (incomplete) run started:
    /// whatever is there now was written by that run, so it may go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claimed: Vec<String>,
    /// The process running the stage, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Runner>,
    /// Set when another stage found this stage's output corrupt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidated: Option<String>,
    /// The run cache's key of the last complete run (see
    /// [`crate::state::runs`]); absent in records made before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A training paused at a search's rung after this many epochs: the
    /// run cache holds it under [`crate::state::runs::paused_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<usize>,
}

impl Record {
    /// The record of a run that starts: whatever happens next, the stage no
    /// longer claims to be fresh. It names this process as the runner, and
    /// `claimed` the outputs the tool is about to clear. What the last
    /// complete run (`prev`) wrote stays in it: it can still be restored or
    /// recognised.
    pub fn started(prev: Option<&Record>, fp: &Fingerprint, claimed: &[String]) -> Record {
        let mut r = prev.cloned().unwrap_or_else(|| Record {
            complete: false,
            completed_once: false,
            hash: fp.hash(),
            fingerprint: fp.clone(),
            outputs: Vec::new(),
            duration_s: 0.0,
            claimed: Vec::new(),
            running: None,
            invalidated: None,
            key: None,
            paused: None,
        });
        r.complete = false;
        r.invalidated = None;
        r.running = Some(Runner::me());
        for c in claimed {
            if !r.claimed.contains(c) {
                r.claimed.push(c.clone());
            }
        }
        r
    }

    /// The record of a run that succeeded with these outputs (or of a
    /// result restored from the run cache), remembered by `key`.
    pub fn completed(
        fp: Fingerprint,
        key: String,
        outputs: Vec<Output>,
        duration_s: f64,
    ) -> Record {
        Record {
            complete: true,
            completed_once: true,
            hash: fp.hash(),
            fingerprint: fp,
            duration_s,
            outputs,
            claimed: Vec::new(),
            running: None,
            invalidated: None,
            key: Some(key),
            paused: None,
        }
    }

    /// The key the run cache holds this run under.
    pub fn run_key(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        Some(match self.paused {
            Some(n) => paused_key(key, n),
            None => key.clone(),
        })
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A process, identified across pid reuse by its start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub pid: u32,
    pub host: String,
    /// Start time in clock ticks since boot (/proc/<pid>/stat, field 22).
    pub start_ticks: u64,
}

impl Runner {
    pub fn me() -> Runner {
        let pid = std::process::id();
        Runner {
            pid,
            host: hostname(),
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether this process is alive now. `None` when it runs on another
    /// host, where this cannot be told.
    pub fn alive(&self) -> Option<bool> {
        if self.host != hostname() {
            return None;
        }
        Some(start_ticks(self.pid).is_some_and(|t| t == self.start_ticks))
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    pub path: String,
    pub tree: Tree,
}

impl Record {
    /// The identity of this stage's outputs, as its dependents see it.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.outputs)
    }
}

/// The identity of a stage's outputs: `named` (paths and contents) enters
/// its dependents' fingerprints; `content` (contents only) their run-cache
/// keys, so a result found under another stage name or path still counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digest {
    pub named: String,
    pub content: String,
}

impl Digest {
    pub fn of(outputs: &[Output]) -> Digest {
        let mut h = blake3::Hasher::new();
        for o in outputs {
            h.update(o.tree.hash.as_bytes());
            h.update(b"\n");
        }
        Digest {
            named: outputs_digest(outputs),
            content: h.finalize().to_hex().to_string(),
        }
    }
}

pub fn outputs_digest(outputs: &[Output]) -> String {
    let mut h = blake3::Hasher::new();
    for o in outputs {
        h.update(o.path.as_bytes());
        h.update(b"\0");
        h.update(o.tree.hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// The key of a training with the key `key` paused after `epochs`: a
/// result of its own, never found by a stage that asks for the whole
/// training (a search's trial asks for it by name).
pub fn paused_key(key: &str, epochs: usize) -> String {
    crate::state::hash::hash_bytes(format!("paused\0{key}\0{epochs}").as_bytes())
}

/// This machine's name, as a record's runner names it.
pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}
