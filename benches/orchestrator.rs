//! Orchestrator overhead on a pipeline of 1,000 trivial cmd stages.
//!
//! Prints: the first run (-j 1) and its per-stage overhead over the bare
//! cost of spawning the same 1,000 shell commands (measured here, in the
//! same run), then the medians of a no-op `status` and a no-op `run`
//! against their targets (0.3 s for status); then the first run of 100
//! built-in `download` stages of a 5-byte file, each its own process.
//!
//! With `history=N`, also a history of N recorded runs in the first
//! format (the whole state of 25 variants inline in each line, 6 kB a
//! line): a one-stage `run`, `log -n 3`, `diff` of the last two and of an
//! old one against the newest, then `gc`, which compacts it; times and
//! peak memory (`/usr/bin/time`, where installed).
//!
//! cargo bench --bench orchestrator [-- STAGES] [history=N]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn pipeline(n: usize) -> String {
    let mut y = String::from("settings:\n  jobs: 1\nstages:\n");
    for i in 0..n {
        y.push_str(&format!("  s{i}:\n    kind: cmd\n    cmd: \"echo {i} > out/s{i}.txt\"\n    deps: [data/in.txt]\n    outs: [out/s{i}.txt]\n"));
        if i % 10 != 0 {
            y.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    y
}

fn time(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_fmnist-pipe"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the binary");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    if let Some(h) = std::env::args()
        .skip(1)
        .find_map(|a| a.strip_prefix("history=")?.parse::<usize>().ok())
    {
        history(h);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("data")).unwrap();
    fs::create_dir_all(dir.path().join("out")).unwrap();
    fs::write(dir.path().join("data/in.txt"), "input\n").unwrap();
    fs::write(dir.path().join("pipeline.yaml"), pipeline(n)).unwrap();

    // Reference: the same commands spawned directly, one after another.
    let t = Instant::now();
    for i in 0..n {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("echo {i} > ref-{i}.txt"))
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let bare = t.elapsed();

    let first = time(dir.path(), &["run", "-j", "1"]);
    let overhead_ms = (first.as_secs_f64() - bare.as_secs_f64()) * 1000.0 / n as f64;
    let status = median((0..7).map(|_| time(dir.path(), &["status"])).collect());
    let noop = median((0..7).map(|_| time(dir.path(), &["run"])).collect());
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    println!("stages={n}");
    println!(
        "first_run_s={:.3} bare_spawn_s={:.3} ratio={:.2} overhead_per_stage_ms={:.2} (target < 20)",
        first.as_secs_f64(),
        bare.as_secs_f64(),
        first.as_secs_f64() / bare.as_secs_f64(),
        overhead_ms
    );
    println!(
        "noop_status_s={:.3} (median of 7; target < 0.3, ratio to target {:.2}) per_stage_ms={:.3}",
        status.as_secs_f64(),
        status.as_secs_f64() / 0.3,
        per(status)
    );
    println!(
        "noop_run_s={:.3} (median of 7) per_stage_ms={:.3}",
        noop.as_secs_f64(),
        per(noop)
    );
    builtin(100);
    slurm(10);
}

/// Where a Slurm cluster answers: `n` trivial stages in a chain through
/// `--executor slurm`, each submitted once the one before it is done; the
/// time per stage is what a stage costs from sbatch to its record.
fn slurm(n: usize) {
    let up = Command::new("squeue")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        println!("slurm: skipped (no cluster answers squeue; see ../shared/tools/slurm-local)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut y = String::from("stages:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  s{i}:\n    kind: cmd\n    cmd: \"echo {i} > s{i}.txt\"\n    outs: [s{i}.txt]\n"
        ));
        if i > 0 {
            y.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    fs::write(dir.path().join("pipeline.yaml"), y).unwrap();
    let runs: Vec<Duration> = (0..3)
        .map(|_| {
            let _ = fs::remove_dir_all(dir.path().join("cache"));
            for i in 0..n {
                let _ = fs::remove_file(dir.path().join(format!("s{i}.txt")));
            }
            time(dir.path(), &["run", "--executor", "slurm"])
        })
        .collect();
    let t = median(runs);
    println!(
        "slurm_chain_s={:.3} stages={n} (median of 3) per_stage_s={:.3} (sbatch to done, one after another)",
        t.as_secs_f64(),
        t.as_secs_f64() / n as f64
    );
}

