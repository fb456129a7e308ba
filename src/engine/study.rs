//! A run in two phases where confirm stages wait for searches: the
//! searches first, then everything asked, with the finalists the
//! searches' results give (Snakemake's checkpoints work so).

use crate::engine::run::RunOptions;
use crate::error::Result;
use crate::spec::graph::Dag;
use crate::spec::Pipeline;
use crate::state::hash::HashCache;
use crate::state::store::Store;
use crate::ui::events::{Event, Summary};

/// How a study's run went, and the pipeline it ended with when its
/// confirm stages were given new finalists.
pub struct Study {
    pub summary: Summary,
    pub expanded: Option<(Pipeline, Dag)>,
}

/// Runs `opts`' targets of `pipeline` (`resolved` given the finalists
/// known now): first the searches the covered confirm stages wait for,
/// then, with their results, everything asked.
pub fn run(
    resolved: &Pipeline,
    (pipeline, dag): (&Pipeline, &Dag),
    store: &Store,
    hashes: &HashCache,
    opts: &RunOptions,
    report: &mut dyn FnMut(Event),
) -> Result<Study> {
    let searches = searches_first(pipeline, dag, &opts.targets)?;
    if searches.is_empty() || opts.only_pull {
        let summary = crate::engine::run::run(pipeline, dag, store, hashes, opts, report)?;
        return Ok(Study {
            summary,
            expanded: None,
        });
    }
    let first = RunOptions {
        targets: searches,
        ..opts.clone()
    };
    let s1 = crate::engine::run::run(pipeline, dag, store, hashes, &first, report)?;
    // With --keep-going a search with a failed trial goes on to its
    // confirm (the trial is not run twice).
    if (s1.failed > 0 && !opts.keep_going) || s1.interrupted > 0 || opts.running.stopping() {
        return Ok(Study {
            summary: s1,
            expanded: None,
        });
    }
    let (p2, d2) = crate::engine::finalists::expand(resolved)?;
    let second = RunOptions {
        failed_before: s1.failed_stages.clone(),
        ..opts.clone()
    };
    let s2 = crate::engine::run::run(&p2, &d2, store, hashes, &second, report)?;
    Ok(Study {
        summary: merge(s1, s2),
        expanded: Some((p2, d2)),
    })
}

/// Two phases' summaries as one: what the first ran, the second finds fresh.
fn merge(a: Summary, b: Summary) -> Summary {
    let again = a.ran + a.restored;
    Summary {
        ran: a.ran + b.ran,
        cached: b.cached.saturating_sub(again),
        restored: a.restored + b.restored,
        failed: a.failed + b.failed,
        skipped: a.skipped + b.skipped,
        not_pulled: a.not_pulled + b.not_pulled,
        not_started: b.not_started,
        interrupted: a.interrupted + b.interrupted,
        wall: a.wall + b.wall,
        done: a.done.into_iter().chain(b.done).collect(),
        failed_stages: a.failed_stages.into_iter().chain(b.failed_stages).collect(),
    }
}

/// The search report stages that the confirm stages of this run wait for
/// (or may get new finalists from): run first. Empty when none.
fn searches_first(pipeline: &Pipeline, dag: &Dag, targets: &[String]) -> Result<Vec<String>> {
    let n = pipeline.stages.len();
    let chosen = if targets.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(targets)?
    };
    let mask = dag.closure(pipeline, &chosen);
    let mut out: Vec<String> = Vec::new();
    for (i, s) in pipeline.stages.iter().enumerate() {
        if !mask[i] || s.kind != stages::Kind::Confirm {
            continue;
        }
        for &j in &s.needs {
            let r = &pipeline.stages[j];
            if crate::spec::confirm::is_search_report(r) && !out.contains(&r.name) {
                out.push(r.name.clone());
            }
        }
    }
    Ok(out)
}
