//! Memory a synced replica holds per pin, measured two ways: live heap bytes (a counting
//! allocator) and resident set growth (`/proc/self/statm`, Linux only), after the
//! allocator has returned its free pages.
//!
//! `cargo bench -p pinfold-core --bench crdt_memory` (`PINFOLD_BENCH_PINS`, default 1,000,000).

// The counting allocator below is the one place `unsafe` is allowed: GlobalAlloc is unsafe.
#![allow(unsafe_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use pinfold_core::crdt::Config;
use support::{cold_sync, writer_with_pins};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Hands the allocator's free pages back to the system, so that resident memory shows what
/// the replica holds rather than what the sync left free (glibc only).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns unused heap pages to the kernel.
        unsafe { malloc_trim(0) };
    }
}

fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pins = support::bench_pins(1_000_000);
    let writer = writer_with_pins(pins, usize::MAX);
    let block_bytes: usize = writer.store().blocks().map(|(_, b)| b.len()).sum();
    let heap_before = LIVE.load(Ordering::Relaxed);
    release_free_memory();
    let rss_before = resident_bytes();
    let follower = cold_sync(&writer, Config::default());
    let heap = LIVE.load(Ordering::Relaxed) - heap_before;
    let per_pin = |bytes: i64| bytes as f64 / pins as f64;
    println!(
        "synced replica of {pins} pins ({} delta blocks):",
        follower.store().block_count()
    );
    println!("  live heap      {:>7.1} bytes/pin", per_pin(heap as i64));
    println!(
        "    of which delta blocks {:>7.1} bytes/pin",
        per_pin(block_bytes as i64)
    );
    println!(
        "    state index and rest  {:>7.1} bytes/pin",
        per_pin(heap as i64 - block_bytes as i64)
    );
    let rss_after_sync = resident_bytes();
    release_free_memory();
    if let (Some(before), Some(after_sync), Some(after)) =
        (rss_before, rss_after_sync, resident_bytes())
    {
        println!(
            "  resident growth {:>6.1} bytes/pin ({:.1} before free pages were released)",
            per_pin(after - before),
            per_pin(after_sync - before)
        );
    }
    drop(follower);
}
