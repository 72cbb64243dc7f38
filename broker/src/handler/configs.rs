//! The config APIs for topics: DescribeConfigs (every topic config with its value and whether it
//! is an override or the default), AlterConfigs (replace a topic's overrides), and
//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT per key; a deleted key returns to its
//! default, which is what GitOps needs). Broker configs are static: described, not altered.

//! The config APIs: DescribeConfigs, AlterConfigs (replace a resource's overrides) and
//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT per key; a deleted key returns to what
//! it inherits, which is what GitOps needs), for topics and brokers.
//!
//! A topic config is the topic's override, else the dynamic broker config standing for it (this
//! broker's, else the cluster-wide one), else Kafka's default; DescribeConfigs says which, with
//! Kafka's config sources, and lists the chain as synonyms when asked. A BROKER resource named by
//! this broker's id describes its whole configuration: its flags (read-only, STATIC_BROKER_CONFIG)
//! and every dynamic config with where its value comes from; named `""`, the cluster-wide dynamic
//! configs. Dynamic broker configs are changed on either resource (`cluster::broker_config`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::{Context, config_map, str_bytes};
use crate::broker::{AlterConfigsError, BrokerConfig};
use crate::cluster::broker_config::{
    self, CLUSTER_DEFAULT, DYNAMIC_BROKER_CONFIGS, DynamicSource, apply_broker_ops,
};
use crate::cluster::topic_config::ConfigType;
use crate::cluster::{ConfigError, ConfigOp, TOPIC_CONFIGS, apply_ops};
use crate::security::acl::{Operation, ResourceType};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources (DescribeConfigs).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn source_code(source: DynamicSource) -> i8 {
    match source {
        DynamicSource::Broker => DYNAMIC_BROKER_CONFIG,
        DynamicSource::Cluster => DYNAMIC_DEFAULT_BROKER_CONFIG,
        DynamicSource::Default => DEFAULT_CONFIG,
    }
}

/// One described config: its name, value and source, whether it is read-only, its type and
/// documentation, and the chain of values it comes from (most specific first).
struct Described<'a> {
    key: &'a str,
    value: Option<String>,
    source: i8,
    read_only: bool,
    kind: ConfigType,
    doc: &'a str,
    synonyms: Vec<(&'a str, String, i8)>,
}

impl Described<'_> {
    fn encode(self, request: &DescribeConfigsRequest) -> DescribeConfigsResourceResult {
        let synonyms = if request.include_synonyms {
            self.synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_source(source)
                })
                .collect()
        } else {
            Vec::new()
        };
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes(self.key))
            .with_value(self.value.map(str_bytes))
            .with_read_only(self.read_only)
            .with_config_source(self.source)
            .with_config_type(self.kind as i8)
            .with_documentation(request.include_documentation.then(|| str_bytes(self.doc)))
            .with_synonyms(synonyms)
    }
}

