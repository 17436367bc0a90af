//! Data handling without the tape: mini-batches, a seeded train/test split, and the
//! bundled digits data set ([`digits`]).
//!
//! Rows are along axis 0 of any-dimensional ndarray arrays: `x` can be a matrix of feature
//! rows or a stack of images, `y` a vector of class labels or a matrix of targets.
//!
//! ```
//! use ndarray::{Array1, Array2};
//! use retrograd_nn::data::Batches;
//!
//! let x = Array2::<f32>::zeros((10, 3));
//! let y = Array1::from_iter(0..10usize);
//! let sizes: Vec<usize> = Batches::new(&x, &y, 4).shuffled(7).map(|(xb, _)| xb.nrows()).collect();
//! assert_eq!(sizes, [4, 4, 2]);
//! ```

pub mod digits;

use ndarray::{Array, ArrayBase, ArrayView, Axis, Data, Dimension, RemoveAxis};
use rand::seq::SliceRandom;

use crate::init::rng_from_seed;

/// A random permutation of `0..n`, the same for the same seed.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng_from_seed(seed));
    order
}

/// An iterator over `(x, y)` mini-batches: the same rows of both, copied out in batch
/// order.
///
/// By default rows come in order and the last batch may be smaller than `batch_size`.
/// [`Batches::shuffled`] visits the rows in a seeded random order (use a different seed per
/// epoch, e.g. `seed + epoch`); [`Batches::drop_last`] drops a final partial batch (some
/// layers, like batch normalisation, dislike tiny batches).
#[derive(Clone, Debug)]
pub struct Batches<'a, X, Y, DX, DY>
where
    DX: Dimension,
    DY: Dimension,
{
    x: ArrayView<'a, X, DX>,
    y: ArrayView<'a, Y, DY>,
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    pos: usize,
}

impl<'a, X, Y, DX, DY> Batches<'a, X, Y, DX, DY>
where
    X: Clone,
    Y: Clone,
    DX: RemoveAxis,
    DY: RemoveAxis,
{
    /// Batches of `batch_size` rows of `x` and `y`, in order.
    ///
    /// # Panics
    /// If `x` and `y` have different numbers of rows, either is 0-dimensional, or
    /// `batch_size` is 0.
    pub fn new<SX, SY>(
        x: &'a ArrayBase<SX, DX>,
        y: &'a ArrayBase<SY, DY>,
        batch_size: usize,
    ) -> Self
    where
        SX: Data<Elem = X>,
        SY: Data<Elem = Y>,
    {
        assert!(
            x.ndim() >= 1 && y.ndim() >= 1,
            "Batches: x and y need a row axis, got shapes {:?} and {:?}",
            x.shape(),
            y.shape()
        );
        let n = x.len_of(Axis(0));
        assert_eq!(
            n,
            y.len_of(Axis(0)),
            "Batches: x and y must have the same number of rows, got shapes {:?} and {:?}",
            x.shape(),
            y.shape()
        );
        assert!(batch_size > 0, "Batches: batch_size must be > 0");
        Self {
            x: x.view(),
            y: y.view(),
            order: (0..n).collect(),
            batch_size,
            drop_last: false,
            pos: 0,
        }
    }

    /// Visits the rows in a random order drawn from `seed`.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.order = permutation(self.order.len(), seed);
        self
    }

    /// Whether to drop a final batch smaller than `batch_size` (default: keep it).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The row indices in the order they are visited.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    fn remaining(&self) -> usize {
        let left = self.order.len() - self.pos;
        if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        }
    }
}

