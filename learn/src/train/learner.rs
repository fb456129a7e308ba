//! The optimizer's side of a training: master weights, their tensors on
//! the device, the optimizer, the averaged weights, and one step.

use super::ema::{blend, Ema};
use super::recipe::Recipe;
use super::state::{Saved, Snapshot};
use crate::nn::fast::Trainer;
use crate::nn::generic::{Flat, Net};
use crate::nn::infer::{score, Backend, Engine, Logits};
use crate::nn::model::Model;
use crate::nn::ops::Dev;
use crate::nn::optim::{build, clip_global_norm, Optimizer};
use dfdx::prelude::*;

/// Why a saved state does not fit this training.
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    #[error("the saved state does not fit this model")]
    Model,
    #[error(transparent)]
    Optimizer(#[from] crate::nn::optim::Misfit),
    #[error("the saved averaged weights do not fit this training")]
    Averages,
}

/// The optimizer's state: master weights, their dfdx tensors, the
/// optimizer, the averaged weights, and the device (whose generator
/// drives dropout).
pub struct Learner<D: Backend = Dev> {
    pub dev: D,
    pub master: Vec<Vec<f32>>,
    pub tensors: Vec<Flat<D>>,
    pub opt: Box<dyn Optimizer>,
    pub ema: Option<Ema<D>>,
    pub label_smoothing: f32,
    pub grad_clip: Option<f32>,
    /// Values drawn from the device's generator so far (dropout).
    pub draws: u64,
    pub engine: Engine<D>,
    /// The fast kernels' step state (`cpu` only).
    fast: Option<Trainer>,
}

impl Learner<Dev> {
    /// On the CPU, its generator seeded with `seed`, with Adam.
    pub fn new(
        model: &Model,
        seed: u64,
        lr: f32,
        betas: (f32, f32),
        eps: f32,
        weight_decay: f32,
    ) -> Learner<Dev> {
        let recipe = Recipe::adam(lr, betas, eps, weight_decay);
        Learner::on(Dev::seed_from_u64(seed), "cpu", model, &recipe)
    }
}

impl<D: Backend> Learner<D> {
    /// On `dev` (seeded by whoever made it), computing as `device` says
    /// (`cpu`: the fast kernels where `dev` has them; else the generic
    /// path), updating as `recipe` says.
    pub fn on(dev: D, device: &str, model: &Model, recipe: &Recipe) -> Learner<D> {
        let master: Vec<Vec<f32>> = model.params.iter().map(|t| t.data.clone()).collect();
        let tensors = Net::upload(model, &dev);
        let sizes: Vec<usize> = master.iter().map(Vec::len).collect();
        let opt = build(
            recipe.rule,
            &sizes,
            recipe.lr,
            recipe.betas,
            recipe.eps,
            recipe.weight_decay,
        );
        let engine = Engine::new(device, model, &dev);
        let ema = recipe.ema.map(|decay| Ema {
            decay,
            params: master.clone(),
            buffers: model.buffers.iter().map(|b| b.data.clone()).collect(),
            tensors: Net::upload(model, &dev),
        });
        Learner {
            dev,
            master,
            tensors,
            opt,
            ema,
            label_smoothing: recipe.label_smoothing,
            grad_clip: recipe.grad_clip,
            draws: 0,
            fast: matches!(engine, Engine::Fast).then(Trainer::default),
            engine,
        }
    }

    /// The weights validation and the best epoch use: the averaged ones
    /// with `ema`, else the current ones. With `ema`, the model's
    /// batch-norm buffers are swapped with the averaged ones until
    /// [`Self::after_validation`] swaps them back.
    pub(crate) fn for_validation(&mut self, model: &mut Model) {
        if let Some(e) = self.ema.as_mut() {
            for (t, m) in e.tensors.iter_mut().zip(&e.params) {
                t.copy_from(m);
            }
            for (b, avg) in model.buffers.iter_mut().zip(e.buffers.iter_mut()) {
                std::mem::swap(&mut b.data, avg);
            }
        }
    }

    /// The weights on the device that validation uses.
    pub(crate) fn validation_weights(&self) -> &[Flat<D>] {
        self.ema.as_ref().map_or(&self.tensors, |e| &e.tensors)
    }

