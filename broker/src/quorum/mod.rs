//! The metadata quorum: a Raft log of metadata changes (openraft 0.9, pinned), replicated among
//! the voters named by `--voters` (Kafka's `controller.quorum.voters`, `id@host:port` of each
//! voter's cluster listener) and followed by every other broker as a non-voting member. Its
//! leader is the cluster's controller. Applying the log gives every broker the same
//! [`MetadataImage`]. A single-node broker is a quorum of one voter, on the same code path.
//!
//! openraft 0.9.25 rather than the 0.10 alphas: 0.9 is the stable line, its storage and network
//! traits are what its examples and test suite exercise, and 0.9.25 carries the fix for a
//! snapshot-install bug that let disjoint quorums form. 0.10 rewrites that glue and is still
//! alpha; moving to it is a contained change to `store` and `rpc`.

pub mod rpc;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::{
    ApplyError, BrokerRegistration, MetadataError, MetadataImage, MetadataRecord,
};

/// One `id@host:port` entry of `--voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.node_id, self.host, self.port)
    }
}

/// Why an `id@host:port` entry did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoterParseError {
    #[error("voter '{0}' is not of the form id@host:port")]
    Shape(String),
    #[error("voter '{entry}' has a node id that is not a non-negative integer")]
    NodeId { entry: String },
    #[error("voter '{entry}' has a port that is not a number from 1 to 65535")]
    Port { entry: String },
}

impl FromStr for Voter {
    type Err = VoterParseError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let shape = || VoterParseError::Shape(entry.to_owned());
        let (id, address) = entry.split_once('@').ok_or_else(shape)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
        if host.is_empty() {
            return Err(shape());
        }
        let node_id = id
            .parse::<i32>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| VoterParseError::NodeId {
                entry: entry.to_owned(),
            })?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| VoterParseError::Port {
                entry: entry.to_owned(),
            })?;
        Ok(Self {
            node_id,
            host: host.to_owned(),
            port,
        })
    }
}

/// A voter set this broker refuses to start with, or a quorum it could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("--voters names node {node_id} twice")]
    DuplicateVoter { node_id: i32 },
    #[error(
        "the metadata in {dir} was formed with voters {stored:?}, but --voters names {given:?}: \
         start with the voter set the cluster was formed with (changing voters needs a \
         membership change, one voter at a time, not different flags)"
    )]
    VotersChanged {
        dir: PathBuf,
        stored: Vec<NodeId>,
        given: Vec<NodeId>,
    },
    #[error(
        "this data directory belongs to cluster {stored}, but --cluster-id is {given}: give this \
         broker the data directory of cluster {given}, or an empty one"
    )]
    ClusterIdMismatch { stored: String, given: String },
    #[error("binding the cluster listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the metadata quorum's storage in {dir}")]
    Storage {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the metadata quorum: {0}")]
    Raft(String),
    #[error(
        "this data directory holds a single-node release's metadata (cluster-metadata.json): \
         start it once as a cluster of itself (no --voters, or --voters naming only this \
         broker) to upgrade it, then add brokers"
    )]
    SeedNeedsOneVoter,
}

/// Checks the voter set: no node named twice. An empty set means "a single-node cluster of
/// this node" (the laptop default); a set without this node makes it a broker that follows the
/// metadata log without a vote.
pub fn check_voters(voters: &[Voter]) -> Result<(), QuorumError> {
    for (index, voter) in voters.iter().enumerate() {
        if voters[..index].iter().any(|v| v.node_id == voter.node_id) {
            return Err(QuorumError::DuplicateVoter {
                node_id: voter.node_id,
            });
        }
    }
    Ok(())
}

/// Raft node ids are the brokers' node ids (never negative: `--node-id` and `--voters` check).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The metadata log's types: entries carry [`Command`]s, applying one gives a
    /// [`CommandResult`].
    pub TypeConfig:
        D = Command,
        R = CommandResult,
);

/// One change of the metadata: records applied together, all or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub records: Vec<MetadataRecord>,
}

impl Command {
    /// Applies every record to `image`; on the first that does not fit, returns its error (the
    /// caller then keeps the image it had).
    pub fn apply(&self, image: &mut MetadataImage) -> Result<(), ApplyError> {
        for record in &self.records {
            image.apply(record)?;
        }
        image.offset += 1;
        Ok(())
    }
}

/// What applying a [`Command`] gave: why it changed nothing, or the producer id counter right
/// after it (the end of a block it allocated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub error: Option<ApplyError>,
    #[serde(default)]
    pub next_producer_id: i64,
}

/// What the quorum of a broker is started with.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// Where the cluster listener binds (`--cluster-listen`).
    pub listen: SocketAddr,
    /// `host:port` other brokers reach this one's cluster listener at; defaults to the address
    /// `--voters` gives this node, or the bound listener's.
    pub advertise: Option<String>,
    pub voters: Vec<Voter>,
    /// The cluster id to form (or check) the cluster with; a new cluster picks one if unset.
    pub cluster_id: Option<String>,
    /// A broker the controller has not heard from for this long is not alive
    /// (`broker.session.timeout.ms`).
    pub session_timeout: Duration,
}

