//! `push`: the results of fresh stages, sent to a remote.

use crate::engine::plan::{Planner, State};
use crate::error::{exit, Error, Result};
use crate::spec::graph::Dag;
use crate::spec::Pipeline;
use crate::state::hash::HashCache;
use crate::state::remote::{Pushed, Remote};
use crate::state::runs::{self, RunEntry};
use crate::state::store::Store;
use crate::ui::reporter::Reporter;

pub fn run(
    pipeline: &Pipeline,
    dag: &Dag,
    reporter: &mut Reporter,
    targets: &[String],
    remote: Option<&str>,
) -> Result<i32> {
    let remote = Remote::open(&pipeline.settings, remote)?;
    let store = Store::open(&pipeline.settings);
    let n = pipeline.stages.len();
    let mask = if targets.is_empty() {
        vec![true; n]
    } else {
        dag.closure(pipeline, &pipeline.select(targets)?)
    };
    let _share = store.share()?;
    let hashes = HashCache::load(store.home().join("hashes.json"));
    let planner = Planner {
        pipeline,
        store: &store,
        hashes: &hashes,
    };
    let assessed = planner.assess_all(dag.order(), &mask, &vec![false; n])?;
    let mut entries = Vec::new();
    let mut stale = Vec::new();
    for &i in dag.order() {
        let Some(a) = &assessed[i] else { continue };
        let stage = &pipeline.stages[i];
        match (&a.state, &a.record, &a.key) {
            (State::Fresh, Some(r), Some(key)) => {
                // A paused trial goes under its own key.
                let key = r.run_key().unwrap_or_else(|| key.clone());
                // A damaged entry is made again from the record.
                entries.push(runs::read(&store, &key).ok().flatten().unwrap_or_else(|| {
                    let mut e = RunEntry::new(
                        key.clone(),
                        &stage.name,
                        r.fingerprint.clone(),
                        r.outputs.clone(),
                        r.duration_s,
                    );
                    e.paused = r.paused;
                    e
                }))
            }
            (state, _, _) => stale.push((stage.name.clone(), state.why())),
        }
    }
    // Stages asked for by name must all be fresh: a partial push would
    // leave a colleague's pull short of what it needs.
    if !targets.is_empty() {
        if let Some((stage, why)) = stale.first() {
            let why = why.as_ref().map(|w| w.to_string()).unwrap_or_default();
            return Err(Error::Usage(format!(
                "{stage} is not fresh ({why}), so it has no result to push\n  help: run `fmnist-pipe run {stage}` first"
            )));
        }
    }
    let mut results = Vec::new();
    for e in &entries {
        let pushed = remote.push(&store, e)?;
        reporter.pushed(&remote.name, &e.stage, &pushed);
        results.push(pushed);
    }
    reporter.push_summary(&remote.name, &results, stale.len());
    Ok(
        if results.iter().any(|r| matches!(r, Pushed::Incomplete(_))) {
            exit::ENVIRONMENT
        } else {
            exit::OK
        },
    )
}
