//! DescribeGroups: state, protocol and members (with subscription and assignment once the group
//! is stable). An unknown group is described as Dead, as Kafka does, and from version 6 also
//! answered with GROUP_ID_NOT_FOUND (KIP-1043).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{Context, group_error_code, str_bytes};
use crate::coordinator::{GroupError, GroupState};
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(
    ctx: &Context,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    // As Kafka: a group the client may not describe is GROUP_AUTHORIZATION_FAILED.
    let (allowed, ids) = super::authorized_groups(ctx, Operation::Describe, &request.groups);
    let described = match ctx.coordinator() {
        Some(coordinator) if !ids.is_empty() => coordinator.describe(ids).await,
        Some(_) => Ok(Vec::new()),
        None => Err(GroupError::CoordinatorNotAvailable),
    };
    // What the client may do on each group, when asked for (v3+); Kafka's "not asked" value
    // otherwise.
    let operations = |group: &str| {
        if version >= 3 && request.include_authorized_operations {
            ctx.authorized_operations(ResourceType::Group, group)
        } else {
            i32::MIN
        }
    };
    let refused = |id, code| {
        DescribedGroup::default()
            .with_group_id(id)
            .with_error_code(code)
            .with_authorized_operations(i32::MIN)
    };
    let groups = match described {
        Ok(groups) => {
            let mut groups = groups.into_iter().map(|g| {
                let unknown = version >= 6 && g.state == GroupState::Dead;
                let described = DescribedGroup::default();
                let described = if unknown {
                    described
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes(format!(
                            "Group {} not found.",
                            g.group_id
                        ))))
                } else {
                    described
                };
                let authorized = operations(&g.group_id);
                described
                    .with_authorized_operations(authorized)
                    .with_group_id(kafka_protocol::messages::GroupId(str_bytes(g.group_id)))
                    .with_group_state(str_bytes(g.state.name()))
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_protocol_data(str_bytes(g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    )
            });
            request
                .groups
                .into_iter()
                .zip(allowed)
                .filter_map(|(id, allowed)| {
                    if allowed {
                        groups.next()
                    } else {
                        Some(refused(id, ResponseError::GroupAuthorizationFailed.code()))
                    }
                })
                .collect()
        }
        Err(error) => request
            .groups
            .into_iter()
            .map(|id| refused(id, group_error_code(error)))
            .collect(),
    };
    DescribeGroupsResponse::default().with_groups(groups)
}
