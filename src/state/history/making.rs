//! A run's record: what it is, what ran, every stage's parameters and
//! the metrics of fresh evaluations, and the project's git state.

use super::*;
use crate::spec::Pipeline;
use crate::state::time::rfc3339;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where a run began: its time, the commit, and the pipeline file's text
/// (to notice an edit made while it ran).
#[derive(Debug)]
pub struct Start {
    when: String,
    /// git is asked on a thread of its own as the run starts, so that a
    /// run with nothing to record does not wait for it.
    git: std::thread::JoinHandle<Option<GitState>>,
    text: Option<Vec<u8>>,
}

/// Taken before anything runs: a commit made during a long run is not the
/// one the run used.
pub fn start(pipeline: &Pipeline) -> Start {
    let settings = &pipeline.settings;
    let dir = settings.project_dir.clone();
    // The places the tool writes: the cache, the outputs directory, every
    // declared output.
    let places: Vec<String> = [settings.cache.clone(), settings.outputs.clone()]
        .into_iter()
        .chain(pipeline.stages.iter().flat_map(|s| s.outs.iter().cloned()))
        .collect();
    Start {
        when: now_rfc3339(),
        git: std::thread::spawn(move || git_state(&dir, &places)),
        text: std::fs::read(&settings.file).ok(),
    }
}

/// What a run is, for the report's run panel: asked (git included) only
/// when a stage that describes the run is about to run.
pub fn describe_run(
    pipeline: &Pipeline,
    started_unix: u64,
    jobs: usize,
    executor: &str,
) -> stages::contract::RunInfo {
    let settings = &pipeline.settings;
    let places: Vec<String> = [settings.cache.clone(), settings.outputs.clone()]
        .into_iter()
        .chain(pipeline.stages.iter().flat_map(|s| s.outs.iter().cloned()))
        .collect();
    let git = git_state(&settings.project_dir, &places);
    stages::contract::RunInfo {
        started: rfc3339(started_unix),
        started_unix,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: git.as_ref().map(|g| g.commit.clone()),
        git_dirty: git.as_ref().map(|g| g.dirty),
        cpu: stages::runtime::cpu_description(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        jobs,
        executor: executor.to_string(),
        pipeline_file: settings.file.display().to_string(),
        pipeline_text: pipeline.text.clone(),
        overrides: pipeline.overrides.clone(),
        variant_params: variant_params(pipeline),
    }
}

/// The parameters behind each variant a comparison may show: a train
/// stage's, or a command's with `predictions:` (the first replicate's).
pub fn variant_params(pipeline: &Pipeline) -> BTreeMap<String, stages::contract::VariantOrigin> {
    let mut out = BTreeMap::new();
    for s in &pipeline.stages {
        let evaluable = s.kind == stages::Kind::Train || s.predictions.is_some();
        if let (true, Some(v)) = (evaluable, &s.variant) {
            let group = stages::contract::replicate_of(v).0.to_string();
            out.entry(group).or_insert_with(|| variant_origin(s));
        }
    }
    out
}

/// A compared variant's stage, kind and parameters as written.
pub fn variant_origin(s: &crate::spec::Stage) -> stages::contract::VariantOrigin {
    stages::contract::VariantOrigin {
        stage: s.base.clone(),
        kind: s.kind.name().to_string(),
        params: crate::state::fingerprint::as_written(s.params.clone()),
    }
}

/// The record of a run that just ended: the state of every stage after
/// it. `fresh` says which stages are fresh now: only their metrics are
/// recorded (a stale evaluation measured an earlier configuration).
pub fn record(
    pipeline: &Pipeline,
    start: Start,
    ran: Vec<RanStage>,
    fresh: &dyn Fn(&str) -> bool,
) -> RunRecord {
    let params = pipeline
        .stages
        .iter()
        .map(|s| {
            let mut p = s.params.clone();
            if let (Some(cmd), Value::Object(m)) = (&s.cmd, &mut p) {
                m.insert("cmd".into(), Value::String(cmd.clone()));
            }
            (s.name.clone(), crate::state::fingerprint::as_written(p))
        })
        .collect();
    let evaluations = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == stages::Kind::Evaluate);
    let (mut metrics, mut stale) = (BTreeMap::new(), Vec::new());
    for s in evaluations {
        if !fresh(&s.name) {
            stale.push(s.name.clone());
            continue;
        }
        if let Some(m) = read_metrics(pipeline, s) {
            metrics.insert(s.name.clone(), m);
        }
    }
    let changed = std::fs::read(&pipeline.settings.file).ok() != start.text;
    RunRecord {
        id: 0,
        when: start.when,
        git: start.git.join().ok().flatten(),
        pipeline_changed: changed,
        overrides: pipeline.overrides.clone(),
        ran,
        params,
        metrics,
        stale,
        live: None,
    }
}

