//! Named parameters that outlive tapes.
//!
//! A training step makes a fresh tape, enters each parameter as a leaf, and hands the
//! gradients back by name. The parameters themselves live here, in a [`ParamStore`], and
//! the gradients of one step travel as [`ParamGradients`] by the same names, with the same
//! shapes. Optimisers ([`crate::optim`]) read a `ParamGradients` and update a store;
//! checkpoints ([`crate::checkpoint`]) save and restore one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ndarray::{Array, ArrayD, Dimension};
use retrograd_tape::Tensor;

use crate::gradients::ParamGradients;
use crate::scalar::Scalar;

/// Why [`ParamStore::set`] refused a value; the store is unchanged.
///
/// `{:?}` prints the same text as `{}`, so that the message reaches the user when the error
/// ends `main` through `?`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store has no parameter of this name.
    UnknownName {
        /// The name given.
        name: String,
        /// The names the store has, in order.
        known: Vec<String>,
    },
    /// The value's shape differs from the parameter's.
    ShapeMismatch {
        /// The parameter.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The value's shape.
        found: Vec<usize>,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::UnknownName { name, known } => {
                write!(f, "no parameter {name:?} in the store (it has ")?;
                for (i, k) in known.iter().enumerate() {
                    write!(f, "{}{k:?}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "); `insert` adds a new one")
            }
            StoreError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "parameter {name:?} has shape {expected:?}, the value given has shape {found:?}"
            ),
        }
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for StoreError {}

/// Named parameters (`"encoder.0.weight"`), kept in insertion order.
///
/// Insertion order is the order a model declared its parameters in, so iteration, printing
/// and checkpoint listings are stable and readable. Lookups by name are O(1).
///
/// Values are shared, not copied, with the tapes they enter ([`ParamStore::tensors`]) and
/// with clones of the store: each is an `Arc`-held array, copied only when it is written
/// ([`get_mut`](ParamStore::get_mut), [`iter_mut`](ParamStore::iter_mut), what optimisers
/// call) while something else still shares it. A training step therefore enters the
/// parameters without a copy, and the optimiser updates them in place once the step's tape
/// is cleared.
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use retrograd_nn::ParamStore;
///
/// let mut store = ParamStore::<f32>::new();
/// store.insert("layer1.weight", ArrayD::zeros(IxDyn(&[3, 2])));
/// store.insert("layer1.bias", ArrayD::zeros(IxDyn(&[3])));
/// assert_eq!(store.names().collect::<Vec<_>>(), ["layer1.weight", "layer1.bias"]);
/// assert_eq!(store.num_elements(), 9);
/// ```
#[derive(Clone, PartialEq)]
pub struct ParamStore<T> {
    /// Names in insertion order; `values[i]` belongs to `names[i]`.
    names: Vec<String>,
    values: Vec<Arc<ArrayD<T>>>,
    /// Name -> position in `names`/`values`.
    index: HashMap<String, usize>,
}

impl<T> Default for ParamStore<T> {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            values: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Scalar> ParamStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter, or replaces the value of an existing one in place (keeping its
    /// position), returning the old value as `HashMap::insert` does.
    pub fn insert(&mut self, name: impl Into<String>, value: ArrayD<T>) -> Option<ArrayD<T>> {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => Some(Arc::unwrap_or_clone(std::mem::replace(
                &mut self.values[i],
                Arc::new(value),
            ))),
            None => {
                self.index.insert(name.clone(), self.names.len());
                self.names.push(name);
                self.values.push(Arc::new(value));
                None
            }
        }
    }

    /// Replaces the value of the parameter `name`, which must exist with the same shape;
    /// returns the old value. This is how known weights go into a model: make the store
    /// with [`Module::init_store`](crate::Module::init_store), then `set` each weight. Unlike
    /// [`insert`](ParamStore::insert), which adds a parameter under any new name, a
    /// misspelt name or a wrong shape is refused (and nothing changes).
    ///
    /// ```
    /// use ndarray::array;
    /// use retrograd_nn::{Module, layers::Linear};
    ///
    /// let layer = Linear::new(2, 1);
    /// let mut store = Module::<f64>::init_store(&layer, 0);
    /// store.set("weight", array![[0.5, -0.5]])?;
    /// store.set("bias", array![1.0])?;
    /// let err = store.set("weights", array![[0.5, -0.5]]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"no parameter "weights" in the store (it has "weight", "bias"); `insert` adds a new one"#
    /// );
    /// assert!(store.set("bias", array![1.0, 2.0]).is_err());
    /// # Ok::<(), retrograd_nn::StoreError>(())
    /// ```
    pub fn set<D: Dimension>(
        &mut self,
        name: &str,
        value: Array<T, D>,
    ) -> Result<ArrayD<T>, StoreError> {
        let Some(&i) = self.index.get(name) else {
            return Err(StoreError::UnknownName {
                name: name.to_owned(),
                known: self.names.clone(),
            });
        };
        if self.values[i].shape() != value.shape() {
            return Err(StoreError::ShapeMismatch {
                name: name.to_owned(),
                expected: self.values[i].shape().to_vec(),
                found: value.shape().to_vec(),
            });
        }
        Ok(Arc::unwrap_or_clone(std::mem::replace(
            &mut self.values[i],
            Arc::new(value.into_dyn()),
        )))
    }

