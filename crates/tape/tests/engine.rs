//! The engine's contract: recording, the reverse sweep's invariants, higher order through
//! the recorded sweep, and the errors a user can meet.

use ndarray::{ArrayD, Dimension, array};
use proptest::prelude::*;
use retrograd_tape::arith::{broadcast_to, sum_to};
use retrograd_tape::strategies::config;
use retrograd_tape::{Error, GradOptions, Operand, Tape, Var};

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("the closure should panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn second_derivative_of_a_cube_is_6x() {
    for x0 in [-2.0, -0.5, 0.0, 1.5, 3.0] {
        let tape = Tape::<f64>::new();
        let x = tape.var(x0);
        let y = x * x * x;
        let dy = tape.grad_graph(y, &[x]).unwrap()[0];
        assert!((dy.item() - 3.0 * x0 * x0).abs() < 1e-12);
        let d2y = tape.grad(dy, &[x]).unwrap();
        assert!((d2y[0].sum() - 6.0 * x0).abs() < 1e-12, "x = {x0}");
    }
}

#[test]
fn a_plain_backward_records_nothing_and_a_recorded_one_does() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0, 3.0]);
    let w = tape.var(array![0.5, -1.0, 2.0]);
    let y = sum_to(&(x * w / (x + 1.0) - w), &[]);
    let recorded = tape.len();
    let g = tape
        .grad_with(y, &[x, w], &GradOptions::new().retain_graph())
        .unwrap();
    assert_eq!(
        tape.len(),
        recorded,
        "a plain backward must not add nodes to the tape"
    );
    assert!(g.iter().all(|v| v.as_var().is_none()));
    let gg = tape.grad_graph(y, &[x, w]).unwrap();
    assert!(
        tape.len() > recorded,
        "create_graph records the sweep's ops"
    );
    assert_eq!(gg[0].array(), g[0].value().into_array());
}

#[test]
fn nothing_is_recorded_when_no_input_requires_a_gradient() {
    let tape = Tape::<f64>::new();
    let a = tape.constant(2.0);
    let b = tape.constant(3.0);
    let c = a * b + a;
    assert!(!c.requires_grad());
    let x = tape.var(1.0);
    let frozen = {
        let _g = tape.no_grad();
        assert!(!tape.is_recording());
        x * 4.0
    };
    assert!(tape.is_recording());
    assert!(!frozen.requires_grad());
    assert_eq!(frozen.item(), 4.0);
    // Gradients stop at no-grad results and at detach.
    let y = x * x + frozen * x + x.detach() * x;
    let g = tape.grad(y, &[x]).unwrap();
    assert_eq!(g[0].sum(), 2.0 + 4.0 + 1.0);
}

#[test]
fn broadcasting_cotangents_are_summed_to_the_input_shape() {
    let tape = Tape::<f64>::new();
    let a = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    let b = tape.var(array![10.0, 20.0, 30.0]);
    let c = tape.var(array![[2.0], [3.0]]);
    let y = sum_to(&((a + b) * c), &[]);
    let g = tape.grad(y, &[a, b, c]).unwrap();
    assert_eq!(g[0], array![[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]].into_dyn());
    assert_eq!(g[1], array![5.0, 5.0, 5.0].into_dyn());
    assert_eq!(g[2], array![[66.0], [75.0]].into_dyn());
}

#[test]
fn a_million_node_chain_runs_backward_without_recursion() {
    let n = 1_000_000;
    let tape = Tape::<f64>::with_capacity(n + 1);
    let x = tape.var(1.0);
    let mut y = x;
    for _ in 0..n {
        y = y * 1.000001;
    }
    let g = y.backward().unwrap();
    let expected = 1.000001f64.powi(n as i32);
    assert!((g[x].item() - expected).abs() < 1e-9 * expected);
}

