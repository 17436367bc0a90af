//! # retrograd
//!
//! Tape-based automatic differentiation for Rust. While your code evaluates a model, every
//! primitive op is recorded on a [`Tape`](tape::Tape); the reverse sweep walks it backwards
//! to get gradients, the forward sweep pushes tangents, and because the sweeps can record
//! their own ops, derivatives of derivatives work too.
//!
//! This page is the front door: every path below is written the way you import it
//! (`retrograd::nn::optim::Adam`), and `use retrograd::prelude::*` brings in what a model
//! needs. The long-form walk from `cargo new` to a trained, saved model is
//! `docs/guide.md` in the repository.
//!
//! ```
//! use retrograd::prelude::*;
//!
//! fn main() -> Result<(), Error> {
//!     let tape = Tape::<f64>::new();
//!     let x = tape.var(ndarray::array![1.0, 2.0, 3.0]);
//!     let loss = (x * x).sum_all();
//!     let grads = loss.backward()?;
//!     assert_eq!(grads[x].to_array(), ndarray::array![2.0, 4.0, 6.0].into_dyn());
//!     Ok(())
//! }
//! ```
//!
//! Errors that end `main` through `?` print their full message (what went wrong, the
//! shapes, your source line, what to do), not a dump of their fields.
//!
//! ## Setting up: optimise the dependencies in debug builds
//!
//! Numeric code compiled without optimisation is slow: 20 epochs of the guide's digits
//! training loop took 6.3 s in a default debug build against 0.067 s in release. Add this
//! to your `Cargo.toml` and the same loop took 0.18 s in a debug build that still compiles
//! quickly (figures and command in `docs/benchmarks.md`). Optimising the dependencies
//! alone is not enough (2.3 s): retrograd is generic over the float type, so most of it
//! is compiled in your crate, at your crate's level.
//!
//! ```toml
//! [profile.dev]
//! opt-level = 1 # retrograd is generic: much of it is compiled in your crate
//!
//! [profile.dev.package."*"]
//! opt-level = 2
//! debug-assertions = false
//! overflow-checks = false
//! ```
//!
//! ## A tour
//!
//! **Values and tapes** ([`tape`]). A [`Tape`](tape::Tape) records ops;
//! [`tape.var(x)`](tape::Tape::var) enters a value gradients flow to and
//! [`tape.constant(x)`](tape::Tape::constant) one they do not. Values are `f32` or `f64`
//! ([`Float`](tape::Float)). Three types carry them, each for one thing:
//!
//! - a [`Var`](tape::Var) is a node on the tape, a `Copy` handle you compute with;
//! - a [`Tensor`](tape::Tensor) is a value you read (a plain scalar, or an array shared by
//!   reference count): [`x.value()`](tape::Var::value), and every gradient, whether
//!   [`Gradients`](tape::Gradients) by Var (`grads[x]`) from `backward` or
//!   [`ParamGradients`](nn::ParamGradients) by parameter name (`grads["0.weight"]`) from a
//!   training step. A Var and a Tensor read alike: [`item`](tape::Tensor::item) (the one
//!   element, or a panic naming the shape) and [`try_item`](tape::Tensor::try_item) (the
//!   same as a `Result`);
//! - an ndarray [`ArrayD`](ndarray::ArrayD) is for interop: what you enter
//!   (`tape.var(array![..])`) and what you take out as an array
//!   ([`x.array()`](tape::Var::array), [`t.to_array()`](tape::Tensor::to_array),
//!   [`t.view()`](tape::Tensor::view)).
//!
//! A fourth, [`Val`](tape::Val), is what a rule computes with: you meet it only when
//! writing your own op (below).
//!
//! **Ops** ([`ops`]). Methods on `Var` from the prelude's traits, plus `+ - * /` with
//! numpy's broadcasting: [elementwise](ops::elementwise::ElementwiseOps),
//! [reductions](ops::reduce::ReduceOps), [linear algebra](ops::linalg::LinalgOps),
//! [shapes and indexing](ops::shape::ShapeOps) (with [`concat`](ops::shape::concat()) and
//! [`stack`](ops::shape::stack())), [softmax and losses](ops::nn::NnOps), and
//! [`where_`](ops::elementwise::where_()). Every primitive and its rules are listed in
//! `docs/ops.md`.
//!
//! **Derivatives.** [`Var::backward`](tape::Var::backward) returns the
//! [`Gradients`](tape::Gradients) of a scalar; [`Tape::grad`](tape::Tape::grad),
//! [`Tape::vjp`](tape::Tape::vjp) and [`Tape::jvp`](tape::Tape::jvp) answer for chosen
//! inputs; [`Tape::grad_graph`](tape::Tape::grad_graph) records the sweep so that you can
//! differentiate again; [`GradOptions`](tape::GradOptions) keeps the graph or seeds the
//! sweep. JAX-style function transforms are in [`tape::transforms`]:
//! [`grad`](tape::transforms::grad), [`jvp`](tape::transforms::jvp),
//! [`vjp`](tape::transforms::vjp), [`jacobian`](tape::transforms::jacobian) (which picks the
//! cheaper mode), [`hvp`](tape::transforms::hvp), [`hessian`](tape::transforms::hessian);
//! and [`tape::chain::chain_jacobian`] multiplies a layered chain's Jacobians in the optimal
//! order.
//!
//! **Memory.** [`checkpoint`](tape::checkpoint::checkpoint) records a block as one node that
//! keeps only its inputs and is recomputed by the sweep;
//! [`Sequential::checkpoint_every`](nn::Sequential::checkpoint_every) does it for every `k`
//! layers (or [by a memory budget](nn::Sequential::checkpoint_for_budget)); and
//! [`TimeLoop`](tape::time_loop::TimeLoop) differentiates a time loop with at most `s` stored
//! states by [revolve](tape::revolve)'s binomial checkpointing. `docs/guide.md`, section
//! 10, says when each pays.
//!
//! **Models** ([`nn`]). A [`Module`](nn::Module) is a layer or a model; derive it for a
//! struct of layers (`#[derive(Module)]`, see [the trait's docs](nn::Module) for the rules):
//!
//! ```
//! use retrograd::nn::layers::{Activation, Linear, mlp};
//! use retrograd::nn::{Module, Sequential};
//! use retrograd::prelude::*;
//!
//! #[derive(Module)]
//! #[module(scalar = f32)]
//! struct Classifier {
//!     encoder: Sequential<f32>,
//!     head: Linear,
//! }
//!
//! impl Classifier {
//!     fn forward_fields<'t>(&self, x: Var<'t, f32>, p: ClassifierParams<'t, f32>) -> Var<'t, f32> {
//!         self.head.forward(self.encoder.forward(x, &p.encoder), &p.head)
//!     }
//! }
//!
//! let model = Classifier { encoder: mlp(&[4, 8, 8], Activation::Relu), head: Linear::new(8, 3) };
//! let store = model.init_store(0);
//! assert_eq!(store.len(), 6); // encoder.0.{weight,bias}, encoder.2.{..}, head.{..}
//! ```
//!
//! The [layers](nn::layers) are [`Linear`](nn::layers::Linear), the activations,
//! [`Dropout`](nn::layers::Dropout), [`LayerNorm`](nn::layers::LayerNorm),
//! [`Embedding`](nn::layers::Embedding), [`Sequential`](nn::Sequential) and
//! [`mlp`](nn::layers::mlp); [initialisers](nn::init) are seeded.
//!
//! **Training.** Parameters live in a [`ParamStore`](nn::ParamStore) by name; a
//! [`Session`](nn::Session) runs [`train_step`](nn::Session::train_step) (forward, loss,
//! backward, gradients by name as [`ParamGradients`](nn::ParamGradients)) and
//! [`eval`](nn::Session::eval); [losses](nn::loss) include
//! [`cross_entropy`](nn::loss::cross_entropy) and [`mse`](nn::loss::mse); the
//! [optimisers](nn::optim) are [`Sgd`](nn::optim::Sgd), [`Adam`](nn::optim::Adam) and
//! [`AdamW`](nn::optim::AdamW), with [`clip_grad_norm`](nn::optim::clip_grad_norm) and
//! learning-rate schedules; [`data`](nn::data) batches and splits, and bundles a digits
//! data set. [Checkpoints](nn::checkpoint) are safetensors files:
//! [`save`](nn::checkpoint::save), [`load`](nn::checkpoint::load); an optimiser's
//! [`state`](nn::optim::Optimizer::state) saves the same way, so that training resumes
//! exactly; known weights go into a store by name with [`set`](nn::ParamStore::set), which
//! refuses a name the model does not have.
//!
//! ```
//! use retrograd::nn::layers::{Activation, mlp};
//! use retrograd::nn::optim::{Adam, Optimizer};
//! use retrograd::nn::{Module, Session, checkpoint, loss};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let model = mlp::<f32>(&[2, 8, 2], Activation::Tanh);
//!     let mut store = model.init_store(0);
//!     let mut opt = Adam::new(1e-2);
//!     let mut session = Session::new(0);
//!     let (x, y) = (ndarray::array![[0.0f32, 1.0], [1.0, 0.0]], [1, 0]);
//!     for _ in 0..5 {
//!         let (_loss, grads) = session.train_step(&store, |p| {
//!             loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
//!         })?;
//!         opt.step(&mut store, &grads)?;
//!     }
//!     let path = std::env::temp_dir().join("retrograd-front-page.safetensors");
//!     checkpoint::save(&store, &path)?;
//!     let mut restored = model.init_store(1);
//!     checkpoint::load(&mut restored, &path)?;
//!     assert_eq!(restored, store);
//!     # std::fs::remove_file(&path)?;
//!     Ok(())
//! }
//! ```
//!
//! **Your own op.** A primitive is a [`Rule`](tape::Rule): its forward computation, its
//! VJP and its JVP, written in differentiable ops on [`Val`](tape::Val) so that higher
//! derivatives work; an elementwise one is just a [`UnaryFn`](ops::elementwise::UnaryFn).
//! Apply it with [`Var::apply`](tape::Var::apply).
//!
//! **Checking gradients.** [`check_gradients`](tape::check::check_gradients) compares
//! reverse mode, forward mode and finite differences (and second order) for any function
//! of tensors, yours included, and names the worst entry on failure. With the `proptest`
//! feature, `retrograd::tape::strategies` generates shapes and tensors for property tests.
//!
//! **Reading tapes.** `println!("{}", tape.dump())` prints a [`Dump`](tape::Dump): one
//! row per op with its shape, bytes and your source line;
//! [`summary`](tape::Tape::summary), Graphviz [`dot`](tape::Tape::dot) and versioned
//! [JSON](tape::export) export; [anomaly mode](tape::Tape::set_anomaly_mode) names the
//! line that made the first NaN; [hooks](tape::hooks) observe or replace gradients.
//! `docs/inspecting.md` walks through them.