    /// The parameter called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&ArrayD<T>> {
        self.index.get(name).map(|&i| &*self.values[i])
    }

    /// The parameter called `name`, mutably, if there is one. The value is copied first
    /// if a tape or a clone of the store still shares it (copy on write), so writing here
    /// never changes what they see.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ArrayD<T>> {
        self.index
            .get(name)
            .map(|&i| Arc::make_mut(&mut self.values[i]))
    }

    /// Whether a parameter called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Parameter names in insertion order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &ArrayD<T>)> + '_ {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().map(|v| &**v))
    }

    /// `(name, value)` pairs in insertion order, values mutable (each copied first if
    /// something else shares it, as [`get_mut`](ParamStore::get_mut)).
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&str, &mut ArrayD<T>)> + '_ {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter_mut().map(Arc::make_mut))
    }

    /// `(name, value)` pairs in insertion order, each value as an engine [`Tensor`] that
    /// shares the store's buffer: what a training step enters on its tape, without a copy.
    ///
    /// ```
    /// use ndarray::{ArrayD, IxDyn};
    /// use retrograd_nn::ParamStore;
    ///
    /// let mut store = ParamStore::<f32>::new();
    /// store.insert("w", ArrayD::ones(IxDyn(&[2, 2])));
    /// let (_, t) = store.tensors().next().unwrap();
    /// assert_eq!(t.view().as_ptr(), store.get("w").unwrap().as_ptr());
    /// ```
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = (&str, Tensor<T>)> + '_ {
        self.names.iter().map(String::as_str).zip(
            self.values
                .iter()
                .map(|v| Tensor::from_shared(Arc::clone(v))),
        )
    }

    /// Number of parameters (tensors, not elements).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the store holds no parameters.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Total number of scalar elements over all parameters (the model's "parameter count").
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(|v| v.len()).sum()
    }

    /// Gradients holding zeros shaped like every parameter, in store order: a starting
    /// point for accumulating gradients over several micro-batches.
    pub fn zeros_like(&self) -> ParamGradients<T> {
        self.iter()
            .map(|(n, v)| (n, Tensor::zeros(v.shape())))
            .collect()
    }
}

impl<T: Scalar> fmt::Debug for ParamStore<T> {
    /// Lists names and shapes, not values: a store can hold millions of numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, v)| (n, v.shape())))
            .finish()
    }
}

impl<T: Scalar, S: Into<String>> FromIterator<(S, ArrayD<T>)> for ParamStore<T> {
    fn from_iter<I: IntoIterator<Item = (S, ArrayD<T>)>>(iter: I) -> Self {
        let mut store = Self::new();
        for (name, value) in iter {
            store.insert(name, value);
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn set_refuses_unknown_names_and_wrong_shapes_and_changes_nothing() {
        let mut s = ParamStore::<f64>::new();
        s.insert("0.weight", ArrayD::zeros(IxDyn(&[2, 3])));
        s.insert("0.bias", ArrayD::zeros(IxDyn(&[2])));
        let before = s.clone();
        let err = s.set("0.weigth", ArrayD::ones(IxDyn(&[2, 3]))).unwrap_err();
        assert!(matches!(&err, StoreError::UnknownName { name, .. } if name == "0.weigth"));
        assert_eq!(format!("{err:?}"), err.to_string());
        let err = s
            .set("0.bias", ndarray::arr1(&[1.0, 2.0, 3.0]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"parameter "0.bias" has shape [2], the value given has shape [3]"#
        );
        assert_eq!(s, before);
        assert!(s.len() == 2 && !s.contains("0.weigth"));
        let old = s.set("0.bias", ndarray::arr1(&[1.0, 2.0])).unwrap();
        assert_eq!(old, ArrayD::<f64>::zeros(IxDyn(&[2])));
        assert_eq!(
            s.get("0.bias").unwrap(),
            &ndarray::arr1(&[1.0, 2.0]).into_dyn()
        );
        assert_eq!(s.names().collect::<Vec<_>>(), ["0.weight", "0.bias"]);
    }

    #[test]
    fn keeps_insertion_order_and_replaces_in_place() {
        let mut s = ParamStore::<f64>::new();
        assert!(s.is_empty());
        s.insert("b", ArrayD::zeros(IxDyn(&[2])));
        s.insert("a", ArrayD::zeros(IxDyn(&[2, 3])));
        s.insert("c", ArrayD::zeros(IxDyn(&[])));
        let old = s.insert("b", ArrayD::ones(IxDyn(&[4])));
        assert_eq!(old.map(|o| o.len()), Some(2));
        assert_eq!(s.names().collect::<Vec<_>>(), ["b", "a", "c"]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.num_elements(), 4 + 6 + 1);
        assert_eq!(s.get("b").map(|v| v.shape().to_vec()), Some(vec![4]));
        assert!(s.get("z").is_none());
        s.get_mut("c").expect("c was inserted").fill(7.0);
        assert_eq!(s.get("c").map(|v| v[IxDyn(&[])]), Some(7.0));
        for (_, v) in s.iter_mut() {
            v.fill(1.0);
        }
        assert!(s.iter().all(|(_, v)| v.iter().all(|&x| x == 1.0)));
        let z = s.zeros_like();
        assert_eq!(z.len(), 3);
        assert_eq!(z["a"].shape(), &[2, 3]);
        assert_eq!(format!("{s:?}"), r#"{"b": [4], "a": [2, 3], "c": []}"#);
    }

    #[test]
    fn collects_from_pairs() {
        let s: ParamStore<f32> = [("x", ArrayD::zeros(IxDyn(&[1])))].into_iter().collect();
        assert!(s.contains("x"));
    }
}
