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
    /// The admin endpoint's actual address.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
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
    let tls = match config.security.tls_files() {
        Some(files) => Some(Arc::new(ServerTls::load(files)?)),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
    let kafka_addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.listen,
        source,
    })?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.admin_listen,
            source,
        })?;
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
    let broker = match Broker::open(config, kafka_addr, shutdown.clone()).await {
        Ok(broker) => broker,
        Err(error) => {
            shutdown.cancel();
            return Err(error.into());
        }
    };
    let _ = opened.set(Arc::clone(&broker));
    if let Some(tls) = &tls {
        tokio::spawn(Arc::clone(tls).watch(broker.shared_metrics(), shutdown.clone()));
    }
    if let Some(cluster) = security::cluster_tls::installed() {
        tokio::spawn(Arc::clone(cluster.server()).watch(broker.shared_metrics(), shutdown.clone()));
    }
    let server = tokio::spawn(server::serve(
        listener,
        Arc::clone(&broker),
        tls,
        shutdown.clone(),
    ));
    broker.set_ready(true);
    tracing::info!(%kafka_addr, %admin_addr, "broker ready");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        admin_addr,
        shutdown,
        server,
        admin,
    })
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
        for (name, task) in [
            ("Kafka listener", self.server),
            ("admin endpoint", self.admin),
        ] {
            if let Err(error) = task.await {
                tracing::error!(%error, name, "a server task failed");
            }
        }
        self.broker.close().await;
    }
}
