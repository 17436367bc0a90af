//! Accurate summation: the one way every reduction in retrograd adds numbers.
//!
//! Adding `n` numbers one after another into a single accumulator loses accuracy in
//! proportion to `n`: in `f32`, `2^25` ones sum to `2^24`, because once the running total
//! reaches `2^24` adding 1 rounds back to it. Every reduction here (sums, means, variances,
//! logsumexp, softmax's normaliser, the losses, the gradient of a broadcast) instead adds
//! in short runs and combines the runs pairwise, as numpy and PyTorch do, so the rounding
//! error grows with `log2(n)`:
//!
//! `|computed − exact| ≤ depth(n) · ε · Σ|xᵢ|` (to first order), with
//! `depth(n) = `[`error_depth`]`(n) ≈ log2(n) + 12` and `ε` the unit roundoff.
//!
//! Small inputs cost what a plain loop costs: below [`BLOCK`] elements the work is one
//! unrolled pass with eight independent accumulators, which the compiler vectorises.
//!
//! ```
//! use retrograd_tape::summation::sum_slice;
//! let ones = vec![1.0f32; 1 << 25];
//! assert_eq!(sum_slice(&ones), (1u32 << 25) as f32); // a serial loop gives 2^24
//! ```

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Zip};

use crate::Float;

/// Elements summed serially (in eight interleaved accumulators) before runs are combined
/// pairwise. numpy uses the same figure.
pub const BLOCK: usize = 128;

/// Independent accumulators within a block: enough for the compiler to vectorise and to
/// keep several vector additions in flight.
const LANES: usize = 16;

/// Up to this many elements are added in one serial pass: its error, at most `n − 1`
/// roundings, stays within [`error_depth`]'s bound, and it skips the block's set-up.
const SERIAL: usize = 16;

/// Rows of an outer (strided) reduction added serially before runs are combined pairwise.
const ROW_BLOCK: usize = 16;

