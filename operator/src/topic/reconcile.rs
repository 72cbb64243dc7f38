//! Topic reconcile: the calls. Finalizer bookkeeping, the Cluster lookup, the Kafka side
//! ([`converge`](crate::topic::converge)) and the status write.
//!
//! The finalizer exists only while `deletionPolicy: Delete` needs the brokers to delete the
//! topic; it is released without touching Kafka when the Cluster is gone or being deleted, or the
//! namespace is (with nothing but cluster-wide rules, as its deletion takes the namespace's Roles
//! first), so a namespace being deleted never hangs on a topic whose brokers are already going,
//! and when another Topic still names the same Kafka topic ([`claims`](crate::topic::claims)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::conditions::{READY, condition, with_transitions};
use crate::controller::{Context, Error, connect_admin, kube_error, patch_params, set_finalizer};
use crate::crd::{Cluster, DeletionPolicy, Topic, TopicStatus};
use crate::topic::claims::{managed_by_another, rivals};
use crate::topic::converge::{ConvergedTopic, converge_topic, delete_topic};
use crate::topic::validate::{ValidatedTopic, validate_topic};

/// Present on a Topic while deleting it must delete the Kafka topic.
pub const FINALIZER: &str = "fjord.dev/delete-topic";

/// Resync of a converged topic: catches changes made behind the operator's back.
const RESYNC: Duration = Duration::from_secs(300);
/// A Cluster may appear later (applied in any order by GitOps), and a conflicting older Topic
/// may go away.
const CLUSTER_RETRY: Duration = Duration::from_secs(30);
/// Re-check of a topic whose partitions are being moved to a new replication factor.
const REASSIGNMENT_CHECK: Duration = Duration::from_secs(10);
/// Why a Topic changes nothing: an older Topic names the same Kafka topic.
const RESOURCE_CONFLICT: &str = "ResourceConflict";

pub async fn reconcile_topic(topic: Arc<Topic>, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile(&topic, &context).await;
    context.metrics.reconciled("topic", started.elapsed());
    if result.is_ok() {
        context.reconciled(&crate::controller::object_key(topic.as_ref()));
    }
    result
}

