//! `fmnist-pipe bench`: the main CNN's training and inference throughput,
//! and the same figures from the PyTorch twin script, alternated in one run
//! so both see the same machine; medians are reported.

use crate::cli::{BenchArgs, Cli};
use crate::error::{exit, Error, Result};
use crate::ui::reporter::Reporter;
use learn::data::dataset::Dataset;
use learn::nn::simd::Family;
use stages::format::group_digits;
use std::path::{Path, PathBuf};
use std::process::Command;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run of the twin script: its output line, or why it was skipped.
fn torch_once(
    children: &stages::process::Children,
    script: &Path,
    threads: usize,
    batches: usize,
) -> std::result::Result<String, String> {
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .args([
            "--threads",
            &threads.to_string(),
            "--batches",
            &batches.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = children
        .spawn(&mut cmd)
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

const TORCH_EPOCH: &str = include_str!("../../bench/torch_epoch.py");
const TORCH_MODEL: &str = include_str!("../../bench/torch_model.py");

/// The Python that runs the PyTorch side: `FMNIST_PIPE_PYTHON`, else python3.
fn python() -> String {
    std::env::var("FMNIST_PIPE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// One epoch of a `train` stage on `prep_dir`'s dataset, in this process:
/// the stage's own images/s (the whole training loop of the epoch) and
/// its seconds.
/// One epoch of the train stage as a run does it, on `kernels`.
fn our_epoch(prep_dir: &Path, threads: usize, seed: u64, kernels: Family) -> Result<(f64, f64)> {
    let params = stages::Kind::Train
        .normalize_params(serde_json::json!({
            "model": "main-cnn",
            "epochs": 1,
            "augment": [],
            "plateau": null,
            "early_stopping": null,
            "seed": seed,
        }))
        .map_err(Error::Bench)?;
    let out = std::env::temp_dir().join(format!("fmnist-pipe-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| Error::io("create", &out, e))?;
    let inputs = [stages::Input {
        stage: "preprocess".into(),
        kind: stages::Kind::Preprocess,
        paths: vec![prep_dir.to_path_buf()],
        predictions: None,
        failed: false,
    }];
    let ctx = stages::RunContext {
        stage: "bench",
        project_dir: prep_dir,
        params: &params,
        inputs: &inputs,
        out_dir: &out,
        threads,
        resume: None,
        stop_after: None,
        grow: None,
        device: Some("cpu"),
        kernels: Some(kernels),
        run: None,
        progress: &|_| {},
    };
    let result = stages::Kind::Train
        .run(&ctx)
        .map_err(|e| Error::Bench(e.to_string()))
        .and_then(|()| {
            let path = out.join(stages::contract::HISTORY_FILE);
            let h: Vec<stages::contract::EpochRecord> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| Error::Bench(format!("{}: no history", path.display())))?;
            let e = h
                .first()
                .ok_or_else(|| Error::Bench("an empty history".into()))?;
            Ok((e.img_per_s, e.seconds))
        });
    let _ = std::fs::remove_dir_all(&out);
    result
}

/// The kernel families `--kernels` asks for, in the order each round
/// runs them.
fn families(kernels: &str) -> Vec<Family> {
    match kernels {
        "avx2" => vec![Family::AVX2],
        "avx512" => vec![Family::widest()],
        "both" => match Family::avx512() {
            Some(wide) => vec![Family::AVX2, wide],
            None => vec![Family::AVX2],
        },
        _ => vec![Family::detected()],
    }
}

/// One epoch of the PyTorch script over the same images: its line of
/// figures, or why it did not run.
fn torch_epoch(
    script: &Path,
    (images, labels): (&Path, &Path),
    data: &Dataset,
    threads: usize,
    seed: u64,
) -> std::result::Result<String, String> {
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg("--images")
        .arg(images)
        .arg("--labels")
        .arg(labels)
        .args([
            "--mean",
            &data.mean.to_string(),
            "--std",
            &data.std.to_string(),
            "--threads",
            &threads.to_string(),
            "--seed",
            &seed.to_string(),
        ]);
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!(
            "failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", python())),
    }
}

/// `bench --epoch`: a `train` stage's epoch against a plain PyTorch epoch
/// on the same images, alternated, medians and their ratio.
fn epoch(cli: &Cli, args: &BenchArgs, reporter: &mut Reporter) -> Result<i32> {
    let path = args
        .data
        .clone()
        .or_else(|| pipeline_dataset(&cli.file))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            Error::Usage(
                "bench --epoch trains on the real training images: run `fmnist-pipe run preprocess` first, or pass --data dataset.fmnd".into(),
            )
        })?;
    let data = Dataset::read(&path)?;
    let train = data
        .split("train")
        .ok_or_else(|| Error::Bench(format!("{}: no train split", path.display())))?;
    let prep_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // The same images for PyTorch, as raw bytes.
    let tmp = std::env::temp_dir().join(format!("fmnist-pipe-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let (images, labels) = (tmp.join("images.u8"), tmp.join("labels.u8"));
    std::fs::write(&images, &train.pixels).map_err(|e| Error::io("write", &images, e))?;
    std::fs::write(&labels, &train.labels).map_err(|e| Error::io("write", &labels, e))?;
    // The script travels in the binary, so this works outside the repository.
    let script = tmp.join("torch_epoch.py");
    std::fs::write(&script, TORCH_EPOCH).map_err(|e| Error::io("write", &script, e))?;
    let model = tmp.join("torch_model.py");
    std::fs::write(&model, TORCH_MODEL).map_err(|e| Error::io("write", &model, e))?;
    let families = families(&args.kernels);
    let (mut ours, mut theirs, mut lines) =
        (vec![Vec::new(); families.len()], Vec::new(), Vec::new());
    let mut skipped = None;
    for r in 0..args.repeat {
        for (k, &f) in families.iter().enumerate() {
            let (rate, secs) = our_epoch(&prep_dir, args.threads, r as u64 + 1, f)?;
            reporter.text(&format!(
                "run {}: fmnist-pipe ({}) {} images/s ({secs:.1} s for the epoch)\n",
                r + 1,
                f.name(),
                group_digits(rate.round() as usize)
            ));
            ours[k].push(rate);
        }
        if args.no_torch || skipped.is_some() {
            continue;
        }
        let seed = r as u64 + 1;
        match torch_epoch(&script, (&images, &labels), &data, args.threads, seed) {
            Ok(line) => match field(&line, "train_img_per_s=") {
                Some(v) => {
                    reporter.text(&format!("run {}: pytorch     {line}\n", r + 1));
                    theirs.push(v);
                    lines.push(line);
                }
                None => skipped = Some(line),
            },
            Err(why) => skipped = Some(why),
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let medians: Vec<f64> = ours.iter().map(|o| median(o.clone())).collect();
    for (f, (m, o)) in families.iter().zip(medians.iter().zip(&ours)) {
        reporter.text(&format!(
            "fmnist-pipe ({}): one training epoch, {} images, batch 64, {} thread(s): {} images/s (median of {})\n",
            f.name(),
            group_digits(train.len()),
            args.threads,
            group_digits(m.round() as usize),
            o.len()
        ));
    }
    match skipped {
        _ if args.no_torch => {}
        Some(why) => reporter.text(&format!("pytorch: skipped: {why}\n")),
        None => {
            let t = median(theirs.clone());
            let version = lines
                .first()
                .and_then(|l| l.split_whitespace().find(|w| w.starts_with("torch=")))
                .unwrap_or("");
            reporter.text(&format!(
                "pytorch:     a plain training loop over the same images: {} images/s (median of {}, {version})\n",
                group_digits(t.round() as usize),
                theirs.len(),
            ));
            for (f, m) in families.iter().zip(&medians) {
                reporter.text(&format!(
                    "ratio (fmnist-pipe {} / pytorch): {:.2}x\n",
                    f.name(),
                    m / t
                ));
            }
        }
    }
    Ok(exit::OK)
}

pub fn run(
    cli: &Cli,
    args: &BenchArgs,
    reporter: &mut Reporter,
    children: &stages::process::Children,
) -> Result<i32> {
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
    // Speed figures mean little without the machine that made them: the
    // kernels are AVX2+FMA (what the build targets), with the matrix
    // products in AVX-512 where the core has it (unless
    // `FMNIST_PIPE_KERNELS=avx2` forces AVX2).
    let kernels = if !cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "portable (no AVX2)".to_string()
    } else {
        if Family::detected().is_avx512() {
            "AVX-512 for the matrix products (Winograd, linear, conv1), AVX2+FMA elsewhere"
                .to_string()
        } else {
            "AVX2+FMA".to_string()
        }
    };
    reporter.text(&format!(
        "cpu: {}, {} cores; kernels: {kernels}\n",
        stages::runtime::cpu_description(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    if args.epoch {
        return epoch(cli, args, reporter);
    }
    let script = project.join("bench/torch_bench.py");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut skipped = None;
    for _ in 0..args.repeat {
        ours.push(
            stages::bench::bench(&data, &label, args.threads, args.batches)
                .map_err(|e| Error::Bench(e.to_string()))?,
        );
        if !args.no_torch && skipped.is_none() {
            match torch_once(children, &script, args.threads, args.batches) {
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
