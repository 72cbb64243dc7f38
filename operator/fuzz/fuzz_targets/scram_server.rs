//! The SCRAM server messages the operator's admin client reads when it logs in: a value or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: fjord_runtime::alloc::GuardedAlloc = fjord_runtime::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    fjord_operator::kafka::fuzz_scram_server_messages(data);
});
