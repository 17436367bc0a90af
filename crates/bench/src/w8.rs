//! W8, compute for memory: checkpointing.
//!
//! - The recurrence: 10,000 steps of `s ← tanh(s·W + b)` (state of 256 f64, `W` 256×256),
//!   loss `Σ s_T²`, gradient with respect to `s_0`, `W` and `b`: on one plain tape, and
//!   with revolve's binomial checkpointing ([`TimeLoop`]) at 10 and 100 snapshots. The
//!   gradients are compared in this process (`grad_max_rel_err`, norm-wise); memory and
//!   time are measured in one child process per variant (`peak_bytes` is `VmHWM`,
//!   `heap_peak_bytes` the allocator's exact high-water mark above the set-up).
//! - The MLP: 8 blocks of `Linear(1024, 1024)` + ReLU, batch 256, f32, one training step
//!   through `Session::train_step`, plain and with `Sequential::checkpoint_every(2)` (each
//!   block a checkpoint) and `(4)`: memory in child processes, time interleaved here.

use ndarray::{Array2, ArrayD};
use retrograd::nn::layers::{Linear, Relu};
use retrograd::nn::{Module, ParamStore, Sequential, Session, loss};
use retrograd::prelude::*;
use retrograd::tape::arith::sum_to;
use retrograd::tape::revolve::optimal_advances;
use retrograd::tape::time_loop::{TimeLoop, TimeLoopGrad};

use crate::alloc;
use crate::inputs::{bias_f64, w1_leaves, weight_f64};
use crate::report::Report;
use crate::timing::{black_box, median, rss, time_ns};

/// The recurrence's size: (state width, steps, snapshot budgets).
fn rnn_size(quick: bool) -> (usize, usize, [usize; 2]) {
    if quick {
        (16, 200, [4, 20])
    } else {
        (256, 10_000, [10, 100])
    }
}

/// The recurrence's inputs: `s_0` (`[1, n]`), `W` and `b` (`[1, n]`).
struct Rnn {
    s0: Tensor<f64>,
    params: [Tensor<f64>; 2],
    steps: usize,
}

impl Rnn {
    fn new(quick: bool) -> Self {
        let (n, steps, _) = rnn_size(quick);
        let s0 = Array2::from_shape_vec((1, n), w1_leaves(n)).expect("n leaves");
        let b = bias_f64(1, n)
            .into_shape_with_order((1, n))
            .expect("n biases");
        Rnn {
            s0: Tensor::from_array(s0),
            params: [
                Tensor::from_array(weight_f64(1, n, n)),
                Tensor::from_array(b),
            ],
            steps,
        }
    }

    /// The loop on one plain tape: the loss and the gradients by `[s_0, W, b]`.
    fn plain(&self) -> (f64, Vec<ArrayD<f64>>) {
        let tape = Tape::<f64>::new();
        let s0 = tape.var(self.s0.clone());
        let ps: Vec<Var<'_, f64>> = self.params.iter().map(|p| tape.var(p.clone())).collect();
        let mut s = s0;
        for _ in 0..self.steps {
            s = rnn_step(s, &ps);
        }
        let l = rnn_loss(self.steps, s);
        let grads = tape.grad(l, &[s0, ps[0], ps[1]]).expect("a scalar loss");
        (l.item(), grads)
    }

    /// The loop with revolve at `snapshots` stored states.
    fn revolve(&self, snapshots: usize) -> TimeLoopGrad<f64> {
        TimeLoop::new(self.steps)
            .snapshots(snapshots)
            .grad(&self.s0, &self.params, rnn_step, rnn_loss)
            .expect("the recurrence keeps its shape and its loss is a scalar")
    }
}

fn rnn_step<'s>(s: Var<'s, f64>, p: &[Var<'s, f64>]) -> Var<'s, f64> {
    (s.matmul(&p[0]) + p[1]).tanh()
}

fn rnn_loss<'s>(_: usize, s: Var<'s, f64>) -> Var<'s, f64> {
    sum_to(&(s * s), &[])
}

