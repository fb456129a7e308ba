//! Command-line arguments and the top-level flow of each command.

pub mod bench;
pub mod models;

use crate::engine::interrupt::Running;
use crate::engine::plan::Planner;
use crate::engine::run::{self, RunOptions};
use crate::error::{exit, Error, ExportRefusal, ModelError, Result};
use crate::spec::graph::{self, Dag};
use crate::spec::{self, Pipeline};
use crate::state::fingerprint::DirtyReason;
use crate::state::hash::HashCache;
use crate::state::history;
use crate::state::store::Store;
use crate::ui::events::Summary;
use crate::ui::reporter::{Reporter, RowState, StatusRow};
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
    },
    /// Runs one built-in stage from a job description (what `run` starts
    /// for each built-in stage; not for people).
    #[command(name = "__stage", hide = true)]
    Stage {
        /// The job description (JSON) the orchestrator wrote.
        job: PathBuf,
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
    },
    /// Classify your own pictures (PNG or JPEG, any size, colour or grey)
    /// with a trained model: the top classes and their probabilities.
    Predict {
        /// Picture files, or directories (every .png, .jpg and .jpeg in them).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The train stage whose model to use (`train@no-aug`); default:
        /// the best variant of the last comparison.
        #[arg(long, short = 'm', value_name = "STAGE")]
        model: Option<String>,
        /// Classes shown per picture.
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// JSON for programs.
        #[arg(long)]
        json: bool,
        /// Refuse (exit 4) when the model's train stage is not fresh,
        /// instead of answering from the model it last trained with a warning.
        #[arg(long)]
        fresh: bool,
    },
    /// Write a trained model for another framework: `torch` (a safetensors
    /// state_dict of the equivalent nn.Sequential) or `onnx`.
    Export {
        /// The train stage whose model to export (`train@no-aug`).
        stage: String,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Where to write it (refused if it exists).
        #[arg(long, short = 'o')]
        output: PathBuf,
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
}

#[derive(Debug, Args)]
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

fn load(file: &Path) -> Result<(Pipeline, Dag)> {
    let (raw, text) = spec::load(file)?;
    let pipeline = spec::resolve(raw, text, file)?;
    let dag = Dag::build(&pipeline)?;
    Ok((pipeline, dag))
}

