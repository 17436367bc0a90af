//! Scopes: a name for the part of a model that recorded each node, so that a tape dump of
//! a model says which layer every op belongs to (`encoder.0 (Linear)`), not only which
//! line of code ran it.
//!
//! A scope is opened with [`Tape::scope`] and lasts until its guard drops; scopes nest and
//! the innermost one names the nodes recorded inside it. `retrograd-nn` opens one per
//! layer (named by the layer's parameter path and type), so users see them without doing
//! anything; open your own around any block of ops.
//!
//! ```
//! use retrograd_tape::Tape;
//! let tape = Tape::<f64>::new();
//! let x = tape.var(2.0);
//! let y = {
//!     let _scope = tape.scope("head (Linear)");
//!     x * 3.0
//! };
//! let z = y + 1.0;
//! assert_eq!(tape.node_info(y).scope.as_deref(), Some("head (Linear)"));
//! assert_eq!(tape.node_info(z).scope, None);
//! assert!(tape.dump().to_string().contains("head (Linear)"));
//! ```

use std::rc::Rc;

use slotmap::SecondaryMap;

use crate::Float;
use crate::tape::{NodeKey, Tape};

/// The open scopes and the scope of each node recorded inside one (kept beside the nodes,
/// like labels: a node recorded outside every scope costs one check of an empty stack).
#[derive(Default)]
pub(crate) struct Scopes {
    open: Vec<Rc<str>>,
    of_node: SecondaryMap<NodeKey, Rc<str>>,
}

impl Scopes {
    /// Notes the innermost open scope, if any, as `key`'s.
    #[inline]
    pub(crate) fn record(&mut self, key: NodeKey) {
        if let Some(scope) = self.open.last() {
            self.of_node.insert(key, Rc::clone(scope));
        }
    }

    /// The scope `key` was recorded in.
    pub(crate) fn of(&self, key: NodeKey) -> Option<&str> {
        self.of_node.get(key).map(|s| &**s)
    }

    /// Forgets every node's scope (the tape is being cleared; no guard is alive then).
    pub(crate) fn clear(&mut self) {
        self.of_node.clear();
    }
}

/// Closes its scope when dropped; from [`Tape::scope`].
#[must_use = "the scope closes when the guard is dropped"]
pub struct ScopeGuard<'t, T: Float> {
    tape: &'t Tape<T>,
}

impl<T: Float> Drop for ScopeGuard<'_, T> {
    fn drop(&mut self) {
        self.tape.inner.borrow_mut().inspect.scopes.open.pop();
    }
}

impl<T: Float> Tape<T> {
    /// Opens a scope called `name`: every node recorded until the guard drops (and not
    /// inside an inner scope) carries the name, which dumps show in a `scope` column and
    /// [`NodeInfo::scope`](crate::NodeInfo::scope) holds.
    pub fn scope(&self, name: impl Into<Rc<str>>) -> ScopeGuard<'_, T> {
        self.inner
            .borrow_mut()
            .inspect
            .scopes
            .open
            .push(name.into());
        ScopeGuard { tape: self }
    }
}
