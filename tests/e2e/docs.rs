//! The documentation as a reader meets it: every relative link in
//! README.md and docs/ leads to a file that exists, every `#anchor` to a
//! heading of that file, every page of docs/ is linked from somewhere,
//! README stays a short guide, every YAML block loads (completed by the
//! rule in docs/architecture.md), every command and option of `--help` is
//! in docs/cli.md, and the quick study prints what README shows.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out
}

/// The text outside fenced code blocks and inline code.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code spans are dropped (a `[x](y)` inside one is no link).
        let mut inside = false;
        for part in line.split('`') {
            if !inside {
                out.push_str(part);
            }
            inside = !inside;
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchors of a page's headings (`## Running on a cluster
/// (Slurm)` -> `running-on-a-cluster-slurm`; repeats get `-1`, `-2`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// Every `[text](target)` of a page's prose.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(j) => {
                out.push(after[..j].trim().to_string());
                rest = &after[j..];
            }
            None => break,
        }
    }
    out
}

#[test]
fn every_link_of_the_documentation_resolves() {
    let mut broken = Vec::new();
    let mut linked: BTreeSet<PathBuf> = BTreeSet::new();
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for link in links(&text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            let Ok(target) = target.canonicalize() else {
                broken.push(format!("{}: `{link}`: no such file", page.display()));
                continue;
            };
            linked.insert(target.clone());
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&fs::read_to_string(&target).unwrap());
                if !heads.contains(anchor) {
                    broken.push(format!(
                        "{}: `{link}`: {} has no heading `#{anchor}`",
                        page.display(),
                        target.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    let unlinked: Vec<String> = pages()
        .into_iter()
        .skip(1)
        .filter(|p| !linked.contains(&p.canonicalize().unwrap()))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        unlinked.is_empty(),
        "pages no other page links to:\n{}",
        unlinked.join("\n")
    );
}

#[test]
fn readme_is_a_short_guide_with_its_two_commands() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; the rest belongs in docs/"
    );
    assert!(readme.contains("cargo test --workspace --release"));
    assert!(readme.contains("cargo install --path ."));
}

#[test]
fn the_link_checker_finds_what_is_broken() {
    let text = "# A title (with `code`)\n## Same\n## Same\n[a](#a-title-with-code) [b](#same-1) `[no](x.md)`\n```\n[no](y.md)\n# not a heading\n```\n";
    assert_eq!(links(text), ["#a-title-with-code", "#same-1"]);
    let heads = anchors(text);
    assert!(
        heads.contains("a-title-with-code") && heads.contains("same") && heads.contains("same-1")
    );
    assert!(!heads.contains("not-a-heading"));
}

/// A fenced block: the page, the line of its opening fence, its language,
/// the marker comment on the line before (if any), and its text.
struct Block {
    page: PathBuf,
    line: usize,
    lang: String,
    marker: Option<String>,
    text: String,
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = fs::read_to_string(page).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        if let Some(lang) = l.strip_prefix("```") {
            let indent = lines[i].len() - l.len();
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push_str(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
                body.push('\n');
                i += 1;
            }
            let marker = start
                .checked_sub(1)
                .map(|j| lines[j].trim())
                .and_then(|m| m.strip_prefix("<!-- doc-test:"))
                .and_then(|m| m.strip_suffix("-->"))
                .map(|m| m.trim().to_string());
            out.push(Block {
                page: page.to_path_buf(),
                line: start + 1,
                lang: lang.trim().to_string(),
                marker,
                text: body,
            });
        }
        i += 1;
    }
    out
}

