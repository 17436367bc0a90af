//! Elementwise ops: functions of one tensor, broadcasting functions of two, comparison
//! masks and selection.
//!
//! Every op is a method of [`ElementwiseOps`], implemented for both
//! [`Var`](retrograd_tape::Var) (user code) and [`Val`](retrograd_tape::Val) (inside other
//! rules), so `x.exp()` is the same op everywhere. Each op's rule lives in its own file
//! with its derivative rules in math notation; the list:
//!
//! | op | value | VJP factor `∂y/∂x` | notes |
//! |---|---|---|---|
//! | [`exp`](ElementwiseOps::exp) | `eˣ` | `y` | |
//! | [`ln`](ElementwiseOps::ln) | `ln x` | `1/x` | alias `log` |
//! | [`sqrt`](ElementwiseOps::sqrt) | `√x` | `1/(2y)` | |
//! | [`square`](ElementwiseOps::square) | `x²` | `2x` | |
//! | [`recip`](ElementwiseOps::recip) | `1/x` | `-y²` | |
//! | [`powf`](ElementwiseOps::powf) | `xᵖ` | `p x^(p-1)` | scalar `p`; 0 for `p = 0` |
//! | [`sin`](ElementwiseOps::sin), [`cos`](ElementwiseOps::cos) | | `cos x`, `-sin x` | |
//! | [`tanh`](ElementwiseOps::tanh) | | `1 - y²` | |
//! | [`sigmoid`](ElementwiseOps::sigmoid) | `1/(1+e⁻ˣ)` | `y(1-y)` | stable |
//! | [`softplus`](ElementwiseOps::softplus) | `ln(1+eˣ)` | `σ(x)` | stable |
//! | [`relu`](ElementwiseOps::relu) | `max(x,0)` | `[x>0]` | 0 at the kink |
//! | [`leaky_relu`](ElementwiseOps::leaky_relu) | | `x>0 ? 1 : slope` | `slope` at the kink |
//! | [`abs`](ElementwiseOps::abs) | `\|x\|` | `sign x` | 0 at the kink |
//! | [`clamp`](ElementwiseOps::clamp) | | `[lo<x<hi]` | 0 at the bounds |
//! | [`gelu`](ElementwiseOps::gelu) | `x Φ(x)` | `Φ(x) + x φ(x)` | exact (erf) form |
//! | [`gelu_tanh`](ElementwiseOps::gelu_tanh) | tanh approximation | | PyTorch `approximate='tanh'` |
//! | [`erf`](ElementwiseOps::erf) | `erf x` | `2/√π e^(-x²)` | |
//! | [`expm1`](ElementwiseOps::expm1), [`log1p`](ElementwiseOps::log1p) | `eˣ-1`, `ln(1+x)` | `y+1`, `1/(1+x)` | accurate near 0 |
//! | [`pow`](ElementwiseOps::pow) | `aᵇ` | `b a^(b-1)`, `y ln a` | broadcasts |
//! | [`maximum`](ElementwiseOps::maximum), [`minimum`](ElementwiseOps::minimum) | | masks | broadcast; ties split ½/½ |
//! | [`gt`](ElementwiseOps::gt) … [`ne`](ElementwiseOps::ne) | 0/1 mask | none | constants |
//! | [`where_`] | `c ≠ 0 ? a : b` | masks | broadcasts; no gradient to `c` |
//!
//! For an elementwise function of one tensor the Jacobian is diagonal, so the VJP and the
//! JVP are the same product `v ⊙ f'(x)`; [`UnaryFn`] states it once and [`Unary`] makes it
//! a rule. The factor is always written in differentiable ops (the exp rule multiplies by
//! the recorded output, sin's records a `cos`), so second and higher derivatives work. At
//! the kinks of piecewise-linear ops the subgradient follows PyTorch (`tests/tests/kinks.rs`
//! checks it against PyTorch's and JAX's own answers); their masks are
//! constants computed from the input, exact to second order since the second derivative
//! vanishes away from the kinks. Binary ops broadcast under numpy's rules and sum each
//! cotangent back to its input's shape.

mod abs;
mod binary;
mod clamp;
mod compare;
mod cos;
mod erf;
mod exp;
mod expm1;
mod gelu;
mod gelu_tanh;
mod leaky_relu;
mod ln;
mod log1p;
mod maximum;
mod minimum;
mod pow;
mod powf;
mod recip;
mod relu;
mod select;
mod sigmoid;
mod sin;
mod softplus;
mod sqrt;
mod square;
mod tanh;
mod unary;

