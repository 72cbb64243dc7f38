//! Record batch validation on arbitrary bytes: never a panic, and what it accepts walks cleanly.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

// The broker's allocator, so the fuzzer sees what the broker would do.
#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    fjord_broker::record::batch::fuzz_validate(&common::shape(data));
});
