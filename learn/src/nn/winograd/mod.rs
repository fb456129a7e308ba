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

use super::geometry::{Conv, Operands, Out};
use super::scratch::with_buffer;
use super::simd::Family;
use rayon::prelude::*;

mod product;
mod tiles;
mod transform;

use product::*;
use tiles::*;
use transform::*;

/// Tiles transformed at once, one per vector lane.
pub(super) const L: usize = 8;
/// Points of a transformed tile (6×6).
pub(super) const XI: usize = 36;
/// Tile positions per block: 3 × `L` columns, the width of `block43`, or
/// with AVX-512 4 × `L`, two zmm (and the main CNN's 16 and 4 tiles per
/// image in whole blocks). The bits do not depend on it: every product's
/// output is its own ∑ in order, the weight gradient's sum over tiles runs
/// on from block to block, and tiles are added into the input gradient in
/// their order.
pub(super) fn block_len(family: Family) -> usize {
    if family.is_avx512() {
        4
    } else {
        3
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
            let block = block_len(tl.family);
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
                        product(
                            tl.family,
                            Operands {
                                m: o,
                                n: cols,
                                k: c,
                                a: &u[xi * o * c..],
                                a_s: (c, 1),
                                b: &vb[xi * cols..],
                                b_s: (XI * cols, 1),
                            },
                            Out {
                                c: &mut mb[xi * cols..],
                                ldc: XI * cols,
                                acc: false,
                            },
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
    let (c, o, hw, ohw) = (tl.c, tl.o, tl.h * tl.w, tl.oh * tl.ow);
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
            let block = block_len(tl.family);
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
                    let at = Block { r0, nb };
                    transposed_inputs(tl, xpl, at, vt);
                    // dM[ξ] (o × cols), its rows XI·cols apart (as V's in
                    // `forward`).
                    let cols = nb * L;
                    for oc in 0..o {
                        for bi in 0..nb {
                            let t = tl.grad_tile(dyc, imgs, oc, r0 + bi);
                            for (xi, v) in t.iter().flatten().enumerate() {
                                store(&mut mb[(oc * XI + xi) * cols + bi * L..], v, L);
                            }
                        }
                    }
                    let dv = need_dx.then_some(&mut *vb);
                    xi_products(tl, (u, mb, vt), cols, du, dv);
                    if need_dx {
                        add_input_grads(tl, vb, at, dpl);
                    }
                }
                if let Some(dxc) = dxc {
                    tl.deinterleave(dpl, imgs, dxc);
                }
            })
        });
}

/// A block of tile positions: `nb` from `r0`.
#[derive(Clone, Copy)]
struct Block {
    r0: usize,
    nb: usize,
}

/// Vᵀ[ξ] (cols × c) of a block: eight channels' tiles at a time, each
/// point's 8 × 8 (channels × images) transposed in registers and stored
/// as eight rows of eight channels.
fn transposed_inputs(tl: &Tiles, xpl: &[f32], at: Block, vt: &mut [f32]) {
    let (c, plane, cols) = (tl.c, tl.plane(), at.nb * L);
    for c0 in (0..c).step_by(L) {
        for bi in 0..at.nb {
            let mut eight = [[[V::ZERO; 6]; 6]; L];
            for (j, t) in eight.iter_mut().enumerate() {
                *t = tl.input_tile(&xpl[(c0 + j) * plane..][..plane], at.r0 + bi);
            }
            for xi in 0..XI {
                let rows = std::array::from_fn(|j| eight[j][xi / 6][xi % 6]);
                for (l, v) in transpose8(rows).iter().enumerate() {
                    store(&mut vt[(xi * cols + bi * L + l) * c + c0..], v, L);
                }
            }
        }
    }
}

