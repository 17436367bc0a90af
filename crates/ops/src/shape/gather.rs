//! `gather`: picks one entry per position along an axis (numpy's `take_along_axis`).
//!
//! With `index` of `x`'s rank and `x`'s extents on every axis but `axis` (where its extent
//! is free), `y = gather(x, axis, index)` has `index`'s shape and
//! `y[.., i, ..] = x[.., index[.., i, ..], ..]` along `axis`. (numpy also broadcasts
//! `index` against `x`; here the extents must match, so nothing is guessed.) Picking each
//! row's label logit is `logits.gather(1, &labels)` with `labels` of shape `[batch, 1]`.
//! Linear:
//! - VJP: `x̄ = scatter_add(ȳ)`: zeros of `x`'s shape with each `ȳ` entry added where it
//!   was read from ([`ScatterAdd`]),
//! - JVP: `ẏ = gather(ẋ, axis, index)`.

use std::sync::Arc;

use ndarray::{ArrayBase, ArrayD, Axis, Data, Dimension, Zip};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::ScatterAdd;
use crate::reduce::normalize_axis;

/// Gather along an axis; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Gather {
    axis: isize,
    index: Arc<ArrayD<usize>>,
    resolved: usize,
}

impl Gather {
    /// Gathers along `axis` (negative counts from the end) at `index`.
    pub fn new<S: Data<Elem = usize>, D: Dimension>(axis: isize, index: &ArrayBase<S, D>) -> Self {
        Gather {
            axis,
            index: Arc::new(index.to_owned().into_dyn()),
            resolved: 0,
        }
    }

    pub(crate) fn shared(axis: usize, index: Arc<ArrayD<usize>>) -> Self {
        Gather {
            axis: axis as isize,
            index,
            resolved: axis,
        }
    }
}

/// Checks that `index` fits an array of `shape` along `axis`: same rank, same extents off
/// the axis, every entry below the axis's extent. Returns the resolved axis.
pub(crate) fn check_index(
    index: &ArrayD<usize>,
    shape: &[usize],
    axis: isize,
) -> Result<usize, String> {
    let a = normalize_axis(axis, shape.len())?;
    let fits = index.ndim() == shape.len()
        && index
            .shape()
            .iter()
            .zip(shape)
            .enumerate()
            .all(|(i, (&k, &d))| i == a || k == d);
    if !fits {
        return Err(format!(
            "an index of shape {:?} does not fit shape {shape:?} along axis {axis} (same rank \
             and extents except along the axis)",
            index.shape()
        ));
    }
    match index.iter().find(|&&i| i >= shape[a]) {
        Some(i) => Err(format!(
            "index {i} is out of range for axis {axis} of extent {}",
            shape[a]
        )),
        None => Ok(a),
    }
}

impl<T: Float> Rule<T> for Gather {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("axis", self.axis.to_string()),
            ("index_shape", format!("{:?}", self.index.shape())),
        ]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let a = check_index(&self.index, x.shape(), self.axis)?;
        self.resolved = a;
        let mut out = ArrayD::zeros(self.index.raw_dim());
        if out.is_empty() {
            // An empty index may still have 2^40 empty lanes (shape `[2^40, 0]`): visiting
            // them would hang for nothing.
            return Ok(Tensor::from_array(out));
        }
        let view = x.view();
        Zip::from(out.lanes_mut(Axis(a)))
            .and(self.index.lanes(Axis(a)))
            .and(view.lanes(Axis(a)))
            .for_each(|mut out, index, x| {
                for (o, &i) in out.iter_mut().zip(index) {
                    *o = x[i];
                }
            });
        Ok(Tensor::from_array(out))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let scatter = ScatterAdd::shared(self.resolved, self.index.clone(), &cx.input_shape(0));
        Cotangents::from([Some(Val::apply(scatter, &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        Some(Val::apply(
            Gather::shared(self.resolved, self.index.clone()),
            &[t],
        ))
    }
    fn saved_bytes(&self) -> usize {
        self.index.len() * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ndarray::{ArrayD, IxDyn, array};
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
        let labels = array![[2usize], [0]];
        assert_eq!(
            x.gather(1, &labels).array(),
            array![[3.0], [4.0]].into_dyn()
        );
        let idx = array![[1usize, 0, 1], [0, 0, 1], [1, 1, 1]];
        assert_eq!(
            x.gather(0, &idx).array(),
            array![[4.0, 2.0, 6.0], [1.0, 2.0, 6.0], [4.0, 5.0, 6.0]].into_dyn()
        );
        let g = tape.grad(x.gather(0, &idx).sum_all(), &[x]).unwrap();
        assert_eq!(g[0], array![[1.0, 2.0, 0.0], [2.0, 1.0, 3.0]].into_dyn());
    }

    #[test]
    fn bad_index_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3]))
                    .gather(1, &array![[3usize], [0]]);
            },
            &["gather", "[2, 3]", "index 3", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3]))
                    .gather(1, &array![[0usize], [0], [0]]);
            },
            &["gather", "[2, 3]", "[3, 1]", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3]))
                    .gather(0, &array![0usize, 1]);
            },
            &["gather", "[2, 3]", "[2]", file!()],
        );
    }

    /// An array, an axis, and an index array fitting it (free extent along the axis).
    pub(crate) fn gathering() -> impl Strategy<Value = (ArrayD<f64>, usize, ArrayD<usize>)> {
        array_any(3, 4, -2.0, 2.0)
            .prop_filter("at least one axis", |x| x.ndim() > 0)
            .prop_flat_map(|x| {
                let n = x.ndim();
                (Just(x), 0..n, 1..5usize).prop_flat_map(|(x, a, k)| {
                    let mut shape = x.shape().to_vec();
                    let extent = shape[a];
                    shape[a] = k;
                    let len = shape.iter().product::<usize>();
                    let index = prop::collection::vec(0..extent, len).prop_map(move |v| {
                        ArrayD::from_shape_vec(IxDyn(&shape), v).expect("len elements")
                    });
                    (Just(x), Just(a), index)
                })
            })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, axis, index) in gathering()) {
            let i = index.clone();
            check(&x, move |x| x.gather(axis as isize, &i))?;
            check_squared(&x, move |x| x.gather(axis as isize - x.ndim() as isize, &index))?;
        }
    }
}
