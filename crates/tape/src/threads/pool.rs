//! Splitting one kernel call across cores with the calling thread doing its share.
//!
//! A matrix product in a training step lasts a few hundred microseconds. Handing it to
//! rayon's pool from a thread outside the pool puts the caller to sleep and wakes pool
//! threads through the kernel on every call: on W2's step that came to a tenth of the CPU
//! time in futex and `sched_yield` system calls. Here the caller runs part 0 itself and
//! each other part goes to a helper thread that spins for a short while after its last
//! part before it parks, as OpenMP runtimes do, so the parts of back-to-back products
//! start within a microsecond of each other.
//!
//! Helpers are claimed one call at a time, and there is at most one per core besides the
//! caller's: when other threads hold them all (several user threads running products at
//! once), the caller runs the parts it could not hand out itself, so a call always
//! completes, never waits for another call and never puts more threads on the cores than
//! there are cores. Parts must therefore not wait for each other. After its own
//! part the caller also takes back every part no helper has started (a helper asleep, or
//! its core taken by another process) and runs it: a loaded machine degrades to one
//! thread's speed, not to waiting on a descheduled helper.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks: longer than the gaps between the
/// products of one training step, short enough not to hold a core between steps.
const SPIN_FOR: Duration = Duration::from_micros(300);

/// The most helpers the process starts, whatever thread count or core count.
pub(crate) const MAX_HELPERS: usize = 63;

/// Runs `work(i)` for every `i` in `0..parts`, part 0 on the calling thread and the others
/// on helper threads where one is free, and returns when every part has finished. A panic
/// in any part is re-raised here after all parts have stopped.
pub(crate) fn run_parts(parts: usize, work: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        if parts == 1 {
            work(0);
        }
        return;
    }
    let jobs: Vec<Job> = (1..parts).map(|index| Job::new(work, index)).collect();
    let mut waiting = Waiting {
        posted: Vec::with_capacity(parts - 1),
        caller_done: false,
    };
    let mut unposted = Vec::new();
    for job in &jobs {
        match pool().claim() {
            Some(helper) => {
                helper.post(job);
                waiting.posted.push(Posted {
                    helper,
                    job,
                    taken_back: false,
                });
            }
            None => unposted.push(job.index),
        }
    }
    work(0);
    for index in unposted {
        work(index);
    }
    // A part no helper has started yet (its helper asleep, or its core busy with another
    // process) is run here rather than waited for.
    for posted in &mut waiting.posted {
        if posted.helper.take_back(posted.job) {
            posted.taken_back = true;
            work(posted.job.index);
        }
    }
    waiting.caller_done = true;
    drop(waiting); // waits for the helpers, then re-raises a helper's panic
}

/// One part handed to a helper. It lives on the caller's stack until the helper has
/// finished it or the caller has taken it back (`Waiting` makes sure of that, also while
/// unwinding).
struct Job {
    /// The caller's closure with its lifetime erased; valid until `done` is set.
    work: *const (dyn Fn(usize) + Sync),
    index: usize,
    done: AtomicBool,
    panic: UnsafeCell<Option<Box<dyn Any + Send>>>,
}

impl Job {
    #[allow(unsafe_code)]
    fn new(work: &(dyn Fn(usize) + Sync), index: usize) -> Job {
        // SAFETY: only the lifetime is erased; `Waiting` keeps the borrow alive (the
        // caller does not return or unwind past it) until every helper has set `done`.
        let work: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(work) };
        Job {
            work,
            index,
            done: AtomicBool::new(false),
            panic: UnsafeCell::new(None),
        }
    }
}

/// A job handed to a helper.
struct Posted<'a> {
    helper: &'static Helper,
    job: &'a Job,
    /// The caller took the job back before the helper started it.
    taken_back: bool,
}

/// When dropped, takes back every posted job not yet started and waits for the others,
/// then re-raises the first helper panic.
struct Waiting<'a> {
    posted: Vec<Posted<'a>>,
    /// The caller's own parts all returned (otherwise it is unwinding from one of them,
    /// and that panic is the one to pass on).
    caller_done: bool,
}

impl Drop for Waiting<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        for posted in &mut self.posted {
            if !posted.taken_back && !posted.helper.take_back(posted.job) {
                wait_until(&posted.job.done);
            }
            posted.helper.release();
        }
        if !self.caller_done {
            return;
        }
        for Posted { job, .. } in &self.posted {
            // SAFETY: the helper wrote `panic` before setting `done` (Release), which
            // `wait_until` observed (Acquire); nothing else touches it now.
            if let Some(payload) = unsafe { (*job.panic.get()).take() } {
                resume_unwind(payload);
            }
        }
    }
}

/// Spins on `flag` for up to [`SPIN_FOR`], then yields the core between checks (the
/// helper may be sharing its core with other work).
fn wait_until(flag: &AtomicBool) {
    let mut spin = Spin::new();
    while !flag.load(Ordering::Acquire) {
        if !spin.again() {
            thread::yield_now();
        }
    }
}

/// Waiting for up to [`SPIN_FOR`]: a few thousand turns of pure spinning (the next part
/// usually arrives within microseconds), then yielding the core between checks, so that on
/// a machine with other work a waiting thread hands its core to that work (or to the
/// thread it waits for) instead of burning it. On an idle machine a yield returns at once.
struct Spin {
    start: Instant,
    turns: u32,
}

/// Turns of pure spinning before a [`Spin`] starts yielding (a few microseconds).
const PURE_SPINS: u32 = 2048;

impl Spin {
    fn new() -> Spin {
        Spin {
            start: Instant::now(),
            turns: 0,
        }
    }

