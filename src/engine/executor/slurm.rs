//! Stages as Slurm jobs. The DAG stays here: a stage is submitted with
//! `sbatch --parsable` once its inputs are done, and every job this run
//! submitted is polled in one `squeue` call per round (`scontrol`, then
//! `sacct` where it works, for the jobs squeue no longer lists). Jobs are
//! submitted with `--requeue`: a preempted training starts again and
//! resumes from its last epoch. A stop (Ctrl-C) cancels every job.

use super::{JobFile, Shell, StageFailure};
use crate::engine::schedule::Grant;
use crate::error::Error;
use crate::spec::{RawSlurm, Resources};
use crate::ui::events::Event;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The exit status of a job script whose node cannot see the program or
/// the job description (EX_CONFIG).
const NOT_SHARED: i32 = 78;
/// Rounds a job may be unknown to every query before it counts as lost.
const LOST_AFTER: u32 = 5;
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(5);

/// A job's state, as Slurm names them; `Lost` is this tool's own: no
/// query knows the job any more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JobState {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    OutOfMemory,
    /// Another end: NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, REVOKED,
    /// SPECIAL_EXIT.
    Ended(String),
    /// Another state on the way: CONFIGURING, COMPLETING, SUSPENDED, ...
    Active(String),
    Lost,
}

impl JobState {
    fn parse(text: &str) -> JobState {
        match text {
            "PENDING" => JobState::Pending,
            "RUNNING" => JobState::Running,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "CANCELLED" => JobState::Cancelled,
            "TIMEOUT" => JobState::Timeout,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => {
                JobState::Ended(text.to_string())
            }
            other => JobState::Active(other.to_string()),
        }
    }

    /// The job has ended: it runs no more, whatever follows.
    fn is_terminal(&self) -> bool {
        !matches!(
            self,
            JobState::Pending | JobState::Running | JobState::Active(_)
        )
    }
}

/// A job's state as the cluster last told it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    state: JobState,
    reason: String,
    /// `ExitCode=status:signal`, once known.
    exit: Option<(i32, i32)>,
}

/// A job as the poller follows it.
#[derive(Debug, Clone, Default)]
struct Entry {
    seen: Seen,
    /// Consecutive rounds no query knew the job.
    missing: u32,
    /// When a failed end state was first seen: a job being requeued can
    /// show one for a moment, so it counts once it held for [`CONFIRM`].
    ended_at: Option<Instant>,
    /// The job has ended for good.
    over: bool,
}

const CONFIRM: Duration = Duration::from_secs(1);

impl Seen {
    /// A state read with its exit code: an ended job always has one (0:0
    /// when the query gave none), a running job none yet.
    fn ended(state: JobState, exit: Option<(i32, i32)>, reason: String) -> Self {
        let exit = if state.is_terminal() {
            exit.or(Some((0, 0)))
        } else {
            None
        };
        Seen {
            state,
            reason,
            exit,
        }
    }
}

#[derive(Default)]
struct Tracked {
    jobs: HashMap<String, Entry>,
    kick: bool,
    stop: bool,
}

