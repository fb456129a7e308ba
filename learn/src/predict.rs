//! A trained model on a person's own pictures. Fashion-MNIST's images are
//! a light garment on a black background, 28×28 grey, the garment scaled
//! to fill the frame; pictures are brought to that form first:
//!
//! 1. decoded (PNG or JPEG, any size, colour or grey); transparent pixels
//!    are laid over white;
//! 2. converted to grey (ITU-R 601 luma);
//! 3. inverted when the background is light: when the mean of the
//!    outermost rows and columns is above 127 (a product photo on white);
//! 4. scaled so that the longer side is 28 pixels, keeping the aspect
//!    ratio (a triangle filter, which averages when shrinking), and
//!    centred on a black 28×28 frame;
//! 5. normalized as the model's training data were.

use crate::data::dataset::{Dataset, Split};
use crate::nn::checkpoint;
use crate::nn::generic::Net;
use crate::nn::infer::{predict, Engine};
use crate::nn::ops::Dev;
use crate::CLASS_NAMES;
use image::imageops::FilterType;
use image::{GrayImage, Luma};
use std::path::Path;

pub const SIDE: usize = 28;

/// A picture brought to Fashion-MNIST's form.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// 28×28 grey pixels, row by row.
    pub pixels: Vec<u8>,
    /// Whether it was inverted (its background was light).
    pub inverted: bool,
    /// The picture's own size.
    pub width: u32,
    pub height: u32,
}

/// What is wrong with a picture.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("cannot read it: {0}")]
    /// The message holds the I/O error, so it is not also a source
    /// (a chain of causes would say it twice).
    Read(std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not a PNG or JPEG image")]
    NotAnImage,
    #[error("a {0:?} image; predict reads PNG and JPEG")]
    Format(image::ImageFormat),
    #[error("cannot decode it as {format:?} (truncated or damaged?): {problem}")]
    Decode {
        format: image::ImageFormat,
        problem: String,
    },
    #[error("the image has no pixels")]
    NoPixels,
}

/// Why a model cannot classify pictures.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("the model takes inputs of shape {0:?}, not 1×28×28 pictures")]
    Input((usize, usize, usize)),
    #[error("cannot start its threads: {0}")]
    Threads(rayon::ThreadPoolBuildError),
}

/// Reads and prepares one picture; the error says what is wrong with it.
pub fn prepare(bytes: &[u8]) -> Result<Prepared, PictureError> {
    if bytes.is_empty() {
        return Err(PictureError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| PictureError::NotAnImage)?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(PictureError::Format(format));
    }
    let img =
        image::load_from_memory_with_format(bytes, format).map_err(|e| PictureError::Decode {
            format,
            problem: e.to_string(),
        })?;
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err(PictureError::NoPixels);
    }
    // Grey, with transparency laid over white.
    let la = img.to_luma_alpha8();
    let mut grey = GrayImage::from_fn(width, height, |x, y| {
        let p = la.get_pixel(x, y).0;
        let a = p[1] as u32;
        Luma([((p[0] as u32 * a + 255 * (255 - a) + 127) / 255) as u8])
    });
    let inverted = border_mean(&grey) > 127.0;
    if inverted {
        image::imageops::invert(&mut grey);
    }
    let scale = SIDE as f64 / width.max(height) as f64;
    let (w, h) = (
        ((width as f64 * scale).round() as u32).clamp(1, SIDE as u32),
        ((height as f64 * scale).round() as u32).clamp(1, SIDE as u32),
    );
    let small = image::imageops::resize(&grey, w, h, FilterType::Triangle);
    let mut frame = GrayImage::new(SIDE as u32, SIDE as u32);
    image::imageops::overlay(
        &mut frame,
        &small,
        i64::from((SIDE as u32 - w) / 2),
        i64::from((SIDE as u32 - h) / 2),
    );
    Ok(Prepared {
        pixels: frame.into_raw(),
        inverted,
        width,
        height,
    })
}

/// The mean of the outermost rows and columns.
fn border_mean(g: &GrayImage) -> f64 {
    let (w, h) = g.dimensions();
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in 0..h {
        for x in 0..w {
            if x == 0 || y == 0 || x == w - 1 || y == h - 1 {
                sum += g.get_pixel(x, y).0[0] as u64;
                n += 1;
            }
        }
    }
    sum as f64 / n.max(1) as f64
}

