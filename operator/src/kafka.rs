//! The operator's Kafka admin client. Reconcilers (for example [`crate::topic::converge`]) call
//! [`KafkaAdmin`]; it encodes each request with the pinned `kafka-protocol` crate, sends it over
//! TCP to the cluster's controller (a Fjord or Kafka broker), and turns the response into plain
//! values or a [`KafkaError`] with a low-cardinality [`KafkaError::reason`]:
//!
//! ```text
//! reconciler -> KafkaAdmin::<operation> -> RequestHeader + request (Encodable) -> TCP frame
//!            <- value | KafkaError      <- ResponseHeader + response (Decodable) <- TCP frame
//! ```
//!
//! On connect the client negotiates one version per API from ApiVersions, then asks Metadata
//! for the controller and moves there: admin requests go to the controller, as Kafka's
//! AdminClient sends them. A connection that failed (I/O, timeout, a response out of step) or a
//! broker that answers NOT_CONTROLLER is dropped; the next call reconnects from the bootstrap
//! addresses. `kafka-protocol`'s error type stays inside this module.
//!
//! A malformed, truncated or oversized (over [`MAX_RESPONSE_BYTES`]) response is an error, not
//! a panic, with one caveat from the protocol library: it reserves memory for an array length
//! read off the wire before decoding any element, so a broken or hostile peer can ask for a
//! reservation the kernel refuses, which aborts the process. A binary using this client installs
//! the broker's guarded allocator (`fjord_runtime::alloc::GuardedAlloc`, see its documentation),
//! as `tests/topic_kafka.rs` does.

mod login;
mod security;

pub use login::AdminSecurity;
pub use security::{AclEntry, SCRAM_ITERATIONS, random_bytes};

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response frame accepted; a larger size prefix is a broken or hostile peer.
pub const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

const CLIENT_ID: &str = "fjord-operator";
/// The ApiVersions version asked first; brokers that do not know it answer in version 0.
const API_VERSIONS_VERSION: i16 = 3;
/// Resource type of a topic in DescribeConfigs and IncrementalAlterConfigs.
const TOPIC_RESOURCE: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// The versions this client speaks, per API, and why the minimum is what it is.
const CLIENT_APIS: &[(ApiKey, i16, i16)] = &[
    // 4: the first version with `allow_auto_topic_creation`; below it a lookup may create.
    (ApiKey::Metadata, 4, 13),
    // 2: the oldest Kafka 4 accepts.
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::CreatePartitions, 0, 3),
    // 1: the first version that reports each value's source.
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteTopics, 1, 6),
];

/// APIs used when the broker has them, not required to connect: a broker without them (an
/// older release, during an upgrade) still gets its topics created and configured; only a
/// replication factor change then fails, with UNSUPPORTED_VERSION.
const OPTIONAL_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // The User controller's.
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    // A SASL login, on a listener that asks for one.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// A failed admin operation. [`reason`](Self::reason) is the label for metrics and Events,
/// [`is_transient`](Self::is_transient) tells a retry from a wait for a changed spec.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("connecting to the Kafka broker at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{api:?}: the connection to the broker failed")]
    Io {
        api: ApiKey,
        #[source]
        source: io::Error,
    },
    #[error("{api:?}: no response within {after:?}")]
    Timeout { api: ApiKey, after: Duration },
    #[error("{api:?}: the broker supports no version this client speaks")]
    UnsupportedVersion { api: ApiKey },
    #[error("{api:?}: cannot encode the request")]
    Encode {
        api: ApiKey,
        #[source]
        source: ProtocolError,
    },
    #[error("{api:?}: malformed response")]
    Decode {
        api: ApiKey,
        #[source]
        source: ProtocolError,
    },
    #[error("{api:?} refused: {error} ({code}){}", detail(.message))]
    Broker {
        api: ApiKey,
        code: i16,
        /// Kafka's name of the error, e.g. `INVALID_CONFIG`.
        error: String,
        /// The broker's explanation, if it sent one.
        message: Option<String>,
    },
}

/// What was wrong with a request or response on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The protocol library's own description (it has no typed errors).
    #[error("{reason}")]
    Codec { reason: String },
    #[error("response frame of {size} bytes (the limit is {max})")]
    FrameSize { size: i64, max: usize },
    #[error("response carries correlation id {actual}, expected {expected}")]
    CorrelationId { expected: i32, actual: i32 },
    #[error("the response has no result for {resource}")]
    MissingResult { resource: String },
}

/// Broker error codes whose reason is the error's own name; every other code is `KafkaError`.
macro_rules! broker_reason {
    ($code:expr, $($kind:ident),* $(,)?) => {
        match ResponseError::try_from_code($code) {
            $(Some(ResponseError::$kind) => stringify!($kind),)*
            _ => "KafkaError",
        }
    };
}

