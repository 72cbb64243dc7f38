//! What both controllers share: the [`Context`] (API client, metrics, event recorder,
//! settings), the reconcile [`Error`] with its low-cardinality reason, the error policy
//! (transient failure -> short requeue) and the wiring that runs the two controllers until
//! shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::cluster::build::{CLUSTER_LABEL, MANAGER};
use crate::crd::{Cluster, Topic, User};
use crate::metrics::Metrics;
use crate::topic::converge::ConvergeError;

/// Settings and clients every reconcile gets.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Broker image of Clusters that name none.
    pub broker_image: String,
    /// Bound on each Kafka admin request.
    pub kafka_timeout: Duration,
    /// Where the Topic controller reaches every Cluster's brokers instead of its bootstrap
    /// Service (an operator running outside the cluster, with a port-forward).
    pub bootstrap_override: Option<String>,
    /// Consecutive failed reconciles per object (`kind/namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, Failures>>,
    /// The Topic controllers' caches of Topics.
    pub topic_cache: TopicCache,
}

/// An object's consecutive failures and when its retry is due.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    retry_at: tokio::time::Instant,
}

/// The Topic controllers' caches (one per watched namespace, or one for all namespaces), so the
/// conflict check on every Topic reconcile reads memory instead of listing every Topic of the
/// namespace from the API server.
#[derive(Default)]
pub struct TopicCache {
    stores: RwLock<Vec<Store<Topic>>>,
}

impl std::fmt::Debug for TopicCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("TopicCache")
            .field("stores", &stores.len())
            .finish()
    }
}

impl TopicCache {
    /// Adds a controller's store.
    pub fn add(&self, store: Store<Topic>) {
        self.stores
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
    }

    /// The cached Topics of `namespace`; `None` when there is no cache or one has not finished
    /// its first list yet (the caller lists from the API server instead).
    pub fn in_namespace(&self, namespace: &str) -> Option<Vec<Arc<Topic>>> {
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        if stores.is_empty() {
            return None;
        }
        let mut topics = Vec::new();
        for store in stores.iter() {
            let ready = store.wait_until_ready().now_or_never();
            if !matches!(ready, Some(Ok(()))) {
                return None;
            }
            topics.extend(
                store
                    .state()
                    .into_iter()
                    .filter(|topic| topic.namespace().as_deref() == Some(namespace)),
            );
        }
        Some(topics)
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("broker_image", &self.broker_image)
            .field("kafka_timeout", &self.kafka_timeout)
            .field("bootstrap_override", &self.bootstrap_override)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, broker_image: String) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            broker_image,
            kafka_timeout: Duration::from_secs(10),
            bootstrap_override: None,
            failures: Mutex::new(HashMap::new()),
            topic_cache: TopicCache::default(),
        }
    }

    /// The delay before retrying `object` after another failure: [`RETRY`], doubling with
    /// each consecutive failure up to [`MAX_RETRY`].
    ///
    /// Only a failure of the retry itself (a reconcile once the delay has passed) doubles it. A
    /// reconcile that fails before its retry is due was triggered by a watch event, most often
    /// the failed reconcile's own finalizer or status write coming back: it keeps the retry
    /// where it was, so one failure is one step of the backoff, not three within milliseconds.
    pub fn retry_after_failure(&self, object: &str) -> Duration {
        let now = tokio::time::Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let failure = failures.entry(object.to_owned()).or_insert(Failures {
            count: 0,
            retry_at: now,
        });
        if now < failure.retry_at {
            return failure.retry_at - now;
        }
        failure.count = failure.count.saturating_add(1);
        let delay = RETRY
            .saturating_mul(1 << (failure.count - 1).min(10))
            .min(MAX_RETRY);
        failure.retry_at = now + delay;
        delay
    }

    /// Forgets the failures of `object` (its reconcile succeeded).
    pub fn reconciled(&self, object: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(object);
    }

    /// Publishes a Kubernetes Event about `object`; a failure to publish is logged, never
    /// fails the reconcile.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.event_related(object, None, warning, reason, action, note)
            .await;
    }

    /// As [`Context::event`], naming a second object the Event is about (`related`), such as
    /// the pod a rolling restart replaced. The recorder folds repeated Events into one series
    /// by regarding object, reason and related object, not by note: without `related`, three
    /// pods restarted one after another would show as one Event about the first.
    pub async fn event_related<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}

