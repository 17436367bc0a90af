//! Cross-crate scenarios a user meets: training a small network, a custom primitive inside
//! a model, reading a training tape, anomaly mode finding a NaN inside a model, and a
//! checkpoint round trip, all through the `retrograd` facade.

use std::str::FromStr;

use cotangent_list::one;
use ndarray::{Array2, ArrayD, array};
use retrograd::nn::layers::{Activation, Linear, mlp};
use retrograd::nn::optim::{Adam, Optimizer};
use retrograd::nn::{Module, ParamSpec, ParamStore, Params, Sequential, Session, checkpoint, loss};
use retrograd::prelude::*;
use retrograd::tape::arith::ScalarLhs;
use retrograd::tape::check::{CheckOptions, check_gradients};
use retrograd::tape::{Cotangents, NodeKind, TapeJson};

/// Cotangent lists without depending on `smallvec` directly: `Cotangents` is a SmallVec,
/// which implements `FromIterator`.
mod cotangent_list {
    use retrograd::prelude::*;
    use retrograd::tape::Cotangents;

    /// A one-entry cotangent list.
    pub fn one<'t, T: Float>(g: Option<Val<'t, T>>) -> Cotangents<'t, T> {
        std::iter::once(g).collect()
    }
}

/// Four points of XOR and their classes.
fn xor() -> (Array2<f64>, [usize; 4]) {
    (
        array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        [0, 1, 1, 0],
    )
}

/// Trains `model` on XOR with Adam for `steps` steps and returns the loss of every step.
fn train(model: &Sequential<f64>, store: &mut ParamStore<f64>, steps: usize) -> Vec<f64> {
    let (x, y) = xor();
    let mut opt = Adam::new(0.05);
    let mut session = Session::new(7);
    (0..steps)
        .map(|_| {
            let (l, grads) = session
                .train_step(store, |p| {
                    loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
                })
                .unwrap();
            opt.step(store, &grads).unwrap();
            l
        })
        .collect()
}

#[test]
fn an_mlp_learns_xor_and_training_is_deterministic() {
    let model = mlp::<f64>(&[2, 8, 2], Activation::Tanh);
    let mut store = model.init_store(3);
    let initial = store.clone();
    let losses = train(&model, &mut store, 60);
    // The loss falls well below chance (ln 2 ≈ 0.693) and the classes come out right.
    assert!(losses[0] > 0.5, "{losses:?}");
    assert!(losses[59] < 0.25 * losses[0], "{losses:?}");
    let (x, y) = xor();
    let logits = Session::new(0).eval(&store, |p| model.forward(p.input(x.clone()), p));
    let logits = logits.into_dimensionality::<ndarray::Ix2>().unwrap();
    assert_eq!(loss::argmax_rows(&logits), y.to_vec());
    // The same seeds give the same run, bit for bit.
    let mut again = initial;
    assert_eq!(train(&model, &mut again, 60), losses);
    assert!(again == store);
}

/// SiLU (`x σ(x)`) as a user-defined primitive. Its derivative
/// `σ(x) (1 + x (1 − σ(x)))` is written with differentiable ops on `Val`, so the second
/// derivative works through it.
struct Silu;

/// `dy/dx` of SiLU in differentiable ops.
fn silu_derivative<'t, T: Float>(x: &Val<'t, T>) -> Val<'t, T> {
    let s = x.sigmoid();
    let one_minus = s.rsub(T::one());
    &s * &((x * &one_minus) + T::one())
}

impl<T: Float> Rule<T> for Silu {
    fn name(&self) -> &'static str {
        "silu"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].map(|v| v / (T::one() + (-v).exp())))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        one(Some(g * &silu_derivative(cx.input(0))))
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| t * &silu_derivative(cx.input(0)))
    }
}

/// SiLU with the derivative computed from the input's *value* (a constant): right to first
/// order, but it cuts the second derivative. The kit's second-order check must catch it.
struct SiluByValue;

impl<T: Float> Rule<T> for SiluByValue {
    fn name(&self) -> &'static str {
        "silu_by_value"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Silu.forward(x)
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let d = silu_derivative(&Val::Const(cx.input(0).value()));
        one(Some(g * &Val::Const(d.value())))
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let d = Val::Const(silu_derivative(&Val::Const(cx.input(0).value())).value());
        t[0].as_ref().map(|t| t * &d)
    }
}

/// The custom primitive as a layer (no parameters).
struct SiluLayer {
    by_value: bool,
}

impl<T: Float + retrograd::nn::Scalar> Module<T> for SiluLayer {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    fn forward<'t>(&self, x: Var<'t, T>, _p: &Params<'t, T>) -> Var<'t, T> {
        if self.by_value {
            Var::apply(SiluByValue, &[&x])
        } else {
            Var::apply(Silu, &[&x])
        }
    }
}

