//! The handwritten digits data set, bundled in the crate so examples and tests need no
//! files or downloads at run time.
//!
//! 1797 images of 8x8 pixels with grey levels 0..=16, labelled 0..=9 (about 180 per
//! class): the test part of the UCI "Optical Recognition of Handwritten Digits" set
//! (E. Alpaydin and C. Kaynak, 1998), as scikit-learn ships it, licensed CC BY 4.0. See
//! `data/README.md` in this crate. A small MLP (64-100-10, ReLU, Adam) reaches about
//! 97-98% accuracy on a held-out 20%.
//!
//! ```
//! let (images, labels) = retrograd_nn::data::digits::load::<f32>().unwrap();
//! assert_eq!(images.dim(), (1797, 64));
//! assert_eq!(labels.len(), 1797);
//! ```

use std::fmt;

use ndarray::{Array1, Array2};

use crate::scalar::{Scalar, cast};

/// The CSV text: one image per line, 64 pixels then the label, no header.
pub const CSV: &str = include_str!("../../data/digits.csv");

/// Number of images.
pub const ROWS: usize = 1797;
/// Pixels per image (8x8, row-major).
pub const PIXELS: usize = 64;
/// Number of classes (digits 0 to 9).
pub const CLASSES: usize = 10;
/// The largest grey level.
pub const MAX_PIXEL: u32 = 16;

/// A malformed line in a digits CSV (lines and columns count from 1).
///
/// `{:?}` prints the same text as `{}`, so that the message reaches the user when the error
/// ends `main` through `?`.
#[derive(Clone, PartialEq, Eq)]
pub enum DigitsError {
    /// A line has the wrong number of fields.
    ColumnCount {
        /// The line.
        line: usize,
        /// Fields found (65 expected).
        found: usize,
    },
    /// A field is not a non-negative integer.
    NotANumber {
        /// The line.
        line: usize,
        /// The column.
        column: usize,
        /// The field's text.
        text: String,
    },
    /// A pixel above 16 or a label above 9.
    OutOfRange {
        /// The line.
        line: usize,
        /// The column (65 is the label).
        column: usize,
        /// The value.
        value: u32,
    },
}

impl fmt::Display for DigitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigitsError::ColumnCount { line, found } => write!(
                f,
                "digits CSV line {line}: {found} fields, expected {}",
                PIXELS + 1
            ),
            DigitsError::NotANumber { line, column, text } => write!(
                f,
                "digits CSV line {line}, column {column}: {text:?} is not a non-negative integer"
            ),
            DigitsError::OutOfRange {
                line,
                column,
                value,
            } => write!(
                f,
                "digits CSV line {line}, column {column}: {value} is out of range \
                 (pixels 0..={MAX_PIXEL}, labels 0..={})",
                CLASSES - 1
            ),
        }
    }
}

impl fmt::Debug for DigitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DigitsError {}

/// The bundled data set: images as rows of 64 pixels scaled to `[0, 1]` (grey level / 16),
/// and labels 0..=9.
///
/// Returns a `Result` for uniformity with [`parse`]; the bundled file is checked by this
/// crate's tests, so it does not fail in practice.
pub fn load<T: Scalar>() -> Result<(Array2<T>, Array1<usize>), DigitsError> {
    parse(CSV)
}

/// Parses text in the digits format (64 pixels 0..=16 then a label 0..=9 per line, no
/// header; blank lines ignored) into scaled images and labels.
pub fn parse<T: Scalar>(csv: &str) -> Result<(Array2<T>, Array1<usize>), DigitsError> {
    let scale = 1.0 / f64::from(MAX_PIXEL);
    let mut pixels: Vec<T> = Vec::with_capacity(ROWS * PIXELS);
    let mut labels: Vec<usize> = Vec::with_capacity(ROWS);
    for (i, text) in csv.lines().enumerate() {
        let line = i + 1;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(DigitsError::ColumnCount {
                line,
                found: fields.len(),
            });
        }
        for (j, field) in fields.iter().enumerate() {
            let column = j + 1;
            let value: u32 = field.trim().parse().map_err(|_| DigitsError::NotANumber {
                line,
                column,
                text: field.to_string(),
            })?;
            let max = if j < PIXELS {
                MAX_PIXEL
            } else {
                CLASSES as u32 - 1
            };
            if value > max {
                return Err(DigitsError::OutOfRange {
                    line,
                    column,
                    value,
                });
            }
            if j < PIXELS {
                pixels.push(cast(f64::from(value) * scale));
            } else {
                labels.push(value as usize);
            }
        }
    }
    let rows = labels.len();
    let images = Array2::from_shape_vec((rows, PIXELS), pixels)
        .expect("each accepted line adds exactly PIXELS values");
    Ok((images, Array1::from_vec(labels)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_data_is_complete() {
        let (x, y) = load::<f64>().unwrap();
        assert_eq!(x.dim(), (ROWS, PIXELS));
        assert_eq!(y.len(), ROWS);
        assert!(x.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(x.iter().cloned().fold(0.0, f64::max), 1.0);
        let mut counts = [0usize; CLASSES];
        for &l in &y {
            counts[l] += 1;
        }
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
        // First row of the file: pixels 0,0,5,13,... and label 0.
        assert_eq!(x[[0, 2]], 5.0 / 16.0);
        assert_eq!(y[0], 0);
        let (x32, _) = load::<f32>().unwrap();
        assert_eq!(x32[[0, 3]], 13.0 / 16.0);
    }

    #[test]
    fn malformed_lines_are_reported() {
        let row = |label: &str| format!("{}{label}", "1,".repeat(PIXELS));
        assert_eq!(
            parse::<f32>(&format!("{}\n1,2\n", row("3"))),
            Err(DigitsError::ColumnCount { line: 2, found: 2 })
        );
        assert_eq!(
            parse::<f32>(&row("x")),
            Err(DigitsError::NotANumber {
                line: 1,
                column: 65,
                text: "x".into()
            })
        );
        assert_eq!(
            parse::<f32>(&row("10")),
            Err(DigitsError::OutOfRange {
                line: 1,
                column: 65,
                value: 10
            })
        );
        assert!(
            parse::<f32>(&format!("17{}", &row("1")[1..]))
                .unwrap_err()
                .to_string()
                .contains("column 1")
        );
        let (x, y) = parse::<f64>(&format!("\n{}\n\n", row("9"))).unwrap();
        assert_eq!((x.dim(), y[0]), ((1, PIXELS), 9));
    }
}
