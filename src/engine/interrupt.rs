//! Stopping on SIGINT, SIGTERM and SIGHUP, however they arrive (Ctrl-C at
//! a terminal, `kill`, `timeout`): every child process group is stopped
//! and every Slurm job this run submitted is cancelled,
//! nothing new is recorded (a stage that was running keeps its incomplete
//! record and reruns next time), and the exit status names the signal.

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
}

impl Running {
    /// True once a stop has begun.
    pub fn stopping(&self) -> bool {
        self.children.stopping()
    }
}

/// Starts the thread that waits for a stop signal.
pub fn install(running: &Running) -> Result<()> {
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
            if let Some(sig) = signals.forever().next() {
                let stopped = running.children.stop_all(GRACE)
                    + crate::engine::executor::slurm::cancel_all(&running.jobs);
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

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
