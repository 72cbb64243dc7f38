//! Scenario tests of the calls the controllers make against the Kubernetes API: a `tower-test`
//! mock stands in for the API server, answers each request from the scenario's state, and
//! records it; the tests assert on the recorded calls (server-side apply bodies and parameters,
//! orphan deletion, the rolling-restart gate, finalizer add and release, status patches). The
//! Topic scenarios run the Kafka side against a real Fjord broker started in-process. The mock
//! enforces the operator's RBAC rules (`fjord_operator::rbac`), answering 403 to anything else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fjord_broker::{BrokerConfig, RunningBroker};
use fjord_operator::cluster::reconcile::reconcile_cluster;
use fjord_operator::controller::{Context, Error};
use fjord_operator::crd::{Cluster, DeletionPolicy, Topic, TopicSpec};
use fjord_operator::kafka::KafkaAdmin;
use fjord_operator::metrics::Metrics;
use fjord_operator::rbac;
use fjord_operator::topic::reconcile::{FINALIZER, reconcile_topic};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Hostile length prefixes in Kafka responses must not abort the test process either.
#[global_allocator]
static ALLOCATOR: fjord_runtime::alloc::GuardedAlloc = fjord_runtime::alloc::GuardedAlloc;

/// One request the controller made.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    /// Path and query, e.g. `/apis/apps/v1/namespaces/streaming/statefulsets/events-a?...`.
    uri: String,
    body: Value,
    /// Refused with 403: the operator's RBAC rules do not allow it.
    forbidden: bool,
}

impl Call {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }

    fn is_event(&self) -> bool {
        self.path().starts_with("/apis/events.k8s.io/")
    }
}

/// The mock API server's answer to one request: status and JSON body.
type Route = Box<dyn Fn(&Call) -> (StatusCode, Value) + Send + Sync>;

/// Everything the chart grants the operator.
const ALL_RULES: &[&[rbac::Rule]] = &[
    rbac::RULES,
    rbac::LEADER_ELECTION_RULES,
    rbac::FINALIZER_RULES,
];

/// Serves requests with `route` until the client is dropped; returns every call made.
fn api_server(route: Route) -> (kube::Client, Arc<Mutex<Vec<Call>>>) {
    api_server_granting(ALL_RULES, route)
}

/// As [`api_server`], the operator granted only `granted` (403 for the rest).
fn api_server_granting(
    granted: &'static [&'static [rbac::Rule]],
    route: Route,
) -> (kube::Client, Arc<Mutex<Vec<Call>>>) {
    let (client, calls, _) = serve(granted, route);
    (client, calls)
}

/// Watch requests the mock API server holds open, each with its path, until the scenario
/// answers them with [`send_watch_event`].
type Watches = Arc<Mutex<Vec<(String, tower_test::mock::SendResponse<Response<Body>>)>>>;

/// Answers every held watch of a path ending in `suffix` with `event` (a watch event such as
/// `{"type": "DELETED", "object": ...}`); the watcher then watches again.
fn send_watch_event(watches: &Watches, suffix: &str, event: &Value) -> usize {
    let mut held = watches.lock().unwrap();
    let (matching, rest): (Vec<_>, Vec<_>) = held.drain(..).partition(|(p, _)| p.ends_with(suffix));
    *held = rest;
    let sent = matching.len();
    for (_, respond) in matching {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        respond.send_response(
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(line))
                .unwrap(),
        );
    }
    sent
}

/// The mock API server: answers with `route` what `granted` allows (403 for the rest), holds
/// watch requests open (see [`Watches`]), records every call.
fn serve(
    granted: &'static [&'static [rbac::Rule]],
    route: Route,
) -> (kube::Client, Arc<Mutex<Vec<Call>>>, Watches) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&calls);
    let watches: Watches = Arc::default();
    let held = Arc::clone(&watches);
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let call = Call {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                body: if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes)
                        .or_else(|_| serde_yaml::from_slice(&bytes))
                        .unwrap_or(Value::Null)
                },
                forbidden: false,
            };
            let mut call = call;
            let needed = rbac::required(call.method.as_str(), call.path(), call.query());
            call.forbidden = !needed.as_ref().is_some_and(|(group, resource, verb)| {
                granted
                    .iter()
                    .any(|rules| rbac::allows(rules, group, resource, verb))
            });
            if !call.forbidden && call.query().split('&').any(|p| p == "watch=true") {
                held.lock().unwrap().push((call.path().to_owned(), respond));
                recorded.lock().unwrap().push(call);
                continue;
            }
            let (status, answer) = if call.forbidden {
                (
                    StatusCode::FORBIDDEN,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": format!("{needed:?} is not in the operator's RBAC rules"),
                           "reason": "Forbidden", "code": 403}),
                )
            } else if call.is_event() {
                // Events are recorded and accepted as posted.
                (StatusCode::CREATED, call.body.clone())
            } else {
                route(&call)
            };
            recorded.lock().unwrap().push(call);
            respond.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(service, "default"), calls, watches)
}

fn not_found(call: &Call) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{} not found", call.path()), "reason": "NotFound", "code": 404
        }),
    )
}

fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Arc::new(Metrics::default()),
        "ghcr.io/fjord-dev/fjord-broker:0.1.0".into(),
    ))
}

/// A context whose Topic controller reaches the brokers at `bootstrap`.
fn context_reaching(client: kube::Client, bootstrap: String) -> Arc<Context> {
    let mut context = Context::new(client, Arc::new(Metrics::default()), "img".into());
    context.bootstrap_override = Some(bootstrap);
    Arc::new(context)
}

fn example_cluster() -> Cluster {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/cluster.yaml"
    ))
    .unwrap();
    let mut cluster: Cluster = serde_yaml::from_str(&manifest).unwrap();
    cluster.metadata.uid = Some("c1a55e7e-0000-4000-8000-000000000001".into());
    cluster.metadata.generation = Some(3);
    cluster.metadata.resource_version = Some("41".into());
    cluster
}

const ZONES: [(&str, i32); 3] = [("eu-west-1a", 0), ("eu-west-1b", 100), ("eu-west-1c", 200)];

/// A broker pod of the example cluster.
fn pod(zone: &str, node_id: i32, revision: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("events-{zone}-{node_id}"),
            "namespace": "streaming",
            "uid": format!("pod-uid-{node_id}"),
            "labels": {
                "app.kubernetes.io/name": "fjord",
                "app.kubernetes.io/instance": "events",
                "app.kubernetes.io/component": "broker",
                "fjord.dev/zone": zone,
                "controller-revision-hash": revision,
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": format!("events-{zone}"), "uid": format!("sts-{zone}"), "controller": true
            }]
        },
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "7"}, "items": items})
}

/// The cluster scenarios' API server: applies echo the body (StatefulSets with
/// `update_revision`), lists return `stateful_sets` and `pods`, `/v1/status` through the pod
/// proxy answers `broker_status(pod)` (its `pre_restart`, if any, is the pre-restart check's
/// answer), leaving brokers are drained, leadership drains, deletes and status patches succeed.
fn cluster_routes(
    update_revision: &'static str,
    stateful_sets: Vec<Value>,
    pods: Vec<Value>,
    broker_status: fn(&str) -> Value,
) -> Route {
    Box::new(move |call: &Call| {
        let path = call.path();
        match call.method {
            Method::PATCH if path.ends_with("/status") => (
                StatusCode::OK,
                json!({
                    "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
                    "metadata": {"name": "events", "namespace": "streaming"},
                    "spec": example_cluster().spec,
                }),
            ),
            Method::PATCH => {
                let mut object = call.body.clone();
                if object["kind"] == "StatefulSet" {
                    // The StatefulSet controller has seen this spec (generation 2) unless the
                    // scenario says it lags behind.
                    object["metadata"]["generation"] = 2.into();
                    object["status"] = json!({
                        "replicas": 1,
                        "observedGeneration": if update_revision == "lagging" { 1 } else { 2 },
                        "updateRevision": update_revision,
                    });
                }
                (StatusCode::OK, object)
            }
            Method::GET if path.ends_with("/statefulsets") => (
                StatusCode::OK,
                list("StatefulSet", selected(call, &stateful_sets)),
            ),
            Method::GET if path.ends_with("/pods") => {
                (StatusCode::OK, list("Pod", selected(call, &pods)))
            }
            Method::GET if path.ends_with("/proxy/v1/status") => {
                (StatusCode::OK, broker_status(proxied_pod(path)))
            }
            // The pre-restart check: the status's `pre_restart` if the scenario gives one,
            // otherwise safe.
            Method::GET if path.ends_with("/pre-restart") => {
                let status = broker_status(proxied_pod(path));
                match status.get("pre_restart") {
                    // A broker of a release before the check: not served.
                    Some(Value::Null) => not_found(call),
                    Some(check) => (StatusCode::OK, check.clone()),
                    None => (
                        StatusCode::OK,
                        json!({"broker": 0, "restart_safe": true, "reasons": []}),
                    ),
                }
            }
            // A leaving broker's drain: done (it holds nothing).
            Method::GET if path.ends_with("/drain") => (
                StatusCode::OK,
                json!({"broker": 0, "state": "drained", "replicas_left": 0, "moving": 0}),
            ),
            // A secured Cluster's operator credentials: created as posted.
            Method::POST if path.ends_with("/secrets") => (StatusCode::CREATED, call.body.clone()),
            Method::POST if path.ends_with("/leadership-drain") => (
                StatusCode::OK,
                json!({"broker": 0, "drained": true, "leaders_left": 0}),
            ),
            Method::DELETE => (
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            _ => not_found(call),
        }
    })
}

/// The pod a pod-proxy path names (`.../pods/<pod>:<port>/proxy/...`).
fn proxied_pod(path: &str) -> &str {
    path.split("/pods/")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
}

/// The items whose labels match the request's `labelSelector` (`k=v,...`), as the API server
/// would filter them.
fn selected(call: &Call, items: &[Value]) -> Vec<Value> {
    let selector = call
        .query()
        .split('&')
        .find_map(|p| p.strip_prefix("labelSelector="))
        .map(|s| {
            s.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
        .unwrap_or_default();
    items
        .iter()
        .filter(|item| {
            selector.split(',').filter(|t| !t.is_empty()).all(|term| {
                let (key, value) = term.split_once('=').unwrap();
                item["metadata"]["labels"][key] == value
            })
        })
        .cloned()
        .collect()
}

/// Reconciles `cluster` once against the cluster scenarios' API server; the action and every
/// call made.
async fn reconcile_against(
    cluster: Cluster,
    update_revision: &'static str,
    stateful_sets: Vec<Value>,
    pods: Vec<Value>,
    broker_status: fn(&str) -> Value,
) -> (Action, Arc<Mutex<Vec<Call>>>) {
    let (client, calls) = api_server(cluster_routes(
        update_revision,
        stateful_sets,
        pods,
        broker_status,
    ));
    let action = reconcile_cluster(Arc::new(cluster), context(client))
        .await
        .unwrap();
    (action, calls)
}

fn healthy(_: &str) -> Value {
    json!({"node_id": 0, "ready": true, "partitions": 3, "under_replicated_partitions": 0, "caught_up": true})
}

/// A StatefulSet of the example cluster as listed: the cluster's labels and its node-id range.
fn stateful_set(name: &str, start: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "streaming", "labels": {
            "fjord.dev/cluster": "events", "app.kubernetes.io/managed-by": "fjord-operator"}},
        "spec": {"ordinals": {"start": start}, "selector": {}, "template": {}}})
}

fn current_stateful_sets() -> Vec<Value> {
    ZONES
        .iter()
        .map(|(zone, start)| stateful_set(&format!("events-{zone}"), *start))
        .collect()
}

fn status_patch(calls: &[Call]) -> Value {
    let patch = calls
        .iter()
        .rev()
        .find(|c| c.method == Method::PATCH && c.path().ends_with("/status"))
        .expect("a status patch");
    patch.body["status"].clone()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn kube_calls(calls: &Arc<Mutex<Vec<Call>>>) -> Vec<Call> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| !c.is_event())
        .cloned()
        .collect()
}

/// The writes among `calls` (everything but GETs), as "METHOD path".
fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method != Method::GET)
        .map(|c| format!("{} {}", c.method, c.path()))
        .collect()
}

