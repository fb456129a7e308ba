//! What the tool keeps between runs: the cache's records and objects
//! ([`store`]), content hashes ([`hash`]), fingerprints and why a stage is
//! stale ([`fingerprint`]), what the tool may delete ([`ownership`]),
//! [`gc`], the run history ([`history`]), and what they share: files
//! written whole ([`files`]) and times as people read them ([`time`]).

pub mod files;
pub mod fingerprint;
pub mod gc;
pub mod hash;
pub mod history;
pub mod ownership;
pub mod record;
pub mod remote;
pub mod runs;
pub mod store;
pub mod time;
