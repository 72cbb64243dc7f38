//! One actor per hosted partition owns its [`Log`]. Produce requests reach it through a
//! [`PartitionHandle`]; it appends everything queued in one blocking step and, under the
//! durable flush policy, fsyncs once for all of them (group commit) before answering. The high
//! watermark (what consumers may read) is published on a `watch` channel so fetch long-polls
//! wait without polling. Reads go straight to the log's [`LogReader`], never through the actor.
//!
//! On timers the actor also runs retention and, for compacted topics, the log cleaner: every
//! `log.cleaner.backoff.ms` it checks the dirty ratio and, when due, plans a pass on the log,
//! runs the rewrite on a blocking thread while it keeps serving appends, then swaps the result in
//! (see `log::compaction`).

pub mod producer_state;
pub mod registry;
pub mod state;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use crate::log::{
    self, AppendInfo, CleanedSegments, CompactionOutcome, FlushPolicy, Log, LogConfig, LogReader,
};
use crate::metrics::CompactionCounters;
use crate::record::BatchHeader;
use crate::record::batch::split_batches;
use producer_state::{Check, ProducerState};
use state::{Command as ReplicaCommand, Event as ReplicaEvent, ReplicaState};

/// The most appends handled in one step (one fsync).
const MAX_APPENDS_PER_STEP: usize = 256;
/// How often retention runs.
const RETENTION_CHECK: Duration = Duration::from_secs(60);

/// Why the partition did not append.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Log(#[from] log::Error),
    #[error("the partition is shutting down")]
    Closed,
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("out of order sequence number: expected {expected}, got {found}")]
    OutOfOrderSequence { expected: i32, found: i32 },
    #[error("producer epoch {found} is older than the current epoch {current}")]
    InvalidProducerEpoch { current: i16, found: i16 },
    #[error("producer id unknown to this partition and its sequence does not start at 0")]
    UnknownProducerId,
    #[error(
        "an idempotent produce must carry exactly one record batch per partition, not {batches}"
    )]
    IdempotentBatchCount { batches: usize },
}

/// Why a follower did not take what its leader sent.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error(transparent)]
    Log(#[from] log::Error),
    #[error("the partition is shutting down")]
    Closed,
    #[error("this broker leads the partition: it takes no records from another")]
    Leader,
}

/// Why records were not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsError {
    #[error("offset {offset} is beyond the high watermark {high_watermark}")]
    OffsetOutOfRange { offset: i64, high_watermark: i64 },
    #[error("records of a topic with cleanup.policy=compact cannot be deleted")]
    CompactedTopic,
    #[error(transparent)]
    Log(#[from] log::Error),
    #[error("the partition is shutting down")]
    Closed,
}

/// Why a requested compaction pass did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Log(#[from] log::Error),
    /// A pass several callers waited for failed; the first of them got its error.
    #[error("the compaction pass failed (see the broker log)")]
    PassFailed,
    #[error("the compaction pass panicked")]
    Panicked,
    #[error("the partition is shutting down")]
    Closed,
}

/// How the partition runs its log cleaner.
#[derive(Debug, Clone)]
pub struct CleanerSettings {
    /// How often the dirty ratio is checked (`log.cleaner.backoff.ms`).
    pub backoff: Duration,
    /// The topic's compaction counters.
    pub counters: CompactionCounters,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        Self {
            backoff: Duration::from_secs(15),
            counters: CompactionCounters::default(),
        }
    }
}

const PRODUCER_SNAPSHOT: &str = "producer-state.json";

/// The producer state as of a log offset, saved beside the log so a restart need not replay the
/// whole log.
#[derive(Debug, Serialize, Deserialize)]
struct ProducerSnapshot {
    log_end_offset: i64,
    producers: ProducerState,
}

/// Loads the snapshot if it is usable and replays the batches after it.
fn load_producer_state(dir: &Path, log: &Log) -> Result<ProducerState, log::Error> {
    let reader = log.reader();
    let offsets = reader.offsets();
    let snapshot = std::fs::read(dir.join(PRODUCER_SNAPSHOT))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ProducerSnapshot>(&bytes).ok())
        .filter(|s| {
            s.log_end_offset <= offsets.log_end_offset()
                && s.log_end_offset >= offsets.log_start_offset()
        });
    let (mut producers, mut offset) = match snapshot {
        Some(snapshot) => (snapshot.producers, snapshot.log_end_offset),
        None => (ProducerState::default(), offsets.log_start_offset()),
    };
    while offset < offsets.log_end_offset() {
        let read = reader.read(offset, 1 << 20)?;
        if read.records.is_empty() {
            break;
        }
        for (header, _) in split_batches(&read.records).filter_map(Result::ok) {
            producers.record(&header);
        }
        offset = read.next_offset;
    }
    Ok(producers)
}

