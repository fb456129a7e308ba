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
    for s in pipeline
        .stages
        .iter()
        .filter(|s| s.kind == stages::Kind::Compare)
    {
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
    if pipeline
        .stages
        .iter()
        .all(|s| s.kind != stages::Kind::Compare)
    {
        reporter.text("the pipeline has no compare stage\n");
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
