//! The one error type of the orchestrator, and the exit codes it maps to.

use std::fmt;
use std::path::PathBuf;

/// Exit codes, documented in README.md.
pub mod exit {
    /// Everything asked for succeeded.
    pub const OK: i32 = 0;
    /// At least one stage failed.
    pub const STAGE_FAILED: i32 = 1;
    /// The pipeline file or the command line is invalid.
    pub const INVALID: i32 = 2;
    /// The cache or workspace could not be used: I/O errors (a full disk,
    /// permissions), or another run holds the lock.
    pub const ENVIRONMENT: i32 = 3;
    /// `predict --fresh`: the model's train stage is not fresh.
    pub const STALE: i32 = 4;
}

/// A problem in the pipeline file, located as precisely as we can.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    /// The offending source line, shown under the message.
    pub source_line: Option<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            source_line: None,
            help: None,
        }
    }

    /// Points at `line:column` in `text` (the file's contents).
    pub fn at(mut self, text: &str, line: usize, column: usize) -> Self {
        self.line = Some(line as u32);
        self.column = Some(column as u32);
        self.source_line = text.lines().nth(line.saturating_sub(1)).map(str::to_string);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let (Some(line), Some(src)) = (self.line, &self.source_line) {
            let num = line.to_string();
            write!(f, "\n {num} | {src}")?;
            if let Some(col) = self.column {
                let pad = " ".repeat(num.len());
                let caret = " ".repeat((col as usize).saturating_sub(1));
                write!(f, "\n {pad} | {caret}^")?;
            }
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Pipeline(Box<Diagnostic>),
    #[error("{0}")]
    Usage(String),
    #[error("could not {action} {}", path.display())]
    Io {
        action: std::borrow::Cow<'static, str>,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", locked_message(path, holder))]
    Locked { path: PathBuf, holder: String },
    #[error("could not serialize the record of {stage}")]
    Record {
        stage: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} changed while it was being stored in the cache\n  help: run again", path.display())]
    ChangedWhileStored { path: PathBuf },
    /// A dataset file named on the command line cannot be used.
    #[error(transparent)]
    Dataset(#[from] learn::data::dataset::DatasetError),
    /// The benchmark itself failed.
    #[error("the benchmark failed: {0}")]
    Bench(String),
    #[error("the disk holding {} is full ({during})\n  help: free space there (or move settings.cache to a larger disk) and run again; stages that did not finish are recorded as stale and will rerun", path.display())]
    DiskFull { path: PathBuf, during: String },
    #[error("the model of {stage} is stale ({why}), and --fresh asks for a fresh one\n  help: run `fmnist-pipe run {stage}` first, or drop --fresh to answer from the model it last trained")]
    Stale { stage: String, why: String },
    #[error("gc needs the cache to itself, and a run (of this project or another sharing the cache) is using it ({} is held)\n  help: run gc again when no run is going", path.display())]
    CacheInUse { path: PathBuf },
    /// A remote that cannot be used: unreachable, missing, refusing.
    #[error("remote `{remote}`: {problem}\n  help: {help}")]
    Remote {
        remote: String,
        problem: String,
        help: String,
    },
    /// `--executor slurm` where no cluster answers.
    #[error("{0}")]
    NoCluster(String),
    /// A trained model that cannot be found or read (`predict`, `export`).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// `diff`: the runs asked for are not in the history.
    #[error("{0}")]
    NoRun(String),
    /// `export -o` where the model may not go.
    #[error("{}", export_message(path, why))]
    Export { path: PathBuf, why: ExportRefusal },
    /// A fault of the tool itself, not of the input or the machine.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a trained model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{stage} has no trained model yet; run `fmnist-pipe run {stage}` first")]
    NotTrained { stage: String },
    #[error(
        "`{name}` is not a train stage; name the train stage whose model to use, e.g. {example}"
    )]
    NotATrainStage { name: String, example: String },
    #[error("`{name}` names {} models ({}); name one", stages.len(), stages.join(", "))]
    Ambiguous { name: String, stages: Vec<String> },
    #[error("no comparison to pick the best model from yet; run `fmnist-pipe run`, or name one with --model train@<variant>")]
    NoComparison,
    #[error("{stage} reads no preprocess stage")]
    NoPreprocess { stage: String },
    /// The training data's normalization cannot be read; `run`: the stage
    /// that writes it, when it is missing.
    #[error("{}: {problem}{}", path.display(), run.as_ref().map_or(String::new(), |s| format!("; run `fmnist-pipe run {s}` first")))]
    Normalization {
        path: PathBuf,
        problem: String,
        run: Option<String>,
    },
    #[error("{}: {problem}", path.display())]
    Weights { path: PathBuf, problem: String },
}

/// Where `export -o` may not write, and why.
#[derive(Debug)]
pub enum ExportRefusal {
    Exists,
    /// The directory to write into does not exist.
    NoDirectory(PathBuf),
    /// A place the tool owns (why, as the `outs` rule words it).
    Protected(String),
    /// Inside an output of a stage.
    StageOutput {
        out: String,
        stage: String,
    },
}

fn export_message(path: &std::path::Path, why: &ExportRefusal) -> String {
    const HELP: &str = "\nhelp: export to a path of your own, e.g. `-o model.onnx`";
    let path = path.display();
    match why {
        ExportRefusal::Exists => format!("{path} exists; remove it or choose another -o"),
        ExportRefusal::NoDirectory(d) => {
            format!("{}: no such directory; create it, or choose another -o", d.display())
        }
        ExportRefusal::Protected(why) => {
            format!("{path} {why}; the tool deletes and replaces files there{HELP}")
        }
        ExportRefusal::StageOutput { out, stage } => format!(
            "{path} lies in {out}, an output of stage {stage}, which the tool deletes before the stage reruns{HELP}"
        ),
    }
}

fn locked_message(path: &std::path::Path, holder: &str) -> String {
    format!(
        "another fmnist-pipe run holds the lock {} ({holder})\n  help: wait for it to finish, or pass --wait to queue behind it",
        path.display()
    )
}

impl Error {
    pub fn io(
        action: impl Into<std::borrow::Cow<'static, str>>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Pipeline(_)
            | Error::Usage(_)
            | Error::Dataset(_)
            | Error::NoCluster(_)
            | Error::Model(_)
            | Error::NoRun(_)
            | Error::Export { .. } => exit::INVALID,
            Error::Internal(_) => exit::ENVIRONMENT,
            Error::Bench(_) => exit::STAGE_FAILED,
            Error::Stale { .. } => exit::STALE,
            Error::Io { .. }
            | Error::Locked { .. }
            | Error::Record { .. }
            | Error::ChangedWhileStored { .. }
            | Error::DiskFull { .. }
            | Error::CacheInUse { .. }
            | Error::Remote { .. } => exit::ENVIRONMENT,
        }
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Self {
        Error::Pipeline(Box::new(d))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line (`could not write x: No space left
/// on device`). No error's message repeats its cause, so printers add them
/// (here, or as `Caused by:` lines for the command's own error).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_renders_location_line_and_caret() {
        let text = "a: 1\nstages:\n  x: 2\n";
        let d = Diagnostic::new("p.yaml", "bad thing")
            .at(text, 3, 3)
            .help("fix it");
        assert_eq!(
            d.to_string(),
            "p.yaml:3:3: bad thing\n 3 |   x: 2\n   |   ^\n  help: fix it"
        );
    }
}
