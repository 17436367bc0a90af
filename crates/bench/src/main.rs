//! retrograd's benchmark suite.
//!
//! ```text
//! cargo run --release -p retrograd-bench -- [--quick] [--kernel gemm|matrixmultiply] [WORKLOAD...]
//! ```
//! Workloads: `all` (the default), `w1`, `kernels` (alias `gemm`), `w2`, `w6`. Every result
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

mod inputs;
mod kernels;
mod report;
mod timing;
mod w1;
mod w2;
mod w6;

use std::process::{Command, ExitCode, Stdio};

use kernels::{Kernel, bench_gemm};
use report::Report;

/// The kernel behind W2 and W6 unless `--kernel` says otherwise: the `gemm` crate on 2
/// threads (the fastest pure-Rust kernel measured for the W2 step on this machine; see
/// docs/benchmarks.md).
const DEFAULT_KERNEL: Kernel = Kernel::Gemm { threads: 2 };

/// The thread count used where a kernel is threaded.
const THREADS: usize = 2;

/// The workloads `all` runs, in order.
const ALL: [&str; 4] = ["w1", "kernels", "w2", "w6"];

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
workloads: all (default), w1, kernels (alias gemm), w2, w6
  w1       scalar chain, hand-coded adjoint (ns per op, checksums)
  kernels  f32 1024^3 GEMM rate, W2's eight matmul shapes and the hand-written
           W2 step on each kernel, 1 and 2 threads, each in its own process
  w2       hand-written W2 step on the default kernel (and its GEMM rate)
  w6       peak resident memory of 50 hand-written W2 steps (child process)
options:
  --quick          tiny sizes and few repetitions (CI smoke test; timings meaningless)
  --kernel NAME    kernel for w2/w6: gemm (default, 2 threads) or matrixmultiply
                   (threads from MATMUL_NUM_THREADS, default 2)";

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
        kernel: DEFAULT_KERNEL,
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
        "w1" => w1::run(report, opts.quick),
        "kernels" | "gemm" => kernel_sweep(report, opts.quick),
        "w2" => w2_default(report, opts),
        "w6" => {
            let (family, threads) = kernel_args(opts.kernel);
            spawn_child(report, &["w6-hand", family, &threads], opts.quick, None);
        }
        _ => return false,
    }
    true
}

/// GEMM size and (warm-up, timed) repetitions.
fn gemm_size(quick: bool) -> (usize, usize, usize) {
    if quick { (256, 1, 3) } else { (1024, 2, 11) }
}

/// W2 on the chosen kernel in this process, with that kernel's GEMM rate measured in the
/// same run: `w2.kernel.<label>` (which kernel), `gemm.default.gflops` and `w2.hand.*`. The engine's W2
/// (`w2.retrograd.*`, `w2.ratio`, `w2.gemm_fraction`, `w3.ratio`) belongs here, beside it.
fn w2_default(report: &mut Report, opts: Options) {
    let label = opts.kernel.label();
    report.push(format!("w2.kernel.{label}"), 1.0, "-");
    let (n, warmup, reps) = gemm_size(opts.quick);
    bench_gemm(report, opts.kernel, "gemm.default", n, warmup, reps);
    let rate = report.value("gemm.default.gflops");
    w2::run_hand(report, opts.kernel, "w2.hand", rate, opts.quick);
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
        Some("w6-hand") => {
            if let Some(kernel) = parse_kernel(report) {
                w6::run_hand_child(report, kernel, quick);
            }
        }
        _ => report.fail(format!("child: unknown task {task:?}")),
    }
}
