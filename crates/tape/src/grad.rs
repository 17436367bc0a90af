//! The gradient API over the reverse sweep: options, gradients by Var, and the entry points
//! (`backward`, `grad`, `vjp`, `grad_graph`, `grad_with`).

use crate::graph::KeyMap;
use std::ops::Index;

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, Result, SourceLocation};
use crate::reverse::Targets;
use crate::sweep::Cot;
use crate::tape::{NodeKey, Tape};
use crate::tensor::Tensor;
use crate::var::{Val, Var};

/// Options for a reverse sweep, in the field's words.
///
/// ```
/// use retrograd_tape::{GradOptions, Tape};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(3.0);
/// let y = x * x;
/// let opts = GradOptions::new().retain_graph();
/// let g1 = tape.grad_with(y, &[x], &opts).unwrap();
/// let g2 = tape.grad_with(y, &[x], &opts).unwrap(); // the graph was kept
/// assert_eq!(g1[0].value().item(), g2[0].value().item());
/// ```
#[derive(Clone, Debug)]
pub struct GradOptions<T: Float> {
    /// Keep the rules after the sweep, so the same graph can be differentiated again.
    /// Without it, a second sweep through the graph returns [`Error::GraphFreed`].
    pub retain_graph: bool,
    /// Record the sweep's own ops, so that the gradients are Vars that can be
    /// differentiated again (higher order). Implies keeping the graph.
    pub create_graph: bool,
    /// The cotangent of the output; needed when the output has more than one element.
    pub seed: Option<Tensor<T>>,
    /// Return [`Error::NotOnPath`] for an input the output does not depend on, instead of
    /// a zero gradient.
    pub strict: bool,
    /// Free each value the sweep is the last to read, as it goes, instead of keeping it
    /// until [`Tape::clear`]: the array values of the ops it runs through, once no kept
    /// rule reads them (leaves, constants, scalars and the output stay). This lowers the
    /// sweep's peak memory by the activations it has passed. Reading a freed value
    /// afterwards ([`Var::value`], a new op on it) is [`Error::ValueFreed`]; its shape
    /// stays known, and dumps mark it `freed`. No effect with `retain_graph` or
    /// `create_graph`, which keep everything.
    ///
    /// Off by default because a [`Var`] is a plain handle: the tape cannot tell which
    /// values its caller still means to read. A training step that reads only the loss
    /// (as `retrograd-nn`'s `Session::train_step` does) turns it on.
    pub free_values: bool,
}

impl<T: Float> Default for GradOptions<T> {
    fn default() -> Self {
        GradOptions {
            retain_graph: false,
            create_graph: false,
            seed: None,
            strict: false,
            free_values: false,
        }
    }
}

impl<T: Float> GradOptions<T> {
    /// The defaults: free the graph, record nothing, scalar output, zeros off the path.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`retain_graph`](GradOptions::retain_graph).
    pub fn retain_graph(mut self) -> Self {
        self.retain_graph = true;
        self
    }
    /// Sets [`create_graph`](GradOptions::create_graph).
    pub fn create_graph(mut self) -> Self {
        self.create_graph = true;
        self.retain_graph = true;
        self
    }
    /// Sets the output's cotangent.
    pub fn seed(mut self, seed: impl Into<Tensor<T>>) -> Self {
        self.seed = Some(seed.into());
        self
    }
    /// Sets [`strict`](GradOptions::strict).
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }
    /// Sets [`free_values`](GradOptions::free_values).
    ///
    /// ```
    /// use retrograd_tape::{Error, GradOptions, Tape, arith::sum_to};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(ndarray::array![1.0, 2.0]);
    /// let h = x * x;
    /// let loss = sum_to(&h, &[]);
    /// let grads = loss.backward_with(&GradOptions::new().free_values())?;
    /// assert_eq!(grads[x].to_array(), ndarray::array![2.0, 4.0].into_dyn());
    /// assert_eq!(loss.item(), 5.0); // the output stays
    /// assert!(matches!(h.try_value(), Err(Error::ValueFreed { op: "mul", .. })));
    /// assert_eq!(h.shape().as_slice(), &[2]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn free_values(mut self) -> Self {
        self.free_values = true;
        self
    }
}

