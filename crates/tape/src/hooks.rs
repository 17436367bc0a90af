//! Gradient hooks: observe or replace the cotangent that reaches a Var during a reverse
//! sweep (per-tensor gradient clipping, logging, debugging).
//!
//! A hook is called once per reverse sweep that visits its node, when that node's
//! cotangent is complete: after every use of the value downstream has contributed, just
//! before the cotangent flows on to the node's inputs (or, for a leaf, is handed back as
//! its gradient). It receives the cotangent as a tensor and returns `None` to leave it as
//! it is, or `Some(replacement)` of the same shape to change it; what flows on, what the
//! gradient norms record and what the caller gets back is then the replacement. Several
//! hooks on one node run in the order they were registered, each seeing the previous one's
//! result.
//!
//! Under `create_graph` the cotangent is a node of the tape; the hook sees its value, and a
//! replacement enters the graph as a constant node (op `"hook"`). A gradient of that
//! gradient therefore treats the replaced cotangent as a constant (exactly what clipping
//! means: the clip factor is not differentiated), while a hook that returns `None` leaves
//! the recorded graph untouched.
//!
//! Hooks cost nothing when none is registered (the sweep checks one flag). They are
//! `'static` closures (the tape has no lifetime to tie them to): share state with the
//! caller through `Rc<RefCell<..>>` or `Rc<Cell<..>>`. They live until removed with
//! [`Tape::remove_hook`] or until the tape is cleared.

use std::rc::{Rc, Weak};

use slotmap::SecondaryMap;

use crate::Float;
use crate::tape::{NodeKey, Tape};
use crate::tensor::Tensor;
use crate::var::Var;

/// A gradient hook as the tape stores it.
pub(crate) type HookFn<T> = Box<dyn FnMut(&Tensor<T>) -> Option<Tensor<T>>>;

/// The hooks of one tape, by node.
pub(crate) struct Hooks<T: Float> {
    pub(crate) by_node: SecondaryMap<NodeKey, Vec<(u64, HookFn<T>)>>,
    next_id: u64,
}

impl<T: Float> Default for Hooks<T> {
    fn default() -> Self {
        Hooks {
            by_node: SecondaryMap::new(),
            next_id: 0,
        }
    }
}

impl<T: Float> Hooks<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// The number of hooks registered.
    pub(crate) fn len(&self) -> usize {
        self.by_node.values().map(Vec::len).sum()
    }

    pub(crate) fn clear(&mut self) {
        self.by_node.clear();
    }
}

/// Identifies a registered hook, to remove it with [`Tape::remove_hook`].
///
/// It names its tape by an identity the tape keeps for its whole life (not by address), so
/// it still works after the tape is moved, and a handle from a dropped tape is never taken
/// for one of a later tape.
#[derive(Debug, Clone)]
pub struct HookHandle {
    tape: Weak<()>,
    key: NodeKey,
    id: u64,
}

impl PartialEq for HookHandle {
    fn eq(&self, other: &Self) -> bool {
        self.tape.ptr_eq(&other.tape) && self.key == other.key && self.id == other.id
    }
}

impl Eq for HookHandle {}

impl<'t, T: Float> Var<'t, T> {
    /// Registers a hook on the cotangent that reaches this value in every reverse sweep
    /// that visits it: `hook(&cotangent)` returns `None` to observe only, or
    /// `Some(replacement)` (same shape) to change it. See [the module docs](crate::hooks)
    /// for when it runs and what happens under `create_graph`.
    ///
    /// ```
    /// use retrograd_tape::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(3.0);
    /// let h = x * x; // dh/dx = 6
    /// // Double the cotangent that reaches h: the gradient of x doubles too.
    /// h.register_hook(|g: &Tensor<f64>| Some(g.map(|v| 2.0 * v)));
    /// let y = h * 1.0;
    /// assert_eq!(y.backward().unwrap()[x].item(), 12.0);
    /// ```
    ///
    /// # Panics
    /// During the sweep, when the replacement's shape is not this value's (the message
    /// names the line that registered the hook's Var).
    pub fn register_hook(
        self,
        hook: impl FnMut(&Tensor<T>) -> Option<Tensor<T>> + 'static,
    ) -> HookHandle {
        let mut inner = self.tape.inner.borrow_mut();
        let hooks = &mut inner.hooks;
        let id = hooks.next_id;
        hooks.next_id += 1;
        match hooks.by_node.get_mut(self.key) {
            Some(list) => list.push((id, Box::new(hook))),
            None => {
                hooks.by_node.insert(self.key, vec![(id, Box::new(hook))]);
            }
        }
        HookHandle {
            tape: Rc::downgrade(&inner.identity),
            key: self.key,
            id,
        }
    }

