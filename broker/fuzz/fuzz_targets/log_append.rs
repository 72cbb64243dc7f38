//! Appending arbitrary bytes to a real log: the append is rejected with an error or accepted,
//! never a panic, and what was accepted reads back unchanged.
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
    let mut log = Log::open(&path, LogConfig::default(), Arc::new(ManualClock::new(0))).expect("open");
    let mut bytes = common::shape(data);
    if let Ok(info) = log.append(&mut bytes, 1) {
        let read = log.reader().read(info.base_offset, usize::MAX).expect("read back");
        assert_eq!(read.records, bytes);
        assert_eq!(read.next_offset, info.last_offset + 1);
    } else {
        assert_eq!(log.log_end_offset(), 0);
    }
});
