//! The end-to-end tests: one binary (the harness is compiled once), a
//! module per topic, each driving the real `fmnist-pipe` binary in
//! temporary project directories through [`common`].

mod common;

mod bench;
mod byo;
mod commands;
mod data;
mod devices;
mod docs;
mod environment;
mod export;
mod failures;
mod freshness;
mod history;
mod hostile;
mod interrupts;
mod layout;
mod live;
mod load_errors;
mod predict;
mod recipe;
mod records;
mod remotes;
mod report;
mod safety;
mod scheduling;
mod search;
mod seeds;
mod sharing;
mod slurm;
mod study;
