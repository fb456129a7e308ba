//! The stage kinds of fmnist-pipe: what a stage does, never when or whether.
//!
//! The orchestrator (the `fmnist-pipe` crate) resolves a pipeline, decides
//! which stages are stale and calls [`Kind::run`] for the built-in kinds or
//! [`cmd::run_shell`] for `cmd` stages. Nothing here knows about graphs,
//! fingerprints or the cache, and nothing here prints: progress goes through
//! the callback in [`RunContext`].

pub mod asha;
pub mod bench;
pub mod cmd;
pub mod compare;
pub mod confirm;
mod context;
pub mod contract;
pub mod download;
pub mod evaluate;
pub mod format;
pub mod html;
pub mod job;
mod kind;
pub mod measure;
pub mod metrics;
pub mod plots;
pub mod preprocess;
pub mod process;
pub mod runtime;
pub mod search;
pub mod stats;
pub mod train;

pub use context::{Input, Kind, Phase, Progress, RunContext, StageError, Step, Upstream};
