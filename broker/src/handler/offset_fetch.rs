//! OffsetFetch: a group's committed offsets (-1 where none), for named partitions or all of
//! them; version 8 and later ask for several groups at once.

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

use super::{Context, group_error_code, str_bytes, topic_name};
use crate::coordinator::{CommittedOffset, GroupError, GroupPartition};

/// A topic's partitions with their committed offsets.
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

type Fetched = Result<Vec<(GroupPartition, Option<CommittedOffset>)>, GroupError>;

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
                                .map(|(partition, committed)| {
                                    let (offset, epoch, metadata) = fields(committed);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(partition)
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
        Err(error) => OffsetFetchResponse::default().with_error_code(group_error_code(error)),
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
                                .map(|(partition, committed)| {
                                    let (offset, epoch, metadata) = fields(committed);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(partition)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(error) => response.with_error_code(group_error_code(error)),
    }
}

async fn fetch(ctx: &Context, group: &GroupId, wanted: Option<Vec<GroupPartition>>) -> Fetched {
    let coordinator = ctx.coordinator_for(group)?;
    coordinator.fetch_offsets(group.to_string(), wanted).await
}

/// Groups the answer by topic, keeping the request's order of topics.
fn by_topic(offsets: Vec<(GroupPartition, Option<CommittedOffset>)>) -> Vec<TopicOffsets> {
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for ((topic, partition), committed) in offsets {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, partitions)) => partitions.push((partition, committed)),
            None => topics.push((topic, vec![(partition, committed)])),
        }
    }
    topics
}

/// Offset, leader epoch and metadata; -1, -1 and "" where nothing was committed.
fn fields(committed: Option<CommittedOffset>) -> (i64, i32, String) {
    committed.map_or((-1, -1, String::new()), |c| {
        (c.offset, c.leader_epoch, c.metadata)
    })
}
