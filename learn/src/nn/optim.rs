//! Adam (with PyTorch's semantics: L2 weight decay added to the gradient,
//! bias-corrected moments).

use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    step: i32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Adam {
    pub fn new(sizes: &[usize], lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32) -> Adam {
        Adam {
            lr,
            beta1: betas.0,
            beta2: betas.1,
            eps,
            weight_decay,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// The step count and the first and second moments (to save them).
    pub fn moments(&self) -> (i32, &[Vec<f32>], &[Vec<f32>]) {
        (self.step, &self.m, &self.v)
    }

    /// Puts back saved moments; refuses ones of other shapes.
    pub fn restore(&mut self, step: i32, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) -> Result<(), String> {
        let shapes = |x: &[Vec<f32>]| x.iter().map(Vec::len).collect::<Vec<_>>();
        if shapes(&m) != shapes(&self.m) || shapes(&v) != shapes(&self.v) {
            return Err("the saved optimizer state does not fit this model".into());
        }
        (self.step, self.m, self.v) = (step, m, v);
        Ok(())
    }

    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        self.step += 1;
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let c1 = 1.0 - b1.powi(self.step);
        let c2 = 1.0 - b2.powi(self.step);
        let lr = self.lr / c1;
        let inv_c2 = 1.0 / c2;
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            const CH: usize = 1 << 14;
            p.par_chunks_mut(CH)
                .zip(g.par_chunks(CH))
                .zip(m.par_chunks_mut(CH))
                .zip(v.par_chunks_mut(CH))
                .for_each(|(((p, g), m), v)| {
                    for i in 0..p.len() {
                        let gi = g[i] + wd * p[i];
                        m[i] = b1 * m[i] + (1.0 - b1) * gi;
                        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                        p[i] -= lr * m[i] / ((v[i] * inv_c2).sqrt() + eps);
                    }
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
