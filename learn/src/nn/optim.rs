//! The optimizers, each as PyTorch defines it: Adam (L2 weight decay
//! added to the gradient, bias-corrected moments), AdamW (decoupled weight
//! decay), and SGD with momentum and Nesterov's variant (dampening 0); and
//! clipping by the gradients' global norm.
//!
//! Every update is element by element, so its result does not depend on
//! how the parameters are split over threads; the global norm is summed in
//! a fixed order for the same reason.

use rayon::prelude::*;

/// Which update rule, with its own settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// torch.optim.Adam: `weight_decay` is L2, added to the gradient.
    Adam,
    /// torch.optim.AdamW: the weights shrink by `lr · weight_decay` first.
    AdamW,
    /// torch.optim.SGD(momentum, nesterov, dampening=0): `weight_decay` is L2.
    Sgd { momentum: f32, nesterov: bool },
}

/// An update rule over the weights, layer by layer. What a training
/// saves to resume is its [`State`].
pub trait Optimizer: Send {
    /// The learning rate of the next step.
    fn lr(&self) -> f32;
    /// Sets the learning rate (a schedule, a plateau).
    fn set_lr(&mut self, lr: f32);
    /// One update of `params` by `grads`.
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]);
    /// The step count and the state vectors, to save them.
    fn state(&self) -> State;
    /// Puts back saved state; refuses state of other shapes.
    fn restore(&mut self, state: State) -> Result<(), Misfit>;
}

/// Saved state of other shapes than the optimizer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the saved optimizer state does not fit this model")]
pub struct Misfit;

/// An optimizer's state between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub step: i32,
    /// Adam's first moments, or SGD's momentum buffers.
    pub first: Vec<Vec<f32>>,
    /// Adam's second moments (empty for SGD).
    pub second: Vec<Vec<f32>>,
}

impl State {
    fn zeros(sizes: &[usize], second: bool) -> State {
        let zeros = || sizes.iter().map(|&n| vec![0.0; n]).collect::<Vec<_>>();
        State {
            step: 0,
            first: zeros(),
            second: if second {
                zeros()
            } else {
                sizes.iter().map(|_| Vec::new()).collect()
            },
        }
    }

    /// `saved`, where its vectors have the shapes of this state's.
    fn replace(&mut self, saved: State) -> Result<(), Misfit> {
        let shapes = |x: &[Vec<f32>]| x.iter().map(Vec::len).collect::<Vec<_>>();
        if shapes(&saved.first) != shapes(&self.first)
            || shapes(&saved.second) != shapes(&self.second)
        {
            return Err(Misfit);
        }
        *self = saved;
        Ok(())
    }
}

/// The optimizer `rule` names, over layers of `sizes`.
pub fn build(
    rule: Rule,
    sizes: &[usize],
    lr: f32,
    betas: (f32, f32),
    eps: f32,
    weight_decay: f32,
) -> Box<dyn Optimizer> {
    let settings = AdamSettings {
        lr,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
    };
    match rule {
        Rule::Adam => Box::new(Adam {
            settings,
            state: State::zeros(sizes, true),
        }),
        Rule::AdamW => Box::new(AdamW {
            settings,
            state: State::zeros(sizes, true),
        }),
        Rule::Sgd { momentum, nesterov } => Box::new(Sgd {
            lr,
            momentum,
            nesterov,
            weight_decay,
            state: State::zeros(sizes, false),
        }),
    }
}

#[derive(Debug, Clone, Copy)]
struct AdamSettings {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

/// torch.optim.Adam: `weight_decay` is L2, added to the gradient.
#[derive(Debug, Clone)]
pub struct Adam {
    settings: AdamSettings,
    state: State,
}

/// torch.optim.AdamW: the weights shrink by `lr · weight_decay` first.
#[derive(Debug, Clone)]
pub struct AdamW {
    settings: AdamSettings,
    state: State,
}

/// torch.optim.SGD(momentum, nesterov, dampening=0): `weight_decay` is L2.
#[derive(Debug, Clone)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    state: State,
}

const CH: usize = 1 << 14;

impl Adam {
    pub fn new(sizes: &[usize], lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32) -> Adam {
        Adam {
            settings: AdamSettings {
                lr,
                beta1: betas.0,
                beta2: betas.1,
                eps,
                weight_decay,
            },
            state: State::zeros(sizes, true),
        }
    }
}

