//! The forward (tangent) sweep: forward-mode differentiation over a recorded tape.

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, Result};
use crate::rule::RuleCtx;
use crate::sweep::Cot;
use crate::tape::{NodeKey, Origin, Tape};
use crate::tensor::{Shape, Tensor};
use crate::var::{Val, Var};

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
        let out = self.jvp_with(outputs, inputs, tangents, false)?;
        Ok(out.into_iter().map(|v| v.value().into_array()).collect())
    }

    /// The general forward sweep. With `create_graph` the sweep records its own ops (the
    /// rules see the tape's nodes), so the tangents are Vars that can be differentiated
    /// again; tangents may themselves be Vars.
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
        create_graph: bool,
    ) -> Result<Vec<Val<'t, T>>> {
        if inputs.len() != tangents.len() {
            return Err(Error::InvalidOp {
                op: "jvp",
                shapes: tangents.iter().map(|t| t.shape()).collect(),
                message: format!("{} inputs but {} tangents", inputs.len(), tangents.len()),
                location: std::panic::Location::caller(),
            });
        }
        for v in outputs.iter().chain(inputs) {
            if !std::ptr::eq(v.tape, self) {
                return Err(Error::ForeignVar {
                    op: "jvp",
                    location: v.location(),
                });
            }
        }
        let (lo, hi) = {
            let inner = self.inner.borrow();
            let mut lo = usize::MAX;
            for (i, (v, t)) in inputs.iter().zip(&tangents).enumerate() {
                let n = &inner.nodes[v.key];
                if !n.origin.requires_grad() {
                    return Err(Error::NotDifferentiable {
                        input: i,
                        location: n.location,
                        reason: "it does not require a gradient, so the ops on it were not recorded",
                    });
                }
                if t.shape().as_slice() != n.value.shape() {
                    return Err(Error::ShapeMismatch {
                        what: format!("tangent for input {i}"),
                        expected: Shape::from_slice(n.value.shape()),
                        got: t.shape(),
                    });
                }
                lo = lo.min(n.pos as usize);
            }
            let hi = outputs
                .iter()
                .map(|v| inner.nodes[v.key].pos as usize)
                .max()
                .unwrap_or(0);
            (lo, hi)
        };
        let mut slots: Vec<Option<Cot<T>>> = Vec::new();
        let mut seeded: Vec<bool> = Vec::new();
        if lo <= hi {
            slots.resize_with(hi + 1 - lo, || None);
            seeded.resize(hi + 1 - lo, false);
            for (v, t) in inputs.iter().zip(tangents) {
                let p = self.with_node(v.key, |n| n.pos as usize);
                if p <= hi {
                    self.accumulate(&mut slots[p - lo], t);
                    seeded[p - lo] = true;
                }
            }
        }
        // Only nodes that lead to a requested output are visited: one pass backwards marks
        // them. Without it, an unrelated branch would cost work and, if a backward sweep
        // had freed it, fail with a spurious GraphFreed.
        let mut reaches = vec![false; if lo <= hi { hi + 1 - lo } else { 0 }];
        if lo <= hi {
            let inner = self.inner.borrow();
            for v in outputs {
                let p = inner.nodes[v.key].pos as usize;
                if p >= lo {
                    reaches[p - lo] = true;
                }
            }
            for p in (lo..=hi).rev() {
                if !reaches[p - lo] {
                    continue;
                }
                for k in &inner.nodes[inner.order[p]].inputs {
                    let ip = inner.nodes[*k].pos as usize;
                    if ip >= lo {
                        reaches[ip - lo] = true;
                    }
                }
            }
        }
        for p in lo..=hi {
            if lo > hi || seeded[p - lo] || !reaches[p - lo] {
                continue;
            }
            let mut inner = self.inner.borrow_mut();
            let key = inner.order[p];
            let node = &inner.nodes[key];
            if !matches!(node.origin, Origin::Op(_) | Origin::Spent(_)) {
                continue;
            }
            let tangent_of = |k: &NodeKey| {
                let ip = inner.nodes[*k].pos as usize;
                if ip >= lo {
                    slots[ip - lo].as_ref().map(|c| self.cot_ref_to_val(c))
                } else {
                    None
                }
            };
            let tans: SmallVec<[Option<Val<'t, T>>; 2]> =
                node.inputs.iter().map(tangent_of).collect();
            if tans.iter().all(Option::is_none) {
                continue;
            }
            let location = node.location;
            let input_keys = node.inputs.clone();
            let rule = match std::mem::replace(&mut inner.nodes[key].origin, Origin::Spent("")) {
                Origin::Op(rule) => rule,
                Origin::Spent(op) => {
                    inner.nodes[key].origin = Origin::Spent(op);
                    return Err(Error::GraphFreed { op, location });
                }
                _ => unreachable!("checked above"),
            };
            let cx = if create_graph {
                RuleCtx {
                    inputs: input_keys
                        .iter()
                        .map(|&key| Val::Var(Var { tape: self, key }))
                        .collect(),
                    output: Val::Var(Var { tape: self, key }),
                    needs: u64::MAX,
                }
            } else {
                RuleCtx {
                    inputs: input_keys
                        .iter()
                        .map(|k| Val::Const(inner.nodes[*k].value.clone()))
                        .collect(),
                    output: Val::Const(inner.nodes[key].value.clone()),
                    needs: u64::MAX,
                }
            };
            drop(inner);
            let tangent = rule.jvp(&cx, &tans);
            drop((cx, tans));
            let mut inner = self.inner.borrow_mut();
            let name = rule.name();
            inner.nodes[key].origin = Origin::Op(rule);
            if let Some(t) = tangent {
                let shape = match &t {
                    Val::Const(c) => c.shape(),
                    Val::Var(v) => inner.nodes[v.key].value.shape(),
                };
                let expected = inner.nodes[key].value.shape();
                assert!(
                    shape == expected,
                    "the JVP rule of `{name}` (recorded at {location}) returned a tangent of shape {:?} for an \
                     output of shape {expected:?}",
                    shape
                );
                drop(inner);
                slots[p - lo] = Some(self.val_to_cot(t));
            }
        }
        let mut out = Vec::with_capacity(outputs.len());
        for v in outputs {
            let p = self.with_node(v.key, |n| n.pos as usize);
            let t = if p >= lo && p <= hi {
                slots[p - lo].as_ref().map(|c| self.cot_ref_to_val(c))
            } else {
                None
            };
            out.push(t.unwrap_or_else(|| Val::Const(Tensor::zeros(&v.shape()))));
        }
        Ok(out)
    }
}
