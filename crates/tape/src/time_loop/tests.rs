use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

use super::*;
use crate::arith::sum_to;
use crate::revolve::optimal_advances;

/// A bounded step with a scalar, a vector and a scalar parameter:
/// `x' = a·x / (1 + x²) + b + c·x²`.
fn step<'s>(x: Var<'s, f64>, p: &[Var<'s, f64>]) -> Var<'s, f64> {
    x * p[0] / (x * x + 1.0) + p[1] + x * x * p[2]
}

fn loss<'s>(t: usize, x: Var<'s, f64>) -> Var<'s, f64> {
    sum_to(&(x * x), &[]) * (1.0 + t as f64 / 10.0)
}

/// The same loop on one plain tape: loss, gradients by `[x0, a, b, c]`.
fn plain(
    x0: &Tensor<f64>,
    params: &[Tensor<f64>],
    steps: usize,
    every: bool,
) -> (f64, Vec<ArrayD<f64>>) {
    let tape = Tape::<f64>::new();
    let x0 = tape.var(x0.clone());
    let ps: Vec<Var<'_, f64>> = params.iter().map(|p| tape.var(p.clone())).collect();
    let mut x = x0;
    let mut total = if steps == 0 { Some(loss(0, x)) } else { None };
    for t in 1..=steps {
        x = step(x, &ps);
        if every || t == steps {
            let l = loss(t, x);
            total = Some(total.map_or(l, |s| s + l));
        }
    }
    let total = total.unwrap();
    let wrt: Vec<Var<'_, f64>> = std::iter::once(x0).chain(ps.iter().copied()).collect();
    (total.item(), tape.grad(total, &wrt).unwrap())
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7265_766f),
        ..ProptestConfig::default()
    })]

    /// The revolve gradient equals the plain tape's to 1e-12 for every length and budget,
    /// with the loss on the final state or on every state, and its advances are revolve's
    /// optimum.
    #[test]
    fn gradients_equal_the_plain_tapes(
        xs in proptest::collection::vec(-1.0f64..1.0, 1..4),
        a in 0.2f64..1.2,
        c in -0.3f64..0.3,
        steps in 0usize..40,
        budget in 0usize..41,
        every in any::<bool>(),
    ) {
        let snapshots = budget % (steps + 1) + 1;
        let n = xs.len();
        let x0 = Tensor::from_array(ArrayD::from_shape_vec(IxDyn(&[n]), xs).unwrap());
        let b = Tensor::from_array(ArrayD::from_shape_fn(IxDyn(&[n]), |i| 0.1 * i[0] as f64));
        let params = [Tensor::from(a), b, Tensor::from(c)];
        let mut lp = TimeLoop::new(steps).snapshots(snapshots);
        if every {
            lp = lp.loss_on_every_state();
        }
        let got = lp.grad(&x0, &params, step, loss).unwrap();
        let (want_loss, want) = plain(&x0, &params, steps, every);
        prop_assert!((got.loss - want_loss).abs() <= 1e-12 * (1.0 + want_loss.abs()));
        prop_assert!(close(&got.initial.to_array(), &want[0]));
        for (g, w) in got.params.iter().zip(&want[1..]) {
            prop_assert!(close(&g.to_array(), w), "{} vs {}", g, w);
        }
        prop_assert_eq!(got.advances, optimal_advances(steps, snapshots));
        prop_assert!(got.peak_snapshots <= snapshots);
    }
}

#[test]
fn a_step_that_changes_the_shape_or_a_non_scalar_loss_is_an_error() {
    let x0 = Tensor::from(ndarray::array![1.0, 2.0]);
    let shrink = TimeLoop::new(3).snapshots(2).grad(
        &x0,
        &[],
        |x, _| sum_to(&x, &[]),
        |_, x| sum_to(&x, &[]),
    );
    assert!(matches!(shrink, Err(Error::ShapeMismatch { .. })));
    let wide = TimeLoop::new(3).grad(&x0, &[], |x, _| x * 0.5, |_, x| x);
    assert!(matches!(wide, Err(Error::NonScalarOutput { .. })));
    let none = TimeLoop::new(3)
        .snapshots(0)
        .grad(&x0, &[], |x, _| x, |_, x| x);
    assert!(matches!(none, Err(Error::InvalidOp { .. })));
}
