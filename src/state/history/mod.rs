//! Run history: every `run` that ran something appends one JSON line to
//! `<cache>/history.jsonl`: when it started, the project's git commit
//! then, which stages ran and why, and the state of every stage at its
//! end (parameters; an evaluation's metrics while they are fresh).
//! `log` lists the runs, `diff` compares two of them.
//!
//! The state is stored by content: the stages fall into buckets by a hash
//! of their names, each bucket is a file `<cache>/history/<hash>.json`
//! written once, and the line names its buckets. A run that changes one
//! stage of thousands adds one bucket and a line, not the whole state.
//! Lines are read from the end: appending reads the last one, `log -n N`
//! the last N, so neither grows with the history.
//!
//! One line per run, written whole with a single append under the cache
//! lock: a run killed while writing leaves at most a partial last line,
//! which readers skip (and say so). Lines of the first format (the whole
//! state inline) are read as they are; `gc` rewrites them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

mod diff;
mod log;
mod making;

pub use diff::{by_variant, diff, Diff, MetricDiff, ParamDiff};
#[cfg(test)]
use log::each_line_back;
pub use log::{append, compact, newest_id, path, pick, recent, Compacted, Missing, Pick};
pub use making::{describe_run, record, start, variant_origin, variant_params, Start};

pub const FILE: &str = "history.jsonl";
/// The directory of the state buckets, beside [`FILE`].
pub const OBJECTS: &str = "history";

/// A run, whole: what `diff` compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// 1, 2, ... in the order runs were recorded.
    pub id: u64,
    /// When the run started: UTC, RFC 3339.
    pub when: String,
    /// The commit checked out when the run started.
    pub git: Option<GitState>,
    /// The pipeline file changed while the run ran: the parameters
    /// recorded are those it ran with, the file now says otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pipeline_changed: bool,
    /// `-S` overrides the run was started with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    pub ran: Vec<RanStage>,
    /// Every stage's canonical parameters, by stage name.
    pub params: BTreeMap<String, Value>,
    /// The metrics of every evaluation fresh at the end of the run, by
    /// evaluate stage name.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// Evaluations that were stale at the end of the run: their metrics
    /// measured an earlier configuration, and are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
    /// The run's live directory (its page, state and trace), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
}

/// What `log` shows of a run: everything but the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: u64,
    pub when: String,
    pub git: Option<GitState>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pipeline_changed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    pub ran: Vec<RanStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitState {
    pub commit: String,
    /// Whether the working tree had changes git tracks or would track,
    /// other than what the tool itself writes.
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RanStage {
    pub stage: String,
    /// Why it ran, as `status` says it.
    pub reason: String,
    /// `done` or `failed`.
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn run(id: u64, lr: f64, acc: f64) -> RunRecord {
        RunRecord {
            id,
            when: "2026-11-25T00:00:00Z".into(),
            git: None,
            ran: vec![],
            params: BTreeMap::from([(
                "train@main".to_string(),
                json!({"lr": lr, "plateau": {"patience": 2}, "augment": []}),
            )]),
            metrics: BTreeMap::from([(
                "evaluate@main".to_string(),
                BTreeMap::from([("accuracy".to_string(), acc)]),
            )]),
            pipeline_changed: false,
            overrides: Vec::new(),
            stale: vec![],
            live: None,
        }
    }

    #[test]
    fn a_diff_names_the_changed_parameter_and_every_metric() {
        let d = diff(&run(1, 0.01, 0.8), &run(2, 0.001, 0.85));
        assert_eq!(
            d.params,
            vec![ParamDiff {
                param: "train@main.lr".into(),
                old: Some(json!(0.01)),
                new: Some(json!(0.001)),
            }]
        );
        assert_eq!(d.metrics.len(), 1);
        assert!((d.metrics[0].change.unwrap() - 0.05).abs() < 1e-12);
        let mut c = run(3, 0.01, 0.8);
        c.metrics.insert(
            "evaluate@new".into(),
            BTreeMap::from([("accuracy".to_string(), 0.5)]),
        );
        let d = diff(&run(1, 0.01, 0.8), &c);
        assert!(d.params.is_empty());
        assert_eq!(d.metrics[1].old, None);
        assert_eq!(d.metrics[1].change, None);
    }

    #[test]
    fn records_append_with_ids_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        assert_eq!(append(&p, run(0, 0.1, 0.5)).unwrap().id, 1);
        // A run killed mid-write leaves half a line.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"id\": 2, \"wh").unwrap();
        assert_eq!(append(&p, run(0, 0.2, 0.6)).unwrap().id, 2);
        let (runs, bad) = recent(&p, 10).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(bad, 1);
        // The newest alone is read without meeting the torn line.
        assert_eq!(recent(&p, 1).unwrap().1, 0);
        assert_eq!(newest_id(&p).unwrap(), Some(2));
    }

    #[test]
    fn lines_are_read_back_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let long = "x".repeat(200_000);
        std::fs::write(&p, format!("a\n\n{long}\nb\nlast-without-newline")).unwrap();
        let mut seen = Vec::new();
        each_line_back(&p, |l| {
            seen.push(l.len());
            true
        })
        .unwrap();
        assert_eq!(seen, ["last-without-newline".len(), 1, 200_000, 1]);
        let mut first = Vec::new();
        each_line_back(&p, |l| {
            first.push(l.to_string());
            false
        })
        .unwrap();
        assert_eq!(first, ["last-without-newline"]);
        each_line_back(&dir.path().join("none"), |_| panic!("no lines")).unwrap();
    }

    #[test]
    fn the_state_comes_back_whole_and_unchanged_buckets_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        let big = |lr: f64| {
            let mut r = run(0, lr, 0.5);
            for i in 0..500 {
                r.params
                    .insert(format!("s{i}"), json!({"cmd": format!("echo {i}")}));
            }
            r.params.insert("evaluate@main".into(), json!({}));
            r.stale = vec!["evaluate@main".into()];
            r.metrics.clear();
            r
        };
        append(&p, big(0.1)).unwrap();
        let files = std::fs::read_dir(dir.path().join(OBJECTS)).unwrap().count();
        append(&p, big(0.2)).unwrap();
        // One stage changed: one bucket more.
        let after = std::fs::read_dir(dir.path().join(OBJECTS)).unwrap().count();
        assert_eq!(after, files + 1);
        let Ok((a, b)) = pick(&p, Pick::LastTwo).unwrap() else {
            panic!("two runs")
        };
        assert_eq!((a.id, b.id), (1, 2));
        let mut want = big(0.2);
        want.id = 2;
        want.when = b.when.clone();
        assert_eq!(b, want);
        let d = diff(&a, &b);
        assert_eq!(d.params.len(), 1);
        assert!(d.metrics.iter().all(|m| m.old_stale && m.new_stale));
        assert!(matches!(
            pick(&p, Pick::Both(1, 9)).unwrap(),
            Err(Missing::Run {
                id: 9,
                range: Some((1, 2))
            })
        ));
        // A damaged bucket is an error, not another state.
        let any = std::fs::read_dir(dir.path().join(OBJECTS))
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        std::fs::write(&any, "{}").unwrap();
        assert!(pick(&p, Pick::LastTwo).is_err());
    }

    #[test]
    fn widened_f32_parameters_are_recorded_as_written() {
        use crate::state::fingerprint::as_written;
        let v = json!({"lr": 0.0003f32 as f64, "x": [0.1f32 as f64], "n": 3, "y": 0.1});
        assert_eq!(
            as_written(v),
            json!({"lr": 0.0003, "x": [0.1], "n": 3, "y": 0.1})
        );
    }
}
