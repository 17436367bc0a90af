//! Elementwise arithmetic with numpy broadcasting, and the broadcast/sum-to pair.
//!
//! These few primitives live in the engine rather than in `retrograd-ops` for two reasons.
//! The sweep needs `Add` to accumulate cotangents when it records itself, and broadcasting
//! adjoints (`SumTo`, `BroadcastTo`) to keep every cotangent in its input's shape. And
//! Rust's orphan rule lets only this crate implement `+ - * /` for [`Var`] and [`Val`],
//! which rules are written with. Every other primitive lives in `retrograd-ops`.

use crate::Float;
use crate::batch;
use crate::rule::{Cotangents, Rule, RuleCtx};
use crate::tensor::{Shape, Tensor, broadcast_shapes};
use crate::var::{Operand, Val, Var};

/// `f` elementwise under broadcasting; inlined into each op's forward (the plain sweep
/// runs it once per op on scalars), with the error message built out of line.
#[inline(always)]
fn zip<T: Float>(a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T) -> Result<Tensor<T>, String> {
    match a.zip_map(b, f) {
        Some(t) => Ok(t),
        None => Err(no_broadcast(a, b)),
    }
}

#[cold]
#[inline(never)]
fn no_broadcast<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> String {
    format!(
        "shapes {:?} and {:?} do not broadcast",
        a.shape(),
        b.shape()
    )
}

/// Sums `x` down to `shape` (the adjoint of broadcasting); returns `x` itself, recording
/// nothing, when it already has that shape.
#[track_caller]
pub fn sum_to<'t, T: Float, X: Operand<'t, T>>(x: &X, shape: &[usize]) -> X {
    if x.has_shape(shape) {
        x.clone()
    } else {
        X::apply(SumTo(Shape::from_slice(shape)), &[x])
    }
}

/// Broadcasts `x` to `shape` under numpy's rules; returns `x` itself when it already has
/// that shape.
#[track_caller]
pub fn broadcast_to<'t, T: Float, X: Operand<'t, T>>(x: &X, shape: &[usize]) -> X {
    if x.has_shape(shape) {
        x.clone()
    } else {
        X::apply(BroadcastTo(Shape::from_slice(shape)), &[x])
    }
}

/// `x` summed to `like`'s shape (the adjoint of broadcasting `like`): `x` itself, moved
/// through without a clone, when the shapes already agree. Two constants are compared
/// without building a [`Shape`]: this is on the plain sweep's hot path for every
/// broadcasting binary op.
/// The check is inlined into each VJP; the rest is out of line.
#[inline(always)]
fn sum_like<'t, T: Float>(x: Val<'t, T>, like: &Val<'t, T>) -> Val<'t, T> {
    if let (Val::Const(a), Val::Const(b)) = (&x, like)
        && crate::tensor::shape_eq(a.shape(), b.shape())
    {
        return x;
    }
    sum_like_general(x, like)
}

/// [`sum_like`] beyond two constants of one shape: a recorded value, or a broadcast.
#[inline(never)]
fn sum_like_general<'t, T: Float>(x: Val<'t, T>, like: &Val<'t, T>) -> Val<'t, T> {
    let shape = like.shape();
    if x.has_shape(&shape) {
        x
    } else {
        Val::apply(SumTo(shape), &[&x])
    }
}

/// `a ∘ b` under broadcasting, for a batch against a value whose shape broadcasts to the
/// batch element's (the batch is aligned by the caller).
fn zip_batch<T: Float>(a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T) -> Tensor<T> {
    match a.zip_map(b, f) {
        Some(t) => t,
        None => panic!("{}", no_broadcast(a, b)),
    }
}

/// The elementwise product of a batch and a value (see [`zip_batch`]).
fn product<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    zip_batch(a, b, |x, y| x * y)
}

/// A tangent of one input of a broadcasting op, stretched to the output's shape.
fn stretch<'t, T: Float>(t: &Val<'t, T>, cx: &RuleCtx<'t, T>) -> Val<'t, T> {
    broadcast_to(t, &cx.output().shape())
}

/// `a + b`, elementwise with broadcasting.
#[derive(Debug, Clone, Copy)]
pub struct Add;