pub use abs::Abs;
pub use clamp::Clamp;
pub use compare::Comparand;
pub use cos::Cos;
pub use erf::{Erf, erf_f64};
pub use exp::Exp;
pub use expm1::Expm1;
pub use gelu::Gelu;
pub use gelu_tanh::GeluTanh;
pub use leaky_relu::LeakyRelu;
pub use ln::Ln;
pub use log1p::Log1p;
pub use maximum::Maximum;
pub use minimum::Minimum;
pub use pow::Pow;
pub use powf::Powf;
pub use recip::Recip;
pub use relu::Relu;
pub use select::{Where, where_};
pub use sigmoid::Sigmoid;
pub use sin::Sin;
pub use softplus::Softplus;
pub use sqrt::Sqrt;
pub use square::Square;
pub use tanh::Tanh;
pub use unary::{Unary, UnaryFn};

use retrograd_tape::{Float, Operand};

/// Elementwise ops as methods on [`Var`](retrograd_tape::Var) and
/// [`Val`](retrograd_tape::Val). Binary ops take an operand of the same kind and
/// broadcast under numpy's rules; a shape mismatch panics naming the op, both shapes and
/// the caller's line.
///
/// The examples assume `use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();`.
pub trait ElementwiseOps<'t, T: Float>: Operand<'t, T> {
    /// `eˣ`. See [`Exp`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).exp().item(), 1.0);
    /// ```
    #[track_caller]
    fn exp(&self) -> Self {
        Self::apply(Unary(Exp), &[self])
    }

    /// The natural logarithm `ln x`. See [`Ln`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(1.0).ln().item(), 0.0);
    /// ```
    #[track_caller]
    fn ln(&self) -> Self {
        Self::apply(Unary(Ln), &[self])
    }

