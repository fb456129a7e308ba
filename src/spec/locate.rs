//! Finds where a key path (`stages.train.variants.fast`) sits in the YAML
//! text, so that errors found after parsing can still name a line.
//!
//! serde_yaml keeps no spans once a value is deserialized; block-style YAML
//! is regular enough that indentation finds the key. Flow-style mappings are
//! not descended into: the deepest block key found is returned instead.
//! [`Locator`] turns a key path into a diagnostic at its line; [`suggest`]
//! finds the name a typo meant.

use crate::error::Diagnostic;
use std::path::Path;

/// Points a message at a key of the pipeline file.
pub(super) struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Locator { file, text }
    }

    pub(super) fn at(&self, path: &[&str], message: String) -> Diagnostic {
        let d = Diagnostic::new(self.file, message);
        match locate(self.text, path) {
            Some((line, col)) => d.at(self.text, line, col),
            None => d,
        }
    }
}

/// The closest candidate to `name`, if any is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (c.len().max(name.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c.to_string())
}

/// 1-based (line, column) of the deepest key of `path` that could be found.
pub fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut best = None;
    let (mut from, mut to) = (0usize, lines.len());
    let mut parent_indent: Option<usize> = None;
    for key in path {
        let mut found = None;
        let mut level: Option<usize> = None;
        for (i, line) in lines.iter().enumerate().take(to).skip(from) {
            let Some((indent, k)) = key_of(line) else {
                continue;
            };
            if parent_indent.is_some_and(|p| indent <= p) {
                break;
            }
            // Only keys at the first indentation level below the parent.
            let lvl = *level.get_or_insert(indent);
            if indent != lvl {
                continue;
            }
            if k == *key {
                found = Some((i, indent));
                break;
            }
        }
        let Some((i, indent)) = found else { break };
        best = Some((i + 1, indent + 1));
        // The block of this key runs until the next line indented no deeper.
        let end = lines
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, l)| key_of(l).is_some_and(|(ind, _)| ind <= indent))
            .map_or(lines.len(), |(j, _)| j);
        from = i + 1;
        to = end;
        parent_indent = Some(indent);
        // A key given inline (`fast: {lr: 0.01}`) ends the descent here.
        if lines[i].split_once(':').is_some_and(|(_, rest)| {
            let r = rest.trim();
            !r.is_empty() && !r.starts_with('#')
        }) {
            break;
        }
    }
    best
}

/// The indentation and key of a `key:` line, ignoring comments, list items
/// and blank lines.
fn key_of(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
        return None;
    }
    let indent = line.len() - trimmed.len();
    let (key, _) = trimmed.split_once(':')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    Some((indent, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "settings:\n  jobs: 2\nstages:\n  prep:\n    kind: cmd\n  # a comment\n  train:\n    params: {lr: 1}\n    variants:\n      fast: {lr: 2}\n      slow:\n        lr: 3\n";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(locate(TEXT, &["stages", "prep"]), Some((4, 3)));
        assert_eq!(
            locate(TEXT, &["stages", "train", "variants", "fast"]),
            Some((10, 7))
        );
        assert_eq!(
            locate(TEXT, &["stages", "train", "variants", "slow", "lr"]),
            Some((12, 9))
        );
    }

    #[test]
    fn stops_at_flow_mappings_and_missing_keys() {
        assert_eq!(
            locate(TEXT, &["stages", "train", "params", "lr"]),
            Some((8, 5))
        );
        assert_eq!(locate(TEXT, &["stages", "nope"]), Some((3, 1)));
        assert_eq!(locate(TEXT, &["nope"]), None);
    }

    #[test]
    fn does_not_find_keys_of_siblings() {
        // `kind` belongs to prep, not train.
        assert_eq!(locate(TEXT, &["stages", "train", "kind"]), Some((7, 3)));
    }
}
