//! CreatePartitions: raise a topic's partition count (never lower it), optionally validate only;
//! manual assignments of the new partitions' replicas are checked as Kafka checks them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Context, internal_topic_error, str_bytes};
use crate::broker::CreatePartitionsError;
use crate::cluster::{ApplyError, MetadataError};
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(
    ctx: &Context,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let name = topic.name.0.to_string();
        if !ctx.authorized(Operation::Alter, ResourceType::Topic, &name) {
            results.push(
                result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        if let Some((code, message)) = internal_topic_error(&name, "add partitions to") {
            results.push(
                result
                    .with_error_code(code)
                    .with_error_message(Some(message)),
            );
            continue;
        }
        // An empty list is taken as no assignment: Java clients send null for none, but the
        // kafka-protocol crate's default (what Rust clients send unless they say otherwise) is
        // an empty list, and no client means "add partitions, assign none of them".
        let assignments: Option<Vec<Vec<i32>>> = topic
            .assignments
            .as_ref()
            .filter(|assignments| !assignments.is_empty())
            .map(|assignments| {
                assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
                    .collect()
            });
        let outcome = ctx
            .create_partitions(
                &name,
                topic.count,
                assignments.as_deref(),
                request.validate_only,
            )
            .await;
        results.push(match outcome {
            Ok(()) => result,
            Err(error) => {
                let code = match &error {
                    CreatePartitionsError::UnknownTopic(_) => {
                        ResponseError::UnknownTopicOrPartition
                    }
                    CreatePartitionsError::NotIncreasing { .. } => ResponseError::InvalidPartitions,
                    CreatePartitionsError::Assignment(_) => ResponseError::InvalidReplicaAssignment,
                    CreatePartitionsError::Placement(_) => ResponseError::InvalidReplicationFactor,
                    CreatePartitionsError::Metadata(MetadataError::Apply(ApplyError::Stale(_))) => {
                        ResponseError::InvalidPartitions
                    }
                    CreatePartitionsError::Metadata(MetadataError::Unavailable(_)) => {
                        ResponseError::RequestTimedOut
                    }
                    CreatePartitionsError::Metadata(_) | CreatePartitionsError::Partitions(_) => {
                        tracing::error!(topic = name, %error, "adding partitions failed");
                        ResponseError::KafkaStorageError
                    }
                };
                result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(error.to_string())))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