fn save_producer_state(log: &Log, producers: &ProducerState) -> std::io::Result<()> {
    let snapshot = ProducerSnapshot {
        log_end_offset: log.log_end_offset(),
        producers: producers.clone(),
    };
    let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
    let temp = log.dir().join("producer-state.json.tmp");
    let mut file = std::fs::File::create(&temp)?;
    std::io::Write::write_all(&mut file, &bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, log.dir().join(PRODUCER_SNAPSHOT))
}

/// Checks an idempotent batch, appends it, records it. Non-idempotent appends pass straight
/// through.
fn append_checked(
    log: &mut Log,
    producers: &mut ProducerState,
    records: &mut [u8],
    leader_epoch: i32,
) -> Result<AppendInfo, AppendError> {
    let header = match BatchHeader::parse(records) {
        Ok(header) if header.producer_id >= 0 => header,
        // Not idempotent, or malformed: the log validates and answers.
        _ => return Ok(log.append(records, leader_epoch)?),
    };
    let batches = split_batches(records).count();
    if batches != 1 {
        return Err(AppendError::IdempotentBatchCount { batches });
    }
    match producers.check(&header) {
        Check::Append => {
            let info = log.append(records, leader_epoch)?;
            producers.record(&BatchHeader {
                base_offset: info.base_offset,
                ..header
            });
            Ok(info)
        }
        Check::Duplicate {
            base_offset,
            last_offset,
        } => Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: None,
            log_start_offset: log.offsets().log_start_offset(),
        }),
        Check::OutOfOrderSequence { expected, found } => {
            Err(AppendError::OutOfOrderSequence { expected, found })
        }
        Check::InvalidEpoch { current, found } => {
            Err(AppendError::InvalidProducerEpoch { current, found })
        }
        Check::UnknownProducer => Err(AppendError::UnknownProducerId),
    }
}

enum Command {
    Append {
        records: Vec<u8>,
        reply: oneshot::Sender<Result<AppendInfo, AppendError>>,
    },
    DeleteRecords {
        offset: i64,
        reply: oneshot::Sender<Result<i64, DeleteRecordsError>>,
    },
    SetConfig {
        config: LogConfig,
        reply: oneshot::Sender<()>,
    },
    CompactNow {
        reply: CompactReply,
    },
    /// The in-sync followers that have not caught up within `max_lag_ms`.
    Lagging {
        max_lag_ms: u64,
        reply: oneshot::Sender<Vec<i32>>,
    },
    /// A follower's append of batches as its leader stored them.
    AppendReplicated {
        records: bytes::Bytes,
        reply: oneshot::Sender<Result<i64, ReplicateError>>,
    },
    /// A follower cuts its log back to end at `offset`.
    TruncateTo {
        offset: i64,
        reply: oneshot::Sender<Result<i64, ReplicateError>>,
    },
    /// A change of the replica's role or ISR (from the committed metadata) or a follower's
    /// report; answered once the replica state has taken it.
    Replica {
        event: ReplicaEvent,
        reply: oneshot::Sender<()>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Cloneable handle to a partition actor.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    commands: mpsc::Sender<Command>,
    reader: LogReader,
    high_watermark: watch::Receiver<i64>,
    /// How far the leader's appends are visible (durable under the flush policy).
    appended: watch::Receiver<i64>,
    /// The leader epoch while this replica leads, `None` while it follows.
    leading: watch::Receiver<Option<i32>>,
    flusher: log::Flusher,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Append { .. } => "Append",
            Self::DeleteRecords { .. } => "DeleteRecords",
            Self::SetConfig { .. } => "SetConfig",
            Self::CompactNow { .. } => "CompactNow",
            Self::Lagging { .. } => "Lagging",
            Self::AppendReplicated { .. } => "AppendReplicated",
            Self::TruncateTo { .. } => "TruncateTo",
            Self::Replica { .. } => "Replica",
            Self::Close { .. } => "Close",
        })
    }
}

/// The epoch `replica` leads in, if it leads.
fn leading_epoch(replica: &ReplicaState) -> Option<i32> {
    replica.is_leader().then(|| replica.leader_epoch())
}

/// Milliseconds on a clock that only goes forward, shared by the process: the time replica events
/// carry.
pub fn monotonic_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = BASE.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// A receiver whose `changed()` waits for the next change: a clone of the handle's own receiver
/// would count every change since the partition opened as unseen.
fn unchanged(receiver: &watch::Receiver<i64>) -> watch::Receiver<i64> {
    let mut receiver = receiver.clone();
    receiver.mark_unchanged();
    receiver
}

/// An append in a partition's queue, from [`PartitionHandle::queue_append`].
#[derive(Debug)]
pub struct Appending(Option<oneshot::Receiver<Result<AppendInfo, AppendError>>>);

impl Appending {
    /// The append's outcome, once it is acknowledged under the topic's flush policy.
    pub async fn acknowledged(self) -> Result<AppendInfo, AppendError> {
        match self.0 {
            Some(reply) => reply.await.map_err(|_| AppendError::Closed)?,
            None => Err(AppendError::Closed),
        }
    }
}