impl<T: Float> Rule<T> for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip(x[0], x[1], |a, b| a + b)
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        Some(x[0] + x[1])
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([
            cx.needs(0).then(|| sum_like(g.clone(), cx.input(0))),
            cx.needs(1).then(|| sum_like(g.clone(), cx.input(1))),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        match (&t[0], &t[1]) {
            (Some(a), Some(b)) => Some(stretch(&(a + b), cx)),
            (Some(a), None) => Some(stretch(a, cx)),
            (None, Some(b)) => Some(stretch(b, cx)),
            (None, None) => None,
        }
    }
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        batch::linear_combination(t, &[T::one(), T::one()], &cx.output().shape())
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        vec![
            cx.needs(0)
                .then(|| batch::sum_to(g.clone(), &cx.input_shape(0))),
            cx.needs(1)
                .then(|| batch::sum_to(g.clone(), &cx.input_shape(1))),
        ]
    }
    #[inline]
    fn scalar_vjp(&self, _: &[T], _: T, g: T, cot: &mut [T]) -> bool {
        cot.copy_from_slice(&[g, g]);
        true
    }
}

/// `a - b`, elementwise with broadcasting.
#[derive(Debug, Clone, Copy)]
pub struct Sub;

impl<T: Float> Rule<T> for Sub {
    fn name(&self) -> &'static str {
        "sub"
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip(x[0], x[1], |a, b| a - b)
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        Some(x[0] - x[1])
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([
            cx.needs(0).then(|| sum_like(g.clone(), cx.input(0))),
            cx.needs(1).then(|| sum_like(-g, cx.input(1))),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        match (&t[0], &t[1]) {
            (Some(a), Some(b)) => Some(stretch(&(a - b), cx)),
            (Some(a), None) => Some(stretch(a, cx)),
            (None, Some(b)) => Some(stretch(&-b, cx)),
            (None, None) => None,
        }
    }
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        batch::linear_combination(t, &[T::one(), -T::one()], &cx.output().shape())
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        vec![
            cx.needs(0)
                .then(|| batch::sum_to(g.clone(), &cx.input_shape(0))),
            cx.needs(1)
                .then(|| batch::sum_to(g.map(|x| -x), &cx.input_shape(1))),
        ]
    }
    #[inline]
    fn scalar_vjp(&self, _: &[T], _: T, g: T, cot: &mut [T]) -> bool {
        cot.copy_from_slice(&[g, -g]);
        true
    }
}

/// `a * b`, elementwise with broadcasting.
#[derive(Debug, Clone, Copy)]
pub struct Mul;

impl<T: Float> Rule<T> for Mul {
    fn name(&self) -> &'static str {
        "mul"
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip(x[0], x[1], |a, b| a * b)
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        Some(x[0] * x[1])
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let (a, b) = (cx.input(0), cx.input(1));
        Cotangents::from([
            cx.needs(0).then(|| sum_like(g * b, a)),
            cx.needs(1).then(|| sum_like(g * a, b)),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        match (&t[0], &t[1]) {
            (Some(ta), Some(tb)) => Some(ta * b + a * tb),
            (Some(ta), None) => Some(ta * b),
            (None, Some(tb)) => Some(a * tb),
            (None, None) => None,
        }
    }
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        let (a, b) = (cx.input(0).value(), cx.input(1).value());
        let rank = cx.output().shape().len();
        let terms = [
            t[0].clone().map(|ta| product(&batch::align(ta, rank), &b)),
            t[1].clone().map(|tb| product(&batch::align(tb, rank), &a)),
        ];
        batch::linear_combination(&terms, &[T::one(), T::one()], &cx.output().shape())
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        let (a, b) = (cx.input(0).value(), cx.input(1).value());
        vec![
            cx.needs(0)
                .then(|| batch::sum_to(product(g, &b), &cx.input_shape(0))),
            cx.needs(1)
                .then(|| batch::sum_to(product(g, &a), &cx.input_shape(1))),
        ]
    }
    #[inline]
    fn scalar_vjp(&self, x: &[T], _: T, g: T, cot: &mut [T]) -> bool {
        cot.copy_from_slice(&[g * x[1], g * x[0]]);
        true
    }
}

/// `a / b`, elementwise with broadcasting.
#[derive(Debug, Clone, Copy)]
pub struct Div;

