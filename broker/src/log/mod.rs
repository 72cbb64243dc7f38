//! The commit log of one partition: where produced batches land and fetches read from.
//!
//! ```text
//! partition actor --append/roll/truncate_to/delete_records_before--> Log (one owner)
//!       |                                                              |  writes segments
//!       +--- Flusher::flush_to (group commit, off the appender) -------+
//! fetch/list offsets ----------------------------------------------> LogReader (any thread)
//! ```
//!
//! On disk, one directory per partition (`<topic>-<partition>`) holds segments named by their
//! 20-digit base offset: `.log` (record batches exactly as produced, with the broker's base
//! offset and leader epoch written in), `.index` and `.timeindex` (sparse, rebuilt when missing or
//! damaged), and `partition.checkpoint` (recovery point and log start offset).
//!
//! Compaction (`compaction.rs`) rewrites sealed segments into `.cleaned` files and swaps them in
//! by renames; recovery finishes or undoes an interrupted swap.
//!
//! Synchronous API, no tasks, no network: the broker runs these calls off its async workers.

mod checkpoint;
mod clock;
mod compaction;
mod config;
mod epochs;
mod flush;
mod index;
mod offsets;
mod segment;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::{CleanedSegments, CompactionOutcome, CompactionPlan};
pub use config::{CleanupPolicy, DirtyRatio, FlushPolicy, LogConfig, MAX_SEGMENT_BYTES};
pub use epochs::{EpochEntry, LeaderEpochs, UNDEFINED_EPOCH_OFFSET};
pub use flush::{FlushError, Flusher};
pub use offsets::LogOffsets;

use checkpoint::{Checkpoint, CheckpointError, sync_dir};
use segment::{ActiveSegment, Segment, SegmentReadError};

use crate::record::TimestampType;
use crate::record::batch::{self, BatchError, BatchHeader};

/// The directory of a partition's log under the data directory.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The file operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    CreateDir,
    ListDir,
    CreateSegment,
    OpenSegment,
    Append,
    Read,
    Sync,
    Truncate,
    DeleteSegment,
    WriteIndex,
    ReadCheckpoint,
    WriteCheckpoint,
    SyncDir,
    RenameSegment,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateDir => "creating the log directory",
            Self::ListDir => "listing the log directory",
            Self::CreateSegment => "creating a segment",
            Self::OpenSegment => "opening a segment",
            Self::Append => "appending to a segment",
            Self::Read => "reading a segment",
            Self::Sync => "syncing a segment",
            Self::Truncate => "truncating a segment",
            Self::DeleteSegment => "deleting a segment",
            Self::WriteIndex => "writing segment indexes",
            Self::ReadCheckpoint => "reading the checkpoint",
            Self::WriteCheckpoint => "writing the checkpoint",
            Self::SyncDir => "syncing the log directory",
            Self::RenameSegment => "renaming a segment file",
        })
    }
}

/// Errors of the log. Those about the caller's input (`InvalidBatch`, `BatchTooLarge`,
/// `OffsetOutOfRange`, ...) leave the log unchanged; the protocol layer maps them to Kafka codes.
/// How many records without a key an append refused for them names: a batch of a million tiny
/// keyless records must not cost an index, let alone a message, per record.
pub const MAX_NAMED_RECORDS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("record batch {index} of the append is invalid")]
    InvalidBatch {
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("a record batch or append of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    #[error("the append holds no record batch")]
    EmptyAppend,
    /// `record_indices` count records from the start of the append, across its batches.
    #[error(
        "{count} record(s) of the append have no key, the first at index {}: a compacted topic cannot accept records without a key",
        record_indices.first().copied().unwrap_or_default()
    )]
    RecordsWithoutKey {
        /// The first [`MAX_NAMED_RECORDS`] of them, counted from the start of the append.
        record_indices: Vec<usize>,
        count: usize,
    },
    /// `message.timestamp.before.max.ms` and `after.max.ms` (CreateTime only): `records` are the
    /// first [`MAX_NAMED_RECORDS`] outside `[earliest, latest]`, each with its timestamp, counted
    /// from the start of the append.
    #[error(
        "{count} record(s) of the append are timestamped outside [{earliest}, {latest}], the first at index {}",
        records.first().map(|(index, _)| *index).unwrap_or_default()
    )]
    TimestampOutOfRange {
        records: Vec<(usize, i64)>,
        count: usize,
        earliest: i64,
        latest: i64,
    },
    #[error("offset {offset} is outside the log's range {log_start_offset}..={log_end_offset}")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("stored batch in {segment} at byte {position} is damaged")]
    CorruptBatch {
        segment: PathBuf,
        position: u64,
        #[source]
        source: BatchError,
    },
    #[error(
        "cannot move the log start offset to {requested}: past the log end offset {log_end_offset}"
    )]
    LogStartBeyondEnd { requested: i64, log_end_offset: i64 },
    #[error("cannot truncate to offset {offset}: below the log start offset {log_start_offset}")]
    TruncateBelowStart { offset: i64, log_start_offset: i64 },
    /// A replicated append must continue the log: its first batch at or past the log end, each
    /// next batch at or past where the one before ended, leader epochs never going back.
    #[error(
        "replicated batch {index} starts at offset {base_offset} in leader epoch {leader_epoch}: the log expects offset {expected} or later in epoch {latest_epoch} or later"
    )]
    NotContiguous {
        index: usize,
        base_offset: i64,
        leader_epoch: i32,
        expected: i64,
        latest_epoch: i32,
    },
    #[error("{op} {}", path.display())]
    Io {
        op: IoOp,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("making appended data durable")]
    Flush(#[from] FlushError),
    #[error("compaction was cancelled")]
    CompactionCancelled,
    #[error("re-encoding batch {base_offset} of {segment} for compaction")]
    RewriteBatch {
        segment: PathBuf,
        base_offset: i64,
        #[source]
        source: crate::record::compression::CodecError,
    },
}

