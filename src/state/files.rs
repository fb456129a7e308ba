//! Files written whole or not at all, and removed whatever they are: the
//! few file operations every part of the state shares.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// A name no other temporary file of this or another process has:
/// `<pid>-<counter>`.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a file, a symlink (not its target) or a directory tree.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes a whole file or nothing: a temporary sibling, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, bytes, true)
}

/// [`write_atomic`] without waiting for the disk: for files whose loss
/// or truncation in a crash only loses a shortcut (a torn file reads as
/// absent).
pub fn write_whole_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, bytes, false)
}

/// [`write_atomic`], with the fsync optional.
pub fn write_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    // Unique per call: two threads may replace the same file at once.
    let tmp = path.with_extension(format!("tmp.{}", unique()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
