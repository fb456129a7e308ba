//! Putting a stage's result in place instead of running it: from its own
//! record's objects, or from a completed run the run cache (or a remote)
//! remembers.

use crate::engine::board::Outcome;
use crate::engine::context::{failed, Ctx};
use crate::engine::perform::remove_path;
use crate::error::{Error, Result};
use crate::spec::Stage;
use crate::state::files::remove_any;
use crate::state::fingerprint::{DirtyReason, Fingerprint};
use crate::state::ownership::{self, Refusal};
use crate::state::runs::{self, RunEntry};
use crate::state::store::{move_into_place, Record, RestoreError};
use crate::ui::events::{Event, Failure};
use std::fs;
use std::path::Path;

pub(crate) enum Restored {
    Done(Outcome),
    /// Not restored: why the stage runs instead.
    No(DirtyReason),
}

/// Puts back the outputs of a stage's own record (the planner decided it
/// may; `missing` is the output found missing, if one was); a cache that
/// no longer holds them makes the reason `cache corrupt`.
pub(crate) fn try_restore(
    ctx: &Ctx<'_>,
    stage: &Stage,
    record: &Record,
    missing: String,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Restored> {
    match restore(ctx, stage, record) {
        Ok(paths) => {
            send(Event::Restored {
                stage: stage.name.clone(),
                paths,
                from: None,
                took: std::time::Duration::try_from_secs_f64(record.duration_s).unwrap_or_default(),
            });
            Ok(Restored::Done(Outcome::Restored(record.digest())))
        }
        Err(RestoreError::Io(e)) => Err(e),
        Err(RestoreError::Refused(refusal)) => {
            failed(send, stage, Failure::Refused(refusal), None).map(Restored::Done)
        }
        Err(RestoreError::Missing | RestoreError::Corrupt) => {
            send(Event::CacheCorrupt {
                stage: stage.name.clone(),
                path: missing.clone(),
            });
            Ok(Restored::No(DirtyReason::CacheCorrupt { path: missing }))
        }
    }
}

/// Restores a stage from a completed run the run cache remembers (of this
/// or another stage name or project): its outputs put in place whole, and
/// a record as if the stage had run. The tool replaces only what it can
/// show it wrote; the outputs are claimed first, so a restore cut short
/// leaves them the tool's to clear. A missing or corrupt object makes the
/// cache forget the run, and the stage runs instead.
pub(crate) fn restore_run(
    ctx: &Ctx<'_>,
    stage: &Stage,
    entry: &RunEntry,
    (fp, key, from): (Option<Fingerprint>, &str, Option<String>),
    prev: Option<&Record>,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Restored> {
    let (Some(fp), Some(outputs)) = (fp, entry.outputs_for(stage)) else {
        return Ok(Restored::No(DirtyReason::NeverRun));
    };
    // What already holds the result is taken as it is (a renamed stage's
    // outputs); anything else must be the tool's to replace.
    for o in &outputs {
        let path = ctx.planner.path(&o.path);
        let same =
            matches!(ctx.planner.hashes.hash_path(&path), Ok(Some(t)) if t.hash == o.tree.hash);
        if same {
            continue;
        }
        if let Err(refusal) =
            ownership::check(ctx.planner.hashes, &stage.name, prev, &o.path, &path, true)
        {
            return failed(send, stage, Failure::Refused(refusal), None).map(Restored::Done);
        }
    }
    let mut started = Record::started(prev, &fp, &stage.outs);
    ctx.store.write_transient(&stage.name, &started)?;
    for (k, o) in outputs.iter().enumerate() {
        let staging = ctx
            .store
            .tmp_dir()
            .join(format!("restore-{}-{k}", stage.name));
        match place(ctx, o, &staging) {
            Ok(()) => {}
            Err(RestoreError::Io(e)) => return Err(e),
            Err(RestoreError::Refused(r)) => {
                return failed(send, stage, Failure::Refused(r), None).map(Restored::Done)
            }
            Err(RestoreError::Missing | RestoreError::Corrupt) => {
                let _ = remove_any(&staging);
                started.running = None;
                ctx.store.write_transient(&stage.name, &started)?;
                runs::forget(ctx.store, &entry.key)?;
                send(Event::CacheCorrupt {
                    stage: stage.name.clone(),
                    path: o.path.clone(),
                });
                return Ok(Restored::No(DirtyReason::CacheCorrupt {
                    path: o.path.clone(),
                }));
            }
        }
    }
    // Recorded under the stage's own key (its saved progress, its claims);
    // a paused training stays one.
    let mut record = Record::completed(fp, key.to_string(), outputs, entry.duration_s);
    record.paused = entry.paused;
    ctx.store.write_record(&stage.name, &record)?;
    send(Event::Restored {
        stage: stage.name.clone(),
        paths: record.outputs.iter().map(|o| o.path.clone()).collect(),
        from,
        // A remote's figure: never trusted to be a duration.
        took: std::time::Duration::try_from_secs_f64(entry.duration_s).unwrap_or_default(),
    });
    Ok(Restored::Done(Outcome::Restored(record.digest())))
}

/// Puts output `o` in place from the cache's objects, whole or not at
/// all: built in `staging`, then moved over what is there (which the
/// caller checked the tool may replace). Already in place: nothing to do.
pub(crate) fn place(
    ctx: &Ctx<'_>,
    o: &crate::state::store::Output,
    staging: &Path,
) -> std::result::Result<(), RestoreError> {
    let dest = ctx.planner.path(&o.path);
    if let Ok(Some(now)) = ctx.planner.hashes.hash_path(&dest) {
        if now.hash == o.tree.hash {
            return Ok(());
        }
    }
    let _ = remove_any(staging);
    if o.tree.is_dir {
        fs::create_dir_all(staging)
            .map_err(|e| RestoreError::Io(Error::io("create the staging directory", staging, e)))?;
    }
    for f in &o.tree.files {
        let p = if f.rel.is_empty() {
            staging.to_path_buf()
        } else {
            crate::state::store::join_inside(staging, &f.rel).ok_or(RestoreError::Missing)?
        };
        ctx.store.restore_file(&f.hash, &p, f.exec)?;
    }
    remove_path(&dest).map_err(RestoreError::Io)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| RestoreError::Io(Error::io("create the output directory", parent, e)))?;
    }
    move_into_place(staging, &dest).map_err(|e| RestoreError::Io(Error::io("restore", &dest, e)))
}

