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

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

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

/// `α·A·B` as a new `m×n` array in standard layout. Unlike [`gemm()`] into a zeroed
/// array, the output's memory is not written twice: for f32 and f64 the kernel writes every
/// element of the fresh allocation directly (a zeroing pass took 3.6% of a W2 training
/// step through the engine).
///
/// ```
/// use ndarray::array;
/// use retrograd_ops::linalg::kernel::gemm_new;
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// assert_eq!(gemm_new(2.0, a.view(), a.t()), array![[10.0, 22.0], [22.0, 50.0]]);
/// ```
///
/// # Panics
/// When the shapes do not chain (a caller bug: the ops validate shapes before calling).
#[allow(unsafe_code)]
pub fn gemm_new<T: Float>(alpha: T, a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    let native =
        TypeId::of::<T>() == TypeId::of::<f32>() || TypeId::of::<T>() == TypeId::of::<f64>();
    if !native || k != k2 || m == 0 || n == 0 || k == 0 {
        let mut c = Array2::zeros((m, n));
        gemm(alpha, a, b, T::zero(), c.view_mut());
        return c;
    }
    let mut c = Array2::<T>::uninit((m, n));
    let dst = c.as_mut_ptr().cast::<T>();
    // SAFETY: `T` is f32 or f64 and m, n, k > 0 with `a` m×k and `b` k×n (checked above).
    // `dst` points at a fresh, uniquely owned m×n allocation in standard layout, whose
    // strides (n, 1) are the ones passed, so the kernel's writes stay inside it; with
    // β = 0 it does not read it (`gemm_raw`'s contract).
    unsafe { gemm_raw(alpha, a, b, T::zero(), dst, (n as isize, 1)) };
    // SAFETY: a GEMM with β = 0 stores every element of its m×n output, so all of `c` is
    // initialised.
    unsafe { c.assume_init() }
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
    let strides = (c.strides()[0], c.strides()[1]);
    // SAFETY: `c` is an m×n view (checked by `gemm()`) with these strides, uniquely
    // borrowed, so every element the kernel reads or writes is one of its own, and it
    // aliases neither input. The rest of `gemm_raw`'s contract is the caller's.
    unsafe { gemm_raw(alpha, a, b, beta, c.as_mut_ptr(), strides) }
}

/// `C ← α·A·B + β·C` through `gemm::gemm`, `C` given by its first element and strides.
///
/// # Safety
/// `T` is f32 or f64; `a` is m×k and `b` k×n with m, n, k > 0; `dst` with strides
/// `(rows, columns)` addresses m×n elements of one allocation the caller may write, aliasing
/// neither input. With β = 0 the old contents are not read (they may be uninitialised),
/// and every element is written.
#[allow(unsafe_code)]
unsafe fn gemm_raw<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    dst: *mut T,
    (c_rs, c_cs): (isize, isize),
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
    // SAFETY: `T` is f32 or f64 (the caller's contract), both supported by `gemm::gemm`.
    // It reads an m×k matrix at `a.as_ptr()` with strides (a_rs, a_cs) and a k×n matrix at
    // `b.as_ptr()` with (b_rs, b_cs): exactly the shapes and element strides of the two
    // views. It reads (unless β = 0) and writes the m×n matrix at `dst` with (c_rs, c_cs),
    // which the caller vouches for. `gemm::gemm` computes `dst ← alpha·dst +
    // beta·lhs·rhs`: our β is its alpha and our α its beta; with β = 0, `read_dst = false`
    // so the old contents are not read. No conjugation (real numbers). The call is
    // synchronous (its threads join before it returns): the views outlive it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
                        if beta == 0.0 {
                            let fresh =
                                with_num_threads(threads, || gemm_new(T::of(alpha), av, bv));
                            let want = naive(alpha, av, bv, 0.0, &c0);
                            assert_eq!(fresh.dim(), want.dim());
                            for (g, w) in fresh.iter().zip(want.iter()) {
                                let g = g.as_f64();
                                assert!(
                                    (g - w).abs() <= tol * (1.0 + w.abs()),
                                    "gemm_new {m}x{k}x{n}: {g} vs {w}"
                                );
                            }
                        }
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
    fn a_new_product_of_empty_or_non_native_operands_is_zeros_where_empty() {
        let empty = gemm_new(
            1.0,
            Array2::<f64>::zeros((3, 0)).view(),
            Array2::zeros((0, 4)).view(),
        );
        assert_eq!(empty, Array2::<f64>::zeros((3, 4)));
        assert_eq!(
            gemm_new(
                1.0,
                Array2::<f32>::zeros((0, 2)).view(),
                Array2::zeros((2, 5)).view()
            )
            .dim(),
            (0, 5)
        );
    }

    #[test]
    #[should_panic(expected = "do not chain")]
    fn mismatched_shapes_panic() {
        let a = Array2::<f32>::zeros((3, 4));
        let mut c = Array2::<f32>::zeros((3, 4));
        gemm(1.0, a.view(), a.view(), 0.0, c.view_mut());
    }
}
