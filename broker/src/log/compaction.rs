//! Log compaction (`cleanup.policy=compact`): the log keeps at least the latest record of every
//! key, as Kafka's log cleaner does, so a consumer reading from the start rebuilds the latest
//! state of every key.
//!
//! ```text
//! owner (partition actor)          any thread (spawn_blocking)            owner
//! Log::plan_compaction  ------->  CompactionPlan::run  ------------->  Log::finish_compaction
//!  snapshot of Arc<Segment>s       offset map, then per group of       rename .cleaned -> .swap,
//!  (sealed, durable, old enough)   segments a `.cleaned` segment,      delete the replaced files,
//!                                  fsynced                             rename .swap -> .log, swap
//!                                                                      the segments in the view
//! ```
//!
//! The heavy middle step reads only the snapshot and writes only `.cleaned` files, so appends
//! and reads go on meanwhile; readers holding an old snapshot keep reading the replaced files
//! through their open handles after the unlink. The swap checks that the segments it replaces
//! are still the log's (retention or a truncation may have moved on) and abandons what is stale.
//!
//! Rules, as a Kafka user expects them:
//! - Only sealed segments whose records are all durable (below the recovery point) and, with
//!   `min.compaction.lag.ms`, whose newest record is old enough, are cleaned; the first segment
//!   that fails this and everything after it (the active segment at least) stay as they are.
//! - A record is kept when its offset is the latest for its key over the cleanable section.
//!   Records without a key are dropped (a compacted topic refuses them on produce anyway);
//!   records below the log start offset are dropped; control batches are kept whole.
//! - A tombstone (null value) that is the latest for its key is kept until its batch's newest
//!   timestamp is more than `delete.retention.ms` old (see [`CompactionPlan`]).
//! - Offsets never change. A batch whose records are all kept is copied byte for byte; one that
//!   loses some is re-encoded with the same codec, producer id, epoch, base sequence, base
//!   offset and last offset delta (so the producer's sequence and the batch's offset range
//!   stay), and fewer records, whose offset deltas skip the removed ones; an empty batch goes.
//!
//! On disk, crash safety rests on renames (see [`recover_interrupted`]): `<base>.log.cleaned`
//! files are never trusted; `<base>.<end>.log.swap` is the commit point of one group's swap and
//! names the range `[base, end)` of segments it replaces.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::checkpoint::sync_dir;
use super::segment::{
    self, CleanedSegmentWriter, INDEX_SUFFIX, LOG_SUFFIX, Segment, StoredBatch, TIME_INDEX_SUFFIX,
    file_name, remove_cleaned_files,
};
use super::{Error, IoOp, Log, io_error, read_error};
use crate::record::batch::{self, BatchError, BatchHeader};
use crate::record::compression::{self, CodecError};
use crate::record::{Records, TimestampType};

const SWAP_SUFFIX: &str = "swap";

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionOutcome {
    /// The end of the section this pass cleaned (exclusive); later offsets are dirty.
    pub cleaned_up_to: i64,
    /// Segments replaced by cleaned ones.
    pub segments_replaced: usize,
    /// Cleaned segments swapped in for them.
    pub segments_written: usize,
    /// Bytes the replaced segments held minus the bytes of the cleaned ones.
    pub bytes_removed: u64,
    pub records_removed: u64,
    /// Groups of segments whose cleaned copy was thrown away because the log changed under it.
    pub groups_abandoned: usize,
}

/// The cleaner's input, taken on the log's owner: a snapshot of the segments to read and clean.
///
/// The tombstone horizon is a simple, documented rule rather than Kafka's: a tombstone goes
/// once `batch max timestamp + delete.retention.ms < now` (Kafka 3.x instead stamps a delete
/// horizon into the batch the first time the cleaner sees it). With `CreateTime` the producer's
/// clock decides; with `LogAppendTime` the broker's.
#[derive(Debug)]
pub struct CompactionPlan {
    dir: PathBuf,
    /// The cleanable segments, oldest first: every one is read for the offset map and rewritten
    /// in `groups`.
    segments: Vec<Arc<Segment>>,
    groups: Vec<Range<usize>>,
    /// The base offset of the first segment not cleaned: the end of the last group.
    end_offset: i64,
    log_start_offset: i64,
    now_ms: i64,
    delete_retention_ms: i64,
    index_interval_bytes: u64,
    /// The log's truncation count when planned; a truncation since invalidates the result.
    generation: u64,
}

/// The cleaner's output: fsynced `.cleaned` segments, not yet part of the log. Dropped without
/// [`Log::finish_compaction`], their files are removed.
#[derive(Debug)]
pub struct CleanedSegments {
    end_offset: i64,
    generation: u64,
    groups: Vec<CleanedGroup>,
}

impl CleanedSegments {
    /// Bytes the cleaned segments hold, for logs and tests.
    pub fn size_bytes(&self) -> u64 {
        self.groups
            .iter()
            .filter_map(|g| g.segment.as_ref())
            .map(|s| s.size())
            .sum()
    }
}

/// One group of consecutive segments and, if cleaning changed anything, its cleaned copy.
#[derive(Debug)]
struct CleanedGroup {
    dir: PathBuf,
    replaced: Vec<Arc<Segment>>,
    /// The base offset of the segment after the group.
    end: i64,
    /// `None` when the group is one segment that cleaning would not change.
    segment: Option<Segment>,
    records_removed: u64,
}

impl Drop for CleanedGroup {
    fn drop(&mut self) {
        if let Some(segment) = &self.segment
            && let Err(error) = remove_cleaned_files(&self.dir, segment.base_offset())
        {
            // Log::open removes leftovers at the latest.
            tracing::warn!(dir = %self.dir.display(), %error, "removing a cleaned segment failed");
        }
    }
}

/// Key -> offset of the latest record with that key.
///
/// Keys are stored as 128-bit hashes, not as bytes: like Kafka's offset map (MD5, 16 bytes a
/// key), memory per key is fixed (about 32 bytes with the table's overhead) whatever the keys'
/// size. The hash is SipHash-1-3 run twice (two lanes of 64 bits) with a random key drawn per
/// pass, so producers cannot craft colliding keys; two distinct keys collide with probability
/// about n²/2¹²⁹ (1e-21 for a billion keys). A collision would drop the older key's latest
/// record, which is why 64 bits would not do.
#[derive(Debug)]
struct OffsetMap {
    hasher: RandomState,
    latest: HashMap<u128, i64, BuildHasherDefault<Prehashed>>,
}

impl OffsetMap {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            latest: HashMap::default(),
        }
    }

    fn hash(&self, key: &[u8]) -> u128 {
        let lane = |tag: u8| {
            let mut hasher = self.hasher.build_hasher();
            hasher.write_u8(tag);
            hasher.write(key);
            hasher.finish()
        };
        (u128::from(lane(0)) << 64) | u128::from(lane(1))
    }

    fn insert(&mut self, key: &[u8], offset: i64) {
        let hash = self.hash(key);
        self.latest.insert(hash, offset);
    }

    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&self.hash(key)).copied()
    }
}

/// The table's hasher for keys that are already hashes: takes their low 64 bits.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `u128` keys; this keeps any other use correct.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// What a batch keeps.
enum Retained {
    All,
    Nothing,
    /// Some records: the re-encoded batch.
    Part {
        bytes: Vec<u8>,
        header: BatchHeader,
    },
}

