//! What a handler works with instead of the whole broker: the cluster metadata as the request
//! found it (one image for the whole request, so a response never mixes two), the hosted
//! partitions, the group coordinator, the broker's settings and metrics, and the metadata write
//! path (topic changes, producer ids). Reads answer from the request's image; a handler that
//! changes the metadata answers from what the change returns, or from [`Context::current_image`].
//!
//! [`Context::with_image`] runs a handler against any image, so routing and error logic (which
//! broker leads, which epoch is current) is tested by calling the handler directly, without a
//! socket or a second broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::broker::{
    AlterConfigsError, Broker, BrokerConfig, CreatePartitionsError, CreateTopicError,
    ElectLeaderError,
};
use crate::cluster::controller::ElectionType;
use crate::cluster::{
    BrokerRegistration, ConfigError, MetadataError, MetadataImage, ProduceConfig, TopicImage,
};
use crate::coordinator::{self, Coordination, CoordinatorHandle, GroupError, OFFSETS_TOPIC};
use crate::metrics::Metrics;
use crate::partition::PartitionHandle;
use crate::quorum::QuorumDescription;
use crate::security::Session;
use crate::security::acl::{self, Operation, ResourceType};

/// One request's view of the broker.
#[derive(Debug, Clone)]
pub struct Context {
    image: Arc<MetadataImage>,
    broker: Arc<Broker>,
    /// Who asks, when the broker authorises requests; without it (the broker's own calls) every
    /// operation is allowed.
    requester: Option<Arc<Requester>>,
    /// The `--listener` the client connected to (`None`: the first): it is told that
    /// listener's endpoints of every broker.
    listener: Option<Arc<str>>,
}

/// The client a request is authorised for.
#[derive(Debug)]
struct Requester {
    /// `User:<name>`.
    principal: String,
    /// The client's address, as ACLs name hosts.
    host: String,
}

impl Context {
    /// The broker's view as it stands now.
    pub fn new(broker: &Arc<Broker>) -> Self {
        Self::with_image(broker, broker.image())
    }

    /// A view of `broker` that sees the metadata as `image`.
    pub fn with_image(broker: &Arc<Broker>, image: Arc<MetadataImage>) -> Self {
        Self {
            image,
            broker: Arc::clone(broker),
            requester: None,
            listener: None,
        }
    }

    /// The same view for the client of `session`, whose requests are authorised against the ACLs
    /// when the broker has an authorizer.
    pub fn for_session(mut self, session: &Session) -> Self {
        self.listener.clone_from(&session.listener);
        if self.broker.authorizer().is_some() {
            self.requester = Some(Arc::new(Requester {
                principal: session.principal.to_string(),
                // An IPv4 client of a dual-stack listener as its IPv4 address, as ACLs name it.
                host: session.peer.ip().to_canonical().to_string(),
            }));
        }
        self
    }

    /// The same view with the metadata as it stands now (a request that waited, such as a long
    /// poll, checks leadership again).
    pub fn refreshed(&self) -> Self {
        Self {
            requester: self.requester.clone(),
            listener: self.listener.clone(),
            ..Self::new(&self.broker)
        }
    }

    /// Whether requests are authorised against ACLs at all (`--authorizer`).
    pub fn authorizing(&self) -> bool {
        self.broker.authorizer().is_some()
    }

    /// Whether the client may do `operation` on `resource_type` `name`; a denial is logged
    /// (rate-limited) and counted.
    pub fn authorized(
        &self,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.check(operation, resource_type, name, true)
    }

    /// [`Self::authorized`] on the cluster.
    pub fn authorized_cluster(&self, operation: Operation) -> bool {
        self.authorized(operation, ResourceType::Cluster, acl::CLUSTER_NAME)
    }

