//! `at`: one element of a tensor, as a scalar; and its adjoint `place`, a scalar put at one
//! index of a tensor of zeros.
//!
//! - `at(x, i)`: VJP `x̄ = place(ȳ, i, shape(x))`, JVP `ẏ = at(ẋ, i)`;
//! - `place(s, i, shape)`: VJP `s̄ = at(ȳ, i)`, JVP `ẏ = place(ṡ, i, shape)`.
//!
//! Both are linear, and each is the other's adjoint, so derivatives of any order flow. An
//! index has one entry per axis (an empty index for a scalar); an entry out of range is an
//! error naming the axis and its extent.

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Shape, Tensor, Val, batch};

/// The element of `x` at `index`, a scalar; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    index: Shape,
}

impl At {
    /// The element at `index` (one entry per axis).
    pub fn new(index: &[usize]) -> Self {
        At {
            index: Shape::from_slice(index),
        }
    }
}

/// A scalar placed at `index` of a tensor of zeros of `shape`: the adjoint of [`At`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    index: Shape,
    shape: Shape,
}

/// The row-major offset of `index` in `shape`, or why it is not an index of it.
fn offset(index: &[usize], shape: &[usize]) -> Result<usize, String> {
    if index.len() != shape.len() {
        return Err(format!(
            "the index {index:?} has {} entries for a value of {} axes",
            index.len(),
            shape.len()
        ));
    }
    let mut flat = 0;
    for (axis, (&i, &n)) in index.iter().zip(shape).enumerate() {
        if i >= n {
            return Err(format!(
                "index {i} is out of range for axis {axis} of extent {n}"
            ));
        }
        flat = flat * n + i;
    }
    Ok(flat)
}

/// Element `flat` (row-major) of `t`.
fn element<T: Float>(t: &Tensor<T>, flat: usize) -> T {
    match t {
        Tensor::Scalar(x) => *x,
        Tensor::Array(a) => a.iter().nth(flat).copied().unwrap_or_else(T::zero),
    }
}

impl<T: Float> Rule<T> for At {
    fn name(&self) -> &'static str {
        "at"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("index", format!("{:?}", self.index.as_slice()))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let flat = offset(&self.index, x.shape())?;
        let value = match x.view().as_slice() {
            Some(s) => s[flat],
            None => element(x, flat),
        };
        Ok(Tensor::scalar(value))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let place = Place {
            index: self.index.clone(),
            shape: cx.input_shape(0),
        };
        Cotangents::one(Val::apply(place, &[g]))
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| Val::apply(self.clone(), &[t]))
    }
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        k: usize,
    ) -> Option<Tensor<T>> {
        let shape = cx.input_shape(0);
        let flat = offset(&self.index, &shape).ok()?;
        let len = shape.iter().product::<usize>();
        t[0].as_ref().map(|t| {
            let t = batch::reshape(t.clone(), &[k, len]);
            Tensor::from_array(t.view().index_axis(ndarray::Axis(1), flat).to_owned())
        })
    }
}

impl<T: Float> Rule<T> for Place {
    fn name(&self) -> &'static str {
        "place"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("index", format!("{:?}", self.index.as_slice())),
            ("shape", format!("{:?}", self.shape.as_slice())),
        ]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let Some(value) = x[0].try_item().ok().filter(|_| x[0].ndim() == 0) else {
            return Err(format!(
                "place takes a scalar, not a value of shape {:?}",
                x[0].shape()
            ));
        };
        let flat = offset(&self.index, &self.shape)?;
        let mut out = vec![T::zero(); self.shape.iter().product()];
        out[flat] = value;
        Ok(Tensor::from_vec(&self.shape, out))
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::one(Val::apply(At::new(&self.index), &[g]))
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| Val::apply(self.clone(), &[t]))
    }
}

/// `x.at(index)` on any operand (see [`ShapeOps::at`](super::ShapeOps::at)).
#[track_caller]
pub(crate) fn at<'t, T: Float, X: Operand<'t, T>>(x: &X, index: &[usize]) -> X {
    X::apply(At::new(index), &[x])
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;

    use crate::prelude::*;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn picks_one_element_and_its_gradient_is_one_hot() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let e = x.at(&[1, 2]);
        assert_eq!(e.item(), 6.0);
        assert!(e.shape().is_empty());
        let g = tape.grad(e * e, &[x]).unwrap();
        assert_eq!(g[0], array![[0.0, 0.0, 0.0], [0.0, 0.0, 12.0]].into_dyn());
        // A scalar's only element.
        assert_eq!(tape.var(7.0).at(&[]).item(), 7.0);
    }

    #[test]
    fn a_bad_index_panics_naming_the_op_the_shape_and_the_line() {
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2, 3]));
                x.at(&[2, 0]);
            },
            &["at", "[2, 3]", "axis 0 of extent 2", file!()],
        );
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2, 3]));
                x.at(&[1]);
            },
            &["at", "1 entries for a value of 2 axes", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        /// Every element of random arrays, to second order (through `place` and back).
        #[test]
        fn gradients(x in array_any(3, 4, -2.0, 2.0), pick in any::<prop::sample::Index>()) {
            let index: Vec<usize> = {
                let mut flat = pick.index(x.len().max(1));
                let mut idx = vec![0; x.ndim()];
                for (axis, &n) in x.shape().iter().enumerate().rev() {
                    idx[axis] = flat % n;
                    flat /= n;
                }
                idx
            };
            prop_assume!(!x.is_empty());
            check(&x, |v| v.at(&index) * v.at(&index))?;
            check_squared(&x, |v| v.at(&index))?;
        }
    }
}
