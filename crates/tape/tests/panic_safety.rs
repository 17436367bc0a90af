//! A panic inside a sweep (a rule's, a hook's) must leave the tape as it was: usable, with
//! its rules and hooks in place, so that a caller who catches the panic can go on. And the
//! handles that outlive a borrow of their tape (hook handles) must never be confused
//! between tapes.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use retrograd_tape::check::{CheckFailure, CheckOptions, check_gradients};
use retrograd_tape::hooks::clip_norm;
use retrograd_tape::{
    Cotangents, Error, Float, GradOptions, JvpOptions, Rule, RuleCtx, Tape, Tensor, Val, Var,
};

/// `3x`, whose rules panic while `armed` is set.
struct Fragile {
    armed: Rc<Cell<bool>>,
}

impl Rule<f64> for Fragile {
    fn name(&self) -> &'static str {
        "fragile"
    }
    fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>, String> {
        Ok(x[0].map(|v| 3.0 * v))
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, f64>, g: &Val<'t, f64>) -> Cotangents<'t, f64> {
        assert!(!self.armed.get(), "fragile VJP");
        Cotangents::one(g * 3.0)
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, f64>, t: &[Option<Val<'t, f64>>]) -> Option<Val<'t, f64>> {
        assert!(!self.armed.get(), "fragile JVP");
        t[0].as_ref().map(|t| t * 3.0)
    }
}

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_panicking_vjp_leaves_its_rule_in_place_in_every_sweep() {
    let armed = Rc::new(Cell::new(true));
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let y = Var::apply(
        Fragile {
            armed: armed.clone(),
        },
        &[&x],
    ) * x;
    // Plain, recording and forward sweeps each panic once inside the rule ...
    let keep = GradOptions::new().retain_graph();
    let plain = catch_unwind(AssertUnwindSafe(|| y.backward_with(&keep).map(|_| ())));
    assert!(message(plain.unwrap_err()).contains("fragile VJP"));
    let recorded = catch_unwind(AssertUnwindSafe(|| tape.grad_graph(y, &[x]).map(|_| ())));
    assert!(message(recorded.unwrap_err()).contains("fragile VJP"));
    let forward = catch_unwind(AssertUnwindSafe(|| {
        tape.jvp(&[y], &[x], vec![1.0.into()]).map(|_| ())
    }));
    assert!(message(forward.unwrap_err()).contains("fragile JVP"));
    let tangent = vec![Val::Const(1.0.into())];
    let opts = JvpOptions::new().create_graph();
    let forward = catch_unwind(AssertUnwindSafe(|| {
        tape.jvp_with(&[y], &[x], tangent, &opts).map(|_| ())
    }));
    assert!(message(forward.unwrap_err()).contains("fragile JVP"));
    // ... and the graph is intact afterwards: y = 3x², dy/dx = 6x = 12.
    armed.set(false);
    let jv = tape.jvp(&[y], &[x], vec![1.0.into()]).unwrap();
    assert_eq!(jv[0].sum(), 12.0);
    let d = tape.grad_graph(y, &[x]).unwrap()[0];
    assert_eq!(d.item(), 12.0);
    assert_eq!(y.backward().unwrap()[x].item(), 12.0);
    // That last sweep did not keep the graph: a second one says so, correctly.
    assert!(matches!(
        y.backward().unwrap_err(),
        Error::GraphFreed { op: "mul", .. }
    ));

    // Without retain_graph, a sweep that panics half-way has freed the rules it ran, and
    // only those: the next sweep names the op it really cannot get through.
    armed.set(true);
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let f = Var::apply(
        Fragile {
            armed: armed.clone(),
        },
        &[&x],
    );
    let y = f * x;
    let plain = catch_unwind(AssertUnwindSafe(|| y.backward().map(|_| ())));
    assert!(message(plain.unwrap_err()).contains("fragile VJP"));
    armed.set(false);
    let err = y.backward().unwrap_err();
    assert!(matches!(err, Error::GraphFreed { op: "mul", .. }), "{err}");
    // The fragile node's own rule is still there.
    assert_eq!(tape.grad(f, &[x]).unwrap()[0].sum(), 3.0);
}

/// One input, two cotangents: a bug in the rule.
struct TooMany;

impl<T: Float> Rule<T> for TooMany {
    fn name(&self) -> &'static str {
        "too_many"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].clone())
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::two(g.clone(), g.clone())
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].clone()
    }
}

