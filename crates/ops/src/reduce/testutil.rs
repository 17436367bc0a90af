//! Test helpers shared by the reduction and shape tests: strategies for arrays with axes,
//! gradient checks as proptest results, and panic-message assertions.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use retrograd_tape::check::{CheckOptions, check_gradients};
use retrograd_tape::strategies::{array, shape};
use retrograd_tape::{Tape, Var};

use super::Axes;

/// Arrays of random shape (rank `0..=max_rank`, extents `1..=max_extent`), values in
/// `[-2, 2]`.
pub(crate) fn any_array(max_rank: usize, max_extent: usize) -> impl Strategy<Value = ArrayD<f64>> {
    shape(max_rank, max_extent).prop_flat_map(|s| array(s, -2.0, 2.0))
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

/// An array, axes valid for it, and a `keepdims` flag.
pub(crate) fn axes_for(
    max_rank: usize,
    max_extent: usize,
) -> impl Strategy<Value = (ArrayD<f64>, Axes, bool)> {
    any_array(max_rank, max_extent).prop_flat_map(|x| {
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

/// Runs the full gradient check (reverse, forward, finite differences, second order) of a
/// function of several inputs, as a proptest result.
pub(crate) fn check_many<F>(inputs: &[ArrayD<f64>], f: F) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    check_gradients(f, inputs, &CheckOptions::default())
        .map(|_| ())
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

/// [`check_many`] for a function of one input.
pub(crate) fn check<F>(x: &ArrayD<f64>, f: F) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    check_many(std::slice::from_ref(x), |v| f(v[0]))
}

/// Checks `op(x)²`: for a linear op the Hessian of `⟨w, op(x)²⟩` is `2 opᵀ diag(w) op`,
/// nonzero, so the second-order comparison exercises the rule's VJP as a function of its
/// cotangent (a rule that read the cotangent's value instead of using differentiable ops
/// would fail here).
pub(crate) fn check_squared<F>(x: &ArrayD<f64>, f: F) -> Result<(), TestCaseError>
where
    F: for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
{
    check_many(std::slice::from_ref(x), |v| {
        let y = f(v[0]);
        y * y
    })
}

/// Runs `f` on a fresh tape, asserts that it panics, and that the message contains each of
/// `needles` (the op's name, the shapes, the caller's file).
#[track_caller]
pub(crate) fn assert_panics_with(f: impl FnOnce(&Tape<f64>), needles: &[&str]) {
    let tape = Tape::<f64>::new();
    let result = catch_unwind(AssertUnwindSafe(|| f(&tape)));
    let Err(payload) = result else {
        panic!("expected a panic mentioning {needles:?}, but the call returned");
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    for needle in needles {
        assert!(
            message.contains(needle),
            "the panic message {message:?} does not mention {needle:?}"
        );
    }
}
