//! A stage's variants: declared, from a grid or a search, replicated by
//! seed, each merged into the stage's params and checked.

use super::grid;
use super::load::RawStage;
use super::locate::{suggest, Locator};
use crate::error::{Diagnostic, Result};
use serde_json::{Map, Value};
use stages::contract::{check_name, replicate_of};
use stages::Kind;
use std::collections::HashMap;

/// A train stage's `search:`: its trials as variants (`trial-07`), each
/// with its parameters merged and checked; the search and the values as
/// a report shows them.
#[allow(clippy::type_complexity)]
pub(super) fn searched_variants(
    name: &str,
    rs: &RawStage,
    params: &Value,
    loc: &Locator<'_>,
) -> Result<
    Option<(
        Vec<(String, Value)>,
        (super::search::Search, Vec<Map<String, Value>>),
    )>,
> {
    let Some(raw) = &rs.search else {
        return Ok(None);
    };
    let at = under_stage(loc, name);
    if rs.kind != Kind::Train {
        return Err(at(
            &["search".into()],
            format!(
                "stage `{name}` is of kind {}; only a train stage takes `search:`",
                rs.kind.name()
            ),
            None,
        )
        .into());
    }
    for (field, given) in [
        ("variants", rs.variants.is_some()),
        ("matrix", rs.matrix.is_some()),
        ("seeds", rs.seeds.is_some()),
        ("foreach", rs.foreach.is_some()),
    ] {
        if given {
            return Err(at(
                &[field.into()],
                format!("stage `{name}` has both `search` and `{field}`: a search's trials are its variants"),
                Some("search in a stage of its own; confirm the winner on several seeds with a `confirm` stage".into()),
            )
            .into());
        }
    }
    let epochs = params.get("epochs").and_then(Value::as_u64).unwrap_or(0) as usize;
    let search = super::search::parse(raw, epochs)
        .map_err(|e| at(&e.path, format!("stage `{name}`: {}", e.message), e.help))?;
    // Each searched key must be a parameter of the stage.
    for (key, d) in &search.space {
        let mut over = Map::new();
        grid::insert_dotted(&mut over, key, super::search::probe(d));
        let mut probe = params.clone();
        if let Err((bad, known)) = merge_override(&mut probe, &over, "", rs.kind.optional_params())
        {
            return Err(at(
                &["search".into(), "space".into(), key.clone()],
                format!("the search space of stage `{name}` varies `{bad}`, which is not a parameter of the stage"),
                Some(match suggest(&bad, known.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known parameters here: {}", known.join(", ")),
                }),
            )
            .into());
        }
        if let Err(m) = rs.kind.normalize_params(probe) {
            return Err(at(
                &["search".into(), "space".into(), key.clone()],
                format!("the search space of stage `{name}`: `{key}`: {m}"),
                None,
            )
            .into());
        }
    }
    let trials = super::search::trials(&search);
    let mut variants = Vec::with_capacity(trials.len());
    let mut shown = Vec::with_capacity(trials.len());
    for t in trials {
        let merged = merge_variant(name, rs, params, &t.pending, &at)?;
        variants.push((t.pending.name, merged));
        shown.push(t.shown);
    }
    Ok(Some((variants, (search, shown))))
}

