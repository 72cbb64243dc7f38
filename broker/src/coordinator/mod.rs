//! The group coordinator: consumer-group membership and committed offsets, between the group
//! handlers (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ...) and
//! the internal topic `__consumer_offsets`.
//!
//! One actor owns every group's state machine ([`group::Group`]); handlers talk to it through
//! [`CoordinatorHandle`]. The actor turns its clock into `tick` events at the next deadline any
//! group has, so session and rebalance timeouts are events, never sleeps in handlers. Group
//! metadata is written to `__consumer_offsets` (the partition `hash(group) % N`, as Kafka picks
//! it) before the replies that depend on it are sent; offset commits are written by the
//! committing request itself (so many commits share one fsync) and applied to the actor's cache
//! once every in-sync replica holds them (the partition's high watermark passed them).
//!
//! A broker coordinates the groups of the `__consumer_offsets` partitions it leads. When it
//! becomes a partition's leader (in a new leader epoch) it replays that partition into the
//! actor, answering COORDINATOR_LOAD_IN_PROGRESS for its groups meanwhile; when it stops leading
//! it forgets them. What a new coordinator replays holds every acknowledged commit, since only
//! an in-sync replica can be elected: a broker killed at any moment loses no acknowledged
//! commit, and neither does a failover.

pub mod group;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log::Clock;
use crate::partition::{AppendError, PartitionHandle};
use crate::record::batch::{Records, records_payload, split_batches};
use crate::record::builder::{ProducerInfo, Record, build_batch};
pub use group::{
    CommittedOffset, GroupConfig, GroupError, GroupState, JoinRequest, JoinResult, SyncRequest,
    SyncResult,
};
use group::{Group, Output, Token};
use records::{OffsetValue, RecordKey};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Topic configs of `__consumer_offsets`: compacted, so it keeps the latest record of every
/// offset and group and never grows without bound; nothing expires by age (offset expiry is the
/// coordinator's job, through tombstones). With three replicas or more, a commit needs two of
/// them in sync (`min.insync.replicas` 2).
pub fn offsets_topic_configs(
    segment_bytes: u64,
    replication_factor: i16,
) -> BTreeMap<String, String> {
    let mut configs: BTreeMap<String, String> = [
        ("cleanup.policy", "compact".to_owned()),
        ("segment.bytes", segment_bytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if replication_factor >= 3 {
        configs.insert("min.insync.replicas".to_owned(), "2".to_owned());
    }
    configs
}

/// The group coordinator's flags, part of the broker's (each with its `FJORD_*` twin).
#[derive(Debug, Clone, clap::Args)]
pub struct CoordinatorFlags {
    /// Partitions of `__consumer_offsets` when it is created (`offsets.topic.num.partitions`).
    #[arg(long, env = "FJORD_OFFSETS_TOPIC_PARTITIONS", default_value_t = 50)]
    pub offsets_topic_partitions: i32,
    /// Segment size of `__consumer_offsets` when it is created (`offsets.topic.segment.bytes`);
    /// compaction cleans sealed segments only.
    #[arg(
        long,
        env = "FJORD_OFFSETS_TOPIC_SEGMENT_BYTES",
        default_value_t = 104_857_600
    )]
    pub offsets_topic_segment_bytes: u64,
    /// Replicas of each `__consumer_offsets` partition when it is created
    /// (`offsets.topic.replication.factor`), at most the brokers registered then; with three or
    /// more its `min.insync.replicas` is 2.
    #[arg(
        long,
        env = "FJORD_OFFSETS_TOPIC_REPLICATION_FACTOR",
        default_value_t = 3
    )]
    pub offsets_topic_replication_factor: i16,
    /// How long an offset commit (or a group's metadata) waits for every in-sync replica of its
    /// `__consumer_offsets` partition before it fails, retriably (`offsets.commit.timeout.ms`).
    #[arg(long, env = "FJORD_OFFSETS_COMMIT_TIMEOUT_MS", default_value_t = 5_000)]
    pub offsets_commit_timeout_ms: u64,
    /// Committed offsets of an empty group are kept this long (`offsets.retention.minutes`).
    #[arg(
        long,
        env = "FJORD_OFFSETS_RETENTION_MINUTES",
        default_value_t = 10_080
    )]
    pub offsets_retention_minutes: i64,
    /// How often expired offsets are removed (`offsets.retention.check.interval.ms`).
    #[arg(
        long,
        env = "FJORD_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub offsets_retention_check_interval_ms: u64,
    /// How long a new group waits for more members before its first rebalance
    /// (`group.initial.rebalance.delay.ms`).
    #[arg(
        long,
        env = "FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000
    )]
    pub group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    #[arg(
        long,
        env = "FJORD_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub group_min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    #[arg(
        long,
        env = "FJORD_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: i32,
}

impl Default for CoordinatorFlags {
    fn default() -> Self {
        Self {
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_topic_replication_factor: 3,
            offsets_commit_timeout_ms: 5_000,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
        }
    }
}

