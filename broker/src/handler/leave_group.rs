//! LeaveGroup: one member (v0-2) or a batch of members, by member id or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{Context, group_error_code};

pub(super) async fn handle(
    ctx: &Context,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let result = match ctx.coordinator_for(&request.group_id) {
        Ok(coordinator) => {
            coordinator
                .leave(request.group_id.to_string(), leaving)
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Err(error) => LeaveGroupResponse::default().with_error_code(group_error_code(error)),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(results)
                .map(|(member, result)| {
                    MemberResponse::default()
                        .with_member_id(member.member_id)
                        .with_group_instance_id(member.group_instance_id)
                        .with_error_code(result.err().map_or(0, group_error_code))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default().with_error_code(
            results
                .into_iter()
                .next()
                .and_then(Result::err)
                .map_or(0, group_error_code),
        ),
    }
}
