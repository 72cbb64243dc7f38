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

/// `cleanup.policy`: what makes old records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Whole segments are deleted by `retention.ms` and `retention.bytes`.
    #[default]
    Delete,
    /// The log keeps the latest record of each key (compaction); retention deletes nothing.
    Compact,
    /// Both: compaction, and retention deleting old segments.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, Self::Compact | Self::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, Self::Delete | Self::CompactDelete)
    }
}

/// `min.cleanable.dirty.ratio`: a fraction in `0.0..=1.0`, checked where it is made so the
/// config can be compared exactly.
#[derive(Debug, Clone, Copy)]
pub struct DirtyRatio(f64);

impl DirtyRatio {
    /// `None` unless `0 <= ratio <= 1`.
    pub fn new(ratio: f64) -> Option<Self> {
        (0.0..=1.0).contains(&ratio).then_some(Self(ratio))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for DirtyRatio {
    fn eq(&self, other: &Self) -> bool {
        // Never NaN (checked in `new`), so bit equality is value equality up to the sign of 0.
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for DirtyRatio {}

impl Default for DirtyRatio {
    fn default() -> Self {
        Self(0.5)
    }
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
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps a tombstone (a record with a null value)
    /// after its batch's newest timestamp, so consumers can see the delete.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: compaction runs once this share of the cleanable bytes has
    /// not been compacted yet.
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `min.compaction.lag.ms`: segments holding a record newer than this stay uncompacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a compacted log rolls its active segment at least this often and
    /// compacts a segment whose newest record is this old, whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `segment.jitter.ms`: each segment rolls up to this much before `segment.ms`.
    pub segment_jitter_ms: i64,
    /// `message.timestamp.after.max.ms`: with CreateTime, a batch holding a record timestamped
    /// further in the future than this is refused.
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.before.max.ms`: with CreateTime, a batch holding a record timestamped
    /// further in the past than this is refused.
    pub timestamp_before_max_ms: i64,
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
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: DirtyRatio::default(),
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            segment_jitter_ms: 0,
            // Kafka 4's default (KIP-1030): an hour ahead at most.
            timestamp_after_max_ms: 60 * 60 * 1000,
            timestamp_before_max_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, MAX_SEGMENT_BYTES)
    }
}
