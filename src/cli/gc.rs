//! `gc`: removes what no stage of the pipeline owns.

use crate::error::{exit, Result};
use crate::spec::Pipeline;
use crate::state::hash::HashCache;
use crate::state::store::Store;
use crate::ui::reporter::Reporter;

pub fn run(pipeline: &Pipeline, reporter: &mut Reporter, dry_run: bool, runs: bool) -> Result<i32> {
    let store = Store::open(&pipeline.settings);
    if !store.root().is_dir() {
        reporter.gc(&[], dry_run);
        return Ok(exit::OK);
    }
    let _lock = store.lock(false, &mut |_| {})?;
    // Objects are stored before the record that names them is written:
    // no run of any project may be between the two while gc looks.
    let _alone = store.share_exclusive()?;
    let hashes = HashCache::load(store.home().join("hashes.json"));
    let items = crate::state::gc::run(pipeline, &store, &hashes, dry_run, runs)?;
    reporter.gc(&items, dry_run);
    Ok(exit::OK)
}
