//! Runs stale stages in dependency order, independent ones in parallel.

use crate::error::{Error, Result};
use crate::events::{Event, Summary};
use crate::fingerprint::DirtyReason;
use crate::graph::Dag;
use crate::hash::HashCache;
use crate::plan::{Fp, Planner, State};
use crate::spec::{Pipeline, Stage};
use crate::store::{move_into_place, outputs_digest, Output, Record, RestoreError, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub targets: Vec<String>,
    pub force: Vec<String>,
    pub force_all: bool,
    pub keep_going: bool,
    pub jobs: Option<usize>,
}

enum Outcome {
    Cached(String),
    Restored(String),
    Ran(String),
    Failed,
}

enum Msg {
    Event(Event),
    Done(usize, Result<Outcome>),
}

struct Ctx<'a> {
    planner: Planner<'a>,
    pipeline: &'a Pipeline,
    store: &'a Store,
}

/// Runs the targets (all stages when none) and what they need. The caller
/// holds the cache lock. Errors are environment errors (I/O, the cache);
/// stage failures are reported as events and counted in the summary.
pub fn run(
    pipeline: &Pipeline,
    dag: &Dag,
    store: &Store,
    hashes: &HashCache,
    opts: &RunOptions,
    report: &mut dyn FnMut(Event),
) -> Result<Summary> {
    let start = Instant::now();
    let n = pipeline.stages.len();
    let targets = if opts.targets.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(&opts.targets)?
    };
    let mask = dag.closure(pipeline, &targets);
    let mut forced = vec![opts.force_all; n];
    for i in pipeline.select(&opts.force)? {
        forced[i] = true;
    }
    store.prepare()?;
    let jobs = opts.jobs.unwrap_or(pipeline.settings.jobs).max(1);
    let slots_of = |s: &Stage| {
        s.threads
            .unwrap_or(if s.kind.is_builtin() { jobs } else { 1 })
            .clamp(1, jobs)
    };

    let mut pending: Vec<usize> = vec![0; n];
    for i in 0..n {
        if mask[i] {
            pending[i] = pipeline.stages[i].needs.len();
        }
    }
    let pos: Vec<usize> = {
        let mut p = vec![0; n];
        for (k, &i) in dag.order().iter().enumerate() {
            p[i] = k;
        }
        p
    };
    let mut ready: BTreeSet<(usize, usize)> = (0..n)
        .filter(|&i| mask[i] && pending[i] == 0)
        .map(|i| (pos[i], i))
        .collect();
    let mut digests: Vec<Option<String>> = vec![None; n];
    let mut done = vec![false; n];
    let mut summary = Summary::default();
    report(Event::Planned {
        total: mask.iter().filter(|&&m| m).count(),
    });

    let ctx = Ctx {
        planner: Planner {
            pipeline,
            store,
            hashes,
        },
        pipeline,
        store,
    };
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut free = jobs;
    let mut running = 0usize;
    let mut stop = false;
    let mut env_error: Option<Error> = None;
    std::thread::scope(|scope| {
        loop {
            // After a failure (without --keep-going) nothing new starts.
            while let Some(&(p, i)) = ready
                .iter()
                .find(|&&(_, i)| !stop && slots_of(&pipeline.stages[i]) <= free)
            {
                ready.remove(&(p, i));
                let slots = slots_of(&pipeline.stages[i]);
                free -= slots;
                running += 1;
                let inputs: BTreeMap<String, String> = pipeline.stages[i]
                    .needs
                    .iter()
                    .map(|&j| {
                        (
                            pipeline.stages[j].name.clone(),
                            digests[j].clone().unwrap_or_default(),
                        )
                    })
                    .collect();
                let tx = tx.clone();
                let ctx = &ctx;
                let force = forced[i];
                scope.spawn(move || {
                    let send = |e: Event| {
                        let _ = tx.send(Msg::Event(e));
                    };
                    let r = process(ctx, i, inputs, force, slots, &send);
                    let _ = tx.send(Msg::Done(i, r));
                });
            }
            if running == 0 {
                break;
            }
            let Ok(msg) = rx.recv() else { break };
            match msg {
                Msg::Event(e) => report(e),
                Msg::Done(i, result) => {
                    running -= 1;
                    free += slots_of(&pipeline.stages[i]);
                    done[i] = true;
                    let digest = match result {
                        Ok(Outcome::Cached(d)) => {
                            summary.cached += 1;
                            Some(d)
                        }
                        Ok(Outcome::Restored(d)) => {
                            summary.restored += 1;
                            Some(d)
                        }
                        Ok(Outcome::Ran(d)) => {
                            summary.ran += 1;
                            Some(d)
                        }
                        Ok(Outcome::Failed) => None,
                        Err(e) => {
                            // The cache or workspace failed us: stop cleanly.
                            report(Event::Failed {
                                stage: pipeline.stages[i].name.clone(),
                                error: e.to_string(),
                                tail: None,
                                log: None,
                            });
                            env_error.get_or_insert(e);
                            stop = true;
                            None
                        }
                    };
                    match digest {
                        Some(d) => {
                            digests[i] = Some(d);
                            summary.done.insert(pipeline.stages[i].name.clone());
                            for c in dag.dependents(i) {
                                if mask[c] {
                                    pending[c] -= 1;
                                    if pending[c] == 0 {
                                        ready.insert((pos[c], c));
                                    }
                                }
                            }
                        }
                        None => {
                            summary.failed += 1;
                            if !opts.keep_going {
                                stop = true;
                            }
                            // Everything downstream of a failure is skipped.
                            let mut stack: Vec<usize> = dag.dependents(i).collect();
                            while let Some(c) = stack.pop() {
                                if mask[c] && !done[c] {
                                    done[c] = true;
                                    summary.skipped += 1;
                                    ready.retain(|&(_, r)| r != c);
                                    report(Event::Skipped {
                                        stage: pipeline.stages[c].name.clone(),
                                        because: pipeline.stages[i].name.clone(),
                                    });
                                    stack.extend(dag.dependents(c));
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    summary.not_started = (0..n).filter(|&i| mask[i] && !done[i]).count();
    summary.wall = start.elapsed();
    hashes.save();
    match env_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Decides and does what one stage needs: nothing, a restore, or a run.
fn process(
    ctx: &Ctx<'_>,
    i: usize,
    inputs: BTreeMap<String, String>,
    force: bool,
    threads: usize,
    send: &(dyn Fn(Event) + Sync),
) -> Result<Outcome> {
    let stage = &ctx.pipeline.stages[i];
    let input_list: Vec<(String, Option<String>)> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let a = ctx.planner.assess(i, &input_list)?;
    let mut reason = match (&a.state, force) {
        (State::New, _) => "never run".to_string(),
        (_, true) => DirtyReason::Forced.to_string(),
        (State::Fresh, false) => {
            send(Event::Cached {
                stage: stage.name.clone(),
            });
            return Ok(Outcome::Cached(a.digest.unwrap_or_default()));
        }
        (State::Dirty(r), false) => r.to_string(),
    };
    if let (State::Dirty(r), false, Some(record)) = (&a.state, force, &a.record) {
        if r.restorable() {
            match restore(ctx, record) {
                Ok(paths) => {
                    send(Event::Restored {
                        stage: stage.name.clone(),
                        paths,
                    });
                    return Ok(Outcome::Restored(record.outputs_digest()));
                }
                Err(RestoreError::Io(e)) => return Err(e),
                Err(RestoreError::Missing | RestoreError::Corrupt) => {
                    let path = match r {
                        DirtyReason::OutputMissing { path, .. }
                        | DirtyReason::OutputModified { path, .. } => path.clone(),
                        _ => String::new(),
                    };
                    send(Event::CacheCorrupt {
                        stage: stage.name.clone(),
                        path: path.clone(),
                    });
                    reason = DirtyReason::CacheCorrupt(path).to_string();
                }
            }
        }
    }
    send(Event::Started {
        stage: stage.name.clone(),
        reason,
    });
    let t0 = Instant::now();
    ctx.store.mark_incomplete(&stage.name)?;
    let fp = match ctx.planner.fingerprint(stage, inputs)? {
        Fp::Ok(fp) => fp,
        Fp::DepMissing(d) => {
            send(Event::Failed {
                stage: stage.name.clone(),
                error: format!("dep {d} does not exist; create it, or declare the stage that produces it as an output"),
                tail: None,
                log: None,
            });
            return Ok(Outcome::Failed);
        }
    };
    if let Err(e) = execute_stage(ctx, stage, threads, send) {
        let (error, tail, log) = match e {
            StageFailure::Cmd(stages::cmd::CmdError::Exit { status, tail }) => (
                stages::cmd::CmdError::Exit {
                    status,
                    tail: String::new(),
                }
                .to_string(),
                Some(tail),
                Some(ctx.store.log_path(&stage.name)),
            ),
            StageFailure::Cmd(other) => (other.to_string(), None, None),
            StageFailure::Kind(e) => (e.to_string(), None, None),
            StageFailure::Env(e) => return Err(e),
        };
        send(Event::Failed {
            stage: stage.name.clone(),
            error,
            tail,
            log,
        });
        return Ok(Outcome::Failed);
    }
    // Check and store what the stage produced.
    let mut outputs = Vec::with_capacity(stage.outs.len());
    for o in &stage.outs {
        let path = ctx.planner.path(o);
        match ctx
            .planner
            .hashes
            .hash_path(&path)
            .map_err(|e| Error::io("hash the output", &path, e))?
        {
            Some(tree) => outputs.push(Output {
                path: o.clone(),
                tree,
            }),
            None => {
                send(Event::Failed {
                    stage: stage.name.clone(),
                    error: format!("the stage succeeded but did not produce its output {o}"),
                    tail: None,
                    log: Some(ctx.store.log_path(&stage.name)),
                });
                return Ok(Outcome::Failed);
            }
        }
    }
    for o in &outputs {
        let root = ctx.planner.path(&o.path);
        for f in &o.tree.files {
            let p = if f.rel.is_empty() {
                root.clone()
            } else {
                root.join(&f.rel)
            };
            ctx.store.store_file(&p, &f.hash)?;
        }
    }
    let record = Record {
        complete: true,
        hash: fp.hash(),
        fingerprint: fp,
        duration_s: t0.elapsed().as_secs_f64(),
        outputs,
    };
    ctx.store.write_record(&stage.name, &record)?;
    send(Event::Finished {
        stage: stage.name.clone(),
        elapsed: t0.elapsed(),
    });
    Ok(Outcome::Ran(outputs_digest(&record.outputs)))
}

enum StageFailure {
    Cmd(stages::cmd::CmdError),
    Kind(stages::StageError),
    Env(Error),
}

fn remove_path(path: &Path) -> Result<(), Error> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    r.map_err(|e| Error::io("remove the old output", path, e))
}

fn execute_stage(
    ctx: &Ctx<'_>,
    stage: &Stage,
    threads: usize,
    send: &(dyn Fn(Event) + Sync),
) -> Result<(), StageFailure> {
    let project = &ctx.pipeline.settings.project_dir;
    // A cmd stage's old outputs go first, so one it fails to write is
    // caught. A built-in kind's output is replaced only once the new one is
    // whole (below), so a failure leaves the last good one in place.
    for o in stage.outs.iter().filter(|_| !stage.kind.is_builtin()) {
        let path = project.join(o);
        remove_path(&path).map_err(StageFailure::Env)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                StageFailure::Env(Error::io("create the output directory", parent, e))
            })?;
        }
    }
    if let Some(cmd) = &stage.cmd {
        let env = [
            ("FMNIST_PIPE_STAGE", stage.name.clone()),
            (
                "FMNIST_PIPE_VARIANT",
                stage.variant.clone().unwrap_or_default(),
            ),
            ("FMNIST_PIPE_THREADS", threads.to_string()),
        ];
        return stages::cmd::run_shell(cmd, project, &env, &ctx.store.log_path(&stage.name))
            .map_err(StageFailure::Cmd);
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
            }
        })
        .collect();
    let name = stage.name.clone();
    let progress = move |p: stages::Progress| {
        send(Event::Progress {
            stage: name.clone(),
            message: p.message,
            fraction: p.fraction,
        })
    };
    let rc = stages::RunContext {
        stage: &stage.name,
        project_dir: project,
        params: &stage.params,
        inputs: &inputs,
        out_dir: &staging,
        threads,
        device: stage.device.as_deref(),
        progress: &progress,
    };
    stage.kind.run(&rc).map_err(StageFailure::Kind)?;
    let dest = project.join(&stage.outs[0]);
    remove_path(&dest).map_err(StageFailure::Env)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| StageFailure::Env(Error::io("create the output directory", parent, e)))?;
    }
    move_into_place(&staging, &dest)
        .map_err(|e| StageFailure::Env(Error::io("move the output into place", &dest, e)))
}

fn restore(ctx: &Ctx<'_>, record: &Record) -> std::result::Result<Vec<String>, RestoreError> {
    let mut restored = Vec::new();
    for o in &record.outputs {
        let root = ctx.planner.path(&o.path);
        let now = ctx
            .planner
            .hashes
            .hash_path(&root)
            .map_err(|e| RestoreError::Io(Error::io("hash the output", &root, e)))?;
        if now.as_ref().is_some_and(|t| t.hash == o.tree.hash) {
            continue;
        }
        if o.tree.is_dir {
            remove_path(&root).map_err(RestoreError::Io)?;
        }
        for f in &o.tree.files {
            let p = if f.rel.is_empty() {
                root.clone()
            } else {
                root.join(&f.rel)
            };
            ctx.store.restore_file(&f.hash, &p, f.exec)?;
        }
        restored.push(o.path.clone());
    }
    Ok(restored)
}