/// The gradients of a scalar with respect to every leaf that requires one, from
/// [`Var::backward`]. Read them back by Var, each as a [`Tensor`] (the value type a Var
/// reads as too): `grads[x]` for a gradient that must be there, [`get`](Gradients::get)
/// for one that may not, [`array`](Gradients::array) for an ndarray copy.
///
/// ```
/// let tape = retrograd_tape::Tape::<f64>::new();
/// let (a, b) = (tape.var(2.0), tape.var(5.0));
/// let grads = (a * b + a).backward().unwrap();
/// assert_eq!(grads[a].item(), 6.0);
/// assert_eq!(grads.get(b).map(|g| g.item()), Some(2.0));
/// assert_eq!(grads.array(b), ndarray::arr0(2.0).into_dyn());
/// ```
///
/// The gradients of a model's parameters by name, from a training step, are the same
/// family: `retrograd-nn`'s `ParamGradients`, indexed by name (`grads["0.weight"]`).
///
/// Gradients borrow their tape, so they cannot be read after it is gone (a new tape could
/// sit at the same address with the same keys):
///
/// ```compile_fail
/// let grads;
/// {
///     let tape = retrograd_tape::Tape::<f64>::new();
///     let x = tape.var(1.0);
///     grads = (x * x).backward().unwrap();
/// } // `tape` dropped here while still borrowed
/// println!("{}", grads.len());
/// ```
pub struct Gradients<'t, T: Float> {
    /// Borrowed, not just remembered by address: a tape made in a loop sits at the same
    /// address each time with the same keys, so only a borrow guarantees that these
    /// gradients are never read with another tape's Vars.
    tape: &'t Tape<T>,
    /// One entry per leaf reached, in evaluation order.
    entries: Vec<LeafGradient<T>>,
    /// Where each leaf's entry is. A hash map, not a slotmap `SecondaryMap`: after
    /// `Tape::clear` leaves get arbitrary slot indices, and a secondary map sized to the
    /// largest of them cost a fresh allocation as large as the tape on every step.
    index: KeyMap<usize>,
}

struct LeafGradient<T: Float> {
    key: NodeKey,
    /// `None` once [`Gradients::take`] took it.
    grad: Option<Tensor<T>>,
    location: SourceLocation,
}

impl<'t, T: Float> Gradients<'t, T> {
    /// The gradient for `var`; `None` when no gradient reached it (it does not require
    /// one, or the output does not depend on it).
    ///
    /// # Panics
    /// When `var` belongs to another tape than the one these gradients came from.
    #[track_caller]
    pub fn get(&self, var: Var<'_, T>) -> Option<&Tensor<T>> {
        assert!(
            std::ptr::eq(var.tape, self.tape),
            "Gradients::get: the Var (created at {}) belongs to another tape",
            var.location()
        );
        self.index
            .get(&var.key)
            .and_then(|&i| self.entries[i].grad.as_ref())
    }

    /// The gradient for `var` as an owned ndarray array (a copy), or zeros of its shape when
    /// none reached it: [`Var::array`]'s counterpart.
    #[track_caller]
    pub fn array(&self, var: Var<'_, T>) -> ArrayD<T> {
        match self.get(var) {
            Some(g) => g.to_array(),
            None => Tensor::zeros(&var.shape()).into_array(),
        }
    }

    /// Removes and returns the gradient for `var` (no copy): how a training step moves
    /// gradients into its own container.
    #[track_caller]
    pub fn take(&mut self, var: Var<'_, T>) -> Option<Tensor<T>> {
        let _ = self.get(var);
        let i = *self.index.get(&var.key)?;
        self.entries[i].grad.take()
    }

    /// The number of leaves that received a gradient.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.grad.is_some()).count()
    }

    /// Whether no leaf received a gradient.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every `(node, gradient)` pair, in evaluation order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeKey, &Tensor<T>)> {
        self.entries
            .iter()
            .filter_map(|e| e.grad.as_ref().map(|g| (e.key, g)))
    }

    /// Checks every gradient for NaN and infinity (e.g. before an optimiser step).
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let (a, b) = (tape.var(0.0), tape.var(1.0));
    /// let g = (b / a).backward().unwrap(); // d/da = -b/a² = -inf
    /// let err = g.check_finite().unwrap_err();
    /// assert!(err.to_string().contains("node %0"));
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`what: "gradient"`) naming the first leaf, in evaluation
    /// order, whose gradient has a non-finite element, with its node id and line.
    pub fn check_finite(&self) -> Result<()> {
        let bad = self
            .entries
            .iter()
            .find(|e| e.grad.as_ref().is_some_and(|g| !g.all_finite()));
        match bad {
            None => Ok(()),
            Some(e) => Err(Error::NonFinite {
                what: "gradient",
                op: "var",
                node: e.key.pos(),
                location: e.location,
                into: None,
            }),
        }
    }
}

