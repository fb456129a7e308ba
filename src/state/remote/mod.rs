//! Remotes: where completed runs are pushed to and pulled from, so that a
//! colleague, a laptop or a CI runner restores what was computed elsewhere.
//!
//! A remote holds what the run cache holds, under the same names:
//! `objects/ab/cdef…` (file contents by blake3) and `runs/<key>.json` (a
//! completed run). Every write is whole or absent (a directory remote
//! renames a sibling into place; an S3 PUT is atomic), and a run is written
//! after all its objects: an interrupted push leaves nothing half-visible,
//! and the next push finishes the job. What is pulled is checked: an object
//! whose content does not hash to its name is named and not used.

mod dir;
mod s3;

use crate::error::{Error, Result};
use crate::spec::{RemoteSpec, Settings};
use crate::state::runs::{self, Damage, RunEntry};
use crate::state::store::Store;

/// What a backend failed at, for [`Error::Remote`].
#[derive(Debug)]
pub struct Trouble {
    pub problem: String,
    pub help: String,
}

/// A place that stores files by key (`objects/…`, `runs/…`).
pub trait Backend: Send + Sync {
    /// Whether the remote can be used at all (reachable, there, allowed).
    fn check(&self) -> std::result::Result<(), Trouble>;
    fn has(&self, key: &str) -> std::result::Result<bool, Trouble>;
    /// Whether the remote holds exactly `bytes` under `key` (a damaged
    /// copy is then replaced by a push).
    fn holds(&self, key: &str, bytes: &[u8]) -> std::result::Result<bool, Trouble>;
    fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, Trouble>;
    /// Writes `bytes` under `key`, whole or not at all.
    fn put(&self, key: &str, bytes: &[u8]) -> std::result::Result<(), Trouble>;
}

pub struct Remote {
    pub name: String,
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.name)
    }
}

/// How fetching one completed run went.
#[derive(Debug)]
pub enum Fetched {
    /// The remote has no such run.
    Absent,
    /// Fetched and remembered locally.
    Got(Box<RunEntry>),
    /// A record that cannot be used, or objects missing or not what
    /// their name says: none of the run was used.
    Damaged(Damage),
}

/// What pushing one stage's result did.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// Sent: objects sent, and their size in bytes.
    Sent { objects: usize, bytes: u64 },
    /// The remote had it already.
    There,
    /// Refused: the local cache lacks (or holds damaged) these objects.
    Incomplete(Vec<String>),
}