fn events(calls: &Arc<Mutex<Vec<Call>>>) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.is_event())
        .map(|c| c.body["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The notes of the Events published, in order.
fn event_notes(calls: &Arc<Mutex<Vec<Call>>>) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.is_event())
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_cluster_is_applied_server_side_orphans_deleted_and_status_written() {
    let mut stateful_sets = current_stateful_sets();
    // A zone removed from the spec: its StatefulSet carries the cluster's labels.
    stateful_sets.push(stateful_set("events-eu-west-1d", 300));
    // Another cluster's StatefulSet in the namespace: not selected, never touched.
    let mut foreign = stateful_set("payments-eu-west-1a", 0);
    foreign["metadata"]["labels"]["fjord.dev/cluster"] = "payments".into();
    stateful_sets.push(foreign);
    let pods = ZONES
        .iter()
        .map(|(zone, id)| pod(zone, *id, "rev-1", true))
        .collect();
    let (action, calls) =
        reconcile_against(example_cluster(), "rev-1", stateful_sets, pods, healthy).await;
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));

    let calls = kube_calls(&calls);
    let applies: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == Method::PATCH && !c.path().ends_with("/status"))
        .collect();
    let applied: Vec<String> = applies
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.body["kind"].as_str().unwrap(),
                c.body["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        applied,
        [
            "ServiceAccount events-broker",
            "ConfigMap events-config",
            "Service events-brokers",
            "Service events-bootstrap",
            "StatefulSet events-eu-west-1a",
            "StatefulSet events-eu-west-1b",
            "StatefulSet events-eu-west-1c",
            "PodDisruptionBudget events",
        ]
    );
    for apply in &applies {
        // Server-side apply, one field manager, forced; every object owned by the Cluster.
        assert!(
            apply.query().contains("fieldManager=fjord-operator"),
            "{}",
            apply.uri
        );
        assert!(apply.query().contains("force=true"), "{}", apply.uri);
        let owner = &apply.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Cluster");
        assert_eq!(owner["uid"], "c1a55e7e-0000-4000-8000-000000000001");
        assert_eq!(owner["controller"], true);
        assert_eq!(
            apply.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "fjord-operator"
        );
    }
    assert_eq!(
        applies[4].path(),
        "/apis/apps/v1/namespaces/streaming/statefulsets/events-eu-west-1a"
    );

    let orphan_list = calls
        .iter()
        .find(|c| c.method == Method::GET && c.path().ends_with("/statefulsets"))
        .unwrap();
    assert!(
        orphan_list
            .query()
            .contains("labelSelector=fjord.dev%2Fcluster%3Devents"),
        "{}",
        orphan_list.uri
    );
    let deletes: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(Call::path)
        .collect();
    assert_eq!(
        deletes,
        ["/apis/apps/v1/namespaces/streaming/statefulsets/events-eu-west-1d"]
    );
    // The removed zone's broker was asked about its drain (it holds nothing) before its
    // StatefulSet went; nothing else went to the brokers.
    let proxied: Vec<&str> = calls
        .iter()
        .filter(|c| c.path().contains("/proxy/"))
        .map(Call::path)
        .collect();
    assert_eq!(
        proxied,
        [
            "/api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/brokers/300/drain",
            "/api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/status",
        ],
        "no rollout, no health gate: one status for the Cluster's own"
    );

    let status = status_patch(&calls);
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["readyBrokers"], 3);
    assert_eq!(status["brokers"], 3);
    assert_eq!(status["bootstrap"], "events-bootstrap.streaming.svc:9092");
    assert_eq!(
        status["zones"][1],
        json!({"name": "eu-west-1b", "brokers": 1, "readyBrokers": 1})
    );
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Progressing")["reason"], "UpToDate");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    // The brokers' own view, as the first Ready broker reports it (it names no controller).
    assert_eq!(
        status["cluster"],
        json!({"controller": -1, "underReplicatedPartitions": 0, "offlinePartitions": 0,
            "reassigningPartitions": 0, "balancing": false, "brokers": []})
    );
}

#[tokio::test]
async fn a_template_change_restarts_one_outdated_pod_when_all_brokers_are_healthy() {
    // Zone a still runs the old revision; b and c were already replaced.
    let pods = vec![
        pod("eu-west-1a", 0, "rev-1", true),
        pod("eu-west-1b", 100, "rev-2", true),
        pod("eu-west-1c", 200, "rev-2", true),
    ];
    let (action, calls) = reconcile_against(
        example_cluster(),
        "rev-2",
        current_stateful_sets(),
        pods,
        healthy,
    )
    .await;
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(10)));

    let recorded = kube_calls(&calls);
    let health: Vec<&str> = recorded
        .iter()
        .filter(|c| c.path().ends_with("/proxy/v1/status"))
        .map(Call::path)
        .collect();
    assert_eq!(
        health.len(),
        4,
        "every broker by the gate, one again for the Cluster's status: {health:?}"
    );
    assert!(
        health.contains(
            &"/api/v1/namespaces/streaming/pods/events-eu-west-1b-100:9644/proxy/v1/status"
        )
    );
    let deletes: Vec<&Call> = recorded
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].path(),
        "/api/v1/namespaces/streaming/pods/events-eu-west-1a-0"
    );
    // Before it: the pod's leaderships drained, then its pre-restart check asked.
    let admin: Vec<String> = recorded
        .iter()
        .filter(|c| c.path().contains("/proxy/v1/brokers/") || c.method == Method::DELETE)
        .map(|c| format!("{} {}", c.method, c.path()))
        .collect();
    assert_eq!(
        admin,
        [
            "POST /api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/brokers/0/leadership-drain",
            "GET /api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/brokers/0/pre-restart",
            "DELETE /api/v1/namespaces/streaming/pods/events-eu-west-1a-0",
        ]
    );
    // Never a pod that was replaced meanwhile.
    assert_eq!(deletes[0].body["preconditions"]["uid"], "pod-uid-0");
    let status = status_patch(&recorded);
    assert_eq!(
        condition(&status, "Progressing")["reason"],
        "RollingRestart"
    );
    assert_eq!(condition(&status, "Progressing")["status"], "True");
    assert_eq!(events(&calls), ["RollingRestart"]);
}

#[tokio::test]
async fn the_restart_waits_while_a_broker_reports_under_replicated_partitions() {
    fn lagging(pod: &str) -> Value {
        let under = if pod.ends_with("-200") { 2 } else { 0 };
        json!({"under_replicated_partitions": under, "caught_up": true})
    }
    let pods = vec![
        pod("eu-west-1a", 0, "rev-1", true),
        pod("eu-west-1b", 100, "rev-1", true),
        pod("eu-west-1c", 200, "rev-2", true),
    ];
    let (_, calls) = reconcile_against(
        example_cluster(),
        "rev-2",
        current_stateful_sets(),
        pods,
        lagging,
    )
    .await;
    let recorded = kube_calls(&calls);
    assert!(
        !recorded.iter().any(|c| c.method == Method::DELETE),
        "no pod may go"
    );
    let status = status_patch(&recorded);
    let progressing = condition(&status, "Progressing");
    assert_eq!(progressing["reason"], "UnderReplicatedPartitions");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains("events-eu-west-1c-200 reports 2 under-replicated"),
        "{progressing}"
    );
}

/// A pre-restart check that says no, or does not answer, keeps the pod: the Cluster says why.
/// The controller (the metadata quorum's leader) goes last: with two outdated voters, the one
/// that is not the controller is chosen.
#[tokio::test]
async fn the_restart_waits_for_the_pre_restart_check_and_the_controller_goes_last() {
    fn refusing(_: &str) -> Value {
        json!({"under_replicated_partitions": 0, "caught_up": true, "controller": 0,
            "pre_restart": {"broker": 100, "restart_safe": false,
                "reasons": ["orders-1: its ISR [100, 200] would fall to 1 in sync, below min.insync.replicas 2"]}})
    }
    let pods = vec![
        pod("eu-west-1a", 0, "rev-1", true),
        pod("eu-west-1b", 100, "rev-1", true),
        pod("eu-west-1c", 200, "rev-2", true),
    ];
    let (_, calls) = reconcile_against(
        example_cluster(),
        "rev-2",
        current_stateful_sets(),
        pods,
        refusing,
    )
    .await;
    let recorded = kube_calls(&calls);
    assert!(
        !recorded.iter().any(|c| c.method == Method::DELETE),
        "no pod may go"
    );
    let asked: Vec<&str> = recorded
        .iter()
        .filter(|c| c.path().ends_with("/pre-restart"))
        .map(Call::path)
        .collect();
    assert_eq!(
        asked,
        [
            "/api/v1/namespaces/streaming/pods/events-eu-west-1b-100:9644/proxy/v1/brokers/100/pre-restart"
        ],
        "broker 0 leads the quorum: broker 100 goes first"
    );
    let status = status_patch(&recorded);
    let progressing = condition(&status, "Progressing");
    assert_eq!(progressing["reason"], "RestartUnsafe");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains("below min.insync.replicas 2"),
        "{progressing}"
    );
}

/// Brokers of a release before the pre-restart check (an upgrade rolling out) do not serve it:
/// their restart goes by the health gate alone, as it did then.
#[tokio::test]
async fn brokers_without_a_pre_restart_check_restart_by_the_health_gate() {
    fn older(_: &str) -> Value {
        json!({"under_replicated_partitions": 0, "caught_up": true, "pre_restart": null})
    }
    let pods = vec![
        pod("eu-west-1a", 0, "rev-1", true),
        pod("eu-west-1b", 100, "rev-2", true),
        pod("eu-west-1c", 200, "rev-2", true),
    ];
    let (_, calls) = reconcile_against(
        example_cluster(),
        "rev-2",
        current_stateful_sets(),
        pods,
        older,
    )
    .await;
    let deletes: Vec<String> = kube_calls(&calls)
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(|c| c.path().to_owned())
        .collect();
    assert_eq!(
        deletes,
        ["/api/v1/namespaces/streaming/pods/events-eu-west-1a-0"]
    );
}

#[tokio::test]
async fn no_restart_until_the_statefulset_has_observed_its_new_spec() {
    // The apply answer still carries the previous status (observedGeneration 1 < generation 2):
    // which pods are outdated is not known yet.
    let pods = ZONES
        .iter()
        .map(|(zone, id)| pod(zone, *id, "rev-1", true))
        .collect();
    let (action, calls) = reconcile_against(
        example_cluster(),
        "lagging",
        current_stateful_sets(),
        pods,
        healthy,
    )
    .await;
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(10)));
    let recorded = kube_calls(&calls);
    assert!(
        !recorded
            .iter()
            .any(|c| c.method == Method::DELETE && c.path().contains("/pods/"))
    );
    let status = status_patch(&recorded);
    assert_eq!(
        condition(&status, "Progressing")["reason"],
        "StatefulSetUpdating"
    );
}

#[tokio::test]
async fn a_zone_removed_from_the_front_keeps_the_others_node_ids() {
    // a (0), b (100), c (200) exist; the spec now lists b and c only.
    let mut cluster = example_cluster();
    cluster.spec.zones.remove(0);
    let pods = ZONES[1..]
        .iter()
        .map(|(zone, id)| pod(zone, *id, "rev-1", true))
        .collect();
    let (_, calls) =
        reconcile_against(cluster, "rev-1", current_stateful_sets(), pods, healthy).await;
    let recorded = kube_calls(&calls);
    let starts: Vec<(String, i64)> = recorded
        .iter()
        .filter(|c| c.method == Method::PATCH && c.body["kind"] == "StatefulSet")
        .map(|c| {
            (
                c.body["metadata"]["name"].as_str().unwrap().to_owned(),
                c.body["spec"]["ordinals"]["start"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        starts,
        [
            ("events-eu-west-1b".to_owned(), 100),
            ("events-eu-west-1c".to_owned(), 200)
        ]
    );
    let deletes: Vec<&str> = recorded
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(Call::path)
        .collect();
    assert_eq!(
        deletes,
        ["/apis/apps/v1/namespaces/streaming/statefulsets/events-eu-west-1a"]
    );
}

#[tokio::test]
async fn the_restart_waits_for_the_previous_pod_to_be_ready_again() {
    let pods = vec![
        pod("eu-west-1a", 0, "rev-2", false), // just replaced, still starting
        pod("eu-west-1b", 100, "rev-1", true),
        pod("eu-west-1c", 200, "rev-1", true),
    ];
    let (_, calls) = reconcile_against(
        example_cluster(),
        "rev-2",
        current_stateful_sets(),
        pods,
        healthy,
    )
    .await;
    let recorded = kube_calls(&calls);
    assert!(!recorded.iter().any(|c| c.method == Method::DELETE));
    // Not Ready: no health gate; only the status of the Cluster is read, from a Ready broker.
    let proxied: Vec<&str> = recorded
        .iter()
        .filter(|c| c.path().contains("/proxy/"))
        .map(Call::path)
        .collect();
    assert_eq!(
        proxied,
        ["/api/v1/namespaces/streaming/pods/events-eu-west-1b-100:9644/proxy/v1/status"]
    );
    let status = status_patch(&recorded);
    assert_eq!(
        condition(&status, "Progressing")["reason"],
        "WaitingForBrokers"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(status["readyBrokers"], 2);
}

#[tokio::test]
async fn an_invalid_cluster_gets_a_condition_and_no_objects() {
    let mut cluster = example_cluster();
    cluster
        .spec
        .config
        .insert("log.dirs".into(), "/data".into());
    let (action, calls) = reconcile_against(cluster, "rev-1", vec![], vec![], healthy).await;
    assert_eq!(action, Action::await_change());
    let recorded = kube_calls(&calls);
    assert_eq!(
        writes(&recorded),
        ["PATCH /apis/fjord.dev/v1alpha1/namespaces/streaming/clusters/events/status"],
        "only the status"
    );
    let status = status_patch(&recorded);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(ready["message"].as_str().unwrap().contains("log.dirs"));
    assert_eq!(events(&calls), ["InvalidSpec"]);
}

// ---- Topics ----

fn topic(policy: DeletionPolicy, finalizers: &[&str], deleting: bool) -> Topic {
    let mut topic = Topic::new(
        "orders",
        TopicSpec {
            cluster: "events".into(),
            topic_name: None,
            partitions: 3,
            replication_factor: 1,
            config: BTreeMap::from([("retention.ms".into(), "3600000".into())]),
            deletion_policy: policy,
        },
    );
    topic.metadata.namespace = Some("streaming".into());
    topic.metadata.generation = Some(2);
    topic.metadata.resource_version = Some("99".into());
    topic.metadata.uid = Some("70b1c000-0000-4000-8000-000000000002".into());
    topic.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
    topic.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-06-01T00:00:00Z".parse().unwrap(),
    ));
    if deleting {
        topic.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
    }
    topic
}

/// Another Topic in the namespace, naming Kafka topic `kafka_name`, created at `created`.
fn other_topic(name: &str, kafka_name: &str, created: &str) -> Topic {
    let mut other = topic(DeletionPolicy::Delete, &[], false);
    other.metadata.name = Some(name.into());
    other.metadata.uid = Some(format!("70b1c000-0000-4000-8000-{name:0>12}"));
    other.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created.parse().unwrap(),
    ));
    other.spec.topic_name = Some(kafka_name.into());
    other
}

fn topic_value(topic: &Topic) -> Value {
    let mut object = serde_json::to_value(topic).unwrap();
    object["apiVersion"] = "fjord.dev/v1alpha1".into();
    object["kind"] = "Topic".into();
    object
}

