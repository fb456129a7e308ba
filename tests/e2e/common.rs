//! The one harness of the end-to-end tests: a project in a temporary
//! directory (pipeline text and files), the real binary run in it, and
//! expectations on its exit status, stdout and stderr (whole texts where
//! they are stable).

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A project directory `<tmp>/proj`, with room beside it for files that
/// must survive whatever the project does.
pub struct Project {
    root: tempfile::TempDir,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    /// An empty project.
    pub fn new() -> Project {
        let root = tempfile::tempdir().expect("a temporary directory");
        fs::create_dir_all(root.path().join("proj")).expect("the project directory");
        Project { root }
    }

    /// A project whose pipeline.yaml is `text`.
    pub fn with(text: &str) -> Project {
        let p = Project::new();
        p.pipeline(text);
        p
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("proj")
    }

    /// The directory holding the project.
    pub fn outside(&self) -> &Path {
        self.root.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// Edits pipeline.yaml: `from` (which must be there) becomes `to`.
    #[track_caller]
    pub fn edit_pipeline(&self, from: &str, to: &str) -> &Self {
        let text = self.read("pipeline.yaml");
        assert!(
            text.contains(from),
            "pipeline.yaml has no `{from}`:\n{text}"
        );
        self.pipeline(&text.replace(from, to))
    }

    pub fn pipeline(&self, text: &str) -> &Self {
        self.file("pipeline.yaml", text)
    }

    /// Writes a file (and its directories).
    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("a file has a parent")).expect("mkdir");
        fs::write(p, content).expect("write");
        self
    }

    #[track_caller]
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// The binary, ready to run in the project (for tests that spawn it).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fmnist-pipe"));
        // Output as off a terminal, whatever the shell running the tests has.
        c.args(args)
            .current_dir(self.dir())
            .env_remove("CI")
            .env_remove("COLUMNS");
        c
    }

    /// Starts the binary (output captured) and waits until the running
    /// stage has created `marker`.
    pub fn start(&self, args: &[&str], marker: &str) -> std::process::Child {
        let child = self
            .cmd(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        wait_for(&self.path(marker));
        child
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().expect("the binary runs"))
    }

    /// `status --json`, as (stage, state, reason) rows.
    #[track_caller]
    pub fn status(&self) -> Vec<(String, String, Option<String>)> {
        let out = self.run(&["status", "--json"]).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v.as_array()
            .expect("an array")
            .iter()
            .map(|r| {
                (
                    r["stage"].as_str().unwrap_or_default().to_string(),
                    r["state"].as_str().unwrap_or_default().to_string(),
                    r["reason"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// One stage's (state, reason).
    #[track_caller]
    pub fn state_of(&self, stage: &str) -> (String, Option<String>) {
        let row = self
            .status()
            .into_iter()
            .find(|r| r.0 == stage)
            .unwrap_or_else(|| panic!("no stage {stage} in status"));
        (row.1, row.2)
    }
}

/// A finished run of the binary and its expectations.
pub struct Run(pub Output);

impl Deref for Run {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.0
    }
}

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    fn show(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }

    /// Exits with `code`.
    #[track_caller]
    pub fn exits(self, code: i32) -> Run {
        assert_eq!(self.code(), code, "{}", self.show());
        self
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        self.exits(0)
    }

    /// stdout is exactly `text`.
    #[track_caller]
    pub fn stdout_is(self, text: &str) -> Run {
        assert_eq!(self.stdout(), text, "{}", self.show());
        self
    }

    /// stdout is exactly `text` once durations (`in 12ms`, `in 1.5s`,
    /// `in 2m03s` at the end of a line) read `in <time>`, and the live
    /// page's address (a run's own directory) `<page>`.
    #[track_caller]
    pub fn stdout_untimed_is(self, text: &str) -> Run {
        let untimed: String = self
            .stdout()
            .lines()
            .map(|l| match l.rsplit_once(" in ") {
                _ if l.starts_with("live page: file:///") && l.ends_with("/index.html") => {
                    "live page: <page>\n".to_string()
                }
                Some((head, t)) if is_duration(t) => format!("{head} in <time>\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        assert_eq!(untimed, text, "{}", self.show());
        self
    }

    /// stderr is exactly `text`.
    #[track_caller]
    pub fn stderr_is(self, text: &str) -> Run {
        assert_eq!(self.stderr(), text, "{}", self.show());
        self
    }

    /// stdout or stderr holds `part` (for texts with times or paths).
    #[track_caller]
    pub fn has(self, part: &str) -> Run {
        assert!(
            self.text().contains(part),
            "expected {part:?} in\n{}",
            self.show()
        );
        self
    }

    #[track_caller]
    pub fn lacks(self, part: &str) -> Run {
        assert!(
            !self.text().contains(part),
            "unexpected {part:?} in\n{}",
            self.show()
        );
        self
    }
}

/// `12ms`, `1.5s`, `2m03s`.
pub fn is_duration(t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    if let Some(ms) = t.strip_suffix("ms") {
        return digits(ms);
    }
    if let Some(s) = t.strip_suffix('s') {
        return match s.split_once('m') {
            Some((m, s)) => digits(m) && digits(s),
            None => digits(s),
        };
    }
    false
}

/// Waits (up to 5 s) for a file a running command creates.
pub fn wait_for(path: &Path) {
    for _ in 0..200 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{} never appeared", path.display());
}

/// A tmpfs mounted over a path for the length of a test (needs root; the
/// tests that use it say so and pass vacuously elsewhere).
pub struct Mount(PathBuf);

impl Mount {
    pub fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(path.to_path_buf()))
    }

    /// Gives the file system more room, keeping its contents.
    pub fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The example of the pipeline reference, with a run counter per stage.
pub const EXAMPLE: &str = r#"
settings:
  cache: cache
  outputs: outputs
  jobs: 2
stages:
  prep:
    kind: cmd
    cmd: "echo prep >> runs.log; sort data/raw.txt > data/sorted.txt"
    deps: [data/raw.txt]
    outs: [data/sorted.txt]
  train:
    kind: cmd
    needs: [prep]
    params: {lr: 0.001, epochs: 3}
    variants:
      fast: {lr: 0.01}
      slow: {}
    cmd: "echo ${stage} >> runs.log; echo ${params.lr} ${params.epochs} > out/model-${variant}.txt"
    outs: ["out/model-${variant}.txt"]
  evaluate:
    kind: cmd
    foreach: train
    cmd: "echo ${stage} >> runs.log; cat out/model-${variant}.txt > out/eval-${variant}.txt"
    outs: ["out/eval-${variant}.txt"]
  compare:
    kind: cmd
    needs: [evaluate]
    cmd: "echo ${stage} >> runs.log; cat out/eval-*.txt > out/table.txt"
    outs: [out/table.txt]
"#;

pub fn example() -> Project {
    let p = Project::with(EXAMPLE);
    p.file("data/raw.txt", "c\nb\na\n");
    p
}

/// Stages that ran since the last call, in order.
pub fn ran(p: &Project) -> Vec<String> {
    let text = fs::read_to_string(p.path("runs.log")).unwrap_or_default();
    let _ = fs::remove_file(p.path("runs.log"));
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

pub fn objects(p: &Project) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in fs::read_dir(p.path("cache/objects")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v
}

/// 28x28 images whose class is a bright horizontal band: learnable in a
/// few batches.
pub fn write_data(dir: &Path) -> String {
    fs::create_dir_all(dir).unwrap();
    let mut r = learn::data::augment::Rng::new(3);
    let mut files = String::new();
    for (prefix, n) in [("train", 700usize), ("t10k", 200)] {
        let labels: Vec<u8> = (0..n).map(|i| ((i * 7) % 10) as u8).collect();
        let mut pixels = vec![0u8; n * 784];
        for (i, &c) in labels.iter().enumerate() {
            for y in 0..28 {
                for x in 0..28 {
                    let noise = (r.next_u64() % 70) as u8;
                    pixels[i * 784 + y * 28 + x] = if y / 3 == c as usize {
                        180 + noise
                    } else {
                        noise
                    };
                }
            }
        }
        for (name, bytes) in [
            (
                format!("{prefix}-images-idx3-ubyte.gz"),
                learn::data::idx::gzip(&learn::data::idx::encode(&[n as u32, 28, 28], &pixels)),
            ),
            (
                format!("{prefix}-labels-idx1-ubyte.gz"),
                learn::data::idx::gzip(&learn::data::idx::encode(&[n as u32], &labels)),
            ),
        ] {
            fs::write(dir.join(&name), &bytes).unwrap();
            files.push_str(&format!(
                "        {name}: {}\n",
                stages::download::sha256_hex(&bytes)
            ));
        }
    }
    files
}

/// The study (download, preprocess, train variants, evaluate, compare)
/// on [`write_data`]'s files: `variants` are YAML lines under
/// `variants:`, `reference` the compared reference. Train and evaluate
/// declare `threads: 1`.
pub fn tiny_study(files: &str, variants: &str, reference: &str) -> String {
    format!(
        r#"settings: {{jobs: 2}}
stages:
{}  train:
    kind: train
    needs: [preprocess]
    threads: 1
    params:
      model: {{layers: [{{conv: {{out: 4, kernel: 3, padding: 1}}}}, batchnorm, relu, {{maxpool: 2}}, flatten, {{linear: 10}}]}}
      epochs: 1
      batch_size: 32
      lr: 0.003
    variants:
{variants}  evaluate:
    kind: evaluate
    foreach: train
    needs: [preprocess]
    threads: 1
  compare:
    kind: compare
    needs: [evaluate]
    params: {{reference: {reference}}}
"#,
        tiny_data(files)
    )
}

/// The stages that download [`write_data`]'s `files` from `data/` and
/// preprocess them (100 validation images), as YAML under `stages:`.
pub fn tiny_data(files: &str) -> String {
    format!(
        r#"  download:
    kind: download
    params:
      sources: [data]
      files:
{files}  preprocess:
    kind: preprocess
    needs: [download]
    params: {{validation: 100}}
"#
    )
}

/// Variants `main` and `slow` (a tenth of the learning rate) for [`tiny_study`].
pub const MAIN_AND_SLOW: &str = "      main: {}\n      slow: {lr: 0.0003}\n";

/// A project holding [`tiny_study`] with [`MAIN_AND_SLOW`] on
/// [`write_data`]'s files, reference `main`, its text passed through `edit`.
pub fn tiny_project(edit: impl Fn(String) -> String) -> Project {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    t.pipeline(&edit(tiny_study(&files, MAIN_AND_SLOW, "main")));
    t
}

/// What a skipped test (or part of one) lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lacks {
    RealData,
    Python,
    Torch,
    OnnxRuntime,
    S3Server,
    Slurm,
    Chromium,
    Git,
    Font,
    Root,
    Avx512,
}

/// What may be missing even where `FMNIST_PIPE_NO_SKIPS=1` says that
/// everything else is there (as `.ci/run` does), and why.
pub const MAY_SKIP: &[(Lacks, &str)] = &[
    (
        Lacks::Torch,
        "PyTorch's wheel is 5 GB with its CUDA libraries: CI checks the exports with ONNX Runtime, and the torch checks run where FMNIST_PIPE_PYTHON has torch",
    ),
    (Lacks::Avx512, "a property of the CPU the tests run on"),
];

/// Says that the calling test (or a part of it) did not run and why, on
/// the real stderr: libtest captures `eprintln!` of a passing test, and a
/// skip must never read as a pass. With `FMNIST_PIPE_NO_SKIPS=1` a skip
/// for anything not in [`MAY_SKIP`] fails the test instead; so does one
/// for what `FMNIST_PIPE_MAY_SKIP` (a comma-separated list such as
/// `slurm`) does not name, where that is set.
#[track_caller]
pub fn skip(lacks: Lacks, reason: &str) {
    use std::io::Write;
    let at = std::panic::Location::caller();
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let strict = std::env::var("FMNIST_PIPE_NO_SKIPS").is_ok_and(|v| v == "1");
    let named = std::env::var("FMNIST_PIPE_MAY_SKIP").is_ok_and(|v| {
        v.split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(&format!("{lacks:?}")))
    });
    let allowed = MAY_SKIP.iter().any(|(l, _)| *l == lacks) || named;
    assert!(
        !strict || allowed,
        "{test} would skip ({lacks:?}: {reason}), and FMNIST_PIPE_NO_SKIPS=1 says it must run here"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test} ({}:{}): {reason}",
        at.file(),
        at.line()
    );
}

/// Where Debian's package installed the real Fashion-MNIST files; `None`
/// (and a line saying the test was skipped) where it did not.
#[track_caller]
pub fn real_data() -> Option<&'static Path> {
    let debian = Path::new(stages::download::DEBIAN_DIR);
    if debian.join("train-images-idx3-ubyte.gz").exists() {
        return Some(debian);
    }
    skip(
        Lacks::RealData,
        &format!(
            "{} is not installed (apt-get install dataset-fashion-mnist)",
            debian.display()
        ),
    );
    None
}
