//! Test helpers shared by the elementwise ops' tests: the gradient-checking kit wrapped
//! for proptest, exact-value checks and the f32 smoke test.

use ndarray::ArrayD;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use retrograd_tape::check::{CheckOptions, check_gradients};
use retrograd_tape::strategies::{array_avoiding, shape};
use retrograd_tape::{Tape, Var};

/// Runs the kit on `f` at `inputs` (with the second-order check when `second_order`),
/// turning a failure into a proptest failure that prints the kit's report.
pub(crate) fn check<F>(
    f: F,
    inputs: &[ArrayD<f64>],
    second_order: bool,
) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let opts = CheckOptions::default();
    let opts = if second_order {
        opts
    } else {
        opts.first_order_only()
    };
    check_gradients(f, inputs, &opts)
        .map(|_| ())
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

/// [`check`] for a function of one input.
pub(crate) fn check_unary<F>(f: F, x: ArrayD<f64>, second_order: bool) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    check(|v| f(v[0]), &[x], second_order)
}

/// Arrays of random shape (rank <= 3, extents <= 4) with values in `[lo, hi]` at least 0.1
/// away from each of `points` (the kinks of a piecewise op).
pub(crate) fn avoiding(lo: f64, hi: f64, points: Vec<f64>) -> impl Strategy<Value = ArrayD<f64>> {
    shape(3, 4).prop_flat_map(move |s| array_avoiding(s, lo, hi, points.clone(), 0.1))
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_infinite() || want.is_nan() {
        return got == want || (got.is_nan() && want.is_nan());
    }
    (got - want).abs() <= tol * (1.0 + want.abs())
}

/// Asserts `f(x) = y` and `f'(x) = dy` at scalar points `(x, y, dy)`, to 1e-12 relative.
#[track_caller]
pub(crate) fn assert_points<F>(f: F, points: &[(f64, f64, f64)])
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    for &(x, y, dy) in points {
        let tape = Tape::new();
        let xv = tape.var(x);
        let out = f(xv);
        let got = out.item();
        assert!(close(got, y, 1e-12), "f({x}) = {got}, expected {y}");
        let g = tape.grad(out, &[xv]).unwrap_or_else(|e| panic!("{e}"))[0].sum();
        assert!(close(g, dy, 1e-12), "f'({x}) = {g}, expected {dy}");
    }
}

/// Runs an op in f32 on `data` and checks value and gradient against the f64 op, to
/// f32 precision.
#[track_caller]
pub(crate) fn assert_f32_matches<F32, F64>(f32_op: F32, f64_op: F64, data: &[f64])
where
    F32: for<'t> Fn(Var<'t, f32>) -> Var<'t, f32>,
    F64: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    let t32 = Tape::<f32>::new();
    let x32 = t32.var(ndarray::Array1::from_iter(data.iter().map(|&v| v as f32)));
    let y32 = f32_op(x32);
    let seed32 = ndarray::Array1::<f32>::ones(data.len());
    let g32 = t32
        .vjp(y32, seed32, &[x32])
        .unwrap_or_else(|e| panic!("{e}"));

    let t64 = Tape::<f64>::new();
    let x64 = t64.var(ndarray::Array1::from_iter(data.iter().copied()));
    let y64 = f64_op(x64);
    let seed64 = ndarray::Array1::<f64>::ones(data.len());
    let g64 = t64
        .vjp(y64, seed64, &[x64])
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(y32.shape().as_slice(), &[data.len()]);
    for (a, b) in y32.array().iter().zip(y64.array().iter()) {
        assert!(close(*a as f64, *b, 1e-5), "f32 value {a} vs f64 {b}");
    }
    for (a, b) in g32[0].iter().zip(g64[0].iter()) {
        assert!(close(*a as f64, *b, 1e-4), "f32 gradient {a} vs f64 {b}");
    }
}

/// Calls `f`, expecting a panic, and returns its message.
pub(crate) fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("the call should panic");
    if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        String::from("<non-string panic>")
    }
}
