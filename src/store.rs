//! The content-addressed cache: objects, per-stage records, the lock.
//!
//! Layout under the cache directory:
//! - `objects/ab/cdef…`: file contents named by their blake3 hash, read-only;
//! - `stages/<stage>.json`: the record of a stage's last run;
//! - `tmp/`: staging for everything written, renamed into place when whole;
//! - `logs/<stage>.log`: the output of the last run of a stage;
//! - `lock`: held (flock) by the one `run` using this cache.

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::hash::Tree;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// What the cache knows of a stage's last run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// False from the moment the stage starts until it has succeeded and
    /// its outputs are stored: a killed run leaves `false` behind.
    pub complete: bool,
    pub hash: String,
    pub fingerprint: Fingerprint,
    pub outputs: Vec<Output>,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    pub path: String,
    pub tree: Tree,
}

impl Record {
    /// The identity of this stage's outputs, as its dependents see it.
    pub fn outputs_digest(&self) -> String {
        outputs_digest(&self.outputs)
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

/// A stage record that exists but cannot be read or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// Why an object could not be restored.
#[derive(Debug)]
pub enum RestoreError {
    Missing,
    Corrupt,
    Io(Error),
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the cache's directories and clears staging left by a run
    /// that was killed. Call with the lock held.
    pub fn prepare(&self) -> Result<()> {
        for d in ["objects", "stages", "logs"] {
            let p = self.root.join(d);
            fs::create_dir_all(&p).map_err(|e| Error::io("create the cache directory", &p, e))?;
        }
        let tmp = self.root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .map_err(|e| Error::io("clear the staging directory", &tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io("create the staging directory", &tmp, e))?;
        Ok(())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn log_path(&self, stage: &str) -> PathBuf {
        self.root.join("logs").join(format!("{stage}.log"))
    }

    fn record_path(&self, stage: &str) -> PathBuf {
        self.root.join("stages").join(format!("{stage}.json"))
    }

    /// The stage's record: `Ok(None)` if it never ran, `Err` if the record
    /// cannot be read (treated as stale, never as fresh).
    pub fn record(&self, stage: &str) -> std::result::Result<Option<Record>, Unreadable> {
        match fs::read(self.record_path(stage)) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|_| Unreadable),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(Unreadable),
        }
    }

    pub fn write_record(&self, stage: &str, r: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(r)
            .map_err(|e| Error::Cache(format!("serialize the record of {stage}: {e}")))?;
        let path = self.record_path(stage);
        write_atomic(&path, &bytes).map_err(|e| Error::io("write the stage record", &path, e))
    }

    /// Invalidates before running: whatever happens next, the stage no
    /// longer claims to be fresh until [`Store::write_record`] says so.
    pub fn mark_incomplete(&self, stage: &str) -> Result<()> {
        let path = self.record_path(stage);
        match self.record(stage) {
            Ok(Some(mut r)) if r.complete => {
                r.complete = false;
                self.write_record(stage, &r)
            }
            Ok(_) => Ok(()),
            Err(Unreadable) => fs::remove_file(&path)
                .map_err(|e| Error::io("remove the unreadable record", &path, e)),
        }
    }

    pub fn object_path(&self, hash: &str) -> PathBuf {
        let (a, b) = hash.split_at(2.min(hash.len()));
        self.root.join("objects").join(a).join(b)
    }

    pub fn has_object(&self, hash: &str) -> bool {
        self.object_path(hash).is_file()
    }

    /// Stores a workspace file as the object `hash`, checking that its
    /// content still has that hash.
    pub fn store_file(&self, src: &Path, hash: &str) -> Result<()> {
        let dest = self.object_path(hash);
        if dest.is_file() {
            return Ok(());
        }
        let parent = dest.parent().expect("objects have a parent");
        fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the cache directory", parent, e))?;
        let tmp = self.staging_file();
        let got = copy_hashing(src, &tmp).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("copy into the cache", src, e)
        })?;
        if got != hash {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Cache(format!(
                "{} changed while it was being stored in the cache; run again",
                src.display()
            )));
        }
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444));
        fs::rename(&tmp, &dest).map_err(|e| Error::io("move into the cache", &dest, e))
    }

    /// Copies the object `hash` to `dest`, verifying it on the way. A
    /// corrupt object is deleted so that the next run stores a good one.
    pub fn restore_file(
        &self,
        hash: &str,
        dest: &Path,
        exec: bool,
    ) -> std::result::Result<(), RestoreError> {
        let obj = self.object_path(hash);
        if !obj.is_file() {
            return Err(RestoreError::Missing);
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| RestoreError::Io(Error::io("create the directory", parent, e)))?;
        }
        let tmp = self.staging_file();
        let got = copy_hashing(&obj, &tmp)
            .map_err(|e| RestoreError::Io(Error::io("restore from the cache", &obj, e)))?;
        if got != hash {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&obj);
            return Err(RestoreError::Corrupt);
        }
        let mode = if exec { 0o755 } else { 0o644 };
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(mode));
        move_into_place(&tmp, dest).map_err(|e| RestoreError::Io(Error::io("restore", dest, e)))
    }

    fn staging_file(&self) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        self.tmp_dir().join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Takes the cache's lock: refuses (or, with `wait`, waits) while
    /// another process holds it. The kernel releases it when its holder
    /// dies, so a killed run never leaves the cache locked.
    pub fn lock(&self, wait: bool) -> Result<LockGuard> {
        fs::create_dir_all(&self.root)
            .map_err(|e| Error::io("create the cache directory", &self.root, e))?;
        let path = self.root.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        let flags = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), flags) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked {
                    path,
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            return Err(Error::io("lock", &path, err));
        }
        let host = hostname();
        let _ = file.set_len(0);
        let _ = write!(file, "pid {} on {host}", std::process::id());
        let _ = file.flush();
        Ok(LockGuard { file })
    }
}

