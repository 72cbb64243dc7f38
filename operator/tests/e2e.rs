//! End-to-end suite against a real Kubernetes cluster: runs whenever `KUBECONFIG` points at one
//! (kind, k3d, minikube or a real cluster) and says clearly that it skipped otherwise.
//!
//! In a fresh namespace it applies the CRDs from `crds/`, runs the operator binary out of
//! cluster (watching only that namespace, with leader election), applies the example 3-zone
//! Cluster, a one-broker Cluster and a Topic, and asserts the objects and statuses a user would
//! see with kubectl. The namespace is deleted at the end. Brokers become Ready only where the
//! broker image can be pulled (`FJORD_E2E_BROKER_IMAGE`, default: the release image); the
//! Topic reaches the brokers only with `FJORD_E2E_BOOTSTRAP` (a `kubectl port-forward` to the
//! bootstrap Service), otherwise its status must say `BrokerUnavailable`. See
//! docs/operator.md#end-to-end-tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use fjord_operator::crd::{Cluster, Topic};

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` until it returns `Some` or `limit` passes.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes `namespace` and waits (up to 3 minutes) until it is gone: no finalizer may hold it.
async fn delete_namespace_and_wait(namespaces: &Api<Namespace>, namespace: &str) {
    namespaces
        .delete(namespace, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        &format!("namespace {namespace} to be deleted"),
        Duration::from_secs(180),
        || {
            let api = namespaces.clone();
            let namespace = namespace.to_owned();
            async move { api.get_opt(&namespace).await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
}

/// The CRDs, applied exactly as committed; waits until they are established.
async fn apply_crds(client: &Client) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "fjord.dev_clusters.yaml",
        "fjord.dev_topics.yaml",
        "fjord.dev_users.yaml",
    ] {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(format!("{root}/crds/{name}")).unwrap())
                .unwrap();
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("fjord-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        let crd_name = crd.name_any();
        eventually("the CRD to be established", Duration::from_secs(60), || {
            let crds = crds.clone();
            let crd_name = crd_name.clone();
            async move {
                let crd = crds.get(&crd_name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

fn ready_reason(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Says, past the test harness's output capture (a skip must be seen), that `suite` skipped.
fn skipped(suite: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {suite}: {why} (see docs/operator.md#end-to-end-tests)"
    );
}

/// A client of the cluster `KUBECONFIG` names; `None`, after saying `suite` skipped, when it
/// names none.
async fn kube_client(suite: &str) -> Option<Client> {
    let Some(kubeconfig) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) else {
        skipped(
            suite,
            "KUBECONFIG is not set, so there is no Kubernetes cluster to run against",
        );
        return None;
    };
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("KUBECONFIG={kubeconfig:?} is set but unusable: {e}"));
    Some(client)
}

async fn create_namespace(namespaces: &Api<Namespace>, name: &str) {
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

/// The operator binary, watching only `namespace` and keeping its Lease there.
fn operator_command(namespace: &str) -> Command {
    let mut operator = Command::new(env!("CARGO_BIN_EXE_fjord-operator"));
    operator
        .args([
            "--watch-namespaces",
            namespace,
            "--lease-namespace",
            namespace,
        ])
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--kafka-timeout-seconds",
            "3",
        ])
        .stdout(Stdio::null());
    operator
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reconciles_clusters_and_topics_on_a_real_cluster() {
    let Some(client) = kube_client("operator end-to-end suite").await else {
        return;
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let namespace = format!(
        "fjord-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create_namespace(&namespaces, &namespace).await;

    apply_crds(&client).await;

    let mut operator = operator_command(&namespace);
    if let Ok(image) = std::env::var("FJORD_E2E_BROKER_IMAGE") {
        operator.args(["--broker-image", &image]);
    }
    if let Ok(bootstrap) = std::env::var("FJORD_E2E_BOOTSTRAP") {
        operator.args(["--bootstrap-override", &bootstrap]);
    }
    let _operator = Operator(operator.spawn().expect("starting fjord-operator"));

    // The README's example Cluster (three zones) and a one-broker Cluster.
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
    let mut example: Cluster = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{root}/docs/examples/cluster.yaml")).unwrap(),
    )
    .unwrap();
    example.metadata.namespace = Some(namespace.clone());
    example.spec.storage.storage_class_name = None; // whatever class the test cluster has
    clusters
        .patch(
            "events",
            &PatchParams::apply("fjord-e2e"),
            &Patch::Apply(&example),
        )
        .await
        .unwrap();
    let single: Cluster = serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "solo", "namespace": namespace},
        "spec": {"storage": {"size": "1Gi"}}
    }))
    .unwrap();
    clusters
        .patch(
            "solo",
            &PatchParams::apply("fjord-e2e"),
            &Patch::Apply(&single),
        )
        .await
        .unwrap();

    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    for (zone, start) in [("eu-west-1a", 0), ("eu-west-1b", 100), ("eu-west-1c", 200)] {
        let name = format!("events-{zone}");
        let sts = eventually(
            &format!("StatefulSet {name}"),
            Duration::from_secs(60),
            || {
                let api = stateful_sets.clone();
                let name = name.clone();
                async move { api.get_opt(&name).await.ok().flatten() }
            },
        )
        .await;
        let spec = sts.spec.unwrap();
        assert_eq!(spec.ordinals.unwrap().start, Some(start));
        assert_eq!(
            spec.update_strategy.unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        assert_eq!(sts.metadata.owner_references.unwrap()[0].kind, "Cluster");
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    assert!(services.get_opt("events-brokers").await.unwrap().is_some());
    assert!(
        services
            .get_opt("events-bootstrap")
            .await
            .unwrap()
            .is_some()
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let config = config_maps.get("events-config").await.unwrap();
    assert_eq!(config.data.unwrap()["FJORD_DEFAULT_PARTITIONS"], "6");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    assert!(pdbs.get_opt("events").await.unwrap().is_some());

    let status = eventually("the Cluster status", Duration::from_secs(60), || {
        let api = clusters.clone();
        async move {
            let status = api.get("events").await.ok()?.status?;
            (status.observed_generation.is_some() && !status.conditions.is_empty())
                .then_some(status)
        }
    })
    .await;
    assert_eq!(status.brokers, 3);
    assert_eq!(
        status.bootstrap.as_deref(),
        Some(&*format!("events-bootstrap.{namespace}.svc:9092"))
    );
    assert_eq!(status.zones.len(), 3);

    if std::env::var_os("FJORD_E2E_BROKER_IMAGE").is_some() {
        eventually(
            "the one-broker Cluster to be Ready",
            Duration::from_secs(300),
            || {
                let api = clusters.clone();
                async move {
                    let status = api.get("solo").await.ok()?.status?;
                    (ready_reason(&status.conditions)?.0 == "True").then_some(())
                }
            },
        )
        .await;
    }

    // A Topic with deletionPolicy: Delete gets the finalizer and a Ready condition with a reason.
    let topics: Api<Topic> = Api::namespaced(client.clone(), &namespace);
    let topic: Topic = serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": namespace},
        "spec": {"cluster": "solo", "partitions": 3, "config": {"retention.ms": "3600000"}, "deletionPolicy": "Delete"}
    }))
    .unwrap();
    topics
        .patch(
            "orders",
            &PatchParams::apply("fjord-e2e"),
            &Patch::Apply(&topic),
        )
        .await
        .unwrap();
    let expected = if std::env::var_os("FJORD_E2E_BOOTSTRAP").is_some() {
        "Synced"
    } else {
        "BrokerUnavailable"
    };
    let status = eventually(
        &format!("Topic Ready reason {expected}"),
        Duration::from_secs(120),
        || {
            let api = topics.clone();
            async move {
                let topic = api.get("orders").await.ok()?;
                let status = topic.status.clone()?;
                (topic
                    .finalizers()
                    .iter()
                    .any(|f| f == "fjord.dev/delete-topic")
                    && ready_reason(&status.conditions)?.1 == expected)
                    .then_some(status)
            }
        },
    )
    .await;
    if expected == "Synced" {
        assert_eq!(status.partitions, Some(3));
        assert!(status.topic_id.is_some());
    }

    // Shrinking partitions is refused by the API server (CEL), before any controller.
    let shrink = topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"partitions": 1}})),
        )
        .await
        .unwrap_err();
    assert!(
        shrink.to_string().contains("partitions can only grow"),
        "{shrink}"
    );

    // Deleting the namespace must not hang on the topic finalizer.
    delete_namespace_and_wait(&namespaces, &namespace).await;
}

/// `rules` as RBAC `PolicyRule`s.
fn policy_rules(rules: &[&[fjord_operator::rbac::Rule]]) -> serde_json::Value {
    rules
        .iter()
        .flat_map(|rules| rules.iter())
        .map(fjord_operator::rbac::Rule::policy_rule)
        .collect()
}

/// Namespaced mode as the chart installs it, with the Lease in the watched namespace as the
/// first suite has it: the operator runs as a ServiceAccount holding a Role in the watched
/// namespace (the operator's rules and the Lease's) and, cluster-wide, only the finalizer rules.
/// A `deletionPolicy: Delete` Topic whose brokers cannot be reached, and a second one deleted
/// before the namespace (so it waits for its retry), must not hold the namespace's deletion,
/// although the deletion removes the Role and the Lease before the Topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_watched_namespace_in_namespaced_mode_does_not_hang() {
    use fjord_operator::rbac::{FINALIZER_RULES, LEADER_ELECTION_RULES, RULES};
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let Some(client) = kube_client("operator end-to-end suite (namespaced mode)").await else {
        return;
    };
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let watched = format!("fjord-e2e-team-{id}");
    let home = format!("fjord-e2e-operator-{id}");
    let finalizers = format!("fjord-e2e-finalizers-{id}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [&watched, &home] {
        create_namespace(&namespaces, name).await;
    }
    apply_crds(&client).await;

    // The chart's namespaced RBAC, bound to a ServiceAccount in the operator's namespace.
    let subject = json!([{"kind": "ServiceAccount", "name": "fjord-operator", "namespace": home}]);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &home);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "fjord-operator"}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), &watched)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "fjord-operator"},
                "rules": policy_rules(&[RULES, LEADER_ELECTION_RULES])}))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &watched)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "fjord-operator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "fjord-operator"},
                "subjects": subject}))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": finalizers},
                "rules": policy_rules(&[FINALIZER_RULES])}))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": finalizers},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": finalizers},
                "subjects": subject}))
            .unwrap(),
        )
        .await
        .unwrap();

    // A kubeconfig for the ServiceAccount: the current cluster, a short-lived token.
    let token = accounts
        .create_token_request(
            "fjord-operator",
            &PostParams::default(),
            &serde_json::from_value::<TokenRequest>(
                json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let config = kube::config::Kubeconfig::read().unwrap();
    let context = config
        .contexts
        .iter()
        .find(|c| Some(&c.name) == config.current_context.as_ref())
        .and_then(|c| c.context.clone())
        .expect("a current context");
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .expect("the current context's cluster");
    let dir = tempfile::tempdir().unwrap();
    let operator_kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &operator_kubeconfig,
        serde_yaml::to_string(&json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [serde_json::to_value(cluster).unwrap()],
            "users": [{"name": "fjord-operator", "user": {"token": token}}],
            "contexts": [{"name": "fjord-operator",
                          "context": {"cluster": cluster.name, "user": "fjord-operator"}}],
            "current-context": "fjord-operator",
        }))
        .unwrap(),
    )
    .unwrap();
    let mut operator = operator_command(&watched);
    operator.env("KUBECONFIG", &operator_kubeconfig);
    let _operator = Operator(operator.spawn().expect("starting fjord-operator"));

    // A Cluster whose brokers the operator cannot reach from outside, and two Delete Topics.
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &watched);
    let solo: Cluster = serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "solo", "namespace": watched},
        "spec": {"storage": {"size": "1Gi"}}
    }))
    .unwrap();
    clusters
        .patch(
            "solo",
            &PatchParams::apply("fjord-e2e"),
            &Patch::Apply(&solo),
        )
        .await
        .unwrap();
    let topics: Api<Topic> = Api::namespaced(client.clone(), &watched);
    for name in ["orders", "payments"] {
        let topic: Topic = serde_json::from_value(json!({
            "apiVersion": "fjord.dev/v1alpha1", "kind": "Topic",
            "metadata": {"name": name, "namespace": watched},
            "spec": {"cluster": "solo", "partitions": 1, "deletionPolicy": "Delete"}
        }))
        .unwrap();
        topics
            .patch(
                name,
                &PatchParams::apply("fjord-e2e"),
                &Patch::Apply(&topic),
            )
            .await
            .unwrap();
        eventually(
            &format!("Topic {name} to get its finalizer and a Ready reason"),
            Duration::from_secs(120),
            || {
                let api = topics.clone();
                async move {
                    let topic = api.get(name).await.ok()?;
                    let status = topic.status.clone()?;
                    (topic
                        .finalizers()
                        .iter()
                        .any(|f| f == "fjord.dev/delete-topic")
                        && ready_reason(&status.conditions).is_some())
                    .then_some(())
                }
            },
        )
        .await;
    }
    // payments is deleted first: its brokers cannot be reached, so it waits with its finalizer.
    topics
        .delete("payments", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        topics.get_opt("payments").await.unwrap().is_some(),
        "a Delete Topic whose brokers cannot be reached waits for them"
    );

    // The namespace's deletion removes the Role and the Lease before the Topics: it must not
    // hang on either Topic's finalizer.
    delete_namespace_and_wait(&namespaces, &watched).await;
    let _ = namespaces.delete(&home, &DeleteParams::default()).await;
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&finalizers, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(&finalizers, &DeleteParams::default())
        .await;
}

/// Whether `pod` has the condition Ready=True.
fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits (up to 10 minutes: images are pulled, volumes made) until Cluster `name` is Ready with
/// `brokers` ready brokers that the brokers themselves report registered and active, with a
/// controller; returns the brokers' report.
async fn wait_serving(
    clusters: &Api<Cluster>,
    name: &str,
    brokers: i32,
) -> fjord_operator::crd::BrokersStatus {
    eventually(
        &format!("Cluster {name} serving with {brokers} active brokers"),
        Duration::from_secs(600),
        || {
            let api = clusters.clone();
            async move {
                let status = api.get(name).await.ok()?.status?;
                let reported = status.cluster.clone()?;
                let active = reported
                    .brokers
                    .iter()
                    .filter(|b| b.state == "active")
                    .count();
                (ready_reason(&status.conditions)?.0 == "True"
                    && status.ready_brokers == brokers
                    && reported.controller >= 0
                    && active == usize::try_from(brokers).unwrap())
                .then_some(reported)
            }
        },
    )
    .await
}

/// Operations on a running cluster of real brokers (needs `FJORD_E2E_BROKER_IMAGE`): a Cluster
/// of three brokers without zones (voters 0, 1, 2) scales out to four, and broker 3 registers
/// and is reported active; a config change restarts the brokers one pod at a time, the
/// non-voter first, never two down at once; a scale-in that would remove a voter is refused with
/// `ScaleInRefused` and removes nothing; the scale-in to three drains broker 3, then removes its
/// pod and, with `storage.deleteClaim`, its volume claim, with a `BrokerRemoved` Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_scales_out_restarts_and_scales_in() {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use k8s_openapi::api::events::v1::Event;
    const SUITE: &str = "operator end-to-end suite (operations)";
    let Some(client) = kube_client(SUITE).await else {
        return;
    };
    let Ok(image) = std::env::var("FJORD_E2E_BROKER_IMAGE") else {
        skipped(
            SUITE,
            "FJORD_E2E_BROKER_IMAGE is not set, and these operations need brokers that run",
        );
        return;
    };
    let namespace = format!(
        "fjord-e2e-ops-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create_namespace(&namespaces, &namespace).await;
    apply_crds(&client).await;
    let mut operator = operator_command(&namespace);
    operator.args(["--broker-image", &image]);
    let _operator = Operator(operator.spawn().expect("starting fjord-operator"));

    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "ops", "namespace": namespace},
        "spec": {"replicas": 3, "storage": {"size": "1Gi", "deleteClaim": true}}
    }))
    .unwrap();
    clusters
        .patch(
            "ops",
            &PatchParams::apply("fjord-e2e"),
            &Patch::Apply(&cluster),
        )
        .await
        .unwrap();
    wait_serving(&clusters, "ops", 3).await;
    let scale = |replicas: i32| {
        let clusters = clusters.clone();
        async move {
            clusters
                .patch(
                    "ops",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .unwrap();
        }
    };

    // Scale-out: broker 3 joins, as a non-voter.
    scale(4).await;
    let reported = wait_serving(&clusters, "ops", 4).await;
    assert!(reported.brokers.iter().any(|b| b.id == 3), "{reported:?}");

    // A config change restarts every broker, one pod at a time, the non-voter first.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let names: Vec<String> = (0..4).map(|id| format!("ops-broker-{id}")).collect();
    let mut before = std::collections::BTreeMap::new();
    for name in &names {
        before.insert(name.clone(), pods.get(name).await.unwrap().uid().unwrap());
    }
    clusters
        .patch(
            "ops",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"log.cleaner.backoff.ms": "20000"}}})),
        )
        .await
        .unwrap();
    let mut replaced: Vec<String> = Vec::new();
    let mut most_down = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    while replaced.len() < names.len() {
        let mut down = 0;
        for name in &names {
            match pods.get_opt(name).await.unwrap() {
                Some(pod) => {
                    if pod.uid() != before.get(name).cloned() && !replaced.contains(name) {
                        replaced.push(name.clone());
                    }
                    if !pod_ready(&pod) {
                        down += 1;
                    }
                }
                None => down += 1,
            }
        }
        most_down = most_down.max(down);
        assert!(
            most_down <= 1,
            "{down} brokers down at once, replaced so far {replaced:?}"
        );
        assert!(
            Instant::now() < deadline,
            "restart stalled after {replaced:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        replaced[0], "ops-broker-3",
        "the non-voter first: {replaced:?}"
    );
    wait_serving(&clusters, "ops", 4).await;

    // Scaling in to two would remove voter 2: refused, nothing removed.
    scale(2).await;
    eventually("ScaleInRefused", Duration::from_secs(120), || {
        let api = clusters.clone();
        async move {
            let status = api.get("ops").await.ok()?.status?;
            status
                .conditions
                .iter()
                .any(|c| c.reason == "ScaleInRefused" && c.message.contains("voter"))
                .then_some(())
        }
    })
    .await;
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let held = stateful_sets.get("ops-broker").await.unwrap();
    assert_eq!(held.spec.unwrap().replicas, Some(4), "nothing removed");

    // Scale-in to three: broker 3 is drained, then its pod and its claim go.
    scale(3).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    eventually(
        "broker 3's pod and claim to be removed",
        Duration::from_secs(600),
        || {
            let (stateful_sets, pods, claims) =
                (stateful_sets.clone(), pods.clone(), claims.clone());
            async move {
                let size = stateful_sets.get("ops-broker").await.ok()?.spec?.replicas;
                (size == Some(3)
                    && pods.get_opt("ops-broker-3").await.ok()?.is_none()
                    && claims.get_opt("data-ops-broker-3").await.ok()?.is_none())
                .then_some(())
            }
        },
    )
    .await;
    let reported = wait_serving(&clusters, "ops", 3).await;
    if let Some(gone) = reported.brokers.iter().find(|b| b.id == 3) {
        assert_eq!(gone.replicas, 0, "{reported:?}");
        assert_ne!(gone.state, "active", "{reported:?}");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let removed = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("BrokerRemoved")
                && e.note.as_deref().is_some_and(|n| n.contains("broker 3"))
        });
    assert!(removed, "a BrokerRemoved Event names broker 3");
    // The kept brokers keep their claims.
    for id in 0..3 {
        assert!(
            claims
                .get_opt(&format!("data-ops-broker-{id}"))
                .await
                .unwrap()
                .is_some()
        );
    }

    delete_namespace_and_wait(&namespaces, &namespace).await;
}

/// A secured Cluster and its Users on a real API server: the operator keeps the CAs and issues
/// the brokers' certificate, makes its own credential, publishes the API server's
/// service-account issuer and keys (read with the real discovery endpoints), and gives the
/// StatefulSet the flags for all of it; a SCRAM User gets a Secret with a password, a `tls` User
/// one with a certificate. A token the API server mints for a ServiceAccount, for the
/// Cluster's audience, passes the brokers' check against the published keys; one minted for
/// another audience does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_and_its_users_on_a_real_cluster() {
    use fjord_broker::security::oauth::{Expectations, Jwks, TokenError, validate};
    use fjord_operator::crd::User;
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let Some(client) = kube_client("operator end-to-end suite (security)").await else {
        return;
    };
    let namespace = format!(
        "fjord-e2e-secure-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create_namespace(&namespaces, &namespace).await;
    apply_crds(&client).await;
    let _operator = Operator(
        operator_command(&namespace)
            .spawn()
            .expect("starting fjord-operator"),
    );

    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "vault", "namespace": namespace},
        "spec": {
            "storage": {"size": "1Gi"},
            "listeners": {
                "tls": {},
                "authentication": {"type": "scram-sha-512", "serviceAccounts": {"audience": "fjord"}},
                "clientCertificates": {"port": 9094},
            },
            "authorization": {"type": "acl"},
        }
    }))
    .unwrap();
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
    clusters
        .patch(
            "vault",
            &PatchParams::apply("fjord-e2e"),
            &Patch::Apply(&cluster),
        )
        .await
        .unwrap();
    let users: Api<User> = Api::namespaced(client.clone(), &namespace);
    for (name, authentication) in [("app", "scram-sha-512"), ("billing", "tls")] {
        let user: User = serde_json::from_value(json!({
            "apiVersion": "fjord.dev/v1alpha1", "kind": "User",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"cluster": "vault", "authentication": {"type": authentication},
                     "acls": [{"resource": {"type": "topic", "name": "invoices"},
                               "operations": ["Write"]}]}
        }))
        .unwrap();
        users
            .patch(name, &PatchParams::apply("fjord-e2e"), &Patch::Apply(&user))
            .await
            .unwrap();
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = |name: &'static str| {
        let secrets = secrets.clone();
        async move {
            eventually(&format!("Secret {name}"), Duration::from_secs(60), || {
                let secrets = secrets.clone();
                async move { secrets.get_opt(name).await.ok().flatten() }
            })
            .await
        }
    };
    let key = |secret: &Secret, key: &str| -> Vec<u8> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
            .unwrap_or_default()
    };
    let ca = secret("vault-ca").await;
    assert!(!key(&ca, "bundle.crt").is_empty());
    let tls = secret("vault-tls").await;
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(key(&tls, "ca.crt"), key(&ca, "bundle.crt"));
    assert!(!key(&secret("vault-clients-ca").await, "ca.key").is_empty());
    assert!(!key(&secret("vault-operator-credentials").await, "initial").is_empty());
    let app = secret("app").await;
    assert!(key(&app, "password").len() >= 32);
    let billing = secret("billing").await;
    assert_eq!(billing.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(key(&billing, "ca.crt"), key(&tls, "ca.crt"));

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let keys = eventually(
        "ConfigMap vault-service-account-keys",
        Duration::from_secs(60),
        || {
            let api = config_maps.clone();
            async move {
                api.get_opt("vault-service-account-keys")
                    .await
                    .ok()
                    .flatten()
            }
        },
    )
    .await
    .data
    .unwrap();
    let jwks = Jwks::parse(keys["jwks.json"].as_bytes()).expect("the API server's key set");
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let sts = eventually("StatefulSet vault-broker", Duration::from_secs(60), || {
        let api = stateful_sets.clone();
        async move { api.get_opt("vault-broker").await.ok().flatten() }
    })
    .await;
    let env = sts.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("FJORD_SASL_MECHANISMS").as_deref(),
        Some("SCRAM-SHA-512,OAUTHBEARER")
    );
    assert_eq!(
        value("FJORD_LISTENERS").as_deref(),
        Some("CLIENT_CERTS:SSL://0.0.0.0:9094")
    );

    // Tokens the API server mints, checked as the brokers check them.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "orders-writer"}})).unwrap(),
        )
        .await
        .unwrap();
    let token = |audience: &'static str| {
        let accounts = accounts.clone();
        async move {
            accounts
                .create_token_request(
                    "orders-writer",
                    &PostParams::default(),
                    &serde_json::from_value::<TokenRequest>(
                        json!({"spec": {"audiences": [audience], "expirationSeconds": 3600}}),
                    )
                    .unwrap(),
                )
                .await
                .unwrap()
                .status
                .unwrap()
                .token
        }
    };
    let expected = Expectations {
        issuer: keys["issuer"].clone(),
        audience: "fjord".to_owned(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let validated = validate(&token("fjord").await, &jwks, &expected, now)
        .expect("a token for the Cluster's audience");
    assert_eq!(
        validated.subject,
        format!("system:serviceaccount:{namespace}:orders-writer")
    );
    assert_eq!(
        validate(&token("vault-other").await, &jwks, &expected, now),
        Err(TokenError::Audience)
    );

    // The Users' principals, whatever the brokers' state.
    for (name, principal) in [("app", "User:app"), ("billing", "User:CN=billing")] {
        eventually(
            &format!("User {name}'s status"),
            Duration::from_secs(60),
            || {
                let api = users.clone();
                async move {
                    let status = api.get(name).await.ok()?.status?;
                    (status.principal.as_deref() == Some(principal)).then_some(())
                }
            },
        )
        .await;
    }
    delete_namespace_and_wait(&namespaces, &namespace).await;
}