fn dispatch(cli: &Cli, reporter: &mut Reporter, running: &Running) -> Result<i32> {
    if let Command::Stage { job } = &cli.command {
        return run_job(job);
    }
    // Commands that start processes stop them on every way out.
    if matches!(
        cli.command,
        Command::Run(_) | Command::Bench(_) | Command::Gc { .. }
    ) {
        crate::engine::interrupt::install(running)?;
    }
    if let Command::Bench(args) = &cli.command {
        return crate::cli::bench::run(cli, args, reporter, &running.children);
    }
    let (pipeline, dag) = load(&cli.file)?;
    match &cli.command {
        Command::Bench(_) | Command::Stage { .. } => unreachable!("handled above"),
        Command::Show => {
            let rows = status_rows(&pipeline, &dag, &[], &[], false)?;
            let store = Store::new(pipeline.settings.cache_dir());
            for s in pipeline
                .stages
                .iter()
                .filter(|s| s.kind == stages::Kind::Compare)
            {
                let row = rows.iter().find(|r| r.stage == s.name);
                match read_table(&pipeline, &store, s) {
                    Some((t, from_cache)) => {
                        reporter.table(&t);
                        if from_cache {
                            reporter.text(&format!(
                                "note: {} is not in the workspace (deleted or changed); this is the cache's copy, and `fmnist-pipe run {}` restores it\n",
                                s.outs.first().map_or("", String::as_str),
                                s.name
                            ));
                        } else if let Some(r) = row.filter(|r| r.state != RowState::Fresh) {
                            let why = r.reason().unwrap_or_default();
                            reporter.text(&format!("note: this table is stale ({why}); `fmnist-pipe run` brings it up to date\n"));
                        }
                    }
                    None => reporter.text(&format!(
                        "{}: no table yet; run `fmnist-pipe run {}`\n",
                        s.name, s.name
                    )),
                }
            }
            if pipeline
                .stages
                .iter()
                .all(|s| s.kind != stages::Kind::Compare)
            {
                reporter.text("the pipeline has no compare stage\n");
            }
            Ok(exit::OK)
        }
        Command::Log { limit, json } => {
            let path = history::path(&pipeline);
            let limit = limit.unwrap_or(usize::MAX);
            let (runs, bad) = history::recent(&path, limit)?;
            // `-n 0` shows no run; say so without claiming there are none.
            let newest = match (limit, runs.first()) {
                (0, _) => history::newest_id(&path)?,
                (_, r) => r.map(|r| r.id),
            };
            reporter.log(&runs, bad, newest, *json);
            Ok(exit::OK)
        }
        Command::Diff {
            run_a,
            run_b,
            json,
            md,
        } => {
            let pick = match (run_a, run_b) {
                (Some(a), Some(b)) => history::Pick::Both(*a, *b),
                // One run named: it against the latest.
                (Some(a), None) => history::Pick::AgainstNewest(*a),
                _ => history::Pick::LastTwo,
            };
            match history::pick(&history::path(&pipeline), pick)? {
                Ok((a, b)) => {
                    reporter.diff(&history::diff(&a, &b), *json, *md);
                    Ok(exit::OK)
                }
                Err(history::Missing::Run { id, range }) => Err(Error::NoRun(format!(
                    "no run {id} in the history{}; `fmnist-pipe log` lists them",
                    match range {
                        Some((a, b)) => format!(" (runs {a} to {b})"),
                        None => " (it is empty)".into(),
                    }
                ))),
                Err(history::Missing::TooFew(n)) => Err(Error::NoRun(format!(
                    "diff compares two runs and the history has {n}; every `fmnist-pipe run` that runs something adds one"
                ))),
            }
        }
        Command::Predict {
            paths,
            model,
            top,
            json,
            fresh,
        } => {
            let mut m = crate::cli::models::find(&pipeline, model.as_deref())?;
            m.stale = staleness(&pipeline, &dag, &m.stage)?;
            if let (true, Some(why)) = (*fresh, &m.stale) {
                return Err(Error::Stale {
                    stage: m.stage.clone(),
                    why: why.clone(),
                });
            }
            let files = picture_files(paths)?;
            let mut answers: Vec<(
                PathBuf,
                std::result::Result<stages::predict::Prepared, String>,
            )> = files
                .into_iter()
                .map(|f| {
                    let r = std::fs::read(&f)
                        .map_err(|e| format!("cannot read it: {e}"))
                        .and_then(|b| stages::predict::prepare(&b));
                    (f, r)
                })
                .collect();
            let ok: Vec<stages::predict::Prepared> = answers
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok().cloned())
                .collect();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let probs = stages::predict::classify(&m.weights, (m.mean, m.std), &ok, threads)
                .map_err(|problem| ModelError::Weights {
                    path: m.weights.clone(),
                    problem,
                })?;
            let mut probs = probs.into_iter();
            let rows: Vec<crate::ui::reporter::Prediction> = answers
                .drain(..)
                .map(|(file, r)| crate::ui::reporter::Prediction {
                    file,
                    result: r.map(|p| (p, probs.next().unwrap_or_default())),
                })
                .collect();
            reporter.predictions(&m, &rows, *top, *json);
            Ok(if rows.iter().any(|r| r.result.is_err()) {
                exit::STAGE_FAILED
            } else {
                exit::OK
            })
        }
        Command::Export {
            stage,
            format,
            output,
        } => {
            let m = crate::cli::models::find(&pipeline, Some(stage))?;
            check_export_path(&pipeline, output)?;
            if output.exists() {
                return Err(Error::Export {
                    path: output.clone(),
                    why: ExportRefusal::Exists,
                });
            }
            let bad = |problem: String| ModelError::Weights {
                path: m.weights.clone(),
                problem,
            };
            let model = stages::nn::checkpoint::load(&m.weights).map_err(bad)?;
            let spec = serde_json::json!({
                "stage": m.stage,
                "layers": model.layers,
                "input": model.input,
                "classes": model.classes,
                "class_names": stages::contract::CLASS_NAMES,
                "normalization": {"mean": m.mean, "std": m.std, "formula": "(pixel / 255 - mean) / std"},
            })
            .to_string();
            let bytes = match format {
                ExportFormat::Torch => stages::export::torch(&model, &spec).map_err(bad)?,
                ExportFormat::Onnx => stages::export::onnx(&model, &spec),
            };
            // Whole or not at all: a temporary file of our own beside it
            // (created new, so nothing of the user's is ever replaced), renamed.
            let name = output
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = output.with_file_name(format!(".{name}.{}.partial", std::process::id()));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io("write the exported model", &tmp, e))?;
            std::io::Write::write_all(&mut file, &bytes)
                .and_then(|()| file.sync_all())
                .and_then(|()| std::fs::rename(&tmp, output))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    Error::io("write the exported model", output, e)
                })?;
            reporter.text(&format!(
                "{} ({}) -> {} ({:?}, {} bytes)\n",
                m.stage,
                m.weights.display(),
                output.display(),
                format,
                bytes.len()
            ));
            Ok(exit::OK)
        }
        Command::Dag { dot } => {
            reporter.text(&if *dot {
                graph::render_dot(&pipeline)
            } else {
                graph::render_tree(&pipeline, &dag)
            });
            Ok(exit::OK)
        }
        Command::Gc { dry_run } => {
            let store = Store::new(pipeline.settings.cache_dir());
            if !store.root().is_dir() {
                reporter.gc(&[], *dry_run);
                return Ok(exit::OK);
            }
            let _lock = store.lock(false, &mut |_| {})?;
            let hashes = HashCache::load(store.root().join("hashes.json"));
            let items = crate::state::gc::run(&pipeline, &store, &hashes, *dry_run)?;
            reporter.gc(&items, *dry_run);
            Ok(exit::OK)
        }
        Command::Status { stages, json } => {
            let mut rows = status_rows(&pipeline, &dag, stages, &[], false)?;
            if stages.is_empty() {
                rows.extend(orphan_rows(&pipeline));
            }
            reporter.status(&rows, *json);
            Ok(exit::OK)
        }
        Command::Run(args) => {
            if args.jobs == Some(0) {
                return Err(Error::Usage("--jobs must be at least 1".into()));
            }
            if args.dry_run {
                let rows = status_rows(&pipeline, &dag, &args.stages, &args.force, args.force_all)?;
                let mut lines = std::collections::BTreeMap::new();
                if args.executor.unwrap_or(pipeline.settings.executor) == spec::ExecutorKind::Slurm
                {
                    let store = Store::new(pipeline.settings.cache_dir());
                    for s in &pipeline.stages {
                        lines.insert(
                            s.name.clone(),
                            crate::engine::executor::slurm::describe(
                                &pipeline.settings.slurm,
                                s,
                                &store,
                            ),
                        );
                    }
                }
                reporter.dry_run(&rows, &lines);
                return Ok(exit::OK);
            }
            if args.executor.unwrap_or(pipeline.settings.executor) == spec::ExecutorKind::Slurm {
                // Before the cache is touched: without a cluster nothing runs.
                crate::engine::executor::slurm::probe()?;
            } else {
                // Likewise without the GPUs the stages ask for (on a
                // cluster, the nodes have them, not this one).
                probe_gpus(&pipeline)?;
            }
            let store = Store::new(pipeline.settings.cache_dir());
            let _lock = store.lock(args.wait, &mut |holder| {
                reporter.waiting(&store.root().join("lock"), holder)
            })?;
            let hashes = HashCache::load(store.root().join("hashes.json"));
            let opts = RunOptions {
                targets: args.stages.clone(),
                force: args.force.clone(),
                force_all: args.force_all,
                keep_going: args.keep_going,
                jobs: args.jobs,
                executor: args.executor,
                running: running.clone(),
            };
            let mut ran: Vec<history::RanStage> = Vec::new();
            let mut running: std::collections::HashMap<String, usize> = Default::default();
            let begun = history::start(&pipeline);
            let summary: Summary = run::run(&pipeline, &dag, &store, &hashes, &opts, &mut |e| {
                note_ran(&mut ran, &mut running, &e);
                reporter.event(e)
            })?;
            reporter.summary(&summary);
            if !ran.is_empty() {
                let path = history::path(&pipeline);
                // Only what is fresh now is the result of the parameters
                // recorded: a stale evaluation measured something else.
                let fresh: std::collections::HashSet<String> =
                    status_rows(&pipeline, &dag, &[], &[], false)?
                        .into_iter()
                        .filter(|r| r.state == RowState::Fresh)
                        .map(|r| r.stage)
                        .collect();
                let record = history::record(&pipeline, begun, ran, &|s| fresh.contains(s));
                if let Err(e) = history::append(&path, record) {
                    // The run itself succeeded; its record is what is lost.
                    let cause = std::error::Error::source(&e)
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default();
                    reporter.event(crate::ui::events::Event::Warning {
                        text: format!(
                            "this run is not in the history: {e}{cause}; make {} a writable file (or move it away) for later runs to be recorded",
                            path.display()
                        ),
                    });
                }
            }
            // The comparison tables of the compare stages this run covered and that are up to date.
            for s in &pipeline.stages {
                if s.kind == stages::Kind::Compare && summary.done.contains(&s.name) {
                    if let Some((t, _)) = read_table(&pipeline, &store, s) {
                        reporter.table(&t);
                    }
                }
            }
            Ok(if summary.failed > 0 {
                exit::STAGE_FAILED
            } else {
                exit::OK
            })
        }
    }
}

