//! retrograd's benchmark suite.
//!
//! ```text
//! cargo run --release -p retrograd-bench -- [--quick] [--kernel gemm|matrixmultiply] [WORKLOAD...]
//! ```
//! Workloads: `all` (the default), `w1`, `kernels` (alias `gemm`), `w2`, `dp`, `w5`, `jac`, `w6`,
//! `w7`, `w8`, `recording`. Every result
//! is one `name value unit` line on stdout; notes go to stderr. `--quick` shrinks every
//! workload (a smoke test for CI; its timings mean nothing). A failed check (a checksum
//! off, a wrong matmul entry) makes the process exit with status 1 after all lines are out.
//!
//! Threads: the workloads use 2 threads where a kernel is threaded. matrixmultiply reads
//! its thread count once per process from `MATMUL_NUM_THREADS`, so when that variable is
//! unset the binary re-runs itself with `MATMUL_NUM_THREADS=2`. The `kernels` sweep and W6
//! run in child processes (the same binary with the hidden `__child` subcommand), each
//! with the thread count it measures and a fresh resident-memory high-water mark.
//!
//! Extension points for the engine: each workload is a function taking `&mut Report`
//! ([`w1::run`], [`w2::run_hand`], [`w6::run_hand_child`]); the engine's versions
//! (`w1.retrograd`, `w2.retrograd`, `w3`, `w5`, `w6.retrograd`) go beside them, and
//! [`run_workload`] dispatches by name.

mod alloc;
mod inputs;
mod jac;
mod kernels;
mod recording;
mod report;
mod sums;
mod timing;
mod w1;
mod w2;
mod w2_engine;
#[cfg(feature = "mpi")]
mod w2_mpi;
mod w2_nn;
mod w5;
mod w6;
mod w7;
mod w8;

/// Counts heap allocations and live bytes (W1's allocations per op and bytes per node).
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use std::process::{Command, ExitCode, Stdio};

use kernels::{Kernel, bench_gemm};
use report::Report;

/// The thread count used where a kernel is threaded.
const THREADS: usize = 2;

/// The workloads `all` runs, in order.
const ALL: [&str; 11] = [
    "w1",
    "kernels",
    "w2",
    "dp",
    "w5",
    "jac",
    "w6",
    "w7",
    "w8",
    "recording",
    "sums",
];

/// Command-line options.
#[derive(Clone, Copy, Debug)]
struct Options {
    /// Shrink every workload (smoke test).
    quick: bool,
    /// The kernel for W2 and W6.
    kernel: Kernel,
}

/// The usage text.
const USAGE: &str = "\
usage: retrograd-bench [--quick] [--kernel gemm|matrixmultiply] [WORKLOAD...]
workloads: all (default), w1, kernels (alias gemm), w2, dp, w5, jac, w6, w7, w8, recording,
  sums
  w1         scalar chain: hand-coded adjoint, then the engine (ns per op, checksums,
             flatness from 1e3 to 1e6 ops, bytes per node)
  kernels    f32 1024^3 GEMM rate, W2's eight matmul shapes and the hand-written
             W2 step on each kernel, 1 and 2 threads, each in its own process
  w2         W2 training step, hand-written and through the engine on the same
             kernel (ratio, GEMM fraction), the nn path (Session, Sgd), and W3
  dp         W2-sized step at batch 256: Session on the whole batch, DataParallel on
             1 and 2 threads, interleaved (medians, spreads, speed-up)
  w5         Hessian-vector product / gradient, and the full Hessian / one HVP
  jac        Jacobians end to end of four tanh chains: jacobian(Auto), batched
             jacfwd/jacrev and one tangent per sweep
  mpi        (feature mpi, under `mpirun -np 2`) W2-sized step at batch 256: one
             process against the ranks with an all-reduce (speed-up, bytes per step)
  w6         peak and growth of resident memory: hand-written, engine and nn path
             (child processes)
  w7         LeNet-5-sized CNN step: nn path against a hand-written step on the same
             conv and GEMM kernels (ratio, forward share, conv GFLOP/s), and its memory
  w8         checkpointing: a 10,000-step recurrence, plain tape against revolve at 10
             and 100 snapshots (gradient agreement, peak memory in child processes,
             time, recomputed steps); an 8-block MLP step plain and checkpointed
  recording  a plain backward against a create_graph one (what recording would cost)
  sums       the pairwise sum every reduction uses against a serial loop and ndarray's
             sum, f32, 4 to 2^22 elements (time per call, error at the largest size)
