//! OffsetFetch: a group's committed offsets (-1 where none), for named partitions or all of
//! them; version 8 and later ask for several groups at once.

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

use super::{Context, group_error_code, str_bytes, topic_name};
use kafka_protocol::error::ResponseError;

use crate::coordinator::{CommittedOffset, GroupPartition};
use crate::security::acl::{Operation, ResourceType};

/// A partition's committed offset, if any, or the error code it is answered with.
type Answer = Result<Option<CommittedOffset>, i16>;

/// A topic's partitions with their answers.
type TopicOffsets = (String, Vec<(i32, Answer)>);

/// The group's partitions with their answers, or the group's error code.
type Fetched = Result<Vec<(GroupPartition, Answer)>, i16>;

pub(super) async fn handle(
    ctx: &Context,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            groups.push(fetch_group(ctx, group).await);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    match fetch(ctx, &request.group_id, wanted).await {
        Ok(offsets) => {
            let topics = by_topic(offsets)
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(partition, answer)| {
                                    let (offset, epoch, metadata, code) = fields(answer);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(partition)
                                        .with_error_code(code)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(metadata)))
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
    }
}

async fn fetch_group(ctx: &Context, group: OffsetFetchRequestGroup) -> OffsetFetchResponseGroup {
    let wanted = group.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    let response = OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone());
    match fetch(ctx, &group.group_id, wanted).await {
        Ok(offsets) => response.with_topics(
            by_topic(offsets)
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(partition, answer)| {
                                    let (offset, epoch, metadata, code) = fields(answer);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(partition)
                                        .with_error_code(code)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(code) => response.with_error_code(code),
    }
}

/// As Kafka: DESCRIBE on the group, or GROUP_AUTHORIZATION_FAILED; a partition of a topic the
/// client may not describe is TOPIC_AUTHORIZATION_FAILED when named, and left out when all are
/// asked for.
async fn fetch(ctx: &Context, group: &GroupId, wanted: Option<Vec<GroupPartition>>) -> Fetched {
    if !ctx.authorized(Operation::Describe, ResourceType::Group, group) {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    let describable = |topic: &str| ctx.may(Operation::Describe, ResourceType::Topic, topic);
    let (wanted, denied) = match wanted {
        Some(wanted) => {
            let (allowed, denied): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(topic, _)| {
                ctx.authorized(Operation::Describe, ResourceType::Topic, topic)
            });
            (Some(allowed), denied)
        }
        None => (None, Vec::new()),
    };
    let coordinator = ctx.coordinator_for(group).map_err(group_error_code)?;
    let fetched = coordinator
        .fetch_offsets(group.to_string(), wanted)
        .await
        .map_err(group_error_code)?;
    Ok(fetched
        .into_iter()
        .filter(|((topic, _), _)| describable(topic))
        .map(|(partition, committed)| (partition, Ok(committed)))
        .chain(denied.into_iter().map(|partition| {
            (
                partition,
                Err(ResponseError::TopicAuthorizationFailed.code()),
            )
        }))
        .collect())
}

/// Groups the answer by topic, keeping the request's order of topics.
fn by_topic(offsets: Vec<(GroupPartition, Answer)>) -> Vec<TopicOffsets> {
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for ((topic, partition), committed) in offsets {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, partitions)) => partitions.push((partition, committed)),
            None => topics.push((topic, vec![(partition, committed)])),
        }
    }
    topics
}

/// Offset, leader epoch, metadata and error code; -1, -1 and "" where nothing was committed or
/// the partition is refused.
fn fields(answer: Answer) -> (i64, i32, String, i16) {
    match answer {
        Ok(Some(c)) => (c.offset, c.leader_epoch, c.metadata, 0),
        Ok(None) => (-1, -1, String::new(), 0),
        Err(code) => (-1, -1, String::new(), code),
    }
}
