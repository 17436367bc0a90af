//! The closed-form inputs of the reference workloads, exactly as issue 7 states them, so
//! that every engine (and every hand-written baseline) computes the same numbers.
//!
//! Indices `i`, `j`, `b` are 0-based; the layer number `k` is 1-based. Every formula is
//! evaluated in f64 and then rounded to the element type (f32 `sin` of arguments near 10⁵
//! would lose most of its digits).

use ndarray::{Array1, Array2};

/// Layer `k`'s weight (shape `[out, in]`): `W_k[i, j] = sin(1 + 7k + i*in + j) / sqrt(in)`.
pub fn weight_f64(k: usize, out: usize, inp: usize) -> Array2<f64> {
    let scale = (inp as f64).sqrt();
    Array2::from_shape_fn((out, inp), |(i, j)| {
        (1.0 + (7 * k) as f64 + (i * inp + j) as f64).sin() / scale
    })
}

/// Layer `k`'s bias (length `out`): `b_k[i] = 0.1 * cos(k + i)`.
pub fn bias_f64(k: usize, out: usize) -> Array1<f64> {
    Array1::from_shape_fn(out, |i| 0.1 * ((k + i) as f64).cos())
}

/// [`weight_f64`] rounded to f32.
pub fn weight_f32(k: usize, out: usize, inp: usize) -> Array2<f32> {
    weight_f64(k, out, inp).mapv(|v| v as f32)
}

/// [`bias_f64`] rounded to f32.
pub fn bias_f32(k: usize, out: usize) -> Array1<f32> {
    bias_f64(k, out).mapv(|v| v as f32)
}

/// W1's 1000 scalar leaves: `p[j] = 0.5 * sin(j + 1)`.
pub fn w1_leaves(count: usize) -> Vec<f64> {
    (0..count).map(|j| 0.5 * ((j + 1) as f64).sin()).collect()
}

/// W1's starting value `s = 0.1`.
pub const W1_S0: f64 = 0.1;
/// W1's number of leaves.
pub const W1_LEAVES: usize = 1000;
/// W1's number of steps (3 ops each: mul, add, tanh; 300,000 ops).
pub const W1_STEPS: usize = 100_000;
/// W1's checksum: the final `s`.
pub const W1_CHECK_S: f64 = -0.48422417935793216;
/// W1's checksum: the sum of the 1000 gradients.
pub const W1_CHECK_GRAD_SUM: f64 = 0.9380658774691991;

/// W1's index pair for step `i`: `s = tanh(s * p[a] + p[c])` with
/// `a = i % 1000`, `c = (7i + 3) % 1000`.
#[inline(always)]
pub fn w1_indices(i: usize, leaves: usize) -> (usize, usize) {
    (i % leaves, (7 * i + 3) % leaves)
}

/// W2's layer widths: 784 -> 512 -> 512 -> 10.
pub const W2_DIMS: [usize; 4] = [784, 512, 512, 10];
/// W2's batch size.
pub const W2_BATCH: usize = 128;
/// W2's learning rate (plain SGD).
pub const W2_LR: f32 = 0.01;
/// W2's nominal work per step as the issue counts it (3 × the forward matmuls), in FLOP.
pub const W2_FLOP_PER_STEP: f64 = 513.5e6;

/// W2's input batch: `X[b, j] = sin(b*784 + j)` (shape `[batch, width]`, width 784).
pub fn w2_input(batch: usize, width: usize) -> Array2<f32> {
    Array2::from_shape_fn((batch, width), |(b, j)| {
        ((b * width + j) as f64).sin() as f32
    })
}

/// W2's labels: `b % 10` (with `classes` = 10).
pub fn w2_labels(batch: usize, classes: usize) -> Vec<usize> {
    (0..batch).map(|b| b % classes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_the_issue() {
        let w = weight_f64(2, 3, 4);
        assert_eq!(w[[1, 2]], (1.0f64 + 14.0 + 6.0).sin() / 2.0);
        assert_eq!(bias_f64(3, 5)[4], 0.1 * 7.0f64.cos());
        assert_eq!(w1_leaves(3)[2], 0.5 * 3.0f64.sin());
        assert_eq!(w2_input(2, 784)[[1, 5]], (789.0f64).sin() as f32);
        assert_eq!(w2_labels(12, 10)[11], 1);
    }
}