options:
  --quick          tiny sizes and few repetitions (CI smoke test; timings meaningless)
  --kernel NAME    kernel of the hand-written baselines: the engine's own by default
                   (matrixmultiply), or gemm (2 threads)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();

    // matrixmultiply fixes its thread count at first use from the environment, and setting
    // an environment variable in-process is unsafe: re-run with it set.
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        let status = std::env::current_exe().and_then(|exe| {
            Command::new(exe)
                .args(&args)
                .env("MATMUL_NUM_THREADS", THREADS.to_string())
                .status()
        });
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8),
            Err(e) => {
                eprintln!("retrograd-bench: cannot re-run itself: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let mut opts = Options {
        quick: false,
        // The hand-written W2/W6 baselines run, unless `--kernel` says otherwise, on the
        // kernel behind the engine's matmul seam, so that `w2.ratio` compares like with like.
        kernel: engine_kernel(),
    };
    let mut names: Vec<String> = Vec::new();
    let mut child: Option<Vec<String>> = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" | "--tiny" => opts.quick = true,
            "--kernel" => {
                let name = it.next().unwrap_or_default();
                match Kernel::parse(&name, THREADS) {
                    Some(k) => opts.kernel = k,
                    None => return usage_error(&format!("unknown kernel {name:?}")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "__child" => child = Some(it.by_ref().collect()),
            s if s.starts_with('-') => return usage_error(&format!("unknown option {s}")),
            _ => names.push(arg),
        }
    }

    let mut report = Report::new();
    if let Some(task) = child {
        run_child_task(&mut report, &task, opts.quick);
    } else {
        if names.is_empty() {
            names.push("all".into());
        }
        let mut expanded = Vec::new();
        for name in names {
            if name == "all" {
                expanded.extend(ALL.iter().map(|s| s.to_string()));
            } else {
                expanded.push(name);
            }
        }
        if opts.quick {
            eprintln!("note: --quick: tiny sizes, timings are not meaningful");
        }
        for name in &expanded {
            if !run_workload(&mut report, name, opts) {
                return usage_error(&format!("unknown workload {name:?}"));
            }
        }
    }

    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} check(s) failed", report.failures().len());
        ExitCode::FAILURE
    }
}

/// Prints a usage error and returns the exit status for it.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("retrograd-bench: {message}\n{USAGE}");
    ExitCode::from(2)
}

/// Runs one workload by name; false if the name is unknown.
fn run_workload(report: &mut Report, name: &str, opts: Options) -> bool {
    match name {
        "w1" => {
            w1::run(report, opts.quick);
            w1::run_engine(report, opts.quick);
        }
        "w5" => w5::run(report, opts.quick),
        "jac" => jac::run(report, opts.quick),
        #[cfg(feature = "mpi")]
        "mpi" => w2_mpi::run(report, opts.quick),
        "w7" => {
            w7::run(report, opts.quick);
            spawn_child(report, &["w7-memory"], opts.quick, None);
        }
        "recording" => recording::run(report, opts.quick),
        "sums" => sums::run(report, opts.quick),
        "w8" => w8::run(report, opts.quick, &mut |r, task| {
            spawn_child(r, task, opts.quick, None)
        }),
        "kernels" | "gemm" => kernel_sweep(report, opts.quick),
        "w2" => w2_default(report, opts),
        "dp" => w2_nn::run_data_parallel(report, opts.quick),
        "w6" => {
            let (family, threads) = kernel_args(opts.kernel);
            spawn_child(report, &["w6-hand", family, &threads], opts.quick, None);
            spawn_child(report, &["w6-engine"], opts.quick, None);
            spawn_child(report, &["w6-nn"], opts.quick, None);
            if let Some(peak) = report.value("w6.retrograd.peak_bytes") {
                report.push("w6.peak_bytes", peak, "bytes");
                if let Some(hand) = report.value("w6.hand.peak_bytes") {
                    report.push("w6.peak_ratio", peak / hand, "x");
                }
            }
            if let Some(growth) = report.value("w6.retrograd.growth_bytes") {
                report.push("w6.growth_bytes", growth, "bytes");
            }
            if let (Some(peak), Some(hand)) = (
                report.value("w6.nn.peak_bytes"),
                report.value("w6.hand.peak_bytes"),
            ) {
                report.push("w6.nn.peak_ratio", peak / hand, "x");
            }
        }
        _ => return false,
    }
    true
}