/// Per ξ: dU[ξ] (o × c) += dM[ξ] (o × cols) · Vᵀ[ξ] (cols × c), and
/// where `dv` is given, dV[ξ] (c × cols) = U[ξ]ᵀ (c × o) · dM[ξ].
fn xi_products(
    tl: &Tiles,
    (u, mb, vt): (&[f32], &[f32], &[f32]),
    cols: usize,
    du: &mut [f32],
    mut dv: Option<&mut [f32]>,
) {
    let (c, o) = (tl.c, tl.o);
    for xi in 0..XI {
        product(
            tl.family,
            Operands {
                m: o,
                n: c,
                k: cols,
                a: &mb[xi * cols..],
                a_s: (XI * cols, 1),
                b: &vt[xi * cols * c..],
                b_s: (c, 1),
            },
            Out {
                c: &mut du[xi * o * c..],
                ldc: c,
                acc: true,
            },
        );
        if let Some(vb) = dv.as_deref_mut() {
            product(
                tl.family,
                Operands {
                    m: c,
                    n: cols,
                    k: o,
                    a: &u[xi * o * c..],
                    a_s: (1, c),
                    b: &mb[xi * cols..],
                    b_s: (XI * cols, 1),
                },
                Out {
                    c: &mut vb[xi * cols..],
                    ldc: XI * cols,
                    acc: false,
                },
            );
        }
    }
}

/// Tiles overlap: each adds B·dV·Bᵀ at its place in its channel's plane
/// of the input gradient, in order.
fn add_input_grads(tl: &Tiles, vb: &[f32], at: Block, dpl: &mut [f32]) {
    let (plane, pw, cols) = (tl.plane(), tl.pw, at.nb * L);
    for (ci, pl) in dpl.chunks_mut(plane).enumerate() {
        for bi in 0..at.nb {
            let mut m = [[V::ZERO; 6]; 6];
            for (xi, v) in m.iter_mut().flatten().enumerate() {
                *v = load(&vb[(ci * XI + xi) * cols + bi * L..], L);
            }
            let mut d = [[V::ZERO; 6]; 6];
            two_d(&m, &mut d, b);
            let (ty, tx) = tl.place(at.r0 + bi);
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
        let Some(wide) = avx512("products_are_the_same_bits_on_avx2_and_avx512") else {
            return;
        };
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
                let mut out = start.clone();
                let ops = Operands {
                    m,
                    n: t,
                    k,
                    a: &u,
                    a_s: (k, 1),
                    b: &x,
                    b_s: (t, 1),
                };
                let c = &mut out;
                product(f, ops, Out { c, ldc: t, acc });
                out
            };
            for acc in [false, true] {
                let a = run(Family::AVX2, acc);
                let b = run(wide, acc);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "m {m}, t {t}, k {k}, acc {acc}"
                );
            }
        }
    }

    /// The AVX-512 family, or None, said on the real stderr, on a core
    /// without it.
    fn avx512(test: &str) -> Option<Family> {
        let wide = Family::avx512();
        if wide.is_none() {
            // Straight to stderr: libtest captures `eprintln!` of a passing
            // test, and a skip must never read as a pass.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: this CPU has no AVX-512"
            );
        }
        wide
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
        let Some(wide) = avx512("layers_are_the_same_bits_on_avx2_and_avx512") else {
            return;
        };
        let main_cnn = [(conv(32, 14, 14, 64, 1), 64), (conv(64, 7, 7, 128, 1), 61)];
        for (t, (g, n)) in geoms().into_iter().chain(main_cnn).enumerate() {
            let t = t as u64;
            let x = rand_vec(n * g.c * g.h * g.w, t);
            let w = rand_vec(g.o * g.c * 9, 10 + t);
            let bias = rand_vec(g.o, 20 + t);
            let dy = rand_vec(n * g.o * g.oh() * g.ow(), 30 + t);
            let run = |family: Family| {
                let g = Conv { family, ..g };
                let mut y = vec![0.0f32; n * g.o * g.oh() * g.ow()];
                forward(&g, &x, n, &w, Some(&bias), &mut y);
                let (dx, dw, db) = backward(&g, &x, n, &w, &dy, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                [bits(&y), bits(&dx.unwrap()), bits(&dw), bits(&db)]
            };
            let (a, b) = (run(Family::AVX2), run(wide));
            for (what, (a, b)) in ["y", "dx", "dW", "db"].iter().zip(a.iter().zip(&b)) {
                assert!(a == b, "{g:?}, {n} images: {what} differs");
            }
        }
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
            family: Family::detected(),
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
