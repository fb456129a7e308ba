//! The model's layers once more, generic over dfdx's device and composed
//! only of operations whose CUDA kernels dfdx compiles at build time
//! (gather, reshape of contiguous tensors, permute, broadcast, reductions,
//! matmul, element-wise ops): the path that runs on a GPU, and on dfdx's
//! CPU device to verify it against the fast kernels of [`super::kernels`].
//!
//! Activations are kept channels-last, `(N, H·W·C)`: a convolution is a
//! gather of its windows and one matmul whose result is already
//! channels-last, so no transposing copy (which dfdx compiles at run time
//! on CUDA) is ever needed. `flatten` gathers back into the CPU kernels'
//! channels-first order, so the linear layers' weights are the same on
//! both paths and checkpoints are interchangeable.

use super::kernels::{Conv, Pool, BN_EPS, BN_MOMENTUM};
use super::model::{Model, Step, Tensor1};
use dfdx::prelude::*;

/// A batch of activations, channels-last, flattened per image.
pub type Act<D, T> = Tensor<(usize, usize), f32, D, T>;
/// A flat parameter vector, as the model stores it.
pub type Flat<D> = Tensor<(usize,), f32, D>;

/// A convolution's gather index and padding mask, built once per layer
/// and uploaded once.
#[derive(Debug, Clone)]
pub struct ConvPlan<D: Device<f32>> {
    pub g: Conv,
    /// For each output position, then each (c, ki, kj): the input element
    /// (channels-last) it reads; padded positions read element 0...
    idx: Tensor<(usize,), usize, D>,
    /// ...and are zeroed by this 0/1 mask.
    mask: Tensor<(usize,), f32, D>,
}

impl<D: Device<f32>> ConvPlan<D> {
    pub fn new(g: Conv, dev: &D) -> Self {
        let (oh, ow) = (g.oh(), g.ow());
        let ckk = g.c * g.k * g.k;
        let mut idx = Vec::with_capacity(oh * ow * ckk);
        let mut mask = Vec::with_capacity(oh * ow * ckk);
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..g.c {
                    for ki in 0..g.k {
                        for kj in 0..g.k {
                            let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                            let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                            let inside =
                                iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
                            if inside {
                                idx.push((iy as usize * g.w + ix as usize) * g.c + c);
                                mask.push(1.0);
                            } else {
                                idx.push(0);
                                mask.push(0.0);
                            }
                        }
                    }
                }
            }
        }
        let z = idx.len();
        ConvPlan {
            g,
            idx: dev.tensor_from_vec(idx, (z,)),
            mask: dev.tensor_from_vec(mask, (z,)),
        }
    }

    /// `x` (N, H·W·C) → (N, OH·OW·O); `w` holds (O, C, K, K) flat, as the
    /// CPU kernels store it.
    pub fn forward<T: Tape<f32, D> + Merge<NoneTape>>(
        &self,
        x: Act<D, T>,
        w: &Flat<D>,
        b: Option<&Flat<D>>,
    ) -> Act<D, T> {
        let g = self.g;
        let n = x.shape().0;
        let (ohw, ckk) = (g.oh() * g.ow(), g.c * g.k * g.k);
        let z = ohw * ckk;
        let idx = self.idx.clone().broadcast_like::<_, Axis<0>>(&(n, z));
        let cols = x.gather(idx) * self.mask.clone().broadcast_like::<_, Axis<0>>(&(n, z));
        let cols = cols.reshape_like(&(n, ohw, ckk));
        let wt = w
            .clone()
            .reshape_like(&(g.o, ckk))
            .permute::<(usize, usize), Axes2<1, 0>>();
        let y = cols.matmul(wt);
        let y = match b {
            Some(b) => y + b.clone().broadcast_like::<_, Axes2<0, 1>>(&(n, ohw, g.o)),
            None => y,
        };
        y.reshape_like(&(n, ohw * g.o))
    }
}

