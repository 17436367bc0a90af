//! W2, one MLP training step (f32): 784 -> 512 -> 512 -> 10 with ReLU and biases, batch
//! 128, mean softmax cross-entropy, plain SGD (lr 0.01) on all parameters.
//!
//! The baseline is the step written by hand on ndarray: every matmul goes through
//! [`matmul_into`] (so the step can be run on each kernel), all buffers are allocated once
//! in a [`Workspace`], and the backward pass skips the input gradient of the first layer.
//! The same forward pass alone is W3's denominator, and 50 steps of it are W6's memory
//! baseline. The engine's version (`w2.retrograd.*`, `w2.ratio`, `w2.gemm_fraction`,
//! `w3.*`) goes beside [`run_hand`].

use ndarray::{Array1, Array2, ArrayView2, Zip};

use crate::inputs::{
    W2_BATCH, W2_DIMS, W2_FLOP_PER_STEP, W2_LR, bias_f32, w2_input, w2_labels, weight_f32,
};
use crate::kernels::{Kernel, matmul_into};
use crate::report::Report;
use crate::timing::{black_box, median, time_ns};

/// The MLP's parameters: layer `l` (0-based) computes `x · W[l]ᵀ + b[l]`, with `W[l]` of
/// shape `[out, in]` as the formula defines it (layer number `k = l + 1`).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// Weights, `[out, in]` each.
    pub w: Vec<Array2<f32>>,
    /// Biases, `[out]` each.
    pub b: Vec<Array1<f32>>,
}

impl Mlp {
    /// The closed-form initial parameters for layer widths `dims` (W2: `[784, 512, 512, 10]`).
    pub fn closed_form(dims: &[usize]) -> Self {
        let layers = dims.len() - 1;
        Self {
            w: (0..layers)
                .map(|l| weight_f32(l + 1, dims[l + 1], dims[l]))
                .collect(),
            b: (0..layers).map(|l| bias_f32(l + 1, dims[l + 1])).collect(),
        }
    }
}

/// Every buffer one training step needs, allocated once: activations (after ReLU; the
/// ReLU mask is recovered from them), logits, their gradients, and parameter gradients.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// `act[l]`: output of layer `l` (after ReLU for hidden layers; logits for the last).
    pub act: Vec<Array2<f32>>,
    /// `grad_act[l]`: the loss's gradient with respect to layer `l`'s pre-activation.
    pub grad_act: Vec<Array2<f32>>,
    /// Weight gradients, shaped like the weights.
    pub grad_w: Vec<Array2<f32>>,
    /// Bias gradients, shaped like the biases.
    pub grad_b: Vec<Array1<f32>>,
}

impl Workspace {
    /// Buffers for layer widths `dims` and a batch of `batch` rows.
    pub fn new(dims: &[usize], batch: usize) -> Self {
        let layers = dims.len() - 1;
        Self {
            act: (0..layers)
                .map(|l| Array2::zeros((batch, dims[l + 1])))
                .collect(),
            grad_act: (0..layers)
                .map(|l| Array2::zeros((batch, dims[l + 1])))
                .collect(),
            grad_w: (0..layers)
                .map(|l| Array2::zeros((dims[l + 1], dims[l])))
                .collect(),
            grad_b: (0..layers).map(|l| Array1::zeros(dims[l + 1])).collect(),
        }
    }
}

/// The forward pass: fills `ws.act` and returns the mean softmax cross-entropy (computed
/// stably, with log-sum-exp). When `keep_softmax_grad` is set it also leaves
/// `(softmax - onehot) / batch`, the gradient of the loss with respect to the logits, in the
/// last `ws.grad_act`.
pub fn forward(
    kernel: Kernel,
    mlp: &Mlp,
    x: ArrayView2<f32>,
    labels: &[usize],
    ws: &mut Workspace,
    keep_softmax_grad: bool,
) -> f32 {
    let layers = mlp.w.len();
    for l in 0..layers {
        let (before, rest) = ws.act.split_at_mut(l);
        let input = if l == 0 { x } else { before[l - 1].view() };
        let out = &mut rest[0];
        matmul_into(kernel, input, mlp.w[l].t(), out.view_mut());
        let bias = &mlp.b[l];
        if l + 1 < layers {
            for mut row in out.rows_mut() {
                Zip::from(&mut row)
                    .and(bias)
                    .for_each(|z, &b| *z = (*z + b).max(0.0));
            }
        } else {
            for mut row in out.rows_mut() {
                Zip::from(&mut row).and(bias).for_each(|z, &b| *z += b);
            }
        }
    }
    let logits = &ws.act[layers - 1];
    let batch = logits.nrows();
    let inv_batch = 1.0 / batch as f32;
    let mut loss = 0.0f64;
    for (r, row) in logits.rows().into_iter().enumerate() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        let lse = max + sum.ln();
        loss += f64::from(lse - row[labels[r]]);
        if keep_softmax_grad {
            let mut g = ws.grad_act[layers - 1].row_mut(r);
            Zip::from(&mut g)
                .and(&row)
                .for_each(|g, &z| *g = (z - lse).exp() * inv_batch);
            g[labels[r]] -= inv_batch;
        }
    }
    (loss / batch as f64) as f32
}

