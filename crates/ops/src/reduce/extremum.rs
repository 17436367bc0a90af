//! `max` and `min`: the largest (smallest) element over some axes.
//!
//! `y = max_{axes} x`. The derivative goes to the arg-max. On ties the gradient is split
//! equally among the tied entries, as in JAX and PyTorch's `amax`/`amin`: with `w` the
//! tie mask divided by the number of ties (per output element),
//! - VJP: `x̄ = broadcast(reshape(ȳ, kept)) · w`,
//! - JVP: `ẏ = Σ_{axes} w · ẋ`.
//!
//! `w` is computed in the forward pass and kept in the rule as a constant (it is locally
//! constant, so the second derivative of `max` is zero almost everywhere, which is exact).
//! The equal split makes the VJP and the JVP transposes of each other (unlike a subgradient
//! that picks one entry in reverse and another in forward mode).
//!
//! A NaN among the reduced elements makes the result NaN (as numpy's `max`), and its
//! gradient zero. Reducing over an axis of extent 0 is an error (the maximum of nothing is
//! undefined).

use ndarray::{ArrayD, IxDyn, Zip};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::{Axes, AxisList, ReduceOps, axes_of, finish, fold_kept, reduce_attributes, unreduce};

/// Which extreme an [`Extremum`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtremumKind {
    /// The maximum.
    Max,
    /// The minimum.
    Min,
}

/// The maximum or minimum over `axes`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Extremum<T: Float> {
    kind: ExtremumKind,
    axes: Axes,
    keepdims: bool,
    resolved: AxisList,
    /// The gradient weights: 1/(number of ties) where the input attains the extreme, 0
    /// elsewhere; of the input's shape. Set by `forward`.
    weights: Option<Tensor<T>>,
}

impl<T: Float> Extremum<T> {
    /// A max or min over `axes`, keeping them as extent 1 when `keepdims`.
    pub fn new(kind: ExtremumKind, axes: Axes, keepdims: bool) -> Self {
        Extremum {
            kind,
            axes,
            keepdims,
            resolved: AxisList::new(),
            weights: None,
        }
    }

    fn weights(&self) -> Tensor<T> {
        match &self.weights {
            Some(w) => w.clone(),
            None => unreachable!("a rule's derivatives run after its forward"),
        }
    }
}

