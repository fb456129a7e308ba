//! The `gemm` crate's products (the linear layers, conv1's im2col) in
//! AVX-512, with the crate's bits. gemm 0.15 on a core with FMA (which
//! the build requires) splits k into depth blocks of `kc`; for each block
//! an output gets a chain of fused multiply-adds over k in order from
//! zero, which is then added to the output (or written, for the first
//! block of an output not read). Its `kc` is `min(k, 512)` when both sides
//! of the output are at most 64, else `kernel_params`'s (at most 512 on
//! common caches, spread evenly: the main CNN's 6,272 inputs are 13 blocks
//! of 483 and one of 476). These kernels make the same chains and sums,
//! 32 outputs side by side instead of the crate's 24; the tests compare
//! them with the crate bit for bit, and `kernel_params` is the crate's
//! own, so its cache-dependent choice is followed on every machine.

use super::avx512::{row1, row1_masked, rows8, rows8_masked, Dest, Panel, ADD, SET};
use super::geometry::{Operands, Out};
use super::scratch::with_buffer;
use rayon::prelude::*;
use std::cell::RefCell;

/// The crate's f32 FMA micro-kernel: 3 × 8 rows by 4 columns.
const MR: usize = 24;
const NR: usize = 4;
/// Columns per panel: two zmm.
const W: usize = 32;

/// gemm 0.15's depth block for an m × n output (it computes a row-major
/// output transposed, so its m and n are these n and m).
fn depth(m: usize, n: usize, k: usize) -> usize {
    if m <= 64 && n <= 64 {
        k.min(512)
    } else {
        gemm_common::cache::kernel_params(n, m, k, MR, NR, std::mem::size_of::<f32>()).kc
    }
}

/// Whether the crate takes its blocked path for this shape (below, it
/// runs other kernels: `gevv` for k ≤ 2, `gemv` for one row or column).
pub fn applies(m: usize, n: usize, k: usize) -> bool {
    k > 2 && m > 1 && n > 1
}

thread_local! {
    /// A's columns packed as rows, and the transposed output, kept
    /// between calls (fresh buffers of a megabyte came from `mmap`).
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static TRANSPOSED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// C (m × n, rows `ldc` apart) = [C +] A·B, with A and B given by their
/// row and column strides, on up to `threads` threads of the current
/// pool. B with contiguous rows is read in place; otherwise the product
/// runs transposed, Cᵀ = Bᵀ·Aᵀ, with A's columns packed as rows.
///
/// # Safety
/// The core has AVX-512F; `applies(m, n, k)`; the slices hold every
/// element the strides reach (as `kernels::mm` checks).
pub unsafe fn mm(ops: Operands<'_>, out: Out<'_>, threads: usize) {
    let Operands {
        m,
        n,
        k,
        a,
        a_s,
        b,
        b_s: (b_rs, b_cs),
    } = ops;
    let kc = depth(m, n, k);
    if b_cs == 1 {
        // SAFETY: passed on from the caller.
        unsafe { direct(ops, out, kc, threads) };
        return;
    }
    let Out { c, ldc, acc } = out;
    let (a_rs, a_cs) = a_s;
    // Neither buffer is zeroed: every element is written before it is
    // read (the first depth block of an output not read is written).
    let packed_len = if a_rs == 1 { 0 } else { k * m };
    with_buffer(&PACKED, packed_len, |packed| {
        with_buffer(&TRANSPOSED, n * m, |t| {
            // Aᵀ (k × m) with contiguous rows: A itself where its columns
            // are, else packed.
            let (at, ldat): (&[f32], usize) = if a_rs == 1 {
                (a, a_cs)
            } else {
                transpose_into(a, a_s, m, k, packed);
                (packed, m)
            };
            if acc {
                for (i, row) in c.chunks(ldc).take(m).enumerate() {
                    for (j, &v) in row[..n].iter().enumerate() {
                        t[j * m + i] = v;
                    }
                }
            }
            // SAFETY: Bᵀ's rows are B's columns and Aᵀ's rows are
            // contiguous; the caller's contract covers the rest.
            unsafe {
                direct(
                    Operands {
                        m: n,
                        n: m,
                        k,
                        a: b,
                        a_s: (b_cs, b_rs),
                        b: at,
                        b_s: (ldat, 1),
                    },
                    Out { c: t, ldc: m, acc },
                    kc,
                    threads,
                )
            };
            for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
                for (j, v) in row[..n].iter_mut().enumerate() {
                    *v = t[j * m + i];
                }
            }
        })
    });
}

