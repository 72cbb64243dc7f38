//! Decoding what arrives on the inter-broker listener (requests, answers) and what the metadata
//! log reads back from disk at every start-up: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = fjord_broker::quorum::rpc::decode_request(data);
    let _ = fjord_broker::quorum::rpc::decode_response(data);
    let _ = fjord_broker::quorum::store::decode_log_frame(data);
});
