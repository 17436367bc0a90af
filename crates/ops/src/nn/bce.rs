//! `bce_with_logits`: binary cross-entropy from logits, fused and stable.
//!
//! For logits `x` and targets `z ∈ [0, 1]` of one shape, each element's loss is
//! `−z log σ(x) − (1 − z) log(1 − σ(x))`, computed as
//! `max(x, 0) − x z + log(1 + exp(−|x|))`, which never overflows and stays exact for
//! logits of ±1000. `L = s · Σ` of those, `s = 1/len` (mean, the default) or `1` (sum).
//!
//! - VJP: `x̄ = s · L̄ · (σ(x) − z)`, `z̄ = −s · L̄ · x` (targets may be soft labels that
//!   themselves carry gradients);
//! - JVP: `L̇ = s · Σ ((σ(x) − z) ⊙ ẋ − x ⊙ ż)`.
//!
//! `σ` is a primitive with its own rules, so second derivatives work.

use retrograd_tape::arith::sum_to;
use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::Reduction;
use crate::elementwise::ElementwiseOps;
use crate::sum_pairs;

/// Binary cross-entropy with logits; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct BceWithLogits {
    reduction: Reduction,
    /// The number of elements, read in `forward`.
    len: usize,
}

impl BceWithLogits {
    /// The loss reduced by `reduction`.
    pub fn new(reduction: Reduction) -> Self {
        BceWithLogits { reduction, len: 0 }
    }

    fn scale<T: Float>(&self) -> T {
        match self.reduction {
            Reduction::Mean => T::one() / T::of(self.len as f64),
            Reduction::Sum => T::one(),
        }
    }
}

impl<T: Float> Rule<T> for BceWithLogits {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("reduction", self.reduction.to_string())]
    }
    /// A few per element: `max(x, 0) − x z`, an exponential and a `log1p` (the output is
    /// one scalar).
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        3 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (x, z) = (x[0], x[1]);
        if x.shape() != z.shape() {
            return Err(format!(
                "logits {:?} and targets {:?} differ in shape",
                x.shape(),
                z.shape()
            ));
        }
        self.len = x.len();
        let total = sum_pairs(x, z, |x, z| {
            x.max(T::zero()) - x * z + (-x.abs()).exp().ln_1p()
        });
        Ok(Tensor::scalar(total * self.scale::<T>()))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let (x, z) = (cx.input(0), cx.input(1));
        let gs = g * self.scale::<T>();
        Cotangents::from([
            cx.needs(0).then(|| &(&x.sigmoid() - z) * &gs),
            cx.needs(1).then(|| -(x * &gs)),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (x, z) = (cx.input(0), cx.input(1));
        let dx = t[0].as_ref().map(|tx| &(&x.sigmoid() - z) * tx);
        let dz = t[1].as_ref().map(|tz| x * tz);
        let d = match (dx, dz) {
            (Some(a), Some(b)) => a - b,
            (Some(a), None) => a,
            (None, Some(b)) => -b,
            (None, None) => return None,
        };
        Some(sum_to(&d, &[]) * self.scale::<T>())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_many;
    use ndarray::array;
    use proptest::prelude::*;
    use retrograd_tape::Tape;
    use retrograd_tape::strategies::config;

    use crate::nn::mse::tests::same_shape_pair;
    use crate::nn::{NnOps, Reduction};

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn bce_matches_its_definition_and_checks((x, z) in same_shape_pair(0.0, 1.0), sum in any::<bool>()) {
            let reduction = if sum { Reduction::Sum } else { Reduction::Mean };
            let tape = Tape::<f64>::new();
            let got = tape.var(x.clone()).bce_with_logits_with(&tape.var(z.clone()), reduction).item();
            let total: f64 = x.iter().zip(z.iter()).map(|(&x, &z)| {
                let s: f64 = 1.0 / (1.0 + (-x).exp());
                -z * s.ln() - (1.0 - z) * (1.0 - s).ln()
            }).sum();
            let expected = if sum { total } else { total / x.len() as f64 };
            prop_assert!((got - expected).abs() < 1e-10, "{} vs {}", got, expected);
            check_many(&[x, z], |v| v[0].bce_with_logits_with(&v[1], reduction))?;
        }
    }

    #[test]
    fn bce_is_finite_for_huge_logits() {
        let tape = Tape::<f32>::new();
        let x = tape.var(array![1000.0f32, -1000.0, 1000.0, -1000.0]);
        let z = tape.constant(array![1.0f32, 0.0, 0.0, 1.0]);
        let loss = x.bce_with_logits(&z);
        assert_eq!(loss.item(), 500.0); // (0 + 0 + 1000 + 1000) / 4
        let g = tape.grad(loss, &[x]).unwrap();
        assert_eq!(g[0], array![0.0f32, 0.0, 0.25, -0.25].into_dyn());
    }
}