fn corrupt(segment: &Segment, position: u64) -> impl FnOnce(BatchError) -> Error + '_ {
    move |source| Error::CorruptBatch {
        segment: segment.path().to_path_buf(),
        position,
        source,
    }
}

/// Consecutive segments merged while their total size stays within `max_bytes` and their
/// offsets within one segment's 32-bit relative range (Kafka's `groupSegmentsBySize`), so a
/// cleaned group never outgrows `segment.bytes`.
fn group_by_size(segments: &[Arc<Segment>], max_bytes: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base_offset();
        let mut size = segments[start].size();
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let fits = size + next.size() <= max_bytes;
            let in_range = next.next_offset() - base <= i64::from(u32::MAX);
            if !fits || !in_range {
                break;
            }
            size += next.size();
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

impl CompactionPlan {
    /// Runs the cleaner: builds the offset map, then writes a cleaned segment for every group
    /// that changes. Reads only the snapshot; writes only `.cleaned` files. Stops with
    /// [`Error::CompactionCancelled`] soon after `cancel` is set.
    pub fn run(self, cancel: &AtomicBool) -> Result<CleanedSegments, Error> {
        let map = self.build_offset_map(cancel)?;
        let mut cleaned = CleanedSegments {
            end_offset: self.end_offset,
            generation: self.generation,
            groups: Vec::with_capacity(self.groups.len()),
        };
        for range in &self.groups {
            // On an error, `cleaned` drops and takes the finished groups' files with it.
            cleaned
                .groups
                .push(self.clean_group(&map, range.clone(), cancel)?);
        }
        Ok(cleaned)
    }

    /// The end offset of the section this plan cleans.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    fn build_offset_map(&self, cancel: &AtomicBool) -> Result<OffsetMap, Error> {
        let mut map = OffsetMap::new();
        for segment in &self.segments {
            for stored in segment.batches() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::CompactionCancelled);
                }
                let stored = stored.map_err(read_error(segment))?;
                let header = &stored.header;
                if header.is_control() || header.next_offset() <= self.log_start_offset {
                    continue;
                }
                let payload = batch::records_payload(&stored.bytes, header)
                    .map_err(corrupt(segment, stored.position))?;
                for record in Records::stored(&payload, header.record_count) {
                    let record = record.map_err(corrupt(segment, stored.position))?;
                    let offset = header.base_offset + i64::from(record.offset_delta);
                    if let Some(key) = record.key
                        && offset >= self.log_start_offset
                    {
                        map.insert(key, offset);
                    }
                }
            }
        }
        Ok(map)
    }

    /// Which records of `stored` stay, and how many go.
    fn retain(
        &self,
        map: &OffsetMap,
        segment: &Segment,
        stored: &StoredBatch,
    ) -> Result<(Retained, u64), Error> {
        let header = &stored.header;
        if header.is_control() {
            return Ok((Retained::All, 0));
        }
        let payload = batch::records_payload(&stored.bytes, header)
            .map_err(corrupt(segment, stored.position))?;
        let tombstones_expired = header
            .max_timestamp
            .saturating_add(self.delete_retention_ms)
            < self.now_ms;
        let mut kept = Vec::new();
        let (mut kept_count, mut total) = (0i32, 0u64);
        let mut max_timestamp = i64::MIN;
        for record in Records::stored(&payload, header.record_count) {
            let record = record.map_err(corrupt(segment, stored.position))?;
            total += 1;
            let offset = header.base_offset + i64::from(record.offset_delta);
            let keep = offset >= self.log_start_offset
                && record
                    .key
                    .is_some_and(|key| map.latest(key) == Some(offset))
                && (record.value.is_some() || !tombstones_expired);
            if keep {
                kept.extend_from_slice(record.raw);
                kept_count += 1;
                max_timestamp = max_timestamp.max(header.base_timestamp + record.timestamp_delta);
            }
        }
        let removed = total - kept_count as u64;
        if removed == 0 {
            return Ok((Retained::All, 0));
        }
        if kept_count == 0 {
            return Ok((Retained::Nothing, removed));
        }
        let codec = header
            .compression()
            .map_err(corrupt(segment, stored.position))?;
        let rewrite_error = |source| Error::RewriteBatch {
            segment: segment.path().to_path_buf(),
            base_offset: header.base_offset,
            source,
        };
        let payload = compression::compress(codec, &kept).map_err(rewrite_error)?;
        let mut rewritten = BatchHeader {
            record_count: kept_count,
            ..*header
        };
        if header.timestamp_type() == TimestampType::CreateTime {
            rewritten.max_timestamp = max_timestamp;
        }
        let bytes = batch::encode(&rewritten, &payload)
            .ok_or_else(|| rewrite_error(CodecError::Compress { codec }))?;
        let header = BatchHeader::parse(&bytes).map_err(corrupt(segment, stored.position))?;
        Ok((Retained::Part { bytes, header }, removed))
    }

    fn clean_group(
        &self,
        map: &OffsetMap,
        range: Range<usize>,
        cancel: &AtomicBool,
    ) -> Result<CleanedGroup, Error> {
        let end = self
            .segments
            .get(range.end)
            .map_or(self.end_offset, |s| s.base_offset());
        let segments = &self.segments[range];
        let first = &segments[0];
        let base = first.base_offset();
        let cleaned_path = self.dir.join(format!(
            "{}.{}",
            file_name(base, LOG_SUFFIX),
            segment::CLEANED_SUFFIX
        ));
        let create = || {
            CleanedSegmentWriter::create(
                &self.dir,
                base,
                first.created_ms(),
                self.index_interval_bytes,
            )
            .map_err(io_error(IoOp::CreateSegment, &cleaned_path))
        };
        // Several segments are always rewritten (merged into one); a single one only if
        // cleaning changes it.
        let mut writer = if segments.len() > 1 {
            Some(create()?)
        } else {
            None
        };
        let mut records_removed = 0;
        for segment in segments {
            for stored in segment.batches() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::CompactionCancelled);
                }
                let stored = stored.map_err(read_error(segment))?;
                let (retained, removed) = self.retain(map, segment, &stored)?;
                records_removed += removed;
                if writer.is_none() && !matches!(retained, Retained::All) {
                    let mut started = create()?;
                    // Every earlier batch of this (only) segment was kept whole.
                    for earlier in segment.batches() {
                        let earlier = earlier.map_err(read_error(segment))?;
                        if earlier.position >= stored.position {
                            break;
                        }
                        started
                            .append(&earlier.bytes, &earlier.header)
                            .map_err(io_error(IoOp::Append, &cleaned_path))?;
                    }
                    writer = Some(started);
                }
                if let Some(writer) = writer.as_mut() {
                    let written = match &retained {
                        Retained::All => writer.append(&stored.bytes, &stored.header),
                        Retained::Nothing => Ok(()),
                        Retained::Part { bytes, header } => writer.append(bytes, header),
                    };
                    written.map_err(io_error(IoOp::Append, &cleaned_path))?;
                }
            }
        }
        let segment = writer
            .map(CleanedSegmentWriter::finish)
            .transpose()
            .map_err(io_error(IoOp::Sync, &cleaned_path))?;
        Ok(CleanedGroup {
            dir: self.dir.clone(),
            replaced: segments.to_vec(),
            end,
            segment,
            records_removed,
        })
    }
}

/// A point in a group's swap, for tests that stop there to play a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SwapStep {
    /// The cleaned index files are renamed to `.swap`.
    IndexesRenamed,
    /// The cleaned data file is renamed to `<base>.<end>.log.swap`: the commit point.
    Committed,
    /// The replaced segments' files are deleted.
    OldDeleted,
    /// The index files are in place under their final names.
    IndexesInPlace,
}