/// The topic scenarios' API server: the Cluster exists or not; the namespace's Topics are the
/// reconciled one alone; patches echo a Topic.
fn topic_routes(cluster_exists: bool) -> Route {
    topic_routes_listing(
        cluster_exists,
        vec![topic(DeletionPolicy::Delete, &[], false)],
    )
}

/// As [`topic_routes`], with `listed` as the namespace's Topics.
fn topic_routes_listing(cluster_exists: bool, listed: Vec<Topic>) -> Route {
    let listed: Vec<Value> = listed.iter().map(topic_value).collect();
    Box::new(move |call: &Call| {
        let path = call.path();
        match call.method {
            Method::GET if path == "/apis/fjord.dev/v1alpha1/namespaces/streaming/topics" => {
                let mut answer = list("Topic", listed.clone());
                answer["apiVersion"] = "fjord.dev/v1alpha1".into();
                (StatusCode::OK, answer)
            }
            Method::GET if path.ends_with("/clusters/events") && cluster_exists => {
                let mut cluster = serde_json::to_value(example_cluster()).unwrap();
                cluster["apiVersion"] = "fjord.dev/v1alpha1".into();
                cluster["kind"] = "Cluster".into();
                (StatusCode::OK, cluster)
            }
            Method::PATCH => (
                StatusCode::OK,
                topic_value(&topic(DeletionPolicy::Delete, &[], false)),
            ),
            _ => not_found(call),
        }
    })
}

fn finalizer_patches(calls: &[Call]) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c.method == Method::PATCH && !c.path().ends_with("/status"))
        .map(|c| c.body["metadata"].clone())
        .collect()
}

#[tokio::test]
async fn delete_policy_adds_the_finalizer_and_a_missing_cluster_is_a_condition() {
    let (client, calls) = api_server(topic_routes(false));
    let action = reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[], false)),
        context(client),
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
    let recorded = kube_calls(&calls);
    assert_eq!(
        finalizer_patches(&recorded),
        [json!({"resourceVersion": "99", "finalizers": [FINALIZER]})]
    );
    let status = status_patch(&recorded);
    assert_eq!(condition(&status, "Ready")["reason"], "ClusterNotFound");
    assert_eq!(status["observedGeneration"], 2);
}

#[tokio::test]
async fn retain_policy_drops_a_finalizer_left_from_delete() {
    let (client, calls) = api_server(topic_routes(false));
    reconcile_topic(
        Arc::new(topic(
            DeletionPolicy::Retain,
            &["other.example/keep", FINALIZER],
            false,
        )),
        context(client),
    )
    .await
    .unwrap();
    assert_eq!(
        finalizer_patches(&kube_calls(&calls)),
        [json!({"resourceVersion": "99", "finalizers": ["other.example/keep"]})]
    );
}

#[tokio::test]
async fn deleting_a_topic_whose_cluster_is_gone_releases_the_finalizer_without_kafka() {
    let (client, calls) = api_server(topic_routes(false));
    let action = reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], true)),
        context(client),
    )
    .await
    .unwrap();
    assert_eq!(action, Action::await_change());
    let recorded = kube_calls(&calls);
    assert_eq!(
        finalizer_patches(&recorded),
        [json!({"resourceVersion": "99", "finalizers": []})]
    );
    assert!(!recorded.iter().any(|c| c.path().ends_with("/status")));
    assert_eq!(events(&calls), ["ClusterGone"]);
}

#[tokio::test]
async fn a_younger_topic_naming_the_same_kafka_topic_changes_nothing() {
    let legacy = other_topic("orders-legacy", "orders", "2025-01-01T00:00:00Z");
    let newer = other_topic("orders-v2", "orders", "2026-09-01T00:00:00Z");
    let listed = vec![
        legacy,
        topic(DeletionPolicy::Delete, &[], false),
        newer.clone(),
    ];
    // The Topics come from the controller's cache: no list from the API server.
    let (client, calls) = api_server(topic_routes_listing(true, vec![]));
    let ctx = context(client);
    let (cache, mut writer) = kube::runtime::reflector::store::<Topic>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    for cached in &listed {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(cached.clone()));
    }
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    ctx.topic_cache.add(cache);
    let action = reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], false)),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
    let recorded = kube_calls(&calls);
    assert!(
        !recorded.iter().any(|c| c.path().contains("/clusters/")),
        "no Cluster lookup, so no Kafka call either"
    );
    assert!(
        !recorded
            .iter()
            .any(|c| c.method == Method::GET && c.path().ends_with("/topics")),
        "the cache answered"
    );
    let status = status_patch(&recorded);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ResourceConflict");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("'orders'") && message.contains("Topic 'orders-legacy'"),
        "{message}"
    );
    assert_eq!(status["topicName"], "orders");
    assert_eq!(events(&calls), ["ResourceConflict"]);

    // The next resync of a Topic already in conflict writes the status, and no second Event.
    let mut in_conflict = topic(DeletionPolicy::Delete, &[FINALIZER], false);
    in_conflict.status = serde_json::from_value(status).unwrap();
    calls.lock().unwrap().clear();
    reconcile_topic(Arc::new(in_conflict), Arc::clone(&ctx))
        .await
        .unwrap();
    assert!(events(&calls).is_empty());

    // Without a cache (or before its first list), the Topics are listed. The youngest is in
    // conflict with the oldest, not with the one in between.
    let (client, calls) = api_server(topic_routes_listing(true, listed));
    reconcile_topic(Arc::new(newer), context(client))
        .await
        .unwrap();
    let recorded = kube_calls(&calls);
    assert!(
        recorded
            .iter()
            .any(|c| c.method == Method::GET && c.path().ends_with("/topics"))
    );
    let status = status_patch(&recorded);
    let message = condition(&status, "Ready")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("Topic 'orders-legacy'"), "{message}");
    drop(writer);
}

async fn broker() -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = fjord_broker::start(
        BrokerConfig::for_tests(dir.path().to_path_buf()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    (broker, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_created_on_a_real_broker_and_deleted_with_its_resource() {
    let (broker, _dir) = broker().await;
    let bootstrap = broker.kafka_addr.to_string();
    let (client, calls) = api_server(topic_routes(true));
    let ctx = context_reaching(client, bootstrap.clone());

    let action = reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], false)),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
    let mut admin = KafkaAdmin::connect(&bootstrap, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let described = admin
        .describe_topic("orders")
        .await
        .unwrap()
        .expect("topic created");
    assert_eq!(described.partitions, 3);
    let status = status_patch(&kube_calls(&calls));
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    assert_eq!(status["partitions"], 3);
    assert_eq!(status["topicName"], "orders");
    assert_eq!(status["topicId"].as_str(), described.topic_id.as_deref());
    assert!(
        finalizer_patches(&kube_calls(&calls)).is_empty(),
        "finalizer already there"
    );
    assert_eq!(events(&calls), ["TopicCreated"]);

    calls.lock().unwrap().clear();
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], true)),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    assert_eq!(
        admin.describe_topic("orders").await.unwrap(),
        None,
        "topic deleted"
    );
    assert_eq!(
        finalizer_patches(&kube_calls(&calls)),
        [json!({"resourceVersion": "99", "finalizers": []})]
    );
    assert_eq!(events(&calls), ["TopicDeleted"]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_keeps_the_kafka_topic_while_another_topic_names_it() {
    let (broker, _dir) = broker().await;
    let bootstrap = broker.kafka_addr.to_string();
    let (client, _) = api_server(topic_routes(true));
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], false)),
        context_reaching(client, bootstrap.clone()),
    )
    .await
    .unwrap();
    let mut admin = KafkaAdmin::connect(&bootstrap, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let created = admin
        .describe_topic("orders")
        .await
        .unwrap()
        .expect("created");

    // A younger Topic names the same Kafka topic; the older one is deleted.
    let listed = vec![
        topic(DeletionPolicy::Delete, &[FINALIZER], true),
        other_topic("orders-v2", "orders", "2026-09-01T00:00:00Z"),
    ];
    let (client, calls) = api_server(topic_routes_listing(true, listed));
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], true)),
        context_reaching(client, bootstrap.clone()),
    )
    .await
    .unwrap();
    let kept = admin.describe_topic("orders").await.unwrap().expect("kept");
    assert_eq!(
        kept.topic_id, created.topic_id,
        "the same topic, not a new one"
    );
    assert_eq!(
        finalizer_patches(&kube_calls(&calls)),
        [json!({"resourceVersion": "99", "finalizers": []})]
    );
    assert_eq!(events(&calls), ["TopicKept"]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_condition_and_a_retry() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (client, calls) = api_server(topic_routes(true));
    let ctx = context_reaching(client, format!("127.0.0.1:{port}"));
    let error = reconcile_topic(Arc::new(topic(DeletionPolicy::Retain, &[], false)), ctx)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert_eq!(error.metric_label(), "BrokerUnavailable");
    let status = status_patch(&kube_calls(&calls));
    assert_eq!(condition(&status, "Ready")["reason"], "BrokerUnavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_the_broker_refuses_waits_for_a_spec_change() {
    let (broker, _dir) = broker().await;
    let (client, calls) = api_server(topic_routes(true));
    let ctx = context_reaching(client, broker.kafka_addr.to_string());
    let mut bad = topic(DeletionPolicy::Retain, &[], false);
    bad.spec
        .config
        .insert("cleanup.policy".into(), "shred".into());
    let action = reconcile_topic(Arc::new(bad), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let status = status_patch(&kube_calls(&calls));
    assert_eq!(condition(&status, "Ready")["reason"], "InvalidConfig");
    assert_eq!(status.get("topicId"), Some(&Value::Null));
    assert_eq!(events(&calls), ["InvalidConfig"]);
    broker.shutdown().await;
}

// ---- Leader election ----

/// An API server holding one Lease, honouring resource versions like a real one (409 on a
/// stale write).
fn lease_routes(lease: Arc<Mutex<Option<Value>>>) -> Route {
    Box::new(move |call: &Call| {
        let mut stored = lease.lock().unwrap();
        let version = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap_or(0)
        };
        match call.method {
            Method::GET => match stored.as_ref() {
                Some(value) => (StatusCode::OK, value.clone()),
                None => not_found(call),
            },
            Method::POST if stored.is_none() => {
                let mut created = call.body.clone();
                created["metadata"]["resourceVersion"] = "1".into();
                *stored = Some(created.clone());
                (StatusCode::CREATED, created)
            }
            Method::PUT => {
                let current = stored.as_ref().map_or(0, version);
                if version(&call.body) != current {
                    return (
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                    );
                }
                let mut updated = call.body.clone();
                updated["metadata"]["resourceVersion"] = (current + 1).to_string().into();
                *stored = Some(updated.clone());
                (StatusCode::OK, updated)
            }
            _ => (
                StatusCode::CONFLICT,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "AlreadyExists", "code": 409, "message": "exists"}),
            ),
        }
    })
}

/// Time is paused (tokio's test clock): the waits below are the election's own timers, run
/// instantly and exactly.
#[tokio::test(start_paused = true)]
async fn one_replica_leads_and_another_takes_over_only_a_lease_left_unrenewed() {
    use fjord_operator::leader::LeaderElection;
    use std::time::Duration;
    use tokio::time::Instant;
    let lease = Arc::new(Mutex::new(None));
    let (client, calls) = api_server(lease_routes(Arc::clone(&lease)));
    let holder = || lease.lock().unwrap().as_ref().unwrap()["spec"]["holderIdentity"].clone();
    let cancel_after = |after: Duration| {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
        token
    };

    let a = LeaderElection::new(
        client.clone(),
        "ops",
        "fjord-operator-leader",
        "replica-a".into(),
    );
    assert!(a.acquire(&cancel_after(Duration::from_secs(5))).await);
    let held = lease.lock().unwrap().clone().unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "replica-a");
    assert_eq!(held["spec"]["leaseDurationSeconds"], 15);

    // a renews in the background; b, a second replica, waits a minute without getting the lease.
    let a_stop = CancellationToken::new();
    let renewing = tokio::spawn({
        let (a, stop) = (a.clone(), a_stop.clone());
        async move { a.hold(&stop).await }
    });
    let b = LeaderElection::new(
        client.clone(),
        "ops",
        "fjord-operator-leader",
        "replica-b".into(),
    );
    assert!(!b.acquire(&cancel_after(Duration::from_secs(60))).await);
    assert_eq!(holder(), "replica-a");
    let renewals = kube_calls(&calls)
        .iter()
        .filter(|c| c.method == Method::PUT)
        .count();
    assert!(renewals >= 25, "a renewed {renewals} times in a minute");

    // a stops renewing without releasing (as if killed): b takes over once it has seen the lease
    // unchanged for 15 s of its own clock, give or take its 2 s poll.
    a_stop.cancel();
    renewing.await.unwrap();
    let stopped = Instant::now();
    assert!(b.acquire(&cancel_after(Duration::from_secs(60))).await);
    let waited = stopped.elapsed();
    assert!(
        (Duration::from_secs(14)..=Duration::from_secs(17)).contains(&waited),
        "took over {waited:?} after the last renewal"
    );
    let taken = lease.lock().unwrap().clone().unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "replica-b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);

    // A clean shutdown hands the lease over at once.
    b.release().await;
    assert_eq!(
        lease.lock().unwrap().as_ref().unwrap()["spec"].get("holderIdentity"),
        None
    );
    let released = Instant::now();
    assert!(
        a.acquire(&cancel_after(Duration::from_millis(300))).await,
        "a released lease is taken without waiting it out"
    );
    assert!(released.elapsed() < Duration::from_millis(300));
    assert_eq!(holder(), "replica-a");
    assert_eq!(
        lease.lock().unwrap().as_ref().unwrap()["spec"]["leaseTransitions"],
        2
    );
    assert!(
        kube_calls(&calls).iter().all(|c| !c.forbidden),
        "every lease call is within the leader-election RBAC rules"
    );
}

