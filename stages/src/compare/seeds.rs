//! The comparison across seed replicates: per variant the mean and its
//! Student-t interval; against the reference the per-seed paired
//! difference, its interval, a paired t test, Holm's adjustment over the
//! table, and a verdict in words.

use super::{format_secs, known, row_label, verdict};
use crate::contract::{SeedResult, Table, VariantSummary};
use crate::format::group_digits;
use crate::stats::{holm, mean_sd, paired_t_p, t_interval95};

/// One replicate, as compare read it.
pub struct Replicate {
    pub result: SeedResult,
    pub parameters: Option<usize>,
    pub model_size_bytes: Option<usize>,
    pub training_seconds: Option<f64>,
    pub inference_img_per_s: Option<f64>,
}

/// The mean of figures every replicate knows; None if one does not.
fn mean_known(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Option<Vec<f64>> = values.collect();
    v.filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

/// A summary per variant (`groups[i]` with replicates `members[i]`).
pub fn summarize(
    groups: &[String],
    members: &[Vec<Replicate>],
    reference: usize,
) -> Vec<VariantSummary> {
    let by_seed = |m: &[Replicate], seed: Option<u64>| {
        m.iter()
            .find(|r| r.result.seed == seed)
            .map(|r| r.result.accuracy)
    };
    let mut out: Vec<VariantSummary> = groups
        .iter()
        .zip(members)
        .enumerate()
        .map(|(i, (g, m))| {
            let acc: Vec<f64> = m.iter().map(|r| r.result.accuracy).collect();
            let f1: Vec<f64> = m.iter().map(|r| r.result.macro_f1).collect();
            let (accuracy_mean, accuracy_sd) = mean_sd(&acc);
            // A t interval knows no bounds; an accuracy does.
            let clip = |(a, b): (f64, f64), lo: f64| [a.max(lo), b.min(1.0)];
            let ci = t_interval95(&acc).unwrap_or((accuracy_mean, accuracy_mean));
            // Differences paired by seed, over the seeds both have.
            let d: Vec<f64> = m
                .iter()
                .filter_map(|r| {
                    by_seed(&members[reference], r.result.seed).map(|a| r.result.accuracy - a)
                })
                .collect();
            let is_ref = i == reference;
            VariantSummary {
                variant: g.clone(),
                seeds: m.len(),
                per_seed: m.iter().map(|r| r.result.clone()).collect(),
                accuracy_mean,
                accuracy_sd,
                accuracy_ci95: clip(ci, 0.0),
                macro_f1_mean: mean_sd(&f1).0,
                macro_f1_ci95: t_interval95(&f1).map(|c| clip(c, 0.0)),
                delta_vs_reference: (!is_ref && !d.is_empty()).then(|| mean_sd(&d).0),
                delta_ci95: if is_ref {
                    None
                } else {
                    t_interval95(&d).map(|c| clip(c, -1.0))
                },
                paired_seeds: d.len(),
                test: (!is_ref).then(|| "paired t".to_string()),
                p_value: if is_ref { None } else { paired_t_p(&d) },
                p_adjusted: None,
                verdict: String::new(),
                parameters: m.first().and_then(|r| r.parameters),
                model_size_bytes: m.first().and_then(|r| r.model_size_bytes),
                training_seconds: mean_known(m.iter().map(|r| r.training_seconds)),
                inference_img_per_s: mean_known(m.iter().map(|r| r.inference_img_per_s)),
            }
        })
        .collect();
    adjust(&mut out, reference, "too few paired seeds");
    out
}

/// Holm over every p-value of the table, then each verdict.
pub fn adjust(rows: &mut [VariantSummary], reference: usize, untested: &str) {
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].p_value.is_some())
        .collect();
    let ps: Vec<f64> = tested.iter().filter_map(|&i| rows[i].p_value).collect();
    for (&i, adj) in tested.iter().zip(holm(&ps)) {
        rows[i].p_adjusted = Some(adj);
    }
    for (i, r) in rows.iter_mut().enumerate() {
        r.verdict = if i == reference {
            "reference".into()
        } else {
            match (r.p_adjusted, r.delta_vs_reference) {
                (Some(p), Some(d)) => verdict(p, d).into(),
                _ => untested.into(),
            }
        };
    }
}

