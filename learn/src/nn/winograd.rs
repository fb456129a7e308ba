//! 3×3 stride-1 convolutions by Winograd's minimal filtering F(4×4, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016). Each 4×4 output tile of a channel pair costs 36 multiplies
//! instead of 144: the input's overlapping 6×6 tiles and the filters are
//! transformed, the products become 36 independent matrix products over
//! channels (one per point ξ of the transformed tile), and the output is
//! transformed back.
//!
//! Backward is the exact adjoint of that forward pass: the output
//! gradient goes through the transposed output transform, the weight
//! gradient is ∑ over tiles of (transformed output gradient) × (transformed
//! input) per ξ, and the input gradient runs the input transform
//! transposed.
//!
//! Both passes work on a group of `L` images (one per vector lane) at a
//! time, and within it on blocks of `block_len()` tile positions: a block is
//! transformed, multiplied and transformed back while its 36 × (c + o) ×
//! 24 floats are in L2 (whole-batch transformed buffers are 2.25 times
//! the activations and ran from L3, which cost more than the saved
//! multiplies). Every sum has a fixed order and each group runs on one
//! thread, so the results are bit-identical whatever the thread count.

use super::geometry::Conv;
use super::scratch::with_buffer;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::{Add, Mul, Sub};

/// Tiles transformed at once, one per vector lane.
const L: usize = 8;
/// Points of a transformed tile (6×6).
const XI: usize = 36;
/// Tile positions per block: 3 × `L` columns, the width of `block43`, or
/// with AVX-512 4 × `L`, two zmm (and the main CNN's 16 and 4 tiles per
/// image in whole blocks). The bits do not depend on it: every product's
/// output is its own ∑ in order, the weight gradient's sum over tiles runs
/// on from block to block, and tiles are added into the input gradient in
/// their order.
fn block_len() -> usize {
    match super::simd::family() {
        super::simd::Family::Avx512 => 4,
        super::simd::Family::Avx2 => 3,
    }
}

/// Whether a convolution is done this way: 3×3, stride 1, enough input
/// channels for the per-ξ products to be real matrix products (in whole
/// vectors, for the weight gradient's), and an output of at least one
/// whole tile.
pub fn applies(g: &Conv) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad <= 2
        && g.c >= 32
        && g.c.is_multiple_of(L)
        && g.oh() >= 4
        && g.ow() >= 4
}

/// Eight lanes of f32; the compiler maps the element-wise loops to vectors.
#[derive(Clone, Copy)]
struct V([f32; L]);

impl V {
    const ZERO: V = V([0.0; L]);
}