/// A leader whose renewals fail gives up while at least 5 s of its lease remain, so its
/// controllers are stopped before any standby may take over.
#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_before_its_lease_can_expire() {
    use fjord_operator::leader::LeaderElection;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let lease = Arc::new(Mutex::new(None));
    let failing = Arc::new(AtomicBool::new(false));
    let inner = lease_routes(Arc::clone(&lease));
    let fail = Arc::clone(&failing);
    let (client, _) = api_server(Box::new(move |call: &Call| {
        if call.method == Method::PUT && fail.load(Ordering::SeqCst) {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "InternalError", "code": 500, "message": "etcd is unavailable"}),
            );
        }
        inner(call)
    }));
    let a = LeaderElection::new(client, "ops", "fjord-operator-leader", "replica-a".into());
    let never = CancellationToken::new();
    assert!(a.acquire(&never).await);
    failing.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    a.hold(&never).await;
    let held = started.elapsed();
    assert!(
        (Duration::from_secs(8)..=Duration::from_secs(10)).contains(&held),
        "gave up after {held:?}; the lease lasts 15 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_whose_spec_became_invalid_is_still_deleted_under_its_recorded_name() {
    let (broker, _dir) = broker().await;
    let bootstrap = broker.kafka_addr.to_string();
    let (client, calls) = api_server(topic_routes(true));
    let ctx = context_reaching(client, bootstrap.clone());
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], false)),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    let mut admin = KafkaAdmin::connect(&bootstrap, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(admin.describe_topic("orders").await.unwrap().is_some());

    // The spec is edited into something invalid: the finalizer stays.
    let mut invalid = topic(DeletionPolicy::Delete, &[FINALIZER], false);
    invalid.spec.topic_name = Some("not a topic name".into());
    invalid.status = Some(fjord_operator::crd::TopicStatus {
        topic_name: Some("orders".into()),
        ..Default::default()
    });
    calls.lock().unwrap().clear();
    assert_eq!(
        reconcile_topic(Arc::new(invalid.clone()), Arc::clone(&ctx))
            .await
            .unwrap(),
        Action::await_change()
    );
    assert!(
        finalizer_patches(&kube_calls(&calls)).is_empty(),
        "the finalizer stays"
    );

    // Deleted: the topic the status names goes with it.
    invalid.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    calls.lock().unwrap().clear();
    reconcile_topic(Arc::new(invalid), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(admin.describe_topic("orders").await.unwrap(), None);
    assert_eq!(
        finalizer_patches(&kube_calls(&calls)),
        [json!({"resourceVersion": "99", "finalizers": []})]
    );
    broker.shutdown().await;
}

/// Every write names the operator's field manager, so `managedFields` show `fjord-operator`
/// owning the status, the finalizers and the Lease, never `unknown`. (Events come from kube's
/// recorder, which sets none: the client's user agent names the operator for them.)
#[tokio::test(start_paused = true)]
async fn every_write_names_the_operators_field_manager() {
    use fjord_operator::leader::LeaderElection;
    let mut writes = Vec::new();
    let (_, calls) = reconcile_against(
        example_cluster(),
        "rev-1",
        current_stateful_sets(),
        vec![],
        healthy,
    )
    .await;
    writes.extend(kube_calls(&calls));

    let (client, calls) = api_server(topic_routes(false));
    let ctx = context(client);
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[], false)),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], true)),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    writes.extend(kube_calls(&calls));

    let (client, calls) = api_server(lease_routes(Arc::new(Mutex::new(None))));
    let election = LeaderElection::new(client, "ops", "fjord-operator-leader", "a".into());
    assert!(election.acquire(&CancellationToken::new()).await);
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        stopping.cancel();
    });
    election.hold(&stop).await;
    election.release().await;
    writes.extend(kube_calls(&calls));

    let writes: Vec<&Call> = writes
        .iter()
        .filter(|c| matches!(c.method, Method::POST | Method::PUT | Method::PATCH))
        .collect();
    for kind in ["/status", "/topics/orders", "/leases"] {
        assert!(
            writes.iter().any(|c| c.path().contains(kind)),
            "no write of {kind}"
        );
    }
    for write in writes {
        assert!(
            write.query().contains("fieldManager=fjord-operator"),
            "{} {} names no field manager",
            write.method,
            write.uri
        );
    }
}

/// A template change restarts the brokers one at a time, and each restart is an Event of its
/// own, about its pod (the Event's related object): not one Event counted three times that names
/// the first pod only.
#[tokio::test]
async fn each_restarted_pod_gets_an_event_of_its_own() {
    let pods = Arc::new(Mutex::new(
        ZONES
            .iter()
            .map(|(zone, id)| pod(zone, *id, "rev-1", true))
            .collect::<Vec<Value>>(),
    ));
    let inner = cluster_routes("rev-2", current_stateful_sets(), vec![], healthy);
    let listed = Arc::clone(&pods);
    let (client, calls) = api_server(Box::new(move |call: &Call| {
        if call.method == Method::GET && call.path().ends_with("/pods") {
            return (StatusCode::OK, list("Pod", listed.lock().unwrap().clone()));
        }
        inner(call)
    }));
    let ctx = context(client);
    for (step, (zone, id)) in ZONES.iter().enumerate() {
        reconcile_cluster(Arc::new(example_cluster()), Arc::clone(&ctx))
            .await
            .unwrap();
        // The deleted pod comes back on the new revision and Ready.
        pods.lock().unwrap()[step] = pod(zone, *id, "rev-2", true);
    }
    let recorded = calls.lock().unwrap().clone();
    let restarts: Vec<&Call> = recorded
        .iter()
        .filter(|c| c.is_event() && c.body["reason"] == "RollingRestart")
        .collect();
    assert_eq!(restarts.len(), 3, "{restarts:#?}");
    let mut pods_named = Vec::new();
    for event in restarts {
        assert_eq!(event.method, Method::POST, "a new Event, not a series");
        assert_eq!(event.body["regarding"]["kind"], "Cluster");
        assert_eq!(event.body["related"]["kind"], "Pod");
        let pod = event.body["related"]["name"].as_str().unwrap().to_owned();
        assert!(
            event.body["note"].as_str().unwrap().contains(&pod),
            "{}",
            event.body
        );
        pods_named.push(pod);
    }
    assert_eq!(
        pods_named,
        [
            "events-eu-west-1a-0",
            "events-eu-west-1b-100",
            "events-eu-west-1c-200"
        ]
    );
}

/// Quantities the API server would refuse in a StatefulSet are refused before anything is
/// applied: the user sees InvalidSpec and an Event, not a half-applied Cluster.
#[tokio::test]
async fn invalid_quantities_are_refused_before_anything_is_applied() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let mut bad_size = example_cluster();
    bad_size.spec.storage.size = Quantity("banana".into());
    let mut negative = example_cluster();
    negative.spec.storage.size = Quantity("-1Gi".into());
    let mut bad_cpu = example_cluster();
    bad_cpu.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some(BTreeMap::from([(
            "cpu".to_owned(),
            Quantity("lots".into()),
        )])),
        ..Default::default()
    });
    for (cluster, field) in [
        (bad_size, "storage.size"),
        (negative, "storage.size"),
        (bad_cpu, "resources.requests.cpu"),
    ] {
        let (action, calls) = reconcile_against(cluster, "rev-1", vec![], vec![], healthy).await;
        assert_eq!(action, Action::await_change());
        let recorded = kube_calls(&calls);
        assert_eq!(
            writes(&recorded),
            ["PATCH /apis/fjord.dev/v1alpha1/namespaces/streaming/clusters/events/status"],
            "only the status"
        );
        let status = status_patch(&recorded);
        let ready = condition(&status, "Ready");
        assert_eq!(ready["reason"], "InvalidSpec");
        assert!(
            ready["message"].as_str().unwrap().contains(field),
            "{ready}"
        );
        assert_eq!(events(&calls), ["InvalidSpec"]);
    }
}

/// A child the API server refuses: the failure is in the status and an Event (and the
/// reconcile fails, so it is retried with backoff), not only in the operator's log.
#[tokio::test]
async fn an_apply_the_api_server_refuses_reaches_the_status_and_an_event() {
    let inner = cluster_routes("rev-1", current_stateful_sets(), vec![], healthy);
    let (client, calls) = api_server(Box::new(move |call: &Call| {
        if call.method == Method::PATCH && call.body["kind"] == "StatefulSet" {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "InternalError", "code": 500,
                       "message": "quantities must match the regular expression"}),
            );
        }
        inner(call)
    }));
    let mut cluster = example_cluster();
    cluster.status = Some(fjord_operator::crd::ClusterStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "BrokersReady".into(),
            message: "3/3 brokers ready".into(),
            observed_generation: Some(2),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-06-01T00:00:00Z".parse().unwrap(),
            ),
        }],
        ..Default::default()
    });
    let error = reconcile_cluster(Arc::new(cluster), context(client))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Kube {
                verb: "applying",
                ..
            }
        ),
        "{error:?}"
    );
    let recorded = kube_calls(&calls);
    let status = status_patch(&recorded);
    assert_eq!(status["observedGeneration"], 3);
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ApplyFailed");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("StatefulSet 'events-eu-west-1a'")
            && message.contains("quantities must match the regular expression"),
        "{message}"
    );
    assert_eq!(condition(&status, "Progressing")["reason"], "ApplyFailed");
    assert_eq!(
        condition(&status, "Ready")["status"],
        "True",
        "running brokers stay Ready"
    );
    assert_eq!(events(&calls), ["ApplyFailed"]);
    let note = calls
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.is_event())
        .map(|c| c.body["note"].clone())
        .unwrap();
    assert!(
        note.as_str().unwrap().contains("quantities must match"),
        "{note}"
    );
}

/// A namespace being deleted: its Topics' finalizers are released at once, without Kafka and
/// without the namespace's Roles, which its deletion removes first. In namespaced mode those
/// Roles are all the operator had there: only the cluster-wide finalizer rules remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_releases_topic_finalizers_even_without_its_roles() {
    const ONLY_CLUSTER_WIDE: &[&[rbac::Rule]] =
        &[rbac::FINALIZER_RULES, rbac::LEADER_ELECTION_RULES];
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    for (granted, mode) in [
        (ALL_RULES, "cluster-wide"),
        (ONLY_CLUSTER_WIDE, "namespaced, Role already deleted"),
    ] {
        // The Cluster still stands and its brokers cannot be reached: outside a terminating
        // namespace this deletion would wait for them.
        let inner = topic_routes(true);
        let (client, calls) = api_server_granting(
            granted,
            Box::new(move |call: &Call| {
                if call.method == Method::GET && call.path() == "/api/v1/namespaces/streaming" {
                    return (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": "streaming",
                                            "deletionTimestamp": "2026-12-01T00:00:00Z"},
                               "status": {"phase": "Terminating"}}),
                    );
                }
                inner(call)
            }),
        );
        let action = reconcile_topic(
            Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], true)),
            context_reaching(client, unreachable.clone()),
        )
        .await
        .unwrap_or_else(|error| panic!("{mode}: {error:?}"));
        assert_eq!(action, Action::await_change(), "{mode}");
        let recorded = kube_calls(&calls);
        assert_eq!(
            finalizer_patches(&recorded),
            [json!({"resourceVersion": "99", "finalizers": []})],
            "{mode}"
        );
        assert!(
            recorded.iter().all(|c| !c.forbidden),
            "{mode}: only calls the remaining rules allow: {recorded:#?}"
        );
    }
}

/// The namespace's deletion starts while a Topic is finalized: the first call the lost Role
/// would have allowed is Forbidden, and the finalizer is released all the same.
#[tokio::test]
async fn a_forbidden_call_in_a_namespace_turning_terminating_releases_the_finalizer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&asked);
    let inner = topic_routes(true);
    const ONLY_CLUSTER_WIDE: &[&[rbac::Rule]] =
        &[rbac::FINALIZER_RULES, rbac::LEADER_ELECTION_RULES];
    let (client, calls) = api_server_granting(
        ONLY_CLUSTER_WIDE,
        Box::new(move |call: &Call| {
            if call.method == Method::GET && call.path() == "/api/v1/namespaces/streaming" {
                // Active when first asked, Terminating from then on.
                let terminating = seen.fetch_add(1, Ordering::SeqCst) > 0;
                let mut namespace = json!({"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "streaming"},
                                           "status": {"phase": "Active"}});
                if terminating {
                    namespace["status"]["phase"] = "Terminating".into();
                }
                return (StatusCode::OK, namespace);
            }
            inner(call)
        }),
    );
    reconcile_topic(
        Arc::new(topic(DeletionPolicy::Delete, &[FINALIZER], true)),
        context(client),
    )
    .await
    .unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    let recorded = kube_calls(&calls);
    assert!(
        recorded
            .iter()
            .any(|c| c.forbidden && c.path().ends_with("/topics")),
        "the list was refused"
    );
    assert_eq!(
        finalizer_patches(&recorded),
        [json!({"resourceVersion": "99", "finalizers": []})]
    );
}