fn pp(x: f64) -> String {
    format!("{:+.2}", x * 100.0)
}

/// The printed table.
pub fn render(rows: &[VariantSummary], reference: &str, test_images: usize) -> Table {
    let columns = [
        "variant",
        "seeds",
        "accuracy mean ± sd",
        "95% CI",
        "macro F1",
        "Δ acc vs ref [95% CI]",
        "paired t p",
        "Holm p",
        "verdict",
        "params",
        "train time",
        "infer img/s",
    ];
    let table_rows = rows
        .iter()
        .map(|r| {
            let is_ref = r.variant == reference;
            vec![
                row_label(&r.variant, is_ref),
                r.seeds.to_string(),
                match r.accuracy_sd {
                    Some(sd) => format!("{:.2}% ± {:.2}", r.accuracy_mean * 100.0, sd * 100.0),
                    None => format!("{:.2}%", r.accuracy_mean * 100.0),
                },
                if r.seeds > 1 {
                    format!(
                        "[{:.2}, {:.2}]",
                        r.accuracy_ci95[0] * 100.0,
                        r.accuracy_ci95[1] * 100.0
                    )
                } else {
                    "—".into()
                },
                format!("{:.4}", r.macro_f1_mean),
                match (is_ref, r.delta_vs_reference, r.delta_ci95) {
                    (true, _, _) | (_, None, _) => "—".into(),
                    (_, Some(d), Some([lo, hi])) => {
                        format!("{} pp [{}, {}]", pp(d), pp(lo), pp(hi))
                    }
                    (_, Some(d), None) => format!("{} pp", pp(d)),
                },
                r.p_value.map_or("—".into(), super::format_p),
                r.p_adjusted.map_or("—".into(), super::format_p),
                if is_ref {
                    "—".into()
                } else {
                    r.verdict.clone()
                },
                known(r.parameters, group_digits),
                known(r.training_seconds, format_secs),
                known(r.inference_img_per_s, |x| group_digits(x.round() as usize)),
            ]
        })
        .collect();
    let tested = rows.iter().filter(|r| r.p_value.is_some()).count();
    Table {
        title: format!(
            "Fashion-MNIST test set ({} images), reference: {reference}, across seeds",
            group_digits(test_images)
        ),
        columns: columns.iter().map(|s| s.to_string()).collect(),
        rows: table_rows,
        notes: vec![
            "Across seeds: each seed trains again from its own initialisation, batch order, augmentation and dropout. 95% CI: Student t over the seeds (n is small, so the intervals are wide), cut at the bounds an accuracy can take.".into(),
            format!("Δ: the mean of the per-seed differences to the reference (paired by seed), with its t interval; paired t p: two-sided test of that mean against 0; Holm p: adjusted for the {tested} comparisons in this table. Verdict: better or worse when the Holm p is below 0.05, else no detectable difference."),
            "Model selection used the validation split only; the test set was seen once per model, here.".into(),
        ],
        variants: rows.to_vec(),
        sections: Vec::new(),
    }
}

