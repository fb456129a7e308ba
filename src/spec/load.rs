//! Reads pipeline.yaml into raw serde types, with located errors.

use crate::error::{Diagnostic, Error, Result};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// A place for YAML anchors (`&name`) that `<<: *name` merges into
    /// params and variants; not read otherwise.
    #[serde(default)]
    pub anchors: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub settings: RawSettings,
    pub stages: OrderedMap<RawStage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    pub cache: Option<String>,
    pub outputs: Option<String>,
    pub jobs: Option<usize>,
    pub device: Option<String>,
    pub executor: Option<String>,
    pub slurm: Option<RawSlurm>,
    /// Default resources per kind (`train: {cpus: 2, time: 2h}`): what a
    /// stage of that kind asks for where its own `resources` say nothing.
    pub resources: Option<std::collections::BTreeMap<stages::Kind, super::resources::RawResources>>,
    /// Where `push` and `pull` share results: name -> a directory, or
    /// `{url: s3://bucket/prefix, endpoint, region}`. Read as YAML and
    /// checked when resolved, so that each form's error names its key.
    pub remotes: Option<OrderedMap<serde_yaml::Value>>,
}

/// `settings.slurm`: where and how stages are submitted.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSlurm {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Further sbatch flags, passed verbatim (`--qos=normal`).
    pub extra: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub kind: stages::Kind,
    #[serde(default)]
    pub desc: Option<String>,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub deps: Vec<String>,
    #[serde(default)]
    pub outs: Vec<String>,
    /// A `cmd` stage's predictions of the test set (one of its outputs),
    /// which `evaluate` measures like a trained model.
    #[serde(default)]
    pub predictions: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub params: Option<ParamMap>,
    #[serde(default)]
    pub variants: Option<OrderedMap<Option<ParamMap>>>,
    #[serde(default)]
    pub foreach: Option<String>,
    /// Every variant replicated once per seed (`train@main~seed1`).
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// A grid: one variant per combination of these parameter values.
    #[serde(default)]
    pub matrix: Option<OrderedMap<RawAxis>>,
    /// A hyperparameter search: one trial per sampled configuration.
    #[serde(default)]
    pub search: Option<RawSearch>,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub resources: Option<super::resources::RawResources>,
    #[serde(default)]
    pub device: Option<String>,
    /// This stage's sbatch settings: `partition` and `account` replace
    /// settings.slurm's, `extra` flags are added after its.
    #[serde(default)]
    pub slurm: Option<RawSlurm>,
    /// `-S` overrides of variants made by rule (a grid point, a seed
    /// replicate), which have no place in the file: (variant, dotted key,
    /// value).
    #[serde(skip)]
    pub point_overrides: Vec<(String, String, serde_json::Value)>,
}

/// `search:` on a train stage, as written; checked in `search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// Each searched parameter (dotted for nested ones) and its range.
    pub space: OrderedMap<RawDim>,
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub trials: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub early_stop: Option<RawEarlyStop>,
}

/// One dimension of a search space: `{loguniform: [a, b]}`, `{choice: ...}`.
#[derive(Debug, Clone)]
pub struct RawDim(pub Value);

impl<'de> Deserialize<'de> for RawDim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(RawDim(ParamValue::deserialize(d)?.0))
    }
}

/// Asynchronous successive halving: the epochs at which trials are
/// compared, and the fraction that goes on from each.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEarlyStop {
    pub rungs: Vec<usize>,
    pub keep: f64,
}

/// A mapping that keeps declaration order and refuses duplicate keys (YAML
/// parsers differ on duplicates; a silent "last one wins" hides mistakes).
#[derive(Debug)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                // Names seen, for the duplicate check (a scan of `out` per
                // key would make a pipeline of thousands load quadratically).
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!(
                            "duplicate name `{key}`: each name may appear once"
                        )));
                    }
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// A mapping of parameters as JSON values. Built by hand rather than with
/// `serde_json::Value`'s own visitor, which turns `.nan` and `.inf` into
/// `null` silently; here they are refused at their line.
#[derive(Debug, Clone, Default)]
pub struct ParamMap(pub Map<String, Value>);

pub struct ParamValue(pub Value);

/// One axis of a `matrix`: a list of values (each names itself), or a
/// mapping from names to values (for values that cannot be names).
#[derive(Debug, Clone)]
pub enum RawAxis {
    Values(Vec<Value>),
    Named(Vec<(String, Value)>),
}

