//! The content-addressed cache: objects, per-stage records, the locks.
//!
//! A cache may be shared by many projects (an absolute `settings.cache`).
//! What any project may use lies at its top:
//! - `objects/ab/cdef…`: file contents named by their blake3 hash, read-only;
//! - `runs/<key>.json`: every completed run, by what determined it (see
//!   [`crate::state::runs`]);
//! - `resume/<key>/`: a resumable stage's saved progress, by the same key;
//! - `locks/<key>`: held (flock) while a run computes that result;
//! - `share.lock`: held shared by every run, exclusively by `gc`.
//!
//! What is one project's lies in its home: the cache's top for the project
//! whose directory holds the cache, `projects/<dir>-<hash>/` for others:
//! - `stages/<stage>.json`: the record of a stage's last run;
//! - `logs/<stage>.log`: the output of the last run of a stage;
//! - `tmp/`: staging for everything written, renamed into place when whole;
//! - `lock`: held (flock) by the one `run` of this project;
//! - `hashes.json`, the history, `quarantine/`.

use crate::error::{Error, Result};
use crate::state::files::{remove_any, unique, write_file};
use crate::state::hash::is_hash;
use crate::state::record::hostname;
pub use crate::state::record::{outputs_digest, Digest, Output, Record, Runner};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A stage record that exists but cannot be read or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// Why an output could not be restored.
#[derive(Debug)]
pub enum RestoreError {
    /// The cache does not hold the object.
    Missing,
    /// The object's content no longer matches its hash (it was removed).
    Corrupt,
    /// The path holds something the stage did not write.
    Refused(crate::state::ownership::Refusal),
    Io(Error),
}

pub struct Store {
    root: PathBuf,
    home: PathBuf,
}

impl Store {
    /// A cache used by one project only (tests).
    pub fn new(root: PathBuf) -> Store {
        Store {
            home: root.clone(),
            root,
        }
    }

    /// The cache of a pipeline, with the pipeline's project as its home.
    pub fn open(settings: &crate::spec::Settings) -> Store {
        let root = settings.cache_dir();
        let home = home_dir(&settings.project_dir, &root);
        Store { root, home }
    }

    /// The cache's top: what every project sharing it may use.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This project's own part of the cache.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Creates the cache's directories and clears this project's staging
    /// left by a run that was killed. Call with the project's lock held.
    pub fn prepare(&self) -> Result<()> {
        for p in [
            self.root.join("objects"),
            self.root.join("runs"),
            self.home.join("stages"),
            self.home.join("logs"),
        ] {
            fs::create_dir_all(&p).map_err(|e| Error::io("create the cache directory", &p, e))?;
        }
        let tmp = self.home.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .map_err(|e| Error::io("clear the staging directory", &tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io("create the staging directory", &tmp, e))?;
        Ok(())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.home.join("tmp")
    }

    /// Where a built-in stage's job description is written (one run at a
    /// time holds the project, so the stage's name is enough).
    pub fn job_path(&self, stage: &str) -> PathBuf {
        self.tmp_dir().join(format!("job-{stage}.json"))
    }

    /// Where a resumable stage keeps its progress towards the result
    /// `key` (any project, any stage name computing it takes it up).
    pub fn resume_dir(&self, key: &str) -> PathBuf {
        self.root.join("resume").join(key)
    }

    /// Removes the saved progress towards `key`.
    pub fn clear_resume(&self, key: &str) -> Result<()> {
        let dir = self.resume_dir(key);
        remove_any(&dir).map_err(|e| Error::io("remove the saved state", &dir, e))
    }

    pub fn log_path(&self, stage: &str) -> PathBuf {
        self.home.join("logs").join(format!("{stage}.log"))
    }

    fn record_path(&self, stage: &str) -> PathBuf {
        self.home.join("stages").join(format!("{stage}.json"))
    }

    /// The stage's record: `Ok(None)` if it never ran, `Err` if the record
    /// cannot be read (treated as stale, never as fresh).
    pub fn record(&self, stage: &str) -> std::result::Result<Option<Record>, Unreadable> {
        match fs::read(self.record_path(stage)) {
            Ok(b) => {
                let r: Record = serde_json::from_slice(&b).map_err(|_| Unreadable)?;
                // The home may lie in a shared cache: its paths and hashes
                // are checked as a remote's are.
                match r.outputs.iter().any(|o| o.tree.damage().is_some()) {
                    true => Err(Unreadable),
                    false => Ok(Some(r)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(Unreadable),
        }
    }

    pub fn write_record(&self, stage: &str, r: &Record) -> Result<()> {
        self.write_record_with(stage, r, true)
    }

    /// `durable: false` skips the fsync, for records whose loss in a crash
    /// is harmless: an older record never claims fresh for changed inputs
    /// or outputs (both are compared), and a torn one reads as unreadable.
    fn write_record_with(&self, stage: &str, r: &Record, durable: bool) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(r).map_err(|source| Error::Record {
            stage: stage.to_string(),
            source,
        })?;
        let path = self.record_path(stage);
        write_file(&path, &bytes, durable)
            .map_err(|e| Error::io("write the stage record", &path, e))
    }

    /// Writes a record of a run under way or just failed (see
    /// `engine::txn`), without waiting for the disk: losing it in a crash
    /// is harmless (see [`Store::write_record_with`]).
    pub fn write_transient(&self, stage: &str, r: &Record) -> Result<()> {
        self.write_record_with(stage, r, false)
    }

    /// Another stage found this stage's output corrupt: it must run again.
    pub fn invalidate(&self, stage: &str, why: &str) -> Result<()> {
        match self.record(stage) {
            Ok(Some(mut r)) => {
                r.complete = false;
                r.invalidated = Some(why.to_string());
                self.write_record(stage, &r)
            }
            _ => Ok(()),
        }
    }

    /// The names of every stage with a record, sorted.
    pub fn recorded_stages(&self) -> Vec<String> {
        recorded_in(&self.home)
    }

    /// Every project's home in this cache (this one's included).
    pub fn homes(&self) -> Vec<PathBuf> {
        let mut homes = vec![self.root.clone()];
        for e in fs::read_dir(self.root.join("projects"))
            .into_iter()
            .flatten()
            .flatten()
        {
            homes.push(e.path());
        }
        homes
    }

    /// Removes a stage's record and log (`gc`).
    pub fn forget_stage(&self, stage: &str) -> Result<()> {
        for p in [self.record_path(stage), self.log_path(stage)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &p, e)),
            }
        }
        Ok(())
    }

