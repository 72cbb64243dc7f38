//! JoinGroup: hand the request to the coordinator and wait (as long as the rebalance takes) for
//! the generation it completes.

use std::net::SocketAddr;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{Context, group_error_code, str_bytes, valid_group_id};
use crate::coordinator::{GroupError, JoinRequest};

pub(super) async fn handle(
    ctx: &Context,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let refuse = |error| {
        JoinGroupResponse::default()
            .with_error_code(group_error_code(error))
            .with_generation_id(-1)
            .with_member_id(request.member_id.clone())
    };
    let coordinator = match ctx.coordinator_for(&request.group_id) {
        Ok(coordinator) => coordinator,
        Err(error) => return refuse(error),
    };
    if !valid_group_id(&request.group_id) {
        return refuse(GroupError::InvalidGroupId);
    }
    if request
        .group_instance_id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 249)
    {
        return refuse(GroupError::InvalidRequest);
    }
    // Member ids are "<client id>-<uuid>", as in Kafka; a long client id is shortened.
    let prefix = request
        .group_instance_id
        .as_deref()
        .unwrap_or(client_id)
        .chars()
        .take(200)
        .collect::<String>();
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        client_id: client_id.chars().take(1000).collect(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // Version 0 has no rebalance timeout: the session timeout serves for both.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        new_member_id: format!("{prefix}-{}", uuid::Uuid::new_v4()),
    };
    let result = coordinator.join(request.group_id.to_string(), join).await;
    JoinGroupResponse::default()
        .with_error_code(result.error.map_or(0, group_error_code))
        .with_generation_id(result.generation)
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(result.protocol_name.map(str_bytes))
        .with_leader(str_bytes(result.leader))
        .with_skip_assignment(result.skip_assignment && version >= 9)
        .with_member_id(str_bytes(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.instance_id.map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
