//! How a running stage's steps read: in the live line, a log's lines, and
//! the stage's own log. Only this module words them.

use super::events::{JobEnd, JobFailure};
use learn::train::{Event, StartOver};
use stages::{Phase, Step};

/// `step` as the user reads it.
pub fn step(step: &Step) -> String {
    match step {
        Step::Fetching { file } => format!("fetching {file}"),
        Step::Fetched { file, source } => format!("{file} from {source}"),
        Step::Phase { phase } => match phase {
            Phase::Decoding => "decoding",
            Phase::Splitting => "splitting",
            Phase::Writing => "writing",
        }
        .into(),
        Step::Parameters { count } => format!("{count} parameters"),
        Step::Training { event } => training(event),
        Step::TestImages { count } => format!("{count} test images"),
        Step::Accuracy { accuracy } => format!("accuracy {accuracy:.4}"),
        Step::Variants { count } => format!("{count} variants"),
        Step::Charts => "charts".into(),
        Step::NoFont => "no TrueType font found, so no pictures were drawn: apt-get install fonts-dejavu-core, or point FMNIST_PIPE_FONT at a .ttf file".into(),
    }
}

fn training(event: &Event) -> String {
    match event {
        Event::StartsOver(StartOver::Damaged(why)) => format!(
            "the saved training state is damaged ({why}); training starts over from epoch 1"
        ),
        Event::StartsOver(StartOver::DoesNotFit(why)) => format!(
            "the saved training state does not fit this training ({why}); training starts over from epoch 1"
        ),
        Event::Resumed { done, epochs } => format!("resuming from epoch {done}/{epochs}"),
        Event::Grown { threads } => format!("now on {threads} threads (a core came free)"),
        Event::Batch {
            epoch,
            epochs,
            batch,
            batches,
            last_val_acc,
            loss,
            img_per_s,
            eta_s,
            ..
        } => {
            // The last epoch's validation accuracy stays in the live line.
            let val = last_val_acc.map_or(String::new(), |v| format!(" (val acc {:.2}%)", v * 100.0));
            format!("epoch {epoch}/{epochs}{val} batch {batch}/{batches} loss {loss:.4} {img_per_s:.0} img/s ETA {eta_s:.0}s")
        }
        // A line per epoch for logs, pipes and CI; the live line's last
        // state on a terminal.
        Event::Epoch {
            record,
            epochs,
            seconds,
            eta_s,
        } => format!(
            "epoch {}/{epochs}: train loss {:.4}, val acc {:.2}%, lr {}, {seconds:.1} s, ETA {eta_s:.0} s",
            record.epoch,
            record.train_loss,
            record.val_acc * 100.0,
            record.lr,
        ),
    }
}

/// How a Slurm job ended badly, with what to do about it.
pub fn job(f: &JobFailure) -> String {
    let why = |reason: &Option<String>| {
        reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    };
    let mut what = match &f.end {
        JobEnd::Refused { reason } => format!(
            "sbatch refused the job: {reason}; check settings.slurm and the stage's resources in the pipeline file (`run --executor slurm --dry-run` shows the flags)"
        ),
        JobEnd::Lost { id } => format!(
            "Slurm no longer knows job {id} (not in squeue, scontrol or sacct); it may have been purged while this run waited"
        ),
        JobEnd::NotShared { id } => format!(
            "Slurm job {id} could not see the program or the job description on its node: the program, the project and its cache must be on a file system every node shares"
        ),
        JobEnd::Silent { id } => {
            format!("Slurm job {id} completed but the stage never said it was done; see its log")
        }
        JobEnd::Killed { id, signal } => format!("Slurm job {id} FAILED: killed by signal {signal}"),
        JobEnd::Panicked { id } => format!("Slurm job {id} FAILED: the stage panicked"),
        JobEnd::Exited { id, status } => format!("Slurm job {id} FAILED: exited with status {status}"),
        JobEnd::Cancelled { id, reason } => format!(
            "Slurm job {id} was CANCELLED{} (scancel, or an administrator)",
            why(reason)
        ),
        JobEnd::Timeout { id } => format!(
            "Slurm job {id} reached its TIMEOUT (resources.time); raise it, a training resumes from its last epoch"
        ),
        JobEnd::OutOfMemory { id } => {
            format!("Slurm job {id} ran OUT_OF_MEMORY; raise resources.mem_mb")
        }
        JobEnd::Ended { id, state, reason } => {
            format!("Slurm job {id} ended {state}{}", why(reason))
        }
    };
    if let Some(log) = &f.no_log {
        what.push_str(&format!(
            "; it left no log at {}: if it ran on another node, the cache must be on a file system every node shares",
            log.display()
        ));
    }
    what
}

/// A run's tally: `3 ran, 2 cached, 0 failed in 4.2s`.
pub fn summary(s: &crate::ui::events::Summary) -> String {
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
    format!("{} in {}", parts.join(", "), fmt_duration(s.wall))
}

/// `420ms`, `4.2s`, `3m05s`.
pub fn fmt_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use learn::train::EpochRecord;

    #[test]
    fn a_training_s_steps_read_as_before() {
        let record = EpochRecord {
            epoch: 3,
            train_loss: 0.31234,
            train_acc: 0.9,
            val_loss: 0.3,
            val_acc: 0.91234,
            lr: 0.0005,
            seconds: 1.0,
            img_per_s: 100.0,
        };
        let epoch = Step::Training {
            event: Event::Epoch {
                record,
                epochs: 10,
                seconds: 12.34,
                eta_s: 80.4,
            },
        };
        assert_eq!(
            step(&epoch),
            "epoch 3/10: train loss 0.3123, val acc 91.23%, lr 0.0005, 12.3 s, ETA 80 s"
        );
        let batch = Step::Training {
            event: Event::Batch {
                epoch: 4,
                epochs: 10,
                batch: 20,
                batches: 844,
                last_val_acc: Some(0.9),
                loss: 0.25,
                img_per_s: 1234.4,
                eta_s: 60.2,
                fraction: 0.3,
            },
        };
        assert_eq!(
            step(&batch),
            "epoch 4/10 (val acc 90.00%) batch 20/844 loss 0.2500 1234 img/s ETA 60s"
        );
        assert!(epoch.milestone() && !batch.milestone() && !epoch.notice());
        let over = Step::Training {
            event: Event::StartsOver(StartOver::Damaged("truncated".into())),
        };
        assert!(over.notice());
        assert!(step(&over).ends_with("training starts over from epoch 1"));
    }
}
