//! The 36 matrix products over channels, one per point of the
//! transformed tile, in register blocks; each sum in a fixed order.

use super::*;
use std::cell::RefCell;

/// out (m × t, rows `ldo` apart) = U (m × k, strides `us`) · X (k × t,
/// rows `ldx` apart), for t a multiple of `L`. The per-ξ products are
/// short in k (a layer's channels), where a general GEMM spends much of
/// its time packing and storing; this one keeps a 4 × 24 block of the
/// output in registers and reads its operands in place. Every output is
/// ∑ₖ in order with fused multiply-adds, whatever the blocking.
#[allow(clippy::too_many_arguments)]
pub(super) fn product<const ACC: bool>(
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
    if crate::nn::simd::family() == crate::nn::simd::Family::Avx512 {
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
pub(super) unsafe fn product_avx512<const ACC: bool>(
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
    use crate::nn::avx512::{rows8, rows8_masked, CONTINUE, SET};
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
pub(super) fn rows<const NV: usize, const ACC: bool>(
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
pub(super) fn block43<const ACC: bool>(
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
pub(super) fn block<const R: usize, const NV: usize, const ACC: bool>(
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
    pub(super) static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    pub(super) static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}
