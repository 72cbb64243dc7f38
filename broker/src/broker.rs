//! The broker's shared state: its configuration, the cluster metadata and the registry of the
//! partitions it hosts. Handlers see it through a per-request [`crate::handler::Context`]. A change
//! of topics is committed to the metadata, then applied to the registry before the request that
//! made it is answered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cluster::freshness::Freshness;
use crate::cluster::placement::{self, AssignmentError};
use crate::cluster::{
    self, ApplyError, BrokerRegistration, ConfigError, ListenerEndpoint, MetadataError,
    MetadataImage, MetadataRecord, PartitionImage, TopicImage,
};
use crate::coordinator::{self, CoordinatorFlags, CoordinatorHandle, OFFSETS_TOPIC};
use crate::log::{Clock, SystemClock};
use crate::metrics::{ClusterSample, GroupOffsetSample, Metrics, PartitionSample};
use crate::partition::PartitionHandle;
use crate::partition::registry::{PartitionRegistry, RegistryError};
use crate::partition::state::Event as ReplicaEvent;
use crate::quorum::{Quorum, QuorumConfig, QuorumError};
use crate::replication::follower::Fetchers;

/// Broker settings. Every one is a command-line flag with an environment twin (`FJORD_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerConfig {
    /// Directory holding partition logs and cluster metadata.
    #[arg(long, env = "FJORD_DATA_DIR", default_value = "fjord-data")]
    pub data_dir: PathBuf,
    /// Address of the Kafka listener.
    #[arg(long, env = "FJORD_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Address of the HTTP admin endpoint (`/livez`, `/readyz`, `/metrics`, `/v1/status`).
    #[arg(long, env = "FJORD_ADMIN_LISTEN", default_value = "127.0.0.1:9644")]
    pub admin_listen: SocketAddr,
    /// `host:port` given to clients in metadata; defaults to the listener's address.
    #[arg(long, env = "FJORD_ADVERTISE")]
    pub advertise: Option<String>,
    /// More Kafka listeners, each `NAME:PROTOCOL://ADDRESS` (`PLAINTEXT`, `SSL`,
    /// `SASL_PLAINTEXT` or `SASL_SSL`; e.g. `CLIENT_CERTS:SSL://0.0.0.0:9094`), comma-separated
    /// or repeated. They share the TLS files and SASL mechanisms of the first; an `SSL` one
    /// asks clients for a certificate when `--tls-client-ca` is given. A client is told the
    /// addresses of the listener it connected to (Kafka's `listeners`).
    #[arg(long = "listener", env = "FJORD_LISTENERS", value_delimiter = ',')]
    pub listeners: Vec<crate::listener::ListenerFlag>,
    /// Where clients are told to reach a `--listener`, each `NAME://HOST:PORT`; defaults to the
    /// listener's address (Kafka's `advertised.listeners`).
    #[arg(
        long = "advertise-listener",
        env = "FJORD_ADVERTISE_LISTENERS",
        value_delimiter = ','
    )]
    pub advertise_listeners: Vec<crate::listener::AdvertisedListener>,
    /// This broker's node id.
    #[arg(long, env = "FJORD_NODE_ID", default_value_t = 1)]
    pub node_id: i32,
    /// The metadata quorum, Kafka's `controller.quorum.voters`: comma-separated `id@host:port` of
    /// each voter's cluster listener. Left out, the broker is a single-node cluster of itself. A
    /// broker not named here follows the metadata log without a vote.
    #[arg(long, env = "FJORD_VOTERS", value_delimiter = ',')]
    pub voters: Vec<crate::quorum::Voter>,
    /// Address of the inter-broker listener (metadata quorum, forwarded changes).
    #[arg(long, env = "FJORD_CLUSTER_LISTEN", default_value = "127.0.0.1:9093")]
    pub cluster_listen: SocketAddr,
    /// `host:port` other brokers reach the cluster listener at; defaults to this broker's
    /// `--voters` entry, or the listener's address.
    #[arg(long, env = "FJORD_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,
    /// How often this broker tells the controller it is alive (`broker.heartbeat.interval.ms`).
    #[arg(
        long,
        env = "FJORD_BROKER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 2000
    )]
    pub broker_heartbeat_interval_ms: u64,
    /// A broker the controller has not heard from for this long is fenced: it leads nothing
    /// until it is heard again (`broker.session.timeout.ms`).
    #[arg(long, env = "FJORD_BROKER_SESSION_TIMEOUT_MS", default_value_t = 9000)]
    pub broker_session_timeout_ms: u64,
    /// A follower that has not caught up with its leader for this long leaves the ISR, so the
    /// high watermark (and `acks=all`) no longer waits for it (`replica.lag.time.max.ms`).
    #[arg(long, env = "FJORD_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000)]
    pub replica_lag_time_max_ms: u64,
    /// While this broker is the controller, hand each partition's leadership back to its
    /// preferred replica (the first) once that is usable and in sync again
    /// (`auto.leader.rebalance.enable`).
    #[arg(long, env = "FJORD_AUTO_LEADER_REBALANCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance: bool,
    /// The cluster id a new cluster is formed with (and a data directory is checked against);
    /// unset, a new cluster picks one.
    #[arg(long, env = "FJORD_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// This broker's rack (availability zone), reported in metadata.
    #[arg(long, env = "FJORD_RACK")]
    pub rack: Option<String>,
    /// Create unknown topics when a client asks for their metadata (`auto.create.topics.enable`).
    #[arg(long, env = "FJORD_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics and of CreateTopics with -1 (`num.partitions`).
    #[arg(long, env = "FJORD_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,
    /// Replicas per partition of auto-created topics and of CreateTopics with -1
    /// (`default.replication.factor`); more than the live brokers is refused.
    #[arg(long, env = "FJORD_DEFAULT_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
    pub default_replication_factor: i16,
    /// Largest request frame accepted; a larger one closes the connection (`socket.request.max.bytes`).
    #[arg(long, env = "FJORD_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Most client connections served at once.
    #[arg(long, env = "FJORD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    #[command(flatten)]
    pub coordinator: CoordinatorFlags,
    #[command(flatten)]
    pub security: crate::security::SecurityFlags,
    /// How often each compacted partition checks whether its dirty ratio calls for a
    /// compaction pass, in milliseconds (`log.cleaner.backoff.ms`).
    #[arg(long, env = "FJORD_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000)]
    pub log_cleaner_backoff_ms: u64,
}

