//! What recording the backward sweep costs: the same gradient by a plain sweep (which
//! computes on constants and records nothing) and by a `create_graph` sweep (which records
//! every op of every rule, so the gradient can be differentiated again), on a scalar chain
//! shaped like W1 and on a small matmul-bound MLP loss. This is the measurement behind the
//! engine's central design choice (docs/architecture.md): a plain backward must not pay
//! for recording it would throw away.

use ndarray::Array2;
use retrograd::ops::prelude::*;

use crate::report::Report;
use crate::timing::{black_box, median_ns};

/// Which function is differentiated.
#[derive(Clone, Copy)]
enum Workload {
    /// W1's chain, `steps` steps (3 ops each) over 1000 scalar leaves.
    ScalarChain { steps: usize },
    /// `cross_entropy(relu(x · W₁) · W₂)`, x of shape `[64, 256]`, W₁ `[256, 256]`, W₂ `[256, 10]`.
    Mlp,
}

/// Records the workload's loss on `tape`; returns it and the leaves to differentiate by.
fn record<'t>(tape: &'t Tape<f64>, w: Workload) -> (Var<'t, f64>, Vec<Var<'t, f64>>) {
    match w {
        Workload::ScalarChain { steps } => {
            let p: Vec<_> = (0..1000)
                .map(|j| tape.var(0.5 * ((j + 1) as f64).sin()))
                .collect();
            let mut s = tape.constant(0.1);
            for i in 0..steps {
                s = (s * p[i % 1000] + p[(7 * i + 3) % 1000]).tanh();
            }
            (s, p)
        }
        Workload::Mlp => {
            let x = tape.constant(Array2::from_shape_fn((64, 256), |(b, j)| {
                ((b * 256 + j) as f64).sin()
            }));
            let w1 = tape.var(Array2::from_shape_fn((256, 256), |(i, j)| {
                ((i + 7 * j) as f64).sin() / 16.0
            }));
            let w2 = tape.var(Array2::from_shape_fn((256, 10), |(i, j)| {
                ((3 * i + j) as f64).cos() / 16.0
            }));
            let labels: Vec<usize> = (0..64).map(|b| b % 10).collect();
            let loss = x.matmul(&w1).relu().matmul(&w2).cross_entropy(&labels);
            (loss, vec![w1, w2])
        }
    }
}

/// Median nanoseconds of one sweep (recording excluded) and the nodes it added.
fn sweep(w: Workload, create_graph: bool, reps: usize) -> (f64, usize) {
    let mut added = 0;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let tape = Tape::<f64>::new();
        let (loss, leaves) = record(&tape, w);
        let before = tape.len();
        samples.push(median_ns(0, 1, || {
            if create_graph {
                black_box(tape.grad_graph(loss, &leaves).map(|g| g.len()))
            } else {
                black_box(tape.grad(loss, &leaves).map(|g| g.len()))
            }
        }));
        added = tape.len() - before;
    }
    (crate::timing::median(&mut samples), added)
}

/// Runs both workloads and reports `recording.<name>.{plain_ms, create_graph_ms,
/// ratio, plain_nodes_added, create_graph_nodes_added}`.
pub fn run(report: &mut Report, quick: bool) {
    let reps = if quick { 1 } else { 9 };
    let steps = if quick { 300 } else { 10_000 };
    for (name, w) in [
        ("scalar_chain", Workload::ScalarChain { steps }),
        ("mlp", Workload::Mlp),
    ] {
        let (plain, plain_added) = sweep(w, false, reps);
        let (graph, graph_added) = sweep(w, true, reps);
        report.push(format!("recording.{name}.plain_ms"), plain / 1e6, "ms");
        report.push(
            format!("recording.{name}.create_graph_ms"),
            graph / 1e6,
            "ms",
        );
        report.push(format!("recording.{name}.ratio"), graph / plain, "x");
        report.push_exact(
            format!("recording.{name}.plain_nodes_added"),
            plain_added as f64,
            "nodes",
        );
        report.push_exact(
            format!("recording.{name}.create_graph_nodes_added"),
            graph_added as f64,
            "nodes",
        );
        if plain_added != 0 {
            report.fail(format!(
                "a plain backward of {name} added {plain_added} nodes"
            ));
        }
    }
}
