//! Running a stage that must run: its outputs checked, its work done in
//! a transaction through the executor, and how it failed said.

use crate::engine::board::Outcome;
use crate::engine::context::{failed, Ctx};
use crate::engine::executor::{stage_env, Executor, JobFile, Shell, StageFailure};
use crate::engine::schedule::Grant;
use crate::engine::txn::{Txn, Unproduced};
use crate::error::{Error, Result};
use crate::spec::Stage;
use crate::state::files::remove_any;
use crate::state::fingerprint::{DirtyReason, Fingerprint};
use crate::state::ownership::{self, Refusal};
use crate::state::runs;
use crate::state::store::{move_into_place, Record};
use crate::ui::events::{Event, Failure, Remedy};
use std::fs;
use std::path::{Path, PathBuf};

/// A stage that must run, as the planner and the scheduler left it.
pub(crate) struct Work<'a> {
    /// Why it runs.
    pub reason: DirtyReason,
    pub fp: Fingerprint,
    /// Its run-cache key.
    pub key: String,
    /// Its record as assessed.
    pub prev: Option<&'a Record>,
    /// What the scheduler gave it.
    pub grant: &'a Grant,
    /// Inputs with no result (a search's failed trial).
    pub no_result: &'a [String],
    /// Run whatever its saved state says.
    pub force: bool,
    /// Pause after this many epochs (a search's trial).
    pub stop_after: Option<usize>,
    /// Where it is offered more threads.
    pub grow: Option<PathBuf>,
}

/// Runs a stage in a transaction: begun once its outputs may be replaced,
/// committed once its work succeeded, aborted otherwise.
pub(crate) fn run_stage(
    ctx: &Ctx<'_>,
    stage: &Stage,
    work: Work<'_>,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    let Work {
        reason,
        fp,
        key,
        prev,
        grant,
        no_result,
        force,
        stop_after,
        grow,
    } = work;
    // The tool only replaces what it can show it wrote.
    if let Err(refusal) = check_outputs(ctx, stage, prev) {
        return failed(send, stage, Failure::Refused(refusal), None);
    }
    send(Event::Started {
        stage: stage.name.clone(),
        reason,
        threads: (stage.kind.parallel() && stage.kind.is_builtin()).then_some(grant.cpus),
        gpus: grant.gpus.clone(),
    });
    let project = &ctx.pipeline.settings.project_dir;
    let resume_key = key.clone();
    let mut txn = Txn::begin(ctx.store, ctx.planner.hashes, project, stage, fp, key, prev)?;
    // A saved training state is taken up only by a run with the same
    // fingerprint, and never when the stage is forced.
    let resume = txn.resume_dir(force)?;
    let epochs = stage
        .params
        .get("epochs")
        .and_then(serde_json::Value::as_u64);
    if stop_after.is_some_and(|s| epochs.is_some_and(|e| (s as u64) < e)) {
        txn.keep_progress();
    }
    let result = execute_stage(
        ctx,
        stage,
        prev,
        (grant, no_result),
        (resume.as_deref(), stop_after, grow.as_deref()),
        send,
    );
    if let Some(g) = &grow {
        let _ = fs::remove_file(g);
    }
    if let Err(e) = result {
        if ctx.running.stopping() {
            // Stopped by a signal: left for the next run to take up; the
            // signal thread exits once this run has reported.
            txn.leave();
            send(Event::Interrupted {
                stage: stage.name.clone(),
                resume: ctx.planner.resume_point(stage, &resume_key),
            });
            return Ok(Outcome::Interrupted);
        }
        txn.abort()?;
        return stage_failed(ctx, stage, e, send);
    }
    // What the training did, not what it was asked: a trial that stopped
    // early before its rung has finished.
    if stop_after.is_some() {
        let dir = ctx.planner.path(&stage.outs[0]);
        if let Some((accs, false)) = stages::train::progress_of(&dir) {
            txn.paused_after(accs.len());
        }
    }
    match txn.commit()? {
        Ok(done) => {
            send(Event::Finished {
                stage: stage.name.clone(),
                elapsed: done.elapsed,
            });
            Ok(Outcome::Ran(done.digest))
        }
        Err(Unproduced::Missing(output)) => failed(
            send,
            stage,
            Failure::NotProduced { output },
            Some(ctx.store.log_path(&stage.name)),
        ),
        Err(Unproduced::Unreadable { path, error }) => failed(
            send,
            stage,
            Failure::OutputUnreadable {
                output: path,
                error,
            },
            None,
        ),
    }
}

