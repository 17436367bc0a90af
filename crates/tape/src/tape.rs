//! The tape: an arena of recorded nodes in evaluation order.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::panic::Location;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, Result, SourceLocation};
use crate::graph::{Graph, Node, Origin};
use crate::rule::Rule;
use crate::tensor::{Shape, Tensor};
use crate::var::Var;

pub use crate::graph::NodeKey;

pub(crate) struct TapeInner<T: Float> {
    /// The arena of nodes, in evaluation order.
    pub(crate) graph: Graph<T>,
    /// This tape's identity for handles that do not borrow it ([`crate::HookHandle`]):
    /// they hold a `Weak` to it, which survives moves of the tape and can never match a
    /// later tape (the allocation stays reserved while any handle points at it).
    pub(crate) identity: Rc<()>,
    pub(crate) no_grad_depth: u32,
    pub(crate) anomaly_mode: bool,
    /// The first non-finite forward value found in anomaly mode, reported by the next sweep.
    pub(crate) anomaly: Option<Error>,
    /// Sweep buffers, kept so a training loop does not reallocate them every step.
    pub(crate) scratch: crate::sweep::Scratch<T>,
    /// Labels and the last sweep's gradient norms (kept outside the nodes, so that a node
    /// stays small and recording pays nothing for them).
    pub(crate) inspect: crate::inspect::InspectState,
    /// Gradient hooks by node (empty unless the user registered one).
    pub(crate) hooks: crate::hooks::Hooks<T>,
}

/// A tape: the arena that records every op evaluated on its [`Var`]s, in evaluation order.
///
/// Make one per training step or per function evaluation (or [`clear`](Tape::clear) and
/// refill one, which keeps its memory); enter inputs with [`var`](Tape::var) (gradients
/// flow to it) or [`constant`](Tape::constant); compute with ops on the Vars; then ask for
/// derivatives with [`Var::backward`], [`grad`](Tape::grad), [`vjp`](Tape::vjp) or
/// [`jvp`](Tape::jvp).
///
/// A tape is single-threaded (it uses interior mutability and is neither `Send` nor
/// `Sync`); use one tape per thread:
///
/// ```compile_fail
/// let tape = retrograd_tape::Tape::<f64>::new();
/// std::thread::spawn(move || tape.len());
/// ```
pub struct Tape<T: Float = f64> {
    pub(crate) inner: RefCell<TapeInner<T>>,
    _single_threaded: PhantomData<Rc<()>>,
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Drop for Tape<T> {
    /// Clears the arena and leaves it for the next tape on this thread (see
    /// [`Tape::new`]).
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        if !crate::recycle::worth_keeping(inner.graph.capacity()) {
            return;
        }
        inner.graph.clear();
        let graph = std::mem::replace(&mut inner.graph, Graph::with_capacity(0));
        let scratch = std::mem::take(&mut inner.scratch);
        crate::recycle::keep(crate::recycle::Recycled { graph, scratch });
    }
}

/// While alive, ops on the tape record nothing: their results are constants.
/// Made by [`Tape::no_grad`].
pub struct NoGradGuard<'t, T: Float> {
    tape: &'t Tape<T>,
}

impl<T: Float> Drop for NoGradGuard<'_, T> {
    fn drop(&mut self) {
        self.tape.inner.borrow_mut().no_grad_depth -= 1;
    }
}

impl<T: Float> Tape<T> {
    /// An empty tape.
    ///
    /// A tape dropped earlier on this thread leaves its cleared arena for the next one
    /// (one per element type, up to 2^19 nodes of capacity), so a new tape per training
    /// step costs about what a [`clear`](Tape::clear)ed one does.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty tape with room for `nodes` nodes before it reallocates (taken over from a
    /// dropped tape, as in [`new`](Tape::new), when one with that much room was kept).
    pub fn with_capacity(nodes: usize) -> Self {
        let (graph, scratch) = match crate::recycle::take(nodes) {
            Some(kept) => (kept.graph, kept.scratch),
            None => (Graph::with_capacity(nodes), Default::default()),
        };
        Tape {
            inner: RefCell::new(TapeInner {
                graph,
                identity: Rc::new(()),
                no_grad_depth: 0,
                anomaly_mode: false,
                anomaly: None,
                scratch,
                inspect: Default::default(),
                hooks: Default::default(),
            }),
            _single_threaded: PhantomData,
        }
    }

