//! Request handlers, one file per API key, behind one `dispatch` match; [`start`] splits a
//! request into the part a connection runs in request order and the rest, which overlaps with
//! later requests (a produce's wait for its acknowledgement). Handlers get a [`Context`] (the
//! metadata image as the request found it, the hosted partitions, the coordinator, settings,
//! metrics and the metadata write path), not the broker, and are tested by calling them with a
//! context over any image (`tests.rs`). Per-partition failures become Kafka error codes in the
//! response; handlers never fail the connection.

mod acls;
mod alter_replica_log_dirs;
mod api_versions;
mod authorize;
mod configs;
mod context;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_config_resources;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod partition_reassignments;
mod produce;
mod sync_group;
mod user_scram_credentials;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::coordinator::{CommitError, GroupError};
use crate::log;
use crate::partition::AppendError;
use crate::protocol::Request;
use crate::record::BatchError;
use crate::security::Session;

pub use api_versions::unsupported_version_response;
pub use context::Context;

/// What is left of a request once it has started: its response (`None`: none is sent).
pub type Pending = Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>;

/// Starts a request: runs the part whose order matters among a connection's requests and returns
/// the rest, which may overlap with the connection's later requests. A produce has started once
/// its batches hold their places in their partitions' append queues, and the rest is waiting for
/// their acknowledgement; every other request runs whole in its start.
pub async fn start(broker: &Arc<Broker>, request: Request, session: &Session) -> Pending {
    start_with(&Context::new(broker).for_session(session), request, session).await
}

/// [`start`] with a given view of the broker.
pub async fn start_with(ctx: &Context, request: Request, session: &Session) -> Pending {
    let version = request.version;
    let client_id = request
        .header
        .client_id
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let whole = match request.body {
        RequestKind::Produce(req) => {
            let acknowledged = produce::start(ctx, req, version).await;
            return Box::pin(async move { acknowledged.await.map(ResponseKind::Produce) });
        }
        body => dispatch(ctx, body, version, &client_id, session).await,
    };
    Box::pin(std::future::ready(whole))
}

