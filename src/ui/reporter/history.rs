//! `log` and `diff`: the recorded runs and what changed between two.

use super::*;

impl Reporter {
    /// `run --wait` found the cache locked.
    /// `log`: the runs given (newest first).
    /// `log`: the runs given (newest first); `newest`, the id of the newest
    /// run in the history (known when `-n 0` shows none).
    pub fn log(
        &self,
        runs: &[crate::state::history::RunSummary],
        unreadable: usize,
        newest: Option<u64>,
        json: bool,
    ) {
        if json {
            let v: Vec<_> = runs.iter().collect();
            self.text(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
            return;
        }
        if runs.is_empty() {
            match newest {
                Some(id) => self.text(&format!(
                    "no runs shown (-n 0); the newest of the history is run {id}\n"
                )),
                None => self.text(
                    "no runs recorded yet: every `fmnist-pipe run` that runs something adds one\n",
                ),
            }
            return;
        }
        let rows = runs
            .iter()
            .map(|r| {
                let done = r.ran.iter().filter(|s| s.outcome == "done").count();
                let failed = r.ran.len() - done;
                let mut what = done.to_string();
                if failed > 0 {
                    what.push_str(&format!(", {failed} failed"));
                }
                if r.pipeline_changed {
                    what.push_str(" (pipeline edited during the run)");
                }
                if !r.overrides.is_empty() {
                    what.push_str(&format!(" (-S {})", r.overrides.join(" -S ")));
                }
                let names: Vec<&str> = r.ran.iter().map(|s| s.stage.as_str()).collect();
                let shown = names.iter().take(4).copied().collect::<Vec<_>>().join(", ");
                let more = names.len().saturating_sub(4);
                vec![
                    r.id.to_string(),
                    r.when.replace('T', " ").replace('Z', " UTC"),
                    r.git.as_ref().map_or("—".into(), |g| {
                        format!(
                            "{}{}",
                            &g.commit[..g.commit.len().min(10)],
                            if g.dirty { " (dirty)" } else { "" }
                        )
                    }),
                    what,
                    format!(
                        "{shown}{}",
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ),
                ]
            })
            .collect();
        let mut notes =
            vec!["`fmnist-pipe diff A B` compares two runs (default: the last two).".to_string()];
        if unreadable > 0 {
            notes.push(format!("{unreadable} line(s) of the history could not be read (a run killed while writing it) and are left out."));
        }
        self.table(&stages::contract::Table {
            title: "Runs, newest first".into(),
            columns: ["run", "when", "commit", "ran", "stages"]
                .map(String::from)
                .to_vec(),
            rows,
            notes,
            variants: Vec::new(),
            sections: Vec::new(),
        });
    }

    /// `diff`: parameters that changed, metrics old and new.
    pub fn diff(&self, d: &crate::state::history::Diff, json: bool, md: bool) {
        if json {
            self.text(&format!(
                "{}\n",
                serde_json::to_string_pretty(d).unwrap_or_default()
            ));
            return;
        }
        let value =
            |v: &Option<serde_json::Value>| v.as_ref().map_or("—".into(), |v| v.to_string());
        // Accuracies as the comparison table gives them: percent, and
        // changes in percentage points.
        let percent = |metric: &str| metric.contains("accuracy");
        let num = |v: Option<f64>, stale: bool, metric: &str| match (v, stale) {
            (_, true) => "stale".to_string(),
            (Some(v), false) if percent(metric) => format!("{:.2}%", v * 100.0),
            (Some(v), false) => format!("{v:.4}"),
            (None, false) => "—".into(),
        };
        let change = |c: Option<f64>, metric: &str| match c {
            Some(c) if percent(metric) => format!("{:+.2} pp", c * 100.0),
            Some(c) => format!("{c:+.4}"),
            None => "—".into(),
        };
        let list = |names: &[String]| {
            const SHOWN: usize = 6;
            let mut t = names
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > SHOWN {
                t.push_str(&format!(" and {} more", names.len() - SHOWN));
            }
            t
        };
        let mut stages_line = Vec::new();
        if !d.added.is_empty() {
            stages_line.push(format!("{} added ({})", d.added.len(), list(&d.added)));
        }
        if !d.removed.is_empty() {
            stages_line.push(format!(
                "{} removed ({})",
                d.removed.len(),
                list(&d.removed)
            ));
        }
        let params = stages::contract::Table {
            title: format!("Parameters, run {} → run {}", d.old_run, d.new_run),
            columns: ["parameter", "old", "new"].map(String::from).to_vec(),
            rows: d
                .params
                .iter()
                .map(|p| vec![p.param.clone(), value(&p.old), value(&p.new)])
                .collect(),
            notes: if d.params.is_empty() {
                vec!["No parameter changed.".into()]
            } else {
                Vec::new()
            },
            variants: Vec::new(),
            sections: Vec::new(),
        };
        let metrics = stages::contract::Table {
            title: format!("Metrics, run {} → run {}", d.old_run, d.new_run),
            columns: ["stage", "metric", "old", "new", "change"]
                .map(String::from)
                .to_vec(),
            rows: d
                .metrics
                .iter()
                .map(|m| {
                    vec![
                        m.stage.clone(),
                        m.metric.clone(),
                        num(m.old, m.old_stale, &m.metric),
                        num(m.new, m.new_stale, &m.metric),
                        change(m.change, &m.metric),
                    ]
                })
                .collect(),
            notes: {
                let mut notes = Vec::new();
                if d.metrics.is_empty() {
                    notes.push("Neither run has evaluated metrics.".into());
                }
                if d.metrics.iter().any(|m| m.old_stale || m.new_stale) {
                    notes.push("stale: the evaluation was not fresh at the end of that run (its metrics measured an earlier configuration), so no value is attributed to the parameters recorded there.".into());
                }
                notes
            },
            variants: Vec::new(),
            sections: Vec::new(),
        };
        let stages_line = if stages_line.is_empty() {
            String::new()
        } else {
            format!(
                "Stages, run {} → run {}: {}\n",
                d.old_run,
                d.new_run,
                stages_line.join("; ")
            )
        };
        if md {
            self.text(&format!(
                "{stages_line}{}\n{}",
                params.markdown(),
                metrics.markdown()
            ));
        } else {
            if !stages_line.is_empty() {
                self.note(stages_line.trim_end());
            }
            self.table(&params);
            self.table(&metrics);
        }
    }
}
