//! A convolution block, conv → [batch norm] → [ReLU] → [max pool], on
//! plain slices, in as few passes over memory as its arithmetic allows.
//! Only the convolution's output is kept for backward: the normalized and
//! rectified activations are recomputed from it plane by plane while the
//! plane is in cache, and pooling reads each plane as it is made. Every
//! value is computed by the same expression, in the same order, as by the
//! separate kernels in `kernels`, so the results are bit-identical to them
//! (tested below).

use super::kernels::{BatchNorm, Conv, Pool, BN_EPS};
use rayon::prelude::*;

/// The images a block runs on (`n` of them) and its convolution's
/// weights.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub w: &'a [f32],
}

/// A block's gradients; dγ and dβ are empty without batch norm.
#[derive(Debug)]
pub struct Grads {
    /// Where asked for.
    pub dx: Option<Vec<f32>>,
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
}

/// What follows the convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    pub conv: Conv,
    pub bn: bool,
    pub relu: bool,
    pub pool: Option<usize>,
}

/// The kernel of a fused block of the model (its parameter indices aside).
impl From<super::ops::Block> for Block {
    fn from(b: super::ops::Block) -> Block {
        Block {
            conv: b.conv,
            bn: b.bn.is_some(),
            relu: b.relu,
            pool: b.pool,
        }
    }
}

/// Batch norm's parameters and running statistics as the block uses them.
pub enum Norm<'a> {
    /// Batch statistics; the running ones are updated.
    Train {
        gamma: &'a [f32],
        beta: &'a [f32],
        running_mean: &'a mut [f32],
        running_var: &'a mut [f32],
    },
    /// The running statistics.
    Eval {
        gamma: &'a [f32],
        beta: &'a [f32],
        running_mean: &'a [f32],
        running_var: &'a [f32],
    },
}

/// What backward needs: the convolution's output, the batch statistics
/// (empty without batch norm) and, with pooling, each output's argmax.
#[derive(Debug, Default)]
pub struct Saved {
    pub a: Vec<f32>,
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    pub arg: Vec<u32>,
}

/// A channel's affine map before ReLU.
#[derive(Clone, Copy)]
enum Affine {
    Identity,
    /// Training: γ·((v − μ)·σ⁻¹) + β, as `BatchNorm::forward_train`.
    Batch {
        mu: f32,
        is: f32,
        g: f32,
        b: f32,
    },
    /// Inference: v·scale + shift, as `BatchNorm::forward_eval`.
    Running {
        scale: f32,
        shift: f32,
    },
}

impl Block {
    fn planes(&self) -> (usize, usize) {
        (self.conv.oh() * self.conv.ow(), self.conv.o)
    }

    fn pool_geometry(&self) -> Option<Pool> {
        self.pool.map(|k| Pool {
            c: self.conv.o,
            h: self.conv.oh(),
            w: self.conv.ow(),
            k,
        })
    }

    /// Floats in the block's output for `n` images.
    pub fn out_len(&self, n: usize) -> usize {
        match self.pool_geometry() {
            Some(p) => n * p.c * p.oh() * p.ow(),
            None => n * self.conv.o * self.conv.oh() * self.conv.ow(),
        }
    }

    /// Forward for `n` images into `out` (length [`Self::out_len`]).
    /// `saved.a` and `saved.arg` are work buffers of any contents, resized
    /// here; on return `saved` holds what [`Self::backward`] needs.
    pub fn forward(
        &self,
        on: Batch<'_>,
        b: &[f32],
        norm: Option<Norm>,
        out: &mut [f32],
        saved: &mut Saved,
    ) {
        let Batch { x, n, w } = on;
        let (hw, o) = self.planes();
        let g = self.conv;
        saved.a.resize(n * o * hw, 0.0);
        g.forward(x, n, w, Some(b), &mut saved.a);
        let affine: Vec<Affine> = match norm {
            None => vec![Affine::Identity; o],
            Some(Norm::Train {
                gamma,
                beta,
                running_mean,
                running_var,
            }) => {
                let bn = BatchNorm { c: o, hw };
                let (mean, invstd) = bn.batch_stats(&saved.a, n, running_mean, running_var);
                let affine = (0..o)
                    .map(|c| Affine::Batch {
                        mu: mean[c],
                        is: invstd[c],
                        g: gamma[c],
                        b: beta[c],
                    })
                    .collect();
                (saved.mean, saved.invstd) = (mean, invstd);
                affine
            }
            Some(Norm::Eval {
                gamma,
                beta,
                running_mean,
                running_var,
            }) => (0..o)
                .map(|c| {
                    let scale = gamma[c] / (running_var[c] + BN_EPS).sqrt();
                    let shift = beta[c] - running_mean[c] * scale;
                    Affine::Running { scale, shift }
                })
                .collect(),
        };
        let relu = self.relu;
        match self.pool_geometry() {
            None => {
                out.par_chunks_mut(hw)
                    .zip(saved.a.par_chunks(hw))
                    .enumerate()
                    .for_each(|(p, (yp, ap))| activate(affine[p % o], relu, ap, yp));
            }
            Some(pl) => {
                let ohw = pl.oh() * pl.ow();
                saved.arg.resize(n * o * ohw, 0);
                out.par_chunks_mut(ohw)
                    .zip(saved.arg.par_chunks_mut(ohw))
                    .zip(saved.a.par_chunks(hw))
                    .enumerate()
                    .for_each_init(
                        || vec![0.0f32; hw],
                        |act, (p, ((yp, gp), ap))| {
                            activate(affine[p % o], relu, ap, act);
                            pl.plane_forward(act, yp, gp);
                        },
                    );
            }
        }
    }

