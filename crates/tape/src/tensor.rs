//! Tensor values: what every node of a tape holds.

use std::fmt;
use std::sync::Arc;

use ndarray::{
    ArrayBase, ArrayD, ArrayViewD, ArrayViewMutD, Axis, Data, Dimension, IxDyn, OwnedRepr, Zip,
};
use smallvec::SmallVec;

use crate::Float;

/// A shape: one extent per axis, row-major. Up to four axes live inline.
pub type Shape = SmallVec<[usize; 4]>;

/// An n-dimensional value: a plain scalar, or an ndarray array shared by reference count.
///
/// This is the type every value is read as: a Var's [`value`](crate::Var::value), and
/// each gradient, by Var in [`Gradients`](crate::Gradients) or by parameter name in
/// `retrograd-nn`'s `ParamGradients`. Read it with [`item`](Tensor::item) (the one element)
/// or [`try_item`](Tensor::try_item), [`iter`](Tensor::iter), [`view`](Tensor::view), or
/// compare it with an ndarray array; [`to_array`](Tensor::to_array) and
/// [`into_array`](Tensor::into_array) hand it to ndarray code.
///
/// ```
/// use retrograd_tape::{Tape, Tensor, arith::sum_to};
/// let tape = Tape::<f64>::new();
/// let x = tape.var([1.0, 2.0]);
/// let grads = sum_to(&(x * x), &[]).backward()?;
/// let g: &Tensor<f64> = &grads[x];
/// assert_eq!(*g, ndarray::array![2.0, 4.0]);
/// # Ok::<(), retrograd_tape::Error>(())
/// ```
///
/// Scalars get their own variant because scalar-heavy graphs (a loss assembled from
/// many scalar terms, or the W1 benchmark chain) would otherwise pay an allocation and
/// ndarray's per-call overhead on every op; measured on this project's machines, a 0-d
/// array instead of a plain number made a scalar chain 2.4x slower. A 0-d array is always
/// normalised to `Scalar`, so the two never both describe the same value.
///
/// Arrays sit behind an [`Arc`] so that a value can be read by a backward rule, kept
/// by the tape and handed to the user without a copy; [`Tensor::into_array`] gives the
/// array back without copying when nothing else shares it.
#[derive(Clone, PartialEq)]
pub enum Tensor<T> {
    /// A 0-dimensional value.
    Scalar(T),
    /// A value with one or more axes (possibly of extent zero).
    Array(Arc<ArrayD<T>>),
}

/// Outputs at least this large (64 MiB) are test-allocated before an op commits to them:
/// an untouched allocation costs a map and an unmap, nothing beside filling the output.
const PROBE_BYTES: usize = 1 << 26;

/// Checks that a value of `shape` can exist before an op allocates it: its element count
/// and byte size must not overflow, and outputs of 64 MiB or more must be obtainable from
/// the allocator. Returns the element count.
///
/// Ops call this in `forward` for outputs larger than their inputs (`pad`, `broadcast_to`,
/// `matmul`, `outer`, `index_select`, ..), so that `pad` by `2^40` is an error naming the
/// op and the shapes (or, through `try_` and [`Var::try_apply`](crate::Var::try_apply),
/// an `Err`) instead of an arithmetic-overflow panic or a process abort on a failed
/// allocation.
///
/// # Errors
/// A message saying the output of `shape` is too large, and why.
///
/// ```
/// use retrograd_tape::checked_len;
/// assert_eq!(checked_len::<f32>(&[2, 3]), Ok(6));
/// assert!(checked_len::<f32>(&[1 << 40, 1 << 40]).is_err()); // overflows
/// assert!(checked_len::<f32>(&[0, 1 << 63]).is_err()); // no array can have this shape
/// assert!(checked_len::<f64>(&[1 << 40, 3]).is_err()); // 24 TiB: refused, not aborted
/// ```
pub fn checked_len<T>(shape: &[usize]) -> Result<usize, String> {
    let too_large = |why: &str| format!("an output of shape {shape:?} is too large ({why})");
    // ndarray refuses any shape whose nonzero extents multiply past isize::MAX, even one
    // with no elements ([0, 2^63]).
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| too_large("its extents multiply past isize::MAX"))?;
    let len = shape.iter().product::<usize>();
    let bytes = len
        .checked_mul(size_of::<T>().max(1))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| too_large("its size in bytes overflows isize"))?;
    if bytes >= PROBE_BYTES {
        let mut probe: Vec<T> = Vec::new();
        probe
            .try_reserve_exact(len)
            .map_err(|_| too_large(&format!("{bytes} bytes could not be allocated")))?;
    }
    Ok(len)
}