impl PartitionHandle {
    /// Opens (recovering if needed) the log in `dir` and starts its actor on the runtime, as the
    /// replica of broker `node_id` in the role `role` ([`ReplicaEvent::BecameLeader`] or
    /// [`ReplicaEvent::BecameFollower`]).
    pub async fn open(
        dir: std::path::PathBuf,
        config: LogConfig,
        clock: Arc<dyn log::Clock>,
        node_id: i32,
        min_insync: usize,
        role: ReplicaEvent,
        cleaner: CleanerSettings,
    ) -> Result<Self, log::Error> {
        let leading = match &role {
            ReplicaEvent::BecameLeader { leader_epoch, .. } => Some(*leader_epoch),
            _ => None,
        };
        let (log, producers) = tokio::task::spawn_blocking(move || {
            let mut log = Log::open(&dir, config, clock)?;
            if let Some(epoch) = leading {
                log.begin_leader_epoch(epoch)?;
            }
            let producers = load_producer_state(&dir, &log)?;
            Ok::<_, log::Error>((log, producers))
        })
        .await
        .map_err(|join| log::Error::Io {
            op: log::IoOp::OpenSegment,
            path: Default::default(),
            source: std::io::Error::other(join),
        })??;
        let reader = log.reader();
        let flusher = log.flusher();
        // What the log recovered is on disk. A follower's high watermark comes from its leader:
        // until the first answer none of what it holds counts as committed (its tail may never
        // have been), so a consumer reading from it (KIP-392) sees nothing that could vanish.
        let recovered = log.log_end_offset();
        let committed = if leading.is_some() {
            recovered
        } else {
            reader.offsets().log_start_offset()
        };
        let (hw_tx, high_watermark) = watch::channel(committed);
        let (appended_tx, appended) = watch::channel(recovered);
        let mut replica = ReplicaState::new(node_id, recovered, committed);
        replica.handle(ReplicaEvent::MinInsync {
            replicas: min_insync,
        });
        replica.handle(role);
        let (role_tx, leading) = watch::channel(leading_epoch(&replica));
        let (commands, rx) = mpsc::channel(1024);
        tokio::spawn(
            PartitionActor {
                owned: Some(Owned { log, producers }),
                rx,
                high_watermark: hw_tx,
                appended: appended_tx,
                leading: role_tx,
                replica,
                cleaner: Cleaner {
                    settings: cleaner,
                    running: None,
                    waiting_next: Vec::new(),
                },
            }
            .run(),
        );
        Ok(Self {
            commands,
            reader,
            high_watermark,
            appended,
            leading,
            flusher,
        })
    }

    /// The offset below which every record is on disk (fsynced).
    pub fn durable_offset(&self) -> i64 {
        self.flusher.durable_offset()
    }

    /// Appends record batches; returns once they are acknowledged under the topic's flush
    /// policy (fsynced, by default).
    pub async fn append(&self, records: Vec<u8>) -> Result<AppendInfo, AppendError> {
        self.queue_append(records).await.acknowledged().await
    }

    /// Puts record batches in the partition's append queue and returns as soon as they hold
    /// their place in it: appends queued one after the other by one task are appended in that
    /// order. [`Appending::acknowledged`] waits for the outcome.
    pub async fn queue_append(&self, records: Vec<u8>) -> Appending {
        let (reply, rx) = oneshot::channel();
        match self.commands.send(Command::Append { records, reply }).await {
            Ok(()) => Appending(Some(rx)),
            Err(_) => Appending(None),
        }
    }

