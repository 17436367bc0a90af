use std::cell::Cell;
use std::rc::Rc;

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

use super::*;
use crate::arith::sum_to;
use crate::{JvpOptions, Val};

/// The block under test: several ops, both inputs used twice, a division.
fn block<'s>(v: &[Var<'s, f64>]) -> Var<'s, f64> {
    let (x, w) = (v[0], v[1]);
    let h = x * w + x * 0.5;
    h * h / (w * w + 1.0) - x
}

fn array(values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap()
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())))
}

/// Gradient, second derivative (of the gradient's sum) and JVP of `sum(block(x, w))`,
/// with or without the checkpoint.
fn derivatives(xs: &[f64], ws: &[f64], checkpointed: bool) -> [ArrayD<f64>; 5] {
    let tape = Tape::<f64>::new();
    let (x, w) = (tape.var(array(xs)), tape.var(array(ws)));
    let y = if checkpointed {
        checkpoint(block, &[x, w])
    } else {
        block(&[x, w])
    };
    let s = sum_to(&y, &[]);
    let g = tape.grad_graph(s, &[x, w]).unwrap();
    let gs = sum_to(&(g[0] + g[1]), &[]);
    let h = tape
        .grad_with(gs, &[x, w], &GradOptions::new().retain_graph())
        .unwrap();
    let ones = Tensor::from_array(ArrayD::from_elem(IxDyn(&[xs.len()]), 1.0));
    let t = tape.jvp(&[y], &[x, w], vec![ones.clone(), ones]).unwrap();
    [
        g[0].array(),
        g[1].array(),
        h[0].value().into_array(),
        h[1].value().into_array(),
        t[0].clone(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x636b_7074),
        ..ProptestConfig::default()
    })]

    /// Gradients, gradients of gradients (create_graph through the block) and tangents
    /// equal the plain tape's.
    #[test]
    fn derivatives_equal_the_plain_tapes(
        pairs in proptest::collection::vec((-3.0f64..3.0, -3.0f64..3.0), 1..6)
    ) {
        let (xs, ws): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        let plain = derivatives(&xs, &ws, false);
        let checked = derivatives(&xs, &ws, true);
        for (p, c) in plain.iter().zip(&checked) {
            prop_assert!(close(p, c), "{p} vs {c}");
        }
    }
}

#[test]
fn the_tape_keeps_the_inputs_and_the_output_only() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array(&[1.0; 1000]));
    let w = tape.var(2.0);
    let y = checkpoint(|v| ((v[0] * v[1]) * v[0] + v[0]) * v[1], &[x, w]);
    assert_eq!(tape.len(), 3);
    assert_eq!(tape.summary().value_bytes, 2 * 8000 + 8);
    let g = sum_to(&y, &[]).backward().unwrap();
    assert!(close(&g[x].to_array(), &array(&[10.0; 1000])));
    assert_eq!(g[w].item(), 1000.0 * 5.0);
}

#[test]
fn without_retain_graph_a_second_sweep_is_an_error_and_with_it_not() {
    let tape = Tape::<f64>::new();
    let x = tape.var(1.5);
    let y = checkpoint(|v| v[0] * v[0], &[x]);
    let keep = GradOptions::new().retain_graph();
    let a = tape.grad_with(y, &[x], &keep).unwrap();
    let b = tape.grad_with(y, &[x], &keep).unwrap();
    assert_eq!(a[0].value().item(), b[0].value().item());
    y.backward().unwrap();
    assert!(matches!(y.backward(), Err(Error::GraphFreed { .. })));
}

