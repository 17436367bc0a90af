//! The gradient-checking kit: compare reverse mode, forward mode and finite differences.
//!
//! A rule that computes a wrong derivative produces numbers that look fine; the only
//! defence is to check. [`check_gradients`] takes any function of tensors (built from
//! retrograd's ops or your own [`Rule`]s) and a point, and checks, in `f64`:
//!
//! 1. **reverse vs finite differences**: `Jᵀw` for a random cotangent `w` against central
//!    differences of `⟨w, f(x)⟩`, entry by entry;
//! 2. **forward vs finite differences**: `J v` for a random tangent `v` against
//!    `(f(x + h v) − f(x − h v)) / 2h`;
//! 3. **the transpose identity** between the two modes: `⟨w, J v⟩ = ⟨Jᵀw, v⟩`;
//! 4. **second order** (unless [`CheckOptions::first_order_only`]): the Hessian-vector
//!    products of `⟨w, f⟩` and of `⟨w, f²⟩/2`, computed forward-over-reverse and
//!    reverse-over-reverse, against finite differences of the gradient. This exercises the
//!    rules' own derivatives; the squared form feeds each VJP a cotangent that depends on
//!    `x`, so a rule that reads its cotangent's value instead of differentiating through
//!    it is caught even when the op is linear.
//! 5. **batched sweeps** against one-tangent sweeps: three tangents pushed at once
//!    ([`Tape::jvp_batch`]) and three cotangents pulled at once ([`Tape::vjp_batch`]) must
//!    give what three separate sweeps give, to rounding; with second order, the same over
//!    the recorded gradient, which runs the batched rules of the VJPs' own ops.
//!
//! On failure, [`CheckFailure`] names the check, the input, the worst entry's index, both
//! values and the tolerance used.
//!
//! ```
//! use retrograd_tape::check::{check_gradients, CheckOptions};
//! use ndarray::array;
//!
//! // f(a, b) = a * b / (a + b), elementwise with broadcasting.
//! let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
//! let b = array![0.5, 1.5].into_dyn();
//! let report = check_gradients(|x| x[0] * x[1] / (x[0] + x[1]), &[a, b], &CheckOptions::default())
//!     .unwrap();
//! assert!(report.max_error < 1.0); // the worst entry used this fraction of its tolerance
//! ```

use std::fmt;

use ndarray::{ArrayD, Dimension, IxDyn, Zip};

use crate::error::Error;
use crate::forward::JvpOptions;
use crate::grad::GradOptions;
use crate::rule::{Rule, RuleCtx};
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::{Val, Var};

/// Step and tolerances of a gradient check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Step of the central differences (absolute). The truncation error is `O(h²)` and the
    /// rounding error `O(ε/h)`; `1e-5` balances them for values of order one.
    pub eps: f64,
    /// Relative tolerance: `|a − b| ≤ atol + rtol · max(|a|, |b|)` passes.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Seed of the random cotangent and tangent directions.
    pub seed: u64,
    /// Whether to check Hessian-vector products too.
    pub second_order: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            eps: 1e-5,
            rtol: 1e-5,
            atol: 1e-6,
            seed: 0x5eed,
            second_order: true,
        }
    }
}

impl CheckOptions {
    /// Sets the relative and absolute tolerances.
    pub fn tolerance(mut self, rtol: f64, atol: f64) -> Self {
        self.rtol = rtol;
        self.atol = atol;
        self
    }
    /// Sets the finite-difference step.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Sets the seed of the random directions.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Skips the second-order checks (for functions that are not twice differentiable
    /// at the point, or to save time).
    pub fn first_order_only(mut self) -> Self {
        self.second_order = false;
        self
    }
}

/// What a passing check compared.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Number of scalar comparisons made.
    pub comparisons: usize,
    /// The largest `|a − b| / (atol + rtol · max(|a|, |b|))` seen: below 1 passes.
    pub max_error: f64,
}