/// The most additions any one element passes through when `n` elements are summed by this
/// module: the factor `depth(n)` of the error bound `depth(n) · ε · Σ|xᵢ|` in the
/// [module docs](self). Tests compare against it.
///
/// ```
/// use retrograd_tape::summation::error_depth;
/// assert_eq!(error_depth(100_000_000), 41); // a serial loop: 10^8
/// ```
pub fn error_depth(n: usize) -> usize {
    // Within a run: at most 16 terms added serially (a slice of up to SERIAL elements, or
    // ROW_BLOCK rows of an outer reduction); a full block has BLOCK / LANES = 8 terms per
    // accumulator and four levels combining them, fewer. Across runs, a binary tree over
    // the runs plus the adds that fold the counter's levels together: log2(n / ROW_BLOCK)
    // + 2 at most.
    let ceil_log2 = (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize;
    ceil_log2 + 14
}

/// One block (at most [`BLOCK`] elements) in [`LANES`] interleaved accumulators.
#[inline]
fn sum_block<T: Float>(xs: &[T]) -> T {
    if xs.len() <= SERIAL {
        return xs.iter().fold(T::zero(), |s, &x| s + x);
    }
    let mut acc = [T::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

/// Partial sums waiting to be combined pairwise: a binary counter over runs, where slot
/// `k` holds the sum of `2^k` runs. Pushing a run carries like binary addition, so every
/// combination adds two sums of (nearly) equal size. The first levels live inline, so
/// summing fewer than `2^8` runs allocates nothing.
struct Cascade<A> {
    levels: smallvec::SmallVec<[Option<A>; 8]>,
}

impl<A> Cascade<A> {
    fn new() -> Self {
        Cascade {
            levels: smallvec::SmallVec::new(),
        }
    }

    fn push(&mut self, mut carry: A, merge: &impl Fn(&mut A, A)) {
        for slot in &mut self.levels {
            match slot.take() {
                Some(earlier) => merge(&mut carry, earlier),
                None => {
                    *slot = Some(carry);
                    return;
                }
            }
        }
        self.levels.push(Some(carry));
    }

    /// Adds the waiting sums into `last`, smallest first.
    fn finish(self, mut last: A, merge: &impl Fn(&mut A, A)) -> A {
        for earlier in self.levels.into_iter().flatten() {
            merge(&mut last, earlier);
        }
        last
    }
}

fn add_scalar<T: Float>(a: &mut T, b: T) {
    *a += b;
}

/// The sum of a slice, accurate to `error_depth(n) · ε · Σ|xᵢ|`; see the [module docs](self).
///
/// ```
/// use retrograd_tape::summation::sum_slice;
/// assert_eq!(sum_slice(&[1.0, 2.0, 3.5]), 6.5);
/// assert_eq!(sum_slice::<f64>(&[]), 0.0);
/// ```
pub fn sum_slice<T: Float>(xs: &[T]) -> T {
    if xs.len() <= BLOCK {
        return sum_block(xs);
    }
    let mut cascade = Cascade::new();
    let mut blocks = xs.chunks_exact(BLOCK);
    for block in &mut blocks {
        cascade.push(sum_block(block), &add_scalar);
    }
    cascade.finish(sum_block(blocks.remainder()), &add_scalar)
}

/// The sum of any sequence of numbers (a strided lane, a mapped or zipped iterator) with the
/// accuracy of [`sum_slice`]: the values are buffered a block at a time.
///
/// ```
/// use retrograd_tape::summation::sum_iter;
/// let squares = (1..=4).map(|i| (i * i) as f64);
/// assert_eq!(sum_iter(squares), 30.0);
/// ```
pub fn sum_iter<T: Float>(values: impl IntoIterator<Item = T>) -> T {
    let mut buffer = [T::zero(); BLOCK];
    let mut filled = 0;
    let mut cascade = Cascade::new();
    for v in values {
        buffer[filled] = v;
        filled += 1;
        if filled == BLOCK {
            cascade.push(sum_block(&buffer), &add_scalar);
            filled = 0;
        }
    }
    cascade.finish(sum_block(&buffer[..filled]), &add_scalar)
}

/// The sum of every element of an array view, in whatever order its memory allows.
///
/// ```
/// use retrograd_tape::summation::sum_all;
/// let a = ndarray::array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
/// assert_eq!(sum_all(a.t().view()), 10.0);
/// ```
pub fn sum_all<T: Float>(view: ArrayViewD<'_, T>) -> T {
    if let Some(xs) = view.as_slice_memory_order() {
        return sum_slice(xs);
    }
    // Walk lanes along the fastest-varying axis: a 1-D strided walk per lane is far
    // cheaper than stepping a many-axis index for every element.
    if view.ndim() == 0 {
        return sum_iter(view.iter().copied());
    }
    let inner = innermost_axis(&view);
    sum_iter(
        view.lanes(Axis(inner))
            .into_iter()
            .flat_map(|lane| lane.into_iter().copied()),
    )
}

/// Sums `view` over one `axis`, keeping it as extent 1 (so the result broadcasts back).
///
/// When the axis is the one that varies fastest in memory, each lane is summed like a
/// slice; otherwise whole rows are added (vectorised across the lanes) in short runs that
/// are combined pairwise. Either way the bound of the [module docs](self) holds per output
/// element.
///
/// # Panics
/// When `axis` is not an axis of `view` (callers resolve axes first).
///
/// ```
/// use retrograd_tape::summation::sum_axis;
/// let a = ndarray::array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
/// assert_eq!(sum_axis(a.view(), 0), ndarray::array![[4.0, 6.0]].into_dyn());
/// assert_eq!(sum_axis(a.view(), 1), ndarray::array![[3.0], [7.0]].into_dyn());
/// ```
pub fn sum_axis<T: Float>(view: ArrayViewD<'_, T>, axis: usize) -> ArrayD<T> {
    let summed = if lanes_are_innermost(&view, axis) {
        Zip::from(view.lanes(Axis(axis))).map_collect(|lane| match lane.as_slice() {
            Some(xs) => sum_slice(xs),
            None => sum_iter(lane.iter().copied()),
        })
    } else {
        sum_rows(view, axis)
    };
    summed.insert_axis(Axis(axis))
}

/// Outputs narrower than this are summed lane by lane even across a strided axis: adding
/// whole rows costs a fixed overhead per row that only wide rows repay.
const NARROW: usize = 64;

/// Whether to sum over `axis` lane by lane: when walking a lane reads memory in order, or
/// when there are few lanes.
fn lanes_are_innermost<T>(view: &ArrayViewD<'_, T>, axis: usize) -> bool {
    let lanes: usize = (view.shape().iter().enumerate())
        .filter(|&(k, _)| k != axis)
        .map(|(_, &d)| d)
        .product();
    lanes < NARROW || innermost_axis(view) == axis
}

/// The axis with the smallest stride among those longer than 1 (0 when there is none).
fn innermost_axis<T>(view: &ArrayViewD<'_, T>) -> usize {
    (view.shape().iter().zip(view.strides()).enumerate())
        .filter(|&(_, (&d, _))| d > 1)
        .min_by_key(|&(_, (_, s))| s.unsigned_abs())
        .map_or(0, |(k, _)| k)
}

/// The outer reduction: rows (subviews across `axis`) added elementwise in runs of
/// `ROW_BLOCK`, the runs combined pairwise.
fn sum_rows<T: Float>(view: ArrayViewD<'_, T>, axis: usize) -> ArrayD<T> {
    let merge = |acc: &mut ArrayD<T>, earlier: ArrayD<T>| {
        acc.zip_mut_with(&earlier, |a, &b| *a += b);
    };
    let mut shape = view.shape().to_vec();
    shape.remove(axis);
    let out_shape = IxDyn(&shape);
    let mut cascade = Cascade::new();
    let mut run = ArrayD::zeros(out_shape.clone());
    for (i, row) in view.axis_iter(Axis(axis)).enumerate() {
        run.zip_mut_with(&row, |a, &b| *a += b);
        if (i + 1) % ROW_BLOCK == 0 {
            let full = std::mem::replace(&mut run, ArrayD::zeros(out_shape.clone()));
            cascade.push(full, &merge);
        }
    }
    cascade.finish(run, &merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;
    use proptest::prelude::*;

    /// A deterministic stream of values in `[0, 1)` (a 64-bit LCG), so that large inputs
    /// need no stored data.
    fn uniform(seed: u64) -> impl Iterator<Item = f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::iter::repeat_with(move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
    }

    fn within_bound(got: f32, exact: f64, abs_sum: f64, n: usize) -> bool {
        let bound = error_depth(n) as f64 * f32::EPSILON as f64 / 2.0 * abs_sum;
        (got as f64 - exact).abs() <= bound * 1.01 + f64::MIN_POSITIVE
    }

    #[test]
    fn ones_sum_exactly_past_f32_integer_precision() {
        let n = (1 << 25) + 3;
        let ones = vec![1.0f32; n];
        assert_eq!(sum_slice(&ones), n as f32);
        assert_eq!(sum_iter(ones.iter().copied()), n as f32);
        // A narrow strided reduction: a column broadcast across two lanes.
        let column = ArrayD::from_elem(IxDyn(&[n, 1]), 1.0f32);
        let wide = column.broadcast(IxDyn(&[n, 2])).unwrap();
        assert_eq!(sum_axis(wide, 0).into_raw_vec_and_offset().0, [n as f32; 2]);
    }

    #[test]
    fn mean_of_fifty_million_uniforms_is_accurate() {
        let n = 50_000_000;
        let got = sum_iter(uniform(7).take(n)) / n as f32;
        let exact: f64 = uniform(7).take(n).map(f64::from).sum::<f64>() / n as f64;
        assert!(
            ((got as f64 - exact) / exact).abs() < 1e-6,
            "{got} vs {exact}"
        );
    }

    /// Every path at every size, up to 10^8 elements, against an f64 reference. The large
    /// inputs are broadcast views of a stored row (no 400 MB allocation): the exact sum of a
    /// row repeated `k` times is `k` times the row's sum.
    #[test]
    fn broadcast_views_up_to_a_hundred_million_elements() {
        for &(rows, width) in &[(1usize, 3usize), (17, 129), (1000, 1000), (10_000, 10_000)] {
            let row = Array1::from_iter(uniform(rows as u64).take(width));
            let row_sum: f64 = row.iter().map(|&v| v as f64).sum();
            let n = rows * width;
            let flat = row.view().into_dyn();
            let across = flat.broadcast(IxDyn(&[rows, width])).unwrap();
            let exact = row_sum * rows as f64;
            assert!(within_bound(sum_all(across.view()), exact, exact, n));
            for axis in 0..2 {
                let reduced = sum_axis(across.view(), axis);
                let (count, expected) = if axis == 0 {
                    (rows, row.mapv(|v| v as f64 * rows as f64))
                } else {
                    (width, Array1::from_elem(rows, row_sum))
                };
                for (&got, &e) in reduced.iter().zip(expected.iter()) {
                    assert!(within_bound(got, e, e, count), "axis {axis}: {got} vs {e}");
                }
            }
            // The transposed layout takes the other path for each axis.
            let column = row.view().insert_axis(Axis(1)).into_dyn();
            let down = column.broadcast(IxDyn(&[width, rows])).unwrap();
            let reduced = sum_axis(down.view(), 1);
            for (&got, &v) in reduced.iter().zip(row.iter()) {
                let e = v as f64 * rows as f64;
                assert!(within_bound(got, e, e, rows), "{got} vs {e}");
            }
        }
    }

    proptest! {
        // Deterministic, as every test here (`strategies::config` is behind a feature).
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7375_6d73),
            ..ProptestConfig::default()
        })]

        /// The error bound of the module docs, for mixed signs, for every output element of
        /// every path: contiguous and transposed layouts, over either axis.
        #[test]
        fn error_within_bound(rows in 0usize..300, cols in 0usize..40, seed in any::<u64>()) {
            let values: Vec<f32> = uniform(seed).take(rows * cols).map(|v| v * 2.0 - 1.0).collect();
            let a = ArrayD::from_shape_vec(IxDyn(&[rows, cols]), values.clone()).unwrap();
            let wide = a.mapv(f64::from);
            let exact: f64 = values.iter().map(|&v| v as f64).sum();
            let abs_sum: f64 = values.iter().map(|&v| (v as f64).abs()).sum();
            let n = values.len();
            prop_assert!(within_bound(sum_slice(&values), exact, abs_sum, n));
            prop_assert!(within_bound(sum_iter(values.iter().copied()), exact, abs_sum, n));
            prop_assert!(within_bound(sum_all(a.t().view()), exact, abs_sum, n));
            for (view, reference) in [(a.view(), wide.view()), (a.t(), wide.t())] {
                for axis in 0..2 {
                    let got = sum_axis(view.clone(), axis);
                    let exact = reference.sum_axis(Axis(axis));
                    let abs = reference.mapv(f64::abs).sum_axis(Axis(axis));
                    let count = view.shape()[axis];
                    for ((&g, &e), &s) in got.iter().zip(exact.iter()).zip(abs.iter()) {
                        prop_assert!(within_bound(g, e, s, count), "{} vs {}", g, e);
                    }
                }
            }
        }
    }
}
