//! Learning-rate schedules over a training of `epochs` epochs of
//! `batches` steps each, as PyTorch's schedulers define them. The rate of
//! a step depends only on its position, so a resumed training takes up
//! the same rates; only `plateau` (which reacts to validation accuracy)
//! carries state, kept by the training loop.

use serde::{Deserialize, Serialize};

/// `{plateau: {factor, patience}}`, `{cosine: {warmup_epochs, min_lr}}`,
/// `{onecycle: {max_lr, pct_start, div_factor, final_div_factor}}`,
/// `{step: {milestones, gamma}}`, or `constant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// ReduceLROnPlateau (mode max on validation accuracy, relative
    /// threshold 1e-4): the rate times `factor` after `patience` epochs
    /// without improvement.
    Plateau(PlateauSpec),
    /// Linear warmup from lr/W to lr over the first `warmup_epochs`, then
    /// CosineAnnealingLR to `min_lr` over the remaining steps, per step.
    Cosine(CosineSpec),
    /// OneCycleLR (cosine annealing, the rate only: momentum is not
    /// cycled), per step; `lr` is not used, `max_lr` is the peak.
    Onecycle(OneCycleSpec),
    /// MultiStepLR: the rate times `gamma` at each milestone epoch.
    Step(StepSpec),
    /// The rate stays `lr`.
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateauSpec {
    #[serde(default = "half")]
    pub factor: f32,
    #[serde(default = "two")]
    pub patience: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineSpec {
    #[serde(default)]
    pub warmup_epochs: usize,
    #[serde(default)]
    pub min_lr: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneCycleSpec {
    pub max_lr: f32,
    #[serde(default = "pct_start")]
    pub pct_start: f32,
    #[serde(default = "div_factor")]
    pub div_factor: f32,
    #[serde(default = "final_div_factor")]
    pub final_div_factor: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub milestones: Vec<usize>,
    #[serde(default = "tenth")]
    pub gamma: f32,
}

fn half() -> f32 {
    0.5
}
fn two() -> usize {
    2
}
fn tenth() -> f32 {
    0.1
}
fn pct_start() -> f32 {
    0.3
}
fn div_factor() -> f32 {
    25.0
}
fn final_div_factor() -> f32 {
    1e4
}

impl Schedule {
    /// The reference study's: ReduceLROnPlateau(factor 0.5, patience 2).
    pub fn reference() -> Schedule {
        Schedule::Plateau(PlateauSpec {
            factor: 0.5,
            patience: 2,
        })
    }

    /// Values out of range, with the key and the allowed range.
    pub fn check(&self, epochs: usize) -> Result<(), String> {
        let finite_pos = |x: f32| x.is_finite() && x > 0.0;
        match self {
            Schedule::Plateau(p) if !(p.factor > 0.0 && p.factor < 1.0) => Err(format!(
                "schedule.plateau.factor must be in (0, 1), got {}",
                p.factor
            )),
            Schedule::Cosine(c) if c.warmup_epochs >= epochs => Err(format!(
                "schedule.cosine.warmup_epochs must be below epochs ({epochs}), got {}",
                c.warmup_epochs
            )),
            Schedule::Cosine(c) if !(c.min_lr.is_finite() && c.min_lr >= 0.0) => Err(format!(
                "schedule.cosine.min_lr must be at least 0, got {}",
                c.min_lr
            )),
            Schedule::Onecycle(o) if !finite_pos(o.max_lr) => Err(format!(
                "schedule.onecycle.max_lr must be positive, got {}",
                o.max_lr
            )),
            Schedule::Onecycle(o) if !(o.pct_start > 0.0 && o.pct_start < 1.0) => Err(format!(
                "schedule.onecycle.pct_start must be in (0, 1), got {}",
                o.pct_start
            )),
            Schedule::Onecycle(o) if !(finite_pos(o.div_factor) && finite_pos(o.final_div_factor)) => {
                Err(format!(
                    "schedule.onecycle.div_factor and final_div_factor must be positive, got {} and {}",
                    o.div_factor, o.final_div_factor
                ))
            }
            Schedule::Step(s) if !(s.gamma > 0.0 && s.gamma <= 1.0) => Err(format!(
                "schedule.step.gamma must be in (0, 1], got {}",
                s.gamma
            )),
            Schedule::Step(s) if s.milestones.windows(2).any(|w| w[0] >= w[1]) => Err(format!(
                "schedule.step.milestones must increase, got {:?}",
                s.milestones
            )),
            Schedule::Step(s) if s.milestones.iter().any(|&m| m == 0 || m >= epochs) => Err(format!(
                "schedule.step.milestones must lie in 1..{epochs} (epochs), got {:?}",
                s.milestones
            )),
            _ => Ok(()),
        }
    }

    /// Whether the rate changes within an epoch.
    pub fn per_step(&self) -> bool {
        matches!(self, Schedule::Cosine(_) | Schedule::Onecycle(_))
    }

    /// The rate of step `t` (0-based, over the whole training) of a
    /// training of `epochs` × `batches` steps with base rate `lr`; for
    /// `plateau`, `lr` (the loop lowers it).
    pub fn lr_at(&self, lr: f32, t: usize, epochs: usize, batches: usize) -> f32 {
        let total = (epochs * batches).max(1);
        match self {
            Schedule::Plateau(_) | Schedule::Constant => lr,
            Schedule::Step(s) => {
                let epoch = t / batches.max(1);
                let passed = s.milestones.iter().filter(|&&m| m <= epoch).count();
                (lr as f64 * (s.gamma as f64).powi(passed as i32)) as f32
            }
            Schedule::Cosine(c) => {
                let warm = c.warmup_epochs * batches;
                if t < warm {
                    (lr as f64 * (t + 1) as f64 / warm as f64) as f32
                } else {
                    let span = (total - warm).max(1) as f64;
                    let (lo, hi) = (c.min_lr as f64, lr as f64);
                    let cos = (std::f64::consts::PI * (t - warm) as f64 / span).cos();
                    (lo + (hi - lo) * (1.0 + cos) / 2.0) as f32
                }
            }
            Schedule::Onecycle(o) => {
                let initial = o.max_lr as f64 / o.div_factor as f64;
                let min = initial / o.final_div_factor as f64;
                let peak = o.max_lr as f64;
                let end1 = o.pct_start as f64 * total as f64 - 1.0;
                let end2 = total as f64 - 1.0;
                let anneal = |start: f64, end: f64, pct: f64| {
                    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
                };
                let t = t as f64;
                let rate = if t <= end1 {
                    anneal(initial, peak, if end1 > 0.0 { t / end1 } else { 1.0 })
                } else {
                    anneal(peak, min, (t - end1) / (end2 - end1).max(1e-12))
                };
                rate as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (a as f64 - b).abs() <= 1e-6 * b.abs().max(1e-12)
    }

    /// Rates at chosen steps against values computed by hand from the
    /// definitions (PyTorch's schedulers agree to 1e-6 relative:
    /// tests/e2e/recipe.rs checks that where torch is installed).
    #[test]
    fn rates_at_chosen_steps() {
        let cos = Schedule::Cosine(CosineSpec {
            warmup_epochs: 1,
            min_lr: 0.0001,
        });
        // 4 epochs of 10 steps: warmup 10 steps, then 30 of cosine.
        assert!(close(cos.lr_at(0.01, 0, 4, 10), 0.001));
        assert!(close(cos.lr_at(0.01, 9, 4, 10), 0.01));
        assert!(close(cos.lr_at(0.01, 10, 4, 10), 0.01));
        // Halfway through the cosine: the mean of the two ends.
        assert!(close(cos.lr_at(0.01, 25, 4, 10), 0.00505));
        let t = 39.0f64;
        let want = 0.0001
            + (0.01 - 0.0001) * (1.0 + (std::f64::consts::PI * (t - 10.0) / 30.0).cos()) / 2.0;
        assert!(close(cos.lr_at(0.01, 39, 4, 10), want));

        let one = Schedule::Onecycle(OneCycleSpec {
            max_lr: 0.1,
            pct_start: 0.25,
            div_factor: 10.0,
            final_div_factor: 100.0,
        });
        // 100 steps: up over steps 0..=24 from 0.01 to 0.1, down to 1e-4 at 99.
        assert!(close(one.lr_at(0.0, 0, 10, 10), 0.01));
        assert!(close(one.lr_at(0.0, 24, 10, 10), 0.1));
        let mid_up = 0.1 + (0.01 - 0.1) / 2.0 * ((std::f64::consts::PI * 12.0 / 24.0).cos() + 1.0);
        assert!(close(one.lr_at(0.0, 12, 10, 10), mid_up));
        assert!(close(one.lr_at(0.0, 99, 10, 10), 0.0001));
        let pct = (60.0 - 24.0) / (99.0 - 24.0);
        let down = 0.0001 + (0.1 - 0.0001) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
        assert!(close(one.lr_at(0.0, 60, 10, 10), down));

        let step = Schedule::Step(StepSpec {
            milestones: vec![2, 3],
            gamma: 0.1,
        });
        assert!(close(step.lr_at(0.1, 19, 4, 10), 0.1));
        assert!(close(step.lr_at(0.1, 20, 4, 10), 0.01));
        assert!(close(step.lr_at(0.1, 35, 4, 10), 0.001));
        assert_eq!(Schedule::Constant.lr_at(0.1, 35, 4, 10), 0.1);
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_key() {
        let bad = |s: serde_json::Value| {
            serde_json::from_value::<Schedule>(s)
                .map_err(|e| e.to_string())
                .and_then(|s| s.check(10))
                .unwrap_err()
        };
        assert!(bad(serde_json::json!({"cosine": {"warmup_epochs": 10}}))
            .contains("warmup_epochs must be below epochs (10)"));
        assert!(
            bad(serde_json::json!({"onecycle": {"max_lr": 0.1, "pct_start": 1.5}}))
                .contains("pct_start must be in (0, 1)")
        );
        assert!(bad(serde_json::json!({"step": {"milestones": [5, 3]}}))
            .contains("milestones must increase"));
        assert!(
            bad(serde_json::json!({"step": {"milestones": [12]}})).contains("must lie in 1..10")
        );
        assert!(
            bad(serde_json::json!({"plateau": {"factor": 2}})).contains("factor must be in (0, 1)")
        );
        assert!(bad(serde_json::json!({"onecycle": {}})).contains("max_lr"));
        assert!(bad(serde_json::json!("linear")).contains("unknown variant"));
        let c: Schedule = serde_json::from_value(serde_json::json!("constant")).unwrap();
        assert_eq!(c, Schedule::Constant);
    }
}
