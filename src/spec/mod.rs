//! pipeline.yaml: raw types ([`load`]) and concrete stages ([`resolve`]).

pub mod confirm;
pub mod graph;
mod grid;
mod load;
mod locate;
mod outputs;
pub mod overrides;
mod pipeline;
pub mod protect;
mod resolve;
pub mod resources;
mod search;
mod settings;
mod subst;
mod variants;

pub use load::{load, RawPipeline, RawSlurm, RawStage};
pub use pipeline::{ExecutorKind, Pipeline, RemoteSpec, SearchPlan, Settings, Stage};
pub use resolve::resolve;
pub use resources::{Resources, TimeLimit};

pub use locate::locate as locate_key;
