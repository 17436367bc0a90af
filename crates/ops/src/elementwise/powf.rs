//! `powf`: `xᵖ` for a scalar exponent `p`.

use retrograd_tape::{Float, Val};

use super::ElementwiseOps;
use super::unary::UnaryFn;

/// `y = xᵖ`, elementwise, for a constant scalar exponent `p` (an attribute, not an input;
/// for a tensor exponent use [`Pow`](super::Pow)). IEEE `powf`: a negative base with a
/// non-integer `p` gives NaN.
///
/// - VJP: `x̄ = ȳ ⊙ p x^(p-1)`; JVP: `ẏ = ẋ ⊙ p x^(p-1)`. The factor is recorded as
///   another `powf`, so every order of derivative works.
/// - `p = 0`: the derivative is exactly zero everywhere (also at `x = 0`, where the formula
///   would give `0 · ∞`), as in PyTorch. `p = 1`: the cotangent passes unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Powf<T>(pub T);

impl<T: Float> UnaryFn<T> for Powf<T> {
    fn name(&self) -> &'static str {
        "powf"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("p", self.0.to_string())]
    }
    fn eval(&self, x: T) -> T {
        x.powf(self.0)
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        let p = self.0;
        if p == T::zero() {
            v * T::zero()
        } else if p == T::one() {
            v.clone()
        } else {
            &(v * &x.powf(p - T::one())) * p
        }
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
        fn gradients_check(x in array_any(3, 4, 0.3, 3.0), p in -2.5f64..3.5) {
            check(&x, move |x| x.powf(p))?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(|x| x.powf(3.0), &[(2.0, 8.0, 12.0), (-1.0, -1.0, 3.0)]);
        assert_points(|x| x.powf(0.5), &[(4.0, 2.0, 0.25)]);
        // p = 0: constant one, zero derivative even at x = 0.
        assert_points(|x| x.powf(0.0), &[(0.0, 1.0, 0.0), (3.0, 1.0, 0.0)]);
        assert_points(|x| x.powf(1.0), &[(0.0, 0.0, 1.0)]);
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.powf(1.5), |x| x.powf(1.5), &[0.1, 1.0, 2.5, 4.0]);
    }

    #[test]
    fn attributes_name_the_exponent() {
        use retrograd_tape::Rule;
        let r = crate::elementwise::Unary(super::Powf(2.5f64));
        assert_eq!(Rule::<f64>::attributes(&r), vec![("p", "2.5".to_string())]);
    }
}
