//! The matmul kernel seam: the one place that names the GEMM implementation.
//!
//! Every matrix product in retrograd (the forward of `matmul`, and through it its VJP and
//! JVP rules; the products of Jacobians in [`crate::chain`] and [`crate::transforms`]) ends
//! in [`gemm()`]. `f32` and `f64` products run on the pure-Rust
//! [`gemm`](https://docs.rs/gemm) crate (its AVX-512 kernels where the CPU has them,
//! chosen at run time); it was chosen over `matrixmultiply` by the W2 training step
//! measured through the engine (docs/benchmarks.md). Any other element type falls back to
//! ndarray's `general_mat_mul`. Keeping a single seam lets the kernel be re-chosen by
//! measurement without touching any rule.
//!
//! Two things sit in front of the `gemm` crate, each chosen by measurement:
//! - **Products with at most eight rows or columns** (a few tangents through a wide layer,
//!   a matrix-vector product) go to AVX-512 loops that read the long operand in place
//!   instead of packing it (`skinny`): a 500×500 matrix times a vector took 41 µs there
//!   against 198 µs in `gemm`.
//! - **Large products are cut into one block per core** along the output's wider side, and
//!   each block runs single-threaded on [`crate::threads`]' helpers, the calling thread
//!   taking the first (from 2²⁶ multiply-adds, `gemm`'s own threading on rayon's pool
//!   instead: it packs the shared operand once). `gemm`'s own threading split W2's 128-row products badly: its
//!   784→512 forward product took 623 µs on 2 threads against 715 µs on one; cut in two
//!   column blocks it takes 354 µs (docs/benchmarks.md).
//!
//! The kernel takes arbitrary strides, so callers pass transposed *views* (`a.t()`) rather
//! than materialising transposes: a VJP's `Aᵀ · G` costs one GEMM and no copy.

use std::any::TypeId;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::Float;

use crate::threads::parts_for;

mod skinny;

/// The name of the kernel behind [`gemm()`], for benchmark reports (`"gemm"`).
pub const KERNEL: &str = "gemm";

/// `C ← α·A·B + β·C` for an `m×k` matrix `A`, a `k×n` matrix `B` and an `m×n` matrix `C`,
/// with any strides (transposed views included). With `β = 0` the old contents of `C` are
/// not read (NaN in `C` does not leak into the result). Products of at least
/// [`PARALLEL_MIN_MADDS`](crate::threads::PARALLEL_MIN_MADDS) multiply-adds use up to
/// [`num_threads`](crate::threads::num_threads) threads, one per core at most.
///
/// ```
/// use ndarray::{array, Array2};
/// use retrograd_tape::kernel::gemm;
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
    let native = is::<T, f32>() || is::<T, f64>();
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
            // SAFETY: `T` is f32 or f64 (`native`), the shapes chain (asserted above) and
            // m, n, k > 0 (the branches above).
            #[allow(unsafe_code)]
            unsafe {
                gemm_crate(alpha, a, b, beta, c)
            };
        }
    }
}

/// Whether `T` is `U`: the kernels behind the seam take `f32` and `f64` only.
pub(crate) fn is<T: 'static, U: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<U>()
}

/// `α·A·B` as a new `m×n` array in standard layout. Unlike [`gemm()`] into a zeroed
/// array, the output's memory is not written twice: for f32 and f64 the kernel writes every
/// element of the fresh allocation directly (a zeroing pass took 3.6% of a W2 training
/// step through the engine).
///
/// ```
/// use ndarray::array;
/// use retrograd_tape::kernel::gemm_new;
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// assert_eq!(gemm_new(2.0, a.view(), a.t()), array![[10.0, 22.0], [22.0, 50.0]]);
/// ```
///
/// # Panics
/// When the shapes do not chain (a caller bug: the ops validate shapes before calling).
#[allow(unsafe_code)]
pub fn gemm_new<T: Float>(alpha: T, a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    let native = is::<T, f32>() || is::<T, f64>();
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

/// `C ← α·A·B + β·C` through the kernels, `C` a view.
///
/// # Safety
/// `T` is `f32` or `f64`; `a` is m×k, `b` k×n and `c` m×n with m, n, k > 0.
#[allow(unsafe_code)]
unsafe fn gemm_crate<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
) {
    let strides = (c.strides()[0], c.strides()[1]);
    // SAFETY: `c` is an m×n view with these strides, uniquely borrowed, so every element
    // the kernel reads or writes is one of its own, and it aliases neither input. The rest
    // of `gemm_raw`'s contract is this function's.
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
    let parts = parts_for(m.saturating_mul(n).saturating_mul(k));
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let whole = Block {
        rows: m,
        cols: n,
        depth: k,
        a: a.as_ptr(),
        a_strides: (a_rs, a_cs),
        b: b.as_ptr(),
        b_strides: (b_rs, b_cs),
        dst,
        dst_strides: (c_rs, c_cs),
    };
    // SAFETY: `whole` describes exactly the caller's operands and output.
    unsafe {
        if skinny::try_gemm(whole, alpha, beta) {
            return;
        }
        if parts == 1 {
            run_block(whole, alpha, beta, gemm::Parallelism::None);
        } else if m.saturating_mul(n).saturating_mul(k) >= OWN_THREADS_MIN_MADDS {
            run_block(whole, alpha, beta, gemm::Parallelism::Rayon(parts));
        } else {
            run_split(whole, parts, alpha, beta);
        }
    }
}