impl<X, Y, DX, DY> Iterator for Batches<'_, X, Y, DX, DY>
where
    X: Clone,
    Y: Clone,
    DX: RemoveAxis,
    DY: RemoveAxis,
{
    type Item = (Array<X, DX>, Array<Y, DY>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining() == 0 {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let rows = &self.order[self.pos..end];
        self.pos = end;
        Some((self.x.select(Axis(0), rows), self.y.select(Axis(0), rows)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl<X, Y, DX, DY> ExactSizeIterator for Batches<'_, X, Y, DX, DY>
where
    X: Clone,
    Y: Clone,
    DX: RemoveAxis,
    DY: RemoveAxis,
{
}

/// The result of [`train_test_split`]: rows copied into two disjoint parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Split<X, Y, DX, DY>
where
    DX: Dimension,
    DY: Dimension,
{
    /// Training inputs.
    pub x_train: Array<X, DX>,
    /// Training targets.
    pub y_train: Array<Y, DY>,
    /// Test inputs.
    pub x_test: Array<X, DX>,
    /// Test targets.
    pub y_test: Array<Y, DY>,
}

/// Splits the rows of `x` and `y` at random (seeded) into a training part and a test
/// part holding `ceil(test_fraction · rows)` rows (scikit-learn's rounding).
///
/// # Panics
/// If `test_fraction` is not in `[0, 1]`, or `x` and `y` have different numbers of rows.
///
/// ```
/// use ndarray::{Array1, Array2};
/// use retrograd_nn::data::train_test_split;
///
/// let x = Array2::<f64>::zeros((10, 2));
/// let y = Array1::<usize>::zeros(10);
/// let s = train_test_split(&x, &y, 0.25, 0);
/// assert_eq!((s.x_train.nrows(), s.x_test.nrows()), (7, 3));
/// ```
pub fn train_test_split<X, Y, DX, DY, SX, SY>(
    x: &ArrayBase<SX, DX>,
    y: &ArrayBase<SY, DY>,
    test_fraction: f64,
    seed: u64,
) -> Split<X, Y, DX, DY>
where
    X: Clone,
    Y: Clone,
    DX: RemoveAxis,
    DY: RemoveAxis,
    SX: Data<Elem = X>,
    SY: Data<Elem = Y>,
{
    assert!(
        (0.0..=1.0).contains(&test_fraction),
        "train_test_split: test_fraction must be in [0, 1], got {test_fraction}"
    );
    assert!(
        x.ndim() >= 1 && y.ndim() >= 1 && x.len_of(Axis(0)) == y.len_of(Axis(0)),
        "train_test_split: x and y must have the same number of rows, got shapes {:?} and {:?}",
        x.shape(),
        y.shape()
    );
    let n = x.len_of(Axis(0));
    let n_test = ((n as f64) * test_fraction).ceil() as usize;
    let order = permutation(n, seed);
    let (test, train) = order.split_at(n_test.min(n));
    Split {
        x_train: x.select(Axis(0), train),
        y_train: y.select(Axis(0), train),
        x_test: x.select(Axis(0), test),
        y_test: y.select(Axis(0), test),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, Array3};
    use proptest::prelude::*;

    #[test]
    fn in_order_batches_keep_the_last_partial_batch() {
        let x = Array2::from_shape_fn((5, 2), |(i, j)| (10 * i + j) as f64);
        let y = Array1::from_iter(0..5usize);
        let batches: Vec<_> = Batches::new(&x, &y, 2).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[2].0, ndarray::arr2(&[[40.0, 41.0]]));
        assert_eq!(batches[1].1, ndarray::arr1(&[2, 3]));
        assert_eq!(Batches::new(&x, &y, 2).drop_last(true).len(), 2);
        assert_eq!(Batches::new(&x, &y, 5).drop_last(true).len(), 1);
        assert_eq!(Batches::new(&x, &y, 6).drop_last(true).count(), 0);
    }

    #[test]
    fn works_for_images_and_target_matrices() {
        let x = Array3::<f32>::zeros((7, 4, 4));
        let y = Array2::<f32>::zeros((7, 3));
        let mut it = Batches::new(&x, &y, 3).shuffled(1);
        let (xb, yb) = it.next().unwrap();
        assert_eq!((xb.shape(), yb.shape()), (&[3, 4, 4][..], &[3, 3][..]));
    }

    #[test]
    fn shuffling_is_seeded() {
        let x = Array1::from_iter(0..50u32);
        let a = Batches::new(&x, &x, 50).shuffled(9).order().to_vec();
        let b = Batches::new(&x, &x, 50).shuffled(9).order().to_vec();
        let c = Batches::new(&x, &x, 50).shuffled(10).order().to_vec();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    #[should_panic(expected = "same number of rows, got shapes [3, 2] and [4]")]
    fn mismatched_rows_panic() {
        let _ = Batches::new(&Array2::<f32>::zeros((3, 2)), &Array1::<usize>::zeros(4), 2);
    }

    #[test]
    fn split_is_disjoint_and_complete() {
        let x = Array2::from_shape_fn((20, 2), |(i, j)| (i * 2 + j) as i64);
        let y = Array1::from_iter(0..20usize);
        let s = train_test_split(&x, &y, 0.2, 3);
        assert_eq!((s.y_train.len(), s.y_test.len()), (16, 4));
        let mut all: Vec<usize> = s.y_train.iter().chain(&s.y_test).copied().collect();
        all.sort();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        // x rows stay with their labels.
        for (row, &label) in s.x_test.rows().into_iter().zip(&s.y_test) {
            assert_eq!(row[0], 2 * label as i64);
        }
        assert_eq!(s, train_test_split(&x, &y, 0.2, 3));
        assert_eq!(train_test_split(&x, &y, 0.0, 0).y_test.len(), 0);
        assert_eq!(train_test_split(&x, &y, 1.0, 0).y_train.len(), 0);
    }

    proptest! {
        #![proptest_config(crate::test_util::proptest_config())]

        #[test]
        fn shuffled_batches_cover_each_row_once(n in 0usize..200, bs in 1usize..40, seed: u64) {
            let x = Array2::from_shape_fn((n, 2), |(i, j)| i * 2 + j);
            let y = Array1::from_iter(0..n);
            let batches = Batches::new(&x, &y, bs).shuffled(seed);
            prop_assert_eq!(batches.len(), n.div_ceil(bs));
            let mut seen = vec![0u32; n];
            for (xb, yb) in batches {
                prop_assert!(yb.len() <= bs && !yb.is_empty());
                for (row, &i) in xb.rows().into_iter().zip(&yb) {
                    prop_assert_eq!(row[0], 2 * i);
                    seen[i] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1));
        }

        #[test]
        fn drop_last_yields_only_full_batches(n in 0usize..200, bs in 1usize..40, seed: u64) {
            let y = Array1::from_iter(0..n);
            let batches = Batches::new(&y, &y, bs).shuffled(seed).drop_last(true);
            prop_assert_eq!(batches.len(), n / bs);
            let mut count = 0;
            for (xb, _) in batches {
                prop_assert_eq!(xb.len(), bs);
                count += 1;
            }
            prop_assert_eq!(count, n / bs);
        }
    }
}
