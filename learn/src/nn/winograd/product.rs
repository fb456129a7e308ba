//! The 36 matrix products over channels, one per point of the
//! transformed tile, in register blocks; each sum in a fixed order.

use super::*;
use std::cell::RefCell;

/// A product's factors as the register blocks read them: U (m × k,
/// strides `us`), X (k × t, rows `ldx` apart), and the output's rows,
/// `ldo` apart.
#[derive(Clone, Copy)]
pub(super) struct Factors<'a> {
    pub k: usize,
    pub u: &'a [f32],
    pub us: (usize, usize),
    pub x: &'a [f32],
    pub ldx: usize,
    pub ldo: usize,
}

/// out = [out +] U (m × k) · X (k × t), for t a multiple of `L`: `ops`
/// with B's rows contiguous, on `family`'s kernels. The per-ξ products
/// are short in k (a layer's channels), where a general GEMM spends much
/// of its time packing and storing; this one keeps a 4 × 24 block of the
/// output in registers and reads its operands in place. Every output is
/// ∑ₖ in order with fused multiply-adds, whatever the blocking.
pub(super) fn product(family: Family, ops: Operands<'_>, out: Out<'_>) {
    let Operands {
        m,
        n: t,
        k,
        a: u,
        a_s: us,
        b: x,
        b_s: (ldx, x_cs),
    } = ops;
    assert_eq!(x_cs, 1, "X's rows are read in place");
    debug_assert_eq!(t % L, 0);
    let f = Factors {
        k,
        u,
        us,
        x,
        ldx,
        ldo: out.ldc,
    };
    if out.acc {
        product_in::<true>(family, &f, m, t, out.c);
    } else {
        product_in::<false>(family, &f, m, t, out.c);
    }
}

/// `product`, its accumulation a constant.
fn product_in<const ACC: bool>(family: Family, f: &Factors, m: usize, t: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if family.is_avx512() {
        // SAFETY: a family says AVX-512 only where the core has it.
        unsafe { product_avx512::<ACC>(f, m, t, out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = family;
    let mut t0 = 0;
    while t0 + 3 * L <= t {
        rows::<3, ACC>(f, 0..m, t0, out);
        t0 += 3 * L;
    }
    while t0 < t {
        rows::<1, ACC>(f, 0..m, t0, out);
        t0 += L;
    }
}

/// `product` with eight rows at a time in AVX-512: 32 columns in two zmm,
/// the columns left (8, 16 or 24) 16 at a time under a mask; the rows
/// left as in AVX2. Every output is the same ∑ₖ in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn product_avx512<const ACC: bool>(f: &Factors, m: usize, t: usize, out: &mut [f32]) {
    use crate::nn::avx512::{rows8, rows8_masked, Dest, Panel, CONTINUE, SET};
    let Factors {
        k,
        u,
        us: (u_rs, u_cs),
        x,
        ldx,
        ldo,
    } = *f;
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
                let p = Panel {
                    k,
                    a: u.as_ptr().add(r0 * u_rs),
                    a_s: (u_rs, u_cs),
                    b: x.as_ptr().add(t0),
                    ldb: ldx,
                };
                let d = Dest {
                    c: out.as_mut_ptr().add(r0 * ldo + t0),
                    ldc: ldo,
                };
                if w == 4 * L {
                    if ACC {
                        rows8::<CONTINUE>(p, d);
                    } else {
                        rows8::<SET>(p, d);
                    }
                } else {
                    for j in (0..w).step_by(16) {
                        let mask = if w - j >= 16 {
                            u16::MAX
                        } else {
                            (1u16 << (w - j)) - 1
                        };
                        let (p, d) = (Panel { b: p.b.add(j), ..p }, Dest { c: d.c.add(j), ..d });
                        if ACC {
                            rows8_masked::<CONTINUE>(p, d, mask);
                        } else {
                            rows8_masked::<SET>(p, d, mask);
                        }
                    }
                }
            }
            r0 += 8;
        }
        let mut tt = t0;
        while tt + 3 * L <= t0 + w {
            rows::<3, ACC>(f, r0..m, tt, out);
            tt += 3 * L;
        }
        while tt < t0 + w {
            rows::<1, ACC>(f, r0..m, tt, out);
            tt += L;
        }
        t0 += w;
    }
}

/// `product` for the rows `rows` and the columns t0 .. t0 + NV·L, four
/// rows at a time.
#[inline(always)]
pub(super) fn rows<const NV: usize, const ACC: bool>(
    f: &Factors,
    rows: std::ops::Range<usize>,
    t0: usize,
    out: &mut [f32],
) {
    let mut r0 = rows.start;
    while r0 + 4 <= rows.end {
        if NV == 3 {
            block43::<ACC>(f, r0, t0, out);
        } else {
            block::<4, NV, ACC>(f, r0, t0, out);
        }
        r0 += 4;
    }
    while r0 < rows.end {
        block::<1, NV, ACC>(f, r0, t0, out);
        r0 += 1;
    }
}

/// `block::<4, 3>` with its twelve sums named, so that they stay in
/// registers (as arrays, the compiler kept them in memory).
#[inline(always)]
pub(super) fn block43<const ACC: bool>(f: &Factors, r0: usize, t0: usize, out: &mut [f32]) {
    let Factors {
        k,
        u,
        us: (u_rs, u_cs),
        x,
        ldx,
        ldo,
    } = *f;
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
    block::<4, 3, ACC>(f, r0, t0, out);
}

/// One R × NV·L block of `product`: acc = ∑ₖ u[r][k]·x[k][t], in order.
#[inline(always)]
pub(super) fn block<const R: usize, const NV: usize, const ACC: bool>(
    f: &Factors,
    r0: usize,
    t0: usize,
    out: &mut [f32],
) {
    let Factors {
        k,
        u,
        us: (u_rs, u_cs),
        x,
        ldx,
        ldo,
    } = *f;
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