/// Class probabilities of prepared pictures under the model in
/// `weights`, normalized with the training data's `mean` and `std`.
pub fn classify(
    weights: &Path,
    (mean, std): (f32, f32),
    pictures: &[Prepared],
    threads: usize,
) -> Result<Vec<Vec<f32>>, ClassifyError> {
    let mut model = checkpoint::load(weights)?;
    if model.input != (1, SIDE, SIDE) {
        return Err(ClassifyError::Input(model.input));
    }
    if pictures.is_empty() {
        return Ok(Vec::new());
    }
    let n = pictures.len();
    let data = Dataset {
        rows: SIDE,
        cols: SIDE,
        mean,
        std,
        splits: vec![],
    };
    let split = Split {
        name: "predict".into(),
        labels: vec![0; n],
        indices: (0..n as u32).collect(),
        pixels: pictures
            .iter()
            .flat_map(|p| p.pixels.iter().copied())
            .collect(),
    };
    let dev = Dev::seed_from_u64(0);
    let tensors = Net::upload(&model, &dev);
    let engine = Engine::new("cpu", &model, &dev);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(ClassifyError::Threads)?;
    let mut logits = pool.install(|| {
        predict(
            &mut model,
            &tensors,
            &data,
            &split,
            64,
            threads.max(1),
            (&dev, &engine),
        )
    });
    crate::softmax(&mut logits, model.classes);
    Ok(logits.chunks(model.classes).map(<[f32]>::to_vec).collect())
}

/// The `k` most probable classes: (class index, name, probability).
pub fn top(probs: &[f32], k: usize) -> Vec<(usize, &'static str, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| (i, CLASS_NAMES.get(i).copied().unwrap_or("?"), probs[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageOutputFormat, Rgba, RgbaImage};
    use std::io::Cursor;

    fn encode(img: &image::DynamicImage, f: ImageOutputFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, f).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_dark_shirt_on_white_is_inverted_scaled_and_centred() {
        // 100×50 white picture with a black block in its middle.
        let img = RgbaImage::from_fn(100, 50, |x, y| {
            if (40..60).contains(&x) && (15..35).contains(&y) {
                Rgba([0, 0, 0, 255])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        let png = encode(
            &image::DynamicImage::ImageRgba8(img),
            ImageOutputFormat::Png,
        );
        let p = prepare(&png).unwrap();
        assert!(p.inverted);
        assert_eq!((p.width, p.height), (100, 50));
        assert_eq!(p.pixels.len(), 784);
        // Scaled to 28×14 and centred: rows 0..7 and 21..28 are the frame.
        let at = |x: usize, y: usize| p.pixels[y * 28 + x];
        assert_eq!(at(14, 2), 0, "frame above");
        assert_eq!(at(14, 25), 0, "frame below");
        assert!(at(14, 14) > 200, "the block, now light: {}", at(14, 14));
        assert!(at(2, 14) < 20, "the background, now dark: {}", at(2, 14));
    }

    #[test]
    fn a_light_garment_on_black_stays_and_jpeg_reads_too() {
        let img = image::DynamicImage::ImageLuma8(GrayImage::from_fn(28, 28, |x, _| {
            Luma([if (10..18).contains(&x) { 230 } else { 5 }])
        }));
        let jpg = encode(&img, ImageOutputFormat::Jpeg(95));
        let p = prepare(&jpg).unwrap();
        assert!(!p.inverted);
        assert!(p.pixels[14 * 28 + 14] > 200);
    }

    #[test]
    fn what_is_not_a_picture_says_so() {
        assert_eq!(prepare(b"").unwrap_err().to_string(), "the file is empty");
        assert_eq!(
            prepare(b"hello, world").unwrap_err().to_string(),
            "not a PNG or JPEG image"
        );
        let img = image::DynamicImage::ImageLuma8(GrayImage::new(40, 40));
        let png = encode(&img, ImageOutputFormat::Png);
        let e = prepare(&png[..png.len() / 2]).unwrap_err();
        assert!(matches!(e, PictureError::Decode { .. }), "{e:?}");
        assert!(e.to_string().contains("truncated or damaged"), "{e}");
    }

    #[test]
    fn top_classes_in_order() {
        let t = top(&[0.1, 0.6, 0.05, 0.25], 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 3, 0]);
        assert_eq!(t[0].1, "Trouser");
    }
}