impl<'de> Deserialize<'de> for RawAxis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAxis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of values (`lr: [0.01, 0.001]`) or a mapping of names to values",
                )
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<RawAxis, A::Error> {
                let mut out = Vec::new();
                while let Some(ParamValue(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(RawAxis::Values(out))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<RawAxis, A::Error> {
                let named: OrderedMap<ParamValue> =
                    Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawAxis::Named(
                    named.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ParamMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match ParamValue::deserialize(d)?.0 {
            Value::Object(m) => Ok(ParamMap(m)),
            Value::Null => Ok(ParamMap::default()),
            other => Err(de::Error::custom(format!(
                "expected a mapping of parameters, found {other}"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a parameter value")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(Value::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(n.into()))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> std::result::Result<ParamValue, E> {
                serde_json::Number::from_f64(x)
                    .map(|n| ParamValue(Value::Number(n)))
                    .ok_or_else(|| {
                        E::custom(format!(
                            "`{x}` is not a finite number; parameters must be finite (write it as a string if it is not a number)"
                        ))
                    })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(Value::String(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(Value::String(s)))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue(Value::Null))
            }
            fn visit_some<D2: Deserializer<'de>>(
                self,
                d: D2,
            ) -> std::result::Result<ParamValue, D2::Error> {
                ParamValue::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<ParamValue, A::Error> {
                let mut out = Vec::new();
                while let Some(ParamValue(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(ParamValue(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<ParamValue, A::Error> {
                let mut out = Map::new();
                // `<<: *anchor` (or a list of them): their keys, where this
                // mapping does not set them itself.
                let mut merged: Vec<Map<String, Value>> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let ParamValue(v) = map.next_value()?;
                    if key == "<<" {
                        let bad = || {
                            de::Error::custom(
                                "`<<` merges a mapping (`<<: *name`) or a list of them (`<<: [*a, *b]`)",
                            )
                        };
                        match v {
                            Value::Object(m) => merged.push(m),
                            Value::Array(list) => {
                                for item in list {
                                    match item {
                                        Value::Object(m) => merged.push(m),
                                        _ => return Err(bad()),
                                    }
                                }
                            }
                            _ => return Err(bad()),
                        }
                        continue;
                    }
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!(
                            "duplicate key `{key}`: each key may appear once"
                        )));
                    }
                    out.insert(key, v);
                }
                // Earlier merged mappings win over later ones, as in YAML 1.1.
                for m in merged {
                    for (k, v) in m {
                        out.entry(k).or_insert(v);
                    }
                }
                Ok(ParamValue(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads and parses the pipeline file at `path`, returning its text too
/// (later phases point into it).
pub fn load(path: &Path) -> Result<(RawPipeline, String)> {
    if path.is_dir() {
        return Err(Diagnostic::new(path, "is a directory, not a pipeline file")
            .help(format!(
                "pass the file itself, e.g. --file {}",
                path.join("pipeline.yaml").display()
            ))
            .into());
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Diagnostic::new(path, "pipeline file not found")
                .help("run fmnist-pipe in the project directory, or pass --file PATH")
                .into())
        }
        Err(e) => return Err(Error::io("read the pipeline file", path, e)),
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            let mut d = Diagnostic::new(path, "the file is not valid UTF-8")
                .help("save pipeline.yaml as UTF-8 text");
            d.line = Some(line as u32);
            d.column = Some(col as u32);
            return Err(d.into());
        }
    };
    parse(path, &text).map(|p| (p, text))
}

fn parse(path: &Path, text: &str) -> Result<RawPipeline> {
    // An empty file (or one with only comments) parses as null; say so plainly.
    if matches!(
        serde_yaml::from_str::<serde_yaml::Value>(text),
        Ok(serde_yaml::Value::Null)
    ) {
        return Err(Diagnostic::new(path, "the pipeline file is empty")
            .help("declare stages under a top-level `stages:` mapping (see README.md)")
            .into());
    }
    serde_yaml::from_str::<RawPipeline>(text).map_err(|e| {
        let mut message = strip_location(&e.to_string());
        let mut at = e.location().map(|l| (l.line(), l.column()));
        // serde_yaml points at the mapping: name both places of a duplicate.
        if let (Some(key), Some((line, col))) = (duplicate_of(&message), at) {
            match duplicate_lines(text, line, col, &key)[..] {
                [first, second, ..] if first != second => {
                    message = message.replacen(
                        &format!("`{key}`:"),
                        &format!("`{key}` (lines {first} and {second}):"),
                        1,
                    );
                    at = Some((second, col));
                }
                [only] => {
                    message = message.replacen(
                        &format!("`{key}`:"),
                        &format!("`{key}` (twice on line {only}):"),
                        1,
                    );
                }
                _ => {}
            }
        }
        let mut d = Diagnostic::new(path, message.clone());
        if let Some((line, col)) = at {
            d = d.at(text, line, col);
        }
        if message.contains("unknown variant") && message.contains("expected one of `cmd`") {
            d = d.help(if message.starts_with("settings.resources") {
                "settings.resources is keyed by kind: one of the kinds listed above"
            } else {
                "`kind` must be one of the kinds listed above"
            });
        } else if message.contains("unknown field `<<`") {
            d = d.help("`<<` merges work inside `params` and variant overrides; write this mapping's fields out");
        } else if message.contains("missing field `stages`") {
            d = d.help("declare stages under a top-level `stages:` mapping");
        }
        Error::from(d)
    })
}

/// The key a "duplicate key/name/field `k`" message is about.
fn duplicate_of(message: &str) -> Option<String> {
    let rest = ["duplicate key `", "duplicate name `", "duplicate field `"]
        .iter()
        .find_map(|p| message.split_once(p).map(|(_, r)| r))?;
    rest.split_once('`').map(|(k, _)| k.to_string())
}

/// The lines of `key` in the block mapping whose first key is at
/// (`line`, `col`); a flow mapping (`{...}`) gives its one line.
fn duplicate_lines(text: &str, line: usize, col: usize, key: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(first) = lines.get(line.wrapping_sub(1)) else {
        return Vec::new();
    };
    if first
        .get(col.saturating_sub(1)..)
        .is_some_and(|r| r.starts_with('{'))
    {
        return vec![line];
    }
    let indent = col.saturating_sub(1);
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(line - 1) {
        let body = l.trim_start();
        let here = l.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if here < indent {
            break;
        }
        let k = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if here == indent
            && k == key
            && body[k.len()..]
                .trim_start_matches(['"', '\''])
                .starts_with(':')
        {
            found.push(i + 1);
        }
    }
    found
}

/// serde_yaml appends " at line L column C"; we print the location ourselves.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> Diagnostic {
        match parse(Path::new("p.yaml"), text) {
            Err(Error::Pipeline(d)) => *d,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("parsed"),
        }
    }

    #[test]
    fn parses_minimal() {
        let p = parse(
            Path::new("p.yaml"),
            "stages:\n  a:\n    kind: cmd\n    cmd: true\n",
        )
        .unwrap();
        assert_eq!(p.stages.0.len(), 1);
        assert_eq!(p.stages.0[0].0, "a");
    }

    #[test]
    fn unknown_field_is_located() {
        let d = err("stages:\n  a:\n    kind: cmd\n    cmdd: true\n");
        assert!(d.message.contains("unknown field `cmdd`"), "{}", d.message);
        assert_eq!(d.line, Some(4));
    }

    #[test]
    fn unknown_kind_is_located() {
        let d = err("stages:\n  a:\n    kind: shell\n");
        assert!(
            d.message.contains("unknown variant `shell`"),
            "{}",
            d.message
        );
        assert_eq!(d.line, Some(3));
    }

    #[test]
    fn duplicate_stage_is_refused() {
        let d = err("stages:\n  a:\n    kind: cmd\n  a:\n    kind: cmd\n");
        assert!(d.message.contains("duplicate name `a`"), "{}", d.message);
        assert!(d.line.is_some());
    }

    #[test]
    fn syntax_error_is_located() {
        let d = err("stages:\n  a: [1, 2\n");
        assert!(d.line.is_some(), "{d}");
    }

    #[test]
    fn non_finite_params_are_refused_at_their_line() {
        for v in [".nan", ".inf", "-.inf", ".NaN"] {
            let d = err(&format!(
                "stages:\n  a:\n    kind: cmd\n    cmd: x\n    params:\n      lr: {v}\n"
            ));
            assert!(
                d.message.contains("not a finite number"),
                "{v}: {}",
                d.message
            );
            assert_eq!(d.line, Some(6), "{v}");
        }
        let p = parse(
            Path::new("p.yaml"),
            "stages:\n  a:\n    kind: cmd\n    cmd: x\n    params: {lr: 0.5, n: 3, s: nan, l: [1, {b: null}]}\n",
        )
        .unwrap();
        let params = &p.stages.0[0].1.params.as_ref().unwrap().0;
        assert_eq!(
            Value::Object(params.clone()),
            serde_json::json!({"lr": 0.5, "n": 3, "s": "nan", "l": [1, {"b": null}]})
        );
    }

    #[test]
    fn empty_file() {
        assert!(err("").message.contains("empty"));
        assert!(err("# only a comment\n").message.contains("empty"));
    }
}
