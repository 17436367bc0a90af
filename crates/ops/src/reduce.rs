//! Reductions: sum, mean, max, min, logsumexp and variance over one axis, several axes or
//! all of them, with or without keeping the reduced axes (as extent 1).
//!
//! Axes are `isize`, negative counting from the end as in numpy, and are given as an
//! [`Axes`]: `x.sum(1, false)`, `x.sum([0, -1], true)`, `x.sum(Axes::All, false)` (or
//! `x.sum_all()`). An axis out of range or given twice is a programmer error: the op panics
//! with a message naming itself, the input's shape and the caller's line.
//!
//! Every reduction is its own primitive (one node on the tape) with VJP and JVP rules in
//! differentiable ops, so second derivatives work through all of them:
//!
//! | op | VJP (cotangent `g`, `B` = broadcast back over the reduced axes) | JVP (tangent `t`) |
//! |---|---|---|
//! | `sum` | `B(g)` | `sum(t)` |
//! | `mean` | `B(g) / n` | `mean(t)` |
//! | `max`, `min` | `B(g) · w`, `w` = tie mask / tie count | `sum(w · t)` |
//! | `logsumexp` | `B(g) · exp(x − B(out))` | `sum(exp(x − B(out)) · t)` |
//! | `var` | `B(g) · 2(x − B(mean x)) / (n − c)` | `sum(2(x − B(mean x)) · t) / (n − c)` |

use smallvec::SmallVec;

use retrograd_tape::batch;
use retrograd_tape::{Float, Operand, Shape, Tensor};

pub mod extremum;
pub mod logsumexp;
pub mod mean;
pub mod sum;
pub mod variance;

pub use extremum::{Extremum, ExtremumKind};
pub use logsumexp::LogSumExp;
pub use mean::Mean;
pub use sum::Sum;
pub use variance::Variance;

/// Which axes a reduction runs over.
///
/// Built with `From`: an `isize` is one axis, an array, slice or `Vec` of `isize` is
/// several (possibly none: reducing over no axes is the identity, as in numpy).
///
/// ```
/// use retrograd_ops::reduce::Axes;
/// assert_eq!(Axes::from(-1).normalize(3), Ok(vec![2].into()));
/// assert_eq!(Axes::from([2, 0]).normalize(3), Ok(vec![0, 2].into()));
/// assert_eq!(Axes::All.normalize(2), Ok(vec![0, 1].into()));
/// assert!(Axes::from(3).normalize(3).is_err());
/// assert!(Axes::from([1, -2]).normalize(3).is_err()); // the same axis twice
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Axes {
    /// Every axis: the result is a scalar (or all-ones with `keepdims`).
    All,
    /// One axis.
    One(isize),
    /// Several axes, in any order.
    Many(SmallVec<[isize; 4]>),
}

/// Normalised axes: sorted, distinct, each in `0..ndim`.
pub type AxisList = SmallVec<[usize; 4]>;

/// Resolves a possibly negative `axis` against an array of `ndim` axes, numpy-style.
///
/// # Errors
/// A message saying which axis is out of range and what the valid range is; ops return it
/// from their forward computation, so the user sees it with the op's name and the shapes.
///
/// ```
/// use retrograd_ops::reduce::normalize_axis;
/// assert_eq!(normalize_axis(-1, 3), Ok(2));
/// assert!(normalize_axis(3, 3).is_err());
/// ```
pub fn normalize_axis(axis: isize, ndim: usize) -> Result<usize, String> {
    let n = ndim as isize;
    let resolved = if axis < 0 { axis + n } else { axis };
    if (0..n).contains(&resolved) {
        Ok(resolved as usize)
    } else if ndim == 0 {
        Err(format!(
            "axis {axis} is out of range for a 0-d value (it has no axes)"
        ))
    } else {
        Err(format!(
            "axis {axis} is out of range for {ndim} axes (valid: {} ..= {})",
            -n,
            n - 1
        ))
    }
}

