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

use crate::error::{Error, Result};
use crate::spec::Pipeline;
use crate::state::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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

/// One line of the file, in either format.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    id: u64,
    when: String,
    git: Option<GitState>,
    #[serde(default, skip_serializing_if = "is_false")]
    pipeline_changed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    overrides: Vec<String>,
    ran: Vec<RanStage>,
    /// The first format: the whole state inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<BTreeMap<String, BTreeMap<String, f64>>>,
    /// The state's buckets by hash ("" for an empty one), in bucket order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<Vec<String>>,
}

/// One stage in a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    /// None for a stage a record holds metrics of but no parameters (a
    /// first-format record may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "is_false")]
    stale: bool,
}

type Bucket = BTreeMap<String, Entry>;

pub fn path(pipeline: &Pipeline) -> PathBuf {
    crate::state::store::Store::open(&pipeline.settings)
        .home()
        .join(FILE)
}

fn objects_dir(file: &Path) -> PathBuf {
    file.with_file_name(OBJECTS)
}

/// Calls `f` with each line of `path`, last first, until it returns
/// false; memory holds one line at a time. A missing file has no lines.
fn each_line_back(path: &Path, mut f: impl FnMut(&str) -> bool) -> Result<()> {
    const BLOCK: u64 = 64 * 1024;
    let io = |e| Error::io("read the run history", path, e);
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let mut pos = file.metadata().map_err(io)?.len();
    // The bytes after `pos` not handed out yet: the end of a line whose
    // start lies before `pos`.
    let mut tail: Vec<u8> = Vec::new();
    let mut emit = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        text.trim().is_empty() || f(&text)
    };
    while pos > 0 {
        let n = BLOCK.min(pos);
        pos -= n;
        let mut block = vec![0u8; n as usize];
        file.seek(SeekFrom::Start(pos))
            .and_then(|_| file.read_exact(&mut block))
            .map_err(io)?;
        block.extend_from_slice(&tail);
        tail = block;
        while let Some(nl) = tail.iter().rposition(|&b| b == b'\n') {
            let line = tail.split_off(nl + 1);
            tail.truncate(nl);
            if !emit(&line) {
                return Ok(());
            }
        }
    }
    emit(&tail);
    Ok(())
}

/// The newest `limit` runs, newest first, and how many lines met on the
/// way could not be read.
pub fn recent(path: &Path, limit: usize) -> Result<(Vec<RunSummary>, usize)> {
    let (mut runs, mut bad) = (Vec::new(), 0);
    if limit == 0 {
        return Ok((runs, bad));
    }
    each_line_back(path, |line| {
        match serde_json::from_str::<RunSummary>(line) {
            Ok(r) => runs.push(r),
            Err(_) => bad += 1,
        }
        runs.len() < limit
    })?;
    Ok((runs, bad))
}

/// The id of the newest run, if any.
pub fn newest_id(path: &Path) -> Result<Option<u64>> {
    #[derive(Deserialize)]
    struct Id {
        id: u64,
    }
    let mut id = None;
    each_line_back(path, |line| {
        id = serde_json::from_str::<Id>(line).ok().map(|r| r.id);
        id.is_none()
    })?;
    Ok(id)
}

/// Which runs `diff` compares.
pub enum Pick {
    /// The newest two.
    LastTwo,
    /// One run against the newest.
    AgainstNewest(u64),
    Both(u64, u64),
}

/// Why the runs asked for are not there.
pub enum Missing {
    /// No run `id`; the ids the history holds, if any.
    Run { id: u64, range: Option<(u64, u64)> },
    /// Fewer than two runs.
    TooFew(usize),
}

/// The two runs `pick` names, whole, older first as asked. Reads back
/// from the end only as far as the runs asked for.
pub fn pick(
    path: &Path,
    pick: Pick,
) -> Result<std::result::Result<(RunRecord, RunRecord), Missing>> {
    let wanted: Vec<u64> = match pick {
        Pick::LastTwo => Vec::new(),
        Pick::AgainstNewest(a) => vec![a],
        Pick::Both(a, b) => vec![a, b],
    };
    let mut newest: Vec<Line> = Vec::new();
    let mut found: BTreeMap<u64, Line> = BTreeMap::new();
    each_line_back(path, |text| {
        let Ok(line) = serde_json::from_str::<Line>(text) else {
            return true;
        };
        let id = line.id;
        if wanted.contains(&id) && !found.contains_key(&id) {
            found.insert(id, line.clone());
        }
        if newest.len() < 2 {
            newest.push(line);
        }
        // Ids fall going back: go on while a wanted run may lie further back.
        let more_wanted = wanted.iter().any(|w| !found.contains_key(w) && *w < id);
        more_wanted || (wanted.is_empty() && newest.len() < 2)
    })?;
    let newest_id = newest.first().map(|n| n.id);
    let missing = |id: u64| -> Result<Missing> {
        let range = match newest_id {
            Some(n) => Some((oldest_id(path)?.unwrap_or(n), n)),
            None => None,
        };
        Ok(Missing::Run { id, range })
    };
    let dir = objects_dir(path);
    let (old, new) = match pick {
        Pick::LastTwo => {
            if newest.len() < 2 {
                return Ok(Err(Missing::TooFew(newest.len())));
            }
            let new = newest.remove(0);
            (newest.remove(0), new)
        }
        Pick::AgainstNewest(a) => match (found.remove(&a), newest.into_iter().next()) {
            (Some(old), Some(new)) => (old, new),
            _ => return Ok(Err(missing(a)?)),
        },
        Pick::Both(a, b) => match (found.get(&a), found.get(&b)) {
            (Some(old), Some(new)) => (old.clone(), new.clone()),
            (None, _) => return Ok(Err(missing(a)?)),
            (_, None) => return Ok(Err(missing(b)?)),
        },
    };
    Ok(Ok((whole(&dir, old)?, whole(&dir, new)?)))
}

