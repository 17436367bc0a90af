//! The fuzz targets of `retrograd_tests::fuzz`, a bounded slice each (fixed seeds, a few
//! seconds), under an allocator that refuses any single allocation above
//! [`ALLOCATION_LIMIT`]: an op that would need more must report an error (its `try_` path
//! probes the allocator), and any other attempt fails the run by aborting.
//!
//! `FUZZ_INPUTS=1000000 cargo test --release -p retrograd-tests --test fuzz -- --nocapture`
//! is the long run of `docs/fuzzing.md`; each target prints `fuzz <target> inputs <n>
//! violations <v>`.

use std::alloc::{GlobalAlloc, Layout, System};

use retrograd_tests::fuzz::{
    Report, checkpoint_seed, checkpoint_target, op_program_seeds, op_program_target, run,
    tape_json_seed, tape_json_target,
};

/// The largest single allocation the library may make while fuzzed (256 MiB).
const ALLOCATION_LIMIT: usize = 1 << 28;

/// The system allocator, refusing (returning null for) any allocation above the limit.
struct Bounded;

// SAFETY: defers to `System` for every request it does not refuse; refusing is returning
// null, which `GlobalAlloc` permits.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Inputs per target: `FUZZ_INPUTS`, or the bounded slice CI runs.
fn inputs(default: u64) -> u64 {
    std::env::var("FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn assert_clean(target: &str, report: &Report) {
    println!(
        "fuzz {target} inputs {} violations {}",
        report.inputs, report.violations
    );
    assert_eq!(
        report.violations,
        0,
        "{target}: {} of {} inputs violated the property; the first:\n{}",
        report.violations,
        report.inputs,
        report.examples.join("\n")
    );
}

#[test]
fn checkpoint_loading() {
    let (store, bytes) = checkpoint_seed();
    let report = run(&[bytes], inputs(20_000), 0xC4EC, |b| {
        checkpoint_target(&store, b)
    });
    assert_clean("checkpoint", &report);
}

#[test]
fn tape_json_loading() {
    let report = run(&[tape_json_seed()], inputs(5_000), 0x7A9E, tape_json_target);
    assert_clean("tape_json", &report);
}

#[test]
fn op_programs() {
    let report = run(&op_program_seeds(), inputs(5_000), 0x0B5, op_program_target);
    assert_clean("op_programs", &report);
}