/// The backward pass, after `forward(.., keep_softmax_grad = true)`: fills the parameter
/// gradients in `ws`. The gradient with respect to the input `x` is not computed.
pub fn backward(kernel: Kernel, mlp: &Mlp, x: ArrayView2<f32>, ws: &mut Workspace) {
    let layers = mlp.w.len();
    for l in (0..layers).rev() {
        // grad_act[l] holds dL/dZ_l (the ReLU mask already applied).
        let input = if l == 0 { x } else { ws.act[l - 1].view() };
        matmul_into(kernel, ws.grad_act[l].t(), input, ws.grad_w[l].view_mut());
        let gb = &mut ws.grad_b[l];
        gb.fill(0.0);
        for row in ws.grad_act[l].rows() {
            *gb += &row;
        }
        if l > 0 {
            let (lower, upper) = ws.grad_act.split_at_mut(l);
            let dz = &upper[0];
            let da = &mut lower[l - 1];
            matmul_into(kernel, dz.view(), mlp.w[l].view(), da.view_mut());
            // Through the ReLU: the activation is positive exactly where its input was.
            Zip::from(da).and(&ws.act[l - 1]).for_each(|g, &a| {
                if a <= 0.0 {
                    *g = 0.0
                }
            });
        }
    }
}

/// Plain SGD on every parameter: `θ -= lr · ∇θ`.
pub fn sgd(mlp: &mut Mlp, ws: &Workspace, lr: f32) {
    for (w, g) in mlp.w.iter_mut().zip(&ws.grad_w) {
        w.scaled_add(-lr, g);
    }
    for (b, g) in mlp.b.iter_mut().zip(&ws.grad_b) {
        b.scaled_add(-lr, g);
    }
}

/// One full training step (forward, backward, update); returns the loss before the update.
pub fn step(
    kernel: Kernel,
    mlp: &mut Mlp,
    x: ArrayView2<f32>,
    labels: &[usize],
    ws: &mut Workspace,
) -> f32 {
    let loss = forward(kernel, mlp, x, labels, ws, true);
    backward(kernel, mlp, x, ws);
    sgd(mlp, ws, W2_LR);
    loss
}

/// Everything a W2 run needs: parameters, data, buffers.
pub struct Setup {
    /// The parameters (trained in place by [`step`]).
    pub mlp: Mlp,
    /// The input batch.
    pub x: Array2<f32>,
    /// The labels.
    pub labels: Vec<usize>,
    /// The buffers.
    pub ws: Workspace,
}

impl Setup {
    /// W2 at the size.
    pub fn w2() -> Self {
        Self {
            mlp: Mlp::closed_form(&W2_DIMS),
            x: w2_input(W2_BATCH, W2_DIMS[0]),
            labels: w2_labels(W2_BATCH, W2_DIMS[3]),
            ws: Workspace::new(&W2_DIMS, W2_BATCH),
        }
    }
}

/// Warm-up and timed repetitions of W2 (the 5 and 50; fewer in quick mode).
pub fn reps(quick: bool) -> (usize, usize) {
    if quick { (1, 5) } else { (5, 50) }
}

/// Median nanoseconds of `f` over `reps` calls after `warmup` calls.
fn median_of(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..reps).map(|_| time_ns(&mut f)).collect();
    median(&mut t)
}

