//! A confirm stage's finalists: once its search has a result (the
//! report's `search.json`, of the search the pipeline declares now), the
//! confirm stage is given its trainings and evaluations. Resolving the
//! pipeline reads no outputs; this is where they are read.

use crate::error::Result;
use crate::spec::graph::Dag;
use crate::spec::{Pipeline, Stage};
use stages::search::{identity, SearchResult, SEARCH_FILE};

/// `resolved` with each confirm stage whose search has a result given its
/// finalists, and its graph.
pub fn expand(resolved: &Pipeline) -> Result<(Pipeline, Dag)> {
    let mut pipeline = resolved.clone();
    for plan in &resolved.confirms {
        let report = &resolved.stages[resolved.searches[plan.search].report];
        if let Some(found) = result_of(resolved, report) {
            crate::spec::confirm::finalize(&mut pipeline, plan, &found);
        }
    }
    let dag = Dag::build(&pipeline)?;
    Ok((pipeline, dag))
}

/// The result a search's report stage wrote, if it is of the search the
/// pipeline declares now (an edited search waits to be run again).
fn result_of(pipeline: &Pipeline, report: &Stage) -> Option<SearchResult> {
    let out = report.outs.first()?;
    let bytes = std::fs::read(pipeline.settings.project_dir.join(out).join(SEARCH_FILE)).ok()?;
    serde_json::from_slice::<SearchResult>(&bytes)
        .ok()
        .filter(|r| r.identity == identity(&report.params))
}