    /// Enters an input that gradients flow to (a leaf that requires a gradient): a model's
    /// parameters, or the point a derivative is taken at. Accepts scalars and ndarray
    /// arrays of any dimension; an owned array is moved in without a copy.
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(ndarray::array![1.0, 2.0]);
    /// let s = tape.var(3.0);
    /// assert!(x.requires_grad() && s.requires_grad());
    /// ```
    #[track_caller]
    pub fn var(&self, value: impl Into<Tensor<T>>) -> Var<'_, T> {
        let key = self.push(value.into(), Origin::leaf(true), &[], Location::caller());
        Var { tape: self, key }
    }

    /// Enters an input that no gradient flows to (data, labels, fixed weights).
    #[track_caller]
    pub fn constant(&self, value: impl Into<Tensor<T>>) -> Var<'_, T> {
        let key = self.push(value.into(), Origin::leaf(false), &[], Location::caller());
        Var { tape: self, key }
    }

    /// Starts a scope in which ops record nothing; it ends when the guard is dropped.
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let w = tape.var(2.0);
    /// let frozen = {
    ///     let _guard = tape.no_grad();
    ///     retrograd_tape::Var::apply(retrograd_tape::arith::Neg, &[&w])
    /// };
    /// assert!(!frozen.requires_grad());
    /// ```
    pub fn no_grad(&self) -> NoGradGuard<'_, T> {
        self.inner.borrow_mut().no_grad_depth += 1;
        NoGradGuard { tape: self }
    }

    /// Whether ops record right now (false inside a [`no_grad`](Tape::no_grad) scope).
    pub fn is_recording(&self) -> bool {
        self.inner.borrow().no_grad_depth == 0
    }

    /// Turns anomaly mode on or off (off by default; free when off). When on, every
    /// forward value and every cotangent is checked for NaN and infinity. The first
    /// non-finite forward value is remembered (the op still returns its Var, since ops do
    /// not return `Result`) and returned as [`Error::NonFinite`] by every later reverse
    /// sweep on this tape, whichever output it starts from, until [`Tape::clear`], and by
    /// [`check_anomaly`](Tape::check_anomaly); a non-finite cotangent stops the
    /// sweep at once with that error. Either names the op, its node id and the user's
    /// line; for a cotangent also the node it flows into.
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// tape.set_anomaly_mode(true);
    /// let x = tape.var(0.0);
    /// let y = x / x; // 0/0 = NaN
    /// let err = y.backward().err().unwrap();
    /// assert!(err.to_string().contains("`div`"));
    /// assert_eq!(tape.check_anomaly(), Err(err));
    /// ```
    pub fn set_anomaly_mode(&self, on: bool) {
        self.inner.borrow_mut().anomaly_mode = on;
    }

    /// Whether anomaly mode is on.
    pub fn anomaly_mode(&self) -> bool {
        self.inner.borrow().anomaly_mode
    }

    /// The first non-finite forward value anomaly mode found, as an error.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming that value's op, node and line.
    pub fn check_anomaly(&self) -> Result<()> {
        match &self.inner.borrow().anomaly {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The number of nodes recorded.
    pub fn len(&self) -> usize {
        self.inner.borrow().graph.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every node but keeps the memory, so that a training loop can refill the
    /// same tape each step without fresh allocations (and their page faults). Needs
    /// `&mut self`, so no Var of the old contents can still be alive.
    pub fn clear(&mut self) {
        let inner = self.inner.get_mut();
        inner.graph.clear();
        inner.anomaly = None;
        inner.inspect.clear();
        inner.hooks.clear();
    }

    /// Runs `f` on a node.
    ///
    /// # Panics
    /// When the key is stale; a `Var` always holds a live key, since the tape can only be
    /// cleared when no Var borrows it.
    pub(crate) fn with_node<R>(&self, key: NodeKey, f: impl FnOnce(&Node<T>) -> R) -> R {
        let inner = self.inner.borrow();
        f(inner.graph.node(key))
    }

    /// Reads the graph (for what needs more than one node: an op's name, say).
    pub(crate) fn with_graph<R>(&self, f: impl FnOnce(&Graph<T>) -> R) -> R {
        f(&self.inner.borrow().graph)
    }

    pub(crate) fn push(
        &self,
        value: Tensor<T>,
        origin: Origin<T>,
        inputs: &[NodeKey],
        location: SourceLocation,
    ) -> NodeKey {
        let mut inner = self.inner.borrow_mut();
        Self::push_in(&mut inner, value, origin, inputs, location)
    }

    #[inline(always)]
    fn push_in(
        inner: &mut TapeInner<T>,
        value: Tensor<T>,
        origin: Origin<T>,
        inputs: &[NodeKey],
        location: SourceLocation,
    ) -> NodeKey {
        if inner.anomaly_mode && inner.anomaly.is_none() && !value.all_finite() {
            inner.anomaly = Some(Error::NonFinite {
                what: "forward value",
                op: inner.graph.name(&origin),
                node: inner.graph.len(),
                location,
                into: None,
            });
        }
        let key = inner.graph.push(value, origin, inputs, location);
        inner.inspect.scopes.record(key);
        key
    }

    pub(crate) fn push_constant(
        &self,
        value: Tensor<T>,
        name: &'static str,
        location: SourceLocation,
    ) -> NodeKey {
        let mut inner = self.inner.borrow_mut();
        let origin = inner.graph.constant(name);
        Self::push_in(&mut inner, value, origin, &[], location)
    }

    /// Computes a rule's forward value from recorded inputs and records the node: with its
    /// rule when some input requires a gradient and recording is on, else as a constant.
    /// Each input is looked up once (its value and whether it requires a gradient); the
    /// error is boxed so that the common, successful return stays small. Always inlined:
    /// left out of line (LLVM's choice with one codegen unit), the recorded value crosses
    /// the call through the stack and W1's recording slows by a quarter.
    #[inline(always)]
    pub(crate) fn record<R: Rule<T>>(
        &self,
        mut rule: R,
        inputs: &[NodeKey],
        location: SourceLocation,
    ) -> std::result::Result<NodeKey, Box<Error>> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let graph = &inner.graph;
        graph.check_values(inputs).map_err(Box::new)?;
        if let Some((y, any_grad)) = Self::scalar_forward(graph, &mut rule, inputs) {
            let origin = Self::origin(inner, rule, any_grad);
            return Ok(Self::push_in(
                inner,
                Tensor::Scalar(y),
                origin,
                inputs,
                location,
            ));
        }
        // The common arities pass their values on the stack.
        let (forward, any_grad) = match inputs {
            [a] => {
                let a = graph.node(*a);
                (rule.forward(&[&a.value]), a.origin.requires_grad())
            }
            [a, b] => {
                let (a, b) = (graph.node(*a), graph.node(*b));
                (
                    rule.forward(&[&a.value, &b.value]),
                    a.origin.requires_grad() || b.origin.requires_grad(),
                )
            }
            _ => {
                let values: SmallVec<[&Tensor<T>; 4]> =
                    inputs.iter().map(|k| &graph.node(*k).value).collect();
                let any = inputs.iter().any(|k| graph.node(*k).origin.requires_grad());
                (rule.forward(&values), any)
            }
        };
        let value = match forward {
            Ok(v) => v,
            Err(message) => return Err(invalid_op(rule.name(), graph, inputs, message, location)),
        };
        let origin = Self::origin(inner, rule, any_grad);
        Ok(Self::push_in(inner, value, origin, inputs, location))
    }

    /// The value of an op on one or two scalars through its [`Rule::scalar_forward`], and
    /// whether an input requires a gradient; `None` when the inputs are not all scalars
    /// or the rule has no scalar path.
    #[inline(always)]
    fn scalar_forward<R: Rule<T>>(
        graph: &Graph<T>,
        rule: &mut R,
        inputs: &[NodeKey],
    ) -> Option<(T, bool)> {
        match inputs {
            [a] => {
                let a = graph.node(*a);
                let Tensor::Scalar(x) = a.value else {
                    return None;
                };
                Some((rule.scalar_forward(&[x])?, a.origin.requires_grad()))
            }
            [a, b] => {
                let (a, b) = (graph.node(*a), graph.node(*b));
                let (Tensor::Scalar(x), Tensor::Scalar(y)) = (&a.value, &b.value) else {
                    return None;
                };
                let any_grad = a.origin.requires_grad() || b.origin.requires_grad();
                Some((rule.scalar_forward(&[*x, *y])?, any_grad))
            }
            _ => None,
        }
    }

    /// The origin of a node `rule` computed: the rule itself when some input requires a
    /// gradient and recording is on, else a constant that keeps only its name.
    #[inline(always)]
    fn origin<R: Rule<T>>(inner: &mut TapeInner<T>, rule: R, any_grad: bool) -> Origin<T> {
        if any_grad && inner.no_grad_depth == 0 {
            Origin::Op(Box::new(rule))
        } else {
            inner.graph.constant(rule.name())
        }
    }
}

/// The error of a forward computation that rejected its inputs (kept out of line: it is
/// never on the hot path).
#[cold]
#[inline(never)]
fn invalid_op<T: Float>(
    op: &'static str,
    graph: &Graph<T>,
    inputs: &[NodeKey],
    message: String,
    location: SourceLocation,
) -> Box<Error> {
    Box::new(Error::InvalidOp {
        op,
        shapes: inputs
            .iter()
            .map(|k| Shape::from_slice(graph.node(*k).value.shape()))
            .collect(),
        message,
        location,
    })
}

impl<T: Float> std::fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        let tracked = inner
            .graph
            .iter()
            .filter(|(_, n)| n.origin.requires_grad())
            .count();
        write!(
            f,
            "Tape<{}>({} nodes, {} tracked, {} labelled{}{})",
            T::NAME,
            inner.graph.len(),
            tracked,
            inner.inspect.labels.len(),
            if inner.anomaly_mode {
                ", anomaly mode"
            } else {
                ""
            },
            if inner.hooks.is_empty() {
                String::new()
            } else {
                format!(", {} hooks", inner.hooks.len())
            }
        )
    }
}

/// Prints the tape as a table, one row per node ([`Tape::dump`]).
impl<T: Float> std::fmt::Display for Tape<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.dump(), f)
    }
}