/// GEMM size and (warm-up, timed) repetitions.
fn gemm_size(quick: bool) -> (usize, usize, usize) {
    if quick { (256, 1, 3) } else { (1024, 2, 11) }
}

/// The bench kernel that matches the engine's matmul seam
/// (`retrograd::ops::linalg::kernel::KERNEL`), so the hand-written step runs on the same
/// kernel as the engine's.
fn engine_kernel() -> Kernel {
    if retrograd::ops::linalg::kernel::KERNEL.starts_with("gemm") {
        Kernel::Gemm { threads: THREADS }
    } else {
        Kernel::MatrixMultiply
    }
}

/// W2 and W3 in this process: the hand-written step on the chosen kernel (by default the
/// engine's), its 1024³ GEMM rate, the engine's step through its own kernel seam and that
/// seam's 1024³ rate, all measured in one run: `w2.kernel.<label>`, `gemm.default.gflops`,
/// `gemm.engine.gflops`, `w2.hand.*`, `w2.retrograd.*`, `w2.ratio`, `w2.gemm_fraction`,
/// `w3.*`.
fn w2_default(report: &mut Report, opts: Options) {
    let label = opts.kernel.label();
    report.push(format!("w2.kernel.{label}"), 1.0, "-");
    report.push(
        format!(
            "w2.engine_kernel.{}",
            retrograd::ops::linalg::kernel::KERNEL
        ),
        1.0,
        "-",
    );
    let (n, warmup, reps) = gemm_size(opts.quick);
    bench_gemm(report, opts.kernel, "gemm.default", n, warmup, reps);
    let rate = report.value("gemm.default.gflops");
    let hand_ms = w2::run_hand(report, opts.kernel, "w2.hand", rate, opts.quick);
    let hand_fwd = report.value("w2.hand.forward_ms");

    let seam = w2_engine::seam_gemm_gflops(n, warmup, reps);
    report.push("gemm.engine.gflops", seam, "GFLOP/s");
    let (warmup, reps) = w2::reps(opts.quick);
    let e = w2_engine::measure(warmup, reps);
    report.push_exact("w2.retrograd.loss_first", f64::from(e.loss_first), "-");
    report.push_exact("w2.retrograd.loss_last", f64::from(e.loss_last), "-");
    if let Some(hand_first) = report.value("w2.hand.loss_first") {
        report.check_close(
            "w2.retrograd.loss_first vs w2.hand",
            f64::from(e.loss_first),
            hand_first,
            1e-4,
        );
    }
    if e.loss_last.is_nan() || e.loss_last >= e.loss_first {
        report.fail(format!(
            "w2.retrograd: training did not lower the loss ({} -> {})",
            e.loss_first, e.loss_last
        ));
    }
    let step_ms = e.step / 1e6;
    report.push("w2.retrograd.ms", step_ms, "ms");
    report.push("w2.retrograd.fresh_tape_ms", e.step_fresh / 1e6, "ms");
    report.push("w2.retrograd.forward_ms", e.forward / 1e6, "ms");
    report.push("w2.retrograd.fwd_bwd_ms", e.fwd_bwd / 1e6, "ms");
    let gflops = inputs::W2_FLOP_PER_STEP / e.step;
    report.push("w2.retrograd.gflops", gflops, "GFLOP/s");
    report.push("w2.ratio", step_ms / hand_ms, "x");
    report.push("w2.ratio_fresh_tape", e.step_fresh / 1e6 / hand_ms, "x");
    report.push("w2.gemm_fraction", gflops / seam, "x");
    report.push("w3.ratio", e.fwd_bwd / e.forward, "x");
    w2_nn::run_nn(report, hand_ms, warmup, reps);
    if let Some(f) = hand_fwd {
        report.push("w3.forward_vs_hand", e.forward / 1e6 / f, "x");
    }
}

/// The kernel configurations the sweep measures: (family, threads).
const SWEEP: [(&str, usize); 4] = [
    ("matrixmultiply", 1),
    ("matrixmultiply", 2),
    ("gemm", 1),
    ("gemm", 2),
];

