//! `sigmoid`: the logistic function, and its fused derivative `sigmoid_backward`.

use retrograd_tape::arith::ScalarLhs;
use retrograd_tape::{Float, Operand, Val};

use super::unary::{OutputSlope, UnaryFn, slope_product};

/// `y = σ(x) = 1 / (1 + e⁻ˣ)`, elementwise, computed stably: `1 / (1 + e⁻ˣ)` for `x ≥ 0`
/// and `eˣ / (1 + eˣ)` for `x < 0`, so no exponential overflows and tiny outputs keep
/// their relative precision.
///
/// - VJP: `x̄ = ȳ ⊙ y (1 - y)`; JVP: `ẏ = ẋ ⊙ y (1 - y)` (reuses the output). Both are one
///   `sigmoid_backward` op (as PyTorch has), not three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sigmoid;

/// The stable logistic function at one element.
pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

impl<T: Float> UnaryFn<T> for Sigmoid {
    fn name(&self) -> &'static str {
        "sigmoid"
    }
    fn eval(&self, x: T) -> T {
        sigmoid(x)
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        sigmoid_backward(v, y)
    }
    fn chain_scalar(&self, _x: T, y: T, v: T) -> Option<T> {
        Some(v * SigmoidSlope::slope(y))
    }
}

/// `φ(y) = y (1 - y)`: `sigmoid`'s derivative in terms of its output, so that its
/// derivative product is one primitive, `sigmoid_backward` (see [`SlopeProduct`](super::unary::SlopeProduct)).
pub(crate) struct SigmoidSlope;

impl<T: Float> OutputSlope<T> for SigmoidSlope {
    const NAME: &'static str = "sigmoid_backward";
    #[inline]
    fn slope(y: T) -> T {
        y * (T::one() - y)
    }
    /// `1 - 2y`.
    fn slope_derivative<'t>(y: &Val<'t, T>) -> Val<'t, T> {
        (y * T::of(2.0)).rsub(T::one())
    }
}

/// The derivative product as a rule type, for the tests of `Var::try_apply`.
#[cfg(test)]
pub(crate) type SigmoidBackward = super::unary::SlopeProduct<SigmoidSlope>;

/// `g ⊙ y (1 - y)` as one node.
#[track_caller]
pub(crate) fn sigmoid_backward<'t, T: Float, X: Operand<'t, T>>(g: &X, y: &X) -> X {
    slope_product::<T, SigmoidSlope, X>(g, y)
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use proptest::prelude::*;
    use retrograd_tape::strategies::{array, array_any, config, shape};

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check(x in array_any(3, 4, -4.0, 4.0)) {
            check(&x, |x| x.sigmoid())?;
        }
    }

    #[test]
    fn exact_values() {
        let s = 1.0 / (1.0 + (-2.0f64).exp());
        assert_points(
            |x| x.sigmoid(),
            &[
                (0.0, 0.5, 0.25),
                (2.0, s, s * (1.0 - s)),
                (-2.0, 1.0 - s, s * (1.0 - s)),
            ],
        );
    }

    #[test]
    fn stable_at_large_magnitudes() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::array![-1000.0, -750.0, 1000.0]);
        let y = x.sigmoid().array();
        assert_eq!(y[0], 0.0);
        assert!(y[1] >= 0.0 && y[1].is_finite());
        assert_eq!(y[2], 1.0);
        // e^-40 keeps its relative precision on the negative side.
        let t = tape.var(-40.0).sigmoid().item();
        assert!((t / (-40.0f64).exp() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.sigmoid(), |x| x.sigmoid(), &[-2.0, 0.0, 0.5, 3.0]);
    }

    proptest! {
        #![proptest_config(config(32))]
        /// The fused derivative checked as an op of its own, in both inputs, to second
        /// order (so `sigmoid` has third derivatives).
        #[test]
        fn sigmoid_backward_checks(
            (g, y) in shape(3, 4).prop_flat_map(|s| (array(s.clone(), -2.0, 2.0), array(s, 0.0, 1.0)))
        ) {
            check_many(&[g, y], |v| super::sigmoid_backward(&v[0], &v[1]))?;
        }
    }

    /// Third derivative of sigmoid through recorded sweeps of `sigmoid_backward`, against
    /// the closed form `y (1 - y)(1 - 6y + 6y²)`.
    #[test]
    fn third_order() {
        for x0 in [-1.3, -0.2, 0.0, 0.7, 2.0] {
            let tape = Tape::<f64>::new();
            let x = tape.var(x0);
            let d1 = tape.grad_graph(x.sigmoid(), &[x]).unwrap()[0];
            let d2 = tape.grad_graph(d1, &[x]).unwrap()[0];
            let d3 = tape.grad(d2, &[x]).unwrap()[0].sum();
            let y = super::sigmoid(x0);
            let want = y * (1.0 - y) * (1.0 - 6.0 * y + 6.0 * y * y);
            assert!((d3 - want).abs() < 1e-12, "{x0}: {d3} vs {want}");
        }
    }

    #[test]
    fn sigmoid_backward_rejects_mismatched_shapes() {
        let tape = Tape::<f64>::new();
        let g = tape.var(ndarray::array![1.0, 2.0]);
        let y = tape.var(ndarray::array![0.5, 0.5, 0.5]);
        let err = Var::try_apply(super::SigmoidBackward::default(), &[&g, &y])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sigmoid_backward") && err.contains("[2]") && err.contains("[3]"),
            "{err}"
        );
    }
}
