//! `pow`: `aᵇ` for two tensors, with broadcasting.

use retrograd_tape::arith::{ScalarLhs, sum_to};
use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::ElementwiseOps;
use super::binary::{factor, zip_forward};

/// `y = aᵇ`, elementwise with numpy broadcasting (IEEE `powf`: a negative base with a
/// non-integer exponent gives NaN). For a constant scalar exponent prefer
/// [`Powf`](super::Powf), which records no exponent node.
///
/// - VJP: `ā = sum_to(ȳ ⊙ b a^(b-1), shape(a))`, `b̄ = sum_to(ȳ ⊙ y ln a, shape(b))`;
///   JVP: `ẏ = ȧ ⊙ b a^(b-1) + ḃ ⊙ y ln a`. Both factors are recorded with `pow` and `ln`
///   themselves, so higher derivatives work.
/// - Edge cases follow PyTorch: where `b = 0` the base's gradient is 0 (also at `a = 0`,
///   where the formula gives `0 · ∞`); where `a = 0` and `b ≥ 0` the exponent's gradient
///   is 0 (the limit from `a > 0`; the formula gives `0 · (-∞)`). For `a < 0` the
///   exponent's gradient is NaN (`ln a` is not real) even where `y` is real (integer `b`):
///   use a positive base to differentiate with respect to the exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pow;

/// `a` with the entries where `bad(a, b)` replaced by 1, as a differentiable expression in
/// `a` (`a ⊙ m + (1 - m)` for a constant mask `m`); `a` itself when no entry is bad.
fn substitute_one<'t, T: Float>(cx: &RuleCtx<'t, T>, bad: impl Fn(T, T) -> bool) -> Val<'t, T> {
    let a = cx.input(0);
    let any_bad = a
        .value()
        .zip_map(&cx.input(1).value(), |x, y| {
            if bad(x, y) { T::one() } else { T::zero() }
        })
        .is_some_and(|m| m.view().iter().any(|&v| v != T::zero()));
    if !any_bad {
        return a.clone();
    }
    let keep = factor(cx, |x, y| if bad(x, y) { T::zero() } else { T::one() });
    &(a * &keep) + &keep.rsub(T::one())
}

impl Pow {
    /// `∂y/∂a = b a^(b-1)`, zero where `b = 0`.
    fn d_base<'t, T: Float>(cx: &RuleCtx<'t, T>) -> Val<'t, T> {
        let b = cx.input(1);
        let a = substitute_one(cx, |x, y| x == T::zero() && y == T::zero());
        b * &a.pow(&(b - T::one()))
    }

    /// `∂y/∂b = y ln a`, zero where `a = 0` and `b ≥ 0`.
    fn d_exponent<'t, T: Float>(cx: &RuleCtx<'t, T>) -> Val<'t, T> {
        let a = substitute_one(cx, |x, y| x == T::zero() && y >= T::zero());
        cx.output() * &a.ln()
    }
}

impl<T: Float> Rule<T> for Pow {
    fn name(&self) -> &'static str {
        "pow"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip_forward(x[0], x[1], |a, b| a.powf(b))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([
            cx.needs(0)
                .then(|| sum_to(&(g * &Pow::d_base(cx)), &cx.input_shape(0))),
            cx.needs(1)
                .then(|| sum_to(&(g * &Pow::d_exponent(cx)), &cx.input_shape(1))),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let da = t[0].as_ref().map(|ta| ta * &Pow::d_base(cx));
        let db = t[1].as_ref().map(|tb| tb * &Pow::d_exponent(cx));
        match (da, db) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use ndarray::array;
    use proptest::prelude::*;
    use retrograd_tape::strategies::{array, broadcast_shapes_pair, config};

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check(
            (a, b) in broadcast_shapes_pair(3, 4)
                .prop_flat_map(|(sa, sb)| (array(sa, 0.4, 2.5), array(sb, -2.0, 2.0)))
        ) {
            check_many(&[a, b], |v| v[0].pow(&v[1]))?;
        }
    }

    #[test]
    fn broadcasts_and_checks() {
        let a = array![[0.5], [1.0], [2.0]].into_dyn();
        let b = array![-1.0, 0.5, 2.0, 3.0].into_dyn();
        let tape = Tape::<f64>::new();
        let y = tape.var(a.clone()).pow(&tape.var(b.clone()));
        assert_eq!(y.shape().as_slice(), &[3, 4]);
        assert_eq!(y.array()[[2, 3]], 8.0);
        check_many(&[a, b], |v| v[0].pow(&v[1])).unwrap();
    }

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let (a, b) = (tape.var(2.0), tape.var(3.0));
        let y = a.pow(&b);
        assert_eq!(y.item(), 8.0);
        let g = tape.grad(y, &[a, b]).unwrap();
        assert_eq!(g[0].sum(), 12.0); // b a^(b-1)
        assert!((g[1].sum() - 8.0 * 2f64.ln()).abs() < 1e-12); // y ln a
    }

    #[test]
    fn edge_cases_follow_pytorch() {
        let tape = Tape::<f64>::new();
        let a = tape.var(array![0.0, 0.0, 0.0, -2.0]);
        let b = tape.var(array![0.0, 2.0, 0.5, 2.0]);
        let y = a.pow(&b);
        assert_eq!(y.array(), array![1.0, 0.0, 0.0, 4.0].into_dyn());
        let g = tape
            .grad(retrograd_tape::arith::sum_to(&y, &[]), &[a, b])
            .unwrap();
        // da: 0 where b = 0; 2·0 = 0; 0.5·0^-0.5 = ∞; 2·(-2) = -4.
        assert_eq!(g[0], array![0.0, 0.0, f64::INFINITY, -4.0].into_dyn());
        // db: 0 where a = 0 and b ≥ 0; NaN for a negative base.
        assert_eq!(g[1].slice(ndarray::s![..3]), array![0.0, 0.0, 0.0]);
        assert!(g[1][3].is_nan());
    }

    #[test]
    fn f32_forward() {
        let tape = Tape::<f32>::new();
        let y = tape
            .var(array![1.5f32, 2.0])
            .pow(&tape.var(array![2.0f32, 0.5]));
        let want = [2.25f32, 2f32.sqrt()];
        assert!(
            y.array()
                .iter()
                .zip(want)
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
    }

    #[test]
    fn mismatched_shapes_name_the_op_the_shapes_and_the_caller() {
        let msg = panic_message(|| {
            let tape = Tape::<f64>::new();
            let a = tape.var(ndarray::Array2::<f64>::ones((2, 3)));
            let b = tape.var(ndarray::Array1::<f64>::ones(4));
            let _ = a.pow(&b);
        });
        for part in ["pow", "[2, 3]", "[4]", file!()] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }
}
