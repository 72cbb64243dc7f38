//! DescribeTopicPartitions (KIP-966): the partitions of the topics asked for, as the metadata
//! image records them, in pages. Topics are answered in name order; a page holds at most
//! `response_partition_limit` partitions (and at most 2000, Kafka's
//! `max.request.partition.size.limit`), and when more remain `next_cursor` names the topic and
//! partition to start the next page from. Fjord keeps no eligible leader replicas (ELR): those
//! fields are empty.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

use super::Context;
use super::metadata::{offline_replicas, partition_error};
use super::topic_name;
use crate::security::acl::{Operation, ResourceType};

/// Kafka's `max.request.partition.size.limit`: the most partitions one page holds.
const MAX_PAGE: i32 = 2000;

pub(super) fn handle(
    ctx: &Context,
    request: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = ctx.image();
    let mut names: Vec<String> = request.topics.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names.dedup();
    let (start_topic, start_partition) = request.cursor.as_ref().map_or((None, 0), |c| {
        (Some(c.topic_name.to_string()), c.partition_index.max(0))
    });
    let mut budget = request.response_partition_limit.clamp(1, MAX_PAGE);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if start_topic.as_ref().is_some_and(|start| &name < start) {
            continue;
        }
        let first = if start_topic.as_ref() == Some(&name) {
            start_partition
        } else {
            0
        };
        if !ctx.authorized(Operation::Describe, ResourceType::Topic, &name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        let Some(topic) = image.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        let cursor = |index: i32| {
            Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(index),
            )
        };
        if budget == 0 {
            next_cursor = cursor(first);
            break;
        }
        let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let mut partitions = Vec::new();
        for (index, partition) in (0..).zip(&topic.partitions).skip(first as usize) {
            if budget == 0 {
                next_cursor = cursor(index);
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(partition_error(partition))
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(partition.leader))
                    .with_leader_epoch(partition.leader_epoch)
                    .with_replica_nodes(ids(&partition.replicas))
                    .with_isr_nodes(ids(&partition.isr))
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(ids(&offline_replicas(image, partition))),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id)
                .with_is_internal(name.starts_with("__"))
                .with_partitions(partitions)
                // The request has no flag for it: always there, as Kafka answers.
                .with_topic_authorized_operations(
                    ctx.authorized_operations(ResourceType::Topic, &name),
                ),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
