//! `exp`: `y = eˣ`.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = eˣ`, elementwise.
///
/// - VJP: `x̄ = ȳ ⊙ y`; JVP: `ẏ = ẋ ⊙ y`. The output is its own derivative, so the
///   backward pass reuses it and computes no exponential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exp;

impl<T: Float> UnaryFn<T> for Exp {
    fn name(&self) -> &'static str {
        "exp"
    }
    fn eval(&self, x: T) -> T {
        x.exp()
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * y
    }
    fn chain_scalar(&self, _x: T, y: T, v: T) -> Option<T> {
        Some(v * y)
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use proptest::prelude::*;
    use retrograd_tape::arith::sum_to;
    use retrograd_tape::strategies::{array_any, config};

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check(x in array_any(3, 4, -3.0, 3.0)) {
            check(&x, |x| x.exp())?;
        }
    }

    #[test]
    fn exact_values() {
        let e = std::f64::consts::E;
        assert_points(
            |x| x.exp(),
            &[(0.0, 1.0, 1.0), (1.0, e, e), (-2.0, e.powi(-2), e.powi(-2))],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.exp(), |x| x.exp(), &[-2.0, 0.0, 0.5, 3.0]);
    }

    /// Under `create_graph` the VJP `ȳ ⊙ y` is recorded, so the second derivative of
    /// `Σ eˣ` is `eˣ` again (closed form).
    #[test]
    fn second_derivative_under_create_graph() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::array![-1.0, 0.0, 0.7, 2.0]);
        let y = sum_to(&x.exp(), &[]);
        let dx = tape.grad_graph(y, &[x]).unwrap()[0];
        let d2x = tape.grad(sum_to(&dx, &[]), &[x]).unwrap().remove(0);
        for (got, &x) in d2x.iter().zip(&[-1.0f64, 0.0, 0.7, 2.0]) {
            assert!((got - x.exp()).abs() < 1e-12, "{got} vs {}", x.exp());
        }
        for (got, &x) in dx.array().iter().zip(&[-1.0f64, 0.0, 0.7, 2.0]) {
            assert!((got - x.exp()).abs() < 1e-12);
        }
    }
}