#[test]
fn backward_twice_through_a_freed_graph_is_an_error_not_a_wrong_answer() {
    let tape = Tape::<f64>::new();
    let x = tape.var(3.0);
    let y = x * x;
    let first = y.backward().unwrap();
    assert_eq!(first[x].item(), 6.0);
    match y.backward() {
        Err(Error::GraphFreed { op, location }) => {
            assert_eq!(op, "mul");
            assert_eq!(location.file(), file!());
        }
        other => panic!("expected GraphFreed, got {:?}", other.map(|g| g.len())),
    }
    // With retain_graph the graph survives.
    let z = x * x * x;
    let opts = GradOptions::new().retain_graph();
    let g1 = z.backward_with(&opts).unwrap()[x].item();
    let g2 = z.backward_with(&opts).unwrap()[x].item();
    assert_eq!(g1, 27.0);
    assert_eq!(g1, g2);
}

#[test]
fn a_non_scalar_output_needs_a_seed() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let y = x * x;
    assert!(matches!(y.backward(), Err(Error::NonScalarOutput { .. })));
    let err = tape.vjp(y, array![1.0, 2.0, 3.0], &[x]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let g = tape.vjp(y, array![1.0, -1.0], &[x]).unwrap();
    assert_eq!(g[0], array![2.0, -4.0].into_dyn());
}

#[test]
fn gradients_for_values_off_the_path_say_why() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let unused = tape.var(array![1.0, 1.0]);
    let data = tape.constant(5.0);
    let y = x * data;
    // Off the path: zeros of the input's shape by default, an error when strict.
    let g = tape
        .grad_with(y, &[unused], &GradOptions::new().retain_graph())
        .unwrap();
    assert_eq!(
        g[0].value().into_array(),
        ArrayD::<f64>::zeros(ndarray::IxDyn(&[2]))
    );
    let err = tape
        .grad_with(y, &[unused], &GradOptions::new().retain_graph().strict())
        .unwrap_err();
    assert!(matches!(err, Error::NotOnPath { input: 0, .. }), "{err}");
    // A constant has no gradient at all, and the error says how to get one.
    let err = tape
        .grad_with(y, &[data], &GradOptions::new().retain_graph())
        .unwrap_err();
    assert!(err.to_string().contains("Tape::var"), "{err}");
}

#[test]
fn vars_of_two_tapes_do_not_mix() {
    let t1 = Tape::<f64>::new();
    let t2 = Tape::<f64>::new();
    let a = t1.var(1.0);
    let b = t2.var(2.0);
    let err = t1.grad(a * a, &[b]).unwrap_err();
    assert!(matches!(err, Error::ForeignVar { .. }), "{err}");
    let msg = panic_message(std::panic::AssertUnwindSafe(|| {
        let _ = a + b;
    }));
    assert!(
        msg.contains("add") && msg.contains("another tape") && msg.contains(file!()),
        "{msg}"
    );
}