pub(super) fn read_metrics(
    pipeline: &Pipeline,
    s: &crate::spec::Stage,
) -> Option<BTreeMap<String, f64>> {
    let out = pipeline.settings.project_dir.join(s.outs.first()?);
    let bytes = std::fs::read(out.join(stages::contract::METRICS_FILE)).ok()?;
    let r: stages::contract::EvalReport = serde_json::from_slice(&bytes).ok()?;
    let mut m = BTreeMap::from([
        ("accuracy".to_string(), r.metrics.accuracy),
        ("macro_f1".to_string(), r.metrics.macro_avg.f1),
    ]);
    // Unknown for a command's predictions: the tool did not train the model.
    if let Some(t) = r.efficiency.training_seconds {
        m.insert("training_seconds".to_string(), t);
    }
    Some(m)
}

/// The commit checked out in the project and whether the tree is dirty,
/// leaving out what the tool writes itself (its cache, its outputs
/// directory, the stages' declared outputs); None outside a git
/// repository or without git.
pub(super) fn git_state(dir: &Path, places: &[String]) -> Option<GitState> {
    let git = |args: &[&str]| {
        // Without optional locks: `status` would otherwise refresh the
        // index under its lock while a stage may be running git itself.
        std::process::Command::new("git")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    let commit = String::from_utf8_lossy(&git(&["rev-parse", "HEAD"])?)
        .trim()
        .to_string();
    let top = String::from_utf8_lossy(&git(&["rev-parse", "--show-toplevel"])?)
        .trim()
        .to_string();
    let top = crate::spec::protect::physical(Path::new(&top));
    // The tool's own places, relative to the repository's root (where
    // porcelain paths are); those outside it git does not see anyway.
    let ours: BTreeSet<String> = places
        .iter()
        .filter_map(|p| {
            let abs = crate::spec::protect::physical(&dir.join(p));
            let rel = abs.strip_prefix(&top).ok()?;
            Some(rel.to_string_lossy().trim_end_matches('/').to_string())
        })
        .collect();
    let mine = |p: &str| {
        let p = p.trim_end_matches('/');
        Path::new(p)
            .ancestors()
            .any(|a| ours.contains(a.to_string_lossy().as_ref()))
    };
    let status = git(&["status", "--porcelain", "-z", "--untracked-files=all"])?;
    let mut dirty = false;
    let mut fields = status.split(|&b| b == 0).filter(|f| !f.is_empty());
    while let Some(entry) = fields.next() {
        let entry = String::from_utf8_lossy(entry);
        let (code, p) = (entry.get(..2).unwrap_or(""), entry.get(3..).unwrap_or(""));
        // A rename or copy names its source in the next field.
        let source = if code.starts_with('R') || code.starts_with('C') {
            fields
                .next()
                .map(|f| String::from_utf8_lossy(f).into_owned())
        } else {
            None
        };
        if !mine(p) || source.is_some_and(|s| !mine(&s)) {
            dirty = true;
            break;
        }
    }
    Some(GitState { commit, dirty })
}

pub(super) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}
