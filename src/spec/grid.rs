//! Variants declared by rule: a `matrix` of parameter values (one variant
//! per combination) and `seeds` (every variant once per seed).
//!
//! Names, so that a variant says what it is: a grid point is its
//! `key=value` pairs joined by `+` (`lr=0.01+dropout=0`); crossed with a
//! named variant, the name comes first (`no-aug+lr=0.01`); a seed
//! replicate adds `~seed<N>` (`main~seed1`). Declared names may not
//! contain `=`, `+` or `~`, so generated names cannot collide with them;
//! and none of these needs quoting in YAML or in a shell.

use super::load::RawAxis;
use serde_json::{Map, Value};
use stages::contract::{check_name, replicate_name, MAX_NAME};

/// What went wrong, and where under the stage (`["matrix", "lr"]`).
#[derive(Debug)]
pub struct GridError {
    pub path: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

fn error(path: &[&str], message: String, help: Option<String>) -> GridError {
    GridError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message,
        help,
    }
}

/// A variant to be: its name, where it was declared (for messages), and
/// the parameters it overrides.
#[derive(Debug, Clone)]
pub struct Pending {
    pub name: String,
    pub path: Vec<String>,
    pub over: Map<String, Value>,
}

/// The grid's points, first axis slowest.
pub fn points(axes: &[(String, RawAxis)]) -> Result<Vec<Pending>, GridError> {
    if axes.is_empty() {
        return Err(error(
            &["matrix"],
            "`matrix` is empty".into(),
            Some(
                "give each parameter to vary a list of values: `matrix: {lr: [0.01, 0.001]}`"
                    .into(),
            ),
        ));
    }
    let mut out = vec![Pending {
        name: String::new(),
        path: vec!["matrix".into()],
        over: Map::new(),
    }];
    for (n, (key, axis)) in axes.iter().enumerate() {
        let values = axis_values(key, axis)?;
        let mut next = Vec::with_capacity(out.len() * values.len());
        for p in &out {
            for (vname, value) in &values {
                let mut over = p.over.clone();
                let mut add = Map::new();
                insert_dotted(&mut add, key, value.clone());
                // Two axes that set one parameter would name variants
                // after values that were never used.
                if let Some(clash) = deep_merge(&mut over, &add, "") {
                    let other = axes[..n]
                        .iter()
                        .map(|(k, _)| k)
                        .find(|k| overlaps(k, &clash) || overlaps(k, key))
                        .map_or(String::new(), |k| format!("`{k}` and "));
                    return Err(error(
                        &["matrix", key],
                        format!("matrix axes {other}`{key}` both set `{clash}`"),
                        Some(format!(
                            "vary `{clash}` in one axis only: drop it from one of them, or fold both into one axis of named values"
                        )),
                    ));
                }
                let part = format!("{key}={vname}");
                next.push(Pending {
                    name: if p.name.is_empty() {
                        part
                    } else {
                        format!("{}+{part}", p.name)
                    },
                    path: p.path.clone(),
                    over,
                });
            }
        }
        out = next;
    }
    Ok(out)
}

/// Whether dotted keys `a` and `b` name the same parameter or one holds the other.
fn overlaps(a: &str, b: &str) -> bool {
    a == b || b.starts_with(&format!("{a}.")) || a.starts_with(&format!("{b}."))
}

/// One axis as (name, value) pairs, each name fit for a file name.
fn axis_values(key: &str, axis: &RawAxis) -> Result<Vec<(String, Value)>, GridError> {
    let at = ["matrix", key];
    if key.split('.').any(|k| check_name(k).is_err()) {
        return Err(error(
            &at,
            format!("matrix key `{key}` is not a parameter name"),
            Some("name a parameter, or a nested one as `plateau.patience`".into()),
        ));
    }
    let pairs: Vec<(String, Value)> = match axis {
        RawAxis::Values(vs) => vs
            .iter()
            .map(|v| value_name(v).map(|n| (n, v.clone())).ok_or_else(|| {
                error(
                    &at,
                    format!("matrix value {v} of `{key}` cannot name a variant"),
                    Some(format!(
                        "give `{key}` as a mapping from names to values, e.g. `{key}: {{none: [], flip: [{{hflip: 0.5}}]}}`"
                    )),
                )
            }))
            .collect::<Result<_, _>>()?,
        RawAxis::Named(pairs) => {
            for (n, _) in pairs {
                check_name(n).map_err(|m| {
                    error(&at, format!("matrix value name `{n}` of `{key}` {m}"), None)
                })?;
            }
            pairs.clone()
        }
    };
    if pairs.is_empty() {
        return Err(error(
            &at,
            format!("matrix `{key}` has no values"),
            Some(format!("list at least one: `{key}: [a, b]`")),
        ));
    }
    for (i, (n, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(m, _)| m == n) {
            return Err(error(
                &at,
                format!("matrix `{key}` lists `{n}` twice"),
                None,
            ));
        }
    }
    Ok(pairs)
}

