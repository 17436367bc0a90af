//! Forward mode, reverse mode, or the order in between? Builds four layered chains of
//! `tanh(W z + b)` layers, takes each layer's Jacobian, multiplies the chain's Jacobian in
//! the forward, reverse and optimal orders, and prints the estimated multiply-adds and
//! the measured time of each multiplication, and what the default (`chain_jacobian`)
//! picked. Then it times, end to end from `x` to the full Jacobian (recording included):
//! the per-layer route (every layer's Jacobian, then `chain_jacobian`), batched
//! `jacfwd`/`jacrev` over one recording of the whole chain, and `jacobian(.., Mode::Auto)`,
//! which finds the chain's layers on the tape by itself (its cut points) and brackets them;
//! its plan is printed.
//!
//! After the table it prints the same figures as `name value unit` lines for scripts.
//!
//! Run with `cargo run --release -p retrograd --example jacobian_modes`.

use std::time::Instant;

use ndarray::{Array1, Array2, ArrayD};
use retrograd::ops::prelude::*;
use retrograd::tape::chain::{Bracketing, ChainProduct, chain_costs, chain_jacobian, multiply_in};
use retrograd::tape::transforms::{Mode, jacfwd, jacobian, jacrev};

/// A deterministic generator of values in [-1, 1] (test data, not statistics).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// One layer `z ↦ tanh(W z + b)`.
struct Layer {
    w: Array2<f64>,
    b: Array1<f64>,
}

impl Layer {
    fn apply<'t>(&self, z: Var<'t, f64>) -> Var<'t, f64> {
        let tape = z.tape();
        let w = tape.constant(self.w.clone());
        let b = tape.constant(self.b.clone());
        (w.matmul(&z) + b).tanh()
    }
}