#[test]
fn a_rule_returning_the_wrong_count_is_named_every_time_not_reported_as_freed() {
    let tape = Tape::<f64>::new();
    let x = tape.var(1.0);
    let y = Var::apply(TooMany, &[&x]);
    for _ in 0..2 {
        let err = catch_unwind(AssertUnwindSafe(|| y.backward().map(|_| ()))).unwrap_err();
        let text = message(err);
        assert!(
            text.contains("`too_many`") && text.contains("returned 2 cotangents for 1 inputs"),
            "{text}"
        );
    }
}

#[test]
fn a_panicking_hook_keeps_every_hook_on_its_node() {
    let tape = Tape::<f64>::new();
    let w = tape.var(ndarray::array![3.0, 4.0]);
    w.register_hook(clip_norm(1.0));
    let armed = Rc::new(Cell::new(true));
    let a = armed.clone();
    w.observe_grad(move |_| assert!(!a.get(), "hook failed"));
    let loss = retrograd_tape::arith::sum_to(&(w * w * 0.5), &[]); // gradient w, norm 5
    let opts = GradOptions::new().retain_graph();
    let err = catch_unwind(AssertUnwindSafe(|| loss.backward_with(&opts).map(|_| ())));
    assert!(message(err.unwrap_err()).contains("hook failed"));
    armed.set(false);
    let g = loss.backward_with(&opts).unwrap().array(w);
    assert!(
        (g[0] - 0.6).abs() < 1e-12 && (g[1] - 0.8).abs() < 1e-12,
        "{g}"
    );
}

#[test]
fn hook_handles_follow_a_moved_tape_and_refuse_a_dropped_one() {
    let tape = Tape::<f64>::new();
    let handle = tape.var(1.0).register_hook(|_| None);
    let moved = Box::new(tape);
    assert!(moved.remove_hook(&handle));
    assert!(!moved.remove_hook(&handle));

    let stale = {
        let old = Tape::<f64>::new();
        old.var(1.0).register_hook(|_| None)
    };
    // A new tape, likely at the old one's address, with a hook on the same slot.
    let new = Tape::<f64>::new();
    new.var(1.0).register_hook(|_| None);
    let err = catch_unwind(AssertUnwindSafe(|| new.remove_hook(&stale))).unwrap_err();
    assert!(message(err).contains("belongs to another tape"));
}

#[test]
fn check_gradients_reports_a_failed_sweep_as_an_error() {
    // The function frees its own graph, so the kit's sweeps cannot run.
    let failure = check_gradients(
        |x| {
            let y = x[0] * x[0];
            let _ = y.backward();
            y
        },
        &[ndarray::array![1.0].into_dyn()],
        &CheckOptions::default(),
    )
    .unwrap_err();
    match &failure {
        CheckFailure::Sweep { stage, error } => {
            assert_eq!(*stage, "reverse sweep");
            assert!(matches!(error, Error::GraphFreed { .. }), "{error}");
        }
        other => panic!("expected a sweep failure, got {other}"),
    }
    assert!(failure.to_string().contains("reverse sweep failed"));
}

/// The line a panic of `f` reported, caught by a panic hook that listens to this thread
/// only (the other tests of this binary panic on purpose too, in parallel).
fn panic_line(f: impl FnOnce()) -> u32 {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let s = seen.clone();
    let me = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            *s.lock().unwrap() = info.location().map_or(0, |l| l.line());
        }
    }));
    let _ = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    *seen.lock().unwrap()
}

#[test]
fn item_and_gradient_indexing_name_the_callers_line_inside_closures() {
    let tape = Tape::<f64>::new();
    let v = tape.var(ndarray::array![1.0, 2.0]);
    let read = |x: Var<'_, f64>| x.item();
    let expected = line!() - 1;
    assert_eq!(
        panic_line(|| {
            let _ = read(v);
        }),
        expected
    );

    let x = tape.var(1.0);
    let unused = tape.var(2.0);
    let grads = (x * 3.0).backward().unwrap();
    let lookup = |w: Var<'_, f64>| grads[w].clone();
    let expected = line!() - 1;
    assert_eq!(panic_line(|| drop(lookup(unused))), expected);
}
