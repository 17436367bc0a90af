//! The forward (tangent) sweep: forward-mode differentiation over a recorded tape.

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, Result};
use crate::graph::{NodeKey, Origin, RuleLoan};
use crate::rule::RuleCtx;
use crate::sweep::Cot;
use crate::tape::Tape;
use crate::tensor::{Shape, Tensor, shape_eq};
use crate::var::{Val, Var};

/// Options for a forward sweep.
///
/// ```
/// use retrograd_tape::{JvpOptions, Tape, Val};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(3.0);
/// let y = x * x;
/// let opts = JvpOptions::new().create_graph();
/// let t = tape.jvp_with(&[y], &[x], vec![Val::Const(1.0.into())], &opts).unwrap();
/// // The tangent 2x is a Var: differentiate it again.
/// let d2 = tape.grad(t[0].as_var().unwrap(), &[x]).unwrap();
/// assert_eq!(d2[0].sum(), 2.0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct JvpOptions {
    /// Record the sweep's own ops, so that the tangents are Vars that can be
    /// differentiated again (forward over reverse, reverse over forward).
    pub create_graph: bool,
}

impl JvpOptions {
    /// The defaults: record nothing.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`create_graph`](JvpOptions::create_graph).
    pub fn create_graph(mut self) -> Self {
        self.create_graph = true;
        self
    }
}

