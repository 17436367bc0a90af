//! The matmul seam of the benchmark suite: one function, [`matmul_into`], that computes
//! `C = A · B` with a chosen kernel, and the 1024³ f32 GEMM rate measurement.
//!
//! Kernels (all pure Rust, nothing but cargo needed):
//! - [`Kernel::MatrixMultiply`]: ndarray's `general_mat_mul` (what `.dot` uses), which calls
//!   the `matrixmultiply` crate. This crate enables matrixmultiply's `threading` feature, so
//!   its thread count is the one read from `MATMUL_NUM_THREADS` when the process first
//!   multiplies (1 to 4; unset means the number of *physical* cores). It cannot change
//!   within a process, so the suite measures 1 and 2 threads in separate child processes.
//!   With `MATMUL_NUM_THREADS=1` it is ndarray's default single-threaded `.dot`.
//! - [`Kernel::Gemm`]: the `gemm` crate through the engine's seam
//!   (`retrograd::ops::linalg::kernel::gemm`) with `n` threads for products of at least
//!   `retrograd::ops::threads::PARALLEL_MIN_MADDS` multiply-adds, one thread below.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::report::Report;
use crate::timing::{black_box, median_ns};

/// A matmul kernel the suite can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// ndarray's `general_mat_mul` / `.dot`, i.e. the `matrixmultiply` crate, with the
    /// process-wide thread count of `MATMUL_NUM_THREADS`.
    MatrixMultiply,
    /// The `gemm` crate with this many threads (1 = `Parallelism::None`).
    Gemm {
        /// Number of threads (`Parallelism::Rayon(threads)` when above 1).
        threads: usize,
    },
}

impl Kernel {
    /// The name used in output lines, e.g. `matrixmultiply_2t` or `gemm_1t`.
    pub fn label(self) -> String {
        match self {
            Kernel::MatrixMultiply => format!("matrixmultiply_{}t", matrixmultiply_threads()),
            Kernel::Gemm { threads } => format!("gemm_{threads}t"),
        }
    }

    /// Parses a kernel family name as given on the command line (`matrixmultiply`, `mm`,
    /// `gemm`); `threads` applies to `gemm` (matrixmultiply's comes from the environment).
    pub fn parse(name: &str, threads: usize) -> Option<Kernel> {
        match name {
            "matrixmultiply" | "mm" | "ndarray" => Some(Kernel::MatrixMultiply),
            "gemm" => Some(Kernel::Gemm {
                threads: threads.max(1),
            }),
            _ => None,
        }
    }
}

/// The thread count matrixmultiply uses in this process, mirroring its own rule: the
/// value of `MATMUL_NUM_THREADS` clamped to 1..=4 (the suite always sets it; if it is unset
/// matrixmultiply uses the number of physical cores, reported here as 0 = unknown).
pub fn matrixmultiply_threads() -> usize {
    match std::env::var("MATMUL_NUM_THREADS") {
        Ok(s) if !s.is_empty() => s.trim().parse::<usize>().unwrap_or(1).clamp(1, 4),
        _ => 0,
    }
}

/// `c = a · b` (overwriting `c`) with the given kernel. Any strides are accepted
/// (transposed views such as `w.t()` included); `c` must not alias `a` or `b`, which the
/// borrow checker already guarantees for views.
///
/// Panics if the shapes do not chain: `a` is m×k, `b` k×n, `c` m×n.
pub fn matmul_into(kernel: Kernel, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "matmul_into: shapes {:?} · {:?} -> {:?} do not chain",
        a.dim(),
        b.dim(),
        c.dim()
    );
    match kernel {
        Kernel::MatrixMultiply => {
            let mut c = c;
            general_mat_mul(1.0, &a, &b, 0.0, &mut c);
        }
        Kernel::Gemm { threads } => gemm_into(threads, a, b, c),
    }
}

/// `c = a · b` on the `gemm` crate through the engine's own seam
/// ([`retrograd::ops::linalg::kernel::gemm`], the one audited `unsafe` call), with its
/// thread count set to `threads` for this call; shapes already checked by [`matmul_into`].
fn gemm_into(threads: usize, a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    retrograd::ops::threads::with_num_threads(threads, || {
        retrograd::ops::linalg::kernel::gemm(1.0, a, b, 0.0, c)
    });
}

/// A closed-form test matrix: `M[i, j] = sin(seed + i*cols + j)`, computed in f64.
pub fn closed_form(rows: usize, cols: usize, seed: f64) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (seed + (i * cols + j) as f64).sin() as f32
    })
}