async fn reconcile(topic: &Topic, context: &Context) -> Result<Action, Error> {
    let namespace = topic.namespace().unwrap_or_default();
    let topics: Api<Topic> = Api::namespaced(context.client.clone(), &namespace);
    let has_finalizer = topic.finalizers().iter().any(|f| f == FINALIZER);

    if topic.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            finalize(topic, context, &topics).await?;
        }
        return Ok(Action::await_change());
    }

    let validated = match validate_topic(topic) {
        Ok(validated) => validated,
        Err(error) => {
            // The finalizer stays as it is: a topic created before the spec became invalid is
            // still deleted with the resource (under the name the status recorded).
            write_status(
                &topics,
                topic,
                None,
                None,
                "InvalidSpec",
                &error.to_string(),
            )
            .await?;
            context
                .event(topic, true, "InvalidSpec", "Validate", error.to_string())
                .await;
            return Ok(Action::await_change());
        }
    };

    let wants_finalizer = validated.deletion_policy == DeletionPolicy::Delete;
    if wants_finalizer != has_finalizer {
        set_finalizer(&topics, topic, FINALIZER, wants_finalizer).await?;
    }

    let all = match context.topic_cache.in_namespace(&namespace) {
        Some(cached) => cached,
        None => list_topics(&topics, &namespace).await?,
    };
    if let Some(owner) =
        managed_by_another(topic, &validated.cluster, &validated.desired.name, &all)
    {
        let message = format!(
            "Kafka topic '{}' of Cluster '{}' is managed by Topic '{}', the oldest Topic naming it; \
             this one changes nothing until that one is deleted",
            validated.desired.name,
            validated.cluster,
            owner.name_any()
        );
        let already = ready_reason(topic) == Some(RESOURCE_CONFLICT);
        write_status(
            &topics,
            topic,
            Some(&validated),
            None,
            RESOURCE_CONFLICT,
            &message,
        )
        .await?;
        if !already {
            context
                .event(topic, true, RESOURCE_CONFLICT, "Validate", message)
                .await;
        }
        return Ok(Action::requeue(CLUSTER_RETRY));
    }

    let clusters: Api<Cluster> = Api::namespaced(context.client.clone(), &namespace);
    let Some(cluster) = clusters
        .get_opt(&validated.cluster)
        .await
        .map_err(kube_error::<Cluster>("getting", &validated.cluster))?
    else {
        let message = format!(
            "Cluster '{}' does not exist in {namespace}",
            validated.cluster
        );
        write_status(
            &topics,
            topic,
            Some(&validated),
            None,
            "ClusterNotFound",
            &message,
        )
        .await?;
        return Ok(Action::requeue(CLUSTER_RETRY));
    };

    let outcome = match connect_admin(context, &cluster, &namespace).await {
        Ok(mut admin) => converge_topic(&mut admin, &validated.desired)
            .await
            .map_err(|source| Error::Topic {
                topic: validated.desired.name.clone(),
                source,
            }),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(converged) if converged.reassigning > 0 => {
            // The brokers are copying partitions to reach the spec's replication factor.
            let message = format!(
                "replication factor {} -> {}: {} partitions moving",
                converged.replication_factor,
                validated.desired.replication_factor,
                converged.reassigning
            );
            write_status(
                &topics,
                topic,
                Some(&validated),
                None,
                "ReplicationFactorChanging",
                &message,
            )
            .await?;
            announce(context, topic, &validated, &converged).await;
            Ok(Action::requeue(REASSIGNMENT_CHECK))
        }
        Ok(converged) => {
            write_status(
                &topics,
                topic,
                Some(&validated),
                Some(&converged),
                "Synced",
                "topic matches the spec",
            )
            .await?;
            announce(context, topic, &validated, &converged).await;
            Ok(Action::requeue(RESYNC))
        }
        Err(error) => {
            let reason = error.metric_label();
            let message = crate::controller::DisplayChain(&error).to_string();
            write_status(&topics, topic, Some(&validated), None, reason, &message).await?;
            if error.is_transient() {
                // The error policy counts it and retries soon.
                Err(error)
            } else {
                context
                    .event(topic, true, reason, "Converge", message)
                    .await;
                context.metrics.failed("topic", reason);
                Ok(Action::await_change())
            }
        }
    }
}

/// The Topics of `cluster` among `topics` that a change of the Cluster (its deletion above all)
/// must reconcile at once: those being deleted, so a deleted Cluster releases their finalizers
/// without waiting for their next retry, and those not Ready (waiting for the Cluster to appear
/// or its brokers to answer). A synced Topic is left to its resync: the Cluster's status changes
/// with every broker that starts or restarts, and each would cost it a round of Kafka requests.
pub fn topics_of_cluster(cluster: &Cluster, topics: &[Arc<Topic>]) -> Vec<ObjectRef<Topic>> {
    let namespace = cluster.namespace();
    topics
        .iter()
        .filter(|topic| topic.namespace() == namespace && topic.spec.cluster == cluster.name_any())
        .filter(|topic| topic.meta().deletion_timestamp.is_some() || !is_ready(topic))
        .map(|topic| ObjectRef::from_obj(topic.as_ref()))
        .collect()
}

fn is_ready(topic: &Topic) -> bool {
    topic.status.as_ref().is_some_and(|status| {
        crate::conditions::status_of(&status.conditions, READY) == Some("True")
    })
}

/// Deletes the Kafka topic (if the Cluster still stands) and releases the finalizer. In a
/// namespace being deleted the finalizer is released at once, without Kafka and without any
/// call the namespace's own Roles grant: its deletion removes those Roles (in namespaced mode,
/// the operator's) and the Cluster with its brokers, so waiting could only hang it.
async fn finalize(topic: &Topic, context: &Context, topics: &Api<Topic>) -> Result<(), Error> {
    let namespace = topic.namespace().unwrap_or_default();
    if namespace_terminating(context, &namespace).await {
        return release_in_terminating_namespace(topic, topics, &namespace).await;
    }
    match delete_and_release(topic, context, topics).await {
        // The namespace's deletion began meanwhile and took the operator's Role with it.
        Err(error) if error.is_forbidden() && namespace_terminating(context, &namespace).await => {
            release_in_terminating_namespace(topic, topics, &namespace).await
        }
        result => result,
    }
}

