//! AVX-512 micro-kernels of C = A·B for B's rows in place (k rows `ldb`
//! apart, each 32 contiguous columns) and A's values broadcast. Every
//! output is one chain of fused multiply-adds over k in order, as in the
//! AVX2 kernels; how the chain starts and ends is the `MODE`:
//!
//! - `SET`: from zero, written to C;
//! - `CONTINUE`: from C's value (the Winograd products' accumulation);
//! - `ADD`: from zero, then added to C (the `gemm` crate's depth blocks).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// What a micro-kernel reads: k steps, each of A's values broadcast
/// (A's rows `a_s.0` apart, its steps `a_s.1` apart) and one row of B
/// (rows `ldb` apart).
#[derive(Debug, Clone, Copy)]
pub struct Panel {
    pub k: usize,
    pub a: *const f32,
    pub a_s: (usize, usize),
    pub b: *const f32,
    pub ldb: usize,
}

/// Where a micro-kernel's chains end: C's rows, `ldc` apart.
#[derive(Debug, Clone, Copy)]
pub struct Dest {
    pub c: *mut f32,
    pub ldc: usize,
}

pub const SET: u8 = 0;
pub const CONTINUE: u8 = 1;
pub const ADD: u8 = 2;

/// Eight rows of 32 columns: sixteen zmm sums, two loads of B and eight
/// broadcasts of A per step of k.
///
/// # Safety
/// The core has AVX-512F; `d` holds 8 rows `ldc` apart of 32 floats,
/// `p.a` 8 rows of k values, `p.b` k rows of 32 floats.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub unsafe fn rows8<const MODE: u8>(p: Panel, d: Dest) {
    let Panel {
        k,
        a,
        a_s: (a_rs, a_cs),
        b,
        ldb,
    } = p;
    let Dest { c, ldc } = d;
    // SAFETY: the caller's contract covers every access below.
    unsafe {
        let init = |r: usize| {
            if MODE == CONTINUE {
                (
                    _mm512_loadu_ps(c.add(r * ldc)),
                    _mm512_loadu_ps(c.add(r * ldc + 16)),
                )
            } else {
                (_mm512_setzero_ps(), _mm512_setzero_ps())
            }
        };
        // Named, so that the sixteen sums stay in registers.
        let ((mut a0, mut b0), (mut a1, mut b1)) = (init(0), init(1));
        let ((mut a2, mut b2), (mut a3, mut b3)) = (init(2), init(3));
        let ((mut a4, mut b4), (mut a5, mut b5)) = (init(4), init(5));
        let ((mut a6, mut b6), (mut a7, mut b7)) = (init(6), init(7));
        let (mut br, mut ar) = (b, a);
        for _ in 0..k {
            let x0 = _mm512_loadu_ps(br);
            let x1 = _mm512_loadu_ps(br.add(16));
            macro_rules! row {
                ($r:expr, $a:ident, $b:ident) => {
                    let w = _mm512_set1_ps(*ar.add($r * a_rs));
                    $a = _mm512_fmadd_ps(w, x0, $a);
                    $b = _mm512_fmadd_ps(w, x1, $b);
                };
            }
            row!(0, a0, b0);
            row!(1, a1, b1);
            row!(2, a2, b2);
            row!(3, a3, b3);
            row!(4, a4, b4);
            row!(5, a5, b5);
            row!(6, a6, b6);
            row!(7, a7, b7);
            br = br.add(ldb);
            ar = ar.add(a_cs);
        }
        for (r, (s0, s1)) in [
            (a0, b0),
            (a1, b1),
            (a2, b2),
            (a3, b3),
            (a4, b4),
            (a5, b5),
            (a6, b6),
            (a7, b7),
        ]
        .into_iter()
        .enumerate()
        {
            store::<MODE>(c.add(r * ldc), s0);
            store::<MODE>(c.add(r * ldc + 16), s1);
        }
    }
}

