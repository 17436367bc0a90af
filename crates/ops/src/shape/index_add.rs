//! `index_add`: adds slices of a value into zeros at a list of indices along one axis.
//!
//! The transpose of [`IndexSelect`] (its VJP), and a primitive so that
//! selection is differentiable to any order: `y = index_add(x, axis, idx, n)` is zeros with
//! extent `n` along `axis`, plus `x[.., k, ..]` added at `y[.., idx[k], ..]` for every `k`
//! (repeated indices accumulate). Linear:
//! - VJP: `x̄ = index_select(ȳ, axis, idx)`,
//! - JVP: `ẏ = index_add(ẋ, axis, idx, n)`.

use std::sync::Arc;

use ndarray::{ArrayD, Axis, IxDyn};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::IndexSelect;
use super::index_select::check_indices;
use crate::reduce::normalize_axis;

/// Scatter-add along an axis; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct IndexAdd {
    axis: isize,
    indices: Arc<[usize]>,
    extent: usize,
    resolved: usize,
}

impl IndexAdd {
    /// Adds input entry `k` along `axis` at `indices[k]` of an output of extent `extent`
    /// along that axis.
    pub fn new(axis: isize, indices: &[usize], extent: usize) -> Self {
        IndexAdd {
            axis,
            indices: indices.into(),
            extent,
            resolved: 0,
        }
    }

    pub(crate) fn shared(axis: usize, indices: Arc<[usize]>, extent: usize) -> Self {
        IndexAdd {
            axis: axis as isize,
            indices,
            extent,
            resolved: axis,
        }
    }
}

impl<T: Float> Rule<T> for IndexAdd {
    fn name(&self) -> &'static str {
        "index_add"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("axis", self.axis.to_string()),
            ("indices", format!("{:?}", &self.indices[..])),
            ("extent", self.extent.to_string()),
        ]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let a = normalize_axis(self.axis, x.ndim())?;
        self.resolved = a;
        if x.shape()[a] != self.indices.len() {
            return Err(format!(
                "axis {} has extent {} but {} indices were given",
                self.axis,
                x.shape()[a],
                self.indices.len()
            ));
        }
        check_indices(&self.indices, self.extent, self.axis)?;
        let mut shape = x.shape().to_vec();
        shape[a] = self.extent;
        let mut out = ArrayD::zeros(IxDyn(&shape));
        let view = x.view();
        for (k, &i) in self.indices.iter().enumerate() {
            let mut lane = out.index_axis_mut(Axis(a), i);
            lane += &view.index_axis(Axis(a), k);
        }
        Ok(Tensor::from_array(out))
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let select = IndexSelect::shared(self.resolved, self.indices.clone());
        Cotangents::from([Some(Val::apply(select, &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        let add = IndexAdd::shared(self.resolved, self.indices.clone(), self.extent);
        Some(Val::apply(add, &[t]))
    }
    fn saved_bytes(&self) -> usize {
        std::mem::size_of_val(&self.indices[..])
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::{Tape, Var};

    use super::IndexAdd;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let y = Var::apply(IndexAdd::new(1, &[2, 0, 2], 4), &[&x]);
        assert_eq!(
            y.array(),
            array![[2.0, 0.0, 4.0, 0.0], [5.0, 0.0, 10.0, 0.0]].into_dyn()
        );
    }

    #[test]
    fn bad_input_panics() {
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2, 3]));
                Var::apply(IndexAdd::new(1, &[0, 1], 4), &[&x]);
            },
            &["index_add", "[2, 3]", "2 indices", file!()],
        );
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2]));
                Var::apply(IndexAdd::new(0, &[0, 5], 4), &[&x]);
            },
            &["index_add", "[2]", "index 5", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients(
            x in array_any(3, 4, -2.0, 2.0).prop_filter("at least one axis", |x| x.ndim() > 0),
            axis in any::<prop::sample::Index>(),
            extent in 1..5usize,
            picks in prop::collection::vec(any::<prop::sample::Index>(), 4),
        ) {
            let a = axis.index(x.ndim());
            let idx: Vec<usize> = (0..x.shape()[a]).map(|k| picks[k].index(extent)).collect();
            let i = idx.clone();
            check(&x, move |x| Var::apply(IndexAdd::new(a as isize, &i, extent), &[&x]))?;
            check_squared(&x, move |x| Var::apply(IndexAdd::new(a as isize, &idx, extent), &[&x]))?;
        }
    }
}