    pub(crate) fn after_validation(&mut self, model: &mut Model) {
        if let Some(e) = self.ema.as_mut() {
            for (b, avg) in model.buffers.iter_mut().zip(e.buffers.iter_mut()) {
                std::mem::swap(&mut b.data, avg);
            }
        }
    }

    /// The weights and buffers validation used, as the best epoch keeps
    /// them; only between [`Self::for_validation`] and
    /// [`Self::after_validation`] (the model holds the buffers it used).
    pub(crate) fn snapshot(&self, model: &Model) -> Snapshot {
        let weights = self.ema.as_ref().map_or(&self.master, |e| &e.params);
        (
            weights.clone(),
            model.buffers.iter().map(|b| b.data.clone()).collect(),
        )
    }

    /// After a step's gradients: clip, update, average.
    fn apply(&mut self, model: &Model, grads: &mut [Vec<f32>]) {
        if let Some(max) = self.grad_clip {
            clip_global_norm(grads, max);
        }
        self.opt.step(&mut self.master, grads);
        for (t, m) in self.tensors.iter_mut().zip(self.master.iter()) {
            t.copy_from(m);
        }
        if let Some(e) = self.ema.as_mut() {
            blend(&mut e.params, &self.master, e.decay);
            let now: Vec<Vec<f32>> = model.buffers.iter().map(|b| b.data.clone()).collect();
            blend(&mut e.buffers, &now, e.decay);
        }
    }

    /// Takes up a saved state: weights, buffers, optimizer, and the
    /// generator advanced past the values already drawn.
    pub(crate) fn restore(&mut self, model: &mut Model, saved: &Saved) -> Result<(), Unfit> {
        let fits = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len())
        };
        let buffers: Vec<Vec<f32>> = model.buffers.iter().map(|b| b.data.clone()).collect();
        if !fits(&saved.master, &self.master) || !fits(&saved.buffers, &buffers) {
            return Err(Unfit::Model);
        }
        self.opt.restore(crate::nn::optim::State {
            step: saved.adam_step,
            first: saved.adam_m.clone(),
            second: saved.adam_v.clone(),
        })?;
        self.opt.set_lr(saved.lr);
        match (self.ema.as_mut(), &saved.ema) {
            (Some(e), Some((p, b))) if fits(p, &e.params) && fits(b, &e.buffers) => {
                (e.params, e.buffers) = (p.clone(), b.clone());
            }
            (None, None) => {}
            _ => return Err(Unfit::Averages),
        }
        self.master = saved.master.clone();
        for (t, m) in self.tensors.iter_mut().zip(self.master.iter()) {
            t.copy_from(m);
        }
        for (b, d) in model.buffers.iter_mut().zip(&saved.buffers) {
            b.data = d.clone();
        }
        for _ in 0..saved.draws {
            self.dev.random_u64();
        }
        self.draws = saved.draws;
        Ok(())
    }

    /// One optimization step on a batch; returns (mean loss, correct).
    pub fn step(
        &mut self,
        model: &mut Model,
        x: Vec<f32>,
        y: &[u8],
        threads: usize,
    ) -> (f64, usize) {
        if let Some(mut fast) = self.fast.take() {
            let dev = &self.dev;
            fast.label_smoothing = self.label_smoothing;
            let (loss, logits) =
                fast.step(model, &self.master, x, y, threads, &mut || dev.random_u64());
            self.draws += model.dropout_draws_per_step();
            let mut grads = std::mem::take(&mut fast.grads);
            self.apply(model, &mut grads);
            fast.grads = grads;
            self.fast = Some(fast);
            return (loss, score(&logits, y).1);
        }
        let n = y.len();
        let logits: Logits<D, OwnedTape<f32, D>> =
            self.engine
                .forward(model, &self.dev, x, &self.tensors, true, threads);
        self.draws += model.dropout_draws_per_step();
        let lv = logits.as_vec();
        let target = crate::nn::fast::smoothed_targets(y, model.classes, self.label_smoothing);
        let target = self.dev.tensor_from_vec(target, (n, model.classes));
        let loss = cross_entropy_with_logits_loss(logits, target);
        let loss_value = loss.as_vec()[0] as f64;
        let grads = loss.backward();
        let mut g: Vec<Vec<f32>> = self.tensors.iter().map(|t| grads.get(t).as_vec()).collect();
        drop(grads);
        self.apply(model, &mut g);
        let (_, correct) = score(&lv, y);
        (loss_value, correct)
    }
}
