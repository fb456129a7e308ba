//! Geometry of a layer's data: the shapes the kernels and the Winograd
//! convolutions share, apart from either.

/// Convolution geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
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