/// Products from this many multiply-adds use `gemm`'s own threading instead of one block
/// per core: it packs the shared operand once for all threads and balances finer. On the
/// 500×500×500 f64 products of W5's Hessian it took 18 ms where one block per core took 27
/// (under load); on W2's 128×784×512 (51 M) one block per core took 354 µs against 623.
const OWN_THREADS_MIN_MADDS: usize = 1 << 26;

/// A product described by pointers and strides, as the kernels take it:
/// `dst[rows×cols] ← α·a[rows×depth]·b[depth×cols] + β·dst`.
pub(crate) struct Block<T> {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) depth: usize,
    pub(crate) a: *const T,
    pub(crate) a_strides: (isize, isize),
    pub(crate) b: *const T,
    pub(crate) b_strides: (isize, isize),
    pub(crate) dst: *mut T,
    pub(crate) dst_strides: (isize, isize),
}

impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Block<T> {}

// SAFETY: the blocks of one product are shared with the threads that run them while their
// creator waits; each block's output is a disjoint part of the caller's, and the inputs are
// only read.
#[allow(unsafe_code)]
unsafe impl<T: Send + Sync> Send for Block<T> {}
// SAFETY: as for `Send`: the parts are read by the threads that run them, never written.
#[allow(unsafe_code)]
unsafe impl<T: Send + Sync> Sync for Block<T> {}

impl<T> Block<T> {
    /// The same product transposed, `Cᵀ = Bᵀ·Aᵀ`: same memory, strides swapped.
    pub(crate) fn transposed(self) -> Self {
        let swap = |(r, c): (isize, isize)| (c, r);
        Block {
            rows: self.cols,
            cols: self.rows,
            depth: self.depth,
            a: self.b,
            a_strides: swap(self.b_strides),
            b: self.a,
            b_strides: swap(self.a_strides),
            dst: self.dst,
            dst_strides: swap(self.dst_strides),
        }
    }

    /// Splits the block into at most `parts` blocks of nearly equal size along the wider
    /// side of the output (so that only the smaller operand is packed more than once),
    /// cutting at the nearest multiple of 32, with parts at least 64 wide.
    #[allow(unsafe_code)]
    fn split(self, parts: usize) -> Vec<Self> {
        let along_cols = self.cols >= self.rows;
        let len = if along_cols { self.cols } else { self.rows };
        let parts = parts.min(len / 64).max(1);
        let mut blocks = Vec::with_capacity(parts);
        let mut start = 0;
        for part in 1..=parts {
            let end = if part == parts {
                len
            } else {
                nearest_multiple(len * part / parts, 32).clamp(start, len)
            };
            if end <= start {
                continue;
            }
            let mut block = self;
            // SAFETY (offsets): `start < len`, so both pointers stay inside their matrices.
            unsafe {
                if along_cols {
                    block.cols = end - start;
                    block.b = self.b.offset(start as isize * self.b_strides.1);
                    block.dst = self.dst.offset(start as isize * self.dst_strides.1);
                } else {
                    block.rows = end - start;
                    block.a = self.a.offset(start as isize * self.a_strides.0);
                    block.dst = self.dst.offset(start as isize * self.dst_strides.0);
                }
            }
            blocks.push(block);
            start = end;
        }
        blocks
    }
}

/// `x` rounded to the nearest multiple of `to`.
pub(crate) fn nearest_multiple(x: usize, to: usize) -> usize {
    (x + to / 2) / to * to
}

/// Runs `block` as up to `parts` single-threaded products, one per core.
#[allow(unsafe_code)]
unsafe fn run_split<T: Float>(block: Block<T>, parts: usize, alpha: T, beta: T) {
    let blocks = block.split(parts);
    let run = |i: usize| {
        // SAFETY: the blocks are disjoint parts of the caller's block.
        unsafe { run_block(blocks[i], alpha, beta, gemm::Parallelism::None) }
    };
    crate::threads::run_parts(blocks.len(), &run);
}

