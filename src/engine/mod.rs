//! Running a pipeline: which stages are stale ([`plan`]), the run loop
//! ([`run`]), what starts when ([`schedule`]), where a stage runs
//! ([`executor`]), and signals ([`interrupt`]).

pub mod executor;
pub mod interrupt;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod txn;