fn swap_log_name(base: i64, end: i64) -> String {
    format!("{base:020}.{end:020}.{LOG_SUFFIX}.{SWAP_SUFFIX}")
}

/// `<base>.<end>.log.swap` back into `(base, end)`.
fn parse_swap_log_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(&format!(".{LOG_SUFFIX}.{SWAP_SUFFIX}"))?;
    let (base, end) = stem.split_once('.')?;
    let parse = |digits: &str| {
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<i64>().ok())
            .flatten()
    };
    Some((parse(base)?, parse(end)?))
}

fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    fs::rename(from, to).map_err(io_error(IoOp::RenameSegment, from))
}

/// Renames `from` to `to` if `from` is there.
fn rename_if_present(from: &Path, to: &Path) -> Result<(), Error> {
    match fs::rename(from, to) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(Error::Io {
            op: IoOp::RenameSegment,
            path: from.to_path_buf(),
            source: error,
        }),
        _ => Ok(()),
    }
}

fn sync(dir: &Path) -> Result<(), Error> {
    sync_dir(dir).map_err(io_error(IoOp::SyncDir, dir))
}

/// Moves one group's cleaned files in place of the segments `old_bases`, which span
/// `[base, end)`. A crash at any point leaves a directory [`recover_interrupted`] turns into
/// either the old segments or the new one. Returns `false` if it stopped at `stop_after`.
fn swap_files(
    dir: &Path,
    base: i64,
    end: i64,
    old_bases: &[i64],
    stop_after: Option<SwapStep>,
) -> Result<bool, Error> {
    let stop = |step| stop_after == Some(step);
    let cleaned = |suffix| {
        dir.join(format!(
            "{}.{}",
            file_name(base, suffix),
            segment::CLEANED_SUFFIX
        ))
    };
    let swapped = |suffix| dir.join(format!("{}.{SWAP_SUFFIX}", file_name(base, suffix)));
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        // Index files are a cache: one that is missing is rebuilt when the segment is opened.
        rename_if_present(&cleaned(suffix), &swapped(suffix))?;
    }
    if stop(SwapStep::IndexesRenamed) {
        return Ok(false);
    }
    let swap_log = dir.join(swap_log_name(base, end));
    rename(&cleaned(LOG_SUFFIX), &swap_log)?;
    sync(dir)?;
    if stop(SwapStep::Committed) {
        return Ok(false);
    }
    for &old in old_bases {
        Segment::delete_files(dir, old).map_err(io_error(IoOp::DeleteSegment, dir))?;
    }
    sync(dir)?;
    if stop(SwapStep::OldDeleted) {
        return Ok(false);
    }
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        rename_if_present(&swapped(suffix), &dir.join(file_name(base, suffix)))?;
    }
    if stop(SwapStep::IndexesInPlace) {
        return Ok(false);
    }
    rename(&swap_log, &dir.join(file_name(base, LOG_SUFFIX)))?;
    sync(dir)?;
    Ok(true)
}

fn file_names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(IoOp::ListDir, dir))? {
        let entry = entry.map_err(io_error(IoOp::ListDir, dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            op: IoOp::DeleteSegment,
            path: path.to_path_buf(),
            source: error,
        }),
        _ => Ok(()),
    }
}

/// Run by [`Log::open`] before anything else: puts the directory of a log whose compaction was
/// interrupted back into a consistent state.
///
/// - `*.cleaned` files are an unfinished (or unswapped) pass: deleted; the old segments stand.
/// - `<base>.<end>.log.swap` is a committed swap: every segment whose base offset is in
///   `[base, end)` is deleted (those are the segments it replaces, whichever of them a crash
///   left), its `.index.swap` / `.timeindex.swap` files take their final names if there, and
///   it becomes `<base>.log`.
/// - Index `.swap` files without a data swap file are left from before the commit point:
///   deleted.
pub(super) fn recover_interrupted(dir: &Path) -> Result<(), Error> {
    let names = file_names(dir)?;
    let mut changed = false;
    for name in names
        .iter()
        .filter(|n| n.ends_with(&format!(".{}", segment::CLEANED_SUFFIX)))
    {
        tracing::info!(dir = %dir.display(), file = name, "removing an unfinished compaction file");
        remove(&dir.join(name))?;
        changed = true;
    }
    let mut swaps: Vec<(i64, i64, &String)> = names
        .iter()
        .filter_map(|name| parse_swap_log_name(name).map(|(base, end)| (base, end, name)))
        .collect();
    swaps.sort_unstable();
    for (base, end, name) in swaps {
        tracing::warn!(dir = %dir.display(), base, end, "completing an interrupted compaction swap");
        for old in super::list_segment_bases(dir)?
            .into_iter()
            .filter(|b| (base..end).contains(b))
        {
            Segment::delete_files(dir, old).map_err(io_error(IoOp::DeleteSegment, dir))?;
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let from = dir.join(format!("{}.{SWAP_SUFFIX}", file_name(base, suffix)));
            rename_if_present(&from, &dir.join(file_name(base, suffix)))?;
        }
        rename(&dir.join(name), &dir.join(file_name(base, LOG_SUFFIX)))?;
        changed = true;
    }
    for name in file_names(dir)?
        .iter()
        .filter(|n| n.ends_with(&format!(".{SWAP_SUFFIX}")))
    {
        remove(&dir.join(name))?;
        changed = true;
    }
    if changed {
        sync(dir)?;
    }
    Ok(())
}

impl Log {
    /// How many segments, from the first, compaction may clean now: sealed, every record
    /// durable, and (with `min.compaction.lag.ms`) every record old enough. Counting stops at
    /// the first that is not.
    fn cleanable_count(&self, segments: &[Arc<Segment>]) -> usize {
        let durable = self.flusher.durable_offset();
        let now = self.clock.now_ms();
        let lag = self.config.min_compaction_lag_ms;
        let sealed = &segments[..segments.len().saturating_sub(1)];
        sealed
            .iter()
            .take_while(|s| {
                // As Kafka, a lag of 0 applies no time check (future timestamps do not block).
                s.next_offset() <= durable && (lag == 0 || s.max_timestamp() <= now - lag)
            })
            .count()
    }

    /// The share of the cleanable bytes in segments not cleaned since this log was opened (or
    /// since the last pass): what `min.cleanable.dirty.ratio` is compared with. `None` when
    /// nothing is cleanable.
    pub fn compaction_dirty_ratio(&self) -> Option<f64> {
        let segments = self.view.segments();
        let cleanable = &segments[..self.cleanable_count(&segments)];
        let total: u64 = cleanable.iter().map(|s| s.size()).sum();
        if total == 0 {
            return None;
        }
        let dirty: u64 = cleanable
            .iter()
            .filter(|s| s.base_offset() >= self.cleaned_up_to)
            .map(|s| s.size())
            .sum();
        Some(dirty as f64 / total as f64)
    }

    /// Whether a compaction pass is due: the policy compacts, something is dirty, and the dirty
    /// ratio reached `min.cleanable.dirty.ratio`, or a dirty segment's newest record is older
    /// than `max.compaction.lag.ms` (so no record waits much longer than that, however little is
    /// dirty).
    pub fn compaction_due(&self) -> bool {
        self.config.cleanup_policy.compacts()
            && (self.compaction_dirty_ratio().is_some_and(|ratio| {
                ratio > 0.0 && ratio >= self.config.min_cleanable_dirty_ratio.get()
            }) || self.compaction_overdue())
    }