/// One row of 32 columns (the rows left over from `rows8`).
///
/// # Safety
/// As `rows8`, for one row.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub unsafe fn row1<const MODE: u8>(p: Panel, c: *mut f32) {
    let Panel {
        k,
        a,
        a_s: (_, a_cs),
        b,
        ldb,
    } = p;
    // SAFETY: the caller's contract covers every access below.
    unsafe {
        let (mut s0, mut s1) = if MODE == CONTINUE {
            (_mm512_loadu_ps(c), _mm512_loadu_ps(c.add(16)))
        } else {
            (_mm512_setzero_ps(), _mm512_setzero_ps())
        };
        let (mut br, mut ar) = (b, a);
        for _ in 0..k {
            let w = _mm512_set1_ps(*ar);
            s0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(br), s0);
            s1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(br.add(16)), s1);
            br = br.add(ldb);
            ar = ar.add(a_cs);
        }
        store::<MODE>(c, s0);
        store::<MODE>(c.add(16), s1);
    }
}

/// Eight rows of up to 16 columns, the lanes of `mask` (the columns left
/// after the 32-column panels): the same chains, in one zmm per row;
/// masked-off lanes are neither read nor written.
///
/// # Safety
/// As `rows8`, for the columns of `mask` only.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub unsafe fn rows8_masked<const MODE: u8>(p: Panel, d: Dest, mask: __mmask16) {
    let Panel {
        k,
        a,
        a_s: (a_rs, a_cs),
        b,
        ldb,
    } = p;
    let Dest { c, ldc } = d;
    // SAFETY: the caller's contract covers every access below; masked-off
    // lanes are not accessed.
    unsafe {
        let init = |r: usize| {
            if MODE == CONTINUE {
                _mm512_maskz_loadu_ps(mask, c.add(r * ldc))
            } else {
                _mm512_setzero_ps()
            }
        };
        let (mut s0, mut s1, mut s2, mut s3) = (init(0), init(1), init(2), init(3));
        let (mut s4, mut s5, mut s6, mut s7) = (init(4), init(5), init(6), init(7));
        let (mut br, mut ar) = (b, a);
        for _ in 0..k {
            let x = _mm512_maskz_loadu_ps(mask, br);
            s0 = _mm512_fmadd_ps(_mm512_set1_ps(*ar), x, s0);
            s1 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(a_rs)), x, s1);
            s2 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(2 * a_rs)), x, s2);
            s3 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(3 * a_rs)), x, s3);
            s4 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(4 * a_rs)), x, s4);
            s5 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(5 * a_rs)), x, s5);
            s6 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(6 * a_rs)), x, s6);
            s7 = _mm512_fmadd_ps(_mm512_set1_ps(*ar.add(7 * a_rs)), x, s7);
            br = br.add(ldb);
            ar = ar.add(a_cs);
        }
        for (r, s) in [s0, s1, s2, s3, s4, s5, s6, s7].into_iter().enumerate() {
            store_masked::<MODE>(c.add(r * ldc), s, mask);
        }
    }
}

/// One row of the columns of `mask`.
///
/// # Safety
/// As `row1`, for the columns of `mask` only.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub unsafe fn row1_masked<const MODE: u8>(p: Panel, c: *mut f32, mask: __mmask16) {
    let Panel {
        k,
        a,
        a_s: (_, a_cs),
        b,
        ldb,
    } = p;
    // SAFETY: the caller's contract covers every access below.
    unsafe {
        let mut s = if MODE == CONTINUE {
            _mm512_maskz_loadu_ps(mask, c)
        } else {
            _mm512_setzero_ps()
        };
        let (mut br, mut ar) = (b, a);
        for _ in 0..k {
            let x = _mm512_maskz_loadu_ps(mask, br);
            s = _mm512_fmadd_ps(_mm512_set1_ps(*ar), x, s);
            br = br.add(ldb);
            ar = ar.add(a_cs);
        }
        store_masked::<MODE>(c, s, mask);
    }
}

/// `store` for the lanes of `mask`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_masked<const MODE: u8>(c: *mut f32, s: __m512, mask: __mmask16) {
    // SAFETY: the caller's contract covers the lanes of `mask` at `c`.
    unsafe {
        let v = if MODE == ADD {
            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c), s)
        } else {
            s
        };
        _mm512_mask_storeu_ps(c, mask, v);
    }
}

/// A finished chain into C: written, or added to what C holds.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const MODE: u8>(c: *mut f32, s: __m512) {
    // SAFETY: the caller's contract covers the 16 floats at `c`.
    unsafe {
        let v = if MODE == ADD {
            _mm512_add_ps(_mm512_loadu_ps(c), s)
        } else {
            s
        };
        _mm512_storeu_ps(c, v);
    }
}
