//! What the reverse and the forward sweep share: the values in flight between two nodes,
//! how contributions to one node are summed, and the buffers kept from sweep to sweep.

use crate::Float;
use crate::arith::Add;
use crate::graph::{NodeKey, Reach};
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::{Operand, Val, Var};

/// A cotangent or tangent held between two steps of a sweep: a plain tensor, or a node
/// when the sweep records itself. It holds no tape borrow, so the buffers outlive sweeps.
pub(crate) enum Cot<T: Float> {
    Tensor(Tensor<T>),
    Node(NodeKey),
}

impl<T: Float> Cot<T> {
    /// A second handle to the same value (an `Arc` clone for arrays, a copy of a key).
    pub(crate) fn share(&self) -> Self {
        match self {
            Cot::Tensor(t) => Cot::Tensor(t.clone()),
            Cot::Node(k) => Cot::Node(*k),
        }
    }
}

/// Buffers a sweep reuses, kept on the tape so that a training loop does not reallocate
/// them every step: the values in flight by position, and the reachability marks.
pub(crate) struct Scratch<T: Float> {
    /// Every slot is `None` between sweeps (a finished sweep takes each one; a failed one
    /// clears them), so the next sweep only adjusts the length.
    pub(crate) slots: Vec<Option<(NodeKey, Cot<T>)>>,
    pub(crate) reach: Reach,
}

impl<T: Float> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            slots: Vec::new(),
            reach: Reach::default(),
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

    /// Turns what a rule returned into a value in flight.
    ///
    /// # Panics
    /// When a rule returned a Var of another tape (a bug in that rule).
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

    /// Adds `c` into the slot of node `key`: the first value is moved in, later ones are
    /// added in place when both are plain tensors, and recorded as `add` when the sweep
    /// records (so no tape borrow may be held).
    pub(crate) fn accumulate(
        &self,
        slot: &mut Option<(NodeKey, Cot<T>)>,
        key: NodeKey,
        c: Val<'_, T>,
    ) {
        *slot = Some(match (slot.take(), c) {
            (None, c) => (key, self.val_to_cot(c)),
            (Some((k, Cot::Tensor(mut a))), Val::Const(b)) => {
                a.add_assign(&b);
                (k, Cot::Tensor(a))
            }
            (Some((k, prev)), c) => {
                let sum = Val::apply(Add, &[&self.cot_to_val(prev), &c]);
                (k, self.val_to_cot(sum))
            }
        });
    }
}
