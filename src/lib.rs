//! fmnist-pipe: a pipeline of stages declared in YAML, run as a DAG with
//! content-hashed caching.
//!
//! Phases: [`spec`] (load, resolve) → [`graph`] → [`plan`] → [`execute`]
//! (with [`schedule`] packing stages and an [`executor`] running them),
//! with [`store`] the cache and [`reporter`] the only module that prints.

pub mod bench;
pub mod cli;
pub mod error;
pub mod events;
pub mod execute;
pub mod executor;
pub mod fingerprint;
pub mod gc;
pub mod graph;
pub mod hash;
pub mod history;
pub mod interrupt;
pub mod models;
pub mod ownership;
pub mod plan;
pub mod reporter;
pub mod schedule;
pub mod spec;
pub mod store;
