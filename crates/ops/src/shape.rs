//! Shape ops: reshape, transpose and permute, broadcast, squeeze and unsqueeze, slicing,
//! index_select and gather, padding, and the free functions [`concat()`] and [`stack()`].
//!
//! All of them are linear, so their rules are each other's transposes:
//!
//! | op | VJP | JVP |
//! |---|---|---|
//! | `reshape`, `squeeze`, `unsqueeze` | reshape back | the same reshape |
//! | `permute`, `transpose` | inverse permutation | the same permutation |
//! | `broadcast_to` | `sum_to` | `broadcast_to` |
//! | `slice` | [`ScatterSlice`] into zeros | `slice` |
//! | `pad` | `slice` of the interior | `pad` |
//! | `index_select` | [`IndexAdd`] (scatter-add) | `index_select` |
//! | `gather` | [`ScatterAdd`] | `gather` |
//! | `concat` | one `slice` per input | `concat` (zeros for inputs without a tangent) |
//! | `stack` | `slice` + reshape per input | `stack` |
//!
//! The scatter primitives' own rules are the gathers again, so every op is differentiable
//! to any order (the second derivative of a linear op is zero, and the checks verify it).
//!
//! Axes are `isize`, negative counting from the end. Bad arguments (an axis or index out
//! of range, a reshape to another element count, inputs of mismatched shapes) panic with a
//! message naming the op, the input shapes and the caller's line.

use std::ops::{Bound, RangeBounds};

use ndarray::{ArrayBase, Data, Dimension};

use smallvec::SmallVec;

use retrograd_tape::{Float, Operand, Result, RuleCtx, Tensor, Val};

pub mod at;
pub mod concat;
pub mod flip;
pub mod gather;
pub mod index_add;
pub mod index_select;
pub mod pad;
pub mod permute;
pub mod reshape;
pub mod scatter_add;
pub mod scatter_slice;
pub mod slice;
pub mod squeeze;
pub mod stack;

pub use at::{At, Place};
pub use concat::Concat;
pub use flip::Flip;
pub use gather::Gather;
pub use index_add::IndexAdd;
pub use index_select::IndexSelect;
pub use pad::Pad;
pub use permute::Permute;
pub use reshape::Reshape;
pub use scatter_add::ScatterAdd;
pub use scatter_slice::ScatterSlice;
pub use slice::{Slice, SliceSpec};
pub use squeeze::{Squeeze, Unsqueeze};
pub use stack::Stack;

/// Reshapes to an exact shape, recording nothing when `x` already has it: what rules use to
/// move between a reduction's output and its keep-dims shape, and to promote `matmul`'s
/// vector operands to matrices (and their cotangents back).
#[track_caller]
pub(crate) fn reshape_exact<'t, T: Float, X: Operand<'t, T>>(x: &X, shape: &[usize]) -> X {
    if x.has_shape(shape) {
        x.clone()
    } else {
        X::apply(Reshape::exact(shape), &[x])
    }
}

/// The tangents of a multi-input linear op (`concat`, `stack`), zeros of the input's shape
/// standing in for inputs without one; `None` when no input has a tangent.
pub(crate) fn tangents_or_zeros<'t, T: Float>(
    cx: &RuleCtx<'t, T>,
    t: &[Option<Val<'t, T>>],
) -> Option<SmallVec<[Val<'t, T>; 4]>> {
    if t.iter().all(Option::is_none) {
        return None;
    }
    let filled = t
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Some(t) => t.clone(),
            None => Val::Const(Tensor::zeros(&cx.input_shape(i))),
        })
        .collect();
    Some(filled)
}

/// Concatenates values along an existing `axis`; all other extents must agree:
/// `concat(&[&a, &b], 0)`.
///
/// ```
/// use retrograd_ops::prelude::*;
/// use retrograd_ops::shape::concat;
/// let tape = Tape::<f64>::new();
/// let (a, b) = (tape.var(ndarray::array![1.0, 2.0]), tape.var(ndarray::array![3.0]));
/// assert_eq!(concat(&[&a, &b], 0).array(), ndarray::array![1.0, 2.0, 3.0].into_dyn());
/// ```
///
/// # Panics
/// With no inputs, 0-d inputs, an axis out of range, or mismatched shapes, naming the op,
/// the shapes and the caller's line.
#[track_caller]
pub fn concat<'t, T: Float, X: Operand<'t, T>>(xs: &[&X], axis: isize) -> X {
    X::apply(Concat::new(axis), xs)
}