/// A scalar's own text as a name part; None for what has no short name.
pub(super) fn value_name(v: &Value) -> Option<String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    check_name(&text).is_ok().then_some(text)
}

/// `plateau.patience: 3` -> `{plateau: {patience: 3}}`, merged into `over`.
pub(super) fn insert_dotted(over: &mut Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            over.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let slot = over
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(m) = slot {
                insert_dotted(m, rest, value);
            }
        }
    }
}

/// The variants of named ones and a grid: either alone, or crossed.
pub fn combine(
    named: Option<Vec<Pending>>,
    grid: Option<Vec<Pending>>,
) -> Result<Option<Vec<Pending>>, GridError> {
    Ok(match (named, grid) {
        (None, None) => None,
        (Some(v), None) | (None, Some(v)) => Some(v),
        (Some(n), Some(g)) => Some(cross(&n, &g)?),
    })
}

/// Named variants crossed with grid points (`no-aug+lr=0.01`); a key set
/// by both is refused, since one of them would be silently ignored.
pub fn cross(named: &[Pending], grid: &[Pending]) -> Result<Vec<Pending>, GridError> {
    let mut out = Vec::with_capacity(named.len() * grid.len());
    for n in named {
        for g in grid {
            let mut over = n.over.clone();
            if let Some(key) = deep_merge(&mut over, &g.over, "") {
                let path: Vec<&str> = n.path.iter().map(String::as_str).collect();
                return Err(error(
                    &path,
                    format!(
                        "variant `{}` sets `{key}`, which the matrix also varies",
                        n.name
                    ),
                    Some(format!(
                        "remove `{key}` from the variant or from the matrix"
                    )),
                ));
            }
            out.push(Pending {
                name: format!("{}+{}", n.name, g.name),
                path: n.path.clone(),
                over,
            });
        }
    }
    Ok(out)
}

/// Merges `add` into `into`; the first key both set to a non-mapping.
fn deep_merge(
    into: &mut Map<String, Value>,
    add: &Map<String, Value>,
    prefix: &str,
) -> Option<String> {
    for (k, v) in add {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => {
                if let Some(key) = deep_merge(a, b, &format!("{prefix}{k}.")) {
                    return Some(key);
                }
            }
            (Some(_), _) => return Some(format!("{prefix}{k}")),
            (None, _) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
    None
}

/// Each variant once per seed, the seed set as the `seed` parameter.
pub fn replicate(variants: &[Pending], seeds: &[u64]) -> Result<Vec<Pending>, GridError> {
    if seeds.is_empty() {
        return Err(error(
            &["seeds"],
            "`seeds` is empty".into(),
            Some("list the seeds: `seeds: [1, 2, 3]`".into()),
        ));
    }
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            return Err(error(&["seeds"], format!("`seeds` lists {s} twice"), None));
        }
    }
    let mut out = Vec::with_capacity(variants.len() * seeds.len());
    for v in variants {
        if v.over.contains_key("seed") {
            let path: Vec<&str> = v.path.iter().map(String::as_str).collect();
            return Err(error(
                &path,
                format!(
                    "variant `{}` sets `seed`, but the stage's `seeds` sets each replicate's seed",
                    v.name
                ),
                Some("remove `seed` from the variant (or the matrix)".into()),
            ));
        }
        for &s in seeds {
            let mut over = v.over.clone();
            over.insert("seed".into(), s.into());
            out.push(Pending {
                name: replicate_name(&v.name, s),
                path: v.path.clone(),
                over,
            });
        }
    }
    Ok(out)
}

/// Generated names become file names too: only their length can be wrong.
pub fn check_length(p: &Pending) -> Result<(), GridError> {
    if p.name.len() > MAX_NAME {
        let path: Vec<&str> = p.path.iter().map(String::as_str).collect();
        return Err(error(
            &path,
            format!(
                "variant name `{}` is longer than {MAX_NAME} characters",
                p.name
            ),
            Some(length_help(&p.name)),
        ));
    }
    Ok(())
}