/// For each kernel configuration, in its own child process: the 1024³ GEMM rate and the
/// hand-written W2 step (`gemm.<label>.gflops`, `w2.hand.<label>.*`), and each
/// of W2's matmul shapes alone (`mm.<label>.<shape>.us`). Then checks that all
/// kernels gave the same first-step loss.
fn kernel_sweep(report: &mut Report, quick: bool) {
    let mut losses = Vec::new();
    for (family, threads) in SWEEP {
        let t = threads.to_string();
        spawn_child(report, &["kernel", family, &t], quick, Some(threads));
        let label = format!("{family}_{threads}t");
        if let Some(l) = report.value(&format!("w2.hand.{label}.loss_first")) {
            losses.push((label, l));
        }
    }
    if let Some((first_label, first)) = losses.first().cloned() {
        for (label, l) in &losses[1..] {
            report.check_close(
                &format!("w2.hand.{label}.loss_first vs {first_label}"),
                *l,
                first,
                1e-4,
            );
        }
    }
}

/// The `__child` arguments naming a kernel: family and thread count.
fn kernel_args(kernel: Kernel) -> (&'static str, String) {
    match kernel {
        Kernel::MatrixMultiply => (
            "matrixmultiply",
            kernels::matrixmultiply_threads().to_string(),
        ),
        Kernel::Gemm { threads } => ("gemm", threads.to_string()),
    }
}

/// Re-invokes this binary as `__child TASK...` (with `--quick` if set, and
/// `MATMUL_NUM_THREADS` if given), and absorbs its `name value unit` lines. A child that
/// fails or cannot start is a failed check.
fn spawn_child(report: &mut Report, task: &[&str], quick: bool, mm_threads: Option<usize>) {
    let what = task.join(" ");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return report.fail(format!("child {what}: cannot find own executable: {e}")),
    };
    let mut cmd = Command::new(exe);
    if quick {
        cmd.arg("--quick");
    }
    cmd.arg("__child").args(task);
    if let Some(t) = mm_threads {
        cmd.env("MATMUL_NUM_THREADS", t.to_string());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    match cmd.output() {
        Ok(out) => {
            report.absorb(&String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                report.fail(format!("child {what} exited with {}", out.status));
            }
        }
        Err(e) => report.fail(format!("child {what}: cannot start: {e}")),
    }
}

/// The body of a child process: `kernel FAMILY THREADS` or `w6-hand FAMILY THREADS`.
fn run_child_task(report: &mut Report, task: &[String], quick: bool) {
    let parse_kernel = |report: &mut Report| -> Option<Kernel> {
        let family = task.get(1).map(String::as_str).unwrap_or("");
        let threads = task.get(2).and_then(|t| t.parse().ok()).unwrap_or(1);
        let k = Kernel::parse(family, threads);
        if k.is_none() {
            report.fail(format!("child: bad kernel arguments {task:?}"));
        }
        k
    };
    match task.first().map(String::as_str) {
        Some("kernel") => {
            if let Some(kernel) = parse_kernel(report) {
                let (n, warmup, reps) = gemm_size(quick);
                let name = format!("gemm.{}", kernel.label());
                let rate = bench_gemm(report, kernel, &name, n, warmup, reps);
                let (shape_warmup, shape_reps) = if quick { (1, 3) } else { (10, 101) };
                kernels::bench_w2_shapes(report, kernel, shape_warmup, shape_reps);
                let prefix = format!("w2.hand.{}", kernel.label());
                w2::run_hand(report, kernel, &prefix, Some(rate), quick);
            }
        }
        Some("w6-engine") => w6::run_engine_child(report, quick),
        Some("w6-nn") => w6::run_nn_child(report, quick),
        Some("w7-memory") => w7::run_memory_child(report, quick),
        Some("w8-rnn" | "w8-mlp") => w8::run_child(report, task, quick),
        Some("w1-probe") => {
            let steps = task.get(1).and_then(|t| t.parse().ok()).unwrap_or(100_000);
            let runs = task.get(2).and_then(|t| t.parse().ok()).unwrap_or(2);
            w1::probe(report, steps, runs);
        }
        Some("jac-probe") => {
            let chain = task.get(1).map_or("bottleneck", String::as_str);
            let runs = task.get(2).and_then(|t| t.parse().ok()).unwrap_or(20);
            jac::probe(report, chain, runs);
        }
        Some("w2-probe") => {
            let which = task.get(1).map_or("nn", String::as_str);
            let steps = task.get(2).and_then(|t| t.parse().ok()).unwrap_or(10);
            w6::run_probe(report, engine_kernel(), which, steps);
        }
        Some("w6-hand") => {
            if let Some(kernel) = parse_kernel(report) {
                w6::run_hand_child(report, kernel, quick);
            }
        }
        _ => report.fail(format!("child: unknown task {task:?}")),
    }
}