/// The metadata quorum as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The leader (the controller), if known.
    pub leader: Option<i32>,
    /// The Raft term: the leader's epoch.
    pub term: u64,
    /// The index of the last entry applied here.
    pub committed: u64,
    /// Voters and non-voting members, each with its log end where this node knows it.
    pub voters: Vec<(i32, Option<u64>)>,
    pub observers: Vec<(i32, Option<u64>)>,
    /// Every member's cluster listener.
    pub addresses: Vec<(i32, String)>,
}

/// How long a metadata change waits for the quorum before it fails (the client may retry).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-call bound of a change forwarded to the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const STORAGE_DIR: &str = "metadata-quorum";

/// This broker's member of the metadata quorum: a voter, or a non-voting follower of the
/// metadata log. Readers take [`Quorum::image`]; every change goes through [`Quorum::propose`],
/// on any broker (changes made elsewhere are forwarded to the leader).
pub struct Quorum {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    published: Arc<store::Published>,
    voters: BTreeMap<NodeId, String>,
    /// The cluster listener's address as other brokers reach it.
    address: String,
    local_addr: SocketAddr,
    peers: std::sync::Mutex<HashMap<String, rpc::Peer>>,
    state_machine: store::StateMachine,
    /// When the controller last heard from each broker (kept by whichever node leads).
    heartbeats: std::sync::Mutex<HashMap<i32, tokio::time::Instant>>,
    session_timeout: Duration,
    /// The term in which this node leads, and when it began to (see [`Quorum::alive`]).
    leading: std::sync::Mutex<Option<(u64, tokio::time::Instant)>>,
    /// `--cluster-id`, named in calls until the metadata holds the cluster's id.
    given_cluster_id: Option<String>,
    /// Held from a registration's check to its commit, so two processes claiming one node id
    /// are checked one after the other.
    registering: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node_id", &self.node_id)
            .field("address", &self.address)
            .field("voters", &self.voters)
            .finish_non_exhaustive()
    }
}

/// The cluster id a call carries: the metadata's, or before this node has it, the one it was
/// given (so a broker started for another cluster is refused from its first call).
fn envelope_cluster_id(published: &store::Published, given: Option<&str>) -> String {
    let formed = published.image.load().cluster_id.clone();
    if formed.is_empty() {
        given.unwrap_or_default().to_owned()
    } else {
        formed
    }
}

/// Node id of a broker (never negative) as a Raft node id.
fn raft_id(node_id: i32) -> NodeId {
    NodeId::try_from(node_id).unwrap_or_default()
}