/// [`concat()`] returning [`Error::InvalidOp`](retrograd_tape::Error::InvalidOp) instead of
/// panicking.
#[track_caller]
pub fn try_concat<'t, T: Float, X: Operand<'t, T>>(xs: &[&X], axis: isize) -> Result<X> {
    X::try_apply(Concat::new(axis), xs)
}

/// [`stack()`] returning [`Error::InvalidOp`](retrograd_tape::Error::InvalidOp) instead of
/// panicking.
#[track_caller]
pub fn try_stack<'t, T: Float, X: Operand<'t, T>>(xs: &[&X], axis: isize) -> Result<X> {
    X::try_apply(Stack::new(axis), xs)
}

/// Stacks values of one shape along a new `axis` (in `-(ndim+1) ..= ndim`):
/// `stack(&[&a, &b], 0)`.
///
/// ```
/// use retrograd_ops::prelude::*;
/// use retrograd_ops::shape::stack;
/// let tape = Tape::<f64>::new();
/// let (a, b) = (tape.var(ndarray::array![1.0, 2.0]), tape.var(ndarray::array![3.0, 4.0]));
/// assert_eq!(stack(&[&a, &b], 1).shape().as_slice(), &[2, 2]);
/// ```
///
/// # Panics
/// With no inputs, an axis out of range, or inputs of different shapes, naming the op, the
/// shapes and the caller's line.
#[track_caller]
pub fn stack<'t, T: Float, X: Operand<'t, T>>(xs: &[&X], axis: isize) -> X {
    X::apply(Stack::new(axis), xs)
}

/// Shape ops on [`Var`](retrograd_tape::Var) and [`Val`].
pub trait ShapeOps<'t, T: Float>: Operand<'t, T> {
    /// The same elements (row-major order) in a new shape; one extent may be `-1`, inferred
    /// from the others: `x.reshape(&[2, -1])`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// assert_eq!(x.reshape(&[2, -1]).shape().as_slice(), &[2, 3]);
    /// ```
    #[track_caller]
    fn reshape(&self, shape: &[isize]) -> Self {
        Self::apply(Reshape::new(shape), &[self])
    }

