//! CreateTopics: name, partition count (-1: the broker default), replication factor (-1 or 1
//! on a single broker) or a manual assignment of every partition's replicas (checked as Kafka
//! checks it: INVALID_REPLICA_ASSIGNMENT with Kafka's message), configs, and `validate_only`.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{Context, config_map, str_bytes};
use crate::broker::CreateTopicError;
use crate::cluster::placement;
use crate::cluster::{ApplyError, MetadataError};

pub(super) async fn handle(ctx: &Context, request: CreateTopicsRequest) -> CreateTopicsResponse {
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
        if !super::metadata::may_create(ctx, &name) {
            results.push(error(
                result,
                ResponseError::TopicAuthorizationFailed.code(),
                "Authorization failed.",
            ));
            continue;
        }
        let (partitions, replication_factor, assignment) = if topic.assignments.is_empty() {
            (topic.num_partitions, topic.replication_factor, None)
        } else {
            let given: Vec<(i32, Vec<i32>)> = topic
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|id| id.0).collect(),
                    )
                })
                .collect();
            match placement::manual_topic_assignment(
                &given,
                topic.num_partitions,
                topic.replication_factor,
                &ctx.registered_brokers(),
            ) {
                Ok(replicas) => (
                    i32::try_from(replicas.len()).unwrap_or(i32::MAX),
                    i16::try_from(replicas.first().map_or(0, Vec::len)).unwrap_or(i16::MAX),
                    Some(replicas),
                ),
                Err(failure) => {
                    let code = if failure.is_invalid_request() {
                        ResponseError::InvalidRequest
                    } else {
                        ResponseError::InvalidReplicaAssignment
                    };
                    results.push(error(result, code.code(), &failure.to_string()));
                    continue;
                }
            }
        };
        let configs = config_map(topic.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        let outcome = if request.validate_only {
            ctx.validate_new_topic(&name, partitions, replication_factor, &configs)
                .map(|partitions| (partitions, None))
        } else {
            ctx.create_topic(&name, partitions, replication_factor, assignment, configs)
                .await
                .map(|created| (created.partition_count(), Some(created.id)))
        };
        results.push(match outcome {
            Ok((partitions, id)) => {
                let result = result
                    .with_num_partitions(partitions)
                    .with_replication_factor(ctx.replication_factor_or_default(replication_factor));
                match id {
                    Some(id) => result.with_topic_id(id),
                    None => result,
                }
            }
            Err(failure) => {
                let code = match &failure {
                    CreateTopicError::InvalidName(_) => ResponseError::InvalidTopicException,
                    CreateTopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
                    CreateTopicError::InvalidReplicationFactor(_)
                    | CreateTopicError::Placement(_) => ResponseError::InvalidReplicationFactor,
                    CreateTopicError::Config(_) => ResponseError::InvalidConfig,
                    CreateTopicError::Metadata(MetadataError::Apply(ApplyError::TopicExists {
                        ..
                    })) => ResponseError::TopicAlreadyExists,
                    CreateTopicError::Metadata(MetadataError::Unavailable(_)) => {
                        ResponseError::RequestTimedOut
                    }
                    CreateTopicError::Metadata(_) | CreateTopicError::Partitions(_) => {
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
