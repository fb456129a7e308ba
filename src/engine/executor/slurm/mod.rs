//! Stages as Slurm jobs. The DAG stays here: a stage is submitted with
//! `sbatch --parsable` once its inputs are done, and every job this run
//! submitted is polled in one `squeue` call per round (`scontrol`, then
//! `sacct` where it works, for the jobs squeue no longer lists). Jobs are
//! submitted with `--requeue`: a preempted training starts again and
//! resumes from its last epoch. A stop (Ctrl-C) cancels every job.

use super::{JobFile, Shell, StageFailure};
use crate::engine::schedule::Grant;
use crate::error::Error;
use crate::ui::events::Event;
use crate::ui::events::{JobEnd, JobFailure};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod poll;
mod script;

pub use poll::JobState;
use poll::*;
use script::*;
pub use script::{describe, sbatch_args, sh_quote};

/// The exit status of a job script whose node cannot see the program or
/// the job description (EX_CONFIG).
pub(super) const NOT_SHARED: i32 = 78;
/// Rounds a job may be unknown to every query before it counts as lost.
pub(super) const LOST_AFTER: u32 = 5;
pub(super) const POLL_MIN: Duration = Duration::from_millis(200);
pub(super) const POLL_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Submitted {
    ids: Vec<String>,
    stopping: bool,
}

/// Jobs submitted by this run and not yet ended: what a stop cancels. A
/// handle shared by the executor and the thread that stops the run.
#[derive(Debug, Clone, Default)]
pub struct Jobs(Arc<Mutex<Submitted>>);

/// Whether the cluster answers `sbatch --version`; if not, what to do.
pub fn probe() -> Result<(), Error> {
    match Command::new("sbatch").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            Err(Error::NoCluster(format!(
                "the Slurm cluster does not answer (`sbatch --version`: {}); run on a login node of the cluster, with SLURM_CONF set if it needs one, or use `--executor local`",
                last.trim()
            )))
        }
        Err(e) => Err(Error::NoCluster(format!(
            "the Slurm executor needs sbatch, squeue and scontrol on PATH ({e}); run on a login node of the cluster, or use `--executor local`"
        ))),
    }
}

pub struct Slurm {
    /// This run's jobs in flight, shared with the stop handler.
    jobs: Jobs,
    /// `<stage>.job` files holding the ids of the jobs in flight, so that a
    /// run after a killed one can cancel what that one left queued.
    jobs_dir: PathBuf,
    /// The directory jobs start in (where this run started, absolute).
    workdir: PathBuf,
    exe: PathBuf,
    shared: Arc<Shared>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl Slurm {
    /// Checks that sbatch answers, and starts the poller. `cache` is the
    /// project's home in the cache. Each stage brings its own sbatch
    /// settings.
    pub fn new(cache: &Path, jobs: Jobs) -> Result<Self, Error> {
        probe()?;
        let workdir =
            std::env::current_dir().map_err(|e| Error::io("find the current directory", ".", e))?;
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("find this program", "/proc/self/exe", e))?;
        let shared = Arc::new(Shared {
            tracked: Mutex::new(Tracked::default()),
            changed: Condvar::new(),
        });
        let s2 = shared.clone();
        let poller = std::thread::Builder::new()
            .name("slurm-poll".into())
            .spawn(move || poll_loop(&s2))
            .map_err(|e| Error::io("start the Slurm poller", "(thread)", e))?;
        Ok(Slurm {
            jobs,
            jobs_dir: cache.join("slurm"),
            workdir,
            exe,
            shared,
            poller: Some(poller),
        })
    }

    pub fn run_shell(
        &self,
        shell: &Shell<'_>,
        grant: &Grant,
        send: &(dyn Fn(Event) + Sync),
    ) -> Result<(), StageFailure> {
        let usage = usage_path(shell.log);
        let _ = fs::remove_file(&usage);
        let script = shell_script(shell, &self.exe, &usage);
        let args = sbatch_args(
            shell.slurm,
            shell.stage,
            &self.workdir,
            grant.cpus,
            shell.resources,
            shell.log,
            shell.log,
        );
        let id = self.submit(shell.stage, &args, &script, shell.log, send)?;
        let seen = self.wait(shell.stage, &id, None, send);
        // What the node measured, where the job lived to say it.
        if let Some(used) = fs::read(&usage)
            .ok()
            .and_then(|b| serde_json::from_slice::<stages::measure::Usage>(&b).ok())
        {
            send(Event::Measured {
                stage: shell.stage.to_string(),
                usage: used,
            });
        }
        let _ = fs::remove_file(&usage);
        match seen.state {
            JobState::Completed => Ok(()),
            _ => Err(describe_failure(&id, &seen, shell.log, false)),
        }
    }

