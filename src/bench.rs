//! `fmnist-pipe bench`: the main CNN's training and inference throughput,
//! and the same figures from the PyTorch twin script, alternated in one run
//! so both see the same machine; medians are reported.

use crate::cli::{BenchArgs, Cli};
use crate::error::{exit, Error, Result};
use crate::reporter::Reporter;
use stages::data::dataset::Dataset;
use std::path::{Path, PathBuf};
use std::process::Command;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run of the twin script: its output line, or why it was skipped.
fn torch_once(
    script: &Path,
    threads: usize,
    batches: usize,
) -> std::result::Result<String, String> {
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args([
            "--threads",
            &threads.to_string(),
            "--batches",
            &batches.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = stages::process::spawn(&mut cmd)
        .and_then(|(child, _registered)| child.wait_with_output())
        .map_err(|e| format!("skipped: cannot run python3: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        return Err(format!(
            "skipped: {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if line.starts_with("skipped") {
        return Err(line);
    }
    Ok(line)
}

fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.parse::<f64>().ok())
}

/// The dataset the pipeline's (first) preprocess stage writes, if the
/// pipeline loads and has one.
fn pipeline_dataset(file: &Path) -> Option<PathBuf> {
    let (raw, text) = crate::spec::load(file).ok()?;
    let pipeline = crate::spec::resolve(raw, text, file).ok()?;
    let stage = pipeline
        .stages
        .iter()
        .find(|s| s.kind == stages::Kind::Preprocess)?;
    Some(
        pipeline
            .settings
            .project_dir
            .join(stage.outs.first()?)
            .join(stages::contract::DATASET_FILE),
    )
}

pub fn run(cli: &Cli, args: &BenchArgs, reporter: &mut Reporter) -> Result<i32> {
    if args.threads == 0 || args.batches == 0 || args.repeat == 0 {
        return Err(Error::Usage(
            "--threads, --batches and --repeat must be at least 1".into(),
        ));
    }
    let project = cli
        .file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (data, label) = match &args.data {
        Some(p) => (Dataset::read(p)?, p.display().to_string()),
        None => {
            match pipeline_dataset(&cli.file).and_then(|p| Dataset::read(&p).ok().map(|d| (d, p))) {
                Some((d, p)) => (d, p.display().to_string()),
                None => (stages::bench::synthetic_dataset(4096), "random".into()),
            }
        }
    };
    let script = project.join("bench/torch_bench.py");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut skipped = None;
    for _ in 0..args.repeat {
        ours.push(
            stages::bench::bench(&data, &label, args.threads, args.batches)
                .map_err(Error::Bench)?,
        );
        if !args.no_torch && skipped.is_none() {
            match torch_once(&script, args.threads, args.batches) {
                Ok(line) => theirs.push(line),
                Err(why) => skipped = Some(why),
            }
        }
    }
    let train = median(ours.iter().map(|r| r.train_img_per_s).collect());
    let eval = median(ours.iter().map(|r| r.eval_img_per_s).collect());
    let rss = ours.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
    reporter.text(&format!(
        "fmnist-pipe threads={} batch=64 train_img_per_s={train:.0} eval_img_per_s={eval:.0} peak_rss_mb={rss:.0} data={label} (median of {})\n",
        args.threads,
        ours.len()
    ));
    if args.no_torch {
        return Ok(exit::OK);
    }
    if let Some(why) = skipped {
        reporter.text(&format!("pytorch     {why}\n"));
        return Ok(exit::OK);
    }
    let t_train = median(
        theirs
            .iter()
            .filter_map(|l| field(l, "train_img_per_s="))
            .collect(),
    );
    let t_eval = median(
        theirs
            .iter()
            .filter_map(|l| field(l, "eval_img_per_s="))
            .collect(),
    );
    let version = theirs
        .first()
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("torch=")))
        .unwrap_or("");
    reporter.text(&format!(
        "pytorch     threads={} batch=64 train_img_per_s={t_train:.0} eval_img_per_s={t_eval:.0} {version} (median of {})\nratio (fmnist-pipe / pytorch): train {:.2}x, eval {:.2}x\n",
        args.threads,
        theirs.len(),
        train / t_train,
        eval / t_eval
    ));
    Ok(exit::OK)
}