    /// Swaps the last two axes (the matrix transpose, batched over leading axes):
    /// `x.transpose()`. Needs at least two axes.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0]]);
    /// assert_eq!(x.transpose().array(), array![[1.0], [2.0]].into_dyn());
    /// ```
    #[track_caller]
    fn transpose(&self) -> Self {
        Self::apply(Permute::transpose(), &[self])
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`: `x.permute(&[2, 0, 1])`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(ndarray::ArrayD::zeros(vec![2, 3, 4]));
    /// assert_eq!(x.permute(&[2, 0, 1]).shape().as_slice(), &[4, 2, 3]);
    /// ```
    #[track_caller]
    fn permute(&self, perm: &[usize]) -> Self {
        Self::apply(Permute::new(perm), &[self])
    }

    /// Broadcasts to `shape` under numpy's rules (materialised): `b.broadcast_to(&[4, 3])`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let b = tape.var(array![1.0, 2.0]);
    /// assert_eq!(b.broadcast_to(&[3, 2]).shape().as_slice(), &[3, 2]);
    /// ```
    #[track_caller]
    fn broadcast_to(&self, shape: &[usize]) -> Self {
        retrograd_tape::arith::broadcast_to(self, shape)
    }

    /// The element at `index` (one entry per axis) as a scalar, differentiable:
    /// `x.at(&[1, 2])` is `x[1, 2]`. Its gradient is one-hot.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// let y = x.at(&[1, 0]);
    /// assert_eq!(y.item(), 3.0);
    /// assert_eq!(y.backward().unwrap()[x].to_array(), array![[0.0, 0.0], [1.0, 0.0]].into_dyn());
    /// ```
    ///
    /// # Panics
    /// When the index has the wrong number of entries or one is out of range, naming the
    /// axis, its extent and the caller's line.
    #[track_caller]
    fn at(&self, index: &[usize]) -> Self {
        at::at(self, index)
    }

    /// Removes `axis`, which must have extent 1: `x.squeeze(0)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0]]);
    /// assert_eq!(x.squeeze(0).array(), array![1.0, 2.0].into_dyn());
    /// ```
    #[track_caller]
    fn squeeze(&self, axis: isize) -> Self {
        Self::apply(Squeeze::new(axis), &[self])
    }

    /// Inserts an axis of extent 1 at `axis` (in `-(ndim+1) ..= ndim`): `x.unsqueeze(-1)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0]);
    /// assert_eq!(x.unsqueeze(-1).array(), array![[1.0], [2.0]].into_dyn());
    /// ```
    #[track_caller]
    fn unsqueeze(&self, axis: isize) -> Self {
        Self::apply(Unsqueeze::new(axis), &[self])
    }

    /// The elements `start..end` along `axis` (any range form: `1..3`, `..2`, `1..`):
    /// `x.slice(1, 0..2)`. Bounds past the extent are an error, not clamped.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    /// assert_eq!(x.slice(1, 1..).array(), array![[2.0, 3.0], [5.0, 6.0]].into_dyn());
    /// ```
    #[track_caller]
    fn slice(&self, axis: isize, range: impl RangeBounds<usize>) -> Self {
        Self::apply(Slice::new(&[SliceSpec::new(axis, range)]), &[self])
    }

    /// Every `step`-th element of `range` along `axis`: `x.slice_step(0, .., 2)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0, 3.0, 4.0, 5.0]);
    /// assert_eq!(x.slice_step(0, .., 2).array(), array![1.0, 3.0, 5.0].into_dyn());
    /// ```
    #[track_caller]
    fn slice_step(&self, axis: isize, range: impl RangeBounds<usize>, step: usize) -> Self {
        Self::apply(
            Slice::new(&[SliceSpec::new(axis, range).step(step)]),
            &[self],
        )
    }

    /// Slices several axes at once (one node):
    /// `x.slice_axes(&[SliceSpec::new(0, 1..), SliceSpec::new(1, ..2)])`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// use retrograd_ops::shape::SliceSpec;
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    /// let y = x.slice_axes(&[SliceSpec::new(0, 1..), SliceSpec::new(1, ..2)]);
    /// assert_eq!(y.array(), array![[4.0, 5.0]].into_dyn());
    /// ```
    #[track_caller]
    fn slice_axes(&self, specs: &[SliceSpec]) -> Self {
        Self::apply(Slice::new(specs), &[self])
    }

    /// The entries at `indices` along `axis`, in that order (repeats allowed):
    /// `table.index_select(0, &[3, 1, 3])`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let table = tape.var(array![[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]);
    /// let rows = table.index_select(0, &[2, 0, 2]);
    /// assert_eq!(rows.array(), array![[2.0, 2.0], [0.0, 0.0], [2.0, 2.0]].into_dyn());
    /// ```
    #[track_caller]
    fn index_select(&self, axis: isize, indices: &[usize]) -> Self {
        Self::apply(IndexSelect::new(axis, indices), &[self])
    }

    /// numpy's `take_along_axis`: `out[.., i, ..] = x[.., index[.., i, ..], ..]` along
    /// `axis`; `index` has `x`'s rank and its extents on every other axis:
    /// `x.gather(1, &labels)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let logits = tape.var(array![[0.1, 0.9], [0.8, 0.2]]);
    /// let picked = logits.gather(1, &array![[1usize], [0]]);
    /// assert_eq!(picked.array(), array![[0.9], [0.8]].into_dyn());
    /// ```
    #[track_caller]
    fn gather<S: Data<Elem = usize>, D: Dimension>(
        &self,
        axis: isize,
        index: &ArrayBase<S, D>,
    ) -> Self {
        Self::apply(Gather::new(axis, index), &[self])
    }

    /// Pads with zeros: `(before, after)` for every axis: `x.pad(&[(1, 1), (0, 2)])`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0]);
    /// assert_eq!(x.pad(&[(1, 2)]).array(), array![0.0, 1.0, 2.0, 0.0, 0.0].into_dyn());
    /// ```
    #[track_caller]
    fn pad(&self, widths: &[(usize, usize)]) -> Self {
        Self::apply(Pad::new(widths), &[self])
    }

    /// The elements along `axis` in reverse order (numpy's `x[::-1]`): `x.flip(-1)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0, 3.0]);
    /// assert_eq!(x.flip(0).array(), array![3.0, 2.0, 1.0].into_dyn());
    /// ```
    #[track_caller]
    fn flip(&self, axis: isize) -> Self {
        Self::apply(Flip::new(axis), &[self])
    }

    /// [`reshape`](ShapeOps::reshape) returning
    /// [`Error::InvalidOp`](retrograd_tape::Error::InvalidOp) instead of panicking: for
    /// shapes that come from data.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0, 3.0]);
    /// assert!(x.try_reshape(&[2, -1]).is_err());
    /// ```
    #[track_caller]
    fn try_reshape(&self, shape: &[isize]) -> Result<Self> {
        Self::try_apply(Reshape::new(shape), &[self])
    }

    /// [`broadcast_to`](ShapeOps::broadcast_to) returning an error instead of panicking
    /// (shapes that do not broadcast, or an output too large to allocate).
    #[track_caller]
    fn try_broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        if self.has_shape(shape) {
            return Ok(self.clone());
        }
        Self::try_apply(
            retrograd_tape::arith::BroadcastTo(shape.iter().copied().collect()),
            &[self],
        )
    }

