//! `gc`: removes what no stage of the pipeline owns.

use crate::error::{exit, Result};
use crate::spec::Pipeline;
use crate::state::hash::HashCache;
use crate::state::store::Store;
use crate::ui::reporter::Reporter;

pub fn run(pipeline: &Pipeline, reporter: &mut Reporter, dry_run: &bool) -> Result<i32> {
    let store = Store::new(pipeline.settings.cache_dir());
    if !store.root().is_dir() {
        reporter.gc(&[], *dry_run);
        return Ok(exit::OK);
    }
    let _lock = store.lock(false, &mut |_| {})?;
    let hashes = HashCache::load(store.root().join("hashes.json"));
    let items = crate::state::gc::run(pipeline, &store, &hashes, *dry_run)?;
    reporter.gc(&items, *dry_run);
    Ok(exit::OK)
}
