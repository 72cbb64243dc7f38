//! The cluster metadata as one immutable image, and the records that change it.
//!
//! Readers hold an `Arc<MetadataImage>` (see [`crate::quorum::Quorum::image`]) and never lock on the
//! request path. Every change is a [`MetadataRecord`], applied by [`MetadataImage::apply`] to make
//! the next image: one write path, deterministic, so every broker that applies the same records
//! in the same order holds the same image (the metadata log's state machine applies them).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::topic_config::{ProduceConfig, produce_config};
use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};

/// Where clients of a named listener reach a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Its rack (availability zone), if it has one.
    pub rack: Option<String>,
    /// The Kafka endpoint clients are told to connect to.
    pub host: String,
    pub port: i32,
    /// The endpoints of its other Kafka listeners (`--listener`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerEndpoint>,
    /// A fenced broker leads nothing and is left out of Metadata.
    pub fenced: bool,
    /// Chosen anew by every start of the broker process: a restart registers again.
    #[serde(default)]
    pub incarnation: Uuid,
    /// Set when the registration is applied (the image's offset then): grows with every
    /// registration, so a later one of the same broker is told from an earlier one.
    #[serde(default)]
    pub epoch: u64,
    /// Stopped through a controlled shutdown: fenced, and not unfenced by its heartbeats, until
    /// it registers again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shut_down: bool,
    /// The incarnation this one follows on the same data directory. The directory is locked
    /// while a process uses it, so that incarnation has stopped and its registration may be
    /// replaced at once; otherwise a live registration of the same id refuses this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Uuid>,
}

impl BrokerRegistration {
    /// Its endpoint on listener `name` (`None`: the first listener).
    pub fn endpoint(&self, name: Option<&str>) -> Option<(&str, i32)> {
        match name {
            None => Some((&self.host, self.port)),
            Some(name) => self
                .listeners
                .iter()
                .find(|l| l.name == name)
                .map(|l| (l.host.as_str(), l.port)),
        }
    }
}

#[cfg(test)]
impl BrokerRegistration {
    /// A live registration of broker `id` in `rack`, for tests.
    pub(crate) fn for_tests(id: i32, rack: Option<&str>) -> Self {
        Self {
            id,
            rack: rack.map(str::to_owned),
            host: "127.0.0.1".to_owned(),
            port: 9090 + id,
            listeners: Vec::new(),
            fenced: false,
            incarnation: Uuid::from_u128(1),
            epoch: 0,
            shut_down: false,
            replaces: None,
        }
    }
}