/// The first run of `n` built-in stages: what a built-in stage costs the
/// orchestrator (a process, a job description, staging, the cache).
fn builtin(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("src")).unwrap();
    fs::write(dir.path().join("src/a.gz"), "hello").unwrap();
    let sha = stages::download::sha256_hex(b"hello");
    let mut y = String::from("settings:\n  jobs: 1\nstages:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  d{i}:\n    kind: download\n    params: {{sources: [src], files: {{a.gz: {sha}}}}}\n"
        ));
    }
    fs::write(dir.path().join("pipeline.yaml"), y).unwrap();
    let runs: Vec<Duration> = (0..3)
        .map(|_| {
            for d in ["cache", "outputs"] {
                let _ = fs::remove_dir_all(dir.path().join(d));
            }
            time(dir.path(), &["run", "-j", "1"])
        })
        .collect();
    let first = median(runs);
    println!(
        "builtin_first_run_s={:.3} stages={n} (median of 3) per_stage_ms={:.2} (target < 20)",
        first.as_secs_f64(),
        first.as_secs_f64() * 1000.0 / n as f64
    );
}

/// Seconds and peak kilobytes of one command, by `/usr/bin/time` where it
/// is installed (peak memory 0 otherwise).
fn time_mem(dir: &Path, args: &[&str]) -> (f64, u64) {
    let exe = env!("CARGO_BIN_EXE_fmnist-pipe");
    if !Path::new("/usr/bin/time").exists() {
        return (time(dir, args).as_secs_f64(), 0);
    }
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", exe])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the binary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = err.lines().last().unwrap_or("").split(' ').collect();
    (
        last.first().and_then(|s| s.parse().ok()).unwrap_or(0.0),
        last.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
    )
}

/// A history of `n` runs, and what reading and adding to it costs.
fn history(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::create_dir_all(d.join("cache")).unwrap();
    fs::create_dir_all(d.join("out")).unwrap();
    let pipeline = |v: u32| {
        format!("stages:\n  s:\n    kind: cmd\n    params: {{n: {v}}}\n    cmd: \"echo ${{params.n}} > out/s.txt\"\n    outs: [out/s.txt]\n")
    };
    fs::write(d.join("pipeline.yaml"), pipeline(0)).unwrap();
    let mut text = String::new();
    for id in 1..=n {
        let mut params = serde_json::Map::new();
        let mut metrics = serde_json::Map::new();
        for k in 0..25 {
            params.insert(
                format!("train@v{k}"),
                serde_json::json!({"lr": 0.001 * k as f64, "epochs": 10, "augment": [{"rotate": 10}, {"hflip": 0.5}], "plateau": {"factor": 0.5, "patience": 2}, "batch_size": 64, "model": "main"}),
            );
            metrics.insert(
                format!("evaluate@v{k}"),
                serde_json::json!({"accuracy": 0.9, "macro_f1": 0.89, "training_seconds": 300.0}),
            );
        }
        let line = serde_json::json!({"id": id, "when": "2026-11-25T00:00:00Z", "git": null, "ran": [{"stage": "train@v1", "reason": "never run", "outcome": "done"}], "params": params, "metrics": metrics});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    fs::write(d.join("cache/history.jsonl"), &text).unwrap();
    println!("history_runs={n} history_bytes={}", text.len());
    let show = |what: &str, (s, kb): (f64, u64)| println!("history {what}: {s:.2} s, peak {kb} KB");
    show("one-stage run", time_mem(d, &["run"]));
    fs::write(d.join("pipeline.yaml"), pipeline(1)).unwrap();
    show("second one-stage run", time_mem(d, &["run"]));
    show("log -n 3", time_mem(d, &["log", "-n", "3"]));
    show("diff (last two)", time_mem(d, &["diff"]));
    let newest = (n + 2).to_string();
    show(
        "diff 5 against the newest",
        time_mem(d, &["diff", "5", &newest]),
    );
    show("gc (compacts)", time_mem(d, &["gc"]));
    let after = fs::metadata(d.join("cache/history.jsonl")).map_or(0, |m| m.len());
    let states: u64 = fs::read_dir(d.join("cache/history"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    println!("history after gc: {after} bytes, state files {states} bytes");
    show(
        "diff 5 against the newest, compacted",
        time_mem(d, &["diff", "5", &newest]),
    );
}