/// A stage's variants, named, declared and by rule (`matrix`, `seeds`),
/// each with its parameters merged and checked.
pub(super) fn declared_variants(
    name: &str,
    rs: &RawStage,
    params: &Value,
    loc: &Locator<'_>,
) -> Result<Option<Vec<(String, Value)>>> {
    let at = under_stage(loc, name);
    let grid_err =
        |e: grid::GridError| at(&e.path, format!("stage `{name}`: {}", e.message), e.help);
    let named = named_variants(name, rs, &at)?;
    // Checked below, once the stage's shape errors are out of the way.
    let declared = named.clone().filter(|_| rs.kind != Kind::Cmd);
    let grid = match &rs.matrix {
        None => None,
        Some(m) => Some(grid::points(&m.0).map_err(grid_err)?),
    };
    let mut variants = grid::combine(named, grid).map_err(grid_err)?;
    if variants.is_some() && rs.foreach.is_some() {
        let what = if rs.variants.is_some() {
            "variants"
        } else {
            "matrix"
        };
        return Err(at(
            &["foreach".into()],
            format!("stage `{name}` has both `{what}` and `foreach`; use one"),
            None,
        )
        .into());
    }
    if let (Some(_), Some(target)) = (&rs.seeds, &rs.foreach) {
        // Replicating a `foreach` stage would name replicates of
        // replicates (`main~seed1~seed2`) and train nothing new.
        return Err(at(
            &["seeds".into()],
            format!("stage `{name}` has `seeds` and `foreach: {target}`: its variants are {target}'s, one per variant of {target}, so there is nothing of its own to replicate"),
            Some(format!("put `seeds` on `{target}`: each of its replicates then gets its own `{name}` stage")),
        )
        .into());
    }
    if let Some(seeds) = &rs.seeds {
        let Some(vs) = &variants else {
            return Err(at(
                &["seeds".into()],
                format!("stage `{name}` has `seeds` but no variants to replicate"),
                Some("declare the variants, even a single one: `variants: {main: {}}`".into()),
            )
            .into());
        };
        if rs.params.as_ref().is_some_and(|p| p.0.contains_key("seed")) {
            return Err(at(
                &["params".into(), "seed".into()],
                format!("stage `{name}` sets `seed` in params and `seeds` too"),
                Some("remove `seed` from params: `seeds` sets each replicate's seed".into()),
            )
            .into());
        }
        variants = Some(grid::replicate(vs, seeds).map_err(grid_err)?);
    }
    let Some(variants) = variants else {
        return Ok(None);
    };
    if let Some(declared) = &declared {
        check_changes(name, rs, params, declared, &at)?;
    }
    let mut out = Vec::with_capacity(variants.len());
    for mut v in variants {
        grid::check_length(&v).map_err(grid_err)?;
        // `-S STAGE@POINT.KEY=VALUE` on a variant made by rule.
        for (_, key, value) in rs.point_overrides.iter().filter(|(n, _, _)| *n == v.name) {
            grid::insert_dotted(&mut v.over, key, value.clone());
        }
        let merged = merge_variant(name, rs, params, &v, &at)?;
        out.push((v.name, merged));
    }
    let axes = rs.matrix.iter().flat_map(|m| &m.0).map(|(k, _)| k.as_str());
    check_distinct(name, rs, &out, axes, loc)?;
    Ok(Some(out))
}