/// table.csv: one line per variant.
pub fn csv(rows: &[VariantSummary]) -> String {
    let mut s = String::from("variant,seeds,accuracy_mean,accuracy_sd,ci95_low,ci95_high,macro_f1_mean,delta_vs_reference,delta_ci95_low,delta_ci95_high,paired_seeds,p_value,p_adjusted,verdict,parameters,training_seconds_mean,inference_img_per_s_mean\n");
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
    for r in rows {
        s.push_str(&format!(
            "{},{},{:.6},{},{:.6},{:.6},{:.6},{},{},{},{},{},{},{},{},{},{}\n",
            r.variant,
            r.seeds,
            r.accuracy_mean,
            opt(r.accuracy_sd),
            r.accuracy_ci95[0],
            r.accuracy_ci95[1],
            r.macro_f1_mean,
            opt(r.delta_vs_reference),
            opt(r.delta_ci95.map(|c| c[0])),
            opt(r.delta_ci95.map(|c| c[1])),
            r.paired_seeds,
            r.p_value.map_or(String::new(), |p| format!("{p:.6e}")),
            r.p_adjusted.map_or(String::new(), |p| format!("{p:.6e}")),
            r.verdict,
            r.parameters.map_or(String::new(), |n| n.to_string()),
            r.training_seconds
                .map_or(String::new(), |t| format!("{t:.3}")),
            r.inference_img_per_s
                .map_or(String::new(), |x| format!("{x:.1}"))
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(seed: u64, accuracy: f64) -> Replicate {
        Replicate {
            result: SeedResult {
                seed: Some(seed),
                stage: format!("evaluate@x~seed{seed}"),
                accuracy,
                macro_f1: accuracy - 0.01,
            },
            parameters: Some(10),
            model_size_bytes: Some(40),
            training_seconds: Some(2.0 * seed as f64),
            inference_img_per_s: Some(100.0),
        }
    }

    #[test]
    fn differences_are_paired_by_seed_and_adjusted_over_the_table() {
        let groups = vec![
            "ref".to_string(),
            "up".into(),
            "same".into(),
            "alone".into(),
        ];
        let members = vec![
            vec![rep(1, 0.90), rep(2, 0.91), rep(3, 0.92)],
            // +1, +2, +1.5 pp in a different order: pairing is by seed.
            vec![rep(3, 0.935), rep(1, 0.91), rep(2, 0.93)],
            vec![rep(1, 0.91), rep(2, 0.90), rep(3, 0.92)],
            vec![rep(7, 0.5)],
        ];
        let s = summarize(&groups, &members, 0);
        assert_eq!(s[0].verdict, "reference");
        assert_eq!(s[0].p_value, None);
        assert!((s[0].accuracy_mean - 0.91).abs() < 1e-12);
        // sd 0.01, t(2) 4.302653: 0.91 ± 0.024841.
        let half = 4.302_652_730 * 0.01 / 3f64.sqrt();
        assert!((s[0].accuracy_ci95[0] - (0.91 - half)).abs() < 1e-9);
        let up = &s[1];
        assert_eq!(up.paired_seeds, 3);
        assert!((up.delta_vs_reference.unwrap() - 0.015).abs() < 1e-12);
        let p = 1.0 - (27f64 / 29.0).sqrt();
        assert!((up.p_value.unwrap() - p).abs() < 1e-9);
        // "same": d = +1, -1, 0 pp: mean 0, p = 1.
        assert!((s[2].p_value.unwrap() - 1.0).abs() < 1e-12);
        // Holm over the two tested rows: 0.0351 * 2 and max(1, ...) = 1.
        assert!((up.p_adjusted.unwrap() - 2.0 * p).abs() < 1e-9);
        assert_eq!(s[2].p_adjusted, Some(1.0));
        assert_eq!(up.verdict, "no detectable difference");
        assert_eq!(s[2].verdict, "no detectable difference");
        assert_eq!(s[3].verdict, "too few paired seeds");
        assert_eq!(s[3].paired_seeds, 0);
        assert!((up.training_seconds.unwrap() - 4.0).abs() < 1e-12);
        let t = render(&s, "ref", 10_000);
        assert_eq!(t.rows[1][5], "+1.50 pp [+0.26, +2.74]");
        assert_eq!(t.rows[1][8], "no detectable difference");
        assert!(csv(&s)
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("up,3,0.925000,"));
    }

    #[test]
    fn a_clear_difference_is_called_with_its_direction() {
        let groups = vec!["ref".to_string(), "worse".into()];
        let members = vec![
            vec![rep(1, 0.90), rep(2, 0.91), rep(3, 0.92), rep(4, 0.905)],
            vec![rep(1, 0.80), rep(2, 0.815), rep(3, 0.818), rep(4, 0.80)],
        ];
        let s = summarize(&groups, &members, 0);
        assert!(s[1].p_adjusted.unwrap() < 0.01);
        assert_eq!(s[1].verdict, "worse");
    }
}
