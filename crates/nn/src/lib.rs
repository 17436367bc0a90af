//! retrograd-nn: layers, losses, initialisers, optimisers and checkpoints.
//!
//! This crate holds what a training loop needs around the tape:
//!
//! - [`ParamStore`]: named parameters that outlive tapes, and [`Grads`], the gradients of
//!   one step by the same names;
//! - [`init`]: seeded initialisers (Xavier/Glorot, Kaiming/He, zeros, constants);
//! - [`optim`]: SGD (momentum, Nesterov, weight decay), Adam and AdamW with PyTorch's
//!   semantics, global-norm gradient clipping, learning-rate schedules;
//! - [`checkpoint`]: safetensors files keyed by parameter name, loaded all-or-nothing;
//! - [`data`]: seeded mini-batching, train/test splits, and the bundled digits data set.
//!
//! Everything is generic over the element type through one bound, [`Scalar`] (`f32` or
//! `f64` in practice).
//!
//! A training step: make a tape, enter the store's parameters as leaves, compute the loss,
//! collect gradients by name into a [`Grads`], then
//!
//! ```
//! # use std::collections::HashMap;
//! # use retrograd_nn::{ParamStore, Grads, init::{self, Init, Nonlinearity}};
//! use retrograd_nn::optim::{clip_grad_norm, AdamW, Optimizer};
//! # let mut rng = init::rng_from_seed(0);
//! # let mut store = ParamStore::<f32>::new();
//! # store.insert("w", Init::kaiming_uniform(Nonlinearity::Relu).sample(&[4, 3], &mut rng));
//! # let mut grads: Grads<f32> = store.zeros_like();
//! let mut opt = AdamW::new(1e-3);
//! let norm = clip_grad_norm(&mut grads, 1.0);
//! opt.step(&mut store, &grads)?;
//! # Ok::<(), retrograd_nn::optim::OptimError>(())
//! ```

pub mod checkpoint;
pub mod data;
pub mod init;
pub mod optim;
mod scalar;
mod store;

/// The `rand` this crate's initialisers and shuffling use, so callers can name the same
/// `Rng` trait and generators without a version mismatch.
pub use rand;

pub use checkpoint::CheckpointError;
pub use optim::{Adam, AdamW, OptimError, Optimizer, Sgd};
pub use scalar::Scalar;
pub use store::{Grads, ParamStore};

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
