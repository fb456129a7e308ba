//! A run's state as its events tell it: each stage's state, reason,
//! times, slot and what it used, and a search's decisions. Written whole
//! to `state.json`; the page and the trace are made from it.

use crate::ui::events::Event;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where a stage stands in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Waiting,
    Running,
    Done,
    /// Fresh: nothing to do.
    Cached,
    Restored,
    Pulled,
    Failed,
    Interrupted,
    Skipped,
    /// The run ended before it started.
    NotStarted,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Waiting => "waiting",
            Standing::Running => "running",
            Standing::Done => "done",
            Standing::Cached => "cached",
            Standing::Restored => "restored",
            Standing::Pulled => "pulled",
            Standing::Failed => "failed",
            Standing::Interrupted => "interrupted",
            Standing::Skipped => "skipped",
            Standing::NotStarted => "not started",
        }
    }

    pub const ALL: [Standing; 10] = [
        Standing::Running,
        Standing::Waiting,
        Standing::Done,
        Standing::Cached,
        Standing::Restored,
        Standing::Pulled,
        Standing::Failed,
        Standing::Interrupted,
        Standing::Skipped,
        Standing::NotStarted,
    ];
}

/// One stage of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageLive {
    pub name: String,
    /// The stage as declared (before variants and seeds).
    pub base: String,
    pub kind: String,
    /// The variant without its seed: what seeds are averaged over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub state: Standing,
    /// Why it ran, or how it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds: the scheduler admitted it, it began, it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<f64>,
    /// Time from its inputs being done to being admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_s: Option<f64>,
    #[serde(default)]
    pub cpus: usize,
    #[serde(default)]
    pub gpus: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// The last thing it said, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<stages::measure::Usage>,
    /// Restored or pulled: how long the run that made it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_s: Option<f64>,
    /// Pulled: from which remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What it declared: memory (MB) and time (s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_s: Option<u64>,
    /// A search's trial.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trial: bool,
    /// An evaluation's test accuracy, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// An evaluation's metrics file, read once it is done.
    #[serde(skip)]
    pub metrics: Option<std::path::PathBuf>,
}

/// A search's decision, as it was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at: f64,
    pub search: String,
    /// The trial promoted; none when the search settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<String>,
    #[serde(default)]
    pub rung: usize,
    #[serde(default)]
    pub to: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ending {
    pub at: f64,
    /// `finished`, `failed` or `interrupted`.
    pub how: String,
    /// The run's tally in words.
    pub summary: String,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run's directory name.
    pub run: String,
    pub started: f64,
    pub pipeline: String,
    pub executor: String,
    pub cores: usize,
    pub stages: Vec<StageLive>,
    #[serde(default)]
    pub decisions: Vec<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ending>,
}

/// One change, as `events.jsonl` keeps it (what `serve` streams).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub what: String,
}

impl Change {
    pub fn of(at: f64, stage: &str, what: String) -> Change {
        Change {
            at,
            stage: Some(stage.to_string()),
            what,
        }
    }
}

