//! pipeline.yaml: raw types ([`load`]) and concrete stages ([`resolve`]).

mod load;
mod locate;
pub mod protect;
mod resolve;
mod subst;

pub use load::{load, RawPipeline, RawStage};
pub use resolve::{resolve, Pipeline, Settings, Stage};

pub use locate::locate as locate_key;
