//! Network ops: softmax and log-softmax along an axis, and the losses (cross-entropy from
//! logits with integer labels, mean-squared error, binary cross-entropy with logits).
//!
//! Each is one fused primitive with a numerically stable forward pass (shifted by the
//! maximum, never `log(softmax)`), so a loss costs one node and logits of ±1000 stay
//! finite. Their rules are written with other primitives (`softmax`'s VJP with `mul` and
//! a sum, `log_softmax`'s and `cross_entropy`'s with `softmax`), so second derivatives
//! work through all of them.
//!
//! ```
//! use retrograd_ops::prelude::*;
//! use ndarray::array;
//! let tape = Tape::<f64>::new();
//! let logits = tape.var(array![[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]);
//! let loss = logits.cross_entropy(&[0, 2]); // mean over the batch
//! let g = tape.grad(loss, &[logits]).unwrap();
//! // Each row's gradient is (softmax − onehot) / N, which sums to zero.
//! assert!(g[0].sum().abs() < 1e-12);
//! ```
//!
//! # Writing your own primitive
//!
//! A user-defined op is a type implementing [`Rule`](retrograd_tape::Rule): its forward
//! computation on plain tensors, and its VJP and JVP written in differentiable ops on
//! [`Val`](retrograd_tape::Val) (operators, `retrograd_ops` methods, other primitives), so
//! that higher derivatives come free. Data the rules need but that is not differentiated
//! (a mask, an index) is computed in `forward` and kept in the rule (`&mut self`), then
//! entered as a constant with `constant_like`. Check it with the gradient-checking kit,
//! which compares reverse mode, forward mode and finite differences, and (by default)
//! Hessian-vector products.
//!
//! Here is the elementwise Huber function, `½x²` for `|x| ≤ δ` and `δ(|x| − ½δ)` beyond:
//! its derivative is `x` inside and `±δ` outside, so the rule keeps the mask of the inside
//! and the outside slope.
//!
//! ```
//! use ndarray::{array, ArrayD};
//! use retrograd_tape::check::{check_gradients, CheckOptions};
//! use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val, Var};
//! use smallvec::smallvec;
//!
//! /// Elementwise Huber function with threshold `delta`.
//! struct Huber<T> {
//!     delta: T,
//!     /// 1 where |x| ≤ δ, else 0 (filled by `forward`).
//!     inside: Option<Tensor<T>>,
//!     /// δ·sign(x) where |x| > δ, else 0.
//!     slope: Option<Tensor<T>>,
//! }
//!
//! impl<T: Float> Huber<T> {
//!     fn new(delta: T) -> Self { Huber { delta, inside: None, slope: None } }
//!
//!     /// dy/dx = x ⊙ inside + slope, in differentiable ops (the masks are constants).
//!     fn derivative<'t>(&self, x: &Val<'t, T>) -> Val<'t, T> {
//!         let inside = x.constant_like(self.inside.clone().expect("forward ran"));
//!         let slope = x.constant_like(self.slope.clone().expect("forward ran"));
//!         &(x * &inside) + &slope
//!     }
//! }
//!
//! impl<T: Float> Rule<T> for Huber<T> {
//!     fn name(&self) -> &'static str { "huber" }
//!     fn attributes(&self) -> Vec<(&'static str, String)> {
//!         vec![("delta", self.delta.to_string())]
//!     }
//!     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
//!         let (d, half) = (self.delta, T::of(0.5));
//!         self.inside = Some(x[0].map(|v| if v.abs() <= d { T::one() } else { T::zero() }));
//!         self.slope = Some(x[0].map(|v| if v.abs() <= d { T::zero() } else { d * v.signum() }));
//!         Ok(x[0].map(|v| if v.abs() <= d { half * v * v } else { d * (v.abs() - half * d) }))
//!     }
//!     fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
//!         Cotangents::from([Some(g * &self.derivative(cx.input(0)))])
//!     }
//!     fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
//!         t[0].as_ref().map(|t| t * &self.derivative(cx.input(0)))
//!     }
//!     fn saved_bytes(&self) -> usize {
//!         self.inside.as_ref().map_or(0, |m| 2 * m.bytes())
//!     }
//! }
//!
//! /// The user-facing function, generic like the built-in ops.
//! #[track_caller]
//! fn huber<'t, T: Float, X: Operand<'t, T>>(x: &X, delta: T) -> X {
//!     X::apply(Huber::new(delta), &[x])
//! }
//!
//! // First and second order (reverse, forward, finite differences, HVPs), at points away
//! // from the kinks |x| = δ where the second derivative jumps.
//! let x: ArrayD<f64> = array![[-2.5, -0.3, 0.4], [0.9, 1.7, -1.2]].into_dyn();
//! let report = check_gradients(|v| huber(&v[0], 1.0), &[x], &CheckOptions::default());
//! assert!(report.is_ok(), "{}", report.unwrap_err());
//!
//! // And it composes with everything else.
//! let tape = retrograd_tape::Tape::<f32>::new();
//! let x = tape.var(array![3.0f32, 0.5]);
//! let y = huber(&x, 1.0) * 2.0;
//! let g = tape.vjp(y, array![1.0f32, 1.0], &[x]).unwrap();
//! assert_eq!(g[0], array![2.0f32, 1.0].into_dyn());
//! ```

