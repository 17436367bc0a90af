//! Small private primitives the network ops' rules are written with: a sum along one axis
//! keeping it (`Σ_axis x`, extent 1), and the logistic sigmoid. They are ordinary
//! primitives with VJP and JVP rules of their own, so the rules that use them stay
//! differentiable (second order works through softmax, cross-entropy and BCE).

use ndarray::Axis;
use smallvec::smallvec;

use retrograd_tape::arith::{ScalarOp, broadcast_to};
use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

/// Resolves a numpy-style axis (negative counts from the end) against `ndim` axes.
pub(crate) fn resolve_axis(axis: isize, ndim: usize) -> Result<usize, String> {
    let n = ndim as isize;
    let a = if axis < 0 { axis + n } else { axis };
    if (0..n).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!(
            "axis {axis} is out of range for a value with {ndim} axes"
        ))
    }
}

/// `Σ_axis x`, keeping `axis` with extent 1. VJP: the cotangent broadcast back; JVP: the
/// same sum of the tangent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SumAxis(pub usize);

/// `Σ_axis x` with the axis kept (as extent 1).
#[track_caller]
pub(crate) fn sum_axis<'t, T: Float, X: Operand<'t, T>>(x: &X, axis: usize) -> X {
    X::apply(SumAxis(axis), &[x])
}

impl<T: Float> Rule<T> for SumAxis {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axes", self.0.to_string()), ("keepdims", "true".into())]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let v = x[0].view();
        if self.0 >= v.ndim() {
            return Err(format!("axis {} is out of range", self.0));
        }
        Ok(Tensor::from_array(
            v.sum_axis(Axis(self.0)).insert_axis(Axis(self.0)),
        ))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        smallvec![Some(broadcast_to(g, &cx.input_shape(0)))]
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| sum_axis(t, self.0))
    }
}

/// The numerically stable logistic sigmoid of one element.
#[inline]
pub(crate) fn sigmoid_of<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `σ(x) = 1 / (1 + e^{-x})`. VJP `ḡ σ (1 − σ)`, JVP `ẋ σ (1 − σ)` (σ is the output).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sigmoid;

/// `σ(x)`, elementwise.
#[track_caller]
pub(crate) fn sigmoid<'t, T: Float, X: Operand<'t, T>>(x: &X) -> X {
    X::apply(Sigmoid, &[x])
}

/// `σ' = σ (1 − σ)` from the output `σ`, in differentiable ops.
fn slope<'t, T: Float>(y: &Val<'t, T>) -> Val<'t, T> {
    y * &Val::apply(ScalarOp::SubFrom(T::one()), &[y])
}

impl<T: Float> Rule<T> for Sigmoid {
    fn name(&self) -> &'static str {
        "sigmoid"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].map(sigmoid_of))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        smallvec![Some(g * &slope(cx.output()))]
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| t * &slope(cx.output()))
    }
}