/// The id of the oldest run: the first readable line, read forward.
fn oldest_id(path: &Path) -> Result<Option<u64>> {
    use std::io::BufRead;
    #[derive(Deserialize)]
    struct Id {
        id: u64,
    }
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let mut reader = std::io::BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("read the run history", path, e))?;
        if n == 0 {
            return Ok(None);
        }
        if let Ok(r) = serde_json::from_slice::<Id>(&buf) {
            return Ok(Some(r.id));
        }
    }
}

fn record_error(e: serde_json::Error) -> Error {
    Error::Internal(format!("the run record: {e}"))
}

/// A line with its state read back from its buckets.
fn whole(dir: &Path, line: Line) -> Result<RunRecord> {
    let mut params = line.params.unwrap_or_default();
    let mut metrics = line.metrics.unwrap_or_default();
    let mut stale = Vec::new();
    for hash in line.state.iter().flatten().filter(|h| !h.is_empty()) {
        for (stage, e) in read_bucket(dir, hash)? {
            if let Some(m) = e.metrics {
                metrics.insert(stage.clone(), m);
            }
            if e.stale {
                stale.push(stage.clone());
            }
            if let Some(p) = e.params {
                params.insert(stage, p);
            }
        }
    }
    stale.sort();
    Ok(RunRecord {
        id: line.id,
        when: line.when,
        git: line.git,
        pipeline_changed: line.pipeline_changed,
        overrides: line.overrides,
        ran: line.ran,
        params,
        metrics,
        stale,
    })
}

fn bucket_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(format!("{hash}.json"))
}

fn read_bucket(dir: &Path, hash: &str) -> Result<Bucket> {
    let p = bucket_path(dir, hash);
    let bytes = std::fs::read(&p).map_err(|e| Error::io("read the run history's state", &p, e))?;
    // A damaged bucket is an error, never a silently different state.
    if blake3::hash(&bytes).to_hex()[..HASH_LEN] != *hash {
        return Err(Error::io(
            "read the run history's state",
            &p,
            std::io::Error::other(
                "its content does not match its name (damaged); restore it from a backup, or remove the runs that name it from history.jsonl (`log` still lists every run)",
            ),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::io("read the run history's state", &p, std::io::Error::other(e)))
}

/// Hex digits of a bucket's name: 128 bits.
const HASH_LEN: usize = 32;

/// Stages per bucket the layout aims at; the count is a power of two, so
/// it changes (and every bucket with it) only as a pipeline doubles.
const PER_BUCKET: usize = 64;

fn bucket_count(stages: usize) -> usize {
    stages
        .div_ceil(PER_BUCKET)
        .next_power_of_two()
        .clamp(1, 4096)
}

fn bucket_of(stage: &str, buckets: usize) -> usize {
    let h = blake3::hash(stage.as_bytes());
    let b = h.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize % buckets
}

/// Writes the state's buckets (those not there yet) and returns their
/// names in bucket order.
fn write_state(dir: &Path, entries: BTreeMap<String, Entry>) -> Result<Vec<String>> {
    let n = bucket_count(entries.len());
    let mut buckets: Vec<Bucket> = vec![Bucket::new(); n];
    for (stage, e) in entries {
        let b = bucket_of(&stage, n);
        buckets[b].insert(stage, e);
    }
    let mut names = Vec::with_capacity(n);
    for b in buckets {
        if b.is_empty() {
            names.push(String::new());
            continue;
        }
        let bytes = serde_json::to_vec(&b).map_err(record_error)?;
        let hash = blake3::hash(&bytes).to_hex()[..HASH_LEN].to_string();
        let p = bucket_path(dir, &hash);
        if !p.is_file() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
            let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &p))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    Error::io("write the run history's state", &p, e)
                })?;
        }
        names.push(hash);
    }
    Ok(names)
}

