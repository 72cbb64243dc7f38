//! The TCP edge: an accept loop bounded by a connection limit, one task per connection running
//! a request pipeline ([`pipeline`]: requests take effect in order, several are in flight,
//! responses go out in request order, as Kafka's do), and graceful shutdown through one
//! cancellation token: the listener stops, each connection answers the requests it has read,
//! then closes. A TLS listener completes each connection's handshake first; the client
//! certificate, if one is asked for, gives the connection its principal.

mod login;
pub mod pipeline;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::handler;
use crate::protocol::{self, DecodeError};
use crate::security::sasl::{Authenticator, SaslConfig};
use crate::security::tls::{self, ServerTls};
use crate::security::{LogLimit, Session};
use pipeline::{Answer, ConnectionError, Limits, Reply, Requests, Start};

/// How one Kafka listener serves its connections.
#[derive(Debug)]
pub struct Served {
    /// The `--listener` name; `None` for the first listener.
    pub name: Option<Arc<str>>,
    /// With it, every connection speaks TLS (its handshake first, bounded by
    /// [`tls::HANDSHAKE_TIMEOUT`]); without, plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// Every connection logs in first, with the broker's SASL mechanisms.
    pub sasl: bool,
    /// Connections open at once, shared by every Kafka listener (`--max-connections`).
    pub connections: Arc<Semaphore>,
}

/// Accepts connections until `shutdown`, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    served: Served,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let limit = Arc::clone(&served.connections);
    let sasl = served
        .sasl
        .then(|| broker.config().security.sasl_config().map(Arc::new))
        .flatten();
    let edge = Arc::new(Edge {
        broker,
        name: served.name,
        tls: served.tls,
        sasl,
        refusals: Arc::new(LogLimit::new(REFUSALS_LOGGED_PER_MINUTE)),
    });
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let edge = Arc::clone(&edge);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    if let Err(error) = edge.connection(stream, peer, &shutdown).await {
                        tracing::debug!(%peer, %error, "connection ended with an I/O error");
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: wait and try again.
                tracing::warn!(%error, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Requests in flight on one connection: librdkafka keeps up to five (idempotent producers), and
/// a few more cover clients that pipeline metadata and group requests beside their produces.
const PIPELINE_DEPTH: usize = 8;

/// Request bytes in flight on one connection (one request is always let in, however large).
const PIPELINE_BYTES: usize = 64 * 1024 * 1024;

/// Refused connections (a failed TLS handshake) logged per minute; the rest are counted.
const REFUSALS_LOGGED_PER_MINUTE: u32 = 20;

/// What every connection of the listener shares.
struct Edge {
    broker: Arc<Broker>,
    /// The listener's name (`None`: the first), given to every session.
    name: Option<Arc<str>>,
    tls: Option<Arc<ServerTls>>,
    /// With it, every connection logs in first.
    sasl: Option<Arc<SaslConfig>>,
    refusals: Arc<LogLimit>,
}

impl Edge {
    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectionError> {
        stream.set_nodelay(true).map_err(ConnectionError::Write)?;
        let _open = self.broker.metrics().connection();
        let Some(tls) = &self.tls else {
            let (read, write) = stream.into_split();
            let session = Session {
                listener: self.name.clone(),
                ..Session::anonymous(peer)
            };
            return self.requests(read, write, session, shutdown).await;
        };
        let handshake = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = handshake => accepted,
        };
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            // Closed before a word of TLS: a TCP probe (a load balancer's, a kubelet's).
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%peer, %error, "connection closed during the TLS handshake");
                return Ok(());
            }
            Ok(Err(error)) => {
                self.refused(peer, &error.to_string());
                return Ok(());
            }
            Err(_) => {
                self.refused(peer, "the TLS handshake did not complete in time");
                return Ok(());
            }
        };
        let principal = tls::principal(stream.get_ref().1.peer_certificates());
        tracing::debug!(%peer, %principal, "TLS connection");
        let (read, write) = tokio::io::split(stream);
        let session = Session {
            peer,
            principal,
            listener: self.name.clone(),
        };
        self.requests(read, write, session, shutdown).await
    }

    /// Serves the requests of an established connection.
    async fn requests<R, W>(
        &self,
        read: R,
        write: W,
        session: Session,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectionError>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let limits = Limits {
            max_request_bytes: self.broker.config().max_request_bytes,
            depth: PIPELINE_DEPTH,
            max_in_flight_bytes: PIPELINE_BYTES,
        };
        let requests = BrokerRequests {
            broker: Arc::clone(&self.broker),
            session,
            sasl: self
                .sasl
                .as_ref()
                .map(|config| Arc::new(Mutex::new(Authenticator::new(Arc::clone(config))))),
            refusals: Arc::clone(&self.refusals),
        };
        pipeline::serve(read, write, limits, shutdown, &requests).await
    }

    /// A connection whose TLS handshake failed (a plaintext client on the TLS port, a client
    /// certificate the CA did not sign, garbage): counted, logged within the log limit, closed.
    fn refused(&self, peer: SocketAddr, reason: &str) {
        self.broker.metrics().authentication_failed("SSL");
        if let Some(held_back) = self.refusals.admit() {
            tracing::warn!(%peer, reason, held_back, "refused a connection: TLS handshake failed");
        }
    }
}

