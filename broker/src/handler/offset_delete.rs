//! OffsetDelete: removes a group's committed offsets for partitions of topics its members are
//! not subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use kafka_protocol::error::ResponseError;

use super::{Context, group_error_code};
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(ctx: &Context, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    // As Kafka: READ on each topic, or TOPIC_AUTHORIZATION_FAILED (DELETE on the group is
    // checked before the request gets here).
    let allowed: Vec<bool> = request
        .topics
        .iter()
        .map(|t| ctx.authorized(Operation::Read, ResourceType::Topic, &t.name))
        .collect();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .flat_map(|(t, _)| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let result = match ctx.coordinator_for(&request.group_id) {
        Ok(coordinator) => {
            coordinator
                .delete_offsets(request.group_id.to_string(), partitions)
                .await
        }
        Err(error) => Err(error),
    };
    let mut results = match result {
        Ok(results) => results.into_iter(),
        Err(error) => {
            return OffsetDeleteResponse::default().with_error_code(group_error_code(error));
        }
    };
    let topics = request
        .topics
        .into_iter()
        .zip(allowed)
        .map(|(topic, allowed)| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if allowed {
                        results
                            .next()
                            .and_then(Result::err)
                            .map_or(0, group_error_code)
                    } else {
                        ResponseError::TopicAuthorizationFailed.code()
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
