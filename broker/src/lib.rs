//! Fjord broker: a Kafka-compatible event-streaming broker.
//!
//! Data flow, top to bottom:
//!
//! ```text
//! TCP bytes -> server (frames, one task per connection)
//!           -> protocol::decode_request (kafka-protocol, version table)
//!           -> handler::start (in request order) -> handler::<api>
//!           -> handler::Context (the request's metadata image, partition handles, writes
//!              through the broker to the metadata quorum)
//!              group APIs -> coordinator (one actor, group state machines)
//!                            -> __consumer_offsets partitions (commits, group metadata)
//!           -> partition::PartitionHandle (one actor per partition: append + group commit,
//!              retention and compaction on timers)
//!           -> log::Log (segments on disk)      fetch reads log::LogReader directly
//!           -> typed response -> protocol::encode_response -> server writes the frame
//! ```
//!
//! - [`record`]: the Kafka v2 record batch format: validation, header edits, building batches.
//! - [`log`]: the segmented, durable commit log of one partition.
//! - [`cluster`]: the cluster metadata as one immutable image (brokers; topics with their configs;
//!   each partition's replicas, leader, leader epoch and ISR), changed only by committed records.
//! - [`coordinator`]: consumer groups and committed offsets, stored in `__consumer_offsets`.

pub mod admin;
/// The guarded global allocator (in `fjord-runtime`, shared with the operator).
pub use fjord_runtime::alloc;
pub mod broker;
pub mod cluster;
pub mod coordinator;
pub mod handler;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod operations;
pub mod partition;
pub mod protocol;
pub mod quorum;
pub mod record;
pub mod replication;
pub mod security;
pub mod server;

// The unit tests decode hostile input too: they run on the broker's allocator.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc::GuardedAlloc = alloc::GuardedAlloc;

use std::net::SocketAddr;
use std::sync::Arc;

use security::tls::ServerTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use broker::{Broker, BrokerConfig, StartError};

/// A broker serving on its listener.
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    /// The listener's actual address (port 0 in the config becomes a real port).
    pub kafka_addr: SocketAddr,
    /// The actual addresses of the other Kafka listeners (`--listener`), by name.
    pub listener_addrs: std::collections::BTreeMap<String, SocketAddr>,
    /// The admin endpoint's actual address.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    /// One per Kafka listener.
    servers: Vec<tokio::task::JoinHandle<()>>,
    admin: tokio::task::JoinHandle<()>,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding the Kafka listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Security(String),
    #[error("loading the Kafka listener's TLS files")]
    Tls(#[from] security::tls::TlsError),
    #[error("refusing the metadata quorum")]
    Quorum(#[from] quorum::QuorumError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Recovers the logs, binds the listener and starts serving. Stops when `shutdown` is cancelled
/// (see [`RunningBroker::stopped`]).
pub async fn start(
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> Result<RunningBroker, RunError> {
    quorum::check_voters(&config.voters)?;
    if let Some(problem) = config.security.problem() {
        return Err(RunError::Security(problem));
    }
    if let Some(problem) = listener::problem(&config) {
        return Err(RunError::Security(problem));
    }
    let protocol = config.security.protocol();
    let connections = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let first = server::Served {
        name: None,
        tls: server_tls(config.security.tls_files(protocol))?,
        sasl: protocol.sasl(),
        connections: Arc::clone(&connections),
    };
    let listener = bind(config.listen).await?;
    let kafka_addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.listen,
        source,
    })?;
    // The other listeners, and where clients are told to reach them.
    let mut others = Vec::new();
    let mut endpoints = Vec::new();
    let mut listener_addrs = std::collections::BTreeMap::new();
    for flag in &config.listeners {
        let bound = bind(flag.bind).await?;
        let addr = bound.local_addr().map_err(|source| RunError::Bind {
            addr: flag.bind,
            source,
        })?;
        endpoints.push(listener::advertised(
            flag,
            addr,
            &config.advertise_listeners,
        ));
        listener_addrs.insert(flag.name.clone(), addr);
        let served = server::Served {
            name: Some(flag.name.as_str().into()),
            tls: server_tls(config.security.tls_files(flag.protocol))?,
            sasl: flag.protocol.sasl(),
            connections: Arc::clone(&connections),
        };
        others.push((bound, served));
    }
    let admin_listener = bind(config.admin_listen).await?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| RunError::Bind {
            addr: config.admin_listen,
            source,
        })?;
    let opened = Arc::new(std::sync::OnceLock::new());
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        Arc::clone(&opened),
        shutdown.clone(),
    ));
    let broker = match Broker::open(config, kafka_addr, endpoints, shutdown.clone()).await {
        Ok(broker) => broker,
        Err(error) => {
            shutdown.cancel();
            return Err(error.into());
        }
    };
    let _ = opened.set(Arc::clone(&broker));
    for served in std::iter::once(&first).chain(others.iter().map(|(_, served)| served)) {
        if let Some(tls) = &served.tls {
            tokio::spawn(Arc::clone(tls).watch(broker.shared_metrics(), shutdown.clone()));
        }
    }
    if let Some(cluster) = security::cluster_tls::installed() {
        tokio::spawn(Arc::clone(cluster.server()).watch(broker.shared_metrics(), shutdown.clone()));
    }
    let mut servers = vec![tokio::spawn(server::serve(
        listener,
        Arc::clone(&broker),
        first,
        shutdown.clone(),
    ))];
    for (bound, served) in others {
        servers.push(tokio::spawn(server::serve(
            bound,
            Arc::clone(&broker),
            served,
            shutdown.clone(),
        )));
    }
    broker.set_ready(true);
    tracing::info!(%kafka_addr, %admin_addr, "broker ready");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        listener_addrs,
        admin_addr,
        shutdown,
        servers,
        admin,
    })
}

/// A listener's TLS configuration, loaded from its files.
fn server_tls(files: Option<security::tls::TlsFiles>) -> Result<Option<Arc<ServerTls>>, RunError> {
    Ok(match files {
        Some(files) => Some(Arc::new(ServerTls::load(files)?)),
        None => None,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

impl RunningBroker {
    /// Hands this broker's leaderships away (a controlled shutdown), then stops accepting, lets
    /// in-flight requests finish, flushes and checkpoints every log.
    pub async fn shutdown(self) {
        self.broker.controlled_shutdown().await;
        self.shutdown.cancel();
        self.stopped().await;
    }

    /// Waits until the server has stopped (after the shutdown token is cancelled), then closes
    /// the logs cleanly.
    pub async fn stopped(self) {
        self.shutdown.cancelled().await;
        self.broker.set_ready(false);
        let servers = self
            .servers
            .into_iter()
            .map(|task| ("Kafka listener", task));
        for (name, task) in servers.chain([("admin endpoint", self.admin)]) {
            if let Err(error) = task.await {
                tracing::error!(%error, name, "a server task failed");
            }
        }
        self.broker.close().await;
    }
}