/// Handles one request other than Produce whole (from [`start`]) for the client of `session`.
async fn dispatch(
    ctx: &Context,
    body: RequestKind,
    version: i16,
    client_id: &str,
    session: &Session,
) -> Option<ResponseKind> {
    if let Some(denied) = authorize::denied(ctx, &body) {
        return Some(denied);
    }
    match body {
        RequestKind::ApiVersions(_) => Some(ResponseKind::ApiVersions(api_versions::handle())),
        RequestKind::Metadata(req) => Some(ResponseKind::Metadata(
            metadata::handle(ctx, req, version).await,
        )),
        RequestKind::Fetch(req) => {
            Some(ResponseKind::Fetch(fetch::handle(ctx, req, version).await))
        }
        RequestKind::ListOffsets(req) => Some(ResponseKind::ListOffsets(
            list_offsets::handle(ctx, req, version).await,
        )),
        RequestKind::OffsetForLeaderEpoch(req) => Some(ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(ctx, &req),
        )),
        RequestKind::DescribeConfigs(req) => {
            Some(ResponseKind::DescribeConfigs(configs::describe(ctx, &req)))
        }
        RequestKind::AlterConfigs(req) => {
            Some(ResponseKind::AlterConfigs(configs::alter(ctx, req).await))
        }
        RequestKind::IncrementalAlterConfigs(req) => Some(ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter(ctx, req).await,
        )),
        RequestKind::DeleteRecords(req) => Some(ResponseKind::DeleteRecords(
            delete_records::handle(ctx, req).await,
        )),
        RequestKind::DescribeCluster(req) => Some(ResponseKind::DescribeCluster(
            describe_cluster::handle(ctx, &req),
        )),
        RequestKind::DescribeQuorum(req) => Some(ResponseKind::DescribeQuorum(
            describe_quorum::handle(ctx, &req, version),
        )),
        RequestKind::DescribeLogDirs(req) => Some(ResponseKind::DescribeLogDirs(
            describe_log_dirs::handle(ctx, &req),
        )),
        RequestKind::AlterReplicaLogDirs(req) => Some(ResponseKind::AlterReplicaLogDirs(
            alter_replica_log_dirs::handle(ctx, &req),
        )),
        RequestKind::ElectLeaders(req) => Some(ResponseKind::ElectLeaders(
            elect_leaders::handle(ctx, req).await,
        )),
        RequestKind::AlterPartitionReassignments(req) => {
            Some(ResponseKind::AlterPartitionReassignments(
                partition_reassignments::alter(ctx, req, version).await,
            ))
        }
        RequestKind::ListPartitionReassignments(req) => Some(
            ResponseKind::ListPartitionReassignments(partition_reassignments::list(ctx, &req)),
        ),
        RequestKind::DescribeUserScramCredentials(req) => Some(
            ResponseKind::DescribeUserScramCredentials(user_scram_credentials::describe(ctx, &req)),
        ),
        RequestKind::AlterUserScramCredentials(req) => Some(
            ResponseKind::AlterUserScramCredentials(user_scram_credentials::alter(ctx, req).await),
        ),
        RequestKind::CreateAcls(req) => {
            Some(ResponseKind::CreateAcls(acls::create(ctx, req).await))
        }
        RequestKind::DescribeAcls(req) => {
            Some(ResponseKind::DescribeAcls(acls::describe(ctx, &req)))
        }
        RequestKind::DeleteAcls(req) => {
            Some(ResponseKind::DeleteAcls(acls::delete(ctx, req).await))
        }
        RequestKind::ListConfigResources(req) => Some(ResponseKind::ListConfigResources(
            list_config_resources::handle(ctx, &req, version),
        )),
        RequestKind::DescribeTopicPartitions(req) => Some(ResponseKind::DescribeTopicPartitions(
            describe_topic_partitions::handle(ctx, &req),
        )),
        RequestKind::DeleteTopics(req) => Some(ResponseKind::DeleteTopics(
            delete_topics::handle(ctx, req, version).await,
        )),
        RequestKind::CreatePartitions(req) => Some(ResponseKind::CreatePartitions(
            create_partitions::handle(ctx, req).await,
        )),
        RequestKind::InitProducerId(req) => Some(ResponseKind::InitProducerId(
            init_producer_id::handle(ctx, req).await,
        )),
        RequestKind::CreateTopics(req) => Some(ResponseKind::CreateTopics(
            create_topics::handle(ctx, req).await,
        )),
        RequestKind::FindCoordinator(req) => Some(ResponseKind::FindCoordinator(
            find_coordinator::handle(ctx, req, version),
        )),
        RequestKind::JoinGroup(req) => Some(ResponseKind::JoinGroup(
            join_group::handle(ctx, req, version, client_id, session.peer).await,
        )),
        RequestKind::SyncGroup(req) => {
            Some(ResponseKind::SyncGroup(sync_group::handle(ctx, req).await))
        }
        RequestKind::Heartbeat(req) => {
            Some(ResponseKind::Heartbeat(heartbeat::handle(ctx, req).await))
        }
        RequestKind::LeaveGroup(req) => Some(ResponseKind::LeaveGroup(
            leave_group::handle(ctx, req, version).await,
        )),
        RequestKind::OffsetCommit(req) => Some(ResponseKind::OffsetCommit(
            offset_commit::handle(ctx, req).await,
        )),
        RequestKind::OffsetFetch(req) => Some(ResponseKind::OffsetFetch(
            offset_fetch::handle(ctx, req, version).await,
        )),
        RequestKind::ListGroups(req) => Some(ResponseKind::ListGroups(
            list_groups::handle(ctx, req).await,
        )),
        RequestKind::DescribeGroups(req) => Some(ResponseKind::DescribeGroups(
            describe_groups::handle(ctx, req, version).await,
        )),
        RequestKind::DeleteGroups(req) => Some(ResponseKind::DeleteGroups(
            delete_groups::handle(ctx, req).await,
        )),
        RequestKind::OffsetDelete(req) => Some(ResponseKind::OffsetDelete(
            offset_delete::handle(ctx, req).await,
        )),
        // The version table admits only the APIs above (and Produce, which `start` takes), so
        // decoding never yields another.
        other => {
            tracing::error!(
                "no handler for a decoded request: {:?}",
                std::mem::discriminant(&other)
            );
            None
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A request's config entries as a map; entries without a value are left out.
fn config_map<'a>(
    entries: impl IntoIterator<Item = (&'a StrBytes, Option<&'a StrBytes>)>,
) -> std::collections::BTreeMap<String, String> {
    entries
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_string(), v.to_string())))
        .collect()
}

