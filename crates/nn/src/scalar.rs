//! The element-type bound shared by everything in this crate.
//!
//! Every generic item in retrograd-nn is bounded by [`Scalar`] and nothing else, so the
//! bound lives in exactly one place. It is the engine's own [`Float`] (`f32` or `f64`), so
//! a parameter store, a model and a tape always agree on what an element is.

use retrograd_tape::Float;

/// A floating-point element type usable for parameters, gradients, data and tapes: `f32`
/// or `f64`.
///
/// This is a trait alias for the engine's [`Float`]: it has no methods of its own and is
/// implemented for every type that implements `Float`.
pub trait Scalar: Float {}

impl<T: Float> Scalar for T {}

/// Converts an `f64` constant (a hyperparameter, a pixel scale) to `T`, rounding to the
/// nearest representable value.
#[inline]
pub(crate) fn cast<T: Scalar>(x: f64) -> T {
    T::of(x)
}

/// Converts a `T` to `f64` (exact for `f32` and `f64`).
#[inline]
pub(crate) fn to_f64<T: Scalar>(x: T) -> f64 {
    x.as_f64()
}