    /// Moves the log start offset to `offset` (-1: the high watermark), as DeleteRecords does;
    /// returns the new log start offset (the partition's low watermark).
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, DeleteRecordsError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::DeleteRecords { offset, reply })
            .await
            .map_err(|_| DeleteRecordsError::Closed)?;
        rx.await.map_err(|_| DeleteRecordsError::Closed)?
    }

    /// On a leader, the in-sync followers that have not been caught up with it for more than
    /// `max_lag_ms` (`replica.lag.time.max.ms`): those the ISR should drop. Empty on a follower.
    pub async fn lagging_replicas(&self, max_lag_ms: u64) -> Vec<i32> {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Lagging { max_lag_ms, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// A follower's append of batches exactly as its leader stored them, at the leader's offsets
    /// (the first must start at this log's end). Returns the offset this replica now holds
    /// durably (under the topic's flush policy), which it reports to the leader.
    pub async fn append_replicated(&self, records: bytes::Bytes) -> Result<i64, ReplicateError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::AppendReplicated { records, reply })
            .await
            .map_err(|_| ReplicateError::Closed)?;
        rx.await.map_err(|_| ReplicateError::Closed)?
    }

    /// A follower cuts its log back to end at `offset` (where its leader's copy of its last epoch
    /// ends); returns the new log end.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, ReplicateError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::TruncateTo { offset, reply })
            .await
            .map_err(|_| ReplicateError::Closed)?;
        rx.await.map_err(|_| ReplicateError::Closed)?
    }

    /// Tells the replica of a change of its role or ISR in the committed metadata, or of what a
    /// follower holds; returns once the replica state has taken it (a high watermark it moved is
    /// published by then).
    pub async fn replica_event(&self, event: ReplicaEvent) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Replica { event, reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Applies changed topic configs to the log (from its next append or retention pass).
    pub async fn set_config(&self, config: LogConfig) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::SetConfig { config, reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Runs a compaction pass now, whatever the dirty ratio, and returns what it did: one that
    /// starts after this call (a pass already running is let finish first). An empty outcome
    /// when the topic does not compact or nothing is cleanable yet (only sealed, durable
    /// segments are).
    pub async fn compact_now(&self) -> Result<CompactionOutcome, CompactError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::CompactNow { reply })
            .await
            .map_err(|_| CompactError::Closed)?;
        rx.await.map_err(|_| CompactError::Closed)?
    }

    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Offsets below this are readable by consumers.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that changes when the high watermark moves.
    /// The leader epoch while this replica leads, `None` while it follows: an `acks=all` answer
    /// checks that its partition is still led in the epoch it was appended in.
    pub fn leading_epoch(&self) -> Option<i32> {
        *self.leading.borrow()
    }

    /// Changes when appends on the leader become visible (to followers fetching from it).
    pub fn watch_appended(&self) -> watch::Receiver<i64> {
        unchanged(&self.appended)
    }

    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        unchanged(&self.high_watermark)
    }

    /// Flushes and closes the log (clean shutdown: the next start recovers nothing).
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What the actor owns and hands to blocking steps.
struct Owned {
    log: Log,
    producers: ProducerState,
}

type CompactReply = oneshot::Sender<Result<CompactionOutcome, CompactError>>;

/// A compaction pass whose rewrite runs on a blocking thread.
struct RunningPass {
    task: JoinHandle<Result<CleanedSegments, log::Error>>,
    cancel: Arc<AtomicBool>,
    /// `compact_now` callers this pass answers.
    waiting: Vec<CompactReply>,
}

struct Cleaner {
    settings: CleanerSettings,
    running: Option<RunningPass>,
    /// `compact_now` callers that came while a pass was running: the next pass answers them.
    waiting_next: Vec<CompactReply>,
}

/// Waits for the running pass's rewrite; never ready when none runs.
async fn rewrite_done(
    running: &mut Option<RunningPass>,
) -> Result<Result<CleanedSegments, log::Error>, JoinError> {
    match running {
        Some(pass) => (&mut pass.task).await,
        None => std::future::pending().await,
    }
}

struct PartitionActor {
    /// `None` only while a blocking step holds it.
    owned: Option<Owned>,
    rx: mpsc::Receiver<Command>,
    high_watermark: watch::Sender<i64>,
    appended: watch::Sender<i64>,
    leading: watch::Sender<Option<i32>>,
    replica: ReplicaState,
    cleaner: Cleaner,
}

