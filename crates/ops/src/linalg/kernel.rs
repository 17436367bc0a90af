//! The matmul kernel seam: the one place that names the GEMM implementation.
//!
//! Every matrix product in retrograd (the forward of `matmul`, and through it its VJP and
//! JVP rules) ends in [`gemm`]. Keeping a single seam lets the kernel be chosen by
//! measurement (ndarray's `general_mat_mul`, i.e. the `matrixmultiply` crate, today; the
//! `gemm` crate or a system BLAS behind a feature later) without touching any rule.
//!
//! The kernel takes arbitrary strides, so callers pass transposed *views* (`a.t()`) rather
//! than materialising transposes: a VJP's `Aᵀ · G` costs one GEMM and no copy.

use ndarray::{ArrayView2, ArrayViewMut2};

use retrograd_tape::Float;

/// The name of the kernel behind [`gemm`], for benchmark reports (`"matrixmultiply"`).
pub const KERNEL: &str = "matrixmultiply";

/// `C ← α·A·B + β·C` for an `m×k` matrix `A`, a `k×n` matrix `B` and an `m×n` matrix `C`,
/// with any strides (transposed views included). With `β = 0` the old contents of `C` are
/// not read (NaN in `C` does not leak into the result).
///
/// ```
/// use ndarray::{array, Array2};
/// use retrograd_ops::linalg::kernel::gemm;
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// let mut c = Array2::<f64>::zeros((2, 2));
/// gemm(1.0, a.t(), a.view(), 0.0, c.view_mut()); // Aᵀ·A, no copy of the transpose
/// assert_eq!(c, array![[10.0, 14.0], [14.0, 20.0]]);
/// ```
///
/// # Panics
/// When the shapes do not chain (a caller bug: the ops validate shapes before calling).
#[inline]
pub fn gemm<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
) {
    ndarray::linalg::general_mat_mul(alpha, &a, &b, beta, &mut c);
}
