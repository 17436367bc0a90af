//! How many threads retrograd's kernels use: every core by default, one number to change it.
//!
//! The heavy kernels (today the matrix products of [`crate::kernel`]: every `matmul`, and the
//! engine's own Jacobian products) split
//! large problems across threads of a shared pool. Nothing needs to be turned on: a plain
//! dependency on retrograd uses every core the operating system reports
//! ([`std::thread::available_parallelism`]).
//!
//! The count is chosen, in order of precedence, by:
//! 1. [`with_num_threads`], for the calling thread and the duration of a closure (what a
//!    data-parallel trainer uses to run each worker's kernels on one thread);
//! 2. [`set_num_threads`], for the whole process (as `torch.set_num_threads`);
//! 3. the environment variable `RETROGRAD_NUM_THREADS`, read once, when the count is first
//!    asked for (as `RAYON_NUM_THREADS` or `OMP_NUM_THREADS`); a value that is not a positive integer
//!    is reported on stderr once and ignored;
//! 4. the number of available cores.
//!
//! ```
//! use retrograd_tape::threads::{num_threads, set_num_threads, with_num_threads};
//! set_num_threads(1); // e.g. several independent processes share the machine
//! assert_eq!(num_threads(), 1);
//! assert_eq!(with_num_threads(3, num_threads), 3);
//! set_num_threads(0); // back to the default (environment or every core)
//! assert!(num_threads() >= 1);
//! ```
//!
//! A product is cut into one block per thread, never more blocks than there are cores: the
//! calling thread computes the first block and helper threads (at most one per core besides
//! the caller's, started on first use and kept for the process) the others. An idle helper
//! waits 0.3 ms before it sleeps (spinning a few microseconds, then yielding its core), as
//! OpenMP runtimes do, so back-to-back products do not pay for waking it; a helper that
//! another thread's product holds is not waited for (the caller computes that block
//! itself). Products below [`PARALLEL_MIN_MADDS`] multiply-adds run on the calling thread
//! (products that run at memory speed, such as a matrix-vector product, count by the memory
//! they read); the largest products, from 2²⁶ multiply-adds, use the `gemm` crate's own
//! threading on rayon's pool instead (see [`crate::kernel`]).

mod pool;
pub(crate) use pool::run_parts;

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable that sets the default thread count.
pub const ENV_VAR: &str = "RETROGRAD_NUM_THREADS";

/// Products smaller than this many multiply-adds (`m·n·k`) run on one thread whatever the
/// thread count: below it a product takes tens of microseconds, and cutting it in two
/// costs more than it saves (W7's per-sample convolution products of 240,000 ran 35% slower
/// split). Products that run at memory speed (a matrix-vector product) count by the memory
/// they read instead (see the kernel's few-row loops).
pub const PARALLEL_MIN_MADDS: usize = 1 << 20;

/// The process-wide count set by [`set_num_threads`]; 0 means "not set".
static PROCESS: AtomicUsize = AtomicUsize::new(0);

/// The default when nothing was set: the environment variable or the core count.
static DEFAULT: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// The calling thread's override from [`with_num_threads`]; 0 means "none".
    static LOCAL: Cell<usize> = const { Cell::new(0) };
}

/// The number of threads a kernel called from this thread may use (at least 1).
pub fn num_threads() -> usize {
    let local = LOCAL.with(Cell::get);
    if local > 0 {
        return local;
    }
    match PROCESS.load(Ordering::Relaxed) {
        0 => *DEFAULT.get_or_init(default_threads),
        n => n,
    }
}

/// Sets the thread count for the whole process; `0` restores the default
/// (`RETROGRAD_NUM_THREADS`, else every available core). Takes effect at the next kernel
/// call, on every thread without a [`with_num_threads`] override.
pub fn set_num_threads(threads: usize) {
    PROCESS.store(threads, Ordering::Relaxed);
}

/// Runs `f` with the calling thread's kernels limited to `threads` threads (`0`: no
/// override), restoring the previous setting afterwards, also when `f` panics.
///
/// Data-parallel training runs one worker per core, each with its kernels on one thread,
/// so that the workers do not compete for the same cores:
///
/// ```
/// use retrograd_tape::threads::{num_threads, with_num_threads};
/// let inner = with_num_threads(1, || num_threads());
/// assert_eq!(inner, 1);
/// ```
pub fn with_num_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    /// Puts the previous override back when dropped.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|c| c.replace(threads)));
    f()
}

/// The number of available cores (1 when the system cannot tell).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many parts a kernel splits a product of `madds` multiply-adds into: one below
/// [`PARALLEL_MIN_MADDS`], else [`num_threads`], but no more than there are cores (a part
/// waiting for a core only delays the others).
pub(crate) fn parts_for(madds: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    if madds < PARALLEL_MIN_MADDS {
        return 1;
    }
    num_threads()
        .min(*CORES.get_or_init(available_cores))
        .min(pool::MAX_HELPERS + 1)
}

/// `RETROGRAD_NUM_THREADS` if it is a positive integer, else the core count.
fn default_threads() -> usize {
    match std::env::var(ENV_VAR) {
        Ok(value) => match parse_threads(&value) {
            Some(n) => n,
            None => {
                eprintln!(
                    "retrograd: ignoring {ENV_VAR}={value:?} (expected a positive integer); \
                     using {} threads",
                    available_cores()
                );
                available_cores()
            }
        },
        Err(_) => available_cores(),
    }
}

/// Parses a thread count: a positive integer, surrounding spaces allowed.
fn parse_threads(value: &str) -> Option<usize> {
    value.trim().parse::<usize>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_integers_only() {
        assert_eq!(parse_threads(" 4 "), Some(4));
        assert_eq!(parse_threads("1"), Some(1));
        assert_eq!(parse_threads("0"), None);
        assert_eq!(parse_threads("-2"), None);
        assert_eq!(parse_threads("all"), None);
        assert_eq!(parse_threads(""), None);
    }

    #[test]
    fn a_local_override_nests_and_is_restored_after_a_panic() {
        // Only the thread-local layer is exercised here: the process-wide setting is shared
        // with tests running concurrently.
        with_num_threads(3, || {
            assert_eq!(num_threads(), 3);
            assert_eq!(with_num_threads(5, num_threads), 5);
            let caught = std::panic::catch_unwind(|| with_num_threads(7, || panic!("inside")));
            assert!(caught.is_err());
            assert_eq!(num_threads(), 3);
        });
        assert_eq!(LOCAL.with(Cell::get), 0);
        assert!(num_threads() >= 1);
    }
}