impl<T: Float> Tape<T> {
    /// The Jacobian-vector product: pushes a tangent per input forward through the
    /// recorded ops and returns the tangent of each output, `J · v`, as arrays of the
    /// outputs' shapes. One forward sweep, whatever the number of outputs.
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(ndarray::array![1.0, 2.0]);
    /// let y = x * x; // J = diag(2x)
    /// let t = tape.jvp(&[y], &[x], vec![ndarray::array![1.0, 1.0].into()]).unwrap();
    /// assert_eq!(t[0], ndarray::array![2.0, 4.0].into_dyn());
    /// ```
    ///
    /// # Errors
    /// As [`jvp_with`](Tape::jvp_with).
    #[track_caller]
    pub fn jvp(
        &self,
        outputs: &[Var<'_, T>],
        inputs: &[Var<'_, T>],
        tangents: Vec<Tensor<T>>,
    ) -> Result<Vec<ArrayD<T>>> {
        let tangents = tangents.into_iter().map(Val::Const).collect();
        let out = self.jvp_with(outputs, inputs, tangents, &JvpOptions::new())?;
        Ok(out
            .into_iter()
            .map(|v| v.into_value().into_array())
            .collect())
    }

    /// The general forward sweep. With `create_graph` the sweep records its own ops (the
    /// rules see the tape's nodes), so the tangents are Vars that can be differentiated
    /// again; tangents may themselves be Vars. It visits only the nodes that lie on a path
    /// from an input to an output.
    ///
    /// # Errors
    /// - [`Error::ShapeMismatch`]: a tangent whose shape is not its input's.
    /// - [`Error::NotDifferentiable`]: an input that does not require a gradient (ops on
    ///   it were not recorded, so nothing carries its tangent).
    /// - [`Error::GraphFreed`]: a backward sweep without `retain_graph` consumed a rule on
    ///   the way.
    /// - [`Error::ForeignVar`]: a Var of another tape.
    /// - [`Error::InvalidOp`]: not one tangent per input.
    #[track_caller]
    pub fn jvp_with<'t>(
        &'t self,
        outputs: &[Var<'t, T>],
        inputs: &[Var<'t, T>],
        tangents: Vec<Val<'t, T>>,
        opts: &JvpOptions,
    ) -> Result<Vec<Val<'t, T>>> {
        self.check_tangents(outputs, inputs, &tangents)?;
        let input_keys: SmallVec<[NodeKey; 4]> = inputs.iter().map(|v| v.key).collect();
        let output_keys: SmallVec<[NodeKey; 4]> = outputs.iter().map(|v| v.key).collect();
        let mut reach = std::mem::take(&mut self.inner.borrow_mut().scratch.reach);
        self.inner
            .borrow()
            .graph
            .between(Some(&input_keys), &output_keys, &mut reach);
        let lo = input_keys.iter().map(|k| k.pos()).min().unwrap_or(0);
        let hi = output_keys.iter().map(|k| k.pos()).max().unwrap_or(0);
        let mut slots: Vec<Option<(NodeKey, Cot<T>)>> = Vec::new();
        slots.resize_with((hi + 1).saturating_sub(lo), || None);
        for (key, t) in input_keys.iter().zip(tangents) {
            if reach.on_path(*key) {
                self.accumulate(&mut slots[key.pos() - lo], *key, t);
            }
        }
        let result = reach
            .on_path_in_order()
            .filter(|k| !input_keys.contains(k))
            .try_for_each(|key| {
                let t = self.push_tangent(key, lo, &slots, opts.create_graph)?;
                slots[key.pos() - lo] = t.map(|t| (key, self.val_to_cot(t)));
                Ok(())
            });
        self.inner.borrow_mut().scratch.reach = reach;
        result?;
        Ok(outputs
            .iter()
            .map(|v| {
                let slot = slots
                    .get(v.key.pos().wrapping_sub(lo))
                    .and_then(Option::as_ref);
                match slot {
                    Some((_, c)) => self.cot_to_val(c.share()),
                    None => Val::Const(Tensor::zeros(&v.shape())),
                }
            })
            .collect())
    }

    /// Checks a forward sweep's arguments: one tangent per input, of its shape, every Var
    /// of this tape and every input differentiable.
    #[track_caller]
    fn check_tangents(
        &self,
        outputs: &[Var<'_, T>],
        inputs: &[Var<'_, T>],
        tangents: &[Val<'_, T>],
    ) -> Result<()> {
        if inputs.len() != tangents.len() {
            return Err(Error::InvalidOp {
                op: "jvp",
                shapes: tangents.iter().map(|t| t.shape()).collect(),
                message: format!("{} inputs but {} tangents", inputs.len(), tangents.len()),
                location: std::panic::Location::caller(),
            });
        }
        self.check_sweep_vars("jvp", outputs, inputs)?;
        let inner = self.inner.borrow();
        for (i, (v, t)) in inputs.iter().zip(tangents).enumerate() {
            let expected = inner.graph.shape(v.key);
            if !shape_eq(&t.shape(), expected) {
                return Err(Error::ShapeMismatch {
                    what: format!("tangent for input {i}"),
                    expected: Shape::from_slice(expected),
                    got: t.shape(),
                });
            }
        }
        Ok(())
    }

    /// One step of the forward sweep: the tangent of node `key` from its inputs' tangents
    /// through its rule's JVP (`None`: zero). A plain sweep calls the rule where it lies; a
    /// recording one lends it out of the node, since the rule records on the tape.
    fn push_tangent<'t>(
        &'t self,
        key: NodeKey,
        lo: usize,
        slots: &[Option<(NodeKey, Cot<T>)>],
        create_graph: bool,
    ) -> Result<Option<Val<'t, T>>> {
        let tangent_of = |k: &NodeKey| {
            let c = slots.get(k.pos().wrapping_sub(lo))?.as_ref()?;
            Some(self.cot_to_val(c.1.share()))
        };
        let inner = self.inner.borrow();
        let node = inner.graph.node(key);
        let inputs = inner.graph.inputs(node);
        let tangents: SmallVec<[Option<Val<'t, T>>; 2]> = inputs.iter().map(tangent_of).collect();
        if tangents.iter().all(Option::is_none) {
            return Ok(None);
        }
        let location = node.location;
        let values = |inner: &std::cell::Ref<'_, crate::tape::TapeInner<T>>| RuleCtx {
            inputs: inputs
                .iter()
                .map(|k| Val::Const(inner.graph.node(*k).value.clone()))
                .collect(),
            output: Val::Const(node.value.clone()),
            needs: u64::MAX,
        };
        // Tangents that are Vars record even in a plain sweep, so the tape must be free.
        let records = create_graph || tangents.iter().flatten().any(|t| t.as_var().is_some());
        let (name, tangent) = if records {
            let cx = if create_graph {
                RuleCtx {
                    inputs: inputs
                        .iter()
                        .map(|&key| Val::Var(Var { tape: self, key }))
                        .collect(),
                    output: Val::Var(Var { tape: self, key }),
                    needs: u64::MAX,
                }
            } else {
                values(&inner)
            };
            drop(inner);
            let loan = RuleLoan::take(self, key)?;
            (loan.rule().name(), loan.rule().jvp(&cx, &tangents))
        } else {
            let Origin::Op(rule) = &node.origin else {
                return Err(Error::GraphFreed {
                    op: inner.graph.name(&node.origin),
                    location,
                });
            };
            (rule.name(), rule.jvp(&values(&inner), &tangents))
        };
        if let Some(t) = &tangent {
            let (got, expected) = (
                t.shape(),
                self.with_node(key, |n| Shape::from_slice(n.value.shape())),
            );
            assert!(
                shape_eq(&got, &expected),
                "the JVP rule of `{name}` (recorded at {location}) returned a tangent of shape \
                 {got:?} for an output of shape {expected:?}"
            );
        }
        Ok(tangent)
    }
}