    /// [`slice_axes`](ShapeOps::slice_axes) returning an error instead of panicking
    /// (ranges out of bounds, a zero step, an axis out of range or sliced twice).
    #[track_caller]
    fn try_slice_axes(&self, specs: &[SliceSpec]) -> Result<Self> {
        Self::try_apply(Slice::new(specs), &[self])
    }

    /// [`index_select`](ShapeOps::index_select) returning an error instead of panicking:
    /// for indices read from data.
    #[track_caller]
    fn try_index_select(&self, axis: isize, indices: &[usize]) -> Result<Self> {
        Self::try_apply(IndexSelect::new(axis, indices), &[self])
    }

    /// [`gather`](ShapeOps::gather) returning an error instead of panicking: for indices
    /// read from data.
    #[track_caller]
    fn try_gather<S: Data<Elem = usize>, D: Dimension>(
        &self,
        axis: isize,
        index: &ArrayBase<S, D>,
    ) -> Result<Self> {
        Self::try_apply(Gather::new(axis, index), &[self])
    }

    /// [`pad`](ShapeOps::pad) returning an error instead of panicking (the wrong number of
    /// pairs, or widths whose output overflows or cannot be allocated).
    #[track_caller]
    fn try_pad(&self, widths: &[(usize, usize)]) -> Result<Self> {
        Self::try_apply(Pad::new(widths), &[self])
    }
}

impl<'t, T: Float, X: Operand<'t, T>> ShapeOps<'t, T> for X {}

/// A `RangeBounds` as `(start, end)`, the end `None` when unbounded.
pub(crate) fn range_bounds(range: &impl RangeBounds<usize>) -> (usize, Option<usize>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e.saturating_add(1)),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

/// The reproductions of issue 11: inputs whose arithmetic overflowed, whose outputs could
/// not be allocated, or whose step reversed an axis. Each is a panic naming the op, the
/// shapes and the caller's line, and an `Err` through every `try_` path.
#[cfg(test)]
mod bad_inputs {
    use ndarray::{ArrayD, array};
    use retrograd_tape::{Error, Tape, Var};

    use super::{Pad, Reshape, ShapeOps, SliceSpec};
    use crate::linalg::LinalgOps;
    use crate::linalg::outer::Outer;
    use crate::reduce::ReduceOps;
    use crate::testing::assert_panics_with;

    fn assert_invalid<T>(result: retrograd_tape::Result<T>, op: &str, needle: &str) {
        match result {
            Err(Error::InvalidOp {
                op: got, message, ..
            }) => {
                assert_eq!(got, op);
                assert!(message.contains(needle), "{message}");
            }
            Err(other) => panic!("expected InvalidOp from {op}, got {other}"),
            Ok(_) => panic!("{op} accepted an invalid input"),
        }
    }

