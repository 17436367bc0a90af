//! Checkpointing across crates: a checkpointed block of the ops crate's primitives (matmul,
//! tanh, softmax, reductions) gives the plain tape's gradients, Hessian-vector products and
//! tangents; revolve's `TimeLoop` over a matmul recurrence gives the plain tape's gradients.

use ndarray::{Array2, ArrayD};
use proptest::prelude::*;
use retrograd::prelude::*;
use retrograd::tape::arith::sum_to;
use retrograd::tape::revolve::optimal_advances;

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())))
}

/// A layer-like block: `softmax(tanh(x·w) · w)`, summed against fixed weights.
fn block<'s>(v: &[Var<'s, f64>]) -> Var<'s, f64> {
    let h = v[0].matmul(&v[1]).tanh();
    h.matmul(&v[1]).softmax(1) * h
}

/// Gradient, Hessian-vector product (direction: all ones) and JVP of `Σ block(x, w)`.
fn derivatives(x: &Array2<f64>, w: &Array2<f64>, checkpointed: bool) -> Vec<ArrayD<f64>> {
    let tape = Tape::<f64>::new();
    let (xv, wv) = (tape.var(x.clone()), tape.var(w.clone()));
    let y = if checkpointed {
        checkpoint(block, &[xv, wv])
    } else {
        block(&[xv, wv])
    };
    let s = sum_to(&y, &[]);
    let g = tape.grad_graph(s, &[xv, wv]).unwrap();
    let gsum = sum_to(&g[0], &[]) + sum_to(&g[1], &[]);
    let h = tape
        .grad_with(gsum, &[xv, wv], &GradOptions::new().retain_graph())
        .unwrap();
    let ones = |a: &Array2<f64>| Tensor::from(Array2::<f64>::ones(a.raw_dim()));
    let t = tape.jvp(&[y], &[xv, wv], vec![ones(x), ones(w)]).unwrap();
    vec![
        g[0].array(),
        g[1].array(),
        h[0].value().into_array(),
        h[1].value().into_array(),
        t[0].clone(),
    ]
}

fn matrix(rows: usize, cols: usize, values: &[f64]) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| values[(i * cols + j) % values.len()])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6368_6b70),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_checkpointed_block_of_ops_has_the_plain_derivatives(
        values in proptest::collection::vec(-1.5f64..1.5, 1..24),
        rows in 1usize..4,
        width in 1usize..4,
    ) {
        let x = matrix(rows, width, &values);
        let w = matrix(width, width, &values[values.len() / 2..]);
        let plain = derivatives(&x, &w, false);
        let checked = derivatives(&x, &w, true);
        for (p, c) in plain.iter().zip(&checked) {
            prop_assert!(close(p, c), "{} vs {}", p, c);
        }
    }

    #[test]
    fn revolve_over_a_matmul_recurrence_has_the_plain_gradients(
        values in proptest::collection::vec(-1.0f64..1.0, 1..16),
        steps in 1usize..60,
        budget in 1usize..8,
    ) {
        let n = 4;
        let s0 = matrix(1, n, &values);
        let w = matrix(n, n, &values[values.len() / 2..]) * 0.9;
        let b = matrix(1, n, &[0.1, -0.2, 0.3]);
        let plain = {
            let tape = Tape::<f64>::new();
            let (sv, wv, bv) = (tape.var(s0.clone()), tape.var(w.clone()), tape.var(b.clone()));
            let mut s = sv;
            for _ in 0..steps {
                s = (s.matmul(&wv) + bv).tanh();
            }
            tape.grad(sum_to(&(s * s), &[]), &[sv, wv, bv]).unwrap()
        };
        let got = TimeLoop::new(steps)
            .snapshots(budget)
            .grad(
                &Tensor::from(s0),
                &[Tensor::from(w), Tensor::from(b)],
                |s, p| (s.matmul(&p[0]) + p[1]).tanh(),
                |_, s| sum_to(&(s * s), &[]),
            )
            .unwrap();
        prop_assert!(close(&got.initial.to_array(), &plain[0]));
        prop_assert!(close(&got.params[0].to_array(), &plain[1]));
        prop_assert!(close(&got.params[1].to_array(), &plain[2]));
        prop_assert_eq!(got.advances, optimal_advances(steps, budget));
    }
}