/// Runs the hand-written W2 step on `kernel` and pushes, under `prefix` (e.g. `w2.hand` or
/// `w2.hand.gemm_2t`): the loss after the first step (`loss_first`, a checksum) and after
/// the last timed one (`loss_last`), the median step time (`ms`), the forward-only time
/// (`forward_ms`, W3's denominator), forward+backward (`fwd_bwd_ms`), the hand-written W3
/// ratio (`w3_ratio` = fwd_bwd / forward), the step's FLOP rate (`gflops`, counting the
/// issue's 513.5 MFLOP a step) and, given the kernel's 1024³ rate measured in the same
/// process, `gemm_fraction`. Returns the median step time in ms.
pub fn run_hand(
    report: &mut Report,
    kernel: Kernel,
    prefix: &str,
    gemm_gflops: Option<f64>,
    quick: bool,
) -> f64 {
    let (warmup, reps) = reps(quick);
    let mut s = Setup::w2();
    let Setup { mlp, x, labels, ws } = &mut s;
    let x = x.view();

    let first = step(kernel, mlp, x, labels, ws);
    report.push_exact(format!("{prefix}.loss_first"), f64::from(first), "-");
    if !first.is_finite() {
        report.fail(format!("{prefix}: first loss is {first}"));
    }

    let mut last = first;
    let step_ns = median_of(warmup, reps, || {
        last = step(kernel, mlp, x, labels, ws);
    });
    report.push_exact(format!("{prefix}.loss_last"), f64::from(last), "-");
    if last.is_nan() || last >= first {
        report.fail(format!(
            "{prefix}: training did not lower the loss ({first} -> {last})"
        ));
    }
    let fwd_ns = median_of(warmup, reps, || {
        black_box(forward(kernel, mlp, x, labels, ws, false));
    });
    let fwd_bwd_ns = median_of(warmup, reps, || {
        black_box(forward(kernel, mlp, x, labels, ws, true));
        backward(kernel, mlp, x, ws);
    });
    let gflops = W2_FLOP_PER_STEP / step_ns;
    report.push(format!("{prefix}.ms"), step_ns / 1e6, "ms");
    report.push(format!("{prefix}.forward_ms"), fwd_ns / 1e6, "ms");
    report.push(format!("{prefix}.fwd_bwd_ms"), fwd_bwd_ns / 1e6, "ms");
    report.push(format!("{prefix}.w3_ratio"), fwd_bwd_ns / fwd_ns, "x");
    report.push(format!("{prefix}.gflops"), gflops, "GFLOP/s");
    if let Some(rate) = gemm_gflops {
        report.push(format!("{prefix}.gemm_fraction"), gflops / rate, "x");
    }
    step_ns / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    const DIMS: [usize; 4] = [7, 6, 5, 4];
    const BATCH: usize = 9;

    fn small() -> (Mlp, Array2<f32>, Vec<usize>, Workspace) {
        (
            Mlp::closed_form(&DIMS),
            w2_input(BATCH, DIMS[0]),
            w2_labels(BATCH, DIMS[3]),
            Workspace::new(&DIMS, BATCH),
        )
    }

    /// Loss in f64 through a plain re-implementation, for finite differences.
    fn loss_f64(mlp: &Mlp, x: &Array2<f32>, labels: &[usize]) -> f64 {
        let mut a = x.mapv(f64::from);
        let layers = mlp.w.len();
        for l in 0..layers {
            let w = mlp.w[l].mapv(f64::from);
            let b = mlp.b[l].mapv(f64::from);
            let mut z = a.dot(&w.t()) + &b;
            if l + 1 < layers {
                z.mapv_inplace(|v| v.max(0.0));
            }
            a = z;
        }
        let mut loss = 0.0;
        for (r, row) in a.rows().into_iter().enumerate() {
            let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
            loss += lse - row[labels[r]];
        }
        loss / a.nrows() as f64
    }

    #[test]
    fn gradients_match_finite_differences_on_every_kernel() {
        for kernel in [
            Kernel::MatrixMultiply,
            Kernel::Gemm { threads: 1 },
            Kernel::Gemm { threads: 2 },
        ] {
            let (mlp, x, labels, mut ws) = small();
            let loss = forward(kernel, &mlp, x.view(), &labels, &mut ws, true);
            assert!((f64::from(loss) - loss_f64(&mlp, &x, &labels)).abs() < 1e-5);
            backward(kernel, &mlp, x.view(), &mut ws);
            for l in 0..3 {
                let sums = ws.grad_act[l].sum_axis(Axis(0));
                for (s, b) in sums.iter().zip(&ws.grad_b[l]) {
                    assert!((s - b).abs() < 1e-6, "bias gradient of layer {l}");
                }
                for &(i, j) in &[(0usize, 0usize), (1, 2), (3, 4)] {
                    let eps = 1e-3f32;
                    let mut up = mlp.clone();
                    up.w[l][[i, j]] += eps;
                    let mut down = mlp.clone();
                    down.w[l][[i, j]] -= eps;
                    let fd = (loss_f64(&up, &x, &labels) - loss_f64(&down, &x, &labels))
                        / (2.0 * f64::from(eps));
                    let got = f64::from(ws.grad_w[l][[i, j]]);
                    assert!(
                        (fd - got).abs() < 2e-3,
                        "layer {l} [{i},{j}]: {fd} vs {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn sgd_lowers_the_loss() {
        let (mut mlp, x, labels, mut ws) = small();
        let first = step(Kernel::MatrixMultiply, &mut mlp, x.view(), &labels, &mut ws);
        let mut last = first;
        for _ in 0..20 {
            last = step(Kernel::MatrixMultiply, &mut mlp, x.view(), &labels, &mut ws);
        }
        assert!(last < first, "{first} -> {last}");
    }
}