    /// The natural logarithm, under PyTorch's and numpy's name: the same op as
    /// [`ln`](ElementwiseOps::ln).
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(1.0).log().item(), 0.0);
    /// ```
    #[track_caller]
    fn log(&self) -> Self {
        Self::apply(Unary(Ln), &[self])
    }

    /// `√x`. See [`Sqrt`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(9.0).sqrt().item(), 3.0);
    /// ```
    #[track_caller]
    fn sqrt(&self) -> Self {
        Self::apply(Unary(Sqrt), &[self])
    }

    /// `x²`. See [`Square`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(-3.0).square().item(), 9.0);
    /// ```
    #[track_caller]
    fn square(&self) -> Self {
        Self::apply(Unary(Square), &[self])
    }

    /// `1/x`. See [`Recip`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(4.0).recip().item(), 0.25);
    /// ```
    #[track_caller]
    fn recip(&self) -> Self {
        Self::apply(Unary(Recip), &[self])
    }

    /// `xᵖ` for a constant scalar exponent. See [`Powf`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(2.0).powf(3.0).item(), 8.0);
    /// ```
    #[track_caller]
    fn powf(&self, p: T) -> Self {
        Self::apply(Unary(Powf(p)), &[self])
    }

    /// `sin x`. See [`Sin`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).sin().item(), 0.0);
    /// ```
    #[track_caller]
    fn sin(&self) -> Self {
        Self::apply(Unary(Sin), &[self])
    }

    /// `cos x`. See [`Cos`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).cos().item(), 1.0);
    /// ```
    #[track_caller]
    fn cos(&self) -> Self {
        Self::apply(Unary(Cos), &[self])
    }

    /// `tanh x`. See [`Tanh`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).tanh().item(), 0.0);
    /// ```
    #[track_caller]
    fn tanh(&self) -> Self {
        Self::apply(Unary(Tanh), &[self])
    }

    /// The logistic function `1/(1 + e⁻ˣ)`, computed stably. See [`Sigmoid`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).sigmoid().item(), 0.5);
    /// ```
    #[track_caller]
    fn sigmoid(&self) -> Self {
        Self::apply(Unary(Sigmoid), &[self])
    }

    /// `max(x, 0)`; subgradient 0 at 0. See [`Relu`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![-1.0, 2.0]).relu().array(), ndarray::array![0.0, 2.0].into_dyn());
    /// ```
    #[track_caller]
    fn relu(&self) -> Self {
        Self::apply(Unary(Relu), &[self])
    }

    /// `x` for `x > 0`, `slope · x` otherwise; subgradient `slope` at 0. See [`LeakyRelu`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(-2.0).leaky_relu(0.1).item(), -0.2);
    /// ```
    #[track_caller]
    fn leaky_relu(&self, slope: T) -> Self {
        Self::apply(Unary(LeakyRelu(slope)), &[self])
    }

    /// The exact GELU `x Φ(x)` (PyTorch's default `approximate='none'`). See [`Gelu`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert!((tape.var(1.0).gelu().item() - 0.8413447460685429).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn gelu(&self) -> Self {
        Self::apply(Unary(Gelu), &[self])
    }

    /// The tanh approximation of GELU (PyTorch's `approximate='tanh'`). See [`GeluTanh`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert!((tape.var(1.0).gelu_tanh().item() - 0.8411919906082768).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn gelu_tanh(&self) -> Self {
        Self::apply(Unary(GeluTanh), &[self])
    }

    /// The error function. See [`Erf`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert!((tape.var(1.0).erf().item() - 0.8427007929497149).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn erf(&self) -> Self {
        Self::apply(Unary(Erf), &[self])
    }

    /// `ln(1 + eˣ)`, computed stably. See [`Softplus`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(1000.0).softplus().item(), 1000.0);
    /// ```
    #[track_caller]
    fn softplus(&self) -> Self {
        Self::apply(Unary(Softplus), &[self])
    }

    /// `|x|`; subgradient 0 at 0. See [`Abs`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(-2.5).abs().item(), 2.5);
    /// ```
    #[track_caller]
    fn abs(&self) -> Self {
        Self::apply(Unary(Abs), &[self])
    }

    /// `min(max(x, lo), hi)`; the gradient is 0 at the bounds (PyTorch's convention).
    /// Panics when `lo > hi`.
    /// See [`Clamp`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![-2.0, 0.5, 3.0]).clamp(-1.0, 1.0).array(), ndarray::array![-1.0, 0.5, 1.0].into_dyn());
    /// ```
    #[track_caller]
    fn clamp(&self, lo: T, hi: T) -> Self {
        Self::apply(Unary(Clamp { lo, hi }), &[self])
    }

    /// `eˣ - 1`, accurate near 0. See [`Expm1`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).expm1().item(), 0.0);
    /// ```
    #[track_caller]
    fn expm1(&self) -> Self {
        Self::apply(Unary(Expm1), &[self])
    }

    /// `ln(1 + x)`, accurate near 0. See [`Log1p`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(0.0).log1p().item(), 0.0);
    /// ```
    #[track_caller]
    fn log1p(&self) -> Self {
        Self::apply(Unary(Log1p), &[self])
    }

    /// `selfᵇ` for a tensor exponent, with broadcasting. See [`Pow`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![2.0, 3.0]).pow(&tape.var(2.0)).array(), ndarray::array![4.0, 9.0].into_dyn());
    /// ```
    #[track_caller]
    fn pow(&self, exponent: &Self) -> Self {
        Self::apply(Pow, &[self, exponent])
    }

    /// The elementwise larger of two tensors, with broadcasting; ties split the gradient
    /// half and half. See [`Maximum`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![1.0, 5.0]).maximum(&tape.var(3.0)).array(), ndarray::array![3.0, 5.0].into_dyn());
    /// ```
    #[track_caller]
    fn maximum(&self, other: &Self) -> Self {
        Self::apply(Maximum, &[self, other])
    }

    /// The elementwise smaller of two tensors, with broadcasting; ties split the gradient
    /// half and half. See [`Minimum`].
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![1.0, 5.0]).minimum(&tape.var(3.0)).array(), ndarray::array![1.0, 3.0].into_dyn());
    /// ```
    #[track_caller]
    fn minimum(&self, other: &Self) -> Self {
        Self::apply(Minimum, &[self, other])
    }

    /// The mask `self > other` (1 or 0), a constant with no gradient; broadcasts. `other` is
    /// a tensor (`&b`) or a number (`0.0`): `x.gt(0.0)` is the mask of the positive entries.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![1.0, 5.0]).gt(&tape.var(3.0)).array(), ndarray::array![0.0, 1.0].into_dyn());
    /// // Against a number: the positive entries.
    /// let x = tape.var(ndarray::array![-1.0, 2.0]);
    /// assert_eq!((x * x.gt(0.0)).array(), ndarray::array![0.0, 2.0].into_dyn());
    /// ```
    #[track_caller]
    fn gt(&self, other: impl Comparand<'t, T, Self>) -> Self {
        compare::compare("gt", self, other, |a, b| a > b)
    }

    /// The mask `self ≥ other` (1 or 0), a constant with no gradient; broadcasts.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![3.0, 5.0]).ge(&tape.var(4.0)).array(), ndarray::array![0.0, 1.0].into_dyn());
    /// ```
    #[track_caller]
    fn ge(&self, other: impl Comparand<'t, T, Self>) -> Self {
        compare::compare("ge", self, other, |a, b| a >= b)
    }

    /// The mask `self < other` (1 or 0), a constant with no gradient; broadcasts.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![1.0, 5.0]).lt(&tape.var(3.0)).array(), ndarray::array![1.0, 0.0].into_dyn());
    /// ```
    #[track_caller]
    fn lt(&self, other: impl Comparand<'t, T, Self>) -> Self {
        compare::compare("lt", self, other, |a, b| a < b)
    }

    /// The mask `self ≤ other` (1 or 0), a constant with no gradient; broadcasts.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![3.0, 5.0]).le(&tape.var(3.0)).array(), ndarray::array![1.0, 0.0].into_dyn());
    /// ```
    #[track_caller]
    fn le(&self, other: impl Comparand<'t, T, Self>) -> Self {
        compare::compare("le", self, other, |a, b| a <= b)
    }

    /// The mask `self = other` (1 or 0), a constant with no gradient; broadcasts.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![3.0, 5.0]).eq(&tape.var(3.0)).array(), ndarray::array![1.0, 0.0].into_dyn());
    /// ```
    #[track_caller]
    fn eq(&self, other: impl Comparand<'t, T, Self>) -> Self {
        compare::compare("eq", self, other, |a, b| a == b)
    }

    /// The mask `self ≠ other` (1 or 0), a constant with no gradient; broadcasts.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(ndarray::array![3.0, 5.0]).ne(&tape.var(3.0)).array(), ndarray::array![0.0, 1.0].into_dyn());
    /// ```
    #[track_caller]
    fn ne(&self, other: impl Comparand<'t, T, Self>) -> Self {
        compare::compare("ne", self, other, |a, b| a != b)
    }
}