/// Why train stage `stage` is not fresh, as `status` says it; None when it is.
fn staleness(pipeline: &Pipeline, dag: &Dag, stage: &str) -> Result<Option<String>> {
    let rows = status_rows(pipeline, dag, &[stage.to_string()], &[], false)?;
    Ok(rows
        .into_iter()
        .find(|r| r.stage == stage)
        .filter(|r| r.state != RowState::Fresh)
        .map(|r| match (r.state, r.why) {
            (RowState::Running, _) => "it is being trained again right now".to_string(),
            (_, Some(why)) => why.to_string(),
            (state, None) => state.label().to_string(),
        }))
}

/// An export may not go where the tool deletes or owns files (the rule
/// for a stage's `outs`), nor into a stage's output: the next run of that
/// stage would meet a file it did not write. A missing directory is named.
fn check_export_path(pipeline: &Pipeline, output: &Path) -> Result<()> {
    let settings = &pipeline.settings;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::Export {
            path: output.to_path_buf(),
            why: ExportRefusal::NoDirectory(parent),
        });
    }
    let protected = crate::spec::protect::Protected::new(
        &settings.project_dir,
        &settings.file,
        &settings.cache,
        &settings.outputs,
    );
    if let Some(why) = protected.refuse(output) {
        return Err(Error::Export {
            path: output.to_path_buf(),
            why: ExportRefusal::Protected(why),
        });
    }
    let here = crate::spec::protect::physical(output);
    for s in &pipeline.stages {
        for o in &s.outs {
            let out = crate::spec::protect::physical(&settings.project_dir.join(o));
            if here.starts_with(&out) {
                return Err(Error::Export {
                    path: output.to_path_buf(),
                    why: ExportRefusal::StageOutput {
                        out: o.clone(),
                        stage: s.name.clone(),
                    },
                });
            }
        }
    }
    Ok(())
}