/// Holds the cache lock until dropped.
pub struct LockGuard {
    #[allow(dead_code)]
    file: fs::File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

/// Copies `src` to `dest` (synced), returning the blake3 hash of what was copied.
fn copy_hashing(src: &Path, dest: &Path) -> io::Result<String> {
    let mut output = fs::File::create(dest)?;
    let hash = crate::hash::copy_hashing(fs::File::open(src)?, &mut output)?;
    output.sync_all()?;
    Ok(hash)
}

/// Renames, falling back to copy + remove across file systems.
pub fn move_into_place(src: &Path, dest: &Path) -> io::Result<()> {
    match fs::rename(src, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(src, dest)?;
            fs::remove_file(src)
        }
        Err(e) => Err(e),
    }
}

/// Writes a whole file or nothing: a temporary sibling, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    #[test]
    fn objects_round_trip_and_corruption_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("cache"));
        store.prepare().unwrap();
        let src = d.path().join("f");
        fs::write(&src, "content").unwrap();
        let h = hash_bytes(b"content");
        store.store_file(&src, &h).unwrap();
        assert!(store.has_object(&h));
        let dest = d.path().join("out/g");
        store.restore_file(&h, &dest, false).unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "content");

        let obj = store.object_path(&h);
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&obj, "tampered").unwrap();
        assert!(matches!(
            store.restore_file(&h, &dest, false),
            Err(RestoreError::Corrupt)
        ));
        assert!(!obj.exists(), "a corrupt object is removed");
        assert!(matches!(
            store.restore_file(&h, &dest, false),
            Err(RestoreError::Missing)
        ));
    }

    #[test]
    fn storing_a_file_that_changed_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("cache"));
        store.prepare().unwrap();
        let src = d.path().join("f");
        fs::write(&src, "new").unwrap();
        assert!(store.store_file(&src, &hash_bytes(b"old")).is_err());
        assert!(!store.has_object(&hash_bytes(b"old")));
    }

    #[test]
    fn second_lock_is_refused_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("cache"));
        let guard = store.lock(false).unwrap();
        match store.lock(false) {
            Err(Error::Locked { holder, .. }) => {
                assert!(holder.contains(&std::process::id().to_string()))
            }
            _ => panic!("second lock taken"),
        }
        drop(guard);
        store.lock(false).unwrap();
    }

    #[test]
    fn incomplete_marking() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("cache"));
        store.prepare().unwrap();
        let fp = Fingerprint {
            kind: "cmd".into(),
            kind_version: 1,
            params: serde_json::json!({}),
            cmd: None,
            device: None,
            deps: Default::default(),
            inputs: Default::default(),
            outs: vec![],
        };
        let r = Record {
            complete: true,
            hash: fp.hash(),
            fingerprint: fp,
            outputs: vec![],
            duration_s: 0.0,
        };
        store.write_record("a@b", &r).unwrap();
        store.mark_incomplete("a@b").unwrap();
        assert!(!store.record("a@b").unwrap().unwrap().complete);
        fs::write(store.record_path("x"), "{not json").unwrap();
        assert!(store.record("x").is_err());
        store.mark_incomplete("x").unwrap();
        assert!(store.record("x").unwrap().is_none());
    }
}