pub(crate) fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Internal topics belong to the broker: clients may read them, not write, delete or grow them.
fn internal_topic_error(topic: &str, action: &str) -> Option<(i16, StrBytes)> {
    (topic == crate::coordinator::OFFSETS_TOPIC).then(|| {
        (
            ResponseError::InvalidTopicException.code(),
            str_bytes(format!("cannot {action} the internal topic {topic}")),
        )
    })
}

/// Group ids are non-empty and fit the `__consumer_offsets` record schemas.
fn valid_group_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= i16::MAX as usize
}

/// Which of `groups` the client may do `operation` on (in order), and those groups' ids.
fn authorized_groups(
    ctx: &Context,
    operation: crate::security::acl::Operation,
    groups: &[kafka_protocol::messages::GroupId],
) -> (Vec<bool>, Vec<String>) {
    let allowed: Vec<bool> = groups
        .iter()
        .map(|g| ctx.authorized(operation, crate::security::acl::ResourceType::Group, g))
        .collect();
    let ids = groups
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .map(|(g, _)| g.to_string())
        .collect();
    (allowed, ids)
}

/// The Kafka error code for a refused group request.
fn group_error_code(error: GroupError) -> i16 {
    match error {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidRequest => ResponseError::InvalidRequest,
    }
    .code()
}

/// The Kafka error code for a failed offset commit, as Kafka maps its write errors: the
/// client looks for the coordinator again if this broker stopped leading the group's partition,
/// and retries otherwise.
fn commit_error_code(error: &CommitError) -> i16 {
    match error {
        CommitError::Group(error) => group_error_code(*error),
        CommitError::Write(error) if error.moved() => ResponseError::NotCoordinator.code(),
        CommitError::Write(_) => ResponseError::CoordinatorNotAvailable.code(),
    }
}

/// The registrations of `leaders` (ids, -1 for none, in any order and repeated), each once:
/// the endpoints KIP-951 puts in Produce (v10+) and Fetch (v16+) responses next to partitions
/// this broker does not lead, so a client goes straight to the new leader.
pub(crate) fn leader_endpoints(
    ctx: &Context,
    leaders: impl IntoIterator<Item = i32>,
) -> impl Iterator<Item = (&crate::cluster::BrokerRegistration, (&str, i32))> {
    let ids: BTreeSet<i32> = leaders.into_iter().filter(|id| *id >= 0).collect();
    let image = ctx.image();
    ids.into_iter().filter_map(move |id| {
        let broker = image.brokers.get(&id)?;
        Some((broker, ctx.endpoint(broker)?))
    })
}

/// Why a partition request cannot be served by this broker: Kafka's error code, and the leader
/// and leader epoch the metadata names (-1: none), for the client to go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotServed {
    pub(crate) code: i16,
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
}