/// The controllers as `fjord-operator` runs them, against the mock API server with watches: a
/// Topic being deleted whose brokers cannot be reached waits for its retry (5 s after its
/// failure); deleting its Cluster reconciles it at once, and the finalizer is released
/// (`ClusterGone`) well before that retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_releases_its_topics_at_once() {
    use fjord_operator::controller::{Scope, run};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let cluster_exists = Arc::new(AtomicBool::new(true));
    let exists = Arc::clone(&cluster_exists);
    let deleting = topic(DeletionPolicy::Delete, &[FINALIZER], true);
    let deleting_value = topic_value(&deleting);
    let cluster_value = {
        let mut cluster = serde_json::to_value(example_cluster()).unwrap();
        cluster["apiVersion"] = "fjord.dev/v1alpha1".into();
        cluster["kind"] = "Cluster".into();
        cluster
    };
    let cluster_answer = cluster_value.clone();
    let children = cluster_routes("rev-1", current_stateful_sets(), vec![], healthy);
    let (client, calls, watches) = serve(
        ALL_RULES,
        Box::new(move |call: &Call| {
            let path = call.path();
            let exists = exists.load(Ordering::SeqCst);
            match call.method {
                Method::GET if path == "/api/v1/namespaces/streaming" => (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": "streaming"}, "status": {"phase": "Active"}}),
                ),
                Method::GET if path.ends_with("/clusters") => {
                    let items = if exists {
                        vec![cluster_answer.clone()]
                    } else {
                        vec![]
                    };
                    (StatusCode::OK, list("Cluster", items))
                }
                Method::GET if path.ends_with("/clusters/events") && exists => {
                    (StatusCode::OK, cluster_answer.clone())
                }
                Method::GET if path.ends_with("/clusters/events") => not_found(call),
                Method::GET if path.ends_with("/topics") => {
                    (StatusCode::OK, list("Topic", vec![deleting_value.clone()]))
                }
                Method::PATCH if path.ends_with("/topics/orders") => {
                    (StatusCode::OK, deleting_value.clone())
                }
                _ => children(call),
            }
        }),
    );
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let ctx = context_reaching(client, unreachable);
    let shutdown = CancellationToken::new();
    let controllers = tokio::spawn(run(
        Arc::clone(&ctx),
        Scope {
            namespaces: vec!["streaming".into()],
        },
        shutdown.clone(),
    ));
    let topic_reconciled = || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.method == Method::GET && c.path().ends_with("/clusters/events"))
    };
    let released = || {
        finalizer_patches(&kube_calls(&calls))
            .iter()
            .any(|m| m["finalizers"] == json!([]))
    };
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !topic_reconciled() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the Topic was never reconciled");
    let failed = std::time::Instant::now();
    // Its reconcile failed (the brokers cannot be reached) and it waits for its retry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!released(), "released while the Cluster stands");

    cluster_exists.store(false, Ordering::SeqCst);
    let mut deleted = cluster_value.clone();
    deleted["metadata"]["resourceVersion"] = "42".into();
    let event = json!({"type": "DELETED", "object": deleted});
    assert!(send_watch_event(&watches, "/clusters", &event) > 0);
    let waited = tokio::time::timeout(Duration::from_secs(2), async {
        while !released() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the Topic's finalizer was not released within 2 s of its Cluster's deletion"
    );
    assert!(
        failed.elapsed() < Duration::from_secs(4),
        "released by the Cluster's deletion, not by the retry due 5 s after the failure"
    );
    assert!(events(&calls).iter().any(|r| r == "ClusterGone"));
    shutdown.cancel();
    controllers.abort();
}

/// The Lease lives in a namespace being deleted: the deletion removes it, and no replica can
/// create one there until the namespace is gone. The leader leads on meanwhile (so the Topic
/// finalizers holding the namespace are still released) and stops once the namespace is gone.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_lease_namespace_is_terminating_leads_on_until_it_is_gone() {
    use fjord_operator::leader::LeaderElection;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::time::Duration;
    const ACTIVE: u8 = 0;
    const TERMINATING: u8 = 1;
    const GONE: u8 = 2;
    let lease = Arc::new(Mutex::new(None));
    let phase = Arc::new(AtomicU8::new(ACTIVE));
    let inner = lease_routes(Arc::clone(&lease));
    let now = Arc::clone(&phase);
    let (client, _) = api_server(Box::new(move |call: &Call| {
        match (now.load(Ordering::SeqCst), &call.method) {
            (TERMINATING, &Method::POST) => (
                StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                       "reason": "Forbidden",
                       "message": "leases.coordination.k8s.io \"fjord-operator-leader\" is forbidden: unable to create new content in namespace ops because it is being terminated",
                       "details": {"name": "fjord-operator-leader", "group": "coordination.k8s.io",
                                   "kind": "leases", "causes": [{"reason": "NamespaceTerminating",
                                   "message": "namespace ops is being terminated",
                                   "field": "metadata.namespace"}]}}),
            ),
            (GONE, &Method::POST) => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                       "reason": "NotFound", "message": "namespaces \"ops\" not found"}),
            ),
            _ => inner(call),
        }
    }));
    let a = LeaderElection::new(client, "ops", "fjord-operator-leader", "replica-a".into());
    let never = CancellationToken::new();
    assert!(a.acquire(&never).await);
    // The namespace's deletion removes the Lease.
    *lease.lock().unwrap() = None;
    phase.store(TERMINATING, Ordering::SeqCst);
    let holding = tokio::spawn({
        let a = a.clone();
        async move { a.hold(&never).await }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        !holding.is_finished(),
        "gave up while no replica could hold a Lease in the namespace"
    );
    phase.store(GONE, Ordering::SeqCst);
    let gone = tokio::time::Instant::now();
    holding.await.unwrap();
    let held = gone.elapsed();
    assert!(
        (Duration::from_secs(5)..=Duration::from_secs(9)).contains(&held),
        "stopped {held:?} after the namespace was gone"
    );
}

/// The node-id ranges of the StatefulSets a reconcile applies, by name.
fn applied_ranges(calls: &[Call]) -> Vec<(String, i64)> {
    calls
        .iter()
        .filter(|c| c.method == Method::PATCH && c.body["kind"] == "StatefulSet")
        .map(|c| {
            (
                c.body["metadata"]["name"].as_str().unwrap().to_owned(),
                c.body["spec"]["ordinals"]["start"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A zone replaced in one edit (c renamed to d): the new zone gets a range of its own, the
/// removed zone's range is recorded in the status, and no later zone is given its ids (a broker
/// with a reused id would be taken for the removed broker, its replicas included). The removed
/// zone, added back, gets its own ids again, and so its own volumes.
#[tokio::test]
async fn node_ids_of_a_removed_zone_are_never_given_to_another_zone() {
    let zone = |name: &str| format!("events-{name}");
    // a (0), b (100), c (200) exist; the spec replaces c by d.
    let mut replaced = example_cluster();
    replaced.spec.zones[2] = "eu-west-1d".into();
    let (_, calls) = reconcile_against(
        replaced.clone(),
        "rev-1",
        current_stateful_sets(),
        vec![],
        healthy,
    )
    .await;
    let recorded = kube_calls(&calls);
    assert_eq!(
        applied_ranges(&recorded),
        [
            (zone("eu-west-1a"), 0),
            (zone("eu-west-1b"), 100),
            (zone("eu-west-1d"), 300)
        ]
    );
    let status = status_patch(&recorded);
    assert_eq!(
        status["nodeIdRanges"],
        json!({zone("eu-west-1a"): 0, zone("eu-west-1b"): 100,
               zone("eu-west-1c"): 200, zone("eu-west-1d"): 300})
    );

    // Later, with c's StatefulSet deleted, a zone e is added: not c's ids.
    let recorded_status: fjord_operator::crd::ClusterStatus =
        serde_json::from_value(status).unwrap();
    let mut grown = replaced.clone();
    grown.status = Some(recorded_status.clone());
    grown.spec.zones.push("eu-west-1e".into());
    let remaining = vec![
        stateful_set(&zone("eu-west-1a"), 0),
        stateful_set(&zone("eu-west-1b"), 100),
        stateful_set(&zone("eu-west-1d"), 300),
    ];
    let (_, calls) = reconcile_against(grown, "rev-1", remaining.clone(), vec![], healthy).await;
    let ranges = applied_ranges(&kube_calls(&calls));
    assert_eq!(ranges[3], (zone("eu-west-1e"), 400), "{ranges:?}");

    // c comes back: its own ids, so its own volumes (data-events-eu-west-1c-200).
    let mut back = replaced;
    back.status = Some(recorded_status);
    back.spec.zones.push("eu-west-1c".into());
    let (_, calls) = reconcile_against(back, "rev-1", remaining, vec![], healthy).await;
    let ranges = applied_ranges(&kube_calls(&calls));
    assert_eq!(ranges[3], (zone("eu-west-1c"), 200), "{ranges:?}");
}

/// A new Topic whose Cluster cannot be read: the reconcile adds the finalizer, then fails. Its
/// own finalizer write comes back through the watch and reconciles it again at once, which fails
/// too; that must not double the backoff: the retry still comes 5 s after the first failure, not
/// 10 s after the second. The controllers as `fjord-operator` runs them, on the paused clock.
#[tokio::test(start_paused = true)]
async fn the_operators_own_writes_do_not_double_the_retry_backoff() {
    use fjord_operator::controller::{Scope, run};
    use std::time::Duration;
    let watches: Arc<Mutex<Option<Watches>>> = Arc::default();
    let own_writes = Arc::clone(&watches);
    let fresh = topic(DeletionPolicy::Delete, &[], false);
    let fresh_value = topic_value(&fresh);
    let mut written = topic(DeletionPolicy::Delete, &[FINALIZER], false);
    written.metadata.resource_version = Some("100".into());
    let written_value = topic_value(&written);
    let children = cluster_routes("rev-1", vec![], vec![], healthy);
    let (client, calls, held) = serve(
        ALL_RULES,
        Box::new(move |call: &Call| {
            let path = call.path();
            match call.method {
                Method::GET if path.ends_with("/clusters") => {
                    (StatusCode::OK, list("Cluster", vec![]))
                }
                Method::GET if path.ends_with("/clusters/events") => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "InternalError", "code": 500, "message": "etcd is unavailable"}),
                ),
                Method::GET if path.ends_with("/topics") => {
                    (StatusCode::OK, list("Topic", vec![fresh_value.clone()]))
                }
                Method::PATCH if path.ends_with("/topics/orders") => {
                    // The write comes back through the Topic watch, as the API server sends it.
                    let watches = own_writes.lock().unwrap().clone().unwrap();
                    let event = json!({"type": "MODIFIED", "object": written_value.clone()});
                    tokio::spawn(async move {
                        while send_watch_event(&watches, "/topics", &event) == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    });
                    (StatusCode::OK, written_value.clone())
                }
                _ => children(call),
            }
        }),
    );
    *watches.lock().unwrap() = Some(held);
    let shutdown = CancellationToken::new();
    let controllers = tokio::spawn(run(
        context(client),
        Scope {
            namespaces: vec!["streaming".into()],
        },
        shutdown.clone(),
    ));
    let attempts = || {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == Method::GET && c.path().ends_with("/clusters/events"))
            .count()
    };
    let started = tokio::time::Instant::now();
    while attempts() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "no reconcile");
    }
    let second = started.elapsed();
    assert!(
        second < Duration::from_millis(500),
        "the own write reconciled it again at once ({second:?})"
    );
    // The retry: 5 s after the first failure (10 s if the second had doubled the backoff).
    tokio::time::sleep(Duration::from_millis(5500) - second).await;
    assert_eq!(attempts(), 3, "retried 5 s after the first failure");
    let finalizer_writes = finalizer_patches(&kube_calls(&calls)).len();
    assert_eq!(finalizer_writes, 1, "the finalizer is written once");
    shutdown.cancel();
    controllers.abort();
}

/// The example cluster's zone a StatefulSet as it exists with two brokers (0 and 1), the voters
/// its pods name being 0, 100 and 200; the other zones as they are.
fn grown_stateful_sets() -> Vec<Value> {
    let mut sets = current_stateful_sets();
    sets[0]["spec"]["replicas"] = 2.into();
    sets[0]["spec"]["template"] = json!({"spec": {"containers": [{"name": "broker", "env": [
        {"name": "FJORD_VOTERS", "value": "0@a:9093,100@b:9093,200@c:9093"}]}]}});
    sets
}

/// Reconciles `cluster` (the example's, one broker per zone) against zone a's StatefulSet with
/// two brokers, the pods all Ready, and `drain` answering the admin API's drain calls for
/// broker 1 (by method); every call made.
async fn scale_in_against(
    cluster: Cluster,
    drain: fn(&Method) -> (StatusCode, Value),
) -> Arc<Mutex<Vec<Call>>> {
    let mut pods: Vec<Value> = ZONES
        .iter()
        .map(|(zone, id)| pod(zone, *id, "rev-1", true))
        .collect();
    pods.push(pod("eu-west-1a", 1, "rev-1", true));
    let inner = cluster_routes("rev-1", grown_stateful_sets(), pods, healthy);
    let (client, calls) = api_server(Box::new(move |call: &Call| {
        if call.path().ends_with("/proxy/v1/brokers/1/drain") {
            return drain(&call.method);
        }
        inner(call)
    }));
    reconcile_cluster(Arc::new(cluster), context(client))
        .await
        .unwrap();
    calls
}

/// The replicas zone a's StatefulSet was applied with.
fn applied_replicas(calls: &[Call]) -> Value {
    calls
        .iter()
        .find(|c| {
            c.method == Method::PATCH && c.path().ends_with("/statefulsets/events-eu-west-1a")
        })
        .expect("zone a's StatefulSet applied")
        .body["spec"]["replicas"]
        .clone()
}