/// Numpy's broadcasting rule: align shapes at the right; each pair of extents must be equal
/// or one of them 1. Returns `None` when the shapes are incompatible.
///
/// ```
/// use retrograd_tape::broadcast_shapes;
/// assert_eq!(broadcast_shapes(&[3, 1], &[4]).unwrap().as_slice(), &[3, 4]);
/// assert!(broadcast_shapes(&[3], &[4]).is_none());
/// ```
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let n = a.len().max(b.len());
    let mut out = Shape::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out.push(match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    Some(out)
}

/// Whether two shapes are equal. Scalars (the empty shape) are compared without calling
/// into libc's `memcmp`, which slice equality does even for empty slices: on the W1 scalar
/// chain those calls took more than half of the backward sweep's time.
#[inline]
pub fn shape_eq(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// [`Tensor::map`] of an array, out of line so that the scalar case stays small enough
/// to inline.
#[inline(never)]
fn map_array<T: Float>(a: &ArrayD<T>, f: impl Fn(T) -> T) -> Tensor<T> {
    Tensor::Array(Arc::new(a.mapv(f)))
}

impl<T: Float> Tensor<T> {
    /// A scalar.
    pub fn scalar(x: T) -> Self {
        Tensor::Scalar(x)
    }

    /// Wraps an array without copying it; a 0-d array becomes a [`Tensor::Scalar`].
    pub fn from_array<D: Dimension>(array: ArrayBase<OwnedRepr<T>, D>) -> Self {
        if array.ndim() == 0 {
            // A 0-d array holds exactly one element.
            Tensor::Scalar(array.iter().next().copied().unwrap_or_else(T::zero))
        } else {
            Tensor::Array(Arc::new(array.into_dyn()))
        }
    }

    /// Shares an array another owner keeps (a parameter store, say) without copying it; a
    /// 0-d array becomes a [`Tensor::Scalar`]. Whoever writes to the array later through
    /// `Arc::make_mut` copies it first while this tensor is alive, so the two never see
    /// each other's writes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let kept = Arc::new(ndarray::array![1.0f32, 2.0].into_dyn());
    /// let t = retrograd_tape::Tensor::from_shared(Arc::clone(&kept));
    /// assert_eq!(t.view().as_ptr(), kept.as_ptr());
    /// ```
    pub fn from_shared(array: Arc<ArrayD<T>>) -> Self {
        if array.ndim() == 0 {
            Tensor::Scalar(array.iter().next().copied().unwrap_or_else(T::zero))
        } else {
            Tensor::Array(array)
        }
    }

    /// A tensor of `shape` holding `values` in row-major order (numpy's `reshape` of a
    /// flat list).
    ///
    /// ```
    /// use retrograd_tape::{Tape, Tensor};
    /// let tape = Tape::<f32>::new();
    /// let w = tape.var(Tensor::from_vec(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    /// assert_eq!(w.shape().as_slice(), &[2, 3]);
    /// // Vectors, slices, arrays, nested arrays, ndarray views and integers go in as they are:
    /// let (v, a, m, n) = (tape.var(vec![1.0, 2.0]), tape.var([1.0, 2.0]), tape.var([[1.0, 2.0]]), tape.var(3));
    /// assert_eq!((v.shape().as_slice(), a.shape().as_slice(), m.shape().as_slice()), (&[2][..], &[2][..], &[1, 2][..]));
    /// assert_eq!(n.item(), 3.0);
    /// ```
    ///
    /// # Panics
    /// When the number of values is not the product of `shape` (see
    /// [`try_from_vec`](Tensor::try_from_vec)).
    #[track_caller]
    pub fn from_vec(shape: &[usize], values: Vec<T>) -> Self {
        match Self::try_from_vec(shape, values) {
            Ok(t) => t,
            Err(e) => panic!("Tensor::from_vec: {e}"),
        }
    }

    /// [`from_vec`](Tensor::from_vec), with a wrong number of values as an
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) (`got` is the values' count).
    pub fn try_from_vec(shape: &[usize], values: Vec<T>) -> crate::Result<Self> {
        let expected: usize = shape.iter().product();
        if values.len() != expected {
            return Err(crate::Error::ShapeMismatch {
                what: format!("data for a tensor of shape {shape:?} ({expected} values)"),
                expected: Shape::from_slice(&[expected]),
                got: Shape::from_slice(&[values.len()]),
            });
        }
        let array = ArrayD::from_shape_vec(IxDyn(shape), values)
            .expect("the length was checked against the shape");
        Ok(Tensor::from_array(array))
    }

    /// A tensor of the given shape filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        if shape.is_empty() {
            Tensor::Scalar(value)
        } else {
            Tensor::Array(Arc::new(ArrayD::from_elem(IxDyn(shape), value)))
        }
    }

    /// Zeros of the given shape.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// Ones of the given shape.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::one())
    }

    /// The extent of each axis (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::Scalar(_) => &[],
            Tensor::Array(a) => a.shape(),
        }
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Tensor::Scalar(_) => 1,
            Tensor::Array(a) => a.len(),
        }
    }

    /// Whether the tensor has no elements (some axis has extent zero).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of element data this value holds.
    pub fn bytes(&self) -> usize {
        self.len() * std::mem::size_of::<T>()
    }

    /// A read-only view; a scalar is viewed as a 0-d array.
    pub fn view(&self) -> ArrayViewD<'_, T> {
        match self {
            Tensor::Scalar(x) => ndarray::aview0(x).into_dyn(),
            Tensor::Array(a) => a.view(),
        }
    }

    /// The elements in row-major order (numpy's `flat`).
    ///
    /// ```
    /// let t = retrograd_tape::Tensor::<f64>::from([[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(t.iter().sum::<f64>(), 10.0);
    /// ```
    pub fn iter(&self) -> ndarray::iter::Iter<'_, T, IxDyn> {
        self.view().into_iter()
    }

    /// The value as an owned array, without a copy when nothing else shares it.
    pub fn into_array(self) -> ArrayD<T> {
        match self {
            Tensor::Scalar(x) => ArrayD::from_elem(IxDyn(&[]), x),
            Tensor::Array(a) => Arc::try_unwrap(a).unwrap_or_else(|shared| (*shared).clone()),
        }
    }

    /// The value as an owned array (a copy).
    pub fn to_array(&self) -> ArrayD<T> {
        self.view().to_owned()
    }

    /// A writable view, for updating a value where it lies (an optimiser scaling a
    /// gradient, an all-reduce summing into one): copy on write, so the data is copied
    /// first only when another tensor shares it, and never otherwise. A scalar is viewed as
    /// a 0-d array.
    ///
    /// ```
    /// use retrograd_tape::Tensor;
    /// let mut g = Tensor::<f32>::from([1.0, 2.0]);
    /// let before = g.view().as_ptr();
    /// g.view_mut().mapv_inplace(|x| 10.0 * x);
    /// assert_eq!(g.view().as_ptr(), before); // unshared: updated in place
    /// let kept = g.clone();
    /// g.view_mut()[0] = 0.0; // shared with `kept`: `g` copies first
    /// assert_eq!((kept.to_array()[0], g.to_array()[0]), (10.0, 0.0));
    /// ```
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        match self {
            Tensor::Scalar(x) => ArrayViewMutD::from_shape(IxDyn(&[]), std::slice::from_mut(x))
                .expect("one element fits the empty shape"),
            Tensor::Array(a) => Arc::make_mut(a).view_mut(),
        }
    }

    /// The single element of a value that has exactly one, of any shape (`[]`, `[1]`,
    /// `[1, 1]`, ..): a loss, a norm, one entry picked with `at`.
    ///
    /// ```
    /// use retrograd_tape::Tensor;
    /// assert_eq!(Tensor::<f64>::scalar(2.5).item(), 2.5);
    /// assert_eq!(Tensor::<f64>::from([[4.0]]).item(), 4.0);
    /// ```
    ///
    /// # Panics
    /// When the value has no element or several, naming its shape and element count. The
    /// non-panicking form is [`try_item`](Tensor::try_item).
    #[track_caller]
    pub fn item(&self) -> T {
        match self.try_item() {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`item`](Tensor::item), returning [`Error::NotOneElement`](crate::Error::NotOneElement)
    /// instead of panicking when the value has no element or several.
    ///
    /// ```
    /// use retrograd_tape::{Error, Tensor};
    /// assert_eq!(Tensor::<f64>::from([7.0]).try_item(), Ok(7.0));
    /// let err = Tensor::<f64>::from([1.0, 2.0]).try_item().unwrap_err();
    /// assert!(matches!(err, Error::NotOneElement { len: 2, .. }));
    /// ```
    pub fn try_item(&self) -> crate::Result<T> {
        match self {
            Tensor::Scalar(x) => Ok(*x),
            Tensor::Array(a) => match a.iter().next() {
                Some(&x) if a.len() == 1 => Ok(x),
                _ => Err(crate::Error::NotOneElement {
                    shape: Shape::from_slice(a.shape()),
                    len: a.len(),
                    location: None,
                }),
            },
        }
    }

    /// Applies `f` to every element. The scalar case is inlined into each op's forward
    /// computation (a scalar graph records it once per node); arrays go out of line.
    #[inline]
    pub fn map(&self, f: impl Fn(T) -> T) -> Self {
        match self {
            Tensor::Scalar(x) => Tensor::Scalar(f(*x)),
            Tensor::Array(a) => map_array(a, f),
        }
    }

    /// Combines two tensors elementwise under numpy broadcasting; `None` when the shapes
    /// do not broadcast.
    #[inline]
    pub fn zip_map(&self, other: &Self, f: impl Fn(T, T) -> T) -> Option<Self> {
        match (self, other) {
            (Tensor::Scalar(a), Tensor::Scalar(b)) => Some(Tensor::Scalar(f(*a, *b))),
            _ => self.zip_map_arrays(other, f),
        }
    }

    /// [`Tensor::zip_map`] when either side is an array, out of line so that the scalar
    /// case stays small enough to inline.
    #[inline(never)]
    fn zip_map_arrays(&self, other: &Self, f: impl Fn(T, T) -> T) -> Option<Self> {
        match (self, other) {
            (Tensor::Scalar(a), Tensor::Scalar(b)) => Some(Tensor::Scalar(f(*a, *b))),
            (Tensor::Array(a), Tensor::Scalar(b)) => {
                let b = *b;
                Some(Tensor::Array(Arc::new(a.mapv(|x| f(x, b)))))
            }
            (Tensor::Scalar(a), Tensor::Array(b)) => {
                let a = *a;
                Some(Tensor::Array(Arc::new(b.mapv(|y| f(a, y)))))
            }
            (Tensor::Array(a), Tensor::Array(b)) => {
                let out = if a.shape() == b.shape() {
                    Zip::from(&**a).and(&**b).map_collect(|&x, &y| f(x, y))
                } else {
                    let shape = broadcast_shapes(a.shape(), b.shape())?;
                    let av = a.broadcast(IxDyn(&shape))?;
                    let bv = b.broadcast(IxDyn(&shape))?;
                    Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y))
                };
                Some(Tensor::from_array(out))
            }
        }
    }

    /// Adds `other` (of the same shape) into `self`, in place when `self` is not shared.
    ///
    /// # Panics
    /// When the shapes differ.
    #[inline]
    pub fn add_assign(&mut self, other: &Self) {
        // Two scalars (every accumulation of a scalar graph's sweep) add inline.
        if let (Tensor::Scalar(a), Tensor::Scalar(b)) = (&mut *self, other) {
            *a += *b;
            return;
        }
        self.add_assign_general(other);
    }

    /// [`Tensor::add_assign`] beyond two scalars.
    #[inline(never)]
    fn add_assign_general(&mut self, other: &Self) {
        assert!(
            shape_eq(self.shape(), other.shape()),
            "add_assign: shapes {:?} and {:?} differ",
            self.shape(),
            other.shape()
        );
        match (self, other) {
            (Tensor::Scalar(a), Tensor::Scalar(b)) => *a += *b,
            (Tensor::Array(a), other) => {
                let a = Arc::make_mut(a);
                *a += &other.view();
            }
            (Tensor::Scalar(_), Tensor::Array(_)) => unreachable!("shapes are equal"),
        }
    }

    /// Broadcasts to `shape` (materialised). `None` when `self` does not broadcast to it.
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<Self> {
        if shape_eq(self.shape(), shape) {
            return Some(self.clone());
        }
        match self {
            Tensor::Scalar(x) => Some(Tensor::full(shape, *x)),
            Tensor::Array(a) => Some(Tensor::from_array(a.broadcast(IxDyn(shape))?.to_owned())),
        }
    }

    /// Sums over the axes that broadcasting from `shape` to `self.shape()` created or
    /// stretched: the adjoint of [`Tensor::broadcast_to`].
    ///
    /// # Panics
    /// When `shape` does not broadcast to `self.shape()`.
    pub fn sum_to(&self, shape: &[usize]) -> Self {
        if shape_eq(self.shape(), shape) {
            return self.clone();
        }
        let from = self.shape();
        assert!(
            broadcast_shapes(from, shape).as_deref() == Some(from),
            "sum_to: shape {shape:?} does not broadcast to {from:?}"
        );
        if self.is_empty() {
            // The sum of nothing; reducing axis by axis could pass through shapes far
            // larger than the result (`[0, 2^44]` summed to `[1]`).
            return Tensor::full(shape, T::zero());
        }
        let lead = from.len() - shape.len();
        // Reduce the leading axes broadcasting added, then the stretched extent-1 axes. The
        // first reduction reads the value in place, so only reduced results are allocated.
        let view = self.view();
        let mut acc: Option<ArrayD<T>> = None;
        // Sums are accurate to O(log n) roundings (`summation`), as every reduction's are.
        let sum = |acc: &Option<ArrayD<T>>, axis: usize| match acc {
            None => crate::summation::sum_axis(view.view(), axis),
            Some(a) => crate::summation::sum_axis(a.view(), axis),
        };
        for _ in 0..lead {
            acc = Some(sum(&acc, 0).remove_axis(Axis(0)));
        }
        for (axis, &extent) in shape.iter().enumerate() {
            let current = acc
                .as_ref()
                .map_or(view.shape()[lead + axis], |a| a.shape()[axis]);
            if extent == 1 && current != 1 {
                acc = Some(sum(&acc, axis));
            }
        }
        Tensor::from_array(acc.unwrap_or_else(|| view.to_owned()))
    }

    /// Whether every element is finite (no NaN, no infinity).
    pub fn all_finite(&self) -> bool {
        match self {
            Tensor::Scalar(x) => x.is_finite(),
            Tensor::Array(a) => a.iter().all(|x| x.is_finite()),
        }
    }
}

