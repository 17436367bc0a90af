//! The gradients of a model's parameters, by parameter name.

use std::collections::HashMap;
use std::fmt;
use std::ops::Index;
use std::sync::Arc;

use ndarray::ArrayD;
use retrograd_tape::Tensor;

use crate::scalar::Scalar;

/// The gradients of one training step, by parameter name (`grads["0.weight"]`): what
/// [`Session::train_step`](crate::Session::train_step) returns and an
/// [`Optimizer`](crate::optim::Optimizer) reads.
///
/// The by-name member of one family with the engine's
/// [`Gradients`](retrograd_tape::Gradients), which holds the gradients of a backward sweep
/// by Var (`grads[x]`): both hand out each gradient as a [`Tensor`], the value type a Var
/// reads as too, and read the same way: index for a gradient that must be there,
/// [`get`](ParamGradients::get) for one that may not, [`array`](ParamGradients::array) for
/// an ndarray copy.
///
/// A parameter the loss does not depend on has no entry (optimisers skip it). Entries keep
/// the order they were inserted in: the store's order for the gradients a training step
/// returns, so iteration, printing and norms are deterministic.
///
/// ```
/// use ndarray::array;
/// use retrograd_nn::{Module, ParamGradients, layers::Linear, train_step};
/// use retrograd_ops::prelude::*;
///
/// let layer = Linear::new(2, 1);
/// let store = Module::<f64>::init_store(&layer, 0);
/// let (_, grads) = train_step(&store, 0, |p| layer.forward(p.input(array![[1.0, 2.0]]), p).sum_all())?;
/// assert_eq!(grads["weight"], array![[1.0, 2.0]]); // d(w·x + b)/dw = x
/// assert_eq!(grads["bias"].item(), 1.0);
/// assert!(grads.get("weights").is_none());
/// assert_eq!(grads.names().collect::<Vec<_>>(), ["weight", "bias"]);
///
/// // Built by hand, e.g. to test an optimiser: from (name, value) pairs.
/// let by_hand: ParamGradients<f64> = [("weight", array![[0.5, -1.0]].into_dyn())].into_iter().collect();
/// assert_eq!(by_hand.len(), 1);
/// # Ok::<(), retrograd_tape::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct ParamGradients<T: Scalar> {
    /// Names in insertion order; `values[i]` belongs to `names[i]`. Shared with `index`,
    /// so a name is allocated once.
    names: Vec<Arc<str>>,
    values: Vec<Tensor<T>>,
    /// Name -> position in `names`/`values`.
    index: HashMap<Arc<str>, usize>,
}

/// The name `ParamGradients` had when it was a plain `HashMap<String, ArrayD<T>>`.
#[deprecated(
    note = "renamed `ParamGradients`: indexed by name like before, each gradient a `Tensor` (`.view()`, `.to_array()`)"
)]
pub type Grads<T> = ParamGradients<T>;

impl<T: Scalar> Default for ParamGradients<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Scalar> ParamGradients<T> {
    /// No gradients.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// No gradients, with room for `n` without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        ParamGradients {
            names: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
        }
    }

    /// Adds the gradient of `name`, or replaces it in place (keeping its position),
    /// returning the old one as `HashMap::insert` does. Takes any value a tape takes:
    /// a [`Tensor`], an ndarray array (moved in without a copy), a `Vec`, ...
    pub fn insert(
        &mut self,
        name: impl Into<Arc<str>>,
        grad: impl Into<Tensor<T>>,
    ) -> Option<Tensor<T>> {
        let name = name.into();
        let grad = grad.into();
        match self.index.get(&name) {
            Some(&i) => Some(std::mem::replace(&mut self.values[i], grad)),
            None => {
                self.index.insert(Arc::clone(&name), self.names.len());
                self.names.push(name);
                self.values.push(grad);
                None
            }
        }
    }

    /// The gradient of `name`; `None` when there is none (the loss did not depend on the
    /// parameter, or the name is not one).
    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.index.get(name).map(|&i| &self.values[i])
    }

    /// The gradient of `name`, writable: update it where it lies through
    /// [`Tensor::view_mut`], which copies only a value something else shares.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor<T>> {
        self.index.get(name).map(|&i| &mut self.values[i])
    }

    /// Whether there is a gradient for `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The gradient of `name` as an owned ndarray array (a copy).
    ///
    /// # Panics
    /// As indexing, when there is no gradient for `name`; the message lists the names
    /// there are.
    #[track_caller]
    pub fn array(&self, name: &str) -> ArrayD<T> {
        self[name].to_array()
    }

    /// The names with a gradient, in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(|n| &**n)
    }

    /// `(name, gradient)` pairs, in order (the store's, for a training step's gradients).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Tensor<T>)> + '_ {
        self.into_iter()
    }

    /// `(name, gradient)` pairs in order, gradients writable (through
    /// [`Tensor::view_mut`]: clipping, scaling, summing in place).
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&str, &mut Tensor<T>)> + '_ {
        self.names.iter().map(|n| &**n).zip(&mut self.values)
    }

    /// The number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no parameter has a gradient.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// `grads["0.weight"]` (or `grads[&name]` for a `String`).
impl<T: Scalar, Q: AsRef<str> + ?Sized> Index<&Q> for ParamGradients<T> {
    type Output = Tensor<T>;

