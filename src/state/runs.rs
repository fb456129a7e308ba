//! The run cache: every completed run of a stage, of every project sharing
//! the cache, kept by a key of what determined its result. A stage whose
//! key matches a completed run is restored from it instead of run: a
//! parameter changed and changed back, an older commit checked out, a
//! second clone, another project with the same stage.
//!
//! The key is the fingerprint without what cannot reach the result: the
//! stage's name, for the kinds whose outputs do not name it (`cmd`,
//! `download`, `preprocess`, `train`); its inputs' names and paths for the
//! built-in kinds among them (they are handed their inputs and read only
//! their contents); and a built-in kind's output directory, which it never
//! sees (it writes into staging). So renaming a variant, or adding `seeds:`
//! to a study that trained once, finds the training it already did. A
//! command reaches its inputs by path, so their paths stay in its key.

use crate::error::{Error, Result};
use crate::spec::Stage;
use crate::state::files::write_whole_unsynced;
use crate::state::fingerprint::Fingerprint;
use crate::state::hash::is_hash;
pub use crate::state::record::paused_key;
use crate::state::record::{Digest, Output};
use crate::state::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// One completed run, as the run cache keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEntry {
    pub key: String,
    /// The stage that computed it, and its fingerprint (for people).
    pub stage: String,
    pub fingerprint: Fingerprint,
    /// What it wrote, in the order of the stage's declared outputs.
    pub outputs: Vec<Output>,
    pub duration_s: f64,
    /// When it finished, in seconds since the Unix epoch.
    pub finished: u64,
    /// A training paused at a search's rung after this many epochs: not
    /// the result of its parameters, and filed under [`paused_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<usize>,
}

impl RunEntry {
    pub fn new(
        key: String,
        stage: &str,
        fp: Fingerprint,
        outputs: Vec<Output>,
        duration_s: f64,
    ) -> Self {
        let finished = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        RunEntry {
            key,
            stage: stage.to_string(),
            fingerprint: fp,
            outputs,
            duration_s,
            finished,
            paused: None,
        }
    }

    /// The outputs as `stage` would hold them: the same contents at the
    /// stage's own paths (a built-in kind's directory is named after it).
    pub fn outputs_for(&self, stage: &Stage) -> Option<Vec<Output>> {
        if self.outputs.len() != stage.outs.len() {
            return None;
        }
        Some(
            self.outputs
                .iter()
                .zip(&stage.outs)
                .map(|(o, path)| Output {
                    path: path.clone(),
                    tree: o.tree.clone(),
                })
                .collect(),
        )
    }

    /// Why this entry, as read from a cache or a remote under `key`,
    /// cannot be used; `None` when it can. Nothing in it is trusted before
    /// this: its paths and hashes become file names.
    pub fn damage(&self, key: &str) -> Option<Damage> {
        if self.key != key || !is_hash(key) {
            return Some(Damage::Invalid(format!(
                "it is filed under {key} but names the run `{}`",
                self.key.escape_debug()
            )));
        }
        self.outputs.iter().find_map(|o| {
            o.tree
                .damage()
                .map(|why| Damage::Invalid(format!("output {}: {why}", o.path.escape_debug())))
        })
    }

    /// Every object the entry's outputs are made of.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.outputs
            .iter()
            .flat_map(|o| o.tree.files.iter().map(|f| f.hash.as_str()))
    }
}

/// Why a run record written elsewhere (a remote, a cache shared with
/// other projects) is not used. Nothing is written or removed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Not a run record: not JSON of its shape.
    Unreadable,
    /// A field that does not hold what it must; what, in words.
    Invalid(String),
    /// Objects it names that are not there.
    Missing(Vec<String>),
    /// Objects whose content does not hash to their name.
    Mismatched(Vec<String>),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            let shown: Vec<&str> = v.iter().take(3).map(String::as_str).collect();
            match v.len() {
                n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
                _ => shown.join(", "),
            }
        };
        match self {
            Damage::Unreadable => write!(f, "it is not a run record"),
            Damage::Invalid(why) => write!(f, "{why}"),
            Damage::Missing(v) => write!(f, "it lacks {}", list(v)),
            Damage::Mismatched(v) => {
                write!(f, "content that does not match its name: {}", list(v))
            }
        }
    }
}

