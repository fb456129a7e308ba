//! Content hashes (blake3) of files and directories, with a stat cache so
//! that unchanged large files are not re-read on every `status`.
//!
//! The stat cache only saves work: an entry is trusted when size, mtime,
//! change time, inode and device all match, and the file had not changed
//! within a second of being hashed (a write in that window could leave the
//! times unchanged). The change time is the guard no program can forge:
//! `touch -r` or `utime` set the modification time back, but setting it
//! bumps the change time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The hash of one file inside an output or dep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the hashed root; empty when the root is a file.
    pub rel: String,
    pub hash: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec: bool,
}

/// The hash of a file or a directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub hash: String,
    pub is_dir: bool,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatEntry {
    size: u64,
    mtime_ns: i128,
    /// Absent in entries written before change times were kept: such an
    /// entry never matches, so the file is hashed again.
    #[serde(default)]
    ctime_ns: Option<i128>,
    ino: u64,
    #[serde(default)]
    dev: Option<u64>,
    hashed_at_ns: i128,
    hash: String,
}

impl StatEntry {
    fn matches(&self, meta: &fs::Metadata) -> bool {
        let ctime = ctime_ns(meta);
        self.size == meta.len()
            && self.mtime_ns == mtime_ns(meta)
            && self.ctime_ns == Some(ctime)
            && self.ino == meta.ino()
            && self.dev == Some(meta.dev())
            && self.hashed_at_ns - ctime.max(mtime_ns(meta)) > 1_000_000_000
    }
}

