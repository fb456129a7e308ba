//! fmnist-pipe: a pipeline of stages declared in YAML, run as a DAG with
//! content-hashed caching.
//!
//! By layer, each depending only on those before it:
//! - [`spec`]: pipeline.yaml to concrete stages and their graph;
//! - [`state`]: the cache (records, objects, hashes, fingerprints, what
//!   the tool owns, gc, the run history);
//! - [`engine`]: the run loop, what runs ([`engine::plan`]), where
//!   ([`engine::schedule`], [`engine::executor`]), signals;
//! - [`ui`]: what happened, as events, and the reporter, the only code
//!   that prints;
//! - [`live`]: a run seen while it runs and afterwards: its state, live
//!   page, trace, and the server that shows them;
//! - [`cli`]: the commands.

pub mod cli;
pub mod engine;
pub mod error;
pub mod live;
pub mod spec;
pub mod state;
pub mod ui;
