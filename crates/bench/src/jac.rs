//! Jacobians end to end (f64): from `x` to the full Jacobian of four layered chains of
//! `tanh(W z + b)` layers (the chains of the `jacobian_modes` example), through the public
//! transforms, recording included:
//! - `jacobian(Auto)`: the tape's own plan (cut points, segments, cheapest bracketing);
//! - batched `jacfwd` and `jacrev`;
//! - one tangent per sweep (`Tape::jvp`/`Tape::vjp` per column/row on one recording):
//!   the way Jacobians were built before batched sweeps, the baseline of the speed-up.
//!
//! Lines per chain `c`: `jac.c.{auto,jacfwd,jacrev,fwd_one,rev_one}_ms`,
//! `jac.c.auto_vs_best_pure` (best batched pure mode / Auto), `jac.c.batched_vs_one`
//! (the better one-tangent mode / the better batched mode), `jac.c.auto_mode` (0 forward,
//! 1 reverse, 2 bracketed) and `jac.c.madds_ratio` (best pure estimate / Auto's plan).

use ndarray::{Array1, ArrayD};
use retrograd::ops::prelude::*;
use retrograd::tape::transforms::{self, Mode, jacfwd, jacobian, jacrev};

use crate::inputs::{bias_f64, weight_f64};
use crate::report::Report;
use crate::timing::{black_box, median_ns};

/// The four chains: name and widths from input to output.
const CHAINS: [(&str, &[usize]); 4] = [
    ("wide_in", &[1000, 100, 100, 100, 1]),
    ("wide_out", &[1, 100, 100, 100, 1000]),
    ("hourglass", &[300, 10, 300, 10, 300]),
    ("bottleneck", &[500, 500, 5, 500, 500]),
];

/// A chain's weights, shared into each recording as constants (an `Arc` clone, no copy).
struct Chain {
    layers: Vec<(Tensor<f64>, Tensor<f64>)>,
}

impl Chain {
    fn new(widths: &[usize]) -> Self {
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                (
                    Tensor::from_array(weight_f64(k + 1, w[1], w[0])),
                    Tensor::from_array(bias_f64(k + 1, w[1])),
                )
            })
            .collect();
        Chain { layers }
    }

    fn eval<'t>(&self, x: Var<'t, f64>) -> Var<'t, f64> {
        let tape = x.tape();
        self.layers.iter().fold(x, |z, (w, b)| {
            (tape.constant(w.clone()).matmul(&z) + tape.constant(b.clone())).tanh()
        })
    }
}

/// The Jacobian by one tangent (`forward`) or one cotangent per sweep on one recording.
fn one_at_a_time(chain: &Chain, x: &ArrayD<f64>, forward: bool) -> f64 {
    let tape = Tape::<f64>::new();
    let xv = tape.var(x.clone());
    let y = chain.eval(xv);
    let (n, m) = (x.len(), y.value().len());
    let mut acc = 0.0;
    for i in 0..if forward { n } else { m } {
        let shape = if forward {
            x.shape().to_vec()
        } else {
            y.shape().to_vec()
        };
        let mut e = ArrayD::<f64>::zeros(shape);
        e[i] = 1.0;
        let line = if forward {
            tape.jvp(&[y], &[xv], vec![Tensor::from_array(e)])
                .expect("jvp")
        } else {
            let opts = GradOptions::new().retain_graph().seed(e);
            let g = tape.grad_with(y, &[xv], &opts).expect("vjp");
            vec![g[0].value().into_array()]
        };
        acc += line[0][0];
    }
    acc
}