/// What the key is computed from; serialized with ordered maps only.
#[derive(Serialize)]
struct KeyForm<'a> {
    /// The key's own format: raise it when the form changes.
    v: u32,
    kind: &'a str,
    kind_version: u32,
    params: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    deps: &'a BTreeMap<String, String>,
    /// The stage's name, for kinds whose outputs name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'a str>,
    /// Each input's content, with the input's name where the kind's
    /// outputs name it.
    inputs: Vec<(Option<&'a str>, &'a str)>,
    /// A `cmd` stage's declared outputs (its command writes them).
    #[serde(skip_serializing_if = "Option::is_none")]
    outs: Option<&'a [String]>,
    /// The command's predictions an evaluation measures.
    #[serde(skip_serializing_if = "Option::is_none")]
    predictions: Option<&'a str>,
}

/// The run-cache key of `stage` with fingerprint `fp`, whose inputs have
/// the digests `inputs` (by stage name).
pub fn key(stage: &Stage, fp: &Fingerprint, inputs: &BTreeMap<String, Digest>) -> String {
    let named = stage.kind.names_stages();
    // A command reaches its inputs by path (a glob may list their file
    // names): the paths count. A built-in kind is handed its inputs and
    // reads their contents only.
    let by_path = !stage.kind.is_builtin();
    let mut ins: Vec<(Option<&str>, &str)> = inputs
        .iter()
        .map(|(n, d)| {
            let digest = if by_path { &d.named } else { &d.content };
            (named.then_some(n.as_str()), digest.as_str())
        })
        .collect();
    ins.sort();
    let form = KeyForm {
        v: 1,
        kind: &fp.kind,
        kind_version: fp.kind_version,
        params: &fp.params,
        cmd: fp.cmd.as_deref(),
        device: fp.device.as_deref(),
        deps: &fp.deps,
        stage: named.then_some(stage.name.as_str()),
        inputs: ins,
        outs: (!stage.kind.is_builtin()).then_some(fp.outs.as_slice()),
        predictions: fp.predictions.as_deref(),
    };
    let bytes = serde_json::to_vec(&form).expect("a key form always serializes");
    crate::state::hash::hash_bytes(&bytes)
}

/// Where the cache files the run `key` (a hash: checked by the callers
/// that take keys from outside).
fn path(store: &Store, key: &str) -> PathBuf {
    store.root().join("runs").join(format!("{key}.json"))
}

/// The completed run `key`, if the cache remembers one it can restore:
/// its entry is sound and every object it names is there. `Err`: an entry
/// is there and must not be used.
pub fn find(store: &Store, key: &str) -> std::result::Result<Option<RunEntry>, Damage> {
    let Some(entry) = read(store, key)? else {
        return Ok(None);
    };
    let whole = entry.objects().all(|h| store.has_object(h));
    Ok(whole.then_some(entry))
}

/// The entry `key` as stored (its objects may be missing), checked: the
/// cache may be shared, and whoever shares it may have written it.
pub fn read(store: &Store, key: &str) -> std::result::Result<Option<RunEntry>, Damage> {
    if !is_hash(key) {
        return Ok(None);
    }
    let bytes = match fs::read(path(store, key)) {
        Ok(b) => b,
        // Absent, or unreadable: a shortcut the stage does without.
        Err(_) => return Ok(None),
    };
    parse(&bytes, key).map(Some)
}

/// A run record's text, as a checked entry filed under `key`.
pub fn parse(bytes: &[u8], key: &str) -> std::result::Result<RunEntry, Damage> {
    let entry: RunEntry = serde_json::from_slice(bytes).map_err(|_| Damage::Unreadable)?;
    match entry.damage(key) {
        Some(d) => Err(d),
        None => Ok(entry),
    }
}

