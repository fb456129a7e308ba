//! One stage's run as a transaction. [`Txn::begin`] writes the start
//! record: from then on the stage no longer claims to be fresh, the record
//! names this process as its runner and the outputs the tool is about to
//! clear. [`Txn::commit`] checks what the stage produced (each output
//! hashed once), stores it and writes the complete record. [`Txn::abort`],
//! or dropping the transaction on any other way out (an error between two
//! steps, a panic), ends the run as failed: a crash never leaves a record
//! that claims fresh.

use crate::error::Result;
use crate::spec::Stage;
use crate::state::fingerprint::Fingerprint;
use crate::state::hash::HashCache;
use crate::state::runs::{self, RunEntry};
use crate::state::store::{Digest, Output, Record, Store};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a committed run produced: the digest its dependents see, and how
/// long it took from its start.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub digest: Digest,
    pub elapsed: Duration,
}

/// Why a run that succeeded cannot be committed (the run is aborted).
#[derive(Debug, Clone, PartialEq)]
pub enum Unproduced {
    /// A declared output is not there.
    Missing(String),
    /// A declared output cannot be read.
    Unreadable { path: String, error: String },
}

pub struct Txn<'a> {
    store: &'a Store,
    hashes: &'a HashCache,
    project: &'a Path,
    stage: &'a Stage,
    fp: Fingerprint,
    /// The run-cache key the result is remembered by.
    key: String,
    /// The start record as written; an abort writes it back without a runner.
    started: Record,
    t0: Instant,
    open: bool,
    /// A training paused at a search's rung: its saved state stays, for a
    /// promotion to go on from.
    keep_progress: bool,
    /// Epochs a paused training ran.
    paused: Option<usize>,
}

