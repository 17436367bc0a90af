//! `gelu_tanh`: the tanh approximation of GELU.

use std::f64::consts::FRAC_2_PI;

use retrograd_tape::arith::ScalarLhs;
use retrograd_tape::{Float, Val};

use super::ElementwiseOps;
use super::unary::UnaryFn;

const K: f64 = 0.044715;

/// `y = ½ x (1 + tanh u)` with `u = √(2/π) (x + 0.044715 x³)`, elementwise: the tanh
/// approximation of GELU (PyTorch's `approximate='tanh'`, the form GPT-2 used). Within
/// about 1e-3 of the exact [`Gelu`](super::Gelu), and cheaper.
///
/// - VJP: `x̄ = ȳ ⊙ (½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²))` with
///   `t = tanh u`; JVP likewise, recorded with [`Tanh`](super::Tanh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GeluTanh;

fn sqrt_2_over_pi() -> f64 {
    FRAC_2_PI.sqrt()
}

impl<T: Float> UnaryFn<T> for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu_tanh"
    }
    fn eval(&self, x: T) -> T {
        let x = x.as_f64();
        let u = sqrt_2_over_pi() * (x + K * x * x * x);
        T::of(0.5 * x * (1.0 + u.tanh()))
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        let c = T::of(sqrt_2_over_pi());
        let x2 = x * x;
        let u = &(x + &(&(&x2 * x) * T::of(K))) * c;
        let t = u.tanh();
        let du = &(&(&x2 * T::of(3.0 * K)) + T::one()) * c;
        let first = &(&t + T::one()) * T::of(0.5);
        let second = &(&(x * &(&t * &t).rsub(T::one())) * &du) * T::of(0.5);
        v * &(first + second)
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
            check(&x, |x| x.gelu_tanh())?;
        }
    }

    #[test]
    fn exact_values() {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let u = c * (1.0 + 0.044715);
        let t = u.tanh();
        let d = 0.5 * (1.0 + t) + 0.5 * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715);
        assert_points(
            |x| x.gelu_tanh(),
            &[(0.0, 0.0, 0.5), (1.0, 0.5 * (1.0 + t), d)],
        );
    }

    #[test]
    fn close_to_the_exact_gelu() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::Array1::linspace(-4.0, 4.0, 33));
        let diff = (x.gelu_tanh() - x.gelu()).array();
        assert!(diff.iter().all(|d| d.abs() < 1e-3), "{diff}");
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(|x| x.gelu_tanh(), |x| x.gelu_tanh(), &[-2.0, 0.0, 0.5, 3.0]);
    }
}
