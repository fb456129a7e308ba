//! The planner's decision for one stage about to be taken up: fresh, a
//! failure it can already name, or stale with what may stand in for a run
//! (its own record's outputs, a run the cache remembers, a remote's) in
//! the order they are tried. Every freshness and restore rule is here or
//! in [`crate::engine::plan`]; the run loop only carries decisions out.

use crate::engine::board::Budget;
use crate::engine::plan::{Assessment, Fp, Planner, State};
use crate::error::Result;
use crate::state::fingerprint::{DirtyReason, Fingerprint};
use crate::state::runs::{self, RunEntry};
use crate::state::store::{Digest, Record};
use crate::ui::events::Failure;
use std::collections::BTreeMap;

pub(crate) enum Decision {
    /// Nothing to do: the digest its dependents see.
    Fresh(Digest),
    /// It cannot be brought up to date as asked.
    Fail(Failure),
    Stale(Box<Stale>),
}

/// A stage that must be brought up to date.
pub(crate) struct Stale {
    /// Why, as the run says it.
    pub reason: DirtyReason,
    pub fp: Fingerprint,
    /// Its run-cache key.
    pub key: String,
    /// Its record as assessed.
    pub record: Option<Record>,
    /// A completed run the run cache remembers for it, restored first.
    pub entry: Option<RunEntry>,
    /// The keys a remote is asked for, in order, when the cache has
    /// nothing (empty: a remote may not stand in).
    pub fetch: Vec<(String, Option<usize>)>,
    /// The stage's own recorded outputs may be put back; the output found
    /// missing, if one was.
    pub own: Option<String>,
    /// Once the result is claimed, the run cache is asked again (another
    /// run may have computed it meanwhile).
    pub recheck: bool,
}

/// Decides what stage `i` needs. `inputs` holds the digest of each stage
/// it needs, by name; `budget` is a search trial's.
pub(crate) fn decide(
    planner: &Planner<'_>,
    i: usize,
    inputs: &BTreeMap<String, Digest>,
    force: bool,
    budget: Option<&Budget>,
) -> Result<Decision> {
    let stage = &planner.pipeline.stages[i];
    let known: Vec<(String, Option<Digest>)> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let a = planner.assess(i, &known, force)?;
    let promoted = budget.and_then(|b| b.promote);
    let reason = match (a.state, promoted) {
        // A trial paused at a rung, promoted: it trains on from its state.
        (State::Fresh, Some((from, to))) => DirtyReason::Promoted {
            from,
            to,
            epochs: budget.and_then(|b| b.levels.last().copied()).unwrap_or(to),
        },
        (State::Fresh, None) => return Ok(Decision::Fresh(a.digest.unwrap_or_default())),
        (State::New, _) => DirtyReason::NeverRun,
        (State::Dirty(r), _) => r,
    };
    if let DirtyReason::WaitsForSearch { search } = &reason {
        return Ok(Decision::Fail(Failure::WaitsForSearch {
            search: search.clone(),
        }));
    }
    let Assessment {
        record,
        fingerprint,
        key,
        entry,
        ..
    } = a;
    let (fp, key) = match (fingerprint, key) {
        (Some(fp), Some(key)) => (fp, key),
        _ => {
            let named = inputs
                .iter()
                .map(|(n, d)| (n.clone(), d.named.clone()))
                .collect();
            match planner.fingerprint(stage, named)? {
                Fp::Ok(fp) => {
                    let key = runs::key(stage, &fp, inputs);
                    (fp, key)
                }
                Fp::DepMissing(path) => return Ok(Decision::Fail(Failure::DepMissing { path })),
                Fp::DepUnreadable { path, error } => {
                    return Ok(Decision::Fail(Failure::DepUnreadable { path, error }))
                }
            }
        }
    };
    // What neither the workspace nor the cache has, a remote may: a
    // trial's paused runs too, once its whole training is not there.
    let fetch = if entry.is_none() && fetchable(&reason) && promoted.is_none() {
        planner.run_keys(stage, &key)
    } else {
        Vec::new()
    };
    let own = (record.is_some() && reason.restorable()).then(|| match &reason {
        DirtyReason::OutputMissing { path, .. } => path.clone(),
        _ => String::new(),
    });
    Ok(Decision::Stale(Box::new(Stale {
        reason,
        fp,
        key,
        record,
        entry,
        fetch,
        own,
        recheck: !force && promoted.is_none(),
    })))
}

/// Reasons for which a remote's result may stand in for a run: not a
/// forced run, not one running elsewhere, not a result found corrupt.
fn fetchable(reason: &DirtyReason) -> bool {
    !reason.restorable()
        && !matches!(
            reason,
            DirtyReason::Forced | DirtyReason::Running { .. } | DirtyReason::Invalidated { .. }
        )
}
