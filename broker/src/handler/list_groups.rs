//! ListGroups: every group this broker coordinates, optionally filtered by state (v4) and type
//! (v5; every Fjord group is a "classic" group).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{Context, group_error_code, str_bytes};
use crate::coordinator::GroupError;
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(ctx: &Context, request: ListGroupsRequest) -> ListGroupsResponse {
    let listed = match ctx.coordinator() {
        Some(coordinator) => coordinator.list().await,
        None => Err(GroupError::CoordinatorNotAvailable),
    };
    let groups = match listed {
        Ok(groups) => groups,
        Err(error) => {
            return ListGroupsResponse::default().with_error_code(group_error_code(error));
        }
    };
    let state_wanted = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
    };
    let type_wanted = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    // As Kafka: DESCRIBE on the cluster lists every group, otherwise those the client may
    // describe.
    let all = ctx.may(
        Operation::Describe,
        ResourceType::Cluster,
        crate::security::acl::CLUSTER_NAME,
    );
    let groups = groups
        .into_iter()
        .filter(|g| type_wanted && state_wanted(g.state.name()))
        .filter(|g| all || ctx.may(Operation::Describe, ResourceType::Group, &g.group_id))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(str_bytes(g.state.name()))
                .with_group_type(str_bytes("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
