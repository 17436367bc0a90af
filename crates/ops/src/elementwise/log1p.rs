//! `log1p`: `ln(1 + x)`, accurate near 0.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = ln(1 + x)`, elementwise, without the rounding of `1 + x` for small `x`.
///
/// - VJP: `x̄ = ȳ / (1 + x)`; JVP likewise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Log1p;

impl<T: Float> UnaryFn<T> for Log1p {
    fn name(&self) -> &'static str {
        "log1p"
    }
    fn eval(&self, x: T) -> T {
        x.ln_1p()
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v / &(x + T::one())
    }
    fn chain_scalar(&self, x: T, _y: T, v: T) -> Option<T> {
        Some(v / (x + T::one()))
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
        fn gradients_check(x in array_any(3, 4, -0.7, 3.0)) {
            check(&x, |x| x.log1p())?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.log1p(),
            &[
                (0.0, 0.0, 1.0),
                (1.0, 2f64.ln(), 0.5),
                (1e-10, 9.9999999995e-11, 1.0 / (1.0 + 1e-10)),
            ],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.log1p(), |x| x.log1p(), &[-0.5, 0.0, 0.5, 3.0]);
    }
}
