//! After stages are linked: each search's report stage needs its trials
//! (a [`SearchPlan`] for the scheduler), and each `confirm` stage is
//! checked and planned ([`ConfirmPlan`]); it waits for its search.
//!
//! Resolving reads no outputs. Once its search has finished, the engine
//! reads the search's result and [`finalize`] gives the confirm stage its
//! trainings and evaluations on fresh seeds (`run` runs the search first,
//! as Snakemake does before a checkpoint's dependents).

use super::locate::Locator;
use super::pipeline::{Base, ConfirmPlan, Pipeline, SearchPlan, Settings, Stage, SEARCH_VARIANT};
use super::variants::{merge_override, nest_dotted};
use super::Resources;
use crate::error::{Diagnostic, Result};
use serde_json::{Map, Value};
use stages::confirm::REFERENCE;
use stages::contract::{replicate_name, stage_name};
use stages::search::SearchResult;
use stages::Kind;

/// Each search's report stage needs its trials; the plans, in stage order.
pub(super) fn link_searches(stages: &mut [Stage]) -> Vec<SearchPlan> {
    let mut plans = Vec::new();
    for r in 0..stages.len() {
        if stages[r].kind != Kind::Search {
            continue;
        }
        let base = stages[r].base.clone();
        let trials: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].base == base && stages[i].kind == Kind::Train)
            .collect();
        let mut needs = stages[r].needs.clone();
        needs.extend(&trials);
        needs.sort_unstable();
        needs.dedup();
        stages[r].needs = needs;
        let p = &stages[r].params;
        let num = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        plans.push(SearchPlan {
            report: r,
            trials,
            rungs: p
                .get("rungs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|x| x as usize)
                        .collect()
                })
                .unwrap_or_default(),
            epochs: num("epochs"),
            keep: p.get("keep").and_then(Value::as_f64).unwrap_or(1.0),
        });
    }
    plans
}

