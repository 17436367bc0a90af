//! `log_softmax`: `y = x − max − log Σ exp(x − max)` along one axis, fused and stable.
//!
//! Never forms `log(softmax(x))`, which underflows to `−inf` for logits far below the
//! maximum; with the shift, logits of ±1000 give exact finite values.
//!
//! With `p = softmax(x)` along the axis:
//! - VJP: `x̄ = ȳ − p ⊙ Σ_axis ȳ`;
//! - JVP: `ẏ = ẋ − Σ_axis(p ⊙ ẋ)`.
//!
//! `p` comes from the [`Softmax`](super::Softmax) primitive applied to the input, so
//! second derivatives go through softmax's own rules.

use ndarray::Axis;

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::softmax::{lane_logsumexp, softmax};
use crate::reduce::{ReduceOps, normalize_axis};

/// Log-softmax along `axis`; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct LogSoftmax {
    axis: isize,
    /// The axis resolved against the input in `forward`.
    resolved: usize,
}

impl LogSoftmax {
    /// Log-softmax along `axis` (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        LogSoftmax { axis, resolved: 0 }
    }
}

impl<T: Float> Rule<T> for LogSoftmax {
    fn name(&self) -> &'static str {
        "log_softmax"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    /// Three passes per lane: the maximum, the shifted exponentials' sum, the subtraction.
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        3 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        self.resolved = normalize_axis(self.axis, x[0].ndim())?;
        let mut y = x[0].to_array();
        if y.is_empty() {
            // No lanes worth visiting (`[2^40, 0]` has 2^40 empty ones along axis 1).
            return Ok(Tensor::from_array(y));
        }
        for mut lane in y.lanes_mut(Axis(self.resolved)) {
            let lse = lane_logsumexp(&lane);
            lane.mapv_inplace(|v| v - lse);
        }
        Ok(Tensor::from_array(y))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        if g.shape().contains(&0) {
            // Empty, so `g` is its own cotangent; the lane sums could be 2^40 zeros.
            return Cotangents::from([Some(g.clone())]);
        }
        let p = softmax(cx.input(0), self.resolved);
        Cotangents::from([Some(g - &(&p * &g.sum(self.resolved as isize, true)))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        if t.shape().contains(&0) {
            return Some(t.clone());
        }
        let p = softmax(cx.input(0), self.resolved);
        Some(t - &(&p * t).sum(self.resolved as isize, true))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_many;
    use ndarray::array;
    use proptest::prelude::*;
    use retrograd_tape::Tape;
    use retrograd_tape::strategies::config;

    use crate::nn::NnOps;
    use crate::nn::softmax::tests::array_and_axis;

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn log_softmax_is_log_of_softmax_and_checks((x, axis) in array_and_axis()) {
            let tape = Tape::<f64>::new();
            let xv = tape.var(x.clone());
            let (ls, s) = (xv.log_softmax(axis).array(), xv.softmax(axis).array());
            for (a, b) in ls.iter().zip(s.iter()) {
                prop_assert!((a - b.ln()).abs() < 1e-12);
            }
            check_many(&[x], |v| v[0].log_softmax(axis))?;
        }
    }

    #[test]
    fn log_softmax_is_exact_for_huge_logits() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1000.0, -1000.0, 0.0]);
        let y = x.log_softmax(-1);
        assert_eq!(y.array(), array![0.0, -2000.0, -1000.0].into_dyn());
        let g = tape.vjp(y, array![1.0, 1.0, 1.0], &[x]).unwrap();
        assert_eq!(g[0], array![-2.0, 1.0, 1.0].into_dyn());
    }
}
