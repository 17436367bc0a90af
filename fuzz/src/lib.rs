//! What the libFuzzer targets share: the allocation bound of the test harness, quiet
//! panics, and turning a violated property into a crash libFuzzer records.

use retrograd_tests::fuzz::{Bounded, Verdict};

/// The library may make no single allocation above the harness's bound: an op that would
/// need more must report an error (its `try_` path probes the allocator).
#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Replaces libFuzzer's panic hook (which aborts on every panic, even one that is caught):
/// the targets catch the documented panics themselves and judge them.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// A violated property is a crash: its description goes to stderr and the process
/// aborts, so libFuzzer saves the input.
pub fn judge(verdict: Verdict) {
    if let Err(why) = verdict {
        eprintln!("property violated: {why}");
        std::process::abort();
    }
}
