//! Sparse per-segment indexes, kept in memory and written to `.index` / `.timeindex` files when
//! a segment is sealed or the log closes.
//!
//! - Offset index: 8-byte entries `(offset - base_offset: u32, position: u32)`, big-endian, one
//!   per `index.interval.bytes` of data, keyed by the base offset of the batch at `position`.
//! - Time index: 12-byte entries `(max_timestamp_so_far: i64, offset_of_it - base_offset: u32)`,
//!   added with the offset entries when the maximum grew, plus a final entry at seal.
//!
//! The files are a cache: when one is missing or fails the checks in `decode`, recovery rebuilds it
//! from the segment's data.

/// Why an index file was not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IndexDamage {
    #[error("its size is not a whole number of entries")]
    PartialEntry,
    #[error("its entries are not strictly increasing")]
    NotIncreasing,
    #[error("an entry points past the end of the segment")]
    BeyondSegment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    const ENTRY_LEN: usize = 8;

    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|last| last.relative_offset < relative_offset)
        );
        self.entries.push(OffsetEntry {
            relative_offset,
            position,
        });
    }

    /// The last entry at or before `relative_offset`: where a scan for it may start.
    pub(crate) fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub(crate) fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * Self::ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8], segment_size: u64) -> Result<Self, IndexDamage> {
        if !bytes.len().is_multiple_of(Self::ENTRY_LEN) {
            return Err(IndexDamage::PartialEntry);
        }
        let mut index = Self {
            entries: Vec::with_capacity(bytes.len() / Self::ENTRY_LEN),
        };
        for chunk in bytes.chunks_exact(Self::ENTRY_LEN) {
            let relative_offset = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if u64::from(position) >= segment_size {
                return Err(IndexDamage::BeyondSegment);
            }
            if let Some(last) = index.entries.last()
                && (last.relative_offset >= relative_offset || last.position >= position)
            {
                return Err(IndexDamage::NotIncreasing);
            }
            index.entries.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        Ok(index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    const ENTRY_LEN: usize = 12;

    /// Adds an entry if `timestamp` is newer than the last one.
    pub(crate) fn push_if_newer(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|last| last.timestamp < timestamp)
        {
            self.entries.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
    }

    /// The last entry whose timestamp is strictly before `target`. Every record at or before its
    /// offset is older than `target`, so a search for the first record at or after `target` may
    /// start there.
    pub(crate) fn last_before(&self, target: i64) -> Option<TimeEntry> {
        let after = self.entries.partition_point(|e| e.timestamp < target);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub(crate) fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * Self::ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// `offset_limit` is one past the segment's last relative offset.
    pub(crate) fn decode(bytes: &[u8], offset_limit: u64) -> Result<Self, IndexDamage> {
        if !bytes.len().is_multiple_of(Self::ENTRY_LEN) {
            return Err(IndexDamage::PartialEntry);
        }
        let mut index = Self {
            entries: Vec::with_capacity(bytes.len() / Self::ENTRY_LEN),
        };
        for chunk in bytes.chunks_exact(Self::ENTRY_LEN) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let timestamp = i64::from_be_bytes(ts);
            let relative_offset = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if u64::from(relative_offset) >= offset_limit {
                return Err(IndexDamage::BeyondSegment);
            }
            if let Some(last) = index.entries.last()
                && (last.timestamp >= timestamp || last.relative_offset > relative_offset)
            {
                return Err(IndexDamage::NotIncreasing);
            }
            index.entries.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_floor_finds_the_last_entry_at_or_before() {
        let mut index = OffsetIndex::default();
        index.push(0, 0);
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.floor(0).map(|e| e.position), Some(0));
        assert_eq!(index.floor(15).map(|e| e.position), Some(4096));
        assert_eq!(index.floor(20).map(|e| e.position), Some(8192));
        assert_eq!(index.floor(u32::MAX).map(|e| e.position), Some(8192));
    }

    #[test]
    fn offset_index_round_trips_and_rejects_damage() {
        let mut index = OffsetIndex::default();
        index.push(0, 0);
        index.push(7, 5000);
        let bytes = index.encode();
        assert_eq!(OffsetIndex::decode(&bytes, 6000), Ok(index));
        assert_eq!(
            OffsetIndex::decode(&bytes[..5], 6000),
            Err(IndexDamage::PartialEntry)
        );
        assert_eq!(
            OffsetIndex::decode(&bytes, 5000),
            Err(IndexDamage::BeyondSegment)
        );
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert_eq!(
            OffsetIndex::decode(&swapped, 6000),
            Err(IndexDamage::NotIncreasing)
        );
    }

    #[test]
    fn time_index_keeps_only_newer_maxima() {
        let mut index = TimeIndex::default();
        index.push_if_newer(100, 0);
        index.push_if_newer(90, 3);
        index.push_if_newer(200, 5);
        assert_eq!(
            index.last(),
            Some(TimeEntry {
                timestamp: 200,
                relative_offset: 5
            })
        );
        assert_eq!(index.last_before(100), None);
        assert_eq!(index.last_before(150).map(|e| e.relative_offset), Some(0));
        assert_eq!(index.last_before(201).map(|e| e.relative_offset), Some(5));
        let bytes = index.encode();
        assert_eq!(TimeIndex::decode(&bytes, 6), Ok(index.clone()));
        assert_eq!(
            TimeIndex::decode(&bytes, 5),
            Err(IndexDamage::BeyondSegment)
        );
    }
}
