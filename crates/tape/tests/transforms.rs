//! Property and closed-form tests of the derivative transforms and the chain product.
//!
//! Random programs over the engine's arithmetic (`+ - * /` with broadcasting, scalar
//! operands) check that forward mode, reverse mode and finite differences agree, that
//! Hessian-vector products match finite differences of the gradient and that Hessians are
//! symmetric; random chains check the matrix-chain programme against brute force.

use ndarray::{Array1, Array2, ArrayD, Dimension, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use retrograd_tape::arith::sum_to;
use retrograd_tape::chain::{Bracketing, chain_costs, chain_jacobian, multiply_in};
use retrograd_tape::transforms::{
    Mode, derivatives, func, grad, grad_fn, hessian, hvp, jacfwd, jacobian, jacrev, jvp,
    value_and_grad, vjp,
};
use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tape, Tensor, Val, Var};

/// Deterministic and fast: a fixed seed, no persistence files.
fn config() -> Config {
    Config {
        cases: 32,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(7),
        ..Config::default()
    }
}

/// One step of a random program: an op on two earlier values (indices taken modulo the
/// number of values so far), or on one value and a scalar.
#[derive(Clone, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    /// `a / (b² + 1)`: a division whose denominator stays away from zero.
    Div,
    AddC(f64),
    MulC(f64),
    /// `c - a`
    CSub(f64),
    /// `c / (a² + 1)`
    CDiv(f64),
}

#[derive(Clone, Debug)]
struct Program {
    /// A constant of shape `[m, 1]`, which broadcasts against the `[n]` input to `[m, n]`.
    c: ArrayD<f64>,
    steps: Vec<(Op, usize, usize)>,
}

impl Program {
    fn run<'t>(&self, x: Var<'t, f64>) -> Var<'t, f64> {
        let mut vals = vec![x, x.tape().constant(self.c.clone())];
        for (op, a, b) in &self.steps {
            let (a, b) = (vals[a % vals.len()], vals[b % vals.len()]);
            vals.push(match *op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div => a / (b * b + 1.0),
                Op::AddC(c) => a + c,
                Op::MulC(c) => a * c,
                Op::CSub(c) => c - a,
                Op::CDiv(c) => c / (a * a + 1.0),
            });
        }
        // Make sure the output depends on the input (otherwise every check is 0 == 0).
        *vals.last().unwrap() * x
    }

    fn scalar<'t>(&self, x: Var<'t, f64>) -> Var<'t, f64> {
        let y = self.run(x);
        sum_to(&(y * y), &[])
    }
}

fn op() -> impl Strategy<Value = Op> {
    let c = -2.0..2.0f64;
    prop_oneof![
        Just(Op::Add),
        Just(Op::Sub),
        Just(Op::Mul),
        Just(Op::Div),
        c.clone().prop_map(Op::AddC),
        c.clone().prop_map(Op::MulC),
        c.clone().prop_map(Op::CSub),
        c.prop_map(Op::CDiv),
    ]
}