    /// Backward from the output gradient `dy` (consumed; its storage is
    /// reused when there is no pooling), with `work` a buffer of any
    /// contents to reuse.
    pub fn backward(
        &self,
        on: Batch<'_>,
        norm: Option<(&[f32], &[f32])>,
        saved: &Saved,
        (dy, work): (Vec<f32>, Vec<f32>),
        need_dx: bool,
    ) -> Grads {
        let Batch { x, n, w } = on;
        let (hw, o) = self.planes();
        // Training's affine map, as forward applied it.
        let affine = |c: usize| match norm {
            Some((gm, bt)) => Affine::Batch {
                mu: saved.mean[c],
                is: saved.invstd[c],
                g: gm[c],
                b: bt[c],
            },
            None => Affine::Identity,
        };
        let mut d = match self.pool_geometry() {
            None => dy,
            Some(pl) => {
                let ohw = pl.oh() * pl.ow();
                let mut d = work;
                d.resize(n * o * hw, 0.0);
                d.par_chunks_mut(hw)
                    .zip(saved.arg.par_chunks(ohw))
                    .zip(dy.par_chunks(ohw))
                    .for_each(|((dp, ap), gp)| pl.plane_backward(ap, gp, dp));
                d
            }
        };
        let relu = self.relu;
        // Per plane: the ReLU mask, and batch norm's two partial sums.
        let partial: Vec<(f32, f32)> = d
            .par_chunks_mut(hw)
            .zip(saved.a.par_chunks(hw))
            .enumerate()
            .map(|(p, (dp, ap))| {
                let f = affine(p % o);
                if relu {
                    mask(f, ap, dp);
                }
                match f {
                    Affine::Batch { mu, is, .. } => dp
                        .iter()
                        .zip(ap)
                        .fold((0.0f32, 0.0f32), |(s1, s2), (&gv, &av)| {
                            (s1 + gv, s2 + gv * ((av - mu) * is))
                        }),
                    _ => (0.0, 0.0),
                }
            })
            .collect();
        let (mut dgamma, mut dbeta) = (Vec::new(), Vec::new());
        if let Some((gm, _)) = norm {
            // Channel sums in image order, in f64, as `BatchNorm::backward`.
            (dbeta, dgamma) = (0..o)
                .map(|c| {
                    let (mut s1, mut s2) = (0.0f64, 0.0f64);
                    for i in 0..n {
                        let (a, b) = partial[i * o + c];
                        s1 += a as f64;
                        s2 += b as f64;
                    }
                    (s1 as f32, s2 as f32)
                })
                .unzip();
            let m = (n * hw) as f32;
            let (sdy, sdyx) = (&dbeta, &dgamma);
            d.par_chunks_mut(hw)
                .zip(saved.a.par_chunks(hw))
                .enumerate()
                .for_each(|(p, (dp, ap))| {
                    let c = p % o;
                    let (mu, is) = (saved.mean[c], saved.invstd[c]);
                    let k = gm[c] * is / m;
                    let (a, b) = (sdy[c], sdyx[c]);
                    for (dv, &av) in dp.iter_mut().zip(ap) {
                        let h = (av - mu) * is;
                        *dv = k * (m * *dv - a - h * b);
                    }
                });
        }
        let (dx, dw, db) = self.conv.backward(x, n, w, &d, need_dx);
        Grads {
            dx,
            dw,
            db,
            dgamma,
            dbeta,
        }
    }
}

/// One plane's gradient through ReLU: zero where ReLU's output, as
/// forward computed it (`max(f(a), 0)`), is not positive. Each case is its
/// own branch-free loop so that it vectorizes.
fn mask(f: Affine, a: &[f32], d: &mut [f32]) {
    fn run(a: &[f32], d: &mut [f32], f: impl Fn(f32) -> f32) {
        for (dv, &av) in d.iter_mut().zip(a) {
            // max(x, 0) ≤ 0 exactly when x > 0 fails (NaN included).
            *dv = if f(av) > 0.0 { *dv } else { 0.0 };
        }
    }
    match f {
        Affine::Identity => run(a, d, |v| v),
        Affine::Batch { mu, is, g, b } => run(a, d, |v| g * ((v - mu) * is) + b),
        Affine::Running { scale, shift } => run(a, d, |v| v * scale + shift),
    }
}

/// One plane's activations: the affine map, then ReLU if asked. Each case
/// is its own loop so that it vectorizes.
fn activate(f: Affine, relu: bool, a: &[f32], y: &mut [f32]) {
    fn run(a: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
        for (yv, &av) in y.iter_mut().zip(a) {
            *yv = f(av);
        }
    }
    match (f, relu) {
        (Affine::Identity, false) => y.copy_from_slice(a),
        (Affine::Identity, true) => run(a, y, |v| v.max(0.0)),
        (Affine::Batch { mu, is, g, b }, r) => {
            if r {
                run(a, y, |v| (g * ((v - mu) * is) + b).max(0.0))
            } else {
                run(a, y, |v| g * ((v - mu) * is) + b)
            }
        }
        (Affine::Running { scale, shift }, r) => {
            if r {
                run(a, y, |v| (v * scale + shift).max(0.0))
            } else {
                run(a, y, |v| v * scale + shift)
            }
        }
    }
}
