//! Places no stage may own. The tool deletes a stage's old outputs before
//! it reruns, so an output that is (or holds, or lies inside) the project,
//! its pipeline file, the cache, the outputs directory or version-control
//! metadata would destroy work; such outputs are refused when the pipeline
//! is loaded.
//!
//! Paths are compared physically: symlinks in the part of a path that
//! exists are resolved, so `link/pipeline.yaml` with `link -> .` is caught.

use std::path::{Component, Path, PathBuf};

/// Directory names that hold version-control metadata.
pub const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".jj", ".bzr", ".pijul", "_darcs"];

/// How an output may relate to a protected place.
#[derive(Clone, Copy, PartialEq)]
enum Rule {
    /// Neither the place, nor inside it, nor containing it.
    Untouchable,
    /// Inside is allowed (the outputs directory holds built-in outputs).
    NotItselfNorContaining,
}

struct Place {
    physical: PathBuf,
    what: String,
    rule: Rule,
}

pub struct Protected {
    places: Vec<Place>,
    /// Physical forms of directories already resolved: outputs share
    /// parents, and a pipeline may have thousands of them.
    parents: std::cell::RefCell<std::collections::HashMap<PathBuf, PathBuf>>,
}

/// The physical form of `path`: absolute, with the existing part's
/// symlinks resolved and the rest appended as written.
pub fn physical(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return lexical(&abs),
        }
    }
}

/// Removes `.` and resolves `..` without touching the filesystem.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Protected {
    /// The protected places of a project: `cache` and `outputs` as the
    /// pipeline sets them (relative to `project`, or absolute).
    pub fn new(project: &Path, pipeline_file: &Path, cache: &str, outputs: &str) -> Protected {
        let mut places = vec![
            Place {
                physical: physical(project),
                what: "the project directory".into(),
                rule: Rule::NotItselfNorContaining,
            },
            Place {
                physical: physical(pipeline_file),
                what: "the pipeline file".into(),
                rule: Rule::Untouchable,
            },
            Place {
                physical: physical(&project.join(cache)),
                what: format!("the cache directory `{cache}`"),
                rule: Rule::Untouchable,
            },
            Place {
                physical: physical(&project.join(outputs)),
                what: format!("the outputs directory `{outputs}`"),
                rule: Rule::NotItselfNorContaining,
            },
        ];
        for d in VCS_DIRS {
            places.push(Place {
                physical: physical(&project.join(d)),
                what: format!("version-control metadata (`{d}`)"),
                rule: Rule::Untouchable,
            });
        }
        Protected {
            places,
            parents: Default::default(),
        }
    }

    /// [`physical`], resolving each parent directory once.
    fn physical_cached(&self, path: &Path) -> PathBuf {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return physical(path);
        };
        // A symlink as the last component: resolve it whole.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return physical(path);
        }
        let mut memo = self.parents.borrow_mut();
        let parent = memo
            .entry(parent.to_path_buf())
            .or_insert_with(|| physical(parent));
        parent.join(name)
    }

    /// Why `path` may not be a stage's output, or None when it may.
    pub fn refuse(&self, path: &Path) -> Option<String> {
        if let Some(d) = path.components().find_map(|c| match c {
            Component::Normal(n) => VCS_DIRS.iter().find(|d| n == **d),
            _ => None,
        }) {
            return Some(format!("lies in version-control metadata (`{d}`)"));
        }
        let p = self.physical_cached(path);
        for place in &self.places {
            if p == place.physical {
                return Some(format!("is {}", place.what));
            }
            if place.physical.starts_with(&p) {
                return Some(format!("contains {}", place.what));
            }
            if place.rule == Rule::Untouchable && p.starts_with(&place.physical) {
                return Some(format!("lies inside {}", place.what));
            }
        }
        None
    }

    /// Why the cache or outputs directory itself is misplaced, or None.
    /// `which` is 2 for the cache, 3 for the outputs directory (their
    /// places in the list), so a directory is not compared with itself.
    fn refuse_setting(&self, which: usize) -> Option<String> {
        let p = &self.places[which].physical;
        for (i, place) in self.places.iter().enumerate() {
            if i == which {
                continue;
            }
            if *p == place.physical {
                return Some(format!("is {}", place.what));
            }
            if place.physical.starts_with(p) {
                return Some(format!("contains {}", place.what));
            }
            // The cache and outputs may live inside the project, nowhere else protected.
            if i != 0 && p.starts_with(&place.physical) {
                return Some(format!("lies inside {}", place.what));
            }
        }
        None
    }

    pub fn refuse_cache(&self) -> Option<String> {
        self.refuse_setting(2)
    }

    pub fn refuse_outputs(&self) -> Option<String> {
        self.refuse_setting(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn project() -> (tempfile::TempDir, Protected) {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("pipeline.yaml"), "").unwrap();
        fs::create_dir_all(d.path().join(".git")).unwrap();
        fs::create_dir_all(d.path().join("data")).unwrap();
        let p = Protected::new(
            d.path(),
            &d.path().join("pipeline.yaml"),
            "cache",
            "outputs",
        );
        (d, p)
    }

    #[test]
    fn protected_places_and_their_surroundings_are_refused() {
        let (d, p) = project();
        let refused = |rel: &str| p.refuse(&d.path().join(rel));
        for rel in [
            "pipeline.yaml",
            "cache",
            "cache/x",
            "outputs",
            ".git",
            ".git/HEAD",
            "sub/.hg/x",
        ] {
            assert!(refused(rel).is_some(), "{rel}");
        }
        assert!(p.refuse(d.path()).unwrap().contains("project directory"));
        assert!(p.refuse(d.path().parent().unwrap()).is_some());
        for rel in ["out/x.txt", "data/sorted.txt", "outputs/mine", "cachefile"] {
            assert_eq!(refused(rel), None, "{rel}");
        }
    }

    #[test]
    fn symlinks_are_followed() {
        let (d, p) = project();
        std::os::unix::fs::symlink(".", d.path().join("here")).unwrap();
        std::os::unix::fs::symlink("..", d.path().join("data/up")).unwrap();
        let why = p.refuse(&d.path().join("here/pipeline.yaml")).unwrap();
        assert!(why.contains("pipeline file"), "{why}");
        assert!(p.refuse(&d.path().join("here")).is_some());
        assert!(p.refuse(&d.path().join("data/up/cache/o")).is_some());
    }

    #[test]
    fn settings_that_overlap() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("pipeline.yaml");
        let ok = Protected::new(d.path(), &file, "cache", "outputs");
        assert_eq!(ok.refuse_cache(), None);
        assert_eq!(ok.refuse_outputs(), None);
        let same = Protected::new(d.path(), &file, "x", "x");
        assert!(same.refuse_cache().is_some());
        let nested = Protected::new(d.path(), &file, "outputs/cache", "outputs");
        assert!(nested
            .refuse_cache()
            .unwrap()
            .contains("inside the outputs"));
        let root = Protected::new(d.path(), &file, "/", "outputs");
        assert!(root.refuse_cache().unwrap().contains("project directory"));
        let git = Protected::new(d.path(), &file, ".git/c", "outputs");
        assert!(git.refuse_cache().is_some());
        let elsewhere = Protected::new(d.path(), &file, "/tmp/elsewhere-cache", "outputs");
        assert_eq!(elsewhere.refuse_cache(), None);
    }
}