impl Axes {
    /// Resolves the axes against an array of `ndim` axes: negatives counted from the end,
    /// sorted ascending.
    ///
    /// # Errors
    /// A message when an axis is out of range or named twice (`[1, -1]` on a 2-d array).
    pub fn normalize(&self, ndim: usize) -> Result<AxisList, String> {
        match self {
            Axes::All => Ok((0..ndim).collect()),
            Axes::One(a) => Ok(smallvec::smallvec![normalize_axis(*a, ndim)?]),
            Axes::Many(list) => {
                let mut out = AxisList::with_capacity(list.len());
                for &a in list {
                    let r = normalize_axis(a, ndim)?;
                    if out.contains(&r) {
                        return Err(format!(
                            "axis {r} is named twice in the axes {:?}",
                            list.as_slice()
                        ));
                    }
                    out.push(r);
                }
                out.sort_unstable();
                Ok(out)
            }
        }
    }
}

impl std::fmt::Display for Axes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Axes::All => write!(f, "all"),
            Axes::One(a) => write!(f, "{a}"),
            Axes::Many(list) => write!(f, "{:?}", list.as_slice()),
        }
    }
}

impl From<isize> for Axes {
    fn from(axis: isize) -> Self {
        Axes::One(axis)
    }
}

impl<const N: usize> From<[isize; N]> for Axes {
    fn from(axes: [isize; N]) -> Self {
        Axes::Many(axes.iter().copied().collect())
    }
}

impl From<&[isize]> for Axes {
    fn from(axes: &[isize]) -> Self {
        Axes::Many(axes.iter().copied().collect())
    }
}

impl<const N: usize> From<&[isize; N]> for Axes {
    fn from(axes: &[isize; N]) -> Self {
        Axes::Many(axes.iter().copied().collect())
    }
}

impl From<Vec<isize>> for Axes {
    fn from(axes: Vec<isize>) -> Self {
        Axes::Many(axes.into_iter().collect())
    }
}

/// The input's shape with the reduced axes set to extent 1: the shape a `keepdims`
/// reduction returns, and the one a cotangent is reshaped to before broadcasting back.
pub(crate) fn kept_shape(shape: &[usize], axes: &[usize]) -> Shape {
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect()
}

/// Resolves `axes` against the input's shape and checks that the output can exist: a
/// reduction of an empty input can be far larger than it (`[2^44, 0]` summed over its
/// empty axis is `2^44` zeros).
pub(crate) fn resolve<T>(axes: &Axes, shape: &[usize]) -> Result<AxisList, String> {
    let resolved = axes.normalize(shape.len())?;
    retrograd_tape::checked_len::<T>(&kept_shape(shape, &resolved))?;
    Ok(resolved)
}

/// The output shape of a reduction of `shape` over `axes`.
pub(crate) fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Shape {
    if keepdims {
        kept_shape(shape, axes)
    } else {
        shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    }
}

/// How many elements each output element of a reduction over `axes` combines.
pub(crate) fn reduced_count(shape: &[usize], axes: &[usize]) -> usize {
    axes.iter().map(|&a| shape[a]).product()
}

/// Broadcasts a reduction's cotangent (or any value of its output's shape) back to the
/// input's shape: reshape to the kept shape, then broadcast. Differentiable.
#[track_caller]
pub(crate) fn unreduce<'t, T: Float, X: Operand<'t, T>>(
    g: &X,
    input_shape: &[usize],
    axes: &[usize],
) -> X {
    let kept = kept_shape(input_shape, axes);
    let g = crate::shape::reshape_exact(g, &kept);
    retrograd_tape::arith::broadcast_to(&g, input_shape)
}

/// A batch of tangents (`[k] ++ input shape`) summed over the resolved `axes` of each
/// batch element: the batched JVP of `sum` (and, scaled, of `mean`).
pub(crate) fn sum_batch<T: Float>(t: &Tensor<T>, axes: &[usize], keepdims: bool) -> Tensor<T> {
    if axes.is_empty() {
        return t.clone();
    }
    let shifted: AxisList = axes.iter().map(|a| a + 1).collect();
    finish(sum_kept(t.view(), &shifted), t.shape(), &shifted, keepdims)
}

