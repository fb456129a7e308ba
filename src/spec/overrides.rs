//! `-S STAGE.KEY=VALUE`: a parameter set for one command without editing
//! the pipeline file (as `dvc exp run -S` and Hydra's overrides do). It is
//! applied to the file as read, before variants are expanded, so it is
//! checked, substituted into commands and fingerprinted like a value
//! written in the file.
//!
//! `train.lr=0.01` sets the stage's `params` (refused when every variant
//! sets `lr` itself: it would change nothing); `train@fast.lr=0.01` sets
//! a declared variant's, `train@lr=0.01+dropout=0.epochs=2` one grid
//! point's (or a seed replicate's, `train@main~seed1.epochs=2`), and
//! `evaluate@fast.tta=[hflip]` one instance of a `foreach` stage.
//! Dotted keys set nested parameters; the value is read as YAML.

use super::load::{ParamMap, RawPipeline, RawStage};
use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Applies every override to `raw`, in order.
pub fn apply(raw: &mut RawPipeline, sets: &[String]) -> Result<()> {
    for text in sets {
        apply_one(raw, text).map_err(|why| {
            Error::Usage(format!(
                "-S {text}: {why}\n  help: write -S STAGE.KEY=VALUE (train.lr=0.01) or -S STAGE@VARIANT.KEY=VALUE"
            ))
        })?;
    }
    Ok(())
}

fn apply_one(raw: &mut RawPipeline, text: &str) -> std::result::Result<(), String> {
    // The key ends at the first `=` after which it names a stage, a
    // variant and a parameter: a grid point's name holds `=` itself
    // (`train@lr=0.01.epochs=2`), and a value may too.
    // Failing that, the error of the reading that got furthest (a stage,
    // then a variant), the longest key of those.
    let mut best: Option<(Depth, String)> = None;
    for (at, _) in text.match_indices('=') {
        match target(raw, &text[..at]) {
            Ok(t) => return apply_at(raw, t, &text[at + 1..]),
            Err((depth, e)) => {
                if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                    best = Some((depth, e));
                }
            }
        }
    }
    Err(best.map_or_else(|| "no `=`".to_string(), |(_, e)| e))
}

/// How far a reading of the key got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Depth {
    NoStage,
    Stage,
    Variant,
}

/// Where an override goes.
struct Target {
    stage: String,
    slot: Slot,
    /// The dotted parameter key.
    key: String,
}

enum Slot {
    /// The stage's `params`.
    Params,
    /// A variant declared under `variants`.
    Declared(String),
    /// A variant made by rule: a grid point, a seed replicate.
    Made(String),
}

/// The stage whose name starts `left`, the longest such (names may hold
/// dots: `lr-0.01`), with the rest of `left` after its name.
fn stage_of<'r, 'l>(
    raw: &'r RawPipeline,
    left: &'l str,
) -> std::result::Result<(String, &'l str, &'r crate::spec::RawStage), (Depth, String)> {
    let (base, rest) = raw
        .stages
        .0
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            left.strip_prefix(n)
                .is_some_and(|r| r.starts_with('.') || r.starts_with('@'))
        })
        .max_by_key(|n| n.len())
        .map(|n| (n.to_string(), &left[n.len()..]))
        .ok_or_else(|| {
            let names: Vec<&str> = raw.stages.0.iter().map(|(n, _)| n.as_str()).collect();
            let e = format!(
                "no stage of the pipeline starts `{left}` (stages: {})",
                names.join(", ")
            );
            (Depth::NoStage, e)
        })?;
    let stage = &raw
        .stages
        .0
        .iter()
        .find(|(n, _)| *n == base)
        .ok_or_else(|| (Depth::NoStage, format!("no stage `{base}`")))?
        .1;
    Ok((base, rest, stage))
}

/// The names of a stage's variants made by rule; a `foreach` stage's
/// instances are named by its target's variants.
fn made_instances(raw: &RawPipeline, base: &str, stage: &crate::spec::RawStage) -> Vec<String> {
    match &stage.foreach {
        Some(t) => raw
            .stages
            .0
            .iter()
            .find(|(n, _)| n == t)
            .map(|(n, ts)| {
                let declared = ts
                    .variants
                    .iter()
                    .flat_map(|vs| vs.0.iter().map(|(v, _)| v.clone()));
                match ts.matrix.is_some() || ts.seeds.is_some() {
                    true => made_names(n, ts),
                    false => declared.collect(),
                }
            })
            .unwrap_or_default(),
        None => made_names(base, stage),
    }
}