/// Max pooling, `k`×`k` windows with stride `k` (the rows and columns a
/// window does not cover are dropped): a reshape and a max over the two
/// window axes. dfdx sends the gradient to every tied maximum, the CPU
/// kernel to the first: they agree on inputs without ties.
pub fn maxpool<D: Device<f32>, T: Tape<f32, D>>(x: Act<D, T>, p: Pool) -> Act<D, T> {
    let n = x.shape().0;
    let (oh, ow) = (p.oh(), p.ow());
    let x = x.reshape_like(&(n, p.h, p.w, p.c));
    let x = if p.h != oh * p.k || p.w != ow * p.k {
        x.slice((.., ..oh * p.k, ..ow * p.k, ..))
    } else {
        x
    };
    x.reshape_like(&(n, oh, p.k, ow, p.k, p.c))
        .max::<(usize, usize, usize, usize), Axes2<2, 4>>()
        .reshape_like(&(n, oh * ow * p.c))
}

/// Batch norm over channels-last activations of `c` channels, in
/// training mode: normalised by the batch's statistics (biased variance).
/// Returns the output and the batch's mean and biased variance, for the
/// running statistics.
pub fn batchnorm_train<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Act<D, T>,
    c: usize,
    gamma: &Flat<D>,
    beta: &Flat<D>,
) -> (Act<D, T>, Flat<D>, Flat<D>) {
    let (n, len) = *x.shape();
    let shape = (n, len / c, c);
    let x = x.reshape_like(&shape);
    // The statistics are on the tape: the gradient flows through them.
    let mean = x.retaped::<T>().mean::<(usize,), Axes2<0, 1>>();
    let stats_mean = mean.retaped::<NoneTape>();
    let centered = x - mean.broadcast_like::<_, Axes2<0, 1>>(&shape);
    let var = centered
        .retaped::<T>()
        .square()
        .mean::<(usize,), Axes2<0, 1>>();
    let stats_var = var.retaped::<NoneTape>();
    let invstd = (var + BN_EPS).sqrt().recip();
    let scale = invstd * gamma.clone();
    let y = centered * scale.broadcast_like::<_, Axes2<0, 1>>(&shape)
        + beta.clone().broadcast_like::<_, Axes2<0, 1>>(&shape);
    (y.reshape_like(&(n, len)), stats_mean, stats_var)
}

/// Batch norm with the running statistics (evaluation).
pub fn batchnorm_eval<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Act<D, T>,
    c: usize,
    gamma: &Flat<D>,
    beta: &Flat<D>,
    mean: &Flat<D>,
    var: &Flat<D>,
) -> Act<D, T> {
    let (n, len) = *x.shape();
    let shape = (n, len / c, c);
    let scale = (var.clone() + BN_EPS).sqrt().recip() * gamma.clone();
    let shift = beta.clone() - mean.clone() * scale.clone();
    let y = x.reshape_like(&shape) * scale.broadcast_like::<_, Axes2<0, 1>>(&shape)
        + shift.broadcast_like::<_, Axes2<0, 1>>(&shape);
    y.reshape_like(&(n, len))
}

/// Channels-last `(H, W, C)` to the CPU kernels' channels-first order, so
/// that the first linear layer's weights mean the same on both paths.
#[derive(Debug, Clone)]
pub struct Flatten<D: Device<f32>> {
    idx: Tensor<(usize,), usize, D>,
}

impl<D: Device<f32>> Flatten<D> {
    pub fn new(h: usize, w: usize, c: usize, dev: &D) -> Self {
        let mut idx = Vec::with_capacity(h * w * c);
        for ch in 0..c {
            for p in 0..h * w {
                idx.push(p * c + ch);
            }
        }
        Flatten {
            idx: dev.tensor_from_vec(idx, (h * w * c,)),
        }
    }

    pub fn forward<T: Tape<f32, D>>(&self, x: Act<D, T>) -> Act<D, T> {
        let (n, len) = *x.shape();
        x.gather(self.idx.clone().broadcast_like::<_, Axis<0>>(&(n, len)))
    }
}

