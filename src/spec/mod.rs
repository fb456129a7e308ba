//! pipeline.yaml: raw types ([`load`]) and concrete stages ([`resolve`]).

pub mod confirm;
pub mod graph;
mod grid;
mod load;
mod locate;
pub mod overrides;
pub mod protect;
mod resolve;
pub mod resources;
mod search;
mod subst;

pub use load::{load, RawPipeline, RawSlurm, RawStage};
pub use resolve::{resolve, ExecutorKind, Pipeline, RemoteSpec, SearchPlan, Settings, Stage};
pub use resources::{Resources, TimeLimit};

pub use locate::locate as locate_key;