    /// The gradient of `name`.
    ///
    /// # Panics
    /// When there is none, naming the parameter and listing the names that have one.
    #[track_caller]
    fn index(&self, name: &Q) -> &Tensor<T> {
        let name = name.as_ref();
        match self.get(name) {
            Some(g) => g,
            None => panic!(
                "no gradient for parameter {name:?}: gradients exist for {:?}; a misspelt name, \
                 or a parameter the loss does not depend on (`get` returns an Option)",
                self.names
            ),
        }
    }
}

impl<T: Scalar, S: Into<Arc<str>>, V: Into<Tensor<T>>> FromIterator<(S, V)> for ParamGradients<T> {
    fn from_iter<I: IntoIterator<Item = (S, V)>>(iter: I) -> Self {
        let mut grads = Self::new();
        for (name, grad) in iter {
            grads.insert(name, grad);
        }
        grads
    }
}

/// The borrowed `(name, gradient)` pairs, in order.
type Pairs<'a, T> = std::iter::Zip<
    std::iter::Map<std::slice::Iter<'a, Arc<str>>, fn(&Arc<str>) -> &str>,
    std::slice::Iter<'a, Tensor<T>>,
>;

/// The owned `(name, gradient)` pairs, in order.
type IntoPairs<T> = std::iter::Zip<
    std::iter::Map<std::vec::IntoIter<Arc<str>>, fn(Arc<str>) -> String>,
    std::vec::IntoIter<Tensor<T>>,
>;

impl<'a, T: Scalar> IntoIterator for &'a ParamGradients<T> {
    type Item = (&'a str, &'a Tensor<T>);
    type IntoIter = Pairs<'a, T>;

    /// `(name, gradient)` pairs in order, as [`ParamGradients::iter`].
    fn into_iter(self) -> Self::IntoIter {
        let name: fn(&Arc<str>) -> &str = |n| n;
        self.names.iter().map(name).zip(&self.values)
    }
}

impl<T: Scalar> IntoIterator for ParamGradients<T> {
    type Item = (String, Tensor<T>);
    type IntoIter = IntoPairs<T>;

    /// `(name, gradient)` pairs in order, moved out.
    fn into_iter(self) -> Self::IntoIter {
        let name: fn(Arc<str>) -> String = |n| n.to_string();
        self.names.into_iter().map(name).zip(self.values)
    }
}

/// `{"0.weight": [16, 2], "0.bias": [16]}`: names and shapes, not values (a model's
/// gradients can hold millions of numbers).
impl<T: Scalar> fmt::Debug for ParamGradients<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, g)| (n, g.shape())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn two() -> ParamGradients<f64> {
        [
            ("0.weight", Tensor::from(array![[1.0, 2.0]])),
            ("0.bias", Tensor::scalar(3.0)),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn reads_by_name_in_insertion_order() {
        let mut g = two();
        assert_eq!((g.len(), g.is_empty()), (2, false));
        assert_eq!(g["0.weight"], array![[1.0, 2.0]]);
        assert_eq!(g.array("0.weight"), array![[1.0, 2.0]].into_dyn());
        assert_eq!(g["0.bias"].item(), 3.0);
        assert!(g.get("0.weigth").is_none() && !g.contains("0.weigth"));
        assert_eq!(g.names().collect::<Vec<_>>(), ["0.weight", "0.bias"]);
        let old = g.insert("0.weight", array![[5.0, 6.0]]);
        assert_eq!(old, Some(Tensor::from(array![[1.0, 2.0]])));
        let pairs: Vec<(&str, f64)> = g.iter().map(|(n, t)| (n, t.view().sum())).collect();
        assert_eq!(
            pairs,
            [("0.weight", 11.0), ("0.bias", 3.0)],
            "kept its place"
        );
        assert_eq!(format!("{g:?}"), r#"{"0.weight": [1, 2], "0.bias": []}"#);
        assert!(ParamGradients::<f32>::new().is_empty());
    }

    /// Code written against the old name keeps compiling (with a deprecation warning).
    #[test]
    #[allow(deprecated)]
    fn the_old_name_still_names_the_type() {
        let g: crate::Grads<f64> = two();
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn an_unknown_name_panics_listing_the_known_ones() {
        let g = two();
        let r = std::panic::catch_unwind(|| g["0.weigth"].item());
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.starts_with(r#"no gradient for parameter "0.weigth": gradients exist for ["0.weight", "0.bias"]"#),
            "{msg}"
        );
        let r = std::panic::catch_unwind(|| g.array("head.bias"));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains(r#""head.bias""#), "{msg}");
    }

    #[test]
    fn writes_in_place_and_moves_out_without_copies() {
        let mut g = two();
        let ptr = g["0.weight"].view().as_ptr();
        for (_, t) in g.iter_mut() {
            t.view_mut().mapv_inplace(|x| -x);
        }
        g.get_mut("0.bias").unwrap().view_mut()[[]] = 0.5;
        assert_eq!(g["0.weight"], array![[-1.0, -2.0]]);
        assert_eq!(g["0.bias"].item(), 0.5);
        let (name, weight) = g.into_iter().next().unwrap();
        assert_eq!((name.as_str(), weight.view().as_ptr()), ("0.weight", ptr));
    }
}