/// What `left` (the text before `=`) addresses, or why it addresses
/// nothing.
fn target(raw: &RawPipeline, left: &str) -> std::result::Result<Target, (Depth, String)> {
    let (base, rest, stage) = stage_of(raw, left)?;
    let key = |k: &str, depth| -> std::result::Result<String, (Depth, String)> {
        // No `=` in a key: a reading that puts one there took part of
        // the value for the key, and loses to any other.
        if k.contains('=') {
            return Err((Depth::NoStage, format!("`{k}` is not a parameter key")));
        }
        match k.split('.').any(str::is_empty) {
            true => Err((depth, format!("`{k}` is not a parameter key"))),
            false => Ok(k.to_string()),
        }
    };
    let Some(after) = rest.strip_prefix('@') else {
        let key = key(&rest[1..], Depth::Variant)?;
        if let Some(why) = shadowed(&base, stage, &key) {
            return Err((Depth::Variant, why));
        }
        return Ok(Target {
            stage: base,
            slot: Slot::Params,
            key,
        });
    };
    // The longest name that the key starts with, then `.`.
    let longest = |names: &mut dyn Iterator<Item = String>| {
        names
            .filter(|v| {
                after
                    .strip_prefix(v.as_str())
                    .is_some_and(|r| r.starts_with('.'))
            })
            .max_by_key(|v| v.len())
    };
    let declared: Vec<String> = stage
        .variants
        .as_ref()
        .map(|vs| vs.0.iter().map(|(v, _)| v.clone()).collect())
        .unwrap_or_default();
    let made = made_instances(raw, &base, stage);
    if let Some(name) = longest(&mut declared.iter().cloned()) {
        let key = key(&after[name.len() + 1..], Depth::Variant)?;
        return Ok(Target {
            stage: base,
            slot: Slot::Declared(name),
            key,
        });
    }
    if let Some(name) = longest(&mut made.iter().cloned()) {
        let key = key(&after[name.len() + 1..], Depth::Variant)?;
        // A grid point is named by its values: changing one would leave a
        // name that says what was not used.
        if let Some((axis, _)) = stage.matrix.as_ref().and_then(|m| {
            m.0.iter()
                .find(|(a, _)| key == *a || key.starts_with(&format!("{a}.")))
        }) {
            return Err((Depth::Variant, format!(
                "`{base}@{name}` is named by its value of `{axis}`, which the matrix varies; set another parameter, or change the matrix"
            )));
        }
        return Ok(Target {
            stage: base,
            slot: Slot::Made(name),
            key,
        });
    }
    let all: Vec<String> = declared.into_iter().chain(made).collect();
    Err((
        Depth::Stage,
        if all.is_empty() {
            format!("stage `{base}` declares no variants")
        } else {
            let shown: Vec<&str> = all.iter().take(6).map(String::as_str).collect();
            let more = match all.len() {
                n if n > 6 => format!(" and {} more", n - 6),
                _ => String::new(),
            };
            format!(
                "stage `{base}` declares no variant that starts `{after}` (its variants: {}{more})",
                shown.join(", ")
            )
        },
    ))
}

