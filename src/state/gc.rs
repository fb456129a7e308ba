//! `gc`: removes what no stage of the pipeline owns: the records, logs and
//! outputs of stages no longer declared (a variant renamed or removed), and
//! cache objects that neither a record of any project sharing the cache
//! nor a remembered run refers to. An orphan's output is removed only
//! where it still holds exactly what that stage wrote and no current stage
//! declares the same path; anything else is kept and named. With `runs`,
//! it also forgets the remembered runs no project's last run is, and saved
//! training progress, so their objects go too.

use crate::error::Result;
use crate::spec::Pipeline;
use crate::state::files::remove_any;
use crate::state::hash::HashCache;
use crate::state::ownership;
use crate::state::runs;
use crate::state::store::Store;
use std::collections::BTreeSet;

/// One thing gc removes or keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Record(String),
    Output {
        stage: String,
        path: String,
    },
    /// An orphan's output that gc leaves alone, and why.
    Kept {
        path: String,
        why: String,
    },
    Objects {
        count: usize,
        bytes: u64,
    },
    /// Remembered runs: forgotten (`gc --runs`), or kept (`forgotten: false`).
    Runs {
        count: usize,
        forgotten: bool,
    },
    /// Saved progress of trainings that did not finish, forgotten (`--runs`).
    Progress {
        count: usize,
        bytes: u64,
    },
    /// The run history, compacted: torn lines dropped, the first format
    /// rewritten, state files no run names removed.
    History(crate::state::history::Compacted),
    /// Files moved aside by earlier runs (never removed by gc).
    Quarantine {
        path: String,
        files: usize,
        bytes: u64,
    },
}

/// Stages with a record that the pipeline no longer declares.
/// A confirm stage waiting for its search keeps its trainings and
/// evaluations of the last finalists: they are planned again once the
/// search has finished, and are not orphans meanwhile.
pub fn orphans(pipeline: &Pipeline, store: &Store) -> Vec<String> {
    let names: BTreeSet<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
    let waiting: Vec<String> = pipeline
        .stages
        .iter()
        .filter(|s| crate::spec::confirm::waits_for_search(s))
        .flat_map(|s| {
            [
                format!("{}.train@", s.name),
                format!("{}.evaluate@", s.name),
            ]
        })
        .collect();
    store
        .recorded_stages()
        .into_iter()
        .filter(|n| !names.contains(n.as_str()))
        .filter(|n| !waiting.iter().any(|w| n.starts_with(w.as_str())))
        .collect()
}

/// Collects (and unless `dry_run`, removes) what no stage owns; with
/// `forget_runs`, the remembered runs no project uses now as well. The
/// caller holds the project's lock and the cache to itself.
pub fn run(
    pipeline: &Pipeline,
    store: &Store,
    hashes: &HashCache,
    dry_run: bool,
    forget_runs: bool,
) -> Result<Vec<Item>> {
    let mut items = clear_orphans(pipeline, store, hashes, dry_run)?;
    let (mut referenced, in_use) = referenced(pipeline, store, dry_run);
    items.push(sweep_runs(
        store,
        &in_use,
        &mut referenced,
        forget_runs,
        dry_run,
    )?);
    if forget_runs {
        items.push(sweep_progress(store, &in_use, dry_run)?);
    }
    if !dry_run {
        // No run holds one now (the caller has the cache to itself).
        let locks = store.root().join("locks");
        remove_any(&locks).map_err(|e| crate::error::Error::io("remove", &locks, e))?;
    }
    let (mut count, mut bytes) = (0, 0);
    for (hash, size) in store.objects() {
        if !referenced.contains(&hash) {
            if !dry_run {
                store.remove_object(&hash)?;
            }
            count += 1;
            bytes += size;
        }
    }
    items.push(Item::Objects { count, bytes });
    let compacted =
        crate::state::history::compact(&crate::state::history::path(pipeline), dry_run)?;
    if compacted.runs + compacted.dropped > 0 {
        items.push(Item::History(compacted));
    }
    let quarantine = store.home().join("quarantine");
    let (files, bytes) = tree_size(&quarantine);
    if files > 0 {
        items.push(Item::Quarantine {
            path: quarantine.display().to_string(),
            files,
            bytes,
        });
    }
    if !dry_run {
        hashes.prune();
        hashes.save();
    }
    Ok(items)
}

