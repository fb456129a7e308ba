//! Image augmentation: rotation, horizontal flip, padded random crop,
//! applied in the order the YAML lists them, on raw intensities (so "zero
//! fill" is black, as in the reference study) before normalization.

use serde::{Deserialize, Serialize};

/// One augmentation step: `{rotate: 10}`, `{hflip: 0.5}`,
/// `{crop: {size: 28, padding: 4}}`, `{translate: 2}`,
/// `{erase: {p: 0.5, area: [0.02, 0.33], ratio: [0.3, 3.3], value: 0}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Augment {
    /// Rotate by an angle drawn uniformly from ±degrees (bilinear, zero fill).
    Rotate(f32),
    /// Mirror left-right with this probability.
    Hflip(f32),
    /// Zero-pad by `padding` pixels, then crop `size`×`size` at a random offset.
    Crop { size: usize, padding: usize },
    /// Shift by a whole number of pixels drawn uniformly from ±pixels on
    /// each axis, zero fill.
    Translate(usize),
    /// Random Erasing (Zhong et al.; torchvision's RandomErasing): with
    /// probability `p`, a rectangle of a fraction of the image drawn from
    /// `area` and an aspect ratio drawn log-uniformly from `ratio` is set to
    /// `value`, an intensity in [0, 1] as ToTensor gives it (0: black).
    /// Applied after the other augmentations, wherever it is listed.
    Erase(Erase),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erase {
    #[serde(default = "half")]
    pub p: f32,
    #[serde(default = "area")]
    pub area: [f32; 2],
    #[serde(default = "ratio")]
    pub ratio: [f32; 2],
    #[serde(default)]
    pub value: f32,
}

fn half() -> f32 {
    0.5
}
fn area() -> [f32; 2] {
    [0.02, 0.33]
}
fn ratio() -> [f32; 2] {
    [0.3, 3.3]
}

