//! `search:` on a train stage: the space, checked; and its trials, each a
//! variant named `trial-07` whose parameters the sampler drew.
//!
//! The samplers are prefix-stable: trial k's values depend on the seed
//! and k only, so raising `trials` keeps every trial drawn before.

use super::grid::{value_name, GridError, Pending};
use super::load::{RawDim, RawSearch};
use serde_json::{Map, Value};
use stages::contract::check_name;

/// One searched parameter's range.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    /// Integers from the first to the second, both included.
    Int(i64, i64),
    /// Named values (a list's values name themselves).
    Choice(Vec<(String, Value)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    Grid,
    Random,
    Sobol,
}

impl Sampler {
    pub fn name(self) -> &'static str {
        match self {
            Sampler::Grid => "grid",
            Sampler::Random => "random",
            Sampler::Sobol => "sobol",
        }
    }
}

/// A checked search.
#[derive(Debug, Clone)]
pub struct Search {
    pub space: Vec<(String, Dist)>,
    pub sampler: Sampler,
    pub trials: usize,
    pub seed: u64,
    /// Epochs at which trials are compared (increasing, below `epochs`);
    /// empty without early stopping.
    pub rungs: Vec<usize>,
    pub keep: f64,
}

fn error(path: &[&str], message: String, help: Option<&str>) -> GridError {
    GridError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message,
        help: help.map(str::to_string),
    }
}

/// Sobol' direction numbers (Joe and Kuo, new-joe-kuo-6.21201) for the
/// dimensions after the first: (degree s, coefficients a, initial m).
const SOBOL: &[(u32, u32, &[u32])] = &[
    (1, 0, &[1]),
    (2, 1, &[1, 3]),
    (3, 1, &[1, 3, 1]),
    (3, 2, &[1, 1, 1]),
    (4, 1, &[1, 1, 3, 3]),
    (4, 4, &[1, 3, 5, 13]),
    (5, 2, &[1, 1, 5, 5, 17]),
    (5, 4, &[1, 1, 5, 5, 5]),
    (5, 7, &[1, 1, 7, 11, 19]),
    (5, 11, &[1, 1, 5, 1, 1]),
    (5, 13, &[1, 1, 1, 3, 11]),
    (5, 14, &[1, 3, 5, 5, 31]),
];

/// The most dimensions the Sobol' sampler has direction numbers for.
pub const SOBOL_DIMS: usize = SOBOL.len() + 1;

/// Checks `search:` of a stage that trains for `epochs` epochs.
pub fn parse(raw: &RawSearch, epochs: usize) -> Result<Search, GridError> {
    let sampler = sampler(raw)?;
    let space = space(raw)?;
    if sampler == Sampler::Sobol && space.len() > SOBOL_DIMS {
        return Err(error(
            &["search", "sampler"],
            format!(
                "the sobol sampler covers at most {SOBOL_DIMS} parameters; this space has {}",
                space.len()
            ),
            Some("use `sampler: random`, or search fewer parameters"),
        ));
    }
    let trials = trial_count(raw, sampler, &space)?;
    let (rungs, keep) = early_stop(raw, epochs, trials)?;
    Ok(Search {
        space,
        sampler,
        trials,
        seed: raw.seed.unwrap_or(0),
        rungs,
        keep,
    })
}

/// The sampler named, random by default.
fn sampler(raw: &RawSearch) -> Result<Sampler, GridError> {
    Ok(match raw.sampler.as_deref() {
        None | Some("random") => Sampler::Random,
        Some("sobol") => Sampler::Sobol,
        Some("grid") => Sampler::Grid,
        Some(other) => {
            return Err(error(
                &["search", "sampler"],
                format!("unknown sampler `{other}`"),
                Some("use `random`, `sobol` or `grid`"),
            ))
        }
    })
}

