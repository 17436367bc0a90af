//! `squeeze` and `unsqueeze`: remove or insert one axis of extent 1.
//!
//! Both are reshapes that keep every element, so
//! - VJP: `x̄ = reshape(ȳ, shape(x))`,
//! - JVP: `ẏ = reshape(ẋ, shape(y))`.
//!
//! `squeeze(axis)` insists that the axis has extent 1 (PyTorch silently does nothing
//! otherwise; numpy raises, as here). `unsqueeze(axis)` takes an axis of the *output*,
//! in `-(ndim+1) ..= ndim`, so `unsqueeze(-1)` appends an axis.

use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Shape, Tensor, Val};

use super::reshape::reshaped;
use super::reshape_exact;
use crate::reduce::normalize_axis;

/// Removes an axis of extent 1; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Squeeze {
    axis: isize,
    out: Shape,
}

impl Squeeze {
    /// Removes `axis` (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        Squeeze {
            axis,
            out: Shape::new(),
        }
    }
}

impl<T: Float> Rule<T> for Squeeze {
    fn name(&self) -> &'static str {
        "squeeze"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let a = normalize_axis(self.axis, x.ndim())?;
        if x.shape()[a] != 1 {
            return Err(format!(
                "axis {} has extent {}, not 1",
                self.axis,
                x.shape()[a]
            ));
        }
        self.out = x
            .shape()
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, _)| i != a)
            .map(|(_, d)| d)
            .collect();
        reshaped(x, &self.out)
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(reshape_exact(g, &cx.input_shape(0)))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| reshape_exact(t, &self.out))
    }
}

/// Inserts an axis of extent 1; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Unsqueeze {
    axis: isize,
    out: Shape,
}

impl Unsqueeze {
    /// Inserts an axis at position `axis` of the output (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        Unsqueeze {
            axis,
            out: Shape::new(),
        }
    }
}

impl<T: Float> Rule<T> for Unsqueeze {
    fn name(&self) -> &'static str {
        "unsqueeze"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let a = normalize_axis(self.axis, x.ndim() + 1)?;
        self.out = Shape::from_slice(x.shape());
        self.out.insert(a, 1);
        reshaped(x, &self.out)
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(reshape_exact(g, &cx.input_shape(0)))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| reshape_exact(t, &self.out))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::shape::ShapeOps;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0]]);
        assert_eq!(x.squeeze(0).array(), array![1.0, 2.0, 3.0].into_dyn());
        assert_eq!(x.squeeze(-2).shape().as_slice(), &[3]);
        assert_eq!(x.unsqueeze(-1).shape().as_slice(), &[1, 3, 1]);
        assert_eq!(x.unsqueeze(1).shape().as_slice(), &[1, 1, 3]);
        assert_eq!(tape.var(2.0).unsqueeze(0).array(), array![2.0].into_dyn());
        assert_eq!(tape.var(array![2.0]).squeeze(0).item(), 2.0);
    }

    #[test]
    fn bad_axes_panic() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).squeeze(0);
            },
            &["squeeze", "[2, 3]", "extent 2", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).unsqueeze(4);
            },
            &["unsqueeze", "[2, 3]", "axis 4", file!()],
        );
    }

    /// An array with a unit axis somewhere, and that axis (maybe negative).
    fn with_unit_axis() -> impl Strategy<Value = (ArrayD<f64>, isize)> {
        (
            array_any(2, 4, -2.0, 2.0),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(x, pick, neg)| {
                let a = pick.index(x.ndim() + 1);
                let n = x.ndim() as isize + 1;
                let x = x.insert_axis(ndarray::Axis(a));
                (x, if neg { a as isize - n } else { a as isize })
            })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn squeeze_gradients((x, axis) in with_unit_axis()) {
            check(&x, move |x| x.squeeze(axis))?;
            check_squared(&x, move |x| x.squeeze(axis))?;
        }

        #[test]
        fn unsqueeze_gradients(x in array_any(3, 4, -2.0, 2.0), pick in any::<prop::sample::Index>()) {
            let n = x.ndim() + 1;
            let axis = pick.index(2 * n) as isize - n as isize;
            check(&x, move |x| x.unsqueeze(axis))?;
            check_squared(&x, move |x| x.unsqueeze(axis))?;
        }
    }
}
