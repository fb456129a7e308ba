//! A run's trace: for each stage that ran, was restored or pulled, when it
//! started and how long it waited, its wall and CPU time, its peak
//! memory, the slot it was given and where it ran; for a restored or
//! pulled stage, the time its original run took (what the cache saved).

use super::state::{RunState, StageLive, Standing};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub run: String,
    /// Unix seconds.
    pub started: f64,
    pub executor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Stages fresh at the start, not listed.
    pub fresh: usize,
    pub stages: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub stage: String,
    pub kind: String,
    /// done, failed, interrupted, restored, pulled.
    pub outcome: String,
    /// Seconds after the run started.
    pub start_s: f64,
    /// From its inputs being done to its start (the scheduler's queue,
    /// then Slurm's where it ran there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_s: Option<f64>,
    pub wall_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
    pub cpus: usize,
    pub gpus: usize,
    pub executor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Restored or pulled: how long the run that made it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_s: Option<f64>,
    /// What it declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_s: Option<u64>,
}

/// The trace of a run as its state stands.
pub fn of(state: &RunState) -> Trace {
    let mut stages: Vec<Entry> = state
        .stages
        .iter()
        .filter_map(|s| entry(state, s))
        .collect();
    stages.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    Trace {
        run: state.run.clone(),
        started: state.started,
        executor: state.executor.clone(),
        ended: state.ended.as_ref().map(|e| e.how.clone()),
        fresh: state
            .stages
            .iter()
            .filter(|s| s.state == Standing::Cached)
            .count(),
        stages,
    }
}

fn entry(state: &RunState, s: &StageLive) -> Option<Entry> {
    let outcome = match s.state {
        Standing::Done
        | Standing::Failed
        | Standing::Interrupted
        | Standing::Restored
        | Standing::Pulled => s.state.name(),
        // Running when the trace was taken: cut short as far as it knows.
        Standing::Running => "running",
        _ => return None,
    };
    let start = s.started?;
    let u = s.usage.as_ref();
    let wall = match (u, s.ended) {
        (Some(u), _) => u.wall_s,
        (None, Some(end)) => end - start,
        (None, None) => stages::measure::unix_now() - start,
    };
    // On Slurm the job's own start says how long it queued there.
    let slurm_queue = match (s.submitted, u) {
        (Some(sub), Some(u)) if u.started_unix > sub => u.started_unix - sub,
        _ => 0.0,
    };
    let ran = !matches!(s.state, Standing::Restored | Standing::Pulled);
    Some(Entry {
        stage: s.name.clone(),
        kind: s.kind.clone(),
        outcome: outcome.to_string(),
        start_s: (start - state.started).max(0.0),
        queue_s: s.waited_s.map(|w| w + slurm_queue),
        wall_s: wall.max(0.0),
        cpu_s: u.map(|u| u.cpu_s()),
        user_s: u.map(|u| u.user_s),
        sys_s: u.map(|u| u.sys_s),
        peak_rss_mb: u.map(|u| u.peak_rss_kib as f64 / 1024.0),
        cpus: s.cpus,
        gpus: s.gpus,
        executor: if ran {
            state.executor.clone()
        } else {
            s.from
                .as_ref()
                .map_or("cache".into(), |r| format!("remote {r}"))
        },
        node: u.map(|u| u.node.clone()),
        saved_s: s.saved_s,
        mem_mb: s.mem_mb,
        time_s: s.time_s,
    })
}

/// How many of the newest runs are looked through for a stage's last
/// measure.
pub const LOOK_BACK: usize = 20;

/// Each stage's last measured run (ran, not restored) in the newest
/// [`LOOK_BACK`] runs' traces.
pub fn last_measured(home: &std::path::Path) -> std::collections::HashMap<String, Entry> {
    let mut out = std::collections::HashMap::new();
    for name in super::runs(home).into_iter().take(LOOK_BACK) {
        let path = home.join(super::RUNS).join(name).join("trace.json");
        let Some(t) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Trace>(&b).ok())
        else {
            continue;
        };
        for e in t.stages {
            if e.cpu_s.is_some() && e.saved_s.is_none() {
                out.entry(e.stage.clone()).or_insert(e);
            }
        }
    }
    out
}

/// What a stage's last measure says about its declarations: its peak
/// memory above `mem_mb`, or its wall time within 10% of `time` (on
/// Slurm, the job would have been killed).
pub fn warnings(e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(peak), Some(mem)) = (e.peak_rss_mb, e.mem_mb) {
        if peak > mem as f64 {
            out.push(format!(
                "its last run peaked at {peak:.0} MB of memory, above its mem_mb: {mem}"
            ));
        }
    }
    if let Some(time) = e.time_s {
        if e.wall_s >= 0.9 * time as f64 {
            out.push(format!(
                "its last run took {}, within 10% of its time: {}",
                seconds(e.wall_s),
                seconds(time as f64)
            ));
        }
    }
    out
}

/// `1h02m`, `3m05s`, `4.2s`.
pub fn seconds(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(peak: f64, wall: f64) -> Entry {
        Entry {
            stage: "s".into(),
            kind: "cmd".into(),
            outcome: "done".into(),
            start_s: 0.0,
            queue_s: None,
            wall_s: wall,
            cpu_s: None,
            user_s: None,
            sys_s: None,
            peak_rss_mb: Some(peak),
            cpus: 1,
            gpus: 0,
            executor: "local".into(),
            node: None,
            saved_s: None,
            mem_mb: Some(500),
            time_s: Some(100),
        }
    }

    #[test]
    fn declarations_the_last_run_came_close_to_are_named() {
        assert!(warnings(&entry(400.0, 80.0)).is_empty());
        let w = warnings(&entry(612.0, 95.0));
        assert_eq!(
            w,
            [
                "its last run peaked at 612 MB of memory, above its mem_mb: 500",
                "its last run took 1m35s, within 10% of its time: 1m40s"
            ]
        );
    }
}
