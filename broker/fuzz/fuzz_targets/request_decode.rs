//! Kafka request decoding on arbitrary frames: a request or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The broker's allocator, so the fuzzer sees what the broker would do.
#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    fjord_broker::protocol::fuzz_decode(data);
});
