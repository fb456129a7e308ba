//! The fast CPU path's training step and inference, without a tape: the
//! forward pass keeps exactly what backward needs, layer by layer, and
//! the buffers of one step are reused by the next (no allocation and no
//! zero-filling in steady state, no copies of the weights). The
//! arithmetic is that of the dfdx ops in `ops` (which `Model::forward`
//! runs on dfdx's tape), value for value, so both give bit-identical
//! weights (tested below); dropout draws its seeds from the same
//! generator, one per layer and step, and masks as dfdx's CPU kernel does.

use super::block::{self, Norm};
use super::kernels::{BatchNorm, Linear, Pool};
use super::model::{Model, Op};
use dfdx::prelude::*;
use rand::distributions::{Bernoulli, Distribution};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Per layer, what backward needs from forward.
enum Saved {
    Block {
        x: Vec<f32>,
        st: block::Saved,
    },
    Pool {
        pool: Pool,
        arg: Vec<u32>,
    },
    Bn {
        bn: BatchNorm,
        xhat: Vec<f32>,
        invstd: Vec<f32>,
    },
    Relu {
        x: Vec<f32>,
    },
    /// Which inputs were dropped, and 1/(1 − p) as dfdx computes it.
    Dropout {
        dropped: Vec<bool>,
        scale: f32,
    },
    Flatten,
    Linear {
        x: Vec<f32>,
    },
    /// Nothing to undo (dropout at p = 0).
    Nothing,
}

/// Spare buffers kept per length: more than a step holds at once.
const KEEP_PER_LENGTH: usize = 4;

/// Buffers of earlier batches, reused: their contents are overwritten.
#[derive(Default)]
pub struct Workspace {
    spare: Vec<Vec<f32>>,
    blocks: Vec<block::Saved>,
}

impl Workspace {
    /// A buffer of `len` floats whose contents are unspecified (every
    /// caller overwrites all of it): one of exactly that length if there
    /// is one, since each step asks for the sizes the last one returned.
    fn take(&mut self, len: usize) -> Vec<f32> {
        let at = self.spare.iter().position(|v| v.len() == len);
        let mut v = at.map_or_else(Vec::new, |i| self.spare.swap_remove(i));
        if cfg!(test) {
            // Tests catch a read of stale contents.
            v.clear();
            v.resize(len, f32::NAN);
        } else {
            v.resize(len, 0.0);
        }
        v
    }

    /// Returns a buffer (logits read by the caller) for a later batch.
    pub fn give_back(&mut self, v: Vec<f32>) {
        self.give(v);
    }

    /// Keeps `v` for a later request of its length, unless enough of that
    /// length are kept already: a step hands back buffers (its input
    /// batch, for one) that no later step asks for, and keeping them all
    /// would grow without bound.
    fn give(&mut self, v: Vec<f32>) {
        let same = self.spare.iter().filter(|s| s.len() == v.len()).count();
        if v.capacity() > 0 && same < KEEP_PER_LENGTH {
            self.spare.push(v);
        }
    }

    fn give_block(&mut self, st: block::Saved) {
        let same = self
            .blocks
            .iter()
            .filter(|b| b.a.len() == st.a.len())
            .count();
        if same < KEEP_PER_LENGTH {
            self.blocks.push(st);
        }
    }

    /// How many buffers are kept (for tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.spare.len() + self.blocks.len()
    }

    /// A block's saved state from an earlier batch of the same geometry.
    fn block(&mut self, conv_len: usize) -> block::Saved {
        let at = self.blocks.iter().position(|b| b.a.len() == conv_len);
        at.map_or_else(block::Saved::default, |i| self.blocks.swap_remove(i))
    }
}

/// A training step's state, kept from one step to the next.
#[derive(Default)]
pub struct Trainer {
    saved: Vec<Saved>,
    ws: Workspace,
    /// The last step's gradient of each parameter.
    pub grads: Vec<Vec<f32>>,
    /// CrossEntropyLoss's label_smoothing (0: none).
    pub label_smoothing: f32,
    loss_dev: Cpu,
}

/// The mean cross-entropy of `logits` (N×classes) against labels `y`
/// with label smoothing, and its gradient with respect to the logits: what
/// a training step computes.
pub fn cross_entropy(logits: &[f32], y: &[u8], classes: usize, smoothing: f32) -> (f64, Vec<f32>) {
    Trainer::default().loss(logits, y, classes, smoothing)
}

