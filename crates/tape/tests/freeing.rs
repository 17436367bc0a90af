//! Values freed at their last use (`GradOptions::free_values`): what the sweep frees, what
//! it must keep, and what a user meets when reading a freed value.

use ndarray::array;
use retrograd_tape::arith::sum_to;
use retrograd_tape::{Error, GradOptions, Tape, Var};

fn free() -> GradOptions<f64> {
    GradOptions::new().free_values()
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("the closure should panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `loss = Σ ((x·w)·(x·w) − c)·w` with an array leaf `x`, a parameter `w` and a constant
/// `c`: every intermediate is read by a later rule.
fn program<'t>(tape: &'t Tape<f64>) -> (Var<'t, f64>, Var<'t, f64>, Vec<Var<'t, f64>>) {
    let x = tape.var(array![[1.0, -2.0], [0.5, 3.0]]);
    let w = tape.var(array![0.5, -1.5]);
    let c = tape.constant(array![[1.0, 1.0], [2.0, 2.0]]);
    let h = x * w;
    let q = h * h;
    let r = (q - c) * w;
    let loss = sum_to(&r, &[]);
    (x, w, vec![c, h, q, r, loss])
}

#[test]
fn freed_sweeps_give_the_kept_sweeps_gradients_and_free_only_intermediates() {
    let kept = Tape::<f64>::new();
    let (kx, kw, kv) = program(&kept);
    let expected = kept
        .grad_with(kv[4], &[kx, kw], &GradOptions::new().retain_graph())
        .unwrap();

    let tape = Tape::<f64>::new();
    let (x, w, v) = program(&tape);
    let got = tape.grad_with(v[4], &[x, w], &free()).unwrap();
    assert_eq!(got[0].value(), expected[0].value());
    assert_eq!(got[1].value(), expected[1].value());

    // Leaves, the constant and the output stay; h, q and r (recorded ops) are freed.
    let [c, h, q, r, loss] = [v[0], v[1], v[2], v[3], v[4]];
    assert_eq!(x.value(), kx.value());
    assert_eq!(c.value(), kv[0].value());
    assert_eq!(loss.item(), kv[4].item());
    for (freed, op) in [(h, "mul"), (q, "mul"), (r, "mul")] {
        match freed.try_value() {
            Err(Error::ValueFreed { op: o, node, .. }) => {
                assert_eq!((o, node), (op, tape.node_info(freed).id))
            }
            other => panic!("expected ValueFreed, got {other:?}"),
        }
        // The shape is still known, and the dump says the value is gone.
        assert_eq!(freed.shape().as_slice(), &[2, 2]);
        let info = tape.node_info(freed);
        assert!(info.value_freed && info.bytes == 0 && info.shape == [2, 2]);
    }
    let dump = tape.dump().to_string();
    assert!(dump.matches("freed").count() >= 3, "{dump}");
}

#[test]
fn reading_a_freed_value_says_so_and_names_the_op_and_line() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let line = line!() + 1;
    let h = x * x;
    sum_to(&h, &[]).backward_with(&free()).unwrap();
    let message = panic_message(std::panic::AssertUnwindSafe(|| {
        h.value();
    }));
    assert!(
        message.contains("the value of `mul`")
            && message.contains(&format!("{}:{line}:", file!()))
            && message.contains("free_values"),
        "{message}"
    );
    // A new op on it: the try_ path returns the error, the plain one panics with it.
    let err = Var::try_apply(retrograd_tape::arith::Neg, &[&h]).unwrap_err();
    assert!(matches!(err, Error::ValueFreed { op: "mul", .. }), "{err}");
    let message = panic_message(std::panic::AssertUnwindSafe(|| {
        let _ = h + 1.0;
    }));
    assert!(message.contains("was freed at its last use"), "{message}");
    assert_eq!(format!("{h}"), "<freed>");
    assert!(format!("{h:?}").contains("[2]"));
    // Ops on values that were not freed go on working.
    assert_eq!((x * 2.0).array(), array![2.0, 4.0].into_dyn());
}

#[test]
fn a_second_sweep_gets_the_graph_freed_error() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let h = x * x;
    let loss = sum_to(&(h * x), &[]);
    loss.backward_with(&free()).unwrap();
    assert!(matches!(loss.backward(), Err(Error::GraphFreed { .. })));
    assert!(matches!(
        tape.grad(loss, &[x]),
        Err(Error::GraphFreed { .. })
    ));
    // From a freed intermediate, too (its seed would need its freed value's shape).
    let seeded = GradOptions::new().seed(array![1.0, 1.0]);
    assert!(matches!(
        tape.grad_with(h, &[x], &seeded),
        Err(Error::GraphFreed { op: "mul", .. })
    ));
    // A hook registered afterwards does not change that.
    h.register_hook(|g| Some(g.clone()));
    assert!(matches!(
        tape.grad_with(h, &[x], &seeded),
        Err(Error::GraphFreed { .. })
    ));
}

