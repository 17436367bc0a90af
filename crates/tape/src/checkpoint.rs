//! Checkpointing: record a block of ops as one node that keeps only its inputs, and
//! recompute the block when a sweep needs its inside.
//!
//! A tape keeps every intermediate value until the sweep. For a deep model that is what
//! runs out first; [`checkpoint`] trades compute for that memory. The block runs once
//! forward on a throw-away sub-tape whose values are dropped as soon as the output is
//! known, so the outer tape holds only the block's inputs and its output. When a reverse
//! sweep reaches the node it runs the block again and sweeps through the copy:
//!
//! - in a plain sweep, on a fresh sub-tape with the inputs as leaves (freed when the
//!   node's cotangents are known), so at most one block's inside is alive at a time;
//! - under `create_graph`, on the outer tape from the recorded inputs, so the gradients
//!   are Vars that can be differentiated again (higher order through a checkpoint);
//! - in a forward (tangent) sweep, the same way with the block's JVP.
//!
//! Each block costs one extra forward evaluation per reverse sweep. The tape dump shows
//! the block as one `checkpoint` node at the line that called [`checkpoint`], and
//! [`Tape::checkpoint_dump`] expands it. In anomaly mode the block's own ops are checked
//! and a non-finite value names the op inside the block and its line.
//!
//! ```
//! use retrograd_tape::{Tape, checkpoint::checkpoint};
//! let tape = Tape::<f64>::new();
//! let (x, w) = (tape.var(2.0), tape.var(3.0));
//! // x·w·x·w, recorded as one node that keeps x and w only.
//! let y = checkpoint(|v| v[0] * v[1] * v[0] * v[1], &[x, w]);
//! assert_eq!(tape.len(), 3);
//! let g = y.backward().unwrap();
//! assert_eq!(g[x].item(), 2.0 * 2.0 * 9.0); // 2·x·w²
//! assert_eq!(g[w].item(), 2.0 * 3.0 * 4.0); // 2·w·x²
//! ```

use std::any::Any;
use std::cell::Cell;
use std::panic::Location;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::error::{Error, Result, SourceLocation};
use crate::forward::JvpOptions;
use crate::grad::GradOptions;
use crate::inspect::Dump;
use crate::rule::{Cotangents, Rule, RuleCtx};
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::{Val, Var};
use crate::{Float, arith};

/// A checkpointed block: Vars of any tape in, a Var of the same tape out. The lifetime is
/// universal because the block runs on several tapes: the sub-tape of the forward
/// evaluation, the sub-tape of each recomputation, or the outer tape under `create_graph`.
pub type Block<T> = dyn for<'s> Fn(&[Var<'s, T>]) -> Var<'s, T>;

/// Returns `f` unchanged, with its signature pinned to "Vars of any tape in, a Var of the
/// same tape out", so that a closure built in a `let` (one that captures what it needs by
/// `move`) can be handed to [`checkpoint`]; closures written in the call need no help.
///
/// ```
/// use retrograd_tape::{Tape, checkpoint::{block, checkpoint}};
/// let scale = 3.0;
/// let f = block(move |v| v[0] * scale);
/// let tape = Tape::<f64>::new();
/// let x = tape.var(2.0);
/// assert_eq!(checkpoint(f, &[x]).item(), 6.0);
/// ```
pub fn block<T: Float, F>(f: F) -> F
where
    F: for<'s> Fn(&[Var<'s, T>]) -> Var<'s, T>,
{
    f
}