/// Cross-entropy targets with label smoothing as PyTorch defines it:
/// `(1 − ε)` on the true class plus `ε / classes` on every class.
pub fn smoothed_targets(y: &[u8], classes: usize, eps: f32) -> Vec<f32> {
    let base = eps / classes as f32;
    let mut t = vec![base; y.len() * classes];
    for (i, &c) in y.iter().enumerate() {
        t[i * classes + c as usize] += 1.0 - eps;
    }
    t
}

impl Trainer {
    /// One step's forward and backward on a batch: returns the mean loss
    /// and the logits; [`Self::grads`] holds the gradients. `draw` gives
    /// the dropout layers' seeds.
    pub fn step(
        &mut self,
        model: &mut Model,
        params: &[Vec<f32>],
        x: Vec<f32>,
        y: &[u8],
        threads: usize,
        draw: &mut dyn FnMut() -> u64,
    ) -> (f64, Vec<f32>) {
        let mut saved = std::mem::take(&mut self.saved);
        saved.clear();
        let logits = run(
            model,
            params,
            x,
            y.len(),
            threads,
            &mut self.ws,
            Some((&mut saved, draw)),
        );
        let (loss, dlogits) = self.loss(&logits, y, model.classes, self.label_smoothing);
        self.grads.resize_with(params.len(), Vec::new);
        self.backward(model, params, &mut saved, dlogits, y.len(), threads);
        self.saved = saved;
        (loss, logits)
    }

    /// Cross-entropy and its gradient with respect to the logits, by
    /// dfdx's own ops (a few hundred values: exactness over speed).
    fn loss(&self, logits: &[f32], y: &[u8], classes: usize, smoothing: f32) -> (f64, Vec<f32>) {
        let n = y.len();
        let dev = &self.loss_dev;
        let l = dev.tensor_from_vec(logits.to_vec(), (n, classes));
        let target = dev.tensor_from_vec(smoothed_targets(y, classes, smoothing), (n, classes));
        let loss = cross_entropy_with_logits_loss(l.clone().leaky_traced(), target);
        let value = loss.as_vec()[0] as f64;
        let grads = loss.backward();
        (value, grads.get(&l).as_vec())
    }

    fn backward(
        &mut self,
        model: &Model,
        params: &[Vec<f32>],
        saved: &mut [Saved],
        mut d: Vec<f32>,
        n: usize,
        threads: usize,
    ) {
        let grads = &mut self.grads;
        for (op, s) in model.fused_ops().iter().zip(saved.iter_mut()).rev() {
            let s = std::mem::replace(s, Saved::Nothing);
            d = match (op, s) {
                (Op::Block { w, b, blk }, Saved::Block { x, st }) => {
                    let g = blk.conv;
                    let kernel = block::Block::from(*blk);
                    let norm = blk.bn.map(|(gi, bi, _)| (&params[gi][..], &params[bi][..]));
                    let work = self.ws.take(g.o * g.oh() * g.ow() * n);
                    let on = block::Batch {
                        x: &x,
                        n,
                        w: &params[*w],
                    };
                    let g = kernel.backward(on, norm, &st, (d, work), blk.need_dx);
                    grads[*w] = g.dw;
                    grads[*b] = g.db;
                    if let Some((gi, bi, _)) = blk.bn {
                        grads[gi] = g.dgamma;
                        grads[bi] = g.dbeta;
                    }
                    self.ws.give(x);
                    self.ws.give_block(st);
                    g.dx.unwrap_or_default()
                }
                (Op::Pool(_), Saved::Pool { pool, arg }) => pool.backward(n, &arg, &d),
                (Op::Bn { gamma, beta, .. }, Saved::Bn { bn, xhat, invstd }) => {
                    let (dx, dgamma, dbeta) = bn.backward(n, &xhat, &invstd, &params[*gamma], &d);
                    grads[*gamma] = dgamma;
                    grads[*beta] = dbeta;
                    dx
                }
                (Op::Relu, Saved::Relu { x }) => {
                    // dfdx: the input's gradient (zero) plus 1{x > 0}·dy.
                    for (g, &v) in d.iter_mut().zip(&x) {
                        *g = 0.0 + if v > 0.0 { 1.0 } else { 0.0 } * *g;
                    }
                    self.ws.give(x);
                    d
                }
                (Op::Dropout(_), Saved::Dropout { dropped, scale }) => {
                    for (g, &off) in d.iter_mut().zip(&dropped) {
                        *g = 0.0 + if off { 0.0 } else { scale } * *g;
                    }
                    d
                }
                (Op::Dropout(_), Saved::Nothing) | (Op::Flatten, Saved::Flatten) => d,
                (Op::Linear { o, w, b, first }, Saved::Linear { x }) => {
                    let l = Linear {
                        i: x.len() / n,
                        o: *o,
                        family: model.kernels(),
                    };
                    let dw = std::mem::take(&mut grads[*w]);
                    let dx = (!first).then(|| self.ws.take(n * l.i));
                    let (dx, dw, db) = l.backward_into(&x, n, &params[*w], &d, threads, (dw, dx));
                    grads[*w] = dw;
                    grads[*b] = db;
                    self.ws.give(x);
                    dx.unwrap_or_default()
                }
                _ => unreachable!("forward saved one entry per op, in order"),
            };
        }
    }
}

