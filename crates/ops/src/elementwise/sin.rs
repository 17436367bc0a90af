//! `sin`.

use retrograd_tape::{Float, Val};

use super::ElementwiseOps;
use super::unary::UnaryFn;

/// `y = sin x`, elementwise.
///
/// - VJP: `x̄ = ȳ ⊙ cos x`; JVP: `ẏ = ẋ ⊙ cos x` (records a [`Cos`](super::Cos) node under
///   `create_graph`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sin;

impl<T: Float> UnaryFn<T> for Sin {
    fn name(&self) -> &'static str {
        "sin"
    }
    fn eval(&self, x: T) -> T {
        x.sin()
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * &x.cos()
    }
    fn chain_scalar(&self, x: T, _y: T, v: T) -> Option<T> {
        Some(v * x.cos())
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
            check(&x, |x| x.sin())?;
        }
    }

    #[test]
    fn exact_values() {
        let pi = std::f64::consts::PI;
        assert_points(
            |x| x.sin(),
            &[
                (0.0, 0.0, 1.0),
                (pi / 2.0, 1.0, (pi / 2.0).cos()),
                (pi / 6.0, 0.5, 3f64.sqrt() / 2.0),
            ],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.sin(), |x| x.sin(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