fn io_error(op: IoOp, path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's time when the topic uses `LogAppendTime`.
    pub log_append_time: Option<i64>,
    pub log_start_offset: i64,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole record batches, as stored; empty at the end of the log.
    pub records: Vec<u8>,
    /// The offset after the last returned batch (the requested offset when nothing was returned).
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// What [`LogReader::divergence`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The reader's position follows this log.
    None,
    /// The reader's log diverged: its copy must end at `end_offset`, the end of `epoch` here.
    Diverged { epoch: i32, end_offset: i64 },
    /// The position or epoch cannot be placed in this log (OFFSET_OUT_OF_RANGE).
    OutOfRange,
}

/// An offset found by timestamp, with the timestamp of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start_offset: i64,
}

/// State readers share with the appender: the segment list and the offset bounds.
#[derive(Debug)]
struct View {
    dir: PathBuf,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    /// Where each leader epoch's records start (`leader-epoch.checkpoint`); changed only by the
    /// appender, read by OffsetsForLeaderEpoch from any thread.
    epochs: RwLock<LeaderEpochs>,
}

impl View {
    fn epochs(&self) -> std::sync::RwLockReadGuard<'_, LeaderEpochs> {
        self.epochs.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the epoch cache with `change` and, if it says the cache changed, writes it, then
    /// publishes it: on a copy, so readers never wait on the file and a failed write leaves the
    /// cache as the file has it (the next append of that epoch tries again). Only the appender
    /// changes the cache, so the copy cannot miss a concurrent change.
    fn change_epochs(&self, change: impl FnOnce(&mut LeaderEpochs) -> bool) -> Result<(), Error> {
        let mut next = self.epochs().clone();
        if change(&mut next) {
            next.write(&self.dir)
                .map_err(io_error(IoOp::WriteCheckpoint, &self.dir))?;
            *self.epochs.write().unwrap_or_else(PoisonError::into_inner) = next;
        }
        Ok(())
    }

    fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segments.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set_segments(&self, segments: Vec<Arc<Segment>>) {
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(segments);
    }

    fn offsets(&self) -> LogOffsets {
        let log_end = self.log_end_offset.load(Ordering::Acquire);
        let log_start = self.log_start_offset.load(Ordering::Acquire).min(log_end);
        LogOffsets::new(log_start, log_end).unwrap_or_else(|| {
            unreachable!("log offsets are kept non-negative and ordered: {log_start}..{log_end}")
        })
    }
}

/// Reads a log from any thread without waiting for its appender.
#[derive(Debug, Clone)]
pub struct LogReader {
    view: Arc<View>,
}

impl LogReader {
    pub fn offsets(&self) -> LogOffsets {
        self.view.offsets()
    }

