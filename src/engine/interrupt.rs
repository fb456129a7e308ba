//! Stopping on SIGINT, SIGTERM and SIGHUP, however they arrive (Ctrl-C at
//! a terminal, `kill`, `timeout`): every child process group is stopped
//! and every Slurm job this run submitted is cancelled,
//! nothing new is recorded (a stage that was running keeps its incomplete
//! record and reruns next time), and the exit status names the signal.
//! Except a hangup where the command has a log to go on in: a study
//! started over SSH survives the session (its output goes to the log).

use crate::error::{Error, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::time::Duration;

/// How long children get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// What a stop must end: this run's child process groups and Slurm jobs.
/// Whatever starts one registers it here; the signal thread stops them.
#[derive(Debug, Clone, Default)]
pub struct Running {
    pub children: stages::process::Children,
    pub jobs: crate::engine::executor::slurm::Jobs,
    /// Set once the command stopped by a signal has said what it leaves
    /// (the interrupted stages, the summary, the history).
    reported: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

/// How long the signal thread waits for the command to report before it
/// exits anyway.
const REPORT_WAIT: Duration = Duration::from_secs(10);

impl Running {
    /// True once a stop has begun.
    pub fn stopping(&self) -> bool {
        self.children.stopping()
    }

    /// The stopped command has reported; the process may exit.
    pub fn reported(&self) {
        let (done, cv) = &*self.reported;
        if let Ok(mut d) = done.lock() {
            *d = true;
            cv.notify_all();
        }
    }

    fn wait_reported(&self, limit: Duration) {
        let (done, cv) = &*self.reported;
        if let Ok(d) = done.lock() {
            let _ = cv.wait_timeout_while(d, limit, |d| !*d);
        }
    }
}

/// Starts the thread that waits for a stop signal. With `hangup_log`,
/// SIGHUP (the terminal went away) does not stop: what would have been
/// printed goes to that file from then on.
pub fn install(running: &Running, hangup_log: Option<std::path::PathBuf>) -> Result<()> {
    let running = running.clone();
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| {
        Error::io(
            "install the signal handlers",
            std::path::PathBuf::from("(process)"),
            e,
        )
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    if let Some(log) = &hangup_log {
                        if go_on_in(log) {
                            continue;
                        }
                    }
                }
                let stopped = running.children.stop_all(GRACE)
                    + crate::engine::executor::slurm::cancel_all(&running.jobs);
                // The run says which stages it leaves and how they resume
                // before the last word here.
                running.wait_reported(REPORT_WAIT);
                crate::ui::reporter::interrupted(name(sig), stopped);
                std::process::exit(128 + sig);
            }
        })
        .map_err(|e| {
            Error::io(
                "start the signal thread",
                std::path::PathBuf::from("(process)"),
                e,
            )
        })?;
    Ok(())
}

/// Points this process's stdout and stderr at `log` (appended), so the
/// run goes on without its terminal; false when the log cannot be opened.
fn go_on_in(log: &std::path::Path) -> bool {
    use std::os::unix::io::AsRawFd;
    if let Some(parent) = log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    else {
        return false;
    };
    // SAFETY: dup2 onto the standard descriptors from a file we own.
    let ok =
        unsafe { libc::dup2(file.as_raw_fd(), 1) != -1 && libc::dup2(file.as_raw_fd(), 2) != -1 };
    if ok {
        crate::ui::reporter::hung_up(log);
    }
    ok
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