/// The pictures `paths` name: files as given, directories by their
/// .png/.jpg/.jpeg files, sorted.
fn picture_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io("list the pictures in", p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                            ["png", "jpg", "jpeg"].contains(&x.to_ascii_lowercase().as_str())
                        })
                })
                .collect();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no .png, .jpg or .jpeg files in this directory",
                    p.display()
                )));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Keeps what the history records of a run: each stage that ran, why,
/// and how it ended.
/// `running` maps a started stage to its place in `ran` (a linear search
/// per stage would make a run of thousands quadratic).
fn note_ran(
    ran: &mut Vec<history::RanStage>,
    running: &mut std::collections::HashMap<String, usize>,
    e: &crate::ui::events::Event,
) {
    use crate::ui::events::Event;
    match e {
        Event::Started { stage, reason, .. } => {
            running.insert(stage.clone(), ran.len());
            ran.push(history::RanStage {
                stage: stage.clone(),
                reason: reason.to_string(),
                outcome: "running".into(),
            })
        }
        Event::Finished { stage, .. } | Event::Failed { stage, .. } => {
            let outcome = if matches!(e, Event::Failed { .. }) {
                "failed"
            } else {
                "done"
            };
            if let Some(&k) = running.get(stage) {
                ran[k].outcome = outcome.into();
            }
        }
        _ => {}
    }
}