/// Runs the Jacobian workload and pushes its lines.
pub fn run(report: &mut Report, quick: bool) {
    let reps = if quick { 1 } else { 5 };
    for (name, widths) in CHAINS {
        let widths: Vec<usize> = if quick {
            widths.iter().map(|w| w.div_ceil(10)).collect()
        } else {
            widths.to_vec()
        };
        let chain = Chain::new(&widths);
        let x: ArrayD<f64> = Array1::from_shape_fn(widths[0], |i| (i as f64).sin()).into_dyn();
        let f = transforms::func(|x| chain.eval(x));
        let auto = jacobian(f, &x, Mode::Auto).expect("jacobian");
        let fwd = jacfwd(f, &x).expect("jacfwd");
        let diff = (&auto.jacobian - &fwd)
            .iter()
            .fold(0.0f64, |m, d| m.max(d.abs()));
        if diff.is_nan() || diff > 1e-10 {
            report.fail(format!("jac.{name}: Auto and jacfwd differ by {diff:e}"));
        }
        eprintln!("jac.{name}: {}", auto.plan);
        let ms = |ns: f64| ns / 1e6;
        let auto_ms = ms(median_ns(1, reps, || {
            jacobian(f, black_box(&x), Mode::Auto).map(|j| j.jacobian.len())
        }));
        let fwd_ms = ms(median_ns(1, reps, || {
            jacfwd(f, black_box(&x)).map(|j| j.len())
        }));
        let rev_ms = ms(median_ns(1, reps, || {
            jacrev(f, black_box(&x)).map(|j| j.len())
        }));
        let one_reps = if quick { 1 } else { 3 };
        let fwd_one = ms(median_ns(0, one_reps, || {
            one_at_a_time(&chain, black_box(&x), true)
        }));
        let rev_one = ms(median_ns(0, one_reps, || {
            one_at_a_time(&chain, black_box(&x), false)
        }));
        report.push(format!("jac.{name}.auto_ms"), auto_ms, "ms");
        report.push(format!("jac.{name}.jacfwd_ms"), fwd_ms, "ms");
        report.push(format!("jac.{name}.jacrev_ms"), rev_ms, "ms");
        report.push(format!("jac.{name}.fwd_one_ms"), fwd_one, "ms");
        report.push(format!("jac.{name}.rev_one_ms"), rev_one, "ms");
        let best = fwd_ms.min(rev_ms);
        report.push(format!("jac.{name}.auto_vs_best_pure"), best / auto_ms, "x");
        report.push(
            format!("jac.{name}.batched_vs_one"),
            fwd_one.min(rev_one) / best,
            "x",
        );
        let mode = match auto.mode {
            Mode::Forward => 0.0,
            Mode::Reverse => 1.0,
            _ => 2.0,
        };
        report.push_exact(
            format!("jac.{name}.auto_mode"),
            mode,
            "0fwd/1rev/2bracketed",
        );
        let plan = &auto.plan;
        let madds = plan.forward.min(plan.reverse) as f64 / plan.estimate.max(1) as f64;
        report.push(format!("jac.{name}.madds_ratio"), madds, "x");
    }
}

/// A profiling probe (`__child jac-probe [CHAIN] [RUNS]`): `jacobian(Auto)` of one chain,
/// `RUNS` times, with nothing else, for `perf record` and `valgrind --tool=callgrind`.
pub fn probe(report: &mut Report, name: &str, runs: usize) {
    let Some((_, widths)) = CHAINS.iter().find(|(n, _)| *n == name) else {
        report.fail(format!("jac-probe: no chain named {name:?}"));
        return;
    };
    let chain = Chain::new(widths);
    let x: ArrayD<f64> = Array1::from_shape_fn(widths[0], |i| (i as f64).sin()).into_dyn();
    let f = transforms::func(|x| chain.eval(x));
    let ns = median_ns(1, runs, || {
        jacobian(f, black_box(&x), Mode::Auto).map(|j| j.jacobian.len())
    });
    report.push(format!("jac.probe.{name}.auto_ms"), ns / 1e6, "ms");
    // The last run's plan with its measured step times, for whoever profiles it.
    if let Ok(j) = jacobian(f, &x, Mode::Auto) {
        eprint!("{}", j.plan);
    }
}