impl PartitionActor {
    /// Runs until closed. It does not watch the broker's shutdown token: on shutdown the
    /// connections finish their in-flight produce requests first, then the broker closes
    /// every partition.
    async fn run(mut self) {
        let mut interval = self.flush_interval();
        let mut flush_timer = tokio::time::interval(interval);
        // The first retention pass comes one period after start, as Kafka delays its first
        // cleanup: records produced right after a topic appears are not judged at once.
        let mut retention_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + RETENTION_CHECK,
            RETENTION_CHECK,
        );
        let backoff = self.cleaner.settings.backoff.max(Duration::from_millis(1));
        let mut cleaner_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + backoff, backoff);
        cleaner_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut interval_flush: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                biased;
                // Before commands: under a steady stream of appends the command branch is always
                // ready, and a finished rewrite must still be swapped in (briefly) and the next
                // pass started.
                joined = rewrite_done(&mut self.cleaner.running) => {
                    self.finish_compaction(joined).await;
                }
                _ = cleaner_timer.tick() => self.start_compaction(false),
                command = self.rx.recv() => match command {
                    None => break,
                    Some(command) => {
                        if self.handle(command).await.is_break() {
                            return;
                        }
                        if self.flush_interval() != interval {
                            interval = self.flush_interval();
                            flush_timer = tokio::time::interval(interval);
                        }
                    }
                },
                _ = flush_timer.tick() => self.start_interval_flush(&mut interval_flush),
                _ = retention_timer.tick() => {
                    self.blocking(|owned| {
                        let log = &mut owned.log;
                        if let Err(error) = log.enforce_retention() {
                            tracing::warn!(dir = %log.dir().display(), %error, "retention failed");
                        }
                        // Checkpoint what is durable, and the producer state to go with it.
                        let saved = log.flush().and_then(|()| log.checkpoint());
                        let saved = saved.map_err(|e| e.to_string())
                            .and_then(|()| save_producer_state(log, &owned.producers).map_err(|e| e.to_string()));
                        if let Err(error) = saved {
                            tracing::warn!(dir = %log.dir().display(), error, "periodic checkpoint failed");
                        }
                    }).await;
                }
            }
        }
        self.close().await;
    }

    /// The `flush.ms` fsync: on a blocking thread through the log's flusher, so appends go on
    /// while a whole interval's worth of data reaches the disk (the flusher lets appends and an
    /// fsync run at once). A tick while the previous fsync still runs is skipped.
    fn start_interval_flush(&self, running: &mut Option<tokio::task::JoinHandle<()>>) {
        if running.as_ref().is_some_and(|flush| !flush.is_finished()) {
            return;
        }
        let Some(owned) = self.owned.as_ref() else {
            return;
        };
        let flusher = owned.log.flusher();
        let upto = owned.log.log_end_offset();
        let dir = owned.log.dir().to_path_buf();
        *running = Some(tokio::task::spawn_blocking(move || {
            if let Err(error) = flusher.flush_to(upto) {
                tracing::error!(dir = %dir.display(), %error, "interval flush failed");
            }
        }));
    }

    /// Starts a compaction pass if none runs and one is due (`forced`: whatever the dirty
    /// ratio). The plan is taken here, on the owner; the rewrite goes to a blocking thread.
    fn start_compaction(&mut self, forced: bool) {
        if self.cleaner.running.is_some() {
            return;
        }
        let Some(owned) = self.owned.as_ref() else {
            return;
        };
        let log = &owned.log;
        let plan = if forced || log.compaction_due() {
            log.plan_compaction()
        } else {
            None
        };
        let waiting = std::mem::take(&mut self.cleaner.waiting_next);
        let Some(plan) = plan else {
            for reply in waiting {
                let _ = reply.send(Ok(CompactionOutcome::default()));
            }
            return;
        };
        tracing::debug!(dir = %log.dir().display(), end_offset = plan.end_offset(), "compaction pass starting");
        let cancel = Arc::new(AtomicBool::new(false));
        let task = tokio::task::spawn_blocking({
            let cancel = Arc::clone(&cancel);
            move || plan.run(&cancel)
        });
        self.cleaner.running = Some(RunningPass {
            task,
            cancel,
            waiting,
        });
    }

    /// Swaps a finished rewrite in (a short blocking step), answers its callers, and starts the
    /// next pass if callers are waiting for one.
    async fn finish_compaction(
        &mut self,
        joined: Result<Result<CleanedSegments, log::Error>, JoinError>,
    ) {
        let Some(pass) = self.cleaner.running.take() else {
            return;
        };
        let result = match joined {
            Ok(Ok(cleaned)) => match self
                .blocking(move |owned| owned.log.finish_compaction(cleaned))
                .await
            {
                Some(swapped) => swapped.map_err(CompactError::Log),
                None => Err(CompactError::Panicked),
            },
            Ok(Err(error)) => Err(CompactError::Log(error)),
            Err(_) => Err(CompactError::Panicked),
        };
        let dir = self
            .owned
            .as_ref()
            .map(|o| o.log.dir().display().to_string())
            .unwrap_or_default();
        match &result {
            Ok(outcome) => {
                self.cleaner
                    .settings
                    .counters
                    .pass(outcome.bytes_removed, outcome.records_removed);
                if outcome.segments_written > 0 || outcome.groups_abandoned > 0 {
                    tracing::info!(
                        dir,
                        cleaned_up_to = outcome.cleaned_up_to,
                        segments_replaced = outcome.segments_replaced,
                        segments_written = outcome.segments_written,
                        bytes_removed = outcome.bytes_removed,
                        records_removed = outcome.records_removed,
                        groups_abandoned = outcome.groups_abandoned,
                        "compacted the log"
                    );
                }
            }
            Err(error) => tracing::warn!(dir, %error, "compaction failed"),
        }
        let mut replies = pass.waiting.into_iter();
        match result {
            Ok(outcome) => replies.for_each(|reply| {
                let _ = reply.send(Ok(outcome));
            }),
            Err(error) => {
                if let Some(first) = replies.next() {
                    let _ = first.send(Err(error));
                }
                replies.for_each(|reply| {
                    let _ = reply.send(Err(CompactError::PassFailed));
                });
            }
        }
        if !self.cleaner.waiting_next.is_empty() {
            self.start_compaction(true);
        }
    }

    /// Stops a running pass (its cleaned files are removed) and answers everyone waiting.
    async fn cancel_compaction(&mut self) {
        if let Some(pass) = self.cleaner.running.take() {
            pass.cancel.store(true, Ordering::Relaxed);
            // The rewrite checks the flag between batches; its result (files and all) is dropped.
            let _ = pass.task.await;
            for reply in pass.waiting {
                let _ = reply.send(Err(CompactError::Closed));
            }
        }
        for reply in self.cleaner.waiting_next.drain(..) {
            let _ = reply.send(Err(CompactError::Closed));
        }
    }

    /// Runs `f` on the log off the async workers.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Owned) -> R + Send + 'static,
    ) -> Option<R> {
        let mut owned = self.owned.take()?;
        match tokio::task::spawn_blocking(move || {
            let result = f(&mut owned);
            (owned, result)
        })
        .await
        {
            Ok((owned, result)) => {
                self.owned = Some(owned);
                Some(result)
            }
            Err(error) => {
                tracing::error!(%error, "a log operation panicked; the partition stops");
                None
            }
        }
    }

    /// How often the relaxed flush policy flushes (never, in effect, under the durable default).
    fn flush_interval(&self) -> Duration {
        match self.owned.as_ref().map(|o| o.log.config().flush) {
            Some(FlushPolicy::Interval { interval_ms }) => {
                Duration::from_millis(interval_ms.max(1))
            }
            _ => Duration::from_secs(24 * 60 * 60),
        }
    }

    /// Handles one command (and any other command an append step meets while gathering).
    /// `Break` once the partition is closed.
    async fn handle(&mut self, mut command: Command) -> std::ops::ControlFlow<()> {
        loop {
            match command {
                Command::Append { records, reply } => {
                    match self.append_step(records, reply).await {
                        Some(next) => command = next,
                        None => return std::ops::ControlFlow::Continue(()),
                    }
                }
                Command::DeleteRecords { offset, reply } => {
                    let _ = reply.send(self.delete_records(offset).await);
                    return std::ops::ControlFlow::Continue(());
                }
                Command::SetConfig { config, reply } => {
                    self.blocking(move |owned| owned.log.set_config(config))
                        .await;
                    let _ = reply.send(());
                    return std::ops::ControlFlow::Continue(());
                }
                Command::CompactNow { reply } => {
                    self.cleaner.waiting_next.push(reply);
                    self.start_compaction(true);
                    return std::ops::ControlFlow::Continue(());
                }
                Command::Lagging { max_lag_ms, reply } => {
                    let _ = reply.send(self.replica.lagging(monotonic_ms(), max_lag_ms));
                    return std::ops::ControlFlow::Continue(());
                }
                Command::AppendReplicated { records, reply } => {
                    let result = self.append_replicated(records).await;
                    let _ = reply.send(result);
                    return std::ops::ControlFlow::Continue(());
                }
                Command::TruncateTo { offset, reply } => {
                    let result = self.truncate_to(offset).await;
                    let _ = reply.send(result);
                    return std::ops::ControlFlow::Continue(());
                }
                Command::Replica { event, reply } => {
                    if let ReplicaEvent::BecameLeader { leader_epoch, .. } = &event {
                        let epoch = *leader_epoch;
                        if let Some(Err(error)) = self
                            .blocking(move |owned| owned.log.begin_leader_epoch(epoch))
                            .await
                        {
                            tracing::error!(%error, "recording the new leader epoch failed");
                        }
                    }
                    self.replica_event(event);
                    let _ = reply.send(());
                    return std::ops::ControlFlow::Continue(());
                }
                Command::Close { reply } => {
                    self.close().await;
                    let _ = reply.send(());
                    return std::ops::ControlFlow::Break(());
                }
            }
        }
    }

    /// A follower's append: the batches as the leader stored them, producer state updated from
    /// them (so a retry after a failover is still recognised), made durable under the flush
    /// policy.
    async fn append_replicated(&mut self, records: bytes::Bytes) -> Result<i64, ReplicateError> {
        if self.replica.is_leader() {
            return Err(ReplicateError::Leader);
        }
        let outcome = self
            .blocking(move |owned| {
                let Owned { log, producers } = owned;
                log.append_replicated(&records)?;
                for (header, _) in split_batches(&records).filter_map(Result::ok) {
                    producers.record(&header);
                }
                if log.config().flush == FlushPolicy::EveryAppend {
                    log.flush()?;
                    Ok(log.flusher().durable_offset())
                } else {
                    Ok(log.log_end_offset())
                }
            })
            .await
            .ok_or(ReplicateError::Closed)?;
        let visible = outcome.map_err(ReplicateError::Log)?;
        self.replica_event(ReplicaEvent::LocalDurable { offset: visible });
        self.appended.send_replace(visible);
        Ok(visible)
    }

    /// A follower cuts its log back; producer state is rebuilt from what remains (a snapshot
    /// taken past the cut is removed: it would describe batches that are gone).
    async fn truncate_to(&mut self, offset: i64) -> Result<i64, ReplicateError> {
        if self.replica.is_leader() {
            return Err(ReplicateError::Leader);
        }
        // A pass would swap in segments cleaned from records that are going.
        self.cancel_compaction().await;
        let outcome = self
            .blocking(move |owned| {
                let Owned { log, producers } = owned;
                let end = log.truncate_to(offset)?;
                let snapshot = log.dir().join(PRODUCER_SNAPSHOT);
                if let Err(error) = std::fs::remove_file(&snapshot)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %snapshot.display(), %error, "removing the producer snapshot failed");
                }
                *producers = load_producer_state(log.dir(), log)?;
                Ok(end)
            })
            .await
            .ok_or(ReplicateError::Closed)?;
        let end = outcome.map_err(ReplicateError::Log)?;
        self.replica_event(ReplicaEvent::Truncated { offset: end });
        self.appended.send_replace(end);
        Ok(end)
    }

    /// Feeds the replica state machine and carries out its commands.
    fn replica_event(&mut self, event: ReplicaEvent) {
        for command in self.replica.handle(event) {
            match command {
                ReplicaCommand::PublishHighWatermark(offset) => {
                    // Monotonic from the state machine, except after a truncation.
                    self.high_watermark.send_if_modified(|hw| {
                        let moved = offset != *hw;
                        *hw = offset;
                        moved
                    });
                }
            }
        }
        let leading = leading_epoch(&self.replica);
        self.leading.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
    }

    async fn delete_records(&mut self, offset: i64) -> Result<i64, DeleteRecordsError> {
        let high_watermark = *self.high_watermark.borrow();
        let offset = if offset == -1 { high_watermark } else { offset };
        if self
            .owned
            .as_ref()
            .is_some_and(|o| !o.log.config().cleanup_policy.deletes())
        {
            // As Kafka: deleting records is a retention operation, which compaction alone has not.
            return Err(DeleteRecordsError::CompactedTopic);
        }
        if !(0..=high_watermark).contains(&offset) {
            return Err(DeleteRecordsError::OffsetOutOfRange {
                offset,
                high_watermark,
            });
        }
        match self
            .blocking(move |owned| owned.log.delete_records_before(offset))
            .await
        {
            Some(result) => Ok(result?),
            None => Err(DeleteRecordsError::Closed),
        }
    }

    /// Appends the first request and everything else already queued, then makes them durable
    /// with one flush, then answers them all. Returns any other command met while gathering.
    async fn append_step(
        &mut self,
        records: Vec<u8>,
        reply: oneshot::Sender<Result<AppendInfo, AppendError>>,
    ) -> Option<Command> {
        let mut inputs = vec![records];
        let mut replies = vec![reply];
        let mut other = None;
        while inputs.len() < MAX_APPENDS_PER_STEP {
            match self.rx.try_recv() {
                Ok(Command::Append { records, reply }) => {
                    inputs.push(records);
                    replies.push(reply);
                }
                Ok(command) => {
                    other = Some(command);
                    break;
                }
                Err(_) => break,
            }
        }
        if !self.replica.is_leader() {
            for reply in replies {
                let _ = reply.send(Err(AppendError::NotLeader));
            }
            return other;
        }
        let epoch = self.replica.leader_epoch();
        let outcome = self
            .blocking(move |owned| {
                let Owned { log, producers } = owned;
                let mut results: Vec<Result<AppendInfo, AppendError>> = inputs
                    .into_iter()
                    .map(|mut records| append_checked(log, producers, &mut records, epoch))
                    .collect();
                let durable = log.config().flush == FlushPolicy::EveryAppend;
                if durable
                    && results.iter().any(Result::is_ok)
                    && let Err(error) = log.flush()
                {
                    tracing::error!(dir = %log.dir().display(), %error, "flush failed");
                    let failure = match error {
                        log::Error::Flush(failure) => failure,
                        _ => log::FlushError::Failed {
                            kind: std::io::ErrorKind::Other,
                        },
                    };
                    for result in results.iter_mut().filter(|r| r.is_ok()) {
                        *result = Err(AppendError::Log(log::Error::Flush(failure)));
                    }
                }
                let visible = if durable {
                    log.flusher().durable_offset()
                } else {
                    log.log_end_offset()
                };
                (results, visible)
            })
            .await;
        if let Some((results, visible)) = outcome {
            self.replica_event(ReplicaEvent::LocalDurable { offset: visible });
            self.appended.send_if_modified(|appended| {
                let moved = *appended != visible;
                *appended = visible;
                moved
            });
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        other
    }

    /// Clean close: stop compaction, flush, write indexes and the checkpoint.
    async fn close(&mut self) {
        self.cancel_compaction().await;
        let Some(Owned { log, producers }) = self.owned.take() else {
            return;
        };
        let dir = log.dir().to_path_buf();
        let closed = tokio::task::spawn_blocking(move || {
            log.flush()?;
            if let Err(error) = save_producer_state(&log, &producers) {
                tracing::warn!(dir = %log.dir().display(), %error, "saving producer state failed");
            }
            log.close()
        });
        match closed.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(dir = %dir.display(), %error, "closing the log failed")
            }
            Err(error) => tracing::error!(dir = %dir.display(), %error, "closing the log panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::ManualClock;
    use crate::record::{ProducerInfo, Record, build_batch};

    #[tokio::test]
    async fn the_interval_flush_makes_relaxed_appends_durable() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush: FlushPolicy::Interval { interval_ms: 20 },
            ..LogConfig::default()
        };
        let partition = PartitionHandle::open(
            dir.path().to_path_buf(),
            config,
            Arc::new(ManualClock::new(1_000)),
            1,
            1,
            ReplicaEvent::BecameLeader {
                leader_epoch: 0,
                isr: vec![1],
            },
            CleanerSettings::default(),
        )
        .await
        .unwrap();
        let batch = |value: &str| {
            build_batch(
                &[Record {
                    key: Some(b"k".to_vec()),
                    value: Some(value.as_bytes().to_vec()),
                    headers: Vec::new(),
                    timestamp: 1_000,
                }],
                ProducerInfo::NONE,
            )
        };
        for i in 0..50 {
            partition.append(batch(&format!("v{i}"))).await.unwrap();
        }
        // Acknowledged (and readable) at once under the relaxed policy...
        assert_eq!(partition.high_watermark(), 50);
        // ...and on disk once an interval flush has run.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while partition.durable_offset() < 50 {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        partition.close().await;
    }

    fn idempotent(sequence: i32, count: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(b"v".to_vec()),
                headers: Vec::new(),
                timestamp: 1_000,
            })
            .collect();
        build_batch(
            &records,
            ProducerInfo {
                producer_id: 5,
                producer_epoch: 0,
                base_sequence: sequence,
            },
        )
    }

    async fn open(dir: &std::path::Path, node_id: i32, role: ReplicaEvent) -> PartitionHandle {
        PartitionHandle::open(
            dir.to_path_buf(),
            LogConfig::default(),
            Arc::new(ManualClock::new(1_000)),
            node_id,
            1,
            role,
            CleanerSettings::default(),
        )
        .await
        .unwrap()
    }

    /// A follower stores what its leader stored, byte for byte; it learns the producers from
    /// those batches, so once it leads, a producer's retry of a batch it already holds is
    /// answered with the original offsets, not written again. A batch cut off by a truncation is
    /// forgotten with it: the same retry is then written.
    #[tokio::test]
    async fn a_follower_copies_the_leader_and_knows_its_producers_after_failover() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let leader = open(
            dirs[0].path(),
            1,
            ReplicaEvent::BecameLeader {
                leader_epoch: 0,
                isr: vec![1],
            },
        )
        .await;
        let follower = open(
            dirs[1].path(),
            2,
            ReplicaEvent::BecameFollower {
                leader: 1,
                leader_epoch: 0,
            },
        )
        .await;
        leader.append(idempotent(0, 3)).await.unwrap();
        leader.append(idempotent(3, 2)).await.unwrap();
        assert!(matches!(
            follower.append(idempotent(0, 1)).await,
            Err(AppendError::NotLeader)
        ));

        let stored = leader.reader().read(0, usize::MAX).unwrap().records;
        assert_eq!(
            follower
                .append_replicated(stored.clone().into())
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            follower.reader().read(0, usize::MAX).unwrap().records,
            stored
        );
        assert!(matches!(
            leader.append_replicated(stored.clone().into()).await,
            Err(ReplicateError::Leader)
        ));
        // Its high watermark: the leader's, up to what it holds.
        assert_eq!(follower.high_watermark(), 0);
        follower
            .replica_event(ReplicaEvent::LeaderHighWatermark { offset: 9 })
            .await;
        assert_eq!(follower.high_watermark(), 5);

        // Cut back to 3: the second batch is gone, and with it the producer's sequence 3.
        assert_eq!(follower.truncate_to(3).await.unwrap(), 3);
        assert_eq!(follower.reader().offsets().log_end_offset(), 3);
        follower
            .replica_event(ReplicaEvent::BecameLeader {
                leader_epoch: 1,
                isr: vec![2],
            })
            .await;
        // The retry of the first batch is a duplicate; the second is written anew, at 3.
        let retried = follower.append(idempotent(0, 3)).await.unwrap();
        assert_eq!((retried.base_offset, retried.last_offset), (0, 2));
        let rewritten = follower.append(idempotent(3, 2)).await.unwrap();
        assert_eq!((rewritten.base_offset, rewritten.last_offset), (3, 4));
        assert_eq!(follower.reader().latest_epoch(), 1);
        assert_eq!(follower.reader().end_offset_for_epoch(0), (0, 3));
        leader.close().await;
        follower.close().await;
    }
}
