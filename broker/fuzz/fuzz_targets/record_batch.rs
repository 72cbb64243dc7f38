//! Record batch validation on arbitrary bytes: never a panic, and what it accepts walks cleanly.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fjord_broker::record::batch::fuzz_validate(&common::shape(data));
});
