//! The broker's global allocator: the system allocator, except that single allocations of
//! 1 GiB or more are anonymous `MAP_NORESERVE` mappings.
//!
//! Why: the Kafka protocol library (kafka-protocol 0.18) sizes a `Vec` from an array length read
//! off the wire before it decodes any element. A frame of a few bytes can declare two billion
//! elements; the kernel refuses a reservation that large (more than RAM + swap) and the process
//! aborts, which makes any client able to kill the broker. Upstream has open fixes (bounding
//! the capacity by the bytes remaining); until one ships, a huge reservation here is a mapping
//! the kernel grants without committing memory. The decoder touches only the elements it really
//! decodes, fails on the short input, and the mapping is released. Genuine large allocations
//! still work: their pages are committed as they are touched, as with overcommitted `malloc`.
//! Found by the request-decoding fuzz target and property tests (docs/fuzzing.md).
//!
//! This is the one module where `unsafe` is allowed: a global allocator and `mmap` are unsafe
//! by definition.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at least this large are mapped with `MAP_NORESERVE`.
const LARGE: usize = 1 << 30;
/// `mmap` returns page-aligned memory; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// See the module documentation. Install with
/// `#[global_allocator] static ALLOCATOR: GuardedAlloc = GuardedAlloc;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedAlloc;

fn is_mapped(layout: Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; failure
    // is reported as MAP_FAILED, which becomes a null pointer (allocation failure).
    let mapped = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        mapped.cast()
    }
}

// SAFETY: every block is either from `System` (small or over-aligned layouts) or from `map`
// (large ones); `is_mapped` of the same layout decides both at allocation and at release, so
// each block goes back to where it came from. Mappings are page-aligned and zero-filled.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_mapped(layout) {
            // SAFETY: `block` came from `map` with this size (same layout, same decision).
            unsafe { libc::munmap(block.cast(), layout.size()) };
        } else {
            // SAFETY: `block` came from `System` with this layout.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_mapped(layout) && !is_mapped(new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: allocate, copy the smaller of the two sizes, release the old block.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_succeed_and_large_blocks_are_usable() {
        // 64 GiB: more than this machine's RAM and swap; only reserved, never touched.
        let huge: Vec<u64> = Vec::with_capacity(8 << 30);
        assert!(huge.capacity() >= 8 << 30);
        drop(huge);
        // A real 1 GiB block written at both ends, grown, shrunk.
        let mut block = vec![0u8; LARGE];
        block[0] = 1;
        block[LARGE - 1] = 2;
        block.resize(LARGE + PAGE, 3);
        assert_eq!((block[0], block[LARGE - 1], block[LARGE]), (1, 2, 3));
        block.truncate(10);
        block.shrink_to_fit();
        assert_eq!(block[0], 1);
    }
}