    /// Every object in the cache: (hash, size in bytes).
    pub fn objects(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for d in fs::read_dir(self.root.join("objects"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let prefix = d.file_name().to_string_lossy().into_owned();
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let size = f.metadata().map_or(0, |m| m.len());
                out.push((format!("{prefix}{}", f.file_name().to_string_lossy()), size));
            }
        }
        out.sort();
        out
    }

    /// Removes the object `hash`; a name that is not a hash names no
    /// object, and nothing is removed for it.
    pub fn remove_object(&self, hash: &str) -> Result<()> {
        if !is_hash(hash) {
            return Ok(());
        }
        let p = self.object_path(hash);
        match fs::remove_file(&p) {
            Ok(()) => {
                if let Some(parent) = p.parent() {
                    let _ = fs::remove_dir(parent);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove the cache object", &p, e)),
        }
    }

    /// Where the object `hash` lies. Only for a name checked by
    /// [`is_hash`]: the methods that take a hash from a record check it.
    pub fn object_path(&self, hash: &str) -> PathBuf {
        let split = if hash.is_char_boundary(2) { 2 } else { 0 };
        let (a, b) = hash.split_at(split.min(hash.len()));
        self.root.join("objects").join(a).join(b)
    }

    /// The content of object `hash`, if the cache holds it intact.
    pub fn read_object(&self, hash: &str) -> Option<Vec<u8>> {
        if !is_hash(hash) {
            return None;
        }
        let bytes = fs::read(self.object_path(hash)).ok()?;
        (crate::state::hash::hash_bytes(&bytes) == hash).then_some(bytes)
    }

    pub fn has_object(&self, hash: &str) -> bool {
        is_hash(hash) && self.object_path(hash).is_file()
    }

    /// Stores a workspace file as the object `hash`, checking that its
    /// content still has that hash.
    pub fn store_file(&self, src: &Path, hash: &str) -> Result<()> {
        self.put_object(hash, |tmp| {
            let got =
                copy_hashing(src, tmp).map_err(|e| Error::io("copy into the cache", src, e))?;
            if got != hash {
                return Err(Error::ChangedWhileStored {
                    path: src.to_path_buf(),
                });
            }
            Ok(())
        })
    }

    /// Stores `bytes` as the object `hash` (which they were checked to
    /// have), whole or not at all.
    pub fn store_bytes(&self, hash: &str, bytes: &[u8]) -> Result<()> {
        self.put_object(hash, |tmp| {
            let written = (|| {
                let mut f = fs::File::create(tmp)?;
                f.write_all(bytes)?;
                f.sync_all()
            })();
            written.map_err(|e| Error::io("store in the cache", tmp, e))
        })
    }

    /// Makes the object `hash` from what `fill` writes (synced) into a
    /// staging file: read-only, renamed into place whole; nothing when the
    /// cache holds it already, nothing left behind when `fill` fails.
    fn put_object(&self, hash: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        if !is_hash(hash) {
            return Err(Error::Internal(format!(
                "`{}` is not a content hash",
                hash.escape_debug()
            )));
        }
        let dest = self.object_path(hash);
        if dest.is_file() {
            return Ok(());
        }
        let parent = dest.parent().expect("objects have a parent");
        fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the cache directory", parent, e))?;
        let tmp = self.staging_file();
        if let Err(e) = fill(&tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444));
        fs::rename(&tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("move into the cache", &dest, e)
        })
    }