impl CoordinatorFlags {
    pub fn config(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            group: GroupConfig {
                min_session_timeout_ms: self.group_min_session_timeout_ms,
                max_session_timeout_ms: self.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            },
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            retention_check_interval: Duration::from_millis(
                self.offsets_retention_check_interval_ms.max(1),
            ),
            commit_timeout: Duration::from_millis(self.offsets_commit_timeout_ms),
        }
    }
}

/// Coordinator settings from the broker config.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// Committed offsets of an empty group expire this long after the group became empty (or the
    /// offset was committed, whichever is later): `offsets.retention.minutes`.
    pub offsets_retention_ms: i64,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// How long a write waits for the in-sync replicas (`offsets.commit.timeout.ms`).
    pub commit_timeout: Duration,
}

/// Why an offset commit or delete failed after validation.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error("writing to {OFFSETS_TOPIC}")]
    Write(#[source] WriteError),
}

/// Why a write to `__consumer_offsets` failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This broker does not lead (or has not loaded) the group's partition, or stopped leading
    /// it before the write was replicated.
    #[error("this broker does not coordinate the group")]
    NotCoordinator,
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Not every in-sync replica held the records within `offsets.commit.timeout.ms`.
    #[error("the in-sync replicas did not all hold the records in time")]
    NotReplicated,
    /// Fewer in-sync replicas than the partition's `min.insync.replicas`, before the write or
    /// once it was replicated.
    #[error("fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas,
}

impl WriteError {
    /// Whether the client should look for the coordinator again.
    pub fn moved(&self) -> bool {
        matches!(
            self,
            WriteError::NotCoordinator | WriteError::Append(AppendError::NotLeader)
        )
    }
}

/// Whether this coordinator serves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordination {
    Serving,
    /// It leads the group's partition and is replaying it.
    Loading,
    /// It does not lead the group's partition.
    Elsewhere,
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A topic partition's committed offset for a group.
pub type GroupPartition = (String, i32);

/// Committed offsets by group, topic and partition, for the lag metrics.
pub type CommittedOffsets = BTreeMap<(String, String, i32), i64>;

enum Command {
    Join {
        group: String,
        request: JoinRequest,
        reply: oneshot::Sender<JoinResult>,
    },
    Sync {
        group: String,
        request: SyncRequest,
        reply: oneshot::Sender<SyncResult>,
    },
    Heartbeat {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        reply: oneshot::Sender<Result<(), GroupError>>,
    },
    Leave {
        group: String,
        members: Vec<(String, Option<String>)>,
        reply: oneshot::Sender<Result<Vec<Result<(), GroupError>>, GroupError>>,
    },
    ValidateCommit {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        reply: oneshot::Sender<Result<(), GroupError>>,
    },
    ApplyCommit {
        group: String,
        /// The leader epoch the offsets were written in.
        epoch: i32,
        offsets: Vec<(GroupPartition, CommittedOffset)>,
        reply: oneshot::Sender<()>,
    },
    FetchOffsets {
        group: String,
        partitions: Option<Vec<GroupPartition>>,
        reply: oneshot::Sender<Vec<(GroupPartition, Option<CommittedOffset>)>>,
    },
    List {
        reply: oneshot::Sender<Vec<GroupListing>>,
    },
    Describe {
        groups: Vec<String>,
        reply: oneshot::Sender<Vec<GroupDescription>>,
    },
    Delete {
        groups: Vec<String>,
        reply: oneshot::Sender<Vec<Result<(), GroupError>>>,
    },
    DeleteOffsets {
        group: String,
        partitions: Vec<GroupPartition>,
        reply: oneshot::Sender<Result<Vec<Result<(), GroupError>>, GroupError>>,
    },
    ExpireOffsets {
        reply: oneshot::Sender<usize>,
    },
}

/// What the metadata tells the actor, on a channel of its own that never blocks the sender (the
/// broker's metadata follower) and that the actor reads first.
enum Control {
    /// The groups of a partition replayed in leader epoch `epoch`.
    Loaded {
        partition: i32,
        epoch: i32,
        groups: Vec<Replayed>,
    },
    /// This broker no longer leads `partition` in the epoch it loaded: forget its groups.
    Unload { partition: i32 },
}

impl Command {
    /// The group a command acts on, for those that act on one.
    fn group(&self) -> Option<&str> {
        match self {
            Command::Join { group, .. }
            | Command::Sync { group, .. }
            | Command::Heartbeat { group, .. }
            | Command::Leave { group, .. }
            | Command::ValidateCommit { group, .. }
            | Command::FetchOffsets { group, .. }
            | Command::DeleteOffsets { group, .. } => Some(group),
            _ => None,
        }
    }