/// The outputs and records of stages the pipeline no longer declares:
/// removed where the tool can show it wrote them, else kept and said why.
fn clear_orphans(
    pipeline: &Pipeline,
    store: &Store,
    hashes: &HashCache,
    dry_run: bool,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let declared: BTreeSet<&str> = pipeline
        .stages
        .iter()
        .flat_map(|s| s.outs.iter().map(String::as_str))
        .collect();
    for stage in orphans(pipeline, store) {
        if let Ok(Some(record)) = store.record(&stage) {
            for o in &record.outputs {
                let path = pipeline.settings.project_dir.join(&o.path);
                if declared.contains(o.path.as_str()) {
                    items.push(Item::Kept {
                        path: o.path.clone(),
                        why: "a stage of the pipeline declares it now".into(),
                    });
                    continue;
                }
                if std::fs::symlink_metadata(&path).is_err() {
                    continue;
                }
                // What the stage's last completed run wrote, or what its
                // unfinished run wrote into a path the tool cleared: the
                // same rule as before a stage replaces an output. A killed
                // rerun leaves the record incomplete, not the file foreign.
                if let Err(r) =
                    ownership::check(hashes, &stage, Some(&record), &o.path, &path, false)
                {
                    let why = match r.why {
                        ownership::Why::Modified(_) => {
                            format!("it no longer holds what {stage} wrote")
                        }
                        ownership::Why::NotRecorded | ownership::Why::NoRecord => {
                            format!("no completed run of {stage} wrote it")
                        }
                        ownership::Why::Unreadable(e) => format!("it cannot be read ({e})"),
                    };
                    items.push(Item::Kept {
                        path: o.path.clone(),
                        why,
                    });
                    continue;
                }
                if !dry_run {
                    remove_any(&path).map_err(|e| crate::error::Error::io("remove", &path, e))?;
                }
                items.push(Item::Output {
                    stage: stage.clone(),
                    path: o.path.clone(),
                });
            }
        }
        if !dry_run {
            store.forget_stage(&stage)?;
        }
        items.push(Item::Record(stage));
    }
    Ok(items)
}

/// The objects the records of every project on the cache refer to, and
/// the run keys they use (their saved progress, a paused trial's run).
fn referenced(
    pipeline: &Pipeline,
    store: &Store,
    dry_run: bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    // Objects no remaining record, of any project, refers to; nor a
    // remembered run that stays.
    let mut referenced = BTreeSet::new();
    let mut in_use = BTreeSet::new();
    let gone: BTreeSet<String> = if dry_run {
        orphans(pipeline, store).into_iter().collect()
    } else {
        BTreeSet::new()
    };
    for home in store.homes() {
        let this = home == store.home();
        for (name, r) in crate::state::store::records_in(&home) {
            if this && gone.contains(&name) {
                continue;
            }
            referenced.extend(
                r.outputs
                    .iter()
                    .flat_map(|o| o.tree.files.iter().map(|f| f.hash.clone())),
            );
            // Its saved progress is under its key; a paused trial's run
            // under a key of its own.
            in_use.extend(r.key.clone());
            in_use.extend(r.run_key());
        }
    }
    (referenced, in_use)
}

/// The run cache's entries: with `forget_runs`, those no record uses are
/// forgotten; the objects of those that stay are referenced.
fn sweep_runs(
    store: &Store,
    in_use: &BTreeSet<String>,
    referenced: &mut BTreeSet<String>,
    forget_runs: bool,
    dry_run: bool,
) -> Result<Item> {
    let mut forgotten = 0;
    let keys = runs::keys(store);
    for key in &keys {
        // A damaged entry refers to nothing; --runs forgets it too.
        let entry = match runs::read(store, key) {
            Ok(Some(e)) => Some(e),
            Ok(None) => continue,
            Err(_) => None,
        };
        if forget_runs && !in_use.contains(key) {
            if !dry_run {
                runs::forget(store, key)?;
            }
            forgotten += 1;
        } else if let Some(entry) = entry {
            referenced.extend(entry.objects().map(str::to_string));
        }
    }
    Ok(Item::Runs {
        count: if forget_runs { forgotten } else { keys.len() },
        forgotten: forget_runs,
    })
}

/// Saved progress goes, but for a result a record holds: a search's trial
/// paused at a rung keeps what a promotion goes on from.
fn sweep_progress(store: &Store, in_use: &BTreeSet<String>, dry_run: bool) -> Result<Item> {
    let resume = store.root().join("resume");
    let (mut count, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(&resume).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if in_use.contains(&name) {
            continue;
        }
        count += 1;
        bytes += tree_size(&entry.path()).1;
        if !dry_run {
            remove_any(&entry.path())
                .map_err(|e| crate::error::Error::io("remove", entry.path(), e))?;
        }
    }
    Ok(Item::Progress { count, bytes })
}

/// Files and bytes under `dir` (0 when it does not exist).
fn tree_size(dir: &std::path::Path) -> (usize, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => {
                let (f, b) = tree_size(&e.path());
                total = (total.0 + f, total.1 + b);
            }
            Ok(m) => total = (total.0 + 1, total.1 + m.len()),
            Err(_) => {}
        }
    }
    total
}
