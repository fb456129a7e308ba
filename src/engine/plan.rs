//! Fresh, new or dirty: each stage's fingerprint against its record.

use crate::error::Result;
use crate::spec::{Pipeline, Stage};
use crate::state::fingerprint::{DirtyReason, Fingerprint, ResumePoint};
use crate::state::hash::HashCache;
use crate::state::runs::{self, RunEntry};
use crate::state::store::{Digest, Record, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Fresh,
    New,
    Dirty(DirtyReason),
}

impl State {
    /// How `status` shows it.
    pub fn row_state(&self) -> RowState {
        match self {
            State::Fresh => RowState::Fresh,
            State::New => RowState::New,
            State::Dirty(DirtyReason::Running { .. }) => RowState::Running,
            State::Dirty(_) => RowState::Dirty,
        }
    }

    /// Why the stage must run; `None` when it is fresh.
    pub fn why(&self) -> Option<DirtyReason> {
        match self {
            State::Fresh => None,
            State::New => Some(DirtyReason::NeverRun),
            State::Dirty(r) => Some(r.clone()),
        }
    }
}

/// A stage's state as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    Fresh,
    New,
    Dirty,
    Running,
    /// A record of a stage the pipeline no longer declares.
    Orphaned,
}

impl RowState {
    pub const ALL: [RowState; 5] = [
        RowState::Fresh,
        RowState::New,
        RowState::Dirty,
        RowState::Running,
        RowState::Orphaned,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RowState::Fresh => "fresh",
            RowState::New => "new",
            RowState::Dirty => "dirty",
            RowState::Running => "running",
            RowState::Orphaned => "orphaned",
        }
    }
}

pub struct Assessment {
    pub state: State,
    /// The stage's record as read (once) for this assessment: the last
    /// complete run's, or one of runs that never completed (for what they
    /// claimed); None when there is none or it is unreadable.
    pub record: Option<Record>,
    /// The fingerprint the stage has now (None when an input is unknown or
    /// a dep is missing).
    pub fingerprint: Option<Fingerprint>,
    /// The run-cache key that goes with the fingerprint.
    pub key: Option<String>,
    /// The completed run the stage is restored from (`InCache`).
    pub entry: Option<RunEntry>,
    /// The digest dependents will see: known when the stage is fresh or
    /// its outputs can be restored from the cache.
    pub digest: Option<Digest>,
}

/// A stage assessed dirty for `r`, with its fingerprint and key if known.
fn dirty(
    r: DirtyReason,
    record: Option<Record>,
    keyed: Option<(Fingerprint, String)>,
) -> Assessment {
    let (fingerprint, key) = keyed.map_or((None, None), |(f, k)| (Some(f), Some(k)));
    Assessment {
        state: State::Dirty(r),
        record,
        fingerprint,
        key,
        entry: None,
        digest: None,
    }
}

/// A run of the stage going on (here or on another machine): a dead
/// local runner is an interrupted run instead, and None.
fn running(record: Option<&Record>) -> Option<DirtyReason> {
    let runner = record?.running.as_ref()?;
    let elsewhere = match runner.alive() {
        Some(alive) => !alive,
        None => true,
    };
    (runner.alive() != Some(false)).then(|| DirtyReason::Running {
        pid: runner.pid,
        host: runner.host.clone(),
        elsewhere,
    })
}

pub struct Planner<'a> {
    pub pipeline: &'a Pipeline,
    pub store: &'a Store,
    pub hashes: &'a HashCache,
}

/// The result of fingerprinting: a dep may be missing or unreadable.
pub enum Fp {
    Ok(Fingerprint),
    DepMissing(String),
    DepUnreadable { path: String, error: String },
}

impl Fp {
    /// Why there is no fingerprint, as a reason.
    fn reason(self) -> Result<Fingerprint, DirtyReason> {
        match self {
            Fp::Ok(fp) => Ok(fp),
            Fp::DepMissing(path) => Err(DirtyReason::DepMissing { path }),
            Fp::DepUnreadable { path, error } => Err(DirtyReason::DepUnreadable { path, error }),
        }
    }
}