    /// [`Self::authorized`] without a log line or a count, for what a listing leaves out (as
    /// Kafka leaves topics a client may not describe out of Metadata).
    pub fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.check(operation, resource_type, name, false)
    }

    /// The operations the client may do on `resource_type` `name`, as the bit field Kafka's
    /// `authorized_operations` fields carry (bit `1 << code` per operation; every operation of
    /// the type without an authorizer). Asked silently: no denial is logged or counted.
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        resource_type
            .operations()
            .iter()
            .filter(|operation| self.may(**operation, resource_type, name))
            .fold(0, |bits, operation| bits | (1 << operation.code()))
    }

    /// Whether the client may do `operation` on some resource of `resource_type` (see
    /// [`acl::authorize_any`]); a denial is logged and counted.
    pub fn authorized_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        let (Some(authorizer), Some(requester)) = (self.broker.authorizer(), &self.requester)
        else {
            return true;
        };
        let allowed = acl::authorize_any(
            &self.image.acls,
            authorizer.super_users(),
            &requester.principal,
            &requester.host,
            operation,
            resource_type,
        );
        if !allowed {
            self.denied(
                authorizer,
                &acl::Action {
                    principal: &requester.principal,
                    host: &requester.host,
                    operation,
                    resource_type,
                    resource_name: "*",
                },
            );
        }
        allowed
    }

    fn check(
        &self,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
        log: bool,
    ) -> bool {
        let (Some(authorizer), Some(requester)) = (self.broker.authorizer(), &self.requester)
        else {
            return true;
        };
        let action = acl::Action {
            principal: &requester.principal,
            host: &requester.host,
            operation,
            resource_type,
            resource_name: name,
        };
        let allowed = authorizer.allows(&self.image.acls, &action);
        if !allowed && log {
            self.denied(authorizer, &action);
        }
        allowed
    }

    fn denied(&self, authorizer: &acl::Authorizer, action: &acl::Action<'_>) {
        authorizer.log_denied(action);
        self.broker
            .metrics()
            .authorization_denied(action.operation.name(), action.resource_type.name());
    }

    /// See [`Broker::leader_throttle`].
    pub fn leader_throttle(&self) -> &crate::replication::throttle::Throttle {
        self.broker.leader_throttle()
    }

    /// The metadata as the request found it.
    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    /// The metadata as it stands now (after a change this request made).
    pub fn current_image(&self) -> Arc<MetadataImage> {
        self.broker.image()
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.image.topic(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.image.topic_by_id(id)
    }

    /// The produce settings (`min.insync.replicas`, `compression.type`) of topic `name`.
    pub fn produce_config(&self, name: &str) -> Option<ProduceConfig> {
        self.image.produce_config(name, self.node_id())
    }

    /// How many replicas of a partition are in sync, as the metadata records its ISR (0 for a
    /// partition the metadata does not know).
    pub fn in_sync_replicas(&self, topic: &str, partition: i32) -> i32 {
        self.image
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .map_or(0, |p| i32::try_from(p.isr.len()).unwrap_or(i32::MAX))
    }

    /// The ids of the brokers registered in the cluster, which manual replica assignments may
    /// name.
    pub fn registered_brokers(&self) -> BTreeSet<i32> {
        self.image.brokers.keys().copied().collect()
    }

    pub fn node_id(&self) -> i32 {
        self.broker.node_id()
    }

    /// `replication_factor`, or the broker's default for -1.
    pub fn replication_factor_or_default(&self, replication_factor: i16) -> i16 {
        self.broker
            .replication_factor_or_default(replication_factor)
    }

    /// Whether this broker's metadata is known current (see [`Broker::metadata_current`]).
    pub fn metadata_current(&self) -> bool {
        self.broker.metadata_current()
    }

    pub fn config(&self) -> &BrokerConfig {
        self.broker.config()
    }

    pub fn metrics(&self) -> &Metrics {
        self.broker.metrics()
    }

    /// A partition hosted here.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionHandle> {
        self.broker.partition(topic, partition)
    }

    /// Asks (in the background) for `follower`, caught up, to join the ISR of a partition this
    /// broker leads (see [`Broker::join_isr`]).
    pub fn join_isr(&self, topic: &TopicImage, partition: i32, follower: i32) {
        self.broker.join_isr(topic, partition, follower);
    }

    /// The controller: the metadata quorum's leader, or this broker while none is known.
    pub fn controller_id(&self) -> i32 {
        self.broker.controller_id()
    }

    /// The metadata quorum as this broker sees it.
    pub fn quorum(&self) -> QuorumDescription {
        self.broker.quorum().describe()
    }

    /// The group coordinator (set once the broker is open).
    pub fn coordinator(&self) -> Option<&CoordinatorHandle> {
        self.broker.coordinator()
    }

    /// The broker that coordinates `group` (the leader of its `__consumer_offsets` partition),
    /// if it has one.
    pub fn coordinator_node(&self, group: &str) -> Option<&BrokerRegistration> {
        let topic = self.image.topic(OFFSETS_TOPIC)?;
        let partition = coordinator::partition_for(group, topic.partition_count());
        let leader = topic.partition(partition)?.leader;
        self.image.unfenced_brokers().find(|b| b.id == leader)
    }

    /// The coordinator of `group` if this broker coordinates it (it leads the group's
    /// `__consumer_offsets` partition, hosts it and has loaded it, and its metadata is current):
    /// COORDINATOR_LOAD_IN_PROGRESS while it loads, NOT_COORDINATOR otherwise.
    pub fn coordinator_for(&self, group: &str) -> Result<&CoordinatorHandle, GroupError> {
        let coordinator = self
            .coordinator()
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let leads = self
            .coordinator_node(group)
            .is_some_and(|node| node.id == self.node_id());
        if !leads || !self.broker.metadata_current() {
            return Err(GroupError::NotCoordinator);
        }
        match coordinator.coordinates(group) {
            Coordination::Serving => Ok(coordinator),
            Coordination::Loading => Err(GroupError::CoordinatorLoadInProgress),
            Coordination::Elsewhere => Err(GroupError::NotCoordinator),
        }
    }

    /// See [`Broker::validate_new_topic`].
    pub fn validate_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<i32, CreateTopicError> {
        self.broker
            .validate_new_topic(name, partitions, replication_factor, configs)
    }

    /// See [`Broker::create_topic`].
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignment: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, CreateTopicError> {
        self.broker
            .create_topic(name, partitions, replication_factor, assignment, configs)
            .await
    }

    /// See [`Broker::commit`]; a failure as the Kafka error and message to answer with.
    pub async fn commit(
        &self,
        records: Vec<crate::cluster::MetadataRecord>,
    ) -> Result<(), (kafka_protocol::error::ResponseError, String)> {
        use kafka_protocol::error::ResponseError;
        self.broker.commit(records).await.map_err(|error| {
            let code = match &error {
                MetadataError::Unavailable(_) => ResponseError::RequestTimedOut,
                _ => {
                    tracing::error!(%error, "committing a metadata change failed");
                    ResponseError::UnknownServerError
                }
            };
            (code, error.to_string())
        })
    }

    /// See [`Broker::delete_topic`].
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, MetadataError> {
        self.broker.delete_topic(name).await
    }

    /// See [`Broker::create_partitions`].
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<(), CreatePartitionsError> {
        self.broker
            .create_partitions(name, count, assignments, validate_only)
            .await
    }

    /// See [`Broker::alter_topic_configs`].
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError>,
        validate_only: bool,
    ) -> Result<(), AlterConfigsError> {
        self.broker
            .alter_topic_configs(name, change, validate_only)
            .await
    }

    /// See [`Broker::alter_broker_configs`].
    pub async fn alter_broker_configs(
        &self,
        resource: &str,
        change: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError>,
        validate_only: bool,
    ) -> Result<(), AlterConfigsError> {
        self.broker
            .alter_broker_configs(resource, change, validate_only)
            .await
    }

    /// Where clients are told to connect to this broker.
    pub fn advertised(&self) -> (&str, i32, &[crate::cluster::ListenerEndpoint]) {
        self.broker.advertised()
    }

    /// Where this client reaches `broker`: its endpoint on the listener the client connected
    /// to, `None` when it has no such listener (Kafka leaves it out).
    pub fn endpoint<'b>(&self, broker: &'b BrokerRegistration) -> Option<(&'b str, i32)> {
        broker.endpoint(self.listener.as_deref())
    }

    /// See [`Broker::reassign_partition`].
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
        keep_replication_factor: bool,
    ) -> Result<(), crate::broker::ReassignError> {
        self.broker
            .reassign_partition(topic, partition, target, keep_replication_factor)
            .await
    }

    /// See [`Broker::elect_leader`].
    pub async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> Result<(), ElectLeaderError> {
        self.broker.elect_leader(topic, partition, kind).await
    }

    /// The data directory: the broker's one log directory.
    pub fn log_dir(&self) -> std::path::PathBuf {
        let dir = &self.config().data_dir;
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())
    }

    /// The partitions hosted here, by topic and index.
    pub fn hosted(&self) -> Vec<((String, i32), PartitionHandle)> {
        self.broker.registry().hosted()
    }

    /// A producer id never handed out before, on this cluster.
    pub async fn new_producer_id(&self) -> Result<i64, MetadataError> {
        self.broker.new_producer_id().await
    }
}