/// A reconcile that did not finish. Invalid specs are not errors (they become a condition and
/// the controller waits for a change); these are the failures worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {kind} '{name}'")]
    Kube {
        verb: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("connecting to the brokers at {bootstrap}")]
    Connect {
        bootstrap: String,
        #[source]
        source: crate::kafka::KafkaError,
    },
    #[error("converging Kafka topic '{topic}'")]
    Topic {
        topic: String,
        #[source]
        source: ConvergeError,
    },
    #[error("Secret '{name}': {problem}")]
    Secret { name: String, problem: String },
    #[error("reading the API server's service-account issuer ({path}): {problem}")]
    Discovery { path: &'static str, problem: String },
    #[error("converging user {user}")]
    User {
        /// The principal.
        user: String,
        #[source]
        source: crate::kafka::KafkaError,
    },
}

impl Error {
    /// The API server refused the call for lack of permission.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(status), .. } if status.code == 403)
    }

    /// Whether retrying soon may succeed (the error policy retries it), as opposed to a wait
    /// for a changed spec.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Topic { source, .. } => source.is_transient(),
            Self::Connect { source, .. } | Self::User { source, .. } => source.is_transient(),
            Self::Kube { .. } => true,
            // Made by the operator (or cert-manager) soon, or fixed by a person: checked again
            // with backoff either way.
            Self::Secret { .. } => true,
            // The API server's endpoint, or the operator's permission to read it.
            Self::Discovery { .. } => true,
        }
    }

    /// Low-cardinality label for metrics and Event reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "Conflict",
                kube::Error::Api(status) if status.code == 403 => "Forbidden",
                kube::Error::Api(status) if status.code == 404 => "NotFound",
                kube::Error::Api(status) if status.code == 422 => "Invalid",
                _ => "KubeApi",
            },
            Self::Connect { source, .. } => source.reason(),
            Self::Topic { source, .. } => source.reason(),
            Self::User { source, .. } => source.reason(),
            Self::Secret { .. } => "SecretNotReady",
            Self::Discovery { .. } => "IssuerDiscoveryFailed",
        }
    }
}

/// Shorthand for wrapping a kube call's error.
pub fn kube_error<K: Resource<DynamicType = ()>>(
    verb: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error + use<K> {
    let name = name.to_owned();
    move |source| Error::Kube {
        verb,
        kind: kind_name::<K>(),
        name,
        source,
    }
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    // Kinds are static strings for every type this operator touches; `Cow::Owned` never
    // happens for k8s-openapi and derived resources.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

/// Names the operator in every request's `User-Agent`: the API server takes a write's default
/// field manager from it, so even writes made by library code that sets no field manager (kube's
/// Event recorder) are attributed to `fjord-operator`, never `unknown`.
pub fn identify(config: &mut kube::Config) {
    let agent = concat!("fjord-operator/", env!("CARGO_PKG_VERSION"));
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(agent),
    ));
}

/// Parameters of a merge patch (status, finalizers) under the operator's field manager, so
/// `managedFields` name the operator as the owner of what it writes, never `unknown`.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..kube::api::PatchParams::default()
    }
}

/// Parameters of a create or replace under the operator's field manager.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(MANAGER.into()),
        ..kube::api::PostParams::default()
    }
}

/// Requeue delay after a first failed reconcile: short, so a transient failure heals quickly.
pub const RETRY: Duration = Duration::from_secs(5);
/// The backoff's ceiling for an object that keeps failing.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The key of `object` in the failure counts.
pub fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// The namespaces to watch: all of them (empty) or a list.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub namespaces: Vec<String>,
}

impl Scope {
    /// `None` means every namespace.
    fn targets(&self) -> Vec<Option<&str>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().map(|ns| Some(ns.as_str())).collect()
        }
    }
}

fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the Cluster, Topic and User controllers for every namespace in `scope` until `shutdown`.
pub async fn run(context: Arc<Context>, scope: Scope, shutdown: CancellationToken) {
    let client = &context.client;
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let brokers = watcher::Config::default()
        .labels("app.kubernetes.io/name=fjord,app.kubernetes.io/component=broker");
    // A JoinSet: dropping this future (the leader lost its lease) aborts every controller.
    let mut controllers = tokio::task::JoinSet::new();
    for namespace in scope.targets() {
        let stop = shutdown.clone();
        let clusters = Controller::new(api_in::<Cluster>(client, namespace), watcher::Config::default())
            .owns(api_in::<StatefulSet>(client, namespace), owned.clone())
            .owns(api_in::<ConfigMap>(client, namespace), owned.clone())
            .owns(api_in::<Service>(client, namespace), owned.clone())
            .owns(api_in::<PodDisruptionBudget>(client, namespace), owned.clone())
            .owns(api_in::<ServiceAccount>(client, namespace), owned.clone())
            // Pod readiness moves a rolling restart on; pods belong to StatefulSets, so they
            // are mapped to their Cluster by label.
            .watches(api_in::<Pod>(client, namespace), brokers.clone(), |pod: Pod| {
                let namespace = pod.namespace()?;
                pod.labels()
                    .get(CLUSTER_LABEL)
                    .map(|name| ObjectRef::new(name).within(&namespace))
            })
            .graceful_shutdown_on(async move { stop.cancelled().await })
            .run(
                crate::cluster::reconcile::reconcile_cluster,
                |cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>| {
                    error_policy("cluster", &object_key(cluster.as_ref()), error, &ctx)
                },
                Arc::clone(&context),
            )
            .for_each(|_| async {});
        controllers.spawn(clusters);

        let stop = shutdown.clone();
        let topics = Controller::new(
            api_in::<Topic>(client, namespace),
            watcher::Config::default(),
        );
        let store = topics.store();
        context.topic_cache.add(store.clone());
        let topics = topics
            // A Cluster deleted (or changed) reconciles its Topics at once: a Topic waiting to
            // be deleted releases its finalizer without waiting out its retry backoff.
            .watches(
                api_in::<Cluster>(client, namespace),
                watcher::Config::default(),
                move |cluster: Cluster| {
                    crate::topic::reconcile::topics_of_cluster(&cluster, &store.state())
                },
            )
            .graceful_shutdown_on(async move { stop.cancelled().await })
            .run(
                crate::topic::reconcile::reconcile_topic,
                |topic: Arc<Topic>, error: &Error, ctx: Arc<Context>| {
                    error_policy("topic", &object_key(topic.as_ref()), error, &ctx)
                },
                Arc::clone(&context),
            )
            .for_each(|_| async {});
        controllers.spawn(topics);

        let stop = shutdown.clone();
        let users = Controller::new(
            api_in::<User>(client, namespace),
            watcher::Config::default(),
        )
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(
            crate::user::reconcile::reconcile_user,
            |user: Arc<User>, error: &Error, ctx: Arc<Context>| {
                error_policy("user", &object_key(user.as_ref()), error, &ctx)
            },
            Arc::clone(&context),
        )
        .for_each(|_| async {});
        controllers.spawn(users);
    }
    while let Some(finished) = controllers.join_next().await {
        if let Err(error) = finished {
            tracing::error!(%error, "a controller task failed");
        }
    }
}

fn error_policy(controller: &str, object: &str, error: &Error, context: &Context) -> Action {
    let reason = error.metric_label();
    context.metrics.failed(controller, reason);
    let retry = context.retry_after_failure(object);
    tracing::warn!(
        controller,
        object,
        reason,
        retry_seconds = retry.as_secs(),
        error = %DisplayChain(error),
        "reconcile failed; retrying"
    );
    Action::requeue(retry)
}

/// Formats an error with its `source()` chain, `a: b: c`.
#[derive(Debug)]
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Adds or removes `finalizer` on `object`, guarded by its resource version so a concurrent
/// change to the finalizer list is retried, never overwritten.
pub(crate) async fn set_finalizer<K>(
    api: &Api<K>,
    object: &K,
    finalizer: &str,
    present: bool,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    if present {
        finalizers.push(finalizer.to_owned());
    }
    let name = object.name_any();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": object.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(&name, &patch_params(), &kube::api::Patch::Merge(&patch))
        .await
        .map_err(kube_error::<K>("patching finalizers of", &name))?;
    Ok(())
}

