//! The TCP edge: an accept loop bounded by a connection limit, one task per connection, size-
//! prefixed frames, one request at a time per connection (so responses go out in request order,
//! as Kafka does), and graceful shutdown through one cancellation token: the listener stops, each
//! connection finishes the request it is on, then closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::handler;
use crate::protocol::{self, DecodeError};

/// Accepts connections until `shutdown`, then waits for open connections to finish.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(broker.config().max_connections));
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
                let broker = Arc::clone(&broker);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    if let Err(error) = connection(stream, peer, &broker, &shutdown).await {
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

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let _open = broker.metrics().connection();
    let (read_half, write_half) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let max_request = broker.config().max_request_bytes;
    loop {
        let size = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            size = reader.read_i32() => match size {
                Ok(size) => size,
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            },
        };
        if size < 0 || size as usize > max_request {
            tracing::warn!(%peer, size, max_request, "request frame size out of bounds; closing the connection");
            return Ok(());
        }
        let mut frame = BytesMut::zeroed(size as usize);
        reader.read_exact(&mut frame).await?;
        let started = std::time::Instant::now();
        let (api, version, correlation_id, body) = match protocol::decode_request(frame.freeze()) {
            Ok(request) => {
                let (api, version, correlation_id) =
                    (request.api, request.version, request.header.correlation_id);
                match handler::dispatch(broker, request, peer).await {
                    Some(body) => (api, version, correlation_id, body),
                    None => {
                        // acks=0: no response, but the request was served.
                        broker.metrics().request(
                            &format!("{api:?}"),
                            version,
                            started.elapsed(),
                            4 + size as usize,
                            0,
                        );
                        continue;
                    }
                }
            }
            // A client asking for a newer ApiVersions than we know gets the error and our table
            // in a version 0 body, and retries with a version from it.
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => (
                ApiKey::ApiVersions,
                0,
                correlation_id,
                ResponseKind::ApiVersions(handler::unsupported_version_response()),
            ),
            Err(error) => {
                // Kafka does the same: a request it cannot parse ends the connection.
                tracing::warn!(%peer, %error, "undecodable request; closing the connection");
                return Ok(());
            }
        };
        match protocol::encode_response(api, version, correlation_id, &body) {
            Ok(bytes) => {
                writer.write_all(&bytes).await?;
                writer.flush().await?;
                let api_name = format!("{api:?}");
                broker.metrics().request(
                    &api_name,
                    version,
                    started.elapsed(),
                    4 + size as usize,
                    bytes.len(),
                );
            }
            Err(error) => {
                tracing::error!(%peer, %error, "cannot encode a response; closing the connection");
                return Ok(());
            }
        }
    }
}
