//! `leaky_relu`: the rectifier with a slope on the negative side.

use retrograd_tape::{Float, Val};

use super::unary::{UnaryFn, mask_of};

/// `y = x` for `x > 0`, `slope · x` otherwise, elementwise (PyTorch's `negative_slope`,
/// 0.01 there by default; here always given).
///
/// - VJP: `x̄ = ȳ ⊙ (x > 0 ? 1 : slope)`; JVP likewise. The factor is a constant computed
///   from `x` (exact to second order).
/// - At the kink `x = 0` the subgradient is **`slope`**, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyRelu<T>(pub T);

impl<T: Float> UnaryFn<T> for LeakyRelu<T> {
    fn name(&self) -> &'static str {
        "leaky_relu"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("slope", self.0.to_string())]
    }
    fn eval(&self, x: T) -> T {
        if x > T::zero() { x } else { x * self.0 }
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        let slope = self.0;
        v * &mask_of(x, |x| if x > T::zero() { T::one() } else { slope })
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
        fn gradients_check(x in avoiding(-3.0, 3.0, vec![0.0]), slope in -0.5f64..0.5) {
            check(&x, move |x| x.leaky_relu(slope))?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.leaky_relu(0.1),
            &[(2.0, 2.0, 1.0), (-1.0, -0.1, 0.1), (0.0, 0.0, 0.1)],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(
            |x| x.leaky_relu(0.01),
            |x| x.leaky_relu(0.01),
            &[-2.0, -0.5, 0.5, 3.0],
        );
    }
}
