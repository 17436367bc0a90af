//! W7: a LeNet-5-sized CNN training step, through the engine's nn path and by hand on the
//! same kernels.
//!
//! The network: conv 6@5x5, ReLU, 2x2 max pool, conv 16@5x5, ReLU, 2x2 max pool, then
//! 256-120-84-10 with ReLU; 28x28 single-channel inputs, batch 64, f32, plain SGD. The
//! engine's step is what a user writes: a `Sequential` of `retrograd::nn` layers, a
//! `Session` (reused tape) or `train_step` (fresh tape), cross-entropy, and `Sgd`. The
//! hand-written step computes the same forward and backward pass on plain arrays, with the
//! engine's convolution kernels (`retrograd::ops::conv::kernel`) and its GEMM seam, so the
//! ratio is what the tape, the graph and the generic layers cost on top of the arithmetic.
//!
//! Lines: `w7.hand.{ms,forward_ms}`, `w7.retrograd.{ms,fresh_tape_ms,forward_ms}`,
//! `w7.ratio`, `w7.ratio_fresh_tape`, `w7.{hand,retrograd}.forward_share`,
//! `w7.conv{1,2}.{forward,input_grad,weight_grad}.gflops` against `gemm.engine.gflops`,
//! and, from a child process, `w7.memory.{peak_bytes,rss_50_bytes,rss_1000_bytes,growth_bytes}`.

use ndarray::{Array2, ArrayD, Axis, Ix1, Ix2, IxDyn, Zip};
use retrograd::nn::conv::{Conv2d, Flatten, MaxPool2d};
use retrograd::nn::layers::{Linear, Relu};
use retrograd::nn::optim::{Optimizer, Sgd};
use retrograd::nn::{Module, ParamStore, Params, Sequential, Session, loss, train_step};
use retrograd::ops::conv::{ConvSpec, kernel};
use retrograd::ops::linalg::kernel::gemm;
use retrograd::tape::Tape;

use crate::report::Report;
use crate::timing::{black_box, median, median_ns, rss, time_ns};

/// Batch size.
const BATCH: usize = 64;
/// Image side.
const SIDE: usize = 28;
/// SGD learning rate.
const LR: f32 = 0.01;
/// The convolutions' settings (no padding, stride 1).
const SPEC: ConvSpec = ConvSpec {
    stride: [1, 1],
    padding: retrograd::ops::conv::Padding::Explicit([(0, 0); 2]),
    dilation: [1, 1],
    groups: 1,
    output_padding: [0, 0],
};

/// The LeNet-5-sized model, in `retrograd::nn` layers.
pub fn model() -> Sequential<f32> {
    Sequential::new()
        .append(Conv2d::new(1, 6, 5))
        .append(Relu)
        .append(MaxPool2d::new(2))
        .append(Conv2d::new(6, 16, 5))
        .append(Relu)
        .append(MaxPool2d::new(2))
        .append(Flatten)
        .append(Linear::new(16 * 4 * 4, 120))
        .append(Relu)
        .append(Linear::new(120, 84))
        .append(Relu)
        .append(Linear::new(84, 10))
}

/// The input batch `x[b, 0, i, j] = sin(b·784 + i·28 + j)` and labels `b % 10`.
pub fn data(batch: usize) -> (ArrayD<f32>, Vec<usize>) {
    let x = ArrayD::from_shape_fn(IxDyn(&[batch, 1, SIDE, SIDE]), |i| {
        ((i[0] * SIDE * SIDE + i[2] * SIDE + i[3]) as f64).sin() as f32
    });
    (x, (0..batch).map(|b| b % 10).collect())
}

/// Names of the parameters in the model's order: conv1, conv2, fc1, fc2, fc3.
const LAYERS: [&str; 5] = ["0", "3", "7", "9", "11"];

fn param<'a>(store: &'a ParamStore<f32>, layer: &str, what: &str) -> &'a ArrayD<f32> {
    store
        .get(&format!("{layer}.{what}"))
        .expect("the store was made by model()")
}

