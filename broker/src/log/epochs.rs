//! The leader epoch cache: for each leader epoch whose records the log holds, the offset of the
//! first of them (Kafka's leader-epoch-checkpoint, KIP-101). A follower that meets a new leader
//! asks it for the end of its own last epoch ([`LeaderEpochs::end_offset_for`], Kafka's
//! OffsetsForLeaderEpoch) and truncates there, never to its own high watermark; consumers ask the
//! same to detect truncation (KIP-320).
//!
//! Entries rise in both epoch and start offset. The log assigns an epoch when a batch of a newer
//! epoch is appended, drops entries at or past a truncation point, and moves the first entry
//! forward when the log start moves. The file `leader-epoch.checkpoint` is rewritten (temp file,
//! fsync, rename, directory fsync) whenever the cache changes, which happens once per leader
//! change, not per append. A missing file is rebuilt from the batch headers at open; entries past
//! the recovered log end are dropped then, so the file may run ahead of the data safely.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::Path;

use super::checkpoint::write_atomically;

pub(crate) const FILE_NAME: &str = "leader-epoch.checkpoint";
const TEMP_NAME: &str = "leader-epoch.checkpoint.tmp";
const HEADER: &str = "fjord-leader-epochs v1";

/// Kafka's answer for an epoch it cannot place: epoch and offset -1.
pub const UNDEFINED_EPOCH_OFFSET: (i32, i64) = (-1, -1);

/// One leader epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The cache of one partition (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochs {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch the log holds records of.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Notes that records of `epoch` start at `start_offset`, if `epoch` is newer than every
    /// epoch held (an older or equal one changes nothing: its start is known). Returns whether
    /// the cache changed. A negative epoch (a batch from before leader epochs) is ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        // A newer epoch cannot start before the one it follows; an entry that would is a
        // leftover of a truncation not yet applied, and goes.
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops the epochs that start at or past `end_offset` (the log was cut there). Returns
    /// whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The log now starts at `start_offset`: epochs that end before it go, and the one holding
    /// it starts there. Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let holding = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if holding == 0 {
            return false;
        }
        let changed = holding > 1 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..holding - 1);
        self.entries[0].start_offset = start_offset;
        changed
    }

    /// Kafka's OffsetsForLeaderEpoch for `requested` on a log ending at `log_end_offset`: the
    /// largest epoch at most `requested` that the log holds, and the offset where the next epoch
    /// begins (the log end for the latest epoch). An epoch older than every epoch held answers
    /// itself with the first epoch's start; one newer than the latest, or -1, is [`UNDEFINED_EPOCH_OFFSET`].
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested < 0 {
            return UNDEFINED_EPOCH_OFFSET;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return UNDEFINED_EPOCH_OFFSET;
        };
        match higher.checked_sub(1).map(|floor| self.entries[floor]) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested, next.start_offset),
        }
    }

    fn encode(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }

    fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut cache = Self::default();
        for line in lines {
            let (epoch, start) = line.split_once(' ')?;
            let entry = EpochEntry {
                epoch: epoch.parse().ok().filter(|e: &i32| *e >= 0)?,
                start_offset: start.parse().ok().filter(|s: &i64| *s >= 0)?,
            };
            let rises = cache.entries.last().is_none_or(|last| {
                last.epoch < entry.epoch && last.start_offset < entry.start_offset
            });
            if !rises {
                return None;
            }
            cache.entries.push(entry);
        }
        Some(cache)
    }

    /// The cache in `dir`; `Ok(None)` when there is no file or it is malformed (the log rebuilds
    /// it from its batches then).
    pub(crate) fn read(dir: &Path) -> io::Result<Option<Self>> {
        match fs::read_to_string(dir.join(FILE_NAME)) {
            Ok(text) => {
                let cache = Self::decode(&text);
                if cache.is_none() {
                    tracing::warn!(dir = %dir.display(), "malformed leader epoch checkpoint; rebuilding it");
                }
                Ok(cache)
            }
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        write_atomically(dir, FILE_NAME, TEMP_NAME, self.encode().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut cache = LeaderEpochs::default();
        for &(epoch, start) in entries {
            assert!(cache.assign(epoch, start));
        }
        cache
    }

    #[test]
    fn epochs_are_assigned_once_and_only_rise() {
        let mut epochs = cache(&[(0, 0), (2, 10)]);
        assert!(!epochs.assign(2, 15), "known epoch");
        assert!(!epochs.assign(1, 20), "older epoch");
        assert!(!epochs.assign(-1, 20), "no epoch");
        assert!(epochs.assign(5, 30));
        assert_eq!(epochs.latest_epoch(), Some(5));
        // A newer epoch starting where a dropped one began replaces it.
        let mut stale = cache(&[(0, 0), (3, 10)]);
        assert!(stale.assign(4, 10));
        assert_eq!(
            stale.entries(),
            [
                EpochEntry {
                    epoch: 0,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 4,
                    start_offset: 10
                }
            ]
        );
    }

    /// Kafka's answers (`LeaderEpochFileCache.endOffsetFor`).
    #[test]
    fn end_offsets_follow_kafka() {
        let epochs = cache(&[(1, 0), (3, 100), (6, 250)]);
        let log_end = 300;
        for (requested, expected) in [
            (6, (6, 300)), // the latest epoch ends at the log end
            (3, (3, 250)), // an older one where the next begins
            (4, (3, 250)), // an epoch the log never held: the one before it, and the next start
            (5, (3, 250)),
            (1, (1, 100)),
            (0, (0, 0)), // older than every epoch: itself, ending at the first start
            (7, UNDEFINED_EPOCH_OFFSET), // newer than the latest
            (-1, UNDEFINED_EPOCH_OFFSET),
        ] {
            assert_eq!(
                epochs.end_offset_for(requested, log_end),
                expected,
                "{requested}"
            );
        }
        assert_eq!(
            LeaderEpochs::default().end_offset_for(0, 5),
            UNDEFINED_EPOCH_OFFSET
        );
    }

    #[test]
    fn truncation_drops_epochs_from_either_end() {
        let mut epochs = cache(&[(1, 0), (3, 100), (6, 250)]);
        assert!(!epochs.truncate_from_end(260));
        assert!(epochs.truncate_from_end(250));
        assert_eq!(epochs.latest_epoch(), Some(3));
        assert!(epochs.truncate_from_start(120));
        assert_eq!(
            epochs.entries(),
            [EpochEntry {
                epoch: 3,
                start_offset: 120
            }]
        );
        assert!(!epochs.truncate_from_start(120));
        assert!(!epochs.truncate_from_start(50), "before the first epoch");
        assert_eq!(epochs.end_offset_for(3, 130), (3, 130));
    }

    #[test]
    fn round_trips_through_the_file_and_refuses_what_does_not_rise() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochs::read(dir.path()).unwrap(), None);
        let epochs = cache(&[(0, 0), (4, 77)]);
        epochs.write(dir.path()).unwrap();
        assert_eq!(LeaderEpochs::read(dir.path()).unwrap(), Some(epochs));
        assert!(!dir.path().join(TEMP_NAME).exists());
        for text in [
            "",
            "garbage",
            "fjord-leader-epochs v1\n3 10\n2 20\n",
            "fjord-leader-epochs v1\n3 10\n4 10\n",
            "fjord-leader-epochs v1\n-1 0\n",
            "fjord-leader-epochs v1\n1\n",
        ] {
            fs::write(dir.path().join(FILE_NAME), text).unwrap();
            assert_eq!(LeaderEpochs::read(dir.path()).unwrap(), None, "{text:?}");
        }
    }
}