/// The broker's requests: decoded, started through [`handler::start`], answered with encoded
/// responses, each timed and counted in the request metrics.
struct BrokerRequests {
    broker: Arc<Broker>,
    /// The client's address, and its principal until a SASL login names another.
    session: Session,
    /// The connection's SASL login, on a listener that asks for one.
    sasl: Option<Arc<Mutex<Authenticator>>>,
    refusals: Arc<LogLimit>,
}

/// The largest request frame a connection that has not logged in may send (Kafka's
/// `sasl.server.max.receive.size`): SASL messages are small, and an unauthenticated client
/// gets no more of the broker's memory than this.
const UNAUTHENTICATED_FRAME_BYTES: usize = 512 * 1024;

impl Requests for BrokerRequests {
    fn frame_limit(&self) -> Option<usize> {
        let auth = self.sasl.as_ref()?;
        (!login::lock(auth).has_logged_in()).then_some(UNAUTHENTICATED_FRAME_BYTES)
    }

    // A start resolves to the rest of its request, itself a future.
    #[allow(clippy::async_yields_async)]
    fn start(&self, frame: Bytes) -> Option<Start> {
        let started = Instant::now();
        let request_bytes = 4 + frame.len();
        if self.expects_raw_token() {
            return Some(self.raw_token(frame));
        }
        let peer = self.session.peer;
        let broker = Arc::clone(&self.broker);
        match protocol::decode_request(frame) {
            Ok(request) => {
                let session = self.admit(request.api)?;
                if matches!(
                    request.api,
                    ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                ) {
                    return Some(self.sasl_request(request, started, request_bytes));
                }
                let (api, version, correlation_id) =
                    (request.api, request.version, request.header.correlation_id);
                Some(Box::pin(async move {
                    let reply = handler::start(&broker, request, &session).await;
                    Box::pin(async move {
                        let body = reply.await;
                        respond(
                            &broker,
                            peer,
                            (api, version, correlation_id),
                            body,
                            started,
                            request_bytes,
                        )
                    }) as Reply
                }))
            }
            // A client asking for a newer ApiVersions than we know gets the error and our table
            // in a version 0 body, and retries with a version from it.
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                let body = ResponseKind::ApiVersions(handler::unsupported_version_response());
                let response = respond(
                    &broker,
                    peer,
                    (ApiKey::ApiVersions, 0, correlation_id),
                    Some(body),
                    started,
                    request_bytes,
                );
                Some(Box::pin(async move {
                    Box::pin(async move { response }) as Reply
                }))
            }
            Err(error) => {
                // Kafka does the same: a request it cannot parse ends the connection.
                tracing::warn!(%peer, %error, "undecodable request; closing the connection");
                None
            }
        }
    }
}

/// Encodes a response frame (`None`: no response, for acks=0) and records the request's metrics.
fn respond(
    broker: &Broker,
    peer: SocketAddr,
    (api, version, correlation_id): (ApiKey, i16, i32),
    body: Option<ResponseKind>,
    started: Instant,
    request_bytes: usize,
) -> Answer {
    let api_name = format!("{api:?}");
    let Some(body) = body else {
        broker
            .metrics()
            .request(&api_name, version, started.elapsed(), request_bytes, 0);
        return Answer::Nothing;
    };
    match protocol::encode_response(api, version, correlation_id, &body) {
        Ok(bytes) => {
            broker.metrics().request(
                &api_name,
                version,
                started.elapsed(),
                request_bytes,
                bytes.len(),
            );
            Answer::Frame(bytes)
        }
        Err(error) => {
            tracing::error!(%peer, %error, "cannot encode a response; closing the connection");
            Answer::Close
        }
    }
}
