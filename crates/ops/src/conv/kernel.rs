//! The convolution kernels on plain arrays: what the three convolution primitives compute,
//! for code that manages its own buffers (a hand-written training step, a benchmark
//! baseline) and wants the engine's exact arithmetic without a tape.
//!
//! Each takes NCHW arrays in PyTorch's layouts and a [`ConvSpec`], validates the shapes as
//! the ops do, and runs `im2col`/`col2im` with the matmul kernel seam one sample at a time.
//!
//! ```
//! use ndarray::ArrayD;
//! use retrograd_ops::conv::{ConvSpec, kernel};
//! let x = ArrayD::<f32>::ones(vec![1, 1, 4, 4]);
//! let w = ArrayD::<f32>::ones(vec![2, 1, 3, 3]);
//! let y = kernel::conv2d(x.view(), w.view(), ConvSpec::new()).unwrap();
//! assert_eq!(y.shape(), &[1, 2, 2, 2]);
//! assert!(y.iter().all(|&v| v == 9.0));
//! let dw = kernel::conv2d_weight_grad(x.view(), y.view(), w.shape(), ConvSpec::new()).unwrap();
//! assert_eq!(dw.shape(), w.shape());
//! ```

use ndarray::{ArrayD, ArrayViewD};

use retrograd_tape::Float;

use super::ConvSpec;
use super::geometry::Geometry;

/// `conv2d(x, w)`: `x [N, C, H, W]`, `w [O, C/groups, kh, kw]` → `[N, O, OH, OW]`.
///
/// # Errors
/// The op's message when the shapes do not fit (`conv2d`'s panics, as text).
pub fn conv2d<T: Float>(
    x: ArrayViewD<'_, T>,
    w: ArrayViewD<'_, T>,
    spec: ConvSpec,
) -> Result<ArrayD<T>, String> {
    let g = Geometry::of_conv(&spec, 2, x.shape(), w.shape())?;
    Ok(g.conv(x, w))
}

/// The input gradient of `conv2d(x, w)` for an input of `x_shape`, given the output's
/// gradient `gy` (the transposed convolution).
///
/// # Errors
/// When `x_shape`, `w` and `gy` do not belong to one convolution.
pub fn conv2d_input_grad<T: Float>(
    gy: ArrayViewD<'_, T>,
    w: ArrayViewD<'_, T>,
    x_shape: &[usize],
    spec: ConvSpec,
) -> Result<ArrayD<T>, String> {
    let g = Geometry::of_conv(&spec, 2, x_shape, w.shape())?;
    g.expect([gy.shape(), w.shape()], [g.y_shape(), g.w_shape()])?;
    Ok(g.conv_transpose(gy, w))
}

/// The weight gradient of `conv2d(x, w)` for a weight of `w_shape`, given the output's
/// gradient `gy`.
///
/// # Errors
/// When `x`, `w_shape` and `gy` do not belong to one convolution.
pub fn conv2d_weight_grad<T: Float>(
    x: ArrayViewD<'_, T>,
    gy: ArrayViewD<'_, T>,
    w_shape: &[usize],
    spec: ConvSpec,
) -> Result<ArrayD<T>, String> {
    let g = Geometry::of_conv(&spec, 2, x.shape(), w_shape)?;
    g.expect([x.shape(), gy.shape()], [g.x_shape(), g.y_shape()])?;
    Ok(g.conv_weight(x, gy))
}