/// How a stage's work failed, said with its log where it has one; a full
/// disk or an environment error stops the run instead.
fn stage_failed(
    ctx: &Ctx<'_>,
    stage: &Stage,
    e: StageFailure,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    let log = Some(ctx.store.log_path(&stage.name));
    let (failure, tail, log) = match e {
        StageFailure::Cmd(stages::cmd::CmdError::Exit { status, tail }) => {
            if let Some(full) = full_disk(ctx, stage) {
                return Err(Error::DiskFull {
                    path: full,
                    during: format!("stage {} failed", stage.name),
                });
            }
            let how = stages::cmd::CmdError::Exit {
                status,
                tail: String::new(),
            }
            .to_string();
            (Failure::Command { how }, Some(tail), log)
        }
        StageFailure::Cmd(other) => (
            Failure::Error {
                chain: crate::error::chain(&other),
            },
            None,
            None,
        ),
        StageFailure::Kind(stages::StageError::InputCorrupt { path, problem }) => {
            let remedy = invalidate_producer(ctx, stage, &path, &problem)?;
            let shown = path
                .strip_prefix(&ctx.pipeline.settings.project_dir)
                .unwrap_or(&path);
            (
                Failure::InputCorrupt {
                    path: shown.display().to_string(),
                    problem,
                    remedy,
                },
                None,
                None,
            )
        }
        StageFailure::Kind(stages::StageError::Io {
            action,
            path,
            source,
        }) if is_disk_full(&source) => {
            return Err(Error::io(action, path, source));
        }
        StageFailure::Kind(e) => {
            if let Some(full) = full_disk(ctx, stage) {
                return Err(Error::DiskFull {
                    path: full,
                    during: format!("stage {} failed: {}", stage.name, crate::error::chain(&e)),
                });
            }
            (
                Failure::Error {
                    chain: crate::error::chain(&e),
                },
                None,
                None,
            )
        }
        StageFailure::Refused(r) => (Failure::Refused(r), None, None),
        StageFailure::Crashed { how, tail } => (Failure::Crashed { how }, Some(tail), log),
        StageFailure::Job { failure, tail } => (
            Failure::Job(failure),
            (!tail.is_empty()).then_some(tail),
            log,
        ),
        StageFailure::Env(e) => return Err(e),
    };
    send(Event::Failed {
        stage: stage.name.clone(),
        failure,
        tail,
        log,
    });
    Ok(Outcome::Failed)
}

/// Every declared output of `stage` may be removed or replaced.
pub(crate) fn check_outputs(
    ctx: &Ctx<'_>,
    stage: &Stage,
    prev: Option<&Record>,
) -> Result<(), Refusal> {
    for o in &stage.outs {
        let restorable = prev
            .and_then(|r| r.outputs.iter().find(|x| x.path == *o))
            .is_some_and(|x| x.tree.files.iter().all(|f| ctx.store.has_object(&f.hash)));
        ownership::check(
            ctx.planner.hashes,
            &stage.name,
            prev,
            o,
            &ctx.planner.path(o),
            restorable,
        )?;
    }
    Ok(())
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The first of the places stages write to whose file system has no room
/// left, if any: a stage that failed there most likely failed for that.
fn full_disk(ctx: &Ctx<'_>, stage: &Stage) -> Option<PathBuf> {
    let project = &ctx.pipeline.settings.project_dir;
    let mut places = vec![
        ctx.store.tmp_dir(),
        project.join(&ctx.pipeline.settings.outputs),
        project.to_path_buf(),
    ];
    // Where the stage's own outputs go (the nearest existing directory).
    for o in &stage.outs {
        let mut p = project.join(o);
        while !p.is_dir() && p.pop() {}
        places.push(p);
    }
    places.into_iter().find(|p| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statvfs fills the struct we own; the path is a C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_bavail == 0 }
    })
}

/// A kind found a file of an upstream output corrupt. Its producer must
/// not count as fresh: the file is checked again without the stat cache;
/// if it no longer holds what the producer wrote, it is moved to the
/// cache's quarantine (kept, not deleted) so the producer's own version is
/// restored; otherwise the producer's record is invalidated so it reruns.
/// Returns what the user is told.
fn invalidate_producer(ctx: &Ctx<'_>, stage: &Stage, path: &Path, problem: &str) -> Result<Remedy> {
    let project = &ctx.pipeline.settings.project_dir;
    let producer = stage
        .needs
        .iter()
        .map(|&j| &ctx.pipeline.stages[j])
        .find_map(|s| {
            s.outs
                .iter()
                .find(|o| path.starts_with(project.join(o)))
                .map(|o| (s, o))
        });
    let Some((producer, out)) = producer else {
        return Ok(Remedy::NotAnOutput);
    };
    let out_path = project.join(out);
    ctx.planner.hashes.forget(&out_path);
    let record = ctx.store.record(&producer.name).ok().flatten();
    // The file as the producer recorded it, and as it is now.
    let rel = path
        .strip_prefix(&out_path)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    let recorded = record
        .as_ref()
        .and_then(|r| r.outputs.iter().find(|o| o.path == *out))
        .and_then(|o| o.tree.files.iter().find(|f| f.rel == rel))
        .map(|f| f.hash.clone());
    let now = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => ctx.planner.hashes.hash_file(path, &m).ok(),
        _ => None,
    };
    match (now, recorded) {
        // Another stage moved it to the quarantine meanwhile.
        (None, Some(_)) => Ok(Remedy::MovedAway {
            producer: producer.name.clone(),
        }),
        (Some(now), Some(rec)) if now != rec => {
            let to = quarantine(ctx, &producer.name, project, path)?;
            Ok(Remedy::Quarantined {
                producer: producer.name.clone(),
                to,
            })
        }
        _ => {
            let why = format!(
                "{} found {} corrupt ({problem})",
                stage.name,
                path.strip_prefix(project).unwrap_or(path).display()
            );
            ctx.store.invalidate(&producer.name, &why)?;
            // Nor may the run cache hand the same bytes back.
            if let Some(key) = record.as_ref().and_then(|r| r.key.as_deref()) {
                runs::forget(ctx.store, key)?;
            }
            Ok(Remedy::ProducerStale {
                producer: producer.name.clone(),
            })
        }
    }
}

