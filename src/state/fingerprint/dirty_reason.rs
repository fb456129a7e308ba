//! Why a stage is stale, as a typed value from the fingerprint comparison
//! to the printer, and its wording: the one place that says it in words.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// One parameter that differs between two runs (`None`: absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub path: String,
    #[serde(serialize_with = "written")]
    pub old: Option<Value>,
    #[serde(serialize_with = "written")]
    pub new: Option<Value>,
}

fn written<S: serde::Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
    v.clone().map(as_written).serialize(s)
}

/// Parameters as written: a kind holds some as f32, which JSON widens
/// (0.001 reads back as 0.0010000000474974513); a number that is exactly
/// an f32 is given in the shortest form that reads back as that f32.
pub fn as_written(v: Value) -> Value {
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

/// Where an interrupted training takes up again: after `epoch` of `epochs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResumePoint {
    pub epoch: usize,
    pub epochs: usize,
}

/// Why a stage must run (or be restored). Serialized for `status --json`
/// as `{"kind": "param_changed", ...}`; [`fmt::Display`] is its wording.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirtyReason {
    /// The stage has no complete run on record.
    NeverRun,
    KindChanged {
        old: String,
        new: String,
    },
    KindVersionChanged {
        #[serde(rename = "stage_kind")]
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
    ParamsChanged {
        changes: Vec<ParamChange>,
    },
    OutsChanged,
    /// The predictions file an evaluation of a command measures.
    PredictionsChanged {
        old: Option<String>,
        new: Option<String>,
    },
    DepAdded {
        path: String,
    },
    DepRemoved {
        path: String,
    },
    DepChanged {
        path: String,
    },
    DepMissing {
        path: String,
    },
    DepUnreadable {
        path: String,
        error: String,
    },
    /// Every input added (a compare stage gains several at once).
    InputAdded {
        stages: Vec<String>,
    },
    /// Every input removed.
    InputRemoved {
        stages: Vec<String>,
    },
    InputChanged {
        stage: String,
    },
    /// An upstream stage is itself stale, so this stage's inputs are not known yet.
    UpstreamStale {
        stage: String,
    },
    /// The last run started but never recorded success; `resume`: where a
    /// resumable stage takes up again.
    Interrupted {
        resume: Option<ResumePoint>,
    },
    /// A search's trial paused at a rung, promoted: it goes on.
    Promoted {
        from: usize,
        to: usize,
        epochs: usize,
    },
    /// A confirm stage whose search has not finished: its trainings on
    /// fresh seeds are planned once it has.
    WaitsForSearch {
        search: String,
    },
    /// A run is working on the stage now.
    Running {
        pid: u32,
        host: String,
        /// On another host, where it cannot be checked that it is alive.
        elsewhere: bool,
    },
    /// A stage that read this stage's output found it corrupt.
    Invalidated {
        why: String,
    },
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
    CacheCorrupt {
        path: String,
    },
    Forced,
    /// The run cache remembers a completed run with this stage's inputs,
    /// parameters and code (of this or another stage name or project):
    /// `run` restores it.
    InCache {
        /// The stage that computed it.
        stage: String,
        /// When it finished (seconds since the Unix epoch), and how long it ran.
        finished: u64,
        duration_s: f64,
    },
    /// The run cache holds a record of this result that cannot be used
    /// (the cache may be shared, and another may have written it).
    InCacheDamaged {
        key: String,
        why: String,
    },
    /// A record of a stage the pipeline no longer declares.
    Orphaned {
        outputs: Vec<String>,
    },
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
            } | DirtyReason::InCache { .. }
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

