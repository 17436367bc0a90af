//! retrograd-nn: layers, losses, initialisers, optimisers and checkpoints.
//!
//! This crate lets you build and train a network imperatively, the way PyTorch users
//! write `nn.Module`s:
//!
//! - [`Module`]: a layer or model (configuration only) that lists its named parameters
//!   and computes on a tape; [`layers`]: [`Linear`](layers::Linear), the activations,
//!   [`Dropout`](layers::Dropout), [`LayerNorm`](layers::LayerNorm),
//!   [`Embedding`](layers::Embedding), and the [`mlp`](layers::mlp) builder;
//!   [`conv`]: [`Conv2d`](conv::Conv2d), [`Conv1d`](conv::Conv1d), pooling and
//!   [`Flatten`](conv::Flatten); [`norm`]: [`BatchNorm2d`](norm::BatchNorm2d) (running
//!   statistics) and [`GroupNorm`](norm::GroupNorm);
//!   [`Sequential`], the layered chain;
//! - [`Params`], [`Session`] and [`train_step`]: each step enters the store's parameters
//!   on a tape as leaves, runs the forward pass and the loss, and hands gradients back by
//!   name;
//! - [`loss`]: MSE, cross-entropy with integer labels, binary cross-entropy with logits;
//!   accuracy;
//! - [`ParamStore`]: named parameters that outlive tapes, and [`ParamGradients`], the
//!   gradients of one step by the same names (each a [`Tensor`](retrograd_tape::Tensor),
//!   as the engine's [`Gradients`](retrograd_tape::Gradients) by Var);
//! - [`init`]: seeded initialisers (Xavier/Glorot, Kaiming/He, zeros, constants);
//! - [`optim`]: SGD (momentum, Nesterov, weight decay), Adam and AdamW with PyTorch's
//!   semantics, global-norm gradient clipping, learning-rate schedules;
//! - [`checkpoint`]: safetensors files keyed by parameter name, loaded all-or-nothing;
//! - [`data`]: seeded mini-batching, train/test splits, and the bundled digits data set;
//! - [`parallel`]: [`DataParallel`], the training step on a batch split across threads (one
//!   tape per thread, gradients all-reduced);
//! - `distributed` (with the `mpi` feature): the same across processes and machines, one
//!   MPI all-reduce per step.
//!
//! Everything is generic over the element type through one bound, [`Scalar`] (`f32` or
//! `f64` in practice).
//!
//! A training loop:
//!
//! ```
//! use retrograd_nn::{Module, Session, layers::{mlp, Activation}, loss};
//! use retrograd_nn::optim::{clip_grad_norm, AdamW, Optimizer};
//! use ndarray::array;
//!
//! let model = mlp::<f32>(&[2, 16, 2], Activation::Relu);
//! let mut store = model.init_store(0);
//! let mut opt = AdamW::new(1e-2);
//! let mut session = Session::new(0);
//! let (x, y) = (array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1, 0]);
//! for _ in 0..10 {
//!     let (_loss, mut grads) = session.train_step(&store, |p| {
//!         loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
//!     })?;
//!     clip_grad_norm(&mut grads, 1.0);
//!     opt.step(&mut store, &grads)?;
//! }
//! let logits = session.eval(&store, |p| model.forward(p.input(x.clone()), p));
//! assert_eq!(logits.shape(), &[4, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod conv;
pub mod data;
#[cfg(feature = "mpi")]
pub mod distributed;
mod gradients;
pub mod init;
pub mod layers;
pub mod loss;
mod module;
pub mod norm;
pub mod optim;
pub mod parallel;
mod params;
mod scalar;
mod segments;
mod store;

/// The `rand` this crate's initialisers and shuffling use, so callers can name the same
/// `Rng` trait and generators without a version mismatch.
pub use rand;

pub use checkpoint::CheckpointError;
pub use module::{Module, Param, ParamSpec, Sequential, prefixed};
pub use retrograd_derive::Module;

/// What `#[derive(Module)]`'s expansion names; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use retrograd_tape::Var;
}
#[allow(deprecated)]
pub use gradients::Grads;
pub use gradients::ParamGradients;
pub use optim::{Adam, AdamW, OptimError, Optimizer, Sgd};
pub use parallel::DataParallel;
pub use params::{Params, Session, train_step};
pub use scalar::Scalar;
pub use store::{ParamStore, StoreError};

/// Shared test settings.
#[cfg(test)]
pub(crate) mod test_util {
    use proptest::test_runner::{Config, RngSeed};

    /// Property tests run from a fixed seed so that every run checks the same cases.
    pub(crate) fn proptest_config() -> Config {
        Config {
            rng_seed: RngSeed::Fixed(0x7e7a_0d0c),
            cases: 128,
            ..Config::default()
        }
    }
}