/// Refuses a declared variant of a built-in kind whose overrides leave
/// the stage's params as they are (`no-aug: {augment: []}` where `augment`
/// is already `[]`): its name would claim a change the training never
/// made. A command may read its variant's name, so its variants are its own.
pub(super) fn check_changes(
    name: &str,
    rs: &RawStage,
    params: &Value,
    named: &[grid::Pending],
    at: &At<'_>,
) -> Result<()> {
    let Some(first) = named.first() else {
        return Ok(());
    };
    // The stage's params as a variant without overrides reads them.
    let plain = grid::Pending {
        over: Map::new(),
        ..first.clone()
    };
    let mut base = String::new();
    canonical_text(&merge_variant(name, rs, params, &plain, at)?, &mut base);
    for v in named.iter().filter(|v| !v.over.is_empty()) {
        let mut changed = String::new();
        canonical_text(&merge_variant(name, rs, params, v, at)?, &mut changed);
        if changed == base {
            return Err(at(
                &v.path,
                format!(
                    "variant `{}` of stage `{name}` changes nothing: the stage's params already give {}",
                    v.name,
                    shown_overrides(&v.over, rs)
                ),
                Some(
                    "give it a value the stage does not have, or remove it (docs/pipeline.md lists each kind's defaults)"
                        .into(),
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// A variant's overrides as a reader wrote them, each one the stage's
/// params leave out marked as the default: `augment: [] (the default)`.
pub(super) fn shown_overrides(over: &Map<String, Value>, rs: &RawStage) -> String {
    let stated = |k: &str| rs.params.as_ref().is_some_and(|p| p.0.contains_key(k));
    over.iter()
        .map(|(k, v)| {
            let default = if stated(k) { "" } else { " (the default)" };
            format!("{k}: {v}{default}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Points a message, with its help if any, at a path under the stage.
pub(super) type At<'a> = dyn Fn(&[String], String, Option<String>) -> Diagnostic + 'a;

/// [`At`] for stage `name`.
pub(super) fn under_stage<'a>(
    loc: &'a Locator<'_>,
    name: &'a str,
) -> impl Fn(&[String], String, Option<String>) -> Diagnostic + 'a {
    move |path, message, help| {
        let mut p = vec!["stages", name];
        p.extend(path.iter().map(String::as_str));
        let d = loc.at(&p, message);
        match help {
            Some(h) => d.help(h),
            None => d,
        }
    }
}

/// One concrete stage of a declared one: its variant, its params, and the
/// stage it needs through `foreach`.
pub(super) type Instance = (Option<String>, Value, Option<String>);

/// The variants a stage names under `variants`, checked.
pub(super) fn named_variants(
    name: &str,
    rs: &RawStage,
    at: &At,
) -> Result<Option<Vec<grid::Pending>>> {
    Ok(match &rs.variants {
        None => None,
        Some(vs) if vs.0.is_empty() => {
            return Err(at(
                &["variants".into()],
                format!("stage `{name}` declares an empty `variants`"),
                None,
            )
            .into())
        }
        Some(vs) => {
            let mut out = Vec::new();
            for (vname, over) in &vs.0 {
                let path = vec!["variants".to_string(), vname.clone()];
                check_name(vname)
                    .map_err(|m| at(&path, format!("variant name `{vname}` {m}"), None))?;
                out.push(grid::Pending {
                    name: vname.clone(),
                    path,
                    over: over.clone().map(|p| p.0).unwrap_or_default(),
                });
            }
            Some(out)
        }
    })
}

/// One variant's overrides merged into the stage's params and checked
/// against its kind.
pub(super) fn merge_variant(
    name: &str,
    rs: &RawStage,
    params: &Value,
    v: &grid::Pending,
    at: &At<'_>,
) -> Result<Value> {
    let vname = &v.name;
    let mut merged = params.clone();
    // A command's params are its own: `seeds` gives it `${params.seed}`.
    if let (Kind::Cmd, Some(_), Value::Object(m)) = (rs.kind, &rs.seeds, &mut merged) {
        m.entry("seed").or_insert(Value::Null);
    }
    merge_override(&mut merged, &v.over, "", rs.kind.optional_params()).map_err(|(key, known)| {
        let mut p = v.path.clone();
        let in_matrix = p.first().is_some_and(|f| f == "matrix");
        if in_matrix {
            // The matrix key as written, dotted or not.
            if let Some(k) = rs.matrix.iter().flat_map(|m| &m.0).map(|(k, _)| k).find(|k| key == **k || key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}."))) {
                p.push(k.clone());
            }
        } else {
            p.extend(key.split('.').map(str::to_string));
        }
        if key == "seed" && rs.seeds.is_some() {
            return at(
                &["seeds".into()],
                format!("stage `{name}` has `seeds`, but kind {} has no `seed` parameter", rs.kind.name()),
                Some("`seeds` replicates kinds that take a seed: train, preprocess and cmd".into()),
            );
        }
        let message = if in_matrix {
            format!("the matrix of stage `{name}` varies `{key}`, which is not a parameter of the stage")
        } else {
            format!("variant `{vname}` of stage `{name}` overrides `{key}`, which is not a parameter of the stage")
        };
        at(
            &p,
            message,
            Some(match suggest(&key, known.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => {
                    format!("declare `{key}` under the stage's params to give it a default")
                }
                None => format!("known parameters here: {}", known.join(", ")),
            }),
        )
    })?;
    let merged = rs.kind.normalize_params(merged).map_err(|m| {
        at(
            &v.path,
            format!("variant `{vname}` of stage `{name}`: invalid params: {m}"),
            None,
        )
    })?;
    Ok(merged)
}

/// Refuses two variants whose parameters are equal as the stage's kind
/// reads them: grid points (`[-0.0, 0.0, 0]`, `[1, 1.0]`), or declared
/// variants of a built-in kind (after `-S`, or with a parameter at its
/// default): one configuration would be trained, and compared with
/// itself, under several names.
pub(super) fn check_distinct<'k>(
    name: &str,
    rs: &RawStage,
    variants: &'k [(String, Value)],
    axes: impl Iterator<Item = &'k str>,
    loc: &Locator<'_>,
) -> Result<()> {
    let axes: Vec<&str> = axes.collect();
    // The declared variant a generated name starts with (`no-aug` of
    // `no-aug+lr=0.01~seed1`).
    let declared = |n: &'k str| -> Option<&'k str> {
        rs.variants.as_ref()?;
        replicate_of(n).0.split('+').next()
    };
    let mut seen: HashMap<String, &'k str> = HashMap::with_capacity(variants.len());
    for (vname, params) in variants {
        let mut key = String::new();
        canonical_text(params, &mut key);
        let Some(first) = seen.insert(key, vname) else {
            continue;
        };
        if let (Some(a), Some(b)) = (declared(first), declared(vname)) {
            if a != b {
                if rs.kind == Kind::Cmd {
                    // A command may read its variant's name.
                    continue;
                }
                return Err(loc
                    .at(
                        &["stages", name, "variants", b],
                        format!("stage `{name}`: variants `{a}` and `{b}` have the same parameters"),
                    )
                    .help(format!(
                        "make `{b}` differ from `{a}` or remove one; a `-S` override of the stage's params can make them equal too"
                    ))
                    .into());
            }
        }
        // The axes whose value names differ between the two points.
        let parts = |n: &'k str| -> Vec<(&'k str, &'k str)> {
            replicate_of(n)
                .0
                .split('+')
                .filter_map(|p| p.split_once('='))
                .collect()
        };
        let (a, b) = (parts(first), parts(vname));
        let differ: Vec<(&str, &str, &str)> = a
            .iter()
            .filter_map(|(k, x)| {
                b.iter()
                    .find(|(kb, y)| kb == k && y != x)
                    .map(|(_, y)| (*k, *x, *y))
            })
            .collect();
        let (path, message) = match differ[..] {
            [(axis, x, y)] if axes.contains(&axis) => (
                vec!["stages", name, "matrix", axis],
                format!(
                    "stage `{name}`: matrix `{axis}` lists `{x}` and `{y}`, which are the same value for the stage"
                ),
            ),
            _ => (
                vec!["stages", name, "matrix"],
                format!(
                    "stage `{name}`: variants `{first}` and `{vname}` have the same parameters"
                ),
            ),
        };
        return Err(loc.at(&path, message).help("list each value once").into());
    }
    Ok(())
}

/// A value's text with numbers compared by value: `0`, `0.0` and `-0.0`
/// are one number, and so are `1` and `1.0`.
pub(super) fn canonical_text(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if x.fract() == 0.0 && x.abs() < 9.2e18 {
                    let _ = write!(out, "{}", x as i64);
                } else {
                    let _ = write!(out, "{x:?}");
                }
            }
        }
        Value::Array(a) => {
            out.push('[');
            for x in a {
                canonical_text(x, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (k, x) in m {
                let _ = write!(out, "{k:?}:");
                canonical_text(x, out);
                out.push(',');
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// `{"plateau.factor": 0.5}` as `{"plateau": {"factor": 0.5}}`.
pub(super) fn nest_dotted(given: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in given {
        let mut parts: Vec<&str> = k.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut slot = &mut out;
        for p in parts {
            let next = slot
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            match next {
                Value::Object(m) => slot = m,
                _ => return out,
            }
        }
        let v = match v {
            Value::Object(m) => Value::Object(nest_dotted(m)),
            other => other.clone(),
        };
        slot.insert(last.to_string(), v);
    }
    out
}

/// Deep-merges a variant's overrides into the stage's params; every key of
/// the override must already exist. On error: the dotted key and the keys
/// known at that level.
pub(super) fn merge_override(
    base: &mut Value,
    over: &Map<String, Value>,
    prefix: &str,
    optional: &[&str],
) -> std::result::Result<(), (String, Vec<String>)> {
    let Value::Object(map) = base else {
        return Err((prefix.trim_end_matches('.').to_string(), Vec::new()));
    };
    for (k, v) in over {
        let key = format!("{prefix}{k}");
        match (map.get_mut(k), v) {
            // A parameter the kind leaves out of the canonical form at its
            // default (`optimizer`, `ema`, ...): set it.
            (None, _) if prefix.is_empty() && optional.contains(&k.as_str()) => {
                map.insert(k.clone(), v.clone());
            }
            (None, _) => {
                let mut known: Vec<String> = map.keys().cloned().collect();
                if prefix.is_empty() {
                    known.extend(optional.iter().map(|s| s.to_string()));
                    known.sort();
                }
                return Err((key, known));
            }
            // A one-key mapping is a choice (`schedule: {plateau: ...}`):
            // another choice replaces it; the kind's types check the result.
            (Some(Value::Object(old)), Value::Object(sub))
                if old.len() == 1
                    && sub.len() == 1
                    && !old.contains_key(sub.keys().next().map_or("", String::as_str)) =>
            {
                map.insert(k.clone(), v.clone());
            }
            (Some(slot @ Value::Object(_)), Value::Object(sub)) => {
                merge_override(slot, sub, &format!("{key}."), &[])?
            }
            (Some(slot), v) => *slot = v.clone(),
        }
    }
    Ok(())
}