fn array(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<f64>> {
    let len: usize = shape.iter().product();
    proptest::collection::vec(-1.0..1.0f64, len)
        .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
}

/// A random program and a point `x` of shape `[n]`.
fn program_and_point() -> impl Strategy<Value = (Program, ArrayD<f64>)> {
    (1..4usize, 1..4usize).prop_flat_map(|(n, m)| {
        (
            array(vec![m, 1]),
            proptest::collection::vec((op(), 0..16usize, 0..16usize), 1..7),
            array(vec![n]),
        )
            .prop_map(|(c, steps, x)| (Program { c, steps }, x))
    })
}

/// Evaluates `f` at `x` on a fresh tape.
fn eval(f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>, x: &ArrayD<f64>) -> ArrayD<f64> {
    let tape = Tape::new();
    f(tape.var(x.clone())).array()
}

/// The Jacobian by central differences, shape `out ++ in`.
fn fd_jacobian(
    f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64> + Copy,
    x: &ArrayD<f64>,
) -> ArrayD<f64> {
    let h = 1e-6;
    let y = eval(f, x);
    let (n, m) = (x.len(), y.len());
    let mut jac = Array2::zeros((m, n));
    for i in 0..n {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.as_slice_mut().unwrap()[i] += h;
        xm.as_slice_mut().unwrap()[i] -= h;
        let d = (eval(f, &xp) - eval(f, &xm)) / (2.0 * h);
        jac.column_mut(i)
            .assign(&Array1::from_iter(d.iter().copied()));
    }
    let shape: Vec<usize> = y.shape().iter().chain(x.shape()).copied().collect();
    jac.into_shape_with_order(IxDyn(&shape)).unwrap()
}

fn assert_close(what: &str, a: &ArrayD<f64>, b: &ArrayD<f64>, rtol: f64, atol: f64) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    for ((i, x), y) in a.indexed_iter().zip(b.iter()) {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs().max(x.abs()),
            "{what}: at {:?}, {x} vs {y}",
            i.as_array_view().to_vec()
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn jacfwd_jacrev_and_finite_differences_agree((p, x) in program_and_point()) {
        let jf = jacfwd(|x| p.run(x), &x).unwrap();
        let jr = jacrev(|x| p.run(x), &x).unwrap();
        let fd = fd_jacobian(|x| p.run(x), &x);
        assert_close("jacfwd vs jacrev", &jf, &jr, 1e-10, 1e-12);
        assert_close("jacrev vs finite differences", &jr, &fd, 1e-5, 1e-6);
        // Both modes of `jacobian` give the same matrix, and Auto picks one of them.
        let auto = jacobian(|x| p.run(x), &x, Mode::Auto).unwrap();
        assert_ne!(auto.mode, Mode::Auto);
        assert_close("jacobian(Auto)", &auto.jacobian, &jr, 1e-10, 1e-12);
        prop_assert_eq!(auto.value, eval(|x| p.run(x), &x));
    }

    #[test]
    fn jvp_and_vjp_are_a_column_and_a_row((p, x) in program_and_point()) {
        let j = jacrev(|x| p.run(x), &x).unwrap();
        let (n, m) = (x.len(), j.len() / x.len());
        let j2 = j.into_shape_with_order((m, n)).unwrap();
        let v = ArrayD::from_shape_fn(x.raw_dim(), |i| 0.5 - i[0] as f64);
        let (_, jv) = jvp(|x| p.run(x), &x, &v).unwrap();
        let v1 = Array1::from_iter(v.iter().copied());
        let expect = j2.dot(&v1);
        assert_close("jvp", &Array1::from_iter(jv.iter().copied()).into_dyn(), &expect.into_dyn(), 1e-10, 1e-12);
        let (y, pullback) = vjp(|x| p.run(x), &x);
        // Several cotangents through one recording.
        for k in 0..2 {
            let u = ArrayD::from_shape_fn(y.raw_dim(), |i| (i.as_array_view().sum() + k) as f64 - 1.0);
            let ut_j = pullback.call(&u).unwrap();
            let u1 = Array1::from_iter(u.iter().copied());
            let expect = u1.dot(&j2);
            assert_close("vjp", &Array1::from_iter(ut_j.iter().copied()).into_dyn(), &expect.into_dyn(), 1e-10, 1e-12);
        }
    }

    #[test]
    fn hvp_matches_finite_differences_of_the_gradient((p, x) in program_and_point()) {
        let v = ArrayD::from_shape_fn(x.raw_dim(), |i| 1.0 - 0.7 * i[0] as f64);
        let hv = hvp(|x| p.scalar(x), &x, &v).unwrap();
        let h = 1e-6;
        let gp = grad(|x| p.scalar(x), &(&x + &(&v * h))).unwrap();
        let gm = grad(|x| p.scalar(x), &(&x - &(&v * h))).unwrap();
        let fd = (gp - gm) / (2.0 * h);
        assert_close("hvp vs finite differences", &hv, &fd, 1e-5, 1e-6);
    }

    #[test]
    fn the_hessian_is_symmetric_and_its_columns_are_hvps((p, x) in program_and_point()) {
        let h = hessian(|x| p.scalar(x), &x).unwrap();
        let n = x.len();
        prop_assert_eq!(h.shape(), &[n, n]);
        let h2 = h.clone().into_shape_with_order((n, n)).unwrap();
        assert_close("H vs Hᵀ", &h2.clone().into_dyn(), &h2.t().to_owned().into_dyn(), 1e-9, 1e-10);
        let e0 = ArrayD::from_shape_fn(x.raw_dim(), |i| if i[0] == 0 { 1.0 } else { 0.0 });
        let col = hvp(|x| p.scalar(x), &x, &e0).unwrap();
        assert_close("H e0", &h2.column(0).to_owned().into_dyn(), &col, 1e-12, 1e-12);
        // And the Hessian is the Jacobian of the gradient.
        let jg = jacrev(grad_fn(|x| p.scalar(x)), &x).unwrap();
        assert_close("H vs jacrev(grad)", &h, &jg, 1e-9, 1e-10);
    }

    #[test]
    fn the_chain_programme_is_optimal(widths in proptest::collection::vec(1..8usize, 2..8)) {
        let c = chain_costs(&widths);
        prop_assert!(c.optimal <= c.forward.min(c.reverse));
        prop_assert_eq!(c.bracketing.cost(&widths), c.optimal);
        prop_assert_eq!(Bracketing::forward(widths.len() - 1).cost(&widths), c.forward);
        prop_assert_eq!(Bracketing::reverse(widths.len() - 1).cost(&widths), c.reverse);
        let all = all_bracketings(1, widths.len() - 1);
        let best = all.iter().map(|b| b.cost(&widths)).min().unwrap();
        prop_assert_eq!(c.optimal, best);
    }

    #[test]
    fn every_order_gives_the_naive_product(
        (widths, seed) in (proptest::collection::vec(1..6usize, 2..8), any::<u64>())
    ) {
        let js = random_chain(&widths, seed);
        let naive = js.iter().skip(1).fold(js[0].clone(), |acc, j| j.dot(&acc));
        let p = chain_jacobian(&js);
        let close = |a: &Array2<f64>| a.iter().zip(naive.iter()).all(|(x, y)| (x - y).abs() <= 1e-10 * (1.0 + y.abs()));
        prop_assert!(close(&p.jacobian));
        prop_assert_eq!(p.cost_optimal, chain_costs(&widths).optimal);
        prop_assert!(close(&multiply_in(&js, &Bracketing::forward(js.len()))));
        prop_assert!(close(&multiply_in(&js, &Bracketing::reverse(js.len()))));
    }

    #[test]
    fn layered_chains_agree_with_their_chain_product(
        (widths, seed, x0) in (proptest::collection::vec(1..5usize, 2..6), any::<u64>(), -1.0..1.0f64)
    ) {
        // Layers z ↦ s(W_k z) (see `layer_apply`).
        let ws = random_chain(&widths, seed);
        let layer = |k: usize| {
            let w = ws[k].clone();
            func(move |z| layer_apply(&w, k, z))
        };
        let shape_in = |k: usize| if k.is_multiple_of(2) { vec![widths[k], 1] } else { vec![1, widths[k]] };
        let x = ArrayD::from_shape_fn(IxDyn(&shape_in(0)), |i| x0 + 0.3 * (i[0] as f64));
        // Per-layer Jacobians at the point each layer sees.
        let mut z = x.clone();
        let mut jacs = Vec::new();
        for k in 0..ws.len() {
            let j = jacfwd(layer(k), &z).unwrap();
            jacs.push(j.into_shape_with_order((widths[k + 1], widths[k])).unwrap());
            z = eval(layer(k), &z);
        }
        let whole = func(|x| {
            let mut z = x;
            for (k, w) in ws.iter().enumerate() {
                z = layer_apply(w, k, z);
            }
            z
        });
        let n_out = widths[widths.len() - 1];
        let jr = jacrev(whole, &x).unwrap().into_shape_with_order((n_out, widths[0])).unwrap();
        let jf = jacfwd(whole, &x).unwrap().into_shape_with_order((n_out, widths[0])).unwrap();
        let p = chain_jacobian(&jacs);
        assert_close("chain product vs jacrev", &p.jacobian.into_dyn(), &jr.clone().into_dyn(), 1e-10, 1e-12);
        assert_close("jacfwd vs jacrev", &jf.into_dyn(), &jr.into_dyn(), 1e-10, 1e-12);
    }
}

/// Layer `k` of the test chain: `z ↦ s(W z)` with `s(u) = u / (u² + 1)`, the
/// matrix-vector product written with broadcasting and `sum_to` (the engine has no
/// matmul): inputs alternate between a column `[a, 1]` (even `k`) and a row `[1, a]`.
fn layer_apply<'t>(w: &Array2<f64>, k: usize, z: Var<'t, f64>) -> Var<'t, f64> {
    let b = w.nrows();
    let u = if k.is_multiple_of(2) {
        // z: [a, 1]; Wᵀ: [a, b]; sum over rows -> [1, b].
        sum_to(&(z.tape().constant(w.t().to_owned()) * z), &[1, b])
    } else {
        // z: [1, a]; W: [b, a]; sum over columns -> [b, 1].
        sum_to(&(z.tape().constant(w.clone()) * z), &[b, 1])
    };
    u / (u * u + 1.0)
}