    /// Whole batches from the one holding `offset`, at least one if there is one, then more while
    /// they fit in `max_bytes`. Every batch returned has passed its CRC check.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, Error> {
        self.read_below(offset, max_bytes, i64::MAX)
    }

    /// [`LogReader::read`], returning only batches that start below `upper` (a high watermark).
    pub fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadResult, Error> {
        let offsets = self.offsets();
        let segments = self.view.segments();
        let (log_start_offset, log_end_offset) =
            (offsets.log_start_offset(), offsets.log_end_offset());
        if !offsets.is_readable(offset) {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let upper = upper.min(log_end_offset);
        let mut result = ReadResult {
            records: Vec::new(),
            next_offset: offset,
            log_start_offset,
            log_end_offset,
        };
        let first = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in segments[first..]
            .iter()
            .take_while(|s| s.base_offset() < upper)
        {
            let from = offset.max(segment.base_offset());
            let read = segment
                .read(from, max_bytes, upper)
                .map_err(read_error(segment))?;
            if let Some(records) = read {
                result.next_offset = last_next_offset(&records).unwrap_or(offset);
                result.records = records;
                break;
            }
        }
        Ok(result)
    }

    /// The first offset whose record timestamp is at or after `timestamp` (ListOffsets by time),
    /// or `None` if every record is older. For compressed batches the answer is the first offset
    /// of the batch that holds the match, with the batch's max timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>, Error> {
        let log_start = self.offsets().log_start_offset();
        for segment in self.view.segments().iter() {
            if segment.next_offset() <= log_start {
                continue;
            }
            if let Some(found) = Self::search(segment, timestamp, log_start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (ListOffsets' MAX_TIMESTAMP, KIP-734): the first
    /// record carrying it in the first segment that starts below `upper` and reached it. As with
    /// [`LogReader::offset_for_timestamp`], a compressed batch answers with its first offset.
    pub fn max_timestamp_offset(&self, upper: i64) -> Result<Option<TimestampOffset>, Error> {
        let log_start = self.offsets().log_start_offset();
        let segments = self.view.segments();
        let mut newest: Option<&Arc<Segment>> = None;
        for segment in segments.iter().take_while(|s| s.base_offset() < upper) {
            if segment.next_offset() > log_start
                && segment.max_timestamp() >= 0
                && newest.is_none_or(|n| segment.max_timestamp() > n.max_timestamp())
            {
                newest = Some(segment);
            }
        }
        match newest {
            Some(segment) => Self::search(segment, segment.max_timestamp(), log_start),
            None => Ok(None),
        }
    }

    /// [`Segment::offset_for_timestamp`] with the log's errors.
    fn search(
        segment: &Segment,
        timestamp: i64,
        log_start: i64,
    ) -> Result<Option<TimestampOffset>, Error> {
        let found = segment
            .offset_for_timestamp(timestamp, log_start)
            .map_err(read_error(segment))?;
        Ok(found.map(|(offset, timestamp)| TimestampOffset { offset, timestamp }))
    }

    /// Kafka's OffsetsForLeaderEpoch on this log: the largest epoch at most `epoch` it holds and
    /// the offset where the next begins, the log end for the latest (see
    /// [`LeaderEpochs::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let epochs = self.view.epochs();
        epochs.end_offset_for(epoch, self.offsets().log_end_offset())
    }

    /// Where records of `epoch` start in this log, if it holds any.
    pub fn epoch_start(&self, epoch: i32) -> Option<i64> {
        self.view
            .epochs()
            .entries()
            .iter()
            .find(|entry| entry.epoch == epoch)
            .map(|entry| entry.start_offset)
    }

    /// The leader epoch of the newest batch this log holds (-1 when it holds none with one).
    pub fn latest_epoch(&self) -> i32 {
        self.view.epochs().latest_epoch().unwrap_or(-1)
    }

    /// Whether a reader at `fetch_offset`, whose last record read was of `last_fetched_epoch`,
    /// read what this log holds (KIP-320 for consumers, KIP-279 for followers). Kafka's order: an
    /// offset below the log start, or an epoch this log cannot place, is out of range (the reader
    /// resets); a copy of that epoch here that ends below the reader's position, or a newer epoch
    /// than this log has, means the reader's log diverged and must be cut at the returned end.
    pub fn divergence(&self, fetch_offset: i64, last_fetched_epoch: i32) -> Divergence {
        if last_fetched_epoch < 0 {
            return Divergence::None;
        }
        let (epoch, end_offset) = self.end_offset_for_epoch(last_fetched_epoch);
        if fetch_offset < self.offsets().log_start_offset()
            || (epoch, end_offset) == UNDEFINED_EPOCH_OFFSET
        {
            return Divergence::OutOfRange;
        }
        if epoch < last_fetched_epoch || end_offset < fetch_offset {
            return Divergence::Diverged { epoch, end_offset };
        }
        Divergence::None
    }

    /// Bytes of record data on disk.
    pub fn size_bytes(&self) -> u64 {
        self.view.segments().iter().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.view.segments().len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.view
            .segments()
            .iter()
            .map(|s| s.base_offset())
            .collect()
    }
}

fn last_next_offset(records: &[u8]) -> Option<i64> {
    batch::split_batches(records)
        .filter_map(Result::ok)
        .last()
        .map(|(h, _)| h.next_offset())
}

/// A partition's log, owned by one appender.
#[derive(Debug)]
pub struct Log {
    config: LogConfig,
    clock: Arc<dyn Clock>,
    active: ActiveSegment,
    view: Arc<View>,
    flusher: Flusher,
    /// Compaction has cleaned the segments below this offset since the log was opened (not
    /// persisted: after a restart the first pass cleans everything again, which is idempotent).
    cleaned_up_to: i64,
    /// Counts truncations, so a compaction planned before one is not swapped in after it.
    generation: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering from an unclean stop: segments holding
    /// offsets at or past the recovery point are re-validated batch by batch, and a torn or
    /// damaged tail is cut at the last good batch.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(IoOp::CreateDir, &dir))?;
        compaction::recover_interrupted(&dir)?;
        let now = clock.now_ms();
        let interval = config.index_interval_bytes;
        let checkpoint = match Checkpoint::read(&dir) {
            Ok(checkpoint) => checkpoint,
            Err(CheckpointError::Malformed) => {
                tracing::warn!(dir = %dir.display(), "malformed checkpoint; recovering the whole log");
                None
            }
            Err(CheckpointError::Io(source)) => {
                return Err(Error::Io {
                    op: IoOp::ReadCheckpoint,
                    path: dir,
                    source,
                });
            }
        };
        let recovery_point = checkpoint.map_or(0, |c| c.recovery_point);
        let mut log_start = checkpoint.map_or(0, |c| c.log_start_offset);

        let mut bases = list_segment_bases(&dir)?;
        // A crash between moving the log start and deleting old segments leaves them behind.
        while bases.len() >= 2 && bases[1] <= log_start {
            Segment::delete_files(&dir, bases[0]).map_err(io_error(IoOp::DeleteSegment, &dir))?;
            bases.remove(0);
        }

        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
        let mut recovered = Vec::new();
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let next_base = bases.get(i + 1).copied();
            let open_error = io_error(IoOp::OpenSegment, &dir);
            if let Some(next_base) = next_base.filter(|&next| next <= recovery_point) {
                segments.push(Arc::new(open_trusted(
                    &dir, base, next_base, now, interval,
                )?));
                i += 1;
                continue;
            }
            if next_base.is_none()
                && let Some(segment) =
                    Segment::open_indexed(&dir, base, now, interval).map_err(open_error)?
                && segment.next_offset() <= recovery_point
            {
                // Closed cleanly: nothing past the recovery point to re-validate.
                segments.push(Arc::new(segment));
                break;
            }
            let (segment, end) = Segment::open_scanning(&dir, base, now, interval, true)
                .map_err(io_error(IoOp::OpenSegment, &dir))?;
            if let Some(problem) = end.problem {
                let file_len = fs::metadata(segment.path())
                    .map(|m| m.len())
                    .unwrap_or(end.valid_size);
                tracing::warn!(
                    segment = %segment.path().display(),
                    position = end.valid_size,
                    cut_bytes = file_len.saturating_sub(end.valid_size),
                    log_end_offset = segment.next_offset(),
                    %problem,
                    "recovery cut the log at the last good batch"
                );
                segment
                    .cut_file(end.valid_size)
                    .map_err(io_error(IoOp::Truncate, segment.path()))?;
                for &later in &bases[i + 1..] {
                    tracing::warn!(
                        dir = %dir.display(),
                        base_offset = later,
                        "recovery deleted a segment that followed the cut"
                    );
                    Segment::delete_files(&dir, later)
                        .map_err(io_error(IoOp::DeleteSegment, &dir))?;
                }
                bases.truncate(i + 1);
            }
            let segment = Arc::new(segment);
            recovered.push(Arc::clone(&segment));
            segments.push(segment);
            i += 1;
        }

        let log_end = segments.last().map_or(log_start, |s| s.next_offset());
        if log_start > log_end || segments.is_empty() {
            // Nothing left at or after the log start: begin an empty log there.
            for segment in segments.drain(..) {
                Segment::delete_files(&dir, segment.base_offset())
                    .map_err(io_error(IoOp::DeleteSegment, &dir))?;
            }
            let segment = Segment::create(&dir, log_start, now)
                .map_err(io_error(IoOp::CreateSegment, &dir))?;
            segments.push(Arc::new(segment));
        }
        log_start = log_start.max(segments[0].base_offset());
        for segment in &recovered {
            segment
                .sync()
                .map_err(io_error(IoOp::Sync, segment.path()))?;
        }
        sync_dir(&dir).map_err(io_error(IoOp::SyncDir, &dir))?;

        let active = Arc::clone(
            segments
                .last()
                .unwrap_or_else(|| unreachable!("one segment at least")),
        );
        let log_end = active.next_offset();
        Checkpoint {
            recovery_point: log_end,
            log_start_offset: log_start,
        }
        .write(&dir)
        .map_err(io_error(IoOp::WriteCheckpoint, &dir))?;
        let epochs = open_epochs(&dir, &segments, log_start, log_end)?;
        let view = Arc::new(View {
            dir,
            segments: RwLock::new(Arc::new(segments)),
            log_start_offset: AtomicI64::new(log_start),
            log_end_offset: AtomicI64::new(log_end),
            epochs: RwLock::new(epochs),
        });
        Ok(Self {
            config,
            clock,
            flusher: Flusher::new(log_end, Arc::clone(&active)),
            active: ActiveSegment::new(active),
            view,
            cleaned_up_to: log_start,
            generation: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.view.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies changed topic configs; they take effect from the next append or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn reader(&self) -> LogReader {
        LogReader {
            view: Arc::clone(&self.view),
        }
    }

    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }

    pub fn offsets(&self) -> LogOffsets {
        self.view.offsets()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.view.log_end_offset.load(Ordering::Acquire)
    }

    /// Validates and appends one or more concatenated v2 batches, all or nothing. Offsets are
    /// assigned from the log end offset and written, with `leader_epoch`, into each batch
    /// header (outside the CRC). With `LogAppendTime` the broker's time goes into each batch.
    ///
    /// The bytes are written but not yet durable: under [`FlushPolicy::EveryAppend`] the caller
    /// acknowledges only after [`Flusher::flush_to`]`(last_offset + 1)` returns.
    pub fn append(&mut self, records: &mut [u8], leader_epoch: i32) -> Result<AppendInfo, Error> {
        self.check_append(records)?;
        let now = self.clock.now_ms();
        // CreateTime timestamps must lie in this range (Kafka's message.timestamp.*.max.ms).
        let create_time = self.config.timestamp_type == TimestampType::CreateTime;
        let earliest = now.saturating_sub(self.config.timestamp_before_max_ms);
        let latest = now.saturating_add(self.config.timestamp_after_max_ms);
        let mut batches: Vec<(BatchHeader, usize)> = Vec::with_capacity(1);
        let mut keyless = Vec::new();
        let mut keyless_count = 0;
        let mut mistimed = Vec::new();
        let mut mistimed_count = 0;
        let mut records_before = 0;
        for (index, item) in batch::split_batches(records).enumerate() {
            let (_, bytes) = item.map_err(|source| Error::InvalidBatch { index, source })?;
            if bytes.len() > self.config.max_message_bytes {
                return Err(Error::BatchTooLarge {
                    size: bytes.len(),
                    max: self.config.max_message_bytes,
                });
            }
            let (header, timestamps) = batch::validate_with_timestamps(bytes)
                .map_err(|source| Error::InvalidBatch { index, source })?;
            if self.config.cleanup_policy.compacts() {
                let keep = MAX_NAMED_RECORDS - keyless.len();
                let (named, count) = batch::records_without_key(bytes, &header, keep)
                    .map_err(|source| Error::InvalidBatch { index, source })?;
                keyless.extend(named.into_iter().map(|record| records_before + record));
                keyless_count += count;
            }
            // An uncompressed batch's records were just read: their own timestamps settle it. A
            // compressed batch's header settles the common case without opening it: no lower
            // bound, and the newest timestamp (which producers compute from the records) within
            // the upper one; otherwise its records are opened.
            let settled = match timestamps {
                Some((low, high)) => Some(low >= earliest && high <= latest),
                None if header.compression() == Ok(crate::record::Compression::None) => Some(true),
                None if self.config.timestamp_before_max_ms == i64::MAX
                    && header.max_timestamp <= latest =>
                {
                    Some(true)
                }
                None => None,
            };
            if create_time && settled != Some(true) {
                let keep = MAX_NAMED_RECORDS - mistimed.len();
                let (named, count) =
                    batch::records_out_of_time_range(bytes, &header, earliest..=latest, keep)
                        .map_err(|source| Error::InvalidBatch { index, source })?;
                mistimed.extend(
                    named
                        .into_iter()
                        .map(|(record, timestamp)| (records_before + record, timestamp)),
                );
                mistimed_count += count;
            }
            records_before += header.record_count.max(0) as usize;
            batches.push((header, bytes.len()));
        }
        if keyless_count > 0 {
            return Err(Error::RecordsWithoutKey {
                record_indices: keyless,
                count: keyless_count,
            });
        }
        if mistimed_count > 0 {
            return Err(Error::TimestampOutOfRange {
                records: mistimed,
                count: mistimed_count,
                earliest,
                latest,
            });
        }

        let log_append_time =
            (self.config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let base_offset = self.log_end_offset();
        let record_count: i64 = batches
            .iter()
            .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
            .sum();
        self.maybe_roll(records.len() as u64, base_offset + record_count - 1, now)?;
        self.note_epoch(leader_epoch, base_offset)?;

        let mut next = base_offset;
        let mut position = 0;
        for (header, len) in &mut batches {
            let bytes = &mut records[position..position + *len];
            batch::set_offset_and_epoch(bytes, next, leader_epoch);
            // The segment indexes by offsets and max timestamp: keep those in step with the bytes.
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            if let Some(time) = log_append_time {
                batch::set_log_append_time(bytes, time);
                header.max_timestamp = time;
            }
            next = header.next_offset();
            position += *len;
        }
        let active_path = self.active.shared().path().to_path_buf();
        self.active
            .append(records, &batches, self.config.index_interval_bytes)
            .map_err(io_error(IoOp::Append, &active_path))?;
        self.view.log_end_offset.store(next, Ordering::Release);
        self.flusher.appended(next, self.active.shared());
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time,
            log_start_offset: self.offsets().log_start_offset(),
        })
    }

    /// Appends batches exactly as the leader stored them (a follower's append): their offsets,
    /// leader epochs and timestamps are kept, not assigned. Each batch is checked as stored
    /// (framing, CRC) and must continue the log: the first at or past the log end offset, each
    /// next one at or past where the one before ended (a compacted leader's log has gaps), epochs
    /// never going back ([`Error::NotContiguous`] otherwise, nothing appended). Topic rules the
    /// leader applied on produce (keys on compacted topics, timestamp bounds) are not applied
    /// again: the leader's log is the truth. Durability as for [`Log::append`].
    pub fn append_replicated(&mut self, records: &[u8]) -> Result<AppendInfo, Error> {
        self.check_append(records)?;
        let base_offset = self.log_end_offset();
        let mut expected = base_offset;
        let mut latest_epoch = self.view.epochs().latest_epoch().unwrap_or(-1);
        let mut batches: Vec<(BatchHeader, usize)> = Vec::with_capacity(1);
        let mut epoch_starts: Vec<(i32, i64)> = Vec::new();
        for (index, item) in batch::split_batches(records).enumerate() {
            let (_, bytes) = item.map_err(|source| Error::InvalidBatch { index, source })?;
            let header = batch::verify_stored(bytes)
                .map_err(|source| Error::InvalidBatch { index, source })?;
            // As stored, a batch spans its offset deltas 0..=last (compaction may have removed
            // records, never added any), within i64.
            let spans = header.last_offset_delta >= 0
                && (0..=header.last_offset_delta.saturating_add(1)).contains(&header.record_count)
                && header
                    .base_offset
                    .checked_add(i64::from(header.last_offset_delta) + 1)
                    .is_some();
            if !spans {
                return Err(Error::InvalidBatch {
                    index,
                    source: BatchError::CountMismatch {
                        count: header.record_count,
                        last_offset_delta: header.last_offset_delta,
                    },
                });
            }
            if header.base_offset < expected || header.partition_leader_epoch < latest_epoch {
                return Err(Error::NotContiguous {
                    index,
                    base_offset: header.base_offset,
                    leader_epoch: header.partition_leader_epoch,
                    expected,
                    latest_epoch,
                });
            }
            if header.partition_leader_epoch > latest_epoch {
                latest_epoch = header.partition_leader_epoch;
                epoch_starts.push((latest_epoch, header.base_offset));
            }
            expected = header.next_offset();
            batches.push((header, bytes.len()));
        }
        // Offsets sit in a segment as 32 bits above its base: an append spanning more than that
        // (a gap of billions inside it) cannot be placed, and nothing of it goes in.
        let first = batches[0].0.base_offset;
        let last = expected - 1;
        if last - first > i64::from(u32::MAX) {
            return Err(Error::NotContiguous {
                index: batches.len() - 1,
                base_offset: batches[batches.len() - 1].0.base_offset,
                leader_epoch: latest_epoch,
                expected: first,
                latest_epoch,
            });
        }
        let now = self.clock.now_ms();
        self.maybe_roll(records.len() as u64, last, now)?;
        // Past a gap too wide for the active segment, a segment starts at the first batch.
        if last - self.active.shared().base_offset() > i64::from(u32::MAX) {
            self.roll_to(first)?;
        }
        for (epoch, start) in epoch_starts {
            self.note_epoch(epoch, start)?;
        }
        let active_path = self.active.shared().path().to_path_buf();
        self.active
            .append(records, &batches, self.config.index_interval_bytes)
            .map_err(io_error(IoOp::Append, &active_path))?;
        self.view.log_end_offset.store(expected, Ordering::Release);
        self.flusher.appended(expected, self.active.shared());
        Ok(AppendInfo {
            base_offset,
            last_offset: expected - 1,
            log_append_time: None,
            log_start_offset: self.offsets().log_start_offset(),
        })
    }

    /// What every append needs before its batches are read: a flusher that has not failed, and
    /// some bytes, no more than a segment holds.
    fn check_append(&self, records: &[u8]) -> Result<(), Error> {
        self.flusher.check()?;
        if records.is_empty() {
            return Err(Error::EmptyAppend);
        }
        let segment_bytes = self.config.effective_segment_bytes();
        if records.len() as u64 > segment_bytes {
            return Err(Error::BatchTooLarge {
                size: records.len(),
                max: segment_bytes as usize,
            });
        }
        Ok(())
    }

    fn maybe_roll(&mut self, incoming: u64, last_offset: i64, now: i64) -> Result<(), Error> {
        let segment = self.active.shared();
        let (size, created_ms) = {
            let state = segment.read_state();
            (state.size, state.created_ms)
        };
        if size == 0 {
            return Ok(());
        }
        let full = size + incoming > self.config.effective_segment_bytes();
        let old = now - created_ms >= self.roll_age_ms(segment.base_offset());
        let out_of_range = last_offset - segment.base_offset() > i64::from(u32::MAX);
        if full || old || out_of_range {
            self.roll()?;
        }
        Ok(())
    }

    /// The age at which the segment based at `base_offset` rolls: `segment.ms`, or
    /// `max.compaction.lag.ms` when that is shorter and the log compacts (so a record gets into a
    /// sealed segment, which compaction can clean, in time), less the segment's jitter. The
    /// jitter (`segment.jitter.ms`, at most the age itself) is drawn from the partition and the
    /// segment's base offset, so it is the same across restarts and differs between partitions
    /// created together, which then do not all roll at once.
    fn roll_age_ms(&self, base_offset: i64) -> i64 {
        let mut age = self.config.segment_ms;
        if self.config.cleanup_policy.compacts() {
            age = age.min(self.config.max_compaction_lag_ms);
        }
        let bound = self.config.segment_jitter_ms.min(age);
        if bound <= 0 {
            return age;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(self.view.dir.as_path(), base_offset), &mut hasher);
        let jitter = (std::hash::Hasher::finish(&hasher) % bound.unsigned_abs()) as i64;
        age - jitter
    }

    /// Seals the active segment and starts a new one at the log end offset. A no-op while the
    /// active segment is empty.
    pub fn roll(&mut self) -> Result<(), Error> {
        if self.active.shared().is_empty() {
            return Ok(());
        }
        let dir = self.view.dir.clone();
        let base = self.log_end_offset();
        let segment = Segment::create(&dir, base, self.clock.now_ms())
            .map_err(io_error(IoOp::CreateSegment, &dir))?;
        sync_dir(&dir).map_err(io_error(IoOp::SyncDir, &dir))?;
        let segment = Arc::new(segment);
        let sealed = std::mem::replace(&mut self.active, ActiveSegment::new(Arc::clone(&segment)));
        if let Err(error) = sealed.seal(&dir) {
            // Indexes are rebuilt from the data at the next open; the data is what matters.
            tracing::warn!(dir = %dir.display(), %error, "writing the sealed segment's indexes failed");
        }
        let mut segments = self.view.segments().as_ref().clone();
        segments.push(Arc::clone(&segment));
        self.view.set_segments(segments);
        self.flusher.appended(base, &segment);
        Ok(())
    }

    /// Starts the active segment at `base` (past the log end: a follower's log continuing after a
    /// gap its leader's compaction left). An empty active segment is replaced, a non-empty one
    /// sealed.
    fn roll_to(&mut self, base: i64) -> Result<(), Error> {
        let dir = self.view.dir.clone();
        let segment = Segment::create(&dir, base, self.clock.now_ms())
            .map_err(io_error(IoOp::CreateSegment, &dir))?;
        let segment = Arc::new(segment);
        sync_dir(&dir).map_err(io_error(IoOp::SyncDir, &dir))?;
        let old = std::mem::replace(&mut self.active, ActiveSegment::new(Arc::clone(&segment)));
        let mut segments = self.view.segments().as_ref().clone();
        let empty = old.shared().is_empty();
        if empty {
            segments.pop();
        }
        segments.push(Arc::clone(&segment));
        // One switch: readers see the old list or the new, never a log without an active segment.
        self.view.set_segments(segments);
        self.flusher.appended(self.log_end_offset(), &segment);
        if empty {
            // Holds nothing; a file left behind is an empty segment below the next, which the
            // next open reads as nothing.
            if let Err(error) = Segment::delete_files(&dir, old.shared().base_offset()) {
                tracing::warn!(dir = %dir.display(), %error, "removing a replaced empty segment failed");
            }
        } else if let Err(error) = old.seal(&dir) {
            tracing::warn!(dir = %dir.display(), %error, "writing the sealed segment's indexes failed");
        }
        Ok(())
    }

    /// Removes every batch from the one holding `offset` onwards (a follower's truncation to its
    /// leader's log), and the leader epochs that start there or later. Returns the new log end
    /// offset: the first offset of that batch. At the log end it removes only epochs that start
    /// there (begun by a leader that appended nothing in them).
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, Error> {
        let offsets = self.offsets();
        if offset >= offsets.log_end_offset() {
            let end = offsets.log_end_offset();
            self.view
                .change_epochs(|epochs| epochs.truncate_from_end(end))?;
            return Ok(end);
        }
        if offset < offsets.log_start_offset() {
            return Err(Error::TruncateBelowStart {
                offset,
                log_start_offset: offsets.log_start_offset(),
            });
        }
        self.generation += 1;
        let dir = self.view.dir.clone();
        let segments = self.view.segments();
        let keep = segments
            .partition_point(|s| s.base_offset() <= offset)
            .max(1);
        let target = Arc::clone(&segments[keep - 1]);
        let new_end = target
            .truncate_to(offset, self.config.index_interval_bytes)
            .map_err(io_error(IoOp::Truncate, target.path()))?;
        // The view must stop listing later segments before their files go.
        self.view.set_segments(segments[..keep].to_vec());
        self.view.log_end_offset.store(new_end, Ordering::Release);
        if new_end < offsets.log_start_offset() {
            self.view.log_start_offset.store(new_end, Ordering::Release);
        }
        for segment in &segments[keep..] {
            Segment::delete_files(&dir, segment.base_offset())
                .map_err(io_error(IoOp::DeleteSegment, &dir))?;
        }
        // The truncated segment is active again; its index files describe the old contents.
        for suffix in [segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
            let path = dir.join(segment::file_name(target.base_offset(), suffix));
            if let Err(error) = fs::remove_file(&path)
                && error.kind() != io::ErrorKind::NotFound
            {
                return Err(Error::Io {
                    op: IoOp::DeleteSegment,
                    path,
                    source: error,
                });
            }
        }
        sync_dir(&dir).map_err(io_error(IoOp::SyncDir, &dir))?;
        self.flusher.truncated(new_end, &target);
        self.active = ActiveSegment::new(target);
        self.checkpoint()?;
        self.view
            .change_epochs(|epochs| epochs.truncate_from_end(new_end))?;
        Ok(new_end)
    }

    /// Moves the log start offset to `offset` (DeleteRecords) and deletes the sealed segments
    /// that lie wholly below it. Returns the log start offset afterwards.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, Error> {
        let offsets = self.offsets();
        if offset > offsets.log_end_offset() {
            return Err(Error::LogStartBeyondEnd {
                requested: offset,
                log_end_offset: offsets.log_end_offset(),
            });
        }
        if offset <= offsets.log_start_offset() {
            return Ok(offsets.log_start_offset());
        }
        let segments = self.view.segments();
        let sealed = &segments[..segments.len() - 1];
        let below = sealed
            .iter()
            .take_while(|s| s.next_offset() <= offset)
            .count();
        self.delete_prefix(below, offset)?;
        Ok(offset)
    }

    /// Deletes sealed segments past `retention.ms` (newest record older than that) and, oldest
    /// first, while the log exceeds `retention.bytes`. An active segment whose newest record is
    /// past `retention.ms` is rolled first so that quiet topics expire too. Does nothing under
    /// `cleanup.policy=compact` (without `delete`).
    pub fn enforce_retention(&mut self) -> Result<RetentionOutcome, Error> {
        if !self.config.cleanup_policy.deletes() {
            return Ok(RetentionOutcome {
                log_start_offset: self.offsets().log_start_offset(),
                ..RetentionOutcome::default()
            });
        }
        let now = self.clock.now_ms();
        if let Some(retention_ms) = self.config.retention_ms {
            let active = self.active.shared();
            let sealed_all_expired = self
                .view
                .segments()
                .iter()
                .rev()
                .skip(1)
                .all(|s| s.max_timestamp() < now - retention_ms);
            if sealed_all_expired
                && !active.is_empty()
                && active.max_timestamp() < now - retention_ms
            {
                self.roll()?;
            }
        }
        let segments = self.view.segments();
        let sealed = &segments[..segments.len() - 1];
        let mut delete = 0;
        if let Some(retention_ms) = self.config.retention_ms {
            delete = sealed
                .iter()
                .take_while(|s| s.max_timestamp() < now - retention_ms)
                .count();
        }
        if let Some(limit) = self.config.retention_bytes {
            let total: u64 = segments[delete..].iter().map(|s| s.size()).sum();
            let mut excess = total.saturating_sub(limit);
            for segment in &sealed[delete..] {
                if excess < segment.size() {
                    break;
                }
                excess -= segment.size();
                delete += 1;
            }
        }
        if delete == 0 {
            return Ok(RetentionOutcome {
                log_start_offset: self.offsets().log_start_offset(),
                ..RetentionOutcome::default()
            });
        }
        let deleted_bytes = sealed[..delete].iter().map(|s| s.size()).sum();
        let log_start_offset = self.delete_prefix(delete, segments[delete].base_offset())?;
        Ok(RetentionOutcome {
            deleted_segments: delete,
            deleted_bytes,
            log_start_offset,
        })
    }

    /// Makes `new_start` the log start offset (durably, first), then drops the first `count`
    /// segments from the view and deletes their files.
    fn delete_prefix(&mut self, count: usize, new_start: i64) -> Result<i64, Error> {
        let dir = self.view.dir.clone();
        let new_start = new_start.max(self.offsets().log_start_offset());
        Checkpoint {
            recovery_point: self.flusher.durable_offset(),
            log_start_offset: new_start,
        }
        .write(&dir)
        .map_err(io_error(IoOp::WriteCheckpoint, &dir))?;
        self.view
            .log_start_offset
            .store(new_start, Ordering::Release);
        self.view
            .change_epochs(|epochs| epochs.truncate_from_start(new_start))?;
        if count == 0 {
            return Ok(new_start);
        }
        let segments = self.view.segments();
        self.view.set_segments(segments[count..].to_vec());
        for segment in &segments[..count] {
            Segment::delete_files(&dir, segment.base_offset())
                .map_err(io_error(IoOp::DeleteSegment, &dir))?;
            tracing::info!(
                segment = %segment.path().display(),
                next_offset = segment.next_offset(),
                log_start_offset = new_start,
                "deleted segment"
            );
        }
        sync_dir(&dir).map_err(io_error(IoOp::SyncDir, &dir))?;
        Ok(new_start)
    }

    /// The leader epoch cache, as it stands.
    pub fn leader_epochs(&self) -> LeaderEpochs {
        self.view.epochs().clone()
    }

    /// See [`LogReader::end_offset_for_epoch`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.reader().end_offset_for_epoch(epoch)
    }

    /// A leader begins `epoch` at the log end (as Kafka caches an epoch when its leader is
    /// elected, before its first batch): followers asking for the end of an earlier epoch are
    /// answered with the end of that one, not of this.
    pub fn begin_leader_epoch(&mut self, epoch: i32) -> Result<(), Error> {
        self.note_epoch(epoch, self.log_end_offset())
    }

    /// Notes that records of `epoch` start at `offset`, writing the cache if that is news.
    fn note_epoch(&mut self, epoch: i32, offset: i64) -> Result<(), Error> {
        if self.view.epochs().latest_epoch() >= Some(epoch) {
            return Ok(());
        }
        self.view
            .change_epochs(|epochs| epochs.assign(epoch, offset))
    }

    /// Makes everything appended so far durable.
    pub fn flush(&self) -> Result<(), Error> {
        Ok(self.flusher.flush_to(self.log_end_offset())?)
    }

    /// Records the recovery point (what is durable now) and log start offset, so the next open
    /// re-validates only what came after.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let dir = &self.view.dir;
        Checkpoint {
            recovery_point: self.flusher.durable_offset(),
            log_start_offset: self.offsets().log_start_offset(),
        }
        .write(dir)
        .map_err(io_error(IoOp::WriteCheckpoint, dir))
    }

    /// Clean shutdown: flush, write the active segment's indexes and the checkpoint, so the
    /// next open has nothing to recover.
    pub fn close(self) -> Result<(), Error> {
        self.flush()?;
        let active = self.active.shared();
        active
            .write_indexes(&self.view.dir)
            .map_err(io_error(IoOp::WriteIndex, active.path()))?;
        self.checkpoint()
    }
}