    /// Answers the command with `error` instead of carrying it out.
    fn refuse(self, error: GroupError) {
        match self {
            Command::Join { request, reply, .. } => {
                let mut result = unavailable_join(request.member_id);
                result.error = Some(error);
                let _ = reply.send(result);
            }
            Command::Sync { reply, .. } => {
                let _ = reply.send(failed_sync(error));
            }
            Command::Heartbeat { reply, .. } | Command::ValidateCommit { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::Leave { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::DeleteOffsets { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            // Dropping the reply: the handle answers COORDINATOR_NOT_AVAILABLE.
            _ => {}
        }
    }
}

/// A `__consumer_offsets` partition this broker leads, as the coordinator holds it.
#[derive(Debug, Clone)]
struct Held {
    handle: PartitionHandle,
    /// The leader epoch it leads (and was loaded) in.
    epoch: i32,
    /// Replayed into the actor: its groups are served.
    loaded: bool,
    /// Its ISR has at least its `min.insync.replicas` members, as the metadata last said: a
    /// write needs that many copies (Kafka's NOT_ENOUGH_REPLICAS otherwise).
    enough_in_sync: bool,
}

/// The partitions this broker leads, shared by the handle and the actor.
#[derive(Debug, Default)]
struct Leadership {
    held: BTreeMap<i32, Held>,
    /// The metadata offset they were last set from: an older image never undoes a newer one.
    offset: Option<u64>,
}

/// The partitions of `__consumer_offsets` (those this broker leads, and where a group's records
/// go), shared by the handle and the actor.
#[derive(Debug, Clone)]
struct OffsetsPartitions {
    leadership: Arc<Mutex<Leadership>>,
    /// How many partitions the topic has.
    count: i32,
    /// How long a write waits for the in-sync replicas (`offsets.commit.timeout.ms`).
    commit_timeout: Duration,
}

impl OffsetsPartitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Leadership> {
        self.leadership
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The partition of `group`.
    fn of(&self, group: &str) -> i32 {
        partition_for(group, self.count)
    }

    /// Whether the partition of `group` is loaded (in leader epoch `epoch`, if given).
    fn serves(&self, group: &str, epoch: Option<i32>) -> bool {
        self.lock()
            .held
            .get(&self.of(group))
            .is_some_and(|held| held.loaded && epoch.is_none_or(|epoch| epoch == held.epoch))
    }

    /// Where a group's records go: its partition's handle and the epoch this broker leads it
    /// in, if it has loaded it and the partition has enough replicas in sync.
    fn target(&self, group: &str) -> Result<(PartitionHandle, i32), WriteError> {
        let leadership = self.lock();
        let held = leadership
            .held
            .get(&self.of(group))
            .filter(|held| held.loaded)
            .ok_or(WriteError::NotCoordinator)?;
        if !held.enough_in_sync {
            return Err(WriteError::NotEnoughReplicas);
        }
        Ok((held.handle.clone(), held.epoch))
    }

    /// Appends `records` to a group's partition and waits until every in-sync replica holds
    /// them (the high watermark passed them) while this broker still leads in the same epoch.
    /// Returns that epoch.
    async fn write(&self, group: &str, records: Vec<Record>) -> Result<i32, WriteError> {
        let (partition, epoch) = self.target(group)?;
        let info = partition
            .append(build_batch(&records, ProducerInfo::NONE))
            .await?;
        let mut high_watermark = partition.watch_high_watermark();
        let replicated = high_watermark.wait_for(|hw| *hw > info.last_offset);
        match tokio::time::timeout(self.commit_timeout, replicated).await {
            // Kafka's rule: the ISR may not have shrunk below min.insync.replicas meanwhile.
            Ok(Ok(_)) if partition.leading_epoch() == Some(epoch) => {
                self.target(group).map(|_| epoch)
            }
            Ok(_) => Err(WriteError::NotCoordinator),
            Err(_) => Err(WriteError::NotReplicated),
        }
    }
}

/// A partition of `__consumer_offsets` this broker leads, as the metadata has it.
#[derive(Debug, Clone)]
pub struct Leading {
    pub handle: PartitionHandle,
    pub epoch: i32,
    /// Its ISR has at least its `min.insync.replicas` members.
    pub enough_in_sync: bool,
}

/// Cloneable handle to the coordinator actor.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    commands: mpsc::Sender<Command>,
    control: mpsc::UnboundedSender<Control>,
    partitions: OffsetsPartitions,
    /// Counts completed loads, so a caller can wait for them.
    loads: tokio::sync::watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    committed: Arc<Mutex<CommittedOffsets>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("coordinator command")
    }
}

/// The `__consumer_offsets` partition of a group: Java's `String.hashCode`, made non-negative
/// the way Kafka does, modulo the partition count, so a group lands where Kafka would put it.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    (hash & 0x7fff_ffff) % partitions.max(1)
}

