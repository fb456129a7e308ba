//! Fully connected layers through the GEMM crate.

use super::super::vector::add;
use super::*;

/// Fully connected: y (n×o) = x (n×i) · Wᵀ + b, W stored o×i.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub i: usize,
    pub o: usize,
    /// The kernels its products run on.
    pub family: Family,
}

impl Linear {
    pub fn forward(&self, x: &[f32], n: usize, w: &[f32], b: &[f32], threads: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; n * self.o];
        for row in y.chunks_mut(self.o) {
            row.copy_from_slice(b);
        }
        mm(
            Operands {
                m: n,
                n: self.o,
                k: self.i,
                a: x,
                a_s: (self.i, 1),
                b: w,
                b_s: (1, self.i),
            },
            Out {
                c: &mut y,
                ldc: self.o,
                acc: true,
            },
            par(threads),
            self.family,
        );
        y
    }

    /// (dx if asked, dW, db).
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        dy: &[f32],
        need_dx: bool,
        threads: usize,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let bufs = (Vec::new(), need_dx.then(Vec::new));
        self.backward_into(x, n, w, dy, threads, bufs)
    }

    /// `backward` into given buffers (dW's, and dx's if asked), of any
    /// length and contents: both are overwritten in full, so a training
    /// step can hand back the last step's instead of zeroing fresh ones
    /// (dW is most of the model's parameters).
    pub fn backward_into(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        dy: &[f32],
        threads: usize,
        (mut dw, dx): (Vec<f32>, Option<Vec<f32>>),
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        dw.resize(self.o * self.i, 0.0);
        mm(
            Operands {
                m: self.o,
                n: self.i,
                k: n,
                a: dy,
                a_s: (1, self.o),
                b: x,
                b_s: (self.i, 1),
            },
            Out {
                c: &mut dw,
                ldc: self.i,
                acc: false,
            },
            par(threads),
            self.family,
        );
        let mut db = vec![0.0f32; self.o];
        for row in dy.chunks(self.o) {
            add(&mut db, row);
        }
        let dx = dx.map(|mut dx| {
            dx.resize(n * self.i, 0.0);
            mm(
                Operands {
                    m: n,
                    n: self.i,
                    k: self.o,
                    a: dy,
                    a_s: (self.o, 1),
                    b: w,
                    b_s: (self.i, 1),
                },
                Out {
                    c: &mut dx,
                    ldc: self.i,
                    acc: false,
                },
                par(threads),
                self.family,
            );
            dx
        });
        (dx, dw, db)
    }
}
