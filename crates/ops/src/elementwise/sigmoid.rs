//! `sigmoid`: the logistic function.

use retrograd_tape::arith::ScalarLhs;
use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = σ(x) = 1 / (1 + e⁻ˣ)`, elementwise, computed stably: `1 / (1 + e⁻ˣ)` for `x ≥ 0`
/// and `eˣ / (1 + eˣ)` for `x < 0`, so no exponential overflows and tiny outputs keep
/// their relative precision.
///
/// - VJP: `x̄ = ȳ ⊙ y (1 - y)`; JVP: `ẏ = ẋ ⊙ y (1 - y)` (reuses the output).
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
        &(v * y) * &y.rsub(T::one())
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use proptest::prelude::*;
    use retrograd_tape::strategies::{array_any, config};

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
}