/// `relu(conv(x, w) + b)`.
fn conv_relu(x: &ArrayD<f32>, w: &ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
    let mut y = kernel::conv2d(x.view(), w.view(), SPEC).expect("LeNet shapes fit");
    for (mut plane, &bias) in y.axis_iter_mut(Axis(1)).zip(b.iter()) {
        plane.mapv_inplace(|v| (v + bias).max(0.0));
    }
    y
}

/// 2x2 max pooling: the output and, per output, the flat index of its maximum in `x`.
fn pool(x: &ArrayD<f32>) -> (ArrayD<f32>, Vec<usize>) {
    let s = x.shape();
    let (planes, h, w) = (s[0] * s[1], s[2], s[3]);
    let data = x.as_slice().expect("a fresh array");
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(planes * oh * ow);
    let mut idx = Vec::with_capacity(planes * oh * ow);
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                let base = p * h * w + 2 * i * w + 2 * j;
                let mut best = base;
                for at in [base + 1, base + w, base + w + 1] {
                    if data[at] > data[best] {
                        best = at;
                    }
                }
                out.push(data[best]);
                idx.push(best);
            }
        }
    }
    let shape = [s[0], s[1], oh, ow];
    (
        ArrayD::from_shape_vec(IxDyn(&shape), out).expect("sizes"),
        idx,
    )
}

/// `x · Wᵀ + b`, optionally through ReLU.
fn linear(x: &Array2<f32>, w: &ArrayD<f32>, b: &ArrayD<f32>, relu: bool) -> Array2<f32> {
    let w = w.view().into_dimensionality::<Ix2>().expect("a matrix");
    let b = b.view().into_dimensionality::<Ix1>().expect("a vector");
    let mut y = Array2::zeros((x.nrows(), w.nrows()));
    gemm(1.0, x.view(), w.t(), 0.0, y.view_mut());
    for mut row in y.rows_mut() {
        Zip::from(&mut row).and(&b).for_each(|v, &b| {
            *v += b;
            if relu {
                *v = v.max(0.0);
            }
        });
    }
    y
}

/// The activations a backward pass needs.
struct Forward {
    a1: ArrayD<f32>,
    p1: ArrayD<f32>,
    i1: Vec<usize>,
    a2: ArrayD<f32>,
    p2: ArrayD<f32>,
    i2: Vec<usize>,
    h: [Array2<f32>; 3],
    probs: Array2<f32>,
    loss: f32,
}

/// The hand-written forward pass, cross-entropy included.
fn hand_forward(store: &ParamStore<f32>, x: &ArrayD<f32>, labels: &[usize]) -> Forward {
    let p = |l: usize, what| param(store, LAYERS[l], what);
    let a1 = conv_relu(x, p(0, "weight"), p(0, "bias"));
    let (p1, i1) = pool(&a1);
    let a2 = conv_relu(&p1, p(1, "weight"), p(1, "bias"));
    let (p2, i2) = pool(&a2);
    let n = x.shape()[0];
    let flat = p2
        .view()
        .into_shape_with_order((n, 256))
        .expect("256 features");
    let h0 = flat.to_owned();
    let h1 = linear(&h0, p(2, "weight"), p(2, "bias"), true);
    let h2 = linear(&h1, p(3, "weight"), p(3, "bias"), true);
    let mut probs = linear(&h2, p(4, "weight"), p(4, "bias"), false);
    let mut loss = 0.0;
    for (mut row, &label) in probs.rows_mut().into_iter().zip(labels) {
        let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let sum = row.sum();
        loss += sum.ln() - row[label].ln();
        row.mapv_inplace(|v| v / sum);
    }
    Forward {
        a1,
        p1,
        i1,
        a2,
        p2,
        i2,
        h: [h0, h1, h2],
        probs,
        loss: loss / n as f32,
    }
}

