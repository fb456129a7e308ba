//! What determines a stage's result, and why a stage is stale.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Everything that determines a stage's result. Serialized with ordered
/// maps only, so equal fingerprints hash equally everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub kind: String,
    pub kind_version: u32,
    pub params: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Dep path -> content hash.
    pub deps: BTreeMap<String, String>,
    /// Upstream stage -> hash of its outputs.
    pub inputs: BTreeMap<String, String>,
    /// Declared outputs.
    pub outs: Vec<String>,
}

impl Fingerprint {
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("a fingerprint always serializes");
        crate::hash::hash_bytes(&bytes)
    }

    /// The first difference from `old`, checked in a fixed order from the
    /// most to the least fundamental.
    pub fn compare(&self, old: &Fingerprint) -> Option<DirtyReason> {
        if self.kind != old.kind {
            return Some(DirtyReason::KindChanged {
                old: old.kind.clone(),
                new: self.kind.clone(),
            });
        }
        if self.kind_version != old.kind_version {
            return Some(DirtyReason::KindVersionChanged {
                kind: self.kind.clone(),
                old: old.kind_version,
                new: self.kind_version,
            });
        }
        let mut changes = Vec::new();
        diff_values(&old.params, &self.params, "", &mut changes);
        if !changes.is_empty() {
            return Some(DirtyReason::ParamsChanged(changes));
        }
        if self.device != old.device {
            return Some(DirtyReason::DeviceChanged {
                old: old.device.clone().unwrap_or_default(),
                new: self.device.clone().unwrap_or_default(),
            });
        }
        if self.cmd != old.cmd {
            return Some(DirtyReason::CmdChanged);
        }
        if self.outs != old.outs {
            return Some(DirtyReason::OutsChanged);
        }
        if let Some(r) = diff_maps(&old.deps, &self.deps) {
            return Some(match r {
                MapDiff::Added(k) => DirtyReason::DepAdded(k),
                MapDiff::Removed(k) => DirtyReason::DepRemoved(k),
                MapDiff::Changed(k) => DirtyReason::DepChanged(k),
            });
        }
        if let Some(r) = diff_maps(&old.inputs, &self.inputs) {
            return Some(match r {
                MapDiff::Added(k) => DirtyReason::InputAdded(k),
                MapDiff::Removed(k) => DirtyReason::InputRemoved(k),
                MapDiff::Changed(k) => DirtyReason::InputChanged(k),
            });
        }
        None
    }
}

enum MapDiff {
    Added(String),
    Removed(String),
    Changed(String),
}

fn diff_maps(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Option<MapDiff> {
    for (k, v) in new {
        match old.get(k) {
            None => return Some(MapDiff::Added(k.clone())),
            Some(o) if o != v => return Some(MapDiff::Changed(k.clone())),
            _ => {}
        }
    }
    old.keys()
        .find(|k| !new.contains_key(*k))
        .map(|k| MapDiff::Removed(k.clone()))
}

/// One parameter that differs between two runs (`None`: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every differing leaf between two JSON values, as dotted paths in key order.
fn diff_values(old: &Value, new: &Value, prefix: &str, out: &mut Vec<ParamChange>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (o.get(k), n.get(k)) {
                    (Some(a), Some(b)) => diff_values(a, b, &path, out),
                    (a, b) => out.push(ParamChange {
                        path,
                        old: a.cloned(),
                        new: b.cloned(),
                    }),
                }
            }
        }
        _ if old == new => {}
        _ => out.push(ParamChange {
            path: prefix.to_string(),
            old: Some(old.clone()),
            new: Some(new.clone()),
        }),
    }
}

