//! `logsumexp`: `y = ln Σ_{axes} exp(x)`, computed stably.
//!
//! The forward pass subtracts the maximum `m` over the axes first,
//! `y = m + ln Σ exp(x − m)`, so logits of ±1000 give finite results (an all `−∞` slice
//! gives `−∞`, a `+∞` entry gives `+∞`). With `p = exp(x − broadcast(y))`, the softmax of
//! `x` over the axes:
//! - VJP: `x̄ = broadcast(reshape(ȳ, kept)) · p`,
//! - JVP: `ẏ = Σ_{axes} p · ẋ`.
//!
//! `p` is computed from the output in differentiable ops, so second derivatives (the
//! softmax Jacobian `diag(p) − p pᵀ`) come from the same rule.

use ndarray::IxDyn;

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use crate::elementwise::ElementwiseOps;

use super::{
    Axes, AxisList, ReduceOps, axes_of, finish, fold_kept, reduce_attributes, sum_kept, unreduce,
};

/// `ln Σ exp(x)` over `axes`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct LogSumExp {
    axes: Axes,
    keepdims: bool,
    resolved: AxisList,
}

impl LogSumExp {
    /// A log-sum-exp over `axes`, keeping them as extent 1 when `keepdims`.
    pub fn new(axes: Axes, keepdims: bool) -> Self {
        LogSumExp {
            axes,
            keepdims,
            resolved: AxisList::new(),
        }
    }

    /// `exp(x − broadcast(y))`: the weights of both rules, in differentiable ops.
    fn softmax<'t, T: Float>(&self, cx: &RuleCtx<'t, T>) -> Val<'t, T> {
        let x = cx.input(0);
        let y = unreduce(cx.output(), &x.shape(), &self.resolved);
        (x - &y).exp()
    }
}

impl<T: Float> Rule<T> for LogSumExp {
    fn name(&self) -> &'static str {
        "logsumexp"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        reduce_attributes(&self.axes, self.keepdims)
    }
    /// Three passes over the input: the maximum, the shifted exponentials, their sum.
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        3 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let shape = x.shape();
        self.resolved = super::resolve::<T>(&self.axes, x.shape())?;
        let max = fold_kept(x.view(), &self.resolved, T::neg_infinity(), |s, v| {
            if v.is_nan() || v > s { v } else { s }
        });
        // Shift by the maximum where it is finite; an infinite maximum is its own answer
        // (and shifting by it would make ∞ − ∞ = NaN).
        let shift = max.mapv(|m| if m.is_finite() { m } else { T::zero() });
        let Some(spread) = shift.broadcast(IxDyn(shape)) else {
            unreachable!("a kept-shape reduction broadcasts back to its input")
        };
        let shifted = ndarray::Zip::from(&x.view())
            .and(&spread)
            .map_collect(|&v, &m| (v - m).exp());
        let sums = sum_kept(shifted.view(), &self.resolved);
        let kept = ndarray::Zip::from(&sums)
            .and(&shift)
            .map_collect(|&s, &m| m + s.ln());
        Ok(finish(kept, shape, &self.resolved, self.keepdims))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let spread = unreduce(g, &cx.input_shape(0), &self.resolved);
        Cotangents::from([Some(spread * self.softmax(cx))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let axes = axes_of(&self.resolved);
        let t = t[0].as_ref()?;
        Some((t * &self.softmax(cx)).sum(axes, self.keepdims))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::reduce::ReduceOps;
    use crate::testing::{assert_panics_with, axes_for, check, check_squared};

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[0.0, 0.0], [1.0, 2.0]]);
        let y = x.logsumexp(1, false).array();
        assert!((y[0] - 2f64.ln()).abs() < 1e-15);
        assert!((y[1] - (1f64.exp() + 2f64.exp()).ln()).abs() < 1e-14);
        let g = tape.grad(x.logsumexp_all(), &[x]).unwrap();
        let z: f64 = [0.0f64, 0.0, 1.0, 2.0].iter().map(|v| v.exp()).sum();
        let want = array![[1.0, 1.0], [1f64.exp(), 2f64.exp()]].mapv(|v| v / z);
        assert!(
            (g[0].clone() - want.into_dyn())
                .iter()
                .all(|d| d.abs() < 1e-15)
        );
    }

    #[test]
    fn stays_finite_for_huge_logits() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![
            [1000.0, -1000.0, 999.0],
            [-1000.0, -1000.0, -1000.0]
        ]);
        let y = x.logsumexp(1, true);
        let v = y.array();
        assert!(v.iter().all(|v| v.is_finite()));
        assert!((v[[0, 0]] - (1000.0 + (1.0 + (-1f64).exp()).ln())).abs() < 1e-12);
        assert!((v[[1, 0]] - (-1000.0 + 3f64.ln())).abs() < 1e-12);
        let g = tape.grad(y.sum_all(), &[x]).unwrap();
        assert!(g[0].iter().all(|v| v.is_finite()));
        // Each row of the gradient is a softmax: it sums to one.
        for row in g[0].rows() {
            assert!((row.sum() - 1.0).abs() < 1e-12);
        }
        let f = Tape::<f32>::new();
        let x = f.var(array![1000.0f32, -1000.0]);
        assert_eq!(x.logsumexp_all().item(), 1000.0);
    }

    #[test]
    fn infinite_inputs() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![f64::NEG_INFINITY, f64::NEG_INFINITY]);
        assert_eq!(x.logsumexp_all().item(), f64::NEG_INFINITY);
        let x = tape.var(array![f64::INFINITY, 1.0]);
        assert_eq!(x.logsumexp_all().item(), f64::INFINITY);
    }

    #[test]
    fn axis_out_of_range_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![3, 2])).logsumexp([0, 2], false);
            },
            &["logsumexp", "[3, 2]", "axis 2", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, axes, keep) in axes_for(3, 4)) {
            check(&x, move |x| x.logsumexp(axes.clone(), keep))?;
        }

        #[test]
        fn second_order((x, axes, keep) in axes_for(3, 4)) {
            check_squared(&x, move |x| x.logsumexp(axes.clone(), keep))?;
        }
    }
}