/// Fully connected: `x` (N, I) · Wᵀ + b, W stored (O, I) flat.
pub fn linear<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Act<D, T>,
    w: &Flat<D>,
    b: &Flat<D>,
    o: usize,
) -> Act<D, T> {
    let (n, i) = *x.shape();
    let wt = w
        .clone()
        .reshape_like(&(o, i))
        .permute::<(usize, usize), Axes2<1, 0>>();
    x.matmul(wt) + b.clone().broadcast_like::<_, Axis<0>>(&(n, o))
}

/// What a step of a [`Net`] precomputed on the device, if anything.
#[derive(Debug, Clone)]
enum Plan<D: Device<f32>> {
    None,
    Conv(ConvPlan<D>),
    Flatten(Flatten<D>),
}

/// A [`Model`]'s layers on device `D`. Its parameters are the model's
/// own, uploaded with [`Net::upload`]; a checkpoint written from either
/// path loads on the other.
#[derive(Debug, Clone)]
pub struct Net<D: Device<f32>> {
    steps: Vec<(Step, Plan<D>)>,
}

impl<D: Device<f32>> Net<D> {
    pub fn new(model: &Model, dev: &D) -> Self {
        let steps = model
            .steps()
            .into_iter()
            .map(|s| {
                let plan = match s {
                    Step::Conv { g, .. } => Plan::Conv(ConvPlan::new(g, dev)),
                    Step::Flatten { c, h, w } => Plan::Flatten(Flatten::new(h, w, c, dev)),
                    _ => Plan::None,
                };
                (s, plan)
            })
            .collect();
        Net { steps }
    }

    /// The model's parameters on the device, in the model's order.
    pub fn upload(model: &Model, dev: &D) -> Vec<Flat<D>> {
        model
            .params
            .iter()
            .map(|p| dev.tensor_from_vec(p.data.clone(), (p.data.len(),)))
            .collect()
    }

    /// Logits for `x`, images flattened channels-last (N, H·W·C). `train`:
    /// batch statistics (the model's running ones updated) and dropout;
    /// otherwise running statistics and no dropout.
    pub fn forward<T: Tape<f32, D> + Merge<NoneTape>>(
        &self,
        x: Act<D, T>,
        p: &[Flat<D>],
        buffers: &mut [Tensor1],
        train: bool,
    ) -> Act<D, T> {
        let dev = x.device().clone();
        let mut a = x;
        for (step, plan) in &self.steps {
            a = match (*step, plan) {
                (Step::Conv { w, b, .. }, Plan::Conv(plan)) => plan.forward(a, &p[w], Some(&p[b])),
                (Step::Pool(pool), _) => maxpool(a, pool),
                (
                    Step::Bn {
                        c,
                        gamma,
                        beta,
                        buf,
                    },
                    _,
                ) if train => {
                    let (y, mean, var) = batchnorm_train(a, c, &p[gamma], &p[beta]);
                    // The running statistics, as the CPU kernel keeps them.
                    let m = (y.shape().1 / c * y.shape().0) as f32;
                    let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
                    let (mean, var) = (mean.as_vec(), var.as_vec());
                    for (r, v) in buffers[buf].data.iter_mut().zip(&mean) {
                        *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * v;
                    }
                    for (r, v) in buffers[buf + 1].data.iter_mut().zip(&var) {
                        *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * v * unbias;
                    }
                    y
                }
                (
                    Step::Bn {
                        c,
                        gamma,
                        beta,
                        buf,
                    },
                    _,
                ) => {
                    let stat = |i: usize| {
                        let d = &buffers[i].data;
                        dev.tensor_from_vec(d.clone(), (d.len(),))
                    };
                    batchnorm_eval(a, c, &p[gamma], &p[beta], &stat(buf), &stat(buf + 1))
                }
                (Step::Relu, _) => a.relu(),
                (Step::Dropout(q), _) if train && q > 0.0 => a.dropout(q),
                (Step::Dropout(_), _) => a,
                (Step::Flatten { .. }, Plan::Flatten(f)) => f.forward(a),
                (Step::Linear { o, w, b }, _) => linear(a, &p[w], &p[b], o),
                (Step::Conv { .. } | Step::Flatten { .. }, _) => {
                    unreachable!("Net::new pairs every convolution and flatten with its plan")
                }
            };
        }
        a
    }
}

