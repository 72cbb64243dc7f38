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
//! once durable. On start-up every record of the topic is replayed, so a broker killed at any
//! moment loses no acknowledged commit.

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
/// coordinator's job, through tombstones).
pub fn offsets_topic_configs(segment_bytes: u64) -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_owned()),
        ("segment.bytes", segment_bytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
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
}

/// Why an offset commit or delete failed after validation.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error("writing to {OFFSETS_TOPIC}")]
    Write(#[source] AppendError),
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

/// Cloneable handle to the coordinator actor.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    commands: mpsc::Sender<Command>,
    partitions: Arc<Vec<Option<PartitionHandle>>>,
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
    /// Replays `__consumer_offsets` (its partitions, in order: those this broker hosts, `None`
    /// for the others) and starts the actor. It holds the groups of the partitions given.
    pub async fn start(
        partitions: Vec<Option<PartitionHandle>>,
        config: CoordinatorConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Self {
        let partitions = Arc::new(partitions);
        let start = Instant::now();
        let replay_partitions = Arc::clone(&partitions);
        let groups = tokio::task::spawn_blocking(move || replay(&replay_partitions))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "replaying {OFFSETS_TOPIC} failed");
                Vec::new()
            });
        let committed = Arc::new(Mutex::new(CommittedOffsets::new()));
        let mut loaded = HashMap::new();
        for (id, value, offsets) in groups {
            let mut group = match value {
                Some(value) => Group::restore(id.clone(), value, 0),
                None => Group::new(id.clone(), clock.now_ms()),
            };
            group.offsets = offsets;
            loaded.insert(id, group);
        }
        {
            let mut shared = committed.lock().unwrap_or_else(PoisonError::into_inner);
            for group in loaded.values() {
                for ((topic, partition), offset) in &group.offsets {
                    shared.insert((group.id.clone(), topic.clone(), *partition), offset.offset);
                }
            }
        }
        tracing::info!(groups = loaded.len(), "group coordinator loaded");
        let (commands, rx) = mpsc::channel(1024);
        let actor = CoordinatorActor {
            config,
            groups: loaded,
            rx,
            partitions: Arc::clone(&partitions),
            clock: Arc::clone(&clock),
            start,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            next_token: 0,
            committed: Arc::clone(&committed),
        };
        tokio::spawn(actor.run(shutdown));
        Self {
            commands,
            partitions,
            clock,
            committed,
        }
    }

    /// Committed offsets for the lag metrics.
    pub fn committed_offsets(&self) -> CommittedOffsets {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether this coordinator holds `group`'s partition of `__consumer_offsets`.
    pub fn coordinates(&self, group: &str) -> bool {
        let index = partition_for(group, self.partitions.len() as i32) as usize;
        self.partitions.get(index).is_some_and(Option::is_some)
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
        .unwrap_or(SyncResult {
            error: Some(GroupError::CoordinatorNotAvailable),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        })
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
        self.write(&group, records)
            .await
            .map_err(CommitError::Write)?;
        self.ask(|reply| Command::ApplyCommit {
            group,
            offsets,
            reply,
        })
        .await
        .ok_or(CommitError::Group(GroupError::CoordinatorNotAvailable))
    }

    async fn write(&self, group: &str, records: Vec<Record>) -> Result<(), AppendError> {
        write_records(&self.partitions, group, records).await
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

async fn write_records(
    partitions: &[Option<PartitionHandle>],
    group: &str,
    records: Vec<Record>,
) -> Result<(), AppendError> {
    let index = partition_for(group, partitions.len() as i32) as usize;
    let Some(Some(partition)) = partitions.get(index) else {
        return Err(AppendError::Closed);
    };
    partition
        .append(build_batch(&records, ProducerInfo::NONE))
        .await
        .map(|_| ())
}

type Replayed = (
    String,
    Option<records::GroupValue>,
    BTreeMap<GroupPartition, CommittedOffset>,
);

/// Reads every record of `__consumer_offsets`, latest record per key winning.
fn replay(partitions: &[Option<PartitionHandle>]) -> Vec<Replayed> {
    let mut groups: BTreeMap<String, Replayed> = BTreeMap::new();
    for (index, partition) in partitions.iter().enumerate() {
        let Some(partition) = partition else { continue };
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
    partitions: Arc<Vec<Option<PartitionHandle>>>,
    clock: Arc<dyn Clock>,
    /// Monotonic time zero: group deadlines are milliseconds since then.
    start: Instant,
    joins: HashMap<Token, oneshot::Sender<JoinResult>>,
    syncs: HashMap<Token, oneshot::Sender<SyncResult>>,
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
        match command {
            Command::Join {
                group,
                request,
                reply,
            } => {
                let to = self.token();
                self.joins.insert(to, reply);
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
                self.syncs.insert(to, reply);
                let mut out = Vec::new();
                match self.groups.get_mut(&group) {
                    Some(g) => g.sync(request, to, now, wall, &mut out),
                    None => out.push(Output::Sync {
                        to,
                        result: SyncResult {
                            error: Some(GroupError::UnknownMemberId),
                            protocol_type: None,
                            protocol_name: None,
                            assignment: Bytes::new(),
                        },
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
                offsets,
                reply,
            } => {
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
            if let Err(error) = write_records(&self.partitions, group, vec![record]).await {
                tracing::error!(group, %error, "storing group metadata failed");
            }
        }
        for output in out {
            match output {
                Output::Join { to, result } => {
                    if let Some(reply) = self.joins.remove(&to) {
                        let _ = reply.send(result);
                    }
                }
                Output::Sync { to, result } => {
                    if let Some(reply) = self.syncs.remove(&to) {
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
        if let Err(error) = write_records(&self.partitions, id, tombstones).await {
            tracing::error!(group = id, %error, "writing group tombstones failed");
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
        if let Err(error) = write_records(&self.partitions, id, records).await {
            tracing::error!(group = id, %error, "writing offset tombstones failed");
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
            .filter(|g| g.state() == GroupState::Empty)
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
                if write_records(&self.partitions, &id, vec![record])
                    .await
                    .is_ok()
                {
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