    #[test]
    fn a_step_past_isize_max_is_refused_not_reversed() {
        assert_panics_with(
            |tape| {
                tape.var(array![1.0, 2.0, 3.0])
                    .slice_step(0, .., usize::MAX);
            },
            &["slice", "[3]", "step", file!()],
        );
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0, 3.0]);
        let spec = SliceSpec::new(0, ..).step(1 << 63);
        assert_invalid(x.try_slice_axes(&[spec]), "slice", "step");
        // The largest valid step takes the first entry, and its gradient flows back.
        let first = x.slice_step(0, .., isize::MAX as usize);
        assert_eq!(first.array(), array![1.0].into_dyn());
        let g = tape.grad(first.sum_all(), &[x]).unwrap();
        assert_eq!(g[0], array![1.0, 0.0, 0.0].into_dyn());
        assert_eq!(x.flip(0).array(), array![3.0, 2.0, 1.0].into_dyn());
    }

    #[test]
    fn padding_that_overflows_is_an_error() {
        assert_panics_with(
            |tape| {
                tape.var(array![1.0, 2.0, 3.0]).pad(&[(usize::MAX, 1)]);
            },
            &["pad", "[3]", "overflows", file!()],
        );
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0, 3.0]);
        assert_invalid(x.try_pad(&[(usize::MAX, 1)]), "pad", "overflows");
        assert_invalid(
            Var::try_apply(Pad::new(&[(usize::MAX, 1)]), &[&x]),
            "pad",
            "overflows",
        );
    }

    #[test]
    fn a_reshape_whose_size_overflows_is_an_error() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0, 3.0]);
        let huge = [1 << 40, 1 << 40, 3];
        assert_invalid(x.try_reshape(&huge), "reshape", "usize");
        assert_invalid(
            Var::try_apply(Reshape::new(&huge), &[&x]),
            "reshape",
            "usize",
        );
    }

    #[test]
    fn outputs_too_large_to_allocate_are_errors_not_aborts() {
        assert_panics_with(
            |tape| {
                tape.var(array![1.0, 2.0, 3.0]).pad(&[(1 << 40, 0)]);
            },
            &["pad", "[3]", "too large", file!()],
        );
        let tape = Tape::<f32>::new();
        let row = tape.var(array![1.0f32, 2.0, 3.0]);
        assert_invalid(
            row.try_broadcast_to(&[1 << 40, 3]),
            "broadcast_to",
            "too large",
        );
        assert_invalid(row.try_pad(&[(1 << 40, 0)]), "pad", "too large");
        let a = tape.var(ArrayD::zeros(vec![1 << 20, 0]));
        let b = tape.var(ArrayD::zeros(vec![0, 1 << 20]));
        assert_invalid(a.try_matmul(&b), "matmul", "too large");
        let v = tape.var(ArrayD::zeros(vec![1 << 20]));
        assert_invalid(Var::try_apply(Outer, &[&v, &v]), "outer", "too large");
    }

    /// Found by the op-program fuzzer: empty values with enormous extents. Their
    /// reductions and gradients must neither allocate the enormous shape nor pass it to
    /// ndarray (which refuses extents multiplying past `isize::MAX` even with no elements).
    #[test]
    fn empty_values_with_enormous_extents() {
        let tape = Tape::<f64>::new();
        let empty = tape.var(ArrayD::zeros(vec![0, 1, 1]));
        assert_invalid(
            empty.try_broadcast_to(&[0, 1 << 63, 1]),
            "broadcast_to",
            "too large",
        );
        let wide = empty.broadcast_to(&[0, 1 << 44, 1]);
        assert_invalid(
            Var::try_apply(crate::reduce::Sum::new(0.into(), false), &[&wide]),
            "sum",
            "too large",
        );
        assert_eq!(wide.sum([0, 1], true).shape().as_slice(), &[1, 1, 1]);
        assert_eq!(wide.max([1, 2], false).shape().as_slice(), &[0]);
        let scalar = tape.var(ndarray::arr0(2.0));
        let g = tape
            .grad(scalar.broadcast_to(&[0, 1 << 44]).sum_all(), &[scalar])
            .unwrap();
        assert_eq!(g[0], ndarray::arr0(0.0).into_dyn());
    }

    /// Found hanging by the libFuzzer `op_programs` target (in `gather`) and the
    /// deterministic harness (in `softmax`): ops that visit the lanes along an axis of
    /// extent 0 while the other extents multiply to 2^40. The tensor is empty, so every
    /// answer, gradients included, is immediate.
    #[test]
    fn empty_tensors_with_enormous_extents_take_no_time() {
        use crate::nn::NnOps;
        let shape = vec![1usize << 40, 0];
        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::<f64>::zeros(shape.clone()));
        let index = ArrayD::<usize>::zeros(shape.clone());
        for y in [x.softmax(1), x.log_softmax(1), x.gather(1, &index)] {
            assert_eq!(y.shape().as_slice(), shape.as_slice());
            let t = tape.jvp(&[y], &[x], vec![ArrayD::zeros(shape.clone()).into()]);
            assert_eq!(t.unwrap()[0].shape(), shape.as_slice());
            let g = tape.grad(y.sum_all(), &[x]).unwrap();
            assert_eq!(g[0].shape(), shape.as_slice());
        }
    }
}
