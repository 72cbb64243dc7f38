//! OffsetForLeaderEpoch (KIP-101, KIP-320): for each partition, the largest leader epoch at most
//! the one asked for that the log holds, and the offset where the next epoch begins (the log end
//! for the latest). A consumer that finds the end of the epoch it last read below its position
//! knows the log was truncated under it. Answered by the partition's leader, in the leader epoch
//! the client names (FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH and NOT_LEADER_OR_FOLLOWER as for
//! Fetch); an epoch the log cannot place is answered with epoch and offset -1, as Kafka does.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use kafka_protocol::error::ResponseError;

use super::{Context, leader_partition};
use crate::log::UNDEFINED_EPOCH_OFFSET;
use crate::security::acl::{Operation, ResourceType};

pub(super) fn handle(
    ctx: &Context,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let allowed = ctx.authorized(Operation::Describe, ResourceType::Topic, &topic.topic);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let (leader_epoch, end_offset) = UNDEFINED_EPOCH_OFFSET;
                    let answer = answer
                        .with_leader_epoch(leader_epoch)
                        .with_end_offset(end_offset);
                    if !allowed {
                        return answer
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match leader_partition(ctx, &topic.topic, p.partition, p.current_leader_epoch) {
                        Ok(handle) => {
                            let (epoch, end) = handle.reader().end_offset_for_epoch(p.leader_epoch);
                            answer.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        Err(not_served) => answer.with_error_code(not_served.code),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
