//! `sum`: the sum over some axes.
//!
//! `y = Σ_{axes} x`. Linear, so its rules are the pair broadcast/sum:
//! - VJP: `x̄ = broadcast(reshape(ȳ, kept))`, the cotangent copied back over the reduced
//!   axes (`kept` is the input shape with the reduced axes set to 1).
//! - JVP: `ẏ = Σ_{axes} ẋ`.
//!
//! Summing over no elements gives 0.

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::{
    Axes, AxisList, ReduceOps, axes_of, finish, reduce_attributes, sum_batch, sum_kept, unreduce,
    unreduce_batch,
};

/// The sum over `axes`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Sum {
    axes: Axes,
    keepdims: bool,
    /// The axes resolved against the input in `forward`.
    resolved: AxisList,
}

impl Sum {
    /// A sum over `axes`, keeping them as extent 1 when `keepdims`.
    pub fn new(axes: Axes, keepdims: bool) -> Self {
        Sum {
            axes,
            keepdims,
            resolved: AxisList::new(),
        }
    }
}

impl<T: Float> Rule<T> for Sum {
    fn name(&self) -> &'static str {
        "sum"
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
        if self.resolved.is_empty() {
            return Ok(x.clone());
        }
        let kept = sum_kept(x.view(), &self.resolved);
        Ok(finish(kept, x.shape(), &self.resolved, self.keepdims))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(unreduce(g, &cx.input_shape(0), &self.resolved))])
    }
    fn jvp_batch(
        &self,
        _: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        t[0].as_ref()
            .map(|t| sum_batch(t, &self.resolved, self.keepdims))
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        vec![Some(unreduce_batch(g, &cx.input_shape(0), &self.resolved))]
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let axes = axes_of(&self.resolved);
        t[0].as_ref().map(|t| t.sum(axes, self.keepdims))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::reduce::{Axes, ReduceOps};
    use crate::testing::{assert_panics_with, axes_for, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(x.sum(0, false).array(), array![5.0, 7.0, 9.0].into_dyn());
        assert_eq!(x.sum(-1, true).array(), array![[6.0], [15.0]].into_dyn());
        assert_eq!(x.sum([0, 1], false).item(), 21.0);
        assert_eq!(x.sum_all().item(), 21.0);
        assert_eq!(x.sum(Vec::<isize>::new(), false).array(), x.array());
        let g = tape.grad(x.sum(1, false).sum_all(), &[x]).unwrap();
        assert_eq!(g[0], ArrayD::from_elem(vec![2, 3], 1.0));
    }

    /// A reduction costs one operation per input element, however small its output.
    #[test]
    fn madds_count_the_input() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::zeros(vec![3, 4]));
        assert_eq!(tape.node_info(x.sum_all()).madds, 12);
        assert_eq!(tape.node_info(x.mean(1, false)).madds, 12);
        assert_eq!(tape.node_info(x.max(0, true)).madds, 12);
        assert_eq!(tape.node_info(x.logsumexp_all()).madds, 36);
    }

    #[test]
    fn axis_out_of_range_panics_naming_op_shape_and_line() {
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2, 3]));
                x.sum(2, false);
            },
            &["sum", "[2, 3]", "axis 2", file!()],
        );
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2, 3]));
                x.sum([1, -1], false);
            },
            &["sum", "[2, 3]", "twice", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, axes, keep) in axes_for(3, 4)) {
            check(&x, move |x| x.sum(axes.clone(), keep))?;
        }

        #[test]
        fn second_order((x, axes, keep) in axes_for(3, 4)) {
            check_squared(&x, move |x| x.sum(axes.clone(), keep))?;
        }

        #[test]
        fn sum_all_matches_ndarray(x in array_any(3, 4, -2.0, 2.0)) {
            let tape = Tape::<f64>::new();
            let v = tape.var(x.clone());
            prop_assert!((v.sum(Axes::All, false).item() - x.sum()).abs() < 1e-12);
        }
    }
}