/// Opens a segment wholly below the recovery point: its data was fsynced, so only its indexes
/// are checked (and rebuilt from a header walk if needed). Damage found in it is reported and
/// left in place: reads of that range fail; nothing is cut.
fn open_trusted(
    dir: &Path,
    base: i64,
    next_base: i64,
    now: i64,
    interval: u64,
) -> Result<Segment, Error> {
    let open_error = || io_error(IoOp::OpenSegment, dir);
    if let Some(segment) = Segment::open_indexed(dir, base, now, interval).map_err(open_error())? {
        return Ok(segment);
    }
    let (segment, end) =
        Segment::open_scanning(dir, base, now, interval, false).map_err(open_error())?;
    if let Some(problem) = end.problem {
        tracing::error!(
            segment = %segment.path().display(),
            position = end.valid_size,
            %problem,
            "damage inside a segment below the recovery point; reads of that range will fail"
        );
        let file_len = fs::metadata(segment.path()).map_err(open_error())?.len();
        segment.assume_extent(file_len, next_base);
    }
    if let Err(error) = segment.write_indexes(dir) {
        tracing::warn!(segment = %segment.path().display(), %error, "writing rebuilt indexes failed");
    }
    Ok(segment)
}

/// The leader epoch cache of a log just recovered to `log_start..log_end`: from its file, or
/// rebuilt from the batch headers when there is none, then cut to what the log holds (the file
/// may name an epoch whose records a crash took back), and written if that changed anything.
fn open_epochs(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start: i64,
    log_end: i64,
) -> Result<LeaderEpochs, Error> {
    let read = LeaderEpochs::read(dir).map_err(io_error(IoOp::ReadCheckpoint, dir))?;
    let mut changed = read.is_none();
    let mut epochs = match read {
        Some(epochs) => epochs,
        None => {
            // Headers only, once (a data directory from before the cache, or a lost file). A
            // segment that cannot be read whole gives the epochs found before the damage: the
            // log opens as it did without the cache, and only truncation detection loses detail.
            let mut epochs = LeaderEpochs::default();
            for segment in segments {
                match segment.epoch_starts() {
                    Ok(starts) => {
                        for (epoch, start) in starts {
                            epochs.assign(epoch, start);
                        }
                    }
                    Err(error) => {
                        let error = read_error(segment)(error);
                        tracing::warn!(%error, "rebuilding the leader epoch cache stopped at this segment");
                        break;
                    }
                }
            }
            epochs
        }
    };
    changed |= epochs.truncate_from_end(log_end);
    changed |= epochs.truncate_from_start(log_start);
    if changed {
        epochs
            .write(dir)
            .map_err(io_error(IoOp::WriteCheckpoint, dir))?;
    }
    Ok(epochs)
}

/// A segment's read error as the log's, naming the segment.
fn read_error(segment: &Segment) -> impl FnOnce(SegmentReadError) -> Error + '_ {
    move |error| match error {
        SegmentReadError::Io(source) => Error::Io {
            op: IoOp::Read,
            path: segment.path().to_path_buf(),
            source,
        },
        SegmentReadError::Corrupt { position, source } => Error::CorruptBatch {
            segment: segment.path().to_path_buf(),
            position,
            source,
        },
    }
}

fn list_segment_bases(dir: &Path) -> Result<Vec<i64>, Error> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(IoOp::ListDir, dir))? {
        let entry = entry.map_err(io_error(IoOp::ListDir, dir))?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_log_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests;