/// Why a stage must run (or be restored).
#[derive(Debug, Clone, PartialEq)]
pub enum DirtyReason {
    KindChanged {
        old: String,
        new: String,
    },
    KindVersionChanged {
        kind: String,
        old: u32,
        new: u32,
    },
    CmdChanged,
    DeviceChanged {
        old: String,
        new: String,
    },
    /// Every parameter that changed.
    ParamsChanged(Vec<ParamChange>),
    OutsChanged,
    DepAdded(String),
    DepRemoved(String),
    DepChanged(String),
    DepMissing(String),
    DepUnreadable {
        path: String,
        error: String,
    },
    InputAdded(String),
    InputRemoved(String),
    InputChanged(String),
    /// An upstream stage is itself stale, so this stage's inputs are not known yet.
    UpstreamStale(String),
    /// The last run started but never recorded success.
    Interrupted,
    /// A run is working on the stage now.
    Running {
        pid: u32,
        host: String,
        /// On another host, where it cannot be checked that it is alive.
        elsewhere: bool,
    },
    /// A stage that read this stage's output found it corrupt.
    Invalidated(String),
    RecordUnreadable,
    /// An output is missing or was modified in the workspace. `restorable`:
    /// the cache holds the recorded version.
    OutputMissing {
        path: String,
        restorable: bool,
    },
    /// An output holds something else than the stage wrote: the tool will
    /// not delete it (see `ownership`). `restorable`: the cache holds the
    /// stage's own version, restored once the path is cleared.
    OutputModified {
        path: String,
        restorable: bool,
    },
    OutputUnreadable {
        path: String,
        error: String,
    },
    CacheCorrupt(String),
    Forced,
}

impl DirtyReason {
    /// True when `run` restores the outputs from the cache instead of
    /// running the stage.
    pub fn restorable(&self) -> bool {
        matches!(
            self,
            DirtyReason::OutputMissing {
                restorable: true,
                ..
            }
        )
    }
}

/// Longest parameter value shown in a reason; longer ones are cut.
const SHOW_MAX: usize = 60;

fn show(v: &Option<Value>) -> String {
    let s = show_full(v);
    if s.chars().count() <= SHOW_MAX {
        return s;
    }
    let cut: String = s.chars().take(SHOW_MAX - 1).collect();
    format!("{cut}… ({} characters)", s.chars().count())
}

impl fmt::Display for ParamChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match (&self.old, &self.new) {
            (None, new) => write!(f, "{path} added (= {})", show(new)),
            (old, None) => write!(f, "{path} removed (was {})", show(old)),
            (old, new) => write!(f, "{path} changed ({} => {})", show(old), show(new)),
        }
    }
}