fn silu_model(by_value: bool) -> Sequential<f64> {
    Sequential::new()
        .append(Linear::new(3, 4))
        .append(SiluLayer { by_value })
        .append(Linear::new(4, 2))
}

/// Checks `model`'s output with the kit as a function of its input and every parameter.
fn check_model(
    model: &Sequential<f64>,
    store: &ParamStore<f64>,
    x: &ArrayD<f64>,
) -> Result<retrograd::tape::check::CheckReport, retrograd::tape::check::CheckFailure> {
    let names: Vec<String> = store.names().map(str::to_owned).collect();
    let mut inputs = vec![x.clone()];
    inputs.extend(store.iter().map(|(_, v)| v.clone()));
    check_gradients(
        |v| {
            let mut p = Params::new(v[0].tape(), 0);
            for (name, var) in names.iter().zip(&v[1..]) {
                p = p.insert(name, *var);
            }
            model.forward(v[0], &p).tanh()
        },
        &inputs,
        &CheckOptions::default(),
    )
}

#[test]
fn a_custom_primitive_inside_a_model_passes_the_kit_to_second_order() {
    let model = silu_model(false);
    let store = model.init_store(11);
    let x = array![[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]].into_dyn();
    let report = check_model(&model, &store, &x).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.comparisons > 50, "{report:?}");

    // The same layer trained: the custom op's gradients drive the loss down.
    let (xs, ys) = xor();
    let model2 = Sequential::<f64>::new()
        .append(Linear::new(2, 8))
        .append(SiluLayer { by_value: false })
        .append(Linear::new(8, 2));
    let mut store2 = model2.init_store(5);
    let mut opt = Adam::new(0.05);
    let mut session = Session::new(0);
    let mut losses = Vec::new();
    for _ in 0..40 {
        let (l, g) = session
            .train_step(&store2, |p| {
                loss::cross_entropy(&model2.forward(p.input(xs.clone()), p), &ys)
            })
            .unwrap();
        assert!(g.contains("0.weight"), "the gradient crossed the custom op");
        opt.step(&mut store2, &g).unwrap();
        losses.push(l);
    }
    assert!(losses[39] < 0.5 * losses[0], "{losses:?}");
}

#[test]
fn a_custom_rule_that_cuts_the_second_derivative_is_caught() {
    let model = silu_model(true);
    let store = model.init_store(11);
    let x = array![[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]].into_dyn();
    let err = check_model(&model, &store, &x).unwrap_err();
    assert!(
        err.mismatch()
            .is_some_and(|m| m.check.contains("Hessian-vector product")),
        "{err}"
    );
    // First order it is right.
    let names: Vec<String> = store.names().map(str::to_owned).collect();
    let mut inputs = vec![x.clone()];
    inputs.extend(store.iter().map(|(_, v)| v.clone()));
    let first = check_gradients(
        |v| {
            let mut p = Params::new(v[0].tape(), 0);
            for (name, var) in names.iter().zip(&v[1..]) {
                p = p.insert(name, *var);
            }
            model.forward(v[0], &p).tanh()
        },
        &inputs,
        &CheckOptions::default().first_order_only(),
    );
    assert!(first.is_ok(), "{}", first.unwrap_err());
}