/// This broker's flags under their Kafka names: read-only, as Kafka's are in the properties file.
fn static_configs(
    config: &BrokerConfig,
    advertised: (&str, i32, &[crate::cluster::ListenerEndpoint]),
) -> Vec<(&'static str, Option<String>, ConfigType, &'static str)> {
    let voter =
        config.voters.is_empty() || config.voters.iter().any(|v| v.node_id == config.node_id);
    let voters: Vec<String> = config.voters.iter().map(ToString::to_string).collect();
    let coordinator = &config.coordinator;
    // The first listener is named after its protocol, as Kafka's default listener is.
    let first = config.security.protocol();
    let listeners: Vec<String> = std::iter::once(format!("{first}://{}", config.listen))
        .chain(
            config
                .listeners
                .iter()
                .map(|l| format!("{}://{}", l.name, l.bind)),
        )
        .collect();
    let advertised_listeners: Vec<String> =
        std::iter::once(format!("{first}://{}:{}", advertised.0, advertised.1))
            .chain(
                advertised
                    .2
                    .iter()
                    .map(|l| format!("{}://{}:{}", l.name, l.host, l.port)),
            )
            .collect();
    let protocols: Vec<String> = std::iter::once(format!("{first}:{first}"))
        .chain(
            config
                .listeners
                .iter()
                .map(|l| format!("{}:{}", l.name, l.protocol)),
        )
        .collect();
    let int = ConfigType::Int;
    let long = ConfigType::Long;
    vec![
        (
            "node.id",
            Some(config.node_id.to_string()),
            int,
            "this broker's id (--node-id)",
        ),
        (
            "broker.id",
            Some(config.node_id.to_string()),
            int,
            "the same as node.id",
        ),
        (
            "process.roles",
            Some(if voter { "broker,controller" } else { "broker" }.to_owned()),
            ConfigType::List,
            "broker, and controller when this broker is a voter of the metadata quorum (--voters)",
        ),
        (
            "listeners",
            Some(listeners.join(",")),
            ConfigType::List,
            "the Kafka listeners (--listen, then each --listener)",
        ),
        (
            "advertised.listeners",
            Some(advertised_listeners.join(",")),
            ConfigType::List,
            "where clients are told to connect (--advertise, --advertise-listener)",
        ),
        (
            "listener.security.protocol.map",
            Some(protocols.join(",")),
            ConfigType::List,
            "each Kafka listener's security protocol",
        ),
        (
            "controller.quorum.voters",
            Some(voters.join(",")),
            ConfigType::List,
            "the metadata quorum's voters, id@host:port of their cluster listeners (--voters; empty: a single-node cluster of this broker)",
        ),
        (
            "log.dirs",
            Some(config.data_dir.display().to_string()),
            ConfigType::String,
            "the data directory (--data-dir)",
        ),
        (
            "broker.rack",
            config.rack.clone(),
            ConfigType::String,
            "this broker's rack, its availability zone (--rack)",
        ),
        (
            "num.partitions",
            Some(config.default_partitions.to_string()),
            int,
            "partitions of auto-created topics (--default-partitions)",
        ),
        (
            "default.replication.factor",
            Some(config.default_replication_factor.to_string()),
            int,
            "replicas per partition of auto-created topics (--default-replication-factor)",
        ),
        (
            "auto.create.topics.enable",
            Some(config.auto_create_topics.to_string()),
            ConfigType::Boolean,
            "create unknown topics on metadata requests (--auto-create-topics)",
        ),
        (
            "socket.request.max.bytes",
            Some(config.max_request_bytes.to_string()),
            int,
            "largest request frame accepted (--max-request-bytes)",
        ),
        (
            "max.connections",
            Some(config.max_connections.to_string()),
            int,
            "most client connections served at once (--max-connections)",
        ),
        (
            "offsets.topic.num.partitions",
            Some(coordinator.offsets_topic_partitions.to_string()),
            int,
            "partitions of __consumer_offsets (--offsets-topic-partitions)",
        ),
        (
            "offsets.topic.segment.bytes",
            Some(coordinator.offsets_topic_segment_bytes.to_string()),
            int,
            "segment size of __consumer_offsets (--offsets-topic-segment-bytes)",
        ),
        (
            "offsets.topic.replication.factor",
            Some(coordinator.offsets_topic_replication_factor.to_string()),
            int,
            "replicas of __consumer_offsets, at most the brokers registered when it is created (--offsets-topic-replication-factor)",
        ),
        (
            "offsets.commit.timeout.ms",
            Some(coordinator.offsets_commit_timeout_ms.to_string()),
            long,
            "how long a commit waits for the in-sync replicas (--offsets-commit-timeout-ms)",
        ),
        (
            "offsets.retention.minutes",
            Some(coordinator.offsets_retention_minutes.to_string()),
            int,
            "how long an empty group's committed offsets are kept (--offsets-retention-minutes)",
        ),
        (
            "offsets.retention.check.interval.ms",
            Some(coordinator.offsets_retention_check_interval_ms.to_string()),
            long,
            "how often expired offsets are looked for (--offsets-retention-check-interval-ms)",
        ),
        (
            "group.initial.rebalance.delay.ms",
            Some(coordinator.group_initial_rebalance_delay_ms.to_string()),
            int,
            "how long a new group waits for more members (--group-initial-rebalance-delay-ms)",
        ),
        (
            "group.min.session.timeout.ms",
            Some(coordinator.group_min_session_timeout_ms.to_string()),
            int,
            "shortest session timeout a member may ask for (--group-min-session-timeout-ms)",
        ),
        (
            "group.max.session.timeout.ms",
            Some(coordinator.group_max_session_timeout_ms.to_string()),
            int,
            "longest session timeout a member may ask for (--group-max-session-timeout-ms)",
        ),
        (
            "broker.heartbeat.interval.ms",
            Some(config.broker_heartbeat_interval_ms.to_string()),
            int,
            "how often this broker heartbeats the controller (--broker-heartbeat-interval-ms)",
        ),
        (
            "broker.session.timeout.ms",
            Some(config.broker_session_timeout_ms.to_string()),
            int,
            "a broker not heard from for this long is fenced (--broker-session-timeout-ms)",
        ),
        (
            "replica.lag.time.max.ms",
            Some(config.replica_lag_time_max_ms.to_string()),
            long,
            "a follower not caught up for this long leaves the ISR (--replica-lag-time-max-ms)",
        ),
        (
            "auto.leader.rebalance.enable",
            Some(config.auto_leader_rebalance.to_string()),
            ConfigType::Boolean,
            "hand leadership back to preferred replicas (--auto-leader-rebalance)",
        ),
        (
            "log.cleaner.backoff.ms",
            Some(config.log_cleaner_backoff_ms.to_string()),
            long,
            "how often compacted partitions check whether to compact (--log-cleaner-backoff-ms)",
        ),
    ]
}