/// The names of a stage's variants made by rule (grid points crossed with
/// the declared variants, seed replicates), as resolving names them.
fn made_names(base: &str, stage: &RawStage) -> Vec<String> {
    if stage.matrix.is_none() && stage.seeds.is_none() {
        return Vec::new();
    }
    let at: &super::variants::At<'_> = &|_, message, _| crate::error::Diagnostic::new("", message);
    let named = super::variants::named_variants(base, stage, at)
        .ok()
        .flatten();
    let grid = stage
        .matrix
        .as_ref()
        .and_then(|m| super::grid::points(&m.0).ok());
    let variants = super::grid::combine(named, grid).ok().flatten();
    let variants = match (&stage.seeds, variants) {
        (Some(seeds), Some(v)) => super::grid::replicate(&v, seeds).ok(),
        (_, v) => v,
    };
    variants
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// Why setting `key` in the params of stage `base` would change nothing:
/// every variant sets it itself (the matrix, the search, or each declared
/// variant).
fn shadowed(base: &str, stage: &RawStage, key: &str) -> Option<String> {
    if stage
        .matrix
        .as_ref()
        .is_some_and(|m| m.0.iter().any(|(a, _)| a == key))
    {
        return Some(format!(
            "the matrix of `{base}` varies `{key}`, so every grid point sets it and this would change nothing; change the matrix's values instead"
        ));
    }
    if stage
        .search
        .as_ref()
        .is_some_and(|s| s.space.0.iter().any(|(a, _)| a == key))
    {
        return Some(format!(
            "the search of `{base}` varies `{key}`, so every trial sets it and this would change nothing"
        ));
    }
    let variants = stage.variants.as_ref()?;
    let sets = |over: &Option<ParamMap>| {
        let mut at = over.as_ref().map(|p| &p.0);
        let keys: Vec<&str> = key.split('.').collect();
        for (i, k) in keys.iter().enumerate() {
            match at.and_then(|m| m.get(*k)) {
                Some(Value::Object(m)) if i + 1 < keys.len() => at = Some(m),
                Some(_) => return true,
                None => return false,
            }
        }
        false
    };
    (!variants.0.is_empty() && variants.0.iter().all(|(_, over)| sets(over))).then(|| {
        format!("every variant of `{base}` sets `{key}` itself, so this would change nothing; set one variant's instead: -S {base}@VARIANT.{key}=VALUE")
    })
}

/// Applies `value` (as YAML text) at `t`.
fn apply_at(raw: &mut RawPipeline, t: Target, value: &str) -> std::result::Result<(), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("no value after `=`".into());
    }
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(value).map_err(|e| format!("the value is not YAML: {e}"))?;
    // JSON has no infinity or NaN: they would become null.
    if let Some(x) = non_finite(&yaml) {
        return Err(format!(
            "`{x}` is not a finite number; a parameter is a finite number, as in the pipeline file"
        ));
    }
    let value: Value =
        serde_json::to_value(yaml).map_err(|e| format!("the value cannot be a parameter: {e}"))?;
    let stage = &mut raw
        .stages
        .0
        .iter_mut()
        .find(|(n, _)| *n == t.stage)
        .ok_or_else(|| format!("no stage `{}`", t.stage))?
        .1;
    let params = match t.slot {
        Slot::Params => stage.params.get_or_insert_with(|| ParamMap(Map::new())),
        Slot::Declared(name) => stage
            .variants
            .as_mut()
            .and_then(|vs| vs.0.iter_mut().find(|(v, _)| *v == name))
            .ok_or_else(|| format!("no variant `{name}`"))?
            .1
            .get_or_insert_with(|| ParamMap(Map::new())),
        Slot::Made(name) => {
            stage.point_overrides.push((name, t.key, value));
            return Ok(());
        }
    };
    set(&mut params.0, &t.key, value)
}

/// The first number in `v` that is infinite or NaN, as YAML writes it.
fn non_finite(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Number(n) => {
            n.as_f64().filter(|x| !x.is_finite()).map(|_| n.to_string())
        }
        serde_yaml::Value::Sequence(s) => s.iter().find_map(non_finite),
        serde_yaml::Value::Mapping(m) => m.values().find_map(non_finite),
        serde_yaml::Value::Tagged(t) => non_finite(&t.value),
        _ => None,
    }
}

/// Sets the dotted `path` in `params`, creating mappings on the way.
fn set(
    params: &mut Map<String, Value>,
    path: &str,
    value: Value,
) -> std::result::Result<(), String> {
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("`{path}` is not a parameter key"));
    }
    let mut at = params;
    for (i, k) in keys.iter().enumerate() {
        if i + 1 == keys.len() {
            at.insert(k.to_string(), value);
            return Ok(());
        }
        let next = at
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            // A scalar replaced by a mapping: the kind's check says if that fits.
            *next = Value::Object(Map::new());
        }
        at = next
            .as_object_mut()
            .ok_or_else(|| format!("`{k}` is not a mapping"))?;
    }
    Ok(())
}