#[doc(inline)]
pub use retrograd_nn as nn;
#[doc(inline)]
pub use retrograd_ops as ops;
#[doc(inline)]
pub use retrograd_tape as tape;

/// The names a model is written with: the tape types, the values you read
/// ([`Tensor`](crate::tape::Tensor)) and the gradient containers
/// ([`Gradients`](crate::tape::Gradients) by Var,
/// [`ParamGradients`](crate::nn::ParamGradients) by name), every op trait, the
/// free-standing ops (`concat`, `stack`, `where_`), the function transforms, the gradient
/// options, [`checkpoint`](crate::tape::checkpoint::checkpoint) and
/// [`TimeLoop`](crate::tape::time_loop::TimeLoop), and [`Module`](crate::nn::Module)
/// (trait and derive).
pub mod prelude {
    pub use retrograd_nn::{Module, Param, ParamGradients, Params};
    pub use retrograd_ops::elementwise::where_;
    pub use retrograd_ops::prelude::*;
    pub use retrograd_ops::shape::{concat, stack};
    pub use retrograd_tape::checkpoint::checkpoint;
    pub use retrograd_tape::time_loop::TimeLoop;
    pub use retrograd_tape::{Error, Gradients, Rule, RuleCtx, transforms};
}

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The guide's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
pub struct GuideDoctests;