impl<'t, T: Float, X: Operand<'t, T>> ElementwiseOps<'t, T> for X {}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use ndarray::array;
    use retrograd_tape::arith::sum_to;

    /// A plain backward sweep computes the rules on constants: nothing is recorded.
    #[test]
    fn plain_backward_records_nothing() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![-1.0, 0.5, 2.0]);
        let y = x.gelu().tanh().maximum(&x.sin()).pow(&x.exp());
        let s = sum_to(&y, &[]);
        let before = tape.len();
        tape.grad(s, &[x]).unwrap();
        assert_eq!(tape.len(), before);
    }

    /// Rules call the ops on `Val`, so derivatives of every order exist: d³/dx³ sin = -cos.
    #[test]
    fn third_derivative_of_sin() {
        let tape = Tape::<f64>::new();
        let x = tape.var(0.7);
        let d1 = tape.grad_graph(x.sin(), &[x]).unwrap()[0];
        let d2 = tape.grad_graph(d1, &[x]).unwrap()[0];
        let d3 = tape.grad(d2, &[x]).unwrap()[0].sum();
        assert!((d1.item() - 0.7f64.cos()).abs() < 1e-15);
        assert!((d2.item() + 0.7f64.sin()).abs() < 1e-15);
        assert!((d3 + 0.7f64.cos()).abs() < 1e-15);
    }

    /// On constant `Val`s (a plain sweep's values) the ops compute at once.
    #[test]
    fn ops_on_constant_vals_compute_at_once() {
        let x = Val::<f64>::Const(Tensor::from(array![0.0, 1.0]));
        let y = x.exp().maximum(&Val::Const(Tensor::scalar(2.0)));
        assert!(y.as_var().is_none());
        assert_eq!(
            y.value().to_array(),
            array![2.0, std::f64::consts::E].into_dyn()
        );
        let m = x.gt(&Val::Const(Tensor::scalar(0.5)));
        assert_eq!(m.value().to_array(), array![0.0, 1.0].into_dyn());
    }
}
