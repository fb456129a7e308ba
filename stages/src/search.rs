//! The `search` kind: the report of a hyperparameter search, from its
//! trials' training histories. Each trial's score is its best validation
//! accuracy over the epochs it trained: the test set is never read.
//!
//! The pipeline makes one such stage per `search:` (`train@search`); it
//! needs every trial, and runs once the search has settled.

use crate::contract::{EpochRecord, TrainSummary, HISTORY_FILE, REPORT_FILE, TRAIN_SUMMARY_FILE};
pub use crate::contract::{SearchResult, TrialResult, SEARCH_FILE};
use crate::html::{escape, head, picture};
use crate::{Kind, RunContext, StageError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The parameters the pipeline gives a search's report stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub sampler: String,
    pub seed: u64,
    pub epochs: usize,
    #[serde(default)]
    pub rungs: Vec<usize>,
    pub keep: f64,
    /// Each searched parameter and its range, as written.
    pub space: Map<String, Value>,
    pub trials: Vec<TrialSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrialSpec {
    /// `trial-07`; its stage is `<base>@trial-07`.
    pub trial: String,
    /// The sampled values (a named choice by its name).
    pub values: Map<String, Value>,
}

impl crate::context::Params for SearchParams {
    fn validate(&self) -> Result<(), String> {
        if self.trials.is_empty() {
            return Err("a search has at least one trial".into());
        }
        Ok(())
    }
}

/// The identity of a search's parameters (their canonical JSON, hashed).
pub fn identity(params: &Value) -> String {
    let bytes = serde_json::to_vec(params).unwrap_or_default();
    blake3::hash(&bytes).to_hex()[..16].to_string()
}

fn fail(e: impl std::fmt::Display) -> StageError {
    StageError::Failed(e.to_string())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::corrupt(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::corrupt(path, e))
}

/// A trial's score for ordering: a failed one's comes last.
fn score_of(t: &TrialResult) -> f64 {
    t.score.unwrap_or(f64::NEG_INFINITY)
}

/// Ranks complete trials by score, best first; ties keep trial order.
pub fn ranking(trials: &[TrialResult]) -> Vec<String> {
    let mut done: Vec<&TrialResult> = trials.iter().filter(|t| t.complete).collect();
    done.sort_by(|a, b| score_of(b).total_cmp(&score_of(a)));
    done.iter().map(|t| t.trial.clone()).collect()
}

/// A trial's training, as its stage wrote it.
type Trained = (Vec<EpochRecord>, TrainSummary);

/// Each trial's stage and what it trained (None: it failed).
fn read_trials(
    ctx: &RunContext<'_>,
    p: &SearchParams,
) -> Result<Vec<(String, Option<Trained>)>, StageError> {
    let mut read = Vec::with_capacity(p.trials.len());
    for spec in &p.trials {
        let input = ctx
            .inputs
            .iter()
            .find(|i| i.kind == Kind::Train && crate::contract::variant_of(&i.stage) == spec.trial)
            .ok_or_else(|| {
                StageError::Params(format!(
                    "the search's trial {} is not among its inputs",
                    spec.trial
                ))
            })?;
        // A failed trial has no result (what its directory holds, if
        // anything, is an older run's): no epochs, no score.
        if input.failed {
            read.push((input.stage.clone(), None));
            continue;
        }
        let dir = input.paths.first().cloned().unwrap_or_default();
        let history: Vec<EpochRecord> = read_json(&dir.join(HISTORY_FILE))?;
        let summary: TrainSummary = read_json(&dir.join(TRAIN_SUMMARY_FILE))?;
        read.push((input.stage.clone(), Some((history, summary))));
    }
    Ok(read)
}

/// A trial's row: its validation accuracies up to the epochs the
/// search's sequence `reached` (and whether it stopped it there), its
/// best; a failed trial (no `history`) has none.
fn trial_result(
    spec: &TrialSpec,
    stage: &str,
    history: Option<&[EpochRecord]>,
    (reached, stopped): (usize, bool),
    epochs: usize,
) -> TrialResult {
    let Some(history) = history else {
        return TrialResult {
            trial: spec.trial.clone(),
            stage: stage.to_string(),
            values: spec.values.clone(),
            epochs: 0,
            complete: false,
            val_acc: Vec::new(),
            score: None,
            failed: true,
            best_epoch: 0,
            training_seconds: 0.0,
        };
    };
    let val_acc: Vec<f64> = history.iter().take(reached).map(|h| h.val_acc).collect();
    let (best_epoch, score) =
        val_acc
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &a)| {
                    if a > b.1 {
                        (i + 1, a)
                    } else {
                        b
                    }
                },
            );
    TrialResult {
        trial: spec.trial.clone(),
        stage: stage.to_string(),
        values: spec.values.clone(),
        epochs: reached,
        complete: reached >= epochs || stopped,
        val_acc,
        score: score.is_finite().then_some(score),
        failed: false,
        best_epoch,
        training_seconds: history.iter().take(reached).map(|h| h.seconds).sum(),
    }
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let p: SearchParams = crate::context::parse_params(ctx.params)?;
    let read = read_trials(ctx, &p)?;
    // The trials as the search's sequence of jobs trained them: epochs a
    // trial trained beyond it (an earlier search's) do not count.
    let asha = crate::asha::Asha {
        rungs: p.rungs.clone(),
        epochs: p.epochs,
        keep: p.keep,
    };
    // As the run took them in: a failed trial has finished, with no score.
    let known: Vec<Option<crate::asha::Known>> = read
        .iter()
        .map(|(_, r)| {
            Some(match r {
                Some((h, summary)) => crate::asha::Known {
                    val_acc: h.iter().map(|e| e.val_acc).collect(),
                    finished: !summary.paused,
                },
                None => crate::asha::Known {
                    val_acc: Vec::new(),
                    finished: true,
                },
            })
        })
        .collect();
    let sequence = asha.simulate(&known);
    if let Some((t, to)) = sequence.next {
        return Err(StageError::Failed(format!(
            "the search has not finished: {} is still to train to epoch {to}; run the pipeline again",
            p.trials[t].trial
        )));
    }
    let trials: Vec<TrialResult> = p
        .trials
        .iter()
        .zip(&read)
        .enumerate()
        .map(|(k, (spec, (stage, r)))| {
            let reached = (sequence.reached[k], sequence.stopped[k]);
            trial_result(
                spec,
                stage,
                r.as_ref().map(|(h, _)| &h[..]),
                reached,
                p.epochs,
            )
        })
        .collect();
    let result = SearchResult {
        identity: identity(ctx.params),
        sampler: p.sampler.clone(),
        seed: p.seed,
        epochs: p.epochs,
        rungs: p.rungs.clone(),
        keep: p.keep,
        metric: "best validation accuracy".into(),
        ranking: ranking(&trials),
        epochs_trained: trials.iter().map(|t| t.epochs).sum(),
        epochs_without_early_stopping: p.epochs * trials.len(),
        training_seconds: trials.iter().map(|t| t.training_seconds).sum(),
        trials,
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = ctx.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| StageError::io("write", path, e))
    };
    write(
        SEARCH_FILE,
        &serde_json::to_vec_pretty(&result).map_err(fail)?,
    )?;
    write("search.md", markdown(&result, &p).as_bytes())?;
    let keys: Vec<String> = p.space.keys().cloned().collect();
    crate::plots::search(ctx.out_dir, &result, &keys).map_err(fail)?;
    write(
        REPORT_FILE,
        report_html(ctx.out_dir, &result, &p).as_bytes(),
    )
}