/// A (m × k, strides `a_s`) into `out` as k rows of m, in tiles of 16
/// that stay in L1 on both sides.
fn transpose_into(a: &[f32], (a_rs, a_cs): (usize, usize), m: usize, k: usize, out: &mut [f32]) {
    const T: usize = 16;
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs && out.len() >= k * m);
    let (src, dst) = (a.as_ptr(), out.as_mut_ptr());
    for i0 in (0..m).step_by(T) {
        for k0 in (0..k).step_by(T) {
            for kk in k0..(k0 + T).min(k) {
                for i in i0..(i0 + T).min(m) {
                    // SAFETY: i < m and kk < k, inside both (asserted).
                    unsafe { *dst.add(kk * m + i) = *src.add(i * a_rs + kk * a_cs) };
                }
            }
        }
    }
}

/// `mm` for B's rows contiguous (`b_s` is (`ldb`, 1)), in depth blocks
/// of `kc`, the rows split among the threads.
///
/// # Safety
/// The core has AVX-512F; the slices hold every element the strides reach.
unsafe fn direct(ops: Operands<'_>, out: Out<'_>, kc: usize, threads: usize) {
    let Operands {
        m,
        n,
        k,
        a,
        a_s: (a_rs, a_cs),
        b,
        b_s: (ldb, b_cs),
    } = ops;
    let Out { c, ldc, acc } = out;
    assert_eq!(b_cs, 1, "B's rows are read in place");
    assert!(c.len() >= (m - 1) * ldc + n);
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() >= (k - 1) * ldb + n);
    // Rows per task: whole blocks of eight, one task per thread.
    let blocks = m.div_ceil(8);
    let per = blocks.div_ceil(threads.max(1)) * 8;
    let task = |(t, c): (usize, &mut [f32])| {
        let r0 = t * per;
        let rows = per.min(m - r0);
        for d0 in (0..k).step_by(kc) {
            let kb = kc.min(k - d0);
            let first = d0 == 0 && !acc;
            // SAFETY: rows r0 .. r0 + rows of C are this chunk's, and the
            // asserts above keep every read of A and B inside them.
            unsafe {
                panels(
                    Panel {
                        k: kb,
                        a: a.as_ptr().add(r0 * a_rs + d0 * a_cs),
                        a_s: (a_rs, a_cs),
                        b: b.as_ptr().add(d0 * ldb),
                        ldb,
                    },
                    Dest {
                        c: c.as_mut_ptr(),
                        ldc,
                    },
                    (rows, n),
                    first,
                )
            };
        }
    };
    // Only the rows of C that exist, so that every chunk starts at a row.
    let c = &mut c[..(m - 1) * ldc + n];
    if threads > 1 && blocks > 1 {
        c.par_chunks_mut(per * ldc).enumerate().for_each(task);
    } else {
        c.chunks_mut(per * ldc).enumerate().for_each(task);
    }
}

