//! The kernels as differentiable dfdx operations: a forward pass on the
//! tensor's data and, when the tensor carries a tape, a backward closure
//! that adds this op's gradients into dfdx's `Gradients`.

use super::kernels::{BatchNorm, Conv, Family, Linear, Pool};
use dfdx::prelude::*;

pub type Dev = Cpu;
pub type T4<T> = Tensor<(usize, usize, usize, usize), f32, Dev, T>;
pub type T2<T> = Tensor<(usize, usize), f32, Dev, T>;
/// Parameters are flat vectors; each op knows its own geometry.
pub type Param = Tensor<(usize,), f32, Dev>;

/// The tensor's data (contiguous, as every tensor made here is).
pub fn host<S: Shape, T>(t: &Tensor<S, f32, Dev, T>) -> Vec<f32> {
    let mut v = vec![0.0f32; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Adds `src` into the gradient of the tensor behind `ghost`.
macro_rules! accumulate {
    ($grads:expr, $ghost:expr, $src:expr) => {{
        let g = $grads.get_or_alloc_mut(&$ghost)?;
        super::vector::add(&mut g[..], &$src);
    }};
}

/// Takes the output gradient out of `Gradients` without copying.
macro_rules! take_grad {
    ($grads:expr, $ghost:expr) => {{
        let g = $grads.get_or_alloc_mut(&$ghost)?;
        std::mem::take(&mut **g)
    }};
}

pub fn conv2d<T: Tape<f32, Dev>>(
    x: T4<T>,
    w: &Param,
    b: Option<&Param>,
    g: Conv,
    need_dx: bool,
) -> T4<T> {
    let (x, mut tape) = x.split_tape();
    let n = x.shape().0;
    let xs = host(&x);
    let ws = host(w);
    let bs = b.map(host);
    let mut y = vec![0.0f32; n * g.o * g.oh() * g.ow()];
    g.forward(&xs, n, &ws, bs.as_deref(), &mut y);
    let out = x.device().tensor_from_vec(y, (n, g.o, g.oh(), g.ow()));
    if T::OWNS_TAPE {
        let (xg, wg, bg, og) = (x.ghost(), w.ghost(), b.map(|b| b.ghost()), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, og);
            let (dx, dw, db) = g.backward(&xs, n, &ws, &dy, need_dx);
            accumulate!(grads, wg, dw);
            if let Some(bg) = bg {
                accumulate!(grads, bg, db);
            }
            if let Some(dx) = dx {
                accumulate!(grads, xg, dx);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

pub fn maxpool2d<T: Tape<f32, Dev>>(x: T4<T>, k: usize) -> T4<T> {
    let (x, mut tape) = x.split_tape();
    let (n, c, h, w) = *x.shape();
    let p = Pool { c, h, w, k };
    let (y, arg) = p.forward(&host(&x), n);
    let out = x.device().tensor_from_vec(y, (n, c, p.oh(), p.ow()));
    if T::OWNS_TAPE {
        let (xg, og) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, og);
            let dx = p.backward(n, &arg, &dy);
            accumulate!(grads, xg, dx);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// Batch norm. With a tape: batch statistics, running ones updated; without:
/// the running statistics (inference).
pub fn batchnorm2d<T: Tape<f32, Dev>>(
    x: T4<T>,
    gamma: &Param,
    beta: &Param,
    running_mean: &mut [f32],
    running_var: &mut [f32],
    train: bool,
) -> T4<T> {
    let (x, mut tape) = x.split_tape();
    let (n, c, h, w) = *x.shape();
    let bn = BatchNorm { c, hw: h * w };
    let (gs, bs) = (host(gamma), host(beta));
    let xs = host(&x);
    if !train {
        let y = bn.forward_eval(&xs, &gs, &bs, running_mean, running_var);
        return x.device().tensor_from_vec(y, (n, c, h, w)).put_tape(tape);
    }
    let (y, xhat, invstd) = bn.forward_train(&xs, n, &gs, &bs, running_mean, running_var);
    drop(xs);
    let out = x.device().tensor_from_vec(y, (n, c, h, w));
    if T::OWNS_TAPE {
        let (xg, gg, bg, og) = (x.ghost(), gamma.ghost(), beta.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, og);
            let (dx, dgamma, dbeta) = bn.backward(n, &xhat, &invstd, &gs, &dy);
            accumulate!(grads, gg, dgamma);
            accumulate!(grads, bg, dbeta);
            accumulate!(grads, xg, dx);
            Ok(())
        });
    }
    out.put_tape(tape)
}

pub fn linear<T: Tape<f32, Dev>>(
    x: T2<T>,
    w: &Param,
    b: &Param,
    (o, family): (usize, Family),
    need_dx: bool,
    threads: usize,
) -> T2<T> {
    let (x, mut tape) = x.split_tape();
    let (n, i) = *x.shape();
    let l = Linear { i, o, family };
    let xs = host(&x);
    let ws = host(w);
    let y = l.forward(&xs, n, &ws, &host(b), threads);
    let out = x.device().tensor_from_vec(y, (n, o));
    if T::OWNS_TAPE {
        let (xg, wg, bg, og) = (x.ghost(), w.ghost(), b.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, og);
            let (dx, dw, db) = l.backward(&xs, n, &ws, &dy, need_dx, threads);
            accumulate!(grads, wg, dw);
            accumulate!(grads, bg, db);
            if let Some(dx) = dx {
                accumulate!(grads, xg, dx);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::simd::Family;

    /// The ops on dfdx's tape give the kernels' gradients, and dfdx's own
    /// ops (relu, reshape, sum) compose with them.
    #[test]
    fn gradients_flow_through_the_tape() {
        let dev = Dev::seed_from_u64(0);
        let g = Conv {
            c: 1,
            h: 4,
            w: 4,
            o: 2,
            k: 3,
            stride: 1,
            pad: 1,
            family: Family::detected(),
        };
        let x: Vec<f32> = (0..32).map(|v| (v as f32 * 0.37).sin()).collect();
        let wv: Vec<f32> = (0..18).map(|v| (v as f32 * 0.11).cos()).collect();
        let w: Param = dev.tensor_from_vec(wv.clone(), (18,));
        let b: Param = dev.tensor_from_vec(vec![0.1, -0.2], (2,));
        let xt = dev.tensor_from_vec(x.clone(), (2, 1, 4, 4)).leaky_traced();
        let y = conv2d(xt, &w, Some(&b), g, true);
        let y = maxpool2d(y, 2);
        let y = y.reshape_like(&(2usize, 8usize));
        let loss = y.sum();
        let grads = loss.backward();
        let gw = host(&grads.get(&w));
        // Reference: the kernels by hand.
        let mut yv = vec![0.0; 64];
        g.forward(&x, 2, &wv, Some(&[0.1, -0.2]), &mut yv);
        let p = Pool {
            c: 2,
            h: 4,
            w: 4,
            k: 2,
        };
        let (_, arg) = p.forward(&yv, 2);
        let dy = p.backward(2, &arg, &[1.0; 16]);
        let (_, dw, db) = g.backward(&x, 2, &wv, &dy, false);
        assert_eq!(gw, dw);
        assert_eq!(host(&grads.get(&b)), db);
    }
}

/// What follows a convolution inside one fused block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    pub conv: Conv,
    pub need_dx: bool,
    /// Parameter indices of batch norm's γ and β, and its buffer index.
    pub bn: Option<(usize, usize, usize)>,
    pub relu: bool,
    pub pool: Option<usize>,
}

/// conv → [batch norm] → [ReLU] → [max pool] as one op: the intermediate
/// activations stay here instead of crossing dfdx tensors (no copies, no
/// zero-filled gradient buffers). The arithmetic is that of the separate
/// kernels in the same order, so results are bit-identical to the unfused
/// chain.
pub fn conv_block<T: Tape<f32, Dev>>(
    x: T4<T>,
    p: &[Param],
    w: usize,
    b: usize,
    blk: Block,
    buffers: &mut [super::vector::Tensor1],
    train: bool,
) -> T4<T> {
    let (x, mut tape) = x.split_tape();
    let n = x.shape().0;
    let g = blk.conv;
    let xs = host(&x);
    let ws = host(&p[w]);
    let bs = host(&p[b]);
    let mut a = vec![0.0f32; n * g.o * g.oh() * g.ow()];
    g.forward(&xs, n, &ws, Some(&bs), &mut a);
    let bn_geom = BatchNorm {
        c: g.o,
        hw: g.oh() * g.ow(),
    };
    let mut bn_saved = None;
    if let Some((gi, bi, buf)) = blk.bn {
        let (gs, betas) = (host(&p[gi]), host(&p[bi]));
        let (m, v) = buffers.split_at_mut(buf + 1);
        let (rm, rv) = (&mut m[buf].data, &mut v[0].data);
        if train {
            let (y, xhat, invstd) = bn_geom.forward_train(&a, n, &gs, &betas, rm, rv);
            a = y;
            bn_saved = Some((gi, bi, gs, xhat, invstd));
        } else {
            a = bn_geom.forward_eval(&a, &gs, &betas, rm, rv);
        }
    }
    if blk.relu {
        use rayon::prelude::*;
        a.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
    }
    let pool = blk.pool.map(|k| Pool {
        c: g.o,
        h: g.oh(),
        w: g.ow(),
        k,
    });
    let (out, arg) = match pool {
        Some(pl) => {
            let (y, arg) = pl.forward(&a, n);
            (
                x.device().tensor_from_vec(y, (n, g.o, pl.oh(), pl.ow())),
                Some(arg),
            )
        }
        None => (
            x.device()
                .tensor_from_vec(a.clone(), (n, g.o, g.oh(), g.ow())),
            None,
        ),
    };
    if T::OWNS_TAPE {
        let (xg, wg, bg, og) = (x.ghost(), p[w].ghost(), p[b].ghost(), out.ghost());
        let bn_ghosts = bn_saved
            .as_ref()
            .map(|(gi, bi, ..)| (p[*gi].ghost(), p[*bi].ghost()));
        // The activation after ReLU: its sign is ReLU's mask.
        let act = if blk.relu { a } else { Vec::new() };
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, og);
            let mut d = match (pool, &arg) {
                (Some(pl), Some(arg)) => pl.backward(n, arg, &dy),
                _ => dy,
            };
            if blk.relu {
                for (dv, &av) in d.iter_mut().zip(&act) {
                    if av <= 0.0 {
                        *dv = 0.0;
                    }
                }
            }
            if let (Some((_, _, gs, xhat, invstd)), Some((gg, bgh))) = (&bn_saved, &bn_ghosts) {
                let (dx, dgamma, dbeta) = bn_geom.backward(n, xhat, invstd, gs, &d);
                accumulate!(grads, *gg, dgamma);
                accumulate!(grads, *bgh, dbeta);
                d = dx;
            }
            let (dx, dw, db) = g.backward(&xs, n, &ws, &d, blk.need_dx);
            accumulate!(grads, wg, dw);
            accumulate!(grads, bg, db);
            if let Some(dx) = dx {
                accumulate!(grads, xg, dx);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}