/// Each trial's row: values, epochs, score; best first.
fn rows(r: &SearchResult) -> (Vec<String>, Vec<Vec<String>>) {
    let keys: Vec<String> = r
        .trials
        .first()
        .map(|t| t.values.keys().cloned().collect())
        .unwrap_or_default();
    let mut columns = vec!["trial".to_string()];
    columns.extend(keys.iter().cloned());
    columns.extend(["epochs".into(), "best val acc".into(), "rank".into()]);
    let mut order: Vec<&TrialResult> = r.trials.iter().collect();
    order.sort_by(|a, b| score_of(b).total_cmp(&score_of(a)));
    let rows = order
        .iter()
        .map(|t| {
            let mut row = vec![t.trial.clone()];
            for k in &keys {
                row.push(match t.values.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                });
            }
            let stopped = if t.failed {
                "failed".to_string()
            } else if t.complete {
                format!("{}", t.epochs)
            } else {
                format!("{} (stopped)", t.epochs)
            };
            row.push(stopped);
            row.push(t.score.map_or("—".into(), |s| format!("{:.2}%", s * 100.0)));
            row.push(
                r.ranking
                    .iter()
                    .position(|n| *n == t.trial)
                    .map_or("—".into(), |k| (k + 1).to_string()),
            );
            row
        })
        .collect();
    (columns, rows)
}

