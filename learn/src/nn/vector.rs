//! Slices as vectors: the element-wise sums every kernel family shares,
//! and a named flat tensor (a parameter or a buffer, as checkpoints hold it).

/// `dst += src`, element by element.
pub fn add(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// A named tensor, its values flat in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor1 {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}
