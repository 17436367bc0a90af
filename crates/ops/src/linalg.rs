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
pub mod matmul;
pub mod outer;

/// The matmul kernel seam (defined in the engine, whose Jacobian products use it too).
pub use retrograd_tape::kernel;

pub use matmul::MatMul;
pub use outer::Outer;

use retrograd_tape::{Float, Operand, Result};

/// Which operands of [`matmul_transposed`](LinalgOps::matmul_transposed) are transposed,
/// so that the call says what it computes instead of passing two bare booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    /// `a · b` (the same as `matmul`).
    Neither,
    /// `aᵀ · b`.
    First,
    /// `a · bᵀ`: a linear layer with a `[out, in]` weight.
    Second,
    /// `aᵀ · bᵀ`.
    Both,
}

impl Transpose {
    /// From the two flags (first operand, second operand).
    pub fn from_flags(first: bool, second: bool) -> Self {
        match (first, second) {
            (false, false) => Transpose::Neither,
            (true, false) => Transpose::First,
            (false, true) => Transpose::Second,
            (true, true) => Transpose::Both,
        }
    }

    /// The two flags (first operand, second operand).
    pub fn flags(self) -> (bool, bool) {
        match self {
            Transpose::Neither => (false, false),
            Transpose::First => (true, false),
            Transpose::Second => (false, true),
            Transpose::Both => (true, true),
        }
    }
}

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

    /// `op(self) · op(other)`, where [`Transpose`] says which operands have their last two
    /// axes swapped (a strided view: never a copy). A linear layer with a PyTorch-layout
    /// weight `[out, in]` is `x.matmul_transposed(&w, Transpose::Second)`, which equals
    /// `x.matmul(&w.transpose())`. A 1-D operand is never transposed. Otherwise as
    /// [`matmul`](LinalgOps::matmul).
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use retrograd_ops::linalg::Transpose; use ndarray::array;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0]]); // [1, 2]
    /// let w = tape.var(array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]); // [out 3, in 2]
    /// let y = x.matmul_transposed(&w, Transpose::Second); // x · wᵀ
    /// assert_eq!(y.array(), array![[1.0, 2.0, 3.0]].into_dyn());
    /// ```
    #[track_caller]
    fn matmul_transposed(&self, other: &Self, which: Transpose) -> Self {
        let (ta, tb) = which.flags();
        Self::apply(MatMul::transposed(ta, tb), &[self, other])
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
