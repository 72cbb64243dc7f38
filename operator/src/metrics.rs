//! The operator's own telemetry: Prometheus counters and a duration histogram per controller,
//! failures by low-cardinality reason, and the HTTP endpoint serving them with `/healthz` and
//! `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: String,
    reason: String,
}

/// Counters the controllers update; rendered on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    leader: Gauge,
    ready: AtomicBool,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~16 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fjord_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        let duration =
            Family::<ControllerLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Counts a finished reconcile of `controller` and its duration.
    pub fn reconciled(&self, controller: &str, took: Duration) {
        let label = ControllerLabel {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&label).inc();
        self.duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Counts a failed reconcile of `controller` under `reason`.
    pub fn failed(&self, controller: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                controller: controller.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// `/readyz` answers 200 from now on (connected to the API server; leader or standby).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` (the broker's small HTTP
/// server, `fjord_runtime::http::serve_http`).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    fjord_runtime::http::serve_http(listener, shutdown, move |request| {
        respond(&metrics, request)
    })
    .await;
}

fn respond(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ready\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into()),
        "/metrics" => (StatusCode::OK, metrics.render()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_metrics_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), shutdown.clone()));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        metrics.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        metrics.set_leader(true);
        let text = get(addr, "/metrics").await;
        assert!(text.contains("fjord_operator_leader 1"), "{text}");
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));
        shutdown.cancel();
        server.await.unwrap();
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let metrics = Metrics::default();
        metrics.reconciled("cluster", Duration::from_millis(12));
        metrics.failed("topic", "BrokerUnavailable");
        metrics.failed("topic", "BrokerUnavailable");
        let text = metrics.render();
        assert!(
            text.contains(r#"fjord_operator_reconciles_total{controller="cluster"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"fjord_operator_reconcile_failures_total{controller="topic",reason="BrokerUnavailable"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fjord_operator_reconcile_duration_seconds_count{controller=\"cluster\"} 1"
            ),
            "{text}"
        );
    }
}
