//! DeleteGroups: an empty group and its committed offsets are removed (tombstones in
//! `__consumer_offsets`); a group with members gets NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{Context, group_error_code};
use kafka_protocol::error::ResponseError;

use crate::coordinator::GroupError;
use crate::security::acl::Operation;

pub(super) async fn handle(ctx: &Context, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    // As Kafka: a group the client may not delete is GROUP_AUTHORIZATION_FAILED.
    let (allowed, ids) = super::authorized_groups(ctx, Operation::Delete, &request.groups_names);
    let results = match ctx.coordinator() {
        Some(_) if ids.is_empty() => Vec::new(),
        Some(coordinator) => coordinator.delete(ids).await,
        None => vec![Err(GroupError::CoordinatorNotAvailable); ids.len()],
    };
    let mut results = results.into_iter();
    DeleteGroupsResponse::default().with_results(
        request
            .groups_names
            .into_iter()
            .zip(allowed)
            .map(|(group_id, allowed)| {
                let code = if allowed {
                    results
                        .next()
                        .and_then(Result::err)
                        .map_or(0, group_error_code)
                } else {
                    ResponseError::GroupAuthorizationFailed.code()
                };
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(code)
            })
            .collect(),
    )
}