    /// Copies the object `hash` to `dest`, verifying it on the way. A
    /// corrupt object is deleted so that the next run stores a good one.
    pub fn restore_file(
        &self,
        hash: &str,
        dest: &Path,
        exec: bool,
    ) -> std::result::Result<(), RestoreError> {
        if !is_hash(hash) {
            return Err(RestoreError::Missing);
        }
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
        self.tmp_dir().join(unique())
    }

    /// Takes this project's lock: refuses (or, with `wait`, waits) while
    /// another run of the project holds it; `on_wait` hears whom it waits
    /// for. The kernel releases the lock when its holder dies, so a killed
    /// run never leaves the cache locked.
    pub fn lock(&self, wait: bool, on_wait: &mut dyn FnMut(&str)) -> Result<LockGuard> {
        let me = format!("pid {} on {}", std::process::id(), hostname());
        let path = self.home.join("lock");
        lock_file(&path, libc::LOCK_EX, Some(&me), wait, on_wait)
    }

    /// Taken shared by every run of every project on this cache, so that
    /// `gc` (which takes it exclusively) never removes an object a run has
    /// stored and not yet recorded.
    pub fn share(&self) -> Result<LockGuard> {
        lock_file(
            &self.root.join("share.lock"),
            libc::LOCK_SH,
            None,
            true,
            &mut |_| {},
        )
    }

    /// The cache to itself (`gc`): refused while any run uses it.
    pub fn share_exclusive(&self) -> Result<LockGuard> {
        let path = self.root.join("share.lock");
        lock_file(&path, libc::LOCK_EX, None, false, &mut |_| {}).map_err(|e| match e {
            Error::Locked { path, .. } => Error::CacheInUse { path },
            other => other,
        })
    }

    /// Taken while this process computes the result `key`: another run (of
    /// this or another project) that needs it waits, then restores it.
    /// `who` is what a waiting run is told.
    pub fn claim(&self, key: &str, who: &str, on_wait: &mut dyn FnMut(&str)) -> Result<LockGuard> {
        let path = self.root.join("locks").join(key);
        lock_file(&path, libc::LOCK_EX, Some(who), true, on_wait)
    }
}

/// Locks `path` (flock, `mode` shared or exclusive), creating it. When
/// `holder` is given it is written into the file for those who wait.
fn lock_file(
    path: &Path,
    mode: libc::c_int,
    holder: Option<&str>,
    wait: bool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<LockGuard> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the cache directory", parent, e))?;
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open the lock file", path, e))?;
    // SAFETY: flock on a file descriptor we own.
    let try_lock = |flags| unsafe { libc::flock(file.as_raw_fd(), flags) } == 0;
    if !try_lock(mode | libc::LOCK_NB) {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::WouldBlock {
            return Err(Error::io("lock", path, err));
        }
        let text = holder_text(&file, holder.is_some());
        let text = match text.trim() {
            "" if holder.is_none() => "another run using this cache".to_string(),
            "" => "holder unknown".to_string(),
            h => h.to_string(),
        };
        if !wait {
            return Err(Error::Locked {
                path: path.to_path_buf(),
                holder: text,
            });
        }
        on_wait(&text);
        if !try_lock(mode) {
            return Err(Error::io("lock", path, io::Error::last_os_error()));
        }
    }
    if let Some(h) = holder {
        let _ = file.set_len(0);
        let _ = write!(file, "{h}");
        let _ = file.flush();
    }
    Ok(LockGuard {
        file,
        clear: holder.is_some(),
    })
}