/// Records `block(inputs)` as one node that keeps only the inputs; a sweep through it
/// recomputes the block (see the [module docs](self)).
///
/// The block must compute the same function each time it runs (no state that changes
/// between calls, e.g. a fresh random dropout mask); a recomputation whose output shape
/// differs from the first evaluation's panics naming the checkpoint's line.
///
/// ```
/// use retrograd_tape::{Tape, checkpoint::checkpoint};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(ndarray::array![1.0, 2.0]);
/// let y = checkpoint(|v| v[0] * v[0] * v[0], &[x]);
/// let s = retrograd_tape::arith::sum_to(&y, &[]);
/// // Higher order works through the checkpoint: d²/dx² Σx³ · 1 = 6x.
/// let dx = tape.grad_graph(s, &[x]).unwrap()[0];
/// let d2 = tape.grad(retrograd_tape::arith::sum_to(&dx, &[]), &[x]).unwrap();
/// assert_eq!(d2[0], ndarray::array![6.0, 12.0].into_dyn());
/// ```
///
/// # Panics
/// As [`try_checkpoint`]'s errors.
#[track_caller]
pub fn checkpoint<'t, T, F>(block: F, inputs: &[Var<'t, T>]) -> Var<'t, T>
where
    T: Float,
    F: for<'s> Fn(&[Var<'s, T>]) -> Var<'s, T> + 'static,
{
    match try_checkpoint(block, inputs) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// [`checkpoint`], returning an error instead of panicking.
///
/// # Errors
/// [`Error::InvalidOp`] when `inputs` is empty or the block returns a Var of another tape
/// than the one it was given; [`Error::ForeignVar`] when the inputs belong to different
/// tapes.
#[track_caller]
pub fn try_checkpoint<'t, T, F>(block: F, inputs: &[Var<'t, T>]) -> Result<Var<'t, T>>
where
    T: Float,
    F: for<'s> Fn(&[Var<'s, T>]) -> Var<'s, T> + 'static,
{
    let block: Rc<Block<T>> = Rc::new(block);
    let Some(first) = inputs.first() else {
        return Err(Error::InvalidOp {
            op: "checkpoint",
            shapes: vec![],
            message: "a checkpointed block needs at least one input".into(),
            location: Location::caller(),
        });
    };
    let tape = first.tape;
    let anomaly = tape.anomaly_mode().then(|| Rc::new(Cell::new(None)));
    let had_anomaly = tape.check_anomaly().is_err();
    let rule = Checkpoint {
        block: block.clone(),
        nodes: 0,
        anomaly: anomaly.clone(),
        location: Location::caller(),
    };
    let refs: SmallVec<[&Var<'t, T>; 4]> = inputs.iter().collect();
    let y = Var::try_apply(rule, &refs)?;
    if let Some(found) = anomaly.and_then(|cell| cell.take())
        && !had_anomaly
    {
        tape.inner.borrow_mut().anomaly = Some(inside(found, y.key.pos()));
    }
    let erased: Rc<dyn Any> = Rc::new(block);
    tape.inner
        .borrow_mut()
        .inspect
        .checkpoints
        .insert(y.key, erased);
    Ok(y)
}

/// An anomaly found inside a block, reported at the checkpoint's node with the inner op
/// and the inner line.
fn inside(e: Error, node: usize) -> Error {
    match e {
        Error::NonFinite {
            what, op, location, ..
        } => Error::NonFinite {
            what,
            op,
            node,
            location,
            into: None,
        },
        other => other,
    }
}

impl<T: Float> Tape<T> {
    /// Expands a checkpointed node: runs its block again on a fresh tape from the node's
    /// input values and returns that tape's dump (its leaves are the block's inputs, in
    /// order). `None` when `var` is not the output of [`checkpoint`].
    ///
    /// ```
    /// use retrograd_tape::{Tape, checkpoint::checkpoint};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let y = checkpoint(|v| v[0] * v[0] + 1.0, &[x]);
    /// assert!(tape.dump().to_string().contains("checkpoint"));
    /// let inside = tape.checkpoint_dump(y).unwrap();
    /// assert_eq!(inside.op("mul").len(), 1);
    /// assert!(tape.checkpoint_dump(x).is_none());
    /// ```
    ///
    /// # Panics
    /// When `var` belongs to another tape.
    #[track_caller]
    pub fn checkpoint_dump(&self, var: Var<'_, T>) -> Option<Dump> {
        assert!(
            std::ptr::eq(var.tape, self),
            "checkpoint_dump: the Var (created at {}) belongs to another tape",
            var.location()
        );
        let (block, values) = {
            let inner = self.inner.borrow();
            let erased = inner.inspect.checkpoints.get(var.key)?.clone();
            let block = erased.downcast_ref::<Rc<Block<T>>>()?.clone();
            let node = inner.graph.node(var.key);
            let values: Vec<Tensor<T>> = inner
                .graph
                .inputs(node)
                .iter()
                .map(|k| inner.graph.node(*k).value.clone())
                .collect();
            (block, values)
        };
        let sub = Tape::new();
        let xs: Vec<Var<'_, T>> = values.into_iter().map(|v| sub.var(v)).collect();
        let _ = block(&xs);
        Some(sub.dump())
    }
}

/// The rule of a checkpointed node.
struct Checkpoint<T: Float> {
    block: Rc<Block<T>>,
    /// Nodes the block recorded in its forward evaluation (for the dump).
    nodes: usize,
    /// In anomaly mode: where the forward evaluation reports a non-finite value.
    anomaly: Option<Rc<Cell<Option<Error>>>>,
    /// The line that called [`checkpoint`].
    location: SourceLocation,
}

impl<T: Float> Rule<T> for Checkpoint<T> {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("nodes", self.nodes.to_string())]
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> std::result::Result<Tensor<T>, String> {
        let sub = Tape::new();
        sub.set_anomaly_mode(self.anomaly.is_some());
        let xs: SmallVec<[Var<'_, T>; 4]> =
            inputs.iter().map(|t| sub.constant((*t).clone())).collect();
        let y = (self.block)(&xs);
        if !std::ptr::eq(y.tape, &sub) {
            return Err("the block returned a Var of another tape than its inputs'".into());
        }
        self.nodes = sub.len() - xs.len();
        if let (Some(cell), Err(e)) = (&self.anomaly, sub.check_anomaly()) {
            cell.set(Some(e));
        }
        Ok(y.value())
    }

    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        match recording_tape(cx.inputs(), std::slice::from_ref(g)) {
            None => self.vjp_plain(cx, g.value()),
            Some(tape) => self.vjp_recorded(tape, cx, g),
        }
    }

    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, tangents: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let given: SmallVec<[Val<'t, T>; 4]> = tangents.iter().flatten().cloned().collect();
        let wanted = |i: usize| tangents[i].is_some();
        let result = match recording_tape(cx.inputs(), &given) {
            None => {
                let sub = Tape::new();
                let xs = enter_plain(&sub, cx.inputs(), wanted, self.location);
                let y = (self.block)(&xs);
                let at: Vec<Var<'_, T>> = pick(&xs, wanted);
                let given = given.into_iter().map(|t| Val::Const(t.value())).collect();
                sub.jvp_with(&[y], &at, given, &JvpOptions::new())
                    .map(|mut t| Val::Const(t.remove(0).value()))
            }
            Some(tape) => {
                let xs = enter_recorded(tape, cx.inputs(), wanted);
                let y = (self.block)(&xs);
                let at: Vec<Var<'t, T>> = pick(&xs, wanted);
                let opts = JvpOptions::new().create_graph();
                tape.jvp_with(&[y], &at, given.into_vec(), &opts)
                    .map(|mut t| t.remove(0))
            }
        };
        Some(result.unwrap_or_else(|e| self.recompute_failed(e)))
    }
}

