//! SyncGroup: the leader brings the assignment; every member waits for its share.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{Context, group_error_code, str_bytes};
use crate::coordinator::{GroupError, SyncRequest};

pub(super) async fn handle(ctx: &Context, request: SyncGroupRequest) -> SyncGroupResponse {
    let coordinator = match ctx.coordinator_for(&request.group_id) {
        Ok(coordinator) => coordinator,
        // Kafka's answer while the group's partition loads: the member joins again.
        Err(GroupError::CoordinatorLoadInProgress) => {
            return SyncGroupResponse::default()
                .with_error_code(group_error_code(GroupError::RebalanceInProgress));
        }
        Err(error) => return SyncGroupResponse::default().with_error_code(group_error_code(error)),
    };
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|p| p.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|p| p.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let result = coordinator.sync(request.group_id.to_string(), sync).await;
    SyncGroupResponse::default()
        .with_error_code(result.error.map_or(0, group_error_code))
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(result.protocol_name.map(str_bytes))
        .with_assignment(result.assignment)
}
