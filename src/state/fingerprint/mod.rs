//! What determines a stage's result, and why a stage is stale.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

mod dirty_reason;
pub use dirty_reason::{as_written, DirtyReason, ParamChange, ResumePoint};

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
    /// For an evaluation of a command's predictions: the file it measures
    /// (another of the command's outputs is another result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<String>,
}

impl Fingerprint {
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("a fingerprint always serializes");
        crate::state::hash::hash_bytes(&bytes)
    }

    /// The first difference from `old`, checked in a fixed order from the
    /// most to the least fundamental.
    pub fn compare(&self, old: &Fingerprint) -> Option<DirtyReason> {
        // Destructured, so that a field added to the fingerprint and not
        // compared here does not compile.
        let Fingerprint {
            kind,
            kind_version,
            params,
            cmd,
            device,
            deps,
            inputs,
            outs,
            predictions,
        } = self;
        if *kind != old.kind {
            return Some(DirtyReason::KindChanged {
                old: old.kind.clone(),
                new: kind.clone(),
            });
        }
        if *kind_version != old.kind_version {
            return Some(DirtyReason::KindVersionChanged {
                kind: kind.clone(),
                old: old.kind_version,
                new: *kind_version,
            });
        }
        let mut changes = Vec::new();
        diff_values(&old.params, params, "", &mut changes);
        if !changes.is_empty() {
            return Some(DirtyReason::ParamsChanged { changes });
        }
        if *device != old.device {
            return Some(DirtyReason::DeviceChanged {
                old: old.device.clone().unwrap_or_default(),
                new: device.clone().unwrap_or_default(),
            });
        }
        if *cmd != old.cmd {
            return Some(DirtyReason::CmdChanged);
        }
        if *outs != old.outs {
            return Some(DirtyReason::OutsChanged);
        }
        if *predictions != old.predictions {
            return Some(DirtyReason::PredictionsChanged {
                old: old.predictions.clone(),
                new: predictions.clone(),
            });
        }
        if let Some(r) = diff_maps(&old.deps, deps) {
            return Some(match r {
                MapDiff::Added(path) => DirtyReason::DepAdded { path },
                MapDiff::Removed(path) => DirtyReason::DepRemoved { path },
                MapDiff::Changed(path) => DirtyReason::DepChanged { path },
            });
        }
        if let Some(r) = diff_maps(&old.inputs, inputs) {
            // Every input added or removed, not the first: a comparison
            // loses or gains several variants at once.
            let all = |from: &BTreeMap<String, String>, to: &BTreeMap<String, String>| {
                from.keys()
                    .filter(|k| !to.contains_key(*k))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            return Some(match r {
                MapDiff::Added(_) => DirtyReason::InputAdded {
                    stages: all(inputs, &old.inputs),
                },
                MapDiff::Removed(_) => DirtyReason::InputRemoved {
                    stages: all(&old.inputs, inputs),
                },
                MapDiff::Changed(stage) => DirtyReason::InputChanged { stage },
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
            predictions: None,
        }
    }

    #[test]
    fn reasons_serialize_with_their_kind() {
        let j = |r: DirtyReason| serde_json::to_value(r).unwrap();
        assert_eq!(j(DirtyReason::NeverRun), json!({"kind": "never_run"}));
        assert_eq!(
            j(DirtyReason::DepChanged {
                path: "data/raw.txt".into()
            }),
            json!({"kind": "dep_changed", "path": "data/raw.txt"})
        );
        assert_eq!(
            j(DirtyReason::KindVersionChanged {
                kind: "evaluate".into(),
                old: 1,
                new: 2
            }),
            json!({"kind": "kind_version_changed", "stage_kind": "evaluate", "old": 1, "new": 2})
        );
        let old = fp();
        let mut new = fp();
        new.params["lr"] = json!(0.0005);
        assert_eq!(
            j(new.compare(&old).unwrap()),
            json!({"kind": "params_changed", "changes": [{"path": "lr", "old": 0.001, "new": 0.0005}]})
        );
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