/// One block through `gemm::gemm`, on the calling thread or, with
/// `Parallelism::Rayon`, with `gemm`'s own threading on rayon's pool.
///
/// # Safety
/// `T` is f32 or f64 and `blk` describes operands and an output as [`gemm_raw`] requires.
#[allow(unsafe_code)]
unsafe fn run_block<T: Float>(blk: Block<T>, alpha: T, beta: T, parallelism: gemm::Parallelism) {
    // SAFETY: `T` is f32 or f64 (the caller's contract), both supported by `gemm::gemm`.
    // It reads a rows×depth matrix at `blk.a` and a depth×cols one at `blk.b` with their
    // strides, exactly the block's operands, and reads (unless β = 0) and writes the
    // rows×cols output at `blk.dst`, which the caller vouches for. `gemm::gemm` takes
    // column strides first and computes `dst ← alpha·dst + beta·lhs·rhs`: our β is its
    // alpha and our α its beta; with β = 0, `read_dst = false`, so the old contents are not
    // read. No conjugation (real numbers); the call returns when the product is done.
    unsafe {
        gemm::gemm(
            blk.rows,
            blk.cols,
            blk.depth,
            blk.dst,
            blk.dst_strides.1,
            blk.dst_strides.0,
            beta != T::zero(),
            blk.a,
            blk.a_strides.1,
            blk.a_strides.0,
            blk.b,
            blk.b_strides.1,
            blk.b_strides.0,
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
pub(crate) mod tests {
    use super::*;
    use crate::threads::with_num_threads;
    use ndarray::{Array2, ArrayView2};

    /// `M[i, j] = sin(seed + i·cols + j)`.
    pub(crate) fn closed_form<T: Float>(rows: usize, cols: usize, seed: f64) -> Array2<T> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            T::of((seed + (i * cols + j) as f64).sin())
        })
    }

    /// `α·A·B + β·C` entry by entry, in f64.
    pub(crate) fn naive<T: Float>(
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

    /// `(m, n, k)`, whether `A`, `B` and `C` are transposed views, the thread count, (α, β).
    type ProductCase = ((usize, usize, usize), [bool; 3], usize, (f64, f64));

    /// Shapes that straddle every path's thresholds: a short side (few-row loops), a short
    /// inner dimension (thin loop), sizes above and below the split and the few-row loops'
    /// minimum; any layout of either operand and of the output.
    fn product_case() -> impl proptest::strategy::Strategy<Value = ProductCase> {
        use proptest::prelude::*;
        let (few, wide, deep) = (1usize..=9, 60usize..=500, 100usize..=400);
        let shape = prop_oneof![
            (few.clone(), wide.clone(), deep.clone()), // few rows
            (wide.clone(), few.clone(), deep.clone()), // few columns
            (wide.clone(), wide.clone(), few.clone()), // a short inner dimension
            (wide.clone(), wide, deep),                // split over cores, or gemm's threads
            (few.clone(), few.clone(), few),           // tiny
        ];
        (
            shape,
            any::<[bool; 3]>(),
            1usize..=2,
            prop_oneof![Just((1.0, 0.0)), Just((-0.5, 0.25))],
        )
    }

    proptest::proptest! {
        // Deterministic, as every test here (`strategies::config` is behind a feature).
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6765_6d6d),
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Whatever path a product takes, it equals the product computed entry by entry.
        #[test]
        fn every_product_matches_a_naive_one(
            ((m, n, k), [ta, tb, tc], threads, (alpha, beta)) in product_case()
        ) {
            let a = if ta { closed_form::<f64>(k, m, 0.3) } else { closed_form::<f64>(m, k, 0.3) };
            let b = if tb { closed_form::<f64>(n, k, 0.7) } else { closed_form::<f64>(k, n, 0.7) };
            let (av, bv) = (
                if ta { a.t() } else { a.view() },
                if tb { b.t() } else { b.view() },
            );
            let c0 = closed_form::<f64>(m, n, 0.9);
            let want = naive(alpha, av, bv, beta, &c0);
            let mut storage = if tc { c0.t().as_standard_layout().into_owned() } else { c0.clone() };
            if beta == 0.0 {
                storage.fill(f64::NAN);
            }
            let c = if tc { storage.view_mut().reversed_axes() } else { storage.view_mut() };
            with_num_threads(threads, || gemm(alpha, av, bv, beta, c));
            let got = if tc { storage.t().to_owned() } else { storage };
            for (g, w) in got.iter().zip(&want) {
                proptest::prop_assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{m}x{k}x{n}: {g} vs {w}");
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
