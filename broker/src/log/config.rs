//! Per-log settings, named after the Kafka topic configs they implement.

use crate::record::TimestampType;

/// When appended bytes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// The default: an append counts as acknowledged only once its bytes are fsynced.
    /// Concurrent appends share one fsync (group commit).
    EveryAppend,
    /// Bytes are fsynced every `interval_ms` (the log's owner runs the timer and calls
    /// [`super::Log::flush`]); an append is acknowledged once it is in the page cache. A machine
    /// crash (not a process crash) loses up to one interval of acknowledged data.
    Interval { interval_ms: u64 },
}

/// Settings of one partition log. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it grows past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete sealed segments whose newest record is older; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete the oldest sealed segments while the log is larger; `None`: no limit.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `index.interval.bytes`: bytes between offset index entries.
    pub index_interval_bytes: u64,
    /// The flush policy (`flush.ms`: absent means [`FlushPolicy::EveryAppend`]).
    pub flush: FlushPolicy,
}

/// Positions inside a segment are 32-bit in the index, as in Kafka.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            flush: FlushPolicy::EveryAppend,
        }
    }
}

impl LogConfig {
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, MAX_SEGMENT_BYTES)
    }
}
