//! # retrograd-tape: the engine
//!
//! While user code evaluates a model, every primitive op is recorded on a [`Tape`]; the
//! reverse sweep walks the tape backwards to get gradients, the forward sweep pushes
//! tangents, and because the sweeps can record their own ops, derivatives of derivatives
//! work too.
//!
//! - [`Tensor`]: values (ndarray arrays, with a plain-scalar fast path), generic over
//!   [`Float`] (`f32`, `f64`).
//! - [`Tape`] and [`Var`]: the arena and the `Copy` handles that borrow it.
//! - [`Rule`]: the interface every primitive implements; rules are written in
//!   differentiable ops on [`Val`], so one rule serves the plain sweep, the recorded sweep
//!   and forward mode.
//! - [`checkpoint`]: a block recorded as one node and recomputed by the sweep, to trade
//!   compute for memory.
//! - [`time_loop`]: gradients of a time loop under a memory budget, with [`revolve`]'s
//!   optimal binomial checkpointing.
//! - Sweeps: [`Var::backward`], [`Tape::grad`], [`Tape::vjp`], [`Tape::grad_graph`],
//!   [`Tape::jvp`].
//!
//! ```
//! use retrograd_tape::Tape;
//! let tape = Tape::<f64>::new();
//! let (a, b) = (tape.var(3.0), tape.var(4.0));
//! let f = a * a * b - b / a;
//! let g = f.backward().unwrap();
//! assert_eq!(g[a].item(), 2.0 * 3.0 * 4.0 + 4.0 / 9.0);
//! ```

pub mod arith;
pub mod batch;
mod batch_sweep;
pub mod chain;
pub mod check;
pub mod checkpoint;
mod error;
pub mod export;
mod float;
mod forward;
mod grad;
mod graph;
pub mod hooks;
pub mod inspect;
pub mod kernel;
pub mod plan;
mod recycle;
mod reverse;
pub mod revolve;
mod rule;
pub mod scope;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod summation;
mod sweep;
mod tape;
mod tensor;
pub mod threads;
pub mod time_loop;
pub mod transforms;
mod var;

pub use error::{Error, Result, SourceLocation};
pub use export::{Dot, TapeJson};
pub use float::Float;
pub use forward::JvpOptions;
pub use grad::{GradOptions, Gradients};
pub use hooks::HookHandle;
pub use inspect::{Dump, NodeInfo, NodeKind, SourceLine, Summary};
pub use rule::{Cotangents, Rule, RuleCtx};
pub use scope::ScopeGuard;
pub use tape::{NoGradGuard, NodeKey, Tape};
pub use tensor::{Shape, Tensor, broadcast_shapes, checked_len, shape_eq};
pub use var::{Operand, Val, Var};