    pub fn run_job(
        &self,
        job: &JobFile<'_>,
        grant: &Grant,
        send: &(dyn Fn(Event) + Sync),
    ) -> Result<(), StageFailure> {
        let stage = job.job.stage.as_str();
        let messages = job.path.with_extension("out");
        let script = job_script(&self.exe, job.path, &job.env);
        let args = sbatch_args(
            job.slurm,
            stage,
            &self.workdir,
            grant.cpus,
            job.resources,
            &messages,
            job.log,
        );
        create_empty(&messages)?;
        let id = self.submit(stage, &args, &script, job.log, send)?;
        let mut reader = Messages::new(messages.clone());
        let seen = self.wait(stage, &id, Some(&mut reader), send);
        let last = reader.last.take();
        let _ = fs::remove_file(&messages);
        match (&seen.state, last) {
            (JobState::Completed, Some(stages::job::Message::Done)) => Ok(()),
            (_, Some(stages::job::Message::Failed { error })) => {
                Err(StageFailure::Kind(error.into()))
            }
            _ => Err(describe_failure(&id, &seen, job.log, true)),
        }
    }

    /// Cancels the jobs a killed run left queued or running (it could not
    /// cancel them itself): (stage, job id) of each.
    pub fn cancel_leftovers(&self) -> Vec<(String, String)> {
        let Ok(dir) = fs::read_dir(&self.jobs_dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            let stage = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let id = fs::read_to_string(&path).ok().map(|t| t.trim().to_string());
            if let (Some(stage), Some(id)) = (stage, id) {
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
                    found.push((stage, id));
                }
            }
            let _ = fs::remove_file(&path);
        }
        let ids: Vec<String> = found.iter().map(|(_, id)| id.clone()).collect();
        let alive = squeue(&ids).unwrap_or_default();
        found.retain(|(_, id)| alive.get(id).is_some_and(|s| !s.state.is_terminal()));
        if !found.is_empty() {
            let _ = Command::new("scancel")
                .args(found.iter().map(|(_, id)| id))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        found
    }