#[test]
fn a_value_a_kept_rule_still_reads_is_not_freed() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let h = x * x;
    let a = sum_to(&(h * 3.0), &[]);
    // `b` reads `h` too, and is not on `a`'s path: its rule stays, and so does `h`.
    let b = sum_to(&(h * h), &[]);
    a.backward_with(&free()).unwrap();
    assert_eq!(h.value().to_array(), array![1.0, 4.0].into_dyn());
    // b's own rules run (they read h), then the sweep meets h's spent rule.
    assert!(matches!(
        b.backward_with(&free()),
        Err(Error::GraphFreed { op: "mul", .. })
    ));
    // With the graph kept by the first sweep, the second one goes all the way.
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let h = x * x;
    let a = sum_to(&(h * 3.0), &[]);
    let b = sum_to(&(h * h), &[]);
    a.backward_with(&free().retain_graph()).unwrap();
    let g = b.backward_with(&free()).unwrap();
    assert_eq!(g[x].to_array(), array![4.0, 32.0].into_dyn());
    // a's rules were kept, and the rule of `h * 3` reads h: h stays.
    assert_eq!(h.value().to_array(), array![1.0, 4.0].into_dyn());
}

#[test]
fn retain_graph_and_create_graph_keep_every_value() {
    for opts in [
        GradOptions::new().free_values().retain_graph(),
        GradOptions::new().free_values().create_graph(),
    ] {
        let tape = Tape::<f64>::new();
        let (x, w, v) = program(&tape);
        let first = tape.grad_with(v[4], &[x, w], &opts).unwrap();
        for var in &v {
            assert!(var.try_value().is_ok());
        }
        // The graph is whole: a second sweep gives the same gradient.
        let again = tape.grad(v[4], &[x, w]).unwrap();
        assert_eq!(first[0].value().to_array(), again[0]);
    }
    // Under create_graph the gradient can be differentiated again after a freeing sweep
    // of its own graph, which frees only what that second sweep ran through.
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let y = sum_to(&(x * x * x), &[]);
    let dx = tape.grad_graph(y, &[x]).unwrap()[0];
    let d2 = tape
        .grad_with(sum_to(&dx, &[]), &[x], &free())
        .unwrap()
        .remove(0);
    assert_eq!(d2.value().to_array(), array![6.0, 12.0].into_dyn());
}

#[test]
fn scalar_values_are_kept() {
    let tape = Tape::<f64>::new();
    let x = tape.var(3.0);
    let h = x * x;
    let y = h * x;
    let g = y.backward_with(&free()).unwrap();
    assert_eq!(g[x].item(), 27.0);
    assert_eq!((h.item(), y.item()), (9.0, 27.0));
}

#[test]
fn a_cleared_tape_forgets_what_was_freed() {
    let mut tape = Tape::<f64>::new();
    for _ in 0..3 {
        let x = tape.var(array![1.0, 2.0]);
        let h = x * x;
        assert!(
            h.try_value().is_ok(),
            "a value of this step, not a freed one"
        );
        sum_to(&h, &[]).backward_with(&free()).unwrap();
        assert!(h.try_value().is_err());
        tape.clear();
    }
}

#[test]
fn many_inputs_are_released_too() {
    // An op with more than two inputs keeps them in the graph's side list.
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let parts: Vec<Var<'_, f64>> = (1..=4).map(|k| x * f64::from(k)).collect();
    let refs: Vec<&Var<'_, f64>> = parts.iter().collect();
    let total = Var::apply(Sum4, &refs);
    let g = sum_to(&total, &[]).backward_with(&free()).unwrap();
    assert_eq!(g[x].to_array(), array![10.0, 10.0].into_dyn());
    assert!(parts.iter().all(|p| p.try_value().is_err()));
    assert!(total.try_value().is_err());
}

/// `a + b + c + d`, as one op of four inputs.
struct Sum4;
impl retrograd_tape::Rule<f64> for Sum4 {
    fn name(&self) -> &'static str {
        "sum4"
    }
    fn forward(
        &mut self,
        x: &[&retrograd_tape::Tensor<f64>],
    ) -> Result<retrograd_tape::Tensor<f64>, String> {
        let mut acc = x[0].clone();
        for t in &x[1..] {
            acc.add_assign(t);
        }
        Ok(acc)
    }
    fn vjp<'t>(
        &self,
        cx: &retrograd_tape::RuleCtx<'t, f64>,
        g: &retrograd_tape::Val<'t, f64>,
    ) -> retrograd_tape::Cotangents<'t, f64> {
        // Reads every input, as a rule may: they must all still be there.
        for i in 0..4 {
            assert_eq!(cx.input(i).value().len(), 2);
        }
        (0..4).map(|_| Some(g.clone())).collect()
    }
    fn jvp<'t>(
        &self,
        _cx: &retrograd_tape::RuleCtx<'t, f64>,
        t: &[Option<retrograd_tape::Val<'t, f64>>],
    ) -> Option<retrograd_tape::Val<'t, f64>> {
        t.iter().flatten().cloned().reduce(|a, b| a + b)
    }
}
