//! The batched sweeps: `k` tangents pushed forward, or `k` cotangents pulled back, in one
//! pass over the tape, each rule called once per node on the whole batch (see
//! [`batch`](crate::batch)). They are plain sweeps: nothing is recorded, the graph is
//! kept, and every value in flight is a tensor whose leading axis is the batch.

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::Float;
use crate::batch::batched_shape;
use crate::error::{Error, Result};
use crate::graph::{NodeKey, Origin, Reach};
use crate::rule::RuleCtx;
use crate::tape::{Tape, TapeInner};
use crate::tensor::{Shape, Tensor, shape_eq};
use crate::var::{Val, Var};

/// Values in flight by position, `slots[p - lo]` for position `p`.
struct Slots<T: Float> {
    lo: usize,
    slots: Vec<Option<Tensor<T>>>,
}

impl<T: Float> Slots<T> {
    fn new(lo: usize, hi: usize) -> Self {
        let mut slots = Vec::new();
        slots.resize_with((hi + 1).saturating_sub(lo), || None);
        Slots { lo, slots }
    }
    fn get(&self, key: NodeKey) -> Option<&Tensor<T>> {
        self.slots.get(key.pos().wrapping_sub(self.lo))?.as_ref()
    }
    fn take(&mut self, key: NodeKey) -> Option<Tensor<T>> {
        self.slots.get_mut(key.pos().wrapping_sub(self.lo))?.take()
    }
    fn put(&mut self, key: NodeKey, t: Tensor<T>) {
        self.slots[key.pos() - self.lo] = Some(t);
    }
    /// Adds `t` into the slot of `key` (moved in when it is the first).
    fn add(&mut self, key: NodeKey, t: Tensor<T>) {
        let slot = &mut self.slots[key.pos() - self.lo];
        match slot {
            Some(acc) => acc.add_assign(&t),
            None => *slot = Some(t),
        }
    }
}

/// A plain context for the rule of `node`: its inputs' and output's values
/// ([`Error::ValueFreed`] when a freeing sweep released one of them).
fn plain_ctx<'t, T: Float>(
    inner: &TapeInner<T>,
    key: NodeKey,
    needs: u64,
) -> Result<RuleCtx<'t, T>> {
    let graph = &inner.graph;
    let node = graph.node(key);
    let inputs = graph
        .inputs(node)
        .iter()
        .map(|k| graph.value(*k).map(|v| Val::Const(v.clone())))
        .collect::<Result<_>>()?;
    Ok(RuleCtx {
        inputs,
        output: Val::Const(graph.value(key)?.clone()),
        needs,
    })
}

/// The size of the batch a tensor of `shape` carries for a value of `of`, when its shape
/// is `[k] ++ of`.
fn batch_size(shape: &[usize], of: &[usize]) -> Option<usize> {
    (shape.len() == of.len() + 1 && shape_eq(&shape[1..], of)).then(|| shape[0])
}