impl<T: Float, D: Dimension> From<ArrayBase<OwnedRepr<T>, D>> for Tensor<T> {
    fn from(array: ArrayBase<OwnedRepr<T>, D>) -> Self {
        Tensor::from_array(array)
    }
}

impl<T: Float> From<T> for Tensor<T> {
    fn from(x: T) -> Self {
        Tensor::Scalar(x)
    }
}

// What users have at hand, accepted wherever a value is entered (`tape.var(..)`,
// `tape.constant(..)`, `p.input(..)`): vectors, slices and arrays (1-d), nested arrays
// (2-d), ndarray views (copied), and integers (converted to the float type). A flat vector
// with a shape goes through `Tensor::from_vec`.

impl<T: Float> From<Vec<T>> for Tensor<T> {
    /// A 1-d tensor, moved in without a copy.
    fn from(values: Vec<T>) -> Self {
        Tensor::from_array(ndarray::Array1::from(values))
    }
}

impl<T: Float> From<&[T]> for Tensor<T> {
    /// A 1-d tensor (copied).
    fn from(values: &[T]) -> Self {
        Tensor::from(values.to_vec())
    }
}

impl<T: Float, const N: usize> From<[T; N]> for Tensor<T> {
    /// A 1-d tensor of length `N`.
    fn from(values: [T; N]) -> Self {
        Tensor::from(values.to_vec())
    }
}