/// Checks a list against the image size.
pub fn validate(augs: &[Augment], rows: usize, cols: usize) -> Result<(), String> {
    for a in augs {
        match *a {
            Augment::Rotate(d) if !(0.0..=180.0).contains(&d) => {
                return Err(format!("rotate: degrees must be in 0..=180, got {d}"))
            }
            Augment::Hflip(p) if !(0.0..=1.0).contains(&p) => {
                return Err(format!("hflip: probability must be in 0..=1, got {p}"))
            }
            Augment::Crop { size, .. } if size != rows || size != cols => {
                return Err(format!(
                    "crop: size must equal the image size ({rows}x{cols}), got {size}"
                ))
            }
            Augment::Translate(0) => return Err("translate: pixels must be at least 1".into()),
            Augment::Translate(t) if t >= rows.min(cols) => {
                return Err(format!(
                    "translate: pixels must be below the image size ({rows}x{cols}), got {t}"
                ))
            }
            Augment::Erase(ref e) => {
                if !(0.0..=1.0).contains(&e.p) {
                    return Err(format!("erase: p must be in [0, 1], got {}", e.p));
                }
                if !(e.area[0] > 0.0 && e.area[0] <= e.area[1] && e.area[1] <= 1.0) {
                    return Err(format!(
                        "erase: area must be [min, max] with 0 < min <= max <= 1, got {:?}",
                        e.area
                    ));
                }
                if !(e.ratio[0] > 0.0 && e.ratio[0] <= e.ratio[1] && e.ratio[1].is_finite()) {
                    return Err(format!(
                        "erase: ratio must be [min, max] with 0 < min <= max, got {:?}",
                        e.ratio
                    ));
                }
                if !(0.0..=1.0).contains(&e.value) {
                    return Err(format!(
                        "erase: value must be an intensity in [0, 1], got {}",
                        e.value
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A small, fast, seedable generator (SplitMix64): one per image, seeded
/// from (seed, epoch, position), so results never depend on thread count.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn for_item(seed: u64, epoch: u64, item: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        let a = r.next_u64() ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut r = Rng(a);
        Rng(r.next_u64() ^ item.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform integer in [0, n].
    pub fn upto(&mut self, n: usize) -> usize {
        (self.next_u64() % (n as u64 + 1)) as usize
    }
}

/// Rotates counter-clockwise by `degrees` about the image centre.
pub fn rotate(src: &[f32], dst: &mut [f32], rows: usize, cols: usize, degrees: f32) {
    if degrees == 0.0 {
        dst.copy_from_slice(src);
        return;
    }
    let (s, c) = degrees.to_radians().sin_cos();
    let cy = (rows as f32 - 1.0) / 2.0;
    let cx = (cols as f32 - 1.0) / 2.0;
    let at = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= cols as isize || y >= rows as isize {
            0.0
        } else {
            src[y as usize * cols + x as usize]
        }
    };
    for y in 0..rows {
        let dy = y as f32 - cy;
        for x in 0..cols {
            let dx = x as f32 - cx;
            // Where this output pixel comes from: the inverse rotation.
            let sx = cx + c * dx - s * dy;
            let sy = cy + s * dx + c * dy;
            let x0 = sx.floor();
            let y0 = sy.floor();
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            dst[y * cols + x] = (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1, y0))
                + fy * ((1.0 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
        }
    }
}

pub fn hflip(src: &[f32], dst: &mut [f32], rows: usize, cols: usize) {
    for y in 0..rows {
        let (s, d) = (
            &src[y * cols..(y + 1) * cols],
            &mut dst[y * cols..(y + 1) * cols],
        );
        for (o, i) in d.iter_mut().zip(s.iter().rev()) {
            *o = *i;
        }
    }
}

/// The crop at offset (dx, dy) in [0, 2·padding] of the zero-padded image:
/// content moves by (padding − dx, padding − dy).
pub fn crop(
    src: &[f32],
    dst: &mut [f32],
    rows: usize,
    cols: usize,
    padding: usize,
    dx: usize,
    dy: usize,
) {
    for y in 0..rows {
        let sy = y as isize + dy as isize - padding as isize;
        let row = &mut dst[y * cols..(y + 1) * cols];
        if sy < 0 || sy >= rows as isize {
            row.fill(0.0);
            continue;
        }
        let srow = &src[sy as usize * cols..(sy as usize + 1) * cols];
        for (x, o) in row.iter_mut().enumerate() {
            let sx = x as isize + dx as isize - padding as isize;
            *o = if sx < 0 || sx >= cols as isize {
                0.0
            } else {
                srow[sx as usize]
            };
        }
    }
}

/// Where Random Erasing erases, or None (torchvision's draw: up to ten
/// tries of an area and a log-uniform aspect ratio that fit the image):
/// (top, left, height, width).
pub fn erase_box(
    e: &Erase,
    rows: usize,
    cols: usize,
    rng: &mut Rng,
) -> Option<(usize, usize, usize, usize)> {
    if rng.unit() >= e.p {
        return None;
    }
    let total = (rows * cols) as f32;
    let (lo, hi) = (e.ratio[0].ln(), e.ratio[1].ln());
    for _ in 0..10 {
        let target = total * (e.area[0] + rng.unit() * (e.area[1] - e.area[0]));
        let aspect = (lo + rng.unit() * (hi - lo)).exp();
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if h == 0 || w == 0 || h >= rows || w >= cols {
            continue;
        }
        let top = rng.upto(rows - h);
        let left = rng.upto(cols - w);
        return Some((top, left, h, w));
    }
    None
}

/// Applies `augs` in order, Random Erasing last; `a` holds the image on
/// entry and the result on return (`b` is scratch of the same size).
pub fn apply(
    augs: &[Augment],
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
    rows: usize,
    cols: usize,
    rng: &mut Rng,
) {
    for aug in augs {
        match *aug {
            Augment::Rotate(max) => {
                let deg = (rng.unit() * 2.0 - 1.0) * max;
                rotate(a, b, rows, cols, deg);
            }
            Augment::Hflip(p) => {
                if rng.unit() >= p {
                    continue;
                }
                hflip(a, b, rows, cols);
            }
            Augment::Crop { padding, .. } | Augment::Translate(padding) => {
                let (dx, dy) = (rng.upto(2 * padding), rng.upto(2 * padding));
                crop(a, b, rows, cols, padding, dx, dy);
            }
            Augment::Erase(_) => continue,
        }
        std::mem::swap(a, b);
    }
    for aug in augs {
        if let Augment::Erase(e) = aug {
            if let Some((top, left, h, w)) = erase_box(e, rows, cols, rng) {
                // Intensities here are raw (0 to 255).
                let v = e.value * 255.0;
                for y in top..top + h {
                    a[y * cols + left..y * cols + left + w].fill(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x5 image with distinct values.
    fn img() -> Vec<f32> {
        (0..20).map(|v| v as f32 + 1.0).collect()
    }

    #[test]
    fn flip_twice_is_identity() {
        let (mut a, mut b) = (vec![0.0; 20], vec![0.0; 20]);
        hflip(&img(), &mut a, 4, 5);
        assert_eq!(&a[..5], &[5.0, 4.0, 3.0, 2.0, 1.0]);
        hflip(&a, &mut b, 4, 5);
        assert_eq!(b, img());
    }

    #[test]
    fn zero_rotation_is_identity() {
        let mut a = vec![0.0; 20];
        rotate(&img(), &mut a, 4, 5, 0.0);
        assert_eq!(a, img());
        // 360° also lands back (up to rounding).
        rotate(&img(), &mut a, 4, 5, 360.0);
        assert!(
            a.iter().zip(img()).all(|(x, y)| (x - y).abs() < 1e-3),
            "{a:?}"
        );
    }

    #[test]
    fn ninety_degrees_counter_clockwise() {
        // A 3x3 image with one bright pixel in the top-right corner.
        let mut src = vec![0.0; 9];
        src[2] = 1.0;
        let mut dst = vec![0.0; 9];
        rotate(&src, &mut dst, 3, 3, 90.0);
        assert!((dst[0] - 1.0).abs() < 1e-4, "{dst:?}");
        assert!(dst[1..].iter().all(|v| v.abs() < 1e-4), "{dst:?}");
        // The top row becomes the left column, read bottom to top.
        let src: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        rotate(&src, &mut dst, 3, 3, 90.0);
        let got: Vec<i32> = dst.iter().map(|v| v.round() as i32).collect();
        assert_eq!(got, vec![3, 6, 9, 2, 5, 8, 1, 4, 7]);
    }

    #[test]
    fn crop_shifts_by_the_drawn_offset() {
        let mut dst = vec![0.0; 20];
        // Offset (dx, dy) = (3, 1) with padding 2: content moves left 1, down 1.
        crop(&img(), &mut dst, 4, 5, 2, 3, 1);
        let src = img();
        for y in 0..4 {
            for x in 0..5 {
                let (sx, sy) = (x as isize + 1, y as isize - 1);
                let want = if (0..5).contains(&sx) && (0..4).contains(&sy) {
                    src[sy as usize * 5 + sx as usize]
                } else {
                    0.0
                };
                assert_eq!(dst[y * 5 + x], want, "({x},{y})");
            }
        }
        // The centre offset is the identity.
        crop(&img(), &mut dst, 4, 5, 2, 2, 2);
        assert_eq!(dst, img());
    }

    /// Over many draws, erased boxes have the area and aspect ratio the
    /// parameters say (torchvision's draw), and the probability.
    #[test]
    fn erasing_draws_area_ratio_and_probability() {
        let e = Erase {
            p: 0.5,
            area: [0.05, 0.2],
            ratio: [0.5, 2.0],
            value: 0.0,
        };
        let (mut hits, mut draws) = (0, 0);
        let (mut area_sum, mut log_ratio_sum) = (0.0f64, 0.0f64);
        for i in 0..20_000u64 {
            let mut rng = Rng::for_item(7, 0, i);
            draws += 1;
            if let Some((top, left, h, w)) = erase_box(&e, 28, 28, &mut rng) {
                hits += 1;
                assert!(top + h <= 28 && left + w <= 28);
                let frac = (h * w) as f64 / 784.0;
                // Rounding h and w moves the area a little past its bounds.
                assert!((0.03..=0.25).contains(&frac), "{frac}");
                let r = h as f64 / w as f64;
                assert!((0.35..=2.9).contains(&r), "{r}");
                area_sum += frac;
                log_ratio_sum += r.ln();
            }
        }
        let p = hits as f64 / draws as f64;
        assert!((p - 0.5).abs() < 0.02, "{p}");
        // Uniform area: mean 0.125; log-uniform ratio: mean log 0.
        let mean_area = area_sum / hits as f64;
        assert!((mean_area - 0.125).abs() < 0.01, "{mean_area}");
        assert!((log_ratio_sum / hits as f64).abs() < 0.05);
    }

    #[test]
    fn translate_shifts_within_its_range_and_erase_comes_last() {
        let augs = vec![
            Augment::Erase(Erase {
                p: 1.0,
                area: [0.2, 0.2],
                ratio: [1.0, 1.0],
                value: 1.0,
            }),
            Augment::Translate(1),
        ];
        let (mut a, mut b) = (vec![10.0f32; 20], vec![0.0; 20]);
        apply(&augs, &mut a, &mut b, 4, 5, &mut Rng::new(3));
        // The erased box holds 255 whatever the shift: erasing came last.
        assert_eq!(a.iter().filter(|&&v| v == 255.0).count(), 4);
        assert!(validate(&[Augment::Translate(0)], 28, 28).is_err());
        assert!(validate(&[Augment::Translate(28)], 28, 28).is_err());
    }

    #[test]
    fn seeded_and_validated() {
        let augs = vec![
            Augment::Rotate(10.0),
            Augment::Hflip(0.5),
            Augment::Crop {
                size: 5,
                padding: 1,
            },
        ];
        let run = |seed| {
            let (mut a, mut b) = (img(), vec![0.0; 20]);
            apply(&augs, &mut a, &mut b, 4, 5, &mut Rng::for_item(seed, 3, 17));
            a
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(validate(&augs, 5, 5).is_ok());
        assert!(validate(&augs, 4, 5).unwrap_err().contains("crop"));
        let parsed: Vec<Augment> = serde_json::from_str(
            r#"[{"rotate": 10}, {"hflip": 0.5}, {"crop": {"size": 28, "padding": 4}}]"#,
        )
        .unwrap();
        assert_eq!(
            parsed[2],
            Augment::Crop {
                size: 28,
                padding: 4
            }
        );
    }
}
