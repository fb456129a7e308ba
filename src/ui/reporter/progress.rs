//! Live progress: each stage's line or bar while a run goes, and the
//! run's summary.

use super::*;

impl Reporter {
    /// A stage started: what it was given, where that varies (threads,
    /// GPUs), and its live line.
    fn started(
        &mut self,
        stage: String,
        reason: &DirtyReason,
        threads: Option<usize>,
        gpus: &[String],
    ) {
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

    /// A running stage's step: its live line, or a line of its own.
    fn progress(&mut self, stage: &str, step: &stages::Step, fraction: Option<f64>) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(stage) {
                    let pct = fraction
                        .map(|f| format!(" {:>3.0}%", f * 100.0))
                        .unwrap_or_default();
                    bar.set_message(format!("{}{pct}", crate::ui::words::step(step)));
                }
            }
            None if self.verbose || step.milestone() => self.line(&format!(
                "         {stage}: {}",
                crate::ui::words::step(step)
            )),
            None => {}
        }
    }

    /// A stage failed: why, its output's last lines and its log.
    fn failed(
        &mut self,
        stage: &str,
        failure: &crate::ui::events::Failure,
        tail: Option<String>,
        log: Option<std::path::PathBuf>,
    ) {
        self.finish_bar(stage);
        // Continuation lines of the message line up under it.
        let error = failure_text(failure);
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

    pub fn event(&mut self, e: Event) {
        match e {
            Event::Planned { .. }
            | Event::Admitted { .. }
            | Event::Measured { .. }
            | Event::SearchSettled { .. } => {}
            Event::Promoted {
                search,
                trial,
                rung,
                to,
                val_acc,
            } => {
                if self.verbose {
                    self.line(&format!(
                        "promoted {trial}  ({search}: {:.2}% at epoch {rung}, goes on to epoch {to})",
                        100.0 * val_acc
                    ));
                }
            }
            Event::Started {
                stage,
                reason,
                threads,
                gpus,
            } => self.started(stage, &reason, threads, &gpus),
            Event::Progress { stage, step, .. } if step.notice() => self.line(&format!(
                "         {stage}: {}",
                crate::ui::words::step(&step)
            )),
            Event::Progress {
                stage,
                step,
                fraction,
            } => self.progress(&stage, &step, fraction),
            Event::Requeued { stage, job } => self.line(&format!(
                "         {stage}: Slurm requeued job {job}; it starts again"
            )),
            Event::Submitted { stage, job } => {
                self.line(&format!("         {stage}: submitted as Slurm job {job}"));
            }
            Event::Cached { stage } => {
                if self.verbose {
                    self.line(&format!("fresh    {stage}"));
                }
            }
            Event::Restored {
                stage, paths, from, ..
            } => {
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
            } => self.failed(&stage, &failure, tail, log),
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
            Event::LeftoverCancelled { stage, job } => self.line(&format!(
                "warning: cancelled Slurm job {job} ({stage}), left queued or running by a run that was killed; {stage} runs again if it is stale"
            )),
            Event::NotInHistory { error, path } => self.line(&format!(
                "warning: this run is not in the history: {error}; make {} a writable file (or move it away) for later runs to be recorded",
                path.display()
            )),
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
        self.line(&crate::ui::words::summary(s));
    }

    pub fn serving(&mut self, addr: &std::net::SocketAddr) {
        self.line(&format!(
            "serving the runs at http://{addr}/ (read-only; Ctrl-C stops)"
        ));
    }

    /// Where the run's live page is, said once something happens.
    pub fn live_page(&mut self, page: &std::path::Path) {
        let abs = crate::spec::protect::physical(page);
        self.line(&format!("live page: file://{}", abs.display()));
    }

    pub fn no_live_page(&mut self, dir: &std::path::Path, e: &std::io::Error) {
        self.line(&format!(
            "warning: no live page for this run: cannot create it in {} ({e}); the run goes on",
            dir.display()
        ));
    }
}
