//! The partition checkpoint file: the recovery point (everything below it was fsynced, so
//! recovery need not re-validate it) and the log start offset (which `DeleteRecords` can move
//! into the middle of a segment). Written to a temp file, fsynced, renamed over the old one and
//! the directory fsynced, so a crash leaves either the old or the new checkpoint, never a mix.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Write};
use std::path::Path;

pub(crate) const FILE_NAME: &str = "partition.checkpoint";
const TEMP_NAME: &str = "partition.checkpoint.tmp";
const HEADER: &str = "fjord-partition-checkpoint v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) recovery_point: i64,
    pub(crate) log_start_offset: i64,
}

/// Why a checkpoint file was not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    #[error("reading the checkpoint")]
    Io(#[from] io::Error),
    #[error("the checkpoint file is malformed")]
    Malformed,
}

impl Checkpoint {
    fn encode(&self) -> String {
        format!(
            "{HEADER}\nrecovery_point {}\nlog_start_offset {}\n",
            self.recovery_point, self.log_start_offset
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut field = |name: &str| -> Option<i64> {
            let (key, value) = lines.next()?.split_once(' ')?;
            (key == name)
                .then(|| value.parse().ok())
                .flatten()
                .filter(|v| *v >= 0)
        };
        let recovery_point = field("recovery_point")?;
        let log_start_offset = field("log_start_offset")?;
        Some(Self {
            recovery_point,
            log_start_offset,
        })
    }

    /// `Ok(None)` when the partition has no checkpoint yet.
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>, CheckpointError> {
        match fs::read_to_string(dir.join(FILE_NAME)) {
            Ok(text) => Self::decode(&text)
                .map(Some)
                .ok_or(CheckpointError::Malformed),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        write_atomically(dir, FILE_NAME, TEMP_NAME, self.encode().as_bytes())
    }
}

/// Replaces `dir/name` with `contents` so that a crash leaves the old file or the new one, never
/// a mix: written to `dir/temp`, fsynced, renamed over `name`, the directory fsynced.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    temp: &str,
    contents: &[u8],
) -> io::Result<()> {
    let temp = dir.join(temp);
    let mut file = File::create(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes creations, renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
        let checkpoint = Checkpoint {
            recovery_point: 1234,
            log_start_offset: 17,
        };
        checkpoint.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), Some(checkpoint));
        assert!(!dir.path().join(TEMP_NAME).exists());
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "",
            "garbage",
            "fjord-partition-checkpoint v1\nrecovery_point x\n",
        ] {
            fs::write(dir.path().join(FILE_NAME), text).unwrap();
            assert!(matches!(
                Checkpoint::read(dir.path()),
                Err(CheckpointError::Malformed)
            ));
        }
    }
}