impl BrokerConfig {
    /// Defaults for a broker in `data_dir` listening on an ephemeral loopback port (tests).
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            listeners: Vec::new(),
            advertise_listeners: Vec::new(),
            node_id: 1,
            voters: Vec::new(),
            cluster_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster_advertise: None,
            cluster_id: None,
            broker_heartbeat_interval_ms: 2000,
            broker_session_timeout_ms: 9000,
            replica_lag_time_max_ms: 30_000,
            auto_leader_rebalance: true,
            rack: None,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            max_request_bytes: 100 * 1024 * 1024,
            max_connections: 1000,
            security: crate::security::SecurityFlags::default(),
            coordinator: CoordinatorFlags {
                offsets_topic_partitions: 3,
                group_initial_rebalance_delay_ms: 0,
                ..CoordinatorFlags::default()
            },
            log_cleaner_backoff_ms: 15_000,
        }
    }
}

/// Errors that stop the broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating or locking {path} (the data directory)")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the data directory {path} is in use by another broker process (it holds {path}/{LOCK_FILE})"
    )]
    DataDirInUse { path: PathBuf },
    #[error("loading cluster metadata")]
    Metadata(#[from] MetadataError),
    #[error("starting the metadata quorum")]
    Quorum(#[from] QuorumError),
    #[error("creating {OFFSETS_TOPIC}")]
    OffsetsTopic {
        #[source]
        source: CreateTopicError,
    },
    #[error("opening the hosted partitions")]
    Partitions(#[source] RegistryError),
    #[error("reading the initial SCRAM credentials")]
    Credentials(#[from] crate::security::CredentialsFileError),
    #[error("loading the cluster listener's TLS files")]
    ClusterTls(#[source] crate::security::tls::TlsError),
}

/// Why a topic was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("invalid topic name: {0}")]
    InvalidName(&'static str),
    #[error("number of partitions must be at least 1, got {0}")]
    InvalidPartitions(i32),
    #[error("Replication factor must be larger than 0, or -1 to use the default value.")]
    InvalidReplicationFactor(i16),
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Partitions(#[from] RegistryError),
}

/// Why partitions were not added.
#[derive(Debug, thiserror::Error)]
pub enum CreatePartitionsError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic has {current} partitions; the new count {requested} must be larger")]
    NotIncreasing { current: i32, requested: i32 },
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Partitions(#[from] RegistryError),
}

/// Why ElectLeaders left a partition as it was.
#[derive(Debug, thiserror::Error)]
pub enum ElectLeaderError {
    #[error("the partition does not exist")]
    UnknownPartition,
    #[error(transparent)]
    Refused(#[from] cluster::controller::ElectionRefused),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// Why a reassignment request left a partition as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReassignError {
    #[error("the partition does not exist")]
    UnknownPartition,
    #[error(transparent)]
    Refused(#[from] cluster::reassignment::ReassignError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// Why topic configs were not changed.
#[derive(Debug, thiserror::Error)]
pub enum AlterConfigsError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error(
        "'{0}' names no broker: a BROKER resource is a broker id, or empty for the cluster-wide default"
    )]
    InvalidBroker(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    advertised: (String, i32),
    /// Where clients reach this broker's other listeners.
    advertised_listeners: Vec<ListenerEndpoint>,
    quorum: Arc<Quorum>,
    /// The hosted partitions, kept in step with the committed metadata.
    registry: PartitionRegistry,
    clock: Arc<dyn Clock>,
    /// Producer ids reserved in the metadata and not yet handed out.
    producer_ids: tokio::sync::Mutex<std::ops::Range<i64>>,
    metrics: Arc<Metrics>,
    /// Logs recovered and the listener up, and not shutting down.
    ready: AtomicBool,
    coordinator: std::sync::OnceLock<CoordinatorHandle>,
    /// Stops the coordinator when the broker closes.
    coordinator_shutdown: tokio_util::sync::CancellationToken,
    /// The data directory's lock, held until the broker closes.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// This process's registration.
    incarnation: uuid::Uuid,
    /// How current this broker's metadata is, from the controller's heartbeat answers.
    freshness: Arc<Freshness>,
    /// Keep the partitions this broker follows up with their leaders.
    fetchers: Fetchers,
    /// What this broker serves, as leader, to throttled replicas out of sync.
    leader_throttle: crate::replication::throttle::Throttle,
    /// Partitions whose ISR this broker, their leader, has asked to grow and not heard back.
    isr_joins: std::sync::Mutex<std::collections::HashSet<(String, i32)>>,
    /// Authorises requests against the ACLs (`--authorizer`); without one, all are allowed.
    authorizer: Option<crate::security::acl::Authorizer>,
}

/// The file a running broker holds locked in its data directory: a second process given the same
/// directory is refused instead of writing the same logs.
pub const LOCK_FILE: &str = ".lock";

/// The file that keeps the incarnation of the last process to register from a data directory.
const INCARNATION_FILE: &str = "incarnation";
/// How long a controlled shutdown waits for this broker's leaderships to move away.
const CONTROLLED_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Producer ids reserved per metadata write.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl Broker {
    /// Loads metadata and opens (recovering) every partition log. `bound` is the listener's
    /// actual address (the port may have been 0).
    pub async fn open(
        config: BrokerConfig,
        bound: SocketAddr,
        listeners: Vec<ListenerEndpoint>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let credentials = config.security.initial_scram_credentials()?;
        if let Some(files) = config.security.cluster_tls_files() {
            let tls = crate::security::cluster_tls::ClusterTls::load(files)
                .map_err(StartError::ClusterTls)?;
            crate::security::cluster_tls::install(Arc::new(tls));
        }
        let seed = cluster::read_single_node_file(&config.data_dir, config.node_id)?;
        let seeded = seed.is_some();
        let (replication, replication_slot) =
            crate::replication::transport::ReplicationService::new();
        let quorum = Quorum::start_serving(
            QuorumConfig {
                node_id: config.node_id,
                data_dir: config.data_dir.clone(),
                listen: config.cluster_listen,
                advertise: config.cluster_advertise.clone(),
                voters: config.voters.clone(),
                cluster_id: config.cluster_id.clone(),
                session_timeout: std::time::Duration::from_millis(config.broker_session_timeout_ms),
            },
            seed,
            shutdown.clone(),
            tonic::service::Routes::new(replication),
        )
        .await?;
        let advertised = match &config.advertise {
            Some(advertise) => {
                split_host_port(advertise).unwrap_or((advertise.clone(), i32::from(bound.port())))
            }
            None => (bound.ip().to_string(), i32::from(bound.port())),
        };
        // Every start registers anew (a new incarnation): the registration is committed after
        // everything committed before this broker started, so once it is applied here this
        // broker has caught up with the metadata log.
        let registration = BrokerRegistration {
            id: config.node_id,
            rack: config.rack.clone(),
            host: advertised.0.clone(),
            port: advertised.1,
            listeners: listeners.clone(),
            fenced: false,
            incarnation: uuid::Uuid::new_v4(),
            epoch: 0,
            shut_down: false,
            replaces: read_incarnation(&config.data_dir),
        };
        let incarnation = registration.incarnation;
        // A broker that has not applied the cluster's id yet (the first start of a new cluster,
        // or one joining) names the id it would form a new cluster with: the first such change
        // committed forms the cluster, the others change nothing.
        let cluster_id = quorum.image().cluster_id.is_empty().then(|| {
            config
                .cluster_id
                .clone()
                .unwrap_or_else(cluster::new_cluster_id)
        });
        let session_timeout = std::time::Duration::from_millis(config.broker_session_timeout_ms);
        register(
            &quorum,
            cluster_id.map(|id| (id, credentials)),
            registration,
            2 * session_timeout,
        )
        .await?;
        if let Some(given) = &config.cluster_id {
            let formed = quorum.image().cluster_id.clone();
            if &formed != given {
                return Err(QuorumError::ClusterIdMismatch {
                    stored: formed,
                    given: given.clone(),
                }
                .into());
            }
        }
        write_incarnation(&config.data_dir, incarnation);
        let freshness = Arc::new(Freshness::default());
        let registered_at = *quorum.applied().borrow();
        freshness.answered(registered_at, registered_at, std::time::Instant::now());
        tokio::spawn(send_heartbeats(
            Arc::clone(&quorum),
            config.node_id,
            incarnation,
            Arc::clone(&freshness),
            std::time::Duration::from_millis(config.broker_heartbeat_interval_ms),
            shutdown,
        ));
        if seeded && !quorum.has_snapshot() {
            // The single-node file is set aside only once a snapshot of the quorum holds it.
            if quorum.snapshot().await {
                cluster::retire_single_node_file(&config.data_dir)?;
                tracing::info!("upgraded the single-node metadata file into the metadata quorum");
            }
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let metrics = Arc::new(Metrics::new());
        let registry = PartitionRegistry::new(
            config.node_id,
            config.data_dir.clone(),
            Arc::clone(&clock),
            Arc::clone(&metrics),
            std::time::Duration::from_millis(config.log_cleaner_backoff_ms),
        );
        registry
            .open(quorum.image())
            .await
            .map_err(StartError::Partitions)?;
        let coordinator_shutdown = tokio_util::sync::CancellationToken::new();
        let fetchers = Fetchers::new(
            config.node_id,
            Arc::clone(&quorum),
            coordinator_shutdown.clone(),
        );
        let authorizer = config.security.authorizer();
        let broker = Arc::new(Self {
            config,
            advertised,
            advertised_listeners: listeners,
            quorum,
            registry,
            clock,
            producer_ids: tokio::sync::Mutex::new(0..0),
            metrics,
            ready: AtomicBool::new(false),
            coordinator: std::sync::OnceLock::new(),
            coordinator_shutdown,
            lock: std::sync::Mutex::new(Some(lock)),
            incarnation,
            freshness,
            fetchers,
            leader_throttle: crate::replication::throttle::Throttle::default(),
            isr_joins: std::sync::Mutex::new(std::collections::HashSet::new()),
            authorizer,
        });
        let _ = replication_slot.set(Arc::downgrade(&broker));
        broker.fetchers.update(&broker.image(), &broker.registry);
        broker.start_coordinator().await?;
        tokio::spawn(follow_metadata(
            Arc::downgrade(&broker),
            broker.quorum.applied(),
            broker.coordinator_shutdown.clone(),
        ));
        tokio::spawn(shrink_isrs(
            Arc::downgrade(&broker),
            broker.coordinator_shutdown.clone(),
        ));
        tokio::spawn(run_controller(
            Arc::clone(&broker.quorum),
            std::time::Duration::from_millis(broker.config.broker_session_timeout_ms),
            cluster::controller::Policy {
                auto_leader_rebalance: broker.config.auto_leader_rebalance,
            },
            broker.coordinator_shutdown.clone(),
        ));
        Ok(broker)
    }

    /// Creates `__consumer_offsets` on first start, then replays it into the coordinator.
    async fn start_coordinator(&self) -> Result<(), StartError> {
        let flags = &self.config.coordinator;
        let topic = match self.topic(OFFSETS_TOPIC) {
            Some(topic) => topic,
            None => {
                self.wait_for_voters(std::time::Duration::from_secs(30))
                    .await;
                // Kafka's offsets.topic.replication.factor, here at most the brokers registered
                // (a single broker runs alone without being told).
                let brokers = self.quorum.image().unfenced_brokers().count();
                let replication_factor = flags
                    .offsets_topic_replication_factor
                    .clamp(1, i16::try_from(brokers.max(1)).unwrap_or(i16::MAX));
                // Expected of a broker running alone; in a cluster, a broker missing.
                if replication_factor < flags.offsets_topic_replication_factor
                    && self.quorum.voter_ids().len() > 1
                {
                    tracing::warn!(
                        wanted = flags.offsets_topic_replication_factor,
                        brokers,
                        "creating {OFFSETS_TOPIC} with one replica per registered broker"
                    );
                }
                let configs = coordinator::offsets_topic_configs(
                    flags.offsets_topic_segment_bytes,
                    replication_factor,
                );
                let created = self
                    .create_topic(
                        OFFSETS_TOPIC,
                        flags.offsets_topic_partitions,
                        replication_factor,
                        None,
                        configs,
                    )
                    .await;
                match created {
                    Ok(topic) => topic,
                    // Another broker of the cluster created it first.
                    Err(CreateTopicError::Metadata(MetadataError::Apply(
                        ApplyError::TopicExists { .. },
                    ))) => self.topic(OFFSETS_TOPIC).ok_or_else(|| {
                        StartError::Metadata(
                            ApplyError::UnknownTopic {
                                name: OFFSETS_TOPIC.to_owned(),
                            }
                            .into(),
                        )
                    })?,
                    Err(source) => return Err(StartError::OffsetsTopic { source }),
                }
            }
        };
        // Its partitions here are open once the image that created it has been applied.
        self.apply_committed(self.quorum.image()).await;
        let handle = CoordinatorHandle::start(
            topic.partition_count(),
            flags.config(),
            Arc::clone(&self.clock),
            self.coordinator_shutdown.clone(),
        );
        let _ = self.coordinator.set(handle.clone());
        // The groups of the partitions this broker leads are served once the broker is open.
        self.lead_groups(&self.quorum.image());
        handle.loaded().await;
        Ok(())
    }

    /// Tells the coordinator which partitions of `__consumer_offsets` this broker leads in
    /// `image` (and hosts), in which leader epochs, and whether each has enough in-sync
    /// replicas for a write.
    fn lead_groups(&self, image: &MetadataImage) {
        let Some(coordinator) = self.coordinator() else {
            return;
        };
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return;
        };
        let min_insync = image
            .produce_config(OFFSETS_TOPIC, self.node_id())
            .map_or(1, |config| {
                usize::try_from(config.min_insync_replicas).unwrap_or(1)
            });
        let leading = (0..)
            .zip(&topic.partitions)
            .filter(|(_, partition)| partition.leader == self.node_id())
            .filter_map(|(index, partition)| {
                let handle = self.partition(OFFSETS_TOPIC, index)?;
                let led = coordinator::Leading {
                    handle,
                    epoch: partition.leader_epoch,
                    enough_in_sync: partition.isr.len() >= min_insync,
                };
                Some((index, led))
            })
            .collect();
        coordinator.lead(image.offset, leading);
    }

    /// Waits (up to `limit`) until every voter has registered, so that `__consumer_offsets`,
    /// created by the first broker to start, is spread over the brokers of a cluster that starts
    /// together rather than placed on whichever registered first.
    async fn wait_for_voters(&self, limit: std::time::Duration) {
        let voters = self.quorum.voter_ids();
        let mut applied = self.quorum.applied();
        let all_registered = |_: &u64| {
            let image = self.quorum.image();
            voters.iter().all(|id| image.brokers.contains_key(id))
        };
        if tokio::time::timeout(limit, applied.wait_for(all_registered))
            .await
            .is_err()
        {
            tracing::warn!(
                ?voters,
                "not every voter has registered; creating {OFFSETS_TOPIC} on the brokers that have"
            );
        }
    }

    /// The group coordinator (always set once the broker is open).
    pub fn coordinator(&self) -> Option<&CoordinatorHandle> {
        self.coordinator.get()
    }

    /// The controller as clients are told it: the metadata quorum's leader, or this broker while
    /// none is known (admin requests may go to any broker: they are forwarded).
    pub fn controller_id(&self) -> i32 {
        self.quorum.leader().unwrap_or_else(|| self.node_id())
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The authorizer, when requests are authorised (`--authorizer`).
    pub fn authorizer(&self) -> Option<&crate::security::acl::Authorizer> {
        self.authorizer.as_ref()
    }

    /// The metrics, for a task that outlives a borrow of the broker.
    pub fn shared_metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Started, not shutting down, and its metadata known current within the session timeout.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.metadata_current()
    }

    /// Whether this broker's metadata was known current within the session timeout. One that
    /// is not may have been fenced and replaced as leader without knowing it (cut off from the
    /// controller): it stops claiming its leaderships.
    pub fn metadata_current(&self) -> bool {
        self.metadata_lag()
            .current_within(std::time::Duration::from_millis(
                self.config.broker_session_timeout_ms,
            ))
    }

    /// This broker's lag behind the controller's metadata.
    pub fn metadata_lag(&self) -> crate::cluster::freshness::Lag {
        self.freshness
            .lag(self.metadata_applied(), std::time::Instant::now())
    }

    /// The index of the last metadata log entry applied here.
    pub fn metadata_applied(&self) -> u64 {
        *self.quorum.applied().borrow()
    }

    /// The cluster as this broker sees it, for `/metrics` and `/v1/status`.
    pub fn cluster_sample(&self) -> ClusterSample {
        let image = self.image();
        let summary = image.partition_summary(self.node_id());
        let lag = self.metadata_lag();
        let controller = self.quorum.leader().unwrap_or(-1);
        let mut leaders: BTreeMap<i32, usize> = image.brokers.keys().map(|id| (*id, 0)).collect();
        for partition in image.topics.values().flat_map(|t| &t.partitions) {
            if let Some(led) = leaders.get_mut(&partition.leader) {
                *led += 1;
            }
        }
        ClusterSample {
            controller,
            active_controller: controller == self.node_id(),
            metadata_applied: self.metadata_applied(),
            metadata_lag_entries: lag.entries,
            metadata_lag_seconds: lag.since_current.map(|since| since.as_secs_f64()),
            registered_brokers: image.brokers.len(),
            fenced_brokers: image.brokers.values().filter(|b| b.fenced).count(),
            leader_partitions: summary.led,
            under_replicated_partitions: summary.under_replicated,
            offline_partitions: summary.offline,
            leaders_per_broker: leaders.into_iter().collect(),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Each hosted partition's figures, for metrics and status.
    pub fn partition_samples(&self) -> Vec<PartitionSample> {
        let mut samples: Vec<PartitionSample> = self
            .registry
            .hosted()
            .iter()
            .map(|((topic, partition), handle)| PartitionSample {
                topic: topic.clone(),
                partition: *partition,
                size_bytes: handle.reader().size_bytes(),
                log_start_offset: handle.reader().offsets().log_start_offset(),
                high_watermark: handle.high_watermark(),
            })
            .collect();
        samples.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        samples
    }

    /// Each consumer group's committed offsets with their lag, for metrics.
    pub fn group_offset_samples(&self) -> Vec<GroupOffsetSample> {
        let Some(coordinator) = self.coordinator() else {
            return Vec::new();
        };
        coordinator
            .committed_offsets()
            .into_iter()
            .map(|((group, topic, partition), committed_offset)| {
                let high_watermark = self
                    .partition(&topic, partition)
                    .map_or(committed_offset, |p| p.high_watermark());
                GroupOffsetSample {
                    group,
                    topic,
                    partition,
                    committed_offset,
                    lag: (high_watermark - committed_offset).max(0),
                }
            })
            .collect()
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The ids of the brokers registered in the cluster, which manual replica assignments may
    /// name.
    pub fn registered_brokers(&self) -> BTreeSet<i32> {
        self.quorum.image().brokers.keys().copied().collect()
    }

    /// Host and port clients are told to connect to.
    /// Where clients reach this broker: the first listener's host and port, and the others.
    pub fn advertised(&self) -> (&str, i32, &[ListenerEndpoint]) {
        (
            &self.advertised.0,
            self.advertised.1,
            &self.advertised_listeners,
        )
    }

    pub fn cluster_id(&self) -> String {
        self.quorum.image().cluster_id.clone()
    }

    /// This broker's member of the metadata quorum.
    pub fn quorum(&self) -> &Arc<Quorum> {
        &self.quorum
    }

    /// The cluster metadata as it stands: a cheap shared snapshot.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicImage>> {
        self.quorum.image().topic(name).cloned()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionHandle> {
        self.registry.partition(topic, partition)
    }

    /// The hosted partitions.
    /// The throttle of replica fetches this broker serves as leader to throttled replicas out
    /// of sync.
    pub fn leader_throttle(&self) -> &crate::replication::throttle::Throttle {
        &self.leader_throttle
    }

    pub fn registry(&self) -> &PartitionRegistry {
        &self.registry
    }

    /// Replica lists for `count` new partitions of `topic` over the unfenced brokers not being
    /// drained, as the image stands.
    fn place(
        &self,
        topic: &str,
        count: usize,
        replication_factor: usize,
    ) -> Result<Vec<Vec<i32>>, placement::PlacementError> {
        let image = self.quorum.image();
        let brokers: Vec<placement::Candidate> = image
            .unfenced_brokers()
            .filter(|b| !image.draining.contains(&b.id))
            .map(|b| placement::Candidate {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect();
        let mut load = placement::Load::of(&image, topic);
        placement::place_partitions(&brokers, count, replication_factor, &mut load)
    }

    /// `replication_factor`, or `--default-replication-factor` for -1.
    pub fn replication_factor_or_default(&self, replication_factor: i16) -> i16 {
        if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        }
    }

    /// Checks a topic creation without making it.
    pub fn validate_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<i32, CreateTopicError> {
        cluster::validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if partitions < 1 {
            return Err(CreateTopicError::InvalidPartitions(partitions));
        }
        if replication_factor != -1 && replication_factor < 1 {
            return Err(CreateTopicError::InvalidReplicationFactor(
                replication_factor,
            ));
        }
        let replication_factor = self.replication_factor_or_default(replication_factor);
        let brokers = self.quorum.image().unfenced_brokers().count();
        let wanted = usize::try_from(replication_factor).unwrap_or(1);
        if wanted > brokers {
            return Err(placement::PlacementError::NotEnoughBrokers {
                replication_factor: wanted,
                brokers,
            }
            .into());
        }
        cluster::log_config(configs)?;
        if self.quorum.image().topic(name).is_some() {
            return Err(MetadataError::from(ApplyError::TopicExists {
                name: name.to_owned(),
            })
            .into());
        }
        Ok(partitions)
    }

    /// Creates a topic: validates, commits it to the metadata, opens its partitions. Replicas go
    /// where `assignment` (checked by the caller, one replica list per partition) puts them, or
    /// on this broker.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignment: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, CreateTopicError> {
        let partitions = self.validate_new_topic(name, partitions, replication_factor, &configs)?;
        let replicas = match assignment {
            Some(assignment) => assignment,
            None => self.place(
                name,
                usize::try_from(partitions).unwrap_or_default(),
                usize::try_from(self.replication_factor_or_default(replication_factor))
                    .unwrap_or(1),
            )?,
        };
        let record = MetadataRecord::CreateTopic {
            name: name.to_owned(),
            id: uuid::Uuid::new_v4(),
            configs,
            partitions: replicas.into_iter().map(PartitionImage::new).collect(),
        };
        let (image, topic) = self.commit_topic_change(name, record).await?;
        self.registry.apply(image).await?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic: forgets it (durably), closes its partitions, removes their files.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, MetadataError> {
        let topic = self.topic(name).ok_or_else(|| ApplyError::UnknownTopic {
            name: name.to_owned(),
        })?;
        let image = self
            .quorum
            .propose(vec![MetadataRecord::DeleteTopic {
                name: name.to_owned(),
                id: Some(topic.id),
            }])
            .await?;
        self.apply_committed(image).await;
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Commits `records` (credentials, ACLs: changes that depend on nothing but themselves) and
    /// returns once they are applied here.
    pub async fn commit(&self, records: Vec<MetadataRecord>) -> Result<(), MetadataError> {
        let image = self.quorum.propose(records).await?;
        self.apply_committed(image).await;
        Ok(())
    }

    /// Raises a topic's partition count to `count` (`validate_only`: checks only). `assignments`
    /// (one replica list per new partition) are checked as Kafka checks them.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<(), CreatePartitionsError> {
        let topic = self
            .topic(name)
            .ok_or_else(|| CreatePartitionsError::UnknownTopic(name.to_owned()))?;
        let current = topic.partition_count();
        if count <= current {
            return Err(CreatePartitionsError::NotIncreasing {
                current,
                requested: count,
            });
        }
        let replicas = match assignments {
            Some(assignments) => {
                let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
                placement::manual_partitions_assignment(
                    assignments,
                    current,
                    count,
                    replication_factor,
                    &self.registered_brokers(),
                )?
            }
            None => {
                let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
                self.place(
                    name,
                    usize::try_from(count - current).unwrap_or_default(),
                    replication_factor,
                )?
            }
        };
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::CreatePartitions {
            name: name.to_owned(),
            partitions: replicas.into_iter().map(PartitionImage::new).collect(),
            after: Some(current),
        };
        let image = self.quorum.propose(vec![record]).await?;
        self.registry.apply(image).await?;
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Changes a topic's config overrides to what `change` makes of the current ones (validated
    /// first), commits them and applies them to its partitions. `validate_only`: checks only.
    /// The change is conditional on the overrides it was computed from; if another change came
    /// first, it is computed again from the new ones (a few times, then the client is told).
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError>,
        validate_only: bool,
    ) -> Result<(), AlterConfigsError> {
        let mut attempts = 0;
        loop {
            let topic = self
                .topic(name)
                .ok_or_else(|| AlterConfigsError::UnknownTopic(name.to_owned()))?;
            let configs = change(&topic.configs)?;
            cluster::log_config(&configs)?;
            if validate_only {
                return Ok(());
            }
            let record = MetadataRecord::SetTopicConfigs {
                name: name.to_owned(),
                configs,
                from: Some((topic.id, topic.configs.clone())),
            };
            match self.commit_topic_change(name, record).await {
                Ok((image, topic)) => {
                    self.apply_committed(image).await;
                    tracing::info!(topic = name, configs = ?topic.configs, "changed topic configs");
                    return Ok(());
                }
                Err(MetadataError::Apply(ApplyError::Stale(reason))) if attempts < 5 => {
                    tracing::debug!(%reason, "topic configs changed meanwhile; computing again");
                    attempts += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Replaces the dynamic broker configs of BROKER resource `resource` (`""` cluster-wide, or a
    /// broker id) with what `change` makes of the current ones, checked, committed conditional on
    /// the configs as read (computed again if they changed meanwhile). Every broker applies them
    /// from the metadata.
    pub async fn alter_broker_configs(
        &self,
        resource: &str,
        change: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError>,
        validate_only: bool,
    ) -> Result<(), AlterConfigsError> {
        // A broker id as brokers name themselves ("1", not "01" or "+1"), or "" cluster-wide.
        let canonical = resource
            .parse::<u32>()
            .is_ok_and(|id| id.to_string() == resource);
        if resource != cluster::broker_config::CLUSTER_DEFAULT && !canonical {
            return Err(AlterConfigsError::InvalidBroker(resource.to_owned()));
        }
        let mut attempts = 0;
        loop {
            let current = self
                .image()
                .broker_configs
                .get(resource)
                .cloned()
                .unwrap_or_default();
            let configs = change(&current)?;
            cluster::broker_config::validate_broker_configs(&configs)?;
            if validate_only {
                return Ok(());
            }
            let record = MetadataRecord::SetBrokerConfigs {
                resource: resource.to_owned(),
                configs: configs.clone(),
                from: Some(current),
            };
            match self.quorum.propose(vec![record]).await {
                Ok(image) => {
                    self.apply_committed(image).await;
                    tracing::info!(resource, ?configs, "changed dynamic broker configs");
                    return Ok(());
                }
                Err(MetadataError::Apply(ApplyError::Stale(reason))) if attempts < 5 => {
                    tracing::debug!(%reason, "broker configs changed meanwhile; computing again");
                    attempts += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// ElectLeaders for one partition: commits the leader and ISR `kind` gives it, and returns
    /// once the change is applied here.
    pub async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        kind: cluster::controller::ElectionType,
    ) -> Result<(), ElectLeaderError> {
        self.change_partition(
            topic,
            partition,
            ElectLeaderError::UnknownPartition,
            |topic_image, current, _, usable| {
                let (leader, isr) = cluster::controller::elect_on_request(current, usable, kind)?;
                Ok(Some(MetadataRecord::ChangePartition {
                    topic: topic.to_owned(),
                    topic_id: topic_image.id,
                    partition,
                    partition_epoch: current.partition_epoch,
                    leader,
                    isr,
                }))
            },
        )
        .await?;
        tracing::info!(topic, partition, ?kind, "elected a leader on request");
        Ok(())
    }

    /// AlterPartitionReassignments for one partition: starts moving it to `target` (replacing a
    /// reassignment running), or with `None` cancels the one running, and returns once the
    /// change is applied here. The controller completes it once the target replicas are in
    /// sync. `keep_replication_factor` refuses a target of another size than the original
    /// replicas.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
        keep_replication_factor: bool,
    ) -> Result<(), ReassignError> {
        use cluster::reassignment;
        let changed = self
            .change_partition(
                topic,
                partition,
                ReassignError::UnknownPartition,
                |topic_image, current, image, usable| {
                    let next = match target {
                        Some(target) => {
                            let from = reassignment::original(current).len();
                            if keep_replication_factor && target.len() != from {
                                return Err(reassignment::ReassignError::ReplicationFactorChange {
                                    from,
                                    to: target.len(),
                                }
                                .into());
                            }
                            reassignment::start(
                                current,
                                target,
                                &image.brokers,
                                &image.draining,
                                usable,
                            )?
                        }
                        None => Some(reassignment::cancel(current, usable)?),
                    };
                    Ok(
                        next.map(|next| {
                            reassignment::record(topic_image, partition, current, next)
                        }),
                    )
                },
            )
            .await?;
        if let Some(partition_image) = changed {
            tracing::info!(
                topic,
                partition,
                replicas = ?partition_image.replicas,
                adding = ?partition_image.adding,
                removing = ?partition_image.removing,
                "partition reassignment changed"
            );
        }
        Ok(())
    }

    /// Commits the change of `topic`-`partition` that `decide` computes from the image, the
    /// partition as it stands and the brokers usable to lead (registered, unfenced, not shutting
    /// down); `None` from `decide` changes nothing. Conditional on the partition as it was
    /// read: computed again, up to three times, if it changed meanwhile. Returns the partition
    /// as changed, once the change is applied here.
    async fn change_partition<E: From<MetadataError>>(
        &self,
        topic: &str,
        partition: i32,
        unknown: E,
        decide: impl Fn(
            &TopicImage,
            &PartitionImage,
            &MetadataImage,
            &BTreeSet<i32>,
        ) -> Result<Option<MetadataRecord>, E>,
    ) -> Result<Option<PartitionImage>, E> {
        let mut attempts = 0;
        loop {
            let image = self.image();
            let known = image
                .topic(topic)
                .and_then(|t| Some((t, t.partition(partition)?)));
            let Some((topic_image, current)) = known else {
                return Err(unknown);
            };
            let usable = image.usable_brokers();
            let Some(record) = decide(topic_image, current, &image, &usable)? else {
                return Ok(None);
            };
            match self.quorum.propose(vec![record]).await {
                Ok(image) => {
                    let changed = image
                        .topic(topic)
                        .and_then(|t| t.partition(partition))
                        .cloned();
                    self.apply_committed(image).await;
                    return Ok(changed);
                }
                Err(MetadataError::Apply(ApplyError::Stale(_))) if attempts < 3 => attempts += 1,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Commits `record`, a change of topic `name`, and returns the new image with the topic as
    /// it now stands.
    async fn commit_topic_change(
        &self,
        name: &str,
        record: MetadataRecord,
    ) -> Result<(Arc<MetadataImage>, Arc<TopicImage>), MetadataError> {
        let image = self.quorum.propose(vec![record]).await?;
        let topic = image
            .topic(name)
            .cloned()
            .ok_or_else(|| ApplyError::UnknownTopic {
                name: name.to_owned(),
            })?;
        Ok((image, topic))
    }

    /// Applies a committed change whose own part cannot fail to apply (a deletion, new configs of
    /// open partitions). Whatever else of the image failed to apply (a partition that would not
    /// open) is logged, and tried again with the next image.
    async fn apply_committed(&self, image: Arc<MetadataImage>) {
        // Partitions moved off this broker stop being fetched before the registry closes them.
        self.fetchers.update(&image, &self.registry);
        if let Err(error) = self.registry.apply(Arc::clone(&image)).await {
            tracing::error!(%error, "applying committed metadata to the hosted partitions failed");
        }
        self.fetchers.update(&image, &self.registry);
        self.lead_groups(&image);
    }

    /// Asks the controller to add `follower` to the ISR of `topic`-`partition`, which this
    /// broker leads as `seen` has it (it has caught up). In the background, one request per
    /// partition at a time; conditional on the partition epoch of `seen`, so a change computed
    /// from an older state is refused. From the request on the leader counts the follower for
    /// its high watermark (the larger ISR), until a committed ISR includes it, a new leader epoch
    /// begins, or it is found lagging: a change whose outcome is unknown (a timeout after it may
    /// have committed) can then never leave an ISR member without what was acknowledged.
    pub fn join_isr(self: &Arc<Self>, topic: &TopicImage, partition: i32, follower: i32) {
        let Some(seen) = topic.partition(partition).cloned() else {
            return;
        };
        if seen.leader != self.node_id() || seen.isr.contains(&follower) {
            return;
        }
        let Some(handle) = self.partition(&topic.name, partition) else {
            return;
        };
        let key = (topic.name.clone(), partition);
        {
            let mut joining = self
                .isr_joins
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !joining.insert(key.clone()) {
                return;
            }
        }
        let broker = Arc::clone(self);
        let topic_id = topic.id;
        tokio::spawn(async move {
            let mut isr = seen.isr.clone();
            isr.push(follower);
            handle
                .replica_event(ReplicaEvent::JoiningIsr {
                    replica: follower,
                    now_ms: crate::partition::monotonic_ms(),
                })
                .await;
            let record = MetadataRecord::ChangePartition {
                topic: key.0.clone(),
                topic_id,
                partition,
                partition_epoch: seen.partition_epoch,
                leader: seen.leader,
                isr,
            };
            match broker.quorum.propose(vec![record]).await {
                Ok(image) => {
                    tracing::info!(
                        topic = key.0,
                        partition,
                        follower,
                        "a follower joined the ISR"
                    );
                    broker.apply_committed(image).await;
                }
                Err(error) => {
                    tracing::debug!(topic = key.0, partition, follower, %error, "adding a follower to the ISR was refused");
                    // Refused for certain (not an unknown outcome): it stops counting.
                    if matches!(error, MetadataError::Apply(ApplyError::Stale(_))) {
                        handle
                            .replica_event(ReplicaEvent::JoinRefused { replica: follower })
                            .await;
                    }
                }
            }
            broker
                .isr_joins
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
        });
    }

    /// A producer id never handed out before, on this cluster.
    pub async fn new_producer_id(&self) -> Result<i64, MetadataError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.is_empty() {
            let (_, applied) = self
                .quorum
                .propose_with_result(vec![MetadataRecord::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                }])
                .await?;
            // The block ends where the counter stood right after this change was applied.
            let end = applied.next_producer_id;
            *ids = end - PRODUCER_ID_BLOCK..end;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Controlled shutdown: reports not ready, tells the controller this broker is stopping, and
    /// waits (at most 30 s) until the committed metadata has moved every leadership away from
    /// it, so clients are sent elsewhere (or told the partition has no leader, a retriable
    /// error) before its listener closes. Skipped when no other broker is left to serve.
    pub async fn controlled_shutdown(&self) {
        self.set_ready(false);
        let node_id = self.node_id();
        let image = self.image();
        let Some(registration) = image
            .brokers
            .get(&node_id)
            .filter(|b| b.incarnation == self.incarnation)
        else {
            return;
        };
        if !image.unfenced_brokers().any(|b| b.id != node_id) {
            tracing::info!("controlled shutdown: no other broker to hand leaderships to");
            return;
        }
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + CONTROLLED_SHUTDOWN_LIMIT;
        let record = MetadataRecord::ShutDownBroker {
            id: node_id,
            epoch: registration.epoch,
        };
        match tokio::time::timeout_at(deadline, self.quorum.propose(vec![record])).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "controlled shutdown: the controller did not take it");
                return;
            }
            Err(_) => {
                tracing::warn!("controlled shutdown: the controller did not answer in time");
                return;
            }
        }
        let mut applied = self.quorum.applied();
        let leads_nothing = |_: &u64| self.image().partition_summary(node_id).led == 0;
        match tokio::time::timeout_at(deadline, applied.wait_for(leads_nothing)).await {
            Ok(_) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis(),
                "controlled shutdown: this broker leads no partition"
            ),
            Err(_) => tracing::warn!(
                still_led = self.image().partition_summary(node_id).led,
                "controlled shutdown: leaderships did not all move in time"
            ),
        }
    }

    /// Flushes and closes every partition log.
    pub async fn close(&self) {
        self.coordinator_shutdown.cancel();
        self.registry.close().await;
        self.quorum.shutdown().await;
        // Another process may take the directory now.
        drop(
            self.lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }
}

/// Takes the data directory's lock (an advisory `flock`, released by the kernel when the process
/// dies, however it dies), or says that another process holds it.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirInUse {
            path: data_dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir { path, source }),
    }
}

/// Commits `records` while the broker starts: until the quorum has a leader (voters may start
/// minutes apart), it keeps trying, saying so in the log; a change refused is an error.
async fn propose_at_start(
    quorum: &Quorum,
    records: Vec<MetadataRecord>,
) -> Result<(), MetadataError> {
    loop {
        match quorum.propose(records.clone()).await {
            Ok(_) => return Ok(()),
            Err(MetadataError::Unavailable(reason)) => {
                tracing::warn!(
                    %reason,
                    voters = ?quorum.voter_ids(),
                    "waiting for the metadata quorum to have a leader"
                );
            }
            Err(error) => return Err(error),
        }
    }
}

/// Registers this process (with `cluster_id`, forming the cluster if it has no id yet). While
/// another live process holds the node id the controller refuses
/// it; that process may be one that died without a word, whose session then runs out, so the
/// registration is retried for `patience` before the broker gives up.
async fn register(
    quorum: &Quorum,
    forming: Option<(String, Vec<cluster::UserScramCredential>)>,
    registration: BrokerRegistration,
    patience: std::time::Duration,
) -> Result<(), MetadataError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut records: Vec<MetadataRecord> = forming
        .map(|(cluster_id, credentials)| MetadataRecord::InitCluster {
            cluster_id,
            credentials,
        })
        .into_iter()
        .collect();
    records.push(MetadataRecord::RegisterBroker(registration));
    loop {
        match propose_at_start(quorum, records.clone()).await {
            Err(MetadataError::Apply(error @ ApplyError::DuplicateBroker { .. }))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(%error, "registration refused; trying again until its session runs out");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            outcome => return outcome,
        }
    }
}

/// The incarnation the last process to register from `data_dir` had, if it wrote one.
fn read_incarnation(data_dir: &std::path::Path) -> Option<uuid::Uuid> {
    let text = std::fs::read_to_string(data_dir.join(INCARNATION_FILE)).ok()?;
    text.trim().parse().ok()
}

/// Keeps `incarnation` for the next process on this data directory. Without it, a restart waits
/// for the old registration's session to run out.
fn write_incarnation(data_dir: &std::path::Path, incarnation: uuid::Uuid) {
    let path = data_dir.join(INCARNATION_FILE);
    let temporary = data_dir.join(format!("{INCARNATION_FILE}.tmp"));
    let written = std::fs::write(&temporary, format!("{incarnation}\n"))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "keeping this broker's incarnation");
    }
}

/// Tells the controller every `interval` that this broker (the process of registration
/// `incarnation`) is alive, and notes from each answer how current its metadata is.
async fn send_heartbeats(
    quorum: Arc<Quorum>,
    node_id: i32,
    incarnation: uuid::Uuid,
    freshness: Arc<Freshness>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // The lease runs from the send: the controller heard this heartbeat later than that, so
        // its session for this broker outlasts the lease, and the broker stops counting itself
        // current before the controller may fence it and move its leaderships.
        let sent = std::time::Instant::now();
        match quorum.heartbeat(node_id, incarnation, interval).await {
            Ok(controller_applied) => {
                freshness.answered(controller_applied, *quorum.applied().borrow(), sent);
            }
            Err(error) => tracing::debug!(%error, "heartbeat not taken"),
        }
    }
}

/// While this broker leads the metadata quorum, fences brokers it stops hearing from, unfences
/// those it hears from again, and elects partition leaders from the ISR
/// ([`cluster::controller::decide`]). Each decision is committed on its own and is conditional
/// on the epochs it was computed from.
async fn run_controller(
    quorum: Arc<Quorum>,
    session_timeout: std::time::Duration,
    policy: cluster::controller::Policy,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(500));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The registration epoch seen for each broker: a new registration counts as hearing from
    // its broker, so it is never fenced before its first heartbeat arrives.
    let mut registrations: std::collections::HashMap<i32, u64> = std::collections::HashMap::new();
    let mut last_tick = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // A controller that did not run for a while (its process paused, its machine starved)
        // heard nothing meanwhile, through no fault of the brokers: it counts their sessions
        // again from now, as a controller that has just taken over does.
        let gap = last_tick.elapsed();
        last_tick = tokio::time::Instant::now();
        if gap > session_timeout / 2 && quorum.alive(session_timeout).is_some() {
            tracing::warn!(
                gap_ms = gap.as_millis(),
                "the controller did not run for a while; counting broker sessions from now"
            );
            quorum.restart_sessions();
        }
        let image = quorum.image();
        for broker in image.brokers.values() {
            if registrations.insert(broker.id, broker.epoch) != Some(broker.epoch) {
                quorum.heard_from(broker.id);
            }
        }
        let Some(alive) = quorum.alive(session_timeout) else {
            continue;
        };
        for record in cluster::controller::decide(&image, &alive, policy) {
            let described = format!("{record:?}");
            match quorum.propose_here(vec![record]).await {
                Ok(_) => tracing::info!(change = described, "controller decision committed"),
                Err(MetadataError::Apply(ApplyError::Stale(reason))) => {
                    tracing::debug!(%reason, "controller decision was stale");
                }
                Err(error) if quorum.alive(session_timeout).is_none() => {
                    tracing::debug!(%error, change = described, "no longer the controller");
                }
                Err(error) => {
                    tracing::warn!(%error, change = described, "controller decision failed");
                }
            }
        }
    }
}

/// Applies every image the quorum publishes to the hosted partitions: changes made through other
/// brokers (or by the controller) reach this one's registry here. Changes made through this
/// broker are applied by the request that made them before it is answered; the registry skips
/// images it has already applied.
async fn follow_metadata(
    broker: std::sync::Weak<Broker>,
    mut applied: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
        let Some(broker) = broker.upgrade() else {
            return;
        };
        broker.freshness.applied(*applied.borrow());
        let image = broker.quorum.image();
        broker.apply_committed(image).await;
    }
}

/// On the partitions this broker leads, drops from the ISR the followers that have not caught up
/// for `replica.lag.time.max.ms` (checked every half of it): a change conditional on the
/// partition epoch the leader read, as Kafka's AlterPartition. Until it commits the leader keeps
/// counting them (the larger ISR).
async fn shrink_isrs(
    broker: std::sync::Weak<Broker>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(lag) = broker.upgrade().map(|b| b.config.replica_lag_time_max_ms) else {
        return;
    };
    let period = std::time::Duration::from_millis(lag / 2).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(15),
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let image = broker.image();
        for ((name, index), handle) in broker.registry.hosted() {
            let Some(topic) = image.topic(&name) else {
                continue;
            };
            let Some(partition) = topic.partition(index) else {
                continue;
            };
            if partition.leader != broker.node_id() || partition.replicas.len() < 2 {
                continue;
            }
            let lagging = handle.lagging_replicas(lag).await;
            if lagging.is_empty() {
                continue;
            }
            let isr: Vec<i32> = partition
                .isr
                .iter()
                .copied()
                .filter(|id| !lagging.contains(id))
                .collect();
            // Only joiners lagged (they stop counting), or nothing changes: no change to ask.
            if isr == partition.isr {
                continue;
            }
            let record = MetadataRecord::ChangePartition {
                topic: name.clone(),
                topic_id: topic.id,
                partition: index,
                partition_epoch: partition.partition_epoch,
                leader: partition.leader,
                isr: isr.clone(),
            };
            match broker.quorum.propose(vec![record]).await {
                Ok(image) => {
                    tracing::warn!(
                        topic = name,
                        partition = index,
                        ?lagging,
                        ?isr,
                        lag_ms = lag,
                        "followers left the ISR: not caught up within replica.lag.time.max.ms"
                    );
                    broker.apply_committed(image).await;
                }
                Err(error) => {
                    tracing::debug!(topic = name, partition = index, %error, "shrinking the ISR was refused");
                }
            }
        }
    }
}

fn split_host_port(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

/// A single-node broker (node 1) in `dir` hosting topic `t` with `partitions` partitions, all led
/// here at epoch 0: what unit tests of handlers and replication run against.
#[cfg(test)]
pub(crate) async fn test_broker(dir: &std::path::Path, partitions: i32) -> Arc<Broker> {
    test_broker_configured(dir, partitions, |_| {}).await
}

/// [`test_broker`] with its configuration changed by `configure`.
#[cfg(test)]
pub(crate) async fn test_broker_configured(
    dir: &std::path::Path,
    partitions: i32,
    configure: impl FnOnce(&mut BrokerConfig),
) -> Arc<Broker> {
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let mut config = BrokerConfig::for_tests(dir.to_path_buf());
    configure(&mut config);
    let broker = Broker::open(
        config,
        peer,
        Vec::new(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("opening a test broker");
    broker
        .create_topic("t", partitions, -1, None, Default::default())
        .await
        .expect("creating topic t");
    broker
}