impl CoordinatorHandle {
    /// Starts the actor for a `__consumer_offsets` of `partition_count` partitions. It serves no
    /// group until told which partitions this broker leads ([`CoordinatorHandle::lead`]).
    pub fn start(
        partition_count: i32,
        config: CoordinatorConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Self {
        let committed = Arc::new(Mutex::new(CommittedOffsets::new()));
        let partitions = OffsetsPartitions {
            leadership: Arc::default(),
            count: partition_count,
            commit_timeout: config.commit_timeout,
        };
        let (loads, _) = tokio::sync::watch::channel(0);
        let (commands, rx) = mpsc::channel(1024);
        let (control, control_rx) = mpsc::unbounded_channel();
        let actor = CoordinatorActor {
            config,
            groups: HashMap::new(),
            rx,
            control: control_rx,
            partitions: partitions.clone(),
            loads: loads.clone(),
            clock: Arc::clone(&clock),
            start: Instant::now(),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            next_token: 0,
            committed: Arc::clone(&committed),
        };
        tokio::spawn(actor.run(shutdown));
        Self {
            commands,
            control,
            partitions,
            loads,
            clock,
            committed,
        }
    }

    /// Sets the partitions of `__consumer_offsets` this broker leads, as the metadata at
    /// `offset` has them: the groups of a partition no longer led in the epoch it was loaded in
    /// are forgotten, and a partition newly led (or led in a new epoch: another leader may have
    /// written in between) is replayed in the background. Never waits on the actor.
    pub fn lead(&self, offset: u64, leading: BTreeMap<i32, Leading>) {
        let (unload, load) = {
            let mut leadership = self.partitions.lock();
            if leadership.offset.is_some_and(|seen| seen > offset) {
                return;
            }
            leadership.offset = Some(offset);
            let unload: Vec<i32> = leadership
                .held
                .iter()
                .filter(|(p, held)| leading.get(p).is_none_or(|l| l.epoch != held.epoch))
                .map(|(p, _)| *p)
                .collect();
            for partition in &unload {
                leadership.held.remove(partition);
            }
            let mut load = Vec::new();
            for (partition, led) in leading {
                if let Some(held) = leadership.held.get_mut(&partition) {
                    held.enough_in_sync = led.enough_in_sync;
                    continue;
                }
                leadership.held.insert(
                    partition,
                    Held {
                        handle: led.handle.clone(),
                        epoch: led.epoch,
                        loaded: false,
                        enough_in_sync: led.enough_in_sync,
                    },
                );
                load.push((partition, led.handle, led.epoch));
            }
            (unload, load)
        };
        // Whoever waits for the loads sees the partitions that are no longer to be loaded.
        self.loads.send_modify(|_| {});
        for partition in unload {
            tracing::info!(
                partition,
                "no longer coordinating the groups of {OFFSETS_TOPIC}-{partition}"
            );
            let _ = self.control.send(Control::Unload { partition });
        }
        for (partition, handle, epoch) in load {
            let control = self.control.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let groups = tokio::task::spawn_blocking(move || replay(partition, &handle))
                    .await
                    .unwrap_or_else(|error| {
                        tracing::error!(partition, %error, "replaying {OFFSETS_TOPIC} failed");
                        Vec::new()
                    });
                tracing::info!(
                    partition,
                    epoch,
                    groups = groups.len(),
                    elapsed_ms = started.elapsed().as_millis(),
                    "loaded the groups of {OFFSETS_TOPIC}-{partition}"
                );
                let _ = control.send(Control::Loaded {
                    partition,
                    epoch,
                    groups,
                });
            });
        }
    }

    /// Waits until every partition this broker leads has been loaded.
    pub async fn loaded(&self) {
        let mut loads = self.loads.subscribe();
        let _ = loads
            .wait_for(|_| self.partitions.lock().held.values().all(|h| h.loaded))
            .await;
    }

    /// Committed offsets for the lag metrics.
    pub fn committed_offsets(&self) -> CommittedOffsets {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether this coordinator serves `group`: it leads the group's partition of
    /// `__consumer_offsets` and has loaded it.
    pub fn coordinates(&self, group: &str) -> Coordination {
        match self.partitions.lock().held.get(&self.partitions.of(group)) {
            Some(held) if held.loaded => Coordination::Serving,
            Some(_) => Coordination::Loading,
            None => Coordination::Elsewhere,
        }
    }

    async fn ask<R>(&self, command: impl FnOnce(oneshot::Sender<R>) -> Command) -> Option<R> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        rx.await.ok()
    }

    pub async fn join(&self, group: String, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        self.ask(|reply| Command::Join {
            group,
            request,
            reply,
        })
        .await
        .unwrap_or_else(|| unavailable_join(member_id))
    }

    pub async fn sync(&self, group: String, request: SyncRequest) -> SyncResult {
        self.ask(|reply| Command::Sync {
            group,
            request,
            reply,
        })
        .await
        .unwrap_or_else(|| failed_sync(GroupError::CoordinatorNotAvailable))
    }

    pub async fn heartbeat(
        &self,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    ) -> Result<(), GroupError> {
        self.ask(|reply| Command::Heartbeat {
            group,
            member_id,
            instance_id,
            generation,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    pub async fn leave(
        &self,
        group: String,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.ask(|reply| Command::Leave {
            group,
            members,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// Validates the committer, writes the offsets durably, then makes them visible.
    pub async fn commit(
        &self,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<(GroupPartition, CommittedOffset)>,
    ) -> Result<(), CommitError> {
        self.ask(|reply| Command::ValidateCommit {
            group: group.clone(),
            member_id,
            instance_id,
            generation,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))?;
        if offsets.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = offsets
            .iter()
            .map(|((topic, partition), committed)| Record {
                key: Some(records::encode_key(&RecordKey::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                })),
                value: Some(records::encode_offset(&OffsetValue {
                    offset: committed.offset,
                    leader_epoch: committed.leader_epoch,
                    metadata: committed.metadata.clone(),
                    commit_timestamp: committed.commit_timestamp,
                })),
                headers: Vec::new(),
                timestamp: committed.commit_timestamp,
            })
            .collect();
        let epoch = self
            .partitions
            .write(&group, records)
            .await
            .map_err(CommitError::Write)?;
        self.ask(|reply| Command::ApplyCommit {
            group,
            epoch,
            offsets,
            reply,
        })
        .await
        // Loaded again since in another epoch: the client asks where the group is now.
        .ok_or(CommitError::Group(GroupError::NotCoordinator))
    }

    pub async fn fetch_offsets(
        &self,
        group: String,
        partitions: Option<Vec<GroupPartition>>,
    ) -> Result<Vec<(GroupPartition, Option<CommittedOffset>)>, GroupError> {
        self.ask(|reply| Command::FetchOffsets {
            group,
            partitions,
            reply,
        })
        .await
        .ok_or(GroupError::CoordinatorNotAvailable)
    }

    pub async fn list(&self) -> Result<Vec<GroupListing>, GroupError> {
        self.ask(|reply| Command::List { reply })
            .await
            .ok_or(GroupError::CoordinatorNotAvailable)
    }

    pub async fn describe(&self, groups: Vec<String>) -> Result<Vec<GroupDescription>, GroupError> {
        self.ask(|reply| Command::Describe { groups, reply })
            .await
            .ok_or(GroupError::CoordinatorNotAvailable)
    }

    pub async fn delete(&self, groups: Vec<String>) -> Vec<Result<(), GroupError>> {
        let count = groups.len();
        self.ask(|reply| Command::Delete { groups, reply })
            .await
            .unwrap_or_else(|| vec![Err(GroupError::CoordinatorNotAvailable); count])
    }

    pub async fn delete_offsets(
        &self,
        group: String,
        partitions: Vec<GroupPartition>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.ask(|reply| Command::DeleteOffsets {
            group,
            partitions,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// Runs the offset expiry pass now; returns how many offsets expired.
    pub async fn expire_offsets(&self) -> usize {
        self.ask(|reply| Command::ExpireOffsets { reply })
            .await
            .unwrap_or(0)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

fn failed_sync(error: GroupError) -> SyncResult {
    SyncResult {
        error: Some(error),
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}

fn unavailable_join(member_id: String) -> JoinResult {
    JoinResult {
        error: Some(GroupError::CoordinatorNotAvailable),
        generation: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id,
        members: Vec::new(),
        skip_assignment: false,
    }
}

/// A group as replayed: its id, its stored metadata, its committed offsets.
type Replayed = (
    String,
    Option<records::GroupValue>,
    BTreeMap<GroupPartition, CommittedOffset>,
);

/// Reads every record of a `__consumer_offsets` partition, latest record per key winning.
fn replay(index: i32, partition: &PartitionHandle) -> Vec<Replayed> {
    let mut groups: BTreeMap<String, Replayed> = BTreeMap::new();
    {
        let reader = partition.reader();
        let mut offset = reader.offsets().log_start_offset();
        loop {
            let read = match reader.read(offset, 1 << 20) {
                Ok(read) => read,
                Err(error) => {
                    tracing::error!(partition = index, offset, %error, "cannot read {OFFSETS_TOPIC}; the rest of this partition is skipped");
                    break;
                }
            };
            if read.records.is_empty() || read.next_offset <= offset {
                break;
            }
            for batch in split_batches(&read.records) {
                let Ok((header, bytes)) = batch else { break };
                if header.is_control() {
                    continue;
                }
                let payload = match records_payload(bytes, &header) {
                    Ok(payload) => payload,
                    Err(error) => {
                        tracing::warn!(partition = index, base_offset = header.base_offset, %error, "skipping an unreadable {OFFSETS_TOPIC} batch");
                        continue;
                    }
                };
                // Compaction leaves gaps between the offsets of a batch's records.
                for record in Records::stored(&payload, header.record_count) {
                    match record {
                        Ok(record) => apply_record(&mut groups, record.key, record.value),
                        Err(error) => {
                            tracing::warn!(partition = index, base_offset = header.base_offset, %error, "skipping an unreadable {OFFSETS_TOPIC} batch");
                            break;
                        }
                    }
                }
            }
            offset = read.next_offset;
        }
    }
    groups.into_values().collect()
}

fn apply_record(groups: &mut BTreeMap<String, Replayed>, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(key) = key else { return };
    let key = match records::decode_key(key) {
        Ok(key) => key,
        Err(error) => {
            tracing::warn!(%error, "skipping an {OFFSETS_TOPIC} record with an unknown key");
            return;
        }
    };
    let entry = groups
        .entry(key.group().to_owned())
        .or_insert_with(|| (key.group().to_owned(), None, BTreeMap::new()));
    match (key, value) {
        (
            RecordKey::Offset {
                topic, partition, ..
            },
            None,
        ) => {
            entry.2.remove(&(topic, partition));
        }
        (
            RecordKey::Offset {
                topic, partition, ..
            },
            Some(value),
        ) => match records::decode_offset(value) {
            Ok(v) => {
                entry.2.insert(
                    (topic, partition),
                    CommittedOffset {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata,
                        commit_timestamp: v.commit_timestamp,
                    },
                );
            }
            Err(error) => tracing::warn!(%error, "skipping an unreadable offset commit"),
        },
        (RecordKey::Group { group }, None) => {
            // A deleted group: its offsets were tombstoned before it.
            groups.remove(&group);
        }
        (RecordKey::Group { .. }, Some(value)) => match records::decode_group(value) {
            Ok(v) => entry.1 = Some(v),
            Err(error) => tracing::warn!(%error, "skipping unreadable group metadata"),
        },
    }
}

struct CoordinatorActor {
    config: CoordinatorConfig,
    groups: HashMap<String, Group>,
    rx: mpsc::Receiver<Command>,
    control: mpsc::UnboundedReceiver<Control>,
    partitions: OffsetsPartitions,
    loads: tokio::sync::watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    /// Monotonic time zero: group deadlines are milliseconds since then.
    start: Instant,
    /// Waiting JoinGroup and SyncGroup requests, with their group.
    joins: HashMap<Token, (String, oneshot::Sender<JoinResult>)>,
    syncs: HashMap<Token, (String, oneshot::Sender<SyncResult>)>,
    next_token: Token,
    committed: Arc<Mutex<CommittedOffsets>>,
}

impl CoordinatorActor {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut expiry = tokio::time::interval_at(
            Instant::now() + self.config.retention_check_interval,
            self.config.retention_check_interval,
        );
        loop {
            let deadline = self.groups.values().filter_map(Group::next_deadline).min();
            let wake = async {
                match deadline {
                    Some(ms) => {
                        tokio::time::sleep_until(self.start + Duration::from_millis(ms)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(control) = self.control.recv() => match control {
                    Control::Loaded { partition, epoch, groups } => {
                        self.install(partition, epoch, groups);
                    }
                    Control::Unload { partition } => self.unload_stale(partition),
                },
                command = self.rx.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                () = wake => self.tick().await,
                _ = expiry.tick() => {
                    self.expire_offsets().await;
                }
            }
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    async fn handle(&mut self, command: Command) {
        let now = self.now();
        let wall = self.clock.now_ms();
        let config = self.config.group.clone();
        if let Some(group) = command.group()
            && !self.partitions.serves(group, None)
        {
            command.refuse(GroupError::NotCoordinator);
            return;
        }
        match command {
            Command::Join {
                group,
                request,
                reply,
            } => {
                let to = self.token();
                self.joins.insert(to, (group.clone(), reply));
                let mut out = Vec::new();
                self.groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group.clone(), wall))
                    .join(request, to, now, wall, &config, &mut out);
                self.finish(&group, out).await;
            }
            Command::Sync {
                group,
                request,
                reply,
            } => {
                let to = self.token();
                self.syncs.insert(to, (group.clone(), reply));
                let mut out = Vec::new();
                match self.groups.get_mut(&group) {
                    Some(g) => g.sync(request, to, now, wall, &mut out),
                    None => out.push(Output::Sync {
                        to,
                        result: failed_sync(GroupError::UnknownMemberId),
                    }),
                }
                self.finish(&group, out).await;
            }
            Command::Heartbeat {
                group,
                member_id,
                instance_id,
                generation,
                reply,
            } => {
                let result = match self.groups.get_mut(&group) {
                    Some(g) => g.heartbeat(&member_id, instance_id.as_deref(), generation, now),
                    None => Err(GroupError::UnknownMemberId),
                };
                let _ = reply.send(result);
            }
            Command::Leave {
                group,
                members,
                reply,
            } => {
                let mut out = Vec::new();
                let result = match self.groups.get_mut(&group) {
                    Some(g) => Ok(g.leave(&members, now, wall, &config, &mut out)),
                    None => Err(GroupError::UnknownMemberId),
                };
                self.finish(&group, out).await;
                let _ = reply.send(result);
            }
            Command::ValidateCommit {
                group,
                member_id,
                instance_id,
                generation,
                reply,
            } => {
                let result = match self.groups.get(&group) {
                    Some(g) => g.validate_commit(&member_id, instance_id.as_deref(), generation),
                    None if generation < 0 => Ok(()),
                    None => Err(GroupError::IllegalGeneration),
                };
                let _ = reply.send(result);
            }
            Command::ApplyCommit {
                group,
                epoch,
                offsets,
                reply,
            } => {
                // Written in an epoch since replaced: the partition was loaded again from the
                // log, which has the offsets if they were kept.
                if !self.partitions.serves(&group, Some(epoch)) {
                    return;
                }
                let entry = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group.clone(), wall));
                let mut shared = self
                    .committed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for ((topic, partition), offset) in offsets {
                    shared.insert((group.clone(), topic.clone(), partition), offset.offset);
                    entry.offsets.insert((topic, partition), offset);
                }
                drop(shared);
                let _ = reply.send(());
            }
            Command::FetchOffsets {
                group,
                partitions,
                reply,
            } => {
                let offsets = self.groups.get(&group).map(|g| &g.offsets);
                let result = match partitions {
                    Some(partitions) => partitions
                        .into_iter()
                        .map(|tp| {
                            let committed = offsets.and_then(|o| o.get(&tp)).cloned();
                            (tp, committed)
                        })
                        .collect(),
                    None => offsets
                        .into_iter()
                        .flatten()
                        .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                        .collect(),
                };
                let _ = reply.send(result);
            }
            Command::List { reply } => {
                let mut groups: Vec<GroupListing> = self
                    .groups
                    .values()
                    .map(|g| GroupListing {
                        group_id: g.id.clone(),
                        protocol_type: g.protocol_type().unwrap_or_default().to_owned(),
                        state: g.state(),
                    })
                    .collect();
                groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
                let _ = reply.send(groups);
            }
            Command::Describe { groups, reply } => {
                let described = groups
                    .into_iter()
                    .map(|id| match self.groups.get(&id) {
                        Some(g) => describe(g),
                        None => GroupDescription {
                            group_id: id,
                            state: GroupState::Dead,
                            protocol_type: String::new(),
                            protocol: String::new(),
                            members: Vec::new(),
                        },
                    })
                    .collect();
                let _ = reply.send(described);
            }
            Command::Delete { groups, reply } => {
                let mut results = Vec::with_capacity(groups.len());
                for id in groups {
                    results.push(self.delete_group(&id, wall).await);
                }
                let _ = reply.send(results);
            }
            Command::DeleteOffsets {
                group,
                partitions,
                reply,
            } => {
                let result = self.delete_offsets(&group, partitions).await;
                let _ = reply.send(result);
            }
            Command::ExpireOffsets { reply } => {
                let expired = self.expire_offsets().await;
                let _ = reply.send(expired);
            }
        }
    }

    /// Takes the groups of `partition` as replayed in `epoch`, if it is still led in it.
    fn install(&mut self, partition: i32, epoch: i32, groups: Vec<Replayed>) {
        {
            let mut leadership = self.partitions.lock();
            match leadership.held.get_mut(&partition) {
                Some(held) if held.epoch == epoch => held.loaded = true,
                // Lost or led in another epoch since: another load follows or none is needed.
                _ => return,
            }
        }
        self.unload(partition);
        let wall = self.clock.now_ms();
        let mut shared = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (id, value, offsets) in groups {
            let mut group = match value {
                Some(value) => Group::restore(id.clone(), value, self.now()),
                None => Group::new(id.clone(), wall),
            };
            for ((topic, p), offset) in &offsets {
                shared.insert((id.clone(), topic.clone(), *p), offset.offset);
            }
            group.offsets = offsets;
            self.groups.insert(id, group);
        }
        drop(shared);
        self.loads.send_modify(|count| *count += 1);
    }

    /// Forgets the groups of a partition no longer led, unless it has been loaded again since
    /// (led anew while the unload waited: its groups now are the new epoch's).
    fn unload_stale(&mut self, partition: i32) {
        let loaded_again = self
            .partitions
            .lock()
            .held
            .get(&partition)
            .is_some_and(|held| held.loaded);
        if !loaded_again {
            self.unload(partition);
        }
    }

    /// Forgets the groups of `partition`; their waiting requests are told to find the
    /// coordinator again.
    fn unload(&mut self, partition: i32) {
        let partitions = self.partitions.clone();
        let ours = |group: &str| partitions.of(group) == partition;
        self.groups.retain(|id, _| !ours(id));
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(group, _, _), _| !ours(group));
        for (_, (_, reply)) in self.joins.extract_if(|_, (g, _)| ours(g)) {
            let mut result = unavailable_join(String::new());
            result.error = Some(GroupError::NotCoordinator);
            let _ = reply.send(result);
        }
        for (_, (_, reply)) in self.syncs.extract_if(|_, (g, _)| ours(g)) {
            let _ = reply.send(failed_sync(GroupError::NotCoordinator));
        }
    }

    async fn tick(&mut self) {
        let now = self.now();
        let wall = self.clock.now_ms();
        let config = self.config.group.clone();
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.next_deadline().is_some_and(|d| d <= now))
            .map(|g| g.id.clone())
            .collect();
        for id in due {
            let mut out = Vec::new();
            if let Some(group) = self.groups.get_mut(&id) {
                group.tick(now, wall, &config, &mut out);
            }
            self.finish(&id, out).await;
        }
    }

    /// Stores the group if asked to, then sends the replies.
    async fn finish(&mut self, group: &str, out: Vec<Output>) {
        if out.contains(&Output::StoreGroup)
            && let Some(g) = self.groups.get(group)
        {
            let record = Record {
                key: Some(records::encode_key(&RecordKey::Group {
                    group: group.to_owned(),
                })),
                value: Some(records::encode_group(&g.to_value())),
                headers: Vec::new(),
                timestamp: self.clock.now_ms(),
            };
            if let Err(error) = self.partitions.write(group, vec![record]).await {
                tracing::warn!(group, %error, "storing group metadata failed");
            }
        }
        for output in out {
            match output {
                Output::Join { to, result } => {
                    if let Some((_, reply)) = self.joins.remove(&to) {
                        let _ = reply.send(result);
                    }
                }
                Output::Sync { to, result } => {
                    if let Some((_, reply)) = self.syncs.remove(&to) {
                        let _ = reply.send(result);
                    }
                }
                Output::StoreGroup => {}
            }
        }
    }

    async fn delete_group(&mut self, id: &str, wall: i64) -> Result<(), GroupError> {
        let Some(group) = self.groups.get_mut(id) else {
            return Err(GroupError::GroupIdNotFound);
        };
        let offsets: Vec<GroupPartition> = group.offsets.keys().cloned().collect();
        group.delete(wall)?;
        let mut tombstones = offset_tombstones(id, &offsets, wall);
        tombstones.push(tombstone(
            RecordKey::Group {
                group: id.to_owned(),
            },
            wall,
        ));
        if let Err(error) = self.partitions.write(id, tombstones).await {
            tracing::warn!(group = id, %error, "writing group tombstones failed");
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.groups.remove(id);
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(g, _, _), _| g != id);
        Ok(())
    }

    async fn delete_offsets(
        &mut self,
        id: &str,
        partitions: Vec<GroupPartition>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let Some(group) = self.groups.get(id) else {
            return Err(GroupError::GroupIdNotFound);
        };
        let subscribed = if group.state() == GroupState::Empty {
            Vec::new()
        } else {
            group.subscribed_topics()
        };
        let wall = self.clock.now_ms();
        let results: Vec<Result<(), GroupError>> = partitions
            .iter()
            .map(|(topic, _)| {
                if subscribed.contains(topic) {
                    Err(GroupError::GroupSubscribedToTopic)
                } else {
                    Ok(())
                }
            })
            .collect();
        let deletable: Vec<GroupPartition> = partitions
            .into_iter()
            .zip(&results)
            .filter(|(tp, result)| result.is_ok() && group.offsets.contains_key(tp))
            .map(|(tp, _)| tp)
            .collect();
        if deletable.is_empty() {
            return Ok(results);
        }
        self.remove_offsets(id, &deletable, wall).await?;
        Ok(results)
    }

    /// Tombstones offsets, then forgets them.
    async fn remove_offsets(
        &mut self,
        id: &str,
        partitions: &[GroupPartition],
        wall: i64,
    ) -> Result<(), GroupError> {
        let records = offset_tombstones(id, partitions, wall);
        if let Err(error) = self.partitions.write(id, records).await {
            tracing::warn!(group = id, %error, "writing offset tombstones failed");
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if let Some(group) = self.groups.get_mut(id) {
            for tp in partitions {
                group.offsets.remove(tp);
            }
        }
        let mut shared = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (topic, partition) in partitions {
            shared.remove(&(id.to_owned(), topic.clone(), *partition));
        }
        Ok(())
    }

    /// Expires the offsets of empty groups older than the retention, and forgets empty groups
    /// that have nothing left. Returns the number of offsets expired.
    async fn expire_offsets(&mut self) -> usize {
        let wall = self.clock.now_ms();
        let retention = self.config.offsets_retention_ms;
        let mut expired = 0;
        let candidates: Vec<(String, Vec<GroupPartition>)> = self
            .groups
            .values()
            .filter(|g| g.state() == GroupState::Empty && self.partitions.serves(&g.id, None))
            .map(|g| {
                let stale = g
                    .offsets
                    .iter()
                    .filter(|(_, o)| {
                        wall - o.commit_timestamp.max(g.state_timestamp()) >= retention
                    })
                    .map(|(tp, _)| tp.clone())
                    .collect();
                (g.id.clone(), stale)
            })
            .collect();
        for (id, stale) in candidates {
            if !stale.is_empty() && self.remove_offsets(&id, &stale, wall).await.is_ok() {
                expired += stale.len();
                tracing::info!(
                    group = id,
                    offsets = stale.len(),
                    "expired committed offsets of an empty group"
                );
            }
            if self.groups.get(&id).is_some_and(Group::is_forgettable) {
                let record = tombstone(RecordKey::Group { group: id.clone() }, wall);
                if self.partitions.write(&id, vec![record]).await.is_ok() {
                    self.groups.remove(&id);
                }
            }
        }
        expired
    }
}

/// Tombstones for a group's committed offsets of `partitions`.
fn offset_tombstones(group: &str, partitions: &[GroupPartition], timestamp: i64) -> Vec<Record> {
    partitions
        .iter()
        .map(|(topic, partition)| {
            tombstone(
                RecordKey::Offset {
                    group: group.to_owned(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                timestamp,
            )
        })
        .collect()
}

fn tombstone(key: RecordKey, timestamp: i64) -> Record {
    Record {
        key: Some(records::encode_key(&key)),
        value: None,
        headers: Vec::new(),
        timestamp,
    }
}

fn describe(group: &Group) -> GroupDescription {
    let stable = group.state() == GroupState::Stable;
    GroupDescription {
        group_id: group.id.clone(),
        state: group.state(),
        protocol_type: group.protocol_type().unwrap_or_default().to_owned(),
        protocol: if stable {
            group.protocol().unwrap_or_default().to_owned()
        } else {
            String::new()
        },
        members: group
            .members()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(group.protocol())
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect(),
    }
}
