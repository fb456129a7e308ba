//! How a learner updates the weights, beyond the gradients themselves.

use crate::nn::optim::Rule;

/// How a learner updates the weights, beyond the gradients themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub rule: Rule,
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// CrossEntropyLoss's label_smoothing.
    pub label_smoothing: f32,
    /// Clip the gradients' global norm to this.
    pub grad_clip: Option<f32>,
    /// Average the weights with this decay.
    pub ema: Option<f32>,
}

impl Recipe {
    /// Adam with PyTorch's defaults and nothing else.
    pub fn adam(lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32) -> Recipe {
        Recipe {
            rule: Rule::Adam,
            lr,
            betas,
            eps,
            weight_decay,
            label_smoothing: 0.0,
            grad_clip: None,
            ema: None,
        }
    }
}
