//! Outputs and links: each stage's paths substituted and checked, the
//! owner of every output, and the edges between stages.

use super::grid;
use super::load::{RawPipeline, RawStage};
use super::locate::{suggest, Locator};
use super::pipeline::{Base, Settings, Stage};
use super::protect::Protected;
use super::variants::{merge_variant, under_stage, Instance};
use crate::error::Result;
use serde_json::Map;
use stages::contract::stage_name;
use stages::Kind;
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

/// A `cmd` stage's `predictions`, substituted: normalized, and one of the
/// stage's outputs or inside one (the command writes it; the cache keeps it).
pub(super) fn predictions_path(
    b: &Base<'_>,
    path: &str,
    outs: &[String],
    loc: &Locator<'_>,
) -> Result<String> {
    let at = |message: String| loc.at(&["stages", b.name, "predictions"], message);
    if b.raw.kind != Kind::Cmd {
        return Err(at(format!(
            "stage `{}` is of kind {}, which takes no `predictions`",
            b.name,
            b.raw.kind.name()
        ))
        .help("`predictions` names the test-set predictions a cmd stage writes; evaluate reads a train stage's model itself")
        .into());
    }
    let p = normalize(path).map_err(|m| {
        at(format!("stage `{}`: predictions `{path}` {m}", b.name))
            .help("predictions must be one of the stage's outputs, inside the project directory")
    })?;
    let inside = outs.iter().any(|o| {
        p == *o
            || p.strip_prefix(o.as_str())
                .is_some_and(|r| r.starts_with('/'))
    });
    if !inside {
        return Err(at(format!(
            "stage `{}`: predictions `{p}` is not one of its outputs ({})",
            b.name,
            if outs.is_empty() {
                "it declares none".to_string()
            } else {
                outs.join(", ")
            }
        ))
        .help(format!(
            "add `{p}` (or its directory) to the stage's `outs`, so that the cache keeps it"
        ))
        .into());
    }
    Ok(p)
}

/// A stage's outputs may be deleted before it reruns: none may be a
/// protected place or hold one of the stage's own deps.
pub(super) fn check_outs(
    b: &Base<'_>,
    name: &str,
    outs: &[String],
    deps: &[String],
    settings: &Settings,
    protected: &Protected,
    loc: &Locator<'_>,
) -> Result<()> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    for o in outs {
        // The tool deletes an output before its stage reruns.
        let field = if b.raw.kind.is_builtin() {
            "kind"
        } else {
            "outs"
        };
        if let Some(why) = protected.refuse(&settings.project_dir.join(o)) {
            return Err(err(
                &["stages", b.name, field],
                format!("stage `{name}`: output `{o}` {why}; a stage's outputs are deleted before it reruns"),
            )
            .help("give the stage a path of its own for what it writes, e.g. `out/{name}.txt`")
            .into());
        }
        if let Some(d) = deps
            .iter()
            .find(|d| *d == o || Path::new(d.as_str()).starts_with(o.as_str()))
        {
            return Err(err(
                &["stages", b.name, field],
                format!("stage `{name}`: output `{o}` holds its own dep `{d}`, which would be deleted before the stage runs"),
            )
            .help("write the result to another path than the stage reads")
            .into());
        }
    }
    Ok(())
}

