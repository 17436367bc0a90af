//! `expm1`: `eˣ - 1`, accurate near 0.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = eˣ - 1`, elementwise, without the cancellation of `exp(x) - 1` for small `x`.
///
/// - VJP: `x̄ = ȳ ⊙ (y + 1)`; JVP likewise (reuses the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expm1;

impl<T: Float> UnaryFn<T> for Expm1 {
    fn name(&self) -> &'static str {
        "expm1"
    }
    fn eval(&self, x: T) -> T {
        x.exp_m1()
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * &(y + T::one())
    }
    fn chain_scalar(&self, _x: T, y: T, v: T) -> Option<T> {
        Some(v * (y + T::one()))
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
        fn gradients_check(x in array_any(3, 4, -3.0, 3.0)) {
            check(&x, |x| x.expm1())?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.expm1(),
            &[
                (0.0, 0.0, 1.0),
                (1.0, 1f64.exp() - 1.0, 1f64.exp()),
                (1e-10, 1.00000000005e-10, 1.0 + 1e-10),
            ],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.expm1(), |x| x.expm1(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
