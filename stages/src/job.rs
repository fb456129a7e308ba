//! A built-in stage as its own process: the job description the
//! orchestrator writes, and the messages the stage's process sends back on
//! its stdout, one JSON object per line. Only the orchestrator writes
//! records; the process only writes into its staging directory.

use crate::context::{Input, Kind, Progress, RunContext, StageError, Step};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;

/// Everything a stage's process needs, self-contained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub stage: String,
    pub kind: Kind,
    pub project_dir: PathBuf,
    pub params: Value,
    pub inputs: Vec<Input>,
    /// The staging directory the stage writes its outputs into.
    pub out_dir: PathBuf,
    pub threads: usize,
    pub resume: Option<PathBuf>,
    /// For `train`: pause after this many epochs (a search's rung).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<usize>,
    /// For `train`: where more threads are offered (see [`crate::RunContext`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow: Option<PathBuf>,
    pub device: Option<String>,
    /// For kinds that describe the run ([`Kind::describes_run`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::contract::RunInfo>,
}

/// One line of a stage process's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Progress(Progress),
    /// What the process used, said just before it ends.
    Usage(crate::measure::Usage),
    Done,
    Failed {
        error: JobError,
    },
}

/// A [`StageError`] that crosses the process boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobError {
    Params {
        message: String,
    },
    Failed {
        message: String,
    },
    Io {
        action: String,
        path: PathBuf,
        errno: Option<i32>,
        message: String,
    },
    InputCorrupt {
        path: PathBuf,
        problem: String,
    },
}

impl From<&StageError> for JobError {
    fn from(e: &StageError) -> Self {
        match e {
            StageError::Params(m) => JobError::Params { message: m.clone() },
            StageError::Failed(m) => JobError::Failed { message: m.clone() },
            StageError::Io {
                action,
                path,
                source,
            } => JobError::Io {
                action: action.to_string(),
                path: path.clone(),
                errno: source.raw_os_error(),
                message: source.to_string(),
            },
            StageError::InputCorrupt { path, problem } => JobError::InputCorrupt {
                path: path.clone(),
                problem: problem.clone(),
            },
        }
    }
}

impl From<JobError> for StageError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Params { message } => StageError::Params(message),
            JobError::Failed { message } => StageError::Failed(message),
            JobError::Io {
                action,
                path,
                errno,
                message,
            } => StageError::Io {
                action: action.into(),
                path,
                source: match errno {
                    Some(n) => std::io::Error::from_raw_os_error(n),
                    None => std::io::Error::other(message),
                },
            },
            JobError::InputCorrupt { path, problem } => StageError::InputCorrupt { path, problem },
        }
    }
}

/// Runs `job` in this process, reporting on `out`; the exit status for
/// the process (0: done, 1: the stage failed). A notice or a milestone
/// also goes to the stage's log (this process's stderr) as `words` puts it.
pub fn run(
    job: &Job,
    out: &mut (dyn Write + Send),
    words: &(dyn Fn(&Step) -> String + Sync),
) -> i32 {
    let started = (std::time::Instant::now(), crate::measure::unix_now());
    let out = std::sync::Mutex::new(out);
    let send = |m: &Message| {
        if let (Ok(line), Ok(mut out)) = (serde_json::to_string(m), out.lock()) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    let progress = |p: Progress| {
        if p.step.notice() || p.step.milestone() {
            // The log is this process's stderr.
            eprintln!("{}: {}", job.stage, words(&p.step));
        }
        send(&Message::Progress(p))
    };
    let ctx = RunContext {
        stage: &job.stage,
        project_dir: &job.project_dir,
        params: &job.params,
        inputs: &job.inputs,
        out_dir: &job.out_dir,
        threads: job.threads,
        resume: job.resume.as_deref(),
        stop_after: job.stop_after,
        grow: job.grow.as_deref(),
        device: job.device.as_deref(),
        kernels: None,
        run: job.run.as_ref(),
        progress: &progress,
    };
    let result = job.kind.run(&ctx);
    send(&Message::Usage(crate::measure::own(started)));
    match result {
        Ok(()) => {
            send(&Message::Done);
            0
        }
        Err(e) => {
            send(&Message::Failed {
                error: JobError::from(&e),
            });
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_process_boundary_intact() {
        let io = StageError::io(
            "write",
            "/x/y",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let back: StageError =
            serde_json::from_str::<JobError>(&serde_json::to_string(&JobError::from(&io)).unwrap())
                .unwrap()
                .into();
        match back {
            StageError::Io {
                action,
                path,
                source,
            } => {
                assert_eq!((action.as_ref(), path.to_str()), ("write", Some("/x/y")));
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("{other:?}"),
        }
        let m = Message::Failed {
            error: JobError::InputCorrupt {
                path: "d.fmnd".into(),
                problem: "checksum mismatch".into(),
            },
        };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), m);
    }

    #[test]
    fn a_job_reports_its_failure_as_a_message() {
        let job = Job {
            stage: "compare".into(),
            kind: Kind::Compare,
            project_dir: ".".into(),
            params: serde_json::json!({}),
            inputs: vec![],
            out_dir: std::env::temp_dir(),
            threads: 1,
            resume: None,
            stop_after: None,
            grow: None,
            device: None,
            run: None,
        };
        let mut out = Vec::new();
        assert_eq!(run(&job, &mut out, &|_| String::new()), 1);
        let text = String::from_utf8(out).unwrap();
        let last: Message = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(
            matches!(last, Message::Failed { error: JobError::Params { ref message } } if message.contains("at least two evaluated variants")),
            "{text}"
        );
    }
}