#[test]
fn shape_errors_name_the_op_the_shapes_and_the_callers_line() {
    let tape = Tape::<f64>::new();
    let a = tape.var(ArrayD::zeros(ndarray::IxDyn(&[2, 3])));
    let b = tape.var(ArrayD::zeros(ndarray::IxDyn(&[4])));
    let line = line!() + 2;
    let msg = panic_message(std::panic::AssertUnwindSafe(|| {
        let _ = a * b;
    }));
    assert!(
        msg.contains("`mul`") && msg.contains("[2, 3]") && msg.contains("[4]"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{}:{line}", file!())), "{msg}");
    // The try_ form returns the same facts as a value.
    let err = Var::try_apply(retrograd_tape::arith::Mul, &[&a, &b]).unwrap_err();
    match err {
        Error::InvalidOp { op, shapes, .. } => {
            assert_eq!(op, "mul");
            assert_eq!(shapes.len(), 2);
        }
        other => panic!("expected InvalidOp, got {other}"),
    }
}

#[test]
fn f32_tapes_work_the_same() {
    let tape = Tape::<f32>::new();
    let x = tape.var(array![1.0f32, 2.0]);
    let y = sum_to(&(x * x * 0.5f32 + 1.0f32 / x), &[]);
    let g = tape.grad(y, &[x]).unwrap();
    assert_eq!(g[0], array![0.0f32, 1.75].into_dyn());
}

#[test]
fn a_cleared_tape_is_refilled_with_the_same_results() {
    let mut tape = Tape::<f64>::new();
    let mut results = Vec::new();
    for _ in 0..3 {
        {
            let x = tape.var(array![0.5, 1.5]);
            let y = sum_to(&(x * x * x), &[]);
            results.push(tape.grad(y, &[x]).unwrap().remove(0));
        }
        tape.clear();
        assert!(tape.is_empty());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn the_forward_sweep_matches_the_reverse_sweep_on_a_small_jacobian() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0, 3.0]);
    let s = tape.var(0.5);
    let y = x * s - s / x; // J_x = diag(s + s/x²), J_s = x - 1/x
    for i in 0..3 {
        let mut e = ArrayD::zeros(ndarray::IxDyn(&[3]));
        e[[i]] = 1.0;
        let col = tape
            .jvp(&[y], &[x, s], vec![e.clone().into(), 0.0.into()])
            .unwrap()
            .remove(0);
        let row = tape
            .grad_with(y, &[x], &GradOptions::new().retain_graph().seed(e))
            .unwrap();
        let xi = [1.0, 2.0, 3.0][i];
        assert!((col[[i]] - (0.5 + 0.5 / (xi * xi))).abs() < 1e-12);
        assert_eq!(col[[i]], row[0].value().into_array()[[i]]);
    }
    let ds = tape.jvp(&[y], &[s], vec![1.0.into()]).unwrap().remove(0);
    assert_eq!(ds, array![0.0, 1.5, 3.0 - 1.0 / 3.0].into_dyn());
}

/// A random polynomial: a sum of terms, each a product of distinct leaves.
fn polynomial(n: usize) -> impl Strategy<Value = (Vec<f64>, Vec<Vec<usize>>)> {
    (
        prop::collection::vec(-2.0..2.0f64, n),
        prop::collection::vec(
            prop::sample::subsequence((0..n).collect::<Vec<_>>(), 1..=n),
            1..6,
        ),
    )
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn gradients_of_sums_of_products_match_the_closed_form((xs, terms) in polynomial(5)) {
        let tape = Tape::<f64>::new();
        let vars: Vec<_> = xs.iter().map(|&x| tape.var(x)).collect();
        let mut f: Option<Var<f64>> = None;
        for term in &terms {
            let p = term.iter().skip(1).fold(vars[term[0]], |acc, &j| acc * vars[j]);
            f = Some(match f { None => p, Some(s) => s + p });
        }
        let f = f.unwrap();
        let g = f.backward().unwrap();
        for (i, &v) in vars.iter().enumerate() {
            let expected: f64 = terms
                .iter()
                .filter(|t| t.contains(&i))
                .map(|t| t.iter().filter(|&&j| j != i).map(|&j| xs[j]).product::<f64>())
                .sum();
            let got = g.get(v).map_or(0.0, |t| t.item());
            prop_assert!((got - expected).abs() < 1e-9 * (1.0 + expected.abs()), "x{i}: {got} vs {expected}");
        }
    }

    #[test]
    fn a_value_used_k_times_gets_k_times_the_cotangent(k in 1usize..20, x0 in -3.0..3.0f64, shape in retrograd_tape::strategies::shape(2, 3)) {
        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::from_elem(ndarray::IxDyn(&shape), x0));
        let seed = ArrayD::from_elem(ndarray::IxDyn(&shape), 0.75);
        let mut y = x;
        for _ in 1..k {
            y = y + x;
        }
        let g = tape.vjp(y, seed, &[x]).unwrap();
        prop_assert!(g[0].iter().all(|&v| (v - 0.75 * k as f64).abs() < 1e-12));
    }

    #[test]
    fn broadcast_and_sum_to_are_adjoint((small, big) in retrograd_tape::strategies::broadcast_shapes_pair(3, 3)
        .prop_filter("small broadcasts to big", |(a, b)| retrograd_tape::broadcast_shapes(a, b).as_deref() == Some(b.as_slice())),
        seed in 0u64..1000)
    {
        // <broadcast(u), v> == <u, sum_to(v)> for the engine's two shape adjoints.
        let tape = Tape::<f64>::new();
        let fill = |shape: &[usize], s: u64| ArrayD::from_shape_fn(ndarray::IxDyn(shape), |i| ((i.slice().iter().sum::<usize>() as u64 + s) % 7) as f64 - 3.0);
        let u = tape.var(fill(&small, seed));
        let v = tape.constant(fill(&big, seed + 1));
        let lhs = sum_to(&(broadcast_to(&u, &big) * v), &[]).item();
        let rhs = sum_to(&(u * sum_to(&v, &small)), &[]).item();
        prop_assert!((lhs - rhs).abs() < 1e-9);
        prop_assert_eq!(Operand::shape(&u).to_vec(), small);
    }
}