#[cfg(test)]
impl MetadataRecord {
    /// The creation of topic `name` with `configs`, one partition per replica list, for tests.
    pub(crate) fn topic_for_tests(
        name: &str,
        configs: &[(&str, &str)],
        replicas: &[&[i32]],
    ) -> Self {
        Self::CreateTopic {
            name: name.to_owned(),
            id: Uuid::from_u128(7),
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            partitions: replicas
                .iter()
                .map(|r| PartitionImage::new(r.to_vec()))
                .collect(),
        }
    }
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Broker ids, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The leader's broker id, -1 while the partition has none.
    pub leader: i32,
    /// Incremented at every leader change.
    pub leader_epoch: i32,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Incremented at every change of this partition (leader, ISR, replicas): what a conditional
    /// change names.
    pub partition_epoch: i32,
    /// While a reassignment moves the partition: the replicas being added, which are in
    /// `replicas` and catch up as followers (see [`super::reassignment`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// While a reassignment moves the partition: the replicas that go once every target replica
    /// is in sync; they are in `replicas` until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionImage {
    /// A new partition on `replicas`, led by the first, all in sync.
    pub fn new(replicas: Vec<i32>) -> Self {
        Self {
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            isr: replicas.clone(),
            partition_epoch: 0,
            replicas,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Sets the leader and ISR of a change, in a new leader epoch if the leader is another.
    fn change_leader(&mut self, leader: i32, isr: &[i32]) {
        if self.leader != leader {
            self.leader_epoch += 1;
        }
        self.leader = leader;
        self.isr = isr.to_vec();
        self.partition_epoch += 1;
    }

    /// Whether a reassignment is moving the partition.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }
}

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    /// Topic-level config overrides (Kafka names); absent keys take the broker defaults.
    pub configs: BTreeMap<String, String>,
    /// Partition `i` at index `i`.
    pub partitions: Vec<PartitionImage>,
}

impl TopicImage {
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    pub fn partition(&self, index: i32) -> Option<&PartitionImage> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// The whole cluster metadata at one point of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// How many changes the image is made of: a later image has a larger offset.
    #[serde(default)]
    pub offset: u64,
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Shared between images: a change copies only the topics it touches.
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    /// Producer ids below this have been handed out (in blocks); they are never reused.
    pub next_producer_id: i64,
    /// Dynamic broker configs by BROKER resource name: `""` cluster-wide, or a broker id
    /// (`broker_config`). A resource without any is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Brokers kept from leading (before a restart), with the registration epoch the drain
    /// applies to: a broker that registers again may lead again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leadership_drained: BTreeMap<i32, u64>,
    /// Brokers whose replicas the controller moves to others (see [`super::balance`]); kept
    /// across restarts, until the drain is ended.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub draining: std::collections::BTreeSet<i32>,
    /// The controller is evening out replicas and leaders over the brokers (see
    /// [`super::balance`]): asked for, or a broker new to the cluster registered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub balancing: bool,
    /// SCRAM credentials by user and mechanism (never a password: see
    /// [`crate::security::scram`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// ACL bindings (see [`crate::security::acl`]), each once.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub acls: std::collections::BTreeSet<AclBinding>,
}

/// One user's SCRAM credential for one mechanism, as records carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// Partition counts from one broker's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PartitionSummary {
    /// Partitions this broker leads.
    pub led: usize,
    /// Partitions this broker leads with fewer in-sync replicas than replicas.
    pub under_replicated: usize,
    /// Partitions without a leader, in the whole cluster.
    pub offline: usize,
}

/// Why a record does not fit the image it is applied to. Applying is deterministic: every
/// broker refuses the same record the same way, and the change it was part of changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("topic '{name}' already exists")]
    TopicExists { name: String },
    #[error("topic '{name}' does not exist")]
    UnknownTopic { name: String },
    /// A conditional change computed from an image that has moved on since (another change of
    /// the same broker or partition came first): refused, the controller decides again.
    #[error("stale change: {0}")]
    Stale(String),
    /// A registration refused by the controller: another live process holds the node id.
    #[error(
        "node id {id} is registered by another live broker process (incarnation {incarnation}, \
         Kafka endpoint {endpoint}); a second process may not claim it"
    )]
    DuplicateBroker {
        id: i32,
        incarnation: Uuid,
        endpoint: String,
    },
}

