//! The transforms of F(4×4, 3×3) on eight lanes at a time: the input's
//! (Bᵀ d B), the filter's (G g Gᵀ), the output's (Aᵀ m A), their
//! transposes for the backward pass, and an 8 × 8 transpose.

use super::*;
use std::ops::{Add, Mul, Sub};

/// Eight lanes of f32; the compiler maps the element-wise loops to vectors.
#[derive(Clone, Copy)]
pub(super) struct V(pub(super) [f32; L]);

impl V {
    pub(super) const ZERO: V = V([0.0; L]);
}

/// Up to eight values from `src` into lanes (the rest zero). A whole
/// vector is a fixed-size copy, not a call to `memcpy`.
#[inline(always)]
pub(super) fn load(src: &[f32], lanes: usize) -> V {
    if lanes == L {
        let mut v = V::ZERO;
        v.0.copy_from_slice(&src[..L]);
        v
    } else {
        V(std::array::from_fn(
            |l| if l < lanes { src[l] } else { 0.0 },
        ))
    }
}

/// The first `lanes` lanes of `v` into `dst`.
#[inline(always)]
pub(super) fn store(dst: &mut [f32], v: &V, lanes: usize) {
    if lanes == L {
        dst[..L].copy_from_slice(&v.0);
    } else {
        for (d, &x) in dst[..lanes].iter_mut().zip(&v.0) {
            *d = x;
        }
    }
}

impl Add for V {
    type Output = V;
    #[inline(always)]
    fn add(self, o: V) -> V {
        V(std::array::from_fn(|l| self.0[l] + o.0[l]))
    }
}

impl Sub for V {
    type Output = V;
    #[inline(always)]
    fn sub(self, o: V) -> V {
        V(std::array::from_fn(|l| self.0[l] - o.0[l]))
    }
}

impl Mul<f32> for V {
    type Output = V;
    #[inline(always)]
    fn mul(self, k: f32) -> V {
        V(std::array::from_fn(|l| self.0[l] * k))
    }
}

// The one-dimensional transforms, written out so that no multiply by 0 or
// ±1 is executed. Bᵀ, G and Aᵀ are those of F(4, 3) with the points
// 0, ±1, ±2 and ∞; the tests check them against direct convolution.

/// Bᵀ·d: the input tile.
#[inline(always)]
pub(super) fn bt(d: &[V; 6]) -> [V; 6] {
    [
        d[0] * 4.0 - d[2] * 5.0 + d[4],
        d[3] + d[4] - (d[1] + d[2]) * 4.0,
        (d[1] - d[2]) * 4.0 + d[4] - d[3],
        (d[3] - d[1]) * 2.0 + d[4] - d[2],
        (d[1] - d[3]) * 2.0 + d[4] - d[2],
        d[1] * 4.0 - d[3] * 5.0 + d[5],
    ]
}

/// B·v: the transpose of `bt`, for the input gradient.
#[inline(always)]
pub(super) fn b(v: &[V; 6]) -> [V; 6] {
    [
        v[0] * 4.0,
        (v[2] - v[1] + v[5]) * 4.0 + (v[4] - v[3]) * 2.0,
        V::ZERO - v[0] * 5.0 - (v[1] + v[2]) * 4.0 - v[3] - v[4],
        v[1] - v[2] + (v[3] - v[4]) * 2.0 - v[5] * 5.0,
        v[0] + v[1] + v[2] + v[3] + v[4],
        v[5],
    ]
}

/// G·g: the filter.
#[inline(always)]
pub(super) fn g(w: &[V; 3]) -> [V; 6] {
    let (s, d) = (w[0] + w[2], w[1]);
    [
        w[0] * 0.25,
        (s + d) * (-1.0 / 6.0),
        (s - d) * (-1.0 / 6.0),
        w[0] * (1.0 / 24.0) + d * (1.0 / 12.0) + w[2] * (1.0 / 6.0),
        w[0] * (1.0 / 24.0) - d * (1.0 / 12.0) + w[2] * (1.0 / 6.0),
        w[2],
    ]
}

/// Gᵀ·u: the transpose of `g`, for the weight gradient.
#[inline(always)]
pub(super) fn gt(u: &[V; 6]) -> [V; 3] {
    [
        u[0] * 0.25 - (u[1] + u[2]) * (1.0 / 6.0) + (u[3] + u[4]) * (1.0 / 24.0),
        (u[2] - u[1]) * (1.0 / 6.0) + (u[3] - u[4]) * (1.0 / 12.0),
        (u[3] + u[4] - u[1] - u[2]) * (1.0 / 6.0) + u[5],
    ]
}

/// Aᵀ·m: back to the output tile.
#[inline(always)]
pub(super) fn at(m: &[V; 6]) -> [V; 4] {
    let (p1, m1) = (m[1] + m[2], m[1] - m[2]);
    let (p3, m3) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + p1 + p3,
        m1 + m3 * 2.0,
        p1 + p3 * 4.0,
        m1 + m3 * 8.0 + m[5],
    ]
}

/// A·y: the transpose of `at`, for the output gradient.
#[inline(always)]
pub(super) fn a(y: &[V; 4]) -> [V; 6] {
    let (p, q) = (y[0] + y[2], y[1] + y[3]);
    [
        y[0],
        p + q,
        p - q,
        y[0] + y[1] * 2.0 + y[2] * 4.0 + y[3] * 8.0,
        y[0] - y[1] * 2.0 + y[2] * 4.0 - y[3] * 8.0,
        y[3],
    ]
}

/// out = F·X·Fᵀ for a one-dimensional transform F: columns, then rows.
/// Written with plain indexed loops on arrays passed by reference, which
/// the compiler keeps in registers (copies of whole arrays become calls to
/// `memcpy`).
#[inline(always)]
pub(super) fn two_d<const I: usize, const O: usize>(
    x: &[[V; I]; I],
    out: &mut [[V; O]; O],
    f: impl Fn(&[V; I]) -> [V; O],
) {
    let mut cols = [[V::ZERO; I]; O];
    for j in 0..I {
        let mut col = [V::ZERO; I];
        for i in 0..I {
            col[i] = x[i][j];
        }
        let c = f(&col);
        for r in 0..O {
            cols[r][j] = c[r];
        }
    }
    for r in 0..O {
        out[r] = f(&cols[r]);
    }
}

/// The 8 × 8 transpose: lane l of row j becomes lane j of row l.
#[inline(always)]
pub(super) fn transpose8(r: [V; L]) -> [V; L] {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    // SAFETY: the target has AVX2; every load and store is of one whole V.
    unsafe {
        use std::arch::x86_64::*;
        let v: [__m256; L] = std::array::from_fn(|j| _mm256_loadu_ps(r[j].0.as_ptr()));
        let t0 = _mm256_unpacklo_ps(v[0], v[1]);
        let t1 = _mm256_unpackhi_ps(v[0], v[1]);
        let t2 = _mm256_unpacklo_ps(v[2], v[3]);
        let t3 = _mm256_unpackhi_ps(v[2], v[3]);
        let t4 = _mm256_unpacklo_ps(v[4], v[5]);
        let t5 = _mm256_unpackhi_ps(v[4], v[5]);
        let t6 = _mm256_unpacklo_ps(v[6], v[7]);
        let t7 = _mm256_unpackhi_ps(v[6], v[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        let mut rows = [V::ZERO; L];
        for (row, o) in rows.iter_mut().zip(out) {
            _mm256_storeu_ps(row.0.as_mut_ptr(), o);
        }
        rows
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    std::array::from_fn(|l| V(std::array::from_fn(|j| r[j].0[l])))
}