    /// Registers a hook that only looks at the cotangent (logging, debugging): sugar for
    /// [`register_hook`](Var::register_hook) with a closure that returns `None`.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let seen = Rc::new(Cell::new(0.0));
    /// let s = seen.clone();
    /// x.observe_grad(move |g| s.set(g.item()));
    /// (x * x).backward().unwrap();
    /// assert_eq!(seen.get(), 4.0);
    /// ```
    pub fn observe_grad(self, mut observe: impl FnMut(&Tensor<T>) + 'static) -> HookHandle {
        self.register_hook(move |g| {
            observe(g);
            None
        })
    }
}

impl<T: Float> Tape<T> {
    /// Removes a hook; returns whether it was still registered (false once the tape was
    /// cleared, which removes every hook).
    ///
    /// # Panics
    /// When the handle comes from another tape, live or dropped.
    #[track_caller]
    pub fn remove_hook(&self, handle: &HookHandle) -> bool {
        let mut inner = self.inner.borrow_mut();
        assert!(
            handle.tape.ptr_eq(&Rc::downgrade(&inner.identity)),
            "remove_hook: the handle belongs to another tape"
        );
        let by_node = &mut inner.hooks.by_node;
        let Some(list) = by_node.get_mut(handle.key) else {
            return false;
        };
        let before = list.len();
        list.retain(|(id, _)| *id != handle.id);
        let removed = list.len() < before;
        if list.is_empty() {
            by_node.remove(handle.key);
        }
        removed
    }

    /// Removes every hook of this tape.
    pub fn clear_hooks(&self) {
        self.inner.borrow_mut().hooks.clear();
    }

    /// Runs the hooks of `key` on a complete cotangent; returns the replacement, if any
    /// hook made one. The hooks are taken out of the tape while they run, so a hook never
    /// runs under a borrow of the tape.
    pub(crate) fn run_hooks(&self, key: NodeKey, cotangent: &Tensor<T>) -> Option<Tensor<T>> {
        let list = self.inner.borrow_mut().hooks.by_node.remove(key)?;
        // Put back on every exit, a panicking hook's included: a caught panic must not
        // silently leave the node without its hooks.
        let mut running = Running {
            tape: self,
            key,
            list,
        };
        let mut replaced: Option<Tensor<T>> = None;
        for (_, hook) in &mut running.list {
            let current = replaced.as_ref().unwrap_or(cotangent);
            if let Some(new) = hook(current) {
                if new.shape() != cotangent.shape() {
                    let (op, location) =
                        self.with_graph(|g| (g.op_name(key), g.node(key).location));
                    panic!(
                        "a gradient hook on `{op}` (created at {location}) returned a cotangent of \
                         shape {:?} for a value of shape {:?}",
                        new.shape(),
                        cotangent.shape()
                    );
                }
                replaced = Some(new);
            }
        }
        replaced
    }
}

/// The hooks of one node while they run, taken out of the tape so that no hook runs under
/// a borrow of it; dropping this puts them back.
struct Running<'a, T: Float> {
    tape: &'a Tape<T>,
    key: NodeKey,
    list: Vec<(u64, HookFn<T>)>,
}

impl<T: Float> Drop for Running<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.tape.inner.try_borrow_mut() {
            let list = std::mem::take(&mut self.list);
            match inner.hooks.by_node.get_mut(self.key) {
                // A hook registered on this node by a running hook goes after the others.
                Some(added) => {
                    let added = std::mem::replace(added, list);
                    inner.hooks.by_node[self.key].extend(added);
                }
                None => {
                    inner.hooks.by_node.insert(self.key, list);
                }
            }
        }
    }
}

/// A hook that rescales a cotangent whose L2 norm exceeds `max_norm` down to that norm
/// (per-tensor gradient clipping). Register it with [`Var::register_hook`].
///
/// ```
/// use retrograd_tape::{Tape, hooks::clip_norm};
/// let tape = Tape::<f64>::new();
/// let w = tape.var(ndarray::array![3.0, 4.0]);
/// w.register_hook(clip_norm(1.0));
/// let y = retrograd_tape::arith::sum_to(&(w * w * 0.5), &[]); // gradient w, norm 5
/// let g = y.backward().unwrap();
/// let clipped = g.array(w);
/// assert!((clipped[0] - 0.6).abs() < 1e-12 && (clipped[1] - 0.8).abs() < 1e-12);
/// ```
pub fn clip_norm<T: Float>(max_norm: T) -> impl FnMut(&Tensor<T>) -> Option<Tensor<T>> + 'static {
    move |g: &Tensor<T>| {
        let norm = g.view().iter().map(|x| *x * *x).sum::<T>().sqrt();
        (norm > max_norm).then(|| {
            let scale = max_norm / norm;
            g.map(|x| x * scale)
        })
    }
}