/// An admin connection to `cluster`'s brokers: its bootstrap Service, or the context's override.
pub(crate) async fn connect_admin(
    context: &Context,
    cluster: &Cluster,
    namespace: &str,
) -> Result<crate::kafka::KafkaAdmin, Error> {
    let bootstrap = context.bootstrap_override.clone().unwrap_or_else(|| {
        crate::cluster::validate::bootstrap_address(
            &cluster.name_any(),
            namespace,
            cluster.spec.listeners.kafka_port,
        )
    });
    let security = crate::cluster::credentials::admin_security(context, cluster).await?;
    crate::kafka::KafkaAdmin::connect_with(&bootstrap, context.kafka_timeout, security)
        .await
        .map_err(|source| Error::Connect { bootstrap, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_cache_answers_only_once_every_store_has_listed() {
        use kube::runtime::reflector::store;
        use kube::runtime::watcher::Event;
        let topic = |namespace: &str, name: &str| {
            let mut topic = Topic::new(
                name,
                crate::crd::TopicSpec {
                    cluster: "events".into(),
                    topic_name: None,
                    partitions: 1,
                    replication_factor: 1,
                    config: Default::default(),
                    deletion_policy: Default::default(),
                },
            );
            topic.metadata.namespace = Some(namespace.into());
            topic
        };
        let cache = TopicCache::default();
        assert!(cache.in_namespace("a").is_none(), "no store: list instead");
        let (first, mut first_writer) = store::<Topic>();
        let (second, mut second_writer) = store::<Topic>();
        cache.add(first);
        cache.add(second);
        first_writer.apply_watcher_event(&Event::Init);
        first_writer.apply_watcher_event(&Event::InitApply(topic("a", "orders")));
        first_writer.apply_watcher_event(&Event::InitApply(topic("b", "payments")));
        first_writer.apply_watcher_event(&Event::InitDone);
        assert!(
            cache.in_namespace("a").is_none(),
            "one store is still listing"
        );
        second_writer.apply_watcher_event(&Event::Init);
        second_writer.apply_watcher_event(&Event::InitApply(topic("a", "refunds")));
        second_writer.apply_watcher_event(&Event::InitDone);
        let mut names: Vec<String> = cache
            .in_namespace("a")
            .unwrap()
            .iter()
            .map(|topic| topic.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["orders", "refunds"]);
    }

    #[test]
    fn requests_name_the_operator_as_their_user_agent() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        identify(&mut config);
        let agents: Vec<&http::HeaderValue> = config
            .headers
            .iter()
            .filter(|(name, _)| name == http::header::USER_AGENT)
            .map(|(_, value)| value)
            .collect();
        assert_eq!(agents.len(), 1);
        assert!(agents[0].to_str().unwrap().starts_with("fjord-operator/"));
    }

    fn offline_context() -> Context {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        Context::new(
            Client::new(service, "default"),
            Arc::new(Metrics::default()),
            "img".into(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_per_object_and_reset_on_success() {
        let context = offline_context();
        let mut delays = Vec::new();
        for _ in 0..9 {
            let delay = context.retry_after_failure("Topic/ns/orders");
            delays.push(delay.as_secs());
            // The retry runs when due, and fails again.
            tokio::time::advance(delay).await;
        }
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(context.retry_after_failure("Topic/ns/other").as_secs(), 5);
        context.reconciled("Topic/ns/orders");
        assert_eq!(context.retry_after_failure("Topic/ns/orders").as_secs(), 5);
    }

    /// A failed reconcile writes the finalizer and the status; the watch brings both back at
    /// once and each reconcile fails again. Those early failures keep the retry where it was.
    #[tokio::test(start_paused = true)]
    async fn failures_before_the_retry_is_due_do_not_double_the_backoff() {
        let context = offline_context();
        let key = "Topic/ns/orders";
        assert_eq!(context.retry_after_failure(key), Duration::from_secs(5));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(
            context.retry_after_failure(key),
            Duration::from_millis(4990)
        );
        tokio::time::advance(Duration::from_millis(23)).await;
        assert_eq!(
            context.retry_after_failure(key),
            Duration::from_millis(4967)
        );
        // The retry itself fails: the next one is twice as far.
        tokio::time::advance(Duration::from_millis(4967)).await;
        assert_eq!(context.retry_after_failure(key), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(context.retry_after_failure(key), Duration::from_secs(9));
    }
}
