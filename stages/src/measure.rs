//! What a stage's process used: its CPU time (user and system, of it and
//! of every descendant it waited for), its peak resident memory and its
//! wall time. Measured where the stage runs, so a figure means the same
//! on this machine and on a cluster's node.
//!
//! The kernel's `ru_maxrss` is the peak of the *largest single process*
//! of the tree, not of the tree: a shell running two 300 MB programs side
//! by side says 300 MB. So the process group's resident memory is also
//! summed from `/proc` every [`SAMPLE_EVERY`] (by one thread for every
//! stage running), and the peak is the larger of the two. A tree that peaks
//! between two samples for less than their interval is seen only through
//! its largest process.

use serde::{Deserialize, Serialize};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a running process group's memory is summed.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// What one run of a stage's process used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// When the process started (Unix seconds).
    pub started_unix: f64,
    pub wall_s: f64,
    /// CPU time in user and kernel mode, summed over threads and the
    /// descendants the process waited for.
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident memory in KiB: of the tree where it was sampled,
    /// else of its largest process.
    pub peak_rss_kib: u64,
    /// The machine it ran on.
    pub node: String,
}

impl Usage {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name.
pub fn node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

/// Waits for `child` (the leader of its own process group, started at
/// `started`), measuring what its tree used while it ran.
pub fn wait(child: &mut Child, started: (Instant, f64)) -> std::io::Result<(ExitStatus, Usage)> {
    let pid = child.id() as i32;
    let sampler = Sampler::start(pid);
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = loop {
        // SAFETY: wait4 on our own child; status and ru are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r >= 0 {
            break Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            break Err(e);
        }
    };
    let sampled = sampler.stop();
    waited?;
    use std::os::unix::process::ExitStatusExt;
    let usage = Usage {
        started_unix: started.1,
        wall_s: started.0.elapsed().as_secs_f64(),
        user_s: seconds(ru.ru_utime),
        sys_s: seconds(ru.ru_stime),
        peak_rss_kib: (ru.ru_maxrss.max(0) as u64).max(sampled),
        node: node(),
    };
    Ok((ExitStatus::from_raw(status), usage))
}

/// What this process used so far (`__stage` says it of itself where no
/// parent of its own waits for it: a Slurm job).
pub fn own(started: (Instant, f64)) -> Usage {
    let get = |who| {
        // SAFETY: a zeroed rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        ru
    };
    let (me, kids) = (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN));
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_kib(&s, "VmHWM:"))
        .unwrap_or(0);
    Usage {
        started_unix: started.1,
        wall_s: started.0.elapsed().as_secs_f64(),
        user_s: seconds(me.ru_utime) + seconds(kids.ru_utime),
        sys_s: seconds(me.ru_stime) + seconds(kids.ru_stime),
        peak_rss_kib: hwm
            .max(me.ru_maxrss.max(0) as u64)
            .max(kids.ru_maxrss.max(0) as u64),
        node: node(),
    }
}

/// Runs `program` with `args` as this process's child (its own process
/// group, killed with this process), writes what it used to `usage` as
/// JSON, and ends as the child ended: the same status, or the same
/// signal. What a Slurm job runs a `cmd` stage under, where no parent of
/// the tool's waits for it.
pub fn run_measured(
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
    usage: &std::path::Path,
) -> i32 {
    let started = (Instant::now(), unix_now());
    let children = crate::process::Children::default();
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let (status, used) = match children
        .spawn(&mut cmd)
        .and_then(|(mut child, _registered)| wait(&mut child, started))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fmnist-pipe: cannot run {}: {e}", program.to_string_lossy());
            return 127;
        }
    };
    if let Ok(json) = serde_json::to_vec(&used) {
        let tmp = usage.with_extension("usage.tmp");
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, usage);
        }
    }
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => {
            // SAFETY: back to the default action, then the same signal:
            // whoever waits for this process sees how the command ended.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            128 + sig
        }
        (None, None) => 1,
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// The process groups being measured, each with the largest sum of its
/// resident memory seen so far (KiB). One thread of the process samples
/// them all: a stage pays no thread of its own (a thread started and
/// joined per command costs milliseconds on a busy machine), and /proc is
/// read once per round whatever the number of stages running.
#[derive(Default)]
struct Groups {
    peaks: std::collections::HashMap<i32, u64>,
}

static GROUPS: std::sync::OnceLock<Arc<std::sync::Mutex<Groups>>> = std::sync::OnceLock::new();