/// Each searched parameter and its distribution, checked.
fn space(raw: &RawSearch) -> Result<Vec<(String, Dist)>, GridError> {
    if raw.space.0.is_empty() {
        return Err(error(
            &["search", "space"],
            "the search space is empty".into(),
            Some("name each parameter to search and its range: `lr: {loguniform: [0.0003, 0.01]}`"),
        ));
    }
    let mut space: Vec<(String, Dist)> = Vec::new();
    for (key, RawDim(v)) in &raw.space.0 {
        if key.split('.').any(|k| check_name(k).is_err()) {
            return Err(error(
                &["search", "space", key],
                format!("`{key}` is not a parameter name"),
                Some("name a parameter, or a nested one as `plateau.patience`"),
            ));
        }
        if key == "epochs" && raw.early_stop.is_some() {
            return Err(error(
                &["search", "space", key],
                "the search varies `epochs`, but early stopping compares trials at rungs of one budget".into(),
                Some("search `epochs` without `early_stop`, or fix `epochs` in params"),
            ));
        }
        for (k, _) in &space {
            if key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}.")) {
                return Err(error(
                    &["search", "space", key],
                    format!("`{k}` and `{key}` both set `{}`", k.min(key)),
                    Some("search each parameter in one entry only"),
                ));
            }
        }
        space.push((key.clone(), dist(key, v)?));
    }
    Ok(space)
}

/// How many trials: as given, or every point of a grid.
fn trial_count(
    raw: &RawSearch,
    sampler: Sampler,
    space: &[(String, Dist)],
) -> Result<usize, GridError> {
    let grid_size = if sampler == Sampler::Grid {
        let mut n: usize = 1;
        for (key, d) in space {
            let k = match d {
                Dist::Choice(c) => c.len(),
                Dist::Int(lo, hi) => (hi - lo + 1) as usize,
                _ => {
                    return Err(error(
                        &["search", "space", key],
                        format!("the grid sampler cannot enumerate `{key}`, a continuous range"),
                        Some("give it as `choice: [...]` of the values to try, or use `sampler: random` or `sobol`"),
                    ))
                }
            };
            n = n.saturating_mul(k);
        }
        Some(n)
    } else {
        None
    };
    let trials = match (raw.trials, grid_size) {
        (Some(0), _) => {
            return Err(error(
                &["search", "trials"],
                "`trials` is 0".into(),
                Some("give the number of configurations to train, at least 1"),
            ))
        }
        (Some(t), Some(n)) if t > n => {
            return Err(error(
                &["search", "trials"],
                format!("`trials: {t}` asks for more than the grid's {n} points"),
                Some("lower `trials`, or leave it out to train every point"),
            ))
        }
        (Some(t), _) => t,
        (None, Some(n)) => n,
        (None, None) => {
            return Err(error(
                &["search"],
                format!("a {} search needs `trials`", sampler.name()),
                Some("say how many configurations to draw: `trials: 24`"),
            ))
        }
    };
    if trials > 9999 {
        return Err(error(
            &["search", "trials"],
            format!("`trials: {trials}` is more than 9999"),
            None,
        ));
    }
    Ok(trials)
}

