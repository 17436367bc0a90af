//! `cos`.

use retrograd_tape::{Float, Val};

use super::ElementwiseOps;
use super::unary::UnaryFn;

/// `y = cos x`, elementwise.
///
/// - VJP: `x̄ = -ȳ ⊙ sin x`; JVP: `ẏ = -ẋ ⊙ sin x` (records a [`Sin`](super::Sin) node under
///   `create_graph`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cos;

impl<T: Float> UnaryFn<T> for Cos {
    fn name(&self) -> &'static str {
        "cos"
    }
    fn eval(&self, x: T) -> T {
        x.cos()
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        -(v * &x.sin())
    }
    fn chain_scalar(&self, x: T, _y: T, v: T) -> Option<T> {
        Some(-(v * x.sin()))
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
            check(&x, |x| x.cos())?;
        }
    }

    #[test]
    fn exact_values() {
        let pi = std::f64::consts::PI;
        assert_points(|x| x.cos(), &[(0.0, 1.0, 0.0), (pi, -1.0, -pi.sin())]);
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.cos(), |x| x.cos(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
