//! Geometry of a layer's data: the shapes the kernels and the Winograd
//! convolutions share, apart from either.

use super::simd::Family;

/// Convolution geometry, and the kernels its products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub family: Family,
}

impl Conv {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub(crate) fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    pub(crate) fn ohw(&self) -> usize {
        self.oh() * self.ow()
    }
    pub(crate) fn chw(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// A matrix product's operands: C (m × n) = A (m × k) · B (k × n), A and
/// B given with their (row, column) strides.
#[derive(Debug, Clone, Copy)]
pub struct Operands<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a [f32],
    pub a_s: (usize, usize),
    pub b: &'a [f32],
    pub b_s: (usize, usize),
}

/// Where a product goes: C's rows `ldc` apart, added to what C holds when
/// `acc`, else written over it.
#[derive(Debug)]
pub struct Out<'a> {
    pub c: &'a mut [f32],
    pub ldc: usize,
    pub acc: bool,
}