/// Why a check failed: a comparison that disagreed, or a sweep that could not run.
///
/// `{:?}` prints the same text as `{}`: an error that reaches the end of `main` through `?`
/// is printed with `Debug`, and there the message is what helps. Match the variants for
/// the structured facts.
#[derive(Clone)]
#[non_exhaustive]
pub enum CheckFailure {
    /// A comparison disagreed beyond its tolerance.
    Mismatch(Mismatch),
    /// A sweep the check needed returned an error (the function's output does not depend on
    /// its inputs through recorded ops, say, or anomaly mode found a NaN).
    Sweep {
        /// Which sweep (`"reverse sweep"`, `"forward sweep over the gradient"`, ...).
        stage: &'static str,
        /// The sweep's error.
        error: Error,
    },
}

impl CheckFailure {
    /// The disagreeing comparison, if that is what failed.
    pub fn mismatch(&self) -> Option<&Mismatch> {
        match self {
            CheckFailure::Mismatch(m) => Some(m),
            CheckFailure::Sweep { .. } => None,
        }
    }
}

/// A failed comparison: which one, where, and by how much.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// The comparison that failed (`"reverse vs finite differences"`, ...).
    pub check: &'static str,
    /// The input the entry belongs to (`None` for comparisons over the output).
    pub input: Option<usize>,
    /// The index of the worst entry.
    pub index: Vec<usize>,
    /// The value computed by automatic differentiation.
    pub got: f64,
    /// The reference value (finite differences or the other mode).
    pub expected: f64,
    /// The tolerance that entry had to meet.
    pub tolerance: f64,
    /// The point the function was checked at.
    pub inputs: Vec<ArrayD<f64>>,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Mismatch(m) => m.fmt(f),
            CheckFailure::Sweep { stage, error } => {
                write!(f, "gradient check failed: the {stage} failed: {error}")
            }
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gradient check failed: {}", self.check)?;
        if let Some(i) = self.input {
            write!(f, ", input {i} (shape {:?})", self.inputs[i].shape())?;
        }
        writeln!(
            f,
            " at index {:?}: got {:.10e}, expected {:.10e}, |difference| {:.3e} > tolerance {:.3e}",
            self.index,
            self.got,
            self.expected,
            (self.got - self.expected).abs(),
            self.tolerance
        )?;
        for (i, x) in self.inputs.iter().enumerate() {
            writeln!(f, "input {i}: {x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for CheckFailure {}

/// A small deterministic generator for the check's random directions (splitmix64).
struct Directions(u64);

impl Directions {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Uniform in [-1, 1), never tiny in magnitude on average.
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    fn array(&mut self, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.next())
    }
}

/// Accumulates comparisons, remembering the worst.
struct Comparer<'a> {
    opts: &'a CheckOptions,
    inputs: &'a [ArrayD<f64>],
    comparisons: usize,
    max_error: f64,
}

impl Comparer<'_> {
    fn compare(
        &mut self,
        check: &'static str,
        input: Option<usize>,
        got: &ArrayD<f64>,
        expected: &ArrayD<f64>,
    ) -> Result<(), CheckFailure> {
        let mut worst: Option<(f64, Vec<usize>, f64, f64, f64)> = None;
        for ((index, &g), &e) in got.indexed_iter().zip(expected.iter()) {
            self.comparisons += 1;
            let tol = self.opts.atol + self.opts.rtol * g.abs().max(e.abs());
            // NaN compares false: treat any NaN as an infinite error.
            let err = if (g - e).abs() <= f64::MAX {
                (g - e).abs() / tol
            } else {
                f64::INFINITY
            };
            if worst.as_ref().is_none_or(|w| err > w.0) {
                worst = Some((err, index.slice().to_vec(), g, e, tol));
            }
        }
        if let Some((err, index, got, expected, tolerance)) = worst {
            self.max_error = self.max_error.max(err);
            if err.is_nan() || err > 1.0 {
                return Err(CheckFailure::Mismatch(Mismatch {
                    check,
                    input,
                    index,
                    got,
                    expected,
                    tolerance,
                    inputs: self.inputs.to_vec(),
                }));
            }
        }
        Ok(())
    }
}

fn dot(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    Zip::from(a).and(b).fold(0.0, |acc, &x, &y| acc + x * y)
}

/// Evaluates `f` at a point without recording anything.
fn eval<F>(f: &F, xs: &[ArrayD<f64>]) -> ArrayD<f64>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::new();
    let vars: Vec<_> = xs.iter().map(|x| tape.constant(x.clone())).collect();
    f(&vars).array()
}

