//! The matmul kernel seam: the one place that names the GEMM implementation.
//!
//! Every matrix product in retrograd (the forward of `matmul`, and through it its VJP and
//! JVP rules) ends in [`gemm()`]. `f32` and `f64` products run on the pure-Rust
//! [`gemm`](https://docs.rs/gemm) crate (its AVX-512 kernels where the CPU has them,
//! chosen at run time), on as many threads as [`crate::threads::num_threads`] allows; it
//! was chosen over `matrixmultiply` by the W2 training step measured through the engine
//! (docs/benchmarks.md). Any other element type falls back to ndarray's
//! `general_mat_mul`. Keeping a single seam lets the kernel be re-chosen by measurement
//! without touching any rule.
//!
//! The kernel takes arbitrary strides, so callers pass transposed *views* (`a.t()`) rather
//! than materialising transposes: a VJP's `Aᵀ · G` costs one GEMM and no copy.

use std::any::TypeId;

use ndarray::{ArrayView2, ArrayViewMut2};

use retrograd_tape::Float;

use crate::threads::{PARALLEL_MIN_MADDS, num_threads};

/// The name of the kernel behind [`gemm()`], for benchmark reports (`"gemm"`).
pub const KERNEL: &str = "gemm";

/// `C ← α·A·B + β·C` for an `m×k` matrix `A`, a `k×n` matrix `B` and an `m×n` matrix `C`,
/// with any strides (transposed views included). With `β = 0` the old contents of `C` are
/// not read (NaN in `C` does not leak into the result). Products of at least
/// [`PARALLEL_MIN_MADDS`] multiply-adds use up to [`num_threads`] threads.
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
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm: shapes {:?} · {:?} -> {:?} do not chain",
        a.dim(),
        b.dim(),
        c.dim()
    );
    let native =
        TypeId::of::<T>() == TypeId::of::<f32>() || TypeId::of::<T>() == TypeId::of::<f64>();
    if !native {
        ndarray::linalg::general_mat_mul(alpha, &a, &b, beta, &mut c);
    } else if m > 0 && n > 0 {
        if k == 0 {
            // An empty sum: C ← β·C (without reading C when β = 0).
            if beta == T::zero() {
                c.fill(T::zero());
            } else {
                c.mapv_inplace(|v| v * beta);
            }
        } else {
            gemm_crate(alpha, a, b, beta, c);
        }
    }
}

/// `C ← α·A·B + β·C` through `gemm::gemm` for `T` = `f32` or `f64`, `m, n, k > 0`, shapes
/// already checked by [`gemm()`].
#[allow(unsafe_code)]
fn gemm_crate<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
) {
    let ((m, k), n) = (a.dim(), b.dim().1);
    let threads = num_threads();
    let parallelism = if threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MADDS
    {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: `T` is f32 or f64 (checked by the caller through `TypeId`), both supported
    // by `gemm::gemm`. It reads an m×k matrix at `a.as_ptr()` with strides (a_rs, a_cs), a
    // k×n matrix at `b.as_ptr()` with (b_rs, b_cs), and reads and writes an m×n matrix at
    // `c.as_mut_ptr()` with (c_rs, c_cs). These are exactly the shapes and element strides
    // of the three ndarray views (checked to chain by `gemm()`; m, n, k > 0 here), so every
    // address it touches lies inside the views. `c` is a unique mutable borrow, so it
    // aliases neither input. `gemm::gemm` computes `dst ← alpha·dst + beta·lhs·rhs`: our
    // β is its alpha and our α its beta; with β = 0, `read_dst = false` so the old
    // contents of `c` are not read. No conjugation (real numbers). The call is synchronous
    // (its threads join before it returns): the views outlive it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != T::zero(),
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::with_num_threads;
    use ndarray::{Array2, ArrayView2};

    /// `M[i, j] = sin(seed + i·cols + j)`.
    fn closed_form<T: Float>(rows: usize, cols: usize, seed: f64) -> Array2<T> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            T::of((seed + (i * cols + j) as f64).sin())
        })
    }

    /// `α·A·B + β·C` entry by entry, in f64.
    fn naive<T: Float>(
        alpha: f64,
        a: ArrayView2<T>,
        b: ArrayView2<T>,
        beta: f64,
        c: &Array2<T>,
    ) -> Array2<f64> {
        let (m, k) = a.dim();
        Array2::from_shape_fn((m, b.dim().1), |(i, j)| {
            let dot: f64 = (0..k)
                .map(|p| a[[i, p]].as_f64() * b[[p, j]].as_f64())
                .sum();
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * c[[i, j]].as_f64()
            };
            alpha * dot + old
        })
    }

    fn check<T: Float>(tol: f64) {
        // The last shape is above PARALLEL_MIN_MADDS, so it takes the threaded path.
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (64, 70, 130),
            (160, 128, 128),
        ] {
            for threads in [1, 2] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                    let a = closed_form::<T>(m, k, 0.3);
                    let at = closed_form::<T>(k, m, 0.3);
                    let b = closed_form::<T>(k, n, 0.7);
                    let c0 = closed_form::<T>(m, n, 0.9);
                    for (av, bv) in [(a.view(), b.view()), (at.t(), b.view())] {
                        let mut c = c0.clone();
                        if beta == 0.0 {
                            c.fill(T::nan());
                        }
                        let want = naive(alpha, av, bv, beta, &c0);
                        with_num_threads(threads, || {
                            gemm(T::of(alpha), av, bv, T::of(beta), c.view_mut())
                        });
                        for (g, w) in c.iter().zip(want.iter()) {
                            let g = g.as_f64();
                            assert!(
                                (g - w).abs() <= tol * (1.0 + w.abs()),
                                "{m}x{k}x{n}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_and_f64_match_a_naive_product_on_every_path() {
        check::<f32>(1e-4);
        check::<f64>(1e-12);
    }

    #[test]
    fn output_through_a_transposed_view() {
        let a = closed_form::<f32>(5, 4, 0.1);
        let b = closed_form::<f32>(4, 3, 0.2);
        let mut ct = Array2::<f32>::from_elem((3, 5), f32::NAN);
        gemm(1.0, a.view(), b.view(), 0.0, ct.view_mut().reversed_axes());
        let want = naive(1.0, a.view(), b.view(), 0.0, &Array2::zeros((5, 3)));
        for (g, w) in ct.t().iter().zip(want.iter()) {
            assert!((f64::from(*g) - w).abs() < 1e-5);
        }
    }

    #[test]
    fn an_empty_inner_dimension_scales_c() {
        let a = Array2::<f64>::zeros((3, 0));
        let b = Array2::<f64>::zeros((0, 4));
        let mut c = Array2::from_elem((3, 4), f64::NAN);
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
        assert!(c.iter().all(|&v| v == 0.0));
        let mut c = Array2::from_elem((3, 4), 2.0);
        gemm(1.0, a.view(), b.view(), 0.5, c.view_mut());
        assert!(c.iter().all(|&v| v == 1.0));
    }

    #[test]
    #[should_panic(expected = "do not chain")]
    fn mismatched_shapes_panic() {
        let a = Array2::<f32>::zeros((3, 4));
        let mut c = Array2::<f32>::zeros((3, 4));
        gemm(1.0, a.view(), a.view(), 0.0, c.view_mut());
    }
}