/// The rungs and the fraction kept at each, checked against the trials'
/// epochs and their number: some trial must reach the end.
fn early_stop(
    raw: &RawSearch,
    epochs: usize,
    trials: usize,
) -> Result<(Vec<usize>, f64), GridError> {
    Ok(match &raw.early_stop {
        None => (Vec::new(), 1.0),
        Some(e) => {
            if e.rungs.is_empty() {
                return Err(error(
                    &["search", "early_stop", "rungs"],
                    "`rungs` is empty".into(),
                    Some("list the epochs at which trials are compared: `rungs: [2, 5]`"),
                ));
            }
            for (i, &r) in e.rungs.iter().enumerate() {
                if r == 0 || (i > 0 && r <= e.rungs[i - 1]) {
                    return Err(error(
                        &["search", "early_stop", "rungs"],
                        format!("rungs must be increasing epochs from 1: {:?}", e.rungs),
                        Some("list them in order, each at least 1: `rungs: [2, 5]`"),
                    ));
                }
                if r >= epochs {
                    return Err(error(
                        &["search", "early_stop", "rungs"],
                        format!("rung {r} is not below the trials' {epochs} epochs"),
                        Some("a rung is an epoch at which a trial may stop short of `epochs`"),
                    ));
                }
            }
            if !(e.keep > 0.0 && e.keep < 1.0) {
                return Err(error(
                    &["search", "early_stop", "keep"],
                    format!("`keep: {}` is not in (0, 1)", e.keep),
                    Some("the fraction of trials at a rung that go on, e.g. `keep: 0.34`"),
                ));
            }
            // The best floor(n × keep) of the n trials at a rung go on: a
            // search in which none reaches its last epoch has no result.
            let reaching = |t: usize| {
                e.rungs
                    .iter()
                    .try_fold(t, |n, &r| match (n as f64 * e.keep).floor() as usize {
                        0 => Err(r),
                        m => Ok(m),
                    })
            };
            if let Err(r) = reaching(trials) {
                let enough = (trials..=9999).find(|&t| reaching(t).is_ok());
                return Err(error(
                    &["search", "early_stop", "keep"],
                    format!(
                        "with {trials} trials and `keep: {}`, no trial goes on past rung {r} (the best floor(n × keep) of the n trials at a rung go on), so none trains its {epochs} epochs",
                        e.keep
                    ),
                    Some(&match enough {
                        Some(t) => format!("raise `trials` to at least {t}, or `keep`"),
                        None => "raise `keep`".to_string(),
                    }),
                ));
            }
            (e.rungs.clone(), e.keep)
        }
    })
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// One dimension, checked.
fn dist(key: &str, v: &Value) -> Result<Dist, GridError> {
    let at = ["search", "space", key];
    let forms = "`{uniform: [a, b]}`, `{loguniform: [a, b]}`, `{int: [a, b]}` or `{choice: [...]}`";
    let Some((form, arg)) = v
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        return Err(error(
            &at,
            format!("`{key}` is not a range"),
            Some(&format!("give it as one of {forms}")),
        ));
    };
    let mut at_form = at.to_vec();
    at_form.push(form);
    let bounds = |what: &str| -> Result<(f64, f64), GridError> {
        match arg
            .as_array()
            .map(|a| a.iter().map(number).collect::<Option<Vec<_>>>())
        {
            Some(Some(b)) if b.len() == 2 => Ok((b[0], b[1])),
            _ => Err(error(
                &at_form,
                format!("`{key}`: {what} takes two numbers, [low, high]"),
                None,
            )),
        }
    };
    let ordered = |lo: f64, hi: f64| {
        if lo >= hi {
            Err(error(
                &at_form,
                format!("`{key}`: the bounds [{lo}, {hi}] are reversed or equal"),
                Some("give them low first: `[low, high]`, low < high"),
            ))
        } else {
            Ok(())
        }
    };
    match form.as_str() {
        "uniform" => {
            let (lo, hi) = bounds("uniform")?;
            ordered(lo, hi)?;
            Ok(Dist::Uniform(lo, hi))
        }
        "loguniform" => {
            let (lo, hi) = bounds("loguniform")?;
            ordered(lo, hi)?;
            if lo <= 0.0 {
                return Err(error(
                    &at_form,
                    format!("`{key}`: loguniform needs bounds above 0, not [{lo}, {hi}]"),
                    Some("a log scale starts above zero; use `uniform` for a range from 0"),
                ));
            }
            Ok(Dist::LogUniform(lo, hi))
        }
        "int" => int_range(&at_form, key, arg),
        "choice" => choice(&at_form, key, arg),
        other => Err(error(
            &at,
            format!("`{key}`: unknown range `{other}`"),
            Some(&format!("use one of {forms}")),
        )),
    }
}

/// `int: [low, high]`.
fn int_range(at_form: &[&str], key: &str, arg: &Value) -> Result<Dist, GridError> {
    let ints = arg.as_array().and_then(|a| {
        a.iter()
            .map(|x| x.as_i64())
            .collect::<Option<Vec<_>>>()
            .filter(|b| b.len() == 2)
    });
    let Some(b) = ints else {
        return Err(error(
            at_form,
            format!("`{key}`: int takes two integers, [low, high], not {arg}"),
            Some("write whole numbers: `int: [32, 128]`"),
        ));
    };
    if b[0] >= b[1] {
        return Err(error(
            at_form,
            format!(
                "`{key}`: the bounds [{}, {}] are reversed or equal",
                b[0], b[1]
            ),
            Some("give them low first: `[low, high]`, low < high"),
        ));
    }
    Ok(Dist::Int(b[0], b[1]))
}

