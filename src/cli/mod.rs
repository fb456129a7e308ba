//! Command-line arguments and the top-level flow of each command.

pub mod bench;
mod dag;
mod diff;
mod export;
mod gc;
mod log;
pub mod models;
mod predict;
mod push;
mod run;
mod serve;
mod show;
mod status;
mod trace;

use crate::engine::interrupt::Running;
use crate::error::{exit, Error, Result};
use crate::spec::graph::Dag;
use crate::spec::{self, Pipeline};
use crate::ui::reporter::Reporter;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "fmnist-pipe",
    version,
    about = "Reproducible deep-learning ablation studies from a YAML pipeline, with content-hashed caching."
)]
pub struct Cli {
    /// The pipeline file; relative paths in it are relative to its directory.
    #[arg(short = 'f', long, global = true, default_value = "pipeline.yaml")]
    pub file: PathBuf,
    /// Print more: fresh stages during `run`, progress as plain lines.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stale stages (all of them, or those the given stages need).
    Run(RunArgs),
    /// One line per stage: fresh, new or dirty, and why.
    Status {
        /// Only these stages and what they need.
        stages: Vec<String>,
        /// Set a parameter for this command without editing the file:
        /// `train.lr=0.01`, `train@fast.dropout=0.5` (repeatable).
        #[arg(short = 'S', long = "set", value_name = "STAGE.KEY=VALUE")]
        set: Vec<String>,
        /// JSON: an array of {stage, state, reason, why, kind}.
        #[arg(long)]
        json: bool,
    },
    /// Training and inference speed of the main CNN (and PyTorch's, when installed).
    Bench(BenchArgs),
    /// Print the latest comparison table again, without running anything.
    Show,
    /// Remove what no stage of the pipeline owns: records, logs and outputs
    /// of stages no longer declared, and unreferenced cache objects.
    Gc {
        /// Say what would be removed, remove nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Also forget the remembered runs that no project's last run is
        /// (a parameter changed back then reruns), and the saved progress
        /// of unfinished trainings.
        #[arg(long)]
        runs: bool,
    },
    /// Runs one built-in stage from a job description (what `run` starts
    /// for each built-in stage; not for people).
    #[command(name = "__stage", hide = true)]
    Stage {
        /// The job description (JSON) the orchestrator wrote.
        job: PathBuf,
    },
    /// Where a run's time and memory went: each stage's queue wait, wall
    /// and CPU time, peak memory, threads, node, and what the cache saved.
    Trace {
        /// The run: its number from `log`, or its live directory's name
        /// (default: the newest traced run).
        run: Option<String>,
        /// JSON: the whole trace.
        #[arg(long, conflicts_with = "tsv")]
        json: bool,
        /// Tab-separated values, one line per stage, in seconds and MB.
        #[arg(long)]
        tsv: bool,
    },
    /// Serve the runs' live pages over HTTP (read-only), updated as the
    /// runs go on; from a cluster, reach it with `ssh -L`.
    Serve {
        /// The port (0: any free one).
        #[arg(long, short = 'p', default_value_t = 8080)]
        port: u16,
        /// The address to listen on; anything but this machine's own
        /// loopback shows the runs to the network.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
    },
    /// Runs a command and writes what it used (what a Slurm job runs a
    /// `cmd` stage under; not for people).
    #[command(name = "__measure", hide = true)]
    Measure {
        /// Where what the command used is written (JSON).
        usage: PathBuf,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// The recorded runs, newest first: when, the git commit, what ran.
    Log {
        /// At most this many runs.
        #[arg(long, short = 'n')]
        limit: Option<usize>,
        /// JSON: the whole records.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two recorded runs: the parameters that
    /// differ, and each variant's metrics, old, new and the difference.
    /// Default: the last two runs.
    Diff {
        /// The older run (a number from `log`).
        run_a: Option<u64>,
        /// The newer run.
        run_b: Option<u64>,
        /// JSON instead of tables.
        #[arg(long, conflicts_with = "md")]
        json: bool,
        /// Markdown tables.
        #[arg(long)]
        md: bool,
        /// Every stage on its own: seed replicates not taken together,
        /// every parameter of added and removed stages.
        #[arg(long)]
        all: bool,
    },
    /// Classify your own pictures (PNG or JPEG, any size, colour or grey)
    /// with a trained model: the top classes and their probabilities.
    Predict(PredictArgs),
    /// Write a trained model for another framework: `torch` (a safetensors
    /// state_dict of the equivalent nn.Sequential) or `onnx`.
    Export {
        /// The train stage whose model to export (`train@no-aug`).
        stage: String,
        /// `torch`: a safetensors state_dict that loads into the
        /// equivalent nn.Sequential; `onnx`: an ONNX model (opset 13).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Where to write it (refused if it exists).
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Send the results of fresh stages (all, or these and what they
    /// need) to a remote of settings.remotes: their files, then their records.
    Push {
        /// Stages to push, with what they need (each must be fresh). All
        /// fresh stages when none are given.
        stages: Vec<String>,
        /// Which remote (needed when the pipeline declares several).
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Fetch from a remote the results of stages that are stale here (all,
    /// or these and what they need) and restore their outputs; runs nothing.
    Pull {
        /// Stages to fetch, with what they need. Every stale stage when
        /// none are given.
        stages: Vec<String>,
        /// Which remote (needed when the pipeline declares several).
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// The stage graph as an indented tree.
    Dag {
        /// Graphviz dot instead of the tree.
        #[arg(long)]
        dot: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Torch,
    Onnx,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// CPU threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed training batches (of 64), after 3 warm-up ones.
    #[arg(long, default_value_t = 50)]
    pub batches: usize,
    /// A preprocessed dataset (dataset.fmnd); default: the pipeline's
    /// outputs/preprocess/dataset.fmnd if it exists, else random images.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Skip the PyTorch twin (bench/torch_bench.py).
    #[arg(long)]
    pub no_torch: bool,
    /// Measurements of each side, alternated; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// The work a user does instead: one whole training epoch of a `train`
    /// stage (main CNN, no augmentation) on the real training images,
    /// against a plain PyTorch training loop over the same images
    /// (bench/torch_epoch.py); needs the preprocessed dataset.
    #[arg(long)]
    pub epoch: bool,
    /// With --epoch: `auto` (AVX-512 where the core has it, unless
    /// FMNIST_PIPE_KERNELS=avx2), `avx2`, `avx512` (where the core has it),
    /// or `both`, alternated in each round.
    #[arg(long, default_value = "auto", value_parser = ["auto", "avx2", "avx512", "both"])]
    pub kernels: String,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Picture files, or directories (every .png, .jpg and .jpeg in them).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The train stage whose model to use (`train@no-aug`); default:
    /// the best variant of the last comparison.
    #[arg(long, short = 'm', value_name = "STAGE")]
    pub model: Option<String>,
    /// Classes shown per picture.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// Refuse (exit 4) when the model's train stage is not fresh,
    /// instead of answering from the model it last trained with a warning.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Stages to run (a name, or a base name meaning all its variants);
    /// everything they need runs first. All stages when none are given.
    pub stages: Vec<String>,
    /// Print what would run and why, and run nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Rerun this stage even if it is fresh (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Rerun every stage.
    #[arg(long)]
    pub force_all: bool,
    /// After a failure, go on with the stages that do not depend on it.
    #[arg(long, short = 'k')]
    pub keep_going: bool,
    /// Write no live page, state or trace for this run.
    #[arg(long)]
    pub no_live: bool,
    /// Cores the local scheduler packs stages onto (default: settings.jobs,
    /// else the number of cores); with `--executor slurm`, how many jobs
    /// may be queued or running at once (default 100).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// If another run holds the cache, wait for it instead of refusing.
    #[arg(long)]
    pub wait: bool,
    /// Where stages run: `local` (child processes, packed by resources)
    /// or `slurm` (one sbatch job each). Default: settings.executor, else local.
    #[arg(long, value_name = "local|slurm", value_parser = parse_executor)]
    pub executor: Option<spec::ExecutorKind>,
    /// Before running a stale stage, fetch its result from the remote if
    /// it was pushed there (as a colleague or a CI runner would).
    #[arg(long)]
    pub pull: bool,
    /// The remote for --pull (needed when the pipeline declares several).
    #[arg(long, value_name = "NAME", requires = "pull")]
    pub remote: Option<String>,
    /// Fetch and restore only, run nothing (`pull`).
    #[arg(skip)]
    pub only_pull: bool,
    /// Set a parameter for this run without editing the file:
    /// `train.lr=0.01`, `train@fast.dropout=0.5` (repeatable; the history
    /// records it).
    #[arg(short = 'S', long = "set", value_name = "STAGE.KEY=VALUE")]
    pub set: Vec<String>,
}

fn parse_executor(text: &str) -> std::result::Result<spec::ExecutorKind, String> {
    spec::ExecutorKind::parse(text)
        .ok_or_else(|| format!("`{text}` is not an executor; use `local` or `slurm`"))
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    // Before any thread exists: allocator settings the training kernels need.
    stages::runtime::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
        }
    };
    let mut reporter = Reporter::new(cli.verbose);
    let running = Running::default();
    let result = dispatch(&cli, &mut reporter, &running);
    // A stop signal arrived: its thread stops the children, reports and
    // exits with the signal's status; this thread must not exit first.
    if running.stopping() {
        running.reported();
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            reporter.error(&e);
            e.exit_code()
        }
    }
}

/// A pipeline that fails to resolve with `-S` options: when the file alone
/// resolves, the error is the first option's that makes it fail, and it
/// names that option, not a line of the file.
fn blame_override(file: &Path, sets: &[String], e: Error) -> Error {
    let resolves = |n: usize| -> Option<Result<()>> {
        let (mut raw, text) = spec::load(file).ok()?;
        spec::overrides::apply(&mut raw, &sets[..n]).ok()?;
        Some(spec::resolve(raw, text, file).map(|_| ()))
    };
    if !matches!(resolves(0), Some(Ok(()))) {
        return e;
    }
    for n in 1..=sets.len() {
        if let Some(Err(Error::Pipeline(d))) = resolves(n) {
            let help = d
                .help
                .as_ref()
                .map_or(String::new(), |h| format!("\n  help: {h}"));
            return Error::Usage(format!("-S {}: {}{help}", sets[n - 1], d.message));
        }
    }
    e
}

/// The pipeline as resolved (its confirm stages waiting for their
/// searches), then with the finalists the searches' results give.
fn load(file: &Path, sets: &[String]) -> Result<(Pipeline, Pipeline, Dag)> {
    let (mut raw, text) = spec::load(file)?;
    spec::overrides::apply(&mut raw, sets)?;
    let mut pipeline = match spec::resolve(raw, text, file) {
        Ok(p) => p,
        Err(e @ Error::Pipeline(_)) if !sets.is_empty() => {
            return Err(blame_override(file, sets, e))
        }
        Err(e) => return Err(e),
    };
    pipeline.overrides = sets.to_vec();
    let (expanded, dag) = crate::engine::finalists::expand(&pipeline)?;
    Ok((pipeline, expanded, dag))
}

fn dispatch(cli: &Cli, reporter: &mut Reporter, running: &Running) -> Result<i32> {
    if let Command::Stage { job } = &cli.command {
        return run_job(job);
    }
    if let Command::Measure { usage, command } = &cli.command {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| Error::Usage("__measure needs a command".into()))?;
        return Ok(stages::measure::run_measured(program, args, usage));
    }
    // Commands that start processes stop them on every way out.
    if matches!(cli.command, Command::Bench(_) | Command::Gc { .. }) {
        crate::engine::interrupt::install(running, None)?;
    }
    if let Command::Bench(args) = &cli.command {
        return crate::cli::bench::run(cli, args, reporter, &running.children);
    }
    let sets: &[String] = match &cli.command {
        Command::Run(a) => &a.set,
        Command::Status { set, .. } => set,
        _ => &[],
    };
    let (resolved, pipeline, dag) = load(&cli.file, sets)?;
    if matches!(cli.command, Command::Run(_) | Command::Pull { .. }) {
        // A study outlives a dropped SSH session: on SIGHUP its output
        // goes on in the project's run log.
        let log = crate::state::store::Store::open(&pipeline.settings)
            .home()
            .join("run.log");
        crate::engine::interrupt::install(running, Some(log))?;
    }
    match &cli.command {
        Command::Bench(_) | Command::Stage { .. } | Command::Measure { .. } => {
            unreachable!("handled above")
        }
        Command::Show => show::run(&pipeline, &dag, reporter),
        Command::Log { limit, json } => log::run(&pipeline, reporter, limit, json),
        Command::Trace { run, json, tsv } => {
            let format = match (json, tsv) {
                (true, _) => trace::Format::Json,
                (_, true) => trace::Format::Tsv,
                _ => trace::Format::Table,
            };
            trace::run(&pipeline, reporter, run.as_deref(), format)
        }
        Command::Serve { port, bind } => serve::run(&pipeline, reporter, bind, *port),
        Command::Diff {
            run_a,
            run_b,
            json,
            md,
            all,
        } => diff::run(&pipeline, reporter, run_a, run_b, json, md, *all),
        Command::Predict(args) => predict::run(&pipeline, &dag, reporter, args),
        Command::Export {
            stage,
            format,
            output,
        } => export::run(&pipeline, reporter, stage, format, output),
        Command::Dag { dot } => dag::run(&pipeline, &dag, reporter, dot),
        Command::Gc { dry_run, runs } => gc::run(&pipeline, reporter, *dry_run, *runs),
        Command::Status { stages, json, .. } => {
            status::run(&pipeline, &dag, reporter, stages, json)
        }
        Command::Run(args) => run::run(&resolved, (&pipeline, &dag), reporter, args, running),
        Command::Push { stages, remote } => {
            push::run(&pipeline, &dag, reporter, stages, remote.as_deref())
        }
        Command::Pull { stages, remote } => {
            let args = RunArgs {
                stages: stages.clone(),
                pull: true,
                remote: remote.clone(),
                only_pull: true,
                ..RunArgs::default()
            };
            run::run(&resolved, (&pipeline, &dag), reporter, &args, running)
        }
    }
}

/// `__stage JOB`: one built-in stage in this process, its messages on
/// stdout (see `stages::job`).
fn run_job(path: &Path) -> Result<i32> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read the job", path, e))?;
    let job: stages::job::Job = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{}: not a job description: {e}", path.display())))?;
    Ok(stages::job::run(
        &job,
        &mut std::io::stdout(),
        &crate::ui::words::step,
    ))
}

#[cfg(test)]
mod help_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `--help` explains every argument of every command.
    #[test]
    fn every_argument_has_help() {
        let mut missing = Vec::new();
        let root = Cli::command();
        let commands = std::iter::once(&root).chain(root.get_subcommands());
        for cmd in commands {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{} {id}", cmd.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
