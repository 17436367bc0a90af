//! `recip`: `1 / x`.

use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = 1/x`, elementwise (`±∞` at `±0`).
///
/// - VJP: `x̄ = -ȳ ⊙ y²`; JVP: `ẏ = -ẋ ⊙ y²` (reuses the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recip;

impl<T: Float> UnaryFn<T> for Recip {
    fn name(&self) -> &'static str {
        "recip"
    }
    fn eval(&self, x: T) -> T {
        x.recip()
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        -(&(v * y) * y)
    }
    fn chain_scalar(&self, _x: T, y: T, v: T) -> Option<T> {
        Some(-((v * y) * y))
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
            check(&x, |x| x.recip())?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(|x| x.recip(), &[(2.0, 0.5, -0.25), (-0.5, -2.0, -4.0)]);
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.recip(), |x| x.recip(), &[-2.0, 0.1, 0.5, 3.0]);
    }
}