impl KafkaError {
    /// A low-cardinality label: `BrokerUnavailable`, `UnsupportedVersion`, `ProtocolError`, or
    /// for an error the broker answered the Kafka error in CamelCase (`InvalidConfig`,
    /// `TopicAlreadyExists`, ...; `KafkaError` for codes without a label of their own).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect { .. } | Self::Io { .. } | Self::Timeout { .. } => "BrokerUnavailable",
            Self::UnsupportedVersion { .. } => "UnsupportedVersion",
            Self::Encode { .. } | Self::Decode { .. } => "ProtocolError",
            Self::Broker { code, .. } => broker_reason!(
                *code,
                UnknownServerError,
                UnknownTopicOrPartition,
                UnknownTopicId,
                LeaderNotAvailable,
                NotLeaderOrFollower,
                RequestTimedOut,
                BrokerNotAvailable,
                NetworkException,
                NotController,
                InvalidTopicException,
                TopicAlreadyExists,
                InvalidPartitions,
                InvalidReplicationFactor,
                InvalidReplicaAssignment,
                InvalidConfig,
                InvalidRequest,
                PolicyViolation,
                UnsupportedVersion,
                TopicAuthorizationFailed,
                ClusterAuthorizationFailed,
                KafkaStorageError,
                TopicDeletionDisabled,
                ThrottlingQuotaExceeded,
                ResourceNotFound,
                SecurityDisabled,
                UnacceptableCredential,
                UnsupportedSaslMechanism,
            ),
        }
    }

    /// Whether retrying soon may succeed: the broker could not be reached, or it answered an
    /// error Kafka marks retriable (NOT_CONTROLLER, REQUEST_TIMED_OUT, ...). Refusals of the
    /// request itself (INVALID_CONFIG, INVALID_REPLICATION_FACTOR, ...) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Io { .. } | Self::Timeout { .. } => true,
            Self::UnsupportedVersion { .. } | Self::Encode { .. } | Self::Decode { .. } => false,
            // BROKER_NOT_AVAILABLE is not retriable for a single request in Kafka's table, but
            // for a reconciler that comes back later it is the textbook transient condition.
            Self::Broker { code, .. } => ResponseError::try_from_code(*code)
                .is_some_and(|e| e.is_retriable() || e == ResponseError::BrokerNotAvailable),
        }
    }

    /// The Kafka error code, for an error the broker answered.
    pub fn error_code(&self) -> Option<i16> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn broker(api: ApiKey, code: i16, message: Option<&StrBytes>) -> Self {
        Self::Broker {
            api,
            code,
            error: error_name(code),
            message: message.map(|m| m.to_string()),
        }
    }
}

/// The broker's explanation, as the end of an error message.
fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// Kafka's name of an error code (`INVALID_CONFIG`), from the protocol library's CamelCase.
fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(_)) => "UNKNOWN_ERROR_CODE".to_owned(),
        Some(error) => {
            let camel = error.to_string();
            let mut name = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// A topic as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    /// The topic id as a UUID string; `None` from brokers too old to report one.
    pub topic_id: Option<String>,
    pub partitions: i32,
    /// The number of replicas of partition 0.
    pub replication_factor: i16,
    /// Each partition's replicas, by partition index.
    pub replicas: Vec<Vec<i32>>,
    /// The brokers the cluster lists, with their racks.
    pub brokers: Vec<(i32, Option<String>)>,
}

/// Where a config value comes from (DescribeConfigs' `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// 0
    Unknown,
    /// 1: a per-topic override.
    DynamicTopic,
    /// 2
    DynamicBroker,
    /// 3
    DynamicDefaultBroker,
    /// 4: the broker's configuration file or flags.
    StaticBroker,
    /// 5: the built-in default.
    Default,
    /// 6
    DynamicBrokerLogger,
    Other(i8),
}

impl ConfigSource {
    pub fn from_code(code: i8) -> Self {
        match code {
            0 => Self::Unknown,
            1 => Self::DynamicTopic,
            2 => Self::DynamicBroker,
            3 => Self::DynamicDefaultBroker,
            4 => Self::StaticBroker,
            5 => Self::Default,
            6 => Self::DynamicBrokerLogger,
            other => Self::Other(other),
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Unknown => 0,
            Self::DynamicTopic => 1,
            Self::DynamicBroker => 2,
            Self::DynamicDefaultBroker => 3,
            Self::StaticBroker => 4,
            Self::Default => 5,
            Self::DynamicBrokerLogger => 6,
            Self::Other(code) => code,
        }
    }
}

/// One topic config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values, which brokers never reveal.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
}

/// One change of IncrementalAlterConfigs. `Delete` removes the topic's override: the key
/// returns to the broker's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set { name: String, value: String },
    Delete { name: String },
}

impl ConfigOp {
    pub fn name(&self) -> &str {
        match self {
            Self::Set { name, .. } | Self::Delete { name } => name,
        }
    }
}

/// An admin connection to a Kafka-compatible cluster. Every request, and every connection
/// attempt, is bounded by the timeout given to [`connect`](Self::connect).
#[derive(Debug)]
pub struct KafkaAdmin {
    bootstrap: String,
    timeout: Duration,
    security: AdminSecurity,
    /// `None` after a failure; the next call reconnects.
    connection: Option<Connection>,
}