/// The pipeline a YAML block of the documentation stands for (None: the
/// block says it is not one). The rule, as docs/architecture.md states it:
/// a block with a top-level `stages:` and no marker is a whole pipeline;
/// any other is merged into the default `pipeline.yaml` (or the file a
/// `<!-- doc-test: in FILE at PATH -->` marker names, at that dotted
/// path), each key it gives replacing that key there; an indented block
/// (stages written as under `stages:`) goes at `stages`.
fn completed(b: &Block) -> Result<Option<String>, String> {
    use serde_yaml::{Mapping, Value};
    let (file, path) = match b.marker.as_deref() {
        Some(m) if m.starts_with("skip") => {
            return match m.split_once(',') {
                Some((_, why)) if !why.trim().is_empty() => Ok(None),
                _ => Err("a `skip` marker says why: `<!-- doc-test: skip, REASON -->`".into()),
            }
        }
        Some(m) => {
            let rest = m
                .strip_prefix("in ")
                .ok_or(format!("unknown marker `{m}`"))?;
            let (f, p) = rest.split_once(" at ").unwrap_or((rest, ""));
            (f.trim().to_string(), p.trim().to_string())
        }
        None => {
            let indented = b.text.starts_with("  ");
            if !indented && b.text.lines().any(|l| l.starts_with("stages:")) {
                return Ok(Some(b.text.clone()));
            }
            let at = if indented { "stages" } else { "" };
            ("pipeline.yaml".to_string(), at.to_string())
        }
    };
    let block_text = if b.text.starts_with("  ") {
        // Stages written as under `stages:`.
        b.text
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        b.text.clone()
    };
    let block: Value = serde_yaml::from_str(&block_text).map_err(|e| format!("not YAML: {e}"))?;
    let Value::Mapping(block) = block else {
        return Err("not a mapping".into());
    };
    let base_text = fs::read_to_string(root().join(&file)).map_err(|e| format!("{file}: {e}"))?;
    let mut base: Value = serde_yaml::from_str(&base_text).map_err(|e| format!("{file}: {e}"))?;
    let mut at = &mut base;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        let Value::Mapping(m) = at else {
            return Err(format!("{file} has no mapping at `{path}`"));
        };
        at = m
            .entry(Value::String(key.into()))
            .or_insert(Value::Mapping(Mapping::new()));
    }
    let Value::Mapping(target) = at else {
        return Err(format!("{file} has no mapping at `{path}`"));
    };
    for (k, v) in block {
        target.insert(k, v);
    }
    Ok(Some(serde_yaml::to_string(&base).unwrap()))
}

#[test]
fn every_yaml_block_of_the_documentation_loads() {
    let mut failures = Vec::new();
    let mut loaded = 0;
    for page in pages() {
        for b in blocks(&page).into_iter().filter(|b| b.lang == "yaml") {
            let place = format!("{}:{}", b.page.display(), b.line);
            let text = match completed(&b) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(format!("{place}: {e}"));
                    continue;
                }
            };
            let p = Project::with(&text);
            let r = p.run(&["dag"]);
            if r.code() != 0 {
                failures.push(format!("{place}:\n{}\n--- as loaded:\n{text}", r.stderr()));
            }
            loaded += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(loaded >= 12, "only {loaded} YAML blocks were loaded");
}

#[test]
fn the_completion_rule_merges_and_refuses_what_it_should() {
    let b = |marker: Option<&str>, text: &str| Block {
        page: PathBuf::from("x.md"),
        line: 1,
        lang: "yaml".into(),
        marker: marker.map(str::to_string),
        text: text.into(),
    };
    let whole = "stages:\n  a: {kind: cmd, cmd: x}\n";
    assert_eq!(completed(&b(None, whole)).unwrap().unwrap(), whole);
    let t = completed(&b(
        Some("in pipeline.yaml at stages.train.params"),
        "lr: 0.5\n",
    ))
    .unwrap()
    .unwrap();
    assert!(t.contains("lr: 0.5") && t.contains("kind: compare"), "{t}");
    let t = completed(&b(None, "  train:\n    kind: train\n"))
        .unwrap()
        .unwrap();
    assert!(
        !t.contains("main-cnn"),
        "an indented stage replaces the default's: {t}"
    );
    assert!(completed(&b(Some("skip"), "x: 1\n")).is_err());
    assert!(completed(&b(Some("skip, a log"), "x: 1\n"))
        .unwrap()
        .is_none());
}

