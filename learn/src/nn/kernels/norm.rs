//! Batch normalization: statistics in fixed chunks summed in order.

use rayon::prelude::*;

/// Rows summed in flight together.
pub(super) const LANES: usize = 8;

/// For each row `x[start..start + len]`: its sum and, if `SQ`, the sum of
/// its squares, each accumulated left to right from zero in f32 (the
/// values a plain fold gives), computed for eight rows at once so that
/// their additions overlap instead of each waiting on the last.
pub(super) fn sums<const SQ: bool>(x: &[f32], starts: &[usize], len: usize) -> Vec<(f32, f32)> {
    let mut out = Vec::with_capacity(starts.len());
    for group in starts.chunks(LANES) {
        // A short last group repeats its first row; those sums are dropped.
        let rows: [&[f32]; LANES] =
            std::array::from_fn(|j| &x[*group.get(j).unwrap_or(&group[0])..][..len]);
        let (mut s, mut q) = ([0.0f32; LANES], [0.0f32; LANES]);
        // Position-major on purpose: the eight rows' adds interleave.
        #[allow(clippy::needless_range_loop)]
        for p in 0..len {
            for j in 0..LANES {
                let v = rows[j][p];
                s[j] += v;
                if SQ {
                    q[j] += v * v;
                }
            }
        }
        out.extend((0..group.len()).map(|j| (s[j], q[j])));
    }
    out
}

/// Batch normalization over N, H, W per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNorm {
    pub c: usize,
    pub hw: usize,
}

pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;

impl BatchNorm {
    /// Per-channel (mean, biased variance) of the batch.
    pub(in crate::nn) fn stats(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let m = (n * self.hw) as f64;
        (0..self.c)
            .into_par_iter()
            .map(|c| {
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                let planes: Vec<usize> = (0..n).map(|i| (i * self.c + c) * self.hw).collect();
                for (a, b) in sums::<true>(x, &planes, self.hw) {
                    s += a as f64;
                    s2 += b as f64;
                }
                let mean = s / m;
                ((mean) as f32, (s2 / m - mean * mean).max(0.0) as f32)
            })
            .unzip()
    }

    /// The batch's per-channel mean and 1/std, the running statistics
    /// updated with them.
    pub(in crate::nn) fn batch_stats(
        &self,
        x: &[f32],
        n: usize,
        running_mean: &mut [f32],
        running_var: &mut [f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (mean, var) = self.stats(x, n);
        let m = (n * self.hw) as f32;
        let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        for c in 0..self.c {
            running_mean[c] = (1.0 - BN_MOMENTUM) * running_mean[c] + BN_MOMENTUM * mean[c];
            running_var[c] = (1.0 - BN_MOMENTUM) * running_var[c] + BN_MOMENTUM * var[c] * unbias;
        }
        let invstd = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
        (mean, invstd)
    }

    /// Training: normalizes with batch statistics, updates the running
    /// ones, returns (y, xhat, invstd) — the last two for backward.
    pub fn forward_train(
        &self,
        x: &[f32],
        n: usize,
        gamma: &[f32],
        beta: &[f32],
        running_mean: &mut [f32],
        running_var: &mut [f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (mean, invstd) = self.batch_stats(x, n, running_mean, running_var);
        let mut xhat = vec![0.0f32; x.len()];
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(self.hw)
            .zip(xhat.par_chunks_mut(self.hw))
            .zip(x.par_chunks(self.hw))
            .enumerate()
            .for_each(|(p, ((yp, hp), xp))| {
                let c = p % self.c;
                let (mu, is, g, b) = (mean[c], invstd[c], gamma[c], beta[c]);
                for ((yv, hv), &xv) in yp.iter_mut().zip(hp.iter_mut()).zip(xp) {
                    *hv = (xv - mu) * is;
                    *yv = g * *hv + b;
                }
            });
        (y, xhat, invstd)
    }

    /// Inference: normalizes with the running statistics.
    pub fn forward_eval(
        &self,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        running_mean: &[f32],
        running_var: &[f32],
    ) -> Vec<f32> {
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(self.hw)
            .zip(x.par_chunks(self.hw))
            .enumerate()
            .for_each(|(p, (yp, xp))| {
                let c = p % self.c;
                let scale = gamma[c] / (running_var[c] + BN_EPS).sqrt();
                let shift = beta[c] - running_mean[c] * scale;
                for (yv, &xv) in yp.iter_mut().zip(xp) {
                    *yv = xv * scale + shift;
                }
            });
        y
    }

    /// (dx, dgamma, dbeta).
    pub fn backward(
        &self,
        n: usize,
        xhat: &[f32],
        invstd: &[f32],
        gamma: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (sdy, sdyx): (Vec<f32>, Vec<f32>) = (0..self.c)
            .into_par_iter()
            .map(|c| {
                let (mut a, mut b) = (0.0f64, 0.0f64);
                for i in 0..n {
                    let off = (i * self.c + c) * self.hw;
                    let (g, h) = (&dy[off..off + self.hw], &xhat[off..off + self.hw]);
                    let (s1, s2) = g
                        .iter()
                        .zip(h)
                        .fold((0.0f32, 0.0f32), |(s1, s2), (&gv, &hv)| {
                            (s1 + gv, s2 + gv * hv)
                        });
                    a += s1 as f64;
                    b += s2 as f64;
                }
                (a as f32, b as f32)
            })
            .unzip();
        let m = (n * self.hw) as f32;
        let mut dx = vec![0.0f32; dy.len()];
        dx.par_chunks_mut(self.hw)
            .zip(dy.par_chunks(self.hw))
            .zip(xhat.par_chunks(self.hw))
            .enumerate()
            .for_each(|(p, ((dxp, dyp), hp))| {
                let c = p % self.c;
                let k = gamma[c] * invstd[c] / m;
                let (a, b) = (sdy[c], sdyx[c]);
                for ((d, &g), &h) in dxp.iter_mut().zip(dyp).zip(hp) {
                    *d = k * (m * g - a - h * b);
                }
            });
        (dx, sdyx, sdy)
    }
}
