//! The generic `cmd` kind: a shell command run in the project directory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// How many lines of a failed command's output are shown to the user.
pub const TAIL_LINES: usize = 20;

/// A command that could not be started or that exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not start `sh -c`")]
    Spawn(#[source] std::io::Error),
    #[error("could not write the log {path}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("command {}", describe(.status))]
    Exit { status: ExitStatus, tail: String },
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "failed".to_string(),
    }
}

/// Runs `cmd` with `sh -c` in `dir` (its own process group, see
/// [`crate::process`]), stdout and stderr both appended to
/// `log` (interleaved as written). On failure the error carries the last
/// [`TAIL_LINES`] lines of output. What the command used comes back
/// whenever it ran, however it ended.
pub fn run_shell(
    children: &crate::process::Children,
    cmd: &str,
    dir: &Path,
    env: &[(&str, String)],
    log: &Path,
) -> (Result<(), CmdError>, Option<crate::measure::Usage>) {
    let log_err = |source| CmdError::Log {
        path: log.display().to_string(),
        source,
    };
    let out = match File::create(log).and_then(|out| Ok((out.try_clone()?, out))) {
        Ok(o) => o,
        Err(e) => return (Err(log_err(e)), None),
    };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.1)
        .stderr(out.0);
    for (k, v) in env {
        command.env(k, v);
    }
    let started = (std::time::Instant::now(), crate::measure::unix_now());
    let (status, usage) = match children
        .spawn(&mut command)
        .and_then(|(mut child, _registered)| crate::measure::wait(&mut child, started))
    {
        Ok(r) => r,
        Err(e) => return (Err(CmdError::Spawn(e)), None),
    };
    let result = if status.success() {
        Ok(())
    } else {
        Err(CmdError::Exit {
            status,
            tail: tail(log, TAIL_LINES).unwrap_or_default(),
        })
    };
    (result, Some(usage))
}

/// The last `n` lines of a file, reading at most its last 64 KiB.
pub fn tail(path: &Path, n: usize) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    Ok(lines[from..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_and_output_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        run_shell(
            &Default::default(),
            "echo hello; echo err >&2",
            dir.path(),
            &[],
            &log,
        )
        .0
        .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("hello") && text.contains("err"));
    }

    #[test]
    fn failure_carries_status_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let e = run_shell(
            &Default::default(),
            "for i in $(seq 1 30); do echo line$i; done; exit 3",
            dir.path(),
            &[],
            &log,
        )
        .0
        .unwrap_err();
        match e {
            CmdError::Exit { status, tail } => {
                assert_eq!(status.code(), Some(3));
                assert!(tail.starts_with("line11\n"), "{tail}");
                assert!(tail.ends_with("line30"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn env_is_passed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        run_shell(
            &Default::default(),
            "test \"$FOO\" = bar",
            dir.path(),
            &[("FOO", "bar".into())],
            &log,
        )
        .0
        .unwrap();
    }
}