pub struct HashCache {
    path: PathBuf,
    /// The working directory, read once: entries are keyed by absolute
    /// path, so one cache serves a project whichever directory fmnist-pipe
    /// is started from.
    cwd: PathBuf,
    entries: Mutex<BTreeMap<String, StatEntry>>,
    changed: AtomicBool,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

fn ctime_ns(m: &fs::Metadata) -> i128 {
    m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128
}

impl HashCache {
    fn key_of(&self, path: &Path) -> String {
        let abs: PathBuf = self
            .cwd
            .join(path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        abs.to_string_lossy().into_owned()
    }

    /// Loads the stat cache; a missing or unreadable one starts empty.
    pub fn load(path: PathBuf) -> HashCache {
        let entries = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        HashCache {
            path,
            cwd: std::env::current_dir().unwrap_or_default(),
            entries: Mutex::new(entries),
            changed: AtomicBool::new(false),
        }
    }

    /// A cache that remembers nothing (for tests and one-off hashing).
    pub fn disabled() -> HashCache {
        HashCache {
            path: PathBuf::new(),
            cwd: std::env::current_dir().unwrap_or_default(),
            entries: Mutex::new(BTreeMap::new()),
            changed: AtomicBool::new(false),
        }
    }

    /// Writes the stat cache if it changed. Best effort: it is only a cache.
    pub fn save(&self) {
        if self.path.as_os_str().is_empty() || !self.changed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(entries) = self.entries.lock() else {
            return;
        };
        if let Ok(bytes) = serde_json::to_vec(&*entries) {
            let _ = crate::state::files::write_atomic(&self.path, &bytes);
        }
    }

    /// The blake3 hash of a regular file.
    pub fn hash_file(&self, path: &Path, meta: &fs::Metadata) -> io::Result<String> {
        let key = self.key_of(path);
        if let Ok(entries) = self.entries.lock() {
            if let Some(e) = entries.get(&key).filter(|e| e.matches(meta)) {
                return Ok(e.hash.clone());
            }
        }
        let hashed_at_ns = now_ns();
        let hash = hash_reader(fs::File::open(path)?)?;
        if !self.path.as_os_str().is_empty() {
            if let Ok(mut entries) = self.entries.lock() {
                entries.insert(
                    key,
                    StatEntry {
                        size: meta.len(),
                        mtime_ns: mtime_ns(meta),
                        ctime_ns: Some(ctime_ns(meta)),
                        ino: meta.ino(),
                        dev: Some(meta.dev()),
                        hashed_at_ns,
                        hash: hash.clone(),
                    },
                );
                self.changed.store(true, Ordering::Relaxed);
            }
        }
        Ok(hash)
    }

    /// Forgets every entry at or under `path`: the next hash reads the
    /// files again (used when a stage found one of them corrupt).
    pub fn forget(&self, path: &Path) {
        let key = self.key_of(path);
        let under = format!("{key}/");
        if let Ok(mut entries) = self.entries.lock() {
            let before = entries.len();
            entries.retain(|k, _| *k != key && !k.starts_with(&under));
            if entries.len() != before {
                self.changed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Drops entries whose files no longer exist (`gc`).
    pub fn prune(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let before = entries.len();
            entries.retain(|k, _| Path::new(k).exists());
            if entries.len() != before {
                self.changed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Hashes a file or a directory (recursively, in name order). `None`
    /// when nothing exists at `path`.
    pub fn hash_path(&self, path: &Path) -> io::Result<Option<Tree>> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            let mut files = Vec::new();
            self.walk(path, "", &mut files)?;
            Ok(Some(Tree {
                hash: dir_hash(&files),
                is_dir: true,
                files,
            }))
        } else {
            let hash = self.hash_file(path, &meta)?;
            Ok(Some(Tree {
                hash: hash.clone(),
                is_dir: false,
                files: vec![FileEntry {
                    rel: String::new(),
                    hash,
                    size: meta.len(),
                    exec: meta.mode() & 0o111 != 0,
                }],
            }))
        }
    }

    fn walk(&self, dir: &Path, prefix: &str, out: &mut Vec<FileEntry>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = fs::metadata(&path)?;
            if meta.is_dir() {
                self.walk(&path, &rel, out)?;
            } else {
                let hash = self.hash_file(&path, &meta)?;
                out.push(FileEntry {
                    rel,
                    hash,
                    size: meta.len(),
                    exec: meta.mode() & 0o111 != 0,
                });
            }
        }
        Ok(())
    }
}

/// A directory's hash: its files' paths, contents and modes, in order.
fn dir_hash(files: &[FileEntry]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"dir\0");
    for f in files {
        h.update(f.rel.as_bytes());
        h.update(b"\0");
        h.update(f.hash.as_bytes());
        h.update(if f.exec { b"\0x\n" } else { b"\0-\n" });
    }
    h.finalize().to_hex().to_string()
}

/// Whether `s` is a hash as the cache names objects: 64 lower-case hex
/// digits (anything else could name a path outside the objects).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `rel`, joined to a directory, stays inside it: relative, its
/// components neither empty nor `.` nor `..`, no NUL.
pub fn is_inner_path(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Tree {
    /// Why this tree, read from a record that another process wrote (a
    /// remote, a shared cache), cannot be used; `None` when it can. Every
    /// file's path stays inside the output, every hash names an object,
    /// and the files add up to the tree's hash.
    pub fn damage(&self) -> Option<String> {
        if !is_hash(&self.hash) {
            return Some(format!(
                "`{}` is not a content hash",
                self.hash.escape_debug()
            ));
        }
        if let Some(f) = self.files.iter().find(|f| !is_hash(&f.hash)) {
            return Some(format!("`{}` is not a content hash", f.hash.escape_debug()));
        }
        if !self.is_dir {
            return match self.files.as_slice() {
                [f] if f.rel.is_empty() && f.hash == self.hash => None,
                _ => Some("a file output that is not one file of its hash".into()),
            };
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            if !is_inner_path(&f.rel) {
                return Some(format!(
                    "the file path `{}` leaves its output",
                    f.rel.escape_debug()
                ));
            }
            if !seen.insert(f.rel.as_str()) {
                return Some(format!(
                    "the file `{}` is listed twice",
                    f.rel.escape_debug()
                ));
            }
        }
        // A file cannot also be a directory of others.
        if let Some(f) = self.files.iter().find(|f| {
            let dir = format!("{}/", f.rel);
            seen.range(dir.as_str()..)
                .next()
                .is_some_and(|r| r.starts_with(&dir))
        }) {
            return Some(format!(
                "`{}` is listed as a file and as a directory",
                f.rel.escape_debug()
            ));
        }
        (dir_hash(&self.files) != self.hash)
            .then(|| "its files do not add up to its hash".to_string())
    }
}

/// The blake3 hash of everything `r` yields.
pub fn hash_reader(r: impl io::Read) -> io::Result<String> {
    copy_hashing(r, io::sink())
}

/// Copies `r` into `w`, returning the blake3 hash of what was copied.
pub fn copy_hashing(mut r: impl io::Read, mut w: impl io::Write) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        w.write_all(&buf[..n])?;
    }
    Ok(h.finalize().to_hex().to_string())
}

pub fn hash_bytes(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_from_elsewhere_is_checked_before_use() {
        let d = tempfile::tempdir().unwrap();
        let c = HashCache::disabled();
        fs::create_dir_all(d.path().join("o/sub")).unwrap();
        fs::write(d.path().join("o/sub/a"), "x").unwrap();
        fs::write(d.path().join("o/b"), "y").unwrap();
        let good = c.hash_path(&d.path().join("o")).unwrap().unwrap();
        assert_eq!(good.damage(), None);
        let file = c.hash_path(&d.path().join("o/b")).unwrap().unwrap();
        assert_eq!(file.damage(), None);

        let with = |f: &dyn Fn(&mut Tree)| {
            let mut t = good.clone();
            f(&mut t);
            t.damage()
        };
        // Paths that would leave the output, even with the hash made to fit.
        for rel in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "./a",
            "a//b",
            "",
            "a\0b",
            "sub/..",
        ] {
            let why = with(&|t| {
                t.files[0].rel = rel.into();
                t.hash = dir_hash(&t.files);
            });
            assert!(
                why.is_some_and(|w| w.contains("leaves its output")),
                "{rel}"
            );
        }
        for hash in ["../../etc/passwd", "ABCD", &"a".repeat(63), &"é".repeat(32)] {
            assert!(
                with(&|t| t.files[0].hash = hash.to_string()).is_some(),
                "{hash}"
            );
            assert!(with(&|t| t.hash = hash.to_string()).is_some(), "{hash}");
        }
        assert!(
            with(&|t| t.files[1].size = 7).is_none(),
            "sizes are not trusted for anything"
        );
        assert!(with(&|t| t.files[0].hash = hash_bytes(b"z")).is_some());
        assert!(with(&|t| {
            let f = t.files[0].clone();
            t.files.push(f);
            t.hash = dir_hash(&t.files);
        })
        .is_some());
        assert!(with(&|t| {
            t.files[0].rel = "sub".into();
            t.hash = dir_hash(&t.files);
        })
        .is_some_and(|w| w.contains("as a file and as a directory")));
        let mut f = file.clone();
        f.files[0].rel = "../x".into();
        assert!(f.damage().is_some());
        assert!(is_hash(&hash_bytes(b"")));
    }

