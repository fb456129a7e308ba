//! Max pooling, and its gradient to the position of each maximum.

use rayon::prelude::*;

/// Max pooling with a k×k window and stride k (floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl Pool {
    pub fn oh(&self) -> usize {
        self.h / self.k
    }
    pub fn ow(&self) -> usize {
        self.w / self.k
    }

    /// Returns the output and, per output, the index of the max in its plane.
    pub fn forward(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow, hw) = (self.oh(), self.ow(), self.h * self.w);
        let planes = n * self.c;
        let mut y = vec![0.0f32; planes * oh * ow];
        let mut arg = vec![0u32; planes * oh * ow];
        y.par_chunks_mut(oh * ow)
            .zip(arg.par_chunks_mut(oh * ow))
            .zip(x.par_chunks(hw))
            .for_each(|((yp, ap), xp)| self.plane_forward(xp, yp, ap));
        (y, arg)
    }

    /// One plane: each window's maximum (the first, among ties) and where
    /// it is in the plane.
    pub(in crate::nn) fn plane_forward(&self, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
        if self.k == 2 {
            return self.plane_forward_2x2(xp, yp, ap);
        }
        self.plane_forward_any(xp, yp, ap)
    }

    /// `plane_forward` for any window: a scan that keeps the first maximum.
    pub(super) fn plane_forward_any(&self, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
        let (oh, ow) = (self.oh(), self.ow());
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut at) = (f32::NEG_INFINITY, 0usize);
                for ky in 0..self.k {
                    let row = (oy * self.k + ky) * self.w;
                    for kx in 0..self.k {
                        let i = row + ox * self.k + kx;
                        if xp[i] > best {
                            best = xp[i];
                            at = i;
                        }
                    }
                }
                yp[oy * ow + ox] = best;
                ap[oy * ow + ox] = at as u32;
            }
        }
    }

    /// `plane_forward` for 2×2 windows, the same scan written without
    /// branches: which element wins depends on the data, so branches are
    /// mispredicted about as often as not.
    pub(super) fn plane_forward_2x2(&self, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
        let (oh, ow, w) = (self.oh(), self.ow(), self.w);
        for oy in 0..oh {
            let (r0, r1) = (2 * oy * w, (2 * oy + 1) * w);
            let (top, bottom) = (&xp[r0..][..2 * ow], &xp[r1..][..2 * ow]);
            let (yr, ar) = (&mut yp[oy * ow..][..ow], &mut ap[oy * ow..][..ow]);
            for ox in 0..ow {
                let (mut best, mut at) = (f32::NEG_INFINITY, 0u32);
                for (v, i) in [
                    (top[2 * ox], r0 + 2 * ox),
                    (top[2 * ox + 1], r0 + 2 * ox + 1),
                    (bottom[2 * ox], r1 + 2 * ox),
                    (bottom[2 * ox + 1], r1 + 2 * ox + 1),
                ] {
                    let gt = v > best;
                    best = if gt { v } else { best };
                    at = if gt { i as u32 } else { at };
                }
                yr[ox] = best;
                ar[ox] = at;
            }
        }
    }

    /// One plane's gradient: zero, with each output's gradient at its argmax.
    pub(in crate::nn) fn plane_backward(&self, ap: &[u32], gp: &[f32], dxp: &mut [f32]) {
        dxp.fill(0.0);
        for (&a, &g) in ap.iter().zip(gp) {
            dxp[a as usize] += g;
        }
    }

    pub fn backward(&self, n: usize, arg: &[u32], dy: &[f32]) -> Vec<f32> {
        let (ohw, hw) = (self.oh() * self.ow(), self.h * self.w);
        let mut dx = vec![0.0f32; n * self.c * hw];
        dx.par_chunks_mut(hw)
            .zip(arg.par_chunks(ohw))
            .zip(dy.par_chunks(ohw))
            .for_each(|((dxp, ap), dyp)| self.plane_backward(ap, dyp, dxp));
        dx
    }
}
