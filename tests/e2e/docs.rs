//! The documentation as a reader meets it: every relative link in
//! README.md and docs/ leads to a file that exists, every `#anchor` to a
//! heading of that file, every page of docs/ is linked from somewhere, and
//! README stays a short guide.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

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
