//! A counting global allocator: the bench binary's heap traffic, so that W1 can report the
//! allocations per recorded op (the target is none) and the heap bytes a tape holds per
//! node (`w1.bytes_per_node`) from the allocator's own figures, not from estimates.
//!
//! It also keeps the high-water mark of live heap bytes, which W6 reports beside resident
//! memory: unlike `VmHWM` it does not depend on how the system allocator lays out and
//! returns its pages, so it shows what a step holds at once.
//!
//! It forwards to the system allocator and keeps relaxed atomic counters; their cost is
//! paid by every workload, engine and baseline alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// The system allocator with counters.
pub struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

/// Adds `bytes` to the live count and raises the high-water mark if it is passed.
#[inline]
fn grow(bytes: isize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY (for the `unsafe impl`): every method forwards to `System` with the caller's own
// arguments, so `System`'s guarantees carry over; the counters do not touch the memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        grow(layout.size() as isize);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        grow(layout.size() as isize);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        grow(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (including reallocations) so far.
pub fn allocations() -> usize {
    ALLOCS.load(Ordering::Relaxed)
}

/// Heap bytes currently allocated.
pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The most heap bytes live at once since the last [`reset_peak_live_bytes`] (or start).
pub fn peak_live_bytes() -> isize {
    PEAK.load(Ordering::Relaxed)
}

/// Restarts the high-water mark of [`peak_live_bytes`] from the bytes live now.
pub fn reset_peak_live_bytes() {
    PEAK.store(live_bytes(), Ordering::Relaxed);
}
