//! Timing and memory helpers: medians of repeated runs, `black_box`, and a reader for the
//! process's resident memory (current and peak) from `/proc/self/status`.
//!
//! The machines this suite runs on are small shared virtual machines whose speed drifts;
//! every figure is a median of several runs, and comparisons should be ratios measured in
//! one run.

use std::time::Instant;

/// Re-exported so workloads can keep the optimiser from deleting the work they time.
pub use std::hint::black_box;

/// The median of `samples` (sorted in place). Panics on an empty slice.
pub fn median(samples: &mut [f64]) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        0.5 * (samples[n / 2 - 1] + samples[n / 2])
    }
}

/// Wall-clock nanoseconds of one call of `f`.
pub fn time_ns<R>(f: impl FnOnce() -> R) -> f64 {
    let start = Instant::now();
    let r = f();
    let elapsed = start.elapsed();
    black_box(r);
    elapsed.as_secs_f64() * 1e9
}

/// Calls `f` `warmup` times untimed, then `reps` times timed; returns the median
/// nanoseconds per call.
pub fn median_ns<R>(warmup: usize, reps: usize, mut f: impl FnMut() -> R) -> f64 {
    for _ in 0..warmup {
        black_box(f());
    }
    let mut samples: Vec<f64> = (0..reps.max(1)).map(|_| time_ns(&mut f)).collect();
    median(&mut samples)
}

/// Resident memory of this process, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rss {
    /// Resident set size now (`VmRSS`).
    pub current: u64,
    /// The high-water mark of the resident set since the process started (`VmHWM`).
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status` (Linux only; `None` elsewhere or if
/// the file does not have them).
///
/// Both are per process: a peak measured after several workloads ran in one process is the
/// peak of all of them, which is why the suite measures memory in a child process.
pub fn rss() -> Option<Rss> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status(&status)
}

/// Parses the `VmRSS` and `VmHWM` lines (in kB) of a `/proc/<pid>/status` text.
fn parse_status(status: &str) -> Option<Rss> {
    let field = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(Rss {
        current: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// Minor page faults of this process so far (all threads), from `/proc/self/stat`; `None`
/// where that file does not exist. A page touched for the first time costs a fault, which
/// no instruction count shows.
pub fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces): state
    // is field 3, minflt field 10.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Rss {
                current: 1024 * 1024,
                peak: 2048 * 1024
            })
        );
    }

    #[test]
    fn reads_own_rss() {
        if cfg!(target_os = "linux") {
            let r = rss().expect("VmRSS/VmHWM in /proc/self/status");
            assert!(r.peak >= r.current && r.current > 0);
        }
    }
}