/// A batch of cotangents of a reduction's output spread back over the reduced `axes`:
/// the batched [`unreduce`].
pub(crate) fn unreduce_batch<T: Float>(
    g: &Tensor<T>,
    input_shape: &[usize],
    axes: &[usize],
) -> Tensor<T> {
    let k = g.shape()[0];
    let kept = kept_shape(input_shape, axes);
    let g = batch::reshape(g.clone(), &batch::batched_shape(k, &kept));
    batch::stretch(g, input_shape)
}

/// Resolved axes as [`Axes`] again: the rules reduce a tangent over the very axes the
/// forward computation resolved.
pub(crate) fn axes_of(resolved: &[usize]) -> Axes {
    Axes::Many(resolved.iter().map(|&a| a as isize).collect())
}

/// The attributes every reduction reports for inspection.
pub(crate) fn reduce_attributes(axes: &Axes, keepdims: bool) -> Vec<(&'static str, String)> {
    vec![
        ("axes", axes.to_string()),
        ("keepdims", keepdims.to_string()),
    ]
}

/// Folds `view` over the (normalised, sorted) `axes` with `f` from `init`, keeping the
/// reduced axes as extent 1 (the caller reshapes when `keepdims` is off). The first axis
/// is folded straight from the view, so the input is never copied. For order-insensitive
/// folds such as the maximum; sums use [`sum_kept`].
pub(crate) fn fold_kept<T: Float>(
    view: ndarray::ArrayViewD<'_, T>,
    axes: &[usize],
    init: T,
    f: impl Fn(T, T) -> T,
) -> ndarray::ArrayD<T> {
    let fold = |a: ndarray::ArrayViewD<'_, T>, axis: usize| {
        a.fold_axis(ndarray::Axis(axis), init, |&s, &x| f(s, x))
            .insert_axis(ndarray::Axis(axis))
    };
    let Some((&first, rest)) = axes.split_first() else {
        return view.to_owned();
    };
    if view.is_empty() {
        // Folding axis by axis could pass through shapes far larger than the result.
        return ndarray::ArrayD::from_elem(kept_shape(view.shape(), axes).as_slice(), init);
    }
    let mut acc = fold(view, first);
    for &a in rest {
        acc = fold(acc.view(), a);
    }
    acc
}

/// Sums `view` over the (normalised, sorted) `axes`, keeping them as extent 1: every
/// summing reduction goes through here, so all of them add with the accuracy of
/// [`summation`](retrograd_tape::summation) (error growing with `log2 n`, not `n`).
pub(crate) fn sum_kept<T: Float>(
    view: ndarray::ArrayViewD<'_, T>,
    axes: &[usize],
) -> ndarray::ArrayD<T> {
    use retrograd_tape::summation;
    if axes.len() == view.ndim() && !axes.is_empty() {
        let total = summation::sum_all(view.view());
        return ndarray::ArrayD::from_elem(ndarray::IxDyn(&vec![1; axes.len()]), total);
    }
    let Some((&first, rest)) = axes.split_first() else {
        return view.to_owned();
    };
    if view.is_empty() {
        // Summing axis by axis could pass through shapes far larger than the result.
        return ndarray::ArrayD::zeros(kept_shape(view.shape(), axes).as_slice());
    }
    let mut acc = summation::sum_axis(view, first);
    for &a in rest {
        acc = summation::sum_axis(acc.view(), a);
    }
    acc
}

