//! The reverse sweep (backpropagation) and the gradient API built on it.

use std::ops::Index;

use ndarray::ArrayD;
use smallvec::SmallVec;
use std::collections::HashMap;

use crate::Float;
use crate::arith::Add;
use crate::error::{Error, Result, SourceLocation};
use crate::rule::RuleCtx;
use crate::tape::{NodeKey, Origin, Tape};
use crate::tensor::{Shape, Tensor};
use crate::var::{Operand, Val, Var};

/// A cotangent or tangent held between two steps of a sweep: a plain tensor, or a node
/// when the sweep records itself. It holds no tape borrow, so the buffers outlive sweeps.
pub(crate) enum Cot<T: Float> {
    Tensor(Tensor<T>),
    Node(NodeKey),
}

/// Buffers a sweep reuses, kept on the tape so a training loop does not reallocate them.
pub(crate) struct Scratch<T: Float> {
    pub(crate) slots: Vec<Option<Cot<T>>>,
    pub(crate) marks: Vec<u32>,
    /// The positions of the current node's inputs (reused from node to node).
    pub(crate) input_pos: Vec<u32>,
}

impl<T: Float> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            slots: Vec::new(),
            marks: Vec::new(),
            input_pos: Vec::new(),
        }
    }
}

impl<T: Float> Tape<T> {
    pub(crate) fn cot_to_val(&self, c: Cot<T>) -> Val<'_, T> {
        match c {
            Cot::Tensor(t) => Val::Const(t),
            Cot::Node(key) => Val::Var(Var { tape: self, key }),
        }
    }

    pub(crate) fn cot_ref_to_val(&self, c: &Cot<T>) -> Val<'_, T> {
        match c {
            Cot::Tensor(t) => Val::Const(t.clone()),
            Cot::Node(key) => Val::Var(Var {
                tape: self,
                key: *key,
            }),
        }
    }

    pub(crate) fn val_to_cot(&self, v: Val<'_, T>) -> Cot<T> {
        match v {
            Val::Const(t) => Cot::Tensor(t),
            Val::Var(v) => {
                assert!(
                    std::ptr::eq(v.tape, self),
                    "a rule returned a Var of another tape"
                );
                Cot::Node(v.key)
            }
        }
    }

    /// Adds `c` into a sweep slot: the first value is moved in, later ones are added in
    /// place when both are plain tensors, and recorded as `add` when the sweep records.
    pub(crate) fn accumulate(&self, slot: &mut Option<Cot<T>>, c: Val<'_, T>) {
        *slot = Some(match (slot.take(), c) {
            (None, c) => self.val_to_cot(c),
            (Some(Cot::Tensor(mut a)), Val::Const(b)) => {
                a.add_assign(&b);
                Cot::Tensor(a)
            }
            (Some(prev), c) => self.val_to_cot(Val::apply(Add, &[&self.cot_to_val(prev), &c])),
        });
    }
}

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
}

impl<T: Float> Default for GradOptions<T> {
    fn default() -> Self {
        GradOptions {
            retain_graph: false,
            create_graph: false,
            seed: None,
            strict: false,
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
}

/// The gradients of a scalar with respect to every leaf that requires one, from
/// [`Var::backward`]. Read them back by Var.
///
/// ```
/// let tape = retrograd_tape::Tape::<f64>::new();
/// let (a, b) = (tape.var(2.0), tape.var(5.0));
/// let grads = (a * b + a).backward().unwrap();
/// assert_eq!(grads[a].item(), Some(6.0));
/// assert_eq!(grads.get(b).and_then(|g| g.item()), Some(2.0));
/// ```
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
    index: HashMap<NodeKey, usize>,
}

struct LeafGradient<T: Float> {
    key: NodeKey,
    /// `None` once [`Gradients::take`] took it.
    grad: Option<Tensor<T>>,
    pos: u32,
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

