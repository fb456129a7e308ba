//! The only module that prints. Progress bars when stderr is a terminal,
//! plain lines otherwise (pipes, CI, tests). One file per kind of output:
//! live progress and the run's summary (`progress`), `status` and
//! `--dry-run` (`status`), comparison tables (`tables`), `log` and
//! `diff` (`history`), `gc` and `push` (`sharing`), `predict`
//! (`predict`); here, the reporter itself, notes and errors.

pub use crate::engine::plan::RowState;
use crate::state::fingerprint::DirtyReason;
use crate::ui::events::{Event, Summary};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

mod history;
mod predict;
mod progress;
mod sharing;
mod status;
mod tables;

pub use predict::Prediction;
pub use status::StatusRow;
use tables::{table_width, wrap};

pub struct Reporter {
    verbose: bool,
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
}

impl Reporter {
    pub fn new(verbose: bool) -> Reporter {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Reporter {
            verbose,
            bars: tty.then(|| {
                (
                    MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    HashMap::new(),
                )
            }),
        }
    }

    fn line(&self, text: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(text);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    pub fn waiting(&self, lock: &std::path::Path, holder: &str) {
        self.line(&format!(
            "waiting for the run that holds {} ({holder}) to finish",
            lock.display()
        ));
    }

    pub fn text(&self, s: &str) {
        let _ = std::io::stdout().lock().write_all(s.as_bytes());
    }

    /// A note under a table, wrapped to the table's width.
    pub fn note(&self, s: &str) {
        let width = table_width().map_or(usize::MAX, usize::from);
        self.text(&format!("{}\n", wrap(s, width)));
    }

    pub fn error(&self, e: &crate::error::Error) {
        let mut text = format!("error: {e}");
        let mut source = std::error::Error::source(e);
        let mut disk_full = false;
        while let Some(s) = source {
            text.push_str(&format!("\nCaused by:\n    {s}"));
            disk_full |= s
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC));
            source = s.source();
        }
        if disk_full {
            text.push_str("\n  help: the disk is full: free space (or move settings.cache to a larger disk) and run again; stages that did not finish are recorded as stale and will rerun");
        }
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

pub(crate) use crate::ui::words::fmt_duration;

/// The terminal went away (SIGHUP); said into the log the run goes on in.
pub fn hung_up(log: &std::path::Path) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "\nthe terminal hung up (SIGHUP): the run goes on, and says what it does here ({})",
        log.display()
    );
}

pub fn interrupted(signal: &str, stopped: usize) {
    let what = match stopped {
        0 => String::new(),
        1 => ": stopped 1 running command".into(),
        n => format!(": stopped {n} running commands"),
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "\ninterrupted by {signal}{what}; stages that did not finish are recorded as stale: the next run takes them up (a training from its last saved epoch)"
    );
}

/// A stage's failure in words.
pub(crate) fn failure_text(f: &crate::ui::events::Failure) -> String {
    use crate::ui::events::{Failure, Remedy};
    match f {
        Failure::DepMissing { path } => format!(
            "dep {path} does not exist; create it, or declare the stage that produces it as an output"
        ),
        Failure::DepUnreadable { path, error } => format!(
            "dep {path} cannot be read: {error}; fix its permissions or links, or remove it from the stage's deps"
        ),
        Failure::WaitsForSearch { search } => format!(
            "it waits for the search {search}, which has not finished: run the whole pipeline (the search runs first, then its finalists)"
        ),
        Failure::CannotRunHere { why } => format!(
            "it cannot run on this machine: {why}; lower its resources, or run it where they are (`--executor slurm`)"
        ),
        Failure::Refused(r) => r.to_string(),
        Failure::NotProduced { output } => {
            format!("the stage succeeded but did not produce its output {output}")
        }
        Failure::OutputUnreadable { output, error } => {
            format!("its output {output} cannot be read: {error}")
        }
        Failure::Command { how } => how.clone(),
        Failure::InputCorrupt {
            path,
            problem,
            remedy,
        } => {
            let remedy = match remedy {
                Remedy::NotAnOutput => {
                    "it is not the output of a stage this one needs; fix or replace it".to_string()
                }
                Remedy::MovedAway { producer } => format!(
                    "it was moved away; the next `fmnist-pipe run` restores {producer}'s own version"
                ),
                Remedy::Quarantined { producer, to } => format!(
                    "it no longer held what {producer} wrote: moved to {} (kept, not deleted); the next `fmnist-pipe run` restores {producer}'s own version",
                    to.display()
                ),
                Remedy::ProducerStale { producer } => format!(
                    "{producer} is marked stale; the next `fmnist-pipe run` rebuilds it"
                ),
            };
            format!("input {path} is corrupt: {problem}\n{remedy}")
        }
        Failure::Error { chain } => chain.clone(),
        Failure::Crashed { how } => format!("the stage's process {how}"),
        Failure::Job(f) => crate::ui::words::job(f),
        Failure::Environment { error } => error.clone(),
        Failure::RemoteDamaged { remote, damage } => {
            use crate::state::runs::Damage;
            let what = match damage {
                Damage::Missing(_) => "remote `{remote}` holds an incomplete result for it",
                Damage::Mismatched(_) => "remote `{remote}` holds damaged files for it",
                Damage::Unreadable | Damage::Invalid(_) => {
                    "remote `{remote}` holds a damaged record of its result"
                }
            }
            .replace("{remote}", remote);
            format!(
                "{what} ({damage}); nothing of it was used\nhelp: push the stage again from a machine where it is fresh (`fmnist-pipe push`): a push replaces what is missing or damaged"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::failure_text;
    use crate::ui::events::Failure;

    /// A confirm stage asked for before its search has finished says
    /// which search, and what to run.
    #[test]
    fn a_confirm_waiting_for_its_search_says_what_to_run() {
        let text = failure_text(&Failure::WaitsForSearch {
            search: "train".into(),
        });
        assert!(
            text.contains("waits for the search train, which has not finished")
                && text.contains("run the whole pipeline"),
            "{text}"
        );
    }
}