/// Scale-in, broker 1 leaving (`brokersPerZone` back to 1) while its drain runs: the drain is
/// asked for through a broker that stays, the StatefulSet keeps both brokers, and the Cluster
/// says how far the drain has come. Nothing is deleted.
#[tokio::test]
async fn a_scale_in_drains_the_leaving_broker_before_the_statefulset_shrinks() {
    fn draining(method: &Method) -> (StatusCode, Value) {
        let status = if *method == Method::POST {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        (
            status,
            json!({"broker": 1, "state": "draining", "replicas_left": 5, "moving": 3}),
        )
    }
    let calls = kube_calls(&scale_in_against(example_cluster(), draining).await);
    assert_eq!(
        applied_replicas(&calls),
        2,
        "the StatefulSet keeps broker 1"
    );
    let drains: Vec<String> = calls
        .iter()
        .filter(|c| c.path().contains("/drain"))
        .map(|c| format!("{} {}", c.method, c.path()))
        .collect();
    assert_eq!(
        drains,
        [
            "GET /api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/brokers/1/drain",
            "POST /api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/brokers/1/drain",
        ]
    );
    assert!(
        !calls.iter().any(|c| c.method == Method::DELETE),
        "nothing removed"
    );
    let status = status_patch(&calls);
    let progressing = condition(&status, "Progressing");
    assert_eq!(progressing["reason"], "DrainingBrokers");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains("broker 1: 5 partitions left, 3 moving"),
        "{progressing}"
    );
}

/// Once broker 1 is drained, the StatefulSet shrinks and, with `storage.deleteClaim`, its
/// volume claim is deleted; the Cluster gets an Event for the removed broker.
#[tokio::test]
async fn a_drained_broker_is_removed_and_its_claim_deleted() {
    fn drained(_: &Method) -> (StatusCode, Value) {
        (
            StatusCode::OK,
            json!({"broker": 1, "state": "drained", "replicas_left": 0, "moving": 0}),
        )
    }
    let mut cluster = example_cluster();
    cluster.spec.storage.delete_claim = true;
    let recorded = scale_in_against(cluster, drained).await;
    let calls = kube_calls(&recorded);
    assert_eq!(applied_replicas(&calls), 1, "broker 1 goes");
    assert!(
        !calls
            .iter()
            .any(|c| c.method == Method::POST && c.path().contains("/drain")),
        "a drained broker is not asked again"
    );
    let deleted: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(Call::path)
        .collect();
    assert_eq!(
        deleted,
        ["/api/v1/namespaces/streaming/persistentvolumeclaims/data-events-eu-west-1a-1"]
    );
    assert!(events(&recorded).contains(&"BrokerRemoved".to_owned()));
}

/// A drain the brokers refuse (409: a partition could not keep its replicas on distinct zones)
/// stops the scale-in: the StatefulSet keeps both brokers, nothing is deleted, and the Cluster
/// and a Warning Event say why. The default keeps claims.
#[tokio::test]
async fn a_refused_drain_removes_nothing_and_says_why() {
    fn refusing(method: &Method) -> (StatusCode, Value) {
        if *method == Method::POST {
            (
                StatusCode::CONFLICT,
                json!({"code": 409, "message": "the drain of broker 1 is refused, nothing changed: partition orders-0 (replicas [1, 100, 200]) cannot keep 3 replicas on distinct racks"}),
            )
        } else {
            (
                StatusCode::OK,
                json!({"broker": 1, "state": "active", "replicas_left": 4, "moving": 0}),
            )
        }
    }
    let calls = kube_calls(&scale_in_against(example_cluster(), refusing).await);
    assert_eq!(applied_replicas(&calls), 2);
    assert!(!calls.iter().any(|c| c.method == Method::DELETE));
    let status = status_patch(&calls);
    let progressing = condition(&status, "Progressing");
    assert_eq!(progressing["reason"], "ScaleInRefused");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains("orders-0 (replicas [1, 100, 200]) cannot keep 3 replicas on distinct racks"),
        "{progressing}"
    );
}

/// A broker the spec keeps but the brokers report draining (a scale-in reverted before it
/// shrank anything) has its drain ended, with an Event.
#[tokio::test]
async fn a_drain_of_a_broker_the_spec_keeps_is_ended() {
    fn reverted(_: &str) -> Value {
        json!({"under_replicated_partitions": 0, "caught_up": true, "brokers": [
            {"id": 0, "host": "h", "port": 9092, "fenced": false, "shut_down": false, "state": "active"},
            {"id": 100, "host": "h", "port": 9092, "fenced": false, "shut_down": false, "state": "draining",
             "replicas": 4}]})
    }
    let pods = ZONES
        .iter()
        .map(|(zone, id)| pod(zone, *id, "rev-1", true))
        .collect();
    let (_, calls) = reconcile_against(
        example_cluster(),
        "rev-1",
        current_stateful_sets(),
        pods,
        reverted,
    )
    .await;
    let ended: Vec<String> = kube_calls(&calls)
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(|c| c.path().to_owned())
        .collect();
    assert_eq!(
        ended,
        ["/api/v1/namespaces/streaming/pods/events-eu-west-1a-0:9644/proxy/v1/brokers/100/drain"]
    );
    assert!(events(&calls).contains(&"DrainEnded".to_owned()));
}

/// A User `orders-app` of Cluster `events` in `streaming`: SCRAM-SHA-512, allowed to write
/// and read `orders` and to read with groups prefixed `orders-`.
fn user(finalizers: &[&str], deleting: bool) -> fjord_operator::crd::User {
    let mut user: fjord_operator::crd::User = serde_yaml::from_str(
        r#"
apiVersion: fjord.dev/v1alpha1
kind: User
metadata:
  name: orders-app
  namespace: streaming
  generation: 1
  resourceVersion: "41"
  uid: 70b1c000-0000-4000-8000-0000000000a1
spec:
  cluster: events
  authentication:
    type: scram-sha-512
  acls:
    - resource: {type: topic, name: orders}
      operations: [Write, Read]
    - resource: {type: group, name: orders-, patternType: prefix}
      operations: [Read]
"#,
    )
    .unwrap();
    user.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
    if deleting {
        user.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
    }
    user
}

/// The User scenarios' API server: Cluster `events` exists; the User's Secret is `secret`
/// (absent when `None`); a created Secret is echoed with resource version 7; patches echo the
/// User.
fn user_routes(secret: Option<Value>) -> Route {
    Box::new(move |call: &Call| {
        let path = call.path();
        match call.method {
            Method::GET if path.ends_with("/clusters/events") => {
                let mut cluster = serde_json::to_value(example_cluster()).unwrap();
                cluster["apiVersion"] = "fjord.dev/v1alpha1".into();
                cluster["kind"] = "Cluster".into();
                (StatusCode::OK, cluster)
            }
            Method::GET if path == "/api/v1/namespaces/streaming/secrets/orders-app" => {
                match &secret {
                    Some(secret) => (StatusCode::OK, secret.clone()),
                    None => not_found(call),
                }
            }
            Method::GET if path == "/api/v1/namespaces/streaming" => not_found(call),
            Method::POST if path == "/api/v1/namespaces/streaming/secrets" => {
                let mut created = call.body.clone();
                created["metadata"]["resourceVersion"] = "7".into();
                (StatusCode::CREATED, created)
            }
            Method::PATCH => {
                let mut object = serde_json::to_value(user(&[], false)).unwrap();
                object["apiVersion"] = "fjord.dev/v1alpha1".into();
                object["kind"] = "User".into();
                (StatusCode::OK, object)
            }
            _ => not_found(call),
        }
    })
}

/// A broker that authorises requests by ACLs, the operator's (unauthenticated) connection a
/// super user.
async fn broker_with_acls() -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path().to_path_buf());
    config.security.authorizer = Some(fjord_broker::security::AuthorizerKind::Acl);
    config.security.super_users = vec!["User:ANONYMOUS".to_owned()];
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    (broker, dir)
}

