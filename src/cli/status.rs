//! `status`: each stage, fresh or why not.

use crate::engine::plan::Planner;
use crate::error::{exit, Result};
use crate::spec::graph::Dag;
use crate::spec::Pipeline;
use crate::state::fingerprint::DirtyReason;
use crate::state::hash::HashCache;
use crate::state::store::Store;
use crate::ui::reporter::{Reporter, RowState, StatusRow};

pub fn run(
    pipeline: &Pipeline,
    dag: &Dag,
    reporter: &mut Reporter,
    stages: &[String],
    json: &bool,
) -> Result<i32> {
    let mut rows = status_rows(pipeline, dag, stages, &[], false)?;
    if stages.is_empty() {
        rows.extend(orphan_rows(pipeline));
    }
    reporter.status(&rows, *json);
    if !*json {
        reporter.measured(&measured_warnings(pipeline));
    }
    Ok(exit::OK)
}

/// Stages whose last measured run came close to, or over, what they
/// declare (the declarations as the pipeline says them now).
pub(super) fn measured_warnings(pipeline: &Pipeline) -> Vec<(String, String)> {
    let wants_it =
        |s: &&crate::spec::Stage| s.resources.mem_mb.is_some() || s.resources.time.is_some();
    if !pipeline.stages.iter().any(|s| wants_it(&s)) {
        return Vec::new();
    }
    let store = Store::open(&pipeline.settings);
    let last = crate::live::trace::last_measured(store.home());
    let mut out = Vec::new();
    for s in pipeline.stages.iter().filter(wants_it) {
        let Some(e) = last.get(&s.name) else { continue };
        let mut e = e.clone();
        e.mem_mb = s.resources.mem_mb;
        e.time_s = s.resources.time.map(|t| t.0);
        for w in crate::live::trace::warnings(&e) {
            out.push((s.name.clone(), w));
        }
    }
    out
}

/// Stages with a record that the pipeline no longer declares.
pub(super) fn orphan_rows(pipeline: &Pipeline) -> Vec<StatusRow> {
    let store = Store::open(&pipeline.settings);
    crate::state::gc::orphans(pipeline, &store)
        .into_iter()
        .map(|name| {
            let record = store.record(&name).ok().flatten();
            let kind = record
                .as_ref()
                .and_then(|r| {
                    stages::Kind::ALL
                        .iter()
                        .find(|k| k.name() == r.fingerprint.kind)
                })
                .map_or("unknown", |k| k.name());
            let outs: Vec<String> = record
                .map(|r| r.outputs.into_iter().map(|o| o.path).collect())
                .unwrap_or_default();
            StatusRow {
                stage: name,
                state: RowState::Orphaned,
                why: Some(DirtyReason::Orphaned { outputs: outs }),
                kind,
                values: None,
            }
        })
        .collect()
}

/// A search trial's values, and where a fresh one stopped short.
fn trial_values(pipeline: &Pipeline, i: usize, state: RowState) -> Option<String> {
    let plan = pipeline.searches.iter().find(|x| x.trials.contains(&i))?;
    let s = &pipeline.stages[i];
    let values = s.desc.clone().unwrap_or_default();
    let dir = pipeline.settings.project_dir.join(s.outs.first()?);
    match stages::train::progress_of(&dir).filter(|_| state == RowState::Fresh) {
        Some((acc, false)) => Some(format!(
            "stopped by the search at epoch {}/{}; {values}",
            acc.len(),
            plan.epochs
        )),
        _ => Some(values),
    }
}

/// The plan as rows, in dependency order. Read-only: takes no lock and
/// creates nothing (records are replaced atomically, so reading while a run
/// writes is safe).
pub(super) fn status_rows(
    pipeline: &Pipeline,
    dag: &Dag,
    targets: &[String],
    force: &[String],
    force_all: bool,
) -> Result<Vec<StatusRow>> {
    let n = pipeline.stages.len();
    let mask = if targets.is_empty() {
        vec![true; n]
    } else {
        dag.closure(pipeline, &pipeline.select(targets)?)
    };
    let mut forced = vec![force_all; n];
    for i in pipeline.select(force)? {
        forced[i] = true;
    }
    let store = Store::open(&pipeline.settings);
    let hashes = HashCache::load(store.home().join("hashes.json"));
    let planner = Planner {
        pipeline,
        store: &store,
        hashes: &hashes,
    };
    let assessed = planner.assess_all(dag.order(), &mask, &forced)?;
    if store.home().is_dir() {
        hashes.save();
    }
    Ok(dag
        .order()
        .iter()
        .filter_map(|&i| {
            let a = assessed[i].as_ref()?;
            let s = &pipeline.stages[i];
            Some(StatusRow {
                stage: s.name.clone(),
                state: a.state.row_state(),
                why: a.state.why(),
                kind: s.kind.name(),
                values: trial_values(pipeline, i, a.state.row_state()),
            })
        })
        .collect())
}
