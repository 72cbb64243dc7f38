//! FindCoordinator: a group's coordinator is the broker that leads its `__consumer_offsets`
//! partition (v4 and later ask for several keys at once). Transactions are not supported, so
//! transaction coordinators are not found.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Context, str_bytes};
use crate::security::acl::{Operation, ResourceType};

/// `key_type` of a consumer group.
const GROUP_KEY: i8 = 0;
/// `key_type` of a transactional id.
const TRANSACTION_KEY: i8 = 1;

pub(super) fn handle(
    ctx: &Context,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let answer = |key: &StrBytes| -> Coordinator {
        let found = Coordinator::default()
            .with_key(key.clone())
            .with_host(str_bytes(""))
            .with_port(-1);
        match request.key_type {
            GROUP_KEY if !ctx.authorized(Operation::Describe, ResourceType::Group, key) => {
                return found
                    .with_node_id(BrokerId(-1))
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            GROUP_KEY => {}
            TRANSACTION_KEY
                if !ctx.authorized(Operation::Describe, ResourceType::TransactionalId, key) =>
            {
                return found
                    .with_node_id(BrokerId(-1))
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            TRANSACTION_KEY => {
                return found
                    .with_node_id(BrokerId(-1))
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                    .with_error_message(Some(str_bytes(
                        "Fjord has no transaction coordinator: transactions are not supported",
                    )));
            }
            // Share groups (KIP-932, key type 2 from v6) and anything else: not a coordinator
            // this broker has, as Kafka answers with share groups off.
            other => {
                return found
                    .with_node_id(BrokerId(-1))
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "no coordinator of key type {other}: Fjord has consumer groups only"
                    ))));
            }
        }
        if ctx.coordinator().is_none() {
            return found
                .with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::CoordinatorLoadInProgress.code());
        }
        match ctx
            .coordinator_node(key)
            .and_then(|node| Some((node.id, ctx.endpoint(node)?)))
        {
            Some((id, (host, port))) => found
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port),
            // Its partition has no leader (its broker is down), or the leader has no endpoint on this
            // client's listener: retriable.
            None => found
                .with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        }
    };
    if version >= 4 {
        let coordinators = request.coordinator_keys.iter().map(answer).collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let found = answer(&request.key);
    FindCoordinatorResponse::default()
        .with_error_code(found.error_code)
        .with_error_message(found.error_message)
        .with_node_id(found.node_id)
        .with_host(found.host)
        .with_port(found.port)
}