/// The ACL bindings the brokers hold for `principal`, as `type:name:pattern:operation`.
async fn acls_on(admin: &mut KafkaAdmin, principal: &str) -> Vec<String> {
    admin
        .acls_of(principal)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}:{}:{}",
                e.resource_type, e.resource_name, e.pattern_type, e.operation, e.permission
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_user_gets_a_secret_a_credential_and_its_acls_and_deletion_removes_them() {
    use fjord_broker::security::scram::ScramMechanism;
    use fjord_operator::user::reconcile::{FINALIZER, reconcile_user};
    let (broker, _dir) = broker_with_acls().await;
    let bootstrap = broker.kafka_addr.to_string();
    let (client, calls) = api_server(user_routes(None));
    let ctx = context_reaching(client, bootstrap.clone());

    let action = reconcile_user(Arc::new(user(&[], false)), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
    let recorded = kube_calls(&calls);
    // The finalizer first, guarded by the resource version.
    assert_eq!(
        finalizer_patches(&recorded),
        [json!({"resourceVersion": "41", "finalizers": [FINALIZER]})]
    );
    // The Secret, owned by the User, with a generated password.
    let created = recorded
        .iter()
        .find(|c| c.method == Method::POST && c.path().ends_with("/secrets"))
        .expect("the Secret created");
    let secret = &created.body;
    assert_eq!(secret["metadata"]["name"], "orders-app");
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "User");
    assert_eq!(owner["uid"], "70b1c000-0000-4000-8000-0000000000a1");
    assert_eq!(owner["controller"], true);
    let decode = |key: &str| {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"][key].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("username"), "orders-app");
    let password = decode("password");
    assert!(password.len() >= 32, "{password}");
    assert!(decode("sasl.jaas.config").contains(&format!("password=\"{password}\"")));
    // The cluster holds a credential that the Secret's password passes, and exactly the ACLs.
    let credential = broker
        .broker
        .image()
        .scram_credential("orders-app", ScramMechanism::Sha512)
        .cloned()
        .expect("a SCRAM-SHA-512 credential");
    assert!(credential.verifies(ScramMechanism::Sha512, password.as_bytes()));
    assert!(!credential.verifies(ScramMechanism::Sha512, b"another password"));
    let mut admin = KafkaAdmin::connect(&bootstrap, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    // TOPIC 2, GROUP 3; LITERAL 3, PREFIXED 4; READ 3, WRITE 4; ALLOW 3.
    assert_eq!(
        acls_on(&mut admin, "User:orders-app").await,
        ["2:orders:3:3:3", "2:orders:3:4:3", "3:orders-:4:3:3"]
    );
    let status = status_patch(&recorded);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(status["principal"], "User:orders-app");
    assert_eq!(status["secret"], "orders-app");
    assert_eq!(status["acls"], 3);
    assert_eq!(status["credentialSecretVersion"], "7");
    assert_eq!(
        events(&calls),
        ["SecretCreated", "CredentialSet", "AclsUpdated"]
    );

    // An ACL added behind the operator's back goes; the credential stays as set.
    admin
        .create_acls(&[fjord_operator::kafka::AclEntry {
            resource_type: 2,
            resource_name: "payments".into(),
            pattern_type: 3,
            principal: "User:orders-app".into(),
            host: "*".into(),
            operation: 2,
            permission: 3,
        }])
        .await
        .unwrap();
    let mut synced = user(&[FINALIZER], false);
    synced.status = Some(serde_json::from_value(status.clone()).unwrap());
    let mut existing = secret.clone();
    existing["metadata"]["resourceVersion"] = "7".into();
    let (client, calls) = api_server(user_routes(Some(existing)));
    let ctx = context_reaching(client, bootstrap.clone());
    reconcile_user(Arc::new(synced.clone()), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(
        acls_on(&mut admin, "User:orders-app").await,
        ["2:orders:3:3:3", "2:orders:3:4:3", "3:orders-:4:3:3"]
    );
    assert_eq!(events(&calls), ["AclsUpdated"], "no new credential");
    assert!(finalizer_patches(&kube_calls(&calls)).is_empty());

    // Deleted: its ACLs and its credential leave the cluster, then the finalizer goes.
    let mut deleting = synced;
    deleting.metadata.deletion_timestamp = user(&[], true).metadata.deletion_timestamp;
    calls.lock().unwrap().clear();
    reconcile_user(Arc::new(deleting), Arc::clone(&ctx))
        .await
        .unwrap();
    assert!(acls_on(&mut admin, "User:orders-app").await.is_empty());
    assert!(!admin.has_scram_credential("orders-app").await.unwrap());
    assert_eq!(
        finalizer_patches(&kube_calls(&calls)),
        [json!({"resourceVersion": "41", "finalizers": []})]
    );
    assert_eq!(events(&calls), ["UserRemoved"]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_user_gets_acls_for_its_token_principal_and_no_secret() {
    use fjord_operator::user::reconcile::{FINALIZER, reconcile_user};
    let (broker, _dir) = broker_with_acls().await;
    let bootstrap = broker.kafka_addr.to_string();
    let (client, calls) = api_server(user_routes(None));
    let ctx = context_reaching(client, bootstrap.clone());
    let mut account = user(&[FINALIZER], false);
    account.spec.authentication = serde_json::from_value(
        json!({"type": "serviceAccount", "serviceAccount": "orders-writer"}),
    )
    .unwrap();
    reconcile_user(Arc::new(account), Arc::clone(&ctx))
        .await
        .unwrap();
    let recorded = kube_calls(&calls);
    assert!(
        recorded.iter().all(|c| !c.path().contains("/secrets")),
        "no Secret read or written"
    );
    let principal = "User:system:serviceaccount:streaming:orders-writer";
    let mut admin = KafkaAdmin::connect(&bootstrap, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(acls_on(&mut admin, principal).await.len(), 3);
    assert!(!admin.has_scram_credential("orders-app").await.unwrap());
    let status = status_patch(&recorded);
    assert_eq!(status["principal"], principal);
    assert_eq!(status["secret"], Value::Null);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_on_a_broker_without_an_authorizer_are_a_condition_not_a_retry() {
    use fjord_operator::user::reconcile::{FINALIZER, reconcile_user};
    let (broker, _dir) = broker().await;
    let (client, calls) = api_server(user_routes(None));
    let ctx = context_reaching(client, broker.kafka_addr.to_string());
    let action = reconcile_user(Arc::new(user(&[FINALIZER], false)), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let status = status_patch(&kube_calls(&calls));
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "SecurityDisabled");
    // Its deletion is not held up: there are no ACLs to remove.
    calls.lock().unwrap().clear();
    reconcile_user(Arc::new(user(&[FINALIZER], true)), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(
        finalizer_patches(&kube_calls(&calls)),
        [json!({"resourceVersion": "41", "finalizers": []})]
    );
    broker.shutdown().await;
}

/// A Cluster with TLS from a Secret, SCRAM-SHA-512 logins and ACLs: the operator makes its own
/// credentials Secret (before any StatefulSet, so the first brokers seed the cluster with it),
/// and the StatefulSets mount both Secrets and run the brokers with the matching flags.
#[tokio::test]
async fn a_secured_cluster_gets_the_operators_credentials_before_its_brokers() {
    use base64::Engine;
    let mut cluster = example_cluster();
    cluster.spec.listeners = serde_json::from_value(json!({
        "tls": {"secretName": "events-tls"},
        "authentication": {"type": "scram-sha-512"},
    }))
    .unwrap();
    cluster.spec.authorization = Some(
        serde_json::from_value(json!({"type": "acl", "superUsers": ["User:CN=ops,O=Fjord"]}))
            .unwrap(),
    );
    let pods = ZONES
        .iter()
        .map(|(zone, id)| pod(zone, *id, "rev-1", true))
        .collect();
    let (_, calls) =
        reconcile_against(cluster, "rev-1", current_stateful_sets(), pods, healthy).await;
    let calls = kube_calls(&calls);
    let created = calls
        .iter()
        .position(|c| c.method == Method::POST && c.path().ends_with("/secrets"))
        .expect("the operator's credentials created");
    let first_stateful_set = calls
        .iter()
        .position(|c| c.method == Method::PATCH && c.body["kind"] == "StatefulSet")
        .expect("StatefulSets applied");
    assert!(created < first_stateful_set, "credentials before brokers");
    let secret = &calls[created].body;
    assert_eq!(secret["metadata"]["name"], "events-operator-credentials");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "Cluster");
    let value = |key: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"][key].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let password = value("password");
    assert!(password.len() >= 32);
    assert_eq!(
        value("initial"),
        format!("SCRAM-SHA-512 fjord-operator {password}\n")
    );
    let stateful_set = &calls[first_stateful_set].body;
    let template = &stateful_set["spec"]["template"]["spec"];
    let env: BTreeMap<String, String> = template["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(env["FJORD_TLS_CERT"], "/etc/fjord/tls/tls.crt");
    assert_eq!(env["FJORD_CLUSTER_TLS_CA"], "/etc/fjord/tls/ca.crt");
    assert_eq!(env["FJORD_SASL_MECHANISMS"], "SCRAM-SHA-512");
    assert_eq!(
        env["FJORD_INITIAL_SCRAM_CREDENTIALS"],
        "/etc/fjord/credentials/initial"
    );
    assert_eq!(env["FJORD_AUTHORIZER"], "acl");
    assert_eq!(
        env["FJORD_SUPER_USERS"],
        "User:fjord-operator;User:CN=ops,O=Fjord"
    );
    let secrets: Vec<&str> = template["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(secrets, ["events-tls", "events-operator-credentials"]);

    // Already there (made by an earlier reconcile): kept as it is.
    let mut cluster = example_cluster();
    cluster.spec.listeners =
        serde_json::from_value(json!({"authentication": {"type": "scram-sha-512"}})).unwrap();
    let (client, calls) = api_server(Box::new(|call: &Call| {
        if call.method == Method::GET
            && call
                .path()
                .ends_with("/secrets/events-operator-credentials")
        {
            return (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "events-operator-credentials"}, "data": {}}),
            );
        }
        cluster_routes("rev-1", current_stateful_sets(), Vec::new(), healthy)(call)
    }));
    let _ = reconcile_cluster(Arc::new(cluster), context(client)).await;
    let calls = kube_calls(&calls);
    assert!(
        calls.iter().any(|c| c.method == Method::GET
            && c.path().ends_with("/secrets/events-operator-credentials")),
        "the Secret was looked for"
    );
    assert!(
        calls
            .iter()
            .all(|c| !(c.method == Method::POST && c.path().ends_with("/secrets"))),
        "an existing credentials Secret is never replaced"
    );
    assert!(
        calls.iter().any(|c| c.body["kind"] == "StatefulSet"),
        "the brokers applied after it"
    );
}

/// A Cluster whose clients may also log in with service-account tokens: before its brokers, the
/// operator reads the API server's issuer and token-signing keys and applies them as ConfigMap
/// `events-service-account-keys`; the StatefulSets offer OAUTHBEARER beside SCRAM-SHA-512, read
/// the key set from that ConfigMap and the issuer through it, and expect the audience. A token
/// the API server signed (a key set and token made with another implementation) passes the
/// brokers' check against what the ConfigMap holds. Without the operator's access to the
/// issuer, no StatefulSet is applied and the reconcile is retried.
#[tokio::test]
async fn service_account_logins_get_the_api_servers_keys_before_the_brokers() {
    use fjord_broker::security::oauth::{Expectations, Jwks, validate};
    const JWKS: &str = include_str!("../../broker/src/security/testdata/rs256.jwks.json");
    const TOKEN: &str = include_str!("../../broker/src/security/testdata/rs256.token");
    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    let mut cluster = example_cluster();
    cluster.spec.listeners = serde_json::from_value(json!({
        "tls": {"secretName": "events-tls"},
        "authentication": {"type": "scram-sha-512", "serviceAccounts": {"audience": "fjord"}},
    }))
    .unwrap();
    cluster.spec.authorization = Some(serde_json::from_value(json!({"type": "acl"})).unwrap());
    let routes = || -> Route {
        Box::new(|call: &Call| match call.path() {
            "/.well-known/openid-configuration" => (
                StatusCode::OK,
                json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}/openid/v1/jwks")}),
            ),
            "/openid/v1/jwks" => (StatusCode::OK, serde_json::from_str(JWKS).unwrap()),
            // No keys published yet.
            path if call.method == Method::GET && path.ends_with("/configmaps") => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": []}),
            ),
            _ => cluster_routes("rev-1", current_stateful_sets(), Vec::new(), healthy)(call),
        })
    };
    let (client, calls) = api_server(routes());
    let _ = reconcile_cluster(Arc::new(cluster.clone()), context(client)).await;
    let calls = kube_calls(&calls);
    let keys = calls
        .iter()
        .position(|c| {
            c.method == Method::PATCH && c.path().ends_with("/events-service-account-keys")
        })
        .expect("the keys ConfigMap applied");
    let first_stateful_set = calls
        .iter()
        .position(|c| c.method == Method::PATCH && c.body["kind"] == "StatefulSet")
        .expect("StatefulSets applied");
    assert!(keys < first_stateful_set, "the keys before the brokers");
    let data = &calls[keys].body["data"];
    assert_eq!(data["issuer"], ISSUER);
    let published = Jwks::parse(data["jwks.json"].as_str().unwrap().as_bytes()).unwrap();
    let expected = Expectations {
        issuer: data["issuer"].as_str().unwrap().to_owned(),
        audience: "fjord".to_owned(),
    };
    let validated = validate(TOKEN.trim(), &published, &expected, 1_796_000_060).unwrap();
    assert_eq!(validated.subject, "system:serviceaccount:payments:writer");

    let template = &calls[first_stateful_set].body["spec"]["template"]["spec"];
    let env = template["containers"][0]["env"].as_array().unwrap();
    let named = |name: &str| env.iter().find(|e| e["name"] == name).cloned().unwrap();
    assert_eq!(
        named("FJORD_SASL_MECHANISMS")["value"],
        "SCRAM-SHA-512,OAUTHBEARER"
    );
    assert_eq!(
        named("FJORD_OAUTH_JWKS_FILE")["value"],
        "/etc/fjord/service-account-keys/jwks.json"
    );
    assert_eq!(named("FJORD_OAUTH_AUDIENCE")["value"], "fjord");
    assert_eq!(
        named("FJORD_OAUTH_ISSUER")["valueFrom"]["configMapKeyRef"],
        json!({"name": "events-service-account-keys", "key": "issuer"})
    );
    let volume = template["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "service-account-keys")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "events-service-account-keys");

    // The issuer's URLs not granted (the namespaced Role alone), and no keys published yet:
    // nothing applied, a retry.
    let (client, calls) =
        api_server_granting(&[rbac::RULES, rbac::LEADER_ELECTION_RULES], routes());
    let error = reconcile_cluster(Arc::new(cluster.clone()), context(client))
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "IssuerDiscoveryFailed", "{error}");
    assert!(error.is_transient());
    assert!(
        kube_calls(&calls)
            .iter()
            .all(|c| c.body["kind"] != "StatefulSet"),
        "no broker applied without the keys"
    );

    // With keys published before, the brokers keep them: a Warning, and the reconcile goes on.
    let (client, calls) = api_server_granting(
        &[rbac::RULES, rbac::LEADER_ELECTION_RULES],
        Box::new(move |call: &Call| {
            if call.method == Method::GET && call.path().ends_with("/configmaps") {
                return (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {},
                        "items": [{"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "events-service-account-keys"}}]}),
                );
            }
            routes()(call)
        }),
    );
    let _ = reconcile_cluster(Arc::new(cluster), context(client)).await;
    assert!(
        kube_calls(&calls)
            .iter()
            .any(|c| c.body["kind"] == "StatefulSet"),
        "the brokers applied with the keys they have"
    );
    assert!(events(&calls).contains(&"IssuerDiscoveryFailed".to_owned()));
}

/// On a secured Cluster the User controller reaches the brokers as the operator does: over TLS
/// trusting the listener Secret's CA, logged in with its own credential from its credentials
/// Secret. A User's credential and ACLs are set there; without the credentials Secret, nothing
/// is sent and the reason is a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_secured_cluster_are_managed_over_tls_and_scram() {
    use base64::Engine;
    use fjord_broker::security::scram::ScramMechanism;
    use fjord_operator::user::reconcile::{FINALIZER, reconcile_user};
    let dir = tempfile::tempdir().unwrap();
    let password = "operator-password".to_owned();
    let (broker, ca) = support::secured_broker(dir.path(), &password).await;
    let b64 = |value: &str| base64::engine::general_purpose::STANDARD.encode(value);
    let mut cluster = serde_json::to_value(example_cluster()).unwrap();
    cluster["apiVersion"] = "fjord.dev/v1alpha1".into();
    cluster["kind"] = "Cluster".into();
    cluster["spec"]["listeners"]["tls"] = json!({"secretName": "events-tls"});
    cluster["spec"]["listeners"]["authentication"] = json!({"type": "scram-sha-512"});
    let routes = |with_credentials: bool| -> Route {
        let cluster = cluster.clone();
        let tls = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "events-tls", "namespace": "streaming"},
            "data": {"ca.crt": b64(&ca)}});
        let credentials = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "events-operator-credentials", "namespace": "streaming"},
            "data": {"password": b64(&password)}});
        let users = user_routes(None);
        Box::new(move |call: &Call| {
            let path = call.path();
            match call.method {
                Method::GET if path.ends_with("/clusters/events") => {
                    (StatusCode::OK, cluster.clone())
                }
                Method::GET if path.ends_with("/secrets/events-tls") => {
                    (StatusCode::OK, tls.clone())
                }
                Method::GET
                    if path.ends_with("/secrets/events-operator-credentials")
                        && with_credentials =>
                {
                    (StatusCode::OK, credentials.clone())
                }
                _ => users(call),
            }
        })
    };

    let (client, calls) = api_server(routes(false));
    let ctx = context_reaching(client, broker.kafka_addr.to_string());
    let error = reconcile_user(Arc::new(user(&[FINALIZER], false)), Arc::clone(&ctx))
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "SecretNotReady", "{error}");
    assert!(
        broker
            .broker
            .image()
            .scram_credential("orders-app", ScramMechanism::Sha512)
            .is_none()
    );
    drop(calls);

    let (client, calls) = api_server(routes(true));
    let ctx = context_reaching(client, broker.kafka_addr.to_string());
    reconcile_user(Arc::new(user(&[FINALIZER], false)), Arc::clone(&ctx))
        .await
        .unwrap();
    let status = status_patch(&kube_calls(&calls));
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    let image = broker.broker.image();
    assert!(
        image
            .scram_credential("orders-app", ScramMechanism::Sha512)
            .is_some()
    );
    let principals: Vec<&str> = image.acls.iter().map(|b| b.principal.as_str()).collect();
    assert_eq!(principals, ["User:orders-app"; 3]);
    broker.shutdown().await;
}

