//! # retrograd
//!
//! Tape-based automatic differentiation for Rust. While your code evaluates a model, every
//! primitive op is recorded on a [`Tape`](tape::Tape); the reverse sweep walks it backwards
//! to get gradients, the forward sweep pushes tangents, and because the sweeps can record
//! their own ops, derivatives of derivatives work too.
//!
//! This crate is the facade: it re-exports the engine ([`tape`]), the primitives
//! ([`ops`]) and the layers ([`nn`]); `use retrograd::prelude::*` brings in what a model
//! needs.
//!
//! ```
//! use retrograd::prelude::*;
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.var(ndarray::array![1.0, 2.0, 3.0]);
//! let loss = (x * x).sum_all();
//! let grads = loss.backward().unwrap();
//! assert_eq!(grads[x].to_array(), ndarray::array![2.0, 4.0, 6.0].into_dyn());
//! ```

pub use retrograd_nn as nn;
pub use retrograd_ops as ops;
pub use retrograd_tape as tape;

/// The names a model is written with: the tape types, every op trait, and the gradient
/// options.
pub mod prelude {
    pub use retrograd_ops::prelude::*;
    pub use retrograd_tape::{Error, Gradients, Rule, RuleCtx};
}

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
