//! `log`: the recorded runs, newest first.

use crate::error::{exit, Result};
use crate::spec::Pipeline;
use crate::state::history;
use crate::ui::reporter::Reporter;

pub fn run(
    pipeline: &Pipeline,
    reporter: &mut Reporter,
    limit: &Option<usize>,
    json: &bool,
) -> Result<i32> {
    let path = history::path(pipeline);
    let limit = limit.unwrap_or(usize::MAX);
    let (runs, bad) = history::recent(&path, limit)?;
    // `-n 0` shows no run; say so without claiming there are none.
    let newest = match (limit, runs.first()) {
        (0, _) => history::newest_id(&path)?,
        (_, r) => r.map(|r| r.id),
    };
    reporter.log(&runs, bad, newest, *json);
    Ok(exit::OK)
}