impl Remote {
    /// The remote `name` of the pipeline's settings, or the only one when
    /// `name` is None; checked to be usable.
    pub fn open(settings: &Settings, name: Option<&str>) -> Result<Remote> {
        let (name, spec) = match (name, settings.remotes.as_slice()) {
            (_, []) => {
                return Err(Error::Usage(
                    "the pipeline declares no remote\n  help: add one under settings.remotes (a directory, or {url: s3://bucket/prefix, endpoint, region})".into(),
                ))
            }
            (None, [one]) => (one.0.clone(), one.1.clone()),
            (None, many) => {
                let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Error::Usage(format!(
                    "the pipeline declares {} remotes ({}): say which with --remote",
                    names.len(),
                    names.join(", ")
                )));
            }
            (Some(n), all) => match all.iter().find(|(m, _)| m == n) {
                Some((m, s)) => (m.clone(), s.clone()),
                None => {
                    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(Error::Usage(format!(
                        "no remote `{n}` in settings.remotes (it declares {})",
                        names.join(", ")
                    )));
                }
            },
        };
        let backend: Box<dyn Backend> = match spec {
            RemoteSpec::Dir(path) => Box::new(dir::DirRemote::new(path)),
            RemoteSpec::S3 {
                bucket,
                prefix,
                endpoint,
                region,
            } => Box::new(
                s3::S3Remote::new(&bucket, &prefix, endpoint.as_deref(), region.as_deref())
                    .map_err(|t| remote_error(&name, t))?,
            ),
        };
        backend.check().map_err(|t| remote_error(&name, t))?;
        Ok(Remote { name, backend })
    }

    fn err(&self, t: Trouble) -> Error {
        remote_error(&self.name, t)
    }

    /// Sends a completed run: its objects the remote lacks (or holds
    /// damaged), then the run. Refused when the local cache does not hold
    /// every object whole.
    pub fn push(&self, store: &Store, entry: &RunEntry) -> Result<Pushed> {
        let run_key = run_path(&entry.key);
        let hashes: std::collections::BTreeSet<&str> = entry.objects().collect();
        let lacking: Vec<String> = hashes
            .iter()
            .filter(|h| !store.object_path(h).is_file())
            .map(|h| h.to_string())
            .collect();
        if !lacking.is_empty() {
            return Ok(Pushed::Incomplete(lacking));
        }
        let (mut objects, mut bytes) = (0, 0);
        for h in hashes {
            // Read and checked: a damaged local object is never sent.
            let Some(data) = store.read_object(h) else {
                return Ok(Pushed::Incomplete(vec![h.to_string()]));
            };
            let key = object_path(h);
            if self.backend.holds(&key, &data).map_err(|t| self.err(t))? {
                continue;
            }
            self.backend.put(&key, &data).map_err(|t| self.err(t))?;
            objects += 1;
            bytes += data.len() as u64;
        }
        // The remote's record counts only when it is sound and names
        // these outputs (whose objects were just checked); a damaged one
        // is replaced.
        if objects == 0 && self.holds_run(entry)? {
            return Ok(Pushed::There);
        }
        let text = serde_json::to_vec_pretty(entry).map_err(|source| Error::Record {
            stage: entry.stage.clone(),
            source,
        })?;
        self.backend.put(&run_key, &text).map_err(|t| self.err(t))?;
        Ok(Pushed::Sent { objects, bytes })
    }

    /// Whether the remote's record of `entry`'s run is sound and names
    /// the same outputs.
    fn holds_run(&self, entry: &RunEntry) -> Result<bool> {
        let text = self
            .backend
            .get(&run_path(&entry.key))
            .map_err(|t| self.err(t))?;
        Ok(text.is_some_and(|t| {
            runs::parse(&t, &entry.key).is_ok_and(|there| {
                there.outputs.len() == entry.outputs.len()
                    && there
                        .outputs
                        .iter()
                        .zip(&entry.outputs)
                        .all(|(a, b)| a.tree == b.tree)
            })
        }))
    }

    /// Fetches the completed run `key` into the local cache: the record,
    /// checked before anything in it is used (its paths and hashes become
    /// file names), then each object the cache lacks, checked against its
    /// name, then the run itself.
    ///
    /// `paused`: the run asked for is a training paused after that many
    /// epochs (`None`: a whole one); a record that says otherwise is
    /// damaged.
    pub fn fetch(&self, store: &Store, key: &str, paused: Option<usize>) -> Result<Fetched> {
        if !crate::state::hash::is_hash(key) {
            return Err(Error::Internal(format!("`{key}` is not a run key")));
        }
        let Some(text) = self.backend.get(&run_path(key)).map_err(|t| self.err(t))? else {
            return Ok(Fetched::Absent);
        };
        let entry = match runs::parse(&text, key) {
            Ok(e) if e.paused != paused => {
                let what = |p: Option<usize>| match p {
                    Some(n) => format!("a training paused after {n} epochs"),
                    None => "a whole training".into(),
                };
                return Ok(Fetched::Damaged(Damage::Invalid(format!(
                    "it is filed as {} but says it is {}",
                    what(paused),
                    what(e.paused)
                ))));
            }
            Ok(e) => e,
            Err(d) => return Ok(Fetched::Damaged(d)),
        };
        // Each whole object goes into the cache as it comes (unreferenced
        // until the run is written); the run only when all are whole.
        let (mut missing, mut mismatched) = (Vec::new(), Vec::new());
        let hashes: std::collections::BTreeSet<&str> = entry.objects().collect();
        for h in hashes {
            if store.has_object(h) {
                continue;
            }
            match self.backend.get(&object_path(h)).map_err(|t| self.err(t))? {
                Some(data) if crate::state::hash::hash_bytes(&data) == h => {
                    store.store_bytes(h, &data)?
                }
                Some(_) => mismatched.push(object_path(h)),
                None => missing.push(object_path(h)),
            }
        }
        if !mismatched.is_empty() {
            return Ok(Fetched::Damaged(Damage::Mismatched(mismatched)));
        }
        if !missing.is_empty() {
            return Ok(Fetched::Damaged(Damage::Missing(missing)));
        }
        runs::write(store, &entry)?;
        Ok(Fetched::Got(Box::new(entry)))
    }
}

fn remote_error(name: &str, t: Trouble) -> Error {
    Error::Remote {
        remote: name.to_string(),
        problem: t.problem,
        help: t.help,
    }
}

/// The remote's name of object `hash` (checked by [`is_hash`] first).
///
/// [`is_hash`]: crate::state::hash::is_hash
fn object_path(hash: &str) -> String {
    let split = if hash.is_char_boundary(2) { 2 } else { 0 };
    let (a, b) = hash.split_at(split.min(hash.len()));
    format!("objects/{a}/{b}")
}

fn run_path(key: &str) -> String {
    format!("runs/{key}.json")
}
