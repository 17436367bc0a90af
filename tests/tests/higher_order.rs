//! Grad of grad of the ops crate's primitives against closed forms, through the
//! functional transforms (`derivatives`, `grad_fn`, `hessian`).

use retrograd::ops::prelude::*;
use retrograd::tape::transforms::{derivatives, grad_fn, hessian, hvp};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

#[test]
fn four_derivatives_of_sin() {
    for x in [-1.3, 0.0, 0.7, 2.5f64] {
        let d = derivatives(|x| x.sin(), x, 4).unwrap();
        let expect = [x.sin(), x.cos(), -x.sin(), -x.cos(), x.sin()];
        for (a, b) in d.iter().zip(expect) {
            assert!(close(*a, b), "at {x}: {d:?} vs {expect:?}");
        }
    }
}

#[test]
fn derivatives_of_softplus() {
    // softplus' = σ, softplus'' = σ(1 - σ), softplus''' = σ(1 - σ)(1 - 2σ).
    for x in [-3.0, -0.5, 0.0, 1.2, 4.0f64] {
        let s = 1.0 / (1.0 + (-x).exp());
        let d = derivatives(|x| x.softplus(), x, 3).unwrap();
        let expect = [
            (1.0 + x.exp()).ln(),
            s,
            s * (1.0 - s),
            s * (1.0 - s) * (1.0 - 2.0 * s),
        ];
        for (a, b) in d.iter().zip(expect) {
            assert!(close(*a, b), "at {x}: {d:?} vs {expect:?}");
        }
    }
}

#[test]
fn second_derivative_of_tanh_by_composed_grad_fn() {
    // tanh'' = -2 tanh (1 - tanh²).
    let d2 = grad_fn(grad_fn(|x| x.tanh()));
    let tape = Tape::<f64>::new();
    for x in [-0.8, 0.3, 1.5f64] {
        let t = x.tanh();
        assert!(close(d2(tape.var(x)).item(), -2.0 * t * (1.0 - t * t)));
    }
}

#[test]
fn hessian_of_a_small_network_loss_is_symmetric_and_matches_hvp() {
    // f(x) = Σ softplus(W tanh(x)) for a fixed W: the Hessian is symmetric, and its
    // columns are Hessian-vector products.
    let w: ndarray::Array2<f64> = ndarray::array![[0.5, -1.0, 0.3], [1.2, 0.1, -0.7]];
    let x: ndarray::ArrayD<f64> = ndarray::array![0.2, -0.4, 0.9].into_dyn();
    let f = retrograd::tape::transforms::func(|x| {
        let w = x.tape().constant(w.clone());
        w.matmul(&x.tanh()).softplus().sum_all()
    });
    let h = hessian(f, &x)
        .unwrap()
        .into_shape_with_order((3, 3))
        .unwrap();
    for i in 0..3 {
        for j in 0..3 {
            assert!((h[[i, j]] - h[[j, i]]).abs() < 1e-12, "{h}");
        }
    }
    let e1 = ndarray::array![0.0, 1.0, 0.0].into_dyn();
    let col = hvp(f, &x, &e1).unwrap();
    for i in 0..3 {
        assert!((col[i] - h[[i, 1]]).abs() < 1e-12);
    }
}