/// What to shorten in a name that is too long: the part that made it so.
fn length_help(name: &str) -> String {
    let (base, seed) = stages::contract::replicate_of(name);
    let suffix = seed.map_or(String::new(), |_| name[base.len()..].to_string());
    let which = if base.contains('=') {
        "give long matrix values short names (`key: {short: value}`) or shorten the variant names"
    } else {
        "shorten the variant's name"
    };
    if suffix.is_empty() {
        which.to_string()
    } else if base.len() <= MAX_NAME {
        format!(
            "`{base}` fits, but its seed replicate adds `{suffix}` ({} characters): {which}",
            suffix.len()
        )
    } else {
        format!("{which}; seed replicates add `{suffix}` too")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn axis(v: Value) -> RawAxis {
        match v {
            Value::Array(a) => RawAxis::Values(a),
            _ => unreachable!(),
        }
    }

    fn names(ps: &[Pending]) -> Vec<&str> {
        ps.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn a_grid_is_every_combination_named_by_its_values() {
        let g = points(&[
            ("lr".into(), axis(json!([0.01, 0.001]))),
            ("dropout".into(), axis(json!([0, 0.25]))),
        ])
        .unwrap();
        assert_eq!(
            names(&g),
            [
                "lr=0.01+dropout=0",
                "lr=0.01+dropout=0.25",
                "lr=0.001+dropout=0",
                "lr=0.001+dropout=0.25"
            ]
        );
        assert_eq!(
            Value::Object(g[1].over.clone()),
            json!({"lr": 0.01, "dropout": 0.25})
        );
    }

    #[test]
    fn nested_keys_and_named_values() {
        let g = points(&[
            ("plateau.patience".into(), axis(json!([1, 3]))),
            (
                "augment".into(),
                RawAxis::Named(vec![
                    ("none".into(), json!([])),
                    ("flip".into(), json!([{"hflip": 0.5}])),
                ]),
            ),
        ])
        .unwrap();
        assert_eq!(names(&g)[1], "plateau.patience=1+augment=flip");
        assert_eq!(
            Value::Object(g[1].over.clone()),
            json!({"plateau": {"patience": 1}, "augment": [{"hflip": 0.5}]})
        );
        let e = points(&[("augment".into(), axis(json!([[], [{"hflip": 0.5}]])))]).unwrap_err();
        assert!(e.message.contains("cannot name a variant"), "{}", e.message);
        assert!(e.help.unwrap().contains("mapping from names"));
        let e = points(&[("lr".into(), axis(json!([0.1, 0.1])))]).unwrap_err();
        assert_eq!(e.message, "matrix `lr` lists `0.1` twice");
        assert!(points(&[("lr".into(), axis(json!([])))]).is_err());
        assert!(points(&[]).is_err());
    }

    #[test]
    fn named_variants_cross_the_grid_and_seeds_replicate_everything() {
        let named = vec![
            Pending {
                name: "main".into(),
                path: vec![],
                over: Map::new(),
            },
            Pending {
                name: "no-aug".into(),
                path: vec![],
                over: json!({"augment": []}).as_object().unwrap().clone(),
            },
        ];
        let grid = points(&[("lr".into(), axis(json!([0.01, 0.001])))]).unwrap();
        let all = cross(&named, &grid).unwrap();
        assert_eq!(
            names(&all),
            [
                "main+lr=0.01",
                "main+lr=0.001",
                "no-aug+lr=0.01",
                "no-aug+lr=0.001"
            ]
        );
        let reps = replicate(&all[..2], &[1, 2]).unwrap();
        assert_eq!(
            names(&reps),
            [
                "main+lr=0.01~seed1",
                "main+lr=0.01~seed2",
                "main+lr=0.001~seed1",
                "main+lr=0.001~seed2"
            ]
        );
        assert_eq!(
            Value::Object(reps[1].over.clone()),
            json!({"lr": 0.01, "seed": 2})
        );
        // Conflicts and bad seed lists.
        let clash = vec![Pending {
            name: "fast".into(),
            path: vec![],
            over: json!({"lr": 0.1}).as_object().unwrap().clone(),
        }];
        let e = cross(&clash, &grid).unwrap_err();
        assert_eq!(
            e.message,
            "variant `fast` sets `lr`, which the matrix also varies"
        );
        assert_eq!(
            replicate(&named, &[]).unwrap_err().message,
            "`seeds` is empty"
        );
        assert_eq!(
            replicate(&named, &[1, 1]).unwrap_err().message,
            "`seeds` lists 1 twice"
        );
        let seeded = vec![Pending {
            name: "s".into(),
            path: vec![],
            over: json!({"seed": 3}).as_object().unwrap().clone(),
        }];
        assert!(replicate(&seeded, &[1])
            .unwrap_err()
            .message
            .contains("sets `seed`"));
    }
}
