//! Decoding `__consumer_offsets` keys and values (read back at every start-up): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    fjord_broker::coordinator::records::fuzz_decode(data);
});
