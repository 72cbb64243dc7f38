//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{Context, group_error_code};
use crate::coordinator::GroupError;

pub(super) async fn handle(ctx: &Context, request: HeartbeatRequest) -> HeartbeatResponse {
    let result = match ctx.coordinator_for(&request.group_id) {
        Ok(coordinator) => {
            coordinator
                .heartbeat(
                    request.group_id.to_string(),
                    request.member_id.to_string(),
                    request.group_instance_id.as_ref().map(|id| id.to_string()),
                    request.generation_id,
                )
                .await
        }
        // Kafka's answer while the group's partition loads: the member just goes on.
        Err(GroupError::CoordinatorLoadInProgress) => Ok(()),
        Err(error) => Err(error),
    };
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, group_error_code))
}