/// Moves `path` under `cache/quarantine/<time>-<stage>/`, keeping its
/// place relative to the project.
fn quarantine(ctx: &Ctx<'_>, stage: &str, project: &Path, path: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rel = path.strip_prefix(project).unwrap_or(path);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let dest = ctx
        .store
        .home()
        .join("quarantine")
        .join(format!("{secs}-{stage}"))
        .join(rel);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the quarantine directory", parent, e))?;
    }
    move_into_place(path, &dest).map_err(|e| Error::io("move into quarantine", path, e))?;
    Ok(dest)
}

pub(crate) fn remove_path(path: &Path) -> Result<(), Error> {
    remove_any(path).map_err(|e| Error::io("remove the old output", path, e))
}

pub(crate) fn execute_stage(
    ctx: &Ctx<'_>,
    stage: &Stage,
    prev: Option<&Record>,
    (grant, no_result): (&Grant, &[String]),
    (resume, stop_after, grow): (Option<&Path>, Option<usize>, Option<&Path>),
    send: &(dyn Fn(Event) + Sync),
) -> Result<(), StageFailure> {
    let project = &ctx.pipeline.settings.project_dir;
    for o in stage.outs.iter().filter(|_| !stage.kind.is_builtin()) {
        let path = project.join(o);
        remove_path(&path).map_err(StageFailure::Env)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                StageFailure::Env(Error::io("create the output directory", parent, e))
            })?;
        }
    }
    let log = ctx.store.log_path(&stage.name);
    if let Some(cmd) = &stage.cmd {
        let shell = Shell {
            stage: &stage.name,
            cmd,
            dir: project,
            env: stage_env(stage, grant, ctx.live.as_deref()),
            log: &log,
            resources: &stage.resources,
            slurm: &stage.slurm,
        };
        return ctx.executor.run_shell(&shell, grant, send);
    }
    // A built-in kind writes into staging; its output appears whole or not at all.
    let staging = ctx
        .store
        .tmp_dir()
        .join(format!("stage-{}-{}", std::process::id(), stage.name));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)
        .map_err(|e| StageFailure::Env(Error::io("create the staging directory", &staging, e)))?;
    let inputs: Vec<stages::Input> = stage
        .needs
        .iter()
        .map(|&j| {
            let s = &ctx.pipeline.stages[j];
            stages::Input {
                stage: s.name.clone(),
                kind: s.kind,
                paths: s.outs.iter().map(|o| project.join(o)).collect(),
                predictions: s.predictions.as_ref().map(|p| project.join(p)),
                failed: no_result.contains(&s.name),
            }
        })
        .collect();
    let job = stages::job::Job {
        stage: stage.name.clone(),
        kind: stage.kind,
        project_dir: project.clone(),
        params: stage.params.clone(),
        inputs,
        out_dir: staging.clone(),
        threads: grant.cpus,
        resume: resume.map(Path::to_path_buf),
        stop_after,
        grow: grow.map(Path::to_path_buf),
        device: stage.device.clone(),
        run: stage.kind.describes_run().then(|| {
            ctx.run_info
                .get_or_init(|| {
                    let executor = match ctx.executor {
                        Executor::Slurm(_) => "slurm",
                        _ => "local",
                    };
                    crate::state::history::describe_run(
                        ctx.pipeline,
                        ctx.started_unix,
                        ctx.jobs,
                        executor,
                    )
                })
                .clone()
        }),
    };
    let job_path = ctx.store.job_path(&stage.name);
    let bytes = serde_json::to_vec(&job).map_err(|e| {
        StageFailure::Env(Error::Internal(format!("the job of {}: {e}", stage.name)))
    })?;
    crate::state::files::write_atomic(&job_path, &bytes)
        .map_err(|e| StageFailure::Env(Error::io("write the job description", &job_path, e)))?;
    let file = JobFile {
        job: &job,
        path: &job_path,
        log: &log,
        env: stage_env(stage, grant, ctx.live.as_deref()),
        resources: &stage.resources,
        slurm: &stage.slurm,
    };
    let result = ctx.executor.run_job(&file, grant, send);
    let _ = fs::remove_file(&job_path);
    result?;
    // Checked again: the old output may have been edited while the stage ran.
    check_outputs(ctx, stage, prev).map_err(StageFailure::Refused)?;
    let dest = project.join(&stage.outs[0]);
    remove_path(&dest).map_err(StageFailure::Env)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| StageFailure::Env(Error::io("create the output directory", parent, e)))?;
    }
    move_into_place(&staging, &dest)
        .map_err(|e| StageFailure::Env(Error::io("move the output into place", &dest, e)))
}