#[test]
fn the_forward_sweep_ignores_branches_that_do_not_reach_the_outputs() {
    // A branch freed by a backward sweep, unrelated to the output asked for, must neither
    // cost work nor fail the forward sweep.
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    tape.grad(x * x, &[x]).unwrap();
    let y = x * 3.0;
    let t = tape.jvp(&[y], &[x], vec![1.0.into()]).unwrap();
    assert_eq!(t[0].sum(), 3.0);
}

#[test]
fn a_tangent_count_that_does_not_match_the_inputs_is_an_error() {
    let tape = Tape::<f64>::new();
    let (a, b) = (tape.var(1.0), tape.var(2.0));
    let y = a * b;
    let err = tape.jvp(&[y], &[a, b], vec![1.0.into()]).unwrap_err();
    match err {
        Error::InvalidOp { op, location, .. } => {
            assert_eq!(op, "jvp");
            assert_eq!(location.file(), file!());
        }
        other => panic!("expected InvalidOp, got {other}"),
    }
}

/// A rule that remembers where the cotangent it hands back lives.
struct Marked {
    cotangent_at: std::rc::Rc<std::cell::Cell<usize>>,
}

impl retrograd_tape::Rule<f64> for Marked {
    fn name(&self) -> &'static str {
        "marked"
    }
    fn forward(
        &mut self,
        x: &[&retrograd_tape::Tensor<f64>],
    ) -> Result<retrograd_tape::Tensor<f64>, String> {
        Ok(x[0].clone())
    }
    fn vjp<'t>(
        &self,
        _: &retrograd_tape::RuleCtx<'t, f64>,
        g: &retrograd_tape::Val<'t, f64>,
    ) -> retrograd_tape::Cotangents<'t, f64> {
        let fresh = g.value().to_array();
        self.cotangent_at.set(fresh.as_ptr() as usize);
        retrograd_tape::Cotangents::one(retrograd_tape::Val::Const(fresh.into()))
    }
    fn jvp<'t>(
        &self,
        _: &retrograd_tape::RuleCtx<'t, f64>,
        t: &[Option<retrograd_tape::Val<'t, f64>>],
    ) -> Option<retrograd_tape::Val<'t, f64>> {
        t[0].clone()
    }
}

#[test]
fn grad_and_vjp_hand_over_a_gradient_without_copying_it() {
    let tape = Tape::<f64>::new();
    let x = tape.var(ndarray::Array1::<f64>::linspace(0.0, 1.0, 1000));
    let cotangent_at = std::rc::Rc::new(std::cell::Cell::new(0));
    let marked = Marked {
        cotangent_at: cotangent_at.clone(),
    };
    let y = Var::apply(marked, &[&x]);
    let g = tape
        .vjp(y, ndarray::Array1::<f64>::ones(1000), &[x])
        .unwrap();
    assert_eq!(g[0].as_ptr() as usize, cotangent_at.get());
    assert!(g[0].iter().all(|&v| v == 1.0));
}