impl Planner<'_> {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.pipeline.settings.project_dir.join(rel)
    }

    /// What a search trial's outputs say of its training: the validation
    /// accuracy of each epoch, and whether it finished (None: unreadable).
    pub fn trial_progress(&self, stage: &Stage) -> Option<stages::asha::Known> {
        let dir = self.path(stage.outs.first()?);
        stages::train::progress_of(&dir)
            .map(|(val_acc, finished)| stages::asha::Known { val_acc, finished })
    }

    /// Where a resumable stage computing `key` would take up again.
    pub fn resume_point(&self, stage: &Stage, key: &str) -> Option<ResumePoint> {
        if !stage.kind.resumes() {
            return None;
        }
        let dir = self.store.resume_dir(key);
        stage
            .kind
            .resume_point(&dir)
            .map(|(epoch, epochs)| ResumePoint { epoch, epochs })
    }

    /// The stage's fingerprint and run-cache key, given the digests of its
    /// inputs.
    /// None when a dep is missing or unreadable.
    fn keyed(
        &self,
        stage: &Stage,
        inputs: &BTreeMap<String, Digest>,
    ) -> Result<Option<(Fingerprint, String)>> {
        let named = inputs
            .iter()
            .map(|(n, d)| (n.clone(), d.named.clone()))
            .collect();
        Ok(match self.fingerprint(stage, named)? {
            Fp::Ok(fp) => {
                let key = runs::key(stage, &fp, inputs);
                Some((fp, key))
            }
            _ => None,
        })
    }

    /// For an evaluation of a command's predictions, the file it measures.
    fn measured_predictions(&self, stage: &Stage) -> Option<String> {
        if stage.kind != stages::Kind::Evaluate {
            return None;
        }
        stage
            .needs
            .iter()
            .find_map(|&j| self.pipeline.stages[j].predictions.clone())
    }

    /// The stage's fingerprint, given the digests of its inputs.
    pub fn fingerprint(&self, stage: &Stage, inputs: BTreeMap<String, String>) -> Result<Fp> {
        let mut deps = BTreeMap::new();
        for d in &stage.deps {
            let path = self.path(d);
            match self.hashes.hash_path(&path) {
                Ok(Some(t)) => {
                    deps.insert(d.clone(), t.hash);
                }
                Ok(None) => return Ok(Fp::DepMissing(d.clone())),
                Err(e) => {
                    return Ok(Fp::DepUnreadable {
                        path: d.clone(),
                        error: e.to_string(),
                    })
                }
            }
        }
        Ok(Fp::Ok(Fingerprint {
            kind: stage.kind.name().to_string(),
            kind_version: stage.kind.version(),
            params: stage.params.clone(),
            cmd: stage.cmd.clone(),
            device: stage.device.clone(),
            deps,
            inputs,
            outs: stage.outs.clone(),
            predictions: self.measured_predictions(stage),
        }))
    }

    /// Assesses stage `i`; `inputs` holds each needed stage's output
    /// digest, or None when that stage is itself stale. A `forced` stage
    /// that has run before is dirty, whatever else holds: the one place
    /// forcing is decided.
    pub fn assess(
        &self,
        i: usize,
        inputs: &[(String, Option<Digest>)],
        forced: bool,
    ) -> Result<Assessment> {
        let mut a = self.assess_unforced(i, inputs)?;
        if forced && a.state != State::New {
            a.state = State::Dirty(DirtyReason::Forced);
            a.digest = None;
            a.entry = None;
        }
        Ok(a)
    }

    fn assess_unforced(&self, i: usize, inputs: &[(String, Option<Digest>)]) -> Result<Assessment> {
        let stage = &self.pipeline.stages[i];
        if crate::spec::confirm::waits_for_search(stage) {
            let search = stage
                .needs
                .first()
                .map_or(String::new(), |&j| self.pipeline.stages[j].base.clone());
            return Ok(dirty(DirtyReason::WaitsForSearch { search }, None, None));
        }
        let record = match self.store.record(&stage.name) {
            Ok(r) => r,
            Err(_) => return Ok(dirty(DirtyReason::RecordUnreadable, None, None)),
        };
        if let Some(r) = running(record.as_ref()) {
            return Ok(dirty(r, record, None));
        }
        let known: Option<BTreeMap<String, Digest>> = inputs
            .iter()
            .map(|(n, d)| d.clone().map(|d| (n.clone(), d)))
            .collect();
        // A record of runs that never completed still says what the tool
        // claimed (cleared) for them: it goes along, for ownership checks.
        let (record, started_only) = match record {
            Some(r) if r.completed_once => (Some(r), None),
            other => (None, other),
        };
        let Some(record) = record else {
            return self.never_completed(stage, known.as_ref(), started_only);
        };
        let Some(known) = known else {
            let stale = inputs
                .iter()
                .find(|(_, d)| d.is_none())
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            return Ok(dirty(
                DirtyReason::UpstreamStale { stage: stale },
                Some(record),
                None,
            ));
        };
        let named = known
            .iter()
            .map(|(n, d)| (n.clone(), d.named.clone()))
            .collect();
        let fp = match self.fingerprint(stage, named)?.reason() {
            Ok(fp) => fp,
            Err(r) => return Ok(dirty(r, Some(record), None)),
        };
        // The key is computed only where it is used: a fresh stage's is
        // its record's (a no-op `status` stays as cheap as before).
        let key = |fp: &Fingerprint| runs::key(stage, fp, &known);
        if let Some(why) = &record.invalidated {
            let k = key(&fp);
            return Ok(dirty(
                DirtyReason::Invalidated { why: why.clone() },
                Some(record),
                Some((fp, k)),
            ));
        }
        if !record.complete {
            let k = key(&fp);
            let resume = self.resume_point(stage, &k);
            let reason = DirtyReason::Interrupted { resume };
            return Ok(self.or_remembered(stage, reason, Some(record), Some((fp, k))));
        }
        if let Some(r) = fp.compare(&record.fingerprint) {
            let k = key(&fp);
            return Ok(self.or_remembered(stage, r, Some(record), Some((fp, k))));
        }
        if let Some(reason) = self.outputs_changed(&record) {
            let k = key(&fp);
            let digest = reason.restorable().then(|| record.digest());
            let mut a = dirty(reason, Some(record), Some((fp, k)));
            a.digest = digest;
            return Ok(a);
        }
        let digest = Some(record.digest());
        let k = record.key.clone().unwrap_or_else(|| key(&fp));
        Ok(Assessment {
            state: State::Fresh,
            record: Some(record),
            fingerprint: Some(fp),
            key: Some(k),
            entry: None,
            digest,
        })
    }

    /// A stage that has never completed a run: new, or a first run that
    /// was interrupted with its progress saved, unless the run cache
    /// remembers its result.
    fn never_completed(
        &self,
        stage: &Stage,
        known: Option<&BTreeMap<String, Digest>>,
        started_only: Option<Record>,
    ) -> Result<Assessment> {
        let keyed = match known {
            Some(k) => self.keyed(stage, k)?,
            None => None,
        };
        let resume = keyed
            .as_ref()
            .and_then(|(_, k)| self.resume_point(stage, k));
        let reason = match resume {
            Some(r) => DirtyReason::Interrupted { resume: Some(r) },
            None => DirtyReason::NeverRun,
        };
        let mut a = self.or_remembered(stage, reason, started_only, keyed);
        if a.state == State::Dirty(DirtyReason::NeverRun) {
            a.state = State::New;
        }
        Ok(a)
    }

    /// A stage that is not fresh by its own record: restored from the run
    /// cache when it remembers a completed run with the stage's key (and
    /// whose outputs fit the stage's), else dirty for `reason`.
    fn or_remembered(
        &self,
        stage: &Stage,
        reason: DirtyReason,
        record: Option<Record>,
        keyed: Option<(Fingerprint, String)>,
    ) -> Assessment {
        let found = match keyed.as_ref().map(|(_, k)| (k, self.remembered(stage, k))) {
            Some((_, Ok(e))) => Ok(e),
            Some((k, Err(damage))) => Err(DirtyReason::InCacheDamaged {
                key: k.clone(),
                why: damage.to_string(),
            }),
            None => Ok(None),
        };
        let (entry, reason) = match found {
            Ok(e) => (e.and_then(|e| e.outputs_for(stage).map(|o| (e, o))), reason),
            Err(damaged) => (None, damaged),
        };
        let (fingerprint, key) = keyed.map_or((None, None), |(f, k)| (Some(f), Some(k)));
        let Some((entry, outputs)) = entry else {
            return Assessment {
                state: State::Dirty(reason),
                record,
                fingerprint,
                key,
                entry: None,
                digest: None,
            };
        };
        Assessment {
            state: State::Dirty(DirtyReason::InCache {
                stage: entry.stage.clone(),
                finished: entry.finished,
                duration_s: entry.duration_s,
            }),
            record,
            fingerprint,
            key,
            digest: Some(Digest::of(&outputs)),
            entry: Some(entry),
        }
    }

    /// The keys under which a result for `stage` (whose key is `key`) may
    /// be remembered: its own, then, for a search's trial, those of the
    /// training paused at each rung, furthest first (with the epochs).
    pub fn run_keys(&self, stage: &Stage, key: &str) -> Vec<(String, Option<usize>)> {
        let mut keys = vec![(key.to_string(), None)];
        let i = self.pipeline.index_of(&stage.name);
        if let Some(plan) = self
            .pipeline
            .searches
            .iter()
            .find(|s| i.is_some_and(|i| s.trials.contains(&i)))
        {
            for &r in plan.rungs.iter().rev() {
                keys.push((runs::paused_key(key, r), Some(r)));
            }
        }
        keys
    }

    /// The completed run the run cache remembers for `stage`: a whole
    /// training for a stage that asks for one, never a paused trial's
    /// (a trial also takes its own paused run up). `Err`: the entry under
    /// the stage's key is damaged.
    pub fn remembered(
        &self,
        stage: &Stage,
        key: &str,
    ) -> std::result::Result<Option<RunEntry>, runs::Damage> {
        for (k, paused) in self.run_keys(stage, key) {
            let found = match runs::find(self.store, &k) {
                Ok(found) => found,
                Err(d) if paused.is_none() => return Err(d),
                Err(_) => None,
            };
            if let Some(e) = found.filter(|e| e.paused == paused && !self.paused_unmarked(stage, e))
            {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// A paused trial that a version before paused keys filed as a whole
    /// training: its train.json says it paused.
    fn paused_unmarked(&self, stage: &Stage, e: &RunEntry) -> bool {
        if stage.kind != stages::Kind::Train || e.paused.is_some() {
            return false;
        }
        let summary = e.outputs.first().and_then(|o| {
            o.tree
                .files
                .iter()
                .find(|f| f.rel == stages::contract::TRAIN_SUMMARY_FILE)
        });
        summary
            .and_then(|f| self.store.read_object(&f.hash))
            .and_then(|b| serde_json::from_slice::<stages::contract::TrainSummary>(&b).ok())
            .is_some_and(|s| s.paused)
    }

    /// The first recorded output that is no longer as the stage wrote it.
    fn outputs_changed(&self, record: &Record) -> Option<DirtyReason> {
        for o in &record.outputs {
            let path = self.path(&o.path);
            let restorable = || o.tree.files.iter().all(|f| self.store.has_object(&f.hash));
            return Some(match self.hashes.hash_path(&path) {
                Err(e) => DirtyReason::OutputUnreadable {
                    path: o.path.clone(),
                    error: e.to_string(),
                },
                Ok(None) => DirtyReason::OutputMissing {
                    path: o.path.clone(),
                    restorable: restorable(),
                },
                Ok(Some(t)) if t.hash == o.tree.hash => continue,
                // Files gone from a directory, nothing else changed: restorable.
                Ok(Some(t)) if crate::state::ownership::first_foreign(&o.tree, &t).is_none() => {
                    DirtyReason::OutputMissing {
                        path: o.path.clone(),
                        restorable: restorable(),
                    }
                }
                Ok(Some(_)) => DirtyReason::OutputModified {
                    path: o.path.clone(),
                    restorable: restorable(),
                },
            });
        }
        None
    }

    /// Assesses every stage in `order` (dependencies first), one level of
    /// the DAG at a time, the stages of a level in parallel.
    pub fn assess_all(
        &self,
        order: &[usize],
        mask: &[bool],
        forced: &[bool],
    ) -> Result<Vec<Option<Assessment>>> {
        use rayon::prelude::*;
        let n = self.pipeline.stages.len();
        let mut level = vec![0usize; n];
        for &i in order {
            level[i] = self.pipeline.stages[i]
                .needs
                .iter()
                .map(|&j| level[j] + 1)
                .max()
                .unwrap_or(0);
        }
        let depth = order.iter().map(|&i| level[i]).max().map_or(0, |m| m + 1);
        let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); depth];
        for &i in order {
            if mask[i] {
                by_level[level[i]].push(i);
            }
        }
        let mut out: Vec<Option<Assessment>> = (0..n).map(|_| None).collect();
        for stages in by_level {
            let results: Vec<(usize, Result<Assessment>)> = stages
                .par_iter()
                .map(|&i| {
                    let inputs: Vec<(String, Option<Digest>)> = self.pipeline.stages[i]
                        .needs
                        .iter()
                        .map(|&j| {
                            (
                                self.pipeline.stages[j].name.clone(),
                                out[j].as_ref().and_then(|a: &Assessment| a.digest.clone()),
                            )
                        })
                        .collect();
                    (i, self.assess(i, &inputs, forced[i]))
                })
                .collect();
            for (i, r) in results {
                out[i] = Some(r?);
            }
        }
        Ok(out)
    }
}
