//! The only module that prints. Progress bars when stderr is a terminal,
//! plain lines otherwise (pipes, CI, tests).

pub use crate::engine::plan::RowState;
use crate::state::fingerprint::DirtyReason;
use crate::ui::events::{Event, Summary};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

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

pub struct Reporter {
    verbose: bool,
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
}

impl Reporter {
    pub fn new(verbose: bool) -> Reporter {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Reporter {
            verbose,
            bars: tty.then(|| {
                (
                    MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    HashMap::new(),
                )
            }),
        }
    }

    fn line(&self, text: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(text);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    pub fn event(&mut self, e: Event) {
        match e {
            Event::Planned { .. } => {}
            Event::Started {
                stage,
                reason,
                threads,
                gpus,
            } => {
                // What it was given, where that varies: threads, GPUs.
                let mut on = Vec::new();
                if let Some(t) = threads {
                    on.push(format!("{t} thread{}", if t == 1 { "" } else { "s" }));
                }
                if !gpus.is_empty() {
                    on.push(format!("GPU {}", gpus.join(",")));
                }
                let on = if on.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", on.join(", "))
                };
                match &reason {
                    DirtyReason::Interrupted {
                        resume: Some(crate::state::fingerprint::ResumePoint { epoch, epochs }),
                    } => self.line(&format!("resuming {stage} from epoch {epoch}/{epochs}{on}")),
                    _ => self.line(&format!("running  {stage}  ({reason}){on}")),
                }
                if let Some((mp, bars)) = &mut self.bars {
                    let bar = mp.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(stage.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bars.insert(stage, bar);
                }
            }
            Event::Progress {
                stage,
                message,
                fraction,
                milestone,
            } => match &self.bars {
                Some((_, bars)) => {
                    if let Some(bar) = bars.get(&stage) {
                        let pct = fraction
                            .map(|f| format!(" {:>3.0}%", f * 100.0))
                            .unwrap_or_default();
                        bar.set_message(format!("{message}{pct}"));
                    }
                }
                None if self.verbose || milestone => {
                    self.line(&format!("         {stage}: {message}"))
                }
                None => {}
            },
            Event::Submitted { stage, job } => {
                self.line(&format!("         {stage}: submitted as Slurm job {job}"));
            }
            Event::Cached { stage } => {
                if self.verbose {
                    self.line(&format!("fresh    {stage}"));
                }
            }
            Event::Restored { stage, paths, from } => {
                self.finish_bar(&stage);
                let from = from.map_or("cache".to_string(), |r| format!("remote `{r}`"));
                self.line(&format!("restored {stage}  ({} from {from})", paths.join(", ")));
            }
            Event::Waiting { stage, holder } => self.line(&format!(
                "waiting  {stage}  ({holder} is computing the same result; it is restored when done)"
            )),
            Event::CacheCorrupt { stage, path } => {
                self.line(&format!("warning: the cache object for {path} (stage {stage}) is corrupt or missing; it was removed and the stage reruns"));
            }
            Event::Finished { stage, elapsed } => {
                self.finish_bar(&stage);
                self.line(&format!("done     {stage}  in {}", fmt_duration(elapsed)));
            }
            Event::Failed {
                stage,
                failure,
                tail,
                log,
            } => {
                self.finish_bar(&stage);
                // Continuation lines of the message line up under it.
                let error = failure_text(&failure);
                let error = error
                    .lines()
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n         ");
                let mut text = format!("FAILED   {stage}: {error}");
                if let Some(tail) = tail.filter(|t| !t.is_empty()) {
                    text.push_str("\n         last lines of output:");
                    for l in tail.lines() {
                        text.push_str(&format!("\n         | {l}"));
                    }
                }
                if let Some(log) = log {
                    text.push_str(&format!("\n         full log: {}", log.display()));
                }
                self.line(&text);
            }
            Event::Interrupted { stage, resume } => {
                self.finish_bar(&stage);
                let next = match resume {
                    Some(r) => format!(
                        "the next run resumes it after epoch {}/{}",
                        r.epoch, r.epochs
                    ),
                    None => "the next run starts it again".into(),
                };
                self.line(&format!("stopped  {stage}  (interrupted; {next})"));
            }
            Event::Warning { text } => self.line(&format!("warning: {text}")),
            Event::Notice { stage, message } => self.line(&format!("         {stage}: {message}")),
            Event::Skipped {
                stage,
                because,
                failed,
            } => {
                let what = if failed { "failed" } else { "was not pulled" };
                self.line(&format!("skipped  {stage}  (needs {because}, which {what})"));
            }
            Event::NotFetched { stage, failure } => {
                let text = failure_text(&failure).replace('\n', "\n         ");
                self.line(&format!(
                    "warning: {stage}: {text}\n         {stage} runs here instead"
                ));
            }
            Event::NotPulled {
                stage,
                remote,
                reason,
            } => {
                self.finish_bar(&stage);
                self.line(&format!(
                    "not pulled  {stage}  (stale here: {reason}; remote `{remote}` has no result for it)"
                ));
            }
        }
    }

    fn finish_bar(&mut self, stage: &str) {
        if let Some((mp, bars)) = &mut self.bars {
            if let Some(bar) = bars.remove(stage) {
                bar.finish_and_clear();
                mp.remove(&bar);
            }
        }
    }

    pub fn summary(&mut self, s: &Summary) {
        let mut parts = vec![format!("{} ran", s.ran), format!("{} cached", s.cached)];
        if s.restored > 0 {
            parts.push(format!("{} restored", s.restored));
        }
        parts.push(format!("{} failed", s.failed));
        if s.interrupted > 0 {
            parts.push(format!("{} interrupted", s.interrupted));
        }
        if s.skipped > 0 {
            parts.push(format!("{} skipped", s.skipped));
        }
        if s.not_pulled > 0 {
            parts.push(format!("{} not pulled", s.not_pulled));
        }
        if s.not_started > 0 && s.interrupted > 0 {
            parts.push(format!("{} not started", s.not_started));
        } else if s.not_started > 0 {
            parts.push(format!(
                "{} not started (use --keep-going to run them)",
                s.not_started
            ));
        }
        self.line(&format!("{} in {}", parts.join(", "), fmt_duration(s.wall)));
    }

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

    /// A comparison table, drawn with comfy-table.
    pub fn table(&self, t: &stages::contract::Table) {
        let width = table_width();
        // Too wide for the terminal: the least important columns go first
        // (a note says which), then cells wrap. The whole table stays in
        // table.md, table.csv and table.json.
        let mut keep: Vec<usize> = (0..t.columns.len()).collect();
        let mut dropped = Vec::new();
        let mut table = render(t, &keep);
        if let Some(w) = width.map(usize::from) {
            for prefix in DROP_FIRST {
                if widest(&table) <= w {
                    break;
                }
                if let Some(k) = keep.iter().position(|&i| t.columns[i].starts_with(prefix)) {
                    dropped.push(t.columns[keep.remove(k)].clone());
                    table = render(t, &keep);
                }
            }
            if widest(&table) > w {
                table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
                // comfy-table may overshoot by a border or two: narrower
                // until it fits, or cannot.
                let mut target = w;
                for _ in 0..8 {
                    table.set_width(target as u16);
                    let over = widest(&table).saturating_sub(w);
                    if over == 0 || target <= over + 20 {
                        break;
                    }
                    target -= over;
                }
            }
        }
        let mut text = if t.rows.is_empty() {
            format!("\n{}\n", t.title)
        } else {
            format!("\n{}\n{table}\n", t.title)
        };
        let mut notes = t.notes.clone();
        if !dropped.is_empty() {
            notes.push(format!(
                "Left out to fit {} columns: {} (the whole table: the compare stage's table.md, or a wider terminal, or COLUMNS=...).",
                width.unwrap_or_default(),
                dropped.join(", ")
            ));
        }
        for n in &notes {
            text.push_str(&wrap(n, width.map_or(usize::MAX, usize::from)));
            text.push('\n');
        }
        self.line(text.trim_end());
        for section in &t.sections {
            self.table(section);
        }
    }

    /// What `gc` removed (or would remove) and kept.
    pub fn gc(&self, items: &[crate::state::gc::Item], dry_run: bool) {
        use crate::state::gc::Item;
        let verb = if dry_run { "would remove" } else { "removed" };
        let (mut text, mut notes) = (String::new(), String::new());
        let mut removes = false;
        for item in items {
            match item {
                Item::Record(stage) => {
                    removes = true;
                    text.push_str(&format!("{verb}  record and log of {stage}\n"));
                }
                Item::Output { stage, path } => {
                    text.push_str(&format!("{verb}  {path}  (output of {stage})\n"));
                }
                Item::Kept { path, why } => {
                    text.push_str(&format!(
                        "kept          {path}  ({why}; move or delete it yourself)\n"
                    ));
                }
                Item::Quarantine { path, files, bytes } => {
                    let files = match files {
                        1 => "1 file".to_string(),
                        n => format!("{n} files"),
                    };
                    notes.push_str(&format!(
                        "note: {path} holds {files} ({}) that runs found corrupt and moved aside; gc keeps them: delete it when you no longer need them\n",
                        fmt_bytes(*bytes)
                    ));
                }
                Item::History(c) => {
                    let changes = c.dropped + c.rewritten + c.unused;
                    removes |= changes > 0;
                    if changes > 0 {
                        let would = if dry_run {
                            "would compact"
                        } else {
                            "compacted"
                        };
                        text.push_str(&format!(
                            "{would}  the run history: {} runs kept, {} unreadable lines dropped, {} runs rewritten compactly, {} unused state files ({}) removed\n",
                            c.runs,
                            c.dropped,
                            c.rewritten,
                            c.unused,
                            fmt_bytes(c.unused_bytes)
                        ));
                        if !dry_run {
                            text.push_str(&format!(
                                "              history.jsonl {} -> {}\n",
                                fmt_bytes(c.bytes_before),
                                fmt_bytes(c.bytes_after)
                            ));
                        }
                    }
                }
                Item::Runs {
                    count,
                    forgotten: true,
                } => {
                    removes |= *count > 0;
                    text.push_str(&format!(
                        "{verb}  {count} remembered runs that no project's last run is\n"
                    ));
                }
                Item::Runs {
                    count,
                    forgotten: false,
                } => {
                    if *count > 0 {
                        notes.push_str(&format!(
                            "note: kept {count} remembered runs and their objects (a parameter changed back is restored from them); `fmnist-pipe gc --runs` forgets those no project's last run is\n"
                        ));
                    }
                }
                Item::Progress { count, bytes } => {
                    removes |= *count > 0;
                    text.push_str(&format!(
                        "{verb}  the saved progress of {count} unfinished trainings ({})\n",
                        fmt_bytes(*bytes)
                    ));
                }
                Item::Objects { count, bytes } => {
                    removes |= *count > 0;
                    text.push_str(&format!(
                        "{verb}  {count} unreferenced cache objects ({})\n",
                        fmt_bytes(*bytes)
                    ));
                }
            }
        }
        if !removes {
            text = "nothing to remove: every record belongs to a stage of the pipeline\n".into();
        }
        text.push_str(&notes);
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// `push`: one stage's result.
    pub fn pushed(&self, remote: &str, stage: &str, p: &crate::state::remote::Pushed) {
        use crate::state::remote::Pushed;
        let text = match p {
            Pushed::Sent { objects, bytes } => format!(
                "pushed   {stage}  ({objects} files, {} sent to {remote})",
                fmt_bytes(*bytes)
            ),
            Pushed::There => format!("there    {stage}  (already on {remote})"),
            Pushed::Incomplete(objects) => format!(
                "REFUSED  {stage}: the cache lacks {} of its files, or holds them damaged ({}); nothing of it was sent\n         help: `fmnist-pipe run --force {stage}` rebuilds them, then push again",
                objects.len(),
                objects.iter().take(2).cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    /// `push`: the tally.
    pub fn push_summary(
        &self,
        remote: &str,
        results: &[crate::state::remote::Pushed],
        stale: usize,
    ) {
        use crate::state::remote::Pushed;
        let (mut sent, mut there, mut refused, mut files, mut bytes) = (0, 0, 0, 0, 0);
        for r in results {
            match r {
                Pushed::Sent { objects, bytes: b } => {
                    sent += 1;
                    files += objects;
                    bytes += b;
                }
                Pushed::There => there += 1,
                Pushed::Incomplete(_) => refused += 1,
            }
        }
        let mut text = format!(
            "{sent} pushed ({files} files, {}), {there} already on {remote}",
            fmt_bytes(bytes)
        );
        if refused > 0 {
            text.push_str(&format!(", {refused} refused"));
        }
        if stale > 0 {
            text.push_str(&format!(
                "; {stale} stale stages not pushed (`fmnist-pipe status` says why)"
            ));
        }
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    /// `predict`: each picture's top classes, or what was wrong with it.
    pub fn predictions(
        &self,
        m: &crate::cli::models::ModelRef,
        rows: &[Prediction],
        top: usize,
        json: bool,
    ) {
        if let Some(why) = &m.stale {
            // Beside the answers, never in them: stdout stays the answers.
            let _ = writeln!(
                std::io::stderr().lock(),
                "warning: {} is not fresh ({why}); these answers come from the model it last trained. `fmnist-pipe run {}` brings it up to date; --fresh refuses stale models",
                m.stage, m.stage
            );
        }
        if json {
            let v = serde_json::json!({
                "model": {
                    "stage": m.stage,
                    "weights": m.weights.display().to_string(),
                    "chosen": m.chosen,
                    "stale": m.stale,
                },
                "predictions": rows.iter().map(|r| match &r.result {
                    Ok((p, probs)) => serde_json::json!({
                        "file": r.file.display().to_string(),
                        "inverted": p.inverted,
                        "size": [p.width, p.height],
                        "top": learn::predict::top(probs, top).iter().map(|(i, name, q)| serde_json::json!({
                            "class": i, "name": name, "probability": q,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(e) => serde_json::json!({
                        "file": r.file.display().to_string(),
                        "error": e,
                    }),
                }).collect::<Vec<_>>(),
            });
            self.text(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
            return;
        }
        let mut text = format!("model: {} ({})\n", m.stage, m.weights.display());
        if let Some(why) = &m.chosen {
            text.push_str(&format!("       {why}\n"));
        }
        let width = rows
            .iter()
            .map(|r| r.file.display().to_string().chars().count())
            .max()
            .unwrap_or(0);
        for r in rows {
            let name = r.file.display().to_string();
            let pad = " ".repeat(width - name.chars().count());
            match &r.result {
                Ok((_, probs)) => {
                    let classes: Vec<String> = learn::predict::top(probs, top)
                        .iter()
                        .map(|(_, n, q)| format!("{n} {:.1}%", q * 100.0))
                        .collect();
                    text.push_str(&format!("{name}{pad}  {}\n", classes.join("   ")));
                }
                Err(e) => text.push_str(&format!("{name}{pad}  error: {e}\n")),
            }
        }
        self.text(&text);
    }

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

    pub fn waiting(&self, lock: &std::path::Path, holder: &str) {
        self.line(&format!(
            "waiting for the run that holds {} ({holder}) to finish",
            lock.display()
        ));
    }

    pub fn text(&self, s: &str) {
        let _ = std::io::stdout().lock().write_all(s.as_bytes());
    }

    /// A note under a table, wrapped to the table's width.
    pub fn note(&self, s: &str) {
        let width = table_width().map_or(usize::MAX, usize::from);
        self.text(&format!("{}\n", wrap(s, width)));
    }

    pub fn error(&self, e: &crate::error::Error) {
        let mut text = format!("error: {e}");
        let mut source = std::error::Error::source(e);
        let mut disk_full = false;
        while let Some(s) = source {
            text.push_str(&format!("\nCaused by:\n    {s}"));
            disk_full |= s
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC));
            source = s.source();
        }
        if disk_full {
            text.push_str("\n  help: the disk is full: free space (or move settings.cache to a larger disk) and run again; stages that did not finish are recorded as stale and will rerun");
        }
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// A stop signal arrived (called from the signal thread, which then exits).
/// One picture given to `predict`: what it was prepared as and its class
/// probabilities, or why it could not be read.
pub struct Prediction {
    pub file: std::path::PathBuf,
    pub result: Result<(learn::predict::Prepared, Vec<f32>), String>,
}

/// The terminal went away (SIGHUP); said into the log the run goes on in.
pub fn hung_up(log: &std::path::Path) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "\nthe terminal hung up (SIGHUP): the run goes on, and says what it does here ({})",
        log.display()
    );
}

pub fn interrupted(signal: &str, stopped: usize) {
    let what = match stopped {
        0 => String::new(),
        1 => ": stopped 1 running command".into(),
        n => format!(": stopped {n} running commands"),
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "\ninterrupted by {signal}{what}; stages that did not finish are recorded as stale: the next run takes them up (a training from its last saved epoch)"
    );
}

/// Columns left out first when a table is too wide (by how their names
/// begin), least important first.
const DROP_FIRST: [&str; 10] = [
    "infer img/s",
    "size",
    "params",
    "train time",
    "per seed",
    "95% CI",
    "macro F1",
    "paired t p",
    "McNemar p",
    "seeds",
];

/// A comparison table as comfy-table draws it, with only columns `keep`:
/// figures to the right, words to the left.
fn render(t: &stages::contract::Table, keep: &[usize]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(keep.iter().map(|&i| &t.columns[i]));
    for r in &t.rows {
        table.add_row(keep.iter().map(|&i| r.get(i).cloned().unwrap_or_default()));
    }
    for (k, &i) in keep.iter().enumerate() {
        let figures = t.rows.iter().all(|r| {
            r.get(i).is_some_and(|c| {
                c.starts_with(|ch: char| ch.is_ascii_digit() || "+-—<[".contains(ch))
            })
        });
        if let (true, Some(c)) = (figures && !t.rows.is_empty(), table.column_mut(k)) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    table
}

/// The longest line of a drawn table, in characters.
fn widest(t: &comfy_table::Table) -> usize {
    t.to_string()
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
}

/// The width printed tables fit: `COLUMNS` where set (shells export it),
/// else the terminal's; None off a terminal (a file gets the whole table).
fn table_width() -> Option<u16> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c >= 40)
    {
        return Some(c);
    }
    // SAFETY: isatty and TIOCGWINSZ read into a struct we own.
    unsafe {
        if libc::isatty(1) != 1 {
            return None;
        }
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col >= 40).then_some(ws.ws_col)
    }
}

/// `text` broken at spaces into lines of at most `width` characters
/// (a word longer than that stays whole).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

/// A stage's failure in words.
fn failure_text(f: &crate::ui::events::Failure) -> String {
    use crate::ui::events::{Failure, Remedy};
    match f {
        Failure::DepMissing { path } => format!(
            "dep {path} does not exist; create it, or declare the stage that produces it as an output"
        ),
        Failure::DepUnreadable { path, error } => format!(
            "dep {path} cannot be read: {error}; fix its permissions or links, or remove it from the stage's deps"
        ),
        Failure::CannotRunHere { why } => format!(
            "it cannot run on this machine: {why}; lower its resources, or run it where they are (`--executor slurm`)"
        ),
        Failure::Refused(r) => r.to_string(),
        Failure::NotProduced { output } => {
            format!("the stage succeeded but did not produce its output {output}")
        }
        Failure::OutputUnreadable { output, error } => {
            format!("its output {output} cannot be read: {error}")
        }
        Failure::Command { how } => how.clone(),
        Failure::InputCorrupt {
            path,
            problem,
            remedy,
        } => {
            let remedy = match remedy {
                Remedy::NotAnOutput => {
                    "it is not the output of a stage this one needs; fix or replace it".to_string()
                }
                Remedy::MovedAway { producer } => format!(
                    "it was moved away; the next `fmnist-pipe run` restores {producer}'s own version"
                ),
                Remedy::Quarantined { producer, to } => format!(
                    "it no longer held what {producer} wrote: moved to {} (kept, not deleted); the next `fmnist-pipe run` restores {producer}'s own version",
                    to.display()
                ),
                Remedy::ProducerStale { producer } => format!(
                    "{producer} is marked stale; the next `fmnist-pipe run` rebuilds it"
                ),
            };
            format!("input {path} is corrupt: {problem}\n{remedy}")
        }
        Failure::Error { chain } => chain.clone(),
        Failure::Crashed { how } => format!("the stage's process {how}"),
        Failure::Job { what } => what.clone(),
        Failure::Environment { error } => error.clone(),
        Failure::RemoteDamaged { remote, damage } => {
            use crate::state::runs::Damage;
            let what = match damage {
                Damage::Missing(_) => "remote `{remote}` holds an incomplete result for it",
                Damage::Mismatched(_) => "remote `{remote}` holds damaged files for it",
                Damage::Unreadable | Damage::Invalid(_) => {
                    "remote `{remote}` holds a damaged record of its result"
                }
            }
            .replace("{remote}", remote);
            format!(
                "{what} ({damage}); nothing of it was used\nhelp: push the stage again from a machine where it is fresh (`fmnist-pipe push`): a push replaces what is missing or damaged"
            )
        }
    }
}