/// Turns a kept-shape result into the output tensor for `keepdims`.
pub(crate) fn finish<T: Float>(
    kept: ndarray::ArrayD<T>,
    shape: &[usize],
    axes: &[usize],
    keepdims: bool,
) -> retrograd_tape::Tensor<T> {
    if keepdims {
        retrograd_tape::Tensor::from_array(kept)
    } else {
        let out = reduced_shape(shape, axes, false);
        // Removing extent-1 axes keeps the element order: a reshape of contiguous data.
        let data: Vec<T> = kept.iter().copied().collect();
        match ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&out), data) {
            Ok(a) => retrograd_tape::Tensor::from_array(a),
            Err(_) => unreachable!("the element count of a reduction is its output's"),
        }
    }
}

/// Reductions on [`Var`](retrograd_tape::Var) and [`Val`](retrograd_tape::Val).
///
/// `axes` is anything that converts into [`Axes`] (`1`, `-1`, `[0, 2]`, `Axes::All`);
/// `keepdims` keeps each reduced axis as extent 1 so that the result broadcasts against the
/// input.
pub trait ReduceOps<'t, T: Float>: Operand<'t, T> {
    /// Sum over `axes`: `x.sum(0, false)` sums the rows of a matrix into one row.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(x.sum(0, false).array(), array![4.0, 6.0].into_dyn());
    /// ```
    #[track_caller]
    fn sum(&self, axes: impl Into<Axes>, keepdims: bool) -> Self {
        Self::apply(Sum::new(axes.into(), keepdims), &[self])
    }

    /// Sum of every element, a scalar: `x.sum_all()`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![1.0, 2.0, 3.0]).sum_all().item(), 6.0);
    /// ```
    #[track_caller]
    fn sum_all(&self) -> Self {
        self.sum(Axes::All, false)
    }

    /// Arithmetic mean over `axes`: `x.mean(-1, true)`. A mean over no elements is NaN.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(x.mean(-1, true).array(), array![[1.5], [3.5]].into_dyn());
    /// ```
    #[track_caller]
    fn mean(&self, axes: impl Into<Axes>, keepdims: bool) -> Self {
        Self::apply(Mean::new(axes.into(), keepdims), &[self])
    }

    /// Mean of every element, a scalar: `x.mean_all()`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![1.0, 2.0, 6.0]).mean_all().item(), 3.0);
    /// ```
    #[track_caller]
    fn mean_all(&self) -> Self {
        self.mean(Axes::All, false)
    }

    /// Maximum over `axes`: `x.max(1, false)`. The gradient goes to the maximal entries,
    /// split equally among ties (as JAX and PyTorch's `amax`); a NaN propagates.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 5.0], [3.0, 4.0]]);
    /// assert_eq!(x.max(1, false).array(), array![5.0, 4.0].into_dyn());
    /// ```
    #[track_caller]
    fn max(&self, axes: impl Into<Axes>, keepdims: bool) -> Self {
        Self::apply(
            Extremum::new(ExtremumKind::Max, axes.into(), keepdims),
            &[self],
        )
    }

    /// Maximum of every element, a scalar: `x.max_all()`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![1.0, 7.0, 3.0]).max_all().item(), 7.0);
    /// ```
    #[track_caller]
    fn max_all(&self) -> Self {
        self.max(Axes::All, false)
    }