impl RunState {
    pub fn new(pipeline: &crate::spec::Pipeline, run: &str, executor: &str) -> RunState {
        let mut stages: Vec<StageLive> = pipeline
            .stages
            .iter()
            .map(|s| stage_live(&pipeline.settings.project_dir, s))
            .collect();
        for &t in pipeline.searches.iter().flat_map(|p| &p.trials) {
            stages[t].trial = true;
        }
        RunState {
            run: run.to_string(),
            started: stages::measure::unix_now(),
            pipeline: pipeline.settings.file.display().to_string(),
            executor: executor.to_string(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stages,
            decisions: Vec::new(),
            ended: None,
        }
    }

    /// Takes in one event; the change it makes, if it changes a state.
    pub fn observe(&mut self, index: &mut HashMap<String, usize>, e: &Event) -> Option<Change> {
        match e {
            Event::Promoted { .. } | Event::SearchSettled { .. } => self.decided(e),
            Event::Restored { .. }
            | Event::Finished { .. }
            | Event::Failed { .. }
            | Event::Interrupted { .. }
            | Event::Skipped { .. } => self.ended(index, e),
            _ => self.going(index, e),
        }
    }

    /// A stage on its way: admitted, started, progressing, measured; or fresh.
    fn going(&mut self, index: &mut HashMap<String, usize>, e: &Event) -> Option<Change> {
        let now = stages::measure::unix_now();
        let change = |stage: &str, what: String| Some(Change::of(now, stage, what));
        match e {
            Event::Admitted {
                stage,
                waited,
                cpus,
                gpus,
            } => {
                let s = self.stage(index, stage);
                s.admitted = Some(now);
                s.waited_s = Some(waited.as_secs_f64());
                (s.cpus, s.gpus) = (*cpus, *gpus);
                None
            }
            Event::Started { stage, reason, .. } => {
                let s = self.stage(index, stage);
                s.state = Standing::Running;
                s.started = Some(now);
                s.reason = Some(reason.to_string());
                change(stage, format!("running ({reason})"))
            }
            Event::Submitted { stage, job } => {
                let s = self.stage(index, stage);
                s.submitted = Some(now);
                s.doing = Some(format!("Slurm job {job}"));
                None
            }
            Event::Progress {
                stage,
                step,
                fraction,
            } => {
                let s = self.stage(index, stage);
                if let stages::Step::Accuracy { accuracy } = step {
                    s.accuracy = Some(*accuracy);
                }
                if fraction.is_some() {
                    s.fraction = *fraction;
                }
                s.eta_s = eta(step).or(s.eta_s);
                s.doing = Some(crate::ui::words::step(step));
                None
            }
            Event::Measured { stage, usage } => {
                self.stage(index, stage).usage = Some(usage.clone());
                None
            }
            Event::Cached { stage } => {
                // A study's second phase finds what its first did fresh.
                let s = self.stage(index, stage);
                if s.state == Standing::Waiting {
                    s.state = Standing::Cached;
                }
                None
            }
            _ => None,
        }
    }

    /// How a stage ended.
    fn ended(&mut self, index: &mut HashMap<String, usize>, e: &Event) -> Option<Change> {
        let now = stages::measure::unix_now();
        let change = |stage: &str, what: String| Some(Change::of(now, stage, what));
        match e {
            Event::Restored {
                stage, from, took, ..
            } => {
                let s = self.stage(index, stage);
                s.state = if from.is_some() {
                    Standing::Pulled
                } else {
                    Standing::Restored
                };
                s.from = from.clone();
                s.saved_s = Some(took.as_secs_f64());
                s.started = s.started.or(Some(now));
                s.ended = Some(now);
                let what = s.state.name().to_string();
                change(stage, what)
            }
            Event::Finished { stage, .. } => {
                let s = self.stage(index, stage);
                s.state = Standing::Done;
                s.ended = Some(now);
                s.fraction = Some(1.0);
                s.eta_s = None;
                change(stage, "done".into())
            }
            Event::Failed { stage, failure, .. } => {
                let s = self.stage(index, stage);
                s.state = Standing::Failed;
                s.ended = Some(now);
                let why = crate::ui::reporter::failure_text(failure);
                let first = why.lines().next().unwrap_or("").to_string();
                s.reason = Some(first.clone());
                change(stage, format!("failed: {first}"))
            }
            Event::Interrupted { stage, .. } => {
                let s = self.stage(index, stage);
                s.state = Standing::Interrupted;
                s.ended = Some(now);
                change(stage, "interrupted".into())
            }
            Event::Skipped { stage, because, .. } => {
                let s = self.stage(index, stage);
                s.state = Standing::Skipped;
                s.reason = Some(format!("needs {because}"));
                change(stage, format!("skipped (needs {because})"))
            }
            _ => None,
        }
    }

    /// A search's decision.
    fn decided(&mut self, e: &Event) -> Option<Change> {
        let now = stages::measure::unix_now();
        let change = |stage: &str, what: String| Some(Change::of(now, stage, what));
        match e {
            Event::Promoted {
                search,
                trial,
                rung,
                to,
                val_acc,
            } => {
                self.decisions.push(Decision {
                    at: now,
                    search: search.clone(),
                    trial: Some(trial.clone()),
                    rung: *rung,
                    to: *to,
                    val_acc: val_acc.is_finite().then_some(*val_acc),
                });
                change(trial, format!("promoted at epoch {rung}, goes on to {to}"))
            }
            Event::SearchSettled { search } => {
                self.decisions.push(Decision {
                    at: now,
                    search: search.clone(),
                    trial: None,
                    rung: 0,
                    to: 0,
                    val_acc: None,
                });
                change(search, "every trial decided".into())
            }
            _ => None,
        }
    }

    /// The run is over: what never started says so.
    pub fn end(&mut self, ending: Ending) {
        for s in &mut self.stages {
            if matches!(s.state, Standing::Waiting | Standing::Running) {
                s.state = if s.state == Standing::Running {
                    Standing::Interrupted
                } else {
                    Standing::NotStarted
                };
            }
        }
        self.ended = Some(ending);
    }

    fn stage(&mut self, index: &mut HashMap<String, usize>, name: &str) -> &mut StageLive {
        if index.is_empty() && !self.stages.is_empty() {
            index.extend(
                self.stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.name.clone(), i)),
            );
        }
        // A stage the run added (a confirm's trainings once its search ended).
        let k = *index.entry(name.to_string()).or_insert_with(|| {
            self.stages.push(StageLive {
                name: name.to_string(),
                base: name.split('@').next().unwrap_or(name).to_string(),
                kind: String::new(),
                group: name
                    .split_once('@')
                    .map(|(_, v)| stages::contract::replicate_of(v).0.to_string()),
                state: Standing::Waiting,
                ..blank()
            });
            self.stages.len() - 1
        });
        &mut self.stages[k]
    }

    /// Reads the accuracy of evaluations that are done and did not say it
    /// in this run (fresh, restored), once each.
    pub fn read_accuracies(&mut self) {
        for s in &mut self.stages {
            let done = matches!(
                s.state,
                Standing::Done | Standing::Cached | Standing::Restored | Standing::Pulled
            );
            if !done || s.accuracy.is_some() {
                continue;
            }
            if let Some(path) = s.metrics.take() {
                s.accuracy = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<stages::contract::EvalReport>(&b).ok())
                    .map(|r| r.metrics.accuracy)
                    .filter(|a| a.is_finite());
            }
        }
    }

    /// How many stages stand where.
    pub fn counts(&self) -> Vec<(Standing, usize)> {
        Standing::ALL
            .iter()
            .map(|&st| (st, self.stages.iter().filter(|s| s.state == st).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

fn blank() -> StageLive {
    StageLive {
        name: String::new(),
        base: String::new(),
        kind: String::new(),
        group: None,
        state: Standing::Waiting,
        reason: None,
        admitted: None,
        started: None,
        submitted: None,
        ended: None,
        waited_s: None,
        cpus: 0,
        gpus: 0,
        fraction: None,
        eta_s: None,
        doing: None,
        usage: None,
        saved_s: None,
        from: None,
        mem_mb: None,
        time_s: None,
        trial: false,
        accuracy: None,
        metrics: None,
    }
}

fn stage_live(project: &std::path::Path, s: &crate::spec::Stage) -> StageLive {
    StageLive {
        name: s.name.clone(),
        base: s.base.clone(),
        kind: s.kind.name().to_string(),
        group: s
            .variant
            .as_deref()
            .map(|v| stages::contract::replicate_of(v).0.to_string()),
        mem_mb: s.resources.mem_mb,
        time_s: s.resources.time.map(|t| t.0),
        metrics: (s.kind == stages::Kind::Evaluate)
            .then(|| s.outs.first())
            .flatten()
            .map(|o| project.join(o).join(stages::contract::METRICS_FILE)),
        ..blank()
    }
}

/// The time a training says it has left.
fn eta(step: &stages::Step) -> Option<f64> {
    use learn::train::Event as T;
    match step {
        stages::Step::Training {
            event: T::Batch { eta_s, .. } | T::Epoch { eta_s, .. },
        } => Some(*eta_s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_move_a_stage_through_its_states() {
        let mut st = RunState {
            run: "r".into(),
            started: 0.0,
            pipeline: "p".into(),
            executor: "local".into(),
            cores: 2,
            stages: vec![],
            decisions: vec![],
            ended: None,
        };
        let mut ix = HashMap::new();
        let said = st.observe(
            &mut ix,
            &Event::Admitted {
                stage: "train@a~seed1".into(),
                waited: Duration::from_millis(1500),
                cpus: 2,
                gpus: 0,
            },
        );
        assert_eq!(said, None);
        let s = &st.stages[0];
        assert_eq!(
            (s.group.as_deref(), s.cpus, s.waited_s),
            (Some("a"), 2, Some(1.5))
        );
        let c = st
            .observe(
                &mut ix,
                &Event::Restored {
                    stage: "train@a~seed1".into(),
                    paths: vec![],
                    from: Some("lab".into()),
                    took: Duration::from_secs(90),
                },
            )
            .unwrap();
        assert_eq!(c.what, "pulled");
        assert_eq!(st.stages[0].saved_s, Some(90.0));
        st.observe(&mut ix, &Event::Cached { stage: "b".into() });
        st.stages.push(StageLive {
            name: "c".into(),
            state: Standing::Running,
            ..blank()
        });
        st.end(Ending {
            at: 1.0,
            how: "interrupted".into(),
            summary: String::new(),
        });
        let states: Vec<_> = st.stages.iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            [Standing::Pulled, Standing::Cached, Standing::Interrupted]
        );
    }
}