/// A hook that clamps every element of a cotangent to `[-limit, limit]` (gradient clipping
/// by value). Register it with [`Var::register_hook`].
pub fn clip_value<T: Float>(limit: T) -> impl FnMut(&Tensor<T>) -> Option<Tensor<T>> + 'static {
    move |g: &Tensor<T>| {
        g.view()
            .iter()
            .any(|x| x.abs() > limit)
            .then(|| g.map(|x| x.max(-limit).min(limit)))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use ndarray::array;

    use super::*;
    use crate::arith::sum_to;
    use crate::{GradOptions, Gradients};

    #[test]
    fn hooks_see_the_complete_cotangent_of_a_fan_out() {
        let tape = Tape::<f64>::new();
        let x = tape.var(2.0);
        let h = x * 3.0; // used twice below
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        h.observe_grad(move |g| s.borrow_mut().push(g.item()));
        let y = h * h + h; // dy/dh = 2h + 1 = 13
        let g = y.backward().unwrap();
        assert_eq!(*seen.borrow(), vec![13.0], "called once, with the total");
        assert_eq!(g[x].item(), 39.0);
    }

    #[test]
    fn hooks_replace_cotangents_of_intermediates_and_leaves() {
        let tape = Tape::<f64>::new();
        let (a, b) = (tape.var(2.0), tape.var(5.0));
        let p = a * b;
        p.register_hook(|_| Some(Tensor::scalar(1.0))); // pretend dy/dp = 1
        b.register_hook(|g| Some(g.map(|v| -v)));
        let y = p * 10.0;
        let g = y.backward().unwrap();
        assert_eq!(g[a].item(), 5.0);
        assert_eq!(g[b].item(), -2.0);
        // tape.grad and vjp run hooks too.
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, -2.0]);
        x.register_hook(|g| Some(g.map(|v| v * 100.0)));
        let y = sum_to(&(x * x), &[]);
        assert_eq!(
            tape.grad(y, &[x]).unwrap()[0],
            array![200.0, -400.0].into_dyn()
        );
    }

    #[test]
    fn gradient_clipping_hook() {
        let tape = Tape::<f64>::new();
        let w = tape.var(array![30.0, 40.0]);
        let b = tape.var(array![0.1, 0.2]);
        w.register_hook(clip_norm(1.0));
        b.register_hook(clip_norm(2.0)); // norm √2, below the limit: untouched
        let y = sum_to(&(w * w * 0.5 + b), &[]);
        let g: Gradients<'_, f64> = y.backward().unwrap();
        let gw = g.array(w);
        assert!((gw[0] - 0.6).abs() < 1e-12 && (gw[1] - 0.8).abs() < 1e-12);
        assert_eq!(g.array(b), array![1.0, 1.0].into_dyn());

        let tape = Tape::<f64>::new();
        let w = tape.var(array![-3.0, 0.5]);
        w.register_hook(clip_value(1.0));
        let y = sum_to(&(w * w * 0.5), &[]);
        assert_eq!(y.backward().unwrap().array(w), array![-1.0, 0.5].into_dyn());
    }

    #[test]
    fn removed_hooks_no_longer_run() {
        let tape = Tape::<f64>::new();
        let x = tape.var(1.0);
        let h = x.register_hook(|_| Some(Tensor::scalar(7.0)));
        let y = x * 2.0;
        let opts = GradOptions::new().retain_graph();
        assert_eq!(y.backward_with(&opts).unwrap()[x].item(), 7.0);
        assert!(tape.remove_hook(&h));
        assert!(!tape.remove_hook(&h));
        assert_eq!(y.backward().unwrap()[x].item(), 2.0);
    }

    #[test]
    fn under_create_graph_a_replacement_enters_as_a_constant() {
        let tape = Tape::<f64>::new();
        let x = tape.var(3.0);
        let y = x * x * x; // dy/dx = 3x² = 27
        let observed = Rc::new(RefCell::new(0.0));
        let o = observed.clone();
        x.observe_grad(move |g| *o.borrow_mut() = g.item());
        let dx = tape.grad_graph(y, &[x]).unwrap()[0];
        assert_eq!(dx.item(), 27.0);
        assert_eq!(*observed.borrow(), 27.0);
        // An observing hook leaves the recorded graph as it is: d²y/dx² = 6x = 18.
        tape.clear_hooks();
        assert_eq!(tape.grad(dx, &[x]).unwrap()[0].sum(), 18.0);

        let tape = Tape::<f64>::new();
        let x = tape.var(3.0);
        let h = x * x;
        h.register_hook(|g| Some(g.map(|v| v * 2.0)));
        let y = h * x; // x³ with h's cotangent (x) doubled: dx = 2x·(2x) + x² = 45
        let dx = tape.grad_graph(y, &[x]).unwrap()[0];
        assert_eq!(dx.item(), 45.0);
        tape.clear_hooks();
        // The doubled cotangent is a constant c = 6: dx = 2x·c + x², d/dx = 2c + 2x = 18.
        assert_eq!(tape.grad(dx, &[x]).unwrap()[0].sum(), 18.0);
    }

    #[test]
    #[should_panic(expected = "returned a cotangent of shape [3]")]
    fn a_replacement_of_the_wrong_shape_panics() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0]);
        x.register_hook(|_| Some(Tensor::zeros(&[3])));
        let _ = sum_to(&(x * x), &[]).backward();
    }
}