    /// sbatch with the script on stdin; the job id. Refused once a stop began.
    fn submit(
        &self,
        stage: &str,
        args: &[String],
        script: &str,
        log: &Path,
        send: &(dyn Fn(Event) + Sync),
    ) -> Result<String, StageFailure> {
        let env = StageFailure::Env;
        create_empty(log)?;
        // Held across sbatch, so a stop waits for the id and cancels it.
        let mut reg = self
            .jobs
            .0
            .lock()
            .map_err(|_| env(Error::Internal("the job registry is poisoned".into())))?;
        if reg.stopping {
            return Err(env(Error::Internal("fmnist-pipe is stopping".into())));
        }
        let mut child = Command::new("sbatch")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| env(Error::io("run sbatch for", PathBuf::from(stage), e)))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| env(Error::io("run sbatch for", PathBuf::from(stage), e)))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if !out.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            // Its first line says why; the others repeat it.
            let reason = String::from_utf8_lossy(&out.stderr)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no reason given")
                .trim()
                .to_string();
            return Err(StageFailure::Job {
                failure: JobFailure {
                    end: JobEnd::Refused { reason },
                    no_log: None,
                },
                tail: String::new(),
            });
        }
        reg.ids.push(id.clone());
        drop(reg);
        let _ = fs::create_dir_all(&self.jobs_dir);
        let _ = fs::write(self.jobs_dir.join(format!("{stage}.job")), &id);
        if let Ok(mut t) = self.shared.tracked.lock() {
            t.jobs.insert(id.clone(), Entry::default());
            t.kick = true;
        }
        self.shared.changed.notify_all();
        send(Event::Submitted {
            stage: stage.to_string(),
            job: id.clone(),
        });
        Ok(id)
    }

    /// Waits until job `id` ended, relaying its progress; its last state.
    fn wait(
        &self,
        stage: &str,
        id: &str,
        mut messages: Option<&mut Messages>,
        send: &(dyn Fn(Event) + Sync),
    ) -> Seen {
        let mut last_state = JobState::default();
        let mut ran = false;
        let seen = loop {
            if let Some(m) = messages.as_deref_mut() {
                m.read(stage, send);
            }
            let Ok(t) = self.shared.tracked.lock() else {
                break Seen::default();
            };
            let (t, _) = self
                .shared
                .changed
                .wait_timeout(t, Duration::from_millis(300))
                .unwrap_or_else(|e| e.into_inner());
            let Some(entry) = t.jobs.get(id).cloned() else {
                break Seen::default();
            };
            drop(t);
            let seen = entry.seen.clone();
            if seen.state != last_state {
                // Preempted or requeued by hand: back in the queue.
                if ran && seen.state == JobState::Pending {
                    send(Event::Requeued {
                        stage: stage.to_string(),
                        job: id.to_string(),
                    });
                    ran = false;
                }
                ran |= seen.state == JobState::Running;
                last_state = seen.state.clone();
            }
            if entry.missing >= LOST_AFTER {
                break Seen {
                    state: JobState::Lost,
                    ..seen
                };
            }
            if entry.over {
                break seen;
            }
        };
        if let Some(m) = messages {
            m.read(stage, send);
        }
        if let Ok(mut t) = self.shared.tracked.lock() {
            t.jobs.remove(id);
        }
        if let Ok(mut reg) = self.jobs.0.lock() {
            reg.ids.retain(|j| j != id);
        }
        // Ended, or cancelled by this run's stop: nothing left to cancel later.
        let _ = fs::remove_file(self.jobs_dir.join(format!("{stage}.job")));
        seen
    }
}

