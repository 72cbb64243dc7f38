//! DeleteTopics: by name (versions 1–5). The topic is forgotten durably first, then its
//! partitions are closed and their files removed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{Context, internal_topic_error, str_bytes};
use crate::cluster::{ApplyError, MetadataError};

pub(super) async fn handle(ctx: &Context, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut responses = Vec::with_capacity(request.topic_names.len());
    for name in request.topic_names {
        let result = DeletableTopicResult::default().with_name(Some(name.clone()));
        let topic = name.0.to_string();
        if let Some((code, message)) = internal_topic_error(&topic, "delete") {
            responses.push(
                result
                    .with_error_code(code)
                    .with_error_message(Some(message)),
            );
            continue;
        }
        responses.push(match ctx.delete_topic(&topic).await {
            Ok(deleted) => result.with_topic_id(deleted.id),
            Err(error) => {
                let code = match &error {
                    MetadataError::Apply(ApplyError::UnknownTopic { .. }) => {
                        ResponseError::UnknownTopicOrPartition
                    }
                    MetadataError::Unavailable(_) => ResponseError::RequestTimedOut,
                    _ => {
                        tracing::error!(topic, %error, "deleting a topic failed");
                        ResponseError::KafkaStorageError
                    }
                };
                result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(error.to_string())))
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
