//! DeleteRecords: move each partition's log start offset (its low watermark) up to the given
//! offset, at most the high watermark (-1 means the high watermark). Whole segments below it are
//! deleted; reads below it get OFFSET_OUT_OF_RANGE.

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Context, leader_partition, log_error_code};
use crate::partition::DeleteRecordsError;
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(ctx: &Context, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request.topics.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let allowed = ctx.authorized(Operation::Delete, ResourceType::Topic, &name);
        let partitions = topic.partitions.into_iter().map(|p| {
            let name = name.clone();
            async move {
                let result = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                if !allowed {
                    return result.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                let partition = match leader_partition(ctx, &name, p.partition_index, -1) {
                    Ok(partition) => partition,
                    Err(not_served) => return result.with_error_code(not_served.code),
                };
                match partition.delete_records_before(p.offset).await {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark),
                    Err(error) => {
                        let code = match &error {
                            DeleteRecordsError::OffsetOutOfRange { .. } => {
                                ResponseError::OffsetOutOfRange.code()
                            }
                            DeleteRecordsError::CompactedTopic => {
                                ResponseError::PolicyViolation.code()
                            }
                            DeleteRecordsError::Log(error) => log_error_code(error),
                            DeleteRecordsError::Closed => ResponseError::NotLeaderOrFollower.code(),
                        };
                        result.with_error_code(code)
                    }
                }
            }
        });
        DeleteRecordsTopicResult::default()
            .with_name(topic.name.clone())
            .with_partitions(join_all(partitions).await)
    });
    DeleteRecordsResponse::default().with_topics(join_all(topics).await)
}
