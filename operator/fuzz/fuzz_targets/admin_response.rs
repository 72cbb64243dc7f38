//! The operator's Kafka admin client decoding arbitrary response frames: a value or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The allocator the operator binary installs, so the fuzzer sees what the operator would do.
#[global_allocator]
static ALLOCATOR: fjord_runtime::alloc::GuardedAlloc = fjord_runtime::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    fjord_operator::kafka::fuzz_decode_response(data);
});