impl<T: Float, const N: usize, const M: usize> From<[[T; N]; M]> for Tensor<T> {
    /// A 2-d tensor of shape `[M, N]` (rows first, as `array![[..], [..]]`).
    fn from(rows: [[T; N]; M]) -> Self {
        Tensor::from_array(ndarray::Array2::from(rows.to_vec()))
    }
}

impl<T: Float, D: Dimension> From<ArrayBase<ndarray::ViewRepr<&T>, D>> for Tensor<T> {
    /// The view's elements, copied into a tensor of the same shape.
    fn from(view: ArrayBase<ndarray::ViewRepr<&T>, D>) -> Self {
        Tensor::from_array(view.to_owned())
    }
}

macro_rules! from_integer {
    ($($int:ty),*) => {$(
        impl<T: Float> From<$int> for Tensor<T> {
            /// A scalar, converted to the float type (`tape.var(3)`).
            fn from(x: $int) -> Self {
                Tensor::Scalar(T::from(x).unwrap_or_else(T::nan))
            }
        }
    )*};
}
from_integer!(i32, i64, u32, usize);

/// A tensor equals an ndarray array of the same shape and elements (a scalar equals a 0-d
/// array), so tests and users compare what they read with `array![..]` directly:
/// `assert_eq!(grads[x], array![2.0, 4.0])`.
impl<T: Float, S: Data<Elem = T>, D: Dimension> PartialEq<ArrayBase<S, D>> for Tensor<T> {
    fn eq(&self, other: &ArrayBase<S, D>) -> bool {
        self.shape() == other.shape() && self.view().iter().eq(other.iter())
    }
}

