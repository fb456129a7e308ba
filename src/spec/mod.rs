//! pipeline.yaml: raw types ([`load`]) and concrete stages ([`resolve`]).

pub mod graph;
mod grid;
mod search;
pub mod confirm;
mod load;
mod locate;
pub mod overrides;
pub mod protect;
mod resolve;
pub mod resources;
mod subst;

pub use load::{load, RawPipeline, RawSlurm, RawStage};
pub use resolve::{resolve, ExecutorKind, Pipeline, RemoteSpec, SearchPlan, Settings, Stage};
pub use resources::{Resources, TimeLimit};

pub use locate::locate as locate_key;
