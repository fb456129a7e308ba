//! Classification metrics from predicted probabilities, and the
//! statistics of comparisons (Wilson intervals, McNemar's exact test).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
    /// One-vs-rest ROC AUC; `None` (null in JSON) when the test set has no
    /// example of the class, or only examples of it: then it is undefined.
    pub auc: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub test_images: usize,
    pub accuracy: f64,
    pub loss: f64,
    pub top2_accuracy: f64,
    /// Expected calibration error, 15 equal-width confidence bins.
    pub ece: f64,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    /// Mean of the defined per-class AUCs; `None` when none is defined.
    pub macro_auc: Option<f64>,
    pub per_class: Vec<ClassMetrics>,
    /// confusion[true][predicted].
    pub confusion: Vec<Vec<usize>>,
}

pub use learn::softmax;

pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > row[b] { i } else { b })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// All metrics from probabilities (n×classes) and true labels.
pub fn compute(probs: &[f32], labels: &[u8], names: &[&str]) -> Metrics {
    let k = names.len();
    let n = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let (mut loss, mut top2) = (0.0f64, 0usize);
    let mut bins = vec![(0usize, 0.0f64, 0usize); 15]; // count, confidence sum, correct
    for (row, &y) in probs.chunks(k).zip(labels) {
        let pred = argmax(row);
        confusion[y as usize][pred] += 1;
        loss -= (row[y as usize].max(1e-12) as f64).ln();
        let second = row
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != pred)
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
        top2 += usize::from(pred == y as usize || second == y as usize);
        let conf = row[pred] as f64;
        let b = ((conf * 15.0) as usize).min(14);
        bins[b].0 += 1;
        bins[b].1 += conf;
        bins[b].2 += usize::from(pred == y as usize);
    }
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let ece = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(cnt, conf, ok)| {
            (ok as f64 / cnt as f64 - conf / cnt as f64).abs() * cnt as f64 / n as f64
        })
        .sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted as f64);
            let recall = ratio(tp, support as f64);
            let scores: Vec<(f32, bool)> = probs
                .chunks(k)
                .zip(labels)
                .map(|(r, &y)| (r[c], y as usize == c))
                .collect();
            ClassMetrics {
                class: c,
                name: names[c].to_string(),
                precision,
                recall,
                f1: ratio(2.0 * precision * recall, precision + recall),
                support,
                auc: auc(&scores),
            }
        })
        .collect();
    let avg = |w: &dyn Fn(&ClassMetrics) -> f64| {
        let total: f64 = per_class.iter().map(w).sum();
        Averages {
            precision: ratio(per_class.iter().map(|m| m.precision * w(m)).sum(), total),
            recall: ratio(per_class.iter().map(|m| m.recall * w(m)).sum(), total),
            f1: ratio(per_class.iter().map(|m| m.f1 * w(m)).sum(), total),
        }
    };
    Metrics {
        test_images: n,
        accuracy: ratio(correct as f64, n as f64),
        loss: ratio(loss, n as f64),
        top2_accuracy: ratio(top2 as f64, n as f64),
        ece,
        macro_avg: avg(&|_| 1.0),
        weighted_avg: avg(&|m| m.support as f64),
        macro_auc: {
            let defined: Vec<f64> = per_class.iter().filter_map(|m| m.auc).collect();
            (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
        },
        per_class,
        confusion,
    }
}

/// Area under the ROC curve: the probability that a random positive
/// scores above a random negative (ties count half). `None` without both
/// positives and negatives.
pub fn auc(scores: &[(f32, bool)]) -> Option<f64> {
    let mut s: Vec<(f32, bool)> = scores.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (pos, neg) = (
        s.iter().filter(|x| x.1).count() as f64,
        s.iter().filter(|x| !x.1).count() as f64,
    );
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Sum of positive ranks, ties given their average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < s.len() {
        let mut j = i;
        while j < s.len() && s[j].0 == s[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += s[i..j].iter().filter(|x| x.1).count() as f64 * avg_rank;
        i = j;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// ROC curve points (false positive rate, true positive rate), at most
/// `max_points` of them, from (0,0) to (1,1).
pub fn roc_curve(scores: &[(f32, bool)], max_points: usize) -> Vec<(f64, f64)> {
    let mut s: Vec<(f32, bool)> = scores.to_vec();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = s.iter().filter(|x| x.1).count().max(1) as f64;
    let neg = s.iter().filter(|x| !x.1).count().max(1) as f64;
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let step = (s.len() / max_points.max(1)).max(1);
    for (i, x) in s.iter().enumerate() {
        if x.1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = i + 1 == s.len() || s[i + 1].0 != x.0;
        if last_of_tie && (i % step == 0 || i + 1 == s.len()) {
            pts.push((fp / neg, tp / pos));
        }
    }
    pts
}

/// Wilson score interval for a proportion (95% with z = 1.96).
pub fn wilson(successes: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let d = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / d;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// McNemar's exact test: two-sided binomial p-value for the discordant
/// pairs (`b`: only the first right, `c`: only the second right).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), in logs to stay finite for large n.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_binom = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_binom += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_binom + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_known_values() {
        let perfect = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
        assert_eq!(auc(&perfect), Some(1.0));
        let inverted = [(0.1, true), (0.9, false)];
        assert_eq!(auc(&inverted), Some(0.0));
        let ties = [(0.5, true), (0.5, false)];
        assert_eq!(auc(&ties), Some(0.5));
        // 3 positives, 2 negatives: 4 of the 6 pairs ranked right.
        let mixed = [
            (0.9, true),
            (0.7, false),
            (0.6, true),
            (0.4, true),
            (0.2, false),
        ];
        assert!((auc(&mixed).unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(auc(&[(0.3, true), (0.9, true)]), None);
        let roc = roc_curve(&mixed, 100);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn mcnemar_matches_the_binomial() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b=1, c=5: 2·(C(6,0)+C(6,1))/64 = 14/64.
        assert!((mcnemar_exact(1, 5) - 14.0 / 64.0).abs() < 1e-12);
        assert!((mcnemar_exact(5, 1) - 14.0 / 64.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert!(mcnemar_exact(10, 100) < 1e-15);
        assert!(mcnemar_exact(400, 600) > 0.0);
    }

    #[test]
    fn wilson_interval() {
        let (lo, hi) = wilson(90, 100, 1.96);
        assert!(
            (lo - 0.8256).abs() < 1e-3 && (hi - 0.9448).abs() < 1e-3,
            "{lo} {hi}"
        );
    }

    #[test]
    fn metrics_on_a_small_case() {
        let names = ["a", "b", "c"];
        // Predictions: 0->0, 0->1, 1->1, 2->2 (probabilities favour the predicted class).
        let probs = [0.8, 0.1, 0.1, 0.3, 0.6, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8];
        let m = compute(&probs, &[0, 0, 1, 2], &names);
        assert_eq!(
            m.confusion,
            vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 0, 1]]
        );
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.top2_accuracy, 1.0);
        assert_eq!(m.per_class[0].precision, 1.0);
        assert_eq!(m.per_class[0].recall, 0.5);
        assert_eq!(m.per_class[1].precision, 0.5);
        assert!((m.macro_avg.f1 - (2.0 / 3.0 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
        assert!((m.weighted_avg.recall - 0.75).abs() < 1e-12);
        assert!(m.ece >= 0.0 && m.ece <= 1.0);
    }
}
