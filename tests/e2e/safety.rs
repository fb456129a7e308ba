//! Nothing a user writes can destroy their work: names and outputs that
//! reach the project, the pipeline file, the cache, the outputs directory
//! or version-control metadata are refused at load; at run time the tool
//! only deletes or replaces what it can show it produced.

use stages::download::sha256_hex;
use std::fs;
use std::path::PathBuf;

use crate::common::{example, ran, Project, Run};

/// A project with user files in it and beside it, and `link -> .`; the
/// files are checked after every step.
struct Guarded {
    p: Project,
    sentinels: Vec<(PathBuf, String)>,
}

const DATA_SHA_FILE: &str = "a.gz";

impl Guarded {
    fn new() -> Guarded {
        let p = Project::new();
        let mut sentinels = Vec::new();
        for (rel, content) in [
            ("beside.txt", "outside the project"),
            ("proj/data/raw.txt", "the user's data"),
            ("proj/.git/HEAD", "ref: refs/heads/main"),
            ("proj/sub/.git/config", "a nested repository"),
            ("proj/cache/note.txt", "a note left in the cache directory"),
            (
                "proj/outputs/keep/file.txt",
                "a file put in outputs by hand",
            ),
            ("proj/src/a.gz", "hello"),
        ] {
            let path = p.outside().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            sentinels.push((path, content.to_string()));
        }
        std::os::unix::fs::symlink(".", p.path("link")).unwrap();
        Guarded { p, sentinels }
    }

    fn dir(&self) -> PathBuf {
        self.p.dir()
    }

    /// Writes the pipeline and remembers it as a file that must survive.
    fn pipeline(&mut self, text: &str) {
        let path = self.p.path("pipeline.yaml");
        self.p.pipeline(text);
        self.sentinels.retain(|(s, _)| *s != path);
        self.sentinels.push((path, text.to_string()));
    }

    fn run(&self, args: &[&str]) -> Run {
        self.p.run(args)
    }

    /// Every file the user put there is still there, unchanged.
    fn assert_intact(&self, case: &str) {
        for (p, content) in &self.sentinels {
            assert_eq!(
                fs::read_to_string(p).ok().as_deref(),
                Some(content.as_str()),
                "{case}: {} was changed or removed",
                p.display()
            );
        }
        assert!(
            fs::symlink_metadata(self.p.path("link")).is_ok(),
            "{case}: link removed"
        );
    }
}

fn download_stage(name: &str) -> String {
    format!(
        "stages:\n  \"{name}\":\n    kind: download\n    params:\n      sources: [src]\n      files: {{{DATA_SHA_FILE}: {}}}\n",
        sha256_hex(b"hello")
    )
}

fn cmd_stage(name: &str, out: &str) -> String {
    format!(
        "stages:\n  \"{name}\":\n    kind: cmd\n    cmd: \"mkdir -p \\\"$(dirname '{out}')\\\" && echo made > '{out}'\"\n    outs: [\"{out}\"]\n"
    )
}

