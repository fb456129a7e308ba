//! The code's layout: no import circle between the files of a crate. A
//! module may use its ancestors (a parent declares its children) but no
//! two files may reach each other through `crate::` or `super::` paths;
//! test modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, by its module path (`spec/resolve.rs` is
/// `["spec", "resolve"]`; `mod.rs` and `lib.rs` name their directory).
fn modules(dir: &Path) -> BTreeMap<Module, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<Module, String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(base).unwrap().with_extension("");
                let mut m: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    m.pop();
                }
                let text = fs::read_to_string(&p).unwrap();
                // What test modules use is not part of the layout (a
                // `#[cfg(test)]` item elsewhere in the file is).
                let code = text
                    .split("#[cfg(test)]\nmod ")
                    .next()
                    .unwrap_or("")
                    .to_string();
                out.insert(m, code);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The paths a line names from `crate::` or `super::`, braces expanded
/// one level (`crate::{a::X, b::Y}` names `a::X` and `b::Y`).
fn paths(line: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        for (i, _) in line.match_indices(start) {
            // Only where a path begins (not the second `super` of
            // `super::super::`, nor `my_crate::`).
            let before = line[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let after = &line[i..];
            let mut segs: Vec<String> = Vec::new();
            let mut s = after;
            let mut head = String::new();
            // The leading `crate`/`super::super::...` and the segments after it.
            loop {
                let word: String = s
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if word.is_empty() {
                    break;
                }
                s = &s[word.len()..];
                if head.is_empty() || (word == "super" && segs.is_empty()) {
                    head.push_str(&word);
                    head.push(' ');
                } else {
                    segs.push(word);
                }
                match s.strip_prefix("::") {
                    Some(r) => s = r,
                    None => break,
                }
            }
            if let Some(inner) = s.strip_prefix('{') {
                let inner = inner.split('}').next().unwrap_or("");
                for part in inner.split(',') {
                    let mut p = segs.clone();
                    p.extend(
                        part.trim()
                            .split("::")
                            .map(|w| w.trim().to_string())
                            .filter(|w| !w.is_empty() && w != "self"),
                    );
                    out.push((head.clone(), p));
                }
            } else {
                out.push((head, segs));
            }
        }
    }
    out
}

/// Each module's edges to the other modules of its crate (not to its own
/// ancestors, nor to itself).
fn edges(mods: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut out = BTreeMap::new();
    for (m, code) in mods {
        let mut to = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (head, segs) in paths(line) {
                let mut base: Module = if head.starts_with("crate") {
                    Vec::new()
                } else {
                    m.clone()
                };
                for _ in head.split_whitespace().filter(|w| *w == "super") {
                    base.pop();
                }
                let full: Module = base.into_iter().chain(segs).collect();
                if let Some(target) = (1..=full.len())
                    .rev()
                    .map(|k| full[..k].to_vec())
                    .find(|p| mods.contains_key(p))
                {
                    let ancestor = target.len() <= m.len() && m[..target.len()] == target[..];
                    if !ancestor {
                        to.insert(target);
                    }
                }
            }
        }
        out.insert(m.clone(), to);
    }
    out
}

/// The circles of a graph: each strongly connected component of more than
/// one module (Tarjan's algorithm).
fn circles(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on: BTreeSet<&'g Module>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g Module) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.join("/"));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let mut found = Vec::new();
    for dir in ["src", "stages/src", "learn/src"] {
        let mods = modules(&root().join(dir));
        assert!(mods.len() > 10, "{dir}: {} modules", mods.len());
        for c in circles(&edges(&mods)) {
            found.push(format!("{dir}: {}", c.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_circle_finder_finds_circles_through_every_kind_of_path() {
    let m = |files: &[(&str, &str)]| -> BTreeMap<Module, String> {
        files
            .iter()
            .map(|(p, code)| {
                let m: Module = if p.is_empty() {
                    Vec::new()
                } else {
                    p.split('/').map(str::to_string).collect()
                };
                (m, code.to_string())
            })
            .collect()
    };
    // a -> b by `crate::`, b -> a by `super::` inside braces: a circle.
    let g = m(&[
        ("", "mod a; mod b;"),
        ("a", "use crate::b::X;"),
        ("b", "use super::{a::Y, c};"),
        ("c", ""),
    ]);
    assert_eq!(
        circles(&edges(&g)),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
    // A child using its parent, a comment and a test module are no circle.
    let g = m(&[
        ("", "mod a;"),
        ("a", "mod k; use self::k::Z;"),
        ("a/k", "use super::super::a::W;\n// use crate::b::X;\n"),
        ("b", "#[cfg(test)]\nmod tests {\n    use crate::a::Y;\n}\n"),
    ]);
    assert!(circles(&edges(&g)).is_empty());
    // A test-only item before the code does not hide the code after it.
    let g = m(&[
        ("", "mod a; mod b;"),
        ("a", "use crate::b::X;"),
        ("b", "#[cfg(test)]\nfn only() {}\nuse crate::a::Y;"),
    ]);
    assert_eq!(circles(&edges(&g)).len(), 1);
}