/// One change of the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// Names a new cluster, with the SCRAM credentials it starts with
    /// (`--initial-scram-credentials`); ignored once the cluster has a name (voters starting
    /// together may each propose one: the first committed wins).
    InitCluster {
        cluster_id: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        credentials: Vec<UserScramCredential>,
    },
    /// Sets (adds or replaces) a user's SCRAM credential for one mechanism.
    SetScramCredential(UserScramCredential),
    /// Removes a user's SCRAM credential for one mechanism (nothing if it has none).
    DeleteScramCredential {
        user: String,
        mechanism: ScramMechanism,
    },
    /// Adds ACL bindings (one already there stays, once).
    CreateAcls { bindings: Vec<AclBinding> },
    /// Removes ACL bindings (one not there is nothing).
    DeleteAcls { bindings: Vec<AclBinding> },
    /// A broker joins, or comes back with new endpoints; replaces its registration.
    RegisterBroker(BrokerRegistration),
    CreateTopic {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
        partitions: Vec<PartitionImage>,
    },
    /// Partitions appended to a topic (numbered after its existing ones).
    CreatePartitions {
        name: String,
        partitions: Vec<PartitionImage>,
        /// The partition count the new partitions were planned for: refused as stale if the
        /// topic has another (a retried or concurrent request never adds twice).
        #[serde(default)]
        after: Option<i32>,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        /// The topic (id) and overrides the change was computed from: refused as stale if the
        /// topic is another or its overrides changed since, so a concurrent change is never
        /// overwritten. A change already in place applies again as nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<(Uuid, BTreeMap<String, String>)>,
    },
    /// Replaces the dynamic broker configs of BROKER resource `resource` (`""`: cluster-wide).
    SetBrokerConfigs {
        resource: String,
        configs: BTreeMap<String, String>,
        /// The configs the change was computed from: refused as stale if they changed since. A
        /// change already in place applies again as nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<BTreeMap<String, String>>,
    },
    DeleteTopic {
        name: String,
        /// The topic's id: a topic created again under the same name is not deleted by a retry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Uuid>,
    },
    /// Hands out producer ids `next_producer_id..next_producer_id + count`.
    AllocateProducerIds { count: i64 },
    /// The controller stopped hearing from the broker: it leads nothing until it is heard again.
    /// Applies only to the registration of `epoch`.
    FenceBroker { id: i32, epoch: u64 },
    /// The controller hears from a fenced broker again. Applies only to the registration of
    /// `epoch`.
    UnfenceBroker { id: i32, epoch: u64 },
    /// The broker of registration `epoch` is stopping (a controlled shutdown): it is fenced at
    /// once and the controller moves its leaderships away.
    ShutDownBroker { id: i32, epoch: u64 },
    /// A new leader and ISR for one partition, computed from the partition at
    /// `partition_epoch` of the topic with id `topic_id`; refused if either has changed since.
    /// A change of leader starts a new leader epoch.
    ChangePartition {
        topic: String,
        topic_id: Uuid,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
    /// Keeps the broker of registration `epoch` from leading (the controller moves its
    /// leaderships to other in-sync replicas), or with `drained` false lets it lead again.
    DrainLeadership { id: i32, epoch: u64, drained: bool },
    /// Starts (or with `draining` false ends) moving every replica off broker `id`.
    DrainBroker { id: i32, draining: bool },
    /// Starts the balancer, or (the controller, once balanced) stops it.
    Balance { balancing: bool },
    /// A reassignment of one partition started, cancelled or completed: its replicas (with those
    /// being added and removed), leader and ISR, computed from the partition at `partition_epoch`
    /// of the topic with id `topic_id` (see [`super::reassignment`]); refused if either has
    /// changed since. A change of leader starts a new leader epoch.
    ReassignPartition {
        topic: String,
        topic_id: Uuid,
        partition: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        adding: Vec<i32>,
        removing: Vec<i32>,
        leader: i32,
        isr: Vec<i32>,
    },
}

/// The topic configs [`produce_config`] reads.
const PRODUCE_KEYS: [&str; 3] = [
    "min.insync.replicas",
    "compression.type",
    "max.message.bytes",
];

impl MetadataImage {
    /// The image of a new cluster.
    pub fn new(cluster_id: String) -> Self {
        Self {
            offset: 0,
            cluster_id,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_producer_id: 0,
            broker_configs: BTreeMap::new(),
            leadership_drained: BTreeMap::new(),
            draining: std::collections::BTreeSet::new(),
            balancing: false,
            scram: BTreeMap::new(),
            acls: std::collections::BTreeSet::new(),
        }
    }