/// Logits of a batch of `n` images in inference mode (running batch-norm
/// statistics, no dropout).
pub fn logits(
    model: &mut Model,
    params: &[Vec<f32>],
    x: Vec<f32>,
    n: usize,
    threads: usize,
    ws: &mut Workspace,
) -> Vec<f32> {
    run(model, params, x, n, threads, ws, None)
}

/// Where a training forward pass records what backward needs, and the
/// source of dropout's seeds.
type Recorder<'a> = (&'a mut Vec<Saved>, &'a mut dyn FnMut() -> u64);

/// The forward pass; with a recorder, in training mode.
fn run(
    model: &mut Model,
    params: &[Vec<f32>],
    x: Vec<f32>,
    n: usize,
    threads: usize,
    ws: &mut Workspace,
    mut rec: Option<Recorder>,
) -> Vec<f32> {
    let train = rec.is_some();
    let (mut c, mut h, mut w) = model.input;
    let mut a = x;
    for op in model.fused_ops().to_vec() {
        let (out, saved) = match op {
            Op::Block { w: wi, b, blk } => {
                let g = blk.conv;
                let kernel = block::Block::from(blk);
                let mut out = ws.take(kernel.out_len(n));
                let mut st = ws.block(n * g.o * g.oh() * g.ow());
                let norm = blk.bn.map(|bn| norm(bn, &mut model.buffers, params, train));
                let on = block::Batch {
                    x: &a,
                    n,
                    w: &params[wi],
                };
                kernel.forward(on, &params[b], norm, &mut out, &mut st);
                (c, h, w) = match blk.pool {
                    Some(k) => (g.o, g.oh() / k, g.ow() / k),
                    None => (g.o, g.oh(), g.ow()),
                };
                (out, Saved::Block { x: a, st })
            }
            Op::Conv { .. } => unreachable!("fused ops hold every convolution in a block"),
            Op::Pool(k) => {
                let pool = Pool { c, h, w, k };
                let (y, arg) = pool.forward(&a, n);
                (h, w) = (pool.oh(), pool.ow());
                ws.give(a);
                (y, Saved::Pool { pool, arg })
            }
            Op::Bn { gamma, beta, buf } => {
                let bn = BatchNorm { c, hw: h * w };
                let (m, v) = model.buffers.split_at_mut(buf + 1);
                let (rm, rv) = (&mut m[buf].data, &mut v[0].data);
                let (gs, bs) = (&params[gamma], &params[beta]);
                let out = if train {
                    let (y, xhat, invstd) = bn.forward_train(&a, n, gs, bs, rm, rv);
                    (y, Saved::Bn { bn, xhat, invstd })
                } else {
                    (bn.forward_eval(&a, gs, bs, rm, rv), Saved::Nothing)
                };
                ws.give(a);
                out
            }
            Op::Relu => {
                let mut y = ws.take(a.len());
                for (yv, &v) in y.iter_mut().zip(&a) {
                    *yv = v.max(0.0);
                }
                (y, Saved::Relu { x: a })
            }
            Op::Dropout(p) if p > 0.0 && rec.is_some() => {
                let seed = rec.as_mut().map_or(0, |(_, draw)| draw());
                dropout(a, p, seed)
            }
            Op::Dropout(_) => (a, Saved::Nothing),
            Op::Flatten => {
                (c, h, w) = (c * h * w, 1, 1);
                (a, Saved::Flatten)
            }
            Op::Linear { o, w: wi, b, .. } => {
                let l = Linear {
                    i: a.len() / n,
                    o,
                    family: model.kernels(),
                };
                let y = l.forward(&a, n, &params[wi], &params[b], threads);
                (c, h, w) = (o, 1, 1);
                (y, Saved::Linear { x: a })
            }
        };
        a = out;
        match rec.as_mut() {
            Some((log, _)) => log.push(saved),
            None => match saved {
                Saved::Block { x, st } => {
                    ws.give(x);
                    ws.give_block(st);
                }
                Saved::Linear { x } | Saved::Relu { x } => ws.give(x),
                _ => {}
            },
        }
    }
    a
}