impl KafkaAdmin {
    /// Connects to the first reachable of the comma-separated `bootstrap` addresses
    /// (`host:port`), negotiates API versions, and moves to the controller.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, KafkaError> {
        Self::connect_with(bootstrap, timeout, AdminSecurity::default()).await
    }

    /// [`connect`](Self::connect) over TLS and with a SASL login, as `security` says (every
    /// connection the client makes, to the controller and after a failure, alike).
    pub async fn connect_with(
        bootstrap: &str,
        timeout: Duration,
        security: AdminSecurity,
    ) -> Result<Self, KafkaError> {
        let connection = connect_to_controller(bootstrap, timeout, &security).await?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            timeout,
            security,
            connection: Some(connection),
        })
    }

    /// The topic's id, partition count and replication factor; `None` if it does not exist.
    /// Never creates the topic, whatever the broker's auto-create setting.
    pub async fn describe_topic(
        &mut self,
        name: &str,
    ) -> Result<Option<TopicDescription>, KafkaError> {
        let api = ApiKey::Metadata;
        let response: MetadataResponse = self
            .call(api, |_| {
                MetadataRequest::default()
                    .with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic_name(name))),
                    ]))
                    .with_allow_auto_topic_creation(false)
            })
            .await?;
        if response.error_code != 0 {
            return Err(self.refused(api, response.error_code, None));
        }
        let topic = response
            .topics
            .into_iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .ok_or_else(|| missing(api, name))?;
        if topic.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Ok(None);
        }
        if topic.error_code != 0 {
            return Err(self.refused(api, topic.error_code, None));
        }
        let replication_factor = topic
            .partitions
            .iter()
            .find(|p| p.partition_index == 0)
            .map_or(0, |p| p.replica_nodes.len());
        let mut partitions: Vec<(i32, Vec<i32>)> = topic
            .partitions
            .iter()
            .map(|p| {
                let replicas = p.replica_nodes.iter().map(|id| id.0).collect();
                (p.partition_index, replicas)
            })
            .collect();
        partitions.sort_by_key(|(index, _)| *index);
        Ok(Some(TopicDescription {
            name: name.to_owned(),
            topic_id: (!topic.topic_id.is_nil()).then(|| topic.topic_id.to_string()),
            partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
            replication_factor: i16::try_from(replication_factor).unwrap_or(i16::MAX),
            replicas: partitions
                .into_iter()
                .map(|(_, replicas)| replicas)
                .collect(),
            brokers: response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, b.rack.as_ref().map(ToString::to_string)))
                .collect(),
        }))
    }

    /// Creates a topic (`-1` partitions or replication factor: the broker's default). Returns
    /// its id when the broker reports one (CreateTopics v7 and later).
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<Option<String>, KafkaError> {
        let api = ApiKey::CreateTopics;
        let timeout_ms = self.broker_timeout_ms();
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(key, value)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(key))
                            .with_value(Some(str_bytes(value)))
                    })
                    .collect(),
            );
        let response = self
            .call(api, |_| {
                CreateTopicsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(timeout_ms)
            })
            .await?;
        let result = response
            .topics
            .into_iter()
            .find(|t| t.name.0.as_str() == name)
            .ok_or_else(|| missing(api, name))?;
        if result.error_code != 0 {
            return Err(self.refused(api, result.error_code, result.error_message.as_ref()));
        }
        Ok((!result.topic_id.is_nil()).then(|| result.topic_id.to_string()))
    }

    /// Raises the topic's partition count to `total`.
    pub async fn create_partitions(&mut self, name: &str, total: i32) -> Result<(), KafkaError> {
        let api = ApiKey::CreatePartitions;
        let timeout_ms = self.broker_timeout_ms();
        let response = self
            .call(api, |_| {
                CreatePartitionsRequest::default()
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(topic_name(name))
                            .with_count(total)
                            // Null, as Kafka's own clients send it: the brokers place them.
                            .with_assignments(None),
                    ])
                    .with_timeout_ms(timeout_ms)
            })
            .await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.name.0.as_str() == name)
            .ok_or_else(|| missing(api, name))?;
        if result.error_code != 0 {
            return Err(self.refused(api, result.error_code, result.error_message.as_ref()));
        }
        Ok(())
    }

    /// Every config of the topic with its value and source.
    pub async fn describe_topic_configs(
        &mut self,
        name: &str,
    ) -> Result<Vec<ConfigEntry>, KafkaError> {
        let api = ApiKey::DescribeConfigs;
        let response = self
            .call(api, |_| {
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(TOPIC_RESOURCE)
                        .with_resource_name(str_bytes(name))
                        .with_configuration_keys(None),
                ])
            })
            .await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_type == TOPIC_RESOURCE && r.resource_name.as_str() == name)
            .ok_or_else(|| missing(api, name))?;
        if result.error_code != 0 {
            return Err(self.refused(api, result.error_code, result.error_message.as_ref()));
        }
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_code(c.config_source),
                read_only: c.read_only,
            })
            .collect())
    }

    /// Applies `ops` to the topic's configs in one IncrementalAlterConfigs request (nothing is
    /// sent for no ops). The broker applies all of them or none.
    pub async fn alter_topic_configs(
        &mut self,
        name: &str,
        ops: &[ConfigOp],
    ) -> Result<(), KafkaError> {
        if ops.is_empty() {
            return Ok(());
        }
        let api = ApiKey::IncrementalAlterConfigs;
        let configs = ops
            .iter()
            .map(|op| match op {
                ConfigOp::Set { name, value } => AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(value))),
                ConfigOp::Delete { name } => AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(OP_DELETE)
                    .with_value(None),
            })
            .collect();
        let response = self
            .call(api, |_| {
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(TOPIC_RESOURCE)
                        .with_resource_name(str_bytes(name))
                        .with_configs(configs),
                ])
            })
            .await?;
        let result = response
            .responses
            .into_iter()
            .find(|r| r.resource_type == TOPIC_RESOURCE && r.resource_name.as_str() == name)
            .ok_or_else(|| missing(api, name))?;
        if result.error_code != 0 {
            return Err(self.refused(api, result.error_code, result.error_message.as_ref()));
        }
        Ok(())
    }

    /// Moves partitions of topic `name` to new replicas (AlterPartitionReassignments): each
    /// `(partition, target)`. The brokers start the moves and complete them once the new
    /// replicas are in sync.
    pub async fn reassign_partitions(
        &mut self,
        name: &str,
        targets: &[(i32, Vec<i32>)],
    ) -> Result<(), KafkaError> {
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        let api = ApiKey::AlterPartitionReassignments;
        let timeout_ms = self.broker_timeout_ms();
        let partitions: Vec<ReassignablePartition> = targets
            .iter()
            .map(|(index, target)| {
                ReassignablePartition::default()
                    .with_partition_index(*index)
                    .with_replicas(Some(target.iter().copied().map(BrokerId).collect()))
            })
            .collect();
        let response = self
            .call(api, |_| {
                AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(timeout_ms)
                    .with_allow_replication_factor_change(true)
                    .with_topics(vec![
                        ReassignableTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(partitions),
                    ])
            })
            .await?;
        if response.error_code != 0 {
            return Err(self.refused(api, response.error_code, response.error_message.as_ref()));
        }
        for topic in response.responses {
            for partition in topic.partitions {
                if partition.error_code != 0 {
                    return Err(self.refused(
                        api,
                        partition.error_code,
                        partition.error_message.as_ref(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The partitions of topic `name` being reassigned (ListPartitionReassignments).
    pub async fn reassigning_partitions(&mut self, name: &str) -> Result<Vec<i32>, KafkaError> {
        let api = ApiKey::ListPartitionReassignments;
        let timeout_ms = self.broker_timeout_ms();
        let response = self
            .call(api, |_| {
                ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(timeout_ms)
                    .with_topics(None)
            })
            .await?;
        if response.error_code != 0 {
            return Err(self.refused(api, response.error_code, response.error_message.as_ref()));
        }
        Ok(response
            .topics
            .into_iter()
            .filter(|t| t.name.0.as_str() == name)
            .flat_map(|t| t.partitions.into_iter().map(|p| p.partition_index))
            .collect())
    }

    /// Deletes the topic. `Ok(false)`: there was no such topic.
    pub async fn delete_topic(&mut self, name: &str) -> Result<bool, KafkaError> {
        let api = ApiKey::DeleteTopics;
        let timeout_ms = self.broker_timeout_ms();
        let response = self
            .call(api, |version| {
                let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
                // Version 6 names topics in a struct (name or id); older versions by name only.
                if version >= 6 {
                    request.with_topics(vec![
                        DeleteTopicState::default().with_name(Some(topic_name(name))),
                    ])
                } else {
                    request.with_topic_names(vec![topic_name(name)])
                }
            })
            .await?;
        let result = response
            .responses
            .into_iter()
            .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .ok_or_else(|| missing(api, name))?;
        match result.error_code {
            0 => Ok(true),
            code if code == ResponseError::UnknownTopicOrPartition.code() => Ok(false),
            code => Err(self.refused(api, code, result.error_message.as_ref())),
        }
    }

    /// Sends one request on the current connection (reconnecting first if there is none) and
    /// decodes its response. `build` gets the negotiated version.
    async fn call<R: Request>(
        &mut self,
        api: ApiKey,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, KafkaError> {
        debug_assert_eq!(api as i16, R::KEY);
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => connect_to_controller(&self.bootstrap, self.timeout, &self.security).await?,
        };
        let Some(version) = connection.version(api) else {
            self.connection = Some(connection);
            return Err(KafkaError::UnsupportedVersion { api });
        };
        // On an I/O error or timeout the stream may be mid-frame: the connection is dropped.
        let body = connection
            .exchange(api, &build(version), version, self.timeout)
            .await?;
        // The whole frame was read: the connection is in step, whatever the body holds.
        self.connection = Some(connection);
        decode(api, body, version)
    }

    /// The error the broker answered. NOT_CONTROLLER means the controller moved: the next call
    /// looks for it again.
    fn refused(&mut self, api: ApiKey, code: i16, message: Option<&StrBytes>) -> KafkaError {
        if code == ResponseError::NotController.code() {
            self.connection = None;
        }
        KafkaError::broker(api, code, message)
    }

    /// How long the broker may wait for a topic change to settle: less than the request
    /// timeout, so that its answer (REQUEST_TIMED_OUT if need be) arrives before this client
    /// gives up on the request.
    fn broker_timeout_ms(&self) -> i32 {
        let ms = self.timeout.saturating_sub(self.timeout / 4).as_millis();
        i32::try_from(ms).unwrap_or(i32::MAX)
    }
}

/// One TCP connection to one broker, with the versions negotiated with it.
#[derive(Debug)]
struct Connection {
    stream: login::AdminStream,
    addr: String,
    correlation_id: i32,
    versions: Vec<(ApiKey, i16)>,
}

impl Connection {
    async fn open(
        addr: &str,
        timeout: Duration,
        security: &AdminSecurity,
    ) -> Result<Self, KafkaError> {
        let connect_error = |source| KafkaError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(connect_error(source)),
            Err(_) => {
                return Err(connect_error(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                )));
            }
        };
        stream.set_nodelay(true).map_err(connect_error)?;
        let stream =
            match tokio::time::timeout(timeout, login::over(stream, addr, security.tls.as_ref()))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => return Err(connect_error(source)),
                Err(_) => {
                    return Err(connect_error(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no TLS handshake within {timeout:?}"),
                    )));
                }
            };
        let mut connection = Self {
            stream,
            addr: addr.to_owned(),
            correlation_id: 0,
            versions: Vec::new(),
        };
        let api_versions = connection.api_versions(timeout).await?;
        connection.versions = negotiate(&api_versions)?;
        if let Some((user, password)) = &security.scram_sha_512 {
            connection
                .login_scram_sha_512(user, password, timeout)
                .await?;
        }
        tracing::debug!(addr, versions = ?connection.versions, "connected to a Kafka broker");
        Ok(connection)
    }

    /// The broker's API table: ApiVersions v3, or v0 if the broker does not know v3.
    async fn api_versions(&mut self, timeout: Duration) -> Result<Vec<ApiVersion>, KafkaError> {
        let api = ApiKey::ApiVersions;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let body = self
            .exchange(api, &request, API_VERSIONS_VERSION, timeout)
            .await?;
        // The error code is the first field in every version. With UNSUPPORTED_VERSION the
        // broker answers in version 0, whatever version was asked.
        let unsupported = body.len() >= 2
            && i16::from_be_bytes([body[0], body[1]]) == ResponseError::UnsupportedVersion.code();
        let response: ApiVersionsResponse = if unsupported {
            tracing::debug!(addr = %self.addr, "ApiVersions v3 unknown to the broker; asking v0");
            let body = self
                .exchange(api, &ApiVersionsRequest::default(), 0, timeout)
                .await?;
            decode(api, body, 0)?
        } else {
            decode(api, body, API_VERSIONS_VERSION)?
        };
        if response.error_code != 0 {
            return Err(KafkaError::broker(api, response.error_code, None));
        }
        Ok(response.api_keys)
    }

    fn version(&self, api: ApiKey) -> Option<i16> {
        self.versions
            .iter()
            .find(|(key, _)| *key == api)
            .map(|(_, version)| *version)
    }

    /// Writes one request frame and reads its response frame, within `timeout`. Returns the
    /// response body (after the header).
    async fn exchange<R: Request>(
        &mut self,
        api: ApiKey,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes, KafkaError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = encode_request(api, request, version, correlation_id)?;
        let stream = &mut self.stream;
        let round_trip = async {
            stream.write_all(&frame).await?;
            let size = stream.read_i32().await?;
            if size < 0 || size as usize > MAX_RESPONSE_BYTES {
                return Ok(Err(ProtocolError::FrameSize {
                    size: i64::from(size),
                    max: MAX_RESPONSE_BYTES,
                }));
            }
            let mut response = vec![0u8; size as usize];
            stream.read_exact(&mut response).await?;
            Ok(Ok(Bytes::from(response)))
        };
        let mut response = match tokio::time::timeout(timeout, round_trip).await {
            Err(_) => {
                return Err(KafkaError::Timeout {
                    api,
                    after: timeout,
                });
            }
            Ok(Err(source)) => return Err(KafkaError::Io { api, source }),
            Ok(Ok(Err(source))) => return Err(KafkaError::Decode { api, source }),
            Ok(Ok(Ok(response))) => response,
        };
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(|e| codec_error(api, &e))?;
        if header.correlation_id != correlation_id {
            return Err(KafkaError::Decode {
                api,
                source: ProtocolError::CorrelationId {
                    expected: correlation_id,
                    actual: header.correlation_id,
                },
            });
        }
        Ok(response)
    }
}

/// Connects to a bootstrap address, then to the controller if that is another node.
async fn connect_to_controller(
    bootstrap: &str,
    timeout: Duration,
    security: &AdminSecurity,
) -> Result<Connection, KafkaError> {
    let mut last_error = None;
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match Connection::open(addr, timeout, security).await {
            Ok(connection) => return move_to_controller(connection, timeout, security).await,
            Err(error) => {
                tracing::debug!(addr, %error, "bootstrap address unusable");
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| KafkaError::Connect {
        addr: bootstrap.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no bootstrap address"),
    }))
}

/// Asks Metadata for the controller; returns `connection` if it is the controller (or the
/// cluster names none), else a new connection to the controller.
async fn move_to_controller(
    mut connection: Connection,
    timeout: Duration,
    security: &AdminSecurity,
) -> Result<Connection, KafkaError> {
    let api = ApiKey::Metadata;
    let version = connection
        .version(api)
        .ok_or(KafkaError::UnsupportedVersion { api })?;
    let request = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let body = connection.exchange(api, &request, version, timeout).await?;
    let metadata: MetadataResponse = decode(api, body, version)?;
    if metadata.error_code != 0 {
        return Err(KafkaError::broker(api, metadata.error_code, None));
    }
    let controller = metadata.controller_id.0;
    let Some(node) = metadata.brokers.iter().find(|b| b.node_id.0 == controller) else {
        tracing::debug!(
            controller,
            "the controller is not among the brokers; staying"
        );
        return Ok(connection);
    };
    let Ok(port) = u16::try_from(node.port) else {
        tracing::debug!(
            controller,
            port = node.port,
            "the controller's port is invalid; staying"
        );
        return Ok(connection);
    };
    let host = node.host.as_str();
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if addr == connection.addr || is_peer(&connection, host, port, timeout).await {
        return Ok(connection);
    }
    tracing::debug!(controller, %addr, "admin requests go to the controller; moving there");
    match Connection::open(&addr, timeout, security).await {
        Ok(controller) => Ok(controller),
        // The advertised name may not resolve from here (an operator outside the cluster,
        // reaching the brokers through a port-forward): stay where we are; a broker that is not
        // the controller answers NOT_CONTROLLER, which is retried.
        Err(error) => {
            tracing::debug!(%addr, %error, "the controller is unreachable; staying on the bootstrap broker");
            Ok(connection)
        }
    }
}

/// Whether `host:port` resolves to the broker `connection` is connected to.
async fn is_peer(connection: &Connection, host: &str, port: u16, timeout: Duration) -> bool {
    let Ok(peer) = login::peer_addr(&connection.stream) else {
        return false;
    };
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addrs)) => addrs.any(|a: SocketAddr| a == peer),
        _ => false,
    }
}