    /// The SCRAM credential of `user` for `mechanism`.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.scram.get(user)?.get(&mechanism)
    }

    fn set_scram_credential(&mut self, credential: &UserScramCredential) {
        self.scram
            .entry(credential.user.clone())
            .or_default()
            .insert(credential.mechanism, credential.credential.clone());
    }

    /// Whether broker `id` is kept from leading, as registered now.
    pub fn is_leadership_drained(&self, id: i32) -> bool {
        self.leadership_drained
            .get(&id)
            .is_some_and(|epoch| self.brokers.get(&id).is_some_and(|b| b.epoch == *epoch))
    }

    /// The brokers that may lead: usable, and not kept from leading.
    pub fn leading_brokers(&self) -> std::collections::BTreeSet<i32> {
        let mut usable = self.usable_brokers();
        usable.retain(|id| !self.is_leadership_drained(*id));
        usable
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// The topic with id `id` (requests of Produce v13+ and Fetch v13+ name topics by id). A scan:
    /// a cluster's topics number in the thousands at most, and the scan compares 16 bytes each.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        if id.is_nil() {
            return None;
        }
        self.topics.values().find(|topic| topic.id == id)
    }

    /// The produce settings of topic `name` on broker `node_id`, dynamic broker configs included
    /// (on every produce: no copy of the topic is made unless broker configs are set).
    pub fn produce_config(&self, name: &str, node_id: i32) -> Option<ProduceConfig> {
        self.topics.get(name).map(|topic| {
            if self.broker_configs.is_empty() {
                return produce_config(&topic.configs);
            }
            // Only the keys produce reads, each the topic's override or what it inherits.
            let configs: BTreeMap<String, String> = PRODUCE_KEYS
                .iter()
                .filter_map(|key| {
                    let value = topic
                        .configs
                        .get(*key)
                        .or_else(|| super::broker_config::inherited(self, node_id, key))?;
                    Some(((*key).to_owned(), value.clone()))
                })
                .collect();
            produce_config(&configs)
        })
    }

    /// Partition counts as this broker sees them, for status and health checks.
    pub fn partition_summary(&self, node_id: i32) -> PartitionSummary {
        let mut summary = PartitionSummary::default();
        for partition in self.topics.values().flat_map(|t| &t.partitions) {
            if partition.leader < 0 {
                summary.offline += 1;
            }
            if partition.leader == node_id {
                summary.led += 1;
                // Kafka's UnderReplicatedPartitions: counted by the leader.
                if partition.isr.len() < partition.replicas.len() {
                    summary.under_replicated += 1;
                }
            }
        }
        summary
    }

    /// The brokers that may lead: registered, unfenced, not shutting down.
    pub fn usable_brokers(&self) -> std::collections::BTreeSet<i32> {
        self.unfenced_brokers()
            .filter(|b| !b.shut_down)
            .map(|b| b.id)
            .collect()
    }

    /// The brokers clients may use, by id.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Applies `record` to this image. A record that does not fit the image (a topic created
    /// twice, a change to a topic that is gone) is an error and changes nothing.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::InitCluster {
                cluster_id,
                credentials,
            } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id.clone_from(cluster_id);
                    for credential in credentials {
                        self.set_scram_credential(credential);
                    }
                }
            }
            MetadataRecord::SetScramCredential(credential) => self.set_scram_credential(credential),
            MetadataRecord::DeleteScramCredential { user, mechanism } => {
                if let Some(credentials) = self.scram.get_mut(user) {
                    credentials.remove(mechanism);
                    if credentials.is_empty() {
                        self.scram.remove(user);
                    }
                }
            }
            MetadataRecord::CreateAcls { bindings } => {
                self.acls.extend(bindings.iter().cloned());
            }
            MetadataRecord::DeleteAcls { bindings } => {
                for binding in bindings {
                    self.acls.remove(binding);
                }
            }
            MetadataRecord::RegisterBroker(registration) => {
                let epoch = self.offset + 1;
                let restarted = self
                    .brokers
                    .get(&registration.id)
                    .is_some_and(|before| before.incarnation != registration.incarnation);
                // A broker new to a cluster that holds users' topics gets its share of them (not
                // one of a cluster forming: its internal topics exist from the first broker on).
                if !self.brokers.contains_key(&registration.id)
                    && self.topics.keys().any(|name| !name.starts_with("__"))
                {
                    self.balancing = true;
                }
                self.brokers.insert(
                    registration.id,
                    BrokerRegistration {
                        epoch,
                        shut_down: false,
                        ..registration.clone()
                    },
                );
                if restarted {
                    self.leave_isrs(registration.id);
                }
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                configs,
                partitions,
            } => {
                if self.topics.contains_key(name) {
                    return Err(ApplyError::TopicExists { name: name.clone() });
                }
                let topic = TopicImage {
                    name: name.clone(),
                    id: *id,
                    configs: configs.clone(),
                    partitions: partitions.clone(),
                };
                self.topics.insert(name.clone(), Arc::new(topic));
            }
            MetadataRecord::CreatePartitions {
                name,
                partitions,
                after,
            } => {
                let topic = self.topic_mut(name)?;
                if after.is_some_and(|count| count != topic.partition_count()) {
                    return Err(ApplyError::Stale(format!(
                        "topic '{name}' no longer has {} partitions",
                        after.unwrap_or_default()
                    )));
                }
                topic.partitions.extend(partitions.iter().cloned());
            }
            MetadataRecord::SetTopicConfigs {
                name,
                configs,
                from,
            } => {
                let topic = self.topic(name).ok_or_else(|| unknown(name))?;
                if topic.configs == *configs {
                    return Ok(());
                }
                if let Some((id, previous)) = from
                    && (topic.id != *id || topic.configs != *previous)
                {
                    return Err(ApplyError::Stale(format!(
                        "the configs of topic '{name}' changed since this change was computed"
                    )));
                }
                self.topic_mut(name)?.configs = configs.clone();
            }
            MetadataRecord::SetBrokerConfigs {
                resource,
                configs,
                from,
            } => {
                let current = self.broker_configs.get(resource);
                if current.map_or(configs.is_empty(), |current| current == configs) {
                    return Ok(());
                }
                if let Some(previous) = from
                    && current.map_or(!previous.is_empty(), |current| current != previous)
                {
                    return Err(ApplyError::Stale(format!(
                        "the configs of broker resource '{resource}' changed since this change was computed"
                    )));
                }
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                } else {
                    self.broker_configs
                        .insert(resource.clone(), configs.clone());
                }
            }
            MetadataRecord::DeleteTopic { name, id } => {
                let topic = self.topic(name).ok_or_else(|| unknown(name))?;
                if id.is_some_and(|id| id != topic.id) {
                    return Err(unknown(name));
                }
                self.topics.remove(name);
            }
            MetadataRecord::AllocateProducerIds { count } => {
                self.next_producer_id = self.next_producer_id.saturating_add(*count);
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                self.registration_mut(*id, *epoch)?.fenced = true;
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                let broker = self.registration_mut(*id, *epoch)?;
                if broker.shut_down {
                    return Err(ApplyError::Stale(format!(
                        "broker {id} is shutting down at epoch {epoch}"
                    )));
                }
                broker.fenced = false;
            }
            MetadataRecord::ShutDownBroker { id, epoch } => {
                let broker = self.registration_mut(*id, *epoch)?;
                broker.fenced = true;
                broker.shut_down = true;
            }
            MetadataRecord::ChangePartition {
                topic,
                topic_id,
                partition,
                partition_epoch,
                leader,
                isr,
            } => {
                let current = self.partition_at(topic, *topic_id, *partition, *partition_epoch)?;
                current.change_leader(*leader, isr);
            }
            MetadataRecord::DrainLeadership { id, epoch, drained } => {
                self.registration_mut(*id, *epoch)?;
                if *drained {
                    self.leadership_drained.insert(*id, *epoch);
                } else {
                    self.leadership_drained.remove(id);
                }
            }
            MetadataRecord::Balance { balancing } => self.balancing = *balancing,
            MetadataRecord::DrainBroker { id, draining } => {
                if !self.brokers.contains_key(id) {
                    return Err(ApplyError::Stale(format!("broker {id} is not registered")));
                }
                if *draining {
                    self.draining.insert(*id);
                } else {
                    self.draining.remove(id);
                }
            }
            MetadataRecord::ReassignPartition {
                topic,
                topic_id,
                partition,
                partition_epoch,
                replicas,
                adding,
                removing,
                leader,
                isr,
            } => {
                let current = self.partition_at(topic, *topic_id, *partition, *partition_epoch)?;
                current.replicas.clone_from(replicas);
                current.adding.clone_from(adding);
                current.removing.clone_from(removing);
                current.change_leader(*leader, isr);
            }
        }
        Ok(())
    }

    /// A broker process that registers anew may have lost what its predecessor held (an empty or
    /// damaged data directory), so it leaves every ISR it was in, as KIP-903 has it: it rejoins
    /// once its leader finds it caught up, and cannot lead before. A partition it led loses its
    /// leader (a new epoch) until the controller elects one of the others. Where it is the last
    /// in-sync replica it stays, as a fenced last member does: its return is the partition's.
    fn leave_isrs(&mut self, id: i32) {
        for topic in self.topics.values_mut() {
            if !topic
                .partitions
                .iter()
                .any(|p| p.isr.len() > 1 && p.isr.contains(&id))
            {
                continue;
            }
            for partition in &mut Arc::make_mut(topic).partitions {
                if partition.isr.len() > 1 && partition.isr.contains(&id) {
                    partition.isr.retain(|member| *member != id);
                    if partition.leader == id {
                        partition.leader = -1;
                        partition.leader_epoch += 1;
                    }
                    partition.partition_epoch += 1;
                }
            }
        }
    }

    /// Partition `index` of the topic `name` with id `topic_id`, if it is still at
    /// `partition_epoch`: a change computed from another state of it is stale.
    fn partition_at(
        &mut self,
        name: &str,
        topic_id: Uuid,
        index: i32,
        partition_epoch: i32,
    ) -> Result<&mut PartitionImage, ApplyError> {
        let stale = || {
            ApplyError::Stale(format!(
                "partition {name}-{index} is no longer at partition epoch {partition_epoch}"
            ))
        };
        let image = self.topic_mut(name)?;
        if image.id != topic_id {
            return Err(stale());
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| image.partitions.get_mut(i))
            .filter(|p| p.partition_epoch == partition_epoch)
            .ok_or_else(stale)
    }

    /// Broker `id` as registered at `epoch`: a change computed for an earlier registration is
    /// stale.
    fn registration_mut(
        &mut self,
        id: i32,
        epoch: u64,
    ) -> Result<&mut BrokerRegistration, ApplyError> {
        self.brokers
            .get_mut(&id)
            .filter(|b| b.epoch == epoch)
            .ok_or_else(|| {
                ApplyError::Stale(format!("broker {id} is not registered at epoch {epoch}"))
            })
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut TopicImage, ApplyError> {
        self.topics
            .get_mut(name)
            .map(Arc::make_mut)
            .ok_or_else(|| unknown(name))
    }
}