/// A stage's instances: (variant, params, the `foreach` partner it needs)
/// for each variant, each variant of its `foreach` target, or just itself.
pub(super) fn instances(
    b: &Base<'_>,
    bases: &[Base<'_>],
    base_names: &[&str],
    loc: &Locator<'_>,
) -> Result<Vec<Instance>> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    Ok(if let Some(vs) = &b.variants {
        vs.iter()
            .map(|(v, p)| (Some(v.clone()), p.clone(), None))
            .collect()
    } else if let Some(target) = &b.raw.foreach {
        let path = ["stages", b.name, "foreach"];
        let Some(t) = bases.iter().find(|x| x.name == target) else {
            let mut d = err(
                &path,
                format!(
                    "stage `{}` has `foreach: {target}`, but there is no stage `{target}`",
                    b.name
                ),
            );
            if let Some(s) = suggest(target, base_names.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            return Err(d.into());
        };
        if t.search.is_some() {
            return Err(err(
                &path,
                format!(
                    "stage `{}` has `foreach: {target}`, but `{target}` is a search: its trials are chosen by validation accuracy, and the test set is not read during a search",
                    b.name
                ),
            )
            .help(format!(
                "confirm the search's finalists on fresh seeds with a stage of `kind: confirm` and `needs: [{target}]`"
            ))
            .into());
        }
        let Some(tv) = &t.variants else {
            return Err(err(
                &path,
                format!(
                    "stage `{}` has `foreach: {target}`, but `{target}` has no variants",
                    b.name
                ),
            )
            .help(format!(
                "declare `variants` on `{target}`, or write `needs: [{target}]` instead"
            ))
            .into());
        };
        let at = under_stage(loc, b.name);
        let mut out = Vec::with_capacity(tv.len());
        for (v, _) in tv {
            // `-S STAGE@VARIANT.KEY=VALUE` on one of its instances.
            let mut over = Map::new();
            for (_, key, value) in b.raw.point_overrides.iter().filter(|(n, _, _)| n == v) {
                grid::insert_dotted(&mut over, key, value.clone());
            }
            let params = match over.is_empty() {
                true => b.params.clone(),
                false => {
                    let pending = grid::Pending {
                        name: v.clone(),
                        path: vec!["params".into()],
                        over,
                    };
                    merge_variant(b.name, b.raw, &b.params, &pending, &at)?
                }
            };
            out.push((Some(v.clone()), params, Some(stage_name(target, Some(v)))));
        }
        out
    } else {
        vec![(None, b.params.clone(), None)]
    })
}

/// Pass 3: dependencies: `needs`, `foreach`, and deps on other stages'
/// outputs; outputs shared or nested between stages are refused.
pub(super) fn link(
    stages: &mut [Stage],
    foreach_needs: &[Option<String>],
    raw: &RawPipeline,
    loc: &Locator<'_>,
) -> Result<()> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut by_base: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in stages.iter().enumerate() {
        by_base.entry(s.base.as_str()).or_default().push(i);
        if let Some(g) = &s.group {
            by_base.entry(g.as_str()).or_default().push(i);
        }
    }
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    let owner = output_owners(stages, loc)?;
    // By name: a search per stage would make loading quadratic.
    let declared: HashMap<&str, &RawStage> =
        raw.stages.0.iter().map(|(n, s)| (n.as_str(), s)).collect();
    for (i, b) in stages.iter().enumerate() {
        let Some(raw) = declared.get(b.base.as_str()) else {
            continue;
        };
        for n in &raw.needs {
            let found: Vec<usize> = match index.get(n.as_str()) {
                Some(&j) => vec![j],
                None => by_base.get(n.as_str()).cloned().unwrap_or_default(),
            };
            if found.is_empty() {
                let mut d = err(
                    &["stages", &b.base, "needs"],
                    format!("stage `{}` needs `{n}`, but there is no such stage", b.base),
                );
                if let Some(s) = suggest(
                    n,
                    stages
                        .iter()
                        .flat_map(|s| [s.name.as_str(), s.base.as_str()]),
                ) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.into());
            }
            needs[i].extend(found);
        }
        if let Some(f) = &foreach_needs[i] {
            needs[i].push(index[f.as_str()]);
        }
        for d in &b.deps {
            // Ancestors of the dep that are outputs, and outputs under the dep.
            let mut p = d.as_str();
            loop {
                if let Some(&j) = owner.get(p) {
                    needs[i].push(j);
                }
                match p.rfind('/') {
                    Some(k) => p = &p[..k],
                    None => break,
                }
            }
            let lo = format!("{d}/");
            let hi = format!("{d}0"); // '0' sorts right after '/'
            needs[i].extend(owner.range(lo.as_str()..hi.as_str()).map(|(_, &j)| j));
        }
    }
    inherit_inputs(stages, &mut needs);
    for (i, mut n) in needs.into_iter().enumerate() {
        n.sort_unstable();
        n.dedup();
        // A stage reading its own output is not a dependency on itself
        // unless it said so in `needs` (which the graph reports as a cycle).
        stages[i].needs = n;
    }
    Ok(())
}

/// Each output path and the stage that writes it; an output shared by two
/// stages, or inside another stage's, is refused.
pub(super) fn output_owners<'s>(
    stages: &'s [Stage],
    loc: &Locator<'_>,
) -> Result<BTreeMap<&'s str, usize>> {
    let err = |path: &[&str], message: String| loc.at(path, message);
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in stages.iter().enumerate() {
        for o in &s.outs {
            if let Some(&j) = owner.get(o.as_str()) {
                return Err(err(
                    &["stages", &s.base, "outs"],
                    format!(
                        "output `{o}` of stage `{}` is also an output of stage `{}`",
                        s.name, stages[j].name
                    ),
                )
                .help("give each stage its own output paths (use ${variant} in variant stages)")
                .into());
            }
            owner.insert(o, i);
        }
    }
    // Nested outputs would make one stage's output part of another's.
    let mut prev: Option<(&str, usize)> = None;
    for (&o, &i) in &owner {
        if let Some((p, j)) = prev {
            if o.starts_with(p) && o.as_bytes().get(p.len()) == Some(&b'/') {
                return Err(err(
                    &["stages", &stages[i].base, "outs"],
                    format!(
                        "output `{o}` of stage `{}` lies inside output `{p}` of stage `{}`",
                        stages[i].name, stages[j].name
                    ),
                )
                .into());
            }
        }
        prev = Some((o, i));
    }
    Ok(owner)
}

/// Inputs taken through another input (evaluate: its train stage's
/// dataset), where the stage names none of that kind itself.
pub(super) fn inherit_inputs(stages: &[Stage], needs: &mut [Vec<usize>]) {
    for i in 0..stages.len() {
        for &(through, wanted) in stages[i].kind.inherited_inputs() {
            if needs[i].iter().any(|&j| stages[j].kind == wanted) {
                continue;
            }
            let via: Vec<usize> = needs[i]
                .iter()
                .copied()
                .filter(|&j| stages[j].kind == through)
                .collect();
            for j in via {
                let more: Vec<usize> = needs[j]
                    .iter()
                    .copied()
                    .filter(|&k| stages[k].kind == wanted)
                    .collect();
                needs[i].extend(more);
            }
        }
    }
}

/// Lexically normalizes a relative path; refuses absolute paths and paths
/// that climb out of the project directory.
pub(super) fn normalize(p: &str) -> std::result::Result<String, NotInside> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(NotInside::Absolute);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or(NotInside::NotUtf8)?),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(NotInside::ClimbsOut);
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(NotInside::Absolute),
        }
    }
    if parts.is_empty() {
        return Err(NotInside::ProjectItself);
    }
    Ok(parts.join("/"))
}

/// Why a path is not one inside the project directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotInside {
    Absolute,
    /// Its `..` lead out of the project directory.
    ClimbsOut,
    ProjectItself,
    NotUtf8,
}

impl std::fmt::Display for NotInside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotInside::Absolute => "is absolute, outside the project directory",
            NotInside::ClimbsOut => "is outside the project directory",
            NotInside::ProjectItself => "is the project directory itself",
            NotInside::NotUtf8 => "is not UTF-8",
        })
    }
}