    #[test]
    fn file_and_dir_hashes_follow_content() {
        let d = tempfile::tempdir().unwrap();
        let c = HashCache::disabled();
        fs::write(d.path().join("a"), "x").unwrap();
        let t = c.hash_path(&d.path().join("a")).unwrap().unwrap();
        assert_eq!(t.hash, hash_bytes(b"x"));
        assert!(!t.is_dir);
        fs::create_dir_all(d.path().join("dir/sub")).unwrap();
        fs::write(d.path().join("dir/sub/b"), "y").unwrap();
        fs::write(d.path().join("dir/a"), "x").unwrap();
        let t1 = c.hash_path(&d.path().join("dir")).unwrap().unwrap();
        assert_eq!(
            t1.files.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(),
            ["a", "sub/b"]
        );
        fs::write(d.path().join("dir/sub/b"), "z").unwrap();
        let t2 = c.hash_path(&d.path().join("dir")).unwrap().unwrap();
        assert_ne!(t1.hash, t2.hash);
        assert!(c.hash_path(&d.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn stat_cache_survives_reload_and_notices_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, "one").unwrap();
        let cache_path = d.path().join("stat.json");
        let c = HashCache::load(cache_path.clone());
        let h1 = c.hash_path(&f).unwrap().unwrap().hash;
        c.save();
        assert!(cache_path.exists());
        fs::write(&f, "two!").unwrap();
        let c = HashCache::load(cache_path);
        let h2 = c.hash_path(&f).unwrap().unwrap().hash;
        assert_ne!(h1, h2);
        assert_eq!(h2, hash_bytes(b"two!"));
    }

    /// An edit that keeps the size and sets the modification time back
    /// (as `touch -r` does) is still seen: the change time moved.
    #[test]
    fn same_size_edit_with_mtime_restored_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, "aaaa").unwrap();
        let past =
            fs::metadata(&f).unwrap().modified().unwrap() - std::time::Duration::from_secs(10);
        let set_mtime = || {
            fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(past)
                .unwrap()
        };
        set_mtime();
        let c = HashCache::load(d.path().join("stat.json"));
        c.hash_path(&f).unwrap();
        // As if hashed long after the last change, so the entry is trusted;
        // a marker hash shows when it is used.
        for e in c.entries.lock().unwrap().values_mut() {
            e.hashed_at_ns += 10_000_000_000;
            e.hash = "from-the-stat-cache".into();
        }
        assert_eq!(
            c.hash_path(&f).unwrap().unwrap().hash,
            "from-the-stat-cache"
        );
        // Past the kernel's timestamp granularity (a few milliseconds).
        std::thread::sleep(std::time::Duration::from_millis(50));
        fs::write(&f, "bbbb").unwrap();
        set_mtime();
        let m = fs::metadata(&f).unwrap();
        assert_eq!(
            (m.len(), m.modified().unwrap()),
            (4, past),
            "size and mtime as before"
        );
        assert_eq!(c.hash_path(&f).unwrap().unwrap().hash, hash_bytes(b"bbbb"));
    }

    #[test]
    fn forget_drops_entries_under_a_path() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("o/sub")).unwrap();
        fs::write(d.path().join("o/sub/a"), "x").unwrap();
        fs::write(d.path().join("other"), "y").unwrap();
        let c = HashCache::load(d.path().join("stat.json"));
        c.hash_path(&d.path().join("o")).unwrap();
        c.hash_path(&d.path().join("other")).unwrap();
        assert_eq!(c.entries.lock().unwrap().len(), 2);
        c.forget(&d.path().join("o"));
        let left: Vec<String> = c.entries.lock().unwrap().keys().cloned().collect();
        assert_eq!(left.len(), 1);
        assert!(left[0].ends_with("other"));
    }
}