/// The gradient of `⟨w, f(x)⟩` at a point, by reverse mode.
fn gradient<F>(f: &F, xs: &[ArrayD<f64>], w: &ArrayD<f64>) -> Result<Vec<ArrayD<f64>>, CheckFailure>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::new();
    let vars: Vec<_> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let y = f(&vars);
    tape.vjp(y, w.clone(), &vars)
        .map_err(sweep("reverse sweep"))
}

/// Wraps a sweep's error as the check's failure.
fn sweep(stage: &'static str) -> impl Fn(Error) -> CheckFailure {
    move |error| CheckFailure::Sweep { stage, error }
}

/// `x + s·v` for each input.
fn step(xs: &[ArrayD<f64>], vs: &[ArrayD<f64>], s: f64) -> Vec<ArrayD<f64>> {
    xs.iter().zip(vs).map(|(x, v)| x + &(v * s)).collect()
}

/// Gives a closure the higher-ranked signature the checks take (closure lifetimes are not
/// inferred as higher-ranked from the body alone).
fn higher_ranked<F>(f: F) -> F
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    f
}

/// Compares the Hessian-vector products of `⟨w, f⟩` in direction `v`, forward over
/// reverse and reverse over reverse, with central differences of the gradient.
fn hessian_vector_products<F>(
    f: &F,
    inputs: &[ArrayD<f64>],
    w: &ArrayD<f64>,
    vs: &[ArrayD<f64>],
    h: f64,
    cmp: &mut Comparer<'_>,
    labels: [&'static str; 2],
) -> Result<(), CheckFailure>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::new();
    let xs: Vec<_> = inputs.iter().map(|x| tape.var(x.clone())).collect();
    let y = f(&xs);
    let g: Vec<_> = tape
        .grad_with(y, &xs, &GradOptions::new().create_graph().seed(w.clone()))
        .map_err(sweep("recorded reverse sweep"))?
        .into_iter()
        .map(|v| v.into_var(&tape))
        .collect();
    let tangents = vs
        .iter()
        .map(|v| Val::Const(Tensor::from_array(v.clone())))
        .collect();
    let hv_fwd: Vec<_> = tape
        .jvp_with(&g, &xs, tangents, &JvpOptions::new())
        .map_err(sweep("forward sweep over the gradient"))?
        .into_iter()
        .map(|v| v.into_value().into_array())
        .collect();
    let mut dirs = Directions(w.len() as u64 ^ 0x5eed);
    let batch_labels = [
        "batched forward sweep over the gradient vs one tangent at a time",
        "batched reverse sweep over the gradient vs one cotangent at a time",
    ];
    batched_sweeps(&tape, &g, &xs, &mut dirs, cmp, batch_labels)?;
    let mut gv: Option<Var<'_, f64>> = None;
    for (gi, v) in g.iter().zip(vs) {
        let term = crate::arith::sum_to(&(*gi * tape.constant(v.clone())), &[]);
        gv = Some(match gv {
            None => term,
            Some(acc) => acc + term,
        });
    }
    let hv_rev = match gv {
        Some(gv) => tape
            .grad_with(gv, &xs, &GradOptions::new())
            .map_err(sweep("reverse sweep over the gradient"))?
            .into_iter()
            .map(|v| v.into_value().into_array())
            .collect::<Vec<_>>(),
        None => Vec::new(),
    };
    let g_plus = gradient(f, &step(inputs, vs, h), w)?;
    let g_minus = gradient(f, &step(inputs, vs, -h), w)?;
    for i in 0..inputs.len() {
        let fd = (&g_plus[i] - &g_minus[i]) / (2.0 * h);
        cmp.compare(labels[0], Some(i), &hv_fwd[i], &fd)?;
        cmp.compare(labels[1], Some(i), &hv_rev[i], &fd)?;
    }
    Ok(())
}

/// How many tangents or cotangents the kit's batched comparisons push at once.
const CHECK_BATCH: usize = 3;

