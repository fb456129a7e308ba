//! What `gc` removes and what `push` sends.

use super::*;

pub(super) fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

impl Reporter {
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
}