/// `Gradients { %0 [2, 3] at src/main.rs:4:13, .. }`: each leaf's id, gradient shape and
/// line, in evaluation order.
impl<T: Float> std::fmt::Debug for Gradients<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gradients {{ ")?;
        for (i, e) in self.entries.iter().filter(|e| e.grad.is_some()).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let shape = e.grad.as_ref().map_or(&[][..], |g| g.shape());
            write!(f, "{sep}%{} {shape:?} at {}", e.key.pos(), e.location)?;
        }
        write!(f, " }}")
    }
}

impl<'t, T: Float> Index<Var<'t, T>> for Gradients<'t, T> {
    type Output = Tensor<T>;
    #[track_caller]
    fn index(&self, var: Var<'t, T>) -> &Tensor<T> {
        match self.get(var) {
            Some(g) => g,
            None => panic!(
                "no gradient reached the Var created at {}: it does not require one or is not on the path",
                var.location()
            ),
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Backpropagates from this scalar to every leaf that requires a gradient, then frees
    /// the graph's rules (a second sweep through it is an error; see
    /// [`backward_with`](Var::backward_with)).
    ///
    /// # Errors
    /// [`Error::NonScalarOutput`] when the value has more than one element, and
    /// [`Error::GraphFreed`] when an earlier sweep consumed the graph.
    pub fn backward(self) -> Result<Gradients<'t, T>> {
        self.backward_with(&GradOptions::new())
    }

    /// [`backward`](Var::backward) with options: `retain_graph` and a `seed` for a
    /// non-scalar output.
    ///
    /// # Panics
    /// With `create_graph`, whose results are Vars: use [`Tape::grad_graph`] or
    /// [`Tape::grad_with`] for those.
    #[track_caller]
    pub fn backward_with(self, opts: &GradOptions<T>) -> Result<Gradients<'t, T>> {
        assert!(
            !opts.create_graph,
            "backward_with: create_graph gives Vars; use Tape::grad_graph or Tape::grad_with"
        );
        let found = self
            .tape
            .reverse_sweep(self.key, Targets::AllLeaves, opts)?;
        let inner = self.tape.inner.borrow();
        // The sweep met the leaves last-first.
        let entries: Vec<LeafGradient<T>> = found
            .into_iter()
            .rev()
            .filter_map(|(key, c)| match c {
                Cot::Tensor(t) => Some(LeafGradient {
                    key,
                    grad: Some(t),
                    location: inner.graph.node(key).location,
                }),
                Cot::Node(_) => None,
            })
            .collect();
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key, i))
            .collect();
        Ok(Gradients {
            tape: self.tape,
            entries,
            index,
        })
    }
}

