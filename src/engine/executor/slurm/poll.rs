//! What the cluster says of the jobs: squeue while they are known to it,
//! then scontrol and sacct, polled by one thread for every job.

use super::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A job's state, as Slurm names them; `Lost` is this tool's own: no
/// query knows the job any more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JobState {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    OutOfMemory,
    /// Another end: NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, REVOKED,
    /// SPECIAL_EXIT.
    Ended(String),
    /// Another state on the way: CONFIGURING, COMPLETING, SUSPENDED, ...
    Active(String),
    Lost,
}

impl JobState {
    fn parse(text: &str) -> JobState {
        match text {
            "PENDING" => JobState::Pending,
            "RUNNING" => JobState::Running,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "CANCELLED" => JobState::Cancelled,
            "TIMEOUT" => JobState::Timeout,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => {
                JobState::Ended(text.to_string())
            }
            other => JobState::Active(other.to_string()),
        }
    }

    /// The job has ended: it runs no more, whatever follows.
    pub(super) fn is_terminal(&self) -> bool {
        !matches!(
            self,
            JobState::Pending | JobState::Running | JobState::Active(_)
        )
    }
}

/// A job's state as the cluster last told it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) state: JobState,
    pub(super) reason: String,
    /// `ExitCode=status:signal`, once known.
    pub(super) exit: Option<(i32, i32)>,
}

/// A job as the poller follows it.
#[derive(Debug, Clone, Default)]
pub(super) struct Entry {
    pub(super) seen: Seen,
    /// Consecutive rounds no query knew the job.
    pub(super) missing: u32,
    /// When a failed end state was first seen: a job being requeued can
    /// show one for a moment, so it counts once it held for [`CONFIRM`].
    pub(super) ended_at: Option<Instant>,
    /// The job has ended for good.
    pub(super) over: bool,
}

pub(super) const CONFIRM: Duration = Duration::from_secs(1);

impl Seen {
    /// A state read with its exit code: an ended job always has one (0:0
    /// when the query gave none), a running job none yet.
    fn ended(state: JobState, exit: Option<(i32, i32)>, reason: String) -> Self {
        let exit = if state.is_terminal() {
            exit.or(Some((0, 0)))
        } else {
            None
        };
        Seen {
            state,
            reason,
            exit,
        }
    }
}

#[derive(Default)]
pub(super) struct Tracked {
    pub(super) jobs: HashMap<String, Entry>,
    pub(super) kick: bool,
    pub(super) stop: bool,
}

pub(super) struct Shared {
    pub(super) tracked: Mutex<Tracked>,
    pub(super) changed: Condvar,
}

/// For this long after a submission or a change, poll at [`POLL_MIN`]:
/// short stages should not wait on the poller.
pub(super) const FAST_FOR: Duration = Duration::from_secs(5);

pub(super) fn poll_loop(shared: &Shared) {
    let mut interval = POLL_MIN;
    let mut last_change = Instant::now();
    loop {
        let ids: Vec<String> = {
            let Ok(t) = shared.tracked.lock() else { return };
            let (mut t, _) = shared
                .changed
                .wait_timeout_while(t, interval, |t| !t.stop && !t.kick)
                .unwrap_or_else(|e| e.into_inner());
            if t.stop {
                return;
            }
            if t.kick {
                t.kick = false;
                interval = POLL_MIN;
                last_change = Instant::now();
            }
            t.jobs
                .iter()
                .filter(|(_, e)| !e.over)
                .map(|(id, _)| id.clone())
                .collect()
        };
        if ids.is_empty() {
            interval = POLL_MAX;
            continue;
        }
        let found = query(&ids);
        let mut changed = false;
        if let Ok(mut t) = shared.tracked.lock() {
            for id in &ids {
                let Some(e) = t.jobs.get_mut(id) else {
                    continue;
                };
                match found.get(id) {
                    Some(s) => {
                        changed |= *s != e.seen;
                        e.seen = s.clone();
                        e.missing = 0;
                        let ended = s.state.is_terminal() && s.exit.is_some();
                        if !ended {
                            e.ended_at = None;
                        } else if s.state == JobState::Completed {
                            e.over = true;
                        } else {
                            let at = *e.ended_at.get_or_insert_with(Instant::now);
                            e.over = at.elapsed() >= CONFIRM;
                        }
                        changed |= e.over;
                    }
                    None => {
                        e.missing += 1;
                        changed = true;
                    }
                }
            }
        }
        shared.changed.notify_all();
        // Fast while something changes; slower while jobs only run.
        if changed {
            last_change = Instant::now();
        }
        interval = if last_change.elapsed() < FAST_FOR {
            POLL_MIN
        } else {
            (interval * 3 / 2).min(POLL_MAX)
        };
    }
}

/// The state of each of `ids` the cluster still knows: one squeue call
/// for all, then scontrol (or sacct) for the exit code of ended jobs and
/// for the jobs squeue no longer lists.
pub(super) fn query(ids: &[String]) -> HashMap<String, Seen> {
    let mut found = squeue(ids).unwrap_or_default();
    for id in ids {
        let need = match found.get(id) {
            None => true,
            Some(s) => s.state.is_terminal(),
        };
        if need {
            if let Some(s) = scontrol(id).or_else(|| sacct(id)) {
                found.insert(id.clone(), s);
            } else if let Some(s) = found.get_mut(id) {
                // Ended, but the exit code is nowhere to be read.
                s.exit = Some((0, 0));
            }
        }
    }
    found
}

pub(super) fn squeue(ids: &[String]) -> Option<HashMap<String, Seen>> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T|%r", "-j"])
        .arg(ids.join(","))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // squeue refuses the whole list when one id is unknown.
    if !out.status.success() {
        return None;
    }
    Some(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

pub(super) fn parse_squeue(text: &str) -> HashMap<String, Seen> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, state, reason) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            Some((
                id.to_string(),
                Seen {
                    state: JobState::parse(state),
                    reason: reason.to_string(),
                    exit: None,
                },
            ))
        })
        .collect()
}

pub(super) fn scontrol(id: &str) -> Option<Seen> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_scontrol(&String::from_utf8_lossy(&out.stdout))
}

/// `JobState=FAILED Reason=NonZeroExitCode ... ExitCode=3:0` from
/// `scontrol show job -o`.
pub(super) fn parse_scontrol(text: &str) -> Option<Seen> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let exit = field("ExitCode").and_then(|e| parse_exit(&e));
    Some(Seen::ended(
        JobState::parse(&field("JobState")?),
        exit,
        field("Reason").unwrap_or_default(),
    ))
}

pub(super) fn parse_exit(text: &str) -> Option<(i32, i32)> {
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// sacct, where accounting is set up (it fails without slurmdbd).
pub(super) fn sacct(id: &str) -> Option<Seen> {
    let out = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "State,ExitCode,Reason", "-j", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.lines().next()?.split('|');
    // `CANCELLED by 0` -> CANCELLED.
    let state = JobState::parse(f.next()?.split_whitespace().next()?);
    let exit = f.next().and_then(parse_exit);
    Some(Seen::ended(state, exit, f.next().unwrap_or("").to_string()))
}