/// The median of `reps` timings of `f`, in seconds.
fn median_seconds<R>(reps: usize, mut f: impl FnMut() -> R) -> f64 {
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn max_abs_diff(a: &Array2<f64>, b: &ArrayD<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn main() {
    let chains: [(&str, Vec<usize>); 4] = [
        ("wide-in", vec![1000, 100, 100, 100, 1]),
        ("wide-out", vec![1, 100, 100, 100, 1000]),
        ("hourglass", vec![300, 10, 300, 10, 300]),
        ("bottleneck", vec![500, 500, 5, 500, 500]),
    ];
    let reps = 5;
    let mut lines = Vec::new();
    println!(
        "{:<11} {:<12} {:<9} {:>10} {:>11}  bracketing",
        "chain", "jacobian", "order", "madds", "seconds"
    );
    for (name, widths) in &chains {
        let (layers, x) = chain(widths);
        let layered = layered(name, widths, &layers, &x, reps, &mut lines);
        on_the_tape(name, widths, &layers, &x, layered, reps, &mut lines);
    }
    for line in lines {
        println!("{line}");
    }
}

/// The chain's layers and input, from a fixed seed per chain.
fn chain(widths: &[usize]) -> (Vec<Layer>, ArrayD<f64>) {
    let mut rng = Lcg(0x5eed ^ widths.iter().sum::<usize>() as u64);
    let layers: Vec<Layer> = widths
        .windows(2)
        .map(|w| {
            let scale = 1.0 / (w[0] as f64).sqrt();
            Layer {
                w: Array2::from_shape_fn((w[1], w[0]), |_| scale * rng.next()),
                b: Array1::from_shape_fn(w[1], |_| 0.1 * rng.next()),
            }
        })
        .collect();
    let x = Array1::from_shape_fn(widths[0], |_| rng.next()).into_dyn();
    (layers, x)
}

/// The per-layer route: each layer's Jacobian, then the chain multiplied in the forward,
/// reverse and optimal orders. Prints a row per order; returns the product and the time of
/// the route end to end.
fn layered(
    name: &str,
    widths: &[usize],
    layers: &[Layer],
    x: &ArrayD<f64>,
    reps: usize,
    lines: &mut Vec<String>,
) -> (ChainProduct<f64>, f64) {
    // Per-layer Jacobians, each from the transforms at the point the layer sees
    // (`jacobian` picks forward or reverse mode per layer).
    let per_layer = || {
        let mut z = x.clone();
        let mut jacs = Vec::new();
        for layer in layers {
            let j = jacobian(|z| layer.apply(z), &z, Mode::Auto).expect("layer Jacobian");
            let (m, n) = (j.value.len(), z.len());
            jacs.push(j.jacobian.into_shape_with_order((m, n)).expect("[m, n]"));
            z = j.value;
        }
        jacs
    };
    let jacs = per_layer();
    let layered_secs = median_seconds(3, || chain_jacobian(&per_layer()));
    let l = jacs.len();
    let costs = chain_costs(widths);
    let orders = [
        ("forward", Bracketing::forward(l), costs.forward),
        ("reverse", Bracketing::reverse(l), costs.reverse),
        ("optimal", costs.bracketing.clone(), costs.optimal),
    ];
    let shape = format!("[{}, {}]", widths[l], widths[0]);
    for (order, bracketing, madds) in &orders {
        let secs = median_seconds(reps, || multiply_in(&jacs, bracketing));
        println!("{name:<11} {shape:<12} {order:<9} {madds:>10.3e} {secs:>11.6}  {bracketing}");
        lines.push(format!("{name}.{order}.madds {:.3e} madds", *madds as f64));
        lines.push(format!("{name}.{order}.seconds {secs:.6} s"));
    }
    let product = chain_jacobian(&jacs);
    let secs = median_seconds(reps, || chain_jacobian(&jacs));
    println!(
        "{name:<11} {shape:<12} {:<9} {:>10.3e} {secs:>11.6}  picked {}",
        "default",
        product.cost_optimal as f64,
        product.choice()
    );
    lines.push(format!("{name}.default.seconds {secs:.6} s"));
    lines.push(format!("{name}.default.choice {} -", product.choice()));

    (product, layered_secs)
}

/// The tape's routes: batched jacfwd/jacrev over one recording and `jacobian(Auto)`,
/// compared with the per-layer product. Prints rows and the plan.
fn on_the_tape(
    name: &str,
    widths: &[usize],
    layers: &[Layer],
    x: &ArrayD<f64>,
    (product, layered_secs): (ChainProduct<f64>, f64),
    reps: usize,
    lines: &mut Vec<String>,
) {
    let l = layers.len();
    let shape = format!("[{}, {}]", widths[l], widths[0]);
    // One recorded evaluation of the chain: the unit the cheap-gradient principle
    // measures a sweep against.
    let eval_secs = median_seconds(reps, || {
        let tape = retrograd::tape::Tape::<f64>::new();
        run(layers, tape.var(x.clone())).array()
    });

    // The same Jacobian by sweeps over one recording of the whole chain.
    let fwd_secs = median_seconds(3, || jacfwd(|x| run(layers, x), x).expect("jacfwd"));
    let rev_secs = median_seconds(3, || jacrev(|x| run(layers, x), x).expect("jacrev"));
    let auto = jacobian(|x| run(layers, x), x, Mode::Auto).expect("jacobian");
    let auto_secs = median_seconds(3, || {
        jacobian(|x| run(layers, x), x, Mode::Auto).expect("jacobian")
    });
    let picked = match auto.mode {
        Mode::Forward => "forward",
        Mode::Reverse => "reverse",
        _ => "bracketed",
    };
    println!(
        "{name:<11} {shape:<12} {:<9} {:>10} {fwd_secs:>11.6}  jacfwd over the tape",
        "sweeps", ""
    );
    println!(
        "{name:<11} {shape:<12} {:<9} {:>10} {rev_secs:>11.6}  jacrev over the tape; Auto picks {picked}; \
         |chain - tape| = {:.1e}",
        "sweeps",
        "",
        max_abs_diff(&product.jacobian, &auto.jacobian)
    );
    println!(
        "{name:<11} {shape:<12} {:<9} {:>10} {layered_secs:>11.6}  per-layer Jacobians, then chain_jacobian (end to end)",
        "layers", ""
    );
    println!(
        "{name:<11} {shape:<12} {:<9} {:>10.3e} {auto_secs:>11.6}  jacobian(Auto) end to end: {picked}",
        "auto", auto.plan.estimate as f64
    );
    println!("{}", auto.plan);
    lines.push(format!(
        "{name}.layers_end_to_end.seconds {layered_secs:.6} s"
    ));
    lines.push(format!("{name}.tape_auto.seconds {auto_secs:.6} s"));
    lines.push(format!("{name}.tape_forward.seconds {fwd_secs:.6} s"));
    lines.push(format!("{name}.tape_reverse.seconds {rev_secs:.6} s"));
    lines.push(format!("{name}.tape_auto.choice {picked} -"));
    lines.push(format!("{name}.eval.seconds {eval_secs:.6} s"));
    let best = fwd_secs.min(rev_secs);
    lines.push(format!(
        "{name}.tape_best.per_eval {:.2} ratio",
        best / eval_secs
    ));
    println!();
}

/// The whole chain on one tape.
fn run<'t>(layers: &[Layer], x: Var<'t, f64>) -> Var<'t, f64> {
    layers.iter().fold(x, |z, layer| layer.apply(z))
}
