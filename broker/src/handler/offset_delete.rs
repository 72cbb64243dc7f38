//! OffsetDelete: removes a group's committed offsets for partitions of topics its members are
//! not subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{Context, group_error_code};

pub(super) async fn handle(ctx: &Context, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
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
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = results
                        .next()
                        .and_then(Result::err)
                        .map_or(0, group_error_code);
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