/// What the lock file says of its holder. The holder writes its name just
/// after it takes the lock, so an empty file read in between is read again
/// for a moment before the holder is called unknown.
fn holder_text(mut file: &fs::File, named: bool) -> String {
    use std::io::Seek;
    let mut text = String::new();
    for _ in 0..20 {
        text.clear();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        if !named || !text.trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    text
}

/// Holds a lock until dropped.
pub struct LockGuard {
    file: fs::File,
    /// Whether the file names its holder (cleared on release).
    clear: bool,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.clear {
            let _ = self.file.set_len(0);
        }
    }
}

/// Every readable record in the home `home`, by stage name.
pub fn records_in(home: &Path) -> Vec<(String, Record)> {
    recorded_in(home)
        .into_iter()
        .filter_map(|name| {
            let path = home.join("stages").join(format!("{name}.json"));
            let r: Record = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
            r.outputs
                .iter()
                .all(|o| o.tree.damage().is_none())
                .then_some((name, r))
        })
        .collect()
}

/// The names of every stage with a record in the home `home`, sorted.
fn recorded_in(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(home.join("stages"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// A project's home in the cache `root`: the cache's top when the cache
/// lies directly in the project's directory (the default `cache`, and
/// caches made before caches were shared), else `projects/<dir>-<hash of
/// its absolute path>`, so two projects with a stage of one name never
/// read each other's records. Directly: a project that holds another
/// project holding its cache (`inner/cache`) must not take the inner
/// one's home.
fn home_dir(project: &Path, root: &Path) -> PathBuf {
    let abs = |p: &Path| {
        fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(p))
    };
    let project = abs(project);
    let cache = match root.parent() {
        // The cache may not exist yet: its parent does.
        Some(parent) => abs(parent).join(root.file_name().unwrap_or_default()),
        None => abs(root),
    };
    if cache.parent() == Some(project.as_path()) {
        return root.to_path_buf();
    }
    let name: String = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = crate::state::hash::hash_bytes(project.as_os_str().as_encoded_bytes());
    root.join("projects").join(format!("{name}-{}", &id[..12]))
}

/// Copies `src` to `dest` (synced), returning the blake3 hash of what was copied.
fn copy_hashing(src: &Path, dest: &Path) -> io::Result<String> {
    let mut output = fs::File::create(dest)?;
    let hash = crate::state::hash::copy_hashing(fs::File::open(src)?, &mut output)?;
    output.sync_all()?;
    Ok(hash)
}

/// Moves `src` (a file or a directory) to `dest`, which must not exist.
/// A rename on one file system; across file systems (a cache or outputs
/// directory on another disk), a copy into a hidden sibling of `dest`,
/// synced, then renamed into place, so `dest` appears whole or not at all.
pub fn move_into_place(src: &Path, dest: &Path) -> io::Result<()> {
    match fs::rename(src, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = sibling_tmp(dest);
            let copied = copy_tree(src, &tmp).and_then(|()| fs::rename(&tmp, dest));
            if let Err(e) = copied {
                let _ = remove_any(&tmp);
                return Err(e);
            }
            remove_any(src)
        }
        Err(e) => Err(e),
    }
}

fn sibling_tmp(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.fmnist-pipe-{}", unique()))
}

/// Copies a file, a symlink or a directory tree, syncing what it writes.
fn copy_tree(src: &Path, dest: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)
    } else if meta.is_dir() {
        fs::create_dir(dest)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
        fs::set_permissions(dest, meta.permissions())
    } else {
        fs::copy(src, dest)?;
        fs::File::open(dest)?.sync_all()
    }
}