/// Compares the batched sweeps over a recording with one sweep per batch element: a batch
/// of random tangents from `inputs` to `outputs`, and (for each output) a batch of random
/// cotangents back to `inputs`. Agreement is to rounding, under the check's tolerance.
fn batched_sweeps(
    tape: &Tape<f64>,
    outputs: &[Var<'_, f64>],
    inputs: &[Var<'_, f64>],
    dirs: &mut Directions,
    cmp: &mut Comparer<'_>,
    labels: [&'static str; 2],
) -> Result<(), CheckFailure> {
    let k = CHECK_BATCH;
    let batch_of =
        |dirs: &mut Directions, shape: &[usize]| dirs.array(&crate::batch::batched_shape(k, shape));
    let tangents: Vec<ArrayD<f64>> = inputs.iter().map(|x| batch_of(dirs, &x.shape())).collect();
    let batched = tape
        .jvp_batch(
            outputs,
            inputs,
            tangents.iter().cloned().map(Tensor::from_array).collect(),
        )
        .map_err(sweep("batched forward sweep"))?;
    for b in 0..k {
        let one: Vec<Val<'_, f64>> = tangents
            .iter()
            .map(|t| {
                Val::Const(Tensor::from_array(
                    t.index_axis(ndarray::Axis(0), b).to_owned(),
                ))
            })
            .collect();
        let single = tape
            .jvp_with(outputs, inputs, one, &JvpOptions::new())
            .map_err(sweep("forward sweep"))?;
        for (out, s) in batched.iter().zip(single) {
            let got = out.index_axis(ndarray::Axis(0), b).to_owned();
            cmp.compare(labels[0], None, &got, &s.value().into_array())?;
        }
    }
    for y in outputs {
        let w = batch_of(dirs, &y.shape());
        let batched = tape
            .vjp_batch(*y, Tensor::from_array(w.clone()), inputs)
            .map_err(sweep("batched reverse sweep"))?;
        for b in 0..k {
            let seed = w.index_axis(ndarray::Axis(0), b).to_owned();
            let opts = GradOptions::new().retain_graph().seed(seed);
            let single = tape
                .grad_with(*y, inputs, &opts)
                .map_err(sweep("reverse sweep"))?;
            for (i, (g, s)) in batched.iter().zip(single).enumerate() {
                let got = g.index_axis(ndarray::Axis(0), b).to_owned();
                cmp.compare(labels[1], Some(i), &got, &s.value().into_array())?;
            }
        }
    }
    Ok(())
}

/// Checks `f`'s derivatives at `inputs` in every way the engine computes them. See the
/// [module docs](self) for the list of comparisons.
///
/// `f` must be deterministic and built from differentiable ops; it is evaluated
/// `2 · (number of input elements) + 6` times (plus the gradient at 2 more points for the
/// second-order check), so keep inputs small.
///
/// # Errors
/// [`CheckFailure::Mismatch`]: the first comparison that fails, with its worst entry;
/// [`CheckFailure::Sweep`]: a sweep itself failed (an input the output cannot be
/// differentiated with respect to, a freed graph, anomaly mode's NaN).
pub fn check_gradients<F>(
    f: F,
    inputs: &[ArrayD<f64>],
    opts: &CheckOptions,
) -> Result<CheckReport, CheckFailure>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let mut dirs = Directions(opts.seed);
    let mut cmp = Comparer {
        opts,
        inputs,
        comparisons: 0,
        max_error: 0.0,
    };
    let h = opts.eps;

    let tape = Tape::new();
    let xs: Vec<_> = inputs.iter().map(|x| tape.var(x.clone())).collect();
    let y = f(&xs);
    let w = dirs.array(&y.shape());
    let vs: Vec<_> = inputs.iter().map(|x| dirs.array(x.shape())).collect();

    // 1. Reverse mode against central differences of <w, f(x)>, entry by entry.
    let jtw: Vec<_> = tape
        .grad_with(y, &xs, &GradOptions::new().retain_graph().seed(w.clone()))
        .map_err(sweep("reverse sweep"))?
        .into_iter()
        .map(|v| v.into_value().into_array())
        .collect();
    for (i, x) in inputs.iter().enumerate() {
        let mut fd = ArrayD::zeros(x.shape());
        for (index, slot) in fd.indexed_iter_mut() {
            let mut plus = inputs.to_vec();
            plus[i][&index] += h;
            let mut minus = inputs.to_vec();
            minus[i][&index] -= h;
            *slot = (dot(&w, &eval(&f, &plus)) - dot(&w, &eval(&f, &minus))) / (2.0 * h);
        }
        cmp.compare("reverse mode vs finite differences", Some(i), &jtw[i], &fd)?;
    }

    // 2. Forward mode against central differences along v.
    let tangents: Vec<Tensor<f64>> = vs.iter().map(|v| Tensor::from_array(v.clone())).collect();
    let jv = tape
        .jvp(&[y], &xs, tangents)
        .map_err(sweep("forward sweep"))?
        .remove(0);
    let fd = (eval(&f, &step(inputs, &vs, h)) - eval(&f, &step(inputs, &vs, -h))) / (2.0 * h);
    cmp.compare("forward mode vs finite differences", None, &jv, &fd)?;

    // 3. The two modes are transposes of each other.
    let lhs = ndarray::arr0(dot(&w, &jv)).into_dyn();
    let rhs = ndarray::arr0(jtw.iter().zip(&vs).map(|(g, v)| dot(g, v)).sum::<f64>()).into_dyn();
    cmp.compare("transpose identity <w, Jv> = <J^T w, v>", None, &lhs, &rhs)?;

    // 5. Batched sweeps against one sweep per batch element.
    let labels = [
        "batched forward sweep vs one tangent at a time",
        "batched reverse sweep vs one cotangent at a time",
    ];
    batched_sweeps(&tape, &[y], &xs, &mut dirs, &mut cmp, labels)?;

    if opts.second_order {
        // 4. Hessian-vector products, against differences of the reverse-mode gradient:
        //    of <w, f>, and of <w, f²>/2, whose VJP of f receives a cotangent (w ⊙ f) that
        //    depends on x. The second catches a rule that reads its cotangent's value
        //    instead of using differentiable ops, which a linear op would otherwise hide
        //    (its Hessian is zero either way).
        let labels = [
            "Hessian-vector product (forward over reverse) vs finite differences",
            "Hessian-vector product (reverse over reverse) vs finite differences",
        ];
        hessian_vector_products(&f, inputs, &w, &vs, h, &mut cmp, labels)?;
        let squared = higher_ranked(|x| {
            let y = f(x);
            y * y * 0.5
        });
        let labels = [
            "Hessian-vector product of <w, f^2>/2 (forward over reverse) vs finite differences",
            "Hessian-vector product of <w, f^2>/2 (reverse over reverse) vs finite differences",
        ];
        hessian_vector_products(&squared, inputs, &w, &vs, h, &mut cmp, labels)?;
    }
    Ok(CheckReport {
        comparisons: cmp.comparisons,
        max_error: cmp.max_error,
    })
}

/// Checks a rule's scalar fast paths at one point, with one output cotangent `g`:
/// [`Rule::scalar_forward`] against [`forward`](Rule::forward), and [`Rule::scalar_vjp`]
/// against [`vjp`](Rule::vjp). Each must agree with its general rule to `1e-12` relative.
/// Returns `Ok(false)` when the rule has neither path.
///
/// ```
/// use retrograd_tape::{arith::Mul, check::check_scalar_paths};
/// assert_eq!(check_scalar_paths(Mul, &[1.5, -2.0], 0.3).unwrap(), true);
/// ```
///
/// # Errors
/// [`CheckFailure::Mismatch`] naming the path and the input whose values differ, and
/// [`CheckFailure::Sweep`] when the rule's forward rejects the inputs.
pub fn check_scalar_paths<R: Rule<f64>>(
    mut rule: R,
    inputs: &[f64],
    g: f64,
) -> Result<bool, CheckFailure> {
    let values: Vec<Tensor<f64>> = inputs.iter().map(|&x| Tensor::Scalar(x)).collect();
    let refs: Vec<&Tensor<f64>> = values.iter().collect();
    let y = rule.forward(&refs).map_err(|message| CheckFailure::Sweep {
        stage: "forward computation",
        error: Error::InvalidOp {
            op: rule.name(),
            shapes: vec![Default::default(); inputs.len()],
            message,
            location: std::panic::Location::caller(),
        },
    })?;
    let Tensor::Scalar(y_value) = y else {
        return Ok(false);
    };
    let opts = CheckOptions {
        atol: 1e-300,
        rtol: 1e-12,
        ..CheckOptions::default()
    };
    let point: Vec<ArrayD<f64>> = inputs
        .iter()
        .map(|&x| ndarray::arr0(x).into_dyn())
        .collect();
    let mut cmp = Comparer {
        opts: &opts,
        inputs: &point,
        comparisons: 0,
        max_error: 0.0,
    };
    let scalar = |v: f64| ndarray::arr0(v).into_dyn();
    let fast_forward = rule.scalar_forward(inputs);
    if let Some(fast) = fast_forward {
        cmp.compare(
            "scalar_forward vs forward",
            None,
            &scalar(fast),
            &scalar(y_value),
        )?;
    }
    let mut fast = vec![0.0; inputs.len()];
    if !rule.scalar_vjp(inputs, y_value, g, &mut fast) {
        return Ok(fast_forward.is_some());
    }
    let cx = RuleCtx::new(values.into_iter().map(Val::Const).collect(), Val::Const(y));
    let slow = rule.vjp(&cx, &Val::Const(Tensor::Scalar(g)));
    for (i, (f, s)) in fast.iter().zip(slow).enumerate() {
        let s = s.map_or(0.0, |s| s.value().try_item().unwrap_or(f64::NAN));
        cmp.compare("scalar_vjp vs vjp", Some(i), &scalar(*f), &scalar(s))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Cotangents, Rule, RuleCtx};
    use ndarray::array;

    proptest::proptest! {
        // Deterministic, as every test here (`strategies::config` is behind a feature).
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 64,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x005c_a1a4),
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// The engine's arithmetic computes on its scalar paths what its rules compute, at
        /// any point (the divisor kept away from zero).
        #[test]
        fn the_engine_rules_scalar_paths_agree_with_their_general_rules(
            a in -1e3f64..1e3,
            b in proptest::prop_oneof![-1e3f64..-1e-3, 1e-3f64..1e3],
            g in -2.0f64..2.0,
        ) {
            use crate::arith::{Add, Div, Mul, Neg, ScalarOp, Sub};
            proptest::prop_assert!(check_scalar_paths(Add, &[a, b], g)?);
            proptest::prop_assert!(check_scalar_paths(Sub, &[a, b], g)?);
            proptest::prop_assert!(check_scalar_paths(Mul, &[a, b], g)?);
            proptest::prop_assert!(check_scalar_paths(Div, &[a, b], g)?);
            proptest::prop_assert!(check_scalar_paths(Neg, &[a], g)?);
            for op in [
                ScalarOp::Add(b),
                ScalarOp::Sub(b),
                ScalarOp::Mul(b),
                ScalarOp::Div(b),
                ScalarOp::SubFrom(b),
                ScalarOp::DivInto(b),
            ] {
                let at = if matches!(op, ScalarOp::DivInto(_)) { b } else { a };
                proptest::prop_assert!(check_scalar_paths(op, &[at], g)?, "{op:?}");
            }
        }
    }

    /// Triples its input, with one scalar path that disagrees with the general rule: the
    /// forward (`forward: true`) or the VJP.
    struct WrongScalarPath {
        forward: bool,
    }
    impl Rule<f64> for WrongScalarPath {
        fn name(&self) -> &'static str {
            "wrong_scalar_path"
        }
        fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>, String> {
            Ok(x[0].map(|v| 3.0 * v))
        }
        fn scalar_forward(&mut self, x: &[f64]) -> Option<f64> {
            Some(if self.forward { 2.0 } else { 3.0 } * x[0])
        }
        fn vjp<'t>(&self, _: &RuleCtx<'t, f64>, g: &Val<'t, f64>) -> Cotangents<'t, f64> {
            Cotangents::one(g * 3.0)
        }
        fn jvp<'t>(
            &self,
            _: &RuleCtx<'t, f64>,
            t: &[Option<Val<'t, f64>>],
        ) -> Option<Val<'t, f64>> {
            t[0].as_ref().map(|t| t * 3.0)
        }
        fn scalar_vjp(&self, _: &[f64], _: f64, g: f64, cot: &mut [f64]) -> bool {
            cot[0] = if self.forward { 3.0 } else { 2.0 } * g;
            true
        }
    }

    #[test]
    fn a_scalar_path_that_disagrees_is_reported() {
        for (forward, check, input) in [
            (false, "scalar_vjp vs vjp", Some(0)),
            (true, "scalar_forward vs forward", None),
        ] {
            let err = check_scalar_paths(WrongScalarPath { forward }, &[1.0], 1.0).unwrap_err();
            let m = err.mismatch().unwrap();
            assert_eq!(
                (m.check, m.input, m.got, m.expected),
                (check, input, 2.0, 3.0)
            );
        }
    }

    #[test]
    fn arithmetic_passes_every_check() {
        let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![0.5, 1.5].into_dyn();
        let r = check_gradients(
            |x| x[0] * x[1] / (x[0] + x[1]) - x[1] * 3.0,
            &[a, b],
            &CheckOptions::default(),
        );
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.comparisons > 10);
    }

    /// `sin`, with a VJP that forgets the cotangent's sign: the kit must catch it.
    struct WrongSin;
    impl Rule<f64> for WrongSin {
        fn name(&self) -> &'static str {
            "wrong_sin"
        }
        fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>, String> {
            Ok(x[0].map(f64::sin))
        }
        fn vjp<'t>(&self, cx: &RuleCtx<'t, f64>, g: &Val<'t, f64>) -> Cotangents<'t, f64> {
            let cos = Val::Const(cx.input(0).value().map(f64::cos));
            Cotangents::from([Some(-(g * &cos))])
        }
        fn jvp<'t>(
            &self,
            cx: &RuleCtx<'t, f64>,
            t: &[Option<Val<'t, f64>>],
        ) -> Option<Val<'t, f64>> {
            let cos = Val::Const(cx.input(0).value().map(f64::cos));
            t[0].as_ref().map(|t| t * &cos)
        }
    }

    #[test]
    fn a_wrong_rule_is_reported_with_its_worst_entry() {
        let x = array![0.1, 0.7, 1.3].into_dyn();
        let err = check_gradients(
            |v| Var::apply(WrongSin, &[&v[0]]),
            &[x],
            &CheckOptions::default().first_order_only(),
        )
        .unwrap_err();
        let m = err.mismatch().expect("a comparison failed");
        assert_eq!(m.check, "reverse mode vs finite differences");
        assert_eq!(m.input, Some(0));
        assert_eq!(m.index.len(), 1);
        assert!(
            (m.got + m.expected).abs() < 1e-6,
            "the sign is flipped: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("reverse mode vs finite differences") && text.contains("input 0"),
            "{text}"
        );
    }

    /// `2x`, linear, with a VJP that reads its cotangent's value instead of using
    /// differentiable ops: first-order checks and the HVP of `<w, f>` cannot see it.
    struct OpaqueDouble;
    impl Rule<f64> for OpaqueDouble {
        fn name(&self) -> &'static str {
            "opaque_double"
        }
        fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>, String> {
            Ok(x[0].map(|v| 2.0 * v))
        }
        fn vjp<'t>(&self, _: &RuleCtx<'t, f64>, g: &Val<'t, f64>) -> Cotangents<'t, f64> {
            Cotangents::from([Some(Val::Const(g.value().map(|v| 2.0 * v)))])
        }
        fn jvp<'t>(
            &self,
            _: &RuleCtx<'t, f64>,
            t: &[Option<Val<'t, f64>>],
        ) -> Option<Val<'t, f64>> {
            t[0].as_ref().map(|t| t * 2.0)
        }
    }

    #[test]
    fn a_rule_that_reads_its_cotangent_is_caught_by_the_squared_check() {
        let x = array![0.3, -1.2].into_dyn();
        let err = check_gradients(
            |v| Var::apply(OpaqueDouble, &[&v[0]]),
            &[x],
            &CheckOptions::default(),
        )
        .unwrap_err();
        assert!(
            err.mismatch().is_some_and(|m| m.check.contains("f^2")),
            "{err}"
        );
    }
}