impl<T: Float> Rule<T> for Div {
    fn name(&self) -> &'static str {
        "div"
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        zip(x[0], x[1], |a, b| a / b)
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        Some(x[0] / x[1])
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let (a, b, out) = (cx.input(0), cx.input(1), cx.output());
        Cotangents::from([
            cx.needs(0).then(|| sum_like(g / b, a)),
            cx.needs(1).then(|| sum_like(-(g * out / b), b)),
        ])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (b, out) = (cx.input(1), cx.output());
        match (&t[0], &t[1]) {
            (Some(ta), Some(tb)) => Some((ta - &(tb * out)) / b),
            (Some(ta), None) => Some(ta / b),
            (None, Some(tb)) => Some(-(tb * out / b)),
            (None, None) => None,
        }
    }
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        let (b, out) = (cx.input(1).value(), cx.output().value());
        let rank = cx.output().shape().len();
        let over_b = |x: &Tensor<T>| zip_batch(x, &b, |x, b| x / b);
        let terms = [
            t[0].clone().map(|ta| over_b(&batch::align(ta, rank))),
            t[1].clone()
                .map(|tb| over_b(&product(&batch::align(tb, rank), &out))),
        ];
        batch::linear_combination(&terms, &[T::one(), -T::one()], &cx.output().shape())
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        let (b, out) = (cx.input(1).value(), cx.output().value());
        let over_b = |x: &Tensor<T>| zip_batch(x, &b, |x, b| x / b);
        vec![
            cx.needs(0)
                .then(|| batch::sum_to(over_b(g), &cx.input_shape(0))),
            cx.needs(1)
                .then(|| batch::sum_to(over_b(&product(g, &out)).map(|x| -x), &cx.input_shape(1))),
        ]
    }
    #[inline]
    fn scalar_vjp(&self, x: &[T], y: T, g: T, cot: &mut [T]) -> bool {
        cot.copy_from_slice(&[g / x[1], -(g * y / x[1])]);
        true
    }
}

/// `-x`.
#[derive(Debug, Clone, Copy)]
pub struct Neg;

impl<T: Float> Rule<T> for Neg {
    fn name(&self) -> &'static str {
        "neg"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].map(|a| -a))
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        Some(-x[0])
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(-g)])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| -t)
    }
    fn batch_broadcasts(&self) -> bool {
        true
    }
    #[inline]
    fn scalar_vjp(&self, _: &[T], _: T, g: T, cot: &mut [T]) -> bool {
        cot[0] = -g;
        true
    }
}

/// An op of one tensor and one scalar constant, `x ∘ c` or `c ∘ x`. The constant is an
/// attribute, not a node, so `x * 2.0` records one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarOp<T> {
    /// `x + c`
    Add(T),
    /// `x - c`
    Sub(T),
    /// `x * c`
    Mul(T),
    /// `x / c`
    Div(T),
    /// `c - x`
    SubFrom(T),
    /// `c / x`
    DivInto(T),
}

impl<T: Float> Rule<T> for ScalarOp<T> {
    fn name(&self) -> &'static str {
        match self {
            ScalarOp::Add(_) => "add_scalar",
            ScalarOp::Sub(_) => "sub_scalar",
            ScalarOp::Mul(_) => "mul_scalar",
            ScalarOp::Div(_) => "div_scalar",
            ScalarOp::SubFrom(_) => "scalar_sub",
            ScalarOp::DivInto(_) => "scalar_div",
        }
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let (ScalarOp::Add(c)
        | ScalarOp::Sub(c)
        | ScalarOp::Mul(c)
        | ScalarOp::Div(c)
        | ScalarOp::SubFrom(c)
        | ScalarOp::DivInto(c)) = *self;
        vec![("c", c.to_string())]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let op = *self;
        Ok(x[0].map(|a| op.eval(a)))
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        Some(self.eval(x[0]))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(self.derivative(cx, g))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| self.derivative(cx, t))
    }
    fn batch_broadcasts(&self) -> bool {
        true
    }
    #[inline]
    fn scalar_vjp(&self, x: &[T], y: T, g: T, cot: &mut [T]) -> bool {
        cot[0] = match *self {
            ScalarOp::Add(_) | ScalarOp::Sub(_) => g,
            ScalarOp::Mul(c) => g * c,
            ScalarOp::Div(c) => g / c,
            ScalarOp::SubFrom(_) => -g,
            ScalarOp::DivInto(_) => -(g * y / x[0]),
        };
        true
    }
}