/// The long options and short forms of `COMMAND --help`.
fn options(args: &[&str]) -> Vec<(Option<String>, String)> {
    let out = Project::new().run(args).ok().stdout();
    out.lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .filter_map(|l| {
            let l = l.trim_start();
            let (short, rest) = match l.strip_prefix('-') {
                Some(r) if !r.starts_with('-') => (
                    Some(format!("-{}", &r[..1])),
                    r[1..].trim_start_matches(", "),
                ),
                _ => (None, l),
            };
            let long = rest
                .strip_prefix("--")?
                .split([' ', '<'])
                .next()?
                .to_string();
            Some((short, format!("--{long}")))
        })
        .collect()
}

#[test]
fn every_command_and_option_of_help_is_in_cli_md() {
    let cli = fs::read_to_string(root().join("docs/cli.md")).unwrap();
    let usage: Vec<&str> = cli
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    let shown = |line: &str, (short, long): &(Option<String>, String)| match short {
        Some(s) => line.contains(&format!("{s}|{long}")),
        None => line.contains(long.as_str()),
    };
    let mut missing = Vec::new();
    for o in options(&["--help"]) {
        if !shown(usage[0], &o) {
            missing.push(format!("global {o:?}"));
        }
    }
    let help = Project::new().run(&["--help"]).ok().stdout();
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    let globals = options(&["--help"]);
    for c in &commands {
        let Some(line) = usage.iter().find(|l| {
            l.starts_with(&format!("fmnist-pipe {c} ")) || **l == format!("fmnist-pipe {c}")
        }) else {
            missing.push(format!("command `{c}` has no usage line"));
            continue;
        };
        for o in options(&[c, "--help"]) {
            if !globals.contains(&o) && !shown(line, &o) {
                missing.push(format!("{c} {o:?}"));
            }
        }
        if !cli.contains(&format!("- **{c}**")) && !cli.contains(&format!("**{c}**")) {
            missing.push(format!("command `{c}` is not described"));
        }
    }
    assert!(missing.is_empty(), "docs/cli.md lacks: {missing:?}");
}

/// The lines README shows of a command's output: the fenced block after
/// the one holding `command`, without its `...` lines.
fn readme_output_after(command: &str) -> Vec<String> {
    let all = blocks(&root().join("README.md"));
    let i = all
        .iter()
        .position(|b| b.text.contains(command))
        .unwrap_or_else(|| panic!("README shows no `{command}`"));
    all[i + 1]
        .text
        .lines()
        .filter(|l| l.trim() != "...")
        .map(str::to_string)
        .collect()
}

/// `in 35.7s`, `in 2m01s` (a loaded machine) and the like read `in <time>`.
fn untimed(line: &str) -> String {
    match line.rsplit_once(" in ") {
        Some((head, t)) if crate::common::is_duration(t) => format!("{head} in <time>"),
        _ => line.to_string(),
    }
}

/// README's quick study, run as README says (in a copy of
/// `studies/quick/`, in a 100-column terminal): every line README shows
/// of its output is printed, but for the times; then `status -S` prints
/// README's lines.
#[test]
fn the_quick_study_prints_what_readme_shows() {
    if real_data().is_none() {
        return;
    }
    let p = Project::new();
    p.file(
        "studies/quick/pipeline.yaml",
        fs::read(root().join("studies/quick/pipeline.yaml")).unwrap(),
    );
    let run = Run(p
        .cmd(&["run", "--file", "studies/quick/pipeline.yaml"])
        .env("COLUMNS", "100")
        .output()
        .unwrap())
    .ok();
    let printed: Vec<String> = run.stdout().lines().map(untimed).collect();
    for want in readme_output_after("fmnist-pipe run --file studies/quick/pipeline.yaml") {
        assert!(
            printed.contains(&untimed(&want)),
            "README shows `{want}`; the run printed:\n{}",
            run.stdout()
        );
    }
    let status = p
        .run(&[
            "status",
            "--file",
            "studies/quick/pipeline.yaml",
            "-S",
            "train.epochs=3",
        ])
        .ok()
        .stdout();
    for want in readme_output_after("status --file studies/quick/pipeline.yaml -S train.epochs=3") {
        assert!(
            status.lines().any(|l| l == want),
            "README shows `{want}`; status printed:\n{status}"
        );
    }
}
