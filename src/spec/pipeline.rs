//! The resolved pipeline: its settings and its concrete stages, as the
//! engine sees them; and a declared stage before expansion ([`Base`]).

use super::load::{RawSlurm, RawStage};
use super::locate::suggest;
use super::resources::Resources;
use crate::error::{Diagnostic, Result};
use serde_json::{Map, Value};
use stages::Kind;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The pipeline file, as given.
    pub file: PathBuf,
    /// The directory holding the pipeline file; every relative path in it
    /// is relative to this directory.
    pub project_dir: PathBuf,
    /// The cache directory, relative to the project directory or absolute.
    pub cache: String,
    /// Where built-in kinds put their outputs, relative to the project.
    pub outputs: String,
    pub jobs: usize,
    pub device: String,
    pub executor: ExecutorKind,
    pub slurm: RawSlurm,
    /// `settings.resources`: default resources per kind.
    pub resources: BTreeMap<Kind, super::resources::RawResources>,
    /// `settings.remotes`, in declaration order.
    pub remotes: Vec<(String, RemoteSpec)>,
}

/// Where results are pushed to and pulled from.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteSpec {
    /// A directory (a shared file system); relative to the project.
    Dir(PathBuf),
    /// An S3 bucket (or an S3-compatible server at `endpoint`).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
    },
}

/// Where stages run: child processes here, or Slurm jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

impl ExecutorKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(Self::Local),
            "slurm" => Some(Self::Slurm),
            _ => None,
        }
    }
}

impl Settings {
    pub fn cache_dir(&self) -> PathBuf {
        self.project_dir.join(&self.cache)
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    /// Concrete name: `train@fast` for a variant, `prep` otherwise.
    pub name: String,
    /// The name declared in the YAML (`train`).
    pub base: String,
    pub variant: Option<String>,
    /// For a seed replicate, the name of its group (`train@main` for
    /// `train@main~seed1`): naming the group names every seed.
    pub group: Option<String>,
    pub kind: Kind,
    pub desc: Option<String>,
    /// Canonical parameters (defaults filled in, variant merged).
    pub params: Value,
    /// The substituted shell command (`cmd` stages only).
    pub cmd: Option<String>,
    /// Input files or directories, relative to the project directory
    /// (or absolute, for data outside it).
    pub deps: Vec<String>,
    /// Outputs, relative to the project directory.
    pub outs: Vec<String>,
    /// A `cmd` stage's predictions of the test set: one of its outputs
    /// or a file inside one, relative to the project directory.
    pub predictions: Option<String>,
    /// Stages this one needs: explicit `needs`, `foreach`, and any stage
    /// whose output is one of this stage's deps. Indices into
    /// [`Pipeline::stages`], sorted and unique.
    pub needs: Vec<usize>,
    pub resources: Resources,
    /// The compute device, for kinds that use one.
    pub device: Option<String>,
    /// Its sbatch settings: settings.slurm with the stage's own `slurm`.
    pub slurm: RawSlurm,
}

/// A search as the scheduler runs it: its trial stages (in order), the
/// stage that reports it, and asynchronous successive halving's rungs.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    pub report: usize,
    pub trials: Vec<usize>,
    /// Epochs at which trials are compared, increasing, below `epochs`.
    pub rungs: Vec<usize>,
    pub epochs: usize,
    pub keep: f64,
}

/// A confirm stage as resolved: what it confirms and how.
#[derive(Debug, Clone)]
pub struct ConfirmPlan {
    /// The confirm stage.
    pub confirm: usize,
    /// The search it confirms (an index into `Pipeline::searches`).
    pub search: usize,
    /// How many of the best trials it confirms.
    pub top: usize,
    /// The fresh seeds each configuration trains on.
    pub seeds: Vec<u64>,
    /// The reference configuration's training parameters.
    pub reference: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub settings: Settings,
    pub stages: Vec<Stage>,
    /// Each `search:`: its trials and early stopping, for the scheduler.
    pub searches: Vec<SearchPlan>,
    /// Each `confirm` stage, to be given its trainings once its search
    /// has a result ([`super::confirm::finalize`]).
    pub confirms: Vec<ConfirmPlan>,
    pub text: String,
    /// `-S` overrides applied to the file's parameters, as given.
    pub overrides: Vec<String>,
}

impl Pipeline {
    /// Whether stage `i` is one of a search's trials.
    pub fn is_trial(&self, i: usize) -> bool {
        self.searches.iter().any(|s| s.trials.contains(&i))
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Resolves user-given stage names (a concrete name, or a base name
    /// meaning all its variants) to indices.
    pub fn select(&self, names: &[String]) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for name in names {
            let found: Vec<usize> = self
                .stages
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.name == *name || s.base == *name || s.group.as_ref() == Some(name)
                })
                .map(|(i, _)| i)
                .collect();
            if found.is_empty() {
                let mut d =
                    Diagnostic::new(&self.settings.file, format!("no stage named `{name}`"));
                let candidates: Vec<&str> = self
                    .stages
                    .iter()
                    .flat_map(|s| [s.name.as_str(), s.base.as_str()])
                    .collect();
                if let Some(s) = suggest(name, candidates) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.into());
            }
            out.extend(found);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

pub(super) struct Base<'a> {
    pub(super) name: &'a str,
    pub(super) raw: &'a RawStage,
    pub(super) params: Value,
    pub(super) variants: Option<Vec<(String, Value)>>,
    /// `search:`: the checked search and each trial's values as shown.
    pub(super) search: Option<(super::search::Search, Vec<Map<String, Value>>)>,
}

/// The variant name of a search's report stage (`train@search`).
pub const SEARCH_VARIANT: &str = "search";