async fn release_in_terminating_namespace(
    topic: &Topic,
    topics: &Api<Topic>,
    namespace: &str,
) -> Result<(), Error> {
    // No Event: a terminating namespace accepts no new objects.
    tracing::info!(
        topic = %topic.name_any(),
        namespace,
        "namespace is being deleted: releasing the topic without deleting it"
    );
    set_finalizer(topics, topic, FINALIZER, false).await
}

/// Whether `namespace` is being deleted. Asked with the cluster-wide rule
/// [`FINALIZER_RULES`](crate::rbac::FINALIZER_RULES); when even that is refused, the answer is
/// no and the Topic is finalized as usual.
pub(crate) async fn namespace_terminating(context: &Context, namespace: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(context.client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(found)) => {
            found.metadata.deletion_timestamp.is_some()
                || found
                    .status
                    .and_then(|s| s.phase)
                    .is_some_and(|phase| phase == "Terminating")
        }
        // Not there: nothing to go by (a Topic outlives its namespace only in a test).
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(namespace, %error, "could not read the namespace");
            false
        }
    }
}

/// Deletes the Kafka topic, unless another Topic still names it or the Cluster is gone, then
/// releases the finalizer.
async fn delete_and_release(
    topic: &Topic,
    context: &Context,
    topics: &Api<Topic>,
) -> Result<(), Error> {
    let namespace = topic.namespace().unwrap_or_default();
    // The name the brokers know the topic by: from the spec, or (an invalid spec) from the
    // status of an earlier reconcile; neither means nothing was ever created.
    let kafka_name = match validate_topic(topic) {
        Ok(validated) => Some(validated.desired.name),
        Err(_) => topic.status.as_ref().and_then(|s| s.topic_name.clone()),
    };
    let Some(kafka_name) = kafka_name else {
        return set_finalizer(topics, topic, FINALIZER, false).await;
    };
    let cluster_name = &topic.spec.cluster;
    // From the API server, not the cache: deleting data waits for an authoritative answer.
    let all = list_topics(topics, &namespace).await?;
    if let Some(other) = rivals(topic, cluster_name, &kafka_name, &all).next() {
        let note = format!(
            "Topic '{}' still names Kafka topic '{kafka_name}': keeping it",
            other.name_any()
        );
        context
            .event(topic, false, "TopicKept", "Delete", note)
            .await;
        return set_finalizer(topics, topic, FINALIZER, false).await;
    }
    let clusters: Api<Cluster> = Api::namespaced(context.client.clone(), &namespace);
    let cluster = clusters
        .get_opt(cluster_name)
        .await
        .map_err(kube_error::<Cluster>("getting", cluster_name))?;
    match cluster {
        Some(cluster) if cluster.meta().deletion_timestamp.is_none() => {
            let mut admin = connect_admin(context, &cluster, &namespace).await?;
            let existed = delete_topic(&mut admin, &kafka_name)
                .await
                .map_err(|source| Error::Topic {
                    topic: kafka_name.clone(),
                    source,
                })?;
            let note = if existed {
                format!("deleted Kafka topic '{kafka_name}'")
            } else {
                format!("Kafka topic '{kafka_name}' was already gone")
            };
            context
                .event(topic, false, "TopicDeleted", "Delete", note)
                .await;
        }
        _ => {
            context
                .event(
                    topic,
                    false,
                    "ClusterGone",
                    "Delete",
                    format!(
                        "Cluster '{cluster_name}' is gone: releasing the topic without deleting it"
                    ),
                )
                .await;
        }
    }
    set_finalizer(topics, topic, FINALIZER, false).await
}

async fn list_topics(topics: &Api<Topic>, namespace: &str) -> Result<Vec<Arc<Topic>>, Error> {
    let listed = topics
        .list(&ListParams::default())
        .await
        .map_err(kube_error::<Topic>("listing", namespace))?;
    Ok(listed.items.into_iter().map(Arc::new).collect())
}

fn ready_reason(topic: &Topic) -> Option<&str> {
    let status = topic.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == READY)?;
    Some(ready.reason.as_str())
}