/// Every CUDA device a stage of `pipeline` names can be opened here.
#[cfg(feature = "cuda")]
fn probe_gpus(pipeline: &Pipeline) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for d in pipeline.stages.iter().filter_map(|s| s.device.as_deref()) {
        if stages::runtime::is_cuda(d) && seen.insert(d) {
            stages::runtime::cuda(d, 0).map_err(Error::Usage)?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn probe_gpus(_: &Pipeline) -> Result<()> {
    // Refused when the pipeline loaded.
    Ok(())
}

/// A compare stage's table: from the workspace, else the copy its last
/// complete run stored in the cache (the flag says so).
fn read_table(
    pipeline: &Pipeline,
    store: &Store,
    stage: &spec::Stage,
) -> Option<(stages::contract::Table, bool)> {
    let out = stage.outs.first()?;
    let path = pipeline
        .settings
        .project_dir
        .join(out)
        .join(stages::contract::TABLE_FILE);
    if let Some(t) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Some((t, false));
    }
    let record = store.record(&stage.name).ok()??;
    let file = record
        .outputs
        .iter()
        .find(|o| o.path == *out)?
        .tree
        .files
        .iter()
        .find(|f| f.rel == stages::contract::TABLE_FILE)?;
    let bytes = store.read_object(&file.hash)?;
    Some((serde_json::from_slice(&bytes).ok()?, true))
}

/// `__stage JOB`: one built-in stage in this process, its messages on
/// stdout (see `stages::job`).
fn run_job(path: &Path) -> Result<i32> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read the job", path, e))?;
    let job: stages::job::Job = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{}: not a job description: {e}", path.display())))?;
    Ok(stages::job::run(&job, &mut std::io::stdout()))
}

/// Stages with a record that the pipeline no longer declares.
fn orphan_rows(pipeline: &Pipeline) -> Vec<StatusRow> {
    let store = Store::new(pipeline.settings.cache_dir());
    crate::state::gc::orphans(pipeline, &store)
        .into_iter()
        .map(|name| {
            let record = store.record(&name).ok().flatten();
            let kind = record
                .as_ref()
                .and_then(|r| {
                    stages::Kind::ALL
                        .iter()
                        .find(|k| k.name() == r.fingerprint.kind)
                })
                .map_or("unknown", |k| k.name());
            let outs: Vec<String> = record
                .map(|r| r.outputs.into_iter().map(|o| o.path).collect())
                .unwrap_or_default();
            StatusRow {
                stage: name,
                state: RowState::Orphaned,
                why: Some(DirtyReason::Orphaned { outputs: outs }),
                kind,
            }
        })
        .collect()
}

/// The plan as rows, in dependency order. Read-only: takes no lock and
/// creates nothing (records are replaced atomically, so reading while a run
/// writes is safe).
fn status_rows(
    pipeline: &Pipeline,
    dag: &Dag,
    targets: &[String],
    force: &[String],
    force_all: bool,
) -> Result<Vec<StatusRow>> {
    let n = pipeline.stages.len();
    let mask = if targets.is_empty() {
        vec![true; n]
    } else {
        dag.closure(pipeline, &pipeline.select(targets)?)
    };
    let mut forced = vec![force_all; n];
    for i in pipeline.select(force)? {
        forced[i] = true;
    }
    let store = Store::new(pipeline.settings.cache_dir());
    let hashes = HashCache::load(store.root().join("hashes.json"));
    let planner = Planner {
        pipeline,
        store: &store,
        hashes: &hashes,
    };
    let assessed = planner.assess_all(dag.order(), &mask, &forced)?;
    if store.root().is_dir() {
        hashes.save();
    }
    Ok(dag
        .order()
        .iter()
        .filter_map(|&i| {
            let a = assessed[i].as_ref()?;
            let s = &pipeline.stages[i];
            Some(StatusRow {
                stage: s.name.clone(),
                state: a.state.row_state(),
                why: a.state.why(),
                kind: s.kind.name(),
            })
        })
        .collect())
}
