//! One segment of a partition log: a `.log` file of whole record batches plus its in-memory
//! indexes. A [`Segment`] is shared (`Arc`) between the appender and readers: readers use
//! positional reads up to the published size and never wait for the appender. Only the
//! [`ActiveSegment`] wrapper can append; sealing it hands back a plain shared segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::index::{IndexDamage, OffsetIndex, TimeIndex};
use crate::record::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use crate::record::{Compression, Records, TimestampType};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Suffix of a segment's files while compaction writes them (`00000000000000001234.log.cleaned`).
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";

/// `00000000000000001234.log` and its siblings.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Parses a segment data file name back into its base offset.
pub(crate) fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Why stored bytes could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegmentReadError {
    #[error("reading the segment file")]
    Io(#[source] io::Error),
    #[error("stored batch at byte {position} is damaged")]
    Corrupt {
        position: u64,
        #[source]
        source: BatchError,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct SegmentState {
    /// Bytes visible to readers; the appender publishes them after writing.
    pub(crate) size: u64,
    /// One past the last offset stored; the base offset while empty.
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp; -1 while empty.
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// When the segment was created, for `segment.ms`.
    pub(crate) created_ms: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
}

impl SegmentState {
    fn empty(base_offset: i64, created_ms: i64) -> Self {
        Self {
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
        }
    }

    /// Accounts for a batch stored at `position`: offsets, timestamps, sparse index entries.
    fn record_batch(
        &mut self,
        base_offset: i64,
        position: u64,
        len: usize,
        header: &BatchHeader,
        index_interval: u64,
    ) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.bytes_since_index_entry >= index_interval {
            let relative = (header.base_offset - base_offset) as u32;
            self.offset_index.push(relative, position as u32);
            let relative_max = (self.offset_of_max_timestamp - base_offset) as u32;
            self.time_index
                .push_if_newer(self.max_timestamp, relative_max);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += len as u64;
        self.size = position + len as u64;
        self.next_offset = header.next_offset();
    }

    fn seal_time_index(&mut self, base_offset: i64) {
        if self.max_timestamp >= 0 || self.next_offset > base_offset {
            let relative = (self.offset_of_max_timestamp - base_offset) as u32;
            self.time_index.push_if_newer(self.max_timestamp, relative);
        }
    }
}

/// How a walk over a segment's batches ended.
#[derive(Debug)]
pub(crate) struct WalkEnd {
    /// End of the last good batch.
    pub(crate) valid_size: u64,
    /// What stopped the walk before the end of the file, if anything.
    pub(crate) problem: Option<WalkProblem>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WalkProblem {
    #[error("a batch is cut short by the end of the file")]
    Torn,
    #[error("a batch is damaged")]
    Corrupt(#[source] BatchError),
    #[error("batch base offset {found} is below the expected {expected}")]
    OffsetsOutOfOrder { expected: i64, found: i64 },
    #[error("batch offsets run past the segment's 32-bit relative range")]
    OffsetRange,
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: File,
    state: RwLock<SegmentState>,
}

impl Segment {
    /// Creates a new, empty segment file; fails if it exists.
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Self> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            base_offset,
            path,
            file,
            state: RwLock::new(SegmentState::empty(base_offset, now_ms)),
        })
    }

    /// Opens an existing segment file with empty in-memory state; returns it and the file length.
    fn open_existing(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<(Self, u64)> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let metadata = file.metadata()?;
        let created_ms = metadata
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now_ms, |d| (d.as_millis() as i64).min(now_ms));
        let segment = Self {
            base_offset,
            path,
            file,
            state: RwLock::new(SegmentState::empty(base_offset, created_ms)),
        };
        Ok((segment, metadata.len()))
    }

    /// Opens a segment whose index files are trusted if they pass their checks. The tail after the
    /// last offset index entry is walked (headers only) to find the end. Returns `None` when the
    /// indexes are missing or damaged, or the tail walk does not end cleanly at the end of file.
    pub(crate) fn open_indexed(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval: u64,
    ) -> io::Result<Option<Self>> {
        let (segment, len) = Self::open_existing(dir, base_offset, now_ms)?;
        let created_ms = segment.read_state().created_ms;
        let offset_index = match fs::read(dir.join(file_name(base_offset, INDEX_SUFFIX))) {
            Ok(bytes) => match OffsetIndex::decode(&bytes, len) {
                Ok(index) => index,
                Err(damage) => return Ok(segment.distrust(damage)),
            },
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let time_bytes = match fs::read(dir.join(file_name(base_offset, TIME_INDEX_SUFFIX))) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        // The last offset entry must point at a batch with the offset it claims.
        let start = match offset_index.last() {
            Some(entry) => {
                let mut header = [0u8; HEADER_LEN];
                if segment
                    .file
                    .read_exact_at(&mut header, u64::from(entry.position))
                    .is_err()
                {
                    return Ok(None);
                }
                match batch::parse_header(&header) {
                    Ok((h, _))
                        if h.base_offset == base_offset + i64::from(entry.relative_offset) =>
                    {
                        u64::from(entry.position)
                    }
                    _ => return Ok(segment.distrust(IndexDamage::BeyondSegment)),
                }
            }
            None => 0,
        };
        let mut state = SegmentState::empty(base_offset, created_ms);
        state.offset_index = offset_index;
        let tail = segment.walk(start, len, false, |position, len, header| {
            if position == start {
                // Already indexed; account for it without adding an entry.
                state.size = position + len as u64;
                state.next_offset = header.next_offset();
                state.bytes_since_index_entry = len as u64;
                if header.max_timestamp > state.max_timestamp {
                    state.max_timestamp = header.max_timestamp;
                    state.offset_of_max_timestamp = header.last_offset();
                }
            } else {
                state.record_batch(base_offset, position, len, header, index_interval);
            }
        })?;
        if tail.problem.is_some() || tail.valid_size != len {
            return Ok(None);
        }
        let offset_limit = (state.next_offset - base_offset).max(0) as u64;
        let time_index = match TimeIndex::decode(&time_bytes, offset_limit) {
            Ok(index) => index,
            Err(damage) => return Ok(segment.distrust(damage)),
        };
        if let Some(last) = time_index.last()
            && last.timestamp > state.max_timestamp
        {
            state.max_timestamp = last.timestamp;
            state.offset_of_max_timestamp = base_offset + i64::from(last.relative_offset);
        }
        if len > 0 && state.max_timestamp < 0 && time_index.last().is_none() {
            return Ok(None);
        }
        state.time_index = time_index;
        *segment.write_state() = state;
        Ok(Some(segment))
    }

    fn distrust(&self, damage: IndexDamage) -> Option<Self> {
        tracing::warn!(segment = %self.path.display(), %damage, "index files will be rebuilt");
        None
    }

    /// Opens a segment by walking all of its batches, rebuilding the indexes. With `verify_crc`
    /// every batch's CRC is checked too. The walk stops at the first bad batch; the caller decides
    /// whether to cut there ([`WalkEnd`]).
    pub(crate) fn open_scanning(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval: u64,
        verify_crc: bool,
    ) -> io::Result<(Self, WalkEnd)> {
        let (segment, len) = Self::open_existing(dir, base_offset, now_ms)?;
        let created_ms = segment.read_state().created_ms;
        let mut state = SegmentState::empty(base_offset, created_ms);
        let end = segment.walk(0, len, verify_crc, |position, len, header| {
            state.record_batch(base_offset, position, len, header, index_interval);
        })?;
        // A torn tail is beyond what readers may see even before the caller truncates it.
        state.size = end.valid_size;
        *segment.write_state() = state;
        Ok((segment, end))
    }

    /// Walks batches from `start` to `len`, calling `visit(position, len, header)` for each good one.
    fn walk(
        &self,
        start: u64,
        len: u64,
        verify_crc: bool,
        mut visit: impl FnMut(u64, usize, &BatchHeader),
    ) -> io::Result<WalkEnd> {
        let mut position = start;
        let mut expected = self.base_offset;
        let mut batch_buf = Vec::new();
        let problem = loop {
            if position == len {
                break None;
            }
            if position + HEADER_LEN as u64 > len {
                break Some(WalkProblem::Torn);
            }
            let mut header_buf = [0u8; HEADER_LEN];
            self.file.read_exact_at(&mut header_buf, position)?;
            let (header, total) = match batch::parse_header(&header_buf) {
                Ok(parsed) => parsed,
                Err(error) => break Some(WalkProblem::Corrupt(error)),
            };
            if position + total as u64 > len {
                break Some(WalkProblem::Torn);
            }
            if header.base_offset < expected || header.last_offset_delta < 0 {
                break Some(WalkProblem::OffsetsOutOfOrder {
                    expected,
                    found: header.base_offset,
                });
            }
            if header.last_offset() - self.base_offset > i64::from(u32::MAX) {
                break Some(WalkProblem::OffsetRange);
            }
            if verify_crc {
                batch_buf.resize(total, 0);
                self.file.read_exact_at(&mut batch_buf, position)?;
                if let Err(error) = batch::verify_stored(&batch_buf) {
                    break Some(WalkProblem::Corrupt(error));
                }
            }
            visit(position, total, &header);
            expected = header.next_offset();
            position += total as u64;
        };
        Ok(WalkEnd {
            valid_size: position,
            problem,
        })
    }

    /// `offset` relative to the base, clamped to the index's 32-bit range.
    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, SegmentState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, SegmentState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn size(&self) -> u64 {
        self.read_state().size
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.read_state().next_offset
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.read_state().max_timestamp
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size() == 0
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Writes the index files (each a valid index even if cut short) and syncs them.
    pub(crate) fn write_indexes(&self, dir: &Path) -> io::Result<()> {
        self.write_index_files(dir, None)
    }

    /// Writes the index files, named `<base>.index` (or `<base>.index.<extra>`), and syncs them.
    fn write_index_files(&self, dir: &Path, extra: Option<&str>) -> io::Result<()> {
        let (offsets, times) = {
            let state = self.read_state();
            (state.offset_index.encode(), state.time_index.encode())
        };
        for (suffix, bytes) in [(INDEX_SUFFIX, offsets), (TIME_INDEX_SUFFIX, times)] {
            let mut name = file_name(self.base_offset, suffix);
            if let Some(extra) = extra {
                name = format!("{name}.{extra}");
            }
            let path = dir.join(name);
            let mut file = File::create(&path)?;
            io::Write::write_all(&mut file, &bytes)?;
            file.sync_data()?;
        }
        Ok(())
    }

    /// Removes the segment's files. Readers holding the segment keep reading the open file.
    pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> io::Result<()> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            match fs::remove_file(dir.join(file_name(base_offset, suffix))) {
                Err(error) if error.kind() != ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads whole batches starting with the one that holds `offset`, stopping before `upper`
    /// and, after the first batch, before `max_bytes`. Every returned batch's CRC is checked.
    /// `Ok(None)` when this segment holds nothing at or after `offset` below `upper`.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<Option<Vec<u8>>, SegmentReadError> {
        let (size, mut position) = {
            let state = self.read_state();
            let relative = self.relative(offset);
            (
                state.size,
                state
                    .offset_index
                    .floor(relative)
                    .map_or(0, |e| u64::from(e.position)),
            )
        };
        let corrupt = |position, source| SegmentReadError::Corrupt { position, source };
        let first_len = loop {
            let Some(header) = self.header_at(position, size)? else {
                return Ok(None);
            };
            let (header, total) = header.map_err(|error| corrupt(position, error))?;
            if header.base_offset >= upper {
                return Ok(None);
            }
            if header.next_offset() > offset {
                break total;
            }
            position += total as u64;
        };
        let available = (size - position) as usize;
        let want = max_bytes.min(available).max(first_len);
        let mut buf = vec![0u8; want];
        let filled = read_up_to(&self.file, &mut buf, position).map_err(SegmentReadError::Io)?;
        buf.truncate(filled);

        let mut end = 0;
        for item in batch::split_batches(&buf) {
            let Ok((header, bytes)) = item else { break };
            if header.base_offset >= upper {
                break;
            }
            if let Err(error) = batch::verify_stored(bytes) {
                if end == 0 {
                    return Err(corrupt(position, error));
                }
                break;
            }
            end += bytes.len();
        }
        if end == 0 {
            // Cut short under us by a truncation.
            return Ok(None);
        }
        buf.truncate(end);
        Ok(Some(buf))
    }

    /// The header at `position`, or `None` past the end.
    #[allow(clippy::type_complexity)]
    fn header_at(
        &self,
        position: u64,
        size: u64,
    ) -> Result<Option<Result<(BatchHeader, usize), BatchError>>, SegmentReadError> {
        if position + HEADER_LEN as u64 > size {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_LEN];
        match self.file.read_exact_at(&mut buf, position) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(SegmentReadError::Io(error)),
        }
        Ok(Some(batch::parse_header(&buf).and_then(
            |(header, total)| {
                if position + total as u64 > size {
                    Err(BatchError::LengthMismatch {
                        declared: total as i64,
                        available: (size - position) as usize,
                    })
                } else {
                    Ok((header, total))
                }
            },
        )))
    }

    /// The first offset at or after `min_offset` whose record timestamp is at or after `target`,
    /// with that timestamp.
    pub(crate) fn offset_for_timestamp(
        &self,
        target: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, SegmentReadError> {
        let (size, mut position) = {
            let state = self.read_state();
            if state.max_timestamp < target {
                return Ok(None);
            }
            let from_time = state
                .time_index
                .last_before(target)
                .map_or(0, |e| e.relative_offset);
            let relative = self.relative(min_offset).max(from_time);
            (
                state.size,
                state
                    .offset_index
                    .floor(relative)
                    .map_or(0, |e| u64::from(e.position)),
            )
        };
        while let Some(header) = self.header_at(position, size)? {
            let (header, total) =
                header.map_err(|source| SegmentReadError::Corrupt { position, source })?;
            if header.max_timestamp >= target && header.next_offset() > min_offset {
                let uncompressed = header.compression() == Ok(Compression::None);
                if header.timestamp_type() == TimestampType::LogAppendTime || !uncompressed {
                    // Compressed payloads are not opened here: the batch is the answer.
                    return Ok(Some((
                        header.base_offset.max(min_offset),
                        header.max_timestamp,
                    )));
                }
                let mut buf = vec![0u8; total];
                self.file
                    .read_exact_at(&mut buf, position)
                    .map_err(SegmentReadError::Io)?;
                batch::verify_stored(&buf)
                    .map_err(|source| SegmentReadError::Corrupt { position, source })?;
                // Compaction may have removed records from the batch: their offsets stay gaps.
                for record in Records::stored(&buf[HEADER_LEN..], header.record_count) {
                    let record =
                        record.map_err(|source| SegmentReadError::Corrupt { position, source })?;
                    let offset = header.base_offset + i64::from(record.offset_delta);
                    let timestamp = header.base_timestamp + record.timestamp_delta;
                    if offset >= min_offset && timestamp >= target {
                        return Ok(Some((offset, timestamp)));
                    }
                }
            }
            position += total as u64;
        }
        Ok(None)
    }

    /// Cuts the segment before the batch that holds `offset`; returns the new next offset.
    /// The index state is rebuilt by walking what remains.
    pub(crate) fn truncate_to(&self, offset: i64, index_interval: u64) -> io::Result<i64> {
        let size = self.size();
        let mut position = 0;
        let mut cut = size;
        let mut state = SegmentState::empty(self.base_offset, self.read_state().created_ms);
        while let Ok(Some(Ok((header, total)))) = self.header_at(position, size) {
            if header.next_offset() > offset {
                cut = position;
                break;
            }
            state.record_batch(self.base_offset, position, total, &header, index_interval);
            position += total as u64;
        }
        let cut = cut.min(position);
        self.file.set_len(cut)?;
        self.file.sync_data()?;
        state.size = cut;
        let next = state.next_offset;
        *self.write_state() = state;
        Ok(next)
    }

    /// Cuts the file at `size` (recovery of a torn or damaged tail).
    pub(crate) fn cut_file(&self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        self.file.sync_data()
    }
}

/// The batches of a segment in file order, each read whole and CRC-checked: what compaction
/// reads. Stops at the size the segment had when the walk began.
#[derive(Debug)]
pub(crate) struct StoredBatches<'a> {
    segment: &'a Segment,
    position: u64,
    size: u64,
    done: bool,
}

/// One batch of a [`StoredBatches`] walk.
#[derive(Debug)]
pub(crate) struct StoredBatch {
    pub(crate) position: u64,
    pub(crate) header: BatchHeader,
    pub(crate) bytes: Vec<u8>,
}

impl Iterator for StoredBatches<'_> {
    type Item = Result<StoredBatch, SegmentReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let position = self.position;
        let result = (|| {
            let Some(header) = self.segment.header_at(position, self.size)? else {
                if position < self.size {
                    // A partial header inside the published size: the file was cut under us.
                    return Err(SegmentReadError::Corrupt {
                        position,
                        source: BatchError::TooShort {
                            len: (self.size - position) as usize,
                        },
                    });
                }
                return Ok(None);
            };
            let (header, total) =
                header.map_err(|source| SegmentReadError::Corrupt { position, source })?;
            let mut bytes = vec![0u8; total];
            self.segment
                .file
                .read_exact_at(&mut bytes, position)
                .map_err(SegmentReadError::Io)?;
            batch::verify_stored(&bytes)
                .map_err(|source| SegmentReadError::Corrupt { position, source })?;
            Ok(Some(StoredBatch {
                position,
                header,
                bytes,
            }))
        })();
        match result {
            Ok(Some(batch)) => {
                self.position += batch.bytes.len() as u64;
                Some(Ok(batch))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl Segment {
    /// Walks the segment's batches (see [`StoredBatches`]).
    pub(crate) fn batches(&self) -> StoredBatches<'_> {
        StoredBatches {
            segment: self,
            position: 0,
            size: self.size(),
            done: false,
        }
    }

    /// Where each run of batches of one leader epoch starts, in file order: `(epoch, base
    /// offset)` for the first batch and for every batch whose epoch differs from the one before.
    /// Headers only; what rebuilds a missing leader epoch cache.
    pub(crate) fn epoch_starts(&self) -> Result<Vec<(i32, i64)>, SegmentReadError> {
        let size = self.size();
        let mut position = 0;
        let mut starts: Vec<(i32, i64)> = Vec::new();
        while let Some(header) = self.header_at(position, size)? {
            let (header, total) =
                header.map_err(|source| SegmentReadError::Corrupt { position, source })?;
            if starts
                .last()
                .is_none_or(|(epoch, _)| *epoch != header.partition_leader_epoch)
            {
                starts.push((header.partition_leader_epoch, header.base_offset));
            }
            position += total as u64;
        }
        Ok(starts)
    }

    /// When the segment was created (or, for one opened from disk, its file).
    pub(crate) fn created_ms(&self) -> i64 {
        self.read_state().created_ms
    }
}

/// A segment compaction is writing: a `<base>.log.cleaned` file filled batch by batch, with its
/// indexes built as it goes. [`CleanedSegmentWriter::finish`] syncs it and writes
/// `<base>.index.cleaned` and `<base>.timeindex.cleaned`; the log then renames them into place.
/// Dropped unfinished, it deletes its file.
#[derive(Debug)]
pub(crate) struct CleanedSegmentWriter {
    dir: PathBuf,
    segment: Option<Segment>,
    index_interval: u64,
}

impl CleanedSegmentWriter {
    /// Creates `<base>.log.cleaned`, replacing one a failed earlier pass left behind.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        created_ms: i64,
        index_interval: u64,
    ) -> io::Result<Self> {
        remove_cleaned_files(dir, base_offset)?;
        let cleaned = dir.join(format!(
            "{}.{CLEANED_SUFFIX}",
            file_name(base_offset, LOG_SUFFIX)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&cleaned)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment: Some(Segment {
                base_offset,
                // The name the file will have once swapped in; the handle stays valid across
                // the renames.
                path: dir.join(file_name(base_offset, LOG_SUFFIX)),
                file,
                state: RwLock::new(SegmentState::empty(base_offset, created_ms)),
            }),
            index_interval,
        })
    }

    /// Appends one whole batch described by `header`.
    pub(crate) fn append(&mut self, bytes: &[u8], header: &BatchHeader) -> io::Result<()> {
        let Some(segment) = &self.segment else {
            return Err(io::Error::other("the cleaned segment is already finished"));
        };
        // No reader sees this segment before it is swapped in; still, no lock across the write.
        let position = segment.size();
        segment.file.write_all_at(bytes, position)?;
        segment.write_state().record_batch(
            segment.base_offset,
            position,
            bytes.len(),
            header,
            self.index_interval,
        );
        Ok(())
    }

    /// Syncs the data, writes and syncs the `.cleaned` index files; returns the segment, ready to
    /// be swapped in.
    pub(crate) fn finish(mut self) -> io::Result<Segment> {
        let Some(segment) = self.segment.take() else {
            return Err(io::Error::other("the cleaned segment is already finished"));
        };
        let result = (|| {
            segment.write_state().seal_time_index(segment.base_offset);
            segment.file.sync_data()?;
            segment.write_index_files(&self.dir, Some(CLEANED_SUFFIX))
        })();
        match result {
            Ok(()) => Ok(segment),
            Err(error) => {
                let _ = remove_cleaned_files(&self.dir, segment.base_offset);
                Err(error)
            }
        }
    }
}

impl Drop for CleanedSegmentWriter {
    fn drop(&mut self) {
        if let Some(segment) = &self.segment
            && let Err(error) = remove_cleaned_files(&self.dir, segment.base_offset)
        {
            // Log::open removes it at the latest.
            tracing::warn!(dir = %self.dir.display(), %error, "removing an unfinished cleaned segment failed");
        }
    }
}

/// Removes `<base>.log.cleaned` and its index files, if there.
pub(crate) fn remove_cleaned_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let name = format!("{}.{CLEANED_SUFFIX}", file_name(base_offset, suffix));
        match fs::remove_file(dir.join(name)) {
            Err(error) if error.kind() != ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// Reads as much of `buf` as the file holds from `position`; returns the bytes read.
fn read_up_to(file: &File, buf: &mut [u8], position: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], position + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The segment being appended to. Only the log owns it, so appends need no lock beyond the
/// short one that publishes the new size.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    segment: Arc<Segment>,
}

impl ActiveSegment {
    pub(crate) fn new(segment: Arc<Segment>) -> Self {
        Self { segment }
    }

    pub(crate) fn shared(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// Writes `bytes` (the batches in `batches`, in order) at the end of the file and publishes
    /// them to readers.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        batches: &[(BatchHeader, usize)],
        index_interval: u64,
    ) -> io::Result<()> {
        let segment = &self.segment;
        let start = segment.size();
        if let Err(error) = segment.file.write_all_at(bytes, start) {
            // Drop whatever part landed, so the file holds whole batches only.
            let _ = segment.file.set_len(start);
            return Err(error);
        }
        let mut state = segment.write_state();
        let mut position = start;
        for (header, len) in batches {
            state.record_batch(segment.base_offset, position, *len, header, index_interval);
            position += *len as u64;
        }
        Ok(())
    }

    /// Seals the segment: final time index entry, index files written and synced.
    pub(crate) fn seal(self, dir: &Path) -> io::Result<Arc<Segment>> {
        self.segment
            .write_state()
            .seal_time_index(self.segment.base_offset);
        self.segment.write_indexes(dir)?;
        Ok(self.segment)
    }
}

impl Segment {
    /// For a damaged segment kept in place: readers see the whole file (and get an error at the
    /// damage) and its offsets run up to the next segment.
    pub(crate) fn assume_extent(&self, size: u64, next_offset: i64) {
        let mut state = self.write_state();
        state.size = size;
        state.next_offset = next_offset;
    }
}
