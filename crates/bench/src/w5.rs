//! W5, the Hessian-vector product (f64): `g(x) = sum(tanh(W₂ tanh(W₁ x + b₁) + b₂))` with
//! `x ∈ R⁵⁰⁰`, `W₁, W₂` of shape `[500, 500]` and `b₁, b₂` of length 500 from the issue's
//! closed formulas (layers k = 1, 2), `x[i] = sin(i)` and `v[i] = cos(i)`. The figure is the
//! time of one `transforms::hvp` (a recorded reverse sweep, then a forward sweep over it)
//! divided by the time of one `transforms::grad` (record, plain reverse sweep), both on a
//! fresh tape as those functions make one. Then the full Hessian (`transforms::hessian`)
//! against one HVP: `w5.hessian_ms`, `w5.hessian_over_hvp`.

use ndarray::{Array1, ArrayD};
use retrograd::ops::prelude::*;
use retrograd::tape::transforms;

use crate::inputs::{bias_f64, weight_f64};
use crate::report::Report;
use crate::timing::{black_box, median_ns};

/// The width of W5's layers and input.
const N: usize = 500;

/// W5's fixed weights, shared into each tape as constants (an `Arc` clone, no copy).
struct Net {
    w1: Tensor<f64>,
    b1: Tensor<f64>,
    w2: Tensor<f64>,
    b2: Tensor<f64>,
}

impl Net {
    fn new(n: usize) -> Self {
        Net {
            w1: Tensor::from_array(weight_f64(1, n, n)),
            b1: Tensor::from_array(bias_f64(1, n)),
            w2: Tensor::from_array(weight_f64(2, n, n)),
            b2: Tensor::from_array(bias_f64(2, n)),
        }
    }

    /// `g(x)`, recorded on `x`'s tape.
    fn g<'t>(&self, x: Var<'t, f64>) -> Var<'t, f64> {
        let tape = x.tape();
        let (w1, b1) = (
            tape.constant(self.w1.clone()),
            tape.constant(self.b1.clone()),
        );
        let (w2, b2) = (
            tape.constant(self.w2.clone()),
            tape.constant(self.b2.clone()),
        );
        let h = (w1.matmul(&x) + b1).tanh();
        (w2.matmul(&h) + b2).tanh().sum_all()
    }
}

/// Runs W5 and pushes `w5.grad_us`, `w5.hvp_us`, `w5.ratio` and a checksum of `H v`.
pub fn run(report: &mut Report, quick: bool) {
    let n = if quick { 50 } else { N };
    let (warmup, reps) = if quick { (1, 3) } else { (5, 51) };
    let net = Net::new(n);
    let x: ArrayD<f64> = Array1::from_shape_fn(n, |i| (i as f64).sin()).into_dyn();
    let v: ArrayD<f64> = Array1::from_shape_fn(n, |i| (i as f64).cos()).into_dyn();
    let f = transforms::func(|x| net.g(x));

    let hv = transforms::hvp(f, &x, &v).expect("W5 hvp");
    report.push_exact("w5.checksum_hv_sum", hv.sum(), "-");
    // Check H v against a central difference of the gradient along v.
    let eps = 1e-5;
    let up = transforms::grad(f, &(&x + &(&v * eps))).expect("W5 grad");
    let down = transforms::grad(f, &(&x - &(&v * eps))).expect("W5 grad");
    let fd = (&up - &down) / (2.0 * eps);
    let err = (&fd - &hv).iter().fold(0.0f64, |m, e| m.max(e.abs()));
    let scale = hv.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    if err.is_nan() || err > 1e-5 * (1.0 + scale) {
        report.fail(format!(
            "w5: H v differs from finite differences by {err:e}"
        ));
    }

    let grad = median_ns(warmup, reps, || {
        transforms::grad(f, black_box(&x)).map(|g| g[0])
    });
    let hvp = median_ns(warmup, reps, || {
        transforms::hvp(f, black_box(&x), &v).map(|h| h[0])
    });
    report.push("w5.grad_us", grad / 1e3, "us");
    report.push("w5.hvp_us", hvp / 1e3, "us");
    report.push("w5.ratio", hvp / grad, "x");

    // The full Hessian (batched forward sweeps over one recorded gradient) against one
    // HVP in the same run.
    let h = transforms::hessian(f, &x).expect("W5 hessian");
    let hv_from_h = h
        .into_shape_with_order((n, n))
        .expect("[n, n]")
        .dot(&v.view().into_dimensionality::<ndarray::Ix1>().expect("1-D"));
    let err = hv_from_h
        .iter()
        .zip(hv.iter())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    if err.is_nan() || err > 1e-10 * (1.0 + scale) {
        report.fail(format!("w5: H · v differs from hvp by {err:e}"));
    }
    let hess_reps = if quick { 1 } else { 7 };
    let hessian = median_ns(1, hess_reps, || {
        transforms::hessian(f, black_box(&x)).map(|h| h.len())
    });
    report.push("w5.hessian_ms", hessian / 1e6, "ms");
    report.push("w5.hessian_over_hvp", hessian / hvp, "x");
}
