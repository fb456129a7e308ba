//! Child processes of fmnist-pipe. Each runs in its own process group and
//! is registered with the run's [`Children`], so that a stop (Ctrl-C,
//! `kill`, `timeout`) ends the whole group: the shell and whatever it
//! started. A child is also killed by the kernel if fmnist-pipe dies
//! without a chance to stop it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Registry {
    groups: Vec<i32>,
    stopping: bool,
}

/// The process groups one run started and that still run: a handle
/// shared by whatever starts children and the thread that stops them.
#[derive(Debug, Clone, Default)]
pub struct Children(Arc<Mutex<Registry>>);

/// Keeps a child's process group registered until dropped.
pub struct Registered {
    group: i32,
    children: Children,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut r) = self.children.0.lock() {
            r.groups.retain(|&g| g != self.group);
        }
    }
}

impl Children {
    /// Spawns `cmd` as the leader of a new process group and registers it.
    /// Refused once [`Children::stop_all`] has begun.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, Registered)> {
        spawn(self, cmd)
    }

    /// True once [`Children::stop_all`] has begun: the process is about to
    /// exit, and a child's failure is the stop's doing, not the child's.
    pub fn stopping(&self) -> bool {
        self.0.lock().map_or(true, |r| r.stopping)
    }

    /// Stops every registered process group: SIGTERM, then SIGKILL for
    /// what is left after `grace`. No child is started afterwards. Returns
    /// how many groups were running.
    pub fn stop_all(&self, grace: Duration) -> usize {
        stop_all(self, grace)
    }
}

fn spawn(children: &Children, cmd: &mut Command) -> io::Result<(Child, Registered)> {
    let parent = std::process::id();
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent died before the line above took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut r = children
        .0
        .lock()
        .map_err(|_| io::Error::other("the process registry is poisoned"))?;
    if r.stopping {
        return Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "fmnist-pipe is stopping",
        ));
    }
    let child = cmd.spawn()?;
    let group = child.id() as i32;
    r.groups.push(group);
    Ok((
        child,
        Registered {
            group,
            children: children.clone(),
        },
    ))
}

/// How a process ended, in words: `exited with status 3`, `panicked`,
/// `was killed by SIGKILL (the out-of-memory killer, or kill -9)`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        // Rust's exit status after a panic in the main thread.
        (Some(101), _) => "panicked".into(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                libc::SIGKILL => "SIGKILL (the out-of-memory killer, or kill -9)",
                libc::SIGSEGV => "SIGSEGV (a crash)",
                libc::SIGABRT => "SIGABRT (an abort)",
                libc::SIGBUS => "SIGBUS (a crash)",
                libc::SIGTERM => "SIGTERM",
                libc::SIGINT => "SIGINT",
                _ => return format!("was killed by signal {sig}"),
            };
            format!("was killed by {name}")
        }
        (None, None) => "ended in an unknown way".into(),
    }
}

fn stop_all(children: &Children, grace: Duration) -> usize {
    let groups = match children.0.lock() {
        Ok(mut r) => {
            r.stopping = true;
            r.groups.clone()
        }
        Err(_) => return 0,
    };
    // SAFETY: kill(2) on process groups this process created.
    let alive = |g: i32| unsafe { libc::kill(-g, 0) } == 0;
    for &g in &groups {
        unsafe { libc::kill(-g, libc::SIGTERM) };
    }
    let until = Instant::now() + grace;
    while groups.iter().any(|&g| alive(g)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &g in groups.iter().filter(|&&g| alive(g)) {
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    groups.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described() {
        use std::os::unix::process::ExitStatusExt;
        let st = std::process::ExitStatus::from_raw;
        assert_eq!(describe_exit(st(101 << 8)), "panicked");
        assert_eq!(describe_exit(st(3 << 8)), "exited with status 3");
        assert_eq!(
            describe_exit(st(libc::SIGKILL)),
            "was killed by SIGKILL (the out-of-memory killer, or kill -9)"
        );
        assert_eq!(describe_exit(st(libc::SIGUSR1)), "was killed by signal 10");
    }

    #[test]
    fn a_child_leads_its_own_group_and_is_unregistered_when_done() {
        let children = Children::default();
        let (mut child, reg) = children
            .spawn(Command::new("sh").args(["-c", "exit 3"]))
            .unwrap();
        let pid = child.id() as i32;
        assert!(children.0.lock().unwrap().groups.contains(&pid));
        assert_eq!(child.wait().unwrap().code(), Some(3));
        drop(reg);
        assert!(!children.0.lock().unwrap().groups.contains(&pid));
        // Stopped: nothing starts any more.
        assert_eq!(children.stop_all(Duration::from_millis(10)), 0);
        assert!(children.stopping());
        assert!(children.spawn(&mut Command::new("true")).is_err());
    }
}