/// The hosted partition `topic`-`partition` if this broker leads it, in the leader epoch the
/// client names (`current_leader_epoch`: -1 for any). Kafka's checks in Kafka's order: a partition
/// the metadata does not know is UNKNOWN_TOPIC_OR_PARTITION; an older epoch than the partition's
/// is FENCED_LEADER_EPOCH (the client's leader was replaced), a newer one UNKNOWN_LEADER_EPOCH
/// (this broker has not caught up yet); a partition led by another broker, or by none, is
/// NOT_LEADER_OR_FOLLOWER.
pub(crate) fn leader_partition(
    ctx: &Context,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<crate::partition::PartitionHandle, NotServed> {
    readable_partition(ctx, topic, partition, current_leader_epoch, false).map(|(handle, _)| handle)
}

/// Like [`leader_partition`], and with `followers` also a replica this broker follows (KIP-392:
/// a consumer reading from the replica in its rack), which serves reads up to its own high
/// watermark. Returns the handle and whether this broker leads the partition.
pub(crate) fn readable_partition(
    ctx: &Context,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    followers: bool,
) -> Result<(crate::partition::PartitionHandle, bool), NotServed> {
    let Some(known) = ctx.topic(topic).and_then(|t| t.partition(partition)) else {
        return Err(NotServed {
            code: ResponseError::UnknownTopicOrPartition.code(),
            leader: -1,
            leader_epoch: -1,
        });
    };
    let not_served = |error: ResponseError| NotServed {
        code: error.code(),
        leader: known.leader,
        leader_epoch: known.leader_epoch,
    };
    if current_leader_epoch >= 0 && current_leader_epoch < known.leader_epoch {
        return Err(not_served(ResponseError::FencedLeaderEpoch));
    }
    if current_leader_epoch > known.leader_epoch {
        return Err(not_served(ResponseError::UnknownLeaderEpoch));
    }
    let node = ctx.node_id();
    match ctx.partition(topic, partition) {
        Some(handle) if known.leader == node => Ok((handle, true)),
        Some(handle) if followers && known.replicas.contains(&node) => Ok((handle, false)),
        _ => Err(not_served(ResponseError::NotLeaderOrFollower)),
    }
}

/// The Kafka error code for a failed append.
fn append_error_code(error: &AppendError) -> i16 {
    match error {
        AppendError::Log(error) => log_error_code(error),
        AppendError::Closed | AppendError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
        AppendError::UnknownProducerId => ResponseError::UnknownProducerId.code(),
        AppendError::IdempotentBatchCount { .. } => ResponseError::InvalidRecord.code(),
    }
}

/// The Kafka error code for a log error.
pub(crate) fn log_error_code(error: &log::Error) -> i16 {
    match error {
        log::Error::InvalidBatch {
            source: BatchError::CrcMismatch { .. },
            ..
        } => ResponseError::CorruptMessage.code(),
        log::Error::InvalidBatch {
            source: BatchError::UnsupportedMagic { .. },
            ..
        } => ResponseError::UnsupportedForMessageFormat.code(),
        log::Error::InvalidBatch { .. } | log::Error::EmptyAppend => {
            ResponseError::CorruptMessage.code()
        }
        log::Error::BatchTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        log::Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        log::Error::LogStartBeyondEnd { .. }
        | log::Error::TruncateBelowStart { .. }
        | log::Error::NotContiguous { .. } => ResponseError::OffsetOutOfRange.code(),
        // Kafka 3.x: INVALID_RECORD, with the records named in the response's record errors.
        log::Error::RecordsWithoutKey { .. } => ResponseError::InvalidRecord.code(),
        log::Error::TimestampOutOfRange { .. } => ResponseError::InvalidTimestamp.code(),
        log::Error::CorruptBatch { .. } | log::Error::Io { .. } | log::Error::Flush(_) => {
            ResponseError::KafkaStorageError.code()
        }
        // Compaction's own failures never answer a request.
        log::Error::CompactionCancelled | log::Error::RewriteBatch { .. } => {
            ResponseError::UnknownServerError.code()
        }
    }
}

#[cfg(test)]
mod tests;
