//! CPU kernels on plain slices (NCHW, row-major): convolution by im2col +
//! GEMM, max pooling, batch norm, linear. Pure functions, so they are
//! tested directly against naive loops and finite differences.
//!
//! Reductions over the batch use fixed chunks summed in order, so results
//! are bit-identical whatever the thread count.

pub use super::geometry::Conv;
pub(super) use super::geometry::{Operands, Out};
pub use super::simd::Family;
use super::vector::add;
use gemm::Parallelism;
use rayon::prelude::*;

mod linear;
mod norm;
mod pool;

pub use linear::Linear;
use norm::sums;
pub use norm::{BatchNorm, BN_EPS, BN_MOMENTUM};
pub use pool::Pool;

/// Images per partial sum in the weight gradients.
pub(super) const CHUNK: usize = 8;

/// C (m×n, row stride ldc) = [C +] A·B, A and B given with their row and
/// column strides, on `family`'s kernels (the same bits on either).
pub(super) fn mm(ops: Operands<'_>, out: Out<'_>, par: Parallelism, family: Family) {
    let Operands {
        m,
        n,
        k,
        a,
        a_s: (a_rs, a_cs),
        b,
        b_s: (b_rs, b_cs),
    } = ops;
    let Out { c, ldc, acc } = out;
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: output too small");
    if k > 0 {
        assert!(
            a.len() > (m - 1) * a_rs + (k - 1) * a_cs,
            "gemm: lhs too small"
        );
        assert!(
            b.len() > (k - 1) * b_rs + (n - 1) * b_cs,
            "gemm: rhs too small"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if family.is_avx512() && super::gemm512::applies(m, n, k) {
        let threads = match par {
            Parallelism::Rayon(0) => rayon::current_num_threads(),
            Parallelism::Rayon(t) => t,
            _ => 1,
        };
        // SAFETY: a family says AVX-512 only where the core has it, and
        // the asserts above keep every access inside the slices.
        unsafe {
            super::gemm512::mm(
                Operands {
                    m,
                    n,
                    k,
                    a,
                    a_s: (a_rs, a_cs),
                    b,
                    b_s: (b_rs, b_cs),
                },
                Out { c, ldc, acc },
                threads,
            )
        };
        return;
    }
    // SAFETY: the asserts above keep every access inside the slices.
    unsafe {
        crate_mm(
            Operands {
                m,
                n,
                k,
                a,
                a_s: (a_rs, a_cs),
                b,
                b_s: (b_rs, b_cs),
            },
            Out { c, ldc, acc },
            par,
        )
    }
}

/// `mm` by the `gemm` crate: what AVX2 runs, and what the AVX-512
/// products reproduce bit for bit.
///
/// # Safety
/// The slices hold every element the strides reach.
pub(super) unsafe fn crate_mm(ops: Operands<'_>, out: Out<'_>, par: Parallelism) {
    let Operands {
        m,
        n,
        k,
        a,
        a_s: (a_rs, a_cs),
        b,
        b_s: (b_rs, b_cs),
    } = ops;
    let Out { c, ldc, acc } = out;
    // SAFETY: passed on from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            acc,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

impl Conv {
    /// cols[((c·k + ki)·k + kj)·ld + oy·ow + ox] = x[c][oy·s + ki − p][ox·s + kj − p]:
    /// one image's columns, its rows `ld` apart (several images side by side).
    fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize) {
        let (oh, ow, ohw) = (self.oh(), self.ow(), self.ohw());
        if self.stride == 1 {
            // Each channel is copied once into a zero-bordered plane; every
            // output row is then one copy from it, with no edge cases.
            let (ph, pw) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
            let mut padded = vec![0.0f32; ph * pw];
            for c in 0..self.c {
                let plane = &x[c * self.h * self.w..][..self.h * self.w];
                for (y, src) in plane.chunks(self.w).enumerate() {
                    copy_short(&mut padded[(y + self.pad) * pw + self.pad..][..self.w], src);
                }
                for ki in 0..self.k {
                    for kj in 0..self.k {
                        let row = &mut cols[((c * self.k + ki) * self.k + kj) * ld..][..ohw];
                        for (oy, out) in row.chunks_mut(ow).enumerate() {
                            copy_short(out, &padded[(oy + ki) * pw + kj..][..ow]);
                        }
                    }
                }
            }
            return;
        }
        for c in 0..self.c {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.k {
                for kj in 0..self.k {
                    let row = &mut cols[((c * self.k + ki) * self.k + kj) * ld..][..ohw];
                    for oy in 0..oh {
                        let iy = (oy * self.stride + ki) as isize - self.pad as isize;
                        let out = &mut row[oy * ow..(oy + 1) * ow];
                        if iy < 0 || iy >= self.h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        if self.stride == 1 {
                            // ix = ox + kj − p: a shifted copy with zero edges.
                            let shift = kj as isize - self.pad as isize;
                            let lo = (-shift).clamp(0, ow as isize) as usize;
                            let hi =
                                (self.w as isize - shift).clamp(lo as isize, ow as isize) as usize;
                            out[..lo].fill(0.0);
                            out[hi..].fill(0.0);
                            let s0 = (lo as isize + shift) as usize;
                            out[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                        } else {
                            for (ox, o) in out.iter_mut().enumerate() {
                                let ix = (ox * self.stride + kj) as isize - self.pad as isize;
                                *o = if ix < 0 || ix >= self.w as isize {
                                    0.0
                                } else {
                                    src[ix as usize]
                                };
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: dx += scatter of dcols (rows `ld` apart).
    fn col2im(&self, cols: &[f32], dx: &mut [f32], ld: usize) {
        let (oh, ow, ohw) = (self.oh(), self.ow(), self.ohw());
        for c in 0..self.c {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.k {
                for kj in 0..self.k {
                    let row = &cols[((c * self.k + ki) * self.k + kj) * ld..][..ohw];
                    for oy in 0..oh {
                        let iy = (oy * self.stride + ki) as isize - self.pad as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let dst = &mut plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        let src = &row[oy * ow..(oy + 1) * ow];
                        if self.stride == 1 {
                            // The adjoint of im2col's shifted copy: a shifted
                            // add over the columns that land inside the row
                            // (each element gets the same additions, in the
                            // same order, as the general loop below).
                            let shift = kj as isize - self.pad as isize;
                            let lo = (-shift).clamp(0, ow as isize) as usize;
                            let hi =
                                (self.w as isize - shift).clamp(lo as isize, ow as isize) as usize;
                            let d0 = (lo as isize + shift) as usize;
                            add(&mut dst[d0..d0 + (hi - lo)], &src[lo..hi]);
                            continue;
                        }
                        for (ox, &v) in src.iter().enumerate() {
                            let ix = (ox * self.stride + kj) as isize - self.pad as isize;
                            if ix >= 0 && ix < self.w as isize {
                                dst[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Images per matrix product: enough that its columns (the images'
    /// output pixels) fill the microkernels' rows many times over, so a
    /// small feature map does not leave most of a tile idle or repack the
    /// weights for every image. Each output is the same sum in the same
    /// order whatever the group, so the grouping does not change results.
    fn group(&self) -> usize {
        (512 / self.ohw()).clamp(1, CHUNK)
    }

    /// y[n] = W·im2col(x[n]) + b, groups of images in parallel.
    pub fn forward(&self, x: &[f32], n: usize, w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
        if super::winograd::applies(self) {
            return super::winograd::forward(self, x, n, w, b, y);
        }
        self.forward_direct(x, n, w, b, y)
    }

    /// `forward` by im2col and one matrix product per group of images.
    pub(super) fn forward_direct(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        b: Option<&[f32]>,
        y: &mut [f32],
    ) {
        let (o, ohw, ckk, chw) = (self.o, self.ohw(), self.ckk(), self.chw());
        debug_assert_eq!(x.len(), n * chw);
        let g = self.group();
        y.par_chunks_mut(g * o * ohw)
            .zip(x.par_chunks(g * chw))
            .for_each_init(
                || {
                    let prod = if g > 1 { o * g * ohw } else { 0 };
                    (vec![0.0f32; ckk * g * ohw], vec![0.0f32; prod])
                },
                |(cols, prod), (yg, xg)| {
                    let imgs = xg.len() / chw;
                    let ld = imgs * ohw;
                    for (i, xn) in xg.chunks(chw).enumerate() {
                        self.im2col(xn, &mut cols[i * ohw..], ld);
                    }
                    if imgs == 1 {
                        // One image's product is already in y's layout.
                        mm(
                            Operands {
                                m: o,
                                n: ohw,
                                k: ckk,
                                a: w,
                                a_s: (ckk, 1),
                                b: cols,
                                b_s: (ohw, 1),
                            },
                            Out {
                                c: yg,
                                ldc: ohw,
                                acc: false,
                            },
                            Parallelism::None,
                            self.family,
                        );
                        if let Some(b) = b {
                            for (row, &bo) in yg.chunks_mut(ohw).zip(b) {
                                for v in row {
                                    *v += bo;
                                }
                            }
                        }
                        return;
                    }
                    mm(
                        Operands {
                            m: o,
                            n: ld,
                            k: ckk,
                            a: w,
                            a_s: (ckk, 1),
                            b: cols,
                            b_s: (ld, 1),
                        },
                        Out {
                            c: prod,
                            ldc: ld,
                            acc: false,
                        },
                        Parallelism::None,
                        self.family,
                    );
                    // prod holds channel-major rows; y is image-major.
                    for (i, yn) in yg.chunks_mut(o * ohw).enumerate() {
                        for (oc, row) in yn.chunks_mut(ohw).enumerate() {
                            let src = &prod[oc * ld + i * ohw..][..ohw];
                            match b {
                                Some(b) => {
                                    for (v, &s) in row.iter_mut().zip(src) {
                                        *v = s + b[oc];
                                    }
                                }
                                None => row.copy_from_slice(src),
                            }
                        }
                    }
                },
            );
    }

    /// Gradients: (dx if asked, dW, db).
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        dy: &[f32],
        need_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        if super::winograd::applies(self) {
            return super::winograd::backward(self, x, n, w, dy, need_dx);
        }
        self.backward_direct(x, n, w, dy, need_dx)
    }

    /// `backward` by im2col, image by image within chunks of `CHUNK`.
    pub(super) fn backward_direct(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        dy: &[f32],
        need_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let (o, ohw, ckk, chw) = (self.o, self.ohw(), self.ckk(), self.chw());
        let mut dx = if need_dx {
            vec![0.0f32; n * chw]
        } else {
            Vec::new()
        };
        let dx_chunks: Vec<&mut [f32]> = if need_dx {
            dx.chunks_mut(CHUNK * chw).collect()
        } else {
            Vec::new()
        };
        let chunks = n.div_ceil(CHUNK);
        let mut dx_iter: Vec<Option<&mut [f32]>> = dx_chunks.into_iter().map(Some).collect();
        dx_iter.resize_with(chunks, || None);
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx_iter
            .into_par_iter()
            .enumerate()
            .map(|(ci, mut dxc)| {
                let mut dw = vec![0.0f32; o * ckk];
                let mut db = vec![0.0f32; o];
                let rows: Vec<usize> = (0..o).map(|r| r * ohw).collect();
                let g = self.group();
                let mut cols = vec![0.0f32; ckk * g * ohw];
                let (mut dcols, mut dyg) = if need_dx {
                    (vec![0.0f32; ckk * g * ohw], vec![0.0f32; o * g * ohw])
                } else {
                    (Vec::new(), Vec::new())
                };
                let first = ci * CHUNK;
                let last = ((ci + 1) * CHUNK).min(n);
                for start in (first..last).step_by(g) {
                    let imgs = g.min(last - start);
                    let ld = imgs * ohw;
                    for i in 0..imgs {
                        let xn = &x[(start + i) * chw..][..chw];
                        self.im2col(xn, &mut cols[i * ohw..], ld);
                    }
                    for i in 0..imgs {
                        let dyn_ = &dy[(start + i) * o * ohw..][..o * ohw];
                        // dW += dY[n] (o×ohw) · cols[n]^T (ohw×ckk), image
                        // by image: the sums' order does not depend on
                        // the grouping.
                        mm(
                            Operands {
                                m: o,
                                n: ckk,
                                k: ohw,
                                a: dyn_,
                                a_s: (ohw, 1),
                                b: &cols[i * ohw..],
                                b_s: (1, ld),
                            },
                            Out {
                                c: &mut dw,
                                ldc: ckk,
                                acc: true,
                            },
                            Parallelism::None,
                            self.family,
                        );
                        for (d, (sum, _)) in db.iter_mut().zip(sums::<false>(dyn_, &rows, ohw)) {
                            *d += sum;
                        }
                        if need_dx {
                            for (oc, row) in dyn_.chunks(ohw).enumerate() {
                                dyg[oc * ld + i * ohw..][..ohw].copy_from_slice(row);
                            }
                        }
                    }
                    if let Some(dxc) = dxc.as_mut() {
                        // dcols = W^T (ckk×o) · dY (o×ld), then scatter back.
                        mm(
                            Operands {
                                m: ckk,
                                n: ld,
                                k: o,
                                a: w,
                                a_s: (1, ckk),
                                b: &dyg,
                                b_s: (ld, 1),
                            },
                            Out {
                                c: &mut dcols,
                                ldc: ld,
                                acc: false,
                            },
                            Parallelism::None,
                            self.family,
                        );
                        for i in 0..imgs {
                            let k = start + i - first;
                            self.col2im(&dcols[i * ohw..], &mut dxc[k * chw..(k + 1) * chw], ld);
                        }
                    }
                }
                (dw, db)
            })
            .collect();
        let mut dw = vec![0.0f32; o * ckk];
        let mut db = vec![0.0f32; o];
        for (pw, pb) in partials {
            add(&mut dw, &pw);
            add(&mut db, &pb);
        }
        (need_dx.then_some(dx), dw, db)
    }
}

/// Copies a short row (a feature map's width) with fixed-size moves, not
/// a call to `memmove` per row.
#[inline(always)]
pub(super) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let b: &[f32; 8] = b.try_into().expect("chunks of 8");
        a.copy_from_slice(b);
    }
    let (mut d, mut s) = (d.into_remainder(), s.remainder());
    if d.len() >= 4 {
        d[..4].copy_from_slice(&<[f32; 4]>::try_from(&s[..4]).expect("4 left"));
        (d, s) = (&mut d[4..], &s[4..]);
    }
    if d.len() >= 2 {
        d[..2].copy_from_slice(&<[f32; 2]>::try_from(&s[..2]).expect("2 left"));
        (d, s) = (&mut d[2..], &s[2..]);
    }
    if let (Some(a), Some(b)) = (d.first_mut(), s.first()) {
        *a = *b;
    }
}

pub(super) fn par(threads: usize) -> Parallelism {
    if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::simd::Family;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::data::augment::Rng::new(seed);
        (0..n).map(|_| r.unit() * 2.0 - 1.0).collect()
    }

    fn naive_conv(g: &Conv, x: &[f32], n: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0; n * g.o * oh * ow];
        for i in 0..n {
            for o in 0..g.o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = b[o];
                        for c in 0..g.c {
                            for ki in 0..g.k {
                                for kj in 0..g.k {
                                    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                    if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < g.h
                                        && (ix as usize) < g.w
                                    {
                                        s += w[((o * g.c + c) * g.k + ki) * g.k + kj]
                                            * x[((i * g.c + c) * g.h + iy as usize) * g.w
                                                + ix as usize];
                                    }
                                }
                            }
                        }
                        y[((i * g.o + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {i}: {x} vs {y}");
        }
    }

    fn geoms() -> [Conv; 4] {
        [
            Conv {
                c: 2,
                h: 5,
                w: 6,
                o: 3,
                k: 3,
                stride: 1,
                pad: 1,
                family: Family::detected(),
            },
            Conv {
                c: 1,
                h: 7,
                w: 7,
                o: 2,
                k: 5,
                stride: 1,
                pad: 2,
                family: Family::detected(),
            },
            Conv {
                c: 3,
                h: 6,
                w: 5,
                o: 2,
                k: 3,
                stride: 2,
                pad: 0,
                family: Family::detected(),
            },
            Conv {
                c: 2,
                h: 4,
                w: 4,
                o: 4,
                k: 1,
                stride: 1,
                pad: 0,
                family: Family::detected(),
            },
        ]
    }

    #[test]
    fn conv_forward_matches_naive() {
        for (t, g) in geoms().iter().enumerate() {
            let n = 11;
            let x = rand_vec(n * g.chw(), t as u64);
            let w = rand_vec(g.o * g.ckk(), 100 + t as u64);
            let b = rand_vec(g.o, 200 + t as u64);
            let mut y = vec![0.0; n * g.o * g.ohw()];
            g.forward(&x, n, &w, Some(&b), &mut y);
            close(&y, &naive_conv(g, &x, n, &w, &b), 1e-5);
        }
    }

    /// Loss = Σ r·y for a fixed random r, so dL/dy = r.
    #[test]
    fn conv_backward_matches_finite_differences() {
        for (t, g) in geoms().iter().enumerate() {
            let n = 10; // more than one chunk
            let x = rand_vec(n * g.chw(), t as u64);
            let w = rand_vec(g.o * g.ckk(), 10 + t as u64);
            let b = rand_vec(g.o, 20 + t as u64);
            let r = rand_vec(n * g.o * g.ohw(), 30 + t as u64);
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                naive_conv(g, x, n, w, b)
                    .iter()
                    .zip(&r)
                    .map(|(y, r)| (*y as f64) * (*r as f64))
                    .sum()
            };
            let (dx, dw, db) = g.backward(&x, n, &w, &r, true);
            let dx = dx.unwrap();
            let h = 1e-2f32;
            let fd = |v: &[f32], i: usize, f: &dyn Fn(&[f32]) -> f64| {
                let (mut p, mut m) = (v.to_vec(), v.to_vec());
                p[i] += h;
                m[i] -= h;
                ((f(&p) - f(&m)) / (2.0 * h as f64)) as f32
            };
            for i in (0..x.len()).step_by(7) {
                let num = fd(&x, i, &|v| loss(v, &w, &b));
                assert!((num - dx[i]).abs() < 1e-2, "dx[{i}] {num} vs {}", dx[i]);
            }
            for (i, &got) in dw.iter().enumerate() {
                let num = fd(&w, i, &|v| loss(&x, v, &b));
                assert!(
                    (num - got).abs() < 2e-2 * (1.0 + num.abs()),
                    "dw[{i}] {num} vs {got}"
                );
            }
            for (i, &got) in db.iter().enumerate() {
                let num = fd(&b, i, &|v| loss(&x, &w, v));
                assert!(
                    (num - got).abs() < 2e-2 * (1.0 + num.abs()),
                    "db[{i}] {num} vs {got}"
                );
            }
            let (none, dw2, _) = g.backward(&x, n, &w, &r, false);
            assert!(none.is_none());
            assert_eq!(dw2, dw);
        }
    }

    #[test]
    fn conv_backward_is_the_same_whatever_the_threads() {
        let g = geoms()[0];
        let n = 37;
        let x = rand_vec(n * g.chw(), 1);
        let w = rand_vec(g.o * g.ckk(), 2);
        let dy = rand_vec(n * g.o * g.ohw(), 3);
        let run = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| g.backward(&x, n, &w, &dy, true))
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn the_2x2_pool_picks_what_the_general_scan_picks() {
        // Ties (0.0 against −0.0 too), −∞, NaN and odd sizes.
        let vals = [0.0, -0.0, 1.0, -1.0, f32::NEG_INFINITY, f32::NAN, 2.5, 1.0];
        for (h, w) in [(4, 4), (7, 7), (5, 8), (14, 14)] {
            let p = Pool { c: 1, h, w, k: 2 };
            let mut r = crate::data::augment::Rng::new((h * w) as u64);
            for _ in 0..50 {
                let x: Vec<f32> = (0..h * w)
                    .map(|_| vals[(r.unit() * vals.len() as f32) as usize % vals.len()])
                    .collect();
                let n = p.oh() * p.ow();
                let (mut y1, mut a1) = (vec![0.0; n], vec![0; n]);
                let (mut y2, mut a2) = (vec![0.0; n], vec![0; n]);
                p.plane_forward_2x2(&x, &mut y1, &mut a1);
                p.plane_forward_any(&x, &mut y2, &mut a2);
                assert_eq!(a1, a2);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y1), bits(&y2));
            }
        }
    }

    #[test]
    fn pool_forward_and_backward() {
        let p = Pool {
            c: 2,
            h: 5,
            w: 4,
            k: 2,
        };
        let n = 3;
        let x = rand_vec(n * 2 * 20, 5);
        let (y, arg) = p.forward(&x, n);
        assert_eq!(y.len(), n * 2 * 2 * 2);
        for plane in 0..n * 2 {
            for oy in 0..2 {
                for ox in 0..2 {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..2 {
                        for kx in 0..2 {
                            m = m.max(x[plane * 20 + (oy * 2 + ky) * 4 + ox * 2 + kx]);
                        }
                    }
                    assert_eq!(y[plane * 4 + oy * 2 + ox], m);
                }
            }
        }
        let dy = rand_vec(y.len(), 6);
        let dx = p.backward(n, &arg, &dy);
        // The gradient lands on the argmax only; the row dropped by the floor gets none.
        for plane in 0..n * 2 {
            let s: f32 = dx[plane * 20..plane * 20 + 20].iter().sum();
            let t: f32 = dy[plane * 4..plane * 4 + 4].iter().sum();
            assert!((s - t).abs() < 1e-5);
            assert!(dx[plane * 20 + 16..plane * 20 + 20]
                .iter()
                .all(|&v| v == 0.0));
        }
        for (i, (&a, &g)) in arg.iter().zip(&dy).enumerate() {
            assert_eq!(dx[(i / 4) * 20 + a as usize], g);
        }
    }

    #[test]
    fn batchnorm_matches_definition_and_finite_differences() {
        let bn = BatchNorm { c: 3, hw: 4 };
        let n = 5;
        let x = rand_vec(n * 12, 7);
        let gamma = rand_vec(3, 8);
        let beta = rand_vec(3, 9);
        let (mut rm, mut rv) = (vec![0.0; 3], vec![1.0; 3]);
        let (y, xhat, invstd) = bn.forward_train(&x, n, &gamma, &beta, &mut rm, &mut rv);
        for c in 0..3 {
            let vals: Vec<f32> = (0..n)
                .flat_map(|i| x[(i * 3 + c) * 4..(i * 3 + c) * 4 + 4].to_vec())
                .collect();
            let mean = vals.iter().sum::<f32>() / 20.0;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 20.0;
            assert!((rm[c] - 0.1 * mean).abs() < 1e-5);
            assert!((rv[c] - (0.9 + 0.1 * var * 20.0 / 19.0)).abs() < 1e-5);
            let want = gamma[c] * (x[c * 4] - mean) / (var + BN_EPS).sqrt() + beta[c];
            assert!((y[c * 4] - want).abs() < 1e-4);
        }
        let r = rand_vec(y.len(), 10);
        let loss = |x: &[f32], g: &[f32], b: &[f32]| -> f64 {
            let (y, _, _) = bn.forward_train(x, n, g, b, &mut [0.0; 3], &mut [0.0; 3]);
            y.iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let (dx, dg, db) = bn.backward(n, &xhat, &invstd, &gamma, &r);
        let h = 1e-2f32;
        for i in 0..x.len() {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += h;
            m[i] -= h;
            let num =
                ((loss(&p, &gamma, &beta) - loss(&m, &gamma, &beta)) / (2.0 * h as f64)) as f32;
            assert!((num - dx[i]).abs() < 2e-2, "dx[{i}] {num} vs {}", dx[i]);
        }
        for c in 0..3 {
            let (mut p, mut m) = (gamma.clone(), gamma.clone());
            p[c] += h;
            m[c] -= h;
            let num = ((loss(&x, &p, &beta) - loss(&x, &m, &beta)) / (2.0 * h as f64)) as f32;
            assert!((num - dg[c]).abs() < 2e-2, "dgamma {num} vs {}", dg[c]);
            let s: f32 = (0..n)
                .map(|i| r[(i * 3 + c) * 4..(i * 3 + c) * 4 + 4].iter().sum::<f32>())
                .sum();
            assert!((s - db[c]).abs() < 1e-4);
        }
        // Eval with the running statistics of the batch reproduces training output.
        let (m, v) = bn.stats(&x, n);
        let ye = bn.forward_eval(&x, &gamma, &beta, &m, &v);
        close(&ye, &y, 1e-4);
    }

    #[test]
    fn linear_matches_naive_and_its_gradients() {
        let l = Linear {
            i: 7,
            o: 4,
            family: Family::detected(),
        };
        let n = 5;
        let x = rand_vec(n * 7, 11);
        let w = rand_vec(28, 12);
        let b = rand_vec(4, 13);
        let y = l.forward(&x, n, &w, &b, 1);
        for i in 0..n {
            for o in 0..4 {
                let s: f32 = b[o] + (0..7).map(|k| x[i * 7 + k] * w[o * 7 + k]).sum::<f32>();
                assert!((y[i * 4 + o] - s).abs() < 1e-5);
            }
        }
        let dy = rand_vec(n * 4, 14);
        let (dx, dw, db) = l.backward(&x, n, &w, &dy, true, 2);
        let dx = dx.unwrap();
        for i in 0..n {
            for k in 0..7 {
                let s: f32 = (0..4).map(|o| dy[i * 4 + o] * w[o * 7 + k]).sum();
                assert!((dx[i * 7 + k] - s).abs() < 1e-5);
            }
        }
        for o in 0..4 {
            for k in 0..7 {
                let s: f32 = (0..n).map(|i| dy[i * 4 + o] * x[i * 7 + k]).sum();
                assert!((dw[o * 7 + k] - s).abs() < 1e-5);
            }
            let s: f32 = (0..n).map(|i| dy[i * 4 + o]).sum();
            assert!((db[o] - s).abs() < 1e-5);
        }
    }
}