    /// Minimum over `axes`: `x.min(0, true)`. Ties split the gradient equally, as for
    /// [`max`](ReduceOps::max).
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 5.0], [3.0, 4.0]]);
    /// assert_eq!(x.min(0, true).array(), array![[1.0, 4.0]].into_dyn());
    /// ```
    #[track_caller]
    fn min(&self, axes: impl Into<Axes>, keepdims: bool) -> Self {
        Self::apply(
            Extremum::new(ExtremumKind::Min, axes.into(), keepdims),
            &[self],
        )
    }

    /// Minimum of every element, a scalar: `x.min_all()`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![1.0, -7.0, 3.0]).min_all().item(), -7.0);
    /// ```
    #[track_caller]
    fn min_all(&self) -> Self {
        self.min(Axes::All, false)
    }

    /// `ln Σ exp(x)` over `axes`, computed stably (the maximum is subtracted first, so
    /// logits of ±1000 stay finite): `logits.logsumexp(-1, true)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1000.0, 1000.0]]);
    /// let y = x.logsumexp(-1, false).array();
    /// assert!((y[0] - (1000.0 + 2f64.ln())).abs() < 1e-12);
    /// ```
    #[track_caller]
    fn logsumexp(&self, axes: impl Into<Axes>, keepdims: bool) -> Self {
        Self::apply(LogSumExp::new(axes.into(), keepdims), &[self])
    }

    /// `ln Σ exp(x)` over every element, a scalar: `x.logsumexp_all()`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![0.0, 0.0]).logsumexp_all().item(), 2f64.ln());
    /// ```
    #[track_caller]
    fn logsumexp_all(&self) -> Self {
        self.logsumexp(Axes::All, false)
    }

    /// Population variance over `axes` (divides by `n`, like numpy's default and
    /// `torch.var(..., correction=0)`): `x.var(0, false)`. For the unbiased estimate use
    /// [`var_with`](ReduceOps::var_with) with correction 1.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 3.0], [2.0, 2.0]]);
    /// assert_eq!(x.var(1, false).array(), array![1.0, 0.0].into_dyn());
    /// ```
    #[track_caller]
    fn var(&self, axes: impl Into<Axes>, keepdims: bool) -> Self {
        self.var_with(axes, keepdims, 0)
    }

    /// Population variance of every element, a scalar: `x.var_all()`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![1.0, 3.0]).var_all().item(), 1.0);
    /// ```
    #[track_caller]
    fn var_all(&self) -> Self {
        self.var(Axes::All, false)
    }

    /// Variance dividing by `n - correction` (`correction = 1`: Bessel's unbiased
    /// estimate, PyTorch's default): `x.var_with(-1, true, 1)`.
    ///
    /// ```
    /// # use retrograd_ops::prelude::*; use ndarray::array; let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(array![1.0, 3.0]).var_with(0, false, 1).item(), 2.0);
    /// ```
    #[track_caller]
    fn var_with(&self, axes: impl Into<Axes>, keepdims: bool, correction: usize) -> Self {
        Self::apply(Variance::new(axes.into(), keepdims, correction), &[self])
    }
}

impl<'t, T: Float, X: Operand<'t, T>> ReduceOps<'t, T> for X {}

#[cfg(test)]
mod accuracy {
    use ndarray::ArrayD;
    use retrograd_tape::{Tape, Tensor};

    use super::ReduceOps;
    use crate::linalg::LinalgOps;
    use crate::nn::NnOps;

    /// Past 2^24 a serial f32 sum stops growing (adding 1 to 2^24 rounds back to it): every
    /// summing op and the gradient of a broadcast must still count exactly.
    #[test]
    fn f32_reductions_count_past_two_to_the_24() {
        let n = (1 << 24) + (1 << 23);
        let tape = Tape::<f32>::new();
        let ones = tape.constant(ArrayD::from_elem(vec![n], 1.0f32));
        assert_eq!(ones.sum_all().item(), n as f32);
        assert_eq!(ones.sum(0, false).item(), n as f32);
        assert_eq!(ones.mean_all().item(), 1.0);
        assert_eq!(ones.var_all().item(), 0.0);
        let lse = ones.logsumexp_all().item();
        assert!((lse - (1.0 + (n as f32).ln())).abs() < 1e-6, "{lse}");
        let zeros = tape.constant(ArrayD::zeros(vec![n]));
        assert_eq!(ones.mse(&zeros).item(), 1.0);
        assert_eq!(ones.dot(&ones).item(), n as f32);
        let p = ones.softmax(0).array();
        assert!((p[0] - 1.0 / n as f32).abs() < 1e-13, "{}", p[0]);
        // The cotangent of a broadcast sums back into the scalar.
        let shift = tape.var(Tensor::scalar(0.0f32));
        let g = tape.grad((ones + shift).sum_all(), &[shift]).unwrap();
        assert_eq!(g[0].sum(), n as f32);
    }
}