    /// Whether a cleanable segment not compacted yet holds only records older than
    /// `max.compaction.lag.ms`.
    fn compaction_overdue(&self) -> bool {
        let max_lag = self.config.max_compaction_lag_ms;
        if max_lag == i64::MAX {
            return false;
        }
        let now = self.clock.now_ms();
        let segments = self.view.segments();
        segments[..self.cleanable_count(&segments)].iter().any(|s| {
            s.next_offset() > self.cleaned_up_to
                && s.max_timestamp() >= 0
                && s.max_timestamp() <= now.saturating_sub(max_lag)
        })
    }

    /// Takes the snapshot a compaction pass works on, whatever the dirty ratio. `None` when the
    /// policy does not compact or no segment is cleanable yet. Cheap: no I/O.
    pub fn plan_compaction(&self) -> Option<CompactionPlan> {
        if !self.config.cleanup_policy.compacts() {
            return None;
        }
        let all = self.view.segments();
        let count = self.cleanable_count(&all);
        if count == 0 {
            return None;
        }
        let end_offset = all.get(count)?.base_offset();
        let segments = all[..count].to_vec();
        Some(CompactionPlan {
            dir: self.view.dir.clone(),
            groups: group_by_size(&segments, self.config.effective_segment_bytes()),
            segments,
            end_offset,
            log_start_offset: self.offsets().log_start_offset(),
            now_ms: self.clock.now_ms(),
            delete_retention_ms: self.config.delete_retention_ms,
            index_interval_bytes: self.config.index_interval_bytes,
            generation: self.generation,
        })
    }

    /// Swaps the cleaned segments in, group by group: each group whose segments are still the
    /// log's replaces them on disk (crash-safe, see [`recover_interrupted`]) and in the view;
    /// a group whose segments changed (deleted by retention) is abandoned and its files
    /// removed, and after a truncation all are. Quick: renames, unlinks and directory fsyncs.
    pub fn finish_compaction(
        &mut self,
        cleaned: CleanedSegments,
    ) -> Result<CompactionOutcome, Error> {
        self.swap_cleaned(cleaned, None)
    }

