//! Helpers shared by the end-to-end tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the real binary in `dir`.
pub fn fmnist(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fmnist-pipe"))
        .args(args)
        .current_dir(dir)
        .env_remove("CI")
        .output()
        .expect("the binary runs")
}

/// stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
