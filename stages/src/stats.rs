//! Statistics across seed replicates: Student-t intervals, the paired t
//! test, and Holm's adjustment for several comparisons in one table.
//!
//! The t distribution comes from the regularized incomplete beta function
//! (two-sided p = I_{ν/(ν+t²)}(ν/2, 1/2)), evaluated by its continued
//! fraction; the quantile by bisection on that.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms: ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series where it is accurate.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of I_x(a, b) (modified Lentz), for x below
/// (a+1)/(a+b+2), where it converges fast.
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(|T| >= |t|) for Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// The t such that P(|T| >= t) = `alpha` (0.05 gives the 97.5% quantile).
pub fn t_critical(alpha: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1e7f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_two_sided_p(mid, df) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Mean and sample standard deviation (n - 1); the deviation is None for
/// fewer than two values.
pub fn mean_sd(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(var.sqrt()))
}

/// The 95% Student-t interval of the mean; None for fewer than two values.
pub fn t_interval95(xs: &[f64]) -> Option<(f64, f64)> {
    let (mean, sd) = mean_sd(xs);
    let sd = sd?;
    let half = t_critical(0.05, xs.len() as f64 - 1.0) * sd / (xs.len() as f64).sqrt();
    Some((mean - half, mean + half))
}

/// The paired t test of differences `d` (variant minus reference, one per
/// seed): two-sided p. Identical differences have no spread: p is 1 when
/// they are all zero and 0 otherwise (t is infinite). None below two pairs.
pub fn paired_t_p(d: &[f64]) -> Option<f64> {
    let (mean, sd) = mean_sd(d);
    let sd = sd?;
    if sd == 0.0 {
        return Some(if mean == 0.0 { 1.0 } else { 0.0 });
    }
    let t = mean / (sd / (d.len() as f64).sqrt());
    Some(t_two_sided_p(t, d.len() as f64 - 1.0))
}

/// Holm's step-down adjustment: each p-value, adjusted for all of `ps`
/// being tested together, in the order given.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 5% critical values of Student's t.
        for (df, t) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (4.0, 2.776_445_105),
            (9.0, 2.262_157_163),
            (29.0, 2.045_229_642),
        ] {
            close(t_critical(0.05, df), t, 1e-6);
        }
    }

    #[test]
    fn t_p_values_in_closed_form() {
        // df = 2: P(|T| >= t) = 1 - t / sqrt(t² + 2).
        for t in [0.3f64, 1.0, 5.196_152_422_706_632, 20.0] {
            close(t_two_sided_p(t, 2.0), 1.0 - t / (t * t + 2.0).sqrt(), 1e-12);
        }
        // df = 1 is Cauchy: P = 1 - 2 atan(t) / π.
        close(
            t_two_sided_p(3.0, 1.0),
            1.0 - 2.0 * 3f64.atan() / std::f64::consts::PI,
            1e-12,
        );
        assert_eq!(t_two_sided_p(0.0, 5.0), 1.0);
    }

    #[test]
    fn a_paired_test_and_interval_by_hand() {
        // d = 1, 2, 1.5 (pp): mean 1.5, sd 0.5, se 0.5/√3, t = 3√3 = 5.196,
        // df 2: p = 1 - t/√(t²+2) = 1 - √27/√29 = 0.035098.
        let d = [0.01, 0.02, 0.015];
        let (m, sd) = mean_sd(&d);
        close(m, 0.015, 1e-15);
        close(sd.unwrap(), 0.005, 1e-15);
        close(paired_t_p(&d).unwrap(), 1.0 - (27f64 / 29.0).sqrt(), 1e-10);
        // 95% interval: 0.015 ± 4.302653 · 0.005/√3.
        let (lo, hi) = t_interval95(&d).unwrap();
        close(lo, 0.015 - 4.302_652_730 * 0.005 / 3f64.sqrt(), 1e-9);
        close(hi, 0.015 + 4.302_652_730 * 0.005 / 3f64.sqrt(), 1e-9);
        assert_eq!(paired_t_p(&[0.01]), None);
        assert_eq!(t_interval95(&[0.5]), None);
        assert_eq!(paired_t_p(&[0.0, 0.0]), Some(1.0));
        assert_eq!(paired_t_p(&[0.01, 0.01]), Some(0.0));
    }

    #[test]
    fn holm_by_hand() {
        // Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> made
        // monotone: 0.03, 0.06, 0.06.
        let adj = holm(&[0.01, 0.04, 0.03]);
        for (a, b) in adj.iter().zip([0.03, 0.06, 0.06]) {
            close(*a, b, 1e-15);
        }
        assert_eq!(holm(&[0.6, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }
}
