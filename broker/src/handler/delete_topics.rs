//! DeleteTopics: by name (versions 1–5), or by name or id (version 6, KIP-516). The topic is
//! forgotten durably first, then its partitions are closed and their files removed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{Context, internal_topic_error, str_bytes};
use crate::cluster::{ApplyError, MetadataError};
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(
    ctx: &Context,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // Version 6 names each topic by name or by id; older versions list names.
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        let refuse = |error: ResponseError, message: String| {
            result
                .clone()
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(message)))
        };
        let name = match (name, id.is_nil()) {
            (Some(_), false) => {
                responses.push(refuse(
                    ResponseError::InvalidRequest,
                    "name a topic by its name or by its id, not both".to_owned(),
                ));
                continue;
            }
            (Some(name), true) => name,
            (None, true) => {
                responses.push(refuse(
                    ResponseError::InvalidRequest,
                    "name a topic by its name or by its id".to_owned(),
                ));
                continue;
            }
            (None, _) => match ctx.topic_by_id(id) {
                Some(topic) => TopicName(str_bytes(topic.name.clone())),
                None => {
                    responses.push(refuse(
                        ResponseError::UnknownTopicId,
                        format!("no topic has the id {id}"),
                    ));
                    continue;
                }
            },
        };
        let topic = name.0.to_string();
        // Before the name goes into the answer: a topic named by id is not named back to a
        // client that may not delete it (Kafka answers a null name).
        if !ctx.authorized(Operation::Delete, ResourceType::Topic, &topic) {
            responses.push(
                result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        let result = result.with_name(Some(name.clone()));
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
