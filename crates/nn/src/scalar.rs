//! The element-type bound shared by everything in this crate.
//!
//! Every generic item in retrograd-nn is bounded by [`Scalar`] and nothing else, so the
//! bound lives in exactly one place. Today it is spelled out with `num_traits` and
//! `ndarray`; once `retrograd_tape` exports its own float trait, this module switches to
//! it and no other file changes.

use std::fmt::Debug;

use ndarray::ScalarOperand;
use num_traits::Float;

/// A floating-point element type usable for parameters, gradients and data: in practice
/// `f32` or `f64`.
///
/// This is a trait alias: it has no methods of its own and is implemented for every type
/// that satisfies the bound. Checkpoints support exactly `f32` and `f64`; other types that
/// satisfy the bound work everywhere else and get a typed error when saved.
pub trait Scalar: Float + ScalarOperand + Debug + Send + Sync + 'static {}

impl<T> Scalar for T where T: Float + ScalarOperand + Debug + Send + Sync + 'static {}

/// Converts an `f64` constant (a hyperparameter, a pixel scale) to `T`.
///
/// Panics only if `T` cannot represent ordinary finite `f64` values, which no float type
/// this crate is used with does.
#[inline]
pub(crate) fn cast<T: Scalar>(x: f64) -> T {
    T::from(x).unwrap_or_else(|| panic!("cannot represent {x} as {}", std::any::type_name::<T>()))
}

/// Converts a `T` to `f64` (exact for `f32` and `f64`).
#[inline]
pub(crate) fn to_f64<T: Scalar>(x: T) -> f64 {
    // Float: ToPrimitive; to_f64 never fails for f32/f64 (NaN and infinities included).
    x.to_f64().unwrap_or(f64::NAN)
}
