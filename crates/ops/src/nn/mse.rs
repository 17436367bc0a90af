//! `mse`: the mean-squared error `L = s · Σ (p − t)²` between a prediction and a target of
//! one shape, with `s = 1/len` (mean, the default) or `1` (sum).
//!
//! - VJP: `p̄ = 2s · L̄ · (p − t)`, `t̄ = −p̄` (each only when needed);
//! - JVP: `L̇ = 2s · Σ (p − t) ⊙ (ṗ − ṫ)`.
//!
//! Shapes must match exactly: a loss that silently broadcasts a `[N]` target against an
//! `[N, 1]` prediction computes an `N × N` average, a classic bug.

use retrograd_tape::arith::sum_to;
use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::Reduction;
use crate::sum_pairs;

/// Mean-squared error (or sum of squared errors); see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Mse {
    reduction: Reduction,
    /// The number of elements, read in `forward`.
    len: usize,
}

impl Mse {
    /// The squared error reduced by `reduction`.
    pub fn new(reduction: Reduction) -> Self {
        Mse { reduction, len: 0 }
    }

    /// `2s`: the derivative's constant factor.
    fn factor<T: Float>(&self) -> T {
        match self.reduction {
            Reduction::Mean => T::of(2.0) / T::of(self.len as f64),
            Reduction::Sum => T::of(2.0),
        }
    }
}

impl<T: Float> Rule<T> for Mse {
    fn name(&self) -> &'static str {
        "mse"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("reduction", self.reduction.to_string())]
    }
    /// A difference and a multiply-add per element (the output is one scalar).
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        2 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (p, t) = (x[0], x[1]);
        if p.shape() != t.shape() {
            return Err(format!(
                "prediction {:?} and target {:?} differ in shape",
                p.shape(),
                t.shape()
            ));
        }
        self.len = p.len();
        let sq = sum_pairs(p, t, |a, b| (a - b) * (a - b));
        let total = match self.reduction {
            Reduction::Mean => sq / T::of(self.len as f64),
            Reduction::Sum => sq,
        };
        Ok(Tensor::scalar(total))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let d = (cx.needs(0) || cx.needs(1))
            .then(|| &(cx.input(0) - cx.input(1)) * &(g * self.factor::<T>()));
        let dt = if cx.needs(1) {
            d.as_ref().map(|d| -d)
        } else {
            None
        };
        let dp = if cx.needs(0) { d } else { None };
        Cotangents::from([dp, dt])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let dt = match (&t[0], &t[1]) {
            (Some(a), Some(b)) => a - b,
            (Some(a), None) => a.clone(),
            (None, Some(b)) => -b,
            (None, None) => return None,
        };
        let r = cx.input(0) - cx.input(1);
        Some(sum_to(&(&r * &dt), &[]) * self.factor::<T>())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::testing::{check_many, panic_message};
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;
    use retrograd_tape::strategies::{array, config, shape};

    use crate::nn::{NnOps, Reduction};

    pub(crate) fn same_shape_pair(
        lo: f64,
        hi: f64,
    ) -> impl Strategy<Value = (ArrayD<f64>, ArrayD<f64>)> {
        shape(3, 4).prop_flat_map(move |s| (array(s.clone(), -3.0, 3.0), array(s, lo, hi)))
    }

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn mse_checks((p, t) in same_shape_pair(-3.0, 3.0), sum in any::<bool>()) {
            let reduction = if sum { Reduction::Sum } else { Reduction::Mean };
            let tape = Tape::<f64>::new();
            let got = tape.var(p.clone()).mse_with(&tape.var(t.clone()), reduction).item();
            let sq: f64 = p.iter().zip(t.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
            let expected = if sum { sq } else { sq / p.len() as f64 };
            prop_assert!((got - expected).abs() < 1e-12);
            check_many(&[p, t], |v| v[0].mse_with(&v[1], reduction))?;
        }
    }

    #[test]
    fn mse_refuses_to_broadcast() {
        let tape = Tape::<f64>::new();
        let p = tape.var(array![[1.0], [2.0]]);
        let t = tape.constant(array![1.0, 2.0]);
        let msg = panic_message(|| {
            p.mse(&t);
        });
        assert!(
            msg.contains("mse") && msg.contains("[2, 1]") && msg.contains(file!()),
            "{msg}"
        );
        // Only the prediction needs a gradient here: the target is data.
        let p = tape.var(array![1.0, 3.0]);
        let g = tape.grad(p.mse(&t), &[p]).unwrap();
        assert_eq!(g[0], array![0.0, 1.0].into_dyn());
    }
}