impl<T: Float> Checkpoint<T> {
    /// A plain sweep: the block again on a fresh sub-tape, swept with the cotangent as seed.
    fn vjp_plain<'t>(&self, cx: &RuleCtx<'t, T>, g: Tensor<T>) -> Cotangents<'t, T> {
        let wanted = |i| cx.needs(i);
        let sub = Tape::new();
        let xs = enter_plain(&sub, cx.inputs(), wanted, self.location);
        let y = (self.block)(&xs);
        let at = pick(&xs, wanted);
        let grads = sub
            .grad_with(y, &at, &GradOptions::new().seed(g))
            .unwrap_or_else(|e| self.recompute_failed(e));
        let mut grads = grads.into_iter();
        (0..xs.len())
            .map(|i| {
                let g = if wanted(i) { grads.next() } else { None };
                g.map(|g| Val::Const(g.value()))
            })
            .collect()
    }

    /// A recording sweep: the block again on the outer tape, from fresh copies of the
    /// inputs (so the nested sweep stops there and meets no hook of the inputs), swept with
    /// `create_graph` so that the cotangents are Vars.
    fn vjp_recorded<'t>(
        &self,
        tape: &'t Tape<T>,
        cx: &RuleCtx<'t, T>,
        g: &Val<'t, T>,
    ) -> Cotangents<'t, T> {
        let wanted = |i| cx.needs(i);
        let xs = enter_recorded(tape, cx.inputs(), wanted);
        let y = (self.block)(&xs);
        let at = pick(&xs, wanted);
        let grads = match g {
            Val::Const(seed) => {
                let opts = GradOptions::new().create_graph().seed(seed.clone());
                tape.grad_with(y, &at, &opts)
            }
            Val::Var(g) => {
                let total = arith::sum_to(&(y * *g), &[]);
                tape.grad_with(total, &at, &GradOptions::new().create_graph())
            }
        };
        let mut grads = grads
            .unwrap_or_else(|e| self.recompute_failed(e))
            .into_iter();
        (0..xs.len())
            .map(|i| if wanted(i) { grads.next() } else { None })
            .collect()
    }

    /// A recomputation the sweep could not differentiate: the block computed something
    /// else than in its first evaluation (a programmer error).
    #[cold]
    fn recompute_failed(&self, e: Error) -> ! {
        panic!(
            "checkpoint (recorded at {}): recomputing the block failed: {e}; a checkpointed \
             block must compute the same function every time it runs",
            self.location
        )
    }
}