/// Each `confirm` stage checked and planned; it needs only its search's
/// report until [`finalize`] is given the search's result.
pub(super) fn prepare(
    stages: &mut [Stage],
    searches: &[SearchPlan],
    bases: &[Base<'_>],
    loc: &Locator<'_>,
) -> Result<Vec<ConfirmPlan>> {
    let mut plans = Vec::new();
    let confirms: Vec<usize> = (0..stages.len())
        .filter(|&i| stages[i].kind == Kind::Confirm)
        .collect();
    for c in confirms {
        let cname = stages[c].name.clone();
        let Some(b) = bases.iter().find(|b| b.name == stages[c].base) else {
            continue;
        };
        let at = |path: &[&str], message: String| {
            let mut p = vec!["stages", b.name];
            p.extend(path);
            loc.at(&p, format!("stage `{cname}`: {message}"))
        };
        check_declaration(b, &at)?;
        let search = searched(stages, searches, b, &at)?;
        let plan = &searches[search];
        let p: stages::confirm::ConfirmParams = serde_json::from_value(stages[c].params.clone())
            .map_err(|e| at(&["params"], e.to_string()))?;
        check_top_and_seeds(stages, plan, &p, &at)?;
        // The reference configuration: the search stage's params, overridden.
        let search_base = stages[plan.report].base.clone();
        let Some(sb) = bases.iter().find(|x| x.name == search_base) else {
            continue;
        };
        let reference = reference(sb, &p, &at)?;
        for suffix in ["train", "evaluate"] {
            let taken = format!("{cname}.{suffix}");
            if stages.iter().any(|s| s.base == taken) {
                return Err(at(
                    &[],
                    format!(
                        "the stage name `{taken}` is taken; a confirm stage names its trainings so"
                    ),
                )
                .help("rename the confirm stage or the other one")
                .into());
            }
        }
        // Waits for the search: it needs only its report for now.
        stages[c].needs = vec![plan.report];
        plans.push(ConfirmPlan {
            confirm: c,
            search,
            top: p.top,
            seeds: p.seeds.clone(),
            reference,
        });
    }
    Ok(plans)
}

/// Where in a confirm stage's declaration something is wrong, and what.
type At<'a> = dyn Fn(&[&str], String) -> Diagnostic + 'a;

/// A confirm stage declares no variants of its own, nor its finalists.
fn check_declaration(b: &Base<'_>, at: &At<'_>) -> Result<()> {
    for (field, given) in [
        ("variants", b.raw.variants.is_some()),
        ("matrix", b.raw.matrix.is_some()),
        ("seeds", b.raw.seeds.is_some()),
        ("foreach", b.raw.foreach.is_some()),
        ("search", b.raw.search.is_some()),
    ] {
        if given {
            return Err(at(
                &[field],
                format!(
                    "a confirm stage takes no `{field}`; its seeds are `params: {{seeds: [...]}}`"
                ),
            )
            .into());
        }
    }
    if b.raw
        .params
        .as_ref()
        .is_some_and(|p| p.0.contains_key("finalists"))
    {
        return Err(at(
            &["params", "finalists"],
            "`finalists` is not set by hand: they are the search's best trials".into(),
        )
        .help("set `top: N` to confirm the N best")
        .into());
    }
    Ok(())
}

/// The search a confirm stage confirms: the one search it needs.
fn searched(stages: &[Stage], searches: &[SearchPlan], b: &Base<'_>, at: &At<'_>) -> Result<usize> {
    let searched: Vec<(&str, usize)> = b
        .raw
        .needs
        .iter()
        .filter_map(|n| {
            searches
                .iter()
                .position(|s| stages[s.report].base == *n)
                .map(|k| (n.as_str(), k))
        })
        .collect();
    match searched.as_slice() {
        [(_, k)] => Ok(*k),
        [] => {
            let named = if b.raw.needs.is_empty() {
                "it needs no stage".to_string()
            } else {
                format!("`{}` is not a search", b.raw.needs.join("`, `"))
            };
            Err(at(
                &["needs"],
                format!("a confirm stage needs the search it confirms, and {named}"),
            )
            .help("give a train stage `search:` and name it: `needs: [train]`")
            .into())
        }
        several => {
            let names: Vec<&str> = several.iter().map(|(n, _)| *n).collect();
            Err(at(
                &["needs"],
                format!(
                    "a confirm stage confirms one search, it needs {}",
                    names.join(", ")
                ),
            )
            .help("declare one confirm stage per search")
            .into())
        }
    }
}

/// `top` is within the search's trials, and every seed is fresh.
fn check_top_and_seeds(
    stages: &[Stage],
    plan: &SearchPlan,
    p: &stages::confirm::ConfirmParams,
    at: &At<'_>,
) -> Result<()> {
    if p.top > plan.trials.len() {
        return Err(at(
            &["params", "top"],
            format!(
                "`top: {}` is more than the search's {} trials",
                p.top,
                plan.trials.len()
            ),
        )
        .into());
    }
    let used: Vec<u64> = plan
        .trials
        .iter()
        .filter_map(|&t| stages[t].params.get("seed").and_then(Value::as_u64))
        .collect();
    let overlap: Vec<String> = p
        .seeds
        .iter()
        .filter(|s| used.contains(s))
        .map(u64::to_string)
        .collect();
    if !overlap.is_empty() {
        return Err(at(
            &["params", "seeds"],
            format!(
                "seed {} was used by the search; a confirmation needs fresh seeds",
                overlap.join(", ")
            ),
        )
        .help(
            "pick seeds no trial trained with (the search's trials use `seed` of the train stage)",
        )
        .into());
    }
    Ok(())
}

/// The reference configuration: the search stage's params with the
/// confirm stage's `reference` over them.
fn reference(sb: &Base<'_>, p: &stages::confirm::ConfirmParams, at: &At<'_>) -> Result<Value> {
    let search_base = sb.name;
    if p.reference.contains_key("seed") {
        return Err(at(
            &["params", "reference", "seed"],
            "the reference sets `seed`, but `seeds` sets each training's seed".into(),
        )
        .into());
    }
    let mut reference = sb.params.clone();
    merge_override(
        &mut reference,
        &nest_dotted(&p.reference),
        "",
        Kind::Train.optional_params(),
    )
    .map_err(|(key, _)| {
        at(
            &["params", "reference"],
            format!(
                "the reference sets `{key}`, which is not a parameter of stage `{search_base}`"
            ),
        )
    })?;
    Ok(Kind::Train
        .normalize_params(reference)
        .map_err(|m| at(&["params", "reference"], format!("reference: {m}")))?)
}

/// Gives confirm stage `plan.confirm` its trainings and evaluations: the
/// reference and the `top` best trials of `found` (the search's result,
/// whose identity the caller checked), each on every fresh seed.
pub fn finalize(pipeline: &mut Pipeline, plan: &ConfirmPlan, found: &SearchResult) {
    let search = &pipeline.searches[plan.search];
    let (report_idx, trials) = (search.report, search.trials.clone());
    let settings: &Settings = &pipeline.settings;
    let stages = &mut pipeline.stages;
    let c = plan.confirm;
    let cname = stages[c].name.clone();
    let mut configs: Vec<(String, Value)> = vec![(REFERENCE.to_string(), plan.reference.clone())];
    let mut finalists = Vec::new();
    for trial in found.ranking.iter().take(plan.top) {
        let Some(t) = trials
            .iter()
            .find(|&&t| stages[t].variant.as_deref() == Some(trial.as_str()))
        else {
            continue;
        };
        let Some(r) = found.trials.iter().find(|r| r.trial == *trial) else {
            continue;
        };
        configs.push((trial.clone(), stages[*t].params.clone()));
        finalists.push(serde_json::json!({
            "trial": trial, "values": r.values, "search_score": r.score,
        }));
    }
    let template = stages[trials[0]].clone();
    let data: Vec<usize> = template
        .needs
        .iter()
        .copied()
        .filter(|&j| stages[j].kind == Kind::Preprocess)
        .collect();
    let eval_defaults = settings
        .resources
        .get(&Kind::Evaluate)
        .cloned()
        .unwrap_or_default();
    let mut needs = vec![report_idx];
    for (config, params) in &configs {
        for &seed in &plan.seeds {
            let variant = replicate_name(config, seed);
            let tbase = format!("{cname}.train");
            let tname = stage_name(&tbase, Some(&variant));
            let mut tparams = params.clone();
            if let Value::Object(m) = &mut tparams {
                m.insert("seed".into(), seed.into());
            }
            let t = stages.len();
            stages.push(Stage {
                outs: vec![format!("{}/{tname}", settings.outputs)],
                name: tname,
                group: Some(stage_name(&tbase, Some(config))),
                base: tbase,
                variant: Some(variant.clone()),
                desc: Some(format!("{config} on the fresh seed {seed}")),
                params: tparams,
                ..template.clone()
            });
            let ebase = format!("{cname}.evaluate");
            let ename = stage_name(&ebase, Some(&variant));
            let mut eneeds = data.clone();
            eneeds.push(t);
            eneeds.sort_unstable();
            needs.push(stages.len());
            stages.push(Stage {
                outs: vec![format!("{}/{ename}", settings.outputs)],
                name: ename,
                group: Some(stage_name(&ebase, Some(config))),
                base: ebase,
                variant: Some(variant),
                kind: Kind::Evaluate,
                desc: None,
                params: Kind::Evaluate
                    .normalize_params(Value::Null)
                    .unwrap_or(Value::Object(Map::new())),
                cmd: None,
                deps: Vec::new(),
                predictions: None,
                needs: eneeds,
                resources: Resources {
                    cpus: eval_defaults.cpus,
                    gpus: eval_defaults.gpus.unwrap_or(0),
                    mem_mb: eval_defaults.mem_mb,
                    time: eval_defaults.time,
                },
                device: template.device.clone(),
                slurm: settings.slurm.clone(),
            });
        }
    }
    stages[c].needs = needs;
    if let Value::Object(m) = &mut stages[c].params {
        m.insert("finalists".into(), Value::Array(finalists));
    }
}

/// Whether a stage is a confirm stage still waiting for its search.
pub fn waits_for_search(stage: &Stage) -> bool {
    stage.kind == Kind::Confirm && stage.params.get("finalists").is_none()
}

/// The variant of a search's report stage.
pub fn is_search_report(stage: &Stage) -> bool {
    stage.kind == Kind::Search && stage.variant.as_deref() == Some(SEARCH_VARIANT)
}
