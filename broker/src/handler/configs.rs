//! The config APIs for topics: DescribeConfigs (every topic config with its value and whether it
//! is an override or the default), AlterConfigs (replace a topic's overrides), and
//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT per key; a deleted key returns to its
//! default, which is what GitOps needs). Broker configs are static: described, not altered.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::{Context, config_map, str_bytes};
use crate::broker::AlterConfigsError;
use crate::cluster::{ConfigOp, TOPIC_CONFIGS, apply_ops};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (DescribeConfigs).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

pub(super) fn describe(ctx: &Context, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |key: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
            };
            let entry =
                |key: &str, value: String, source: i8, read_only: bool, kind: i8, doc: &str| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(key))
                        .with_value(Some(str_bytes(value)))
                        .with_read_only(read_only)
                        .with_config_source(source)
                        .with_config_type(kind)
                        .with_documentation(request.include_documentation.then(|| str_bytes(doc)))
                };
            match resource.resource_type {
                TOPIC => match ctx.topic(resource.resource_name.as_str()) {
                    Some(topic) => result.with_configs(
                        TOPIC_CONFIGS
                            .iter()
                            .filter(|spec| wanted(spec.key))
                            .map(|spec| match topic.configs.get(spec.key) {
                                Some(value) => entry(
                                    spec.key,
                                    value.clone(),
                                    DYNAMIC_TOPIC_CONFIG,
                                    false,
                                    spec.kind as i8,
                                    spec.doc,
                                ),
                                None => entry(
                                    spec.key,
                                    spec.default.to_owned(),
                                    DEFAULT_CONFIG,
                                    false,
                                    spec.kind as i8,
                                    spec.doc,
                                ),
                            })
                            .collect(),
                    ),
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(format!(
                            "topic '{}' does not exist",
                            resource.resource_name
                        )))),
                },
                BROKER => {
                    let config = ctx.config();
                    let statics = [
                        ("node.id", config.node_id.to_string(), 3, "this broker's id"),
                        (
                            "num.partitions",
                            config.default_partitions.to_string(),
                            3,
                            "partitions of auto-created topics",
                        ),
                        (
                            "auto.create.topics.enable",
                            config.auto_create_topics.to_string(),
                            1,
                            "create unknown topics on metadata requests",
                        ),
                        (
                            "socket.request.max.bytes",
                            config.max_request_bytes.to_string(),
                            3,
                            "largest request frame accepted",
                        ),
                        (
                            "log.cleaner.backoff.ms",
                            config.log_cleaner_backoff_ms.to_string(),
                            5,
                            "how often compacted partitions check whether to compact",
                        ),
                        (
                            "ctx.rack",
                            config.rack.clone().unwrap_or_default(),
                            2,
                            "this broker's rack (zone)",
                        ),
                    ];
                    result.with_configs(
                        statics
                            .into_iter()
                            .filter(|(key, ..)| wanted(key))
                            .map(|(key, value, kind, doc)| {
                                entry(key, value, STATIC_BROKER_CONFIG, true, kind, doc)
                            })
                            .collect(),
                    )
                }
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("only topic and broker configs exist"))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The error code and message for a failed change of one resource.
fn failure(error: &AlterConfigsError) -> (i16, String) {
    let code = match error {
        AlterConfigsError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        AlterConfigsError::Config(_) => ResponseError::InvalidConfig,
        AlterConfigsError::Metadata(error) => {
            tracing::error!(%error, "persisting topic configs failed");
            ResponseError::KafkaStorageError
        }
    };
    (code.code(), error.to_string())
}

fn not_a_topic(resource_type: i8) -> (i16, String) {
    let message = if resource_type == BROKER {
        "broker configs are static: set them with flags or FJORD_* variables"
    } else {
        "only topic configs can be altered"
    };
    (ResponseError::InvalidRequest.code(), message.to_owned())
}

pub(super) async fn alter(ctx: &Context, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = if resource.resource_type == TOPIC {
            let configs = config_map(resource.configs.iter().map(|c| (&c.name, c.value.as_ref())));
            ctx.alter_topic_configs(
                resource.resource_name.as_str(),
                |_| Ok(configs.clone()),
                request.validate_only,
            )
            .await
            .map_err(|e| failure(&e))
        } else {
            Err(not_a_topic(resource.resource_type))
        };
        let (code, message) = outcome.err().map_or((0, None), |(code, message)| {
            (code, Some(str_bytes(message)))
        });
        responses.push(
            kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) async fn incremental_alter(
    ctx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = if resource.resource_type == TOPIC {
            let name = resource.resource_name.to_string();
            let ops: Option<Vec<(String, ConfigOp, Option<String>)>> = resource
                .configs
                .iter()
                .map(|c| {
                    ConfigOp::from_code(c.config_operation).map(|op| {
                        (
                            c.name.to_string(),
                            op,
                            c.value.as_ref().map(|v| v.to_string()),
                        )
                    })
                })
                .collect();
            match ops {
                None => Err((
                    ResponseError::InvalidRequest.code(),
                    "unknown config operation".to_owned(),
                )),
                // Read, modify, write, at the broker: from the configs as they stand when the
                // change is committed.
                Some(ops) => ctx
                    .alter_topic_configs(
                        &name,
                        |current| apply_ops(current, &ops),
                        request.validate_only,
                    )
                    .await
                    .map_err(|e| failure(&e)),
            }
        } else {
            Err(not_a_topic(resource.resource_type))
        };
        let (code, message) = outcome.err().map_or((0, None), |(code, message)| {
            (code, Some(str_bytes(message)))
        });
        responses.push(
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