/// The optimizer's lr and state, where each type keeps them.
macro_rules! common {
    ($lr:ident $(. $f:ident)*) => {
        fn lr(&self) -> f32 {
            self.$lr$(.$f)*
        }
        fn set_lr(&mut self, lr: f32) {
            self.$lr$(.$f)* = lr;
        }
        fn state(&self) -> State {
            self.state.clone()
        }
        fn restore(&mut self, state: State) -> Result<(), Misfit> {
            self.state.replace(state)
        }
    };
}

impl Optimizer for Adam {
    common!(settings.lr);
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        self.state.step += 1;
        adam_step::<false>(self.settings, &mut self.state, params, grads);
    }
}

impl Optimizer for AdamW {
    common!(settings.lr);
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        self.state.step += 1;
        adam_step::<true>(self.settings, &mut self.state, params, grads);
    }
}

impl Optimizer for Sgd {
    common!(lr);
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        self.state.step += 1;
        let (lr, wd, mu, nesterov) = (self.lr, self.weight_decay, self.momentum, self.nesterov);
        for ((p, g), b) in params.iter_mut().zip(grads).zip(&mut self.state.first) {
            p.par_chunks_mut(CH)
                .zip(g.par_chunks(CH))
                .zip(b.par_chunks_mut(CH))
                .for_each(|((p, g), b)| {
                    // Zipped, not indexed, so that it runs in vectors (as Adam).
                    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                        let gi = g + wd * *p;
                        // The first step's buffer is the gradient itself:
                        // mu · 0 + g.
                        *b = mu * *b + gi;
                        let d = if nesterov { gi + mu * *b } else { *b };
                        *p -= lr * d;
                    }
                });
        }
    }
}

/// Adam's update (AdamW's when `DECOUPLED`), the step already counted.
fn adam_step<const DECOUPLED: bool>(
    s: AdamSettings,
    state: &mut State,
    params: &mut [Vec<f32>],
    grads: &[Vec<f32>],
) {
    let (b1, b2, eps) = (s.beta1, s.beta2, s.eps);
    // L2 enters the gradient; AdamW's decay shrinks the weights instead.
    let (l2, shrink) = if DECOUPLED {
        (0.0, 1.0 - s.lr * s.weight_decay)
    } else {
        (s.weight_decay, 1.0)
    };
    let c1 = 1.0 - b1.powi(state.step);
    let c2 = 1.0 - b2.powi(state.step);
    let lr = s.lr / c1;
    let k = AdamChunk {
        b1,
        b2,
        eps,
        l2,
        shrink,
        lr,
        inv_c2: 1.0 / c2,
    };
    for (((p, g), m), v) in params
        .iter_mut()
        .zip(grads)
        .zip(&mut state.first)
        .zip(&mut state.second)
    {
        p.par_chunks_mut(CH)
            .zip(g.par_chunks(CH))
            .zip(m.par_chunks_mut(CH))
            .zip(v.par_chunks_mut(CH))
            .for_each(|(((p, g), m), v)| k.apply::<DECOUPLED>(p, g, m, v));
    }
}

/// One Adam step's constants, applied to a chunk of the parameters.
#[derive(Clone, Copy)]
struct AdamChunk {
    b1: f32,
    b2: f32,
    eps: f32,
    l2: f32,
    shrink: f32,
    lr: f32,
    inv_c2: f32,
}

impl AdamChunk {
    /// Each element gets the scalar formula's operations in its order
    /// (AdamW's shrink first when `DECOUPLED`). Zipped iterators rather than
    /// indices into four slices: the bounds checks kept that loop scalar (a
    /// fifth of a training step went to its square roots and divisions), and
    /// in vectors each lane does the same correctly rounded operations, so
    /// the bits are those of the scalar loop.
    #[inline(always)]
    fn apply<const DECOUPLED: bool>(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let AdamChunk {
            b1,
            b2,
            eps,
            l2,
            shrink,
            lr,
            inv_c2,
        } = self;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            if DECOUPLED {
                *p *= shrink;
            }
            let gi = g + l2 * *p;
            *m = b1 * *m + (1.0 - b1) * gi;
            *v = b2 * *v + (1.0 - b2) * gi * gi;
            *p -= lr * *m / ((*v * inv_c2).sqrt() + eps);
        }
    }
}

