//! OffsetCommit: validated against the group's generation, written durably to
//! `__consumer_offsets`, then visible to OffsetFetch. A consumer outside the group protocol
//! (generation -1) may commit for an empty group. The v2-v4 retention time is ignored: offsets
//! expire by the broker's `offsets.retention.minutes`, as in Kafka 2.1 and later.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{Context, commit_error_code, group_error_code, valid_group_id};
use crate::coordinator::{CommittedOffset, GroupError, GroupPartition};
use crate::security::acl::{Operation, ResourceType};

/// Longest commit metadata accepted (`offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

pub(super) async fn handle(ctx: &Context, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let coordinator = ctx.coordinator_for(&request.group_id);
    let now = coordinator.as_ref().map_or(0, |c| c.now_ms());
    // As Kafka: READ on the group, then READ on each topic.
    let upfront = if !ctx.authorized(Operation::Read, ResourceType::Group, &request.group_id) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else if let Err(error) = coordinator {
        Some(group_error_code(error))
    } else if !valid_group_id(&request.group_id) {
        Some(group_error_code(GroupError::InvalidGroupId))
    } else {
        None
    };
    // Per partition: an error decided here, or the offset to write.
    let mut codes: Vec<Vec<Option<i16>>> = Vec::with_capacity(request.topics.len());
    let mut offsets: Vec<(GroupPartition, CommittedOffset)> = Vec::new();
    let image = ctx.image();
    for topic in &request.topics {
        // Known to the cluster, wherever its partitions are hosted.
        let known = image.topic(&topic.name);
        let allowed =
            upfront.is_some() || ctx.authorized(Operation::Read, ResourceType::Topic, &topic.name);
        let mut topic_codes = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or_default();
            let code = if upfront.is_some() {
                upfront
            } else if !allowed {
                Some(ResponseError::TopicAuthorizationFailed.code())
            } else if known.is_none_or(|t| t.partition(p.partition_index).is_none()) {
                Some(ResponseError::UnknownTopicOrPartition.code())
            } else if metadata.len() > MAX_METADATA_BYTES {
                Some(ResponseError::OffsetMetadataTooLarge.code())
            } else {
                offsets.push((
                    (topic.name.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_owned(),
                        commit_timestamp: now,
                    },
                ));
                None
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    let written = match (coordinator, upfront) {
        (Ok(coordinator), None) => coordinator
            .commit(
                request.group_id.to_string(),
                request.member_id.to_string(),
                request.group_instance_id.as_ref().map(|id| id.to_string()),
                request.generation_id_or_member_epoch,
                offsets,
            )
            .await
            .err()
            .map_or(0, |error| {
                tracing::debug!(group = %request.group_id.as_str(), %error, "offset commit refused");
                commit_error_code(&error)
            }),
        _ => 0,
    };
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, codes)| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .zip(codes)
                        .map(|(p, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.unwrap_or(written))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