/// The configs of topic `name`, each with where its value comes from.
fn describe_topic<'a>(ctx: &'a Context, name: &str) -> Option<Vec<Described<'a>>> {
    let topic = ctx.topic(name)?;
    let image = ctx.image();
    Some(
        TOPIC_CONFIGS
            .iter()
            .map(|spec| {
                let mut synonyms = Vec::new();
                if let Some(value) = topic.configs.get(spec.key) {
                    synonyms.push((spec.key, value.clone(), DYNAMIC_TOPIC_CONFIG));
                }
                match broker_config::broker_key_of_topic_config(spec.key) {
                    Some(broker) => synonyms.extend(
                        broker_config::dynamic_values(image, ctx.node_id(), broker)
                            .into_iter()
                            .map(|(source, value)| (broker.key, value, source_code(source))),
                    ),
                    None => synonyms.push((spec.key, spec.default.to_owned(), DEFAULT_CONFIG)),
                }
                let (_, value, source) = synonyms[0].clone();
                Described {
                    key: spec.key,
                    value: Some(value),
                    source,
                    read_only: false,
                    kind: spec.kind,
                    doc: spec.doc,
                    synonyms,
                }
            })
            .collect(),
    )
}

/// BROKER resource `name`: this broker's whole configuration, or (`""`) the cluster-wide dynamic
/// configs. Another broker's configs are described by that broker, as in Kafka.
fn describe_broker<'a>(ctx: &'a Context, name: &str) -> Result<Vec<Described<'a>>, String> {
    let image = ctx.image();
    if name == CLUSTER_DEFAULT {
        let set = image.broker_configs.get(CLUSTER_DEFAULT);
        return Ok(DYNAMIC_BROKER_CONFIGS
            .iter()
            .filter_map(|config| {
                let value = set?.get(config.key)?.clone();
                Some(Described {
                    key: config.key,
                    value: Some(value.clone()),
                    source: DYNAMIC_DEFAULT_BROKER_CONFIG,
                    read_only: false,
                    kind: broker_config::dynamic_type(config),
                    doc: "",
                    synonyms: vec![(config.key, value, DYNAMIC_DEFAULT_BROKER_CONFIG)],
                })
            })
            .collect());
    }
    if name != ctx.node_id().to_string() {
        return Err(format!(
            "Unexpected broker id, expected {} or empty string, but received {name}",
            ctx.node_id()
        ));
    }
    let mut described: Vec<Described<'a>> = static_configs(ctx.config(), ctx.advertised())
        .into_iter()
        .map(|(key, value, kind, doc)| Described {
            key,
            synonyms: value
                .iter()
                .map(|v| (key, v.clone(), STATIC_BROKER_CONFIG))
                .collect(),
            value,
            source: STATIC_BROKER_CONFIG,
            read_only: true,
            kind,
            doc,
        })
        .collect();
    described.extend(DYNAMIC_BROKER_CONFIGS.iter().map(|config| {
        let synonyms: Vec<(&str, String, i8)> =
            broker_config::dynamic_values(image, ctx.node_id(), config)
                .into_iter()
                .map(|(source, value)| (config.key, value, source_code(source)))
                .collect();
        let (_, value, source) = synonyms[0].clone();
        Described {
            key: config.key,
            value: Some(value),
            source,
            read_only: false,
            kind: broker_config::dynamic_type(config),
            doc: if config.topic.is_some() {
                "the default of the topic config of the same meaning, for topics without an override; changed at run time, cluster-wide or for one broker"
            } else {
                "bytes per second of replica fetches of the replicas a topic's *.replication.throttled.replicas names, out of sync (leader: served by this broker; follower: made by it); changed at run time, cluster-wide or for one broker"
            },
            synonyms,
        }
    }));
    described.sort_by(|a, b| a.key.cmp(b.key));
    Ok(described)
}

