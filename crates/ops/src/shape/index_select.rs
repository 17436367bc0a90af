//! `index_select`: the entries at a list of indices along one axis.
//!
//! `y = index_select(x, axis, idx)` has `y[.., k, ..] = x[.., idx[k], ..]`; indices may
//! repeat and come in any order (an embedding lookup is `table.index_select(0, &tokens)`).
//! Linear:
//! - VJP: `x̄ = index_add(ȳ)`: zeros of `x`'s shape with `ȳ[.., k, ..]` added at
//!   `idx[k]` (repeated indices accumulate) ([`IndexAdd`]),
//! - JVP: `ẏ = index_select(ẋ, axis, idx)`.

use std::sync::Arc;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::IndexAdd;
use crate::reduce::normalize_axis;

/// Selection along an axis; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct IndexSelect {
    axis: isize,
    indices: Arc<[usize]>,
    resolved: usize,
}

impl IndexSelect {
    /// Selects `indices` along `axis` (negative counts from the end).
    pub fn new(axis: isize, indices: &[usize]) -> Self {
        IndexSelect {
            axis,
            indices: indices.into(),
            resolved: 0,
        }
    }

    pub(crate) fn shared(axis: usize, indices: Arc<[usize]>) -> Self {
        IndexSelect {
            axis: axis as isize,
            indices,
            resolved: axis,
        }
    }
}

/// Checks that every index is below `extent`.
pub(crate) fn check_indices(indices: &[usize], extent: usize, axis: isize) -> Result<(), String> {
    match indices.iter().find(|&&i| i >= extent) {
        Some(i) => Err(format!(
            "index {i} is out of range for axis {axis} of extent {extent}"
        )),
        None => Ok(()),
    }
}

impl<T: Float> Rule<T> for IndexSelect {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("axis", self.axis.to_string()),
            ("indices", format!("{:?}", &self.indices[..])),
        ]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        self.resolved = normalize_axis(self.axis, x.ndim())?;
        check_indices(&self.indices, x.shape()[self.resolved], self.axis)?;
        let mut out_shape = x.shape().to_vec();
        out_shape[self.resolved] = self.indices.len();
        retrograd_tape::checked_len::<T>(&out_shape)?;
        Ok(Tensor::from_array(
            x.view().select(ndarray::Axis(self.resolved), &self.indices),
        ))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let extent = cx.input_shape(0)[self.resolved];
        let add = IndexAdd::shared(self.resolved, self.indices.clone(), extent);
        Cotangents::from([Some(Val::apply(add, &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        let select = IndexSelect::shared(self.resolved, self.indices.clone());
        Some(Val::apply(select, &[t]))
    }
    fn saved_bytes(&self) -> usize {
        std::mem::size_of_val(&self.indices[..])
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
            x.index_select(1, &[2, 0, 2]).array(),
            array![[3.0, 1.0, 3.0], [6.0, 4.0, 6.0]].into_dyn()
        );
        assert_eq!(
            x.index_select(-2, &[1]).array(),
            array![[4.0, 5.0, 6.0]].into_dyn()
        );
        assert_eq!(x.index_select(0, &[]).shape().as_slice(), &[0, 3]);
        // Repeated indices accumulate in the gradient.
        let g = tape
            .grad(x.index_select(1, &[2, 0, 2]).sum_all(), &[x])
            .unwrap();
        assert_eq!(g[0], array![[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]].into_dyn());
    }

    #[test]
    fn out_of_range_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).index_select(1, &[0, 3]);
            },
            &["index_select", "[2, 3]", "index 3", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).index_select(-3, &[0]);
            },
            &["index_select", "[2, 3]", "axis -3", file!()],
        );
    }

    /// A non-scalar array, an axis of it, and indices (with repeats) along that axis.
    fn selection() -> impl Strategy<Value = (ArrayD<f64>, isize, Vec<usize>)> {
        array_any(3, 4, -2.0, 2.0)
            .prop_filter("at least one axis", |x| x.ndim() > 0)
            .prop_flat_map(|x| {
                let n = x.ndim();
                (Just(x), 0..n).prop_flat_map(move |(x, a)| {
                    let extent = x.shape()[a];
                    let neg = a as isize - n as isize;
                    (
                        Just(x),
                        prop_oneof![Just(a as isize), Just(neg)],
                        prop::collection::vec(0..extent, 0..5),
                    )
                })
            })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, axis, idx) in selection()) {
            let i = idx.clone();
            check(&x, move |x| x.index_select(axis, &i))?;
            check_squared(&x, move |x| x.index_select(axis, &idx))?;
        }
    }
}
