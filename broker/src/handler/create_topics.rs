//! CreateTopics: name, partition count (-1: the broker default), replication factor (-1 or 1
//! on a single broker), configs, and `validate_only`.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{config_map, str_bytes};
use crate::broker::{Broker, CreateTopicError};
use crate::cluster::MetadataError;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_configs(Some(Vec::new()));
        if seen[&name] > 1 {
            results.push(error(
                result,
                ResponseError::InvalidRequest.code(),
                "topic named more than once in the request",
            ));
            continue;
        }
        if !topic.assignments.is_empty() {
            results.push(error(
                result,
                ResponseError::InvalidRequest.code(),
                "manual replica assignment is not supported",
            ));
            continue;
        }
        let configs = config_map(topic.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        let outcome = if request.validate_only {
            broker
                .validate_new_topic(
                    &name,
                    topic.num_partitions,
                    topic.replication_factor,
                    &configs,
                )
                .map(|partitions| (partitions, None))
        } else {
            broker
                .create_topic(
                    &name,
                    topic.num_partitions,
                    topic.replication_factor,
                    configs,
                )
                .await
                .map(|created| (created.partitions, Some(created.id)))
        };
        results.push(match outcome {
            Ok((partitions, id)) => {
                let result = result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1);
                match id {
                    Some(id) => result.with_topic_id(id),
                    None => result,
                }
            }
            Err(failure) => {
                let code = match &failure {
                    CreateTopicError::InvalidName(_) => ResponseError::InvalidTopicException,
                    CreateTopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
                    CreateTopicError::InvalidReplicationFactor(_) => {
                        ResponseError::InvalidReplicationFactor
                    }
                    CreateTopicError::Config(_) => ResponseError::InvalidConfig,
                    CreateTopicError::Metadata(MetadataError::TopicExists { .. }) => {
                        ResponseError::TopicAlreadyExists
                    }
                    CreateTopicError::Metadata(_) | CreateTopicError::Partition { .. } => {
                        tracing::error!(topic = name, error = %failure, "creating a topic failed");
                        ResponseError::KafkaStorageError
                    }
                };
                error(result, code.code(), &failure.to_string())
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn error(result: CreatableTopicResult, code: i16, message: &str) -> CreatableTopicResult {
    result
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}