/// Appends the record of a run (its id is the next one). Reads only the
/// last line of the history, never the whole file.
pub fn append(path: &Path, mut record: RunRecord) -> Result<RunRecord> {
    record.id = newest_id(path)?.map_or(1, |id| id + 1);
    let state = write_state(&objects_dir(path), entries(&record))?;
    let line = Line {
        id: record.id,
        when: record.when.clone(),
        git: record.git.clone(),
        pipeline_changed: record.pipeline_changed,
        overrides: record.overrides.clone(),
        ran: record.ran.clone(),
        params: None,
        metrics: None,
        state: Some(state),
    };
    write_line(path, &line)?;
    Ok(record)
}

/// A record's state by stage: parameters, metrics, staleness.
fn entries(record: &RunRecord) -> BTreeMap<String, Entry> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let blank = || Entry {
        params: None,
        metrics: None,
        stale: false,
    };
    for (s, p) in &record.params {
        out.entry(s.clone()).or_insert_with(blank).params = Some(p.clone());
    }
    for (s, m) in &record.metrics {
        out.entry(s.clone()).or_insert_with(blank).metrics = Some(m.clone());
    }
    for s in &record.stale {
        out.entry(s.clone()).or_insert_with(blank).stale = true;
    }
    out
}

fn write_line(path: &Path, line: &Line) -> Result<()> {
    let mut text = serde_json::to_string(line).map_err(record_error)?;
    text.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open the run history", path, e))?;
    // A partial line left by a killed run would swallow this one.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) && !ends_with_newline(path) {
        text.insert(0, '\n');
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("append to the run history", path, e))
}

fn ends_with_newline(path: &Path) -> bool {
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)
        })
        .is_ok_and(|()| last[0] == b'\n')
}

/// What `gc` did to the history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compacted {
    pub runs: usize,
    /// Lines that could not be read (torn by a killed run), dropped.
    pub dropped: usize,
    /// Lines of the first format rewritten with buckets.
    pub rewritten: usize,
    /// Buckets no run names, and their bytes.
    pub unused: usize,
    pub unused_bytes: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Rewrites the history line by line (unreadable lines dropped, the first
/// format turned into buckets) and, unless `dry_run`, removes the buckets
/// no run names. Memory holds one line and the set of bucket names. The
/// caller holds the cache lock.
pub fn compact(path: &Path, dry_run: bool) -> Result<Compacted> {
    use std::io::BufRead;
    let mut c = Compacted::default();
    let dir = objects_dir(path);
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
        Err(e) => return Err(Error::io("read the run history", path, e)),
    };
    c.bytes_before = file.metadata().map_or(0, |m| m.len());
    let tmp = path.with_file_name(format!(".{FILE}.{}.tmp", std::process::id()));
    let mut out = if dry_run {
        None
    } else {
        Some(std::io::BufWriter::new(
            std::fs::File::create(&tmp).map_err(|e| Error::io("write", &tmp, e))?,
        ))
    };
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut buf = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("read the run history", path, e))?;
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            continue;
        }
        let Ok(mut line) = serde_json::from_str::<Line>(&text) else {
            c.dropped += 1;
            continue;
        };
        c.runs += 1;
        if line.state.is_none() {
            c.rewritten += 1;
            if !dry_run {
                let record = whole(&dir, line)?;
                let state = write_state(&dir, entries(&record))?;
                line = Line {
                    id: record.id,
                    when: record.when,
                    git: record.git,
                    pipeline_changed: record.pipeline_changed,
                    overrides: record.overrides,
                    ran: record.ran,
                    params: None,
                    metrics: None,
                    state: Some(state),
                };
            }
        }
        used.extend(
            line.state
                .iter()
                .flatten()
                .filter(|h| !h.is_empty())
                .cloned(),
        );
        if let Some(w) = out.as_mut() {
            let mut t = serde_json::to_string(&line).map_err(record_error)?;
            t.push('\n');
            w.write_all(t.as_bytes())
                .map_err(|e| Error::io("write", &tmp, e))?;
        }
    }
    if let Some(w) = out {
        let f = w
            .into_inner()
            .map_err(|e| Error::io("write", &tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("write", &tmp, e))?;
        c.bytes_after = f.metadata().map_or(0, |m| m.len());
        std::fs::rename(&tmp, path).map_err(|e| Error::io("replace", path, e))?;
    } else {
        c.bytes_after = c.bytes_before;
    }
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(hash) = name.strip_suffix(".json") else {
            continue;
        };
        if !used.contains(hash) {
            c.unused += 1;
            c.unused_bytes += e.metadata().map_or(0, |m| m.len());
            if !dry_run {
                std::fs::remove_file(e.path()).map_err(|err| Error::io("remove", e.path(), err))?;
            }
        }
    }
    Ok(c)
}

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
    }
}

fn read_metrics(pipeline: &Pipeline, s: &crate::spec::Stage) -> Option<BTreeMap<String, f64>> {
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
fn git_state(dir: &Path, places: &[String]) -> Option<GitState> {
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

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

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
type GroupMetrics = (BTreeMap<String, (f64, usize)>, bool);

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

fn flatten_all(params: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
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
            pipeline_changed: false,
            overrides: Vec::new(),
            stale: vec![],
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
