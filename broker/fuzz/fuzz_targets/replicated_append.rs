//! Arbitrary bytes as a follower's append of what a leader sent (`Log::append_replicated`) on a
//! real log: rejected with an error or accepted, never a panic; what was accepted reads back
//! unchanged and survives a reopen, and a rejected append leaves the log empty.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use fjord_broker::log::{Log, LogConfig, ManualClock};
use libfuzzer_sys::fuzz_target;

// The broker's allocator, so the fuzzer sees what the broker would do.
#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    let path = common::dir().path().join("fuzz-0");
    let _ = std::fs::remove_dir_all(&path);
    let open = || Log::open(&path, LogConfig::default(), Arc::new(ManualClock::new(0))).expect("open");
    let mut log = open();
    let bytes = common::shape(data);
    match log.append_replicated(&bytes) {
        Ok(info) => {
            let read = log.reader().read(0, usize::MAX).expect("read back");
            assert_eq!(read.records, bytes);
            assert_eq!(log.log_end_offset(), info.last_offset + 1);
            let end = log.log_end_offset();
            log.close().expect("close");
            assert_eq!(open().log_end_offset(), end);
        }
        Err(_) => assert_eq!(log.log_end_offset(), 0),
    }
});