fn groups() -> &'static Arc<std::sync::Mutex<Groups>> {
    GROUPS.get_or_init(|| {
        let shared = Arc::new(std::sync::Mutex::new(Groups::default()));
        let mine = shared.clone();
        // Without the thread, peaks are the largest process's alone.
        let _ = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || loop {
                std::thread::sleep(SAMPLE_EVERY);
                let wanted: Vec<i32> = match mine.lock() {
                    Ok(g) => g.peaks.keys().copied().collect(),
                    Err(_) => return,
                };
                if wanted.is_empty() {
                    continue;
                }
                let sums = groups_rss_kib(&wanted);
                if let Ok(mut g) = mine.lock() {
                    for (group, kib) in sums {
                        if let Some(p) = g.peaks.get_mut(&group) {
                            *p = (*p).max(kib);
                        }
                    }
                }
            });
        shared
    })
}

/// A process group's memory, sampled while it is registered.
struct Sampler {
    group: i32,
}

impl Sampler {
    fn start(group: i32) -> Sampler {
        if let Ok(mut g) = groups().lock() {
            g.peaks.insert(group, 0);
        }
        Sampler { group }
    }

    /// The largest sum seen; the group is no longer sampled.
    fn stop(self) -> u64 {
        groups()
            .lock()
            .ok()
            .and_then(|mut g| g.peaks.remove(&self.group))
            .unwrap_or(0)
    }
}

/// The resident memory of each of `groups`' processes, summed by group
/// (KiB), in one pass over /proc.
fn groups_rss_kib(groups: &[i32]) -> Vec<(i32, u64)> {
    let mut sums: Vec<(i32, u64)> = groups.iter().map(|&g| (g, 0)).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return sums;
    };
    // SAFETY: sysconf has no preconditions.
    let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command's name may hold spaces and parentheses: the fields
        // are counted after its last ')'. pgrp is the 3rd field after it.
        let Some(rest) = stat.rfind(')').map(|k| &stat[k + 1..]) else {
            continue;
        };
        let pgrp: Option<i32> = rest.split_whitespace().nth(2).and_then(|f| f.parse().ok());
        let Some(slot) = sums.iter_mut().find(|(g, _)| Some(*g) == pgrp) else {
            continue;
        };
        let resident = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            .ok()
            .and_then(|m| m.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        slot.1 += resident * page_kib;
    }
    sums
}

/// The resident memory of every process in `group`, summed (KiB).
pub fn group_rss_kib(group: i32) -> u64 {
    groups_rss_kib(&[group]).first().map_or(0, |g| g.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn measured(script: &str) -> Usage {
        let children = crate::process::Children::default();
        let t = (Instant::now(), unix_now());
        let (mut child, _reg) = children
            .spawn(Command::new("sh").args(["-c", script]))
            .unwrap();
        let (status, usage) = wait(&mut child, t).unwrap();
        assert!(status.success());
        usage
    }

    #[test]
    fn cpu_time_counts_every_busy_process_of_the_tree() {
        // Two processes busy for 0.6 s each, side by side.
        let u = measured(
            "timeout 0.6 sh -c 'while :; do :; done' & timeout 0.6 sh -c 'while :; do :; done' & wait",
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let want = 0.6 * cores.min(2) as f64;
        assert!(
            u.cpu_s() > want * 0.7 && u.cpu_s() < 1.3,
            "{u:?} (want about {want} s)"
        );
        assert!(u.wall_s >= 0.6 && u.node == node(), "{u:?}");
    }

    #[test]
    fn two_processes_side_by_side_peak_at_their_sum() {
        // Each holds 40 MiB of written memory for a second.
        let hold = "python3 -c 'import time; b = bytearray(b\"x\") * (40 << 20); time.sleep(1)'";
        let u = measured(&format!("{hold} & {hold} & wait"));
        assert!(u.peak_rss_kib > 80 * 1024, "{u:?}");
        let single = measured(hold);
        assert!(
            single.peak_rss_kib > 40 * 1024 && single.peak_rss_kib < u.peak_rss_kib,
            "{single:?}"
        );
    }

    #[test]
    fn a_process_can_say_what_it_used() {
        let t = (Instant::now(), unix_now());
        let mut x = 0u64;
        while t.0.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let u = own(t);
        assert!(x > 0 && u.user_s > 0.05 && u.peak_rss_kib > 0, "{u:?}");
    }
}