/// `choice: [...]` or `choice: {name: value, ...}`.
fn choice(at_form: &[&str], key: &str, arg: &Value) -> Result<Dist, GridError> {
    let pairs: Vec<(String, Value)> = match arg {
        Value::Array(vs) => vs
            .iter()
            .map(|v| {
                value_name(v).map(|n| (n, v.clone())).ok_or_else(|| {
                    error(
                        at_form,
                        format!("`{key}`: the choice {v} cannot name a trial's value"),
                        Some(&format!(
                            "give the choices as a mapping from names to values: `{key}: {{choice: {{none: [], flip: [{{hflip: 0.5}}]}}}}`"
                        )),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Value::Object(m) => {
            for n in m.keys() {
                check_name(n).map_err(|m| {
                    error(at_form, format!("`{key}`: choice name `{n}` {m}"), None)
                })?;
            }
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        _ => {
            return Err(error(
                at_form,
                format!("`{key}`: choice takes a list of values or a mapping of names to values"),
                None,
            ))
        }
    };
    if pairs.is_empty() {
        return Err(error(
            at_form,
            format!("`{key}`: the choice is empty"),
            Some("list at least one value"),
        ));
    }
    for (i, (n, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(m, _)| m == n) {
            return Err(error(
                at_form,
                format!("`{key}`: the choice lists `{n}` twice"),
                None,
            ));
        }
    }
    Ok(Dist::Choice(pairs))
}

/// A trial's name: `trial-07` (three digits from 100 trials on).
pub fn trial_name(k: usize, trials: usize) -> String {
    let width = trials.to_string().len().max(2);
    format!("trial-{:0width$}", k + 1)
}

/// SplitMix64: a well-mixed 64-bit value from any.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in [0, 1) from 53 bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Point `index` (from 1: the origin is skipped) of the Sobol' sequence
/// in `dims` dimensions.
fn sobol(index: u64, dims: usize) -> Vec<f64> {
    const BITS: u32 = 32;
    let mut out = Vec::with_capacity(dims);
    for d in 0..dims {
        let v: Vec<u64> = if d == 0 {
            (1..=BITS).map(|k| 1u64 << (BITS - k)).collect()
        } else {
            let (s, a, m) = SOBOL[d - 1];
            let s = s as usize;
            let mut v = vec![0u64; BITS as usize];
            for k in 0..BITS as usize {
                v[k] = if k < s {
                    (m[k] as u64) << (BITS as usize - 1 - k)
                } else {
                    let mut x = v[k - s] ^ (v[k - s] >> s);
                    for j in 1..s {
                        if (a >> (s - 1 - j)) & 1 == 1 {
                            x ^= v[k - j];
                        }
                    }
                    x
                };
            }
            v
        };
        let mut x = 0u64;
        for (bit, dv) in v.iter().enumerate() {
            if (index >> bit) & 1 == 1 {
                x ^= dv;
            }
        }
        out.push(x as f64 / (1u64 << BITS) as f64);
    }
    out
}

/// Three significant digits: what a search reports and trains with.
fn round3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 2 - x.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    let r = (x * scale).round() / scale;
    // Through text, so that 0.0012 is 0.0012 and not 0.0012000000000000001.
    format!("{r:.*}", digits.max(0) as usize)
        .parse()
        .unwrap_or(r)
}

/// The value of `d` at `u` in [0, 1): (its name in reports, the value).
fn draw(d: &Dist, u: f64) -> (Value, Value) {
    let num = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    match d {
        Dist::Uniform(lo, hi) => {
            let x = num(round3(lo + u * (hi - lo)));
            (x.clone(), x)
        }
        Dist::LogUniform(lo, hi) => {
            let x = num(round3((lo.ln() + u * (hi.ln() - lo.ln())).exp()));
            (x.clone(), x)
        }
        Dist::Int(lo, hi) => {
            let n = (hi - lo + 1) as f64;
            let x = (lo + (u * n).floor() as i64).min(*hi);
            (x.into(), x.into())
        }
        Dist::Choice(c) => {
            let k = ((u * c.len() as f64).floor() as usize).min(c.len() - 1);
            let (name, value) = &c[k];
            // A listed value shows as itself, a named one by its name.
            let shown = if value_name(value).as_ref() == Some(name) {
                value.clone()
            } else {
                Value::String(name.clone())
            };
            (shown, value.clone())
        }
    }
}

/// Grid point `k` (first dimension slowest): each dimension's index.
fn grid_point(space: &[(String, Dist)], mut k: usize) -> Vec<f64> {
    let sizes: Vec<usize> = space
        .iter()
        .map(|(_, d)| match d {
            Dist::Choice(c) => c.len(),
            Dist::Int(lo, hi) => (hi - lo + 1) as usize,
            _ => 1,
        })
        .collect();
    let mut u = vec![0.0; sizes.len()];
    for (i, &n) in sizes.iter().enumerate().rev() {
        // The middle of the cell: `draw` takes it back to the index.
        u[i] = ((k % n) as f64 + 0.5) / n as f64;
        k /= n;
    }
    u
}

/// A trial: its name, the overrides it trains with, and the values as a
/// report names them (a named choice by its name).
#[derive(Debug, Clone)]
pub struct Trial {
    pub pending: Pending,
    pub shown: Map<String, Value>,
}

/// The search's trials, in order.
pub fn trials(s: &Search) -> Vec<Trial> {
    let dims = s.space.len();
    // Sobol' points are shifted (mod 1) by the seed, so that two seeds
    // give two sequences with the same evenness.
    let shift: Vec<f64> = (0..dims)
        .map(|d| unit(mix(s.seed ^ mix(d as u64 + 0x50b0))))
        .collect();
    (0..s.trials)
        .map(|k| {
            let u: Vec<f64> = match s.sampler {
                Sampler::Grid => grid_point(&s.space, k),
                Sampler::Random => (0..dims)
                    .map(|d| unit(mix(mix(s.seed).wrapping_add(mix(k as u64) ^ d as u64))))
                    .collect(),
                Sampler::Sobol => sobol(k as u64 + 1, dims)
                    .into_iter()
                    .zip(&shift)
                    .map(|(x, sh)| (x + sh).fract())
                    .collect(),
            };
            let mut over = Map::new();
            let mut shown = Map::new();
            for ((key, d), u) in s.space.iter().zip(u) {
                let (name, value) = draw(d, u);
                super::grid::insert_dotted(&mut over, key, value);
                shown.insert(key.clone(), name);
            }
            Trial {
                pending: Pending {
                    name: trial_name(k, s.trials),
                    path: vec!["search".into(), "space".into()],
                    over,
                },
                shown,
            }
        })
        .collect()
}

/// A value for `d` that the stage's kind should accept, to check that the
/// searched key is one of its parameters before any trial is drawn.
pub fn probe(d: &Dist) -> Value {
    draw(d, 0.0).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::{OrderedMap, RawEarlyStop};
    use serde_json::json;

    fn raw(space: Value, sampler: &str, trials: Option<usize>) -> RawSearch {
        RawSearch {
            space: OrderedMap(
                space
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), RawDim(v.clone())))
                    .collect(),
            ),
            sampler: Some(sampler.into()),
            trials,
            seed: Some(7),
            early_stop: Some(RawEarlyStop {
                rungs: vec![2, 5],
                keep: 0.5,
            }),
        }
    }

    fn space() -> Value {
        json!({
            "batch_size": {"int": [32, 128]},
            "label_smoothing": {"choice": [0, 0.1, 0.2]},
            "lr": {"loguniform": [0.0003, 0.01]},
            "weight_decay": {"uniform": [0, 0.05]},
        })
    }

    #[test]
    fn samplers_are_deterministic_in_range_and_prefix_stable() {
        for sampler in ["random", "sobol"] {
            let s = parse(&raw(space(), sampler, Some(24)), 10).unwrap();
            let t24 = trials(&s);
            let t32 = trials(&parse(&raw(space(), sampler, Some(32)), 10).unwrap());
            assert_eq!(t24.len(), 24);
            assert_eq!(t24[6].pending.name, "trial-07");
            for (a, b) in t24.iter().zip(&t32) {
                assert_eq!(a.pending.over, b.pending.over, "{sampler}");
            }
            for t in &t32 {
                let o = &t.pending.over;
                let lr = o["lr"].as_f64().unwrap();
                assert!((0.0003..=0.01).contains(&lr), "{lr}");
                let b = o["batch_size"].as_i64().unwrap();
                assert!((32..=128).contains(&b));
                let wd = o["weight_decay"].as_f64().unwrap();
                assert!((0.0..=0.05).contains(&wd));
            }
            // The choices are all drawn in 32 trials.
            let mut seen: Vec<String> = t32
                .iter()
                .map(|t| t.shown["label_smoothing"].to_string())
                .collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 3, "{sampler}: {seen:?}");
            // Another seed, other trials.
            let mut r = raw(space(), sampler, Some(24));
            r.seed = Some(8);
            assert_ne!(
                trials(&parse(&r, 10).unwrap())[0].pending.over,
                t24[0].pending.over
            );
        }
    }

    #[test]
    fn sobol_points_spread_evenly() {
        // The first 2^k points of a dimension fall one in each of 2^k cells.
        for d in 0..SOBOL_DIMS {
            let mut cells: Vec<usize> = (1..=16)
                .map(|i| (sobol(i, d + 1)[d] * 16.0) as usize)
                .collect();
            cells.push((sobol(0, d + 1)[d] * 16.0) as usize);
            cells.sort();
            cells.dedup();
            assert!(cells.len() >= 16, "dimension {d}: {cells:?}");
        }
    }

    #[test]
    fn a_grid_enumerates_choices_and_integers() {
        let s = parse(
            &raw(
                json!({"a": {"choice": [1, 2]}, "b": {"int": [0, 2]}}),
                "grid",
                None,
            ),
            10,
        )
        .unwrap();
        let t = trials(&s);
        let points: Vec<Value> = t
            .iter()
            .map(|t| Value::Object(t.pending.over.clone()))
            .collect();
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], json!({"a": 1, "b": 0}));
        assert_eq!(points[5], json!({"a": 2, "b": 2}));
    }

    #[test]
    fn named_choices_and_dotted_keys() {
        let s = parse(
            &raw(
                json!({"schedule": {"choice": {"cosine": {"cosine": {"warmup_epochs": 1}}, "plateau": {"plateau": {"factor": 0.5}}}},
                       "plateau.patience": {"int": [1, 3]}}),
                "random",
                Some(8),
            ),
            10,
        )
        .unwrap();
        for t in trials(&s) {
            let name = t.shown["schedule"].as_str().unwrap().to_string();
            assert!(t.pending.over["schedule"].get(&name).is_some());
            assert!(t.pending.over["plateau"]["patience"].is_i64());
        }
    }

    #[test]
    fn bad_searches_are_refused() {
        let bad = |space: Value, sampler: &str, trials: Option<usize>| {
            parse(&raw(space, sampler, trials), 10).unwrap_err()
        };
        let e = bad(json!({"lr": {"choice": []}}), "random", Some(4));
        assert!(e.message.contains("the choice is empty"), "{}", e.message);
        let e = bad(json!({"lr": {"uniform": [0.1, 0.01]}}), "random", Some(4));
        assert!(e.message.contains("reversed"), "{}", e.message);
        assert_eq!(e.path, ["search", "space", "lr", "uniform"]);
        let e = bad(json!({"lr": {"loguniform": [0, 0.01]}}), "random", Some(4));
        assert!(e.message.contains("above 0"), "{}", e.message);
        let e = bad(json!({"b": {"int": [32.5, 128]}}), "random", Some(4));
        assert!(e.message.contains("two integers"), "{}", e.message);
        let e = bad(json!({"lr": {"uniform": [0.001, 0.01]}}), "grid", None);
        assert!(e.message.contains("continuous range"), "{}", e.message);
        let e = bad(json!({"lr": {"uniform": [0.001, 0.01]}}), "random", Some(0));
        assert!(e.message.contains("`trials` is 0"), "{}", e.message);
        let e = bad(json!({"lr": {"uniform": [0.001, 0.01]}}), "random", None);
        assert!(e.message.contains("needs `trials`"), "{}", e.message);
        let e = bad(json!({"lr": {"between": [0.001, 0.01]}}), "random", Some(2));
        assert!(e.message.contains("unknown range"), "{}", e.message);
        let e = bad(json!({"lr": [0.001, 0.01]}), "random", Some(2));
        assert!(e.message.contains("not a range"), "{}", e.message);
        let e = bad(json!({"epochs": {"int": [3, 9]}}), "random", Some(2));
        assert!(e.message.contains("early stopping"), "{}", e.message);
        let mut r = raw(json!({"lr": {"uniform": [0.001, 0.01]}}), "random", Some(2));
        r.early_stop = Some(RawEarlyStop {
            rungs: vec![5, 2],
            keep: 0.5,
        });
        assert!(parse(&r, 10).unwrap_err().message.contains("increasing"));
        r.early_stop = Some(RawEarlyStop {
            rungs: vec![2, 10],
            keep: 0.5,
        });
        assert!(parse(&r, 10).unwrap_err().message.contains("not below"));
        r.early_stop = Some(RawEarlyStop {
            rungs: vec![2],
            keep: 1.0,
        });
        assert!(parse(&r, 10).unwrap_err().message.contains("not in (0, 1)"));
        r.sampler = Some("bayes".into());
        assert!(parse(&r, 10)
            .unwrap_err()
            .message
            .contains("unknown sampler"));
    }

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(round3(0.00123456), 0.00123);
        assert_eq!(round3(0.0467), 0.0467);
        assert_eq!(round3(12345.0), 12300.0);
    }
}