fn show_full(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("{s:?}"),
        // Parameters held as f32 are widened to f64 in JSON: print them as
        // the f32 they are (0.9, not 0.8999999761581421).
        Some(Value::Number(n)) if n.is_f64() => {
            let x = n.as_f64().unwrap_or_default();
            if (x as f32) as f64 == x {
                format!("{}", x as f32)
            } else {
                format!("{x}")
            }
        }
        Some(v) => v.to_string(),
        None => "unset".into(),
    }
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DirtyReason::*;
        match self {
            KindChanged { old, new } => write!(f, "kind changed ({old} => {new})"),
            KindVersionChanged { kind, old, new } => {
                write!(f, "kind {kind} version changed ({old} => {new})")
            }
            CmdChanged => write!(f, "command changed"),
            DeviceChanged { old, new } => write!(f, "device changed ({old} => {new})"),
            ParamsChanged(changes) => {
                let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                let word = if changes.len() == 1 { "param" } else { "params" };
                write!(f, "{word} {}", list.join(", "))
            }
            OutsChanged => write!(f, "declared outputs changed"),
            DepAdded(p) => write!(f, "dep {p} added"),
            DepRemoved(p) => write!(f, "dep {p} removed"),
            DepChanged(p) => write!(f, "dep {p} changed"),
            DepMissing(p) => write!(f, "dep {p} does not exist"),
            DepUnreadable { path, error } => write!(f, "dep {path} cannot be read: {error}"),
            InputAdded(s) => write!(f, "input {s} added"),
            InputRemoved(s) => write!(f, "input {s} removed"),
            InputChanged(s) => write!(f, "input {s} changed"),
            UpstreamStale(s) => write!(f, "input {s} is stale"),
            Interrupted => write!(f, "last run was interrupted or failed"),
            Running {
                pid,
                host,
                elsewhere: false,
            } => write!(f, "running now (pid {pid} on {host})"),
            Running {
                pid,
                host,
                elsewhere: true,
            } => write!(
                f,
                "started by pid {pid} on {host}, and not finished: running there, or interrupted"
            ),
            Invalidated(why) => write!(f, "invalidated: {why}"),
            RecordUnreadable => write!(f, "cache record unreadable"),
            OutputMissing {
                path,
                restorable: true,
            } => write!(f, "output {path} missing (will be restored from cache)"),
            OutputMissing {
                path,
                restorable: false,
            } => write!(f, "output {path} missing"),
            OutputModified {
                path,
                restorable: true,
            } => write!(f, "output {path} modified since the stage wrote it (move it away; `run` then restores it from the cache)"),
            OutputModified {
                path,
                restorable: false,
            } => write!(f, "output {path} modified since the stage wrote it (move it away; `run` then reruns the stage)"),
            OutputUnreadable { path, error } => write!(f, "output {path} cannot be read: {error}"),
            CacheCorrupt(p) => write!(f, "cache object for {p} corrupt"),
            Forced => write!(f, "forced"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp() -> Fingerprint {
        Fingerprint {
            kind: "cmd".into(),
            kind_version: 1,
            params: json!({"lr": 0.001, "opt": {"beta": 0.9}}),
            cmd: Some("echo".into()),
            device: None,
            deps: [("data/raw.txt".to_string(), "h1".to_string())].into(),
            inputs: [("prep".to_string(), "h2".to_string())].into(),
            outs: vec!["o".into()],
        }
    }

    #[test]
    fn equal_fingerprints_hash_equally() {
        assert_eq!(fp().hash(), fp().hash());
        assert!(fp().compare(&fp()).is_none());
    }

    #[test]
    fn reasons_name_the_change() {
        let old = fp();
        let mut new = fp();
        new.params["lr"] = json!(0.0005);
        assert_eq!(
            new.compare(&old).unwrap().to_string(),
            "param lr changed (0.001 => 0.0005)"
        );
        assert_ne!(new.hash(), old.hash());
        let mut new = fp();
        new.params["opt"]["beta"] = json!(0.5);
        assert_eq!(
            new.compare(&old).unwrap().to_string(),
            "param opt.beta changed (0.9 => 0.5)"
        );
        let mut new = fp();
        new.params["lr"] = json!(0.01);
        new.params["opt"]["beta"] = json!(0.5);
        new.params["huge"] = json!("x".repeat(200_000));
        let text = new.compare(&old).unwrap().to_string();
        assert!(
            text.starts_with("params huge added (= \"xxxx"),
            "every change named, in key order: {}",
            &text[..80]
        );
        assert!(
            text.contains("… (200002 characters)"),
            "long values are cut"
        );
        assert!(
            text.ends_with(", lr changed (0.001 => 0.01), opt.beta changed (0.9 => 0.5)"),
            "{text}"
        );
        assert!(text.len() < 200, "{}", text.len());
        let mut new = fp();
        new.params["extra"] = json!("x");
        assert_eq!(
            new.compare(&old).unwrap().to_string(),
            "param extra added (= \"x\")"
        );
        let mut new = fp();
        new.deps.insert("data/raw.txt".into(), "h3".into());
        assert_eq!(
            new.compare(&old).unwrap().to_string(),
            "dep data/raw.txt changed"
        );
        let mut new = fp();
        new.inputs.insert("prep".into(), "h4".into());
        assert_eq!(new.compare(&old).unwrap().to_string(), "input prep changed");
        let mut new = fp();
        new.kind_version = 2;
        assert_eq!(
            new.compare(&old).unwrap().to_string(),
            "kind cmd version changed (1 => 2)"
        );
        let mut new = fp();
        new.cmd = Some("echo 2".into());
        assert_eq!(new.compare(&old), Some(DirtyReason::CmdChanged));
    }
}