impl Quorum {
    /// Opens the quorum's storage in the data directory (seeding a new one from `seed`, the
    /// image a single-node release left), binds the cluster listener and starts the Raft node.
    /// Voters initialise the cluster from `--voters` the first time (every voter the same way,
    /// so they may start in any order); other brokers ask the leader to follow the log. Returns
    /// once the listener serves; [`Quorum::propose`] waits for a leader.
    pub async fn start(
        config: QuorumConfig,
        seed: Option<MetadataImage>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, QuorumError> {
        Self::start_serving(config, seed, shutdown, tonic::service::Routes::default()).await
    }

    /// [`Quorum::start`], with `services` (partition replication) served on the same listener.
    pub async fn start_serving(
        config: QuorumConfig,
        seed: Option<MetadataImage>,
        shutdown: CancellationToken,
        services: tonic::service::Routes,
    ) -> Result<Arc<Self>, QuorumError> {
        check_voters(&config.voters)?;
        let alone = match config.voters.as_slice() {
            [] => true,
            [only] => only.node_id == config.node_id,
            _ => false,
        };
        if seed.is_some() && !alone {
            return Err(QuorumError::SeedNeedsOneVoter);
        }
        let dir = config.data_dir.join(STORAGE_DIR);
        let storage = |source| QuorumError::Storage {
            dir: dir.clone(),
            source,
        };
        let log = store::LogStore::open(&dir).map_err(storage)?;
        let state_machine = store::StateMachine::open(&dir, seed).map_err(storage)?;
        let published = state_machine.published();
        if let Some(given) = &config.cluster_id {
            let stored = &published.image.load().cluster_id;
            if !stored.is_empty() && stored != given {
                return Err(QuorumError::ClusterIdMismatch {
                    stored: stored.clone(),
                    given: given.clone(),
                });
            }
        }

        rpc::leave_from(config.listen);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| QuorumError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| QuorumError::Bind {
            addr: config.listen,
            source,
        })?;
        let node_id = raft_id(config.node_id);
        let voters: BTreeMap<NodeId, String> = if config.voters.is_empty() {
            BTreeMap::from([(node_id, local_addr.to_string())])
        } else {
            config
                .voters
                .iter()
                .map(|v| (raft_id(v.node_id), format!("{}:{}", v.host, v.port)))
                .collect()
        };
        let address = config
            .advertise
            .clone()
            .or_else(|| voters.get(&node_id).cloned())
            .unwrap_or_else(|| local_addr.to_string());

        let raft_config = openraft::Config {
            cluster_name: "fjord".to_owned(),
            heartbeat_interval: 200,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let network_published = Arc::clone(&published);
        let network = rpc::Network {
            from: node_id,
            cluster_id: {
                let given = config.cluster_id.clone();
                Arc::new(move || envelope_cluster_id(&network_published, given.as_deref()))
            },
        };
        let raft = Raft::new(
            node_id,
            Arc::new(raft_config),
            network,
            log,
            state_machine.clone(),
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;

        let quorum = Arc::new(Self {
            node_id,
            raft,
            published,
            voters,
            address,
            local_addr,
            peers: std::sync::Mutex::new(HashMap::new()),
            state_machine,
            heartbeats: std::sync::Mutex::new(HashMap::new()),
            session_timeout: config.session_timeout,
            leading: std::sync::Mutex::new(None),
            given_cluster_id: config.cluster_id.clone(),
            registering: tokio::sync::Mutex::new(()),
        });
        quorum.check_membership(&dir).await?;

        let service = rpc::ClusterService::new(Arc::clone(&quorum));
        // Plain TCP, or mutual TLS between brokers when it is installed.
        let incoming = crate::security::cluster_tls::incoming(listener);
        let server_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(5)))
                .http2_keepalive_timeout(Some(Duration::from_secs(5)))
                .add_routes(services)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, server_shutdown.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the cluster listener failed");
            }
        });
        tracing::info!(
            node_id,
            cluster_listen = %local_addr,
            voters = ?quorum.voters,
            "metadata quorum started"
        );

        if quorum.voters.contains_key(&node_id) {
            quorum.initialize().await?;
        } else {
            let joining = Arc::clone(&quorum);
            tokio::spawn(async move { joining.join(shutdown).await });
        }
        Ok(quorum)
    }

    /// Refuses to run with a voter set other than the one the stored metadata was formed with.
    async fn check_membership(&self, dir: &std::path::Path) -> Result<(), QuorumError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if !initialized {
            return Ok(());
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let stored: Vec<NodeId> = membership.membership().voter_ids().collect();
        let given: Vec<NodeId> = self.voters.keys().copied().collect();
        let is_voter = given.contains(&self.node_id);
        // A broker outside the voters checks only that it is not named among them: it learnt
        // the voters from the leader.
        if (is_voter || stored.contains(&self.node_id)) && stored != given {
            return Err(QuorumError::VotersChanged {
                dir: dir.to_path_buf(),
                stored,
                given,
            });
        }
        Ok(())
    }

    /// Forms the cluster from `--voters` if this voter's storage is new. Every voter does the
    /// same with the same set, which Raft allows: they agree on the first entry.
    async fn initialize(&self) -> Result<(), QuorumError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = self
            .voters
            .iter()
            .map(|(id, address)| (*id, BasicNode::new(address)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(QuorumError::Raft(error.to_string())),
        }
    }

    /// A broker outside the voters asks the voters, until one that leads adds it, to follow
    /// the metadata log.
    async fn join(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            let membership = self.raft.metrics().borrow().membership_config.clone();
            if membership.membership().get_node(&self.node_id).is_some() {
                tracing::info!(node_id = self.node_id, "following the metadata log");
                return;
            }
            let request = rpc::Request::Join {
                node_id: self.node_id,
                address: self.address.clone(),
            };
            for address in self.voters.values() {
                match self.call(address, request.clone(), FORWARD_TIMEOUT).await {
                    Ok(rpc::Response::Join(Ok(()))) => break,
                    Ok(other) => tracing::debug!(address, ?other, "join not taken"),
                    Err(error) => tracing::debug!(%error, "join not taken"),
                }
            }
            attempts += 1;
            if attempts.is_multiple_of(20) {
                tracing::warn!(
                    voters = ?self.voters,
                    "still waiting for a metadata leader to let this broker follow the log"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn call(
        &self,
        address: &str,
        body: rpc::Request,
        timeout: Duration,
    ) -> Result<rpc::Response, rpc::CallError> {
        let peer = {
            let mut peers = self
                .peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match peers.get(address) {
                Some(peer) => peer.clone(),
                None => {
                    let peer = rpc::Peer::new(address)?;
                    peers.insert(address.to_owned(), peer.clone());
                    peer
                }
            }
        };
        let envelope = rpc::Envelope {
            cluster_id: envelope_cluster_id(&self.published, self.given_cluster_id.as_deref()),
            from: self.node_id,
            body,
        };
        let result = peer.call(address, envelope, timeout).await;
        if result.is_err() {
            // A channel whose connection failed stays failed (its buffer keeps the first
            // error): the next call goes over a new one.
            self.peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(address);
        }
        result
    }

    /// The metadata as this broker has applied it: a cheap shared snapshot, never locked.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.published.image.load_full()
    }

    /// The index of the last metadata log entry applied here.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.published.applied.subscribe()
    }

    /// The bound address of the cluster listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node that leads the metadata quorum (the controller), if one is known.
    pub fn leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(|id| i32::try_from(id).ok())
    }

    /// The voters' node ids.
    pub fn voter_ids(&self) -> Vec<i32> {
        self.voters
            .keys()
            .filter_map(|id| i32::try_from(*id).ok())
            .collect()
    }

    /// Whether a snapshot of the metadata is on disk.
    pub fn has_snapshot(&self) -> bool {
        self.state_machine.has_snapshot()
    }

    /// Writes a snapshot of the metadata now and waits (bounded) until it is on disk.
    pub async fn snapshot(&self) -> bool {
        if self.raft.trigger().snapshot().await.is_err() {
            return false;
        }
        let mut metrics = self.raft.metrics();
        let written = tokio::time::timeout(
            Duration::from_secs(10),
            metrics.wait_for(|m| m.snapshot.is_some()),
        )
        .await;
        let Ok(Ok(metrics)) = written else {
            return false;
        };
        // The entries the snapshot covers go: a member that joins later installs the snapshot
        // instead of replaying a log that does not start from an empty image.
        if let Some(upto) = metrics.snapshot.map(|id| id.index) {
            let _ = self.raft.trigger().purge_log(upto).await;
        }
        true
    }

    /// Commits `records` as one change through the leader, wherever it is, and returns the
    /// image once this broker has applied it. A record that does not fit the image fails the
    /// whole change and changes nothing. Retries while no leader is known, up to a bound.
    ///
    /// A change whose leader failed over while it was in flight may have been committed even
    /// though it is retried; records are written so that applying one twice is refused, not
    /// doubled (a topic is created once, conditional changes name the epochs they saw).
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        self.propose_with_result(records)
            .await
            .map(|(image, _)| image)
    }

    /// [`Quorum::propose`], also returning what applying the change gave.
    pub async fn propose_with_result(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<(Arc<MetadataImage>, CommandResult), MetadataError> {
        let command = Command { records };
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        let mut backoff = Duration::from_millis(50);
        loop {
            let outcome = match self.write_here(command.clone()).await {
                Err(rpc::ProposeError::NotLeader {
                    leader: Some((_, address)),
                    ..
                }) => self.forward(&address, &command).await,
                Err(rpc::ProposeError::NotLeader { leader: None, .. }) => {
                    self.forward_to_voters(&command).await
                }
                outcome => outcome,
            };
            let error = match outcome {
                Ok(proposed) => {
                    self.wait_applied(proposed.index, deadline).await?;
                    return match proposed.result.error.clone() {
                        None => Ok((self.image(), proposed.result)),
                        Some(error) => Err(error.into()),
                    };
                }
                Err(rpc::ProposeError::Refused(error)) => return Err(error.into()),
                Err(error) => error,
            };
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(MetadataError::Unavailable(error.to_string()));
            }
            tracing::debug!(%error, "metadata change not taken yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Forwards `command` to the node at `address`, taken to lead.
    async fn forward(
        &self,
        address: &str,
        command: &Command,
    ) -> Result<rpc::Proposed, rpc::ProposeError> {
        match self
            .call(
                address,
                rpc::Request::Propose(command.clone()),
                FORWARD_TIMEOUT,
            )
            .await
        {
            Ok(rpc::Response::Propose(outcome)) => outcome,
            Ok(other) => Err(rpc::ProposeError::Unavailable(format!(
                "the leader answered {other:?}"
            ))),
            Err(error) => Err(rpc::ProposeError::Unavailable(error.to_string())),
        }
    }

    /// Forwards `command` while this node knows no leader (it has not been sent the log yet:
    /// a member that is still joining, or a process its cluster does not know): to each other
    /// voter in turn, and on to the leader one of them names.
    async fn forward_to_voters(
        &self,
        command: &Command,
    ) -> Result<rpc::Proposed, rpc::ProposeError> {
        let own = [self.address.clone(), self.local_addr.to_string()];
        let mut last = rpc::ProposeError::Unavailable("no other voter to ask".to_owned());
        for (id, address) in &self.voters {
            if *id == self.node_id || own.contains(address) {
                continue;
            }
            match self.forward(address, command).await {
                Err(rpc::ProposeError::NotLeader {
                    leader: Some((_, leader)),
                    ..
                }) => return self.forward(&leader, command).await,
                Err(
                    error @ (rpc::ProposeError::NotLeader { .. }
                    | rpc::ProposeError::Unavailable(_)),
                ) => {
                    last = error;
                }
                outcome => return outcome,
            }
        }
        Err(last)
    }

    /// Commits `records` only if this node leads (the controller's own decisions: a node that
    /// has lost the lead drops what it decided, rather than forwarding it to the new leader).
    pub async fn propose_here(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let proposed = self
            .write_here(Command { records })
            .await
            .map_err(|error| MetadataError::Unavailable(error.to_string()))?;
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        self.wait_applied(proposed.index, deadline).await?;
        match proposed.result.error {
            None => Ok(self.image()),
            Some(error) => Err(error.into()),
        }
    }

    /// Commits `command` if this node leads. A broker registration is refused while another
    /// live process holds its node id.
    async fn write_here(&self, command: Command) -> Result<rpc::Proposed, rpc::ProposeError> {
        let registrations: Vec<&BrokerRegistration> = command
            .records
            .iter()
            .filter_map(|record| match record {
                MetadataRecord::RegisterBroker(registration) => Some(registration),
                _ => None,
            })
            .collect();
        let _checked = if registrations.is_empty() {
            None
        } else {
            let guard = self.registering.lock().await;
            for registration in &registrations {
                self.check_registration(registration)?;
            }
            Some(guard)
        };
        let registered: Vec<i32> = registrations.iter().map(|r| r.id).collect();
        match self.raft.client_write(command).await {
            Ok(response) => {
                // A new registration counts as hearing from its broker.
                for id in registered {
                    self.heard_from(id);
                }
                Ok(rpc::Proposed {
                    index: response.log_id.index,
                    result: response.data,
                })
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(self.not_leader(forward))
            }
            Err(error) => Err(rpc::ProposeError::Unavailable(error.to_string())),
        }
    }

    /// Refuses `registration` (on the leader) if its node id is registered by another process
    /// that is not fenced and is alive as the controller counts it ([`Quorum::alive`]: heard
    /// from within the session timeout, counting from when this node began to lead). A process restarted on the same data
    /// directory names the incarnation it replaces and is taken at once.
    fn check_registration(
        &self,
        registration: &BrokerRegistration,
    ) -> Result<(), rpc::ProposeError> {
        if self.leader() != i32::try_from(self.node_id).ok() {
            return Ok(());
        }
        let image = self.image();
        let Some(existing) = image.brokers.get(&registration.id) else {
            return Ok(());
        };
        if existing.fenced
            || existing.incarnation == registration.incarnation
            || registration.replaces == Some(existing.incarnation)
        {
            return Ok(());
        }
        let live = self
            .alive(self.session_timeout)
            .is_some_and(|alive| alive.contains(&registration.id));
        if !live {
            return Ok(());
        }
        Err(rpc::ProposeError::Refused(ApplyError::DuplicateBroker {
            id: existing.id,
            incarnation: existing.incarnation,
            endpoint: format!("{}:{}", existing.host, existing.port),
        }))
    }

    /// The answer of a node that does not lead: where the leader is, if it knows.
    fn not_leader(
        &self,
        forward: openraft::error::ForwardToLeader<NodeId, BasicNode>,
    ) -> rpc::ProposeError {
        rpc::ProposeError::NotLeader {
            node_id: self.node_id,
            leader: forward
                .leader_id
                .zip(forward.leader_node.map(|node| node.addr)),
        }
    }

    async fn wait_applied(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), MetadataError> {
        let mut applied = self.applied();
        match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(MetadataError::Unavailable(format!(
                "the change was committed at {index} but this broker has not applied it in time"
            ))),
        }
    }

    /// Tells the controller, wherever it is, that broker `node_id` (the process of registration
    /// `incarnation`) is alive, waiting at most `timeout` for its answer: how far the controller
    /// has applied the metadata log.
    pub async fn heartbeat(
        &self,
        node_id: i32,
        incarnation: uuid::Uuid,
        timeout: Duration,
    ) -> Result<u64, rpc::ProposeError> {
        if self.leader() == i32::try_from(self.node_id).ok() {
            return self.take_heartbeat(node_id, incarnation);
        }
        let leader = self.raft.metrics().borrow().current_leader;
        let address = leader.and_then(|id| {
            let membership = self.raft.metrics().borrow().membership_config.clone();
            membership
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        let Some(address) = address else {
            return Err(rpc::ProposeError::Unavailable(
                "no leader is known".to_owned(),
            ));
        };
        let request = rpc::Request::Heartbeat {
            node_id: raft_id(node_id),
            incarnation,
        };
        match self.call(&address, request, timeout).await {
            Ok(rpc::Response::Heartbeat(result)) => result.map(|answer| answer.applied),
            Ok(other) => Err(rpc::ProposeError::Unavailable(format!(
                "the leader answered {other:?}"
            ))),
            Err(error) => Err(rpc::ProposeError::Unavailable(error.to_string())),
        }
    }

    /// A heartbeat reaching this node: counted if this node leads and `incarnation` is the
    /// broker's registration (a process whose registration was refused or replaced keeps
    /// nothing alive).
    fn take_heartbeat(
        &self,
        node_id: i32,
        incarnation: uuid::Uuid,
    ) -> Result<u64, rpc::ProposeError> {
        if self.leader() != i32::try_from(self.node_id).ok() {
            return Err(rpc::ProposeError::NotLeader {
                node_id: self.node_id,
                leader: None,
            });
        }
        // A leader cut off from the other voters still believes it leads; what it has applied
        // is no evidence of being current once a majority has not answered it for a session.
        let acked = self.raft.metrics().borrow().millis_since_quorum_ack;
        if acked.is_none_or(|ms| u128::from(ms) >= self.session_timeout.as_millis()) {
            return Err(rpc::ProposeError::Unavailable(format!(
                "the controller has not heard from a majority of the voters (last: {acked:?} ms ago)"
            )));
        }
        let image = self.image();
        match image.brokers.get(&node_id) {
            Some(registration) if registration.incarnation == incarnation => {
                self.heard_from(node_id);
                Ok(*self.published.applied.borrow())
            }
            _ => Err(rpc::ProposeError::Refused(ApplyError::Stale(format!(
                "broker {node_id} is not registered as incarnation {incarnation}"
            )))),
        }
    }

    /// Counts as hearing from broker `node_id` now (a heartbeat, or a new registration).
    pub fn heard_from(&self, node_id: i32) {
        self.heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node_id, tokio::time::Instant::now());
    }

    /// When this node began to lead, in its current term (noted the first time it is asked in
    /// that term: the controller asks twice a second); `None` unless it leads.
    fn leading_since(&self) -> Option<tokio::time::Instant> {
        let (leader, term) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            (metrics.current_leader, metrics.current_term)
        };
        let mut leading = self
            .leading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if leader != Some(self.node_id) {
            *leading = None;
            return None;
        }
        match *leading {
            Some((noted, since)) if noted == term => Some(since),
            _ => {
                let now = tokio::time::Instant::now();
                *leading = Some((term, now));
                Some(now)
            }
        }
    }

    /// Counts every broker's session afresh from now, as when this node began to lead (the
    /// controller did not run for a while, and heard nothing meanwhile).
    pub fn restart_sessions(&self) {
        if let Some((_, since)) = self
            .leading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            *since = tokio::time::Instant::now();
        }
    }

    /// The brokers the controller heard from within `session_timeout` (counting from when this
    /// node began to lead for brokers it has not heard from since); `None` unless this node
    /// leads.
    pub fn alive(&self, session_timeout: Duration) -> Option<std::collections::BTreeSet<i32>> {
        let since = self.leading_since()?;
        let now = tokio::time::Instant::now();
        let heartbeats = self
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(
            self.image()
                .brokers
                .keys()
                .copied()
                .filter(|id| {
                    let last = heartbeats.get(id).copied().unwrap_or(since).max(since);
                    now.duration_since(last) < session_timeout
                })
                .collect(),
        )
    }

    /// The quorum as this node sees it, for DescribeQuorum.
    pub fn describe(&self) -> QuorumDescription {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let to_id = |id: NodeId| i32::try_from(id).unwrap_or(i32::MAX);
        let end = |id: NodeId| -> Option<u64> {
            if id == self.node_id {
                return metrics.last_log_index;
            }
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|log_id| log_id.index)
        };
        QuorumDescription {
            leader: metrics.current_leader.map(to_id),
            term: metrics.current_term,
            committed: *self.applied().borrow(),
            voters: membership
                .voter_ids()
                .map(|id| (to_id(id), end(id)))
                .collect(),
            observers: membership
                .learner_ids()
                .map(|id| (to_id(id), end(id)))
                .collect(),
            addresses: membership
                .nodes()
                .map(|(id, node)| (to_id(*id), node.addr.clone()))
                .collect(),
        }
    }

    /// The cluster listener address of broker `node_id`, as the quorum's membership has it.
    pub fn address_of(&self, node_id: i32) -> Option<String> {
        let id = NodeId::try_from(node_id).ok()?;
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node| node.addr.clone())
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "stopping the metadata quorum");
        }
    }
}

