//! What the tool keeps between runs: the cache's records and objects
//! ([`store`]), content hashes ([`hash`]), fingerprints and why a stage is
//! stale ([`fingerprint`]), what the tool may delete ([`ownership`]),
//! [`gc`], and the run history ([`history`]).

pub mod fingerprint;
pub mod gc;
pub mod hash;
pub mod history;
pub mod ownership;
pub mod remote;
pub mod runs;
pub mod store;
