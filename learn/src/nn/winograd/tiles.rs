//! A group's tiles: the per-thread buffers of transformed inputs,
//! filters and outputs, and the passes over a block of tile positions.

use super::super::geometry::Conv;
use super::*;

/// The tiling of one convolution over a batch. Images go through in
/// groups of `L`, one per vector lane, so every transform works on whole
/// vectors; the zero-bordered planes are held interleaved
/// ([row][column][lane]) so that a tile's rows are vector loads. A last
/// group with fewer images has zero lanes.
pub(super) struct Tiles {
    pub(super) c: usize,
    pub(super) o: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) pad: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    /// Tiles per row of the output, and per image.
    pub(super) tw: usize,
    pub(super) per_img: usize,
    /// The padded plane: 4 rows (columns) per tile row (column), plus 2.
    pub(super) ph: usize,
    pub(super) pw: usize,
    /// Groups of `L` images.
    pub(super) groups: usize,
    /// The kernels of its products.
    pub(super) family: Family,
}

impl Tiles {
    pub(super) fn new(g: &Conv, n: usize) -> Tiles {
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
            family: g.family,
        }
    }

    /// Floats in one interleaved plane.
    pub(super) fn plane(&self) -> usize {
        self.ph * self.pw * L
    }

    /// Tile r's top-left output pixel.
    pub(super) fn place(&self, r: usize) -> (usize, usize) {
        ((r / self.tw) * 4, (r % self.tw) * 4)
    }

    /// U = G·g·Gᵀ for every filter, as `[ξ][o][c]`.
    pub(super) fn filters(&self, w: &[f32]) -> Vec<f32> {
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
    pub(super) fn filter_grads(&self, du: &[f32]) -> Vec<f32> {
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
    pub(super) fn interleave(&self, src: &[f32], imgs: usize, planes: &mut [f32]) {
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
    pub(super) fn deinterleave(&self, planes: &[f32], imgs: usize, dst: &mut [f32]) {
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
    pub(super) fn input_tile(&self, pl: &[f32], r: usize) -> [[V; 6]; 6] {
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
    pub(super) fn grad_tile(&self, dyc: &[f32], imgs: usize, oc: usize, r: usize) -> [[V; 6]; 6] {
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
