//! Random programs over the op set (see `retrograd_tests::Program`): every way the engine
//! computes a derivative agrees with every other and with finite differences.
//!
//! A failing case prints the program as code, its inputs, and the worst entry.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use retrograd::prelude::*;
use retrograd::tape::GradOptions;
use retrograd::tape::check::{CheckOptions, check_gradients};
use retrograd::tape::strategies::config;
use retrograd::tape::transforms::{
    JacobianOptions, Mode, func, hessian, hvp, jacfwd, jacobian_with, jacrev,
};
use retrograd_tests::{
    Case, ProgramConfig, assert_close, fd_jacobian, program_case, weights, worst,
};

/// `⟨w, f(x)⟩` for the case's program with the fixed weights of [`weights`]: a scalar
/// function of the packed inputs.
fn scalar_program<'t, T: Float>(case: &Case, x: Var<'t, T>) -> Var<'t, T> {
    let y = case.eval_packed(x);
    let w = weights(case.program.output_shape()).mapv(T::of);
    (y * x.tape().constant(w)).sum_all()
}

proptest! {
    #![proptest_config(config(1024))]

    /// Reverse vs finite differences, forward vs finite differences, the transpose
    /// identity, and Hessian-vector products (forward over reverse and reverse over
    /// reverse) against differences of the gradient, on smooth programs.
    #[test]
    fn smooth_programs_pass_the_gradient_check(case in program_case(ProgramConfig::smooth())) {
        let r = check_gradients(|x| case.program.eval(x), &case.inputs, &CheckOptions::default());
        prop_assert!(r.is_ok(), "{}\n{case:?}", r.unwrap_err());
    }

    /// The same with kinked ops (relu, abs, clamp, maximum, max, ...), at points at least
    /// `kink_gap` from every kink: there the masks are locally constant, so even the
    /// second-order check is exact.
    #[test]
    fn kinked_programs_pass_the_gradient_check_away_from_kinks(
        case in program_case(ProgramConfig::with_kinks())
    ) {
        let r = check_gradients(|x| case.program.eval(x), &case.inputs, &CheckOptions::default());
        prop_assert!(r.is_ok(), "{}\n{case:?}", r.unwrap_err());
    }

    /// jacfwd and jacrev of the program (as a function of its packed inputs) agree to
    /// rounding, and both agree with central differences.
    #[test]
    fn jacfwd_equals_jacrev_equals_finite_differences(
        case in program_case(ProgramConfig::with_kinks())
    ) {
        let x = case.packed();
        let fwd = jacfwd(|x| case.eval_packed(x), &x).unwrap();
        let rev = jacrev(|x| case.eval_packed(x), &x).unwrap();
        let mut shape = case.program.output_shape().to_vec();
        shape.push(x.len());
        prop_assert_eq!(fwd.shape(), shape.as_slice(), "{:?}", case);
        assert_close(&fwd, &rev, 1e-10, 1e-12, &case);
        let fd = fd_jacobian(
            |x| {
                let tape = Tape::<f64>::new();
                case.eval_packed(tape.constant(x.clone())).array()
            },
            &x,
            1e-3,
        );
        assert_close(&fwd, &fd, 1e-5, 1e-6, &case);
    }

    /// The Hessian of a scalar program is symmetric, each column is the HVP with a basis
    /// vector, and the HVP with a random direction is `H v`.
    #[test]
    fn hessian_is_symmetric_and_its_columns_are_hvps(
        case in program_case(ProgramConfig::smooth()),
        seed in any::<u64>(),
    ) {
        let f = func(|x| scalar_program(&case, x));
        let x = case.packed();
        let n = x.len();
        let h = hessian(f, &x).unwrap();
        prop_assert_eq!(h.shape(), &[n, n][..]);
        let scale = h.iter().fold(1.0f64, |m, e| m.max(e.abs()));
        let ht = h.t().to_owned();
        assert_close(&h, &ht, 0.0, 1e-9 * scale, &case);
        for j in 0..n {
            let mut e = ArrayD::zeros(IxDyn(&[n]));
            e[j] = 1.0;
            let col = hvp(f, &x, &e).unwrap();
            let hcol = h.index_axis(ndarray::Axis(1), j).to_owned();
            assert_close(&col, &hcol, 1e-10, 1e-12 * scale, &case);
        }
        // Each column against central differences of the gradient.
        let grad_at = |x: &ArrayD<f64>| {
            let tape = Tape::<f64>::new();
            let xv = tape.var(x.clone());
            tape.grad(f(xv), &[xv]).unwrap().remove(0)
        };
        let fd = fd_jacobian(grad_at, &x, 1e-3);
        assert_close(&h, &fd, 1e-5, 1e-6, &case);
        // A random direction: H v by the matrix, and by one HVP.
        let mut s = seed;
        let v = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        });
        let hv = hvp(f, &x, &v).unwrap();
        let h2 = h.clone().into_shape_with_order((n, n)).unwrap();
        let v1 = v.clone().into_shape_with_order(n).unwrap();
        let expect = h2.dot(&v1).into_dyn();
        assert_close(&hv, &expect, 1e-9, 1e-11 * scale, &case);
    }

    /// A plain reverse sweep (no create_graph) computes its rules on constants: it adds
    /// no node to the tape, whatever the program; a recorded sweep does add nodes.
    #[test]
    fn a_plain_backward_adds_no_node(case in program_case(ProgramConfig::with_kinks())) {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = case.inputs.iter().map(|x| tape.var(x.clone())).collect();
        let y = case.program.eval(&xs);
        let w = weights(case.program.output_shape());
        let before = tape.len();
        let opts = GradOptions::new().retain_graph().seed(w.clone());
        let g = tape.grad_with(y, &xs, &opts).unwrap();
        prop_assert_eq!(tape.len(), before, "{:?}", case);
        prop_assert!(g.iter().all(|g| g.as_var().is_none()), "{:?}", case);
        // A scalar loss's backward(), likewise.
        let loss = (y * tape.constant(w)).sum_all();
        // A recorded sweep (create_graph) does add nodes, so the count is live (through
        // loss², whose VJP multiplies by the recorded loss even when f is linear).
        let squared = loss * loss;
        let before = tape.len();
        tape.grad_with(squared, &xs, &GradOptions::new().retain_graph().create_graph()).unwrap();
        prop_assert!(tape.len() > before, "{:?}", case);
        let before = tape.len();
        let grads = loss.backward().unwrap();
        prop_assert_eq!(tape.len(), before, "{:?}", case);
        // The same gradient both ways.
        for (i, x) in xs.iter().enumerate() {
            assert_close(&grads.array(*x), &g[i].value().to_array(), 1e-12, 1e-14, &case);
        }
    }

    /// The program run in f32 gives the f64 values and gradients to f32 accuracy.
    #[test]
    fn f32_and_f64_agree(case in program_case(ProgramConfig::with_kinks())) {
        fn run<T: Float>(case: &Case) -> (ArrayD<f64>, Vec<ArrayD<f64>>) {
            let tape = Tape::<T>::new();
            let xs: Vec<_> = case
                .inputs
                .iter()
                .map(|x| tape.var(x.mapv(T::of)))
                .collect();
            let y = case.program.eval(&xs);
            let w = weights(case.program.output_shape()).mapv(T::of);
            let g = tape.vjp(y, w, &xs).unwrap();
            let back = |a: &ArrayD<T>| a.mapv(|e| e.as_f64());
            (back(&y.array()), g.iter().map(back).collect())
        }
        let (y64, g64) = run::<f64>(&case);
        let (y32, g32) = run::<f32>(&case);
        // f32 keeps about 7 digits; allow for the rounding of a few ops in a row, and an
        // absolute floor scaled by the largest value any register holds.
        let scale = case.program.max_magnitude(&case.inputs).max(1.0);
        assert_close(&y32, &y64, 1e-3, 1e-4 * scale, &case);
        let gscale = g64
            .iter()
            .flat_map(|g| g.iter())
            .fold(scale, |m, e| m.max(e.abs()));
        for (a, b) in g32.iter().zip(&g64) {
            let (e, _) = worst(a, b, 1e-3, 1e-4 * gscale);
            prop_assert!(e <= 1.0, "f32 gradient {a}\nvs f64 {b}\n{case:?}");
        }
    }

    /// Batched sweeps with a random batch size (1 included) give, batch element by batch
    /// element, what one-tangent and one-cotangent sweeps give.
    #[test]
    fn batched_sweeps_equal_one_at_a_time(
        case in program_case(ProgramConfig::with_kinks()),
        k in 1usize..=5,
        seed in any::<u64>(),
    ) {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = case.inputs.iter().map(|x| tape.var(x.clone())).collect();
        let y = case.program.eval(&xs);
        let mut s = seed;
        let mut random = |shape: &[usize]| {
            let mut full = vec![k];
            full.extend_from_slice(shape);
            ArrayD::from_shape_simple_fn(IxDyn(&full), || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
        };
        let tangents: Vec<ArrayD<f64>> = case.inputs.iter().map(|x| random(x.shape())).collect();
        let cots = random(case.program.output_shape());
        let fwd = tape
            .jvp_batch(&[y], &xs, tangents.iter().cloned().map(Tensor::from_array).collect())
            .unwrap();
        let rev = tape.vjp_batch(y, Tensor::from_array(cots.clone()), &xs).unwrap();
        let at = |a: &ArrayD<f64>, b: usize| a.index_axis(ndarray::Axis(0), b).to_owned();
        for b in 0..k {
            let one: Vec<Tensor<f64>> = tangents.iter().map(|t| Tensor::from_array(at(t, b))).collect();
            let jv = tape.jvp(&[y], &xs, one).unwrap();
            assert_close(&at(&fwd[0], b), &jv[0], 1e-12, 1e-13, &case);
            let opts = GradOptions::new().retain_graph().seed(at(&cots, b));
            let g = tape.grad_with(y, &xs, &opts).unwrap();
            for (i, gi) in g.iter().enumerate() {
                assert_close(&at(&rev[i], b), &gi.value().to_array(), 1e-12, 1e-13, &case);
            }
        }
    }

    /// Every way `jacobian_with` builds a Jacobian (forward, reverse, the tape's cut-point
    /// bracketing, Auto), with any chunk size, agrees with the Jacobian assembled from one
    /// forward sweep per input element.
    #[test]
    fn every_jacobian_plan_agrees_with_one_tangent_sweeps(
        case in program_case(ProgramConfig::with_kinks()),
        chunk in prop::option::of(1usize..=4),
    ) {
        let x = case.packed();
        let n = x.len();
        let tape = Tape::<f64>::new();
        let xv = tape.var(x.clone());
        let y = case.eval_packed(xv);
        let m = y.value().len();
        let mut reference = ndarray::Array2::<f64>::zeros((m, n));
        for i in 0..n {
            let mut e = ArrayD::zeros(IxDyn(&[n]));
            e[i] = 1.0;
            let col = tape.jvp(&[y], &[xv], vec![Tensor::from_array(e)]).unwrap().remove(0);
            reference.column_mut(i).assign(&ndarray::Array1::from_iter(col.iter().copied()));
        }
        let mut shape = case.program.output_shape().to_vec();
        shape.push(n);
        let reference = reference.into_shape_with_order(shape).unwrap();
        let scale = reference.iter().fold(1.0f64, |a, e| a.max(e.abs()));
        for mode in [Mode::Forward, Mode::Reverse, Mode::Bracketed, Mode::Auto] {
            let mut opts = JacobianOptions::new().mode(mode);
            opts.chunk = chunk;
            let j = jacobian_with(|x| case.eval_packed(x), &x, &opts).unwrap();
            prop_assert_ne!(j.mode, Mode::Auto);
            assert_close(&j.jacobian, &reference, 1e-12, 1e-12 * scale, &case);
        }
    }
    /// A sweep that frees values at their last use gives exactly the gradients of one that
    /// keeps the graph (no rule ever read a freed value), and afterwards every register is
    /// either intact or freed with its shape known, never silently changed: leaves and the
    /// output are always intact.
    #[test]
    fn freeing_values_changes_no_gradient(case in program_case(ProgramConfig::with_kinks())) {
        fn run<'t>(
            tape: &'t Tape<f64>,
            case: &Case,
            opts: &GradOptions<f64>,
        ) -> (Vec<Var<'t, f64>>, Vec<ArrayD<f64>>) {
            let xs: Vec<_> = case.inputs.iter().map(|x| tape.var(x.clone())).collect();
            let regs = case.program.eval_all(&xs);
            let w = tape.constant(weights(case.program.output_shape()));
            let loss = (regs[regs.len() - 1] * w).sum_all();
            let g = tape.grad_with(loss, &xs, opts).unwrap();
            let mut regs = regs;
            regs.push(loss);
            (regs, g.into_iter().map(|g| g.value().into_array()).collect())
        }
        let (kept, freed) = (Tape::<f64>::new(), Tape::<f64>::new());
        let (kept_regs, expected) = run(&kept, &case, &GradOptions::new().retain_graph());
        let (regs, got) = run(&freed, &case, &GradOptions::new().free_values());
        prop_assert_eq!(&got, &expected, "{:?}", case);
        let n_inputs = case.inputs.len();
        for (k, (r, kr)) in regs.iter().zip(&kept_regs).enumerate() {
            prop_assert_eq!(r.shape(), kr.shape(), "register %{} {:?}", k, case);
            match r.try_value() {
                Ok(v) => prop_assert_eq!(v, kr.value(), "register %{} {:?}", k, case),
                Err(Error::ValueFreed { .. }) => prop_assert!(
                    k >= n_inputs && k + 1 < regs.len(),
                    "a leaf or the output was freed: %{} {:?}", k, case
                ),
                Err(e) => prop_assert!(false, "register %{}: {} {:?}", k, e, case),
            }
        }
    }
}
