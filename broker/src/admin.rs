//! The HTTP admin endpoint, served from before the broker is open: `/livez` (the process serves), `/readyz` (logs recovered, Kafka
//! listener up, not shutting down, metadata current: see [`crate::cluster::freshness`]),
//! `/metrics` (Prometheus text) and `/v1/status` (JSON for the operator: the controller, the
//! brokers, partitions, this broker's metadata offset and lag, whether it is caught up).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;

/// Serves the admin endpoint until `shutdown`, from before the broker is open: while `broker` is
/// unset (recovering logs, joining the cluster) `/livez` answers and everything else is 503, so
/// a broker waiting for the quorum to form is not taken for a dead one.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<std::sync::OnceLock<Arc<Broker>>>,
    shutdown: CancellationToken,
) {
    serve_http(listener, shutdown, move |request| match broker.get() {
        Some(broker) => respond(broker, request),
        None => starting(request),
    })
    .await;
}

/// The answers of a broker that is not open yet.
fn starting(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/livez" => (StatusCode::OK, "ok\n"),
        "/readyz" | "/metrics" | "/v1/status" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: recovering logs or joining the cluster\n",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// A small HTTP/1 server: one task per connection, every request answered by `respond`, until
/// `shutdown`. Also serves the operator's `/metrics`, `/healthz` and `/readyz`.
pub async fn serve_http<F>(listener: TcpListener, shutdown: CancellationToken, respond: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let respond = Arc::new(respond);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let respond = Arc::clone(&respond);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {}
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "HTTP connection ended");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn respond(broker: &Broker, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match request.uri().path() {
        "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if broker.is_ready() => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        "/metrics" => {
            let metrics = broker.metrics();
            metrics.set_cluster(&broker.cluster_sample());
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.render(&broker.partition_samples(), &broker.group_offset_samples()),
            )
        }
        "/v1/status" => {
            let image = broker.image();
            let cluster = broker.cluster_sample();
            let session = Duration::from_millis(broker.config().broker_session_timeout_ms);
            let status = serde_json::json!({
                "node_id": broker.node_id(),
                "cluster_id": image.cluster_id,
                "ready": broker.is_ready(),
                // The metadata quorum's leader (the controller), -1 while none is known.
                "controller": cluster.controller,
                "voters": broker.quorum().voter_ids(),
                "brokers": image.brokers.values().map(|b| serde_json::json!({
                    "id": b.id, "rack": b.rack, "host": b.host, "port": b.port, "fenced": b.fenced,
                    "shut_down": b.shut_down,
                })).collect::<Vec<_>>(),
                "fenced_brokers": cluster.fenced_brokers,
                // The index of the last metadata log entry applied here, and how far behind the
                // controller that is: entries, and milliseconds since this broker was last
                // known current (null: never yet).
                "metadata_offset": cluster.metadata_applied,
                "metadata_lag": {
                    "entries": cluster.metadata_lag_entries,
                    "ms": broker.metadata_lag().since_current.map(|since| since.as_millis()),
                },
                "partitions": broker.partition_samples().len(),
                "leader_partitions": cluster.leader_partitions,
                "under_replicated_partitions": cluster.under_replicated_partitions,
                "offline_partitions": cluster.offline_partitions,
                "leaders_per_broker": cluster.leaders_per_broker.iter()
                    .map(|(id, led)| (id.to_string(), serde_json::Value::from(*led)))
                    .collect::<serde_json::Map<String, serde_json::Value>>(),
                // Caught up: the broker has applied the metadata as far as the controller had
                // at an answer within the session timeout.
                "caught_up": broker.metadata_lag().current_within(session),
            });
            reply(StatusCode::OK, "application/json", format!("{status}\n"))
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