impl<T: Float> Rule<T> for Extremum<T> {
    fn name(&self) -> &'static str {
        match self.kind {
            ExtremumKind::Max => "max",
            ExtremumKind::Min => "min",
        }
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        reduce_attributes(&self.axes, self.keepdims)
    }
    /// One comparison per input element (the tie weights cost about as much again).
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let shape = x.shape();
        self.resolved = super::resolve::<T>(&self.axes, x.shape())?;
        if let Some(&a) = self.resolved.iter().find(|&&a| shape[a] == 0) {
            return Err(format!(
                "cannot take the {} over axis {a}, which has extent 0",
                Rule::<T>::name(self)
            ));
        }
        // NaN wins: once the accumulator is NaN it stays NaN, and a NaN element takes over.
        let kept = match self.kind {
            ExtremumKind::Max => fold_kept(x.view(), &self.resolved, T::neg_infinity(), |s, v| {
                if v.is_nan() || v > s { v } else { s }
            }),
            ExtremumKind::Min => fold_kept(x.view(), &self.resolved, T::infinity(), |s, v| {
                if v.is_nan() || v < s { v } else { s }
            }),
        };
        let view = x.view();
        let Some(spread) = kept.broadcast(IxDyn(shape)) else {
            unreachable!("a kept-shape reduction broadcasts back to its input")
        };
        let mask: ArrayD<T> = Zip::from(&view)
            .and(&spread)
            .map_collect(|&v, &m| if v == m { T::one() } else { T::zero() });
        let ties = fold_kept(mask.view(), &self.resolved, T::zero(), |s, v| s + v);
        let Some(ties) = ties.broadcast(IxDyn(shape)) else {
            unreachable!("a kept-shape reduction broadcasts back to its input")
        };
        let weights = Zip::from(&mask)
            .and(&ties)
            .map_collect(|&m, &n| if n > T::zero() { m / n } else { T::zero() });
        self.weights = Some(Tensor::from_array(weights));
        Ok(finish(kept, shape, &self.resolved, self.keepdims))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let x = cx.input(0);
        let w = x.constant_like(self.weights());
        Cotangents::from([Some(unreduce(g, &x.shape(), &self.resolved) * w)])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let w = cx.input(0).constant_like(self.weights());
        let axes = axes_of(&self.resolved);
        t[0].as_ref().map(|t| (t * &w).sum(axes, self.keepdims))
    }
    fn saved_bytes(&self) -> usize {
        self.weights.as_ref().map_or(0, Tensor::bytes)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::reduce::ReduceOps;
    use crate::testing::{assert_panics_with, axes_for, check, check_squared, distinct_axes_for};

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 5.0, 3.0], [4.0, -2.0, 6.0]]);
        assert_eq!(x.max(0, false).array(), array![4.0, 5.0, 6.0].into_dyn());
        assert_eq!(x.min(1, true).array(), array![[1.0], [-2.0]].into_dyn());
        assert_eq!(x.max_all().item(), 6.0);
        assert_eq!(x.min_all().item(), -2.0);
        let g = tape.grad(x.max(1, false).sum_all(), &[x]).unwrap();
        assert_eq!(g[0], array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]].into_dyn());
    }

    #[test]
    fn ties_split_the_gradient_equally() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[2.0, 7.0, 7.0], [3.0, 3.0, 3.0]]);
        let g = tape.grad(x.max(1, false).sum_all(), &[x]).unwrap();
        let third = 1.0 / 3.0;
        assert_eq!(
            g[0],
            array![[0.0, 0.5, 0.5], [third, third, third]].into_dyn()
        );
        let g = tape.grad(x.min_all(), &[x]).unwrap();
        assert_eq!(g[0], array![[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]].into_dyn());
        // Forward mode uses the same weights, so the two modes agree at ties too. (A fresh
        // tape: the forward sweep walks the branches the backward sweeps above freed.)
        let tape = Tape::<f64>::new();
        let x = tape.var(x.array());
        let t = tape
            .jvp(
                &[x.max(1, false)],
                &[x],
                vec![array![[1.0, 2.0, 4.0], [1.0, 2.0, 6.0]].into()],
            )
            .unwrap();
        assert_eq!(t[0], array![3.0, 3.0].into_dyn());
    }

    #[test]
    fn nan_propagates() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, f64::NAN, 3.0]);
        assert!(x.max_all().item().is_nan());
        assert!(x.min_all().item().is_nan());
    }

    #[test]
    fn bad_input_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).max(5, false);
            },
            &["max", "[2, 3]", "axis 5", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 0])).min(1, false);
            },
            &["min", "[2, 0]", "extent 0", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        // Distinct values: finite differences are only meaningful away from ties.
        #[test]
        fn max_gradients((x, axes, keep) in distinct_axes_for(3, 4)) {
            check(&x, move |x| x.max(axes.clone(), keep))?;
        }

        #[test]
        fn min_gradients((x, axes, keep) in distinct_axes_for(3, 4)) {
            check(&x, move |x| x.min(axes.clone(), keep))?;
        }

        #[test]
        fn second_order((x, axes, keep) in distinct_axes_for(3, 4)) {
            let a = axes.clone();
            check_squared(&x, move |x| x.max(a.clone(), keep))?;
            check_squared(&x, move |x| x.min(axes.clone(), keep))?;
        }

        #[test]
        fn max_is_minus_min_of_minus((x, axes, keep) in axes_for(3, 4)) {
            let tape = Tape::<f64>::new();
            let v = tape.var(x);
            let a = v.max(axes.clone(), keep).array();
            let b = (-v).min(axes, keep).array();
            prop_assert_eq!(a, b.mapv(|v| -v));
        }
    }
}
