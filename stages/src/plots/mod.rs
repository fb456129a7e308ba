//! Pictures, each as SVG and PNG: an evaluation's confusion matrix, ROC
//! curves, training curves and image grids; a comparison's charts.
//!
//! Text needs a TrueType font: DejaVu Sans (Debian's fonts-dejavu-core) or
//! the file named by FMNIST_PIPE_FONT. Without one, no pictures are drawn
//! ([`font_ready`] is false) and the kinds say so ([`crate::Step::NoFont`]).

use plotters::prelude::*;
use std::sync::OnceLock;

const FONT: &str = "sans-serif";

/// Registers a font once; false when none is found.
pub fn font_ready() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let candidates = [
            std::env::var("FMNIST_PIPE_FONT").unwrap_or_default(),
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_string(),
        ];
        for c in candidates.iter().filter(|c| !c.is_empty()) {
            if let Ok(bytes) = std::fs::read(c) {
                // Fonts live for the whole process; leaking one is intended.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Why a chart was not drawn: what the plotting library said, and the
/// file it was drawing where known.
#[derive(Debug, thiserror::Error)]
#[error("{}{problem}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct DrawError {
    pub file: Option<std::path::PathBuf>,
    pub problem: String,
}

pub(super) type Drawn = Result<(), DrawError>;

/// Draws `f` to `<name>.svg` and `<name>.png` in `dir`.
macro_rules! both {
    ($dir:expr, $name:expr, $size:expr, $f:expr) => {{
        let svg = $dir.join(format!("{}.svg", $name));
        $f(SVGBackend::new(&svg, $size).into_drawing_area()).map_err(|e: DrawError| DrawError {
            file: Some(svg.clone()),
            ..e
        })?;
        {
            let png = $dir.join(format!("{}.png", $name));
            $f(BitMapBackend::new(&png, $size).into_drawing_area()).map_err(|e: DrawError| {
                DrawError {
                    file: Some(png.clone()),
                    ..e
                }
            })?;
        }
    }};
}

/// The plotting library's error, as it describes itself.
pub(super) fn e<E: std::fmt::Debug>(x: E) -> DrawError {
    DrawError {
        file: None,
        problem: format!("{x:?}"),
    }
}

pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

mod comparison;
mod draw;
mod evaluation;
mod search;

pub use comparison::{comparison, file_part, forest, pivot, ForestRow};
pub use evaluation::evaluation;
pub use search::search;
