//! (being written)

use retrograd_tape::{Float, Operand};

/// Methods for this module's ops on [`Var`](retrograd_tape::Var) and [`Val`](retrograd_tape::Val).
pub trait NnOps<'t, T: Float>: Operand<'t, T> {}

impl<'t, T: Float, X: Operand<'t, T>> NnOps<'t, T> for X {}
