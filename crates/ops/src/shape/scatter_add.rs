//! `scatter_add`: adds each entry of a value into zeros at the position an index names
//! along an axis.
//!
//! The transpose of [`Gather`] (its VJP), and a primitive so that gathers
//! are differentiable to any order: with `index` of the input's shape,
//! `y = scatter_add(x, axis, index, shape)` is `zeros(shape)` plus `x[.., i, ..]` added at
//! `y[.., index[.., i, ..], ..]` along `axis` (repeats accumulate). Linear:
//! - VJP: `x̄ = gather(ȳ, axis, index)`,
//! - JVP: `ẏ = scatter_add(ẋ, axis, index, shape)`.

use std::sync::Arc;

use ndarray::{ArrayBase, ArrayD, Axis, Data, Dimension, IxDyn, Zip};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Shape, Tensor, Val};

use super::Gather;
use super::gather::check_index;

/// Scatter-add along an axis; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ScatterAdd {
    axis: isize,
    index: Arc<ArrayD<usize>>,
    shape: Shape,
    resolved: usize,
}

impl ScatterAdd {
    /// Adds input entries along `axis` at the positions `index` (of the input's shape)
    /// names, into zeros of `shape`.
    pub fn new<S: Data<Elem = usize>, D: Dimension>(
        axis: isize,
        index: &ArrayBase<S, D>,
        shape: &[usize],
    ) -> Self {
        ScatterAdd {
            axis,
            index: Arc::new(index.to_owned().into_dyn()),
            shape: Shape::from_slice(shape),
            resolved: 0,
        }
    }

    pub(crate) fn shared(axis: usize, index: Arc<ArrayD<usize>>, shape: &[usize]) -> Self {
        ScatterAdd {
            axis: axis as isize,
            index,
            shape: Shape::from_slice(shape),
            resolved: axis,
        }
    }
}

impl<T: Float> Rule<T> for ScatterAdd {
    fn name(&self) -> &'static str {
        "scatter_add"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("axis", self.axis.to_string()),
            ("index_shape", format!("{:?}", self.index.shape())),
            ("shape", format!("{:?}", self.shape.as_slice())),
        ]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let a = check_index(&self.index, &self.shape, self.axis)?;
        self.resolved = a;
        if x.shape() != self.index.shape() {
            return Err(format!(
                "the value must have the index's shape {:?}",
                self.index.shape()
            ));
        }
        let mut out = ArrayD::zeros(IxDyn(&self.shape));
        if self.index.is_empty() {
            // Nothing to add; an empty output's lanes (2^40 of them for `[2^40, 0]`) are
            // not worth visiting.
            return Ok(Tensor::from_array(out));
        }
        let view = x.view();
        Zip::from(out.lanes_mut(Axis(a)))
            .and(self.index.lanes(Axis(a)))
            .and(view.lanes(Axis(a)))
            .for_each(|mut out, index, x| {
                for (&i, &v) in index.iter().zip(x) {
                    out[i] += v;
                }
            });
        Ok(Tensor::from_array(out))
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let gather = Gather::shared(self.resolved, self.index.clone());
        Cotangents::from([Some(Val::apply(gather, &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        let scatter = ScatterAdd::shared(self.resolved, self.index.clone(), &self.shape);
        Some(Val::apply(scatter, &[t]))
    }
    fn saved_bytes(&self) -> usize {
        self.index.len() * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::{Tape, Var};

    use super::ScatterAdd;
    use crate::shape::gather::tests::gathering;
    use crate::testing::{assert_panics_with, check, check_squared};

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
        let index = array![[2usize, 2], [0, 1]];
        let y = Var::apply(ScatterAdd::new(1, &index, &[2, 3]), &[&x]);
        assert_eq!(
            y.array(),
            array![[0.0, 0.0, 3.0], [3.0, 4.0, 0.0]].into_dyn()
        );
    }

    #[test]
    fn mismatched_value_panics() {
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![3]));
                Var::apply(ScatterAdd::new(0, &array![0usize, 1], &[2]), &[&x]);
            },
            &["scatter_add", "[3]", "[2]", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        /// Scatter a value of the index's shape back into the gathered array's shape.
        #[test]
        fn gradients((x, axis, index) in gathering()) {
            let value = index.mapv(|i| i as f64 * 0.5 - 0.7);
            let shape = x.shape().to_vec();
            let (i, s) = (index.clone(), shape.clone());
            check(&value, move |v| Var::apply(ScatterAdd::new(axis as isize, &i, &s), &[&v]))?;
            check_squared(&value, move |v| {
                Var::apply(ScatterAdd::new(axis as isize, &index, &shape), &[&v])
            })?;
        }
    }
}
