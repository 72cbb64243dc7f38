//! InitProducerId for idempotent producers: a new producer id (epoch 0), or, when the client
//! names its current id and epoch (KIP-360, v3+), the same id with the next epoch. Transactions
//! are not supported yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Context;
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(
    ctx: &Context,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // As Kafka (KIP-679): an idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE
    // on some topic.
    if request.transactional_id.is_none()
        && !ctx.may(
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            crate::security::acl::CLUSTER_NAME,
        )
        && !ctx.authorized_any(Operation::Write, ResourceType::Topic)
    {
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    if request.transactional_id.is_some() {
        tracing::warn!("InitProducerId with a transactional id: transactions are not supported");
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    let (current_id, current_epoch) = (request.producer_id.0, request.producer_epoch);
    if current_id >= 0 && (0..i16::MAX - 1).contains(&current_epoch) {
        return response
            .with_producer_id(ProducerId(current_id))
            .with_producer_epoch(current_epoch + 1);
    }
    match ctx.new_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::error!(%error, "allocating producer ids failed");
            response.with_error_code(ResponseError::UnknownServerError.code())
        }
    }
}
