//! Seed replicates and parameter grids: expansion and names, caching per
//! replicate, and the comparison aggregated across seeds.

use std::fs;

use crate::common::*;

/// The stages a run's output says it ran, in order.
fn ran(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("done "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

const TWO: &str = MAIN_AND_SLOW;

fn seeded(t: &Project, seeds: &str) {
    let files = write_data(&t.dir().join("data"));
    let text = tiny_study(&files, TWO, "main").replace(
        "    variants:\n",
        &format!("    seeds: {seeds}\n    variants:\n"),
    );
    fs::write(t.dir().join("pipeline.yaml"), text).unwrap();
}

fn json(t: &Project, rel: &str) -> serde_json::Value {
    serde_json::from_str(&t.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn seeds_replicate_every_variant_and_compare_aggregates_them() {
    let t = Project::new();
    seeded(&t, "[1, 2, 3]");
    let out = t.run(&["run"]).ok().text();
    // download, preprocess, 2 variants x 3 seeds x (train, evaluate), compare.
    assert!(out.contains("15 ran, 0 cached, 0 failed"), "{out}");
    for h in [
        "across seeds",
        "paired t p",
        "Holm p",
        "verdict",
        "main (ref)",
    ] {
        assert!(out.contains(h), "`{h}` in the table:\n{out}");
    }
    let table = json(&t, "outputs/compare/table.json");
    let variants = table["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    let (main, slow) = (&variants[0], &variants[1]);
    assert_eq!(main["variant"], "main");
    assert_eq!(main["verdict"], "reference");
    assert_eq!(slow["seeds"], 3);
    assert_eq!(slow["test"], "paired t");
    // Every figure again from the evaluate stages' own metrics.
    let acc = |v: &str, s: u64| {
        json(&t, &format!("outputs/evaluate@{v}~seed{s}/metrics.json"))["metrics"]["accuracy"]
            .as_f64()
            .unwrap()
    };
    let slow_acc: Vec<f64> = (1..=3).map(|s| acc("slow", s)).collect();
    let mean = slow_acc.iter().sum::<f64>() / 3.0;
    let sd = (slow_acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    let half = 4.302_652_73 * sd / 3f64.sqrt(); // t(0.975, 2 df)
    let close = |a: &serde_json::Value, b: f64| {
        assert!((a.as_f64().unwrap() - b).abs() < 1e-9, "{a} vs {b}")
    };
    close(&slow["accuracy_mean"], mean);
    // The t interval, cut at the bounds an accuracy can take.
    close(&slow["accuracy_ci95"][0], (mean - half).max(0.0));
    close(&slow["accuracy_ci95"][1], (mean + half).min(1.0));
    let d: Vec<f64> = (1..=3).map(|s| acc("slow", s) - acc("main", s)).collect();
    close(&slow["delta_vs_reference"], d.iter().sum::<f64>() / 3.0);
    // One comparison in the table: Holm leaves its p as it is.
    assert_eq!(slow["p_value"], slow["p_adjusted"]);
    assert!(["better", "worse", "no detectable difference"]
        .contains(&slow["verdict"].as_str().unwrap()));
    assert!(t.path("outputs/compare/forest.svg").is_file());
    let csv = t.read("outputs/compare/table.csv");
    assert!(csv.starts_with("variant,seeds,accuracy_mean,"), "{csv}");

    // Naming the group names every seed of it.
    let out = t
        .run(&["run", "--dry-run", "--force", "train@main", "train@main"])
        .ok()
        .text();
    for s in 1..=3 {
        assert!(out.contains(&format!("train@main~seed{s}")), "{out}");
    }
    assert!(!out.contains("train@slow"), "{out}");
    // A fourth seed trains and evaluates only the new replicates.
    seeded(&t, "[1, 2, 3, 4]");
    let mut done = ran(&t.run(&["run"]).ok().text());
    done.sort();
    assert_eq!(
        done,
        [
            "compare",
            "evaluate@main~seed4",
            "evaluate@slow~seed4",
            "train@main~seed4",
            "train@slow~seed4",
        ]
        .map(String::from)
        .to_vec()
    );
    let table = json(&t, "outputs/compare/table.json");
    assert_eq!(table["variants"][1]["seeds"], 4);
}

#[test]
fn a_grid_expands_to_named_variants_and_crosses_named_ones() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    let text = tiny_study(&files, TWO, "main+lr=0.01+batch_size=big")
        .replace(
            "    variants:\n",
            "    matrix: {lr: [0.01, 0.001], batch_size: {small: 16, big: 64}}\n    variants:\n",
        )
        .replace(
            "      slow: {lr: 0.0003}\n",
            "      flip: {augment: [{hflip: 0.5}]}\n",
        );
    fs::write(t.dir().join("pipeline.yaml"), text).unwrap();
    let out = t.run(&["dag"]).ok().stdout();
    for v in [
        "main+lr=0.01+batch_size=small",
        "main+lr=0.01+batch_size=big",
        "main+lr=0.001+batch_size=small",
        "main+lr=0.001+batch_size=big",
        "flip+lr=0.001+batch_size=big",
    ] {
        assert!(out.contains(&format!("train@{v} ")), "train@{v}:\n{out}");
        assert!(
            out.contains(&format!("evaluate@{v} ")),
            "evaluate@{v}:\n{out}"
        );
    }
    assert_eq!(out.matches("  train@").count(), 8, "{out}");
}

#[test]
fn one_seed_per_variant_keeps_the_mcnemar_table_and_says_seeds_were_not_replicated() {
    let t = tiny_project(|s| s);
    let out = t.run(&["run"]).ok().text();
    assert!(
        out.contains("McNemar p") && !out.contains("paired t"),
        "{out}"
    );
    assert!(out.contains("Seeds were not replicated"), "{out}");
    let table = json(&t, "outputs/compare/table.json");
    let slow = &table["variants"][1];
    assert_eq!(slow["seeds"], 1);
    assert_eq!(slow["test"], "McNemar exact");
    assert!(slow["accuracy_ci95"].as_array().unwrap().len() == 2);
    assert_eq!(slow["p_value"], slow["p_adjusted"]);
}

#[test]
fn evaluate_finds_its_dataset_through_the_model_it_evaluates() {
    let t = tiny_project(|s| {
        let text = s.replace(
            "    foreach: train\n    needs: [preprocess]\n",
            "    foreach: train\n",
        );
        assert!(!text.contains("foreach: train\n    needs"));
        text
    });
    t.run(&["run"]).ok().has("7 ran, 0 cached, 0 failed");
}

/// A grid over two axes with seeds: the comparison adds each axis value's
/// main effect and the pivot of the two axes; the reference is given by
/// the parameters that select it, and survives a third axis.
#[test]
fn a_grid_gets_main_effects_a_pivot_and_a_reference_by_parameters() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    let text = tiny_study(&files, TWO, "REF")
        .replace(
            "    variants:\n      main: {}\n      slow: {lr: 0.0003}\n",
            "    seeds: [1, 2]\n    matrix:\n      lr: [0.003, 0.001]\n      batch_size: [16, 32]\n",
        )
        .replace("reference: REF", "reference: {lr: 0.001}")
        // Two epochs: a curve, and a band around it.
        .replace("      epochs: 1\n", "      epochs: 2\n");
    assert!(text.contains("matrix") && text.contains("{lr: 0.001}") && text.contains("epochs: 2"));
    fs::write(t.dir().join("pipeline.yaml"), &text).unwrap();
    let out = t.run(&["run"]).ok().text();
    // The stage's batch_size is 32: that is the reference's.
    assert!(out.contains("lr=0.001+batch_size=32 (ref)"), "{out}");
    assert!(out.contains("Main effects of the grid"), "{out}");
    let table = json(&t, "outputs/compare/table.json");
    let effects = &table["sections"][0];
    let rows: Vec<Vec<String>> = serde_json::from_value(effects["rows"].clone()).unwrap();
    let keys: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("lr", "0.003", "2", "4"),
            ("lr", "0.001", "2", "4"),
            ("batch_size", "16", "2", "4"),
            ("batch_size", "32", "2", "4"),
        ]
    );
    // Each mean is the mean of its four models' accuracies.
    let acc = |v: &str, s: u64| {
        json(&t, &format!("outputs/evaluate@{v}~seed{s}/metrics.json"))["metrics"]["accuracy"]
            .as_f64()
            .unwrap()
    };
    let lr3: f64 = ["lr=0.003+batch_size=16", "lr=0.003+batch_size=32"]
        .iter()
        .flat_map(|v| [acc(v, 1), acc(v, 2)])
        .sum::<f64>()
        / 4.0;
    assert_eq!(rows[0][4], format!("{:.2}%", lr3 * 100.0));
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        assert!(t.path("outputs/compare/pivot.svg").exists());
        assert!(t.read("outputs/compare/index.html").contains("pivot"));
        // Curves over seeds: the mean, and a band from the lowest seed to the highest.
        let curves = t.read("outputs/compare/validation_curves.svg");
        assert!(curves.contains("(mean of 2 seeds)"), "{curves}");
        assert!(curves.contains("<polygon"), "a band is drawn");
    } else {
        skip(
            Lacks::Font,
            "no font for the charts: the pivot chart is not checked",
        );
    }
    assert!(t
        .read("outputs/compare/table.md")
        .contains("Main effects of the grid"));
    // A third axis: the reference still resolves (epochs at the stage's 2).
    t.edit_pipeline(
        "      batch_size: [16, 32]\n",
        "      batch_size: [16, 32]\n      epochs: [1, 2]\n",
    );
    t.run(&["status"]).ok();
    let out = t.run(&["run", "--dry-run"]).ok().text();
    assert!(out.contains("compare"), "{out}");
    // Parameters that select none, or several, are refused at load.
    t.edit_pipeline("reference: {lr: 0.001}", "reference: {lr: 0.5}");
    t.run(&["status"])
        .exits(2)
        .has("no compared variant is its stage's parameters with {lr: 0.5}");
    t.edit_pipeline("reference: {lr: 0.5}", "reference: {lrr: 0.001}");
    t.run(&["status"])
        .exits(2)
        .has("reference sets `lrr`, which is not a parameter of stage `train`");
}
