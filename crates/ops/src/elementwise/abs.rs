//! `abs`: the absolute value.

use retrograd_tape::{Float, Val};

use super::unary::{UnaryFn, mask_of};

/// `y = |x|`, elementwise.
///
/// - VJP: `x̄ = ȳ ⊙ sign x`; JVP likewise. The sign is a constant computed from `x` (exact
///   to second order).
/// - At the kink `x = 0` the subgradient is **0** (`sign 0 = 0`), PyTorch's convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Abs;

impl<T: Float> UnaryFn<T> for Abs {
    fn name(&self) -> &'static str {
        "abs"
    }
    fn eval(&self, x: T) -> T {
        x.abs()
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * &mask_of(x, |x| {
            if x > T::zero() {
                T::one()
            } else if x < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use proptest::prelude::*;
    use retrograd_tape::strategies::config;

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check(x in avoiding(-3.0, 3.0, vec![0.0])) {
            check(&x, |x| x.abs())?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.abs(),
            &[(2.0, 2.0, 1.0), (-1.5, 1.5, -1.0), (0.0, 0.0, 0.0)],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.abs(), |x| x.abs(), &[-2.0, -0.5, 0.5, 3.0]);
    }
}
