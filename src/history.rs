//! Run history: every `run` that ran something appends one JSON line to
//! `<cache>/history.jsonl`: when, the project's git commit, which stages
//! ran and why, and the parameters and metrics of every stage. `log` lists
//! the runs, `diff` compares two of them.
//!
//! One line per run, written whole with a single append under the cache
//! lock: a run killed while writing leaves at most a partial last line,
//! which readers skip (and say so).

use crate::error::{Error, Result};
use crate::spec::Pipeline;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "history.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// 1, 2, ... in the order runs were recorded.
    pub id: u64,
    /// UTC, RFC 3339.
    pub when: String,
    pub git: Option<GitState>,
    pub ran: Vec<RanStage>,
    /// Every stage's canonical parameters, by stage name.
    pub params: BTreeMap<String, Value>,
    /// The metrics of every evaluated variant, by evaluate stage name.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitState {
    pub commit: String,
    /// Whether the working tree had changes git tracks or would track.
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

pub fn path(pipeline: &Pipeline) -> PathBuf {
    pipeline.settings.cache_dir().join(FILE)
}

/// The recorded runs, oldest first; and how many lines could not be read.
pub fn read(path: &Path) -> Result<(Vec<RunRecord>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io("read the run history", path, e)),
    };
    let mut runs = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(r) => runs.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((runs, bad))
}

/// Appends the record of a run (its id is the next one).
pub fn append(path: &Path, mut record: RunRecord) -> Result<RunRecord> {
    let (runs, _) = read(path)?;
    record.id = runs.last().map_or(1, |r| r.id + 1);
    let mut line =
        serde_json::to_string(&record).map_err(|e| Error::Usage(format!("the run record: {e}")))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open the run history", path, e))?;
    // A partial line left by a killed run would swallow this one.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) && !ends_with_newline(path) {
        line.insert(0, '\n');
    }
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("append to the run history", path, e))?;
    Ok(record)
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)
        })
        .is_ok_and(|()| last[0] == b'\n')
}

/// The record of a run that just ended: the state of every stage after it.
pub fn record(pipeline: &Pipeline, ran: Vec<RanStage>) -> RunRecord {
    let params = pipeline
        .stages
        .iter()
        .map(|s| {
            let mut p = s.params.clone();
            if let (Some(cmd), Value::Object(m)) = (&s.cmd, &mut p) {
                m.insert("cmd".into(), Value::String(cmd.clone()));
            }
            (s.name.clone(), as_written(p))
        })
        .collect();
    let metrics = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == stages::Kind::Evaluate)
        .filter_map(|s| {
            let out = pipeline.settings.project_dir.join(s.outs.first()?);
            let bytes = std::fs::read(out.join(stages::contract::METRICS_FILE)).ok()?;
            let r: stages::contract::EvalReport = serde_json::from_slice(&bytes).ok()?;
            let m = BTreeMap::from([
                ("accuracy".to_string(), r.metrics.accuracy),
                ("macro_f1".to_string(), r.metrics.macro_avg.f1),
                (
                    "training_seconds".to_string(),
                    r.efficiency.training_seconds,
                ),
            ]);
            Some((s.name.clone(), m))
        })
        .collect();
    RunRecord {
        id: 0,
        when: now_rfc3339(),
        git: git_state(&pipeline.settings.project_dir),
        ran,
        params,
        metrics,
    }
}

/// Parameters held as f32 are widened to f64 in the canonical form
/// (0.0003 becomes 0.0003000000142492354): record them as the f32 they
/// are, which is what the pipeline file says.
fn as_written(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or_default();
            let short = if (x as f32) as f64 == x {
                format!("{}", x as f32).parse().unwrap_or(x)
            } else {
                x
            };
            serde_json::Number::from_f64(short).map_or(Value::Number(n), Value::Number)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(as_written).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, as_written(v))).collect()),
        other => other,
    }
}

/// The commit checked out in `dir` and whether the tree is dirty; None
/// outside a git repository or without git.
fn git_state(dir: &Path) -> Option<GitState> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?.trim().to_string();
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.trim().is_empty());
    Some(GitState { commit, dirty })
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (the civil
/// calendar from a day count, after Howard Hinnant's `civil_from_days`).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A parameter that differs between two runs: `stage.key.sub`, old, new.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDiff {
    pub param: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// One metric of one variant in two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDiff {
    pub stage: String,
    pub metric: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub change: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old_run: u64,
    pub new_run: u64,
    pub params: Vec<ParamDiff>,
    pub metrics: Vec<MetricDiff>,
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
    let mut stages: Vec<&String> = a.metrics.keys().chain(b.metrics.keys()).collect();
    stages.sort();
    stages.dedup();
    let mut metrics = Vec::new();
    for s in stages {
        let (ma, mb) = (a.metrics.get(s), b.metrics.get(s));
        let mut names: Vec<&String> = ma
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(mb.into_iter().flat_map(|m| m.keys()))
            .collect();
        names.sort();
        names.dedup();
        for n in names {
            let old = ma.and_then(|m| m.get(n)).copied();
            let new = mb.and_then(|m| m.get(n)).copied();
            metrics.push(MetricDiff {
                stage: s.clone(),
                metric: n.clone(),
                old,
                new,
                change: old.zip(new).map(|(o, n)| n - o),
            });
        }
    }
    Diff {
        old_run: a.id,
        new_run: b.id,
        params,
        metrics,
    }
}

fn flatten_all(params: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (stage, p) in params {
        flatten(stage, p, &mut out);
    }
    out
}

/// `{a: {b: 1}}` under `train@main` -> `train@main.a.b = 1`; lists stay whole.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let (runs, bad) = read(&p).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(bad, 1);
    }

    #[test]
    fn widened_f32_parameters_are_recorded_as_written() {
        let v = json!({"lr": 0.0003f32 as f64, "x": [0.1f32 as f64], "n": 3, "y": 0.1});
        assert_eq!(
            as_written(v),
            json!({"lr": 0.0003, "x": [0.1], "n": 3, "y": 0.1})
        );
    }

    #[test]
    fn dates_in_the_civil_calendar() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_640_645), "2026-11-25T21:04:05Z");
    }
}