impl<T: Float> Tape<T> {
    /// The batched Jacobian-vector product: `tangents[i]` holds `k` tangents of input `i`
    /// as one tensor of shape `[k] ++ inputs[i].shape()`; returns, per output, its `k`
    /// tangents as an array of shape `[k] ++ output.shape()`. One forward sweep for the
    /// whole batch: each rule runs once on it ([`Rule::jvp_batch`](crate::Rule::jvp_batch)),
    /// so a matmul of `k` tangents is one matrix product, not `k`. With the identity as the
    /// batch, this is a block of the Jacobian's columns. Plain: nothing is recorded, and the
    /// graph is kept.
    ///
    /// ```
    /// use retrograd_tape::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var([1.0, 2.0, 3.0]);
    /// let y = retrograd_tape::arith::sum_to(&(x * x), &[]);
    /// // The whole gradient as three tangents at once: the rows of the identity.
    /// let eye = Tensor::from_array(ndarray::Array2::<f64>::eye(3));
    /// let cols = tape.jvp_batch(&[y], &[x], vec![eye]).unwrap();
    /// assert_eq!(cols[0], ndarray::array![2.0, 4.0, 6.0].into_dyn());
    /// ```
    ///
    /// # Errors
    /// As [`jvp_with`](Tape::jvp_with), and [`Error::ShapeMismatch`] when a tangent's shape
    /// is not `[k] ++` its input's shape with one `k` for all.
    #[track_caller]
    pub fn jvp_batch(
        &self,
        outputs: &[Var<'_, T>],
        inputs: &[Var<'_, T>],
        tangents: Vec<Tensor<T>>,
    ) -> Result<Vec<ArrayD<T>>> {
        self.check_sweep_vars("jvp_batch", outputs, inputs)?;
        let ins: SmallVec<[NodeKey; 4]> = inputs.iter().map(|v| v.key).collect();
        let outs: SmallVec<[NodeKey; 4]> = outputs.iter().map(|v| v.key).collect();
        let k = self.batch_of(&ins, &tangents, "tangent")?;
        let seeds = ins.iter().copied().zip(tangents).collect();
        self.forward_batch(&ins, &outs, seeds, k)
    }

    /// The batched vector-Jacobian product: `cotangents` holds `k` cotangents of `output`
    /// as one tensor of shape `[k] ++ output.shape()`; returns, per input, its `k`
    /// cotangents as an array of shape `[k] ++ input.shape()`. One reverse sweep for the
    /// whole batch ([`Rule::vjp_batch`](crate::Rule::vjp_batch)). With the identity as the
    /// batch, this is a block of the Jacobian's rows. Plain: nothing is recorded, and the
    /// graph is kept (so it can run again).
    ///
    /// ```
    /// use retrograd_tape::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var([1.0, 2.0]);
    /// let y = x * x * 3.0; // J = diag(6x)
    /// let eye = Tensor::from_array(ndarray::Array2::<f64>::eye(2));
    /// let rows = tape.vjp_batch(y, eye, &[x]).unwrap();
    /// assert_eq!(rows[0], ndarray::array![[6.0, 0.0], [0.0, 12.0]].into_dyn());
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `cotangents` is not of shape `[k] ++ output.shape()`,
    /// [`Error::ForeignVar`] for a Var of another tape, [`Error::NotDifferentiable`] for
    /// an input that does not require a gradient, and [`Error::GraphFreed`] when an
    /// earlier sweep consumed a rule on the way.
    #[track_caller]
    pub fn vjp_batch(
        &self,
        output: Var<'_, T>,
        cotangents: Tensor<T>,
        inputs: &[Var<'_, T>],
    ) -> Result<Vec<ArrayD<T>>> {
        self.check_sweep_vars("vjp_batch", &[output], inputs)?;
        let ins: SmallVec<[NodeKey; 4]> = inputs.iter().map(|v| v.key).collect();
        let k = self.batch_of(
            &[output.key],
            std::slice::from_ref(&cotangents),
            "cotangent",
        )?;
        self.reverse_batch(&ins, output.key, cotangents, k)
    }

    /// Checks that every Var is of this tape and every input requires a gradient (what
    /// every forward sweep, batched or not, asks of its arguments).
    #[track_caller]
    pub(crate) fn check_sweep_vars(
        &self,
        op: &'static str,
        outputs: &[Var<'_, T>],
        inputs: &[Var<'_, T>],
    ) -> Result<()> {
        if let Some(v) = outputs
            .iter()
            .chain(inputs)
            .find(|v| !std::ptr::eq(v.tape, self))
        {
            return Err(Error::ForeignVar {
                op,
                location: v.location(),
            });
        }
        let inner = self.inner.borrow();
        for (i, v) in inputs.iter().enumerate() {
            let n = inner.graph.node(v.key);
            if !n.origin.requires_grad() {
                return Err(Error::NotDifferentiable {
                    input: i,
                    location: n.location,
                    reason: "it does not require a gradient, so the ops on it were not recorded",
                });
            }
        }
        Ok(())
    }

    /// The batch size the tensors carry for the nodes `keys` (each of shape `[k] ++` its
    /// node's shape, one `k` for all), or a shape error naming the first that does not.
    fn batch_of(&self, keys: &[NodeKey], batch: &[Tensor<T>], what: &str) -> Result<usize> {
        let inner = self.inner.borrow();
        let mut k = None;
        if keys.len() != batch.len() {
            return Err(Error::InvalidOp {
                op: "batched sweep",
                shapes: batch.iter().map(|t| Shape::from_slice(t.shape())).collect(),
                message: format!(
                    "{} values but {} batches of {what}s",
                    keys.len(),
                    batch.len()
                ),
                location: std::panic::Location::caller(),
            });
        }
        for (i, (key, t)) in keys.iter().zip(batch).enumerate() {
            let of = inner.graph.shape(*key);
            match batch_size(t.shape(), of) {
                Some(b) if k.is_none_or(|k| k == b) => k = Some(b),
                _ => {
                    return Err(Error::ShapeMismatch {
                        what: format!("batch of {what}s {i} (batch axis first)"),
                        expected: batched_shape(
                            k.unwrap_or(t.shape().first().copied().unwrap_or(0)),
                            of,
                        ),
                        got: Shape::from_slice(t.shape()),
                    });
                }
            }
        }
        Ok(k.unwrap_or(0))
    }

    /// The batched forward sweep over the nodes between `inputs` and `outputs`, from the
    /// given seeds (one batch per input key).
    pub(crate) fn forward_batch(
        &self,
        inputs: &[NodeKey],
        outputs: &[NodeKey],
        seeds: Vec<(NodeKey, Tensor<T>)>,
        k: usize,
    ) -> Result<Vec<ArrayD<T>>> {
        let inner = self.inner.borrow();
        let mut reach = Reach::default();
        inner.graph.between(Some(inputs), outputs, &mut reach);
        let lo = inputs.iter().map(|k| k.pos()).min().unwrap_or(0);
        let hi = outputs.iter().map(|k| k.pos()).max().unwrap_or(0);
        let mut slots = Slots::new(lo, hi);
        for (key, t) in seeds {
            if reach.on_path(key) {
                slots.add(key, t);
            }
        }
        for key in reach.on_path_in_order().filter(|k| !inputs.contains(k)) {
            let node = inner.graph.node(key);
            let Origin::Op(rule) = &node.origin else {
                return Err(freed(inner.graph.name(&node.origin), node.location));
            };
            let tangents: SmallVec<[Option<Tensor<T>>; 2]> = inner
                .graph
                .inputs(node)
                .iter()
                .map(|k| slots.get(*k).cloned())
                .collect();
            if tangents.iter().all(Option::is_none) {
                continue;
            }
            let cx = plain_ctx(&inner, key, u64::MAX)?;
            if let Some(t) = rule.jvp_batch(&cx, &tangents, k) {
                let expected = batched_shape(k, node.value.shape());
                assert!(
                    shape_eq(t.shape(), &expected),
                    "the batched JVP rule of `{}` (recorded at {}) returned tangents of shape \
                     {:?} for an output of shape {:?} and a batch of {k}",
                    rule.name(),
                    node.location,
                    t.shape(),
                    node.value.shape()
                );
                slots.put(key, t);
            }
        }
        Ok(outputs
            .iter()
            .map(|key| match slots.get(*key) {
                Some(t) => t.to_array(),
                None => ArrayD::zeros(batched_shape(k, inner.graph.shape(*key)).as_slice()),
            })
            .collect())
    }

    /// The batched reverse sweep from `output` (seeded with `seed`, of shape
    /// `[k] ++ output.shape`) back to `inputs`.
    pub(crate) fn reverse_batch(
        &self,
        inputs: &[NodeKey],
        output: NodeKey,
        seed: Tensor<T>,
        k: usize,
    ) -> Result<Vec<ArrayD<T>>> {
        let inner = self.inner.borrow();
        let mut reach = Reach::default();
        inner.graph.between(Some(inputs), &[output], &mut reach);
        let lo = inputs.iter().map(|k| k.pos()).min().unwrap_or(0);
        let mut slots = Slots::new(lo, output.pos());
        let mut found: Vec<(NodeKey, Tensor<T>)> = Vec::new();
        if reach.on_path(output) {
            slots.put(output, seed);
        }
        let order: Vec<NodeKey> = reach.on_path_in_order().collect();
        for &key in order.iter().rev() {
            let Some(g) = slots.take(key) else { continue };
            if inputs.contains(&key) {
                found.push((key, g.clone()));
            }
            let node = inner.graph.node(key);
            let node_inputs = inner.graph.inputs(node);
            let needs = node_inputs
                .iter()
                .enumerate()
                .filter(|(_, k)| reach.on_path(**k))
                .fold(0u64, |m, (i, _)| m | 1 << i.min(63));
            if needs == 0 || !node.origin.is_recorded() {
                continue;
            }
            let Origin::Op(rule) = &node.origin else {
                return Err(freed(inner.graph.name(&node.origin), node.location));
            };
            let cx = plain_ctx(&inner, key, needs)?;
            let cots = rule.vjp_batch(&cx, &g, k);
            for (i, (input, c)) in node_inputs.iter().zip(cots).enumerate() {
                let Some(c) = c else { continue };
                if !reach.on_path(*input) {
                    continue;
                }
                let expected = batched_shape(k, inner.graph.shape(*input));
                assert!(
                    shape_eq(c.shape(), &expected),
                    "the batched VJP rule of `{}` (recorded at {}) returned cotangents of shape \
                     {:?} for input {i}, expected {expected:?}",
                    rule.name(),
                    node.location,
                    c.shape(),
                );
                slots.add(*input, c);
            }
        }
        Ok(inputs
            .iter()
            .map(|key| match found.iter().find(|(k, _)| k == key) {
                Some((_, t)) => t.to_array(),
                None => ArrayD::zeros(batched_shape(k, inner.graph.shape(*key)).as_slice()),
            })
            .collect())
    }
}

/// The error for a node whose rule an earlier sweep consumed.
fn freed(op: &'static str, location: crate::SourceLocation) -> Error {
    Error::GraphFreed { op, location }
}
