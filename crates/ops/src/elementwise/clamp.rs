//! `clamp`: limit values to an interval.

use retrograd_tape::{Float, Val};

use super::unary::{UnaryFn, mask_of};

/// `y = min(max(x, lo), hi)`, elementwise; NaN stays NaN. `lo > hi` (or a NaN bound) is
/// rejected with the op's shape-and-line panic rather than silently resolved.
///
/// - VJP: `x̄ = ȳ ⊙ [lo < x < hi]`; JVP likewise. The mask is a constant computed from
///   `x` (exact to second order).
/// - At the bounds `x = lo` and `x = hi` the gradient is **0**, as PyTorch's `clamp` with
///   scalar bounds and JAX's `lax.clamp` give (checked against both by
///   `tests/tests/kinks.rs`). Any value in `[0, 1]` is a valid subgradient there, and
///   frameworks differ (`jnp.clip` and PyTorch's `clamp` with tensor bounds give ½, which
///   `x.maximum(&lo).minimum(&hi)` reproduces).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamp<T> {
    /// The lower bound.
    pub lo: T,
    /// The upper bound.
    pub hi: T,
}

impl<T: Float> UnaryFn<T> for Clamp<T> {
    fn name(&self) -> &'static str {
        "clamp"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("lo", self.lo.to_string()), ("hi", self.hi.to_string())]
    }
    fn validate(&self) -> Result<(), String> {
        if self.lo <= self.hi {
            Ok(())
        } else {
            Err(format!(
                "the bounds must satisfy lo <= hi, got lo = {}, hi = {}",
                self.lo, self.hi
            ))
        }
    }
    fn eval(&self, x: T) -> T {
        if x < self.lo {
            self.lo
        } else if x > self.hi {
            self.hi
        } else {
            x
        }
    }
    fn chain<'t>(&self, x: &Val<'t, T>, _y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        let (lo, hi) = (self.lo, self.hi);
        v * &mask_of(x, |x| {
            if lo < x && x < hi {
                T::one()
            } else {
                T::zero()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::*;
    use proptest::prelude::*;
    use retrograd_tape::strategies::config;

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check(x in avoiding(-3.0, 3.0, vec![-1.0, 0.5])) {
            check(&x, |x| x.clamp(-1.0, 0.5))?;
        }
    }

    #[test]
    fn exact_values() {
        assert_points(
            |x| x.clamp(-1.0, 0.5),
            &[
                (0.0, 0.0, 1.0),
                (-2.0, -1.0, 0.0),
                (2.0, 0.5, 0.0),
                // At the bounds: 0, as PyTorch's clamp with scalar bounds.
                (-1.0, -1.0, 0.0),
                (0.5, 0.5, 0.0),
            ],
        );
        let tape = Tape::<f64>::new();
        assert!(tape.var(f64::NAN).clamp(0.0, 1.0).item().is_nan());
    }

    #[test]
    fn reversed_bounds_are_rejected() {
        let msg = panic_message(|| {
            let tape = Tape::<f64>::new();
            let _ = tape.var(ndarray::array![1.0, 2.0]).clamp(1.0, 0.0);
        });
        assert!(
            msg.contains("clamp") && msg.contains("lo <= hi") && msg.contains(file!()),
            "{msg}"
        );
    }

    #[test]
    fn f32_forward() {
        assert_f32_matches(
            |x| x.clamp(-1.0, 1.0),
            |x| x.clamp(-1.0, 1.0),
            &[-2.0, -0.5, 0.5, 3.0],
        );
    }
}