/// Images (N, C, H, W) flattened, as the data holds them, in the
/// channels-last order [`Net`] takes (a copy only when C > 1).
pub fn channels_last(x: Vec<f32>, n: usize, c: usize, hw: usize) -> Vec<f32> {
    if c == 1 {
        return x;
    }
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                y[(i * hw + p) * c + ch] = x[(i * c + ch) * hw + p];
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::kernels::{BatchNorm, Linear};
    use crate::nn::simd::Family;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::data::augment::Rng::new(seed);
        (0..n).map(|_| r.unit() * 2.0 - 1.0).collect()
    }

    fn to_last(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<f32> {
        channels_last(x.to_vec(), n, c, hw)
    }

    fn host<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
        t.as_vec()
    }

    /// Within 1e-4 of the largest magnitude in `b`. A tensor that is zero
    /// in exact arithmetic (a convolution's bias gradient ahead of batch
    /// norm) holds rounding noise on both sides: below 1e-2 the scale is
    /// taken as 1e-2, an absolute 1e-6.
    #[track_caller]
    fn close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-2);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{what}[{i}]: {x} vs {y} (relative to the largest magnitude {scale})"
            );
        }
    }

    /// Forward and every gradient of the generic convolution against the
    /// CPU kernel, with and without padding and stride.
    #[test]
    fn convolution_matches_the_cpu_kernel() {
        let dev = Cpu::default();
        for g in [
            Conv {
                c: 3,
                h: 7,
                w: 6,
                o: 4,
                k: 3,
                stride: 1,
                pad: 1,
                family: Family::detected(),
            },
            Conv {
                c: 2,
                h: 9,
                w: 9,
                o: 5,
                k: 5,
                stride: 2,
                pad: 0,
                family: Family::detected(),
            },
        ] {
            let n = 3;
            let (chw, ohw) = (g.c * g.h * g.w, g.oh() * g.ow());
            let x = rand_vec(n * chw, 1);
            let w = rand_vec(g.o * g.c * g.k * g.k, 2);
            let b = rand_vec(g.o, 3);
            let dy = rand_vec(n * g.o * ohw, 4);
            let mut y = vec![0.0; n * g.o * ohw];
            g.forward(&x, n, &w, Some(&b), &mut y);
            let (dx, dw, db) = g.backward(&x, n, &w, &dy, true);

            let plan = ConvPlan::new(g, &dev);
            let xt = dev.tensor_from_vec(to_last(&x, n, g.c, g.h * g.w), (n, chw));
            let (wt, bt) = (
                dev.tensor_from_vec(w.clone(), (w.len(),)),
                dev.tensor_from_vec(b.clone(), (g.o,)),
            );
            let out = plan.forward(xt.leaky_trace(), &wt, Some(&bt));
            close("conv forward", &host(&out), &to_last(&y, n, g.o, ohw));
            let r = dev.tensor_from_vec(to_last(&dy, n, g.o, ohw), (n, ohw * g.o));
            let grads = (out * r).sum::<(), _>().backward();
            close(
                "conv dx",
                &grads.get(&xt).as_vec(),
                &to_last(&dx.unwrap(), n, g.c, g.h * g.w),
            );
            close("conv dw", &grads.get(&wt).as_vec(), &dw);
            close("conv db", &grads.get(&bt).as_vec(), &db);
        }
    }

    #[test]
    fn max_pooling_matches_the_cpu_kernel_without_ties() {
        let dev = Cpu::default();
        for p in [
            Pool {
                c: 3,
                h: 8,
                w: 6,
                k: 2,
            },
            Pool {
                c: 2,
                h: 7,
                w: 7,
                k: 2,
            },
        ] {
            let n = 2;
            let (hw, ohw) = (p.h * p.w, p.oh() * p.ow());
            // Random floats: no two elements of a window are equal.
            let x = rand_vec(n * p.c * hw, 5);
            let dy = rand_vec(n * p.c * ohw, 6);
            let (y, arg) = p.forward(&x, n);
            let dx = p.backward(n, &arg, &dy);
            let xt = dev.tensor_from_vec(to_last(&x, n, p.c, hw), (n, hw * p.c));
            let out = maxpool(xt.leaky_trace(), p);
            close("pool forward", &host(&out), &to_last(&y, n, p.c, ohw));
            let r = dev.tensor_from_vec(to_last(&dy, n, p.c, ohw), (n, ohw * p.c));
            let grads = (out * r).sum::<(), _>().backward();
            close(
                "pool dx",
                &grads.get(&xt).as_vec(),
                &to_last(&dx, n, p.c, hw),
            );
        }
    }

    #[test]
    fn batch_norm_matches_the_cpu_kernel() {
        let dev = Cpu::default();
        let bn = BatchNorm { c: 4, hw: 10 };
        let n = 3;
        let x: Vec<f32> = rand_vec(n * bn.c * bn.hw, 7)
            .iter()
            .map(|v| v * 3.0 + 0.5)
            .collect();
        let gamma = rand_vec(bn.c, 8);
        let beta = rand_vec(bn.c, 9);
        let dy = rand_vec(x.len(), 10);
        let (mut rm, mut rv) = (vec![0.0; bn.c], vec![1.0; bn.c]);
        let (y, xhat, invstd) = bn.forward_train(&x, n, &gamma, &beta, &mut rm, &mut rv);
        let (dx, dg, db) = bn.backward(n, &xhat, &invstd, &gamma, &dy);

        let xt = dev.tensor_from_vec(to_last(&x, n, bn.c, bn.hw), (n, bn.hw * bn.c));
        let (gt, bt) = (
            dev.tensor_from_vec(gamma.clone(), (bn.c,)),
            dev.tensor_from_vec(beta.clone(), (bn.c,)),
        );
        let (out, mean, var) = batchnorm_train(xt.leaky_trace(), bn.c, &gt, &bt);
        close("bn forward", &host(&out), &to_last(&y, n, bn.c, bn.hw));
        // The running statistics the kernel updated, from the batch's.
        let m = (n * bn.hw) as f32;
        let run_mean: Vec<f32> = host(&mean).iter().map(|v| 0.1 * v).collect();
        let run_var: Vec<f32> = host(&var)
            .iter()
            .map(|v| 0.9 + 0.1 * v * m / (m - 1.0))
            .collect();
        close("bn running mean", &run_mean, &rm);
        close("bn running var", &run_var, &rv);
        let r = dev.tensor_from_vec(to_last(&dy, n, bn.c, bn.hw), (n, bn.hw * bn.c));
        let grads = (out * r).sum::<(), _>().backward();
        close(
            "bn dx",
            &grads.get(&xt).as_vec(),
            &to_last(&dx, n, bn.c, bn.hw),
        );
        close("bn dgamma", &grads.get(&gt).as_vec(), &dg);
        close("bn dbeta", &grads.get(&bt).as_vec(), &db);

        let eval = bn.forward_eval(&x, &gamma, &beta, &rm, &rv);
        let (rmt, rvt) = (
            dev.tensor_from_vec(rm.clone(), (bn.c,)),
            dev.tensor_from_vec(rv.clone(), (bn.c,)),
        );
        let out = batchnorm_eval(xt.clone(), bn.c, &gt, &bt, &rmt, &rvt);
        close("bn eval", &host(&out), &to_last(&eval, n, bn.c, bn.hw));
    }

    #[test]
    fn flatten_and_linear_match_the_cpu_kernels() {
        let dev = Cpu::default();
        let (n, c, hw, o) = (3, 4, 6, 5);
        let l = Linear {
            i: c * hw,
            o,
            family: Family::detected(),
        };
        let x = rand_vec(n * c * hw, 11);
        let w = rand_vec(o * l.i, 12);
        let b = rand_vec(o, 13);
        let dy = rand_vec(n * o, 14);
        let y = l.forward(&x, n, &w, &b, 1);
        let (dx, dw, db) = l.backward(&x, n, &w, &dy, true, 1);

        let flat = Flatten::new(2, 3, c, &dev);
        let xt = dev.tensor_from_vec(to_last(&x, n, c, hw), (n, hw * c));
        let (wt, bt) = (
            dev.tensor_from_vec(w.clone(), (w.len(),)),
            dev.tensor_from_vec(b.clone(), (o,)),
        );
        let out = linear(flat.forward(xt.leaky_trace()), &wt, &bt, o);
        close("linear forward", &host(&out), &y);
        let r = dev.tensor_from_vec(dy.clone(), (n, o));
        let grads = (out * r).sum::<(), _>().backward();
        close(
            "linear dx",
            &grads.get(&xt).as_vec(),
            &to_last(&dx.unwrap(), n, c, hw),
        );
        close("linear dw", &grads.get(&wt).as_vec(), &dw);
        close("linear db", &grads.get(&bt).as_vec(), &db);
    }

    /// The main CNN whole, in training mode (batch statistics, dropout from
    /// identically seeded devices): logits, the loss's gradient for every
    /// parameter and the running statistics agree with the fast path. Ties
    /// in max pooling come only from ReLU zeros, whose gradient ReLU
    /// discards on both paths.
    #[test]
    fn the_main_cnn_matches_the_fast_path() {
        use crate::nn::model::{Knobs, ModelSpec};
        let knobs = Knobs {
            dropout: 0.25,
            batchnorm: true,
            channels: None,
            hidden: None,
        };
        let layers = ModelSpec::MainCnn.layers(&knobs).unwrap();
        let mut fast = Model::new(layers, (1, 28, 28), 10, 3).unwrap();
        let mut reference = fast.clone();
        let n = 6;
        let x = rand_vec(n * 784, 15);
        let labels: Vec<usize> = (0..n).map(|i| (i * 7) % 10).collect();
        let mut onehot = vec![0.0f32; n * 10];
        for (i, &c) in labels.iter().enumerate() {
            onehot[i * 10 + c] = 1.0;
        }
        let run = |logits: Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>, dev: &Cpu| {
            let values = logits.as_vec();
            let target = dev.tensor_from_vec(onehot.clone(), (n, 10));
            let grads = cross_entropy_with_logits_loss(logits, target).backward();
            (values, grads)
        };

        let dev_a = Cpu::seed_from_u64(9);
        let pa = fast.tensors(&dev_a);
        let xa = dev_a
            .tensor_from_vec(x.clone(), (n, 1, 28, 28))
            .leaky_traced();
        let (la, ga) = run(fast.forward(xa, &pa, true, 1), &dev_a);

        let dev_b = Cpu::seed_from_u64(9);
        let net = Net::new(&reference, &dev_b);
        let pb = Net::upload(&reference, &dev_b);
        let xb = dev_b.tensor_from_vec(x, (n, 784)).leaky_traced();
        let mut buffers = reference.buffers.clone();
        let (lb, gb) = run(net.forward(xb, &pb, &mut buffers, true), &dev_b);
        reference.buffers = buffers;

        close("logits", &lb, &la);
        for (i, (a, b)) in pa.iter().zip(&pb).enumerate() {
            let name = &fast.params[i].name;
            close(name, &gb.get(b).as_vec(), &ga.get(a).as_vec());
        }
        for (a, b) in fast.buffers.iter().zip(&reference.buffers) {
            close(&a.name, &b.data, &a.data);
        }
        // Evaluation mode: running statistics, no dropout.
        let xe = rand_vec(n * 784, 16);
        let ea = fast.forward(
            dev_a.tensor_from_vec(xe.clone(), (n, 1, 28, 28)),
            &pa,
            false,
            1,
        );
        let mut buffers = reference.buffers.clone();
        let eb = net.forward(
            dev_b.tensor_from_vec(xe, (n, 784)),
            &pb,
            &mut buffers,
            false,
        );
        close("eval logits", &eb.as_vec(), &ea.as_vec());
    }
}
