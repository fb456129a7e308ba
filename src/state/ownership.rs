//! The tool only deletes or replaces what it can show it produced: before
//! an output path is removed, it must be absent, hold exactly what the
//! stage's last record says it wrote, or have been cleared by the tool
//! when the stage's last (unfinished) run started.

use crate::state::hash::{HashCache, Tree};
use crate::state::record::Record;
use std::fmt;
use std::path::Path;

/// An output the tool will not remove, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The output as declared (`out/model.txt`).
    pub path: String,
    pub stage: String,
    pub why: Why,
    /// The cache holds the stage's own version of the output.
    pub restorable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// No record of this stage writing anything there.
    NoRecord,
    /// The stage's last run did not write this path.
    NotRecorded,
    /// It holds something else than the stage wrote: the first file that differs.
    Modified(String),
    /// It cannot be read.
    Unreadable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, stage) = (&self.path, &self.stage);
        match &self.why {
            Why::NoRecord => write!(
                f,
                "{path} already exists, and {stage} has no record of writing it"
            )?,
            Why::NotRecorded => {
                write!(f, "{path} exists, and {stage}'s last run did not write it")?
            }
            Why::Modified(file) if file == path => {
                write!(f, "{path} was modified since {stage} wrote it")?
            }
            Why::Modified(file) => {
                write!(f, "{path} holds changes since {stage} wrote it ({file})")?
            }
            Why::Unreadable(e) => write!(f, "{path} cannot be read ({e})")?,
        }
        let what = match &self.why {
            Why::Modified(file) => file,
            _ => path,
        };
        write!(
            f,
            "; fmnist-pipe only deletes what it wrote\nhelp: move {what} away (or delete it) and run again"
        )?;
        if self.restorable {
            write!(f, "; {stage}'s own version is then restored from the cache")?;
        }
        Ok(())
    }
}

/// The first file of `now` that `recorded` does not hold as it is, or None
/// when `now` holds nothing but recorded files (some may be missing).
pub fn first_foreign(recorded: &Tree, now: &Tree) -> Option<String> {
    if recorded.is_dir != now.is_dir {
        return Some(String::new());
    }
    now.files
        .iter()
        .find(|f| {
            !recorded
                .files
                .iter()
                .any(|r| r.rel == f.rel && r.hash == f.hash)
        })
        .map(|f| f.rel.clone())
}

/// Checks that the tool may remove or replace the output `rel` (at `path`)
/// of `stage`, given the stage's last record.
pub fn check(
    hashes: &HashCache,
    stage: &str,
    record: Option<&Record>,
    rel: &str,
    path: &Path,
    restorable: bool,
) -> Result<(), Refusal> {
    let refuse = |why| {
        Err(Refusal {
            path: rel.to_string(),
            stage: stage.to_string(),
            why,
            restorable,
        })
    };
    // A symlink (dangling or not) is removed, never what it points to.
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(m) if m.file_type().is_symlink() && std::fs::metadata(path).is_err() => return Ok(()),
        _ => {}
    }
    let Some(record) = record else {
        return refuse(Why::NoRecord);
    };
    if !record.complete && record.claimed.iter().any(|c| c == rel) {
        return Ok(());
    }
    let Some(recorded) = record.outputs.iter().find(|o| o.path == rel) else {
        return refuse(Why::NotRecorded);
    };
    match hashes.hash_path(path) {
        Err(e) => refuse(Why::Unreadable(e.to_string())),
        Ok(None) => Ok(()),
        Ok(Some(now)) if now.hash == recorded.tree.hash => Ok(()),
        // Only files missing (from a directory): nothing of anyone else's is there.
        Ok(Some(now)) => match first_foreign(&recorded.tree, &now) {
            None => Ok(()),
            Some(f) if f.is_empty() => refuse(Why::Modified(rel.to_string())),
            Some(f) => refuse(Why::Modified(format!("{rel}/{f}"))),
        },
    }
}