/// Remembers a completed run; its objects are stored (and synced)
/// already. Not synced itself: an entry lost or torn in a crash reads as
/// absent, and only the shortcut is lost (the stage's record is durable).
pub fn write(store: &Store, entry: &RunEntry) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(entry).map_err(|source| Error::Record {
        stage: entry.stage.clone(),
        source,
    })?;
    let p = path(store, &entry.key);
    write_whole_unsynced(&p, &bytes).map_err(|e| Error::io("write the run cache entry", &p, e))
}

/// Forgets the run `key` (its result was found corrupt).
pub fn forget(store: &Store, key: &str) -> Result<()> {
    if !is_hash(key) {
        return Ok(());
    }
    let p = path(store, key);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove the run cache entry", &p, e)),
    }
}

/// Every remembered run's key, sorted.
pub fn keys(store: &Store) -> Vec<String> {
    let mut keys: Vec<String> = fs::read_dir(store.root().join("runs"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Resources;

    fn stage(name: &str, kind: stages::Kind, outs: &[&str]) -> Stage {
        Stage {
            name: name.into(),
            base: name.into(),
            variant: None,
            group: None,
            kind,
            desc: None,
            params: serde_json::json!({"lr": 0.1}),
            cmd: None,
            deps: vec![],
            outs: outs.iter().map(|s| s.to_string()).collect(),
            predictions: None,
            needs: vec![],
            resources: Resources::default(),
            device: None,
            slurm: Default::default(),
        }
    }

    fn fp(s: &Stage) -> Fingerprint {
        Fingerprint {
            kind: s.kind.name().into(),
            kind_version: 1,
            params: s.params.clone(),
            cmd: s.cmd.clone(),
            device: None,
            deps: Default::default(),
            inputs: Default::default(),
            outs: s.outs.clone(),
            predictions: None,
        }
    }

    fn input(name: &str, path: &str, content: &str) -> BTreeMap<String, Digest> {
        let named = crate::state::hash::hash_bytes(format!("{path}{content}").as_bytes());
        [(
            name.to_string(),
            Digest {
                named,
                content: content.into(),
            },
        )]
        .into()
    }

    #[test]
    fn what_the_key_ignores_and_what_it_keeps() {
        use stages::Kind::*;
        let k = |s: &Stage, i: &BTreeMap<String, Digest>| key(s, &fp(s), i);
        // A training: not its name, its directory, nor its input's name or path.
        let a = stage("train@a", Train, &["outputs/train@a"]);
        let b = stage("train@b", Train, &["outputs/train@b"]);
        assert_eq!(
            k(&a, &input("prep", "outputs/prep", "c1")),
            k(&b, &input("prep2", "outputs/prep2", "c1"))
        );
        assert_ne!(
            k(&a, &input("prep", "outputs/prep", "c1")),
            k(&a, &input("prep", "outputs/prep", "c2"))
        );
        // An evaluation's report names its stage and its model's.
        let e = stage("evaluate@a", Evaluate, &["outputs/evaluate@a"]);
        let f = stage("evaluate@b", Evaluate, &["outputs/evaluate@b"]);
        let i = input("train@a", "outputs/train@a", "m");
        assert_ne!(k(&e, &i), k(&f, &i));
        assert_ne!(k(&e, &i), k(&e, &input("train@b", "outputs/train@a", "m")));
        // A command: not its name, but its outputs and its inputs' paths.
        let mut c = stage("s", Cmd, &["out.txt"]);
        c.cmd = Some("cat in/* > out.txt".into());
        let mut d = c.clone();
        d.name = "t".into();
        let i = input("up", "in/a", "x");
        assert_eq!(k(&c, &i), k(&d, &i));
        assert_ne!(k(&c, &i), k(&c, &input("up", "in/b", "x")));
        d.outs = vec!["other.txt".into()];
        assert_ne!(k(&c, &i), k(&d, &i));
    }
}