struct Shared {
    tracked: Mutex<Tracked>,
    changed: Condvar,
}

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
        let script = shell_script(shell);
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
            return Err(StageFailure::Job {
                what: format!(
                    "sbatch refused the job: {}; check settings.slurm and the stage's resources in the pipeline file (`run --executor slurm --dry-run` shows the flags)",
                    // Its first line says why; the others repeat it.
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("no reason given")
                        .trim()
                ),
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

/// A job that did not end well, in words.
fn describe_failure(id: &str, seen: &Seen, log: &Path, builtin: bool) -> StageFailure {
    let tail = stages::cmd::tail(log, stages::cmd::TAIL_LINES).unwrap_or_default();
    let (status, signal) = seen.exit.unwrap_or((0, 0));
    let reason = if seen.reason.is_empty() || seen.reason == "None" {
        String::new()
    } else {
        format!(" ({})", seen.reason)
    };
    let mut what = match &seen.state {
            JobState::Lost => format!(
                "Slurm no longer knows job {id} (not in squeue, scontrol or sacct); it may have been purged while this run waited"
            ),
            _ if status == NOT_SHARED => format!(
                "Slurm job {id} could not see the program or the job description on its node: the program, the project and its cache must be on a file system every node shares"
            ),
            JobState::Completed if builtin => format!(
                "Slurm job {id} completed but the stage never said it was done; see its log"
            ),
            JobState::Failed if signal != 0 => format!("Slurm job {id} FAILED: killed by signal {signal}"),
            JobState::Failed if builtin && status == 101 => format!("Slurm job {id} FAILED: the stage panicked"),
            JobState::Failed => format!("Slurm job {id} FAILED: exited with status {status}"),
            JobState::Cancelled => format!("Slurm job {id} was CANCELLED{reason} (scancel, or an administrator)"),
            JobState::Timeout => format!(
                "Slurm job {id} reached its TIMEOUT (resources.time); raise it, a training resumes from its last epoch"
            ),
            JobState::OutOfMemory => format!(
                "Slurm job {id} ran OUT_OF_MEMORY; raise resources.mem_mb"
            ),
            JobState::Ended(other) | JobState::Active(other) => {
                format!("Slurm job {id} ended {other}{reason}")
            }
            JobState::Completed => format!("Slurm job {id} ended COMPLETED{reason}"),
            JobState::Pending => format!("Slurm job {id} ended PENDING{reason}"),
            JobState::Running => format!("Slurm job {id} ended RUNNING{reason}"),
        };
    if !log.exists() {
        what.push_str(&format!(
                "; it left no log at {}: if it ran on another node, the cache must be on a file system every node shares",
                log.display()
            ));
    }
    StageFailure::Job { what, tail }
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

/// For this long after a submission or a change, poll at [`POLL_MIN`]:
/// short stages should not wait on the poller.
const FAST_FOR: Duration = Duration::from_secs(5);

fn poll_loop(shared: &Shared) {
    let mut interval = POLL_MIN;
    let mut last_change = Instant::now();
    loop {
        let ids: Vec<String> = {
            let Ok(t) = shared.tracked.lock() else { return };
            let (mut t, _) = shared
                .changed
                .wait_timeout_while(t, interval, |t| !t.stop && !t.kick)
                .unwrap_or_else(|e| e.into_inner());
            if t.stop {
                return;
            }
            if t.kick {
                t.kick = false;
                interval = POLL_MIN;
                last_change = Instant::now();
            }
            t.jobs
                .iter()
                .filter(|(_, e)| !e.over)
                .map(|(id, _)| id.clone())
                .collect()
        };
        if ids.is_empty() {
            interval = POLL_MAX;
            continue;
        }
        let found = query(&ids);
        let mut changed = false;
        if let Ok(mut t) = shared.tracked.lock() {
            for id in &ids {
                let Some(e) = t.jobs.get_mut(id) else {
                    continue;
                };
                match found.get(id) {
                    Some(s) => {
                        changed |= *s != e.seen;
                        e.seen = s.clone();
                        e.missing = 0;
                        let ended = s.state.is_terminal() && s.exit.is_some();
                        if !ended {
                            e.ended_at = None;
                        } else if s.state == JobState::Completed {
                            e.over = true;
                        } else {
                            let at = *e.ended_at.get_or_insert_with(Instant::now);
                            e.over = at.elapsed() >= CONFIRM;
                        }
                        changed |= e.over;
                    }
                    None => {
                        e.missing += 1;
                        changed = true;
                    }
                }
            }
        }
        shared.changed.notify_all();
        // Fast while something changes; slower while jobs only run.
        if changed {
            last_change = Instant::now();
        }
        interval = if last_change.elapsed() < FAST_FOR {
            POLL_MIN
        } else {
            (interval * 3 / 2).min(POLL_MAX)
        };
    }
}

/// The state of each of `ids` the cluster still knows: one squeue call
/// for all, then scontrol (or sacct) for the exit code of ended jobs and
/// for the jobs squeue no longer lists.
fn query(ids: &[String]) -> HashMap<String, Seen> {
    let mut found = squeue(ids).unwrap_or_default();
    for id in ids {
        let need = match found.get(id) {
            None => true,
            Some(s) => s.state.is_terminal(),
        };
        if need {
            if let Some(s) = scontrol(id).or_else(|| sacct(id)) {
                found.insert(id.clone(), s);
            } else if let Some(s) = found.get_mut(id) {
                // Ended, but the exit code is nowhere to be read.
                s.exit = Some((0, 0));
            }
        }
    }
    found
}

fn squeue(ids: &[String]) -> Option<HashMap<String, Seen>> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T|%r", "-j"])
        .arg(ids.join(","))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // squeue refuses the whole list when one id is unknown.
    if !out.status.success() {
        return None;
    }
    Some(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_squeue(text: &str) -> HashMap<String, Seen> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, state, reason) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            Some((
                id.to_string(),
                Seen {
                    state: JobState::parse(state),
                    reason: reason.to_string(),
                    exit: None,
                },
            ))
        })
        .collect()
}

fn scontrol(id: &str) -> Option<Seen> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_scontrol(&String::from_utf8_lossy(&out.stdout))
}