/// Restores a stage's recorded outputs from the cache. Only what is
/// missing is written; an output holding anything the stage did not write
/// is refused, never overwritten.
pub(crate) fn restore(
    ctx: &Ctx<'_>,
    stage: &Stage,
    record: &Record,
) -> std::result::Result<Vec<String>, RestoreError> {
    let mut restored = Vec::new();
    for o in &record.outputs {
        // Only where the stage declares an output: the record is a file
        // in the cache, and the cache may be shared.
        if !stage.outs.contains(&o.path) {
            return Err(RestoreError::Missing);
        }
        let stage = stage.name.as_str();
        let root = ctx.planner.path(&o.path);
        let refuse = |why| {
            RestoreError::Refused(Refusal {
                path: o.path.clone(),
                stage: stage.to_string(),
                why,
                restorable: true,
            })
        };
        let now = ctx
            .planner
            .hashes
            .hash_path(&root)
            .map_err(|e| refuse(ownership::Why::Unreadable(e.to_string())))?;
        let present: Vec<&str> = match &now {
            Some(t) if t.hash == o.tree.hash => continue,
            Some(t) => match ownership::first_foreign(&o.tree, t) {
                None => t.files.iter().map(|f| f.rel.as_str()).collect(),
                Some(f) => {
                    let file = if f.is_empty() {
                        o.path.clone()
                    } else {
                        format!("{}/{f}", o.path)
                    };
                    return Err(refuse(ownership::Why::Modified(file)));
                }
            },
            None => Vec::new(),
        };
        for f in o
            .tree
            .files
            .iter()
            .filter(|f| !present.contains(&f.rel.as_str()))
        {
            let p = if f.rel.is_empty() {
                root.clone()
            } else {
                crate::state::store::join_inside(&root, &f.rel).ok_or_else(|| {
                    refuse(ownership::Why::Modified(format!("{}/{}", o.path, f.rel)))
                })?
            };
            ctx.store.restore_file(&f.hash, &p, f.exec)?;
        }
        restored.push(o.path.clone());
    }
    Ok(restored)
}