    /// [`Log::finish_compaction`], stopping the first group's swap after `stop_after` (to play
    /// a crash there) and leaving the view as it was.
    pub(crate) fn swap_cleaned(
        &mut self,
        mut cleaned: CleanedSegments,
        stop_after: Option<SwapStep>,
    ) -> Result<CompactionOutcome, Error> {
        let mut outcome = CompactionOutcome {
            cleaned_up_to: self.cleaned_up_to,
            ..CompactionOutcome::default()
        };
        let groups = std::mem::take(&mut cleaned.groups);
        if cleaned.generation != self.generation || !self.config.cleanup_policy.compacts() {
            // Truncated meanwhile: the records that made some of the removed ones obsolete may
            // be gone. Dropping the groups removes their files.
            outcome.groups_abandoned = groups.iter().filter(|g| g.segment.is_some()).count();
            return Ok(outcome);
        }
        let dir = self.view.dir.clone();
        let mut segments = self.view.segments().as_ref().clone();
        for mut group in groups {
            let Some(new) = group.segment.take() else {
                continue;
            };
            let count = group.replaced.len();
            let at = segments
                .iter()
                .position(|s| Arc::ptr_eq(s, &group.replaced[0]))
                .filter(|&at| {
                    // Never the active segment: a sealed one must follow the group.
                    segments.len() > at + count
                        && segments[at..at + count]
                            .iter()
                            .zip(&group.replaced)
                            .all(|(a, b)| Arc::ptr_eq(a, b))
                });
            let Some(at) = at else {
                tracing::info!(
                    dir = %dir.display(),
                    base_offset = new.base_offset(),
                    "abandoning a cleaned segment: the segments it replaces changed"
                );
                group.segment = Some(new);
                outcome.groups_abandoned += 1;
                continue;
            };
            let old_bases: Vec<i64> = group.replaced.iter().map(|s| s.base_offset()).collect();
            if !swap_files(&dir, new.base_offset(), group.end, &old_bases, stop_after)? {
                return Ok(outcome);
            }
            let before: u64 = group.replaced.iter().map(|s| s.size()).sum();
            outcome.segments_replaced += count;
            outcome.segments_written += 1;
            outcome.bytes_removed += before.saturating_sub(new.size());
            outcome.records_removed += group.records_removed;
            segments.splice(at..at + count, [Arc::new(new)]);
            self.view.set_segments(segments.clone());
        }
        self.cleaned_up_to = self.cleaned_up_to.max(cleaned.end_offset);
        outcome.cleaned_up_to = self.cleaned_up_to;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::log::{CleanupPolicy, Clock, LogConfig, LogReader, ManualClock};
    use crate::record::batch::Compression;
    use crate::record::{ProducerInfo, Record, build_compressed_batch};

    const T0: i64 = 1_700_000_000_000;
    const DAY: i64 = 24 * 60 * 60 * 1000;

    /// A record as read back: offset, key, value.
    type Read = (i64, Option<String>, Option<String>);

    fn compacted() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 128,
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                clock: Arc::new(ManualClock::new(T0)),
            }
        }

        fn open(&self, config: LogConfig) -> Log {
            Log::open(self.dir.path(), config, self.clock.clone()).unwrap()
        }

        /// Files whose names end with `suffix`.
        fn files_ending(&self, suffix: &str) -> Vec<String> {
            file_names(self.dir.path())
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(suffix))
                .collect()
        }
    }

    fn keyed(
        pairs: &[(Option<&str>, Option<&str>)],
        timestamp: i64,
        codec: Compression,
    ) -> Vec<u8> {
        let records: Vec<Record> = pairs
            .iter()
            .map(|(key, value)| Record {
                key: key.map(|k| k.as_bytes().to_vec()),
                value: value.map(|v| v.as_bytes().to_vec()),
                headers: vec![],
                timestamp,
            })
            .collect();
        build_compressed_batch(&records, ProducerInfo::NONE, codec).unwrap()
    }

    /// Appends `key=value` records (`None`: a tombstone), one batch, uncompressed.
    fn put(log: &mut Log, pairs: &[(&str, Option<&str>)]) -> i64 {
        let pairs: Vec<_> = pairs.iter().map(|(k, v)| (Some(*k), *v)).collect();
        let mut bytes = keyed(&pairs, T0, Compression::None);
        log.append(&mut bytes, 0).unwrap().base_offset
    }

    /// Flushes and seals the active segment so everything so far is cleanable.
    fn seal(log: &mut Log) {
        log.flush().unwrap();
        log.roll().unwrap();
        log.flush().unwrap();
    }

    fn compact(log: &mut Log) -> CompactionOutcome {
        let plan = log.plan_compaction().expect("something to clean");
        let cleaned = plan.run(&AtomicBool::new(false)).unwrap();
        log.finish_compaction(cleaned).unwrap()
    }

    fn text(bytes: Option<&[u8]>) -> Option<String> {
        bytes.map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    /// Every record from the log start, batch by batch through `LogReader::read`.
    fn read_records(reader: &LogReader) -> Vec<Read> {
        let mut out = Vec::new();
        let mut offset = reader.offsets().log_start_offset();
        loop {
            let read = reader.read(offset, 300).unwrap();
            if read.records.is_empty() {
                return out;
            }
            for item in batch::split_batches(&read.records) {
                let (header, bytes) = item.unwrap();
                batch::verify_stored(bytes).unwrap();
                let payload = batch::records_payload(bytes, &header).unwrap();
                for record in Records::stored(&payload, header.record_count) {
                    let record = record.unwrap();
                    let offset = header.base_offset + i64::from(record.offset_delta);
                    assert!(offset <= header.last_offset());
                    out.push((offset, text(record.key), text(record.value)));
                }
            }
            assert!(read.next_offset > offset);
            offset = read.next_offset;
        }
    }

    /// The latest record of each key.
    fn latest(records: &[Read]) -> BTreeMap<Option<String>, Read> {
        records.iter().map(|r| (r.1.clone(), r.clone())).collect()
    }

    fn batches(reader: &LogReader) -> Vec<BatchHeader> {
        let mut out = Vec::new();
        let mut offset = reader.offsets().log_start_offset();
        loop {
            let read = reader.read(offset, 1 << 20).unwrap();
            if read.records.is_empty() {
                return out;
            }
            out.extend(batch::split_batches(&read.records).map(|b| b.unwrap().0));
            offset = read.next_offset;
        }
    }

    #[test]
    fn overwrites_keep_the_latest_value_of_each_key_at_its_offset() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        for round in 0..6 {
            for key in 0..8 {
                let value = format!("v{round}");
                put(&mut log, &[(&format!("k{key}"), Some(&value))]);
            }
        }
        seal(&mut log);
        put(&mut log, &[("k0", Some("active"))]);
        let before = read_records(&log.reader());
        let offsets = log.offsets();
        let segments_before = log.reader().segment_count();
        assert!(segments_before > 3);

        let outcome = compact(&mut log);
        assert_eq!(outcome.records_removed, 40);
        assert_eq!(outcome.cleaned_up_to, 48);
        assert!(outcome.bytes_removed > 0);
        assert_eq!(log.offsets(), offsets, "log start and end stay");

        let after = read_records(&log.reader());
        let expected: Vec<Read> = (0..8)
            .map(|k| (40 + k, Some(format!("k{k}")), Some("v5".to_owned())))
            .chain([(48, Some("k0".to_owned()), Some("active".to_owned()))])
            .collect();
        assert_eq!(
            after, expected,
            "latest per key, original offsets, active untouched"
        );
        assert_eq!(latest(&after), latest(&before));
        assert!(fx.files_ending(".cleaned").is_empty() && fx.files_ending(".swap").is_empty());
        // A fetch from any offset, inside a segment emptied by cleaning or not, starts at the
        // next retained record.
        let reader = log.reader();
        for offset in 0..=48 {
            let read = reader.read(offset, 1).unwrap();
            let header = BatchHeader::parse(&read.records).unwrap();
            let next = after.iter().find(|r| r.0 >= offset).unwrap().0;
            assert!(
                header.base_offset <= next && next <= header.last_offset(),
                "{offset}"
            );
        }

        // Groups are formed by the size before cleaning (as Kafka does): the full segments were
        // cleaned one by one; the next pass merges the now small neighbours.
        assert_eq!(log.reader().segment_count(), segments_before);
        let merge = compact(&mut log);
        assert_eq!(merge.records_removed, 0);
        assert_eq!(
            (merge.segments_replaced, merge.segments_written),
            (segments_before - 1, 1)
        );
        assert_eq!(log.reader().segment_count(), 2);
        assert_eq!(read_records(&log.reader()), expected);
        // Then nothing is left to change, and nothing is rewritten.
        let again = compact(&mut log);
        assert_eq!((again.records_removed, again.segments_written), (0, 0));
        assert_eq!(read_records(&log.reader()), expected);
    }

    #[test]
    fn fetch_from_a_gap_returns_the_next_retained_batch() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        put(&mut log, &[("a", Some("1"))]); // 0
        put(&mut log, &[("b", Some("1"))]); // 1
        put(&mut log, &[("a", Some("2")), ("c", Some("1"))]); // 2, 3
        put(&mut log, &[("b", Some("2"))]); // 4
        put(&mut log, &[("a", Some("3"))]); // 5
        seal(&mut log);
        compact(&mut log);
        let reader = log.reader();
        for (offset, first_base) in [(0, 2), (1, 2), (2, 2), (3, 2), (4, 4), (5, 5)] {
            let read = reader.read(offset, 1).unwrap();
            let header = BatchHeader::parse(&read.records).unwrap();
            assert_eq!(header.base_offset, first_base, "fetch from {offset}");
        }
        // The batch at 2 lost its first record and keeps its offsets: 2..=3, one record.
        let partial = &batches(&reader)[0];
        assert_eq!((partial.base_offset, partial.last_offset_delta), (2, 1));
        assert_eq!(partial.record_count, 1);
        assert_eq!(
            read_records(&reader),
            vec![
                (3, Some("c".into()), Some("1".into())),
                (4, Some("b".into()), Some("2".into())),
                (5, Some("a".into()), Some("3".into())),
            ]
        );
        assert_eq!(reader.read(6, 100).unwrap().records, Vec::<u8>::new());
    }

    #[test]
    fn tombstones_stay_until_delete_retention_ms_has_passed() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        put(&mut log, &[("a", Some("1")), ("b", Some("1"))]);
        put(&mut log, &[("a", None)]);
        seal(&mut log);
        fx.clock.set(T0 + DAY);
        compact(&mut log);
        assert_eq!(
            read_records(&log.reader()),
            vec![
                (1, Some("b".into()), Some("1".into())),
                (2, Some("a".into()), None)
            ],
            "the tombstone hides the older value and stays for delete.retention.ms"
        );
        fx.clock.set(T0 + DAY + 1);
        let outcome = compact(&mut log);
        assert_eq!(outcome.records_removed, 1);
        assert_eq!(
            read_records(&log.reader()),
            vec![(1, Some("b".into()), Some("1".into()))]
        );
    }

    #[test]
    fn records_without_keys_are_refused_on_produce_and_dropped_by_the_cleaner() {
        let fx = Fixture::new();
        // Written while the topic was `delete`, then switched to `compact`.
        let mut log = fx.open(LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..compacted()
        });
        let mut mixed = keyed(
            &[(Some("a"), Some("1")), (None, Some("x"))],
            T0,
            Compression::None,
        );
        log.append(&mut mixed, 0).unwrap();
        log.set_config(compacted());
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut bytes = keyed(&[(Some("b"), Some("1")), (None, Some("y"))], T0, codec);
            let mut two = keyed(&[(Some("c"), Some("1"))], T0, Compression::None);
            two.extend_from_slice(&bytes);
            assert!(
                matches!(
                    log.append(&mut two, 0),
                    Err(Error::RecordsWithoutKey { record_indices, .. })
                        if record_indices == [2]
                ),
                "{codec:?}"
            );
            assert!(matches!(
                log.append(&mut bytes, 0),
                Err(Error::RecordsWithoutKey { record_indices, .. }) if record_indices == [1]
            ));
        }
        // Every keyless record is named, not only the first.
        let mut several = keyed(
            &[(None, Some("p")), (Some("d"), Some("1")), (None, Some("q"))],
            T0,
            Compression::Lz4,
        );
        assert!(matches!(
            log.append(&mut several, 0),
            Err(Error::RecordsWithoutKey { record_indices, .. }) if record_indices == [0, 2]
        ));
        // Many keyless records: the first MAX_NAMED_RECORDS are named, all are counted.
        let pairs: Vec<(Option<&str>, Option<&str>)> = (0..1500)
            .map(|i| (if i == 7 { Some("k") } else { None }, Some("v")))
            .collect();
        let mut many = keyed(&pairs, T0, Compression::Zstd);
        log.set_config(LogConfig {
            segment_bytes: 1 << 20,
            ..compacted()
        });
        match log.append(&mut many, 0) {
            Err(Error::RecordsWithoutKey {
                record_indices,
                count,
            }) => {
                assert_eq!(count, 1499);
                assert_eq!(record_indices.len(), crate::log::MAX_NAMED_RECORDS);
                assert_eq!(
                    record_indices[6..8],
                    [6, 8],
                    "the keyed record is not named"
                );
            }
            other => panic!("{other:?}"),
        }
        log.set_config(compacted());
        assert_eq!(log.log_end_offset(), 2, "nothing appended");
        seal(&mut log);
        compact(&mut log);
        assert_eq!(
            read_records(&log.reader()),
            vec![(0, Some("a".into()), Some("1".into()))]
        );
    }

    #[test]
    fn compressed_batches_partly_kept_are_reencoded_with_their_codec_and_producer() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let fx = Fixture::new();
            let mut log = fx.open(compacted());
            let producer = ProducerInfo {
                producer_id: 77,
                producer_epoch: 3,
                base_sequence: 10,
            };
            let records: Vec<Record> = ["a", "b", "c", "d"]
                .iter()
                .enumerate()
                .map(|(i, k)| Record {
                    key: Some(k.as_bytes().to_vec()),
                    value: Some(format!("{k}-old").into_bytes()),
                    headers: vec![(b"h".to_vec(), Some(vec![i as u8]))],
                    timestamp: T0 + 10 * i as i64,
                })
                .collect();
            let mut bytes = build_compressed_batch(&records, producer, codec).unwrap();
            log.append(&mut bytes, 5).unwrap();
            put(&mut log, &[("a", Some("a-new")), ("d", Some("d-new"))]);
            seal(&mut log);
            compact(&mut log);

            let reader = log.reader();
            let headers = batches(&reader);
            let first = headers[0];
            assert_eq!(first.compression(), Ok(codec));
            assert_eq!(
                (
                    first.base_offset,
                    first.last_offset_delta,
                    first.record_count
                ),
                (0, 3, 2),
                "{codec:?}: offsets kept, two records left"
            );
            assert_eq!(
                (first.producer_id, first.producer_epoch, first.base_sequence),
                (77, 3, 10)
            );
            assert_eq!(first.partition_leader_epoch, 5);
            assert_eq!(first.base_timestamp, T0);
            assert_eq!(first.max_timestamp, T0 + 20, "newest retained record: c");
            assert_eq!(
                read_records(&reader),
                vec![
                    (1, Some("b".into()), Some("b-old".into())),
                    (2, Some("c".into()), Some("c-old".into())),
                    (4, Some("a".into()), Some("a-new".into())),
                    (5, Some("d".into()), Some("d-new".into())),
                ]
            );
            // The batch answers for its range by time.
            let found = reader.offset_for_timestamp(T0 + 15).unwrap().unwrap();
            assert_eq!(
                found.offset, 0,
                "{codec:?}: compressed: the batch's first offset"
            );
            drop(reader);
            // And survives recovery that re-validates it (no checkpoint since).
            drop(log);
            fs::remove_file(fx.dir.path().join("partition.checkpoint")).unwrap();
            let log = fx.open(compacted());
            assert_eq!(read_records(&log.reader()).len(), 4, "{codec:?}");
        }
    }

    #[test]
    fn uncompressed_partial_batches_keep_record_bytes_and_timestamps() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(b"v".to_vec()),
                headers: vec![],
                timestamp: T0 + 100 * i,
            })
            .collect();
        let mut bytes =
            build_compressed_batch(&records, ProducerInfo::NONE, Compression::None).unwrap();
        log.append(&mut bytes, 0).unwrap();
        put(&mut log, &[("k1", Some("w"))]);
        seal(&mut log);
        compact(&mut log);
        let reader = log.reader();
        assert_eq!(
            reader
                .offset_for_timestamp(T0 + 50)
                .unwrap()
                .map(|t| (t.offset, t.timestamp)),
            Some((2, T0 + 200)),
            "record 1 is gone: the next record at or after the time"
        );
        assert_eq!(batches(&reader)[0].max_timestamp, T0 + 200);
    }

    #[test]
    fn control_batches_are_kept_whole() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        let plain = keyed(&[(Some("ctl"), Some("x"))], T0, Compression::None);
        let mut header = BatchHeader::parse(&plain).unwrap();
        header.attributes |= 0x20;
        let mut control = batch::encode(&header, &plain[batch::HEADER_LEN..]).unwrap();
        log.append(&mut control, 0).unwrap();
        put(&mut log, &[("ctl", Some("y"))]);
        seal(&mut log);
        compact(&mut log);
        let headers = batches(&log.reader());
        assert_eq!(headers.len(), 2);
        assert!(headers[0].is_control());
    }

    #[test]
    fn segments_merge_only_up_to_segment_bytes() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        for i in 0..40 {
            put(&mut log, &[(&format!("k{i}"), Some("value"))]);
            if i % 2 == 1 {
                log.roll().unwrap();
            }
        }
        seal(&mut log);
        let before = log.reader().segment_count();
        let outcome = compact(&mut log);
        assert_eq!(outcome.records_removed, 0);
        assert!(outcome.segments_replaced > outcome.segments_written);
        let segments = log.view.segments();
        assert!(segments.len() < before);
        for segment in &segments[..segments.len() - 1] {
            assert!(segment.size() <= 1024, "{} bytes", segment.size());
        }
        assert_eq!(read_records(&log.reader()).len(), 40);
        // Every index file of the merged segments is on disk and sound after a clean reopen.
        log.close().unwrap();
        let log = fx.open(compacted());
        assert_eq!(read_records(&log.reader()).len(), 40);
        assert_eq!(log.reader().segment_count(), segments.len());
    }

    #[test]
    fn only_durable_sealed_old_enough_segments_are_cleaned() {
        let fx = Fixture::new();
        let mut log = fx.open(LogConfig {
            min_compaction_lag_ms: 60_000,
            ..compacted()
        });
        assert!(log.plan_compaction().is_none(), "nothing sealed");
        put(&mut log, &[("a", Some("1"))]);
        put(&mut log, &[("a", Some("2"))]);
        seal(&mut log);
        assert!(log.plan_compaction().is_none(), "younger than the lag");
        fx.clock.advance(60_000);
        let mut young = keyed(&[(Some("a"), Some("3"))], T0 + 60_000, Compression::None);
        log.append(&mut young, 0).unwrap();
        seal(&mut log);
        put(&mut log, &[("a", Some("4"))]);
        let outcome = compact(&mut log);
        assert_eq!(outcome.cleaned_up_to, 2, "the second segment is too young");
        assert_eq!(
            read_records(&log.reader())
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Not durable: appended but not flushed.
        let fx = Fixture::new();
        let mut log = fx.open(LogConfig {
            flush: crate::log::FlushPolicy::Interval { interval_ms: 1000 },
            ..compacted()
        });
        put(&mut log, &[("a", Some("1"))]);
        log.roll().unwrap();
        assert!(log.plan_compaction().is_none(), "not fsynced yet");
        log.flush().unwrap();
        assert!(log.plan_compaction().is_some());
    }

    #[test]
    fn the_dirty_ratio_decides_when_a_pass_is_due() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        assert_eq!(log.compaction_dirty_ratio(), None);
        assert!(!log.compaction_due());
        put(&mut log, &[("a", Some("1"))]);
        seal(&mut log);
        assert_eq!(log.compaction_dirty_ratio(), Some(1.0));
        assert!(log.compaction_due());
        compact(&mut log);
        assert_eq!(log.compaction_dirty_ratio(), Some(0.0));
        assert!(!log.compaction_due());
        put(&mut log, &[("b", Some("1"))]);
        seal(&mut log);
        let ratio = log.compaction_dirty_ratio().unwrap();
        assert!((0.4..0.6).contains(&ratio), "{ratio}");
        log.set_config(LogConfig {
            min_cleanable_dirty_ratio: crate::log::DirtyRatio::new(0.6).unwrap(),
            ..compacted()
        });
        assert!(!log.compaction_due());
        log.set_config(LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..compacted()
        });
        assert!(!log.compaction_due() && log.plan_compaction().is_none());
    }

    #[test]
    fn max_compaction_lag_forces_a_pass_and_rolls_the_active_segment() {
        let fx = Fixture::new();
        let mut log = fx.open(LogConfig {
            min_cleanable_dirty_ratio: crate::log::DirtyRatio::new(0.9).unwrap(),
            max_compaction_lag_ms: 60_000,
            ..compacted()
        });
        put(&mut log, &[("a", Some("1"))]);
        seal(&mut log);
        compact(&mut log);
        put(&mut log, &[("b", Some("1"))]);
        seal(&mut log);
        // About half is dirty, below the ratio: not due while the dirty record is young...
        assert!(log.compaction_dirty_ratio().unwrap() < 0.9);
        assert!(!log.compaction_due());
        // ...and due once it is older than max.compaction.lag.ms.
        fx.clock.advance(60_001);
        assert!(log.compaction_due());
        compact(&mut log);
        assert!(!log.compaction_due());

        // The active segment rolls once it is max.compaction.lag.ms old (segment.ms is a week),
        // so a record reaches a segment compaction may clean in time.
        let mut fresh = keyed(&[(Some("c"), Some("1"))], T0 + 60_001, Compression::None);
        log.append(&mut fresh, 0).unwrap();
        log.roll().unwrap();
        let mut fresh = keyed(&[(Some("c"), Some("2"))], T0 + 60_001, Compression::None);
        log.append(&mut fresh, 0).unwrap();
        let segments = log.reader().segment_count();
        fx.clock.advance(59_000);
        let mut next = keyed(&[(Some("d"), Some("1"))], T0 + 119_001, Compression::None);
        log.append(&mut next, 0).unwrap();
        assert_eq!(log.reader().segment_count(), segments, "not yet");
        fx.clock.advance(1_001);
        let mut last = keyed(&[(Some("e"), Some("1"))], T0 + 120_002, Compression::None);
        log.append(&mut last, 0).unwrap();
        assert_eq!(log.reader().segment_count(), segments + 1);
    }

    #[test]
    fn retention_deletes_nothing_under_compact_alone() {
        let fx = Fixture::new();
        let config = LogConfig {
            retention_ms: Some(1000),
            retention_bytes: Some(1),
            ..compacted()
        };
        let mut log = fx.open(config.clone());
        put(&mut log, &[("a", Some("1"))]);
        seal(&mut log);
        fx.clock.advance(10_000);
        assert_eq!(log.enforce_retention().unwrap().deleted_segments, 0);
        log.set_config(LogConfig {
            cleanup_policy: CleanupPolicy::CompactDelete,
            ..config
        });
        assert_eq!(log.enforce_retention().unwrap().deleted_segments, 1);
    }

    #[test]
    fn a_pass_is_abandoned_where_the_log_changed_under_it() {
        let fx = Fixture::new();
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::CompactDelete,
            retention_ms: Some(DAY),
            segment_bytes: 200,
            ..compacted()
        };
        let mut log = fx.open(config);
        put(&mut log, &[("a", Some("old"))]);
        log.roll().unwrap();
        fx.clock.advance(DAY / 2);
        for value in ["1", "2", "3"] {
            let mut bytes = keyed(&[(Some("b"), Some(value))], T0 + DAY / 2, Compression::None);
            log.append(&mut bytes, 0).unwrap();
            log.roll().unwrap();
        }
        put(&mut log, &[("a", Some("new"))]);
        seal(&mut log);
        let plan = log.plan_compaction().unwrap();
        assert!(plan.groups.len() >= 2, "{:?}", plan.groups);
        let cleaned = plan.run(&AtomicBool::new(false)).unwrap();
        assert!(!fx.files_ending(".log.cleaned").is_empty());
        // Meanwhile retention deletes the first segment (its record is older than a day).
        fx.clock.advance(DAY / 2 + 1);
        assert_eq!(log.enforce_retention().unwrap().deleted_segments, 1);
        let outcome = log.finish_compaction(cleaned).unwrap();
        assert_eq!(outcome.groups_abandoned, 1);
        assert!(
            outcome.segments_written >= 1,
            "the other groups are swapped in"
        );
        assert!(fx.files_ending(".cleaned").is_empty());
        // The abandoned group also held b=1 (offset 1); the next pass removes it.
        assert_eq!(
            read_records(&log.reader()),
            vec![
                (1, Some("b".into()), Some("1".into())),
                (3, Some("b".into()), Some("3".into())),
                (4, Some("a".into()), Some("new".into())),
            ]
        );
        compact(&mut log);
        assert_eq!(
            read_records(&log.reader()),
            vec![
                (3, Some("b".into()), Some("3".into())),
                (4, Some("a".into()), Some("new".into())),
            ]
        );

        // A truncation abandons everything.
        put(&mut log, &[("c", Some("1"))]);
        seal(&mut log);
        put(&mut log, &[("c", Some("2"))]);
        seal(&mut log);
        let cleaned = log
            .plan_compaction()
            .unwrap()
            .run(&AtomicBool::new(false))
            .unwrap();
        log.truncate_to(6).unwrap();
        let outcome = log.finish_compaction(cleaned).unwrap();
        assert_eq!(outcome.segments_written, 0);
        assert!(outcome.groups_abandoned >= 1);
        assert!(fx.files_ending(".cleaned").is_empty());
        assert_eq!(
            read_records(&log.reader()).last().unwrap().0,
            5,
            "c=1 survives"
        );
    }

    #[test]
    fn a_cancelled_pass_leaves_no_files() {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        put(&mut log, &[("a", Some("1"))]);
        put(&mut log, &[("a", Some("2"))]);
        seal(&mut log);
        let plan = log.plan_compaction().unwrap();
        assert!(matches!(
            plan.run(&AtomicBool::new(true)),
            Err(Error::CompactionCancelled)
        ));
        assert!(fx.files_ending(".cleaned").is_empty());
        // And an unswapped result dropped on the floor takes its files with it.
        drop(
            log.plan_compaction()
                .unwrap()
                .run(&AtomicBool::new(false))
                .unwrap(),
        );
        assert!(fx.files_ending(".cleaned").is_empty());
    }

    /// Builds the same log in a fresh directory: overwrites over several segments, some merged.
    fn crash_fixture() -> (Fixture, Log) {
        let fx = Fixture::new();
        let mut log = fx.open(compacted());
        for round in 0..5 {
            for key in 0..6 {
                put(
                    &mut log,
                    &[(&format!("k{key}"), Some(&format!("v{round}")))],
                );
            }
            if round == 2 {
                put(&mut log, &[("k0", None)]);
            }
            log.roll().unwrap();
        }
        put(&mut log, &[("k9", Some("active"))]);
        log.flush().unwrap();
        log.checkpoint().unwrap();
        (fx, log)
    }

    #[test]
    fn a_crash_at_any_point_of_the_swap_leaves_the_old_or_the_new_segments() {
        let (fx, mut log) = crash_fixture();
        let old_records = read_records(&log.reader());
        compact(&mut log);
        let new_records = read_records(&log.reader());
        assert_ne!(old_records, new_records);
        assert_eq!(latest(&old_records), latest(&new_records));
        drop(log);
        drop(fx);

        // (None: the cleaned files are written, the swap has not begun.)
        for stop in [
            None,
            Some(SwapStep::IndexesRenamed),
            Some(SwapStep::Committed),
            Some(SwapStep::OldDeleted),
            Some(SwapStep::IndexesInPlace),
        ] {
            let (fx, mut log) = crash_fixture();
            let plan = log.plan_compaction().unwrap();
            assert!(plan.groups.len() > 1, "{:?}", plan.groups);
            // The swap stops inside the first group; the later groups' files stay `.cleaned`.
            let first_end = plan.segments[plan.groups[0].end].base_offset();
            let cleaned = plan.run(&AtomicBool::new(false)).unwrap();
            if let Some(step) = stop {
                log.swap_cleaned(cleaned, Some(step)).unwrap();
            } else {
                // Keep the files: play a crash before the owner got the result.
                std::mem::forget(cleaned);
            }
            assert_eq!(
                read_records(&log.reader()),
                old_records,
                "{stop:?}: the view is untouched"
            );
            drop(log); // the crash: no close, no checkpoint

            let log = fx.open(compacted());
            let records = read_records(&log.reader());
            let committed = stop.is_some_and(|s| s >= SwapStep::Committed);
            let expected: Vec<Read> = if committed {
                let first = new_records.iter().filter(|r| r.0 < first_end);
                let rest = old_records.iter().filter(|r| r.0 >= first_end);
                first.chain(rest).cloned().collect()
            } else {
                old_records.clone()
            };
            assert_eq!(
                records, expected,
                "{stop:?}: each group old or new, never both"
            );
            assert_eq!(latest(&records), latest(&old_records));
            assert!(
                fx.files_ending(".cleaned").is_empty() && fx.files_ending(".swap").is_empty(),
                "{stop:?}: {:?}",
                file_names(fx.dir.path())
            );
            assert_eq!(log.log_end_offset(), 32);
            // The recovered log compacts and serves as usual afterwards.
            drop(log);
            let mut log = fx.open(compacted());
            compact(&mut log);
            assert_eq!(read_records(&log.reader()), new_records, "{stop:?}");
        }
    }

    #[test]
    fn recovery_removes_stray_swap_files_without_a_committed_data_file() {
        let (fx, log) = crash_fixture();
        let old_records = read_records(&log.reader());
        drop(log);
        let dir = fx.dir.path();
        fs::write(dir.join("00000000000000000000.index.swap"), b"junk").unwrap();
        fs::write(dir.join("00000000000000000000.timeindex.cleaned"), b"junk").unwrap();
        let log = fx.open(compacted());
        assert_eq!(read_records(&log.reader()), old_records);
        assert!(fx.files_ending(".swap").is_empty() && fx.files_ending(".cleaned").is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<(u8, Option<u8>)>, Compression),
        Roll,
        Compact,
        Reopen,
        Tick,
    }

    fn op() -> impl Strategy<Value = Op> {
        let codec = prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Lz4),
        ];
        let record = (0u8..6, proptest::option::weighted(0.85, 0u8..100));
        prop_oneof![
            6 => (proptest::collection::vec(record, 1..5), codec).prop_map(|(r, c)| Op::Put(r, c)),
            2 => Just(Op::Roll),
            2 => Just(Op::Compact),
            1 => Just(Op::Reopen),
            1 => Just(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random keyed appends, rolls, compactions, reopens and clock ticks: every record read
        /// back is one that was appended, at its offset; the latest record of every key is
        /// always there (tombstones until `delete.retention.ms`); in the cleaned section each
        /// key appears once.
        #[test]
        fn compaction_keeps_the_latest_record_of_every_key(ops in proptest::collection::vec(op(), 1..40)) {
            let fx = Fixture::new();
            let config = LogConfig { segment_bytes: 300, delete_retention_ms: 5_000, ..compacted() };
            let mut log = Some(fx.open(config.clone()));
            let mut model: Vec<(i64, Read, i64)> = Vec::new();
            let mut cleaned_up_to = 0;
            for op in ops {
                let current = log.as_mut().unwrap();
                match op {
                    Op::Put(pairs, codec) => {
                        let keys: Vec<String> = pairs.iter().map(|(k, _)| format!("k{k}")).collect();
                        let values: Vec<Option<String>> = pairs.iter().map(|(_, v)| v.map(|v| format!("v{v}"))).collect();
                        let refs: Vec<_> = keys.iter().zip(&values).map(|(k, v)| (Some(k.as_str()), v.as_deref())).collect();
                        let now = fx.clock.now_ms();
                        let mut bytes = keyed(&refs, now, codec);
                        let base = current.append(&mut bytes, 0).unwrap().base_offset;
                        current.flush().unwrap();
                        for (i, (k, v)) in keys.into_iter().zip(values).enumerate() {
                            model.push((now, (base + i as i64, Some(k), v), now));
                        }
                    }
                    Op::Roll => current.roll().unwrap(),
                    Op::Compact => {
                        if let Some(plan) = current.plan_compaction() {
                            let cleaned = plan.run(&AtomicBool::new(false)).unwrap();
                            cleaned_up_to = current.finish_compaction(cleaned).unwrap().cleaned_up_to;
                        }
                    }
                    Op::Reopen => {
                        log.take().unwrap().close().unwrap();
                        log = Some(fx.open(config.clone()));
                    }
                    Op::Tick => fx.clock.advance(3_000),
                }
                let current = log.as_ref().unwrap();
                let read = read_records(&current.reader());
                let appended: BTreeMap<i64, &Read> = model.iter().map(|(_, r, _)| (r.0, r)).collect();
                for record in &read {
                    prop_assert_eq!(Some(&record), appended.get(&record.0), "read back what was appended");
                }
                let now = fx.clock.now_ms();
                let by_offset: BTreeMap<i64, &Read> = read.iter().map(|r| (r.0, r)).collect();
                let mut newest: BTreeMap<&Option<String>, &(i64, Read, i64)> = BTreeMap::new();
                for entry in &model {
                    newest.insert(&entry.1.1, entry);
                }
                for (_, (_, record, timestamp)) in newest {
                    let expired = record.2.is_none() && timestamp + 5_000 < now;
                    if !expired {
                        prop_assert_eq!(by_offset.get(&record.0), Some(&record), "the latest of each key stays");
                    }
                }
                let mut seen = std::collections::BTreeSet::new();
                for record in read.iter().filter(|r| r.0 < cleaned_up_to) {
                    prop_assert!(seen.insert(record.1.clone()), "one record per key in the cleaned section");
                }
                let offsets: Vec<i64> = read.iter().map(|r| r.0).collect();
                prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]));
                prop_assert_eq!(current.log_end_offset(), model.len() as i64);
            }
        }
    }
}