impl<T: Float> ScalarOp<T> {
    /// The op on one element.
    #[inline]
    fn eval(self, a: T) -> T {
        match self {
            ScalarOp::Add(c) => a + c,
            ScalarOp::Sub(c) => a - c,
            ScalarOp::Mul(c) => a * c,
            ScalarOp::Div(c) => a / c,
            ScalarOp::SubFrom(c) => c - a,
            ScalarOp::DivInto(c) => c / a,
        }
    }

    /// The op is elementwise in one input, so its VJP and JVP are the same product with
    /// the elementwise derivative.
    fn derivative<'t>(&self, cx: &RuleCtx<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        match *self {
            ScalarOp::Add(_) | ScalarOp::Sub(_) => v.clone(),
            ScalarOp::Mul(c) => v * c,
            ScalarOp::Div(c) => v / c,
            ScalarOp::SubFrom(_) => -v,
            ScalarOp::DivInto(_) => -(v * cx.output() / cx.input(0)),
        }
    }
}

/// Sums a tensor down to a shape that broadcasts to it.
#[derive(Debug, Clone, PartialEq)]
pub struct SumTo(pub Shape);

impl<T: Float> Rule<T> for SumTo {
    fn name(&self) -> &'static str {
        "sum_to"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("shape", format!("{:?}", self.0.as_slice()))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        if broadcast_shapes(x[0].shape(), &self.0).as_deref() != Some(x[0].shape()) {
            return Err(format!(
                "shape {:?} does not broadcast to {:?}",
                self.0.as_slice(),
                x[0].shape()
            ));
        }
        Ok(x[0].sum_to(&self.0))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(broadcast_to(g, &cx.input_shape(0)))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| sum_to(t, &self.0))
    }
    fn jvp_batch(
        &self,
        _: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        t[0].clone().map(|t| batch::sum_to(t, &self.0))
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        vec![Some(batch::stretch(g.clone(), &cx.input_shape(0)))]
    }
}

/// Broadcasts a tensor to a shape under numpy's rules (materialised).
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastTo(pub Shape);

impl<T: Float> Rule<T> for BroadcastTo {
    fn name(&self) -> &'static str {
        "broadcast_to"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("shape", format!("{:?}", self.0.as_slice()))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        crate::checked_len::<T>(&self.0)?;
        x[0].broadcast_to(&self.0).ok_or_else(|| {
            format!(
                "shape {:?} does not broadcast to {:?}",
                x[0].shape(),
                self.0.as_slice()
            )
        })
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(sum_to(g, &cx.input_shape(0)))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| broadcast_to(t, &self.0))
    }
    fn jvp_batch(
        &self,
        _: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        t[0].clone().map(|t| batch::stretch(t, &self.0))
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        vec![Some(batch::sum_to(g.clone(), &cx.input_shape(0)))]
    }
}