/// `0.4 s`, `2.0 s`, `5.1 min`, `1.3 h`.
fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// `input a`, `inputs a and b`, `inputs a, b, c and 2 more`.
fn input_list(stages: &[String]) -> String {
    const SHOWN: usize = 3;
    match stages {
        [one] => format!("input {one}"),
        [init @ .., last] if stages.len() <= SHOWN => {
            format!("inputs {} and {last}", init.join(", "))
        }
        _ => format!(
            "{} inputs: {} and {} more",
            stages.len(),
            stages[..SHOWN].join(", "),
            stages.len() - SHOWN
        ),
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
            NeverRun => write!(f, "never run"),
            ParamsChanged { changes } => {
                let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                let word = if changes.len() == 1 { "param" } else { "params" };
                write!(f, "{word} {}", list.join(", "))
            }
            OutsChanged => write!(f, "declared outputs changed"),
            PredictionsChanged { old, new } => {
                let or_none = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
                write!(
                    f,
                    "predictions it evaluates changed ({} => {})",
                    or_none(old),
                    or_none(new)
                )
            }
            DepAdded { path: p } => write!(f, "dep {p} added"),
            DepRemoved { path: p } => write!(f, "dep {p} removed"),
            DepChanged { path: p } => write!(f, "dep {p} changed"),
            DepMissing { path: p } => write!(f, "dep {p} does not exist"),
            DepUnreadable { path, error } => write!(f, "dep {path} cannot be read: {error}"),
            InputAdded { stages } => write!(f, "{} added", input_list(stages)),
            InputRemoved { stages } => write!(f, "{} removed", input_list(stages)),
            InputChanged { stage: s } => write!(f, "input {s} changed"),
            UpstreamStale { stage: s } => write!(f, "input {s} is stale"),
            Interrupted { resume: None } => write!(f, "last run was interrupted or failed"),
            Promoted { from, to, epochs } => write!(
                f,
                "promoted by the search at epoch {from}/{epochs}: trains on to epoch {to}"
            ),
            WaitsForSearch { search } => write!(
                f,
                "waits for the search {search} to finish: its finalists' trainings on fresh seeds are planned then"
            ),
            Interrupted {
                resume: Some(ResumePoint { epoch, epochs }),
            } => write!(
                f,
                "last run was interrupted after epoch {epoch}/{epochs}; it resumes there"
            ),
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
            Invalidated { why } => write!(f, "invalidated: {why}"),
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
            CacheCorrupt { path } => write!(f, "cache object for {path} corrupt"),
            Forced => write!(f, "forced"),
            InCache {
                stage,
                finished,
                duration_s,
            } => {
                let when = crate::state::time::rfc3339(*finished);
                // `2026-12-04 14:02 UTC`
                let when = format!("{} {} UTC", &when[..10], &when[11..16]);
                write!(
                    f,
                    "fresh in the cache: ran {when} for {} as {stage}; will be restored",
                    duration(*duration_s)
                )
            }
            InCacheDamaged { key, why } => write!(
                f,
                "the run cache's record of this result (runs/{key}.json) is damaged ({why}): not used; the stage runs and replaces it"
            ),
            Orphaned { outputs } if outputs.is_empty() => write!(
                f,
                "no longer in the pipeline; its record remains; `fmnist-pipe gc` removes it"
            ),
            Orphaned { outputs } => write!(
                f,
                "no longer in the pipeline; its record and outputs ({}) remain; `fmnist-pipe gc` removes them",
                outputs.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant's place; a new variant fails to compile here until it
    /// is given one, and then the test below until it has an example.
    fn place(r: &DirtyReason) -> usize {
        use DirtyReason::*;
        match r {
            NeverRun => 0,
            KindChanged { .. } => 1,
            KindVersionChanged { .. } => 2,
            CmdChanged => 3,
            DeviceChanged { .. } => 4,
            ParamsChanged { .. } => 5,
            OutsChanged => 6,
            PredictionsChanged { .. } => 7,
            DepAdded { .. } => 8,
            DepRemoved { .. } => 9,
            DepChanged { .. } => 10,
            DepMissing { .. } => 11,
            DepUnreadable { .. } => 12,
            InputAdded { .. } => 13,
            InputRemoved { .. } => 14,
            InputChanged { .. } => 15,
            UpstreamStale { .. } => 16,
            Interrupted { .. } => 17,
            Promoted { .. } => 18,
            WaitsForSearch { .. } => 19,
            Running { .. } => 20,
            Invalidated { .. } => 21,
            RecordUnreadable => 22,
            OutputMissing { .. } => 23,
            OutputModified { .. } => 24,
            OutputUnreadable { .. } => 25,
            CacheCorrupt { .. } => 26,
            Forced => 27,
            InCache { .. } => 28,
            InCacheDamaged { .. } => 29,
            Orphaned { .. } => 30,
        }
    }

    fn one_of_each() -> Vec<DirtyReason> {
        use DirtyReason::*;
        let (s, p) = (String::new, || "x".to_string());
        vec![
            NeverRun,
            KindChanged { old: s(), new: s() },
            KindVersionChanged {
                kind: s(),
                old: 1,
                new: 2,
            },
            CmdChanged,
            DeviceChanged { old: s(), new: s() },
            ParamsChanged { changes: vec![] },
            OutsChanged,
            PredictionsChanged {
                old: None,
                new: None,
            },
            DepAdded { path: p() },
            DepRemoved { path: p() },
            DepChanged { path: p() },
            DepMissing { path: p() },
            DepUnreadable {
                path: p(),
                error: s(),
            },
            InputAdded { stages: vec![] },
            InputRemoved { stages: vec![] },
            InputChanged { stage: s() },
            UpstreamStale { stage: s() },
            Interrupted { resume: None },
            Promoted {
                from: 2,
                to: 5,
                epochs: 10,
            },
            WaitsForSearch { search: s() },
            Running {
                pid: 1,
                host: s(),
                elsewhere: false,
            },
            Invalidated { why: s() },
            RecordUnreadable,
            OutputMissing {
                path: p(),
                restorable: true,
            },
            OutputModified {
                path: p(),
                restorable: true,
            },
            OutputUnreadable {
                path: p(),
                error: s(),
            },
            CacheCorrupt { path: p() },
            Forced,
            InCache {
                stage: s(),
                finished: 0,
                duration_s: 1.0,
            },
            InCacheDamaged { key: s(), why: s() },
            Orphaned { outputs: vec![] },
        ]
    }

    /// docs/cli.md's table of `status --json` reasons: one row per kind,
    /// `| `kind` | `field`, ... | meaning |`, fields as serialized.
    fn documented() -> Vec<(String, Vec<String>)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
        let text = std::fs::read_to_string(path).expect("docs/cli.md");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        text.lines()
            .map(str::trim_start)
            .skip_while(|l| !l.starts_with("| reason kind |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let kind = ticked(cells.get(1)?).into_iter().next()?;
                Some((kind, ticked(cells.get(2)?)))
            })
            .collect()
    }

    #[test]
    fn every_reason_kind_is_documented_with_its_fields() {
        let all = one_of_each();
        let mut places: Vec<usize> = all.iter().map(place).collect();
        places.sort_unstable();
        let count = place(&DirtyReason::Orphaned { outputs: vec![] }) + 1;
        assert_eq!(
            places,
            (0..count).collect::<Vec<_>>(),
            "one example of each"
        );
        let docs = documented();
        for r in &all {
            let Value::Object(m) = serde_json::to_value(r).unwrap() else {
                panic!("{r:?} is not an object")
            };
            let kind = m["kind"].as_str().unwrap().to_string();
            let mut fields: Vec<String> = m.keys().filter(|k| *k != "kind").cloned().collect();
            fields.sort();
            let row = docs.iter().find(|(k, _)| *k == kind);
            let Some((_, doc_fields)) = row else {
                panic!("docs/cli.md's table of reason kinds lacks `{kind}`")
            };
            let mut doc_fields = doc_fields.clone();
            doc_fields.sort();
            assert_eq!(doc_fields, fields, "the fields of `{kind}` in docs/cli.md");
        }
        assert_eq!(
            docs.len(),
            all.len(),
            "docs/cli.md lists kinds that do not exist"
        );
    }
}