/// Every bracketing of factors `lo..=hi`.
fn all_bracketings(lo: usize, hi: usize) -> Vec<Bracketing> {
    if lo == hi {
        return vec![Bracketing::Factor(lo)];
    }
    let mut out = Vec::new();
    for mid in lo..hi {
        for right in all_bracketings(lo, mid) {
            for left in all_bracketings(mid + 1, hi) {
                out.push(Bracketing::Product(
                    Box::new(left.clone()),
                    Box::new(right.clone()),
                ));
            }
        }
    }
    out
}

/// Matrices `J_k` of shape `[widths[k], widths[k-1]]` with values in [-1, 1], from a seed
/// (a small linear congruential generator: enough for test data).
fn random_chain(widths: &[usize], seed: u64) -> Vec<Array2<f64>> {
    let mut s = seed | 1;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    widths
        .windows(2)
        .map(|w| Array2::from_shape_fn((w[1], w[0]), |_| next()))
        .collect()
}

#[test]
fn brute_force_counts_catalan_many_bracketings() {
    // Sanity of the brute force itself: C(l-1) bracketings of l factors.
    let catalan = [1, 1, 2, 5, 14, 42];
    for (l, &c) in (1..=6).zip(&catalan) {
        assert_eq!(all_bracketings(1, l).len(), c);
    }
}

