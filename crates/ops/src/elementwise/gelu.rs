//! `gelu`: the Gaussian error linear unit, exact form.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use retrograd_tape::{Float, Val};

use super::ElementwiseOps;
use super::erf::erf_f64;
use super::unary::UnaryFn;

/// `y = x Φ(x) = x · ½ (1 + erf(x/√2))`, elementwise: the exact GELU, PyTorch's default
/// (`approximate='none'`). For the tanh approximation see [`GeluTanh`](super::GeluTanh).
///
/// - VJP: `x̄ = ȳ ⊙ (Φ(x) + x φ(x))` with `φ(x) = e^(-x²/2)/√(2π)`; JVP likewise. The
///   factor is recorded with [`Erf`](super::Erf) and [`Exp`](super::Exp), so second
///   derivatives work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gelu;

impl<T: Float> UnaryFn<T> for Gelu {
    fn name(&self) -> &'static str {
        "gelu"
    }
    fn eval(&self, x: T) -> T {
        let x = x.as_f64();
        T::of(0.5 * x * (1.0 + erf_f64(x * FRAC_1_SQRT_2)))
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        let cdf = &(&(x * T::of(FRAC_1_SQRT_2)).erf() + T::one()) * T::of(0.5);
        let pdf = &(&(x * x) * T::of(-0.5)).exp() * T::of(1.0 / (2.0 * PI).sqrt());
        v * &(cdf + x * &pdf)
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
            check(&x, |x| x.gelu())?;
        }
    }

    #[test]
    fn exact_values() {
        // Φ(1) = 0.8413447460685429, φ(1) = 0.24197072451914337.
        let (cdf1, pdf1) = (0.8413447460685429, 0.24197072451914337);
        assert_points(
            |x| x.gelu(),
            &[
                (0.0, 0.0, 0.5),
                (1.0, cdf1, cdf1 + pdf1),
                (-1.0, -(1.0 - cdf1), (1.0 - cdf1) - pdf1),
            ],
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.gelu(), |x| x.gelu(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
