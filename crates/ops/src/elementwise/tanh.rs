//! `tanh`.

use retrograd_tape::arith::ScalarLhs;
use retrograd_tape::{Float, Val};

use super::unary::UnaryFn;

/// `y = tanh x`, elementwise.
///
/// - VJP: `x̄ = ȳ ⊙ (1 - y²)`; JVP: `ẏ = ẋ ⊙ (1 - y²)` (reuses the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tanh;

impl<T: Float> UnaryFn<T> for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn eval(&self, x: T) -> T {
        x.tanh()
    }
    fn chain<'t>(&self, _x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * &(y * y).rsub(T::one())
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
            check(&x, |x| x.tanh())?;
        }
    }

    #[test]
    fn exact_values() {
        let t = 0.5f64.tanh();
        assert_points(
            |x| x.tanh(),
            &[(0.0, 0.0, 1.0), (0.5, t, 1.0 - t * t), (-30.0, -1.0, 0.0)],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.tanh(), |x| x.tanh(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