async fn write_status(
    topics: &Api<Topic>,
    topic: &Topic,
    validated: Option<&ValidatedTopic>,
    converged: Option<&ConvergedTopic>,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let previous = topic.status.clone().unwrap_or_default();
    let generation = topic.meta().generation;
    let status = TopicStatus {
        observed_generation: generation,
        conditions: with_transitions(
            &previous.conditions,
            vec![condition(
                READY,
                converged.is_some(),
                reason,
                message,
                generation,
            )],
            Timestamp::now(),
        ),
        topic_name: validated.map(|v| v.desired.name.clone()),
        // What the brokers last said; kept while they cannot be asked.
        topic_id: converged.map_or(previous.topic_id, |c| c.topic_id.clone()),
        partitions: converged.map_or(previous.partitions, |c| Some(c.partitions)),
    };
    let name = topic.name_any();
    topics
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(kube_error::<Topic>("writing the status of", &name))?;
    Ok(())
}

/// Events for what a converge changed on the brokers.
async fn announce(
    context: &Context,
    topic: &Topic,
    validated: &ValidatedTopic,
    converged: &ConvergedTopic,
) {
    let name = &validated.desired.name;
    if converged.created {
        let note = format!(
            "created Kafka topic '{name}' with {} partitions, replication factor {}",
            converged.partitions, converged.replication_factor
        );
        context
            .event(topic, false, "TopicCreated", "Create", note)
            .await;
        return;
    }
    if converged.partitions_added {
        let note = format!("topic '{name}' now has {} partitions", converged.partitions);
        context
            .event(topic, false, "PartitionsAdded", "Update", note)
            .await;
    }
    if converged.reassignments_started > 0 {
        let note = format!(
            "topic '{name}': moving {} partitions from replication factor {} to {}",
            converged.reassignments_started,
            converged.replication_factor,
            validated.desired.replication_factor
        );
        context
            .event(topic, false, "ReassignmentStarted", "Update", note)
            .await;
    }
    if !converged.configs_set.is_empty() || !converged.configs_reset.is_empty() {
        let note = format!(
            "topic '{name}': set {:?}, reset to default {:?}",
            converged.configs_set, converged.configs_reset
        );
        context
            .event(topic, false, "ConfigUpdated", "Update", note)
            .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crd::{ClusterSpec, ListenersSpec, StorageSpec, TopicSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn topic(name: &str, cluster: &str, ready: Option<bool>, deleting: bool) -> Arc<Topic> {
        let mut topic = Topic::new(
            name,
            TopicSpec {
                cluster: cluster.into(),
                topic_name: None,
                partitions: 1,
                replication_factor: 1,
                config: Default::default(),
                deletion_policy: DeletionPolicy::Delete,
            },
        );
        topic.metadata.namespace = Some("streaming".into());
        topic.status = ready.map(|ready| TopicStatus {
            conditions: vec![condition(READY, ready, "Synced", "", None)],
            ..TopicStatus::default()
        });
        if deleting {
            topic.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        }
        Arc::new(topic)
    }

    #[test]
    fn a_cluster_change_reconciles_its_topics_that_wait_or_are_being_deleted() {
        let mut cluster = Cluster::new(
            "events",
            ClusterSpec {
                zones: vec![],
                brokers_per_zone: None,
                replicas: None,
                image: None,
                storage: StorageSpec {
                    size: Quantity("1Gi".into()),
                    storage_class_name: None,
                    delete_claim: false,
                },
                resources: None,
                config: Default::default(),
                listeners: ListenersSpec::default(),
                authorization: None,
            },
        );
        cluster.metadata.namespace = Some("streaming".into());
        let mut elsewhere = topic("elsewhere", "events", None, true);
        Arc::make_mut(&mut elsewhere).metadata.namespace = Some("other".into());
        let topics = vec![
            topic("synced", "events", Some(true), false),
            topic("deleting", "events", Some(true), true),
            topic("waiting", "events", Some(false), false),
            topic("new", "events", None, false),
            topic("other-cluster", "payments", None, true),
            elsewhere,
        ];
        let names: Vec<String> = topics_of_cluster(&cluster, &topics)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["deleting", "waiting", "new"]);
    }
}