impl<T: Float> Tape<T> {
    /// The gradient of a scalar `output` with respect to each of `inputs`, as arrays of
    /// the inputs' shapes (zeros for an input the output does not depend on). Frees the
    /// graph's rules afterwards, like [`Var::backward`].
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(ndarray::array![1.0, 2.0, 3.0]);
    /// let y = tape.var(ndarray::array![4.0, 5.0, 6.0]);
    /// let z = x * y * 2.0;
    /// let s = retrograd_tape::arith::sum_to(&z, &[]);
    /// let g = tape.grad(s, &[x]).unwrap();
    /// assert_eq!(g[0], ndarray::array![8.0, 10.0, 12.0].into_dyn());
    /// ```
    ///
    /// # Errors
    /// As [`grad_with`](Tape::grad_with).
    #[track_caller]
    pub fn grad(&self, output: Var<'_, T>, inputs: &[Var<'_, T>]) -> Result<Vec<ArrayD<T>>> {
        let vals = self.grad_with(output, inputs, &GradOptions::new())?;
        Ok(vals
            .into_iter()
            .map(|v| v.into_value().into_array())
            .collect())
    }

    /// The vector-Jacobian product `cotangentᵀ · ∂output/∂input` for each input, for an
    /// output of any shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the cotangent's shape is not the output's, and as
    /// [`grad_with`](Tape::grad_with).
    #[track_caller]
    pub fn vjp(
        &self,
        output: Var<'_, T>,
        cotangent: impl Into<Tensor<T>>,
        inputs: &[Var<'_, T>],
    ) -> Result<Vec<ArrayD<T>>> {
        let vals = self.grad_with(output, inputs, &GradOptions::new().seed(cotangent))?;
        Ok(vals
            .into_iter()
            .map(|v| v.into_value().into_array())
            .collect())
    }

    /// Differentiable gradients: the sweep records its own ops, so each result is a Var
    /// that can be differentiated again (grad of grad, Hessian-vector products). Keeps the
    /// graph.
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let y = x * x * x;
    /// let dy = tape.grad_graph(y, &[x]).unwrap()[0]; // 3x² = 12
    /// let d2y = tape.grad_graph(dy, &[x]).unwrap()[0]; // 6x = 12
    /// let d3y = tape.grad(d2y, &[x]).unwrap(); // 6
    /// assert_eq!((dy.item(), d2y.item(), d3y[0].sum()), (12.0, 12.0, 6.0));
    /// ```
    ///
    /// # Errors
    /// As [`grad_with`](Tape::grad_with).
    #[track_caller]
    pub fn grad_graph<'t>(
        &'t self,
        output: Var<'t, T>,
        inputs: &[Var<'t, T>],
    ) -> Result<Vec<Var<'t, T>>> {
        let vals = self.grad_with(output, inputs, &GradOptions::new().create_graph())?;
        Ok(vals.into_iter().map(|v| v.into_var(self)).collect())
    }

    /// The general reverse sweep: gradients of `output` with respect to `inputs` under
    /// `opts`. Results are constants, or Vars under `create_graph`.
    ///
    /// # Errors
    /// - [`Error::NonScalarOutput`]: more than one element and no seed.
    /// - [`Error::ShapeMismatch`]: a seed of another shape than the output's.
    /// - [`Error::GraphFreed`]: an earlier sweep without `retain_graph` consumed the graph.
    /// - [`Error::NotDifferentiable`]: an input was entered as a constant, detached, or
    ///   computed only from such values.
    /// - [`Error::NotOnPath`]: with `strict`, the output does not depend on an input.
    /// - [`Error::ForeignVar`]: a Var of another tape.
    /// - [`Error::NonFinite`]: anomaly mode found a NaN or infinity.
    #[track_caller]
    pub fn grad_with<'t>(
        &'t self,
        output: Var<'t, T>,
        inputs: &[Var<'t, T>],
        opts: &GradOptions<T>,
    ) -> Result<Vec<Val<'t, T>>> {
        for v in std::iter::once(&output).chain(inputs) {
            if !std::ptr::eq(v.tape, self) {
                return Err(Error::ForeignVar {
                    op: "grad",
                    location: v.location(),
                });
            }
        }
        let keys: SmallVec<[NodeKey; 8]> = inputs.iter().map(|v| v.key).collect();
        let found = self.reverse_sweep(output.key, Targets::Keys(&keys), opts)?;
        // Targets reached, by key; a key asked for twice gets the same cotangent twice.
        let mut by_key: SmallVec<[(NodeKey, Cot<T>); 8]> = found.into_iter().collect();
        let mut take = |key: NodeKey, again: bool| {
            let i = by_key.iter().position(|(k, _)| *k == key)?;
            Some(if again {
                by_key[i].1.share()
            } else {
                by_key.swap_remove(i).1
            })
        };
        let mut out = Vec::with_capacity(inputs.len());
        for (i, v) in inputs.iter().enumerate() {
            let again = inputs[i + 1..].iter().any(|w| w.key == v.key);
            match take(v.key, again) {
                Some(c) => out.push(self.cot_to_val(c)),
                None => {
                    let (requires_grad, origin_leaf) =
                        self.with_node(v.key, |n| (n.origin.requires_grad(), n.origin.is_leaf()));
                    if !requires_grad {
                        let reason = if origin_leaf {
                            "it was entered with `Tape::constant`; enter it with `Tape::var` to differentiate with respect to it"
                        } else {
                            "it was computed under `no_grad`, by `detach`, or only from constants, so no op on its path was recorded"
                        };
                        return Err(Error::NotDifferentiable {
                            input: i,
                            location: v.location(),
                            reason,
                        });
                    }
                    if opts.strict {
                        return Err(Error::NotOnPath {
                            input: i,
                            location: v.location(),
                        });
                    }
                    out.push(Val::Const(Tensor::zeros(&v.shape())));
                }
            }
        }
        Ok(out)
    }
}
