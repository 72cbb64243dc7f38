//! The metadata quorum's durable state on one broker, in `<data-dir>/metadata-quorum/`:
//!
//! - [`LogStore`]: the Raft log (`log`: frames of length, CRC-32C and one JSON entry each, fsynced
//!   before an append counts) and the vote (`vote.json`, replaced atomically and fsynced before it
//!   counts). A torn tail (a crash mid-append) is cut at the last whole frame on open: it was never
//!   acknowledged. Truncation and purging rewrite the file atomically; the metadata log is small
//!   and snapshots bound it.
//! - [`StateMachine`]: applies committed entries to the [`MetadataImage`] and publishes each new
//!   image to readers. Its snapshot (`snapshot.json`) is the image with the log position and
//!   membership it stands for.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{CommandResult, NodeId, TypeConfig};
use crate::cluster::MetadataImage;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Bytes of one log frame's header: length and CRC-32C of the JSON that follows.
const FRAME_HEADER: usize = 8;
/// Largest frame read back; a larger length is a damaged tail.
const MAX_FRAME: usize = 64 << 20;

fn io_error(error: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&error)
}

/// One frame of the log file: an entry, or (first in a rewritten file) the last purged log id.
#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Purged(LogId<NodeId>),
    Entry(Entry<TypeConfig>),
}

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

/// The Raft log and vote of this broker.
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LogStore {
    /// Opens (creating) the log in `dir`, cutting a torn tail.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut bytes = Vec::new();
        if let Ok(mut file) = File::open(&path) {
            file.read_to_end(&mut bytes)?;
        }
        let (frames, good) = read_frames(&bytes).map_err(|reason| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged: {reason}", path.display()),
            )
        })?;
        if good < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = good,
                cut = bytes.len() - good,
                "the metadata log ends in a torn frame (a crash mid-append); cutting it"
            );
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.set_len(good as u64)?;
        file.sync_all()?;
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        for frame in frames {
            match frame {
                Frame::Purged(id) => last_purged = Some(id),
                Frame::Entry(entry) => {
                    entries.split_off(&entry.log_id.index);
                    entries.insert(entry.log_id.index, entry);
                }
            }
        }
        let vote = read_json(&dir.join("vote.json"))?;
        // Only a hint (not fsynced): unreadable after a crash, it is as if absent.
        let committed = read_json(&dir.join("committed.json")).unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring an unreadable committed.json");
            None
        });
        Ok(Self {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    /// Runs `f` on the log off the async threads (it writes and fsyncs).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LogInner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut lock(&inner)))
            .await
            .map_err(io::Error::other)?
    }
}

/// The frames of a log file and where the last whole one ends. Only the tail may be torn (a
/// crash mid-append): a last frame that runs past the end of the file, or whose checksum fails
/// and which ends exactly at the end of the file. Anything else that does not read (a damaged
/// frame with whole frames after it, a checksummed frame that does not decode, a length beyond
/// the largest frame written) is damage to acknowledged entries, and an error: never cut away.
fn read_frames(bytes: &[u8]) -> Result<(Vec<Frame>, usize), String> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + FRAME_HEADER) else {
            break; // a torn header
        };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let end = at + FRAME_HEADER + length;
        if length > MAX_FRAME {
            return Err(format!("frame at byte {at} claims {length} bytes"));
        }
        let Some(body) = bytes.get(at + FRAME_HEADER..end) else {
            break; // a torn body
        };
        if crc32c::crc32c(body) != crc {
            if end == bytes.len() {
                break; // the last frame, torn
            }
            return Err(format!("frame at byte {at} fails its checksum"));
        }
        let frame = serde_json::from_slice::<Frame>(body)
            .map_err(|e| format!("frame at byte {at} does not decode: {e}"))?;
        frames.push(frame);
        at = end;
    }
    Ok((frames, at))
}

