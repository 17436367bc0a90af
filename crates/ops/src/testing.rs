//! Test helpers shared by every area's tests: the gradient-checking kit wrapped for one
//! input and for a squared output, strategies for arrays with kinks, axes and separated
//! pairs, exact-value and f32 checks, and panic-message assertions.
//!
//! The checks return the kit's `Result<(), CheckFailure>`: inside a `proptest!` body `?`
//! turns a failure into a test-case failure that prints the kit's report (proptest
//! converts any `std::error::Error`); in a plain test, `.unwrap()` it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use retrograd_tape::check::{CheckFailure, CheckOptions, check_gradients};
use retrograd_tape::strategies::{array, array_any, array_avoiding, broadcast_shapes_pair, shape};
use retrograd_tape::{Tape, Var};

use crate::reduce::Axes;

// ---------------------------------------------------------------------------------------
// Gradient checks

/// The kit's full check (reverse, forward, finite differences, transpose identity and
/// Hessian-vector products) of a function of several inputs.
pub(crate) fn check_many<F>(inputs: &[ArrayD<f64>], f: F) -> Result<(), CheckFailure>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    check_gradients(f, inputs, &CheckOptions::default()).map(|_| ())
}

/// [`check_many`] for a function of one input.
pub(crate) fn check<F>(x: &ArrayD<f64>, f: F) -> Result<(), CheckFailure>
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    check_many(std::slice::from_ref(x), |v| f(v[0]))
}

/// Checks `op(x)²`: for a linear op the Hessian of `⟨w, op(x)²⟩` is `2 opᵀ diag(w) op`,
/// nonzero, so the second-order comparison exercises the rule's VJP as a function of its
/// cotangent (a rule that read the cotangent's value instead of using differentiable ops
/// would fail here).
pub(crate) fn check_squared<F>(x: &ArrayD<f64>, f: F) -> Result<(), CheckFailure>
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    check(x, |v| {
        let y = f(v);
        y * y
    })
}

// ---------------------------------------------------------------------------------------
// Strategies

/// Arrays of random shape (rank <= 3, extents <= 4) with values in `[lo, hi]` at least 0.1
/// away from each of `points` (the kinks of a piecewise op).
pub(crate) fn avoiding(lo: f64, hi: f64, points: Vec<f64>) -> impl Strategy<Value = ArrayD<f64>> {
    shape(3, 4).prop_flat_map(move |s| array_avoiding(s, lo, hi, points.clone(), 0.1))
}

/// Two arrays of broadcast-compatible shapes (rank <= 3, extents <= 4) with values on two
/// interleaved grids (k/2 + 0.1 and k/2 + 0.35), so every pair across the two inputs
/// differs by at least 0.15: no tie or kink of `maximum`/`minimum` within the check's step.
pub(crate) fn separated_pair() -> impl Strategy<Value = (ArrayD<f64>, ArrayD<f64>)> {
    broadcast_shapes_pair(3, 4).prop_flat_map(|(sa, sb)| {
        let grid = |off: f64| move |a: ArrayD<f64>| a.mapv(|x| (x * 2.0).round() / 2.0 + off);
        (
            array(sa, -2.0, 2.0).prop_map(grid(0.1)),
            array(sb, -2.0, 2.0).prop_map(grid(0.35)),
        )
    })
}

/// Random axes for an array of `ndim` axes: all, one (maybe negative) or a subset (maybe
/// empty, in random order, some negative).
pub(crate) fn axes(ndim: usize) -> BoxedStrategy<Axes> {
    let n = ndim as isize;
    let subset =
        prop::collection::vec((any::<bool>(), any::<bool>()), ndim).prop_flat_map(move |picks| {
            let list: Vec<isize> = picks
                .iter()
                .enumerate()
                .filter(|(_, (take, _))| *take)
                .map(|(i, (_, neg))| if *neg { i as isize - n } else { i as isize })
                .collect();
            Just(list).prop_shuffle().prop_map(Axes::from)
        });
    if ndim == 0 {
        prop_oneof![Just(Axes::All), subset].boxed()
    } else {
        prop_oneof![
            Just(Axes::All),
            (-n..n).prop_map(Axes::One),
            subset.clone(),
            subset,
        ]
        .boxed()
    }
}

/// An array (values in `[-2, 2]`), axes valid for it, and a `keepdims` flag.
pub(crate) fn axes_for(
    max_rank: usize,
    max_extent: usize,
) -> impl Strategy<Value = (ArrayD<f64>, Axes, bool)> {
    array_any(max_rank, max_extent, -2.0, 2.0).prop_flat_map(|x| {
        let ndim = x.ndim();
        (Just(x), axes(ndim), any::<bool>())
    })
}

/// Like [`axes_for`], with pairwise distinct values at least 0.3 apart (so that a finite
/// difference never crosses a tie of `max`/`min`).
pub(crate) fn distinct_axes_for(
    max_rank: usize,
    max_extent: usize,
) -> impl Strategy<Value = (ArrayD<f64>, Axes, bool)> {
    shape(max_rank, max_extent)
        .prop_flat_map(|s| {
            let n: usize = s.iter().product();
            let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            (Just(s), order, prop::collection::vec(0.0..0.1f64, n))
        })
        .prop_flat_map(|(s, order, jitter)| {
            let n = order.len() as f64;
            let data: Vec<f64> = order
                .iter()
                .zip(&jitter)
                .map(|(&k, &j)| (k as f64 - n / 2.0) * 0.4 + j)
                .collect();
            let x = ArrayD::from_shape_vec(IxDyn(&s), data).expect("n elements");
            let ndim = x.ndim();
            (Just(x), axes(ndim), any::<bool>())
        })
}

// ---------------------------------------------------------------------------------------
// Exact values and f32

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

// ---------------------------------------------------------------------------------------
// Panics

/// Calls `f`, asserting that it panics, and returns the panic's message.
#[track_caller]
pub(crate) fn panic_message(f: impl FnOnce()) -> String {
    let Err(payload) = catch_unwind(AssertUnwindSafe(f)) else {
        panic!("the call should panic, but it returned");
    };
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        String::from("<non-string panic>")
    }
}

/// Runs `f` on a fresh tape, asserts that it panics, and that the message contains each of
/// `needles` (the op's name, the shapes, the caller's file).
#[track_caller]
pub(crate) fn assert_panics_with(f: impl FnOnce(&Tape<f64>), needles: &[&str]) {
    let tape = Tape::<f64>::new();
    let message = panic_message(|| f(&tape));
    for needle in needles {
        assert!(
            message.contains(needle),
            "the panic message {message:?} does not mention {needle:?}"
        );
    }
}
