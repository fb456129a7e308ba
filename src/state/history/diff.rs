//! Two runs compared: the parameters that changed, and each variant's
//! metrics old and new.

use super::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A parameter that differs between two runs: `stage.key.sub`, old, new.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDiff {
    pub param: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// One metric of one variant in two runs. A side whose evaluation was
/// stale at the end of its run has no value (and says so): its metrics
/// measured an earlier configuration than the one recorded beside them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDiff {
    pub stage: String,
    pub metric: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub change: Option<f64>,
    #[serde(skip_serializing_if = "is_false")]
    pub old_stale: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub new_stale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old_run: u64,
    pub new_run: u64,
    pub params: Vec<ParamDiff>,
    pub metrics: Vec<MetricDiff>,
    /// Stages only the newer run has, and only the older.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A variant's metrics over its replicates: metric -> (sum, count), and
/// whether every replicate was stale.
pub(super) type GroupMetrics = (BTreeMap<String, (f64, usize)>, bool);

/// [`diff`] by variant: a stage's seed replicates (`train@main~seed1`)
/// taken together under their group's name (`train@main`). A parameter
/// whose replicates differ shows their distinct values as a list (the
/// seeds); metrics are means over the group's fresh replicates. Only
/// groups both runs have are compared; the others are in `added` and
/// `removed`.
pub fn by_variant(a: &RunRecord, b: &RunRecord) -> Diff {
    let group = |s: &str| stages::contract::replicate_of(s).0.to_string();
    let full = diff(a, b);
    let params_of = |r: &RunRecord| {
        let mut out: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
        for (stage, p) in &r.params {
            let mut flat = BTreeMap::new();
            flatten(
                "",
                &crate::state::fingerprint::as_written(p.clone()),
                &mut flat,
            );
            let g = out.entry(group(stage)).or_default();
            for (k, v) in flat {
                let vals = g.entry(k).or_default();
                if !vals.contains(&v) {
                    vals.push(v);
                }
            }
        }
        out
    };
    let (pa, pb) = (params_of(a), params_of(b));
    let collapse = |vals: Option<&Vec<Value>>| match vals.map(Vec::as_slice) {
        None => None,
        Some([one]) => Some(one.clone()),
        Some(many) => Some(Value::Array(many.to_vec())),
    };
    let mut params = Vec::new();
    for (g, old) in &pa {
        let Some(new) = pb.get(g) else { continue };
        let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (o, n) = (collapse(old.get(k)), collapse(new.get(k)));
            if o != n {
                params.push(ParamDiff {
                    param: format!("{g}{k}"),
                    old: o,
                    new: n,
                });
            }
        }
    }
    let metrics_of = |r: &RunRecord| {
        let mut out: BTreeMap<String, GroupMetrics> = BTreeMap::new();
        for s in r.metrics.keys().chain(&r.stale) {
            let g = out
                .entry(group(s))
                .or_insert_with(|| (BTreeMap::new(), true));
            if let Some(m) = r.metrics.get(s) {
                g.1 = false;
                for (k, v) in m {
                    let e = g.0.entry(k.clone()).or_insert((0.0, 0));
                    *e = (e.0 + v, e.1 + 1);
                }
            }
        }
        out
    };
    let (ma, mb) = (metrics_of(a), metrics_of(b));
    let mut metrics = Vec::new();
    let mut groups: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        let (oa, ob) = (ma.get(g), mb.get(g));
        let mut names: Vec<&String> = oa
            .into_iter()
            .flat_map(|m| m.0.keys())
            .chain(ob.into_iter().flat_map(|m| m.0.keys()))
            .collect();
        names.sort();
        names.dedup();
        let mean = |m: Option<&GroupMetrics>, n: &str| {
            m.and_then(|m| m.0.get(n)).map(|(s, k)| s / *k as f64)
        };
        let (sa, sb) = (oa.is_some_and(|m| m.1), ob.is_some_and(|m| m.1));
        for n in names {
            let (old, new) = (mean(oa, n), mean(ob, n));
            metrics.push(MetricDiff {
                stage: g.clone(),
                metric: n.clone(),
                old,
                new,
                change: old.zip(new).map(|(o, n)| n - o),
                old_stale: sa,
                new_stale: sb,
            });
        }
    }
    Diff {
        params,
        metrics,
        ..full
    }
}

/// The parameters that changed (added and removed too) and every metric
/// of every variant in either run.
pub fn diff(a: &RunRecord, b: &RunRecord) -> Diff {
    let (fa, fb) = (flatten_all(&a.params), flatten_all(&b.params));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    let params = keys
        .into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| ParamDiff {
            param: k.clone(),
            old: fa.get(k).cloned(),
            new: fb.get(k).cloned(),
        })
        .collect();
    let mut stages: Vec<&String> = a
        .metrics
        .keys()
        .chain(b.metrics.keys())
        .chain(&a.stale)
        .chain(&b.stale)
        .collect();
    stages.sort();
    stages.dedup();
    let mut metrics = Vec::new();
    for s in stages {
        let (ma, mb) = (a.metrics.get(s), b.metrics.get(s));
        let (sa, sb) = (a.stale.contains(s), b.stale.contains(s));
        let mut names: Vec<&String> = ma
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(mb.into_iter().flat_map(|m| m.keys()))
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            // Stale on both sides, or stale on one and never measured:
            // one row says so.
            metrics.push(MetricDiff {
                stage: s.clone(),
                metric: "accuracy".into(),
                old: None,
                new: None,
                change: None,
                old_stale: sa,
                new_stale: sb,
            });
        }
        for n in names {
            let old = ma.and_then(|m| m.get(n)).copied();
            let new = mb.and_then(|m| m.get(n)).copied();
            metrics.push(MetricDiff {
                stage: s.clone(),
                metric: n.clone(),
                old,
                new,
                change: old.zip(new).map(|(o, n)| n - o),
                old_stale: sa,
                new_stale: sb,
            });
        }
    }
    let added = b
        .params
        .keys()
        .filter(|s| !a.params.contains_key(*s))
        .cloned()
        .collect();
    let removed = a
        .params
        .keys()
        .filter(|s| !b.params.contains_key(*s))
        .cloned()
        .collect();
    Diff {
        old_run: a.id,
        new_run: b.id,
        params,
        metrics,
        added,
        removed,
    }
}

pub(super) fn flatten_all(params: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (stage, p) in params {
        // Runs recorded before parameters were kept as written.
        flatten(
            stage,
            &crate::state::fingerprint::as_written(p.clone()),
            &mut out,
        );
    }
    out
}

/// `{a: {b: 1}}` under `train@main` -> `train@main.a.b = 1`; lists stay whole.
pub(super) fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}