// Closed forms of grad of grad.

#[test]
fn grad_of_grad_of_x_cubed_is_6x() {
    let d2 = grad_fn(grad_fn(|x| x * x * x));
    let tape = Tape::<f64>::new();
    for x in [-2.0, 0.5, 3.0] {
        assert!((d2(tape.var(x)).item() - 6.0 * x).abs() < 1e-12);
    }
    assert_eq!(
        derivatives(|x| x * x * x, 2.0, 4).unwrap(),
        vec![8.0, 12.0, 12.0, 6.0, 0.0]
    );
}

#[test]
fn derivatives_of_the_reciprocal() {
    // 1/x, -1/x², 2/x³, -6/x⁴, 24/x⁵.
    let x: f64 = 1.5;
    let d = derivatives(|x| 1.0 / x, x, 4).unwrap();
    let expect = [
        1.0 / x,
        -1.0 / x.powi(2),
        2.0 / x.powi(3),
        -6.0 / x.powi(4),
        24.0 / x.powi(5),
    ];
    for (a, b) in d.iter().zip(expect) {
        assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn derivatives_of_a_quotient_in_f32() {
    // x / (x² + 1) at 0: 0, 1, 0, -6.
    let d = derivatives(|x| x / (x * x + 1.0f32), 0.0f32, 3).unwrap();
    let expect = [0.0f32, 1.0, 0.0, -6.0];
    for (a, b) in d.iter().zip(expect) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// `sin` and `cos` as custom rules, each differentiated with the other: the derivative
/// chain sin → cos → -sin → -cos → sin exercises recorded sweeps four deep.
struct Sin;
struct Cos;

fn sin<'t, T: Float>(x: &Val<'t, T>) -> Val<'t, T> {
    Val::apply(Sin, &[x])
}
fn cos<'t, T: Float>(x: &Val<'t, T>) -> Val<'t, T> {
    Val::apply(Cos, &[x])
}

impl<T: Float> Rule<T> for Sin {
    fn name(&self) -> &'static str {
        "sin"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].map(|v| v.sin()))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(g * &cos(cx.input(0)))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| t * &cos(cx.input(0)))
    }
}

impl<T: Float> Rule<T> for Cos {
    fn name(&self) -> &'static str {
        "cos"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].map(|v| v.cos()))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(-(g * &sin(cx.input(0))))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| -(t * &sin(cx.input(0))))
    }
}

#[test]
fn four_derivatives_of_sin() {
    let x: f64 = 0.7;
    let d = derivatives(|x| Var::apply(Sin, &[&x]), x, 4).unwrap();
    let expect = [x.sin(), x.cos(), -x.sin(), -x.cos(), x.sin()];
    for (a, b) in d.iter().zip(expect) {
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
    }
    let d4 = grad_fn(grad_fn(grad_fn(grad_fn(|x| Var::apply(Sin, &[&x])))));
    let tape = Tape::<f64>::new();
    assert!((d4(tape.var(x)).item() - x.sin()).abs() < 1e-14);
}

#[test]
fn hessian_of_sin_of_a_product() {
    // f(x) = sin(x0 x1): H = [[-x1² s, c - x0 x1 s], [c - x0 x1 s, -x0² s]].
    let f = func(|x| {
        let e0 = x.tape().constant(ndarray::array![1.0, 0.0]);
        let x0 = sum_to(&(x * e0), &[]);
        let x1 = sum_to(&(x * (1.0 - e0)), &[]);
        Var::apply(Sin, &[&(x0 * x1)])
    });
    let (a, b) = (0.4f64, -1.3f64);
    let (s, c) = ((a * b).sin(), (a * b).cos());
    let h = hessian(f, &ndarray::array![a, b].into_dyn()).unwrap();
    let expect = ndarray::array![[-b * b * s, c - a * b * s], [c - a * b * s, -a * a * s]];
    assert_close("hessian", &h, &expect.into_dyn(), 1e-14, 1e-14);
    let (v, g) = value_and_grad(f, &ndarray::array![a, b].into_dyn()).unwrap();
    assert_eq!(v, s);
    assert_close(
        "grad",
        &g,
        &ndarray::array![b * c, a * c].into_dyn(),
        1e-14,
        1e-14,
    );
}
