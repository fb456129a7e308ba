//! A remote that is a directory, typically on a file system shared by a
//! cluster's nodes (NFS). A file is written as a hidden sibling, synced,
//! then renamed into place: rename within one directory is atomic there
//! too, so a reader sees a whole file or none.

use super::{Backend, Trouble};
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

pub struct DirRemote {
    root: PathBuf,
}

impl DirRemote {
    pub fn new(root: PathBuf) -> Self {
        DirRemote { root }
    }

    fn trouble(&self, what: &str, key: &str, e: io::Error) -> Trouble {
        Trouble {
            problem: format!("could not {what} {}: {e}", self.root.join(key).display()),
            help: format!(
                "check that {} is mounted here and writable by you",
                self.root.display()
            ),
        }
    }
}

impl Backend for DirRemote {
    fn check(&self) -> Result<(), Trouble> {
        if self.root.is_dir() {
            return Ok(());
        }
        Err(Trouble {
            problem: format!(
                "{} is not a directory (or not mounted here)",
                self.root.display()
            ),
            help: format!(
                "create it (`mkdir -p {}`), or point settings.remotes at an existing directory",
                self.root.display()
            ),
        })
    }

    fn has(&self, key: &str) -> Result<bool, Trouble> {
        Ok(self.root.join(key).is_file())
    }

    fn holds(&self, key: &str, bytes: &[u8]) -> Result<bool, Trouble> {
        Ok(self.get(key)?.is_some_and(|b| b == bytes))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Trouble> {
        match fs::read(self.root.join(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.trouble("read", key, e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Trouble> {
        let dest = self.root.join(key);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let written = (|| {
            fs::create_dir_all(&parent)?;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.trouble("write", key, e));
        }
        Ok(())
    }
}