/// The tape a rule's values are recorded on, if any of them is a Var.
fn recording_tape<'t, T: Float>(a: &[Val<'t, T>], b: &[Val<'t, T>]) -> Option<&'t Tape<T>> {
    a.iter().chain(b).find_map(|v| v.as_var().map(|v| v.tape))
}

/// The inputs on a fresh sub-tape: leaves where a derivative is wanted, constants elsewhere.
fn enter_plain<'s, T: Float>(
    sub: &'s Tape<T>,
    inputs: &[Val<'_, T>],
    wanted: impl Fn(usize) -> bool,
    here: SourceLocation,
) -> Vec<Var<'s, T>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let v = x.value();
            if wanted(i) {
                let leaf = crate::graph::Origin::leaf(true);
                sub.push(v, leaf, &[], here)
            } else {
                sub.push_constant(v, "constant", here)
            }
        })
        .map(|key| Var { tape: sub, key })
        .collect()
}

/// The inputs on the outer tape, for a recomputation that records: where a derivative is
/// wanted, a recorded copy of a differentiable input (so derivatives of the result still
/// reach the input) or a fresh leaf for a constant one; elsewhere the input itself.
fn enter_recorded<'t, T: Float>(
    tape: &'t Tape<T>,
    inputs: &[Val<'t, T>],
    wanted: impl Fn(usize) -> bool,
) -> Vec<Var<'t, T>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, x)| match x {
            Val::Var(v) if wanted(i) && v.requires_grad() => Var::apply(Reenter, &[v]),
            _ if wanted(i) => tape.var(x.value()),
            _ => x.clone().into_var(tape),
        })
        .collect()
}

/// The Vars at the wanted positions.
fn pick<'s, T: Float>(xs: &[Var<'s, T>], wanted: impl Fn(usize) -> bool) -> Vec<Var<'s, T>> {
    (0..xs.len())
        .filter(|&i| wanted(i))
        .map(|i| xs[i])
        .collect()
}

/// The identity, recorded where a recomputation re-enters an input of a checkpointed block.
struct Reenter;

impl<T: Float> Rule<T> for Reenter {
    fn name(&self) -> &'static str {
        "checkpoint_input"
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> std::result::Result<Tensor<T>, String> {
        Ok(x[0].clone())
    }

    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::one(g.clone())
    }

    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].clone()
    }

    fn madds(&self, _: &[&[usize]], _: &[usize]) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests;