fn summary_line(r: &SearchResult, p: &SearchParams) -> String {
    let early = if r.rungs.is_empty() {
        "no early stopping".to_string()
    } else {
        format!(
            "asynchronous successive halving at epochs {:?}, keeping {} of the trials at each",
            r.rungs, p.keep
        )
    };
    format!(
        "{} trials ({} sampler, seed {}), {} epochs each at most; {early}. {} epochs trained of {} without early stopping ({:.0}% saved); {:.1} min of training.",
        r.trials.len(),
        r.sampler,
        r.seed,
        r.epochs,
        r.epochs_trained,
        r.epochs_without_early_stopping,
        100.0 * (1.0 - r.epochs_trained as f64 / r.epochs_without_early_stopping.max(1) as f64),
        r.training_seconds / 60.0
    )
}

fn markdown(r: &SearchResult, p: &SearchParams) -> String {
    let (columns, rows) = rows(r);
    let mut s = format!(
        "**Search: {}**\n\n{}\n\n| {} |\n|{}\n",
        r.metric,
        summary_line(r, p),
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
    for row in rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s
}

fn report_html(out: &std::path::Path, r: &SearchResult, p: &SearchParams) -> String {
    let mut h = head("fmnist-pipe search");
    let _ = write!(
        h,
        "<h1>Hyperparameter search</h1><p>{}</p><p>Scores are validation accuracies: the test set is not read during a search. A score chosen as the best of many trials overstates what the configuration does on new data; a <code>confirm</code> stage trains the finalists again on fresh seeds.</p>",
        escape(&summary_line(r, p))
    );
    let _ = write!(h, "<h2>Space</h2><ul>");
    for (k, v) in &p.space {
        let _ = write!(
            h,
            "<li><b>{}</b>: {}</li>",
            escape(k),
            escape(&v.to_string())
        );
    }
    h.push_str("</ul>");
    let (columns, rows) = rows(r);
    let t = crate::contract::Table {
        columns,
        rows,
        ..Default::default()
    };
    h.push_str("<h2>Trials</h2>");
    h.push_str(&crate::html::table_html(&t, "", "", ""));
    h.push_str("<h2>Curves</h2>");
    h.push_str(&picture(out, "search_curves").unwrap_or_default());
    h.push_str("<h2>Score against each parameter</h2><div class=\"grid\">");
    for k in p.space.keys() {
        if let Some(pic) = picture(out, &format!("search_{}", crate::plots::file_part(k))) {
            let _ = write!(h, "<div>{pic}</div>");
        }
    }
    h.push_str("</div></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(name: &str, score: f64, complete: bool) -> TrialResult {
        TrialResult {
            trial: name.into(),
            stage: format!("train@{name}"),
            values: Map::new(),
            epochs: if complete { 10 } else { 2 },
            complete,
            val_acc: vec![score],
            score: Some(score),
            failed: false,
            best_epoch: 1,
            training_seconds: 1.0,
        }
    }

    #[test]
    fn only_complete_trials_are_ranked_best_first() {
        let t = vec![
            trial("trial-01", 0.90, true),
            trial("trial-02", 0.95, false),
            trial("trial-03", 0.92, true),
            trial("trial-04", 0.92, true),
        ];
        assert_eq!(ranking(&t), ["trial-03", "trial-04", "trial-01"]);
    }

    #[test]
    fn a_failed_trial_is_shown_and_never_ranked() {
        let mut failed = trial("trial-05", 0.0, true);
        (failed.failed, failed.score, failed.complete) = (true, None, false);
        let t = vec![trial("trial-01", 0.90, true), failed];
        assert_eq!(ranking(&t), ["trial-01"]);
        let r = SearchResult {
            identity: String::new(),
            sampler: "grid".into(),
            seed: 0,
            epochs: 10,
            rungs: vec![],
            keep: 1.0,
            metric: "best validation accuracy".into(),
            ranking: ranking(&t),
            epochs_trained: 10,
            epochs_without_early_stopping: 20,
            training_seconds: 1.0,
            trials: t,
        };
        let (_, rows) = rows(&r);
        assert_eq!(rows[1][1..], ["failed", "—", "—"]);
        // Read back as written (a missing score is null, not a number).
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<SearchResult>(&text).unwrap(), r);
    }

    #[test]
    fn the_identity_follows_the_parameters() {
        let a = serde_json::json!({"trials": [1]});
        let b = serde_json::json!({"trials": [1, 2]});
        assert_eq!(identity(&a), identity(&a.clone()));
        assert_ne!(identity(&a), identity(&b));
    }
}