/// A block's batch norm: its scale and shift, and its running statistics,
/// updated in training.
fn norm<'a>(
    (gi, bi, buf): (usize, usize, usize),
    buffers: &'a mut [super::vector::Tensor1],
    params: &'a [Vec<f32>],
    train: bool,
) -> Norm<'a> {
    let (m, v) = buffers.split_at_mut(buf + 1);
    let (rm, rv) = (&mut m[buf].data, &mut v[0].data);
    let (gamma, beta) = (&params[gi][..], &params[bi][..]);
    if train {
        Norm::Train {
            gamma,
            beta,
            running_mean: rm,
            running_var: rv,
        }
    } else {
        Norm::Eval {
            gamma,
            beta,
            running_mean: rm,
            running_var: rv,
        }
    }
}

/// Dropout with probability `p` in training, its draws from `seed`.
fn dropout(mut a: Vec<f32>, p: f32, seed: u64) -> (Vec<f32>, Saved) {
    let mut rng = StdRng::seed_from_u64(seed);
    let prob = p as f64;
    let dist = Bernoulli::new(prob).expect("Model::new checks 0 <= p < 1");
    let keep = (1.0 - prob) as f32;
    let dropped: Vec<bool> = a.iter().map(|_| dist.sample(&mut rng)).collect();
    for (v, &off) in a.iter_mut().zip(&dropped) {
        *v = if off { 0.0 } else { *v / keep };
    }
    let scale = (1.0 - prob).recip() as f32;
    (a, Saved::Dropout { dropped, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label-smoothed loss and its gradient, against the definition
    /// (CrossEntropyLoss(label_smoothing=ε): targets (1 − ε) on the class
    /// plus ε/K everywhere; the gradient is softmax − targets, over N).
    #[test]
    fn label_smoothing_loss_and_gradient() {
        let t = Trainer::default();
        let logits = [1.0f32, 2.0, 3.0, 0.5, 0.0, -0.5];
        let (loss, grad) = t.loss(&logits, &[2, 0], 3, 0.1);
        let mut want_loss = 0.0f64;
        let mut want_grad = Vec::new();
        for (row, y) in logits.chunks(3).zip([2usize, 0]) {
            let m = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
            let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (c, &v) in row.iter().enumerate() {
                let logp = v as f64 - m - z.ln();
                let target = 0.1 / 3.0 + if c == y { 0.9 } else { 0.0 };
                want_loss -= target * logp / 2.0;
                want_grad.push((logp.exp() - target) / 2.0);
            }
        }
        assert!(
            (loss - want_loss).abs() < 1e-6 * want_loss,
            "{loss} {want_loss}"
        );
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((*g as f64 - w).abs() < 1e-6, "{grad:?} {want_grad:?}");
        }
        // ε = 0 is plain cross-entropy: one-hot targets, bit for bit.
        assert_eq!(smoothed_targets(&[1], 3, 0.0), vec![0.0, 1.0, 0.0]);
    }
    use crate::nn::model::{Knobs, LayerSpec, ModelSpec};
    use crate::nn::ops::{Dev, Param};

    fn images(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut r = crate::data::augment::Rng::new(seed);
        let x = (0..n * 784).map(|_| r.unit() * 2.0 - 1.0).collect();
        let y = (0..n).map(|i| (i * 7 % 10) as u8).collect();
        (x, y)
    }

    /// A training step on dfdx's tape: (loss, logits, gradients).
    fn on_tape(
        model: &mut Model,
        dev: &Dev,
        params: &[Vec<f32>],
        x: Vec<f32>,
        y: &[u8],
    ) -> (f64, Vec<f32>, Vec<Vec<f32>>) {
        let tensors: Vec<Param> = params
            .iter()
            .map(|p| dev.tensor_from_vec(p.clone(), (p.len(),)))
            .collect();
        let n = y.len();
        let xt = dev
            .tensor_from_vec(x, (n, 1, 28, 28))
            .put_tape(OwnedTape::default());
        let logits = model.forward(xt, &tensors, true, 1);
        let lv = logits.as_vec();
        let mut onehot = vec![0.0f32; n * 10];
        for (i, &c) in y.iter().enumerate() {
            onehot[i * 10 + c as usize] = 1.0;
        }
        let loss = cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(onehot, (n, 10)));
        let value = loss.as_vec()[0] as f64;
        let grads = loss.backward();
        let g = tensors.iter().map(|t| grads.get(t).as_vec()).collect();
        (value, lv, g)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Three steps (so that reused buffers are read), each compared with
    /// dfdx's tape bit for bit: loss, logits, every gradient, the running
    /// statistics; then inference.
    fn same_as_tape(layers: Vec<LayerSpec>) {
        let mut a = Model::new(layers, (1, 28, 28), 10, 3).unwrap();
        let mut b = a.clone();
        let params: Vec<Vec<f32>> = a.params.iter().map(|p| p.data.clone()).collect();
        let (dev_a, dev_b) = (Dev::seed_from_u64(9), Dev::seed_from_u64(9));
        let mut trainer = Trainer::default();
        for step in 0..3 {
            let (x, y) = images(12, step);
            let (la, lga, ga) = on_tape(&mut a, &dev_a, &params, x.clone(), &y);
            let (lb, lgb) = trainer.step(&mut b, &params, x, &y, 2, &mut || dev_b.random_u64());
            assert_eq!(la.to_bits(), lb.to_bits(), "loss, step {step}");
            assert_eq!(bits(&lga), bits(&lgb), "logits, step {step}");
            for (i, (g1, g2)) in ga.iter().zip(&trainer.grads).enumerate() {
                assert_eq!(
                    bits(g1),
                    bits(g2),
                    "gradient of {}, step {step}",
                    a.params[i].name
                );
            }
            for (r1, r2) in a.buffers.iter().zip(&b.buffers) {
                assert_eq!(bits(&r1.data), bits(&r2.data), "{}", r1.name);
            }
        }
        let (x, _) = images(5, 99);
        let tensors: Vec<Param> = params
            .iter()
            .map(|p| dev_a.tensor_from_vec(p.clone(), (p.len(),)))
            .collect();
        let xt = dev_a.tensor_from_vec(x.clone(), (5, 1, 28, 28));
        let expect = a.forward(xt, &tensors, false, 1).as_vec();
        let mut ws = Workspace::default();
        for _ in 0..2 {
            let got = logits(&mut b, &params, x.clone(), 5, 1, &mut ws);
            assert_eq!(bits(&expect), bits(&got), "inference");
        }
    }

    /// The main CNN's layers with `c`, `c + 2`, `c + 4` channels and a
    /// hidden layer of `hidden`.
    fn small_main_cnn(c: usize, hidden: usize) -> Vec<LayerSpec> {
        let k = Knobs {
            dropout: 0.25,
            batchnorm: true,
            channels: Some(vec![c, c + 2, c + 4]),
            hidden: Some(hidden),
        };
        ModelSpec::MainCnn.layers(&k).unwrap()
    }

    /// Every step hands back its input batch, which no step asks for
    /// again: what the workspace keeps must not grow with the steps.
    #[test]
    fn the_workspace_stays_bounded() {
        let mut m = Model::new(small_main_cnn(2, 4), (1, 28, 28), 10, 3).unwrap();
        let params: Vec<Vec<f32>> = m.params.iter().map(|p| p.data.clone()).collect();
        let dev = Dev::seed_from_u64(1);
        let mut trainer = Trainer::default();
        let mut kept = Vec::new();
        for step in 0..40 {
            let (x, y) = images(2, step);
            trainer.step(&mut m, &params, x, &y, 1, &mut || dev.random_u64());
            kept.push(trainer.ws.kept());
        }
        assert!(kept[39] <= kept[9] && kept[39] < 30, "{kept:?}");
        let mut ws = Workspace::default();
        for i in 0..40 {
            let out = logits(&mut m, &params, images(2, i).0, 2, 1, &mut ws);
            ws.give_back(out);
        }
        assert!(ws.kept() < 30, "{}", ws.kept());
    }

    #[test]
    fn the_main_cnn_steps_exactly_as_on_the_tape() {
        same_as_tape(small_main_cnn(4, 16));
    }

    /// Layers outside a block: batch norm, ReLU and pooling on their own,
    /// a convolution without batch norm or pooling, ReLU and dropout on
    /// flat activations.
    #[test]
    fn loose_layers_step_exactly_as_on_the_tape() {
        use LayerSpec::*;
        let conv = |out, padding| Conv {
            out,
            kernel: 3,
            stride: 1,
            padding,
        };
        same_as_tape(vec![
            Batchnorm,
            Relu,
            Maxpool(2),
            conv(3, 1),
            Relu,
            conv(4, 0),
            Maxpool(2),
            Batchnorm,
            Flatten,
            Linear(12),
            Relu,
            Dropout(0.5),
            Linear(10),
        ]);
    }
}
