//! The history file: lines read from the end, the stages' state in
//! buckets written once, appending, and compacting.

use super::*;
use crate::error::{Error, Result};
use crate::spec::Pipeline;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One line of the file, in either format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Line {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    live: Option<String>,
}

/// One stage in a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Entry {
    /// None for a stage a record holds metrics of but no parameters (a
    /// first-format record may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "is_false")]
    stale: bool,
}

pub(super) type Bucket = BTreeMap<String, Entry>;

pub fn path(pipeline: &Pipeline) -> PathBuf {
    crate::state::store::Store::open(&pipeline.settings)
        .home()
        .join(FILE)
}

pub(super) fn objects_dir(file: &Path) -> PathBuf {
    file.with_file_name(OBJECTS)
}

/// Calls `f` with each line of `path`, last first, until it returns
/// false; memory holds one line at a time. A missing file has no lines.
pub(super) fn each_line_back(path: &Path, mut f: impl FnMut(&str) -> bool) -> Result<()> {
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
pub(super) fn oldest_id(path: &Path) -> Result<Option<u64>> {
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

pub(super) fn record_error(e: serde_json::Error) -> Error {
    Error::Internal(format!("the run record: {e}"))
}

/// A line with its state read back from its buckets.
pub(super) fn whole(dir: &Path, line: Line) -> Result<RunRecord> {
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
        live: line.live,
    })
}

pub(super) fn bucket_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(format!("{hash}.json"))
}

pub(super) fn read_bucket(dir: &Path, hash: &str) -> Result<Bucket> {
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
pub(super) const HASH_LEN: usize = 32;

/// Stages per bucket the layout aims at; the count is a power of two, so
/// it changes (and every bucket with it) only as a pipeline doubles.
pub(super) const PER_BUCKET: usize = 64;

pub(super) fn bucket_count(stages: usize) -> usize {
    stages
        .div_ceil(PER_BUCKET)
        .next_power_of_two()
        .clamp(1, 4096)
}

pub(super) fn bucket_of(stage: &str, buckets: usize) -> usize {
    let h = blake3::hash(stage.as_bytes());
    let b = h.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize % buckets
}

/// Writes the state's buckets (those not there yet) and returns their
/// names in bucket order.
pub(super) fn write_state(dir: &Path, entries: BTreeMap<String, Entry>) -> Result<Vec<String>> {
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
        live: record.live.clone(),
    };
    write_line(path, &line)?;
    Ok(record)
}

/// A record's state by stage: parameters, metrics, staleness.
pub(super) fn entries(record: &RunRecord) -> BTreeMap<String, Entry> {
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

pub(super) fn write_line(path: &Path, line: &Line) -> Result<()> {
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

pub(super) fn ends_with_newline(path: &Path) -> bool {
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
                    live: record.live,
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