#[test]
fn a_training_tape_can_be_read_and_exported() {
    let model = mlp::<f64>(&[2, 3, 2], Activation::Tanh);
    let store = model.init_store(1);
    let (x, y) = xor();
    let tape = Tape::<f64>::new();
    tape.set_record_grad_norms(true);
    let p = Params::from_store(&tape, &store, true, 0);
    for (name, var) in p.iter() {
        tape.label(var, name);
    }
    let logits = model.forward(p.input(x), &p);
    let (loss, line) = (logits.cross_entropy(&y).named("loss"), line!());
    let grads = loss.backward().unwrap();
    assert!(grads.get(p.get("0.weight")).is_some());

    let here = format!("{}:{line}:", file!());
    let dump = tape.dump().to_string();
    let row = dump
        .lines()
        .find(|l| l.contains("cross_entropy"))
        .unwrap_or_else(|| panic!("no cross_entropy row:\n{dump}"));
    assert!(row.contains(&here), "the loss row names {here}:\n{dump}");
    assert!(row.contains("loss"), "{row}");
    // Every parameter is a leaf with its name, and got a gradient norm.
    let nodes = tape.nodes();
    for name in store.names() {
        let n = nodes
            .iter()
            .find(|n| n.label.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in\n{dump}"));
        assert_eq!(n.kind, NodeKind::Leaf);
        assert!(n.grad_norm.is_some_and(|g| g > 0.0), "{name}: {n:?}");
    }
    // The path to the loss holds the ops of the model.
    let path: Vec<String> = tape
        .dump()
        .path_to(loss)
        .nodes()
        .map(|n| n.op.clone())
        .collect();
    for op in ["matmul", "tanh", "cross_entropy"] {
        assert!(
            path.iter().any(|o| o == op),
            "{op} not on the path: {path:?}"
        );
    }

    // JSON round trip: the same nodes, locations and norms.
    let json = tape.to_json();
    let back = TapeJson::from_str(&json).unwrap();
    assert_eq!(back.nodes, nodes);
    assert_eq!(back.dtype, "f64");
    let loss_node = back
        .nodes
        .iter()
        .find(|n| n.label.as_deref() == Some("loss"))
        .unwrap();
    assert_eq!(loss_node.location.file, file!());
    assert_eq!(loss_node.location.line, line);
    // And DOT names the loss too.
    assert!(tape.dot().highlight(loss).to_string().contains("loss"));
}

/// A layer that takes the logarithm of its input: NaN for negative inputs.
struct LogLayer;

impl Module<f64> for LogLayer {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    fn forward<'t>(&self, x: Var<'t, f64>, _p: &Params<'t, f64>) -> Var<'t, f64> {
        x.ln()
    }
}

#[test]
fn anomaly_mode_finds_a_nan_made_inside_a_model() {
    // The line of the ln in LogLayer::forward above.
    let src = include_str!("end_to_end.rs");
    let log_line = src.lines().position(|l| l.trim() == "x.ln()").unwrap() as u32 + 1;

    let model = Sequential::<f64>::new()
        .append(Linear::new(2, 3))
        .append(LogLayer)
        .append(Linear::new(3, 1));
    let store = model.init_store(2);
    let (x, _) = xor();
    let tape = Tape::<f64>::new();
    tape.set_anomaly_mode(true);
    let p = Params::from_store(&tape, &store, true, 0);
    let out = model.forward(p.input(x.clone()), &p).sum_all();
    let err = out.backward().unwrap_err();
    match &err {
        Error::NonFinite {
            what, op, location, ..
        } => {
            assert_eq!((*what, *op), ("forward value", "ln"), "{err}");
            assert_eq!(location.file(), file!(), "{err}");
            assert_eq!(location.line(), log_line, "{err}");
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_eq!(tape.check_anomaly(), Err(err));

    // Without anomaly mode the sweep runs, and the NaN lands in the gradients, where
    // check_finite finds it.
    let tape = Tape::<f64>::new();
    let p = Params::from_store(&tape, &store, true, 0);
    let out = model.forward(p.input(x), &p).sum_all();
    assert!(out.item().is_nan());
    let grads = out.backward().unwrap();
    assert!(grads.check_finite().is_err());
}

#[test]
fn a_checkpoint_round_trips_through_the_facade() {
    let model = mlp::<f32>(&[3, 5, 2], Activation::Gelu);
    let mut store = model.init_store(9);
    // Train a little so the values are not just the initialiser's.
    let x = array![[0.1f32, -0.2, 0.3], [1.0, 0.5, -0.5]];
    let labels = [1, 0];
    let mut opt = Adam::new(0.01);
    let mut session = Session::new(0);
    for _ in 0..3 {
        let (_, g) = session
            .train_step(&store, |p| {
                loss::cross_entropy(&model.forward(p.input(x.clone()), p), &labels)
            })
            .unwrap();
        opt.step(&mut store, &g).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("retrograd-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(&store, &path).unwrap();

    // A fresh model of the same shape, loaded: the same parameters, the same outputs.
    let mut fresh = model.init_store(123);
    assert!(fresh != store);
    checkpoint::load(&mut fresh, &path).unwrap();
    assert!(fresh == store);
    let a = session.eval(&store, |p| model.forward(p.input(x.clone()), p));
    let b = session.eval(&fresh, |p| model.forward(p.input(x.clone()), p));
    assert_eq!(a, b);
    // load_new rebuilds the store in the saved order.
    let rebuilt = checkpoint::load_new::<f32>(&path).unwrap();
    assert_eq!(
        rebuilt.names().collect::<Vec<_>>(),
        store.names().collect::<Vec<_>>()
    );
    assert!(rebuilt == store);

    // Another architecture's store refuses the file and is left untouched.
    let other = mlp::<f32>(&[3, 4, 2], Activation::Gelu);
    let mut wrong = other.init_store(0);
    let before = wrong.clone();
    let err = checkpoint::load(&mut wrong, &path).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
    assert!(wrong == before);
    // And an f64 store refuses f32 data.
    let mut wide = mlp::<f64>(&[3, 5, 2], Activation::Gelu).init_store(0);
    assert!(checkpoint::load(&mut wide, &path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
