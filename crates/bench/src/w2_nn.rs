//! W2 through the nn path a user writes, and data-parallel training on threads.
//!
//! `w2.nn.*`: the W2 step as the guide teaches it: an `mlp(&[784, 512, 512, 10])` whose
//! store holds W2's closed-form parameters, `Session::train_step` with
//! `loss::cross_entropy`, and `Sgd` (lr 0.01). Its first loss is checked against the
//! hand-written step's.
//!
//! `dp.*`: a W2-sized step at batch 256 three ways, interleaved repetition by repetition
//! (this machine is shared, so a slow spell hits all three alike): `Session::train_step`
//! on the whole batch (kernels on every core), `DataParallel` on 1 thread with its kernels
//! on 1 thread too (the whole step on one core), and `DataParallel` on 2 threads (one tape
//! per thread, each worker's kernels on one thread, gradients all-reduced). Medians and
//! the spread (max/min) of each.

use ndarray::Array2;
use retrograd::nn::layers::{Activation, mlp};
use retrograd::nn::optim::{Optimizer, Sgd};
use retrograd::nn::{DataParallel, Module, ParamStore, Sequential, Session, loss};
use retrograd::ops::threads::with_num_threads;

use crate::inputs::{W2_BATCH, W2_DIMS, W2_LR, bias_f32, w2_input, w2_labels, weight_f32};
use crate::report::Report;
use crate::timing::{median, time_ns};

/// W2's model and its closed-form parameters under the names `mlp` gives them.
pub(crate) fn w2_model() -> (Sequential<f32>, ParamStore<f32>) {
    let model = mlp::<f32>(&W2_DIMS, Activation::Relu);
    let mut store = ParamStore::new();
    for l in 0..W2_DIMS.len() - 1 {
        // Linear layers sit at positions 0, 2, 4 (activations in between).
        let w = weight_f32(l + 1, W2_DIMS[l + 1], W2_DIMS[l]).into_dyn();
        let b = bias_f32(l + 1, W2_DIMS[l + 1]).into_dyn();
        store.insert(format!("{}.weight", 2 * l), w);
        store.insert(format!("{}.bias", 2 * l), b);
    }
    (model, store)
}

/// One nn training step on `(x, y)`; returns the loss.
fn session_step(
    session: &mut Session<f32>,
    model: &Sequential<f32>,
    store: &mut ParamStore<f32>,
    opt: &mut Sgd<f32>,
    x: &Array2<f32>,
    y: &[usize],
) -> f32 {
    let (loss, grads) = session
        .train_step(store, |p| {
            loss::cross_entropy(&model.forward(p.input(x.clone()), p), y)
        })
        .expect("W2 nn step");
    opt.step(store, &grads).expect("W2 SGD step");
    loss
}

/// W2 through the nn path, as a user sets it up: model, store, optimiser, session, data.
pub struct NnSetup {
    model: Sequential<f32>,
    store: ParamStore<f32>,
    opt: Sgd<f32>,
    session: Session<f32>,
    x: Array2<f32>,
    y: Vec<usize>,
}

impl NnSetup {
    /// W2 at the size.
    pub fn w2() -> Self {
        let (model, store) = w2_model();
        NnSetup {
            model,
            store,
            opt: Sgd::new(f64::from(W2_LR)),
            session: Session::new(0),
            x: w2_input(W2_BATCH, W2_DIMS[0]),
            y: w2_labels(W2_BATCH, W2_DIMS[3]),
        }
    }

    /// One training step; returns the loss before the update.
    pub fn step(&mut self) -> f32 {
        let s = self;
        session_step(
            &mut s.session,
            &s.model,
            &mut s.store,
            &mut s.opt,
            &s.x,
            &s.y,
        )
    }
}

/// One data-parallel step on `(x, y)`; returns the loss.
pub(crate) fn parallel_step(
    trainer: &mut DataParallel<f32>,
    model: &Sequential<f32>,
    store: &mut ParamStore<f32>,
    opt: &mut Sgd<f32>,
    x: &Array2<f32>,
    y: &[usize],
) -> f32 {
    let (loss, grads) = trainer
        .train_step(store, x.nrows(), |p, shard| {
            loss::cross_entropy(&model.forward(p.input(shard.rows(x)), p), shard.slice(y))
        })
        .expect("W2 data-parallel step");
    opt.step(store, &grads).expect("W2 SGD step");
    loss
}