fn unknown(name: &str) -> ApplyError {
    ApplyError::UnknownTopic {
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32, rack: &str) -> BrokerRegistration {
        BrokerRegistration::for_tests(id, Some(rack))
    }

    fn create(name: &str, replicas: &[&[i32]]) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.to_owned(),
            id: Uuid::from_u128(7),
            configs: BTreeMap::new(),
            partitions: replicas
                .iter()
                .map(|r| PartitionImage::new(r.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_broker_registering_anew_leaves_every_isr_but_where_it_is_the_last_member() {
        let mut image = MetadataImage::new("c".to_owned());
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c")] {
            image
                .apply(&MetadataRecord::RegisterBroker(broker(id, rack)))
                .unwrap();
        }
        image
            .apply(&create("t", &[&[1, 2, 3], &[2, 1, 3], &[1]]))
            .unwrap();
        // The same process registering again keeps its place.
        image
            .apply(&MetadataRecord::RegisterBroker(broker(1, "a")))
            .unwrap();
        assert_eq!(
            image.topic("t").unwrap().partition(0).unwrap().isr,
            [1, 2, 3]
        );
        let mut restarted = broker(1, "a");
        restarted.incarnation = Uuid::from_u128(99);
        image
            .apply(&MetadataRecord::RegisterBroker(restarted))
            .unwrap();
        let topic = image.topic("t").unwrap();
        let led = topic.partition(0).unwrap();
        assert_eq!(
            (led.leader, led.leader_epoch, led.partition_epoch),
            (-1, 1, 1)
        );
        assert_eq!(led.isr, [2, 3]);
        let followed = topic.partition(1).unwrap();
        assert_eq!((followed.leader, followed.leader_epoch), (2, 0));
        assert_eq!(followed.isr, [2, 3]);
        let alone = topic.partition(2).unwrap();
        assert_eq!((alone.leader, alone.isr.as_slice()), (1, &[1][..]));
    }

    #[test]
    fn records_build_the_image_and_earlier_images_stay_as_they_were() {
        let mut image = MetadataImage::new("c".to_owned());
        image
            .apply(&MetadataRecord::RegisterBroker(broker(1, "a")))
            .unwrap();
        image
            .apply(&MetadataRecord::RegisterBroker(broker(2, "b")))
            .unwrap();
        image.apply(&create("t", &[&[1, 2], &[2, 1]])).unwrap();
        let before = image.clone();
        image
            .apply(&MetadataRecord::CreatePartitions {
                name: "t".to_owned(),
                partitions: vec![PartitionImage::new(vec![1, 2])],
                after: Some(2),
            })
            .unwrap();
        image
            .apply(&MetadataRecord::SetTopicConfigs {
                name: "t".to_owned(),
                configs: BTreeMap::from([("retention.ms".to_owned(), "5".to_owned())]),
                from: None,
            })
            .unwrap();
        image
            .apply(&MetadataRecord::AllocateProducerIds { count: 1000 })
            .unwrap();

        let topic = image.topic("t").unwrap();
        assert_eq!(topic.partition_count(), 3);
        let second = topic.partition(1).unwrap();
        assert_eq!((second.leader, second.leader_epoch), (2, 0));
        assert_eq!(second.isr, [2, 1]);
        assert_eq!(topic.configs["retention.ms"], "5");
        assert_eq!(image.next_producer_id, 1000);
        assert_eq!(
            before.topic("t").unwrap().partition_count(),
            2,
            "copy on write"
        );
        assert!(before.topic("t").unwrap().configs.is_empty());
        assert_eq!(
            image.unfenced_brokers().map(|b| b.id).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn records_that_do_not_fit_change_nothing() {
        let mut image = MetadataImage::new("c".to_owned());
        image.apply(&create("t", &[&[1]])).unwrap();
        let before = image.clone();
        assert!(matches!(
            image.apply(&create("t", &[&[1]])),
            Err(ApplyError::TopicExists { .. })
        ));
        let gone = "u".to_owned();
        for record in [
            MetadataRecord::DeleteTopic {
                name: gone.clone(),
                id: None,
            },
            MetadataRecord::SetTopicConfigs {
                name: gone.clone(),
                configs: BTreeMap::new(),
                from: None,
            },
            MetadataRecord::CreatePartitions {
                name: gone,
                partitions: vec![],
                after: None,
            },
        ] {
            assert!(matches!(
                image.apply(&record),
                Err(ApplyError::UnknownTopic { .. })
            ));
        }
        assert_eq!(image, before);
        image
            .apply(&MetadataRecord::DeleteTopic {
                name: "t".to_owned(),
                id: None,
            })
            .unwrap();
        assert!(image.topics.is_empty());
    }

    /// Topic changes name what they were computed from: a retried delete does not remove a topic
    /// created again under the same name, and a config change computed from overrides that have
    /// changed since is refused, while one already in place applies as nothing.
    #[test]
    fn topic_changes_are_conditional_on_what_they_saw() {
        let mut image = MetadataImage::new("c".to_owned());
        image.apply(&create("t", &[&[1]])).unwrap();
        let old_id = Uuid::from_u128(6);
        assert!(matches!(
            image.apply(&MetadataRecord::DeleteTopic {
                name: "t".to_owned(),
                id: Some(old_id),
            }),
            Err(ApplyError::UnknownTopic { .. })
        ));
        let id = image.topic("t").unwrap().id;
        let set = |value: &str, from: &[(&str, &str)]| MetadataRecord::SetTopicConfigs {
            name: "t".to_owned(),
            configs: BTreeMap::from([("retention.ms".to_owned(), value.to_owned())]),
            from: Some((
                id,
                from.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )),
        };
        image.apply(&set("5", &[])).unwrap();
        image.apply(&set("5", &[])).unwrap();
        assert!(matches!(
            image.apply(&set("6", &[])),
            Err(ApplyError::Stale(_))
        ));
        image.apply(&set("6", &[("retention.ms", "5")])).unwrap();
        assert_eq!(image.topic("t").unwrap().configs["retention.ms"], "6");
        image
            .apply(&MetadataRecord::DeleteTopic {
                name: "t".to_owned(),
                id: Some(id),
            })
            .unwrap();
        assert!(image.topics.is_empty());
    }

    #[test]
    fn the_summary_counts_led_under_replicated_and_offline_partitions() {
        let mut image = MetadataImage::new("c".to_owned());
        image
            .apply(&create("t", &[&[1, 2], &[2, 1], &[1, 3]]))
            .unwrap();
        let topic = Arc::make_mut(image.topics.get_mut("t").unwrap());
        topic.partitions[0].isr = vec![1];
        topic.partitions[1].leader = -1;
        assert_eq!(
            image.partition_summary(1),
            PartitionSummary {
                led: 2,
                under_replicated: 1,
                offline: 1
            }
        );
        assert_eq!(image.partition_summary(2).led, 0);
    }

    #[test]
    fn a_partition_without_replicas_has_no_leader() {
        assert_eq!(PartitionImage::new(vec![]).leader, -1);
    }
}
