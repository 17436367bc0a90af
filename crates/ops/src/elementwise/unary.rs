//! The generic rule behind every elementwise function of one tensor.
//!
//! An elementwise `y = f(x)` has a diagonal Jacobian, so its VJP and its JVP are the same
//! product: `v ↦ v ⊙ f'(x)`. An op therefore only states its value at one element
//! ([`UnaryFn::eval`]) and that product ([`UnaryFn::chain`]), written in differentiable ops
//! on [`Val`] so that second derivatives flow through it; [`Unary`] turns that into a
//! [`Rule`]. Users can define their own elementwise ops the same way.

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

/// An elementwise function of one tensor, described by its value and its derivative.
///
/// ```
/// use retrograd_ops::elementwise::{Unary, UnaryFn};
/// use retrograd_ops::prelude::*;
///
/// /// `x³`, elementwise.
/// struct Cube;
/// impl<T: Float> UnaryFn<T> for Cube {
///     fn name(&self) -> &'static str { "cube" }
///     fn eval(&self, x: T) -> T { x * x * x }
///     fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
///         &(v * &(x * x)) * T::of(3.0)
///     }
/// }
///
/// let tape = Tape::<f64>::new();
/// let x = tape.var(2.0);
/// assert_eq!(Var::apply(Unary(Cube), &[&x]).item(), 8.0);
/// ```
pub trait UnaryFn<T: Float>: 'static {
    /// The op's name, as dumps and error messages print it.
    fn name(&self) -> &'static str;

    /// The op's attributes (`[("p", "2.5")]`), for inspection.
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Checks the attributes before the op runs (e.g. `clamp`'s `lo <= hi`); an `Err`
    /// becomes the op's shape-and-line panic.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// `f` at one element.
    fn eval(&self, x: T) -> T;

    /// `v ⊙ f'(x)` for a cotangent or tangent `v` of `x`'s shape, given the input `x` and
    /// the output `y = f(x)`. Must be written in differentiable ops on [`Val`] (operators,
    /// other ops' methods, constants from `x.constant_like`), never by reading values
    /// into a new constant that depends on `x` smoothly: that would silently cut the
    /// second derivative.
    fn chain<'t>(&self, x: &Val<'t, T>, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T>;

    /// [`chain`](UnaryFn::chain) on plain numbers, `v · f'(x)` at one element, for the
    /// plain reverse sweep's scalar path ([`Rule::scalar_vjp`]); `None`, the default, when
    /// the op does not offer one. It must compute what `chain` computes.
    fn chain_scalar(&self, x: T, y: T, v: T) -> Option<T> {
        let _ = (x, y, v);
        None
    }
}

/// The [`Rule`] of an elementwise function [`UnaryFn`]: forward maps `eval` over the
/// elements; VJP and JVP are both `v ↦ chain(x, y, v)`. Nothing is saved beyond the input
/// and output the tape keeps anyway.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unary<U>(pub U);

impl<T: Float, U: UnaryFn<T>> Rule<T> for Unary<U> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        self.0.attributes()
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        self.0.validate()?;
        let f = &self.0;
        Ok(x[0].map(|v| f.eval(v)))
    }
    #[inline]
    fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
        self.0.validate().ok()?;
        Some(self.0.eval(x[0]))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([cx
            .needs(0)
            .then(|| self.0.chain(cx.input(0), cx.output(), g))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref()
            .map(|t| self.0.chain(cx.input(0), cx.output(), t))
    }
    /// `chain` multiplies the tangents elementwise with values of the input's shape, so the
    /// batch goes through it as it is.
    fn batch_broadcasts(&self) -> bool {
        true
    }
    #[inline]
    fn scalar_vjp(&self, x: &[T], y: T, g: T, cotangents: &mut [T]) -> bool {
        match self.0.chain_scalar(x[0], y, g) {
            Some(c) => {
                cotangents[0] = c;
                true
            }
            None => false,
        }
    }
}

/// A 0/1 (or other piecewise-constant) factor computed from `x`'s value, entered as a
/// constant: the derivative of a piecewise-linear op, exact to second order (its own
/// derivative is zero almost everywhere).
pub(crate) fn mask_of<'t, T: Float>(x: &Val<'t, T>, f: impl Fn(T) -> T) -> Val<'t, T> {
    x.constant_like(x.value().map(f))
}

/// The derivative of an elementwise function written in terms of its output,
/// `f'(x) = φ(y)`: `tanh` has `φ(y) = 1 - y²`, `sigmoid` has `φ(y) = y (1 - y)`. Such a
/// function's VJP and JVP are both the product `g ⊙ φ(y)`, which [`SlopeProduct`] computes
/// as one primitive (PyTorch's `tanh_backward`, `sigmoid_backward`) instead of three ops.
pub(crate) trait OutputSlope<T: Float>: 'static {
    /// The primitive's name (`"tanh_backward"`).
    const NAME: &'static str;
    /// `φ(y)` at one element.
    fn slope(y: T) -> T;
    /// `φ'(y)`, written in differentiable ops so that derivatives of any order flow.
    fn slope_derivative<'t>(y: &Val<'t, T>) -> Val<'t, T>;
}