#[test]
fn constant_inputs_get_no_cotangent_and_nested_checkpoints_work() {
    let tape = Tape::<f64>::new();
    let (x, c) = (tape.var(3.0), tape.constant(2.0));
    let y = checkpoint(
        |v| {
            let inner = checkpoint(|u| u[0] * u[0] * u[1], &[v[0], v[1]]);
            inner + v[0]
        },
        &[x, c],
    );
    let g = y.backward().unwrap();
    assert_eq!(g[x].item(), 2.0 * 3.0 * 2.0 + 1.0);
    assert!(g.get(c).is_none());
    let d2 = {
        let tape = Tape::<f64>::new();
        let x = tape.var(3.0);
        let y = checkpoint(|v| checkpoint(|u| u[0] * u[0] * u[0], &[v[0]]), &[x]);
        let dy = tape.grad_graph(y, &[x]).unwrap()[0];
        tape.grad(dy, &[x]).unwrap()[0].sum()
    };
    assert_eq!(d2, 6.0 * 3.0);
}

#[test]
fn hooks_see_the_whole_cotangent_once() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let calls = Rc::new(Cell::new(0));
    let seen = calls.clone();
    x.observe_grad(move |_| seen.set(seen.get() + 1));
    let y = checkpoint(|v| v[0] * v[0] * v[0], &[x]);
    // Doubling the output's cotangent doubles the input's gradient.
    y.register_hook(|g| Some(g.map(|v| 2.0 * v)));
    let z = y * 1.0;
    let dx = tape.grad_graph(z, &[x]).unwrap()[0];
    assert_eq!(dx.item(), 2.0 * 12.0);
    assert_eq!(calls.get(), 1);
    let g = z.backward().unwrap();
    assert_eq!(g[x].item(), 24.0);
    assert_eq!(calls.get(), 2);
}

#[test]
fn anomaly_mode_names_the_op_inside_the_block_and_its_line() {
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let x = tape.var(0.0);
    let line = line!() + 1;
    let y = checkpoint(|v| v[0] / v[0], &[x]);
    let err = y.backward().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`div`"), "{text}");
    assert!(text.contains(&format!("{}:{line}", file!())), "{text}");
    assert!(text.contains(&format!("%{}", y.key().pos())), "{text}");
}

#[test]
fn the_dump_shows_one_node_at_the_callers_line_and_expands_it() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let line = line!() + 1;
    let y = checkpoint(|v| (v[0] * v[0] + 1.0) * v[0], &[x]);
    let info = tape.node_info(y);
    assert_eq!(info.op, "checkpoint");
    assert_eq!(info.location.line, line);
    assert_eq!(
        info.attributes,
        vec![("nodes".to_string(), "3".to_string())]
    );
    assert!(tape.dump().to_string().contains("checkpoint(nodes=3)"));
    let inside = tape.checkpoint_dump(y).unwrap();
    assert_eq!(inside.len(), 4);
    assert_eq!(inside.op("mul").len(), 2);
    assert!(tape.checkpoint_dump(x).is_none());
}

#[test]
fn tangents_that_are_vars_record_through_the_block() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let y = checkpoint(|v| v[0] * v[0] * v[0], &[x]);
    let t = tape
        .jvp_with(
            &[y],
            &[x],
            vec![Val::Const(1.0.into())],
            &JvpOptions::new().create_graph(),
        )
        .unwrap();
    let t = t[0].as_var().unwrap();
    assert_eq!(t.item(), 12.0);
    assert_eq!(tape.grad(t, &[x]).unwrap()[0].sum(), 12.0);
}

#[test]
fn empty_inputs_are_an_error_and_a_changing_block_panics_with_its_line() {
    let tape = Tape::<f64>::new();
    let none: [Var<'_, f64>; 0] = [];
    assert!(matches!(
        try_checkpoint(|v: &[Var<'_, f64>]| v[0], &none),
        Err(Error::InvalidOp {
            op: "checkpoint",
            ..
        })
    ));
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let x = tape.var(array(&[1.0, 2.0]));
    let y = checkpoint(
        move |v| {
            r.set(r.get() + 1);
            if r.get() == 1 {
                v[0] * 2.0
            } else {
                sum_to(&v[0], &[])
            }
        },
        &[x],
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tape.vjp(y, array(&[1.0, 1.0]), &[x])
    }));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("checkpoint (recorded at"), "{message}");
    assert!(message.contains(file!()), "{message}");
}