/// One depth block (k values) for `rows` rows of C: 32-column panels in
/// AVX-512, the columns left over 16 at a time under a mask.
///
/// # Safety
/// The core has AVX-512F; C holds `rows` rows of n floats, A `rows` rows
/// of k values, B k rows of n floats.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn panels(p: Panel, d: Dest, (rows, n): (usize, usize), first: bool) {
    let (c, ldc, a, a_rs, b) = (d.c, d.ldc, p.a, p.a_s.0, p.b);
    // The panel at row r of A and C and column j of B and C.
    let at = |r: usize, j: usize| {
        // SAFETY: every (r, j) asked for is inside C, A and B (the
        // caller's contract).
        unsafe {
            (
                Panel {
                    a: a.add(r * a_rs),
                    b: b.add(j),
                    ..p
                },
                Dest {
                    c: c.add(r * ldc + j),
                    ldc,
                },
            )
        }
    };
    // SAFETY: the caller's contract covers every access below.
    unsafe {
        for j0 in (0..n - n % W).step_by(W) {
            let mut r = 0;
            while r + 8 <= rows {
                let (p, d) = at(r, j0);
                if first {
                    rows8::<SET>(p, d);
                } else {
                    rows8::<ADD>(p, d);
                }
                r += 8;
            }
            for r in r..rows {
                let (p, d) = at(r, j0);
                if first {
                    row1::<SET>(p, d.c);
                } else {
                    row1::<ADD>(p, d.c);
                }
            }
        }
        // The columns left, 16 at a time under a mask.
        for j0 in (n - n % W..n).step_by(16) {
            let mask: u16 = if n - j0 >= 16 {
                u16::MAX
            } else {
                (1u16 << (n - j0)) - 1
            };
            let mut r = 0;
            while r + 8 <= rows {
                let (p, d) = at(r, j0);
                if first {
                    rows8_masked::<SET>(p, d, mask);
                } else {
                    rows8_masked::<ADD>(p, d, mask);
                }
                r += 8;
            }
            for r in r..rows {
                let (p, d) = at(r, j0);
                if first {
                    row1_masked::<SET>(p, d.c, mask);
                } else {
                    row1_masked::<ADD>(p, d.c, mask);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernels::crate_mm;
    use super::*;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::data::augment::Rng::new(seed);
        (0..n).map(|_| r.unit() * 2.0 - 1.0).collect()
    }

    /// Bit for bit the crate's results: the main CNN's linear layers
    /// (forward with the bias in C, weight and input gradients), conv1's
    /// products, a small output with k over 512 (blocks not spread), a
    /// large one with k spread over blocks, leftover rows and columns,
    /// the shallow CNN's 5x5 convolutions (16 and 32 channels: columns
    /// under a mask), on one thread and on two.
    #[test]
    fn products_are_the_gemm_crates_bits() {
        if !crate::nn::simd::avx512_available() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED products_are_the_gemm_crates_bits: this CPU has no AVX-512"
            );
            return;
        }
        type Case = (usize, usize, usize, bool, (usize, usize), (usize, usize));
        let (i, o) = (6272, 256);
        let cases: [Case; 13] = [
            (64, o, i, true, (i, 1), (1, i)),
            (o, i, 64, false, (1, o), (i, 1)),
            (64, i, o, false, (o, 1), (i, 1)),
            (24, o, i, true, (i, 1), (1, i)),
            (64, 10, 256, true, (256, 1), (1, 256)),
            (10, 256, 64, false, (1, 10), (256, 1)),
            (32, 784 * 8, 9, false, (9, 1), (784 * 8, 1)),
            (32, 9, 784, true, (784, 1), (1, 784 * 8)),
            (3, 40, 1300, true, (1300, 1), (40, 1)),
            (100, 70, 1500, false, (1, 100), (70, 1)),
            (16, 25, 784, true, (784, 1), (1, 784 * 4)),
            (32, 400, 196, true, (196, 1), (1, 196 * 4)),
            (400, 196 * 4, 32, false, (1, 400), (196 * 4, 1)),
        ];
        for (t, &(m, n, k, acc, a_s, b_s)) in cases.iter().enumerate() {
            assert!(applies(m, n, k));
            let t = t as u64;
            let a = rand_vec((m - 1) * a_s.0 + (k - 1) * a_s.1 + 1, t);
            let b = rand_vec((k - 1) * b_s.0 + (n - 1) * b_s.1 + 1, 10 + t);
            let start = rand_vec(m * n, 20 + t);
            for threads in [1, 2] {
                let mut want = start.clone();
                let par = if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: the shapes fit their slices.
                unsafe {
                    crate_mm(
                        Operands {
                            m,
                            n,
                            k,
                            a: &a,
                            a_s,
                            b: &b,
                            b_s,
                        },
                        Out {
                            c: &mut want,
                            ldc: n,
                            acc,
                        },
                        par,
                    )
                };
                let mut got = start.clone();
                // SAFETY: this core has AVX-512; the shapes fit.
                unsafe {
                    mm(
                        Operands {
                            m,
                            n,
                            k,
                            a: &a,
                            a_s,
                            b: &b,
                            b_s,
                        },
                        Out {
                            c: &mut got,
                            ldc: n,
                            acc,
                        },
                        threads,
                    )
                };
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "m {m}, n {n}, k {k}, acc {acc}, {threads} thread(s)");
            }
        }
    }
}
