//! W2 and W3 on the engine: the MLP training step written with retrograd's ops, beside the
//! hand-written step of [`crate::w2`].
//!
//! Each step enters the parameters as leaves of a tape (the values are `Arc`-shared
//! tensors, so entering them copies nothing), computes `relu(x · Wᵀ + b)` twice and the
//! logits with `matmul_transposed` and broadcasting `+`, takes `cross_entropy(&labels)`,
//! runs `backward`, and applies plain SGD to the parameters as ndarray arrays once the tape
//! no longer shares them (in place, no copy). The tape is either cleared and refilled each
//! step (what a training loop does; the default) or made fresh each step.

use retrograd::ops::prelude::*;

use crate::inputs::{W2_BATCH, W2_DIMS, W2_LR, bias_f32, w2_input, w2_labels, weight_f32};
use crate::timing::{black_box, median, time_ns};

/// The MLP's parameters as engine tensors: weights `[out, in]` and biases `[out]`.
pub struct Params {
    /// Weights, `[out, in]` each (layer `l` computes `x · W[l]ᵀ + b[l]`).
    pub w: Vec<Tensor<f32>>,
    /// Biases, `[out]` each.
    pub b: Vec<Tensor<f32>>,
}

impl Params {
    /// The closed-form initial parameters of W2 (the same as the hand-written step's).
    pub fn w2() -> Self {
        let layers = W2_DIMS.len() - 1;
        Params {
            w: (0..layers)
                .map(|l| Tensor::from_array(weight_f32(l + 1, W2_DIMS[l + 1], W2_DIMS[l])))
                .collect(),
            b: (0..layers)
                .map(|l| Tensor::from_array(bias_f32(l + 1, W2_DIMS[l + 1])))
                .collect(),
        }
    }
}

/// Everything an engine W2 run needs: parameters, data and the reused tape.
pub struct EngineSetup {
    /// The parameters (trained in place by [`EngineSetup::step`]).
    pub params: Params,
    /// The input batch.
    pub x: Tensor<f32>,
    /// The labels.
    pub labels: Vec<usize>,
    /// The tape, cleared and refilled every step.
    pub tape: Tape<f32>,
}

/// The forward pass on `tape`: returns the parameter leaves (weights then biases) and the
/// loss.
fn forward<'t>(
    tape: &'t Tape<f32>,
    params: &Params,
    x: &Tensor<f32>,
    labels: &[usize],
    leaves: bool,
) -> (Vec<Var<'t, f32>>, Var<'t, f32>) {
    let enter = |t: &Tensor<f32>| {
        if leaves {
            tape.var(t.clone())
        } else {
            tape.constant(t.clone())
        }
    };
    let w: Vec<_> = params.w.iter().map(enter).collect();
    let b: Vec<_> = params.b.iter().map(enter).collect();
    let mut h = tape.constant(x.clone());
    let layers = w.len();
    for l in 0..layers {
        let z = h.matmul_transposed(&w[l], Transpose::Second) + b[l];
        h = if l + 1 < layers { z.relu() } else { z };
    }
    let loss = h.cross_entropy(labels);
    (w.into_iter().chain(b).collect(), loss)
}

/// `θ -= lr · g` in place (the tape no longer shares `θ`'s buffer, so no copy is made).
fn sgd(theta: &mut Tensor<f32>, g: &Tensor<f32>) {
    theta.view_mut().scaled_add(-W2_LR, &g.view());
}

impl EngineSetup {
    /// W2 at the size.
    pub fn w2() -> Self {
        EngineSetup {
            params: Params::w2(),
            x: Tensor::from_array(w2_input(W2_BATCH, W2_DIMS[0])),
            labels: w2_labels(W2_BATCH, W2_DIMS[3]),
            tape: Tape::new(),
        }
    }

    /// One training step (forward, backward, SGD) on the reused tape, or on a fresh tape
    /// when `fresh`; returns the loss before the update.
    pub fn step(&mut self, fresh: bool) -> f32 {
        if fresh {
            self.tape = Tape::new();
        }
        let (loss, grads) = {
            let (leaves, loss) = forward(&self.tape, &self.params, &self.x, &self.labels, true);
            let mut g = loss.backward().expect("W2 backward");
            let grads: Vec<Tensor<f32>> = leaves
                .iter()
                .map(|&v| g.take(v).expect("a gradient for every parameter"))
                .collect();
            (loss.item(), grads)
        };
        self.tape.clear();
        let layers = self.params.w.len();
        for (l, g) in grads.iter().enumerate() {
            if l < layers {
                sgd(&mut self.params.w[l], g);
            } else {
                sgd(&mut self.params.b[l - layers], g);
            }
        }
        loss
    }

