//! ListOffsets: the earliest (-2) or latest (-1) offset, the record with the largest timestamp
//! (-3, v7+, KIP-734), the earliest local offset (-4, v8+: the earliest, as Fjord keeps every
//! segment locally), the latest tiered offset (-5, v9+: none, -1, as Kafka answers without tiered
//! storage), or the first offset at or after a timestamp. "Latest" is the high watermark, the end
//! of what consumers may read, and nothing at or above it is answered. A sentinel older than the
//! request's version is UNSUPPORTED_VERSION, as in Kafka. A leader whose high watermark has not
//! yet reached the start of its leader epoch answers OFFSET_NOT_AVAILABLE (KIP-207), so "latest"
//! never goes backwards across a leader change. Answered by the partition's leader, in
//! the leader epoch the client names; never by a follower, as in Kafka (a follower's high
//! watermark lags its leader's, so "latest" from one could be below what the leader gave).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::security::acl::{Operation, ResourceType};

use super::{Context, leader_partition, log_error_code};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// The first version that may ask for sentinel `timestamp` (Kafka's rule); `None` for a negative
/// timestamp that is no sentinel this broker knows.
fn sentinel_version(timestamp: i64) -> Option<i16> {
    match timestamp {
        LATEST | EARLIEST => Some(0),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL => Some(8),
        LATEST_TIERED => Some(9),
        _ => None,
    }
}

pub(super) async fn handle(
    ctx: &Context,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let ctx = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let allowed = ctx.authorized(Operation::Describe, ResourceType::Topic, &name);
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let response = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1);
                        if !allowed {
                            return response
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        }
                        let handle = match leader_partition(
                            &ctx,
                            &name,
                            p.partition_index,
                            p.current_leader_epoch,
                        ) {
                            Ok(handle) => handle,
                            Err(not_served) => return response.with_error_code(not_served.code),
                        };
                        // A broker not known current may have been replaced as leader: its high
                        // watermark may be behind the new leader's, and answering from it could
                        // move "latest" backwards (as Produce, it sends the client elsewhere).
                        if !ctx.metadata_current() {
                            return response
                                .with_error_code(ResponseError::NotLeaderOrFollower.code());
                        }
                        // KIP-207: a new leader's high watermark may lag the old leader's until
                        // its followers report in its epoch; answering from it could move
                        // "latest" backwards, so until then the answer is retriable.
                        let reader = handle.reader();
                        if let Some(epoch) = handle.leading_epoch()
                            && reader
                                .epoch_start(epoch)
                                .is_some_and(|start| handle.high_watermark() < start)
                        {
                            return response
                                .with_error_code(ResponseError::OffsetNotAvailable.code());
                        }
                        if p.timestamp < 0
                            && sentinel_version(p.timestamp).is_none_or(|first| version < first)
                        {
                            return response
                                .with_error_code(ResponseError::UnsupportedVersion.code());
                        }
                        let high_watermark = handle.high_watermark();
                        let found = match p.timestamp {
                            LATEST => return response.with_offset(high_watermark),
                            EARLIEST | EARLIEST_LOCAL => {
                                return response
                                    .with_offset(handle.reader().offsets().log_start_offset());
                            }
                            LATEST_TIERED => return response,
                            MAX_TIMESTAMP => handle.reader().max_timestamp_offset(high_watermark),
                            timestamp => handle.reader().offset_for_timestamp(timestamp),
                        };
                        match found {
                            Ok(Some(found)) if found.offset < high_watermark => response
                                .with_offset(found.offset)
                                .with_timestamp(found.timestamp),
                            Ok(_) => response,
                            Err(error) => response.with_error_code(log_error_code(&error)),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    })
    .await;
    result.unwrap_or_else(|error| {
        tracing::error!(%error, "list offsets task failed");
        ListOffsetsResponse::default()
    })
}