    /// Waits one turn and returns `true` while the time is not up; `false` after.
    fn again(&mut self) -> bool {
        self.turns = self.turns.saturating_add(1);
        if self.turns < PURE_SPINS {
            std::hint::spin_loop();
            return true;
        }
        if self.start.elapsed() >= SPIN_FOR {
            return false;
        }
        thread::yield_now();
        true
    }
}

/// A helper thread and the slot through which it receives one job at a time.
struct Helper {
    /// Set by the caller that owns the helper for the duration of one `run_parts`.
    claimed: AtomicBool,
    /// The posted job until the helper (or the poster, taking it back) takes it out.
    job: AtomicPtr<Job>,
    /// True while the helper is parked (or about to park) waiting for a job.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Helper {
    fn post(&self, job: &Job) {
        self.job
            .store(ptr::from_ref(job).cast_mut(), Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// Takes `job` out of the slot if the helper has not taken it yet: afterwards the
    /// helper will never see it. `false` when the helper has it (it will set `done`).
    fn take_back(&self, job: &Job) -> bool {
        let ptr = ptr::from_ref(job).cast_mut();
        self.job
            .compare_exchange(ptr, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn release(&self) {
        self.claimed.store(false, Ordering::Release);
    }

    /// The helper thread's loop: take a job, run it, report, spin, park.
    #[allow(unsafe_code)]
    fn serve(&self) {
        loop {
            let job = self.next_job();
            // SAFETY: the poster keeps `*job` alive until `done` is set below, and the
            // closure it points at alive as long as the job (see `Job::new`).
            let job = unsafe { &*job };
            let work = unsafe { &*job.work };
            let outcome = catch_unwind(AssertUnwindSafe(|| work(job.index)));
            if let Err(payload) = outcome {
                // SAFETY: the poster reads `panic` only after seeing `done`.
                unsafe { *job.panic.get() = Some(payload) };
            }
            // After this store the job may be gone: it is not touched again.
            job.done.store(true, Ordering::Release);
        }
    }

    /// Spins for [`SPIN_FOR`], then parks, until it takes a posted job out of the slot (a
    /// job its poster takes back first is never seen).
    fn next_job(&self) -> *mut Job {
        let mut spin = Spin::new();
        loop {
            let job = self.job.load(Ordering::Acquire);
            if !job.is_null()
                && self
                    .job
                    .compare_exchange(job, ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return job;
            }
            if spin.again() {
                continue;
            }
            self.parked.store(true, Ordering::SeqCst);
            if self.job.load(Ordering::SeqCst).is_null() {
                thread::park();
            }
            self.parked.store(false, Ordering::SeqCst);
        }
    }
}

/// The process's helpers, started on first use up to the count asked for.
struct Pool {
    helpers: Mutex<Vec<&'static Helper>>,
}

/// Set when the system refused a helper thread; no more are tried.
static SPAWN_FAILED: AtomicBool = AtomicBool::new(false);

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        helpers: Mutex::new(Vec::new()),
    })
}

impl Pool {
    /// A free helper, starting a new one when all are busy and there are fewer than one
    /// per core besides the caller's (more would only compete for the cores: a caller
    /// that finds none free runs the part itself).
    fn claim(&self) -> Option<&'static Helper> {
        let mut helpers = self.helpers.lock().unwrap_or_else(|e| e.into_inner());
        let free = helpers.iter().find(|h| {
            h.claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(helper) = free {
            return Some(helper);
        }
        let limit = super::available_cores().saturating_sub(1).min(MAX_HELPERS);
        if helpers.len() >= limit || SPAWN_FAILED.load(Ordering::Relaxed) {
            return None;
        }
        let helper: &'static Helper = Box::leak(Box::new(Helper {
            claimed: AtomicBool::new(true),
            job: AtomicPtr::new(ptr::null_mut()),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        }));
        let spawned = thread::Builder::new()
            .name(format!("retrograd-kernel-{}", helpers.len() + 1))
            .spawn(move || helper.serve());
        match spawned {
            Ok(handle) => {
                let _ = helper.thread.set(handle.thread().clone());
                helpers.push(helper);
                Some(helper)
            }
            // No thread to be had (a resource limit): the caller runs the part itself, and
            // no further helper is tried (the one helper allocated here is not reclaimed).
            Err(_) => {
                SPAWN_FAILED.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_once() {
        for parts in 0..6 {
            let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                run_parts(parts, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 50));
        }
    }

    #[test]
    fn callers_on_several_threads_share_the_helpers() {
        thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..200 {
                        let sum = AtomicUsize::new(0);
                        run_parts(3, &|i| {
                            sum.fetch_add(i + t + round, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 3 * (t + round) + 3);
                    }
                });
            }
        });
    }

    #[test]
    fn a_helper_panic_reaches_the_caller_and_the_pool_survives() {
        let caught = catch_unwind(|| run_parts(2, &|i| assert!(i == 0, "part {i} failed")));
        let message = caught.unwrap_err();
        let text = message
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        assert!(text.contains("part 1 failed"), "{text}");
        let ran = AtomicUsize::new(0);
        run_parts(2, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_caller_panic_leaves_no_part_running() {
        for _ in 0..20 {
            // 0: not started; 1: running; 2: finished. A helper part is either taken back
            // before it starts or waited for: never still running after the unwind.
            let state = AtomicUsize::new(0);
            let caught = catch_unwind(AssertUnwindSafe(|| {
                run_parts(2, &|i| {
                    if i == 0 {
                        thread::sleep(Duration::from_millis(1));
                        panic!("caller part");
                    }
                    state.store(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(5));
                    state.store(2, Ordering::SeqCst);
                })
            }));
            assert!(caught.is_err());
            assert_ne!(state.load(Ordering::SeqCst), 1);
        }
    }
}
