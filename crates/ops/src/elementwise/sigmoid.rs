//! `sigmoid`: the logistic function, and its fused derivative `sigmoid_backward`.

use smallvec::smallvec;

use retrograd_tape::arith::ScalarLhs;
use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::unary::UnaryFn;

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
}

/// `g ⊙ y (1 - y)`: the derivative product of `sigmoid` as one primitive (PyTorch's
/// `sigmoid_backward`), for a cotangent or tangent `g` and the output `y = σ(x)`, of the
/// same shape.
///
/// Its own rules are written in differentiable ops (and in itself), so higher derivatives
/// of `sigmoid` still flow:
/// - VJP: `ḡ = ū ⊙ y (1 - y)` (itself), `ȳ = ū ⊙ g ⊙ (1 - 2y)`;
/// - JVP: `u̇ = ġ ⊙ y (1 - y) + g ⊙ (1 - 2y) ⊙ ẏ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SigmoidBackward;

/// [`SigmoidBackward`] applied to `g` and `y`.
#[track_caller]
pub(crate) fn sigmoid_backward<'t, T: Float, X: Operand<'t, T>>(g: &X, y: &X) -> X {
    X::apply(SigmoidBackward, &[g, y])
}

/// `1 - 2y`, the derivative of `y (1 - y)`.
fn one_minus_twice<'t, T: Float>(y: &Val<'t, T>) -> Val<'t, T> {
    (y * T::of(2.0)).rsub(T::one())
}

impl<T: Float> Rule<T> for SigmoidBackward {
    fn name(&self) -> &'static str {
        "sigmoid_backward"
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (g, y) = (x[0], x[1]);
        if let (Tensor::Scalar(g), Tensor::Scalar(y)) = (g, y) {
            return Ok(Tensor::Scalar(*g * *y * (T::one() - *y)));
        }
        if g.shape() != y.shape() {
            return Err(format!(
                "the cotangent's shape {:?} is not the output's {:?}",
                g.shape(),
                y.shape()
            ));
        }
        g.zip_map(y, |g, y| g * y * (T::one() - y))
            .ok_or_else(|| "shapes differ".to_string())
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, u: &Val<'t, T>) -> Cotangents<'t, T> {
        let (g, y) = (cx.input(0), cx.input(1));
        smallvec![
            cx.needs(0).then(|| sigmoid_backward(u, y)),
            cx.needs(1).then(|| &(u * g) * &one_minus_twice(y))
        ]
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (g, y) = (cx.input(0), cx.input(1));
        let dy = t[1].as_ref().map(|ty| &(g * ty) * &one_minus_twice(y));
        match (t[0].as_ref().map(|tg| sigmoid_backward(tg, y)), dy) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
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
        let err = Var::try_apply(super::SigmoidBackward, &[&g, &y])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sigmoid_backward") && err.contains("[2]") && err.contains("[3]"),
            "{err}"
        );
    }
}
