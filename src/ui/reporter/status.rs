//! `status` and `run --dry-run`: one line per stage and why.

use super::*;

/// One line of `status`.
#[derive(Debug)]
pub struct StatusRow {
    pub stage: String,
    pub state: RowState,
    /// Why it is not fresh.
    pub why: Option<DirtyReason>,
    pub kind: &'static str,
    /// A search trial's sampled values.
    pub values: Option<String>,
}

impl StatusRow {
    /// `run` restores this stage's outputs from the cache instead of running it.
    pub fn restore(&self) -> bool {
        self.why.as_ref().is_some_and(DirtyReason::restorable)
    }

    /// The reason in words.
    pub fn reason(&self) -> Option<String> {
        self.why.as_ref().map(ToString::to_string)
    }
}

/// A `status --json` row: the reason in words and as a structure.
#[derive(Serialize)]
struct JsonRow<'a> {
    stage: &'a str,
    state: &'a str,
    reason: Option<String>,
    why: Option<&'a DirtyReason>,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<&'a str>,
}

impl Reporter {
    pub fn status(&self, rows: &[StatusRow], json: bool) {
        let mut out = std::io::stdout().lock();
        if json {
            let rows: Vec<JsonRow> = rows
                .iter()
                .map(|r| JsonRow {
                    stage: &r.stage,
                    state: r.state.label(),
                    reason: r.reason(),
                    why: r.why.as_ref(),
                    kind: r.kind,
                    values: r.values.as_deref(),
                })
                .collect();
            let _ = serde_json::to_writer_pretty(&mut out, &rows);
            let _ = writeln!(out);
            return;
        }
        let width = rows.iter().map(|r| r.stage.len()).max().unwrap_or(0);
        let sw = rows
            .iter()
            .map(|r| r.state.label().len())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut text = String::new();
        for r in rows {
            let line = format!(
                "{:<sw$}  {:<width$}  {}{}",
                r.state.label(),
                r.stage,
                r.reason().unwrap_or_default(),
                r.values
                    .as_ref()
                    .map_or(String::new(), |v| format!("  [{v}]"))
            );
            text.push_str(line.trim_end());
            text.push('\n');
        }
        // Fresh, new and dirty always; the others when there are any.
        let counts: Vec<String> = RowState::ALL
            .iter()
            .map(|&s| (s, rows.iter().filter(|r| r.state == s).count()))
            .filter(|&(s, n)| {
                n > 0 || matches!(s, RowState::Fresh | RowState::New | RowState::Dirty)
            })
            .map(|(s, n)| format!("{n} {}", s.label()))
            .collect();
        text.push_str(&counts.join(", "));
        text.push('\n');
        let _ = out.write_all(text.as_bytes());
    }

    /// `run --dry-run`: what would run and why.
    /// `lines`: what each stage that would run is submitted with, if anything.
    /// What the last measured runs say of stages' declarations.
    pub fn measured(&self, warnings: &[(String, String)]) {
        for (stage, w) in warnings {
            self.line(&format!(
                "warning: {stage}: {w} (see `fmnist-pipe trace`); raise the declaration, or on Slurm the job may be killed"
            ));
        }
    }

    pub fn dry_run(&self, rows: &[StatusRow], lines: &std::collections::BTreeMap<String, String>) {
        let mut text = String::new();
        let mut n = 0;
        for r in rows.iter().filter(|r| r.state != RowState::Fresh) {
            n += 1;
            let verb = if r.restore() {
                "would restore"
            } else {
                "would run"
            };
            text.push_str(&format!(
                "{verb}  {}  ({}){}\n",
                r.stage,
                r.reason().unwrap_or_default(),
                r.values
                    .as_ref()
                    .map_or(String::new(), |v| format!("  [{v}]"))
            ));
            if let Some(l) = lines.get(&r.stage).filter(|_| !r.restore()) {
                text.push_str(&format!("         {l}\n"));
            }
        }
        if n == 0 {
            text.push_str("nothing to do: every stage is fresh\n");
        }
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}
