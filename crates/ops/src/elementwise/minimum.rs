//! `minimum`: the elementwise smaller of two tensors, with broadcasting.

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::binary::{factor, masked_jvp, masked_vjp, zip_forward};
use super::maximum::wins;

/// `y = min(a, b)`, elementwise with numpy broadcasting; NaN in either input gives NaN.
///
/// - VJP: `ā = sum_to(ȳ ⊙ mₐ, shape(a))`, `b̄ = sum_to(ȳ ⊙ m_b, shape(b))` with
///   `mₐ = [a < b] + ½[a = b]` and `m_b = [b < a] + ½[a = b]`; JVP: `ẏ = ȧ ⊙ mₐ + ḃ ⊙ m_b`.
/// - **Ties split the gradient half and half**, as for [`Maximum`](super::Maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Minimum;

impl<T: Float> Rule<T> for Minimum {
    fn name(&self) -> &'static str {
        "minimum"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip_forward(x[0], x[1], |a, b| {
            if a.is_nan() || b.is_nan() {
                T::nan()
            } else if a <= b {
                a
            } else {
                b
            }
        })
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let ma = || factor(cx, |a, b| wins(b, a));
        let mb = || factor(cx, wins);
        masked_vjp(cx, g, &[(0, &ma), (1, &mb)])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let ma = || factor(cx, |a, b| wins(b, a));
        let mb = || factor(cx, wins);
        masked_jvp(t, &[(0, &ma), (1, &mb)])
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use ndarray::array;
    use proptest::prelude::*;
    use retrograd_tape::strategies::config;

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check((a, b) in separated_pair()) {
            check_many(&[a, b], |v| v[0].minimum(&v[1]))?;
        }
    }

    #[test]
    fn broadcasts_and_checks() {
        let a = array![[-1.1], [0.1], [2.1]].into_dyn();
        let b = array![-0.65, 0.35, 1.35, 3.35].into_dyn();
        let tape = Tape::<f64>::new();
        let y = tape.var(a.clone()).minimum(&tape.var(b.clone()));
        assert_eq!(y.shape().as_slice(), &[3, 4]);
        assert_eq!(y.array()[[2, 1]], 0.35);
        check_many(&[a, b], |v| v[0].minimum(&v[1])).unwrap();
    }

    #[test]
    fn ties_split_the_gradient() {
        let tape = Tape::<f64>::new();
        let a = tape.var(array![1.0, 2.0, 3.0]);
        let b = tape.var(array![1.0, 5.0, 0.0]);
        let y = a.minimum(&b);
        assert_eq!(y.array(), array![1.0, 2.0, 0.0].into_dyn());
        // JVP at a tie: the mean of the one-sided derivatives.
        let t = tape
            .jvp(
                &[y],
                &[a, b],
                vec![array![2.0, 0.0, 0.0].into(), array![0.0, 0.0, 0.0].into()],
            )
            .unwrap();
        assert_eq!(t[0], array![1.0, 0.0, 0.0].into_dyn());
        let g = tape.vjp(y, array![1.0, 1.0, 1.0], &[a, b]).unwrap();
        assert_eq!(g[0], array![0.5, 1.0, 0.0].into_dyn());
        assert_eq!(g[1], array![0.5, 0.0, 1.0].into_dyn());
    }

    #[test]
    fn f32_forward() {
        let tape = Tape::<f32>::new();
        let y = tape
            .var(array![1.5f32, -2.0])
            .minimum(&tape.var(array![0.5f32]));
        assert_eq!(y.array(), array![0.5f32, -2.0].into_dyn());
    }
}
