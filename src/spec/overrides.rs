//! `-S STAGE.KEY=VALUE`: a parameter set for one command without editing
//! the pipeline file (as `dvc exp run -S` and Hydra's overrides do). It is
//! applied to the file as read, before variants are expanded, so it is
//! checked, substituted into commands and fingerprinted like a value
//! written in the file.
//!
//! `train.lr=0.01` sets the stage's `params` (variants that set `lr`
//! themselves keep theirs); `train@fast.lr=0.01` sets the variant's.
//! Dotted keys set nested parameters; the value is read as YAML.

use super::load::{ParamMap, RawPipeline};
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
    let (left, value) = text.split_once('=').ok_or_else(|| "no `=`".to_string())?;
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
    // The stage whose name starts the key, the longest such (names may
    // hold dots: `lr-0.01`).
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
            format!(
                "no stage of the pipeline starts `{left}` (stages: {})",
                names.join(", ")
            )
        })?;
    let stage = &mut raw
        .stages
        .0
        .iter_mut()
        .find(|(n, _)| *n == base)
        .ok_or_else(|| format!("no stage `{base}`"))?
        .1;
    let (params, path) = match rest.strip_prefix('@') {
        None => {
            let params = stage.params.get_or_insert_with(|| ParamMap(Map::new()));
            (&mut params.0, &rest[1..])
        }
        Some(after) => {
            let variants = stage
                .variants
                .as_mut()
                .ok_or_else(|| format!("stage `{base}` declares no variants"))?;
            let name = variants
                .0
                .iter()
                .map(|(v, _)| v.clone())
                .filter(|v| after.strip_prefix(v.as_str()).is_some_and(|r| r.starts_with('.')))
                .max_by_key(|v| v.len())
                .ok_or_else(|| {
                    let names: Vec<&str> = variants.0.iter().map(|(v, _)| v.as_str()).collect();
                    format!(
                        "stage `{base}` declares no variant that starts `{after}` (its variants: {})",
                        names.join(", ")
                    )
                })?;
            let slot = &mut variants
                .0
                .iter_mut()
                .find(|(v, _)| *v == name)
                .ok_or_else(|| format!("no variant `{name}`"))?
                .1;
            let params = slot.get_or_insert_with(|| ParamMap(Map::new()));
            (&mut params.0, &after[name.len() + 1..])
        }
    };
    set(params, path, value)
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
