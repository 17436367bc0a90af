//! `sqrt`: the square root.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = √x`, elementwise (NaN for `x < 0`).
///
/// - VJP: `x̄ = ȳ / (2y)`; JVP: `ẏ = ẋ / (2y)`. Reuses the output; infinite at `x = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sqrt;

impl<T: Float> UnaryFn<T> for Sqrt {
    fn name(&self) -> &'static str {
        "sqrt"
    }
    fn eval(&self, x: T) -> T {
        x.sqrt()
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v / &(y * T::of(2.0))
    }
    fn chain_scalar(&self, _x: T, y: T, v: T) -> Option<T> {
        Some(v / (y * T::of(2.0)))
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
            check(&x, |x| x.sqrt())?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.sqrt(),
            &[(4.0, 2.0, 0.25), (1.0, 1.0, 0.5), (0.0, 0.0, f64::INFINITY)],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.sqrt(), |x| x.sqrt(), &[0.1, 1.0, 2.5, 10.0]);
    }
}
