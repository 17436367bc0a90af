//! W1, the scalar chain (f64): 1000 leaves `p[j]`, `s = 0.1`, and 100,000 steps of
//! `s = tanh(s * p[i % 1000] + p[(7i + 3) % 1000])` (300,000 ops), then the gradient of
//! the final `s` with respect to all 1000 leaves.
//!
//! The baseline here is the hand-coded adjoint: a forward loop that stores what the reverse
//! needs (each intermediate `s`), and a reverse loop. Its storage is allocated once and
//! reused across runs, as a cleared and refilled tape would be. The engine's version
//! ([`run_engine`]: `w1.retrograd.*`, `w1.ratio`, `w1.bytes_per_node`) runs the same chain
//! on a tape, in the same process.

use crate::inputs::{
    W1_CHECK_GRAD_SUM, W1_CHECK_S, W1_LEAVES, W1_S0, W1_STEPS, w1_indices, w1_leaves,
};
use std::time::Instant;

use retrograd::ops::prelude::*;

use crate::alloc::{allocations, live_bytes};
use crate::report::Report;
use crate::timing::{black_box, median, median_ns};

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

    // Per-op cost against chain length, for the engine's flatness target.
    for &ops in flat_lengths(quick) {
        let steps = ops / 3;
        let mut h = HandAdjoint::new(steps);
        let t = median_ns(warmup, flat_reps(ops, reps), || {
            h.forward(black_box(steps));
            h.backward();
            black_box(h.grad[0])
        });
        report.push(
            format!("w1.hand.ops_{}.ns_per_op", ops_label(ops)),
            t / (3 * steps) as f64,
            "ns",
        );
    }
}

/// Chain lengths (in recorded ops, 3 per step) of the flatness measurement.
fn flat_lengths(quick: bool) -> &'static [usize] {
    if quick {
        &[999, 9_999]
    } else {
        &[999, 9_999, 99_999, 999_999]
    }
}

/// Fewer repetitions for the longest chains.
fn flat_reps(ops: usize, reps: usize) -> usize {
    if ops >= 900_000 { reps.min(7) } else { reps }
}

/// `1e3` for 999 ops and so on (the lengths are multiples of 3 just under a power of 10).
fn ops_label(ops: usize) -> String {
    format!("1e{}", ((ops + 1) as f64).log10().round() as i32)
}

/// W1 recorded on the engine: the 1000 leaves entered with `tape.var`, the chain with the
/// engine's `*` and `+` and retrograd-ops' `tanh`. Returns the leaves and the final `s`.
pub fn record<'t>(
    tape: &'t Tape<f64>,
    p: &[f64],
    steps: usize,
) -> (Vec<Var<'t, f64>>, Var<'t, f64>) {
    let leaves: Vec<Var<'t, f64>> = p.iter().map(|&v| tape.var(v)).collect();
    let n = leaves.len();
    let mut s = tape.constant(W1_S0);
    for i in 0..steps {
        let (a, c) = w1_indices(i, n);
        s = (s * leaves[a] + leaves[c]).tanh();
    }
    (leaves, s)
}

/// A profiling probe (`__child w1-probe [STEPS]`): two engine runs of W1 on one cleared
/// tape, with nothing else, for `valgrind --tool=callgrind` and `perf record`.
pub fn probe(report: &mut Report, steps: usize, runs: usize) {
    let p = w1_leaves(W1_LEAVES);
    let mut tape = Tape::<f64>::new();
    let (mut f, mut b) = (0.0, 0.0);
    for _ in 0..runs {
        let r = engine_once(&tape, &p, steps);
        tape.clear();
        f += r.0;
        b += r.1;
    }
    let ops = (3 * steps * runs) as f64;
    report.push("w1.probe.forward.ns_per_op", f / ops, "ns");
    report.push("w1.probe.backward.ns_per_op", b / ops, "ns");
}

/// One engine run on `tape` (which the caller clears between runs): nanoseconds of
/// record+forward and of backward, the final `s` and the sum of the 1000 gradients.
fn engine_once(tape: &Tape<f64>, p: &[f64], steps: usize) -> (f64, f64, f64, f64) {
    let start = Instant::now();
    let (leaves, s) = record(tape, p, black_box(steps));
    let recorded = Instant::now();
    let grads = s.backward().expect("W1 backward");
    let done = Instant::now();
    let sum: f64 = leaves
        .iter()
        .map(|&v| grads.get(v).map_or(0.0, |g| g.item()))
        .sum();
    (
        (recorded - start).as_secs_f64() * 1e9,
        (done - recorded).as_secs_f64() * 1e9,
        s.item(),
        sum,
    )
}