impl<'a> Txn<'a> {
    /// Invalidates `stage` before it runs, from its last record `prev`. Its
    /// outputs are claimed: a `cmd` stage's are cleared before it runs (so
    /// one it fails to write is caught); a built-in kind's are replaced
    /// only once the new ones are whole.
    pub fn begin(
        store: &'a Store,
        hashes: &'a HashCache,
        project: &'a Path,
        stage: &'a Stage,
        fp: Fingerprint,
        key: String,
        prev: Option<&Record>,
    ) -> Result<Txn<'a>> {
        // A built-in kind's new output is moved into place before the
        // record is written: claimed now, so that a run killed between the
        // two leaves an output the next run may replace.
        let started = Record::started(prev, &fp, &stage.outs);
        store.write_transient(&stage.name, &started)?;
        Ok(Txn {
            store,
            hashes,
            project,
            stage,
            fp,
            key,
            started,
            t0: Instant::now(),
            open: true,
            keep_progress: false,
            paused: None,
        })
    }

    /// Where a resumable kind keeps its progress towards this result,
    /// cleared first when the stage is forced (a forced run starts over).
    /// Progress towards other results stays: a parameter changed back
    /// takes it up. None for other kinds.
    pub fn resume_dir(&self, forced: bool) -> Result<Option<PathBuf>> {
        if !self.stage.kind.resumes() {
            return Ok(None);
        }
        if forced {
            self.store.clear_resume(&self.key)?;
        }
        Ok(Some(self.store.resume_dir(&self.key)))
    }

    /// Keeps the saved training state on commit (a paused trial).
    pub fn keep_progress(&mut self) {
        self.keep_progress = true;
    }

    /// The training paused after `epochs`, short of its parameters' end:
    /// remembered as what it is, under a key of its own (see
    /// [`runs::paused_key`]), never as the whole training.
    pub fn paused_after(&mut self, epochs: usize) {
        self.paused = Some(epochs);
    }

    /// Hashes each declared output once, stores its files and writes the
    /// complete record; a resumable kind's saved states go. An output that
    /// is missing or unreadable aborts the run instead.
    pub fn commit(mut self) -> Result<std::result::Result<Committed, Unproduced>> {
        let mut outputs = Vec::with_capacity(self.stage.outs.len());
        for o in &self.stage.outs {
            let tree = match self.hashes.hash_path(&self.project.join(o)) {
                Ok(Some(tree)) => tree,
                Ok(None) => {
                    self.abort()?;
                    return Ok(Err(Unproduced::Missing(o.clone())));
                }
                Err(e) => {
                    let error = e.to_string();
                    self.abort()?;
                    return Ok(Err(Unproduced::Unreadable {
                        path: o.clone(),
                        error,
                    }));
                }
            };
            outputs.push(Output {
                path: o.clone(),
                tree,
            });
        }
        for o in &outputs {
            let root = self.project.join(&o.path);
            for f in &o.tree.files {
                let p = if f.rel.is_empty() {
                    root.clone()
                } else {
                    root.join(&f.rel)
                };
                self.store.store_file(&p, &f.hash)?;
            }
        }
        let elapsed = self.t0.elapsed();
        let secs = elapsed.as_secs_f64();
        let mut record = Record::completed(self.fp.clone(), self.key.clone(), outputs, secs);
        record.paused = self.paused;
        // Remembered first: a crash between the two leaves the stage
        // restorable rather than a result recorded nowhere.
        let mut entry = RunEntry::new(
            record.run_key().unwrap_or_else(|| self.key.clone()),
            &self.stage.name,
            self.fp.clone(),
            record.outputs.clone(),
            secs,
        );
        entry.paused = self.paused;
        runs::write(self.store, &entry)?;
        self.store.write_record(&self.stage.name, &record)?;
        self.open = false;
        if self.stage.kind.resumes() && !self.keep_progress {
            self.store.clear_resume(&self.key)?;
        }
        Ok(Ok(Committed {
            digest: record.digest(),
            elapsed,
        }))
    }

    /// Ends the run as failed: the record stays incomplete, with no runner.
    pub fn abort(mut self) -> Result<()> {
        self.open = false;
        self.end()
    }

    /// Leaves the start record as it is: the process is being stopped, and
    /// the next run finds its runner gone (an interrupted run).
    pub fn leave(mut self) {
        self.open = false;
    }

    fn end(&self) -> Result<()> {
        let mut r = self.started.clone();
        r.running = None;
        self.store.write_transient(&self.stage.name, &r)
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.open {
            // Best effort on the way out of an error or a panic: a record
            // that still names this (ending) process reads as interrupted.
            let _ = self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Resources, Stage};
    use std::fs;

    fn stage(outs: &[&str]) -> Stage {
        Stage {
            name: "s".into(),
            base: "s".into(),
            variant: None,
            group: None,
            kind: stages::Kind::Cmd,
            desc: None,
            params: serde_json::json!({}),
            cmd: Some("true".into()),
            deps: vec![],
            outs: outs.iter().map(|s| s.to_string()).collect(),
            predictions: None,
            needs: vec![],
            resources: Resources::default(),
            device: None,
            slurm: Default::default(),
        }
    }

    fn fp() -> Fingerprint {
        Fingerprint {
            kind: "cmd".into(),
            kind_version: 1,
            params: serde_json::json!({}),
            cmd: Some("true".into()),
            device: None,
            deps: Default::default(),
            inputs: Default::default(),
            outs: vec!["out.txt".into()],
            predictions: None,
        }
    }

    struct World {
        dir: tempfile::TempDir,
        store: Store,
        hashes: HashCache,
    }

    /// A run-cache key (a hash, as every key is).
    const K: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("cache"));
        store.prepare().unwrap();
        let hashes = HashCache::load(dir.path().join("cache/hashes.json"));
        World { dir, store, hashes }
    }

    /// The work a fake executor does between begin and commit.
    fn produce(w: &World, text: &str) {
        fs::write(w.dir.path().join("out.txt"), text).unwrap();
    }

    #[test]
    fn begin_invalidates_and_commit_records_what_was_produced() {
        let w = world();
        let s = stage(&["out.txt"]);
        let t = Txn::begin(&w.store, &w.hashes, w.dir.path(), &s, fp(), K.into(), None).unwrap();
        let r = w.store.record("s").unwrap().unwrap();
        assert!(!r.complete && r.running.is_some());
        assert_eq!(r.claimed, ["out.txt"]);
        produce(&w, "one\n");
        let done = t.commit().unwrap().unwrap();
        let r = w.store.record("s").unwrap().unwrap();
        assert!(r.complete && r.running.is_none() && r.claimed.is_empty());
        assert_eq!(done.digest, r.digest());
        assert!(w.store.has_object(&r.outputs[0].tree.files[0].hash));
        // Remembered by its key, for any stage that computes the same.
        let entry = runs::find(&w.store, K).unwrap().unwrap();
        assert_eq!(entry.stage, "s");
        assert_eq!(Digest::of(&entry.outputs), r.digest());
        // The next run starts from the complete record: it is kept whole
        // (what it wrote can still be recognised) but no longer complete.
        let t = Txn::begin(
            &w.store,
            &w.hashes,
            w.dir.path(),
            &s,
            fp(),
            K.into(),
            Some(&r),
        )
        .unwrap();
        let again = w.store.record("s").unwrap().unwrap();
        assert!(!again.complete && again.completed_once);
        assert_eq!(again.digest(), r.digest());
        t.abort().unwrap();
    }

    #[test]
    fn abort_and_drop_leave_an_incomplete_record_without_a_runner() {
        let w = world();
        let s = stage(&["out.txt"]);
        Txn::begin(&w.store, &w.hashes, w.dir.path(), &s, fp(), K.into(), None)
            .unwrap()
            .abort()
            .unwrap();
        let r = w.store.record("s").unwrap().unwrap();
        assert!(!r.complete && r.running.is_none());
        // A failure between two steps: the transaction is dropped.
        let failing = || -> Result<()> {
            let _t = Txn::begin(&w.store, &w.hashes, w.dir.path(), &s, fp(), K.into(), None)?;
            Err(crate::error::Error::Internal("between two steps".into()))
        };
        assert!(failing().is_err());
        let r = w.store.record("s").unwrap().unwrap();
        assert!(!r.complete && r.running.is_none());
        // A panic (a crash of this thread) likewise.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _t =
                Txn::begin(&w.store, &w.hashes, w.dir.path(), &s, fp(), K.into(), None).unwrap();
            panic!("crash");
        }));
        assert!(caught.is_err());
        let r = w.store.record("s").unwrap().unwrap();
        assert!(!r.complete && r.running.is_none());
    }

    #[test]
    fn leaving_keeps_the_runner_for_the_next_run_to_find_gone() {
        let w = world();
        let s = stage(&["out.txt"]);
        Txn::begin(&w.store, &w.hashes, w.dir.path(), &s, fp(), K.into(), None)
            .unwrap()
            .leave();
        let r = w.store.record("s").unwrap().unwrap();
        assert!(!r.complete && r.running.is_some());
    }

    #[test]
    fn an_output_not_produced_aborts_the_commit() {
        let w = world();
        let s = stage(&["out.txt"]);
        let t = Txn::begin(&w.store, &w.hashes, w.dir.path(), &s, fp(), K.into(), None).unwrap();
        assert_eq!(
            t.commit().unwrap(),
            Err(Unproduced::Missing("out.txt".into()))
        );
        let r = w.store.record("s").unwrap().unwrap();
        assert!(!r.complete && r.running.is_none());
    }
}
