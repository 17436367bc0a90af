//! `ln`: the natural logarithm.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = ln x`, elementwise. `ln 0 = -∞`, and `ln x` is NaN for `x < 0` (IEEE).
///
/// - VJP: `x̄ = ȳ / x`; JVP: `ẏ = ẋ / x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ln;

impl<T: Float> UnaryFn<T> for Ln {
    fn name(&self) -> &'static str {
        "ln"
    }
    fn eval(&self, x: T) -> T {
        x.ln()
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v / x
    }
    fn chain_scalar(&self, x: T, _y: T, v: T) -> Option<T> {
        Some(v / x)
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
        fn gradients_check(x in array_any(3, 4, 0.3, 4.0)) {
            check(&x, |x| x.ln())?;
        }
    }

    #[test]
    fn exact_values() {
        let e = std::f64::consts::E;
        assert_points(
            |x| x.ln(),
            &[
                (1.0, 0.0, 1.0),
                (e, 1.0, 1.0 / e),
                (0.25, -(4f64.ln()), 4.0),
            ],
        );
        assert_points(|x| x.log(), &[(2.0, 2f64.ln(), 0.5)]);
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.ln(), |x| x.ln(), &[0.1, 1.0, 2.5, 10.0]);
    }
}