/// Measures the f32 GEMM rate of `kernel` on an n×n·n×n product (n = 1024 in a full run)
/// and pushes `<name>.gflops` (the suite uses `gemm.<label>`). The product is checked on 64 sampled entries against
/// an f64 dot product; a wrong entry is a failure. Returns GFLOP/s.
pub fn bench_gemm(
    report: &mut Report,
    kernel: Kernel,
    name: &str,
    n: usize,
    warmup: usize,
    reps: usize,
) -> f64 {
    let a = closed_form(n, n, 1.0);
    let b = closed_form(n, n, 2.0);
    let mut c = Array2::<f32>::zeros((n, n));
    let ns = median_ns(warmup, reps, || {
        matmul_into(kernel, a.view(), b.view(), c.view_mut());
        black_box(c[[0, 0]])
    });
    let gflops = 2.0 * (n as f64).powi(3) / ns;
    let label = kernel.label();
    report.push(format!("{name}.gflops"), gflops, "GFLOP/s");
    for s in 0..64 {
        let (i, j) = ((s * 37 + 5) % n, (s * 101 + 11) % n);
        let (mut dot, mut mag) = (0.0f64, 0.0f64);
        for p in 0..n {
            let t = f64::from(a[[i, p]]) * f64::from(b[[p, j]]);
            dot += t;
            mag += t.abs();
        }
        let got = f64::from(c[[i, j]]);
        if (got - dot).abs() > 1e-5 * mag + 1e-6 {
            report.fail(format!(
                "gemm.{label}: C[{i},{j}] = {got}, expected {dot} (n = {n})"
            ));
            break;
        }
    }
    gflops
}

/// The eight matmuls of one W2 step, and two layout variants, as (name, m, k, n, a
/// transposed, b transposed): `fwdL` is `act · Wᵀ`, `dwL` is `dZᵀ · act`, `daL` is `dZ · W`
/// (L is the 1-based layer).
pub const W2_SHAPES: [(&str, usize, usize, usize, bool, bool); 10] = [
    ("fwd1", 128, 784, 512, false, true),
    ("fwd2", 128, 512, 512, false, true),
    ("fwd3", 128, 512, 10, false, true),
    ("dw3", 10, 128, 512, true, false),
    ("da3", 128, 10, 512, false, false),
    ("dw2", 512, 128, 512, true, false),
    ("da2", 128, 512, 512, false, false),
    ("dw1", 512, 128, 784, true, false),
    // The first two forward products with a row-major right-hand side (weights stored
    // `[in, out]`): `gemm` is much faster on this layout than on the `Wᵀ` view.
    ("fwd1_rowmajor_b", 128, 784, 512, false, false),
    ("fwd2_rowmajor_b", 128, 512, 512, false, false),
];

/// Times each of W2's matmul shapes (with the same transposed views the step uses) on
/// `kernel` and pushes `mm.<label>.<shape>.us` (median microseconds per call).
pub fn bench_w2_shapes(report: &mut Report, kernel: Kernel, warmup: usize, reps: usize) {
    let label = kernel.label();
    for (name, m, k, n, ta, tb) in W2_SHAPES {
        let a = if ta {
            closed_form(k, m, 1.0)
        } else {
            closed_form(m, k, 1.0)
        };
        let b = if tb {
            closed_form(n, k, 2.0)
        } else {
            closed_form(k, n, 2.0)
        };
        let av = if ta { a.t() } else { a.view() };
        let bv = if tb { b.t() } else { b.view() };
        let mut c = Array2::<f32>::zeros((m, n));
        let ns = median_ns(warmup, reps, || {
            matmul_into(kernel, av, bv, c.view_mut());
            black_box(c[[0, 0]])
        });
        report.push(format!("mm.{label}.{name}.us"), ns / 1e3, "us");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
    }

    fn assert_close(got: &Array2<f32>, want: &Array2<f32>) {
        assert_eq!(got.dim(), want.dim());
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    const KERNELS: [Kernel; 3] = [
        Kernel::MatrixMultiply,
        Kernel::Gemm { threads: 1 },
        Kernel::Gemm { threads: 2 },
    ];

    #[test]
    fn kernels_match_naive_on_odd_shapes_and_transposed_views() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 70, 130)] {
            let a = closed_form(m, k, 0.3);
            let b = closed_form(k, n, 0.7);
            let at = closed_form(k, m, 0.3); // used transposed: m×k view
            let bt = closed_form(n, k, 0.7); // used transposed: k×n view
            for kernel in KERNELS {
                let mut c = Array2::from_elem((m, n), f32::NAN);
                matmul_into(kernel, a.view(), b.view(), c.view_mut());
                assert_close(&c, &naive(a.view(), b.view()));

                let mut c = Array2::from_elem((m, n), f32::NAN);
                matmul_into(kernel, at.t(), bt.t(), c.view_mut());
                assert_close(&c, &naive(at.t(), bt.t()));

                // Output written through a transposed (column-major) view.
                let mut ct = Array2::from_elem((n, m), f32::NAN);
                matmul_into(kernel, a.view(), b.view(), ct.view_mut().reversed_axes());
                assert_close(&ct.t().to_owned(), &naive(a.view(), b.view()));
            }
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros() {
        let a = Array2::<f32>::zeros((3, 0));
        let b = Array2::<f32>::zeros((0, 4));
        for kernel in KERNELS {
            let mut c = Array2::from_elem((3, 4), 7.0f32);
            matmul_into(kernel, a.view(), b.view(), c.view_mut());
            assert!(c.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    #[should_panic(expected = "do not chain")]
    fn mismatched_shapes_panic() {
        let a = Array2::<f32>::zeros((3, 4));
        let b = Array2::<f32>::zeros((5, 4));
        let mut c = Array2::<f32>::zeros((3, 4));
        matmul_into(
            Kernel::Gemm { threads: 1 },
            a.view(),
            b.view(),
            c.view_mut(),
        );
    }
}
