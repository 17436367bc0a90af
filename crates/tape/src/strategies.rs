//! proptest strategies for tensors and shapes: the half of the gradient-checking kit that
//! generates inputs. Enabled by the `proptest` feature.
//!
//! ```
//! use proptest::prelude::*;
//! use retrograd_tape::check::{check_gradients, CheckOptions};
//! use retrograd_tape::strategies::{array_any, config};
//!
//! proptest! {
//!     #![proptest_config(config(8))]
//!     fn square_is_checked(x in array_any(2, 3, -2.0, 2.0)) {
//!         let r = check_gradients(|v| v[0] * v[0], &[x], &CheckOptions::default());
//!         prop_assert!(r.is_ok(), "{}", r.unwrap_err());
//!     }
//! }
//! # square_is_checked();
//! ```

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// A proptest configuration for this project's tests: `cases` cases, a fixed seed (runs
/// are repeatable, on any machine), and no failure-persistence files. `PROPTEST_CASES` and
/// `PROPTEST_RNG_SEED` (a number) override the count and the seed, to explore further
/// than CI does.
pub fn config(cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("PROPTEST_CASES").map_or(cases, |c| c as u32),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(0x7265_7472_6f67)),
        ..Config::default()
    }
}

/// Shapes of rank `0..=max_rank` with extents `1..=max_extent`.
pub fn shape(max_rank: usize, max_extent: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_extent.max(1), 0..=max_rank)
}

/// Arrays of the given shape with values uniform in `[lo, hi]`.
pub fn array(shape: Vec<usize>, lo: f64, hi: f64) -> impl Strategy<Value = ArrayD<f64>> {
    let n = shape.iter().product::<usize>();
    prop::collection::vec(lo..=hi, n).prop_map(move |data| {
        ArrayD::from_shape_vec(IxDyn(&shape), data).expect("the data has the shape's length")
    })
}

/// Arrays of the given shape with values in `[lo, hi]` at least `gap` away from each of
/// `points` (to keep a check away from a kink: `relu` at 0, `clamp` at its bounds).
pub fn array_avoiding(
    shape: Vec<usize>,
    lo: f64,
    hi: f64,
    points: Vec<f64>,
    gap: f64,
) -> impl Strategy<Value = ArrayD<f64>> {
    array(shape, lo, hi).prop_map(move |mut a| {
        for x in a.iter_mut() {
            for &p in &points {
                if (*x - p).abs() < gap {
                    *x = if *x >= p { p + gap } else { p - gap };
                }
            }
        }
        a
    })
}

/// Arrays of a random shape (rank `0..=max_rank`, extents `1..=max_extent`) with values
/// in `[lo, hi]`.
pub fn array_any(
    max_rank: usize,
    max_extent: usize,
    lo: f64,
    hi: f64,
) -> impl Strategy<Value = ArrayD<f64>> {
    shape(max_rank, max_extent).prop_flat_map(move |s| array(s, lo, hi))
}

/// Two shapes that broadcast together under numpy's rules: a common shape from which
/// each operand drops some leading axes and sets some extents to 1.
pub fn broadcast_shapes_pair(
    max_rank: usize,
    max_extent: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(max_rank, max_extent).prop_flat_map(|full| {
        let n = full.len();
        let operand = move |full: Vec<usize>| {
            (0..=n, prop::collection::vec(any::<bool>(), n)).prop_map(move |(drop, ones)| {
                full.iter()
                    .zip(&ones)
                    .skip(drop)
                    .map(|(&d, &one)| if one { 1 } else { d })
                    .collect::<Vec<_>>()
            })
        };
        (operand(full.clone()), operand(full))
    })
}

/// Shapes `(a, b)` that `matmul` accepts under numpy's rules: 1-D and 2-D operands, and
/// batched ones whose batch axes (up to `max_batch_rank`) broadcast.
pub fn matmul_shapes(
    max_batch_rank: usize,
    max_extent: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    let e = 1..=max_extent.max(1);
    (
        e.clone(),
        e.clone(),
        e,
        broadcast_shapes_pair(max_batch_rank, max_extent),
        0..4u8,
    )
        .prop_map(|(m, k, n, (ba, bb), kind)| match kind {
            0 => (vec![k], vec![k]),
            1 => (vec![k], vec![k, n]),
            2 => (vec![m, k], vec![k]),
            _ => {
                let mut a = ba;
                a.extend([m, k]);
                let mut b = bb;
                b.extend([k, n]);
                (a, b)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::broadcast_shapes;

    proptest! {
        #![proptest_config(config(64))]
        #[test]
        fn broadcast_pairs_broadcast((a, b) in broadcast_shapes_pair(3, 4)) {
            prop_assert!(broadcast_shapes(&a, &b).is_some(), "{a:?} {b:?}");
        }

        #[test]
        fn avoided_points_are_avoided(a in shape(2, 3).prop_flat_map(|s| array_avoiding(s, -1.0, 1.0, vec![0.0], 0.1))) {
            prop_assert!(a.iter().all(|x| x.abs() >= 0.1 - 1e-12));
        }
    }
}