/// `JobState=FAILED Reason=NonZeroExitCode ... ExitCode=3:0` from
/// `scontrol show job -o`.
fn parse_scontrol(text: &str) -> Option<Seen> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let exit = field("ExitCode").and_then(|e| parse_exit(&e));
    Some(Seen::ended(
        JobState::parse(&field("JobState")?),
        exit,
        field("Reason").unwrap_or_default(),
    ))
}

fn parse_exit(text: &str) -> Option<(i32, i32)> {
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// sacct, where accounting is set up (it fails without slurmdbd).
fn sacct(id: &str) -> Option<Seen> {
    let out = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "State,ExitCode,Reason", "-j", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.lines().next()?.split('|');
    // `CANCELLED by 0` -> CANCELLED.
    let state = JobState::parse(f.next()?.split_whitespace().next()?);
    let exit = f.next().and_then(parse_exit);
    Some(Seen::ended(state, exit, f.next().unwrap_or("").to_string()))
}

/// The sbatch command line `run --executor slurm` would give `stage`, and
/// what its job runs.
pub fn describe(stage: &crate::spec::Stage, store: &crate::state::store::Store) -> String {
    let workdir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let log = store.log_path(&stage.name);
    let job = store.job_path(&stage.name);
    let out = if stage.kind.is_builtin() {
        job.with_extension("out")
    } else {
        log.clone()
    };
    let args = sbatch_args(
        &stage.slurm,
        &stage.name,
        &workdir,
        stage.resources.cpus.unwrap_or(1),
        &stage.resources,
        &out,
        &log,
    );
    let runs = match &stage.cmd {
        Some(cmd) => format!("sh -c {}", sh_quote(cmd)),
        None => format!("fmnist-pipe __stage {}", job.display()),
    };
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    format!("sbatch {}  # runs: {runs}", args.join(" "))
}

/// The sbatch arguments for one stage (the script comes on stdin).
pub fn sbatch_args(
    settings: &RawSlurm,
    stage: &str,
    workdir: &Path,
    cpus: usize,
    resources: &Resources,
    stdout: &Path,
    stderr: &Path,
) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={stage}"),
        format!("--chdir={}", workdir.display()),
        format!("--output={}", stdout.display()),
        format!("--error={}", stderr.display()),
        // A requeued job adds to its log instead of erasing the first attempt's.
        "--open-mode=append".into(),
        "--requeue".into(),
        format!("--cpus-per-task={cpus}"),
    ];
    if let Some(m) = resources.mem_mb {
        a.push(format!("--mem={m}M"));
    }
    if resources.gpus > 0 {
        a.push(format!("--gres=gpu:{}", resources.gpus));
    }
    if let Some(t) = resources.time {
        a.push(format!("--time={}", t.slurm()));
    }
    if let Some(p) = &settings.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(acc) = &settings.account {
        a.push(format!("--account={acc}"));
    }
    a.extend(settings.extra.iter().cloned());
    a
}

/// `'text'` for sh, whatever it holds.
pub fn sh_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn exports(env: &[(&'static str, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("export {k}={}\n", sh_quote(v)))
        .collect()
}

fn not_visible(path: &str) -> String {
    format!(
        "if [ ! -e {path} ]; then\n  echo \"fmnist-pipe: \"{path}\" is not visible on node $(hostname): the program, the project and its cache must be on a file system every node shares\" >&2\n  exit {NOT_SHARED}\nfi\n"
    )
}

fn shell_script(shell: &Shell<'_>) -> String {
    let dir = sh_quote(&shell.dir.display().to_string());
    format!(
        "#!/bin/sh\n# fmnist-pipe stage {}\n{}cd {dir} || exit {NOT_SHARED}\n{}exec sh -c {}\n",
        shell.stage,
        not_visible(&dir),
        exports(&shell.env),
        sh_quote(shell.cmd)
    )
}

fn job_script(exe: &Path, job: &Path, env: &[(&'static str, String)]) -> String {
    let exe = sh_quote(&exe.display().to_string());
    let job = sh_quote(&job.display().to_string());
    format!(
        "#!/bin/sh\n{}{}{}exec {exe} __stage {job}\n",
        not_visible(&exe),
        not_visible(&job),
        exports(env)
    )
}

fn create_empty(path: &Path) -> Result<(), StageFailure> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| StageFailure::Env(Error::io("create the directory", parent, e)))?;
    }
    fs::File::create(path)
        .map(drop)
        .map_err(|e| StageFailure::Env(Error::io("create", path, e)))
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
        let StageFailure::Job { what, .. } =
            describe_failure("12", &seen, Path::new("/nonexistent/log"), true)
        else {
            panic!("not a job failure")
        };
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