    /// Forward and backward with recording (no update): W3's numerator.
    pub fn forward_backward(&mut self) -> f32 {
        let loss = {
            let (leaves, loss) = forward(&self.tape, &self.params, &self.x, &self.labels, true);
            let g = loss.backward().expect("W2 backward");
            black_box((&leaves, &g));
            loss.item()
        };
        self.tape.clear();
        loss
    }

    /// The forward pass with nothing recorded (under `no_grad`, parameters as constants):
    /// W3's denominator.
    pub fn forward_plain(&mut self) -> f32 {
        let loss = {
            let _guard = self.tape.no_grad();
            let (_, loss) = forward(&self.tape, &self.params, &self.x, &self.labels, false);
            loss.item()
        };
        self.tape.clear();
        loss
    }
}

/// Median nanoseconds of `f` over `reps` calls after `warmup` calls.
fn median_of(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..reps).map(|_| time_ns(&mut f)).collect();
    median(&mut t)
}

/// What an engine W2 run measured (nanoseconds, medians).
pub struct EngineTimes {
    /// Loss after the first step (a checksum against the hand-written step's).
    pub loss_first: f32,
    /// Loss at the last timed step.
    pub loss_last: f32,
    /// One step on a cleared and refilled tape.
    pub step: f64,
    /// One step on a fresh tape.
    pub step_fresh: f64,
    /// Forward + backward, recorded.
    pub fwd_bwd: f64,
    /// Forward with nothing recorded.
    pub forward: f64,
}

/// Runs the engine's W2 (both tape policies) and W3's two timings.
pub fn measure(warmup: usize, reps: usize) -> EngineTimes {
    let mut s = EngineSetup::w2();
    let loss_first = s.step(false);
    let mut last = loss_first;
    let step = median_of(warmup, reps, || last = s.step(false));
    let step_fresh = median_of(warmup.min(2), reps.min(21), || last = s.step(true));
    let fwd_bwd = median_of(warmup, reps, || {
        black_box(s.forward_backward());
    });
    let forward = median_of(warmup, reps, || {
        black_box(s.forward_plain());
    });
    EngineTimes {
        loss_first,
        loss_last: last,
        step,
        step_fresh,
        fwd_bwd,
        forward,
    }
}

/// The f32 GEMM rate of the engine's own kernel seam (`retrograd::ops::linalg::kernel::gemm`)
/// on an n×n·n×n product, in GFLOP/s.
pub fn seam_gemm_gflops(n: usize, warmup: usize, reps: usize) -> f64 {
    let a = crate::kernels::closed_form(n, n, 1.0);
    let b = crate::kernels::closed_form(n, n, 2.0);
    let mut c = ndarray::Array2::<f32>::zeros((n, n));
    let ns = crate::timing::median_ns(warmup, reps, || {
        retrograd::ops::linalg::kernel::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
        black_box(c[[0, 0]])
    });
    2.0 * (n as f64).powi(3) / ns
}

/// A tiny W2-shaped check that the engine step's gradients match the hand-written ones.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernel;
    use crate::w2::{Mlp, Workspace, backward, forward as hand_forward};
    use ndarray::Ix2;

    #[test]
    fn engine_gradients_match_the_hand_written_step() {
        const DIMS: [usize; 4] = [7, 6, 5, 4];
        let mlp = Mlp::closed_form(&DIMS);
        let x = w2_input(9, DIMS[0]);
        let labels = w2_labels(9, DIMS[3]);
        let mut ws = Workspace::new(&DIMS, 9);
        let hand = hand_forward(
            Kernel::MatrixMultiply,
            &mlp,
            x.view(),
            &labels,
            &mut ws,
            true,
        );
        backward(Kernel::MatrixMultiply, &mlp, x.view(), &mut ws);

        let params = Params {
            w: mlp
                .w
                .iter()
                .map(|w| Tensor::from_array(w.clone()))
                .collect(),
            b: mlp
                .b
                .iter()
                .map(|b| Tensor::from_array(b.clone()))
                .collect(),
        };
        let tape = Tape::<f32>::new();
        let (leaves, loss) = forward(&tape, &params, &Tensor::from_array(x), &labels, true);
        assert!((loss.item() - hand).abs() < 1e-5);
        let g = loss.backward().unwrap();
        for l in 0..3 {
            let gw = g[leaves[l]]
                .to_array()
                .into_dimensionality::<Ix2>()
                .unwrap();
            for (a, b) in gw.iter().zip(ws.grad_w[l].iter()) {
                assert!((a - b).abs() < 1e-5, "layer {l}: {a} vs {b}");
            }
        }
    }
}