/// Runs W1 on the engine, beside the hand-coded adjoint [`run`] already pushed: checksums,
/// ns per op (record+forward, backward, total) on a cleared-and-refilled tape (what a
/// training loop does) and on a fresh tape per run, `w1.ratio` (total / hand total),
/// flatness from 10³ to 10⁶ ops, allocations per op, and `w1.bytes_per_node`.
pub fn run_engine(report: &mut Report, quick: bool) {
    let ops = (3 * W1_STEPS) as f64;
    let (warmup, reps) = if quick { (1, 3) } else { (3, 21) };
    let p = w1_leaves(W1_LEAVES);
    let mut tape = Tape::<f64>::new();

    let (_, _, s, sum) = engine_once(&tape, &p, W1_STEPS);
    tape.clear();
    report.push_exact("w1.retrograd.checksum_s", s, "-");
    report.push_exact("w1.retrograd.checksum_grad_sum", sum, "-");
    report.check_close("w1.retrograd.checksum_s", s, W1_CHECK_S, CHECK_TOL);
    report.check_close(
        "w1.retrograd.checksum_grad_sum",
        sum,
        W1_CHECK_GRAD_SUM,
        CHECK_TOL,
    );

    // A cleared tape, refilled each run.
    let (mut fwd, mut bwd, mut tot) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..warmup + reps {
        let (f, b, _, _) = engine_once(&tape, &p, W1_STEPS);
        tape.clear();
        if r >= warmup {
            fwd.push(f);
            bwd.push(b);
            tot.push(f + b);
        }
    }
    let total = median(&mut tot) / ops;
    report.push(
        "w1.retrograd.forward.ns_per_op",
        median(&mut fwd) / ops,
        "ns",
    );
    report.push(
        "w1.retrograd.backward.ns_per_op",
        median(&mut bwd) / ops,
        "ns",
    );
    report.push("w1.retrograd.ns_per_op", total, "ns");
    if let Some(hand) = report.value("w1.hand.ns_per_op") {
        report.push("w1.ratio", total / hand, "x");
    }

    // A new tape every run, as a loop that makes one per step does: it starts from the
    // arena the previous run's tape left on this thread.
    let fresh = median_ns(warmup.min(1), reps.min(7), || {
        let tape = Tape::<f64>::new();
        let (f, b, _, _) = engine_once(&tape, &p, W1_STEPS);
        f + b
    });
    report.push("w1.retrograd.fresh_tape.ns_per_op", fresh / ops, "ns");
    // The first tape on a thread: a new arena, first-touch page faults included.
    let cold = median_ns(0, reps.min(7), || {
        std::thread::scope(|s| {
            s.spawn(|| {
                let tape = Tape::<f64>::new();
                let (f, b, _, _) = engine_once(&tape, &p, W1_STEPS);
                f + b
            })
            .join()
            .expect("W1 on a new thread")
        })
    });
    report.push("w1.retrograd.cold_tape.ns_per_op", cold / ops, "ns");

    // Heap traffic: allocations per op on a cleared tape (record and backward), and the
    // heap bytes a tape sized for the chain holds per node once it is recorded.
    let before = allocations();
    {
        let (leaves, s) = record(&tape, &p, W1_STEPS);
        let mid = allocations();
        let grads = s.backward().expect("W1 backward");
        black_box((&leaves, &grads));
        report.push(
            "w1.retrograd.record.allocs_per_op",
            (mid - before) as f64 / ops,
            "-",
        );
        report.push(
            "w1.retrograd.backward.allocs_per_op",
            (allocations() - mid) as f64 / ops,
            "-",
        );
    }
    tape.clear();
    // On a new thread, so that the tape allocates its own arena instead of taking over
    // the one this thread's earlier tapes left.
    let nodes = W1_LEAVES + 1 + 3 * W1_STEPS;
    let held = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let base = live_bytes();
                let sized = Tape::<f64>::with_capacity(nodes);
                let (leaves, s) = record(&sized, &p, W1_STEPS);
                black_box(s);
                let vars = leaves.capacity() * std::mem::size_of::<Var<f64>>();
                live_bytes() - base - vars as isize
            })
            .join()
            .expect("W1 on a new thread")
    });
    report.push("w1.bytes_per_node", held as f64 / nodes as f64, "bytes");

    // Flatness: per-op cost of a cleared tape against chain length.
    let mut per_op = Vec::new();
    for &len in flat_lengths(quick) {
        let steps = len / 3;
        let mut tape = Tape::<f64>::new();
        let mut t = Vec::new();
        for r in 0..warmup + flat_reps(len, reps) {
            let (f, b, _, _) = engine_once(&tape, &p, steps);
            tape.clear();
            if r >= warmup {
                t.push(f + b);
            }
        }
        let ns = median(&mut t) / (3 * steps) as f64;
        per_op.push(ns);
        report.push(
            format!("w1.retrograd.ops_{}.ns_per_op", ops_label(len)),
            ns,
            "ns",
        );
    }
    if let (Some(first), Some(last)) = (per_op.first(), per_op.last()) {
        report.push("w1.retrograd.flatness", last / first, "x");
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
