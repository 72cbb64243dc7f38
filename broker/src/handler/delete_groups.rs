//! DeleteGroups: an empty group and its committed offsets are removed (tombstones in
//! `__consumer_offsets`); a group with members gets NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{Context, group_error_code};
use crate::coordinator::GroupError;

pub(super) async fn handle(ctx: &Context, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let ids: Vec<String> = request.groups_names.iter().map(|g| g.to_string()).collect();
    let results = match ctx.coordinator() {
        Some(coordinator) => coordinator.delete(ids).await,
        None => vec![Err(GroupError::CoordinatorNotAvailable); ids.len()],
    };
    DeleteGroupsResponse::default().with_results(
        request
            .groups_names
            .into_iter()
            .zip(results)
            .map(|(group_id, result)| {
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(result.err().map_or(0, group_error_code))
            })
            .collect(),
    )
}