// Operators. `Var` is `Copy`, so its operators take values; `Val` is not, so its
// operators are implemented for references and values alike.
macro_rules! binary_operators {
    ($($trait:ident $method:ident $rule:ident $scalar:ident $rscalar:ident;)*) => {$(
        impl<'t, T: Float> std::ops::$trait for Var<'t, T> {
            type Output = Var<'t, T>;
            #[track_caller]
            fn $method(self, rhs: Var<'t, T>) -> Var<'t, T> {
                Var::apply($rule, &[&self, &rhs])
            }
        }
        impl<'t, T: Float> std::ops::$trait<T> for Var<'t, T> {
            type Output = Var<'t, T>;
            #[track_caller]
            fn $method(self, c: T) -> Var<'t, T> {
                Var::apply(ScalarOp::$scalar(c), &[&self])
            }
        }
        impl<'t, T: Float> std::ops::$trait<&Val<'t, T>> for &Val<'t, T> {
            type Output = Val<'t, T>;
            #[track_caller]
            fn $method(self, rhs: &Val<'t, T>) -> Val<'t, T> {
                Val::apply($rule, &[self, rhs])
            }
        }
        impl<'t, T: Float> std::ops::$trait<Val<'t, T>> for Val<'t, T> {
            type Output = Val<'t, T>;
            #[track_caller]
            fn $method(self, rhs: Val<'t, T>) -> Val<'t, T> {
                Val::apply($rule, &[&self, &rhs])
            }
        }
        impl<'t, T: Float> std::ops::$trait<&Val<'t, T>> for Val<'t, T> {
            type Output = Val<'t, T>;
            #[track_caller]
            fn $method(self, rhs: &Val<'t, T>) -> Val<'t, T> {
                Val::apply($rule, &[&self, rhs])
            }
        }
        impl<'t, T: Float> std::ops::$trait<Val<'t, T>> for &Val<'t, T> {
            type Output = Val<'t, T>;
            #[track_caller]
            fn $method(self, rhs: Val<'t, T>) -> Val<'t, T> {
                Val::apply($rule, &[self, &rhs])
            }
        }
        impl<'t, T: Float> std::ops::$trait<T> for &Val<'t, T> {
            type Output = Val<'t, T>;
            #[track_caller]
            fn $method(self, c: T) -> Val<'t, T> {
                Val::apply(ScalarOp::$scalar(c), &[self])
            }
        }
        impl<'t, T: Float> std::ops::$trait<T> for Val<'t, T> {
            type Output = Val<'t, T>;
            #[track_caller]
            fn $method(self, c: T) -> Val<'t, T> {
                Val::apply(ScalarOp::$scalar(c), &[&self])
            }
        }
        binary_operators!(@scalar_lhs $trait $method $rscalar f32 f64);
    )*};
    (@scalar_lhs $trait:ident $method:ident $rscalar:ident $($f:ty)*) => {$(
        impl<'t> std::ops::$trait<Var<'t, $f>> for $f {
            type Output = Var<'t, $f>;
            #[track_caller]
            fn $method(self, x: Var<'t, $f>) -> Var<'t, $f> {
                Var::apply(ScalarOp::$rscalar(self), &[&x])
            }
        }
        impl<'t> std::ops::$trait<&Val<'t, $f>> for $f {
            type Output = Val<'t, $f>;
            #[track_caller]
            fn $method(self, x: &Val<'t, $f>) -> Val<'t, $f> {
                Val::apply(ScalarOp::$rscalar(self), &[x])
            }
        }
        impl<'t> std::ops::$trait<Val<'t, $f>> for $f {
            type Output = Val<'t, $f>;
            #[track_caller]
            fn $method(self, x: Val<'t, $f>) -> Val<'t, $f> {
                Val::apply(ScalarOp::$rscalar(self), &[&x])
            }
        }
    )*};
}

binary_operators! {
    Add add Add Add Add;
    Mul mul Mul Mul Mul;
    Sub sub Sub Sub SubFrom;
    Div div Div Div DivInto;
}

impl<'t, T: Float> std::ops::Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    #[track_caller]
    fn neg(self) -> Var<'t, T> {
        Var::apply(Neg, &[&self])
    }
}
impl<'t, T: Float> std::ops::Neg for &Val<'t, T> {
    type Output = Val<'t, T>;
    #[track_caller]
    fn neg(self) -> Val<'t, T> {
        Val::apply(Neg, &[self])
    }
}
impl<'t, T: Float> std::ops::Neg for Val<'t, T> {
    type Output = Val<'t, T>;
    #[track_caller]
    fn neg(self) -> Val<'t, T> {
        Val::apply(Neg, &[&self])
    }
}

/// `c - x` and `c / x` for generic code, where `T::one() - x` cannot be written (Rust's
/// orphan rule allows operators with a scalar on the left only for concrete `f32`/`f64`).
/// One node each, like the operators.
pub trait ScalarLhs<'t, T: Float>: Operand<'t, T> {
    /// `c - self`.
    ///
    /// ```
    /// use retrograd_tape::{Tape, arith::ScalarLhs};
    /// let tape = Tape::<f64>::new();
    /// let y = tape.var(0.25).rsub(1.0);
    /// assert_eq!(y.item(), 0.75);
    /// ```
    #[track_caller]
    fn rsub(&self, c: T) -> Self {
        Self::apply(ScalarOp::SubFrom(c), &[self])
    }

    /// `c / self`.
    #[track_caller]
    fn rdiv(&self, c: T) -> Self {
        Self::apply(ScalarOp::DivInto(c), &[self])
    }
}

impl<'t, T: Float, X: Operand<'t, T>> ScalarLhs<'t, T> for X {}
