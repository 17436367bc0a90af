//! `mean`: the arithmetic mean over some axes.
//!
//! `y = (1/n) Σ_{axes} x`, `n` the number of elements each output combines. Linear:
//! - VJP: `x̄ = broadcast(reshape(ȳ, kept)) / n`.
//! - JVP: `ẏ = mean_{axes}(ẋ)`.
//!
//! A mean over no elements is NaN (0/0), as in numpy.

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::{
    Axes, AxisList, ReduceOps, axes_of, finish, reduce_attributes, reduced_count, sum_batch,
    sum_kept, unreduce, unreduce_batch,
};

/// The mean over `axes`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Mean {
    axes: Axes,
    keepdims: bool,
    resolved: AxisList,
    /// Elements per output element, found in `forward`.
    count: usize,
}

impl Mean {
    /// A mean over `axes`, keeping them as extent 1 when `keepdims`.
    pub fn new(axes: Axes, keepdims: bool) -> Self {
        Mean {
            axes,
            keepdims,
            resolved: AxisList::new(),
            count: 1,
        }
    }
}

impl<T: Float> Rule<T> for Mean {
    fn name(&self) -> &'static str {
        "mean"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        reduce_attributes(&self.axes, self.keepdims)
    }
    /// One addition per input element.
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        self.resolved = super::resolve::<T>(&self.axes, x.shape())?;
        self.count = reduced_count(x.shape(), &self.resolved);
        if self.resolved.is_empty() {
            return Ok(x.clone());
        }
        let n = T::of(self.count as f64);
        let kept = sum_kept(x.view(), &self.resolved).mapv(|s| s / n);
        Ok(finish(kept, x.shape(), &self.resolved, self.keepdims))
    }
    fn jvp_batch(
        &self,
        _: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        let n = T::of(self.count as f64);
        t[0].as_ref()
            .map(|t| sum_batch(t, &self.resolved, self.keepdims).map(|s| s / n))
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        let n = T::of(self.count as f64);
        vec![Some(
            unreduce_batch(g, &cx.input_shape(0), &self.resolved).map(|s| s / n),
        )]
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let spread = unreduce(g, &cx.input_shape(0), &self.resolved);
        Cotangents::from([Some(spread / T::of(self.count as f64))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let axes = axes_of(&self.resolved);
        t[0].as_ref().map(|t| t.mean(axes, self.keepdims))
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
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(x.mean(0, false).array(), array![2.5, 3.5, 4.5].into_dyn());
        assert_eq!(x.mean(1, true).array(), array![[2.0], [5.0]].into_dyn());
        assert_eq!(x.mean_all().item(), 3.5);
        let g = tape.grad(x.mean_all(), &[x]).unwrap();
        assert_eq!(g[0], ArrayD::from_elem(vec![2, 3], 1.0 / 6.0));
    }

    #[test]
    fn mean_of_nothing_is_nan() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::zeros(vec![0, 2]));
        assert!(x.mean(0, false).array().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn axis_out_of_range_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![4])).mean(-2, false);
            },
            &["mean", "[4]", "axis -2", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, axes, keep) in axes_for(3, 4)) {
            check(&x, move |x| x.mean(axes.clone(), keep))?;
        }

        #[test]
        fn second_order((x, axes, keep) in axes_for(3, 4)) {
            check_squared(&x, move |x| x.mean(axes.clone(), keep))?;
        }
    }
}
