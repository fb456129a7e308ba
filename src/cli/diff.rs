//! `diff`: what changed between two recorded runs.

use crate::error::{exit, Error, Result};
use crate::spec::Pipeline;
use crate::state::history;
use crate::ui::reporter::Reporter;

pub fn run(
    pipeline: &Pipeline,
    reporter: &mut Reporter,
    run_a: &Option<u64>,
    run_b: &Option<u64>,
    json: &bool,
    md: &bool,
    all: bool,
) -> Result<i32> {
    let pick = match (run_a, run_b) {
        (Some(a), Some(b)) => history::Pick::Both(*a, *b),
        // One run named: it against the latest.
        (Some(a), None) => history::Pick::AgainstNewest(*a),
        _ => history::Pick::LastTwo,
    };
    match history::pick(&history::path(pipeline), pick)? {
        Ok((a, b)) => {
            // By variant for people; every stage with --all, and in JSON.
            let d = if all || *json {
                history::diff(&a, &b)
            } else {
                history::by_variant(&a, &b)
            };
            reporter.diff(&d, *json, *md);
            Ok(exit::OK)
        }
        Err(history::Missing::Run { id, range }) => Err(Error::NoRun(format!(
            "no run {id} in the history{}; `fmnist-pipe log` lists them",
            match range {
                Some((a, b)) => format!(" (runs {a} to {b})"),
                None => " (it is empty)".into(),
            }
        ))),
        Err(history::Missing::TooFew(n)) => Err(Error::NoRun(format!(
            "diff compares two runs and the history has {n}; every `fmnist-pipe run` that runs something adds one"
        ))),
    }
}
