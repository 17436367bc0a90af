//! W6, memory: peak resident memory of 50 W2 training steps.
//!
//! Resident memory is per process, and a peak (`VmHWM`) never comes down, so a figure taken
//! after other workloads ran in the same process would be theirs too. Each W6 measurement
//! therefore runs in a fresh child process (the bench binary re-invoked with a hidden
//! subcommand, see `main.rs`), which does nothing but set up W2, run the steps and report.
//! The engine's version (`w6.retrograd.*`, `w6.peak_bytes`, `w6.growth_bytes` after 1000
//! steps) and the nn path a user writes (`w6.nn.*`) go beside [`run_hand_child`], each in
//! its own child process.

use crate::alloc;
use crate::kernels::Kernel;
use crate::report::Report;
use crate::timing::{black_box, minor_faults, rss};
use crate::w2::{Setup, step};
use crate::w2_engine::EngineSetup;
use crate::w2_nn::NnSetup;

/// Steps W6 measures (the 50; 5 in quick mode).
pub fn steps(quick: bool) -> usize {
    if quick { 5 } else { 50 }
}

/// Body of the child process for the hand-written baseline: pushes
/// `w6.hand.start_rss_bytes` (before W2 is set up: the binary's own footprint),
/// `w6.hand.peak_bytes` (`VmHWM` after the steps), `w6.hand.rss_bytes` (`VmRSS` then) and
/// `w6.hand.step_heap_bytes` (the most heap bytes the steps held at once beyond the set-up).
pub fn run_hand_child(report: &mut Report, kernel: Kernel, quick: bool) {
    let Some(start) = rss() else {
        // Resident memory is read from /proc; elsewhere W6 is skipped, not failed, so the
        // suite's smoke test passes on any platform the toolchain runs on.
        report.push_raw("w6.skipped".into(), "no-/proc/self/status".into(), "-");
        return;
    };
    let mut s = Setup::w2();
    let set_up = alloc::live_bytes();
    alloc::reset_peak();
    let Setup { mlp, x, labels, ws } = &mut s;
    for _ in 0..steps(quick) {
        black_box(step(kernel, mlp, x.view(), labels, ws));
    }
    let end = rss().unwrap_or(start);
    let heap = alloc::peak_bytes() - set_up;
    report.push("w6.hand.step_heap_bytes", heap as f64, "bytes");
    report.push("w6.hand.start_rss_bytes", start.current as f64, "bytes");
    report.push("w6.hand.peak_bytes", end.peak as f64, "bytes");
    report.push("w6.hand.rss_bytes", end.current as f64, "bytes");
}

/// Steps after which W6 reads resident memory again for the growth figure (the issue's
/// 1000; 20 in quick mode).
pub fn long_steps(quick: bool) -> usize {
    if quick { 20 } else { 1000 }
}

/// Body of the child process for the engine: 50 engine W2 steps (cleared tape), then
/// `w6.retrograd.peak_bytes` (`VmHWM`) and `w6.retrograd.rss_50_bytes` (`VmRSS`); then up to
/// 1000 steps and `w6.retrograd.rss_1000_bytes`, `w6.retrograd.peak_1000_bytes` and the
/// growth between the two readings.
pub fn run_engine_child(report: &mut Report, quick: bool) {
    measure_steps(report, "w6.retrograd", quick, EngineSetup::w2, |s| {
        black_box(s.step(false));
    });
}

/// Body of the child process for the nn path a user writes (`Session::train_step`, `Sgd`):
/// the same readings as [`run_engine_child`], under `w6.nn.*`.
pub fn run_nn_child(report: &mut Report, quick: bool) {
    measure_steps(report, "w6.nn", quick, NnSetup::w2, |s| {
        black_box(s.step());
    });
}

/// Sets up with `make` and runs `step` 50 times, reads resident memory, runs it up to 1000
/// times, reads it again, and pushes `{prefix}.start_rss_bytes` (before the set-up),
/// `.peak_bytes`, `.rss_50_bytes`, `.rss_1000_bytes`, `.peak_1000_bytes`, `.growth_bytes`,
/// `.step_heap_bytes` (the most heap bytes the steps held at once beyond what was live
/// after the set-up, from the counting allocator) and `.faults_per_step` (minor page
/// faults per step after the first 50).
fn measure_steps<S>(
    report: &mut Report,
    prefix: &str,
    quick: bool,
    make: impl FnOnce() -> S,
    mut step: impl FnMut(&mut S),
) {
    let Some(start) = rss() else {
        // Resident memory is read from /proc; elsewhere W6 is skipped, not failed, so the
        // suite's smoke test passes on any platform the toolchain runs on.
        report.push_raw("w6.skipped".into(), "no-/proc/self/status".into(), "-");
        return;
    };
    let mut setup = make();
    let set_up = alloc::live_bytes();
    alloc::reset_peak();
    let short = steps(quick);
    for _ in 0..short {
        step(&mut setup);
    }
    let mid = rss().unwrap_or(start);
    let faults_before = minor_faults();
    for _ in short..long_steps(quick) {
        step(&mut setup);
    }
    let end = rss().unwrap_or(start);
    if let (Some(a), Some(b)) = (faults_before, minor_faults()) {
        let per_step = (b - a) as f64 / (long_steps(quick) - short) as f64;
        report.push(format!("{prefix}.faults_per_step"), per_step, "faults");
    }
    let heap = alloc::peak_bytes() - set_up;
    let bytes = |name: &str, v: f64| (format!("{prefix}.{name}"), v, "bytes");
    for (name, value, unit) in [
        bytes("start_rss_bytes", start.current as f64),
        bytes("peak_bytes", mid.peak as f64),
        bytes("rss_50_bytes", mid.current as f64),
        bytes("rss_1000_bytes", end.current as f64),
        bytes("peak_1000_bytes", end.peak as f64),
        bytes("growth_bytes", end.current as f64 - mid.current as f64),
        bytes("step_heap_bytes", heap as f64),
    ] {
        report.push(name, value, unit);
    }
}

/// Body of the `w2-probe WHICH STEPS` child, for instruction counts under callgrind: sets up
/// W2 and runs `steps` training steps of `which` (`hand`, `engine` or `nn`) on the
/// engine's kernel. Two runs with different step counts give the instructions of one step
/// without the set-up: `(I(n2) − I(n1)) / (n2 − n1)`. Pushes `w2.probe.<which>.loss_last`.
pub fn run_probe(report: &mut Report, kernel: Kernel, which: &str, steps: usize) {
    let loss = match which {
        "hand" => {
            let mut s = Setup::w2();
            let Setup { mlp, x, labels, ws } = &mut s;
            (0..steps).fold(0.0, |_, _| step(kernel, mlp, x.view(), labels, ws))
        }
        "engine" => {
            let mut s = EngineSetup::w2();
            (0..steps).fold(0.0, |_, _| s.step(false))
        }
        "nn" => {
            let mut s = NnSetup::w2();
            (0..steps).fold(0.0, |_, _| s.step())
        }
        _ => {
            return report.fail(format!(
                "w2-probe: unknown step {which:?} (hand, engine, nn)"
            ));
        }
    };
    report.push(format!("w2.probe.{which}.loss_last"), f64::from(loss), "-");
}
