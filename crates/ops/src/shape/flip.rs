//! `flip`: the elements along one axis in reverse order (numpy's `np.flip`, `x[::-1]`).
//!
//! A permutation of the elements that is its own inverse, so
//! - VJP: `x̄ = flip(ȳ)`,
//! - JVP: `ẏ = flip(ẋ)`.
//!
//! Reversal is only ever asked for by name: a slice step is always positive.

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};

use super::ShapeOps;
use crate::reduce::normalize_axis;

/// Reverses one axis; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Flip {
    axis: isize,
    /// The axis resolved against the input in `forward`.
    resolved: usize,
}

impl Flip {
    /// Reverses `axis` (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        Flip { axis, resolved: 0 }
    }
}

impl<T: Float> Rule<T> for Flip {
    fn name(&self) -> &'static str {
        "flip"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        self.resolved = normalize_axis(self.axis, x[0].ndim())?;
        let mut view = x[0].view();
        view.invert_axis(ndarray::Axis(self.resolved));
        Ok(Tensor::from_array(view.to_owned()))
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(g.flip(self.resolved as isize))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| t.flip(self.resolved as isize))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::reduce::ReduceOps;
    use crate::shape::ShapeOps;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(
            x.flip(-1).array(),
            array![[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]].into_dyn()
        );
        assert_eq!(
            x.flip(0).array(),
            array![[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]].into_dyn()
        );
        let w = tape.constant(array![[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]);
        let g = tape.grad((x.flip(1) * w).sum_all(), &[x]).unwrap();
        assert_eq!(g[0], array![[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]].into_dyn());
    }

    #[test]
    fn axis_out_of_range_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).flip(2);
            },
            &["flip", "[2, 3]", "axis 2", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients(x in array_any(3, 3, -2.0, 2.0), axis in -3isize..3) {
            // Every axis of the drawn rank, negative or not (0-d values have none).
            prop_assume!(x.ndim() > 0);
            let axis = axis.rem_euclid(x.ndim() as isize) - if axis < 0 { x.ndim() as isize } else { 0 };
            check(&x, move |x| x.flip(axis))?;
            check_squared(&x, move |x| x.flip(axis))?;
        }
    }
}
