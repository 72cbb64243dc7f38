//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): move partitions to other
//! replicas, cancel a move, and list the moves running. Every broker takes them; each partition's
//! change is committed through the metadata quorum, conditional on the partition it read (see
//! [`crate::cluster::reassignment`]), and the answer comes once the reassignment has started: the
//! controller completes it when the new replicas are in sync.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{Context, str_bytes, topic_name};
use crate::broker::ReassignError;
use crate::cluster::reassignment::ReassignError as Refused;

pub(super) async fn alter(
    ctx: &Context,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // Version 0 has no flag: the replication factor may change, as it always could.
    let allow_change = version < 1 || request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let target: Option<Vec<i32>> = partition
                .replicas
                .map(|replicas| replicas.into_iter().map(|id| id.0).collect());
            let outcome = ctx
                .reassign_partition(
                    &name,
                    partition.partition_index,
                    target.as_deref(),
                    !allow_change,
                )
                .await;
            let (code, message) = match outcome {
                Ok(()) => (0, None),
                Err(error) => (
                    error_code(&error).code(),
                    Some(str_bytes(error.to_string())),
                ),
            };
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(code)
                    .with_error_message(message),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_change)
        .with_responses(responses)
}

fn error_code(error: &ReassignError) -> ResponseError {
    match error {
        ReassignError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
        ReassignError::Refused(Refused::InvalidAssignment(_)) => {
            ResponseError::InvalidReplicaAssignment
        }
        ReassignError::Refused(Refused::ReplicationFactorChange { .. }) => {
            ResponseError::InvalidReplicationFactor
        }
        ReassignError::Refused(Refused::NoneInProgress) => ResponseError::NoReassignmentInProgress,
        ReassignError::Metadata(error) => {
            tracing::warn!(%error, "a partition reassignment was not committed");
            ResponseError::RequestTimedOut
        }
    }
}

/// The reassignments running among the partitions asked for (no list: all of them). Partitions
/// not moving, and topics that do not exist, are left out, as Kafka does.
pub(super) fn list(
    ctx: &Context,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = ctx.image();
    let wanted: Vec<(&str, Option<&[i32]>)> = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| (t.name.0.as_str(), Some(t.partition_indexes.as_slice())))
            .collect(),
        None => image
            .topics
            .keys()
            .map(|name| (name.as_str(), None))
            .collect(),
    };
    let ids = |list: &[i32]| list.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, indexes) in wanted {
        let Some(topic) = image.topic(name) else {
            continue;
        };
        let partitions: Vec<OngoingPartitionReassignment> = (0..)
            .zip(&topic.partitions)
            .filter(|(index, partition)| {
                partition.is_reassigning() && indexes.is_none_or(|wanted| wanted.contains(index))
            })
            .map(|(index, partition)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(index)
                    .with_replicas(ids(&partition.replicas))
                    .with_adding_replicas(ids(&partition.adding))
                    .with_removing_replicas(ids(&partition.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(name))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
