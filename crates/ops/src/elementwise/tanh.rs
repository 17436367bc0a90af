//! `tanh`, and its fused derivative `tanh_backward`.

use smallvec::smallvec;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::unary::UnaryFn;

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
}

/// `g ⊙ (1 - y²)`: the derivative product of `tanh` as one primitive (what PyTorch calls
/// `tanh_backward`), for a cotangent or tangent `g` and the output `y = tanh x`, of the
/// same shape.
///
/// Its own rules are written in differentiable ops (and in itself), so third and higher
/// derivatives of `tanh` still flow:
/// - VJP: `ḡ = ū ⊙ (1 - y²)` (itself), `ȳ = -2 ū ⊙ g ⊙ y`;
/// - JVP: `u̇ = ġ ⊙ (1 - y²) - 2 g ⊙ y ⊙ ẏ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TanhBackward;

/// [`TanhBackward`] applied to `g` and `y`.
#[track_caller]
pub(crate) fn tanh_backward<'t, T: Float, X: Operand<'t, T>>(g: &X, y: &X) -> X {
    X::apply(TanhBackward, &[g, y])
}

impl<T: Float> Rule<T> for TanhBackward {
    fn name(&self) -> &'static str {
        "tanh_backward"
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (g, y) = (x[0], x[1]);
        if let (Tensor::Scalar(g), Tensor::Scalar(y)) = (g, y) {
            return Ok(Tensor::Scalar(*g * (T::one() - *y * *y)));
        }
        if g.shape() != y.shape() {
            return Err(format!(
                "the cotangent's shape {:?} is not the output's {:?}",
                g.shape(),
                y.shape()
            ));
        }
        g.zip_map(y, |g, y| g * (T::one() - y * y))
            .ok_or_else(|| "shapes differ".to_string())
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, u: &Val<'t, T>) -> Cotangents<'t, T> {
        let (g, y) = (cx.input(0), cx.input(1));
        smallvec![
            cx.needs(0).then(|| tanh_backward(u, y)),
            cx.needs(1).then(|| &(&(u * g) * y) * T::of(-2.0))
        ]
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (g, y) = (cx.input(0), cx.input(1));
        let dy = t[1].as_ref().map(|ty| &(&(g * y) * ty) * T::of(-2.0));
        match (t[0].as_ref().map(|tg| tanh_backward(tg, y)), dy) {
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
        let err = Var::try_apply(super::TanhBackward, &[&g, &y])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tanh_backward") && err.contains("[2]") && err.contains("[3]"),
            "{err}"
        );
    }
}