/// `max |a − b| / max |b|`.
fn max_rel_err(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

/// The parent's part of W8: gradient agreement, the children, the MLP's time.
pub fn run(report: &mut Report, quick: bool, spawn: &mut dyn FnMut(&mut Report, &[&str])) {
    let rnn = Rnn::new(quick);
    let (plain_loss, plain) = rnn.plain();
    let (n, steps, budgets) = rnn_size(quick);
    for s in budgets {
        let got = rnn.revolve(s);
        let name = format!("w8.rnn.revolve_s{s}");
        let ours = [&got.initial, &got.params[0], &got.params[1]];
        let err = ours
            .iter()
            .zip(&plain)
            .map(|(g, p)| max_rel_err(&g.to_array(), p))
            .fold(0.0f64, f64::max);
        report.push(format!("{name}.grad_max_rel_err"), err, "-");
        report.push(format!("{name}.advances"), got.advances as f64, "steps");
        if err > 1e-12 {
            report.fail(format!("{name}: gradient off the plain tape's by {err:e}"));
        }
        report.check_close(&format!("{name}.loss"), got.loss, plain_loss, 1e-12);
        if got.advances != optimal_advances(steps, s) {
            report.fail(format!("{name}: advances are not revolve's optimum"));
        }
    }
    drop(plain);
    spawn(report, &["w8-rnn", "plain"]);
    for s in budgets {
        spawn(report, &["w8-rnn", &s.to_string()]);
    }
    let state_bytes = (n * 8) as f64;
    report.push("w8.rnn.state_bytes", state_bytes, "bytes");
    for s in budgets {
        let name = format!("w8.rnn.revolve_s{s}");
        let ratio = ratio(
            report,
            &format!("{name}.peak_bytes"),
            "w8.rnn.plain.peak_bytes",
        );
        if let Some(r) = ratio {
            report.push(format!("{name}.peak_vs_plain"), r, "x");
        }
        if let Some(h) = report.value(&format!("{name}.heap_peak_bytes")) {
            report.push(
                format!("{name}.heap_peak_states"),
                h / state_bytes,
                "states",
            );
        }
    }
    for k in ["plain", "k2", "k4"] {
        spawn(report, &["w8-mlp", k]);
    }
    for k in ["k2", "k4"] {
        for what in ["heap_peak_bytes", "activation_peak_bytes", "peak_bytes"] {
            let (a, b) = (format!("w8.mlp.{k}.{what}"), format!("w8.mlp.plain.{what}"));
            if let Some(r) = ratio(report, &a, &b) {
                report.push(format!("w8.mlp.{k}.{what}_vs_plain"), r, "x");
            }
        }
    }
    mlp_time(report, quick);
}

fn ratio(report: &Report, a: &str, b: &str) -> Option<f64> {
    Some(report.value(a)? / report.value(b)?)
}

/// A child process: `w8-rnn plain|S` or `w8-mlp plain|k2|k4`.
pub fn run_child(report: &mut Report, task: &[String], quick: bool) {
    let Some(start) = rss() else {
        report.push_raw("w8.skipped".into(), "no-/proc/self/status".into(), "-");
        return;
    };
    let arg = task.get(1).map(String::as_str).unwrap_or("");
    match task.first().map(String::as_str) {
        Some("w8-rnn") => rnn_child(report, arg, quick, start.current),
        Some("w8-mlp") => mlp_child(report, arg, quick, start.current),
        _ => report.fail(format!("w8: unknown child task {task:?}")),
    }
}

/// One recurrence variant's memory and time.
fn rnn_child(report: &mut Report, variant: &str, quick: bool, start_rss: u64) {
    let rnn = Rnn::new(quick);
    alloc::reset_peak();
    let before = alloc::live_bytes();
    let name = match variant.parse::<usize>() {
        Ok(s) => format!("w8.rnn.revolve_s{s}"),
        Err(_) => "w8.rnn.plain".to_string(),
    };
    let ns = time_ns(|| match variant.parse::<usize>() {
        Ok(s) => black_box(rnn.revolve(s).loss),
        Err(_) => black_box(rnn.plain().0),
    });
    let heap = alloc::peak_bytes() - before;
    let end = rss().map_or(start_rss, |r| r.peak);
    report.push(format!("{name}.ms"), ns / 1e6, "ms");
    report.push(format!("{name}.heap_peak_bytes"), heap as f64, "bytes");
    report.push(format!("{name}.start_rss_bytes"), start_rss as f64, "bytes");
    report.push(format!("{name}.peak_bytes"), end as f64, "bytes");
}

/// The MLP's size: (width, batch).
fn mlp_size(quick: bool) -> (usize, usize) {
    if quick { (64, 16) } else { (1024, 256) }
}

/// 8 blocks of Linear + ReLU, checkpointed every `k` layers (`0`: not at all).
fn mlp(width: usize, k: usize) -> Sequential<f32> {
    let mut model = Sequential::new();
    for _ in 0..8 {
        model = model.append(Linear::new(width, width)).append(Relu);
    }
    model.checkpoint_every(k)
}

/// One training step through the nn path; the loss.
fn mlp_step(
    session: &mut Session<f32>,
    model: &Sequential<f32>,
    store: &ParamStore<f32>,
    x: &Array2<f32>,
) -> f32 {
    let target = Array2::<f32>::zeros(x.raw_dim());
    let (l, grads) = session
        .train_step(store, |p| {
            let y = model.forward(p.input(x.clone()), p);
            loss::mse(&y, &p.input(target))
        })
        .expect("a scalar loss");
    black_box(grads);
    l
}

fn mlp_input(width: usize, batch: usize) -> Array2<f32> {
    Array2::from_shape_fn((batch, width), |(i, j)| {
        ((i * width + j) as f32 * 0.37).sin()
    })
}

/// One MLP variant's memory: a warm-up step, then the heap's high-water mark over a step
/// on a fresh session.
/// `activation_peak_bytes` is that peak less the parameters' copies on the tape and their
/// gradients (the same in every variant).
fn mlp_child(report: &mut Report, variant: &str, quick: bool, start_rss: u64) {
    let (width, batch) = mlp_size(quick);
    let k = variant.trim_start_matches('k').parse().unwrap_or(0);
    let model = mlp(width, k);
    let store = model.init_store(0);
    let x = mlp_input(width, batch);
    // The warm-up's session goes before the measurement: its tape would keep the step's
    // values until the next step clears it.
    black_box(mlp_step(&mut Session::new(0), &model, &store, &x));
    let mut session = Session::new(0);
    alloc::reset_peak();
    let before = alloc::live_bytes();
    black_box(mlp_step(&mut session, &model, &store, &x));
    let heap = (alloc::peak_bytes() - before) as f64;
    let params = (store.num_elements() * 4) as f64;
    let name = format!("w8.mlp.{variant}");
    report.push(format!("{name}.heap_peak_bytes"), heap, "bytes");
    report.push(
        format!("{name}.activation_peak_bytes"),
        heap - 2.0 * params,
        "bytes",
    );
    report.push(format!("{name}.start_rss_bytes"), start_rss as f64, "bytes");
    let end = rss().map_or(start_rss, |r| r.peak);
    report.push(format!("{name}.peak_bytes"), end as f64, "bytes");
}

/// The MLP's step time, plain and checkpointed, interleaved (medians).
fn mlp_time(report: &mut Report, quick: bool) {
    let (width, batch) = mlp_size(quick);
    let x = mlp_input(width, batch);
    let variants = [("plain", 0), ("k2", 2), ("k4", 4)];
    let models: Vec<Sequential<f32>> = variants.iter().map(|(_, k)| mlp(width, *k)).collect();
    let store = models[0].init_store(0);
    let mut session = Session::new(0);
    let reps = if quick { 3 } else { 7 };
    let mut samples = vec![Vec::new(); variants.len()];
    let mut losses = vec![0.0f32; variants.len()];
    for _ in 0..reps + 1 {
        for (i, model) in models.iter().enumerate() {
            let ns = time_ns(|| losses[i] = mlp_step(&mut session, model, &store, &x));
            samples[i].push(ns / 1e6);
        }
    }
    let plain = median(&mut samples[0][1..].to_vec());
    for (i, (name, _)) in variants.iter().enumerate() {
        let ms = median(&mut samples[i][1..].to_vec());
        report.push(format!("w8.mlp.{name}.ms"), ms, "ms");
        if i > 0 {
            report.push(format!("w8.mlp.{name}.time_vs_plain"), ms / plain, "x");
            let (a, b) = (f64::from(losses[i]), f64::from(losses[0]));
            report.check_close(&format!("w8.mlp.{name}.loss vs plain"), a, b, 1e-6);
        }
    }
}
