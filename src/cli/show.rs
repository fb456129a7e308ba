//! `show`: the latest comparison tables again, saying when they are stale.

use super::status::status_rows;
use crate::error::{exit, Result};
use crate::spec::graph::Dag;
use crate::spec::{self, Pipeline};
use crate::state::store::Store;
use crate::ui::reporter::{Reporter, RowState};

pub fn run(pipeline: &Pipeline, dag: &Dag, reporter: &mut Reporter) -> Result<i32> {
    let rows = status_rows(pipeline, dag, &[], &[], false)?;
    let store = Store::open(&pipeline.settings);
    let tabled = |s: &&spec::Stage| matches!(s.kind, stages::Kind::Compare | stages::Kind::Confirm);
    for s in pipeline.stages.iter().filter(tabled) {
        let row = rows.iter().find(|r| r.stage == s.name);
        match read_table(pipeline, &store, s) {
            Some((t, from_cache)) => {
                reporter.table(&t);
                if from_cache {
                    reporter.text(&format!(
                        "note: {} is not in the workspace (deleted or changed); this is the cache's copy, and `fmnist-pipe run {}` restores it\n",
                        s.outs.first().map_or("", String::as_str),
                        s.name
                    ));
                } else if let Some(r) = row.filter(|r| r.state != RowState::Fresh) {
                    let why = r.reason().unwrap_or_default();
                    reporter.note(&format!(
                        "note: this table is stale ({why}); `fmnist-pipe run` brings it up to date"
                    ));
                }
            }
            None => reporter.text(&format!(
                "{}: no table yet; run `fmnist-pipe run {}`\n",
                s.name, s.name
            )),
        }
    }
    if !pipeline.stages.iter().any(|s| tabled(&s)) {
        reporter.text("the pipeline has no compare or confirm stage\n");
    }
    Ok(exit::OK)
}

/// A compare stage's table: from the workspace, else the copy its last
/// complete run stored in the cache (the flag says so).
pub(super) fn read_table(
    pipeline: &Pipeline,
    store: &Store,
    stage: &spec::Stage,
) -> Option<(stages::contract::Table, bool)> {
    let (mut table, from_cache) = stored_table(pipeline, store, stage)?;
    if let Some(line) = variant_changes(pipeline, stage, &table) {
        table.notes.insert(0, line);
    }
    Some((table, from_cache))
}

/// What each compared variant changes from the reference's parameters, as
/// the pipeline says now: `no-aug: augment [] · no-dropout: dropout 0`.
fn variant_changes(
    pipeline: &Pipeline,
    compare: &spec::Stage,
    table: &stages::contract::Table,
) -> Option<String> {
    use stages::contract::replicate_of;
    use std::collections::BTreeMap;
    // The train stage behind each compared variant (its first replicate).
    let mut trains: BTreeMap<String, &spec::Stage> = BTreeMap::new();
    for &e in &compare.needs {
        for &t in &pipeline.stages[e].needs {
            let s = &pipeline.stages[t];
            let evaluable = s.kind == stages::Kind::Train || s.predictions.is_some();
            if let (true, Some(v)) = (evaluable, &s.variant) {
                trains.entry(replicate_of(v).0.to_string()).or_insert(s);
            }
        }
    }
    let reference = table
        .variants
        .iter()
        .find(|v| v.delta_vs_reference.is_none())?
        .variant
        .clone();
    use crate::state::history::variant_origin;
    let base = variant_origin(trains.get(&reference)?);
    let mut parts = Vec::new();
    for v in &table.variants {
        let Some(train) = trains.get(&v.variant).filter(|_| v.variant != reference) else {
            continue;
        };
        let mine = variant_origin(train);
        if mine.stage != base.stage
            || !stages::contract::changes_from(&base.params, &mine.params).is_empty()
        {
            parts.push(format!(
                "{}: {}",
                v.variant,
                stages::contract::variant_change(&base, &mine)
            ));
        }
    }
    (!parts.is_empty()).then(|| {
        format!(
            "What each variant changes from {reference} (as the pipeline says now): {}.",
            parts.join(" · ")
        )
    })
}

/// A compare stage's table as stored: from the workspace, else the copy
/// its last complete run stored in the cache (the flag says so).
fn stored_table(
    pipeline: &Pipeline,
    store: &Store,
    stage: &spec::Stage,
) -> Option<(stages::contract::Table, bool)> {
    let out = stage.outs.first()?;
    let path = pipeline
        .settings
        .project_dir
        .join(out)
        .join(stages::contract::TABLE_FILE);
    if let Some(t) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Some((t, false));
    }
    let record = store.record(&stage.name).ok()??;
    let file = record
        .outputs
        .iter()
        .find(|o| o.path == *out)?
        .tree
        .files
        .iter()
        .find(|f| f.rel == stages::contract::TABLE_FILE)?;
    let bytes = store.read_object(&file.hash)?;
    Some((serde_json::from_slice(&bytes).ok()?, true))
}
