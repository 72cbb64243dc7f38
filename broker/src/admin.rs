//! The HTTP admin endpoint, served from before the broker is open: `/livez` (the process serves), `/readyz` (logs recovered, Kafka
//! listener up, not shutting down, metadata current: see [`crate::cluster::freshness`]),
//! `/metrics` (Prometheus text), and the JSON API of `fjord-admin-api` for the operator:
//! `/v1/status` (the controller, the brokers and their state, partitions, this broker's
//! metadata offset and lag, whether it is caught up), the pre-restart check, leadership drains
//! and broker drains (see [`crate::operations`]).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use fjord_admin_api::Refusal;

use crate::broker::Broker;
use crate::operations::OperationError;

/// Serves the admin endpoint until `shutdown`, from before the broker is open: while `broker` is
/// unset (recovering logs, joining the cluster) `/livez` answers and everything else is 503, so
/// a broker waiting for the quorum to form is not taken for a dead one.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<std::sync::OnceLock<Arc<Broker>>>,
    shutdown: CancellationToken,
) {
    fjord_runtime::http::serve_http_async(listener, shutdown, move |request| {
        let broker = broker.get().cloned();
        async move {
            match broker {
                Some(broker) => respond(&broker, &request).await,
                None => starting(&request),
            }
        }
    })
    .await;
}

/// The answers of a broker that is not open yet.
fn starting(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/livez" => (StatusCode::OK, "ok\n"),
        "/readyz" | "/metrics" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: recovering logs or joining the cluster\n",
        ),
        path if path.starts_with("/v1/") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: recovering logs or joining the cluster\n",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_string(body) {
        Ok(text) => reply(status, "application/json", format!("{text}\n")),
        Err(error) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{error}\n"),
        ),
    }
}

/// An admin operation's answer: its body, or the refusal with the status that fits it.
fn answer<T: serde::Serialize>(
    status: StatusCode,
    result: Result<T, OperationError>,
) -> Response<Full<Bytes>> {
    match result {
        Ok(body) => json(status, &body),
        Err(error) => {
            let code = match &error {
                OperationError::UnknownBroker(_) => StatusCode::NOT_FOUND,
                OperationError::Refused { .. } => StatusCode::CONFLICT,
                OperationError::Metadata(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::info!(%error, "admin operation refused");
            json(
                code,
                &Refusal {
                    code: code.as_u16(),
                    message: error.to_string(),
                },
            )
        }
    }
}

async fn respond(broker: &Broker, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method();
    let path = request.uri().path();
    if let Some((id, what)) = fjord_admin_api::parse_broker_path(path) {
        return match (what, method) {
            ("pre-restart", &Method::GET) => answer(StatusCode::OK, broker.pre_restart_check(id)),
            ("leadership-drain", &Method::POST) => {
                answer(StatusCode::OK, broker.drain_leadership(id, true).await)
            }
            ("leadership-drain", &Method::DELETE) => {
                answer(StatusCode::OK, broker.drain_leadership(id, false).await)
            }
            ("drain", &Method::POST) => answer(StatusCode::ACCEPTED, broker.drain_broker(id).await),
            ("drain", &Method::GET) => answer(StatusCode::OK, broker.drain_status(id)),
            ("drain", &Method::DELETE) => answer(StatusCode::OK, broker.end_drain(id).await),
            ("pre-restart" | "leadership-drain" | "drain", _) => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                format!("{method} is not served on {path}\n"),
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        };
    }
    if path == fjord_admin_api::BALANCE_PATH {
        return match *method {
            Method::GET => json(StatusCode::OK, &broker.balance_status()),
            Method::POST => answer(StatusCode::ACCEPTED, broker.start_balance().await),
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                format!("{method} is not served on {path}\n"),
            ),
        };
    }
    if method != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match path {
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
        fjord_admin_api::STATUS_PATH => json(StatusCode::OK, &broker.status()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
