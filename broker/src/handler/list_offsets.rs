//! ListOffsets: the earliest (-2) or latest (-1) offset, or the first offset at or after a
//! timestamp. "Latest" is the high watermark, the end of what consumers may read. Answered by the
//! partition's leader, in the leader epoch the client names.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Context, leader_partition, log_error_code};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub(super) async fn handle(ctx: &Context, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let ctx = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let response = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1);
                        let handle = match leader_partition(
                            &ctx,
                            &name,
                            p.partition_index,
                            p.current_leader_epoch,
                        ) {
                            Ok(handle) => handle,
                            Err(not_served) => return response.with_error_code(not_served.code),
                        };
                        match p.timestamp {
                            LATEST => response.with_offset(handle.high_watermark()),
                            EARLIEST => {
                                response.with_offset(handle.reader().offsets().log_start_offset())
                            }
                            timestamp if timestamp < 0 => {
                                response.with_error_code(ResponseError::UnsupportedVersion.code())
                            }
                            timestamp => match handle.reader().offset_for_timestamp(timestamp) {
                                Ok(Some(found)) if found.offset < handle.high_watermark() => {
                                    response
                                        .with_offset(found.offset)
                                        .with_timestamp(found.timestamp)
                                }
                                Ok(_) => response,
                                Err(error) => response.with_error_code(log_error_code(&error)),
                            },
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