/// `g ⊙ φ(y)` for a cotangent or tangent `g` and the output `y`, of one shape. Its own
/// rules are written in differentiable ops (and in itself), so higher derivatives flow:
/// - VJP: `ḡ = ū ⊙ φ(y)` (itself), `ȳ = ū ⊙ g ⊙ φ'(y)`;
/// - JVP: `u̇ = ġ ⊙ φ(y) + g ⊙ φ'(y) ⊙ ẏ`.
pub(crate) struct SlopeProduct<S>(std::marker::PhantomData<S>);

impl<S> Default for SlopeProduct<S> {
    fn default() -> Self {
        SlopeProduct(std::marker::PhantomData)
    }
}

/// [`SlopeProduct`] applied to `g` and `y`.
#[track_caller]
pub(crate) fn slope_product<'t, T: Float, S: OutputSlope<T>, X: Operand<'t, T>>(g: &X, y: &X) -> X {
    X::apply(SlopeProduct::<S>::default(), &[g, y])
}

impl<T: Float, S: OutputSlope<T>> Rule<T> for SlopeProduct<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    #[inline]
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (g, y) = (x[0], x[1]);
        if let (Tensor::Scalar(g), Tensor::Scalar(y)) = (g, y) {
            return Ok(Tensor::Scalar(*g * S::slope(*y)));
        }
        // A batch of cotangents (leading batch axes, from a batched sweep) is the only
        // other shape accepted.
        if !g.shape().ends_with(y.shape()) {
            return Err(format!(
                "the cotangent's shape {:?} is not the output's {:?}",
                g.shape(),
                y.shape()
            ));
        }
        g.zip_map(y, |g, y| g * S::slope(y))
            .ok_or_else(|| "shapes differ".to_string())
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, u: &Val<'t, T>) -> Cotangents<'t, T> {
        let (g, y) = (cx.input(0), cx.input(1));
        Cotangents::from([
            cx.needs(0).then(|| slope_product::<T, S, _>(u, y)),
            cx.needs(1).then(|| &(u * g) * &S::slope_derivative(y)),
        ])
    }
    fn batch_broadcasts(&self) -> bool {
        true
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (g, y) = (cx.input(0), cx.input(1));
        let dy = t[1].as_ref().map(|ty| &(g * ty) * &S::slope_derivative(y));
        match (t[0].as_ref().map(|tg| slope_product::<T, S, _>(tg, y)), dy) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unary;
    use crate::elementwise::{
        Abs, Clamp, Cos, Erf, Exp, Expm1, Gelu, GeluTanh, LeakyRelu, Ln, Log1p, Powf, Recip, Relu,
        Sigmoid, Sin, Softplus, Sqrt, Square, Tanh,
    };
    use proptest::prelude::*;
    use retrograd_tape::check::check_scalar_paths;
    use retrograd_tape::strategies::config;

    proptest! {
        #![proptest_config(config(64))]
        /// Every op with a scalar path computes there what its rule computes.
        #[test]
        fn scalar_paths_agree_with_the_rules(x in -3.0f64..3.0, p in 0.05f64..5.0, g in -2.0f64..2.0) {
            for ok in [
                check_scalar_paths(Unary(Tanh), &[x], g),
                check_scalar_paths(Unary(Exp), &[x], g),
                check_scalar_paths(Unary(Sin), &[x], g),
                check_scalar_paths(Unary(Cos), &[x], g),
                check_scalar_paths(Unary(Square), &[x], g),
                check_scalar_paths(Unary(Sigmoid), &[x], g),
                check_scalar_paths(Unary(Expm1), &[x], g),
                check_scalar_paths(Unary(Ln), &[p], g),
                check_scalar_paths(Unary(Sqrt), &[p], g),
                check_scalar_paths(Unary(Recip), &[p], g),
                check_scalar_paths(Unary(Log1p), &[p], g),
                // Every elementwise op records scalars through `scalar_forward`, kinked
                // ones included (x = 0 has probability zero here).
                check_scalar_paths(Unary(Erf), &[x], g),
                check_scalar_paths(Unary(Relu), &[x], g),
                check_scalar_paths(Unary(Abs), &[x], g),
                check_scalar_paths(Unary(Gelu), &[x], g),
                check_scalar_paths(Unary(GeluTanh), &[x], g),
                check_scalar_paths(Unary(Softplus), &[x], g),
                check_scalar_paths(Unary(LeakyRelu(0.01)), &[x], g),
                check_scalar_paths(Unary(Clamp { lo: -1.0, hi: 1.0 }), &[x], g),
                check_scalar_paths(Unary(Powf(1.5)), &[p], g),
            ] {
                prop_assert!(ok?, "every op listed has a scalar path");
            }
        }
    }
}