/// A User with `authentication.type: tls` on a Cluster with `listeners.clientCertificates`:
/// the operator issues its certificate from the clients CA into Secret `orders-app` (owned by
/// the User, with the brokers' `ca.crt`) and sets its ACLs for `User:CN=orders-app`. A client
/// presenting that certificate on the brokers' certificate listener is that principal: it may
/// describe `orders`, not `payments`. A reconcile with the Secret in place issues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_user_gets_a_certificate_the_brokers_take_and_its_acls() {
    use base64::Engine;
    use fjord_operator::cluster::certificates::new_ca;
    use fjord_operator::kafka::AdminSecurity;
    use fjord_operator::user::reconcile::{FINALIZER, reconcile_user};
    let dir = tempfile::tempdir().unwrap();
    let password = "operator-password".to_owned();
    let (clients_ca, clients_key) = new_ca("Fjord clients CA streaming/events").unwrap();
    let (broker, ca) = support::secured_broker_with(dir.path(), &password, Some(&clients_ca)).await;
    let b64 = |value: &str| base64::engine::general_purpose::STANDARD.encode(value);
    let decode = |value: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap()
    };
    let timeout = std::time::Duration::from_secs(5);
    let operator = AdminSecurity {
        tls: Some(AdminSecurity::tls_config(ca.as_bytes(), None).unwrap()),
        scram_sha_512: Some(("fjord-operator".to_owned(), password.clone())),
    };
    let bootstrap = broker.kafka_addr.to_string();
    let mut admin = KafkaAdmin::connect_with(&bootstrap, timeout, operator)
        .await
        .unwrap();
    for topic in ["orders", "payments"] {
        admin
            .create_topic(topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
    }

    let mut cluster = serde_json::to_value(example_cluster()).unwrap();
    cluster["apiVersion"] = "fjord.dev/v1alpha1".into();
    cluster["kind"] = "Cluster".into();
    cluster["spec"]["listeners"]["tls"] = json!({"secretName": "events-tls"});
    cluster["spec"]["listeners"]["authentication"] = json!({"type": "scram-sha-512"});
    cluster["spec"]["listeners"]["clientCertificates"] = json!({"port": 9094});
    let secret = |name: &str, data: Value| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "streaming"}, "data": data})
    };
    let fixed = [
        secret("events-tls", json!({"ca.crt": b64(&ca)})),
        secret(
            "events-operator-credentials",
            json!({"password": b64(&password)}),
        ),
        secret(
            "events-clients-ca",
            json!({"ca.crt": b64(&clients_ca), "ca.key": b64(&clients_key)}),
        ),
    ];
    let issued: Arc<Mutex<Option<Value>>> = Arc::default();
    let routes = {
        let issued = Arc::clone(&issued);
        let users = user_routes(None);
        Box::new(move |call: &Call| {
            let path = call.path();
            if call.method == Method::GET && path.ends_with("/clusters/events") {
                return (StatusCode::OK, cluster.clone());
            }
            if call.method == Method::GET {
                let named = fixed.iter().find(|s| {
                    path.ends_with(&format!(
                        "/secrets/{}",
                        s["metadata"]["name"].as_str().unwrap()
                    ))
                });
                if let Some(found) = named {
                    return (StatusCode::OK, found.clone());
                }
                let created = issued.lock().unwrap().clone();
                if let (true, Some(created)) = (path.ends_with("/secrets/orders-app"), created) {
                    return (StatusCode::OK, created);
                }
            }
            let answer = users(call);
            if call.method == Method::POST && path.ends_with("/secrets") {
                *issued.lock().unwrap() = Some(answer.1.clone());
            }
            answer
        }) as Route
    };
    let (client, calls) = api_server(routes);
    let ctx = context_reaching(client, bootstrap.clone());
    let mut tls_user = user(&[FINALIZER], false);
    tls_user.spec.authentication = serde_json::from_value(json!({"type": "tls"})).unwrap();
    reconcile_user(Arc::new(tls_user.clone()), Arc::clone(&ctx))
        .await
        .unwrap();
    let recorded = kube_calls(&calls);
    let status = status_patch(&recorded);
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    assert_eq!(status["principal"], "User:CN=orders-app");
    assert_eq!(status["secret"], "orders-app");
    assert_eq!(events(&calls), ["CertificateIssued", "AclsUpdated"]);
    let created = issued.lock().unwrap().clone().expect("a Secret created");
    assert_eq!(created["type"], "kubernetes.io/tls");
    assert_eq!(created["metadata"]["ownerReferences"][0]["kind"], "User");
    assert_eq!(decode(&created["data"]["ca.crt"]), ca.as_bytes());
    let cert = decode(&created["data"]["tls.crt"]);
    let key = decode(&created["data"]["tls.key"]);
    let principals: Vec<String> = broker
        .broker
        .image()
        .acls
        .iter()
        .map(|b| b.principal.clone())
        .collect();
    assert_eq!(principals, ["User:CN=orders-app"; 3]);

    // The certificate on the brokers' certificate listener.
    let certificates = broker.listener_addrs["CLIENT_CERTS"].to_string();
    let presenting = AdminSecurity {
        tls: Some(AdminSecurity::tls_config(ca.as_bytes(), Some((&cert, &key))).unwrap()),
        scram_sha_512: None,
    };
    let mut as_user = KafkaAdmin::connect_with(&certificates, timeout, presenting)
        .await
        .unwrap();
    let orders = as_user.describe_topic("orders").await.unwrap();
    assert_eq!(orders.map(|t| t.partitions), Some(1));
    let payments = as_user.describe_topic("payments").await.unwrap_err();
    assert!(
        payments.to_string().contains("TOPIC_AUTHORIZATION_FAILED"),
        "{payments}"
    );

    // In place and current: nothing issued again.
    calls.lock().unwrap().clear();
    reconcile_user(Arc::new(tls_user), Arc::clone(&ctx))
        .await
        .unwrap();
    let writes: Vec<String> = kube_calls(&calls)
        .iter()
        .filter(|c| c.path().contains("/secrets") && c.method != Method::GET)
        .map(|c| format!("{} {}", c.method, c.path()))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    broker.shutdown().await;
}

/// The routes of the certificate scenarios: Secrets kept in `secrets` (created, read, replaced
/// as the API server would), the rest as for the example Cluster.
fn secret_store(secrets: Arc<Mutex<BTreeMap<String, Value>>>) -> Route {
    let inner = cluster_routes("rev-1", current_stateful_sets(), Vec::new(), healthy);
    Box::new(move |call: &Call| {
        let path = call.path();
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        match call.method {
            Method::GET if path.contains("/secrets/") => match secrets.lock().unwrap().get(&name) {
                Some(secret) => (StatusCode::OK, secret.clone()),
                None => not_found(call),
            },
            Method::POST if path.ends_with("/secrets") => {
                let mut secret = call.body.clone();
                secret["metadata"]["resourceVersion"] = "1".into();
                let name = secret["metadata"]["name"].as_str().unwrap().to_owned();
                secrets.lock().unwrap().insert(name, secret.clone());
                (StatusCode::CREATED, secret)
            }
            Method::PUT if path.contains("/secrets/") => {
                let mut secret = call.body.clone();
                secret["metadata"]["resourceVersion"] = "2".into();
                secrets.lock().unwrap().insert(name, secret.clone());
                (StatusCode::OK, secret)
            }
            _ => inner(call),
        }
    })
}

/// A CA near the end of its ten years (made nine and a half years ago, as an earlier operator
/// kept it: `ca.crt` and `ca.key` alone): the operator makes a next CA and trusts it beside
/// the old one, the brokers' certificate still signed by the old CA but naming both; a week
/// later the next CA signs the brokers' certificate, the old one still trusted. At no step is
/// a certificate in use signed by a CA the others do not trust.
#[tokio::test]
async fn the_operators_ca_is_renewed_before_its_end_trusted_before_it_signs() {
    use base64::Engine;
    use fjord_operator::cluster::certificates::new_ca_at;
    let b64 = |value: &str| base64::engine::general_purpose::STANDARD.encode(value);
    let decode = |value: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let parse = |pem: &str| {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    };
    let signed_by = |leaf: &str, ca: &str| {
        let leaf = parse(leaf);
        let ca = parse(ca);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    };
    let now = time::OffsetDateTime::now_utc();
    let (old_cert, old_key) = new_ca_at(
        "Fjord CA streaming/events",
        now - time::Duration::days(9 * 365 + 180),
    )
    .unwrap();
    let secrets: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    secrets.lock().unwrap().insert(
        "events-ca".into(),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "events-ca", "namespace": "streaming", "resourceVersion": "1"},
            "data": {"ca.crt": b64(&old_cert), "ca.key": b64(&old_key)}}),
    );
    let mut cluster = example_cluster();
    cluster.spec.listeners = serde_json::from_value(json!({"tls": {}})).unwrap();

    // A reconcile against the Secrets as they stand, and the notes of its Events.
    let reconcile = |cluster: &Cluster| {
        let (client, calls) = api_server(secret_store(Arc::clone(&secrets)));
        let cluster = Arc::new(cluster.clone());
        async move {
            let _ = reconcile_cluster(cluster, context(client)).await;
            (event_notes(&calls), kube_calls(&calls))
        }
    };
    let (notes, _) = reconcile(&cluster).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("a next CA is trusted first")),
        "{notes:?}"
    );
    let stored = secrets.lock().unwrap().clone();
    let ca = &stored["events-ca"]["data"];
    assert_eq!(decode(&ca["ca.crt"]), old_cert, "the old CA still signs");
    let next = decode(&ca["next.crt"]);
    assert_eq!(decode(&ca["bundle.crt"]), format!("{old_cert}{next}"));
    let tls = &stored["events-tls"]["data"];
    assert_eq!(decode(&tls["ca.crt"]), format!("{old_cert}{next}"));
    assert!(signed_by(&decode(&tls["tls.crt"]), &old_cert));

    // A week on (as if `next.since` were eight days ago): the next CA signs.
    let since = (now - time::Duration::days(8))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    secrets.lock().unwrap().get_mut("events-ca").unwrap()["data"]["next.since"] =
        b64(&since).into();
    let (notes, _) = reconcile(&cluster).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("the next CA signs from now on")),
        "{notes:?}"
    );
    let stored = secrets.lock().unwrap().clone();
    let ca = &stored["events-ca"]["data"];
    assert_eq!(decode(&ca["ca.crt"]), next);
    assert_eq!(decode(&ca["previous.crt"]), old_cert);
    assert!(ca.get("next.crt").is_none());
    let tls = &stored["events-tls"]["data"];
    assert_eq!(decode(&tls["ca.crt"]), format!("{next}{old_cert}"));
    assert!(signed_by(&decode(&tls["tls.crt"]), &next));

    // Nothing more until the old CA ends.
    let (notes, calls) = reconcile(&cluster).await;
    assert!(notes.is_empty(), "{notes:?}");
    assert!(
        calls
            .iter()
            .filter(|c| c.path().contains("/secrets"))
            .all(|c| c.method == Method::GET)
    );
}

/// A Cluster whose `listeners.tls` names no Secret: the operator makes a CA (Secret
/// `events-ca`) and issues the brokers' certificate from it (Secret `events-tls`, for the
/// bootstrap Service and every broker), before the StatefulSets that mount it. A later
/// reconcile leaves a current certificate alone, and issues a new one, replacing the Secret as
/// read, when the certificate names other hosts.
#[tokio::test]
async fn the_operator_issues_the_brokers_certificate_from_a_ca_it_keeps() {
    use base64::Engine;
    let decode = |value: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap()
    };
    let secrets: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let routes = secret_store;
    let mut cluster = example_cluster();
    cluster.spec.listeners = serde_json::from_value(json!({"tls": {}})).unwrap();

    let (client, calls) = api_server(routes(Arc::clone(&secrets)));
    let _ = reconcile_cluster(Arc::new(cluster.clone()), context(client)).await;
    let recorded = kube_calls(&calls);
    let posted: Vec<&str> = recorded
        .iter()
        .filter(|c| c.method == Method::POST && c.path().ends_with("/secrets"))
        .map(|c| c.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(posted, ["events-ca", "events-tls"]);
    let first_stateful_set = recorded
        .iter()
        .position(|c| c.body["kind"] == "StatefulSet")
        .expect("StatefulSets applied");
    let last_secret = recorded
        .iter()
        .rposition(|c| c.path().ends_with("/secrets"))
        .unwrap();
    assert!(
        last_secret < first_stateful_set,
        "certificates before brokers"
    );
    assert_eq!(events(&calls), ["CertificateIssued"]);
    let stored = secrets.lock().unwrap().clone();
    let tls = &stored["events-tls"];
    assert_eq!(tls["type"], "kubernetes.io/tls");
    assert_eq!(tls["metadata"]["ownerReferences"][0]["kind"], "Cluster");
    assert_eq!(
        decode(&tls["data"]["ca.crt"]),
        decode(&stored["events-ca"]["data"]["ca.crt"])
    );
    // The certificate names the bootstrap Service and the brokers, and chains to the CA.
    let (_, pem) = x509_parser::pem::parse_x509_pem(&decode(&tls["data"]["tls.crt"])).unwrap();
    let certificate = pem.parse_x509().unwrap();
    let names: Vec<String> = certificate
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("*.events-brokers.streaming.svc")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("events-bootstrap.streaming.svc")),
        "{names:?}"
    );
    let (_, ca_pem) =
        x509_parser::pem::parse_x509_pem(&decode(&stored["events-ca"]["data"]["ca.crt"])).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    certificate
        .verify_signature(Some(ca.public_key()))
        .expect("signed by the CA");
    let stateful_set = &recorded[first_stateful_set].body;
    assert_eq!(
        stateful_set["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"],
        "events-tls"
    );

    // Again: nothing to do.
    let (client, calls) = api_server(routes(Arc::clone(&secrets)));
    let _ = reconcile_cluster(Arc::new(cluster.clone()), context(client)).await;
    assert!(
        kube_calls(&calls)
            .iter()
            .filter(|c| c.path().contains("/secrets"))
            .all(|c| c.method == Method::GET),
        "a current certificate is left alone"
    );
    assert!(events(&calls).is_empty());

    // A certificate for other hosts (say, made for another name): issued again, replaced as read.
    let (ca_cert, ca_key) = {
        let ca = &stored["events-ca"]["data"];
        (
            String::from_utf8(decode(&ca["ca.crt"])).unwrap(),
            String::from_utf8(decode(&ca["ca.key"])).unwrap(),
        )
    };
    let (other, _) = fjord_operator::cluster::certificates::issue(
        &ca_cert,
        &ca_key,
        &["old.streaming.svc".to_owned()],
    )
    .unwrap();
    secrets.lock().unwrap().get_mut("events-tls").unwrap()["data"]["tls.crt"] =
        base64::engine::general_purpose::STANDARD
            .encode(other)
            .into();
    let (client, calls) = api_server(routes(Arc::clone(&secrets)));
    let _ = reconcile_cluster(Arc::new(cluster), context(client)).await;
    let replaced: Vec<Call> = kube_calls(&calls)
        .into_iter()
        .filter(|c| c.method == Method::PUT)
        .collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].body["metadata"]["resourceVersion"], "1");
    assert_eq!(events(&calls), ["CertificateIssued"]);
}
