//! `maximum`: the elementwise larger of two tensors, with broadcasting.

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::binary::{factor, masked_jvp, masked_vjp, zip_forward};

/// `y = max(a, b)`, elementwise with numpy broadcasting; NaN in either input gives NaN
/// (like `numpy.maximum` and `torch.maximum`, unlike `f64::max`).
///
/// - VJP: `ā = sum_to(ȳ ⊙ mₐ, shape(a))`, `b̄ = sum_to(ȳ ⊙ m_b, shape(b))` with
///   `mₐ = [a > b] + ½[a = b]` and `m_b = [b > a] + ½[a = b]`; JVP: `ẏ = ȧ ⊙ mₐ + ḃ ⊙ m_b`.
/// - **Ties split the gradient half and half** between the two inputs, as PyTorch and
///   JAX do (so `maximum(x, x)` has gradient 1, and the JVP is the mean of the two
///   one-sided derivatives). The masks are constants: exact to second order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Maximum;

/// `[x > y] + ½[x = y]`.
pub(crate) fn wins<T: Float>(x: T, y: T) -> T {
    if x > y {
        T::one()
    } else if x == y {
        T::of(0.5)
    } else {
        T::zero()
    }
}

impl<T: Float> Rule<T> for Maximum {
    fn name(&self) -> &'static str {
        "maximum"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip_forward(x[0], x[1], |a, b| {
            if a.is_nan() || b.is_nan() {
                T::nan()
            } else if a >= b {
                a
            } else {
                b
            }
        })
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let ma = || factor(cx, wins);
        let mb = || factor(cx, |a, b| wins(b, a));
        masked_vjp(cx, g, &[(0, &ma), (1, &mb)])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let ma = || factor(cx, wins);
        let mb = || factor(cx, |a, b| wins(b, a));
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
            check_many(&[a, b], |v| v[0].maximum(&v[1]))?;
        }
    }

    #[test]
    fn broadcasts_and_checks() {
        let a = array![[-1.1], [0.1], [2.1]].into_dyn();
        let b = array![-0.65, 0.35, 1.35, 3.35].into_dyn();
        let tape = Tape::<f64>::new();
        let y = tape.var(a.clone()).maximum(&tape.var(b.clone()));
        assert_eq!(y.shape().as_slice(), &[3, 4]);
        assert_eq!(y.array()[[2, 1]], 2.1);
        check_many(&[a, b], |v| v[0].maximum(&v[1])).unwrap();
    }

    #[test]
    fn ties_split_the_gradient() {
        let tape = Tape::<f64>::new();
        let a = tape.var(array![1.0, 2.0, 3.0]);
        let b = tape.var(array![1.0, 5.0, 0.0]);
        let y = a.maximum(&b);
        assert_eq!(y.array(), array![1.0, 5.0, 3.0].into_dyn());
        let g = tape.vjp(y, array![1.0, 1.0, 1.0], &[a, b]).unwrap();
        assert_eq!(g[0], array![0.5, 0.0, 1.0].into_dyn());
        assert_eq!(g[1], array![0.5, 1.0, 0.0].into_dyn());
        // maximum(x, x) = x has gradient 1.
        let x = tape.var(2.0);
        assert_eq!(tape.grad(x.maximum(&x), &[x]).unwrap()[0].sum(), 1.0);
        assert!(tape.var(f64::NAN).maximum(&tape.var(1.0)).item().is_nan());
    }

    #[test]
    fn f32_forward() {
        let tape = Tape::<f32>::new();
        let y = tape
            .var(array![1.5f32, -2.0])
            .maximum(&tape.var(array![0.5f32]));
        assert_eq!(y.array(), array![1.5f32, 0.5].into_dyn());
    }

    #[test]
    fn mismatched_shapes_are_reported() {
        let msg = panic_message(|| {
            let tape = Tape::<f64>::new();
            let _ = tape
                .var(ndarray::Array1::<f64>::ones(3))
                .maximum(&tape.var(ndarray::Array1::<f64>::ones(2)));
        });
        for part in ["maximum", "[3]", "[2]", file!()] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }
}