/// Table-driven over generated stage names and output paths: whether the
/// pipeline is refused at load, fails at run or succeeds, run twice (the
/// second time forced, which replaces the first outputs), nothing the user
/// put anywhere is removed or changed.
#[test]
fn nothing_outside_what_a_stage_produced_is_ever_removed() {
    let components = [
        "",
        ".",
        "..",
        "...",
        ".git",
        "a",
        "x.y",
        "-",
        "cache",
        "outputs",
        "pipeline.yaml",
        "link",
        "data",
        "raw.txt",
        "keep",
        "sub",
    ];
    let mut names: Vec<String> = components.iter().map(|c| c.to_string()).collect();
    names.extend(["a/b", "a@b", "../x", "ok name"].map(String::from));
    names.push("n".repeat(101));
    let mut outs: Vec<String> = Vec::new();
    for a in components {
        outs.push(a.to_string());
        for b in [
            "",
            "pipeline.yaml",
            "x.txt",
            "raw.txt",
            "HEAD",
            "file.txt",
            "..",
        ] {
            if !b.is_empty() {
                outs.push(format!("{a}/{b}"));
            }
        }
    }
    outs.extend(
        [
            "/tmp/abs.txt",
            "data/../pipeline.yaml",
            "outputs/keep",
            "sub/.git/config",
            "cache/note.txt",
            "src",
            "./",
        ]
        .map(String::from),
    );
    let mut accepted = 0;
    let mut refused_at_load = 0;
    let cases: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("download stage `{n}`"), download_stage(n)))
        .chain(
            names
                .iter()
                .map(|n| (format!("cmd stage `{n}`"), cmd_stage(n, "made.txt"))),
        )
        .chain(
            outs.iter()
                .map(|o| (format!("cmd output `{o}`"), cmd_stage("s", o))),
        )
        .collect();
    for (case, yaml) in &cases {
        let mut p = Guarded::new();
        p.pipeline(yaml);
        let first = p.run(&["run"]);
        p.assert_intact(case);
        match first.status.code() {
            Some(2) => {
                refused_at_load += 1;
                assert!(
                    first.text().contains("pipeline.yaml:"),
                    "{case}: a refusal names the file: {}",
                    first.text()
                );
                continue;
            }
            Some(0) => accepted += 1,
            _ => {}
        }
        p.run(&["run", "--force-all"]);
        p.assert_intact(case);
        p.run(&["run"]);
        p.assert_intact(case);
    }
    // The table is not vacuous: both outcomes occur.
    assert!(accepted >= 10, "{accepted} accepted");
    assert!(refused_at_load >= 40, "{refused_at_load} refused");
}

/// The class of the reported data loss, each refused with its line.
#[test]
fn dangerous_names_and_paths_are_refused_at_load_with_the_line() {
    let cases: &[(&str, &str, u32)] = &[
        (&download_stage(".."), "stage name `..` starts with `.`", 2),
        (&download_stage("."), "stage name `.` starts with `.`", 2),
        (
            "stages:\n  t:\n    kind: cmd\n    cmd: x\n    params: {a: 1}\n    variants:\n      \"..\": {a: 2}\n",
            "variant name `..` starts with `.`",
            7,
        ),
        (
            &cmd_stage("s", "pipeline.yaml"),
            "output `pipeline.yaml` is the pipeline file",
            5,
        ),
        (
            &cmd_stage("s", "link/pipeline.yaml"),
            "output `link/pipeline.yaml` is the pipeline file",
            5,
        ),
        (&cmd_stage("s", "link"), "output `link` is the project directory", 5),
        (&cmd_stage("s", "cache"), "is the cache directory `cache`", 5),
        (&cmd_stage("s", "cache/x"), "lies inside the cache directory", 5),
        (&cmd_stage("s", "outputs"), "is the outputs directory", 5),
        (&cmd_stage("s", ".git/hooks"), "version-control metadata", 5),
        (&cmd_stage("s", "sub/.git"), "version-control metadata", 5),
        (
            "stages:\n  s:\n    kind: cmd\n    cmd: x\n    deps: [data/raw.txt]\n    outs: [data]\n",
            "holds its own dep `data/raw.txt`",
            6,
        ),
        (
            "settings:\n  cache: .git\nstages:\n  s:\n    kind: cmd\n    cmd: x\n",
            "settings.cache `.git` is version-control metadata",
            2,
        ),
        (
            "settings:\n  outputs: cache\nstages:\n  s:\n    kind: cmd\n    cmd: x\n",
            "settings.outputs `cache` is the cache directory",
            2,
        ),
        (
            "settings:\n  outputs: link\nstages:\n  s:\n    kind: cmd\n    cmd: x\n",
            "settings.outputs `link` is the project directory",
            2,
        ),
        (
            "settings:\n  cache: /\nstages:\n  s:\n    kind: cmd\n    cmd: x\n",
            "contains the project directory",
            2,
        ),
    ];
    for (yaml, want, line) in cases {
        let mut p = Guarded::new();
        p.pipeline(yaml);
        for cmd in ["status", "run"] {
            let r = p.run(&[cmd]);
            let t = r.text();
            assert_eq!(r.status.code(), Some(2), "{want}: {t}");
            assert!(t.contains(want), "expected {want:?} in\n{t}");
            assert!(
                t.contains(&format!("pipeline.yaml:{line}:")),
                "{want}: line {line} in\n{t}"
            );
        }
        p.assert_intact(want);
    }
}