impl rpc::Serve for Quorum {
    fn cluster_id(&self) -> String {
        self.published.image.load().cluster_id.clone()
    }

    async fn serve(&self, request: rpc::Request) -> rpc::Response {
        match request {
            rpc::Request::AppendEntries(rpc) => {
                rpc::Response::AppendEntries(self.raft.append_entries(rpc).await)
            }
            rpc::Request::Vote(rpc) => rpc::Response::Vote(self.raft.vote(rpc).await),
            rpc::Request::InstallSnapshot(rpc) => {
                rpc::Response::InstallSnapshot(self.raft.install_snapshot(rpc).await)
            }
            rpc::Request::Propose(command) => {
                rpc::Response::Propose(self.write_here(command).await)
            }
            rpc::Request::Heartbeat {
                node_id,
                incarnation,
            } => rpc::Response::Heartbeat(
                self.take_heartbeat(i32::try_from(node_id).unwrap_or(i32::MAX), incarnation)
                    .map(|applied| rpc::HeartbeatAnswer { applied }),
            ),
            rpc::Request::Join { node_id, address } => {
                if self.voters.contains_key(&node_id) {
                    return rpc::Response::Join(Err(rpc::ProposeError::Unavailable(format!(
                        "node {node_id} is a voter and does not join as a follower"
                    ))));
                }
                let added = self
                    .raft
                    .add_learner(node_id, BasicNode::new(&address), false)
                    .await;
                rpc::Response::Join(match added {
                    Ok(_) => {
                        tracing::info!(node_id, address, "a broker follows the metadata log");
                        Ok(())
                    }
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                        Err(self.not_leader(forward))
                    }
                    Err(error) => Err(rpc::ProposeError::Unavailable(error.to_string())),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(list: &str) -> Vec<Voter> {
        list.split(',').map(|v| v.parse().unwrap()).collect()
    }

    #[test]
    fn parses_kafka_style_entries() {
        let voter: Voter = "3@fjord-a-3.fjord-brokers.prod.svc:9093".parse().unwrap();
        assert_eq!(voter.node_id, 3);
        assert_eq!(voter.host, "fjord-a-3.fjord-brokers.prod.svc");
        assert_eq!(voter.port, 9093);
        assert_eq!(voter.to_string(), "3@fjord-a-3.fjord-brokers.prod.svc:9093");
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        assert!(matches!(
            "fjord:9093".parse::<Voter>(),
            Err(VoterParseError::Shape(_))
        ));
        assert!(matches!(
            "1@:9093".parse::<Voter>(),
            Err(VoterParseError::Shape(_))
        ));
        assert!(matches!(
            "-1@h:9093".parse::<Voter>(),
            Err(VoterParseError::NodeId { .. })
        ));
        assert!(matches!(
            "1@h:0".parse::<Voter>(),
            Err(VoterParseError::Port { .. })
        ));
        assert!(matches!(
            "1@h:99999".parse::<Voter>(),
            Err(VoterParseError::Port { .. })
        ));
    }

    #[test]
    fn a_voter_named_twice_is_refused() {
        assert!(check_voters(&[]).is_ok());
        assert!(check_voters(&voters("0@a:9093,1@b:9093,2@c:9093")).is_ok());
        assert!(matches!(
            check_voters(&voters("1@a:9093,1@b:9093")),
            Err(QuorumError::DuplicateVoter { node_id: 1 })
        ));
    }

    fn config(dir: &std::path::Path, node_id: i32, voters: Vec<Voter>) -> QuorumConfig {
        QuorumConfig {
            node_id,
            data_dir: dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            voters,
            cluster_id: None,
            session_timeout: Duration::from_secs(9),
        }
    }

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.to_owned(),
            id: uuid::Uuid::new_v4(),
            configs: BTreeMap::new(),
            partitions: vec![crate::cluster::PartitionImage::new(vec![1])],
        }
    }

    /// Free loopback ports for voters that must know each other's addresses before they bind.
    fn free_ports(count: usize) -> Vec<u16> {
        let listeners: Vec<std::net::TcpListener> = (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    }

    /// A one-voter quorum (the laptop default) commits, and a restart resumes from disk: the
    /// same image, and changes refused as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_voter_commits_and_resumes_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let quorum = Quorum::start(config(dir.path(), 1, vec![]), None, shutdown.clone())
            .await
            .unwrap();
        let image = quorum
            .propose(vec![MetadataRecord::InitCluster {
                cluster_id: "C".to_owned(),
                credentials: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(image.cluster_id, "C");
        let image = quorum.propose(vec![topic("orders")]).await.unwrap();
        assert!(image.topic("orders").is_some());
        let refused = quorum.propose(vec![topic("other"), topic("orders")]).await;
        assert!(matches!(
            refused,
            Err(MetadataError::Apply(ApplyError::TopicExists { .. }))
        ));
        assert!(quorum.image().topic("other").is_none(), "all or nothing");
        let (_, allocated) = quorum
            .propose_with_result(vec![MetadataRecord::AllocateProducerIds { count: 10 }])
            .await
            .unwrap();
        assert_eq!(allocated.next_producer_id, 10);
        let before = quorum.image();
        quorum.shutdown().await;
        shutdown.cancel();

        let shutdown = CancellationToken::new();
        let quorum = Quorum::start(config(dir.path(), 1, vec![]), None, shutdown.clone())
            .await
            .unwrap();
        let mut applied = quorum.applied();
        tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|a| *a >= 4))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(quorum.image().topics, before.topics);
        assert_eq!(quorum.image().cluster_id, "C");
        let (_, allocated) = quorum
            .propose_with_result(vec![MetadataRecord::AllocateProducerIds { count: 10 }])
            .await
            .unwrap();
        assert_eq!(allocated.next_producer_id, 20, "ids never repeat");
        quorum.shutdown().await;
        shutdown.cancel();

        // The same directory started as part of another voter set is refused.
        let other = Quorum::start(
            config(dir.path(), 1, voters("1@127.0.0.1:1,2@127.0.0.1:2")),
            None,
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(other, Err(QuorumError::VotersChanged { .. })));
    }

    /// Three voters on loopback, started in any order, form one quorum over the cluster
    /// listener; a change made on any of them is forwarded to the leader and seen everywhere; a
    /// broker outside the voters follows the log; the quorum survives losing its leader.
    /// The controller refuses a second incarnation of a live broker, takes one that names the
    /// incarnation it replaces, and takes any once the holder is fenced; a heartbeat counts only
    /// for the registered incarnation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_node_id_is_refused_to_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let quorum = Quorum::start(config(dir.path(), 1, vec![]), None, shutdown.clone())
            .await
            .unwrap();
        let registration = |incarnation: u128, replaces: Option<u128>| {
            MetadataRecord::RegisterBroker(BrokerRegistration {
                id: 5,
                rack: None,
                host: "10.0.0.5".to_owned(),
                port: 9092,
                listeners: Vec::new(),
                fenced: false,
                incarnation: uuid::Uuid::from_u128(incarnation),
                epoch: 0,
                shut_down: false,
                replaces: replaces.map(uuid::Uuid::from_u128),
            })
        };
        quorum.propose(vec![registration(1, None)]).await.unwrap();
        let refused = quorum.propose(vec![registration(2, None)]).await;
        assert!(
            matches!(
                refused,
                Err(MetadataError::Apply(ApplyError::DuplicateBroker {
                    id: 5,
                    ..
                }))
            ),
            "{refused:?}"
        );
        assert_eq!(
            quorum.image().brokers[&5].incarnation,
            uuid::Uuid::from_u128(1)
        );
        assert!(
            quorum
                .heartbeat(5, uuid::Uuid::from_u128(2), Duration::from_secs(1))
                .await
                .is_err()
        );
        assert!(
            quorum
                .heartbeat(5, uuid::Uuid::from_u128(1), Duration::from_secs(1))
                .await
                .is_ok()
        );
        quorum
            .propose(vec![registration(3, Some(1))])
            .await
            .unwrap();
        let epoch = quorum.image().brokers[&5].epoch;
        quorum
            .propose(vec![MetadataRecord::FenceBroker { id: 5, epoch }])
            .await
            .unwrap();
        quorum.propose(vec![registration(4, None)]).await.unwrap();
        assert_eq!(
            quorum.image().brokers[&5].incarnation,
            uuid::Uuid::from_u128(4)
        );
        quorum.shutdown().await;
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_and_a_follower_form_one_cluster_and_survive_the_leader() {
        let ports = free_ports(4);
        let set: Vec<Voter> = (0..3)
            .map(|i| format!("{i}@127.0.0.1:{}", ports[i]).parse().unwrap())
            .collect();
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut quorums = Vec::new();
        for i in [2usize, 0, 1, 3] {
            let mut config = config(dirs[i].path(), i as i32, set.clone());
            config.listen = SocketAddr::from(([127, 0, 0, 1], ports[i]));
            let shutdown = CancellationToken::new();
            let quorum = Quorum::start(config, None, shutdown.clone()).await.unwrap();
            quorums.push((i, quorum, shutdown));
        }
        quorums.sort_by_key(|(i, _, _)| *i);
        let (quorums, shutdowns): (Vec<Arc<Quorum>>, Vec<CancellationToken>) =
            quorums.into_iter().map(|(_, q, s)| (q, s)).unzip();

        // Each proposes a cluster id; the first committed names the cluster for all.
        for (i, quorum) in quorums.iter().enumerate() {
            quorum
                .propose(vec![MetadataRecord::InitCluster {
                    cluster_id: format!("cluster-{i}"),
                    credentials: Vec::new(),
                }])
                .await
                .unwrap();
        }
        let leader = quorums[0].leader().unwrap();
        let follower = (0..3).find(|i| *i as i32 != leader).unwrap();
        let image = quorums[follower]
            .propose(vec![topic("through-a-follower")])
            .await
            .unwrap();
        assert!(image.topic("through-a-follower").is_some());
        let image = quorums[3]
            .propose(vec![topic("through-a-non-voter")])
            .await
            .unwrap();
        let index = *quorums[3].applied().borrow();
        for quorum in &quorums {
            let mut applied = quorum.applied();
            tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|a| *a >= index))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(quorum.image().topics, image.topics);
            assert_eq!(quorum.image().cluster_id, image.cluster_id);
        }
        assert_eq!(quorums[3].voter_ids(), [0, 1, 2]);

        // The leader stops: the other two elect a new one and keep committing.
        let old = usize::try_from(leader).unwrap();
        quorums[old].shutdown().await;
        shutdowns[old].cancel();
        let survivor = (0..3).find(|i| *i != old).unwrap();
        let image = tokio::time::timeout(
            Duration::from_secs(20),
            quorums[survivor].propose(vec![topic("after-failover")]),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(image.topic("after-failover").is_some());
        assert!(
            image.topic("through-a-follower").is_some(),
            "nothing committed is lost"
        );
        let new_leader = quorums[survivor].leader().unwrap();
        assert_ne!(new_leader, leader);
        for (i, quorum) in quorums.iter().enumerate() {
            if i != old {
                quorum.shutdown().await;
            }
        }
        for shutdown in shutdowns {
            shutdown.cancel();
        }
    }

    /// A crash mid-append leaves a torn frame at the end of the log: it is cut on open and the
    /// whole entries before it are kept.
    #[tokio::test]
    async fn a_torn_log_tail_is_cut() {
        use openraft::RaftLogReader as _;
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<openraft::Entry<TypeConfig>> = (0..3)
            .map(|index| openraft::Entry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 0), index),
                payload: openraft::EntryPayload::Normal(Command {
                    records: vec![topic(&format!("t{index}"))],
                }),
            })
            .collect();
        let mut bytes = Vec::new();
        for entry in &entries {
            let frame = serde_json::to_vec(&serde_json::json!({ "Entry": entry })).unwrap();
            bytes.extend_from_slice(&u32::try_from(frame.len()).unwrap().to_be_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&frame).to_be_bytes());
            bytes.extend_from_slice(&frame);
        }
        let whole = bytes.len();
        bytes.truncate(whole - 5);
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dir.path().join("log"), &bytes).unwrap();
        let mut log = store::LogStore::open(dir.path()).unwrap();
        let read = log.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            serde_json::to_value(&read[1]).unwrap(),
            serde_json::to_value(&entries[1]).unwrap()
        );
        assert!(std::fs::metadata(dir.path().join("log")).unwrap().len() < whole as u64 - 5);
        assert_eq!(store::decode_log_frame(&bytes[..20]), None);

        // Damage before the tail is not a torn append: the log refuses to open, cutting nothing.
        let mut damaged = std::fs::read(dir.path().join("log")).unwrap();
        damaged[12] ^= 0x01;
        damaged.extend_from_slice(&bytes[..20]);
        std::fs::write(dir.path().join("log"), &damaged).unwrap();
        let refused = store::LogStore::open(dir.path()).unwrap_err();
        assert!(
            refused.to_string().contains("fails its checksum"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("log")).unwrap(),
            damaged,
            "nothing cut"
        );
    }

    proptest::proptest! {
        /// What arrives on the cluster listener or is read back from the metadata log decodes
        /// to a value or an error, never a panic: arbitrary bytes, and valid messages cut short
        /// or with a byte changed.
        #[test]
        fn cluster_messages_and_log_frames_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            cut in 0usize..400,
            flip in 0usize..400,
        ) {
            let _ = rpc::decode_request(&bytes);
            let _ = rpc::decode_response(&bytes);
            let _ = store::decode_log_frame(&bytes);
            let valid = serde_json::to_vec(&rpc::Envelope {
                cluster_id: "C".to_owned(),
                from: 1,
                body: rpc::Request::Propose(Command { records: vec![topic("t")] }),
            })
            .unwrap();
            proptest::prop_assert!(rpc::decode_request(&valid).is_ok());
            let mut damaged = valid[..cut.min(valid.len())].to_vec();
            if let Some(byte) = damaged.get_mut(flip) {
                *byte ^= 0x5a;
            }
            let _ = rpc::decode_request(&damaged);
        }
    }
}