pub mod bce;
pub mod cross_entropy;
pub mod log_softmax;
pub mod mse;
pub mod softmax;

pub use bce::BceWithLogits;
pub use cross_entropy::CrossEntropy;
pub use log_softmax::LogSoftmax;
pub use mse::Mse;
pub use softmax::Softmax;

use retrograd_tape::{Float, Operand, Result};

/// How a loss reduces its per-element (or per-sample) terms to a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean (the default, as in PyTorch): the loss does not grow with the batch size.
    #[default]
    Mean,
    /// The sum.
    Sum,
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        })
    }
}

/// Methods for this module's ops on [`Var`](retrograd_tape::Var) and [`Val`](retrograd_tape::Val).
pub trait NnOps<'t, T: Float>: Operand<'t, T> {
    /// `exp(x) / Σ exp(x)` along `axis` (negative counts from the end), stable for any
    /// finite logits.
    ///
    /// `tape.var(array![[0., 0.]]).softmax(-1)` is `[[0.5, 0.5]]`.
    ///
    /// # Panics
    /// When `axis` is out of range.
    #[track_caller]
    fn softmax(&self, axis: isize) -> Self {
        Self::apply(Softmax::new(axis), &[self])
    }

    /// `x − log Σ exp(x)` along `axis`: the log of the softmax, without its underflow.
    ///
    /// `tape.var(array![0., 0.]).log_softmax(0)` is `[-ln 2, -ln 2]`.
    ///
    /// # Panics
    /// When `axis` is out of range.
    #[track_caller]
    fn log_softmax(&self, axis: isize) -> Self {
        Self::apply(LogSoftmax::new(axis), &[self])
    }

    /// Softmax cross-entropy of `[N, C]` logits against `N` integer class labels, the mean
    /// over the batch.
    ///
    /// `logits.cross_entropy(&[3, 0, 1])` for logits of shape `[3, C]`, `C > 3`.
    ///
    /// # Panics
    /// When the logits are not 2-D, the number of labels is not `N`, a label is not below
    /// `C`, or the batch is empty; the message names the label. Use
    /// [`try_cross_entropy`](NnOps::try_cross_entropy) for labels from untrusted data.
    #[track_caller]
    fn cross_entropy(&self, labels: &[usize]) -> Self {
        Self::apply(CrossEntropy::new(labels, Reduction::Mean), &[self])
    }

    /// [`cross_entropy`](NnOps::cross_entropy) with a chosen [`Reduction`].
    ///
    /// `logits.cross_entropy_with(&labels, Reduction::Sum)`.
    #[track_caller]
    fn cross_entropy_with(&self, labels: &[usize], reduction: Reduction) -> Self {
        Self::apply(CrossEntropy::new(labels, reduction), &[self])
    }

    /// [`cross_entropy_with`](NnOps::cross_entropy_with) returning
    /// [`Error::InvalidOp`](retrograd_tape::Error) for bad labels or shapes instead of
    /// panicking.
    ///
    /// `assert!(logits.try_cross_entropy(&[99], Reduction::Mean).is_err())`.
    #[track_caller]
    fn try_cross_entropy(&self, labels: &[usize], reduction: Reduction) -> Result<Self> {
        Self::try_apply(CrossEntropy::new(labels, reduction), &[self])
    }

    /// The mean-squared error `mean((self − target)²)` against a target of the same shape.
    ///
    /// `pred.mse(&tape.constant(target))`.
    ///
    /// # Panics
    /// When the shapes differ (no broadcasting: a `[N]` target against a `[N, 1]`
    /// prediction is a bug, not an `N × N` average).
    #[track_caller]
    fn mse(&self, target: &Self) -> Self {
        Self::apply(Mse::new(Reduction::Mean), &[self, target])
    }

    /// [`mse`](NnOps::mse) with a chosen [`Reduction`] (`Sum`: the sum of squared errors).
    ///
    /// `pred.mse_with(&target, Reduction::Sum)`.
    #[track_caller]
    fn mse_with(&self, target: &Self, reduction: Reduction) -> Self {
        Self::apply(Mse::new(reduction), &[self, target])
    }

    /// Binary cross-entropy of logits against targets in `[0, 1]` of the same shape, the
    /// mean over all elements; stable for any logits.
    ///
    /// `logits.bce_with_logits(&tape.constant(array![1., 0., 1.]))`.
    ///
    /// # Panics
    /// When the shapes differ.
    #[track_caller]
    fn bce_with_logits(&self, targets: &Self) -> Self {
        Self::apply(BceWithLogits::new(Reduction::Mean), &[self, targets])
    }

    /// [`bce_with_logits`](NnOps::bce_with_logits) with a chosen [`Reduction`].
    ///
    /// `logits.bce_with_logits_with(&targets, Reduction::Sum)`.
    #[track_caller]
    fn bce_with_logits_with(&self, targets: &Self, reduction: Reduction) -> Self {
        Self::apply(BceWithLogits::new(reduction), &[self, targets])
    }
}

impl<'t, T: Float, X: Operand<'t, T>> NnOps<'t, T> for X {}