/// How a job that did not end well ended.
fn describe_failure(id: &str, seen: &Seen, log: &Path, builtin: bool) -> StageFailure {
    let tail = stages::cmd::tail(log, stages::cmd::TAIL_LINES).unwrap_or_default();
    let (status, signal) = seen.exit.unwrap_or((0, 0));
    let reason = (!seen.reason.is_empty() && seen.reason != "None").then(|| seen.reason.clone());
    let id = id.to_string();
    let ended = |state: &str| JobEnd::Ended {
        id: id.clone(),
        state: state.to_string(),
        reason: reason.clone(),
    };
    let end = match &seen.state {
        JobState::Lost => JobEnd::Lost { id },
        _ if status == NOT_SHARED => JobEnd::NotShared { id },
        JobState::Completed if builtin => JobEnd::Silent { id },
        JobState::Failed if signal != 0 => JobEnd::Killed { id, signal },
        JobState::Failed if builtin && status == 101 => JobEnd::Panicked { id },
        JobState::Failed => JobEnd::Exited { id, status },
        JobState::Cancelled => JobEnd::Cancelled { id, reason },
        JobState::Timeout => JobEnd::Timeout { id },
        JobState::OutOfMemory => JobEnd::OutOfMemory { id },
        JobState::Ended(other) | JobState::Active(other) => ended(other),
        JobState::Completed => ended("COMPLETED"),
        JobState::Pending => ended("PENDING"),
        JobState::Running => ended("RUNNING"),
    };
    let failure = JobFailure {
        end,
        no_log: (!log.exists()).then(|| log.to_path_buf()),
    };
    StageFailure::Job { failure, tail }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        if let Ok(mut t) = self.shared.tracked.lock() {
            t.stop = true;
        }
        self.shared.changed.notify_all();
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

/// Cancels every job this process submitted that has not ended, and waits
/// (a few seconds at most) until the cluster has stopped them. No job is
/// submitted afterwards. Returns how many were cancelled.
pub fn cancel_all(jobs: &Jobs) -> usize {
    let ids = match jobs.0.lock() {
        Ok(mut r) => {
            r.stopping = true;
            std::mem::take(&mut r.ids)
        }
        Err(_) => return 0,
    };
    if ids.is_empty() {
        return 0;
    }
    let _ = Command::new("scancel")
        .args(&ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let alive = squeue(&ids).is_some_and(|m| m.values().any(|s| !s.state.is_terminal()));
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ids.len()
}

/// The job's messages file, read as it grows.
struct Messages {
    path: PathBuf,
    offset: u64,
    partial: String,
    last: Option<stages::job::Message>,
}

impl Messages {
    fn new(path: PathBuf) -> Self {
        Messages {
            path,
            offset: 0,
            partial: String::new(),
            last: None,
        }
    }

    fn read(&mut self, stage: &str, send: &(dyn Fn(Event) + Sync)) {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = String::new();
        let Ok(n) = f.read_to_string(&mut buf) else {
            return;
        };
        self.offset += n as u64;
        self.partial.push_str(&buf);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if let Some(m) = super::local::relay(stage, line.trim_end(), send) {
                self.last = Some(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{RawSlurm, Resources};

    #[test]
    fn resources_become_sbatch_flags() {
        let settings = RawSlurm {
            partition: Some("batch".into()),
            account: Some("lab".into()),
            extra: vec!["--qos=normal".into()],
        };
        let r = Resources {
            cpus: Some(4),
            gpus: 2,
            mem_mb: Some(2000),
            time: Some(crate::spec::TimeLimit(1800)),
        };
        let a = sbatch_args(
            &settings,
            "train@main",
            Path::new("/p"),
            4,
            &r,
            Path::new("/c/o"),
            Path::new("/c/l"),
        );
        assert_eq!(
            a.join(" "),
            "--parsable --job-name=train@main --chdir=/p --output=/c/o --error=/c/l --open-mode=append --requeue --cpus-per-task=4 --mem=2000M --gres=gpu:2 --time=00:30:00 --partition=batch --account=lab --qos=normal"
        );
    }

    #[test]
    fn cluster_answers_are_parsed() {
        let q = parse_squeue("12|RUNNING|None\n13|PENDING|Resources\n");
        assert_eq!(q["13"].state, JobState::Pending);
        assert_eq!(q["13"].reason, "Resources");
        let s = parse_scontrol("JobId=12 JobName=a b JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:01").unwrap();
        assert_eq!(
            (&s.state, s.reason.as_str(), s.exit),
            (&JobState::Failed, "NonZeroExitCode", Some((3, 0)))
        );
        let r = parse_scontrol("JobId=12 JobState=RUNNING Reason=None ExitCode=0:0").unwrap();
        assert_eq!(r.exit, None, "a running job has no exit code yet");
    }

    /// On a node that does not share the file system, the job says so and
    /// exits with the status the orchestrator explains.
    #[test]
    fn a_job_script_on_a_node_without_the_files_says_what_must_be_shared() {
        let script = job_script(
            Path::new("/nonexistent/fmnist-pipe"),
            Path::new("/nonexistent/cache/tmp/job-train@main.json"),
            &[("FMNIST_PIPE_STAGE", "train@main".into())],
        );
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(out.status.code(), Some(NOT_SHARED));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("fmnist-pipe: /nonexistent/fmnist-pipe is not visible on node ")
                && err.trim_end().ends_with(": the program, the project and its cache must be on a file system every node shares"),
            "{err}"
        );
        let seen = Seen {
            state: JobState::Failed,
            reason: "NonZeroExitCode".into(),
            exit: Some((NOT_SHARED, 0)),
        };
        let StageFailure::Job { failure, .. } =
            describe_failure("12", &seen, Path::new("/nonexistent/log"), true)
        else {
            panic!("not a job failure")
        };
        assert_eq!(
            failure.end,
            JobEnd::NotShared { id: "12".into() },
            "the status a job that cannot see the program exits with"
        );
        let what = crate::ui::words::job(&failure);
        assert_eq!(what, "Slurm job 12 could not see the program or the job description on its node: the program, the project and its cache must be on a file system every node shares; it left no log at /nonexistent/log: if it ran on another node, the cache must be on a file system every node shares");
    }

    #[test]
    fn quoting_survives_any_text() {
        assert_eq!(sh_quote("train@main"), "train@main");
        assert_eq!(sh_quote("it's a $x"), r"'it'\''s a $x'");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote("a 'b' \"c\" $d `e`")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a 'b' \"c\" $d `e`");
    }
}
