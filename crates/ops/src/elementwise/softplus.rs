//! `softplus`: a smooth rectifier.

use retrograd_tape::{Float, Val};

use super::ElementwiseOps;
use super::unary::UnaryFn;

/// `y = ln(1 + eˣ)`, elementwise, computed stably as `max(x, 0) + ln(1 + e^(-|x|))`: no
/// overflow for large `x`, no loss of precision for very negative `x` (PyTorch's `beta = 1`
/// without a threshold, which the stable form does not need).
///
/// - VJP: `x̄ = ȳ ⊙ σ(x)`; JVP likewise (records a [`Sigmoid`](super::Sigmoid) node under
///   `create_graph`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Softplus;

impl<T: Float> UnaryFn<T> for Softplus {
    fn name(&self) -> &'static str {
        "softplus"
    }
    fn eval(&self, x: T) -> T {
        x.max(T::zero()) + (-x.abs()).exp().ln_1p()
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        v * &x.sigmoid()
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
            check(&x, |x| x.softplus())?;
        }
    }

    #[test]
    fn exact_values() {
        let s = 1.0 / (1.0 + (-1.0f64).exp());
        assert_points(
            |x| x.softplus(),
            &[
                (0.0, 2f64.ln(), 0.5),
                (1.0, 1f64.exp().ln_1p(), s),
                (1000.0, 1000.0, 1.0),
                (-1000.0, 0.0, 0.0),
            ],
        );
        // Very negative inputs keep their relative precision: softplus(x) ≈ eˣ.
        let tape = Tape::<f64>::new();
        let y = tape.var(-40.0).softplus().item();
        assert!((y / (-40.0f64).exp() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.softplus(), |x| x.softplus(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