/// The gradients' global L2 norm, summed in a fixed order (f64).
pub fn global_norm(grads: &[Vec<f32>]) -> f64 {
    grads
        .iter()
        .map(|g| {
            g.chunks(CH)
                .map(|c| c.iter().map(|&x| x as f64 * x as f64).sum::<f64>())
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

/// torch.nn.utils.clip_grad_norm_: when the global norm exceeds `max`,
/// every gradient is scaled by `max / (norm + 1e-6)`. Returns the norm.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max: f32) -> f64 {
    let norm = global_norm(grads);
    let coef = max as f64 / (norm + 1e-6);
    if coef < 1.0 {
        let c = coef as f32;
        for g in grads.iter_mut() {
            g.par_chunks_mut(CH)
                .for_each(|c2| c2.iter_mut().for_each(|x| *x *= c));
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update in vectors gives the bits of the scalar loop it replaced,
    /// for Adam with L2 and for AdamW, over several steps and a chunk with
    /// a remainder.
    #[test]
    fn the_vector_update_is_the_scalar_loop_bit_for_bit() {
        let mut r = crate::data::augment::Rng::new(5);
        let mut rand = |n: usize, s: f32| {
            (0..n)
                .map(|_| (r.unit() * 2.0 - 1.0) * s)
                .collect::<Vec<f32>>()
        };
        for decoupled in [false, true] {
            let (b1, b2, eps, lr, wd) = (0.9f32, 0.999f32, 1e-8f32, 0.003f32, 0.05f32);
            let (l2, shrink) = if decoupled {
                (0.0, 1.0 - lr * wd)
            } else {
                (wd, 1.0)
            };
            let n = 1000 + 13;
            let (mut p, mut m, mut v) = (rand(n, 1.0), rand(n, 0.01), rand(n, 1e-4));
            v.iter_mut().for_each(|x| *x = x.abs());
            let (mut p0, mut m0, mut v0) = (p.clone(), m.clone(), v.clone());
            for step in 1..=4 {
                let g = rand(n, 0.1);
                let lr_t = lr / (1.0 - b1.powi(step));
                let inv_c2 = 1.0 / (1.0 - b2.powi(step));
                let k = AdamChunk {
                    b1,
                    b2,
                    eps,
                    l2,
                    shrink,
                    lr: lr_t,
                    inv_c2,
                };
                if decoupled {
                    k.apply::<true>(&mut p, &g, &mut m, &mut v);
                } else {
                    k.apply::<false>(&mut p, &g, &mut m, &mut v);
                }
                for i in 0..n {
                    if decoupled {
                        p0[i] *= shrink;
                    }
                    let gi = g[i] + l2 * p0[i];
                    m0[i] = b1 * m0[i] + (1.0 - b1) * gi;
                    v0[i] = b2 * v0[i] + (1.0 - b2) * gi * gi;
                    p0[i] -= lr_t * m0[i] / ((v0[i] * inv_c2).sqrt() + eps);
                }
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&p), bits(&p0), "decoupled {decoupled}, step {step}");
                assert_eq!(bits(&m), bits(&m0));
                assert_eq!(bits(&v), bits(&v0));
            }
        }
    }

    #[test]
    fn first_step_moves_each_parameter_by_lr_against_its_gradient() {
        let mut a = Adam::new(&[3], 0.1, (0.9, 0.999), 1e-8, 0.0);
        let mut p = vec![vec![1.0, 1.0, 1.0]];
        a.step(&mut p, &[vec![2.0, -0.5, 0.0]]);
        assert!(
            (p[0][0] - 0.9).abs() < 1e-6 && (p[0][1] - 1.1).abs() < 1e-6 && p[0][2] == 1.0,
            "{p:?}"
        );
    }

    #[test]
    fn minimizes_a_quadratic() {
        let mut a = Adam::new(&[2], 0.05, (0.9, 0.999), 1e-8, 0.0);
        let mut p = vec![vec![3.0, -2.0]];
        for _ in 0..500 {
            let g = vec![p[0].iter().map(|x| 2.0 * x).collect()];
            a.step(&mut p, &g);
        }
        assert!(p[0].iter().all(|x| x.abs() < 0.05), "{p:?}");
    }

    /// Two steps of each rule on fixed gradients, against values computed
    /// by hand from PyTorch's definitions (torch.optim gives the same to
    /// within 1e-6 relative; tests/e2e/recipe.rs checks that where torch
    /// is installed).
    #[test]
    fn adamw_and_sgd_nesterov_match_their_definitions() {
        let grads = [vec![vec![0.5f32, -1.0]], vec![vec![0.25f32, 2.0]]];
        // AdamW, lr 0.1, wd 0.1: p ← p(1 − 0.01), then Adam without L2.
        let mut w = build(Rule::AdamW, &[2], 0.1, (0.9, 0.999), 1e-8, 0.1);
        let mut p = vec![vec![1.0f32, -2.0]];
        w.step(&mut p, &grads[0]);
        // Step 1: shrink to (0.99, −1.98), then −0.1·sign(g).
        assert!(
            (p[0][0] - 0.89).abs() < 1e-6 && (p[0][1] + 1.88).abs() < 1e-6,
            "{p:?}"
        );
        w.step(&mut p, &grads[1]);
        // Step 2 by hand: m = 0.9·m₁ + 0.1·g₂, v = 0.999·v₁ + 0.001·g₂²,
        // each bias-corrected; p = 0.89·0.99 − 0.1·m̂/(√v̂ + 1e-8).
        let m0 = (0.9 * 0.05 + 0.1 * 0.25) / (1.0 - 0.81f64);
        let v0 = (0.999 * 0.00025 + 0.001 * 0.0625) / (1.0 - 0.998001f64);
        let want0 = 0.89 * 0.99 - 0.1 * m0 / (v0.sqrt() + 1e-8);
        let m1 = (0.9 * -0.1 + 0.1 * 2.0) / (1.0 - 0.81f64);
        let v1 = (0.999 * 0.001 + 0.001 * 4.0) / (1.0 - 0.998001f64);
        let want1 = -1.88 * 0.99 - 0.1 * m1 / (v1.sqrt() + 1e-8);
        assert!(
            (p[0][0] as f64 - want0).abs() < 1e-6 * want0.abs(),
            "{p:?} {want0}"
        );
        assert!(
            (p[0][1] as f64 - want1).abs() < 1e-6 * want1.abs(),
            "{p:?} {want1}"
        );

        // SGD, lr 0.1, momentum 0.9, Nesterov, wd 0.01.
        let rule = Rule::Sgd {
            momentum: 0.9,
            nesterov: true,
        };
        let mut s = build(rule, &[2], 0.1, (0.9, 0.999), 1e-8, 0.01);
        let mut p = vec![vec![1.0f32, -2.0]];
        s.step(&mut p, &grads[0]);
        // g = (0.51, −1.02); b = g; d = g + 0.9 b = 1.9 g.
        let p1 = [1.0 - 0.1 * 1.9 * 0.51, -2.0 - 0.1 * 1.9 * -1.02];
        assert!((p[0][0] as f64 - p1[0]).abs() < 1e-6 && (p[0][1] as f64 - p1[1]).abs() < 1e-6);
        s.step(&mut p, &grads[1]);
        let g = [0.25 + 0.01 * p1[0], 2.0 + 0.01 * p1[1]];
        let b = [0.9 * 0.51 + g[0], 0.9 * -1.02 + g[1]];
        let want = [
            p1[0] - 0.1 * (g[0] + 0.9 * b[0]),
            p1[1] - 0.1 * (g[1] + 0.9 * b[1]),
        ];
        assert!((p[0][0] as f64 - want[0]).abs() < 1e-6, "{p:?} {want:?}");
        assert!((p[0][1] as f64 - want[1]).abs() < 1e-6, "{p:?} {want:?}");
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_leaves_small_gradients_alone() {
        let mut g = vec![vec![3.0f32], vec![4.0f32]];
        let norm = clip_global_norm(&mut g, 1.0);
        assert!((norm - 5.0).abs() < 1e-12);
        let coef = 1.0 / (5.0 + 1e-6);
        assert!(
            (g[0][0] as f64 - 3.0 * coef).abs() < 1e-6
                && (g[1][0] as f64 - 4.0 * coef).abs() < 1e-6
        );
        let mut small = vec![vec![0.3f32, 0.4]];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small, vec![vec![0.3f32, 0.4]]);
    }
}
