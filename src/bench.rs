//! `fmnist-pipe bench`: the main CNN's training and inference throughput,
//! and the same figures from the PyTorch twin script in the same run.

use crate::cli::{BenchArgs, Cli};
use crate::error::{exit, Error, Result};
use crate::reporter::Reporter;
use stages::data::dataset::Dataset;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run(cli: &Cli, args: &BenchArgs, reporter: &mut Reporter) -> Result<i32> {
    if args.threads == 0 || args.batches == 0 {
        return Err(Error::Usage(
            "--threads and --batches must be at least 1".into(),
        ));
    }
    let project = cli
        .file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let default = project
        .join("outputs/preprocess")
        .join(stages::preprocess::DATASET_FILE);
    let (data, label) = match &args.data {
        Some(p) => (
            Dataset::read(p).map_err(|e| Error::Usage(e.to_string()))?,
            p.display().to_string(),
        ),
        None if default.is_file() => match Dataset::read(&default) {
            Ok(d) => (d, default.display().to_string()),
            Err(_) => (stages::train::synthetic_dataset(4096), "random".into()),
        },
        None => (stages::train::synthetic_dataset(4096), "random".into()),
    };
    let ours =
        stages::train::bench(&data, &label, args.threads, args.batches).map_err(Error::Usage)?;
    reporter.text(&format!(
        "fmnist-pipe threads={} batch={} train_img_per_s={:.0} eval_img_per_s={:.0} peak_rss_mb={:.0} data={}\n",
        ours.threads, ours.batch, ours.train_img_per_s, ours.eval_img_per_s, ours.peak_rss_mb, ours.data
    ));
    if args.no_torch {
        return Ok(exit::OK);
    }
    let script = project.join("bench/torch_bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--threads",
            &args.threads.to_string(),
            "--batches",
            &args.batches.to_string(),
        ])
        .output();
    let line = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => format!(
            "skipped: {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("skipped: cannot run python3: {e}"),
    };
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.parse::<f64>().ok())
    };
    match (field("train_img_per_s="), field("eval_img_per_s=")) {
        (Some(t), Some(e)) => reporter.text(&format!(
            "pytorch     {line}\nratio (fmnist-pipe / pytorch): train {:.2}x, eval {:.2}x\n",
            ours.train_img_per_s / t,
            ours.eval_img_per_s / e
        )),
        _ => reporter.text(&format!("pytorch     {line}\n")),
    }
    Ok(exit::OK)
}