/// Up to eight values from `src` into lanes (the rest zero). A whole
/// vector is a fixed-size copy, not a call to `memcpy`.
#[inline(always)]
fn load(src: &[f32], lanes: usize) -> V {
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
fn store(dst: &mut [f32], v: &V, lanes: usize) {
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
fn bt(d: &[V; 6]) -> [V; 6] {
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
fn b(v: &[V; 6]) -> [V; 6] {
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
fn g(w: &[V; 3]) -> [V; 6] {
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
fn gt(u: &[V; 6]) -> [V; 3] {
    [
        u[0] * 0.25 - (u[1] + u[2]) * (1.0 / 6.0) + (u[3] + u[4]) * (1.0 / 24.0),
        (u[2] - u[1]) * (1.0 / 6.0) + (u[3] - u[4]) * (1.0 / 12.0),
        (u[3] + u[4] - u[1] - u[2]) * (1.0 / 6.0) + u[5],
    ]
}

/// Aᵀ·m: back to the output tile.
#[inline(always)]
fn at(m: &[V; 6]) -> [V; 4] {
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
fn a(y: &[V; 4]) -> [V; 6] {
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
fn two_d<const I: usize, const O: usize>(
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

/// out (m × t, rows `ldo` apart) = U (m × k, strides `us`) · X (k × t,
/// rows `ldx` apart), for t a multiple of `L`. The per-ξ products are
/// short in k (a layer's channels), where a general GEMM spends much of
/// its time packing and storing; this one keeps a 4 × 24 block of the
/// output in registers and reads its operands in place. Every output is
/// ∑ₖ in order with fused multiply-adds, whatever the blocking.
#[allow(clippy::too_many_arguments)]
fn product<const ACC: bool>(
    m: usize,
    t: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    u: &[f32],
    us: (usize, usize),
    x: &[f32],
    ldx: usize,
) {
    debug_assert_eq!(t % L, 0);
    #[cfg(target_arch = "x86_64")]
    if super::simd::family() == super::simd::Family::Avx512 {
        // SAFETY: the family is AVX-512 only where the core has it.
        unsafe { product_avx512::<ACC>(m, t, k, out, ldo, u, us, x, ldx) };
        return;
    }
    let mut t0 = 0;
    while t0 + 3 * L <= t {
        rows::<3, ACC>(0, m, t0, k, out, ldo, u, us, x, ldx);
        t0 += 3 * L;
    }
    while t0 < t {
        rows::<1, ACC>(0, m, t0, k, out, ldo, u, us, x, ldx);
        t0 += L;
    }
}

/// `product` with eight rows at a time in AVX-512: 32 columns in two zmm,
/// the columns left (8, 16 or 24) 16 at a time under a mask; the rows
/// left as in AVX2. Every output is the same ∑ₖ in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn product_avx512<const ACC: bool>(
    m: usize,
    t: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    u: &[f32],
    (u_rs, u_cs): (usize, usize),
    x: &[f32],
    ldx: usize,
) {
    use super::avx512::{rows8, rows8_masked, CONTINUE, SET};
    let mut t0 = 0;
    while t0 < t {
        let w = (t - t0).min(4 * L);
        let mut r0 = 0;
        while r0 + 8 <= m {
            assert!(k == 0 || x.len() >= (k - 1) * ldx + t0 + w);
            assert!(k == 0 || u.len() > (r0 + 7) * u_rs + (k - 1) * u_cs);
            assert!(out.len() >= (r0 + 7) * ldo + t0 + w);
            // SAFETY: the asserts keep every access inside the slices
            // (a mask covers the columns below w only).
            unsafe {
                let (o, a, b) = (
                    out.as_mut_ptr().add(r0 * ldo + t0),
                    u.as_ptr().add(r0 * u_rs),
                    x.as_ptr().add(t0),
                );
                let us = (u_rs, u_cs);
                if w == 4 * L {
                    if ACC {
                        rows8::<CONTINUE>(k, o, ldo, a, us, b, ldx);
                    } else {
                        rows8::<SET>(k, o, ldo, a, us, b, ldx);
                    }
                } else {
                    for j in (0..w).step_by(16) {
                        let mask = if w - j >= 16 {
                            u16::MAX
                        } else {
                            (1u16 << (w - j)) - 1
                        };
                        let (o, b) = (o.add(j), b.add(j));
                        if ACC {
                            rows8_masked::<CONTINUE>(k, o, ldo, a, us, b, ldx, mask);
                        } else {
                            rows8_masked::<SET>(k, o, ldo, a, us, b, ldx, mask);
                        }
                    }
                }
            }
            r0 += 8;
        }
        let mut tt = t0;
        while tt + 3 * L <= t0 + w {
            rows::<3, ACC>(r0, m, tt, k, out, ldo, u, (u_rs, u_cs), x, ldx);
            tt += 3 * L;
        }
        while tt < t0 + w {
            rows::<1, ACC>(r0, m, tt, k, out, ldo, u, (u_rs, u_cs), x, ldx);
            tt += L;
        }
        t0 += w;
    }
}

/// `product` for the rows `first` .. m and the columns t0 .. t0 + NV·L,
/// four rows at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rows<const NV: usize, const ACC: bool>(
    first: usize,
    m: usize,
    t0: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    u: &[f32],
    us: (usize, usize),
    x: &[f32],
    ldx: usize,
) {
    let mut r0 = first;
    while r0 + 4 <= m {
        if NV == 3 {
            block43::<ACC>(r0, t0, k, out, ldo, u, us, x, ldx);
        } else {
            block::<4, NV, ACC>(r0, t0, k, out, ldo, u, us, x, ldx);
        }
        r0 += 4;
    }
    while r0 < m {
        block::<1, NV, ACC>(r0, t0, k, out, ldo, u, us, x, ldx);
        r0 += 1;
    }
}

/// `block::<4, 3>` with its twelve sums named, so that they stay in
/// registers (as arrays, the compiler kept them in memory).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block43<const ACC: bool>(
    r0: usize,
    t0: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    u: &[f32],
    (u_rs, u_cs): (usize, usize),
    x: &[f32],
    ldx: usize,
) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        assert!(k == 0 || x.len() >= (k - 1) * ldx + t0 + 3 * L);
        assert!(k == 0 || u.len() > (r0 + 3) * u_rs + (k - 1) * u_cs);
        assert!(out.len() >= (r0 + 3) * ldo + t0 + 3 * L);
        // SAFETY: the asserts above keep every access inside the slices,
        // and the target has AVX2 and FMA.
        unsafe {
            use std::arch::x86_64::*;
            let o = out.as_mut_ptr().add(r0 * ldo + t0);
            // With ACC, the sums go on from what `out` holds.
            let init = |r: usize, j: usize| {
                if ACC {
                    _mm256_loadu_ps(o.add(r * ldo + j * L))
                } else {
                    _mm256_setzero_ps()
                }
            };
            let (mut a00, mut a01, mut a02) = (init(0, 0), init(0, 1), init(0, 2));
            let (mut a10, mut a11, mut a12) = (init(1, 0), init(1, 1), init(1, 2));
            let (mut a20, mut a21, mut a22) = (init(2, 0), init(2, 1), init(2, 2));
            let (mut a30, mut a31, mut a32) = (init(3, 0), init(3, 1), init(3, 2));
            let mut xr = x.as_ptr().add(t0);
            let mut ur = u.as_ptr().add(r0 * u_rs);
            for _ in 0..k {
                let x0 = _mm256_loadu_ps(xr);
                let x1 = _mm256_loadu_ps(xr.add(L));
                let x2 = _mm256_loadu_ps(xr.add(2 * L));
                let w = _mm256_set1_ps(*ur);
                a00 = _mm256_fmadd_ps(w, x0, a00);
                a01 = _mm256_fmadd_ps(w, x1, a01);
                a02 = _mm256_fmadd_ps(w, x2, a02);
                let w = _mm256_set1_ps(*ur.add(u_rs));
                a10 = _mm256_fmadd_ps(w, x0, a10);
                a11 = _mm256_fmadd_ps(w, x1, a11);
                a12 = _mm256_fmadd_ps(w, x2, a12);
                let w = _mm256_set1_ps(*ur.add(2 * u_rs));
                a20 = _mm256_fmadd_ps(w, x0, a20);
                a21 = _mm256_fmadd_ps(w, x1, a21);
                a22 = _mm256_fmadd_ps(w, x2, a22);
                let w = _mm256_set1_ps(*ur.add(3 * u_rs));
                a30 = _mm256_fmadd_ps(w, x0, a30);
                a31 = _mm256_fmadd_ps(w, x1, a31);
                a32 = _mm256_fmadd_ps(w, x2, a32);
                xr = xr.add(ldx);
                ur = ur.add(u_cs);
            }
            for (r, row) in [
                [a00, a01, a02],
                [a10, a11, a12],
                [a20, a21, a22],
                [a30, a31, a32],
            ]
            .iter()
            .enumerate()
            {
                for (j, &v) in row.iter().enumerate() {
                    _mm256_storeu_ps(o.add(r * ldo + j * L), v);
                }
            }
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    block::<4, 3, ACC>(r0, t0, k, out, ldo, u, (u_rs, u_cs), x, ldx);
}

/// One R × NV·L block of `product`: acc = ∑ₖ u[r][k]·x[k][t], in order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<const R: usize, const NV: usize, const ACC: bool>(
    r0: usize,
    t0: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    u: &[f32],
    (u_rs, u_cs): (usize, usize),
    x: &[f32],
    ldx: usize,
) {
    assert!(k == 0 || x.len() >= (k - 1) * ldx + t0 + NV * L);
    assert!(k == 0 || u.len() > (r0 + R - 1) * u_rs + (k - 1) * u_cs);
    assert!(out.len() >= (r0 + R - 1) * ldo + t0 + NV * L);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: the asserts above keep every access inside the slices, and
    // the target has AVX2 and FMA.
    unsafe {
        use std::arch::x86_64::*;
        let mut acc = [[_mm256_setzero_ps(); NV]; R];
        if ACC {
            for (r, ar) in acc.iter_mut().enumerate() {
                for (j, a) in ar.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(out.as_ptr().add((r0 + r) * ldo + t0 + j * L));
                }
            }
        }
        let (xp, up) = (x.as_ptr().add(t0), u.as_ptr().add(r0 * u_rs));
        for kk in 0..k {
            let xr = xp.add(kk * ldx);
            let mut xv = [_mm256_setzero_ps(); NV];
            for (j, v) in xv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(xr.add(j * L));
            }
            for (r, ar) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_ps(*up.add(r * u_rs + kk * u_cs));
                for (a, &v) in ar.iter_mut().zip(&xv) {
                    *a = _mm256_fmadd_ps(w, v, *a);
                }
            }
        }
        for (r, ar) in acc.iter().enumerate() {
            let dst = out.as_mut_ptr().add((r0 + r) * ldo + t0);
            for (j, &v) in ar.iter().enumerate() {
                _mm256_storeu_ps(dst.add(j * L), v);
            }
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        // The same fused multiply-adds in the same order, element by element.
        for r in 0..R {
            for t in t0..t0 + NV * L {
                let mut a = if ACC { out[(r0 + r) * ldo + t] } else { 0.0 };
                for kk in 0..k {
                    a = u[(r0 + r) * u_rs + kk * u_cs].mul_add(x[kk * ldx + t], a);
                }
                out[(r0 + r) * ldo + t] = a;
            }
        }
    }
}

// Per-thread buffers kept between calls: buffers of a few hundred kB
// allocated afresh in every layer of every step came from `mmap`, and
// faulting their pages in cost as much as a third of conv3's backward.
thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The tiling of one convolution over a batch. Images go through in
/// groups of `L`, one per vector lane, so every transform works on whole
/// vectors; the zero-bordered planes are held interleaved
/// ([row][column][lane]) so that a tile's rows are vector loads. A last
/// group with fewer images has zero lanes.
struct Tiles {
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    /// Tiles per row of the output, and per image.
    tw: usize,
    per_img: usize,
    /// The padded plane: 4 rows (columns) per tile row (column), plus 2.
    ph: usize,
    pw: usize,
    /// Groups of `L` images.
    groups: usize,
}

impl Tiles {
    fn new(g: &Conv, n: usize) -> Tiles {
        let (oh, ow) = (g.oh(), g.ow());
        let (th, tw) = (oh.div_ceil(4), ow.div_ceil(4));
        Tiles {
            c: g.c,
            o: g.o,
            h: g.h,
            w: g.w,
            pad: g.pad,
            oh,
            ow,
            tw,
            per_img: th * tw,
            ph: 4 * th + 2,
            pw: 4 * tw + 2,
            groups: n.div_ceil(L),
        }
    }

    /// Floats in one interleaved plane.
    fn plane(&self) -> usize {
        self.ph * self.pw * L
    }

    /// Tile r's top-left output pixel.
    fn place(&self, r: usize) -> (usize, usize) {
        ((r / self.tw) * 4, (r % self.tw) * 4)
    }

    /// U = G·g·Gᵀ for every filter, as `[ξ][o][c]`.
    fn filters(&self, w: &[f32]) -> Vec<f32> {
        let pairs = self.o * self.c;
        let mut u = vec![0.0f32; XI * pairs];
        for p0 in (0..pairs).step_by(L) {
            let lanes = L.min(pairs - p0);
            let mut k = [[V::ZERO; 3]; 3];
            for l in 0..lanes {
                let f = &w[(p0 + l) * 9..][..9];
                for i in 0..3 {
                    for j in 0..3 {
                        k[i][j].0[l] = f[i * 3 + j];
                    }
                }
            }
            let mut t = [[V::ZERO; 6]; 6];
            two_d(&k, &mut t, g);
            for (xi, v) in t.iter().flatten().enumerate() {
                store(&mut u[xi * pairs + p0..], v, lanes);
            }
        }
        u
    }

    /// dW = Gᵀ·dU·G from dU as `[ξ][o][c]`.
    fn filter_grads(&self, du: &[f32]) -> Vec<f32> {
        let pairs = self.o * self.c;
        let mut dw = vec![0.0f32; pairs * 9];
        for p0 in (0..pairs).step_by(L) {
            let lanes = L.min(pairs - p0);
            let mut m = [[V::ZERO; 6]; 6];
            for (xi, v) in m.iter_mut().flatten().enumerate() {
                *v = load(&du[xi * pairs + p0..], lanes);
            }
            let mut k = [[V::ZERO; 3]; 3];
            two_d(&m, &mut k, gt);
            for l in 0..lanes {
                let f = &mut dw[(p0 + l) * 9..][..9];
                for i in 0..3 {
                    for j in 0..3 {
                        f[i * 3 + j] = k[i][j].0[l];
                    }
                }
            }
        }
        dw
    }

    /// A group's images (`imgs` × c × h × w) into c interleaved planes,
    /// zero around them and in lanes without an image.
    fn interleave(&self, src: &[f32], imgs: usize, planes: &mut [f32]) {
        let (hw, plane) = (self.h * self.w, self.plane());
        if imgs == L {
            // Every lane of the inside is written below: zero the border.
            let (row, inside) = (self.pw * L, (self.pad, self.pad + self.w));
            for pl in planes.chunks_mut(plane) {
                for (r, line) in pl.chunks_mut(row).enumerate() {
                    if r < self.pad || r >= self.pad + self.h {
                        line.fill(0.0);
                    } else {
                        line[..inside.0 * L].fill(0.0);
                        line[inside.1 * L..].fill(0.0);
                    }
                }
            }
        } else {
            planes.fill(0.0);
        }
        for (ci, pl) in planes.chunks_mut(plane).enumerate() {
            for l in 0..imgs {
                let img = &src[(l * self.c + ci) * hw..][..hw];
                for (r, row) in img.chunks(self.w).enumerate() {
                    let at = (r + self.pad) * self.pw + self.pad;
                    for (j, &val) in row.iter().enumerate() {
                        pl[(at + j) * L + l] = val;
                    }
                }
            }
        }
    }

    /// The inside of c interleaved planes back into a group's images.
    fn deinterleave(&self, planes: &[f32], imgs: usize, dst: &mut [f32]) {
        let (hw, plane) = (self.h * self.w, self.plane());
        for (ci, pl) in planes.chunks(plane).enumerate() {
            for l in 0..imgs {
                let img = &mut dst[(l * self.c + ci) * hw..][..hw];
                for (r, row) in img.chunks_mut(self.w).enumerate() {
                    let at = (r + self.pad) * self.pw + self.pad;
                    for (j, d) in row.iter_mut().enumerate() {
                        *d = pl[(at + j) * L + l];
                    }
                }
            }
        }
    }

    /// Bᵀ·d·B for the input tile under output tile r of a plane.
    #[inline(always)]
    fn input_tile(&self, pl: &[f32], r: usize) -> [[V; 6]; 6] {
        let (ty, tx) = self.place(r);
        let mut d = [[V::ZERO; 6]; 6];
        for (i, di) in d.iter_mut().enumerate() {
            let row = &pl[((ty + i) * self.pw + tx) * L..][..6 * L];
            for (j, v) in di.iter_mut().enumerate() {
                *v = load(&row[j * L..], L);
            }
        }
        let mut t = [[V::ZERO; 6]; 6];
        two_d(&d, &mut t, bt);
        t
    }

    /// A·dY·Aᵀ for output tile r of channel oc of a group's output
    /// gradient (zero beyond the edges and in lanes without an image).
    #[inline(always)]
    fn grad_tile(&self, dyc: &[f32], imgs: usize, oc: usize, r: usize) -> [[V; 6]; 6] {
        let (ty, tx) = self.place(r);
        let ohw = self.oh * self.ow;
        let mut gy = [[V::ZERO; 4]; 4];
        for l in 0..imgs {
            let p = &dyc[(l * self.o + oc) * ohw..][..ohw];
            for (i, gi) in gy.iter_mut().enumerate().take(self.oh - ty) {
                let src = &p[(ty + i) * self.ow + tx..];
                for (j, v) in gi.iter_mut().enumerate().take(self.ow - tx) {
                    v.0[l] = src[j];
                }
            }
        }
        let mut t = [[V::ZERO; 6]; 6];
        two_d(&gy, &mut t, a);
        t
    }
}

/// y = conv(x, w) + b; `y` holds n × o × oh × ow.
pub fn forward(g: &Conv, x: &[f32], n: usize, w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let tl = Tiles::new(g, n);
    let (c, o, hw, ohw) = (tl.c, tl.o, tl.h * tl.w, tl.oh * tl.ow);
    let plane = tl.plane();
    let u = tl.filters(w);
    let (tl, u) = (&tl, &u[..]);
    y[..n * o * ohw]
        .par_chunks_mut(L * o * ohw)
        .zip(x[..n * c * hw].par_chunks(L * c * hw))
        .for_each(|(yc, xc)| {
            let block = block_len();
            let lens = [c * plane, XI * c * block * L, XI * o * block * L];
            with_buffer(&SCRATCH, lens.iter().sum(), |buf| {
                let (planes, rest) = buf.split_at_mut(lens[0]);
                let (vb, mb) = rest.split_at_mut(lens[1]);
                let imgs = xc.len() / (c * hw);
                tl.interleave(xc, imgs, planes);
                for r0 in (0..tl.per_img).step_by(block) {
                    let nb = block.min(tl.per_img - r0);
                    let cols = nb * L;
                    // V[ξ] (c × cols), its rows XI·cols apart: a tile's 36
                    // points are side by side (36 rows of a whole plane
                    // apart fell into one set of L1 and evicted each other).
                    for (ci, pl) in planes.chunks(plane).enumerate() {
                        for bi in 0..nb {
                            let t = tl.input_tile(pl, r0 + bi);
                            for (xi, v) in t.iter().flatten().enumerate() {
                                store(&mut vb[(ci * XI + xi) * cols + bi * L..], v, L);
                            }
                        }
                    }
                    // M[ξ] (o × cols) = U[ξ] (o × c) · V[ξ] (c × cols)
                    for xi in 0..XI {
                        product::<false>(
                            o,
                            cols,
                            c,
                            &mut mb[xi * cols..],
                            XI * cols,
                            &u[xi * o * c..],
                            (c, 1),
                            &vb[xi * cols..],
                            XI * cols,
                        );
                    }
                    // y = Aᵀ·M·A per tile, cut at the output's edges.
                    for oc in 0..o {
                        let add = bias.map_or(0.0, |b| b[oc]);
                        for bi in 0..nb {
                            let mut mt = [[V::ZERO; 6]; 6];
                            for (xi, v) in mt.iter_mut().flatten().enumerate() {
                                *v = load(&mb[(oc * XI + xi) * cols + bi * L..], L);
                            }
                            let mut out = [[V::ZERO; 4]; 4];
                            two_d(&mt, &mut out, at);
                            let (ty, tx) = tl.place(r0 + bi);
                            for l in 0..imgs {
                                let p = &mut yc[(l * o + oc) * ohw..][..ohw];
                                for (i, oi) in out.iter().enumerate().take(tl.oh - ty) {
                                    let dst = &mut p[(ty + i) * tl.ow + tx..];
                                    for (j, v) in oi.iter().enumerate().take(tl.ow - tx) {
                                        dst[j] = v.0[l] + add;
                                    }
                                }
                            }
                        }
                    }
                }
            })
        });
}

/// Gradients from dy (n × o × oh × ow): (dx if asked, dW, db). Per block
/// of tiles: dM from dy and V from x; dU += dM·Vᵀ (a partial sum per group
/// of `L` images, the groups then added in order, so the same whatever the
/// threads); dV = Uᵀ·dM, and B·dV·Bᵀ added into each channel's plane.
pub fn backward(
    g: &Conv,
    x: &[f32],
    n: usize,
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let tl = Tiles::new(g, n);
    let (c, o, hw, ohw) = (tl.c, tl.o, tl.h * tl.w, tl.oh * tl.ow);
    assert_eq!(
        c % L,
        0,
        "the weight gradient's products run over c in vectors"
    );
    let u = tl.filters(w);
    let (tl, u) = (&tl, &u[..]);
    let mut db = vec![0.0f32; o];
    for (oc, d) in db.iter_mut().enumerate() {
        *d = total((0..n).map(|img| &dy[(img * o + oc) * ohw..][..ohw]));
    }
    let mut dx = vec![0.0f32; if need_dx { n * c * hw } else { 0 }];
    let groups: Vec<Option<&mut [f32]>> = if need_dx {
        dx.chunks_mut(L * c * hw).map(Some).collect()
    } else {
        (0..tl.groups).map(|_| None).collect()
    };
    let per = XI * o * c;
    let mut du = vec![0.0f32; per];
    with_buffer(&PARTIALS, tl.groups * per, |partial| {
        group_grads(tl, u, &x[..n * c * hw], dy, groups, partial);
        for p in partial.chunks(per) {
            super::vector::add(&mut du, p);
        }
    });
    let dw = tl.filter_grads(&du);
    (need_dx.then_some(dx), dw, db)
}

/// For each group of `L` images: its part of dU (`[ξ][o][c]`) into its
/// chunk of `partial`, and dx into its chunk of the input gradient where
/// one is given.
fn group_grads(
    tl: &Tiles,
    u: &[f32],
    x: &[f32],
    dy: &[f32],
    groups: Vec<Option<&mut [f32]>>,
    partial: &mut [f32],
) {
    // x holds exactly the batch's images.
    let (c, o, hw, ohw, pw) = (tl.c, tl.o, tl.h * tl.w, tl.oh * tl.ow, tl.pw);
    let (n, plane) = (x.len() / (c * hw), tl.plane());
    groups
        .into_par_iter()
        .zip(partial.par_chunks_mut(XI * o * c))
        .enumerate()
        .for_each(|(k, (dxc, du))| {
            let imgs = L.min(n - k * L);
            let xc = &x[k * L * c * hw..][..imgs * c * hw];
            let dyc = &dy[k * L * o * ohw..][..imgs * o * ohw];
            let need_dx = dxc.is_some();
            let block = block_len();
            let lens = [
                c * plane,
                if need_dx { c * plane } else { 0 },
                XI * block * L * c,
                XI * o * block * L,
                XI * c * block * L,
            ];
            with_buffer(&SCRATCH, lens.iter().sum(), |buf| {
                let (xpl, rest) = buf.split_at_mut(lens[0]);
                let (dpl, rest) = rest.split_at_mut(lens[1]);
                let (vt, rest) = rest.split_at_mut(lens[2]);
                let (mb, vb) = rest.split_at_mut(lens[3]);
                du.fill(0.0);
                dpl.fill(0.0);
                tl.interleave(xc, imgs, xpl);
                for r0 in (0..tl.per_img).step_by(block) {
                    let nb = block.min(tl.per_img - r0);
                    let cols = nb * L;
                    // Vᵀ[ξ] (cols × c): eight channels' tiles at a time,
                    // each point's 8 × 8 (channels × images) transposed in
                    // registers and stored as eight rows of eight channels.
                    for c0 in (0..c).step_by(L) {
                        for bi in 0..nb {
                            let mut eight = [[[V::ZERO; 6]; 6]; L];
                            for (j, t) in eight.iter_mut().enumerate() {
                                *t = tl.input_tile(&xpl[(c0 + j) * plane..][..plane], r0 + bi);
                            }
                            for xi in 0..XI {
                                let rows = std::array::from_fn(|j| eight[j][xi / 6][xi % 6]);
                                for (l, v) in transpose8(rows).iter().enumerate() {
                                    store(&mut vt[(xi * cols + bi * L + l) * c + c0..], v, L);
                                }
                            }
                        }
                    }
                    // dM[ξ] (o × cols), its rows XI·cols apart (as V's in
                    // `forward`).
                    for oc in 0..o {
                        for bi in 0..nb {
                            let t = tl.grad_tile(dyc, imgs, oc, r0 + bi);
                            for (xi, v) in t.iter().flatten().enumerate() {
                                store(&mut mb[(oc * XI + xi) * cols + bi * L..], v, L);
                            }
                        }
                    }
                    for xi in 0..XI {
                        // dU[ξ] (o × c) += dM[ξ] (o × cols) · Vᵀ[ξ] (cols × c)
                        product::<true>(
                            o,
                            c,
                            cols,
                            &mut du[xi * o * c..],
                            c,
                            &mb[xi * cols..],
                            (XI * cols, 1),
                            &vt[xi * cols * c..],
                            c,
                        );
                        if need_dx {
                            // dV[ξ] (c × cols) = U[ξ]ᵀ (c × o) · dM[ξ] (o × cols)
                            product::<false>(
                                c,
                                cols,
                                o,
                                &mut vb[xi * cols..],
                                XI * cols,
                                &u[xi * o * c..],
                                (1, c),
                                &mb[xi * cols..],
                                XI * cols,
                            );
                        }
                    }
                    if need_dx {
                        // Tiles overlap: each adds B·dV·Bᵀ at its place, in order.
                        for (ci, pl) in dpl.chunks_mut(plane).enumerate() {
                            for bi in 0..nb {
                                let mut m = [[V::ZERO; 6]; 6];
                                for (xi, v) in m.iter_mut().flatten().enumerate() {
                                    *v = load(&vb[(ci * XI + xi) * cols + bi * L..], L);
                                }
                                let mut d = [[V::ZERO; 6]; 6];
                                two_d(&m, &mut d, b);
                                let (ty, tx) = tl.place(r0 + bi);
                                for (i, di) in d.iter().enumerate() {
                                    for (j, v) in di.iter().enumerate() {
                                        let at = ((ty + i) * pw + tx + j) * L;
                                        let sum = load(&pl[at..], L) + *v;
                                        store(&mut pl[at..], &sum, L);
                                    }
                                }
                            }
                        }
                    }
                }
                if let Some(dxc) = dxc {
                    tl.deinterleave(dpl, imgs, dxc);
                }
            })
        });
}

/// The 8 × 8 transpose: lane l of row j becomes lane j of row l.
#[inline(always)]
fn transpose8(r: [V; L]) -> [V; L] {
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

/// The sum of several planes, eight running sums side by side (in a fixed
/// order, so the same whatever the threads).
fn total<'a>(planes: impl Iterator<Item = &'a [f32]>) -> f32 {
    let mut acc = [0.0f32; L];
    let mut rest = 0.0f32;
    for p in planes {
        let chunks = p.chunks_exact(L);
        for &v in chunks.remainder() {
            rest += v;
        }
        for ch in chunks {
            for l in 0..L {
                acc[l] += ch[l];
            }
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::data::augment::Rng::new(seed);
        (0..n).map(|_| r.unit() * 2.0 - 1.0).collect()
    }

    /// Largest |a − b| relative to the largest |b|.
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// The per-ξ products give the same bits on AVX2 and on AVX-512, for
    /// every shape of block and remainder, accumulating or not.
    #[test]
    fn products_are_the_same_bits_on_avx2_and_avx512() {
        use crate::nn::simd::{choose, family, Family};
        let Some(_only) = families("products_are_the_same_bits_on_avx2_and_avx512") else {
            return;
        };
        let before = family();
        for (m, t, k) in [
            (8, 24, 32),
            (13, 48, 40),
            (17, 56, 64),
            (3, 24, 32),
            (16, 8, 33),
            (9, 72, 0),
            (8, 32, 24),
            (64, 32, 32),
            (128, 64, 32),
            (13, 40, 9),
            (20, 96, 5),
        ] {
            let u = rand_vec(m * k + 1, 1);
            let x = rand_vec(k * t + 1, 2);
            let start = rand_vec(m * t, 3);
            let run = |f: Family, acc: bool| {
                choose(f);
                let mut out = start.clone();
                if acc {
                    product::<true>(m, t, k, &mut out, t, &u, (k, 1), &x, t);
                } else {
                    product::<false>(m, t, k, &mut out, t, &u, (k, 1), &x, t);
                }
                out
            };
            for acc in [false, true] {
                let a = run(Family::Avx2, acc);
                let b = run(Family::Avx512, acc);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "m {m}, t {t}, k {k}, acc {acc}"
                );
            }
        }
        choose(before);
    }

    /// The right to switch kernel families in this test binary (a switch
    /// in another test between choosing and running would compare AVX2
    /// with itself), or None, said on the real stderr, without AVX-512.
    fn families(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        if !crate::nn::simd::avx512_available() {
            // Straight to stderr: libtest captures `eprintln!` of a passing
            // test, and a skip must never read as a pass.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: this CPU has no AVX-512"
            );
            return None;
        }
        Some(ONE.lock().unwrap_or_else(|e| e.into_inner()))
    }

    #[test]
    fn transpose8_transposes() {
        let rows: [V; L] = std::array::from_fn(|j| V(std::array::from_fn(|l| (j * 10 + l) as f32)));
        let t = transpose8(rows);
        for (j, row) in rows.iter().enumerate() {
            for (l, col) in t.iter().enumerate() {
                assert_eq!(col.0[j], row.0[l], "row {j}, lane {l}");
            }
        }
    }

    /// Whole convolutions, forward and backward, give the same bits on
    /// AVX2 and on AVX-512, whose blocks of tiles and products differ:
    /// every geometry of `geoms` and the main CNN's two at a full batch.
    #[test]
    fn layers_are_the_same_bits_on_avx2_and_avx512() {
        use crate::nn::simd::{choose, family, Family};
        let Some(_only) = families("layers_are_the_same_bits_on_avx2_and_avx512") else {
            return;
        };
        let before = family();
        let main_cnn = [(conv(32, 14, 14, 64, 1), 64), (conv(64, 7, 7, 128, 1), 61)];
        for (t, (g, n)) in geoms().into_iter().chain(main_cnn).enumerate() {
            let t = t as u64;
            let x = rand_vec(n * g.c * g.h * g.w, t);
            let w = rand_vec(g.o * g.c * 9, 10 + t);
            let bias = rand_vec(g.o, 20 + t);
            let dy = rand_vec(n * g.o * g.oh() * g.ow(), 30 + t);
            let run = |f: Family| {
                assert_eq!(choose(f), f);
                let mut y = vec![0.0f32; n * g.o * g.oh() * g.ow()];
                forward(&g, &x, n, &w, Some(&bias), &mut y);
                let (dx, dw, db) = backward(&g, &x, n, &w, &dy, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                [bits(&y), bits(&dx.unwrap()), bits(&dw), bits(&db)]
            };
            let (a, b) = (run(Family::Avx2), run(Family::Avx512));
            for (what, (a, b)) in ["y", "dx", "dW", "db"].iter().zip(a.iter().zip(&b)) {
                assert!(a == b, "{g:?}, {n} images: {what} differs");
            }
        }
        choose(before);
    }

    fn conv(c: usize, h: usize, w: usize, o: usize, pad: usize) -> Conv {
        Conv {
            c,
            h,
            w,
            o,
            k: 3,
            stride: 1,
            pad,
        }
    }

    /// Sizes with whole and partial tiles, every padding, partial blocks
    /// of tiles, and batches that end inside a group of images.
    fn geoms() -> Vec<(Conv, usize)> {
        vec![
            (conv(32, 14, 14, 64, 1), 9),
            (conv(64, 7, 7, 128, 1), 3),
            (conv(8, 9, 6, 5, 0), 11),
            (conv(16, 5, 8, 7, 2), 17),
            (conv(8, 4, 4, 3, 1), 1),
        ]
    }

    #[test]
    fn it_applies_to_3x3_stride_1_with_enough_channels() {
        for (g, _) in geoms() {
            assert_eq!(applies(&g), g.c >= 32, "{g:?}");
        }
        let g = geoms()[0].0;
        assert!(
            !applies(&Conv { c: 1, ..g }),
            "the first layer stays direct"
        );
        assert!(!applies(&Conv { c: 36, ..g }), "c in whole vectors");
        assert!(!applies(&Conv { k: 5, pad: 2, ..g }));
        assert!(!applies(&Conv { stride: 2, ..g }));
        assert!(!applies(&Conv { h: 2, w: 2, ..g }), "no whole tile");
    }

    #[test]
    fn forward_matches_direct_convolution() {
        // The forward pass also takes channels that are not whole vectors.
        let odd = (conv(12, 5, 8, 7, 2), 17);
        for (t, (g, n)) in geoms().into_iter().chain([odd]).enumerate() {
            let t = t as u64;
            let x = rand_vec(n * g.c * g.h * g.w, t);
            let w = rand_vec(g.o * g.c * 9, 10 + t);
            let b = rand_vec(g.o, 20 + t);
            let len = n * g.o * g.oh() * g.ow();
            let (mut got, mut want) = (vec![f32::NAN; len], vec![0.0; len]);
            forward(&g, &x, n, &w, Some(&b), &mut got);
            g.forward_direct(&x, n, &w, Some(&b), &mut want);
            let e = rel_err(&got, &want);
            assert!(e < 1e-5, "{g:?}: relative error {e}");
            got.fill(f32::NAN);
            forward(&g, &x, n, &w, None, &mut got);
            g.forward_direct(&x, n, &w, None, &mut want);
            assert!(rel_err(&got, &want) < 1e-5, "{g:?} without bias");
        }
    }

    #[test]
    fn backward_matches_direct_convolution() {
        for (t, (g, n)) in geoms().into_iter().enumerate() {
            let t = t as u64;
            let x = rand_vec(n * g.c * g.h * g.w, t);
            let w = rand_vec(g.o * g.c * 9, 10 + t);
            let dy = rand_vec(n * g.o * g.oh() * g.ow(), 30 + t);
            let (dx, dw, db) = backward(&g, &x, n, &w, &dy, true);
            let (dx0, dw0, db0) = g.backward_direct(&x, n, &w, &dy, true);
            let e = rel_err(&dx.unwrap(), &dx0.unwrap());
            assert!(e < 1e-5, "{g:?}: dx relative error {e}");
            let e = rel_err(&dw, &dw0);
            assert!(e < 1e-5, "{g:?}: dW relative error {e}");
            let e = rel_err(&db, &db0);
            assert!(e < 1e-6, "{g:?}: db relative error {e}");
            let (none, dw2, db2) = backward(&g, &x, n, &w, &dy, false);
            assert!(none.is_none());
            assert_eq!((dw2, db2), (dw, db), "{g:?}: dW without dx");
        }
    }

    #[test]
    fn the_results_are_the_same_whatever_the_threads() {
        let (g, n) = geoms()[3];
        let x = rand_vec(n * g.c * g.h * g.w, 1);
        let w = rand_vec(g.o * g.c * 9, 2);
        let dy = rand_vec(n * g.o * g.oh() * g.ow(), 3);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let mut y = vec![0.0; dy.len()];
                    forward(&g, &x, n, &w, None, &mut y);
                    (y, backward(&g, &x, n, &w, &dy, true))
                })
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(2));
    }

    #[test]
    fn a_nested_use_of_a_buffer_gets_its_own() {
        with_buffer(&SCRATCH, 4, |outer| {
            outer.fill(1.0);
            with_buffer(&SCRATCH, 4, |inner| inner.fill(2.0));
            assert_eq!(outer, [1.0; 4]);
        });
        with_buffer(&SCRATCH, 2, |again| assert_eq!(again, [1.0; 2], "kept"));
    }

    /// The transposed transforms are the adjoints of the forward ones:
    /// ⟨F·x, y⟩ = ⟨x, Fᵀ·y⟩ on random vectors.
    #[test]
    fn each_transpose_is_the_adjoint() {
        fn lanes(v: &[f32]) -> V {
            V(std::array::from_fn(|l| v[l]))
        }
        fn dot<const N: usize>(a: [V; N], b: [V; N]) -> f32 {
            a.iter().zip(&b).map(|(x, y)| x.0[0] * y.0[0]).sum()
        }
        let r = rand_vec(64, 7);
        let v6 = |k: usize| -> [V; 6] { std::array::from_fn(|i| lanes(&r[(k + i) % 56..])) };
        let v4: [V; 4] = std::array::from_fn(|i| lanes(&r[20 + i..]));
        let v3: [V; 3] = std::array::from_fn(|i| lanes(&r[40 + i..]));
        let close = |p: f32, q: f32| assert!((p - q).abs() < 1e-5 * (1.0 + p.abs()), "{p} vs {q}");
        close(dot(bt(&v6(0)), v6(9)), dot(v6(0), b(&v6(9))));
        close(dot(at(&v6(3)), v4), dot(v6(3), a(&v4)));
        close(dot(g(&v3), v6(5)), dot(v3, gt(&v6(5))));
    }

    /// Per-layer times of the main CNN's conv2 and conv3, batch 64, one
    /// thread, Winograd against im2col: `cargo test --release -p learn
    /// --lib time_layers -- --ignored --nocapture`. It asserts nothing.
    #[test]
    #[ignore]
    fn time_layers() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            for g in [conv(32, 14, 14, 64, 1), conv(64, 7, 7, 128, 1)] {
                let n = 64;
                let x = rand_vec(n * g.c * g.h * g.w, 1);
                let w = rand_vec(g.o * g.c * 9, 2);
                let dy = rand_vec(n * g.o * g.oh() * g.ow(), 3);
                let mut y = vec![0.0; dy.len()];
                let mut time = |name: &str, f: &mut dyn FnMut(&mut [f32])| {
                    f(&mut y);
                    let s = std::time::Instant::now();
                    for _ in 0..20 {
                        f(&mut y);
                    }
                    let ms = s.elapsed().as_secs_f64() * 1e3 / 20.0;
                    eprintln!("{}->{} {}x{}: {name} {ms:.2} ms", g.c, g.o, g.h, g.w);
                };
                time("forward, im2col", &mut |y| {
                    g.forward_direct(&x, n, &w, None, y)
                });
                time("forward, Winograd", &mut |y| {
                    forward(&g, &x, n, &w, None, y)
                });
                time("backward, im2col", &mut |_| {
                    g.backward_direct(&x, n, &w, &dy, true);
                });
                time("backward, Winograd", &mut |_| {
                    backward(&g, &x, n, &w, &dy, true);
                });
            }
        });
    }
}