/// Picks, per API this client needs, the highest version both sides speak.
fn negotiate(broker: &[ApiVersion]) -> Result<Vec<(ApiKey, i16)>, KafkaError> {
    let common = |&(api, min, max): &(ApiKey, i16, i16)| {
        broker
            .iter()
            .find(|v| v.api_key == api as i16)
            .and_then(|v| {
                let version = max.min(v.max_version);
                (version >= min.max(v.min_version)).then_some((api, version))
            })
    };
    let mut versions = CLIENT_APIS
        .iter()
        .map(|entry| common(entry).ok_or(KafkaError::UnsupportedVersion { api: entry.0 }))
        .collect::<Result<Vec<_>, _>>()?;
    versions.extend(OPTIONAL_APIS.iter().filter_map(common));
    Ok(versions)
}

/// A request frame with its size prefix.
fn encode_request<R: Request>(
    api: ApiKey,
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<Bytes, KafkaError> {
    // The protocol library's errors are `anyhow` values: kept as their text.
    let error = |e: &dyn std::fmt::Display| KafkaError::Encode {
        api,
        source: ProtocolError::Codec {
            reason: format!("{e:#}"),
        },
    };
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| error(&e))?;
    request.encode(&mut buf, version).map_err(|e| error(&e))?;
    let size = i32::try_from(buf.len() - 4).map_err(|e| error(&e))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

fn decode<T: Decodable>(api: ApiKey, mut body: Bytes, version: i16) -> Result<T, KafkaError> {
    let response = T::decode(&mut body, version).map_err(|e| codec_error(api, &e))?;
    if body.has_remaining() {
        // Fields of a newer minor revision would land here; what was decoded is still right.
        tracing::debug!(
            ?api,
            version,
            remaining = body.remaining(),
            "ignoring bytes after a response"
        );
    }
    Ok(response)
}

/// Fuzzing entry point (`operator/fuzz`, target `admin_response`): `data[0]` picks a response
/// this client decodes (ApiVersions, or one of [`CLIENT_APIS`] and [`OPTIONAL_APIS`]), `data[1]` a version it would
/// negotiate, and the rest is a response frame as read off the wire (header, then body). Decoded
/// the way the client does: a value or an error, never a panic.
pub fn fuzz_decode_response(data: &[u8]) {
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsResponse, CreatePartitionsResponse, CreateTopicsResponse,
        DeleteTopicsResponse, DescribeConfigsResponse, IncrementalAlterConfigsResponse,
        ListPartitionReassignmentsResponse,
    };
    fn run<R: Decodable + HeaderVersion>(api: ApiKey, version: i16, frame: &[u8]) {
        let mut bytes = Bytes::copy_from_slice(frame);
        if ResponseHeader::decode(&mut bytes, R::header_version(version)).is_ok() {
            let _ = decode::<R>(api, bytes, version);
        }
    }
    let [pick, version, frame @ ..] = data else {
        return;
    };
    let apis: Vec<(ApiKey, i16, i16)> = CLIENT_APIS.iter().chain(OPTIONAL_APIS).copied().collect();
    let (api, min, max) = match apis.get(usize::from(*pick) % (apis.len() + 1)) {
        Some(&entry) => entry,
        None => (ApiKey::ApiVersions, 0, 3),
    };
    let version = min + i16::from(*version) % (max - min + 1);
    match api {
        ApiKey::ApiVersions => run::<ApiVersionsResponse>(api, version, frame),
        ApiKey::Metadata => run::<MetadataResponse>(api, version, frame),
        ApiKey::CreateTopics => run::<CreateTopicsResponse>(api, version, frame),
        ApiKey::CreatePartitions => run::<CreatePartitionsResponse>(api, version, frame),
        ApiKey::DescribeConfigs => run::<DescribeConfigsResponse>(api, version, frame),
        ApiKey::IncrementalAlterConfigs => {
            run::<IncrementalAlterConfigsResponse>(api, version, frame);
        }
        ApiKey::DeleteTopics => run::<DeleteTopicsResponse>(api, version, frame),
        ApiKey::AlterPartitionReassignments => {
            run::<AlterPartitionReassignmentsResponse>(api, version, frame);
        }
        ApiKey::ListPartitionReassignments => {
            run::<ListPartitionReassignmentsResponse>(api, version, frame);
        }
        ApiKey::DescribeUserScramCredentials => {
            run::<kafka_protocol::messages::DescribeUserScramCredentialsResponse>(
                api, version, frame,
            );
        }
        ApiKey::AlterUserScramCredentials => {
            run::<kafka_protocol::messages::AlterUserScramCredentialsResponse>(api, version, frame);
        }
        ApiKey::DescribeAcls => {
            run::<kafka_protocol::messages::DescribeAclsResponse>(api, version, frame);
        }
        ApiKey::SaslHandshake => {
            run::<kafka_protocol::messages::SaslHandshakeResponse>(api, version, frame);
        }
        ApiKey::SaslAuthenticate => {
            run::<kafka_protocol::messages::SaslAuthenticateResponse>(api, version, frame);
        }
        ApiKey::CreateAcls => {
            run::<kafka_protocol::messages::CreateAclsResponse>(api, version, frame)
        }
        ApiKey::DeleteAcls => {
            run::<kafka_protocol::messages::DeleteAclsResponse>(api, version, frame)
        }
        _ => {}
    }
}

