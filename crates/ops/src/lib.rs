//! # retrograd-ops: the primitives
//!
//! Every op a model is written with, each one type implementing the tape's
//! [`Rule`](retrograd_tape::Rule): its forward computation, its VJP and its JVP, the rules
//! written in differentiable ops so that second derivatives work through all of them.
//!
//! Ops are called as methods on a [`Var`](retrograd_tape::Var) (and, inside rules, on a
//! [`Val`](retrograd_tape::Val)); bring the traits into scope with the prelude:
//!
//! ```
//! use retrograd_ops::prelude::*;
//! let tape = Tape::<f64>::new();
//! let x = tape.var(ndarray::array![0.5, -1.0, 2.0]);
//! let y = (x.exp() * 2.0).sum_all();
//! let g = tape.grad(y, &[x]).unwrap();
//! assert!((g[0][0] - 2.0 * 0.5f64.exp()).abs() < 1e-12);
//! ```
//!
//! The arithmetic operators (`+ - * /`, unary `-`, with broadcasting and scalar operands)
//! and `sum_to`/`broadcast_to` are defined in the engine (`retrograd_tape::arith`), which
//! needs them for its own bookkeeping; they are re-exported here.

pub mod conv;
pub mod elementwise;
pub mod linalg;
pub mod nn;
pub mod reduce;
pub mod shape;
#[cfg(test)]
pub(crate) mod testing;
pub use retrograd_tape::arith;
/// The thread count of retrograd's kernels (defined in the engine, which runs products of
/// its own; re-exported here where the kernels' users look for it).
pub use retrograd_tape::threads;

/// The number of elements of a shape, for the ops' multiply-add estimates
/// ([`Rule::madds`](retrograd_tape::Rule::madds)).
pub(crate) fn elements(shape: &[usize]) -> u64 {
    shape.iter().map(|&d| d as u64).product()
}

/// `Σ f(aᵢ, bᵢ)` over two tensors of one shape, added with the accuracy of
/// [`summation`](retrograd_tape::summation): a loss's per-element terms, an inner
/// product's products.
pub(crate) fn sum_pairs<T: retrograd_tape::Float>(
    a: &retrograd_tape::Tensor<T>,
    b: &retrograd_tape::Tensor<T>,
    f: impl Fn(T, T) -> T,
) -> T {
    use retrograd_tape::summation::sum_iter;
    let (a, b) = (a.view(), b.view());
    match (a.as_slice(), b.as_slice()) {
        (Some(a), Some(b)) => sum_iter(a.iter().zip(b).map(|(&x, &y)| f(x, y))),
        _ => sum_iter(a.iter().zip(b.iter()).map(|(&x, &y)| f(x, y))),
    }
}

/// Everything needed to write models: the tape types and every op trait.
pub mod prelude {
    pub use crate::conv::ConvOps;
    pub use crate::elementwise::ElementwiseOps;
    pub use crate::linalg::{LinalgOps, Transpose};
    pub use crate::nn::NnOps;
    pub use crate::reduce::ReduceOps;
    pub use crate::shape::ShapeOps;
    pub use retrograd_tape::{Float, GradOptions, Operand, Tape, Tensor, Val, Var};
}
