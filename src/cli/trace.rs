//! `trace [RUN]`: where a run's time and memory went, stage by stage.

use crate::error::{exit, Error, Result};
use crate::live::trace::{self, Trace};
use crate::spec::Pipeline;
use crate::state::history;
use crate::state::store::Store;
use crate::ui::reporter::Reporter;

/// How `trace` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Tsv,
}

pub fn run(
    pipeline: &Pipeline,
    reporter: &mut Reporter,
    run: Option<&str>,
    format: Format,
) -> Result<i32> {
    let store = Store::open(&pipeline.settings);
    let (name, id) = which(pipeline, run)?;
    let dir = store.home().join(crate::live::RUNS).join(&name);
    let t = read(&dir).ok_or_else(|| {
        Error::Usage(format!(
            "run {name} has no trace in {} (it was removed, or the run was killed before it began)",
            dir.display()
        ))
    })?;
    match format {
        Format::Json => reporter.text(&format!(
            "{}\n",
            serde_json::to_string_pretty(&t).unwrap_or_default()
        )),
        Format::Tsv => reporter.text(&tsv(&t)),
        Format::Table => reporter.table(&table(&t, id)),
    }
    Ok(exit::OK)
}

/// The run directory `run` names: a history number, a run directory's
/// name, or (none) the newest recorded run.
fn which(pipeline: &Pipeline, run: Option<&str>) -> Result<(String, Option<u64>)> {
    if let Some(r) = run.filter(|r| crate::live::is_run_name(r)) {
        return Ok((r.to_string(), None));
    }
    let want: Option<u64> = match run {
        Some(r) => Some(r.parse().map_err(|_| {
            Error::Usage(format!(
                "`{r}` is not a run: give its number from `fmnist-pipe log`, or its directory's name"
            ))
        })?),
        None => None,
    };
    let (runs, _) = history::recent(&history::path(pipeline), usize::MAX)?;
    let found = runs
        .iter()
        .find(|r| want.is_none_or(|w| r.id == w) && (want.is_some() || r.live.is_some()));
    match found {
        Some(r) => match &r.live {
            Some(name) => Ok((name.clone(), Some(r.id))),
            None => Err(Error::Usage(format!(
                "run {} was recorded before runs were traced",
                r.id
            ))),
        },
        None => Err(Error::Usage(match want {
            Some(w) => format!("there is no run {w} in the history (`fmnist-pipe log` lists them)"),
            None => {
                "no traced run yet: every `fmnist-pipe run` that runs something is traced".into()
            }
        })),
    }
}

/// The run's trace; one still running is traced as it stands.
pub fn read(dir: &std::path::Path) -> Option<Trace> {
    if let Some(t) = std::fs::read(dir.join("trace.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Some(t);
    }
    let state: crate::live::state::RunState =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
    Some(trace::of(&state))
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("—".into(), f)
}

fn table(t: &Trace, id: Option<u64>) -> stages::contract::Table {
    let rows = t
        .stages
        .iter()
        .map(|e| {
            vec![
                e.stage.clone(),
                e.kind.clone(),
                e.outcome.clone(),
                format!("+{}", trace::seconds(e.start_s)),
                opt(e.queue_s, trace::seconds),
                trace::seconds(e.wall_s),
                opt(e.cpu_s, trace::seconds),
                opt(e.peak_rss_mb, |m| format!("{m:.0} MB")),
                if e.cpus > 0 {
                    e.cpus.to_string()
                } else {
                    "—".into()
                },
                e.node.clone().unwrap_or_else(|| e.executor.clone()),
                opt(e.saved_s, trace::seconds),
            ]
        })
        .collect();
    let ran: f64 = t
        .stages
        .iter()
        .filter(|e| e.saved_s.is_none())
        .map(|e| e.wall_s)
        .sum();
    let saved: f64 = t.stages.iter().filter_map(|e| e.saved_s).sum();
    let cut: Vec<&str> = t
        .stages
        .iter()
        .filter(|e| matches!(e.outcome.as_str(), "interrupted" | "running"))
        .map(|e| e.stage.as_str())
        .collect();
    let mut notes = vec![format!(
        "{} stage(s) fresh at the start are not listed. Stages ran {} in all{}.",
        t.fresh,
        trace::seconds(ran),
        if saved > 0.0 {
            format!("; restoring saved {}", trace::seconds(saved))
        } else {
            String::new()
        }
    )];
    if !cut.is_empty() {
        notes.push(format!("Cut short: {}.", cut.join(", ")));
    }
    notes.push("CPU: user + system of the stage's processes; peak memory: the larger of the largest process's and the process group's sum sampled every 0.2 s.".into());
    stages::contract::Table {
        title: format!(
            "Trace of run {}{} ({}, {})",
            id.map_or(String::new(), |i| format!("{i}, ")),
            t.run,
            t.executor,
            t.ended.as_deref().unwrap_or("running")
        ),
        columns: [
            "stage", "kind", "outcome", "start", "queued", "wall", "CPU", "peak", "threads",
            "where", "saved",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes,
        variants: Vec::new(),
        sections: Vec::new(),
    }
}

fn tsv(t: &Trace) -> String {
    let mut out = String::from(
        "stage\tkind\toutcome\tstart_s\tqueue_s\twall_s\tcpu_s\tuser_s\tsys_s\tpeak_rss_mb\tcpus\tgpus\texecutor\tnode\tsaved_s\n",
    );
    let f = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.3}"));
    for e in &t.stages {
        out.push_str(&format!(
            "{}\t{}\t{}\t{:.3}\t{}\t{:.3}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            e.stage,
            e.kind,
            e.outcome,
            e.start_s,
            f(e.queue_s),
            e.wall_s,
            f(e.cpu_s),
            f(e.user_s),
            f(e.sys_s),
            f(e.peak_rss_mb),
            e.cpus,
            e.gpus,
            e.executor,
            e.node.as_deref().unwrap_or(""),
            f(e.saved_s)
        ));
    }
    out
}
