//! Heap allocations counted, for the benchmark's "allocations per record" (opt-in).
//!
//! With `ESMD_COUNT_ALLOCATIONS=1` in its environment, `esmd run` counts every allocation and
//! reallocation and exposes the total as `esmd_heap_allocations_total` on `/metrics`;
//! `bench/run` divides its growth over a workload by the records delivered. Off (the
//! default), the allocator costs one relaxed load per allocation. Counts go to per-thread
//! stripes on separate cache lines, so counting does not make threads contend.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The process's allocator: the system allocator, counted when enabled.
pub(crate) struct CountingAllocator;

static ENABLED: AtomicBool = AtomicBool::new(false);
const STRIPES: usize = 16;

#[repr(align(64))]
struct Stripe(AtomicU64);

static COUNTS: [Stripe; STRIPES] = [const { Stripe(AtomicU64::new(0)) }; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: usable from the allocator at any time,
    // thread teardown included.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn count() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let stripe = STRIPE.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        s.get()
    });
    COUNTS[stripe].0.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches no memory the
// allocator hands out and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Turns counting on when `ESMD_COUNT_ALLOCATIONS` is `1` or `true`.
pub(crate) fn enable_from_env() {
    let on = std::env::var("ESMD_COUNT_ALLOCATIONS")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    ENABLED.store(on, Ordering::Relaxed);
}

/// Allocations counted so far, or `None` when counting is off.
pub(crate) fn total() -> Option<u64> {
    ENABLED
        .load(Ordering::Relaxed)
        .then(|| COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocations_only_when_enabled() {
        ENABLED.store(false, Ordering::Relaxed);
        assert_eq!(total(), None);
        ENABLED.store(true, Ordering::Relaxed);
        let before = total().unwrap();
        let v: Vec<Box<u64>> = (0..100).map(Box::new).collect();
        let after = total().unwrap();
        ENABLED.store(false, Ordering::Relaxed);
        assert!(after - before >= 101, "{before} -> {after}");
        drop(v);
    }
}