/// `w2.nn.loss_first`, `w2.nn.ms` (median step), and `w2.nn.ratio` against `hand_ms`.
pub fn run_nn(report: &mut Report, hand_ms: f64, warmup: usize, reps: usize) {
    let mut s = NnSetup::w2();
    let first = s.step();
    report.push_exact("w2.nn.loss_first", f64::from(first), "-");
    if let Some(hand) = report.value("w2.hand.loss_first") {
        report.check_close("w2.nn.loss_first vs w2.hand", f64::from(first), hand, 1e-4);
    }
    for _ in 0..warmup {
        s.step();
    }
    let mut times: Vec<f64> = (0..reps).map(|_| time_ns(|| s.step())).collect();
    let ms = median(&mut times) / 1e6;
    report.push("w2.nn.ms", ms, "ms");
    report.push("w2.nn.ratio", ms / hand_ms, "x");
}

/// The data-parallel figures at batch 256: `dp.session.ms` (kernels on every core),
/// `dp.threads_1.ms` (everything on one thread), `dp.threads_2.ms` (medians), their
/// `.spread`, the CPU time per step of each (`.cpu_ms`, all threads), `dp.speedup` (1
/// thread / 2 threads) and `dp.vs_session` (session / 2 threads).
/// Checks that the three agree on the first loss.
pub fn run_data_parallel(report: &mut Report, quick: bool) {
    let batch = if quick { 16 } else { 256 };
    let (warmup, reps) = if quick { (1, 3) } else { (3, 21) };
    let (model, store) = w2_model();
    let x = w2_input(batch, W2_DIMS[0]);
    let y = w2_labels(batch, W2_DIMS[3]);
    let mut session = Session::new(0);
    let mut trainers = [DataParallel::new(1, 0), DataParallel::new(2, 0)];
    let mut stores = [store.clone(), store.clone(), store];
    let mut opts = [0, 1, 2].map(|_| Sgd::new(f64::from(W2_LR)));
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut cpu_ticks = [0u64; 3];
    let mut firsts = [0.0f32; 3];
    for rep in 0..warmup + reps {
        for (k, times) in times.iter_mut().enumerate() {
            let (store, opt) = (&mut stores[k], &mut opts[k]);
            let mut loss = 0.0;
            let cpu_before = process_cpu_ticks();
            let ns = time_ns(|| {
                loss = match k {
                    0 => session_step(&mut session, &model, store, opt, &x, &y),
                    // One worker whose kernels are limited to one thread: one core in all.
                    1 => with_num_threads(1, || {
                        parallel_step(&mut trainers[0], &model, store, opt, &x, &y)
                    }),
                    _ => parallel_step(&mut trainers[1], &model, store, opt, &x, &y),
                }
            });
            if rep == 0 {
                firsts[k] = loss;
            }
            if rep >= warmup {
                times.push(ns);
                if let (Some(before), Some(after)) = (cpu_before, process_cpu_ticks()) {
                    cpu_ticks[k] += after - before;
                }
            }
        }
    }
    for (k, name) in ["session", "threads_1", "threads_2"].iter().enumerate() {
        let spread = times[k].iter().copied().fold(0.0, f64::max)
            / times[k].iter().copied().fold(f64::INFINITY, f64::min);
        report.push(format!("dp.{name}.ms"), median(&mut times[k]) / 1e6, "ms");
        report.push(format!("dp.{name}.spread"), spread, "x");
        if cpu_ticks[k] > 0 {
            let cpu_ms = cpu_ticks[k] as f64 * 1e3 / CLOCK_TICKS_PER_S / times[k].len() as f64;
            report.push(format!("dp.{name}.cpu_ms"), cpu_ms, "ms");
        }
        report.check_close(
            &format!("dp.{name}.loss_first vs dp.session"),
            f64::from(firsts[k]),
            f64::from(firsts[0]),
            1e-5,
        );
    }
    if let (Some(one), Some(two)) = (
        report.value("dp.threads_1.ms"),
        report.value("dp.threads_2.ms"),
    ) {
        report.push("dp.speedup", one / two, "x");
        if let Some(session) = report.value("dp.session.ms") {
            report.push("dp.vs_session", session / two, "x");
        }
    }
    report.push("dp.batch", batch as f64, "rows");
}

/// The kernel's clock-tick rate for `/proc/self/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU time used so far by all threads of this process (user + system), in clock ticks,
/// from `/proc/self/stat`; `None` where that file does not exist. Summed over many steps,
/// its 10 ms granularity averages out: it tells whether a slower wall-clock time came
/// from more work or from fewer cores available (a loaded, shared machine).
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
