//! `relu`: the rectifier.

use retrograd_tape::{Float, Val};

use super::unary::{UnaryFn, mask_of};

/// `y = max(x, 0)`, elementwise; NaN stays NaN.
///
/// - VJP: `x̄ = ȳ ⊙ [x > 0]`; JVP: `ẏ = ẋ ⊙ [x > 0]`. The mask is a constant computed
///   from `x`, which is exact to second order (the second derivative is zero away from 0).
/// - At the kink `x = 0` the subgradient is **0**, PyTorch's and JAX's convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relu;

impl<T: Float> UnaryFn<T> for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn eval(&self, x: T) -> T {
        if x > T::zero() || x.is_nan() {
            x
        } else {
            T::zero()
        }
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * &mask_of(x, |x| if x > T::zero() { T::one() } else { T::zero() })
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
            check(&x, |x| x.relu())?;
        }
    }

    #[test]
    fn exact_values() {
        // The subgradient at the kink is 0.
        assert_points(
            |x| x.relu(),
            &[(2.0, 2.0, 1.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 0.0)],
        );
        let tape = Tape::<f64>::new();
        assert!(tape.var(f64::NAN).relu().item().is_nan());
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.relu(), |x| x.relu(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