    /// The gradient for `var` as an owned array, or zeros of its shape when none reached it.
    #[track_caller]
    pub fn array(&self, var: Var<'_, T>) -> ArrayD<T> {
        match self.get(var) {
            Some(g) => g.to_array(),
            None => Tensor::zeros(&var.shape()).into_array(),
        }
    }

    /// Removes and returns the gradient for `var` (no copy).
    #[track_caller]
    pub fn take(&mut self, var: Var<'_, T>) -> Option<ArrayD<T>> {
        let _ = self.get(var);
        let i = *self.index.get(&var.key)?;
        self.entries[i].grad.take().map(Tensor::into_array)
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
                node: e.pos as usize,
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
            write!(f, "{sep}%{} {shape:?} at {}", e.pos, e.location)?;
        }
        write!(f, " }}")
    }
}

impl<'t, T: Float> Index<Var<'t, T>> for Gradients<'t, T> {
    type Output = Tensor<T>;
    #[track_caller]
    fn index(&self, var: Var<'t, T>) -> &Tensor<T> {
        self.get(var).unwrap_or_else(|| {
            panic!("no gradient reached the Var created at {}: it does not require one or is not on the path", var.location())
        })
    }
}

/// A VJP rule returned the wrong number of cotangents: a bug in that rule.
#[cold]
#[inline(never)]
fn wrong_count(name: &str, location: SourceLocation, got: usize, inputs: usize) -> ! {
    panic!(
        "the VJP rule of `{name}` (recorded at {location}) returned {got} cotangents for {inputs} inputs"
    )
}

/// A VJP rule returned a cotangent of the wrong shape: a bug in that rule.
#[cold]
#[inline(never)]
fn wrong_shape(
    name: &str,
    location: SourceLocation,
    i: usize,
    got: &[usize],
    expected: &[usize],
) -> ! {
    panic!(
        "the VJP rule of `{name}` (recorded at {location}) returned a cotangent of shape {got:?} \
         for input {i} of shape {expected:?}"
    )
}

/// Which inputs a sweep differentiates with respect to.
enum Targets<'a> {
    /// Every leaf that requires a gradient (what `backward` does).
    AllLeaves,
    /// These nodes, in the caller's order.
    Keys(&'a [NodeKey]),
}