/// Fuzzing entry point (`operator/fuzz`, target `scram_server`): the SCRAM server messages the
/// admin client reads during a login, `data[0]` picking which. A value or an error, never a
/// panic.
pub fn fuzz_scram_server_messages(data: &[u8]) {
    let [pick, message @ ..] = data else {
        return;
    };
    if pick % 2 == 0 {
        let _ = login::parse_server_first(message, "fuzz-nonce");
    } else {
        let _ = login::server_final_verifies(message, b"expected signature");
    }
}

fn codec_error(api: ApiKey, error: &dyn std::fmt::Display) -> KafkaError {
    KafkaError::Decode {
        api,
        source: ProtocolError::Codec {
            reason: format!("{error:#}"),
        },
    }
}

fn missing(api: ApiKey, topic: &str) -> KafkaError {
    KafkaError::Decode {
        api,
        source: ProtocolError::MissingResult {
            resource: format!("topic '{topic}'"),
        },
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, CreatePartitionsResponse, DeleteTopicsResponse};
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Builds the response frame from the request's header and body.
    type Reply = Box<dyn FnOnce(&RequestHeader, Bytes) -> Vec<u8> + Send>;

    /// A broker that answers each request on its first connection with the next reply, then
    /// keeps the connection open (or closes it).
    async fn fake_broker(replies: Vec<Reply>, keep_open: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            for reply in replies {
                let size = stream.read_i32().await.unwrap();
                let mut frame = vec![0; size as usize];
                stream.read_exact(&mut frame).await.unwrap();
                let mut frame = Bytes::from(frame);
                let header = decode_request_header_from_buffer(&mut frame).unwrap();
                stream.write_all(&reply(&header, frame)).await.unwrap();
            }
            if keep_open {
                // Read (and ignore) until the client hangs up.
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            }
        });
        addr
    }

    /// A response frame with its size prefix.
    fn frame<T: Encodable + HeaderVersion>(header: &RequestHeader, body: &T) -> Vec<u8> {
        let version = header.request_api_version;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut buf, T::header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    fn table(apis: &[(ApiKey, i16, i16)]) -> Vec<ApiVersion> {
        apis.iter()
            .map(|&(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect()
    }

    /// What a current Kafka broker offers, for the APIs this client uses.
    fn kafka_table() -> Vec<ApiVersion> {
        let mut apis = CLIENT_APIS.to_vec();
        apis.extend(OPTIONAL_APIS);
        apis.push((ApiKey::ApiVersions, 0, 4));
        table(&apis)
    }

    fn api_versions(apis: Vec<ApiVersion>) -> Reply {
        Box::new(move |h, _| frame(h, &ApiVersionsResponse::default().with_api_keys(apis)))
    }

    fn metadata(response: MetadataResponse) -> Reply {
        Box::new(move |h, _| frame(h, &response))
    }

    /// Metadata naming `controller` (at `addr`) as the controller.
    fn controller_at(controller: i32, addr: &str) -> MetadataResponse {
        let (host, port) = addr.rsplit_once(':').unwrap();
        MetadataResponse::default()
            .with_controller_id(BrokerId(controller))
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(controller))
                    .with_host(str_bytes(host))
                    .with_port(port.parse().unwrap()),
            ])
    }

    fn no_controller() -> MetadataResponse {
        MetadataResponse::default().with_controller_id(BrokerId(-1))
    }

    #[tokio::test]
    async fn api_versions_falls_back_to_v0_and_each_api_gets_the_highest_common_version() {
        let broker_apis = table(&[
            (ApiKey::ApiVersions, 0, 2),
            (ApiKey::Metadata, 0, 9),
            (ApiKey::CreateTopics, 2, 4),
            (ApiKey::CreatePartitions, 0, 1),
            (ApiKey::DescribeConfigs, 0, 2),
            (ApiKey::IncrementalAlterConfigs, 0, 1),
            (ApiKey::DeleteTopics, 0, 4),
        ]);
        let addr = fake_broker(
            vec![
                Box::new(|h, _| {
                    assert_eq!(h.request_api_version, 3);
                    // A broker that does not know v3 answers in v0, whatever was asked.
                    let mut v0 = h.clone();
                    v0.request_api_version = 0;
                    frame(
                        &v0,
                        &ApiVersionsResponse::default()
                            .with_error_code(ResponseError::UnsupportedVersion.code()),
                    )
                }),
                Box::new(move |h, _| {
                    assert_eq!(h.request_api_version, 0);
                    frame(
                        h,
                        &ApiVersionsResponse::default().with_api_keys(broker_apis),
                    )
                }),
                metadata(no_controller()),
            ],
            true,
        )
        .await;
        let admin = KafkaAdmin::connect(&addr, TIMEOUT).await.unwrap();
        let connection = admin.connection.as_ref().unwrap();
        let versions: Vec<_> = CLIENT_APIS
            .iter()
            .map(|(api, ..)| connection.version(*api).unwrap())
            .collect();
        assert_eq!(versions, vec![9, 4, 1, 2, 1, 4]);
    }

    #[test]
    fn a_broker_without_a_version_this_client_speaks_is_refused() {
        let without = |missing: ApiKey| -> Vec<ApiVersion> {
            kafka_table()
                .into_iter()
                .filter(|v| v.api_key != missing as i16)
                .collect()
        };
        let refused = |apis: &[ApiVersion]| match negotiate(apis) {
            Err(KafkaError::UnsupportedVersion { api }) => api,
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        };
        assert_eq!(
            refused(&without(ApiKey::IncrementalAlterConfigs)),
            ApiKey::IncrementalAlterConfigs
        );
        // Metadata below v4 cannot say "do not auto-create".
        let mut old_metadata = without(ApiKey::Metadata);
        old_metadata.extend(table(&[(ApiKey::Metadata, 0, 3)]));
        assert_eq!(refused(&old_metadata), ApiKey::Metadata);
        let mut future_only = without(ApiKey::CreateTopics);
        future_only.extend(table(&[(ApiKey::CreateTopics, 8, 9)]));
        assert_eq!(refused(&future_only), ApiKey::CreateTopics);
        let error = KafkaError::UnsupportedVersion {
            api: ApiKey::Metadata,
        };
        assert_eq!(error.reason(), "UnsupportedVersion");
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn admin_requests_go_to_the_controller() {
        let topic = MetadataResponseTopic::default()
            .with_name(Some(topic_name("orders")))
            .with_topic_id(uuid::Uuid::from_u128(7))
            .with_partitions(
                (0..3)
                    .map(|i| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i)
                            .with_replica_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
                    })
                    .collect(),
            );
        let controller = fake_broker(
            vec![
                api_versions(kafka_table()),
                metadata(no_controller().with_topics(vec![topic])),
            ],
            true,
        )
        .await;
        let bootstrap = fake_broker(
            vec![
                api_versions(kafka_table()),
                metadata(controller_at(2, &controller)),
            ],
            true,
        )
        .await;
        let mut admin = KafkaAdmin::connect(&bootstrap, TIMEOUT).await.unwrap();
        assert_eq!(admin.connection.as_ref().unwrap().addr, controller);
        let described = admin.describe_topic("orders").await.unwrap().unwrap();
        assert_eq!(
            described,
            TopicDescription {
                name: "orders".to_owned(),
                topic_id: Some(uuid::Uuid::from_u128(7).to_string()),
                partitions: 3,
                replication_factor: 3,
                replicas: vec![vec![1, 2, 3]; 3],
                brokers: described.brokers.clone(),
            }
        );
    }

    #[tokio::test]
    async fn an_unreachable_controller_address_keeps_the_bootstrap_connection() {
        // What a port-forward looks like: the broker advertises a name this side cannot reach.
        let unreachable = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let bootstrap = fake_broker(
            vec![
                api_versions(kafka_table()),
                metadata(controller_at(2, &unreachable)),
            ],
            true,
        )
        .await;
        let admin = KafkaAdmin::connect(&bootstrap, TIMEOUT).await.unwrap();
        assert_eq!(admin.connection.as_ref().unwrap().addr, bootstrap);
    }

    #[tokio::test]
    async fn delete_topics_v6_names_the_topic_in_a_struct() {
        let addr = fake_broker(
            vec![
                api_versions(kafka_table()),
                metadata(no_controller()),
                Box::new(|h, mut body| {
                    assert_eq!(h.request_api_version, 6);
                    let request = DeleteTopicsRequest::decode(&mut body, 6).unwrap();
                    assert!(request.topic_names.is_empty());
                    let names: Vec<_> = request.topics.iter().map(|t| t.name.clone()).collect();
                    assert_eq!(names, vec![Some(topic_name("orders"))]);
                    frame(
                        h,
                        &DeleteTopicsResponse::default().with_responses(vec![
                            DeletableTopicResult::default()
                                .with_name(Some(topic_name("orders")))
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        ]),
                    )
                }),
            ],
            true,
        )
        .await;
        let mut admin = KafkaAdmin::connect(&addr, TIMEOUT).await.unwrap();
        assert!(!admin.delete_topic("orders").await.unwrap());
    }

    #[tokio::test]
    async fn not_controller_is_transient_and_drops_the_connection() {
        let addr = fake_broker(
            vec![
                api_versions(kafka_table()),
                metadata(no_controller()),
                Box::new(|h, _| {
                    frame(
                        h,
                        &CreatePartitionsResponse::default().with_results(vec![
                            CreatePartitionsTopicResult::default()
                                .with_name(topic_name("orders"))
                                .with_error_code(ResponseError::NotController.code()),
                        ]),
                    )
                }),
            ],
            true,
        )
        .await;
        let mut admin = KafkaAdmin::connect(&addr, TIMEOUT).await.unwrap();
        let error = admin.create_partitions("orders", 6).await.unwrap_err();
        let KafkaError::Broker {
            api, error: name, ..
        } = &error
        else {
            panic!("expected a broker error, got {error:?}");
        };
        assert_eq!(
            (*api, name.as_str()),
            (ApiKey::CreatePartitions, "NOT_CONTROLLER")
        );
        assert!(error.is_transient());
        assert!(
            admin.connection.is_none(),
            "the next call looks for the controller again"
        );
    }

    async fn connect_error(replies: Vec<Reply>, keep_open: bool, timeout: Duration) -> KafkaError {
        let addr = fake_broker(replies, keep_open).await;
        KafkaAdmin::connect(&addr, timeout).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_truncated_response_is_a_protocol_error() {
        let truncated: Reply = Box::new(|h, _| {
            let mut bytes = frame(h, &controller_at(1, "broker-1.example:9092"));
            bytes.truncate(bytes.len() - 3);
            let size = (bytes.len() - 4) as i32;
            bytes[..4].copy_from_slice(&size.to_be_bytes());
            bytes
        });
        let error =
            connect_error(vec![api_versions(kafka_table()), truncated], true, TIMEOUT).await;
        assert!(
            matches!(
                error,
                KafkaError::Decode {
                    api: ApiKey::Metadata,
                    source: ProtocolError::Codec { .. }
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.reason(), "ProtocolError");
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_unread() {
        for size in [MAX_RESPONSE_BYTES as i32 + 1, -1] {
            let reply: Reply = Box::new(move |_, _| size.to_be_bytes().to_vec());
            let error = connect_error(vec![reply], true, TIMEOUT).await;
            assert!(
                matches!(
                    error,
                    KafkaError::Decode {
                        api: ApiKey::ApiVersions,
                        source: ProtocolError::FrameSize { size: s, .. }
                    } if s == i64::from(size)
                ),
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_response_to_another_request_is_refused() {
        let reply: Reply = Box::new(|h, _| {
            let mut other = h.clone();
            other.correlation_id += 1;
            frame(&other, &ApiVersionsResponse::default())
        });
        let error = connect_error(vec![reply], true, TIMEOUT).await;
        assert!(
            matches!(
                error,
                KafkaError::Decode {
                    source: ProtocolError::CorrelationId { .. },
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_closed_mid_response_is_transient() {
        let reply: Reply = Box::new(|_, _| {
            let mut bytes = 100i32.to_be_bytes().to_vec();
            bytes.extend([0; 10]);
            bytes
        });
        let error = connect_error(vec![reply], false, TIMEOUT).await;
        assert!(
            matches!(
                error,
                KafkaError::Io {
                    api: ApiKey::ApiVersions,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.reason(), "BrokerUnavailable");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn a_silent_broker_times_out_within_the_timeout() {
        let timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let error = connect_error(Vec::new(), true, timeout).await;
        assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
        assert!(
            matches!(
                error,
                KafkaError::Timeout {
                    api: ApiKey::ApiVersions,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.reason(), "BrokerUnavailable");
        assert!(error.is_transient());
    }

    #[test]
    fn broker_errors_carry_kafkas_name_a_label_and_whether_to_retry() {
        let cases = [
            (40, "INVALID_CONFIG", "InvalidConfig", false),
            (
                38,
                "INVALID_REPLICATION_FACTOR",
                "InvalidReplicationFactor",
                false,
            ),
            (37, "INVALID_PARTITIONS", "InvalidPartitions", false),
            (36, "TOPIC_ALREADY_EXISTS", "TopicAlreadyExists", false),
            (
                17,
                "INVALID_TOPIC_EXCEPTION",
                "InvalidTopicException",
                false,
            ),
            (41, "NOT_CONTROLLER", "NotController", true),
            (7, "REQUEST_TIMED_OUT", "RequestTimedOut", true),
            (14, "COORDINATOR_LOAD_IN_PROGRESS", "KafkaError", true),
            (8, "BROKER_NOT_AVAILABLE", "BrokerNotAvailable", true),
            (-1, "UNKNOWN_SERVER_ERROR", "UnknownServerError", false),
            (1000, "UNKNOWN_ERROR_CODE", "KafkaError", false),
        ];
        for (code, name, reason, transient) in cases {
            let error = KafkaError::broker(ApiKey::CreateTopics, code, None);
            assert!(
                matches!(&error, KafkaError::Broker { error, .. } if error == name),
                "{error:?}"
            );
            assert_eq!(error.reason(), reason, "{name}");
            assert_eq!(error.is_transient(), transient, "{name}");
            assert_eq!(error.error_code(), Some(code));
        }
        let error = KafkaError::broker(
            ApiKey::CreateTopics,
            40,
            Some(&str_bytes("cleanup.policy: shred")),
        );
        assert_eq!(
            error.to_string(),
            "CreateTopics refused: INVALID_CONFIG (40): cleanup.policy: shred"
        );
    }

    #[test]
    fn config_sources_keep_their_codes() {
        for code in -1..=8 {
            assert_eq!(ConfigSource::from_code(code).code(), code);
        }
        assert_eq!(ConfigSource::from_code(1), ConfigSource::DynamicTopic);
        assert_eq!(ConfigSource::from_code(5), ConfigSource::Default);
        assert_eq!(ConfigSource::from_code(8), ConfigSource::Other(8));
    }
}
