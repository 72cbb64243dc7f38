//! Shared helpers for Fjord's integration tests, crash tests and benchmark drivers.

use fjord_broker::record::batch::set_offset_and_epoch;
use fjord_broker::record::{ProducerInfo, Record, build_batch};

/// Leader epoch the crash appender writes into every batch.
pub const CRASH_LEADER_EPOCH: i32 = 7;

/// The batch the crash appender appends when the log ends at `base_offset`: 1 to 7 records of
/// up to ~1.5 KiB whose bytes all derive from `base_offset`, so a reader can regenerate exactly
/// what must be stored at any offset.
pub fn crash_batch(base_offset: i64) -> Vec<u8> {
    let count = 1 + (base_offset % 7) as usize;
    let value_len = ((base_offset.wrapping_mul(7919)) % 1500) as usize;
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let seed = format!("{base_offset}:{i}:");
            let mut value = seed.repeat(value_len / seed.len() + 1).into_bytes();
            value.truncate(value_len);
            Record {
                key: Some(format!("key-{}", (base_offset + i as i64) % 13).into_bytes()),
                value: (i % 5 != 4).then_some(value),
                headers: vec![(b"origin".to_vec(), Some(seed.into_bytes()))],
                timestamp: 1_700_000_000_000 + base_offset + i as i64,
            }
        })
        .collect();
    build_batch(&records, ProducerInfo::NONE)
}

/// [`crash_batch`] as the log stores it: with its base offset and leader epoch written in.
pub fn stored_crash_batch(base_offset: i64) -> Vec<u8> {
    let mut batch = crash_batch(base_offset);
    set_offset_and_epoch(&mut batch, base_offset, CRASH_LEADER_EPOCH);
    batch
}