fn encode_frame(frame: &Frame, out: &mut Vec<u8>) -> io::Result<()> {
    let body = serde_json::to_vec(frame).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a metadata log entry of {} bytes is larger than {MAX_FRAME}",
            body.len()
        )));
    }
    let length = u32::try_from(body.len()).map_err(io::Error::other)?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decodes one log frame (the fuzz target's entry point): `None` for anything but one whole,
/// checksummed frame.
pub fn decode_log_frame(bytes: &[u8]) -> Option<usize> {
    let (frames, end) = read_frames(bytes).ok()?;
    (!frames.is_empty()).then_some(end)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Replaces `path` with `bytes`: temp file, rename, and with `durable` fsyncs of both file and
/// directory.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    // A name of its own: writers of the same file never share a temp file.
    let temp = path.with_extension(format!("tmp.{}", uuid::Uuid::new_v4().simple()));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    if durable {
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

impl LogInner {
    /// Rewrites the log file with the purge mark and the entries kept.
    fn rewrite(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        if let Some(purged) = self.last_purged {
            encode_frame(&Frame::Purged(purged), &mut bytes)?;
        }
        for entry in self.entries.values() {
            encode_frame(&Frame::Entry(entry.clone()), &mut bytes)?;
        }
        let path = self.dir.join("log");
        replace_file(&path, &bytes, true)?;
        self.file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let inner = lock(&self.inner);
        Ok(inner
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = lock(&self.inner);
        let last = inner
            .entries
            .last_key_value()
            .map(|(_, entry)| entry.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let vote = *vote;
        self.blocking(move |inner| {
            let bytes = serde_json::to_vec(&vote).map_err(io::Error::other)?;
            replace_file(&inner.dir.join("vote.json"), &bytes, true)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(io_error(e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Not fsynced: a lost committed id only means entries are re-applied after a leader is
        // known again.
        self.blocking(move |inner| {
            let bytes = serde_json::to_vec(&committed).map_err(io::Error::other)?;
            replace_file(&inner.dir.join("committed.json"), &bytes, false)?;
            inner.committed = committed;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write(io_error(e)).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let written = self
            .blocking(move |inner| {
                let mut bytes = Vec::new();
                for entry in &entries {
                    encode_frame(&Frame::Entry(entry.clone()), &mut bytes)?;
                }
                inner.file.write_all(&bytes)?;
                inner.file.sync_data()?;
                for entry in entries {
                    inner.entries.insert(entry.log_id.index, entry);
                }
                Ok(())
            })
            .await;
        let result = written
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(result);
        written.map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.blocking(move |inner| {
            inner.entries.split_off(&log_id.index);
            inner.rewrite()
        })
        .await
        .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.blocking(move |inner| {
            inner.entries = inner.entries.split_off(&(log_id.index + 1));
            inner.last_purged = Some(log_id);
            inner.rewrite()
        })
        .await
        .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }
}

/// What the state machine publishes: the newest image, and the index of the last entry applied
/// (what a writer waits on to see its change).
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) image: ArcSwap<MetadataImage>,
    pub(crate) applied: watch::Sender<u64>,
}

/// The snapshot file and the bytes a leader sends a follower that fell behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: MetadataImage,
}

#[derive(Debug)]
struct MachineState {
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// Turns committed entries into metadata images.
#[derive(Debug, Clone)]
pub(crate) struct StateMachine {
    dir: PathBuf,
    state: Arc<Mutex<MachineState>>,
    published: Arc<Published>,
    /// The position of the snapshot on disk. openraft builds snapshots in a task of their own,
    /// concurrently with installing one a leader sent: writes are serialized here, and an older
    /// snapshot never replaces a newer one.
    written: Arc<Mutex<Option<LogId<NodeId>>>>,
}

impl StateMachine {
    /// Opens the state machine in `dir`: from its snapshot if it has one, otherwise from `seed`
    /// (the image a single-node release left, upgraded), otherwise empty.
    pub(crate) fn open(dir: &Path, seed: Option<MetadataImage>) -> io::Result<Self> {
        let snapshot: Option<SnapshotFile> = read_json(&dir.join("snapshot.json"))?;
        let state = match snapshot {
            Some(snapshot) => MachineState {
                image: snapshot.image,
                last_applied: snapshot.meta.last_log_id,
                membership: snapshot.meta.last_membership,
            },
            None => MachineState {
                image: seed.unwrap_or_else(|| MetadataImage::new(String::new())),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        let published = Arc::new(Published {
            image: ArcSwap::from_pointee(state.image.clone()),
            applied: watch::Sender::new(state.last_applied.map_or(0, |id| id.index)),
        });
        let written = state
            .last_applied
            .filter(|_| dir.join("snapshot.json").exists());
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
            published,
            written: Arc::new(Mutex::new(written)),
        })
    }

    pub(crate) fn published(&self) -> Arc<Published> {
        Arc::clone(&self.published)
    }

    /// Whether a snapshot has been written (after which a seed file is no longer needed).
    pub(crate) fn has_snapshot(&self) -> bool {
        self.dir.join("snapshot.json").exists()
    }

    /// Publishes the applied position, and the image if it `changed`.
    fn publish(&self, state: &MachineState, changed: bool) {
        if changed {
            self.published.image.store(Arc::new(state.image.clone()));
        }
        let index = state.last_applied.map_or(0, |id| id.index);
        self.published.applied.send_replace(index);
    }

    /// Writes `bytes` as the snapshot at `last`, unless a newer one is on disk already.
    async fn write_snapshot(
        &self,
        bytes: Vec<u8>,
        last: Option<LogId<NodeId>>,
    ) -> StorageResult<()> {
        let path = self.dir.join("snapshot.json");
        let written = Arc::clone(&self.written);
        tokio::task::spawn_blocking(move || {
            let mut written = lock(&written);
            if *written > last {
                return Ok(());
            }
            replace_file(&path, &bytes, true)?;
            *written = last;
            Ok(())
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r: io::Result<()>| r)
        .map_err(|e| StorageIOError::write_snapshot(None, io_error(e)).into())
    }

    fn snapshot_of(state: &MachineState) -> SnapshotFile {
        let last = state.last_applied;
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: state.membership.clone(),
                snapshot_id: last.map_or_else(|| "empty".to_owned(), |id| id.to_string()),
            },
            image: state.image.clone(),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let file = Self::snapshot_of(&lock(&self.state));
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| StorageIOError::write_snapshot(None, io_error(e)))?;
        self.write_snapshot(bytes.clone(), file.meta.last_log_id)
            .await?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = lock(&self.state);
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = lock(&self.state);
        let mut results = Vec::new();
        let mut changed = false;
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::default(),
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResult::default()
                }
                EntryPayload::Normal(command) => {
                    let mut next = state.image.clone();
                    let error = command.apply(&mut next).err();
                    if error.is_none() {
                        state.image = next;
                        changed = true;
                    }
                    CommandResult {
                        error,
                        next_producer_id: state.image.next_producer_id,
                    }
                }
            };
            results.push(result);
        }
        self.publish(&state, changed);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, io_error(e)))?;
        self.write_snapshot(bytes, meta.last_log_id).await?;
        let mut state = lock(&self.state);
        *state = MachineState {
            image: file.image,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.publish(&state, true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let path = self.dir.join("snapshot.json");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StorageIOError::read_snapshot(None, io_error(error)).into()),
        };
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, io_error(e)))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