/// Whether the client may do `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config
/// resource, as Kafka checks it: a topic's on the topic (TOPIC_AUTHORIZATION_FAILED), a
/// broker's on the cluster (CLUSTER_AUTHORIZATION_FAILED).
fn config_access(
    ctx: &Context,
    resource_type: i8,
    name: &str,
    operation: Operation,
) -> Result<(), (ResponseError, String)> {
    let refused = match resource_type {
        TOPIC => (!ctx.authorized(operation, ResourceType::Topic, name))
            .then_some(ResponseError::TopicAuthorizationFailed),
        BROKER => (!ctx.authorized_cluster(operation))
            .then_some(ResponseError::ClusterAuthorizationFailed),
        _ => None,
    };
    match refused {
        Some(error) => Err((error, "Authorization failed.".to_owned())),
        None => Ok(()),
    }
}

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
            let name = resource.resource_name.as_str();
            let access = config_access(
                ctx,
                resource.resource_type,
                name,
                Operation::DescribeConfigs,
            );
            let described = access.and_then(|()| match resource.resource_type {
                TOPIC => describe_topic(ctx, name).ok_or_else(|| {
                    (
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )
                }),
                BROKER => describe_broker(ctx, name)
                    .map_err(|message| (ResponseError::InvalidRequest, message)),
                _ => Err((
                    ResponseError::InvalidRequest,
                    "only topic and broker configs exist".to_owned(),
                )),
            });
            match described {
                Ok(configs) => result.with_configs(
                    configs
                        .into_iter()
                        .filter(|c| wanted(c.key))
                        .map(|c| c.encode(request))
                        .collect(),
                ),
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The error code and message for a failed change of one resource.
fn failure(error: &AlterConfigsError) -> (i16, String) {
    let code = match error {
        AlterConfigsError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        AlterConfigsError::InvalidBroker(_) => ResponseError::InvalidRequest,
        // Kafka answers a config it cannot update dynamically with INVALID_REQUEST.
        AlterConfigsError::Config(ConfigError::ReadOnly { .. }) => ResponseError::InvalidRequest,
        AlterConfigsError::Config(_) => ResponseError::InvalidConfig,
        AlterConfigsError::Metadata(error) => {
            tracing::error!(%error, "persisting configs failed");
            ResponseError::KafkaStorageError
        }
    };
    (code.code(), error.to_string())
}

fn unsupported_resource() -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        "only topic and broker configs can be altered".to_owned(),
    )
}

pub(super) async fn alter(ctx: &Context, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let configs = config_map(resource.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        let name = resource.resource_name.as_str();
        let access = config_access(ctx, resource.resource_type, name, Operation::AlterConfigs);
        let outcome = match resource.resource_type {
            _ if access.is_err() => access.map_err(|(error, message)| (error.code(), message)),
            TOPIC => ctx
                .alter_topic_configs(name, |_| Ok(configs.clone()), request.validate_only)
                .await
                .map_err(|e| failure(&e)),
            BROKER => ctx
                .alter_broker_configs(name, |_| Ok(configs.clone()), request.validate_only)
                .await
                .map_err(|e| failure(&e)),
            _ => Err(unsupported_resource()),
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
        let access = config_access(
            ctx,
            resource.resource_type,
            &resource.resource_name,
            Operation::AlterConfigs,
        );
        let outcome = if let Err((error, message)) = access {
            Err((error.code(), message))
        } else if matches!(resource.resource_type, TOPIC | BROKER) {
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
                Some(ops) if resource.resource_type == TOPIC => ctx
                    .alter_topic_configs(
                        &name,
                        |current| apply_ops(current, &ops),
                        request.validate_only,
                    )
                    .await
                    .map_err(|e| failure(&e)),
                Some(ops) => ctx
                    .alter_broker_configs(
                        &name,
                        |current| apply_broker_ops(current, &ops),
                        request.validate_only,
                    )
                    .await
                    .map_err(|e| failure(&e)),
            }
        } else {
            Err(unsupported_resource())
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