/// `root/rel`, where `rel` comes from a record: `None` when it would lie
/// outside `root`, by its own components or through a symbolic link
/// already in place below `root`.
pub fn join_inside(root: &Path, rel: &str) -> Option<PathBuf> {
    if !crate::state::hash::is_inner_path(rel) {
        return None;
    }
    let mut p = root.to_path_buf();
    for c in rel.split('/') {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return None,
            Ok(_) => {}
            // Nothing further down exists yet.
            Err(_) => break,
        }
    }
    Some(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fingerprint::Fingerprint;
    use crate::state::hash::hash_bytes;

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
        let guard = store.lock(false, &mut |_| {}).unwrap();
        match store.lock(false, &mut |_| {}) {
            Err(Error::Locked { holder, .. }) => {
                assert!(holder.contains(&std::process::id().to_string()))
            }
            _ => panic!("second lock taken"),
        }
        drop(guard);
        store.lock(false, &mut |_| {}).unwrap();
    }

    #[test]
    fn a_waiter_reads_the_name_a_new_holder_has_not_yet_written() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("locks").join("k");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = fs::File::create(&path).unwrap();
        // Locked, but its holder's name not written yet.
        assert_eq!(
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(30));
                fs::write(path, "run 7 (same in /p)").unwrap();
            })
        };
        match lock_file(&path, libc::LOCK_EX, Some("me"), false, &mut |_| {}) {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder, "run 7 (same in /p)"),
            _ => panic!("the lock was taken twice"),
        }
        writer.join().unwrap();
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
            predictions: None,
        };
        let r = Record {
            complete: true,
            completed_once: true,
            hash: fp.hash(),
            fingerprint: fp.clone(),
            outputs: vec![],
            duration_s: 0.0,
            claimed: vec![],
            running: None,
            invalidated: None,
            key: None,
            paused: None,
        };
        store.write_record("a@b", &r).unwrap();
        let prev = store.record("a@b").unwrap();
        store
            .write_transient("a@b", &Record::started(prev.as_ref(), &fp, &["o".into()]))
            .unwrap();
        let r = store.record("a@b").unwrap().unwrap();
        assert!(!r.complete && r.completed_once);
        assert_eq!(r.claimed, ["o"]);
        assert_eq!(r.running.as_ref().unwrap().alive(), Some(true));
        fs::write(store.record_path("x"), "{not json").unwrap();
        assert!(store.record("x").is_err());
        // An unreadable record is started afresh, as a stub.
        let prev = store.record("x").ok().flatten();
        store
            .write_transient("x", &Record::started(prev.as_ref(), &fp, &[]))
            .unwrap();
        let r = store.record("x").unwrap().unwrap();
        assert!(
            !r.complete && !r.completed_once,
            "a stub, not the unreadable record"
        );
        assert_eq!(store.recorded_stages(), ["a@b", "x"]);
    }

    #[test]
    fn a_dead_runner_is_not_alive() {
        let mut me = Runner::me();
        assert_eq!(me.alive(), Some(true));
        me.start_ticks += 1;
        assert_eq!(
            me.alive(),
            Some(false),
            "same pid, another start: pid reused"
        );
        me.host = "elsewhere".into();
        assert_eq!(me.alive(), None);
    }

    #[test]
    fn a_path_from_a_record_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("out");
        fs::create_dir_all(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("link")).unwrap();
        assert_eq!(join_inside(&root, "sub/a"), Some(root.join("sub/a")));
        assert_eq!(join_inside(&root, "new/a"), Some(root.join("new/a")));
        for rel in ["../a", "/etc/passwd", "link/a", "link", "sub/../../a", ""] {
            assert_eq!(join_inside(&root, rel), None, "{rel}");
        }
    }

    #[test]
    fn names_that_are_not_hashes_touch_no_file() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("cache"));
        store.prepare().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "mine").unwrap();
        let name = format!("../../{}", victim.display());
        assert!(!store.has_object(&name));
        assert!(store.read_object(&name).is_none());
        assert!(matches!(
            store.restore_file(&name, &d.path().join("x"), false),
            Err(RestoreError::Missing)
        ));
        store.remove_object(&name).unwrap();
        assert!(store.store_bytes(&name, b"x").is_err());
        assert!(!store.has_object("é"), "no panic on a multi-byte name");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "mine");
    }

    #[test]
    fn moving_a_tree_by_copy_keeps_it_whole() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a"), "a").unwrap();
        fs::write(src.join("b"), "b").unwrap();
        let dest = d.path().join("dest");
        copy_tree(&src, &sibling_tmp(&dest)).unwrap();
        let tmp = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(".dest.fmnist-pipe-"))
            .unwrap();
        fs::rename(&tmp, &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("sub/a")).unwrap(), "a");
        assert_eq!(fs::read_to_string(dest.join("b")).unwrap(), "b");
        remove_any(&dest).unwrap();
        assert!(!dest.exists());
    }
}
