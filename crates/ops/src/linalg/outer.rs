//! `outer`: the outer product of two vectors.
//!
//! `C[i, j] = a[i] · b[j]` for 1-D `a` (length m) and `b` (length n); `C` is `[m, n]`.
//! - VJP: `ā = C̄ · b` and `b̄ = C̄ᵀ · a` (matrix-vector products, through `matmul`).
//! - JVP: `Ċ = outer(ȧ, b) + outer(a, ḃ)`.

use ndarray::Array2;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::matmul::mm;

/// The outer product of two 1-D vectors; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct Outer;

impl<T: Float> Rule<T> for Outer {
    fn name(&self) -> &'static str {
        "outer"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        if x[0].ndim() != 1 || x[1].ndim() != 1 {
            return Err("outer takes two 1-D vectors".to_string());
        }
        let (a, b) = (x[0].view(), x[1].view());
        retrograd_tape::checked_len::<T>(&[a.len(), b.len()])?;
        let out = Array2::from_shape_fn((a.len(), b.len()), |(i, j)| a[i] * b[j]);
        Ok(Tensor::from_array(out))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let (a, b) = (cx.input(0), cx.input(1));
        Cotangents::from([
            cx.needs(0).then(|| mm(g, b, false, false)),
            cx.needs(1).then(|| mm(g, a, true, false)),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let outer = |x: &Val<'t, T>, y: &Val<'t, T>| Val::apply(Outer, &[x, y]);
        match (&t[0], &t[1]) {
            (Some(ta), Some(tb)) => Some(outer(ta, b) + outer(a, tb)),
            (Some(ta), None) => Some(outer(ta, b)),
            (None, Some(tb)) => Some(outer(a, tb)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_many, panic_message};
    use ndarray::array;
    use proptest::prelude::*;
    use retrograd_tape::Tape;
    use retrograd_tape::strategies::{array, config};

    use crate::linalg::LinalgOps;

    #[test]
    fn outer_values() {
        let tape = Tape::<f64>::new();
        let y = tape
            .var(array![1.0, 2.0])
            .outer(&tape.var(array![3.0, 4.0, 5.0]));
        assert_eq!(
            y.array(),
            array![[3.0, 4.0, 5.0], [6.0, 8.0, 10.0]].into_dyn()
        );
        let m = tape.var(array![[1.0]]);
        panic_message(|| {
            m.outer(&m);
        });
    }

    proptest! {
        #![proptest_config(config(24))]
        #[test]
        fn outer_derivatives_check(
            (a, b) in (1..=4usize, 1..=4usize)
                .prop_flat_map(|(m, n)| (array(vec![m], -2.0, 2.0), array(vec![n], -2.0, 2.0)))
        ) {
            check_many(&[a, b], |x| x[0].outer(&x[1]))?;
        }
    }
}