/// Through a linear layer backwards: updates its parameters with SGD and returns the
/// input's gradient (masked by the input's ReLU when `relu_input`).
fn linear_back(
    store: &mut ParamStore<f32>,
    layer: &str,
    x: &Array2<f32>,
    dy: &Array2<f32>,
    relu_input: bool,
) -> Array2<f32> {
    let w = param(store, layer, "weight")
        .view()
        .into_dimensionality::<Ix2>()
        .expect("matrix");
    let mut dx = Array2::zeros((dy.nrows(), w.ncols()));
    gemm(1.0, dy.view(), w, 0.0, dx.view_mut());
    if relu_input {
        Zip::from(&mut dx).and(x).for_each(|d, &v| {
            if v <= 0.0 {
                *d = 0.0
            }
        });
    }
    let mut dw = Array2::zeros((dy.ncols(), x.ncols()));
    gemm(1.0, dy.t(), x.view(), 0.0, dw.view_mut());
    let db = dy.sum_axis(Axis(0));
    sgd(store, layer, "weight", &dw.into_dyn());
    sgd(store, layer, "bias", &db.into_dyn());
    dx
}

fn sgd(store: &mut ParamStore<f32>, layer: &str, what: &str, g: &ArrayD<f32>) {
    let p = store
        .get_mut(&format!("{layer}.{what}"))
        .expect("the store was made by model()");
    p.scaled_add(-LR, g);
}

/// Through `pool(relu(conv(x)))` backwards from the pooled output's gradient: updates the
/// convolution's parameters and returns the gradient of `x` when asked.
fn conv_back(
    store: &mut ParamStore<f32>,
    layer: &str,
    (x, a, idx): (&ArrayD<f32>, &ArrayD<f32>, &[usize]),
    dp: &[f32],
    want_dx: bool,
) -> Option<ArrayD<f32>> {
    let mut da = ArrayD::<f32>::zeros(a.raw_dim());
    let slot = da.as_slice_mut().expect("fresh");
    for (&at, &g) in idx.iter().zip(dp) {
        slot[at] += g;
    }
    // The ReLU: a pooled maximum of 0 passes no gradient.
    Zip::from(&mut da).and(a).for_each(|d, &v| {
        if v <= 0.0 {
            *d = 0.0
        }
    });
    let w_shape = param(store, layer, "weight").shape().to_vec();
    let dx = want_dx.then(|| {
        kernel::conv2d_input_grad(
            da.view(),
            param(store, layer, "weight").view(),
            x.shape(),
            SPEC,
        )
        .expect("LeNet shapes fit")
    });
    let dw = kernel::conv2d_weight_grad(x.view(), da.view(), &w_shape, SPEC).expect("fit");
    let db = da.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0));
    sgd(store, layer, "weight", &dw);
    sgd(store, layer, "bias", &db);
    dx
}

/// One hand-written SGD step; returns the loss before the update.
pub fn hand_step(store: &mut ParamStore<f32>, x: &ArrayD<f32>, labels: &[usize]) -> f32 {
    let f = hand_forward(store, x, labels);
    let n = labels.len();
    let mut dz = f.probs;
    for (mut row, &label) in dz.rows_mut().into_iter().zip(labels) {
        row[label] -= 1.0;
        row.mapv_inplace(|v| v / n as f32);
    }
    let [h0, h1, h2] = &f.h;
    let d2 = linear_back(store, LAYERS[4], h2, &dz, true);
    let d1 = linear_back(store, LAYERS[3], h1, &d2, true);
    let d0 = linear_back(store, LAYERS[2], h0, &d1, false);
    let dp2 = d0.as_slice().expect("fresh");
    let dp1 = conv_back(store, LAYERS[1], (&f.p1, &f.a2, &f.i2), dp2, true).expect("asked for");
    let dp1 = dp1.as_slice().expect("fresh");
    conv_back(store, LAYERS[0], (x, &f.a1, &f.i1), dp1, false);
    black_box(&f.p2);
    f.loss
}