/// What a sweep hands back.
enum Swept<T: Float> {
    Leaves(Vec<(NodeKey, Cot<T>)>),
    Keys(Vec<Option<Cot<T>>>),
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
        let Swept::Leaves(pairs) = self.tape.sweep(self.key, Targets::AllLeaves, opts)? else {
            unreachable!("a sweep over all leaves returns leaves")
        };
        let inner = self.tape.inner.borrow();
        // The sweep met the leaves last-first.
        let entries: Vec<LeafGradient<T>> = pairs
            .into_iter()
            .rev()
            .filter_map(|(key, c)| match c {
                Cot::Tensor(t) => {
                    let n = &inner.nodes[key];
                    Some(LeafGradient {
                        key,
                        grad: Some(t),
                        pos: n.pos,
                        location: n.location,
                    })
                }
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
        Ok(vals.into_iter().map(|v| v.value().into_array()).collect())
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
        Ok(vals.into_iter().map(|v| v.value().into_array()).collect())
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
        let Swept::Keys(found) = self.sweep(output.key, Targets::Keys(&keys), opts)? else {
            unreachable!("a sweep over keys returns keys")
        };
        let mut out = Vec::with_capacity(inputs.len());
        for (i, (c, v)) in found.into_iter().zip(inputs).enumerate() {
            match c {
                Some(c) => out.push(self.cot_to_val(c)),
                None => {
                    let (requires_grad, origin_leaf) = self.with_node(v.key, |n| {
                        (
                            n.origin.requires_grad(),
                            matches!(n.origin, Origin::Leaf { .. }),
                        )
                    });
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

    /// Whether a node lies on a path to a target: the output (is there anything to do?)
    /// and inputs past the 64th, which the needs mask does not cover.
    fn input_live(
        &self,
        inner: &crate::tape::TapeInner<T>,
        key: NodeKey,
        targets: &Targets<'_>,
        lo: usize,
        out_pos: usize,
        marks: &[u32],
    ) -> bool {
        let n = &inner.nodes[key];
        let p = n.pos as usize;
        match targets {
            Targets::AllLeaves => n.origin.requires_grad(),
            Targets::Keys(_) => p >= lo && p <= out_pos && marks[p - lo] != 0,
        }
    }

    /// The reverse sweep. A plain loop backwards over evaluation order (never recursion),
    /// visiting only nodes that lie on a path from a target to the output.
    fn sweep(
        &self,
        output: NodeKey,
        targets: Targets<'_>,
        opts: &GradOptions<T>,
    ) -> Result<Swept<T>> {
        let (out_pos, seed, anomaly_mode, per_node, mut scratch) = {
            let mut inner = self.inner.borrow_mut();
            if let Some(e) = &inner.anomaly {
                return Err(e.clone());
            }
            let n_nodes = inner.order.len();
            if inner.inspect.record_grad_norms {
                inner.inspect.begin_sweep(n_nodes);
            }
            // Work done per visited node beyond the rule call (hooks, norms, checking the
            // complete cotangent); off, the sweep pays one branch per node for all three.
            let per_node =
                !inner.hooks.is_empty() || inner.inspect.record_grad_norms || inner.anomaly_mode;
            let node = &inner.nodes[output];
            let shape = node.value.shape();
            let seed = match &opts.seed {
                Some(s) if s.shape() != shape => {
                    return Err(Error::ShapeMismatch {
                        what: "seed cotangent".into(),
                        expected: Shape::from_slice(shape),
                        got: Shape::from_slice(s.shape()),
                    });
                }
                Some(s) => {
                    if inner.anomaly_mode && !s.all_finite() {
                        return Err(Error::NonFinite {
                            what: "seed cotangent",
                            op: node.origin.name(),
                            node: node.pos as usize,
                            location: node.location,
                            into: None,
                        });
                    }
                    s.clone()
                }
                None if node.value.len() == 1 => Tensor::ones(shape),
                None => {
                    return Err(Error::NonScalarOutput {
                        shape: Shape::from_slice(shape),
                        location: node.location,
                    });
                }
            };
            (
                node.pos as usize,
                seed,
                inner.anomaly_mode,
                per_node,
                std::mem::take(&mut inner.scratch),
            )
        };

        // Which nodes lead to a target. For all leaves this is exactly `requires_grad`
        // (kept per node as it is recorded); for chosen targets, one pass forwards marks
        // the targets (2 + their index) and the nodes downstream of them (1).
        let lo = {
            let inner = self.inner.borrow();
            match targets {
                Targets::AllLeaves => 0,
                Targets::Keys(keys) => {
                    let lo = keys
                        .iter()
                        .filter_map(|k| {
                            let n = &inner.nodes[*k];
                            (n.origin.requires_grad() && n.pos as usize <= out_pos)
                                .then_some(n.pos as usize)
                        })
                        .min()
                        .unwrap_or(out_pos + 1);
                    let marks = &mut scratch.marks;
                    marks.clear();
                    marks.resize(out_pos + 1 - lo.min(out_pos + 1), 0);
                    for (i, k) in keys.iter().enumerate().rev() {
                        let n = &inner.nodes[*k];
                        let p = n.pos as usize;
                        if n.origin.requires_grad() && (lo..=out_pos).contains(&p) {
                            marks[p - lo] = 2 + i as u32;
                        }
                    }
                    for p in lo..=out_pos.max(lo) {
                        if p > out_pos || marks[p - lo] != 0 {
                            continue;
                        }
                        let n = &inner.nodes[inner.order[p]];
                        if matches!(n.origin, Origin::Op(_) | Origin::Spent(_))
                            && n.inputs.iter().any(|i| {
                                let ip = inner.nodes[*i].pos as usize;
                                ip >= lo && marks[ip - lo] != 0
                            })
                        {
                            marks[p - lo] = 1;
                        }
                    }
                    lo
                }
            }
        };
        let mut swept = match targets {
            Targets::AllLeaves => Swept::Leaves(Vec::new()),
            Targets::Keys(keys) => Swept::Keys((0..keys.len()).map(|_| None).collect()),
        };
        if lo > out_pos
            || !self.input_live(
                &self.inner.borrow(),
                output,
                &targets,
                lo,
                out_pos,
                &scratch.marks,
            )
        {
            self.inner.borrow_mut().scratch = scratch;
            return Ok(swept);
        }
        let slots = &mut scratch.slots;
        slots.clear();
        slots.resize_with(out_pos + 1 - lo, || None);
        slots[out_pos - lo] = Some(Cot::Tensor(seed));

        // Per-node buffers, built once per sweep and refilled at each node, so the loop
        // constructs and drops no list per node: the rule's context (its input list and
        // output), the inputs' slot positions, and the cotangents a recording sweep adds
        // after releasing the borrow.
        let mut cx = RuleCtx {
            inputs: SmallVec::new(),
            output: Val::Const(Tensor::Scalar(T::zero())),
            needs: 0,
        };
        let mut input_pos = std::mem::take(&mut scratch.input_pos);
        let mut pending: Vec<(usize, Val<'_, T>)> = Vec::new();
        let mut failure = None;
        'sweep: for p in (lo..=out_pos).rev() {
            let Some(mut g) = slots[p - lo].take() else {
                continue;
            };
            if per_node {
                match self.complete_cotangent(p, g, opts.create_graph) {
                    Ok(c) => g = c,
                    Err(e) => {
                        failure = Some(e);
                        break 'sweep;
                    }
                }
            }

            // One borrow and one lookup of the node decide what to do with it.
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let key = inner.order[p];
            let node = &inner.nodes[key];
            match (&mut swept, &targets) {
                (Swept::Keys(found), Targets::Keys(keys)) => {
                    let mark = scratch.marks[p - lo];
                    if mark >= 2 {
                        let first = (mark - 2) as usize;
                        for (i, k) in keys.iter().enumerate().skip(first) {
                            if *k == key {
                                found[i] = Some(match &g {
                                    Cot::Tensor(t) => Cot::Tensor(t.clone()),
                                    Cot::Node(k) => Cot::Node(*k),
                                });
                            }
                        }
                    }
                }
                (Swept::Leaves(found), _) => {
                    if matches!(
                        node.origin,
                        Origin::Leaf {
                            requires_grad: true
                        }
                    ) {
                        found.push((key, g));
                        continue;
                    }
                }
                _ => unreachable!("targets and results agree"),
            }
            // Leaves and constants are left at once.
            if !matches!(node.origin, Origin::Op(_) | Origin::Spent(_)) {
                continue;
            }
            let location = node.location;
            // One lookup per input gathers what the rule may read, where the input's
            // cotangent slot is, and whether anyone needs it.
            let mut needs = 0u64;
            cx.inputs.clear();
            input_pos.clear();
            for (i, &k) in node.inputs.iter().enumerate() {
                let n = &inner.nodes[k];
                let ip = n.pos as usize;
                let live = match targets {
                    Targets::AllLeaves => n.origin.requires_grad(),
                    Targets::Keys(_) => ip >= lo && ip <= out_pos && scratch.marks[ip - lo] != 0,
                };
                if live {
                    needs |= 1u64 << i.min(63);
                }
                input_pos.push(n.pos);
                cx.inputs.push(if opts.create_graph {
                    Val::Var(Var { tape: self, key: k })
                } else {
                    Val::Const(n.value.clone())
                });
            }
            if needs == 0 {
                continue;
            }
            cx.output = if opts.create_graph {
                Val::Var(Var { tape: self, key })
            } else {
                Val::Const(node.value.clone())
            };
            cx.needs = needs;
            let node = &mut inner.nodes[key];
            let rule = match std::mem::replace(&mut node.origin, Origin::Spent("")) {
                Origin::Op(rule) => rule,
                Origin::Spent(op) => {
                    node.origin = Origin::Spent(op);
                    failure = Some(Error::GraphFreed { op, location });
                    break 'sweep;
                }
                _ => unreachable!("checked above"),
            };

            // A plain sweep's rules compute on constants and never touch the tape, so the
            // borrow is kept across the call (one borrow per node). A recording sweep's
            // rules record nodes, so the borrow is released around the call.
            let cots = if opts.create_graph {
                drop(guard);
                let cots = rule.vjp(&cx, &self.cot_to_val(g));
                guard = self.inner.borrow_mut();
                cots
            } else {
                rule.vjp(&cx, &self.cot_to_val(g))
            };
            let inner = &mut *guard;
            let name = rule.name();
            if cots.len() != input_pos.len() {
                wrong_count(name, location, cots.len(), input_pos.len());
            }
            inner.nodes[key].origin = if opts.retain_graph {
                Origin::Op(rule)
            } else {
                Origin::Spent(name)
            };
            for (i, c) in cots.into_iter().enumerate() {
                let Some(c) = c else { continue };
                let needed = if i < 64 {
                    needs >> i & 1 == 1
                } else {
                    let k = inner.nodes[key].inputs[i];
                    self.input_live(inner, k, &targets, lo, out_pos, &scratch.marks)
                };
                if !needed {
                    continue;
                }
                // The borrow is held, so recorded values are read from the arena directly;
                // in a plain sweep the input's value is already in the context.
                let value = match &c {
                    Val::Const(t) => t,
                    Val::Var(v) => &inner.nodes[v.key].value,
                };
                let input_value = match &cx.inputs[i] {
                    Val::Const(t) => t,
                    Val::Var(v) => &inner.nodes[v.key].value,
                };
                if !crate::tensor::shape_eq(value.shape(), input_value.shape()) {
                    wrong_shape(name, location, i, value.shape(), input_value.shape());
                }
                if anomaly_mode && !value.all_finite() {
                    let input = &inner.nodes[inner.nodes[key].inputs[i]];
                    failure = Some(Error::NonFinite {
                        what: "cotangent",
                        op: name,
                        node: p,
                        location,
                        into: Some((input.pos as usize, input.origin.name(), input.location)),
                    });
                    break 'sweep;
                }
                let slot = input_pos[i] as usize - lo;
                match (&mut slots[slot], c) {
                    // A plain sweep adds in place at once; a recorded one records `add`
                    // after the borrow is released.
                    (Some(Cot::Tensor(acc)), Val::Const(c)) => acc.add_assign(&c),
                    (empty @ None, Val::Const(c)) => *empty = Some(Cot::Tensor(c)),
                    (_, c) => pending.push((slot, c)),
                }
            }
            drop(guard);
            if !pending.is_empty() {
                for (slot, c) in pending.drain(..) {
                    self.accumulate(&mut slots[slot], c);
                }
            }
        }
        drop(cx);
        scratch.input_pos = input_pos;
        if let Some(e) = failure {
            // Drop the cotangents still in flight, but keep the buffers for the next sweep.
            scratch.slots.clear();
            self.inner.borrow_mut().scratch = scratch;
            return Err(e);
        }
        self.inner.borrow_mut().scratch = scratch;
        Ok(swept)
    }

    /// The per-node work done on a complete cotangent when it is popped, only when some of
    /// it is on: the node's hooks (which may replace it), anomaly mode's check of the sum,
    /// and recording its norm.
    fn complete_cotangent(&self, p: usize, g: Cot<T>, create_graph: bool) -> Result<Cot<T>> {
        let (key, has_hooks, anomaly_mode, record_norm) = {
            let inner = self.inner.borrow();
            let key = inner.order[p];
            (
                key,
                inner.hooks.by_node.contains_key(key),
                inner.anomaly_mode,
                inner.inspect.record_grad_norms,
            )
        };
        let value = |g: &Cot<T>| match g {
            Cot::Tensor(t) => t.clone(),
            Cot::Node(k) => self.with_node(*k, |n| n.value.clone()),
        };
        let mut g = g;
        let mut hooked = false;
        if has_hooks && let Some(new) = self.run_hooks(key, &value(&g)) {
            hooked = true;
            g = if create_graph {
                let location = self.with_node(key, |n| n.location);
                Cot::Node(self.push_constant(new, "hook", location))
            } else {
                Cot::Tensor(new)
            };
        }
        if anomaly_mode || record_norm {
            let v = value(&g);
            if anomaly_mode && !v.all_finite() {
                // Every contribution was checked as it was made, so a non-finite total
                // comes from a hook or from a sum that overflowed.
                let (op, location) = self.with_node(key, |n| (n.origin.name(), n.location));
                return Err(Error::NonFinite {
                    what: if hooked {
                        "hooked cotangent"
                    } else {
                        "cotangent sum"
                    },
                    op: if hooked { "hook" } else { "add" },
                    node: p,
                    location,
                    into: Some((p, op, location)),
                });
            }
            if record_norm {
                let norm = v
                    .view()
                    .iter()
                    .map(|x| x.as_f64() * x.as_f64())
                    .sum::<f64>()
                    .sqrt();
                self.inner.borrow_mut().inspect.set_grad_norm(p, norm);
            }
        }
        Ok(g)
    }
}

#[cfg(test)]
mod anomaly_tests {
    use ndarray::array;
    use smallvec::smallvec;

    use crate::arith::sum_to;
    use crate::{Cotangents, Error, Float, GradOptions, Rule, RuleCtx, Tape, Tensor, Val, Var};

    /// `ln x`, as a test rule (the real one lives in retrograd-ops).
    struct Ln;
    impl<T: Float> Rule<T> for Ln {
        fn name(&self) -> &'static str {
            "ln"
        }
        fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
            Ok(x[0].map(|v| v.ln()))
        }
        fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
            smallvec![Some(g / cx.input(0))]
        }
        fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
            t[0].as_ref().map(|t| t / cx.input(0))
        }
    }

    /// `√x`, whose derivative is infinite at 0 although its value is finite.
    struct Sqrt;
    impl<T: Float> Rule<T> for Sqrt {
        fn name(&self) -> &'static str {
            "sqrt"
        }
        fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
            Ok(x[0].map(|v| v.sqrt()))
        }
        fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
            smallvec![Some(g / &(cx.output() * T::of(2.0)))]
        }
        fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
            t[0].as_ref().map(|t| t / &(cx.output() * T::of(2.0)))
        }
    }

    fn non_finite(
        e: &Error,
    ) -> (
        &'static str,
        &'static str,
        usize,
        u32,
        Option<(usize, &'static str)>,
    ) {
        match e {
            Error::NonFinite {
                what,
                op,
                node,
                location,
                into,
            } => (
                what,
                op,
                *node,
                location.line(),
                into.map(|(n, op, _)| (n, op)),
            ),
            other => panic!("expected NonFinite, got {other}"),
        }
    }

    #[test]
    fn anomaly_mode_catches_nan_in_forward_and_names_the_op_and_line() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        assert!(tape.anomaly_mode());
        let x = tape.var(array![1.0, -1.0]);
        let a = x * 2.0;
        let line = line!() + 1;
        let l = Var::apply(Ln, &[&a]); // ln(-2) = NaN
        let y = sum_to(&(l * 3.0), &[]);
        let err = y.backward().unwrap_err();
        assert_eq!(non_finite(&err), ("forward value", "ln", 2, line, None));
        let text = err.to_string();
        assert!(text.contains("`ln` (node %2)"), "{text}");
        assert!(text.contains(&format!("{}:{line}:", file!())), "{text}");
        assert_eq!(tape.check_anomaly(), Err(err.clone()));
        // The first one found is kept; later NaNs do not overwrite it.
        let _ = x / (x * 0.0);
        assert_eq!(tape.check_anomaly(), Err(err));

        // 0/0 through the engine's own arithmetic.
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let z = tape.var(0.0);
        let line = line!() + 1;
        let q = z / z;
        assert_eq!(
            non_finite(&q.backward().unwrap_err()),
            ("forward value", "div", 1, line, None)
        );
    }

    #[test]
    fn anomaly_mode_catches_nan_in_backward_and_names_the_rule_that_made_it() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let x = tape.var(array![4.0, 0.0]);
        let line = line!() + 1;
        let r = Var::apply(Sqrt, &[&x]); // finite: [2, 0]
        let y = sum_to(&r, &[]);
        let err = y.backward().unwrap_err();
        // The cotangent sqrt's VJP made for x is infinite at 0.
        assert_eq!(
            non_finite(&err),
            ("cotangent", "sqrt", 1, line, Some((0, "var")))
        );
        assert!(
            err.to_string().contains("flowing into `var` (node %0)"),
            "{err}"
        );
        assert_eq!(
            tape.check_anomaly(),
            Ok(()),
            "the forward values were finite"
        );

        // Engine arithmetic: a / b with a tiny b is finite, its derivative in b overflows.
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let (a, b) = (tape.var(1.0), tape.var(1e-200));
        let line = line!() + 1;
        let q = a / b;
        let err = tape.grad(q, &[a, b]).unwrap_err();
        assert_eq!(
            non_finite(&err),
            ("cotangent", "div", 2, line, Some((1, "var")))
        );

        // Also under create_graph, where cotangents are nodes.
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let x = tape.var(0.0);
        let r = Var::apply(Sqrt, &[&x]);
        let err = tape.grad_graph(r, &[x]).unwrap_err();
        assert_eq!(
            non_finite(&err),
            (
                "cotangent",
                "sqrt",
                1,
                r.location().line(),
                Some((0, "var"))
            )
        );
        // The VJP's own recorded ops made that infinity as a forward value on the tape, so
        // the tape's anomaly now names one of them too.
        assert!(tape.check_anomaly().is_err());
    }

    #[test]
    fn anomaly_mode_checks_seeds_and_hook_replacements() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let x = tape.var(array![1.0, 2.0]);
        let y = x * 2.0;
        let seed = GradOptions::new()
            .seed(array![f64::NAN, 1.0])
            .retain_graph();
        let err = tape.grad_with(y, &[x], &seed).unwrap_err();
        assert_eq!(non_finite(&err).0, "seed cotangent");
        x.register_hook(|g| Some(g.map(|_| f64::INFINITY)));
        let err = tape.vjp(y, array![1.0, 1.0], &[x]).unwrap_err();
        assert_eq!(
            non_finite(&err),
            (
                "hooked cotangent",
                "hook",
                0,
                x.location().line(),
                Some((0, "var"))
            )
        );
    }

    #[test]
    fn without_anomaly_mode_nothing_is_checked_and_check_finite_finds_it_after() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![4.0, 0.0]);
        let w = tape.var(1.0);
        let line = x.location().line();
        let y = sum_to(&(Var::apply(Sqrt, &[&x]) * w), &[]);
        let g = y.backward().unwrap();
        assert!(g[x].view().iter().any(|v| v.is_infinite()));
        assert_eq!(
            non_finite(&g.check_finite().unwrap_err()),
            ("gradient", "var", 0, line, None)
        );
        assert_eq!(tape.check_anomaly(), Ok(()));

        let tape = Tape::<f64>::new();
        let x = tape.var(2.0);
        let g = (x * x).backward().unwrap();
        assert_eq!(g.check_finite(), Ok(()));
    }

    #[test]
    fn a_failed_sweep_leaves_the_tape_usable() {
        let mut tape = Tape::<f64>::new();
        {
            tape.set_anomaly_mode(true);
            let x = tape.var(0.0);
            let r = Var::apply(Sqrt, &[&x]);
            assert!(r.backward().is_err());
        }
        tape.clear();
        assert_eq!(tape.check_anomaly(), Ok(()));
        let x = tape.var(3.0);
        assert_eq!((x * x).backward().unwrap()[x].item(), Some(6.0));
    }
}
