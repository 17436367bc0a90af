//! Linear algebra: `matmul` (numpy's rules, batched with broadcasting), `dot`, `outer`.
//!
//! All matrix products go through one kernel seam, [`kernel::gemm`], so that the kernel can
//! be chosen by measurement without touching a rule. Transposes inside the rules are flags
//! on the product (strided views handed to the kernel), never copies.
//!
//! ```
//! use retrograd_ops::prelude::*;
//! use ndarray::array;
//! let tape = Tape::<f64>::new();
//! let x = tape.constant(array![[1.0, 2.0]]); // data: needs no gradient
//! let w = tape.var(array![[0.5], [-1.0]]);
//! let y = x.matmul(&w); // [1, 1]
//! assert_eq!(y.array(), array![[-1.5]].into_dyn());
//! let g = tape.vjp(y, array![[1.0]], &[w]).unwrap();
//! assert_eq!(g[0], array![[1.0], [2.0]].into_dyn()); // xᵀ · ȳ
//! ```

mod batched;
pub mod kernel;
pub mod matmul;
pub mod outer;

pub use matmul::MatMul;
pub use outer::Outer;

use retrograd_tape::{Float, Operand, Result};

/// Methods for this module's ops on [`Var`](retrograd_tape::Var) and [`Val`](retrograd_tape::Val).
pub trait LinalgOps<'t, T: Float>: Operand<'t, T> {
    /// The matrix product under numpy's `matmul` rules: 1-D · 1-D is the inner product,
    /// a 1-D operand is promoted to a row (left) or column (right) and the added axis
    /// removed again, N-D operands are stacks of matrices whose batch axes broadcast.
    ///
    /// `tape.var(array![[1., 2.], [3., 4.]]).matmul(&tape.var(array![1., 1.]))` is `[3, 7]`.
    ///
    /// # Panics
    /// When the contracted extents differ, the batch axes do not broadcast, or an operand
    /// is a scalar; the message names `matmul`, both shapes and the caller's line.
    #[track_caller]
    fn matmul(&self, other: &Self) -> Self {
        Self::apply(MatMul::new(), &[self, other])
    }

    /// [`matmul`](LinalgOps::matmul) returning [`Error::InvalidOp`](retrograd_tape::Error)
    /// instead of panicking on incompatible shapes.
    ///
    /// `assert!(a.try_matmul(&b).is_err())` for `a: [2, 3]`, `b: [4, 5]`.
    #[track_caller]
    fn try_matmul(&self, other: &Self) -> Result<Self> {
        Self::try_apply(MatMul::new(), &[self, other])
    }

    /// `op(self) · op(other)` where `op` swaps the last two axes of an operand whose flag
    /// is set: a linear layer with a PyTorch-layout weight `[out, in]` is
    /// `x.matmul_transposed(&w, false, true)`, without copying `w`. Flags on 1-D operands
    /// are ignored. Otherwise as [`matmul`](LinalgOps::matmul).
    ///
    /// `x.matmul_transposed(&w, false, true)` equals `x.matmul(&w.transpose())`.
    #[track_caller]
    fn matmul_transposed(&self, other: &Self, transpose_a: bool, transpose_b: bool) -> Self {
        Self::apply(MatMul::transposed(transpose_a, transpose_b), &[self, other])
    }

    /// The inner product `Σ aᵢ bᵢ` of two 1-D vectors of one length: a scalar.
    ///
    /// `tape.var(array![1., 2.]).dot(&tape.var(array![3., 4.]))` is `11`.
    ///
    /// # Panics
    /// When an operand is not 1-D or the lengths differ.
    #[track_caller]
    fn dot(&self, other: &Self) -> Self {
        Self::apply(MatMul::dot(), &[self, other])
    }

    /// The outer product `C[i, j] = aᵢ bⱼ` of two 1-D vectors: an `[m, n]` matrix.
    ///
    /// `tape.var(array![1., 2.]).outer(&tape.var(array![3., 4., 5.]))` has shape `[2, 3]`.
    ///
    /// # Panics
    /// When an operand is not 1-D.
    #[track_caller]
    fn outer(&self, other: &Self) -> Self {
        Self::apply(Outer, &[self, other])
    }
}

impl<'t, T: Float, X: Operand<'t, T>> LinalgOps<'t, T> for X {}