/// One engine step through a session (reused tape); returns the loss.
fn engine_step(
    session: &mut Session<f32>,
    model: &Sequential<f32>,
    store: &mut ParamStore<f32>,
    opt: &mut Sgd<f32>,
    (x, labels): (&ArrayD<f32>, &[usize]),
) -> f32 {
    let (loss, grads) = session
        .train_step(store, |p| {
            loss::cross_entropy(&model.forward(p.input(x.clone()), p), labels)
        })
        .expect("a scalar loss");
    opt.step(store, &grads).expect("the grads match the store");
    loss
}

/// Warm-up and timed repetitions.
fn reps(quick: bool) -> (usize, usize) {
    if quick { (1, 3) } else { (3, 21) }
}

/// The W7 timings and kernel rates, in this process.
pub fn run(report: &mut Report, quick: bool) {
    let batch = if quick { 8 } else { BATCH };
    let (x, labels) = data(batch);
    let model = model();
    let (warmup, reps) = reps(quick);

    // The hand-written step works on its own copy of the parameters; the engine's runs
    // through a session (reused tape), a fresh tape per step, and the recorded forward pass
    // alone. Runs alternate between the two so that the machine's drift hits both alike.
    let mut hand = model.init_store(0);
    let mut store = hand.clone();
    let mut opt = Sgd::new(f64::from(LR));
    let mut session = Session::new(0);
    let hand_first = hand_step(&mut hand.clone(), &x, &labels);
    let first = engine_step(
        &mut session,
        &model,
        &mut store.clone(),
        &mut opt,
        (&x, &labels),
    );
    report.check_close(
        "w7.retrograd.loss_first vs w7.hand",
        f64::from(first),
        f64::from(hand_first),
        1e-4,
    );
    let mut tape = Tape::<f32>::new();
    let mut samples: [Vec<f64>; 5] = Default::default();
    for rep in 0..warmup + reps {
        let times = [
            time_ns(|| hand_forward(&hand, &x, &labels).loss),
            time_ns(|| hand_step(&mut hand, &x, &labels)),
            time_ns(|| engine_step(&mut session, &model, &mut store, &mut opt, (&x, &labels))),
            time_ns(|| {
                let (loss, grads) = train_step(&store, 0, |p| {
                    loss::cross_entropy(&model.forward(p.input(x.clone()), p), &labels)
                })
                .expect("a scalar loss");
                opt.step(&mut store, &grads)
                    .expect("the grads match the store");
                loss
            }),
            time_ns(|| {
                tape.clear();
                let p = Params::from_store(&tape, &store, true, 0);
                loss::cross_entropy(&model.forward(p.input(x.clone()), &p), &labels).item()
            }),
        ];
        if rep >= warmup {
            for (s, t) in samples.iter_mut().zip(times) {
                s.push(t);
            }
        }
    }
    let [hand_fwd, hand_ns, engine_ns, fresh_ns, engine_fwd] = samples.map(|mut s| median(&mut s));

    let ms = |ns: f64| ns / 1e6;
    report.push("w7.hand.ms", ms(hand_ns), "ms");
    report.push("w7.hand.forward_ms", ms(hand_fwd), "ms");
    report.push("w7.hand.forward_share", hand_fwd / hand_ns, "x");
    report.push("w7.retrograd.ms", ms(engine_ns), "ms");
    report.push("w7.retrograd.fresh_tape_ms", ms(fresh_ns), "ms");
    report.push("w7.retrograd.forward_ms", ms(engine_fwd), "ms");
    report.push("w7.retrograd.forward_share", engine_fwd / engine_ns, "x");
    report.push("w7.ratio", engine_ns / hand_ns, "x");
    report.push("w7.ratio_fresh_tape", fresh_ns / hand_ns, "x");
    conv_rates(report, &hand, &x, quick);
}

