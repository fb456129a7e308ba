//! Stages as child processes of this one: each in its own process group,
//! killed with it (see `stages::process`).

use super::{JobFile, Shell, StageFailure};
use crate::error::Error;
use crate::ui::events::Event;
use stages::process::Children;
use std::fs;

pub fn run_shell(
    shell: &Shell<'_>,
    send: &(dyn Fn(Event) + Sync),
    children: &Children,
) -> Result<(), StageFailure> {
    let (result, usage) =
        stages::cmd::run_shell(children, shell.cmd, shell.dir, &shell.env, shell.log);
    if let Some(usage) = usage {
        send(Event::Measured {
            stage: shell.stage.to_string(),
            usage,
        });
    }
    result.map_err(StageFailure::Cmd)
}

/// Runs a built-in stage as `fmnist-pipe __stage JOB`: its progress
/// relayed as events, its stderr in the stage's log. A panic or a kill is
/// reported as such, with the log's last lines.
pub fn run_job(
    job: &JobFile<'_>,
    send: &(dyn Fn(Event) + Sync),
    children: &Children,
) -> Result<(), StageFailure> {
    use std::io::BufRead;
    let env = StageFailure::Env;
    // The running program itself, even when its file was replaced since it
    // started (a `cargo build` or `cargo install` during a long study):
    // the child's /proc/self/exe is this image until it execs. Its path
    // names it in messages.
    let own = std::path::Path::new("/proc/self/exe");
    let exe = if own.exists() {
        own.to_path_buf()
    } else {
        std::env::current_exe()
            .map_err(|e| env(Error::io("find this program", "/proc/self/exe", e)))?
    };
    let log =
        fs::File::create(job.log).map_err(|e| env(Error::io("create the log", job.log, e)))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("__stage")
        .arg(job.path)
        .envs(job.env.iter().map(|(k, v)| (*k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    let started = (std::time::Instant::now(), stages::measure::unix_now());
    let (mut child, _registered) = children
        .spawn(&mut cmd)
        .map_err(|e| env(Error::io("start the stage's process", &exe, e)))?;
    let mut last = None;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
            if let Some(m) = relay(&job.job.stage, &line, send) {
                last = Some(m);
            }
        }
    }
    // Measured from outside: the whole process, from its start to its end.
    let (status, usage) = stages::measure::wait(&mut child, started)
        .map_err(|e| env(Error::io("wait for the stage's process", &exe, e)))?;
    send(Event::Measured {
        stage: job.job.stage.clone(),
        usage,
    });
    match last {
        Some(stages::job::Message::Done) if status.success() => Ok(()),
        Some(stages::job::Message::Failed { error }) => Err(StageFailure::Kind(error.into())),
        _ => Err(StageFailure::Crashed {
            how: stages::process::describe_exit(status),
            tail: stages::cmd::tail(job.log, stages::cmd::TAIL_LINES).unwrap_or_default(),
        }),
    }
}

/// Passes a progress line (or what the stage says it used) on as an
/// event; returns any other message.
pub(super) fn relay(
    stage: &str,
    line: &str,
    send: &(dyn Fn(Event) + Sync),
) -> Option<stages::job::Message> {
    match serde_json::from_str::<stages::job::Message>(line) {
        Ok(stages::job::Message::Progress(p)) => {
            send(Event::Progress {
                stage: stage.to_string(),
                step: p.step,
                fraction: p.fraction,
            });
            None
        }
        Ok(stages::job::Message::Usage(usage)) => {
            send(Event::Measured {
                stage: stage.to_string(),
                usage,
            });
            None
        }
        Ok(m) => Some(m),
        Err(_) => None,
    }
}
