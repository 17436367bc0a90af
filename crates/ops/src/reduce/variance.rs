//! `var`: the variance over some axes.
//!
//! `y = Σ_{axes} (x − x̄)² / (n − c)`, `x̄` the mean over the axes, `n` the number of
//! elements reduced and `c` the correction: 0 (the default of [`ReduceOps::var`]) gives
//! the population variance, as numpy's default; 1 gives Bessel's unbiased estimate, as
//! PyTorch's default. When `n − c ≤ 0` the divisor is 0 and the result infinite or NaN, as
//! in numpy. With `d = x − broadcast(x̄)` (which sums to zero, so the mean's own dependence
//! on `x` cancels):
//! - VJP: `x̄_cot = broadcast(reshape(ȳ, kept)) · 2d / (n − c)`,
//! - JVP: `ẏ = Σ_{axes} 2d · ẋ / (n − c)`.
//!
//! `d` is recomputed from the input in differentiable ops (a [`Mean`](super::Mean) and a
//! subtraction), so second derivatives come from the same rule.

use ndarray::IxDyn;

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::{
    Axes, AxisList, ReduceOps, axes_of, finish, reduce_attributes, reduced_count, sum_kept,
    unreduce,
};

/// The variance over `axes`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Variance {
    axes: Axes,
    keepdims: bool,
    correction: usize,
    resolved: AxisList,
    /// `n − c`, clamped at 0, found in `forward`.
    divisor: f64,
}

impl Variance {
    /// A variance over `axes` dividing by `n − correction`, keeping the axes as extent 1
    /// when `keepdims`.
    pub fn new(axes: Axes, keepdims: bool, correction: usize) -> Self {
        Variance {
            axes,
            keepdims,
            correction,
            resolved: AxisList::new(),
            divisor: 1.0,
        }
    }

    /// `2d / (n − c)`, the weights of both rules, in differentiable ops.
    fn weights<'t, T: Float>(&self, cx: &RuleCtx<'t, T>) -> Val<'t, T> {
        let x = cx.input(0);
        let mean = x.mean(axes_of(&self.resolved), true);
        let d = x - &unreduce(&mean, &x.shape(), &self.resolved);
        d * T::of(2.0 / self.divisor)
    }
}

impl<T: Float> Rule<T> for Variance {
    fn name(&self) -> &'static str {
        "var"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = reduce_attributes(&self.axes, self.keepdims);
        attributes.push(("correction", self.correction.to_string()));
        attributes
    }
    /// Three passes over the input: the mean, the squared deviations, their sum.
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        3 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let shape = x.shape();
        self.resolved = super::resolve::<T>(&self.axes, x.shape())?;
        let n = reduced_count(shape, &self.resolved);
        self.divisor = (n as f64 - self.correction as f64).max(0.0);
        let count = T::of(n as f64);
        let mean = sum_kept(x.view(), &self.resolved).mapv(|s| s / count);
        let Some(mean) = mean.broadcast(IxDyn(shape)) else {
            unreachable!("a kept-shape reduction broadcasts back to its input")
        };
        let squares = ndarray::Zip::from(&x.view())
            .and(&mean)
            .map_collect(|&v, &m| (v - m) * (v - m));
        let divisor = T::of(self.divisor);
        let kept = sum_kept(squares.view(), &self.resolved).mapv(|s| s / divisor);
        Ok(finish(kept, shape, &self.resolved, self.keepdims))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let spread = unreduce(g, &cx.input_shape(0), &self.resolved);
        Cotangents::from([Some(spread * self.weights(cx))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        Some((t * &self.weights(cx)).sum(axes_of(&self.resolved), self.keepdims))
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
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]]);
        assert_eq!(
            x.var(1, false).array(),
            array![2.0 / 3.0, 8.0 / 3.0].into_dyn()
        );
        assert_eq!(
            x.var_with(1, true, 1).array(),
            array![[1.0], [4.0]].into_dyn()
        );
        assert_eq!(x.var(0, false).array(), array![2.25, 4.0, 6.25].into_dyn());
        let all = x.var_all().item();
        let data = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0];
        let m = data.iter().sum::<f64>() / 6.0;
        let want = data.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 6.0;
        assert!((all - want).abs() < 1e-12);
        // d var / dx = 2 (x − mean) / n
        let g = tape.grad(x.var(1, false).sum_all(), &[x]).unwrap();
        let want = array![[-2.0, 0.0, 2.0], [-4.0, 0.0, 4.0]].mapv(|v| v / 3.0);
        assert!(
            (g[0].clone() - want.into_dyn())
                .iter()
                .all(|d| d.abs() < 1e-15)
        );
    }

    #[test]
    fn too_large_a_correction_divides_by_zero() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0]);
        assert_eq!(x.var_with(0, false, 2).item(), f64::INFINITY);
    }

    #[test]
    fn axis_out_of_range_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 2, 2])).var(-4, false);
            },
            &["var", "[2, 2, 2]", "axis -4", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, axes, keep) in axes_for(3, 4), correction in 0usize..2) {
            // A correction of 1 over a single element divides by zero.
            let n: usize = axes.normalize(x.ndim()).map_or(1, |a| a.iter().map(|&i| x.shape()[i]).product());
            let correction = if n > 1 { correction } else { 0 };
            check(&x, move |x| x.var_with(axes.clone(), keep, correction))?;
        }

        #[test]
        fn second_order((x, axes, keep) in axes_for(3, 4)) {
            check_squared(&x, move |x| x.var(axes.clone(), keep))?;
        }
    }
}