/// The convolution kernels' rates on W7's two layers (`2·madds / time`), beside the GEMM
/// seam's 1024³ rate.
fn conv_rates(report: &mut Report, store: &ParamStore<f32>, x: &ArrayD<f32>, quick: bool) {
    let (warmup, reps) = if quick { (1, 3) } else { (5, 51) };
    let p1 = pool(&conv_relu(
        x,
        param(store, "0", "weight"),
        param(store, "0", "bias"),
    ))
    .0;
    for (name, input, layer) in [("conv1", x, "0"), ("conv2", &p1, "3")] {
        let w = param(store, layer, "weight");
        let y = kernel::conv2d(input.view(), w.view(), SPEC).expect("fit");
        let [n, c, _, _] = input.shape() else { return };
        let (o, k) = (w.shape()[0], w.shape()[2] * w.shape()[3]);
        let flop = 2.0 * (n * o * c * k * y.shape()[2] * y.shape()[3]) as f64;
        let fwd = median_ns(warmup, reps, || {
            kernel::conv2d(input.view(), w.view(), SPEC)
        });
        let dx = median_ns(warmup, reps, || {
            kernel::conv2d_input_grad(y.view(), w.view(), input.shape(), SPEC)
        });
        let dw = median_ns(warmup, reps, || {
            kernel::conv2d_weight_grad(input.view(), y.view(), w.shape(), SPEC)
        });
        report.push(format!("w7.{name}.forward.gflops"), flop / fwd, "GFLOP/s");
        report.push(format!("w7.{name}.input_grad.gflops"), flop / dx, "GFLOP/s");
        report.push(
            format!("w7.{name}.weight_grad.gflops"),
            flop / dw,
            "GFLOP/s",
        );
    }
    let n = if quick { 256 } else { 1024 };
    let seam = crate::w2_engine::seam_gemm_gflops(n, 2, if quick { 3 } else { 11 });
    report.push("w7.gemm_seam.gflops", seam, "GFLOP/s");
}

/// Body of W7's memory child process: 50 engine steps, then the peak and current resident
/// memory; then up to 1000 steps and the growth between the two readings.
pub fn run_memory_child(report: &mut Report, quick: bool) {
    let Some(start) = rss() else {
        report.push_raw(
            "w7.memory.skipped".into(),
            "no-/proc/self/status".into(),
            "-",
        );
        return;
    };
    let (x, labels) = data(if quick { 8 } else { BATCH });
    let model = model();
    let mut store = model.init_store(0);
    let mut opt = Sgd::new(f64::from(LR));
    let mut session = Session::new(0);
    let (short, long) = if quick { (5, 20) } else { (50, 1000) };
    for _ in 0..short {
        black_box(engine_step(
            &mut session,
            &model,
            &mut store,
            &mut opt,
            (&x, &labels),
        ));
    }
    let mid = rss().unwrap_or(start);
    for _ in short..long {
        black_box(engine_step(
            &mut session,
            &model,
            &mut store,
            &mut opt,
            (&x, &labels),
        ));
    }
    let end = rss().unwrap_or(start);
    report.push("w7.memory.start_rss_bytes", start.current as f64, "bytes");
    report.push("w7.memory.peak_bytes", mid.peak as f64, "bytes");
    report.push("w7.memory.rss_50_bytes", mid.current as f64, "bytes");
    report.push("w7.memory.rss_1000_bytes", end.current as f64, "bytes");
    report.push(
        "w7.memory.growth_bytes",
        end.current as f64 - mid.current as f64,
        "bytes",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written step and the engine compute the same loss and the same update.
    #[test]
    fn hand_step_matches_the_engine() {
        let (x, labels) = data(3);
        let model = model();
        let mut hand = model.init_store(1);
        let mut engine = hand.clone();
        let l1 = hand_step(&mut hand, &x, &labels);
        let mut opt = Sgd::new(f64::from(LR));
        let l2 = engine_step(
            &mut Session::new(0),
            &model,
            &mut engine,
            &mut opt,
            (&x, &labels),
        );
        assert!((l1 - l2).abs() < 1e-5, "{l1} vs {l2}");
        for (name, a) in hand.iter() {
            let b = engine.get(name).unwrap();
            let worst = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "{name}: {worst}");
        }
    }
}