/// A file already at a new output's path, or an output changed since the
/// stage wrote it, is kept; the stage stops and says what to do.
#[test]
fn outputs_the_tool_did_not_write_are_kept() {
    let mut p = Guarded::new();
    p.pipeline(&cmd_stage("s", "data/raw.txt"));
    let r = p.run(&["run"]);
    assert_eq!(r.status.code(), Some(1), "{}", r.text());
    assert!(
        r.text().contains("data/raw.txt already exists, and s has no record of writing it; fmnist-pipe only deletes what it wrote\n         help: move data/raw.txt away"),
        "{}",
        r.text()
    );
    p.assert_intact("existing file");

    // A built-in kind's output directory with a file added by hand.
    let mut p = Guarded::new();
    p.pipeline(&download_stage("dl"));
    let r = p.run(&["run"]);
    assert_eq!(r.status.code(), Some(0), "{}", r.text());
    let extra = p.dir().join("outputs/dl/notes.txt");
    fs::write(&extra, "mine").unwrap();
    let r = p.run(&["run", "--force", "dl"]);
    assert_eq!(r.status.code(), Some(1), "{}", r.text());
    assert!(
        r.text()
            .contains("outputs/dl holds changes since dl wrote it (outputs/dl/notes.txt)"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read_to_string(&extra).unwrap(), "mine");
    // A file deleted from it: nothing foreign, so it is restored.
    fs::remove_file(&extra).unwrap();
    fs::remove_file(p.dir().join("outputs/dl/a.gz")).unwrap();
    let r = p.run(&["run"]);
    assert!(r.text().contains("restored dl"), "{}", r.text());
    assert_eq!(fs::read(p.dir().join("outputs/dl/a.gz")).unwrap(), b"hello");
}

/// A cmd stage that failed half-way may be rerun: its partial output was
/// written by the tool's own run, which cleared the path first.
#[test]
fn a_failed_cmd_stage_can_rerun_over_its_partial_output() {
    let mut p = Guarded::new();
    let flaky = "stages:\n  s:\n    kind: cmd\n    cmd: \"echo partial > o.txt; test -f ok && echo whole > o.txt\"\n    outs: [o.txt]\n";
    p.pipeline(flaky);
    assert_eq!(p.run(&["run"]).status.code(), Some(1));
    assert_eq!(
        fs::read_to_string(p.dir().join("o.txt")).unwrap(),
        "partial\n"
    );
    fs::write(p.dir().join("ok"), "").unwrap();
    let r = p.run(&["run"]);
    assert_eq!(r.status.code(), Some(0), "{}", r.text());
    assert_eq!(
        fs::read_to_string(p.dir().join("o.txt")).unwrap(),
        "whole\n"
    );
}

/// An output edited by hand is neither overwritten nor deleted: the stage
/// stops and says what to do; once the edit is moved away, the stage's own
/// version comes back from the cache.
#[test]
fn an_edited_output_is_kept_and_the_stage_says_what_to_do() {
    let p = example();
    p.run(&["run"]).ok();
    ran(&p);
    p.file("out/table.txt", "edited by hand\n");
    assert_eq!(
        p.state_of("compare").1.as_deref(),
        Some("output out/table.txt modified since the stage wrote it (move it away; `run` then restores it from the cache)")
    );
    for args in [&["run"][..], &["run", "--force", "compare"][..]] {
        let r = p.run(args);
        assert_eq!(r.code(), 1, "{}", r.stdout());
        assert!(
            r.stdout().contains("FAILED   compare: out/table.txt was modified since compare wrote it; fmnist-pipe only deletes what it wrote\n         help: move out/table.txt away (or delete it) and run again; compare's own version is then restored from the cache"),
            "{}",
            r.stdout()
        );
        assert_eq!(p.read("out/table.txt"), "edited by hand\n");
        assert!(ran(&p).is_empty());
    }
    fs::rename(p.path("out/table.txt"), p.path("mine.txt")).unwrap();
    let out = p.run(&["run"]).ok().stdout();
    assert!(out.contains("restored compare"), "{out}");
    assert_eq!(p.read("out/table.txt"), "0.01 3\n0.001 3\n");
    assert_eq!(p.read("mine.txt"), "edited by hand\n");
}
