//! `square`: `x²`.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = x²`, elementwise (one node, rather than `x * x`'s product of two uses).
///
/// - VJP: `x̄ = 2 ȳ ⊙ x`; JVP: `ẏ = 2 ẋ ⊙ x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Square;

impl<T: Float> UnaryFn<T> for Square {
    fn name(&self) -> &'static str {
        "square"
    }
    fn eval(&self, x: T) -> T {
        x * x
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        &(v * x) * T::of(2.0)
    }
    fn chain_scalar(&self, x: T, _y: T, v: T) -> Option<T> {
        Some((v * x) * T::of(2.0))
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
            check(&x, |x| x.square())?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.square(),
            &[(3.0, 9.0, 6.0), (-1.5, 2.25, -3.0), (0.0, 0.0, 0.0)],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.square(), |x| x.square(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