/// The mirror of `Tensor == array`.
impl<T: Float, S: Data<Elem = T>, D: Dimension> PartialEq<Tensor<T>> for ArrayBase<S, D> {
    fn eq(&self, other: &Tensor<T>) -> bool {
        other == self
    }
}

impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tensor::Scalar(x) => write!(f, "{x:?}"),
            Tensor::Array(a) => write!(f, "{:?}", a.view()),
        }
    }
}

impl<T: Float> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tensor::Scalar(x) => write!(f, "{x}"),
            Tensor::Array(a) => write!(f, "{}", a.view()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn what_users_have_converts_to_tensors() {
        let v: Tensor<f64> = vec![1.0, 2.0].into();
        assert_eq!(v.to_array(), array![1.0, 2.0].into_dyn());
        let a: Tensor<f32> = [1.0, 2.0, 3.0].into();
        assert_eq!(a.shape(), &[3]);
        let s: Tensor<f32> = (&[1.0f32, 2.0][..]).into();
        assert_eq!(s.shape(), &[2]);
        let m: Tensor<f64> = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into();
        assert_eq!(
            m.to_array(),
            array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn()
        );
        let big = array![[1.0f64, 2.0], [3.0, 4.0]];
        let col: Tensor<f64> = big.column(1).into();
        assert_eq!(col.to_array(), array![2.0, 4.0].into_dyn());
        assert_eq!(Tensor::<f32>::from(3).item(), 3.0);
        assert_eq!(Tensor::<f64>::from(7usize).item(), 7.0);
        let r = Tensor::<f64>::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r.to_array(), array![[1.0, 2.0], [3.0, 4.0]].into_dyn());
        let err = Tensor::<f64>::try_from_vec(&[2, 3], vec![1.0; 5]).unwrap_err();
        assert!(
            err.to_string().contains("[2, 3] (6 values) has shape [5]"),
            "{err}"
        );
    }

    #[test]
    fn zero_d_arrays_become_scalars() {
        let t = Tensor::from_array(ndarray::arr0(2.5f64));
        assert!(matches!(t, Tensor::Scalar(x) if x == 2.5));
        assert_eq!(t.shape(), &[] as &[usize]);
    }

    #[test]
    fn zip_map_broadcasts_like_numpy() {
        let a = Tensor::from(array![[1.0f64], [2.0]]);
        let b = Tensor::from(array![10.0f64, 20.0, 30.0]);
        let c = a.zip_map(&b, |x, y| x + y).unwrap();
        assert_eq!(
            c.to_array(),
            array![[11.0, 21.0, 31.0], [12.0, 22.0, 32.0]].into_dyn()
        );
        assert!(
            a.zip_map(&Tensor::from(array![1.0, 2.0, 3.0, 4.0]), |x, _| x)
                .is_some()
        );
        let bad = Tensor::from(array![1.0f64, 2.0]);
        assert!(b.zip_map(&bad, |x, _| x).is_none());
    }

    #[test]
    fn sum_to_is_the_adjoint_of_broadcast_to() {
        let g = Tensor::from(array![[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(g.sum_to(&[3]).to_array(), array![5.0, 7.0, 9.0].into_dyn());
        assert_eq!(
            g.sum_to(&[2, 1]).to_array(),
            array![[6.0], [15.0]].into_dyn()
        );
        assert_eq!(g.sum_to(&[]).item(), 21.0);
        assert_eq!(
            g.sum_to(&[1, 3]).to_array(),
            array![[5.0, 7.0, 9.0]].into_dyn()
        );
    }

    /// The panic message of `f`, which must panic.
    fn panic_message(f: impl FnOnce()) -> String {
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
        match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(p) => p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn item_reads_the_one_element_of_any_shape() {
        for shape in [&[][..], &[1], &[1, 1], &[1, 1, 1]] {
            let t = Tensor::<f64>::full(shape, 2.5);
            assert_eq!((t.item(), t.try_item()), (2.5, Ok(2.5)), "{shape:?}");
        }
    }

    #[test]
    fn item_of_no_element_or_several_names_the_shape_and_count() {
        for (shape, len) in [(&[0][..], 0), (&[2, 0], 0), (&[3], 3), (&[2, 2], 4)] {
            let t = Tensor::<f32>::zeros(shape);
            let err = t.try_item().unwrap_err();
            assert_eq!(
                err,
                crate::Error::NotOneElement {
                    shape: Shape::from_slice(shape),
                    len,
                    location: None
                }
            );
            let expected =
                format!("item: the value of shape {shape:?} has {len} elements, not one");
            let shown = panic_message(|| {
                t.item();
            });
            assert!(shown.starts_with(&expected), "{shown}");
            assert!(
                shown.contains("`sum_all()`") && shown == err.to_string(),
                "{shown}"
            );
        }
    }

    #[test]
    fn view_mut_writes_in_place_unless_shared() {
        let mut s = Tensor::scalar(1.0f64);
        s.view_mut()[[]] = 4.0;
        assert_eq!(s.item(), 4.0);
        let mut a = Tensor::from(array![1.0f64, 2.0]);
        let ptr = a.view().as_ptr();
        a.view_mut().mapv_inplace(|x| x * 2.0);
        assert_eq!(
            (a.view().as_ptr(), &a),
            (ptr, &Tensor::from(array![2.0, 4.0]))
        );
        let kept = a.clone();
        a.view_mut()[0] = 0.0;
        assert_ne!(a.view().as_ptr(), ptr, "shared: copied before the write");
        assert_eq!(
            (kept.view().as_ptr(), kept),
            (ptr, Tensor::from(array![2.0, 4.0]))
        );
    }

    #[test]
    fn tensors_compare_with_ndarray_arrays() {
        let t = Tensor::from(array![[1.0f64, 2.0]]);
        assert_eq!(t, array![[1.0, 2.0]]);
        assert_eq!(array![[1.0, 2.0]].into_dyn(), t);
        assert_ne!(t, array![1.0, 2.0], "same elements, another shape");
        assert_ne!(t, array![[1.0, 3.0]]);
        assert_eq!(Tensor::scalar(3.0f32), ndarray::arr0(3.0));
    }

    #[test]
    fn into_array_does_not_copy_an_unshared_value() {
        let a = array![1.0f32, 2.0, 3.0].into_dyn();
        let ptr = a.as_ptr();
        let t = Tensor::from_array(a);
        assert_eq!(t.into_array().as_ptr(), ptr);
    }
}
