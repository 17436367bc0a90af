//! W1, the scalar chain (f64): 1000 leaves `p[j]`, `s = 0.1`, and 100,000 steps of
//! `s = tanh(s * p[i % 1000] + p[(7i + 3) % 1000])` (300,000 ops), then the gradient of
//! the final `s` with respect to all 1000 leaves.
//!
//! The baseline here is the hand-coded adjoint: a forward loop that stores what the reverse
//! needs (each intermediate `s`), and a reverse loop. Its storage is allocated once and
//! reused across runs, as a cleared and refilled tape would be. The engine's version
//! (`w1.retrograd.*`, `w1.ratio`, `w1.bytes_per_node`) goes beside [`run`].

use crate::inputs::{
    W1_CHECK_GRAD_SUM, W1_CHECK_S, W1_LEAVES, W1_S0, W1_STEPS, w1_indices, w1_leaves,
};
use crate::report::Report;
use crate::timing::{black_box, median_ns};

/// Relative tolerance of the W1 checksums.
pub const CHECK_TOL: f64 = 1e-9;

/// The hand-coded adjoint's state: the leaves, the stored forward values and the gradient.
pub struct HandAdjoint {
    /// The leaves `p`.
    pub p: Vec<f64>,
    /// `s_0 .. s_steps`: the chain's values, stored by the forward loop for the reverse.
    pub s: Vec<f64>,
    /// The gradient of the final `s` with respect to each leaf.
    pub grad: Vec<f64>,
}

impl HandAdjoint {
    /// State for a chain of `steps` steps over W1's 1000 leaves.
    pub fn new(steps: usize) -> Self {
        Self {
            p: w1_leaves(W1_LEAVES),
            s: Vec::with_capacity(steps + 1),
            grad: vec![0.0; W1_LEAVES],
        }
    }

    /// The forward loop: runs `steps` steps and stores every value; returns the final `s`.
    pub fn forward(&mut self, steps: usize) -> f64 {
        let p = &self.p;
        let n = p.len();
        self.s.clear();
        let mut s = W1_S0;
        self.s.push(s);
        for i in 0..steps {
            let (a, c) = w1_indices(i, n);
            s = (s * p[a] + p[c]).tanh();
            self.s.push(s);
        }
        s
    }

    /// The reverse loop over the values stored by [`forward`](Self::forward): fills
    /// `grad` with `d s_final / d p[j]`.
    pub fn backward(&mut self) {
        let p = &self.p;
        let n = p.len();
        let g = &mut self.grad;
        g.iter_mut().for_each(|v| *v = 0.0);
        let steps = self.s.len() - 1;
        let mut bar = 1.0; // d s_final / d s_{i+1}
        for i in (0..steps).rev() {
            let (a, c) = w1_indices(i, n);
            let t = self.s[i + 1];
            let u = bar * (1.0 - t * t); // through tanh
            g[a] += u * self.s[i]; // through the product s * p[a]
            g[c] += u; // through the sum
            bar = u * p[a];
        }
    }
}

/// Runs the hand-coded adjoint of W1, verifies both checksums (a miss is a failure: the
/// process exits non-zero), and pushes ns per op for forward, backward and total, plus the
/// per-op cost at several chain lengths (flatness).
pub fn run(report: &mut Report, quick: bool) {
    let ops = (3 * W1_STEPS) as f64;
    let (warmup, reps) = if quick { (1, 3) } else { (3, 21) };
    let mut h = HandAdjoint::new(W1_STEPS);

    let s = h.forward(W1_STEPS);
    h.backward();
    let grad_sum: f64 = h.grad.iter().sum();
    report.push_exact("w1.hand.checksum_s", s, "-");
    report.push_exact("w1.hand.checksum_grad_sum", grad_sum, "-");
    report.check_close("w1.hand.checksum_s", s, W1_CHECK_S, CHECK_TOL);
    report.check_close(
        "w1.hand.checksum_grad_sum",
        grad_sum,
        W1_CHECK_GRAD_SUM,
        CHECK_TOL,
    );

    let fwd = median_ns(warmup, reps, || h.forward(black_box(W1_STEPS)));
    let bwd = median_ns(warmup, reps, || {
        h.backward();
        black_box(h.grad[0])
    });
    let total = median_ns(warmup, reps, || {
        h.forward(black_box(W1_STEPS));
        h.backward();
        black_box(h.grad[0])
    });
    report.push("w1.hand.forward.ns_per_op", fwd / ops, "ns");
    report.push("w1.hand.backward.ns_per_op", bwd / ops, "ns");
    report.push("w1.hand.ns_per_op", total / ops, "ns");

    // Per-op cost against chain length (3 ops per step), for the engine's flatness target.
    let lengths: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    for &steps in lengths {
        let mut h = HandAdjoint::new(steps);
        let reps = if steps >= 1_000_000 {
            reps.min(7)
        } else {
            reps
        };
        let t = median_ns(warmup, reps, || {
            h.forward(black_box(steps));
            h.backward();
            black_box(h.grad[0])
        });
        report.push(
            format!("w1.hand.steps_{steps}.ns_per_op"),
            t / (3 * steps) as f64,
            "ns",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_adjoint_matches_issue_checksums() {
        let mut h = HandAdjoint::new(W1_STEPS);
        let s = h.forward(W1_STEPS);
        h.backward();
        let sum: f64 = h.grad.iter().sum();
        assert!(
            (s - W1_CHECK_S).abs() <= CHECK_TOL * W1_CHECK_S.abs(),
            "{s}"
        );
        assert!(
            (sum - W1_CHECK_GRAD_SUM).abs() <= CHECK_TOL * W1_CHECK_GRAD_SUM.abs(),
            "{sum}"
        );
    }

    #[test]
    fn hand_adjoint_matches_finite_differences() {
        let steps = 50;
        let mut h = HandAdjoint::new(steps);
        h.forward(steps);
        h.backward();
        for j in [0usize, 3, 10, 45] {
            let eps = 1e-6;
            let base = h.p[j];
            h.p[j] = base + eps;
            let up = h.forward(steps);
            h.p[j] = base - eps;
            let down = h.forward(steps);
            h.p[j] = base;
            let fd = (up - down) / (2.0 * eps);
            assert!(
                (fd - h.grad[j]).abs() < 1e-7,
                "leaf {j}: {fd} vs {}",
                h.grad[j]
            );
        }
    }
}
