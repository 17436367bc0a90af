//! `tanh`, and its fused derivative `tanh_backward`.

use retrograd_tape::{Float, Operand, Val};

use super::unary::{OutputSlope, UnaryFn, slope_product};

/// `y = tanh x`, elementwise.
///
/// - VJP: `x̄ = ȳ ⊙ (1 - y²)`; JVP: `ẏ = ẋ ⊙ (1 - y²)` (reuses the output). Both are one
///   `tanh_backward` op (as PyTorch has), not three: a plain sweep computes it
///   in one step, and a recorded sweep records one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tanh;

impl<T: Float> UnaryFn<T> for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn eval(&self, x: T) -> T {
        x.tanh()
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        tanh_backward(v, y)
    }
    fn chain_scalar(&self, _x: T, y: T, v: T) -> Option<T> {
        Some(v * TanhSlope::slope(y))
    }
}

/// `φ(y) = 1 - y²`: `tanh`'s derivative in terms of its output, so that its derivative
/// product `g ⊙ (1 - y²)` is one primitive, `tanh_backward` (see [`SlopeProduct`](super::unary::SlopeProduct)).
pub(crate) struct TanhSlope;

impl<T: Float> OutputSlope<T> for TanhSlope {
    const NAME: &'static str = "tanh_backward";
    #[inline]
    fn slope(y: T) -> T {
        T::one() - y * y
    }
    fn slope_derivative<'t>(y: &Val<'t, T>) -> Val<'t, T> {
        y * T::of(-2.0)
    }
}

/// The derivative product as a rule type, for the tests of `Var::try_apply`.
#[cfg(test)]
pub(crate) type TanhBackward = super::unary::SlopeProduct<TanhSlope>;

/// `g ⊙ (1 - y²)` as one node.
#[track_caller]
pub(crate) fn tanh_backward<'t, T: Float, X: Operand<'t, T>>(g: &X, y: &X) -> X {
    slope_product::<T, TanhSlope, X>(g, y)
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
        fn gradients_check(x in array_any(3, 4, -3.0, 3.0)) {
            check(&x, |x| x.tanh())?;
        }
    }

    #[test]
    fn exact_values() {
        let t = 0.5f64.tanh();
        assert_points(
            |x| x.tanh(),
            &[(0.0, 0.0, 1.0), (0.5, t, 1.0 - t * t), (-30.0, -1.0, 0.0)],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.tanh(), |x| x.tanh(), &[-2.0, 0.0, 0.5, 3.0]);
    }

    proptest! {
        #![proptest_config(config(32))]
        /// The fused derivative checked as an op of its own, in both inputs, to second
        /// order (so `tanh` has third derivatives).
        #[test]
        fn tanh_backward_checks(
            (g, y) in shape(3, 4).prop_flat_map(|s| (array(s.clone(), -2.0, 2.0), array(s, -1.0, 1.0)))
        ) {
            check_many(&[g, y], |v| super::tanh_backward(&v[0], &v[1]))?;
        }

    }

    /// Third derivative of tanh through recorded sweeps of `tanh_backward`, against the
    /// closed form `-2 (1 - y²)(1 - 3y²)`.
    #[test]
    fn third_order() {
        for x0 in [-1.3, -0.2, 0.0, 0.7, 2.0] {
            let tape = Tape::<f64>::new();
            let x = tape.var(x0);
            let d1 = tape.grad_graph(x.tanh(), &[x]).unwrap()[0];
            let d2 = tape.grad_graph(d1, &[x]).unwrap()[0];
            let d3 = tape.grad(d2, &[x]).unwrap()[0].sum();
            let y = f64::tanh(x0);
            let want = -2.0 * (1.0 - y * y) * (1.0 - 3.0 * y * y);
            assert!((d3 - want).abs() < 1e-12, "{x0}: {d3} vs {want}");
        }
    }

    #[test]
    fn tanh_backward_rejects_mismatched_shapes() {
        let tape = Tape::<f64>::new();
        let g = tape.var(ndarray::array![1.0, 2.0]);
        let y = tape.var(ndarray::array![0.5, 0.5, 0.5]);
        let err = Var::try_apply(super::TanhBackward::default(), &[&g, &y])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tanh_backward") && err.contains("[2]") && err.contains("[3]"),
            "{err}"
        );
    }
}
