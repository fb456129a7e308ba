//! Running a pipeline: which stages are stale ([`plan`]), the run loop
//! ([`run`]) over the board (what waits, what is ready, a search's
//! promotions), what starts when ([`schedule`]), where a stage runs
//! ([`executor`]), and signals ([`interrupt`]).

mod board;
mod context;
mod decide;
pub mod executor;
pub mod finalists;
pub mod interrupt;
mod perform;
pub mod plan;
mod restore;
pub mod run;
pub mod schedule;
pub mod study;
pub mod txn;
