//! Cluster reconcile: the calls. Apply what [`build_cluster`] built (server-side apply, one
//! field manager, forced: the operator owns these fields), delete StatefulSets of zones no
//! longer in the spec, take one rollout step, write the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::cluster::build::{
    MANAGER, ZONE_LABEL, build_cluster, managed_selector, pod_selector, to_value,
};
use fjord_admin_api::{BrokerState, Drain, Status};

use crate::cluster::rollout::{
    BrokerPod, HealthGate, RestartCheck, RolloutPlan, health_gate, plan_rollout,
};
use crate::cluster::scale::{self, DrainAnswer, ExistingSet, LeavingBroker, ScaleIn};
use crate::cluster::validate::{ValidatedCluster, validate_cluster_with};
use crate::conditions::{DEGRADED, PROGRESSING, READY, condition, with_transitions};
use crate::controller::{Context, Error, kube_error, patch_params};
use crate::crd::{BrokerEntry, BrokersStatus, Cluster, ClusterStatus, ZoneStatus};

/// Resync of a healthy cluster.
const RESYNC: Duration = Duration::from_secs(300);
/// Re-check while brokers start or a rollout waits (pod events usually come sooner).
const PROGRESS_CHECK: Duration = Duration::from_secs(10);

/// Container states that mean a broker will not come up on its own.
const FAILING: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
];

pub async fn reconcile_cluster(
    cluster: Arc<Cluster>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile(&cluster, &context).await;
    context.metrics.reconciled("cluster", started.elapsed());
    if result.is_ok() {
        context.reconciled(&crate::controller::object_key(cluster.as_ref()));
    }
    result
}

async fn reconcile(cluster: &Cluster, context: &Context) -> Result<Action, Error> {
    if cluster.meta().deletion_timestamp.is_some() {
        // Owner references hand the children to the garbage collector; volumes stay.
        return Ok(Action::await_change());
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let clusters: Api<Cluster> = Api::namespaced(context.client.clone(), &namespace);
    // The StatefulSets this Cluster has: zones keep their node ids, removed zones are orphans.
    let stateful_sets: Api<StatefulSet> = Api::namespaced(context.client.clone(), &namespace);
    let name = cluster.name_any();
    let existing = stateful_sets
        .list(&ListParams::default().labels(&managed_selector(&name)))
        .await
        .map_err(kube_error::<StatefulSet>("listing", &name))?
        .items;
    // Ranges of removed zones, from the status, then those of the StatefulSets that exist.
    let mut bases: BTreeMap<String, i32> = cluster
        .status
        .as_ref()
        .map(|s| s.node_id_ranges.clone())
        .unwrap_or_default();
    bases.extend(existing.iter().filter_map(|s| {
        let start = s.spec.as_ref()?.ordinals.as_ref()?.start?;
        Some((s.name_any(), start))
    }));
    let validated = match validate_cluster_with(cluster, &context.broker_image, &bases) {
        Ok(validated) => validated,
        Err(error) => {
            let message = error.to_string();
            let generation = cluster.meta().generation;
            let previous = cluster.status.clone().unwrap_or_default();
            let conditions = with_transitions(
                &previous.conditions,
                vec![
                    condition(READY, false, "InvalidSpec", &message, generation),
                    condition(PROGRESSING, false, "InvalidSpec", &message, generation),
                    condition(DEGRADED, true, "InvalidSpec", &message, generation),
                ],
                Timestamp::now(),
            );
            let status = ClusterStatus {
                observed_generation: generation,
                conditions,
                ..previous
            };
            write_status(&clusters, cluster, status).await?;
            context
                .event(cluster, true, "InvalidSpec", "Validate", message)
                .await;
            return Ok(Action::await_change());
        }
    };

    // Scale-in: brokers the spec no longer has leave once drained; until then their
    // StatefulSets keep their size (see `scale`).
    let existing_sets: Vec<ExistingSet> = existing.iter().filter_map(existing_set).collect();
    let leaving = scale::leaving(&validated, &existing_sets);
    let mut validated = validated;
    let mut scale_hold: Option<Progress> = None;
    let mut kept_sets: Vec<String> = Vec::new();
    // Brokers drained and removed this time, whose claims go with `storage.deleteClaim`.
    let mut removed: Vec<LeavingBroker> = Vec::new();
    if !leaving.is_empty() {
        let decision = match scale::voter_refusal(&leaving, &existing_sets) {
            Some(message) => ScaleIn::Hold {
                reason: "ScaleInRefused",
                message,
                refused: true,
            },
            None => scale::step(&drain_answers(context, &validated, &leaving).await),
        };
        match decision {
            ScaleIn::Shrink => {
                removed.clone_from(&leaving);
                for broker in &leaving {
                    context
                        .event(
                            cluster,
                            false,
                            "BrokerRemoved",
                            "ScaleIn",
                            format!(
                                "broker {} ({}) holds no replica any more: removed",
                                broker.node_id, broker.pod
                            ),
                        )
                        .await;
                }
            }
            ScaleIn::Hold {
                reason,
                message,
                refused,
            } => {
                let held = scale::held_sizes(&validated, &existing_sets);
                for zone in &mut validated.zones {
                    if let Some(size) = held.get(&zone.statefulset) {
                        zone.brokers = *size;
                    }
                }
                kept_sets = leaving.iter().map(|b| b.statefulset.clone()).collect();
                if refused {
                    context
                        .event(cluster, true, reason, "ScaleIn", message.clone())
                        .await;
                }
                scale_hold = Some(Progress::Waiting { reason, message });
            }
        }
    }

    let applied = match reconcile_children(
        context, cluster, &validated, &existing, &kept_sets, &removed,
    )
    .await
    {
        Ok(applied) => applied,
        Err(error) => {
            report_apply_failure(context, &clusters, cluster, &error).await;
            return Err(error);
        }
    };
    let client = &context.client;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod_list = pods
        .list(&ListParams::default().labels(&pod_selector(&validated)))
        .await
        .map_err(kube_error::<Pod>("listing", &validated.name))?;
    let update_revisions: BTreeMap<String, Option<String>> = applied
        .iter()
        .map(|s| {
            (
                s.name_any(),
                s.status.as_ref().and_then(|st| st.update_revision.clone()),
            )
        })
        .collect();
    let brokers: Vec<BrokerPod> = pod_list
        .items
        .iter()
        .map(|pod| broker_pod(pod, &update_revisions))
        .collect();
    let expected = usize::try_from(validated.brokers()).unwrap_or(0);

    // Right after a template change the StatefulSet controller may not have computed the new
    // revision yet: until it has, which pods are outdated is not known.
    let settling = applied.iter().find(|s| {
        let observed = s.status.as_ref().and_then(|st| st.observed_generation);
        s.metadata.generation.is_some() && observed < s.metadata.generation
    });
    let voters: std::collections::BTreeSet<i32> = validated
        .voters
        .iter()
        .filter_map(|voter| voter.split_once('@')?.0.parse().ok())
        .collect();
    let plan = match settling {
        Some(stateful_set) => Err(stateful_set.name_any()),
        None => Ok(plan_rollout(&brokers, expected, &voters, None)),
    };
    let progress = match (scale_hold, plan) {
        // A scale-in under way comes first: no rolling restart meanwhile.
        (Some(hold), _) => hold,
        (None, Err(stateful_set)) => Progress::Waiting {
            reason: "StatefulSetUpdating",
            message: format!("waiting for StatefulSet {stateful_set} to observe its new spec"),
        },
        (None, Ok(plan)) => match plan {
            RolloutPlan::UpToDate => Progress::UpToDate,
            RolloutPlan::WaitForBrokers { waiting_on } => Progress::Waiting {
                reason: "WaitingForBrokers",
                message: format!("rolling restart waits for {waiting_on} to be Ready"),
            },
            RolloutPlan::ReplaceUnready { pod, uid } => {
                restart(context, cluster, &pods, &pod, uid).await?;
                Progress::Restarting { pod }
            }
            RolloutPlan::Restart { pod, uid } => {
                let admin_port = validated.ports.admin;
                let mut statuses = Vec::with_capacity(brokers.len());
                for broker in &brokers {
                    statuses.push((
                        broker.name.clone(),
                        admin_get::<Status>(
                            context,
                            &namespace,
                            &broker.name,
                            admin_port,
                            fjord_admin_api::STATUS_PATH,
                        )
                        .await,
                    ));
                }
                // The controller goes last: chosen again now that it is known.
                let controller = statuses
                    .iter()
                    .find_map(|(_, s)| s.as_ref().map(|s| s.controller))
                    .filter(|id| *id >= 0);
                let (pod, uid) = match plan_rollout(&brokers, expected, &voters, controller) {
                    RolloutPlan::Restart { pod, uid } => (pod, uid),
                    _ => (pod, uid),
                };
                match health_gate(&statuses) {
                    HealthGate::Open => {
                        let node_id = brokers
                            .iter()
                            .find(|b| b.name == pod)
                            .map_or(-1, |b| b.node_id);
                        // Its leaderships move now, not at the SIGTERM; then its broker must
                        // say the restart is safe (no answer: no restart).
                        let drain = fjord_admin_api::leadership_drain_path(node_id);
                        if admin_call::<fjord_admin_api::LeadershipDrain>(
                            context,
                            &namespace,
                            &pod,
                            admin_port,
                            http::Method::POST,
                            &drain,
                        )
                        .await
                        .is_err()
                        {
                            tracing::info!(pod, "leadership drain not confirmed");
                        }
                        let check = admin_call::<fjord_admin_api::PreRestartCheck>(
                            context,
                            &namespace,
                            &pod,
                            admin_port,
                            http::Method::GET,
                            &fjord_admin_api::pre_restart_path(node_id),
                        )
                        .await;
                        let check = match check {
                            Ok(check) => RestartCheck::of(Some(&check)),
                            // A broker of a release before the check (an upgrade rolling
                            // out): the health gate above, that release's gate, decided.
                            Err(AdminFailure::NotServed) => {
                                tracing::info!(pod, "the broker has no pre-restart check");
                                RestartCheck::Safe
                            }
                            Err(AdminFailure::NoAnswer) => RestartCheck::Unknown,
                        };
                        match check {
                            RestartCheck::Safe => {
                                restart(context, cluster, &pods, &pod, uid).await?;
                                Progress::Restarting { pod }
                            }
                            RestartCheck::Unsafe { reasons } => Progress::Waiting {
                                reason: "RestartUnsafe",
                                message: format!(
                                    "rolling restart of {pod} waits: its pre-restart check says {}",
                                    reasons.join("; ")
                                ),
                            },
                            RestartCheck::Unknown => Progress::Waiting {
                                reason: "BrokerHealthUnknown",
                                message: format!(
                                    "rolling restart of {pod} waits: its pre-restart check did not answer"
                                ),
                            },
                        }
                    }
                    HealthGate::UnderReplicated {
                        pod: on,
                        partitions,
                    } => Progress::Waiting {
                        reason: "UnderReplicatedPartitions",
                        message: format!(
                            "rolling restart of {pod} waits: {on} reports {partitions} under-replicated partitions"
                        ),
                    },
                    HealthGate::NotCaughtUp { pod: on } => Progress::Waiting {
                        reason: "BrokerCatchingUp",
                        message: format!("rolling restart of {pod} waits for {on} to catch up"),
                    },
                    HealthGate::Unknown { pod: on } => Progress::Waiting {
                        reason: "BrokerHealthUnknown",
                        message: format!(
                            "rolling restart of {pod} waits: {on} did not answer on its admin endpoint"
                        ),
                    },
                }
            }
        },
    };

    let mut status = cluster_status(cluster, &validated, &pod_list.items, &progress);
    status.cluster = brokers_status(context, &validated, &pod_list.items).await;
    if let Some(view) = &status.cluster {
        let reported: Vec<(i32, String)> = view
            .brokers
            .iter()
            .map(|b| (b.id, b.state.clone()))
            .collect();
        end_drains(
            context,
            cluster,
            &validated,
            &pod_list.items,
            &scale::drains_to_end(&validated, &leaving, &reported),
        )
        .await;
    }
    status.node_id_ranges = bases;
    status.node_id_ranges.extend(
        validated
            .zones
            .iter()
            .map(|z| (z.statefulset.clone(), z.first_node_id)),
    );
    let ready = crate::conditions::status_of(&status.conditions, READY) == Some("True");
    write_status(&clusters, cluster, status).await?;
    Ok(match progress {
        Progress::UpToDate if ready => Action::requeue(RESYNC),
        _ => Action::requeue(PROGRESS_CHECK),
    })
}

/// Applies every child [`build_cluster`] builds and deletes the StatefulSets of removed zones;
/// the StatefulSets as applied.
async fn reconcile_children(
    context: &Context,
    cluster: &Cluster,
    validated: &ValidatedCluster,
    existing: &[StatefulSet],
    kept: &[String],
    removed: &[LeavingBroker],
) -> Result<Vec<StatefulSet>, Error> {
    let children = build_cluster(validated);
    let client = &context.client;
    let namespace = &validated.namespace;
    apply(client, namespace, &children.service_account).await?;
    apply(client, namespace, &children.config_map).await?;
    apply(client, namespace, &children.headless_service).await?;
    apply(client, namespace, &children.bootstrap_service).await?;
    if validated.security.scram {
        // Before any broker starts: the first ones seed the cluster with it.
        crate::cluster::credentials::ensure_operator_credentials(context, validated).await?;
    }
    if validated.security.client_certificates.is_some() {
        let changed = crate::cluster::certificates::ensure_clients_ca(context, validated, |name| {
            crate::cluster::build::metadata(validated, name)
        })
        .await?;
        if let Some(note) = changed {
            context
                .event(
                    cluster,
                    false,
                    "CertificateAuthorityChanged",
                    "Reconcile",
                    note,
                )
                .await;
        }
    }
    if validated.security.tls_issued {
        let issued =
            crate::cluster::certificates::ensure_certificates(context, validated, |name| {
                crate::cluster::build::metadata(validated, name)
            })
            .await?;
        if let Some(note) = issued {
            context
                .event(cluster, false, "CertificateIssued", "Reconcile", note)
                .await;
        }
    }
    if validated.security.service_account_audience.is_some() {
        publish_service_account_keys(context, cluster, validated).await?;
    }
    let mut applied = Vec::with_capacity(children.stateful_sets.len());
    for stateful_set in &children.stateful_sets {
        applied.push(apply(client, namespace, stateful_set).await?);
    }
    apply(client, namespace, &children.pod_disruption_budget).await?;
    delete_orphans(context, cluster, validated, existing, kept).await?;
    if validated.delete_claim {
        delete_claims(context, cluster, validated, removed).await?;
    }
    Ok(applied)
}

/// A child the API server refused: the user sees why in the status (`Degraded`, reason
/// `ApplyFailed`, the server's message) and in a Warning Event, while the error policy retries
/// with backoff. `Ready` keeps what it said: the brokers already running are unaffected.
async fn report_apply_failure(
    context: &Context,
    clusters: &Api<Cluster>,
    cluster: &Cluster,
    error: &Error,
) {
    let message = crate::controller::DisplayChain(error).to_string();
    let generation = cluster.meta().generation;
    let previous = cluster.status.clone().unwrap_or_default();
    let ready = previous
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .cloned()
        .unwrap_or_else(|| condition(READY, false, APPLY_FAILED, &message, generation));
    let conditions = with_transitions(
        &previous.conditions,
        vec![
            ready,
            condition(PROGRESSING, false, APPLY_FAILED, &message, generation),
            condition(DEGRADED, true, APPLY_FAILED, &message, generation),
        ],
        Timestamp::now(),
    );
    let status = ClusterStatus {
        observed_generation: generation,
        conditions,
        ..previous
    };
    if let Err(status_error) = write_status(clusters, cluster, status).await {
        tracing::warn!(error = %crate::controller::DisplayChain(&status_error), "reporting a failed apply");
    }
    context
        .event(cluster, true, APPLY_FAILED, "Apply", message)
        .await;
}

/// Why `Progressing` and `Degraded` say the spec could not be applied.
const APPLY_FAILED: &str = "ApplyFailed";

/// Where the rolling restart stands after this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    UpToDate,
    Waiting {
        reason: &'static str,
        message: String,
    },
    Restarting {
        pod: String,
    },
}

/// The API server's service-account issuer and keys, as ConfigMap
/// `<name>-service-account-keys`: before the brokers that mount it start, and again at every
/// reconcile for keys the API server rotates. When they cannot be read and the ConfigMap exists,
/// the brokers keep the keys they have and the reconcile goes on (a Warning says why); only a
/// Cluster that has never had them waits.
async fn publish_service_account_keys(
    context: &Context,
    cluster: &Cluster,
    validated: &ValidatedCluster,
) -> Result<(), Error> {
    let client = &context.client;
    let name = validated.service_account_keys();
    match crate::cluster::service_accounts::discover(client).await {
        Ok((issuer, jwks)) => {
            let keys = crate::cluster::build::build_service_account_keys(validated, &issuer, &jwks);
            apply(client, &validated.namespace, &keys).await?;
            Ok(())
        }
        Err(error) => {
            let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &validated.namespace);
            // Listed by name: the operator lists its children, and reads none by name.
            let published = config_maps
                .list_metadata(&ListParams::default().fields(&format!("metadata.name={name}")))
                .await
                .map_err(kube_error::<ConfigMap>("listing", &name))?;
            if published.items.is_empty() {
                return Err(error);
            }
            let note = format!(
                "{}; the brokers keep the keys in ConfigMap '{name}'",
                crate::controller::DisplayChain(&error)
            );
            context
                .event(cluster, true, error.metric_label(), "Reconcile", note)
                .await;
            Ok(())
        }
    }
}

async fn apply<K>(client: &kube::Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let body = to_value(object);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube_error::<K>("applying", &name))
}

/// StatefulSets labelled as this cluster's that the spec no longer builds (a removed zone).
/// The brokers' view of the cluster, from the first Ready broker's `/v1/status` (its node id
/// the lowest): `None` while no broker answers.
async fn brokers_status(
    context: &Context,
    validated: &ValidatedCluster,
    pods: &[Pod],
) -> Option<BrokersStatus> {
    let mut ready: Vec<&Pod> = pods.iter().filter(|p| pod_ready(p)).collect();
    ready.sort_by_key(|p| p.name_any());
    let pod = ready.first()?.name_any();
    let status: Status = admin_get(
        context,
        &validated.namespace,
        &pod,
        validated.ports.admin,
        fjord_admin_api::STATUS_PATH,
    )
    .await?;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Some(BrokersStatus {
        controller: status.controller,
        under_replicated_partitions: count(status.cluster_under_replicated_partitions),
        offline_partitions: count(status.offline_partitions),
        reassigning_partitions: count(status.reassigning_partitions),
        balancing: status.balancing,
        brokers: status
            .brokers
            .iter()
            .map(|b| BrokerEntry {
                id: b.id,
                zone: b.rack.clone(),
                state: serde_json::to_value(b.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                replicas: count(b.replicas),
                leaders: count(b.leaders),
            })
            .collect(),
    })
}

/// Ends the drains of `ids` (`DELETE /v1/brokers/{id}/drain` through the first Ready broker),
/// each with an Event; one that fails is tried again at the next reconcile.
async fn end_drains(
    context: &Context,
    cluster: &Cluster,
    validated: &ValidatedCluster,
    pods: &[Pod],
    ids: &[i32],
) {
    let mut ready: Vec<&Pod> = pods.iter().filter(|p| pod_ready(p)).collect();
    ready.sort_by_key(|p| p.name_any());
    let Some(via) = ready.first().map(|p| p.name_any()) else {
        return;
    };
    for id in ids {
        let ended = admin_call::<Drain>(
            context,
            &validated.namespace,
            &via,
            validated.ports.admin,
            http::Method::DELETE,
            &fjord_admin_api::drain_path(*id),
        )
        .await;
        if ended.is_ok() {
            context
                .event(
                    cluster,
                    false,
                    "DrainEnded",
                    "ScaleIn",
                    format!("broker {id} is in the spec again: its drain is ended"),
                )
                .await;
        }
    }
}

/// A StatefulSet of the Cluster as it exists, for the scale-in: its node ids and the voters its
/// pods name.
fn existing_set(stateful_set: &StatefulSet) -> Option<ExistingSet> {
    let spec = stateful_set.spec.as_ref()?;
    let first_node_id = spec.ordinals.as_ref()?.start?;
    let voters = spec
        .template
        .spec
        .as_ref()
        .and_then(|pod| pod.containers.first())
        .and_then(|container| container.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "FJORD_VOTERS"))
        .and_then(|e| e.value.as_deref())
        .map(|list| {
            list.split(',')
                .filter_map(|voter| voter.split_once('@')?.0.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Some(ExistingSet {
        name: stateful_set.name_any(),
        first_node_id,
        replicas: spec.replicas.unwrap_or(1),
        voters,
    })
}

/// Each leaving broker's drain, asked through a broker that stays (any Ready one answers for
/// all): a drained broker is only looked at, the others are asked to drain (the broker refuses,
/// changing nothing, when a partition could not keep its replicas on distinct zones).
async fn drain_answers(
    context: &Context,
    validated: &ValidatedCluster,
    leaving: &[LeavingBroker],
) -> Vec<(LeavingBroker, DrainAnswer)> {
    let namespace = &validated.namespace;
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&pod_selector(validated)))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    let via = listed
        .iter()
        .filter(|pod| pod_ready(pod))
        .map(ResourceExt::name_any)
        .find(|name| !leaving.iter().any(|b| b.pod == *name));
    let mut answers = Vec::with_capacity(leaving.len());
    for broker in leaving {
        let answer = match &via {
            None => DrainAnswer::Unknown,
            Some(via) => {
                let path = fjord_admin_api::drain_path(broker.node_id);
                let port = validated.ports.admin;
                match admin_get::<Drain>(context, namespace, via, port, &path).await {
                    None => DrainAnswer::Unknown,
                    Some(drain) if drain.state == BrokerState::Drained => DrainAnswer::Drain(drain),
                    Some(_) => start_drain(context, namespace, via, port, &path).await,
                }
            }
        };
        answers.push((broker.clone(), answer));
    }
    answers
}

/// `POST` a drain through the pod proxy: the drain as started, or the brokers' refusal (409).
async fn start_drain(
    context: &Context,
    namespace: &str,
    pod: &str,
    admin_port: i32,
    path: &str,
) -> DrainAnswer {
    let proxied = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{admin_port}/proxy{path}");
    let Ok(request) = http::Request::post(proxied).body(Vec::new()) else {
        return DrainAnswer::Unknown;
    };
    match context.client.request_text(request).await {
        Ok(body) => serde_json::from_str(&body).map_or(DrainAnswer::Unknown, DrainAnswer::Drain),
        // The refusal's body reads as a Kubernetes Status (see `fjord_admin_api::Refusal`).
        Err(kube::Error::Api(refusal)) if refusal.code == 409 => {
            DrainAnswer::Refused(refusal.message.clone())
        }
        Err(error) => {
            tracing::info!(pod, path, %error, "broker admin endpoint did not answer");
            DrainAnswer::Unknown
        }
    }
}

/// With `storage.deleteClaim`, deletes the volume claims of `removed`: brokers found drained
/// this reconcile, whose StatefulSets have just shrunk (or gone).
async fn delete_claims(
    context: &Context,
    cluster: &Cluster,
    validated: &ValidatedCluster,
    removed: &[LeavingBroker],
) -> Result<(), Error> {
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(context.client.clone(), &validated.namespace);
    for broker in removed {
        let claim = broker.claim();
        match claims.delete(&claim, &DeleteParams::default()).await {
            Ok(_) => {
                context
                    .event(
                        cluster,
                        false,
                        "ClaimDeleted",
                        "ScaleIn",
                        format!("deleted volume claim {claim} of a drained, removed broker (storage.deleteClaim)"),
                    )
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(kube_error::<
                    k8s_openapi::api::core::v1::PersistentVolumeClaim,
                >("deleting", &claim)(error));
            }
        }
    }
    Ok(())
}

async fn delete_orphans(
    context: &Context,
    cluster: &Cluster,
    validated: &ValidatedCluster,
    existing: &[StatefulSet],
    kept: &[String],
) -> Result<(), Error> {
    let api: Api<StatefulSet> = Api::namespaced(context.client.clone(), &validated.namespace);
    for stateful_set in existing {
        let name = stateful_set.name_any();
        // A zone in the spec, or one whose brokers are still being drained.
        if validated.zones.iter().any(|z| z.statefulset == name) || kept.contains(&name) {
            continue;
        }
        api.delete(&name, &DeleteParams::default())
            .await
            .map_err(kube_error::<StatefulSet>("deleting", &name))?;
        context
            .event(
                cluster,
                false,
                "ZoneRemoved",
                "Delete",
                format!("deleted StatefulSet {name}: its zone is no longer in the spec and its brokers are drained"),
            )
            .await;
    }
    Ok(())
}

fn broker_pod(pod: &Pod, update_revisions: &BTreeMap<String, Option<String>>) -> BrokerPod {
    let name = pod.name_any();
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet")
        .map(|o| o.name.clone());
    let revision = pod.labels().get("controller-revision-hash");
    let update_revision = owner
        .as_ref()
        .and_then(|owner| update_revisions.get(owner))
        .and_then(Option::as_ref);
    BrokerPod {
        node_id: name
            .rsplit_once('-')
            .and_then(|(_, ordinal)| ordinal.parse().ok())
            .unwrap_or(i32::MAX),
        uid: pod.uid(),
        ready: pod_ready(pod),
        terminating: pod.meta().deletion_timestamp.is_some(),
        outdated: matches!((revision, update_revision), (Some(have), Some(want)) if have != want),
        name,
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Why a pod's broker will not come up without help, if it will not.
fn pod_failure(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        FAILING
            .contains(&reason)
            .then(|| format!("{}: {reason}", pod.name_any()))
    })
}

/// `GET path` on a broker's admin API, through the API server's pod proxy (works from inside
/// the cluster and from a laptop alike). `None` when it does not answer.
async fn admin_get<T: serde::de::DeserializeOwned>(
    context: &Context,
    namespace: &str,
    pod: &str,
    admin_port: i32,
    path: &str,
) -> Option<T> {
    admin_call(context, namespace, pod, admin_port, http::Method::GET, path)
        .await
        .ok()
}

/// Why an admin call brought no answer of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminFailure {
    /// The broker does not serve the path (404 or 405): a release from before it.
    NotServed,
    /// No answer, or not one of the contract.
    NoAnswer,
}

/// `method path` on a broker's admin API (its JSON answer, as the `fjord-admin-api` contract
/// has it), through the API server's pod proxy.
async fn admin_call<T: serde::de::DeserializeOwned>(
    context: &Context,
    namespace: &str,
    pod: &str,
    admin_port: i32,
    method: http::Method,
    path: &str,
) -> Result<T, AdminFailure> {
    let proxied = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{admin_port}/proxy{path}");
    let request = http::Request::builder()
        .method(method)
        .uri(proxied)
        .body(Vec::new())
        .map_err(|_| AdminFailure::NoAnswer)?;
    match context.client.request_text(request).await {
        Ok(body) => serde_json::from_str(&body).map_err(|error| {
            tracing::warn!(pod, path, %error, "unreadable admin answer");
            AdminFailure::NoAnswer
        }),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 405 => {
            Err(AdminFailure::NotServed)
        }
        Err(error) => {
            tracing::info!(pod, path, %error, "broker admin endpoint did not answer");
            Err(AdminFailure::NoAnswer)
        }
    }
}

async fn restart(
    context: &Context,
    cluster: &Cluster,
    pods: &Api<Pod>,
    pod: &str,
    uid: Option<String>,
) -> Result<(), Error> {
    // The uid precondition: never delete a pod that was already replaced meanwhile.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    pods.delete(pod, &params)
        .await
        .map_err(kube_error::<Pod>("deleting", pod))?;
    let related = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.to_owned()),
        namespace: cluster.namespace(),
        uid: params.preconditions.and_then(|p| p.uid),
        ..ObjectReference::default()
    };
    context
        .event_related(
            cluster,
            Some(related),
            false,
            "RollingRestart",
            "Restart",
            format!("restarting broker {pod} to apply the new pod template"),
        )
        .await;
    Ok(())
}

fn cluster_status(
    cluster: &Cluster,
    validated: &ValidatedCluster,
    pods: &[Pod],
    progress: &Progress,
) -> ClusterStatus {
    let generation = cluster.meta().generation;
    let zones: Vec<ZoneStatus> = validated
        .zones
        .iter()
        .map(|zone| ZoneStatus {
            name: zone.label().to_owned(),
            brokers: zone.brokers,
            ready_brokers: pods
                .iter()
                .filter(|p| p.labels().get(ZONE_LABEL).map(String::as_str) == Some(zone.label()))
                .filter(|p| pod_ready(p) && p.meta().deletion_timestamp.is_none())
                .count()
                .try_into()
                .unwrap_or(i32::MAX),
        })
        .collect();
    let ready_brokers: i32 = zones.iter().map(|z| z.ready_brokers).sum();
    let brokers = validated.brokers();
    let all_ready = ready_brokers >= brokers;
    let failing: Vec<String> = pods.iter().filter_map(pod_failure).collect();

    let ready = if all_ready {
        condition(
            READY,
            true,
            "BrokersReady",
            format!("{ready_brokers}/{brokers} brokers ready"),
            generation,
        )
    } else {
        condition(
            READY,
            false,
            "BrokersNotReady",
            format!("{ready_brokers}/{brokers} brokers ready"),
            generation,
        )
    };
    let progressing = match progress {
        Progress::Restarting { pod } => condition(
            PROGRESSING,
            true,
            "RollingRestart",
            format!("restarting {pod}"),
            generation,
        ),
        Progress::Waiting { reason, message } => {
            condition(PROGRESSING, true, reason, message.clone(), generation)
        }
        Progress::UpToDate if !all_ready => condition(
            PROGRESSING,
            true,
            "BrokersStarting",
            format!("{ready_brokers}/{brokers} brokers ready"),
            generation,
        ),
        Progress::UpToDate => condition(
            PROGRESSING,
            false,
            "UpToDate",
            "every broker runs the current spec",
            generation,
        ),
    };
    let degraded = if failing.is_empty() {
        condition(
            DEGRADED,
            false,
            "Healthy",
            "no broker is failing",
            generation,
        )
    } else {
        condition(
            DEGRADED,
            true,
            "BrokerFailing",
            failing.join(", "),
            generation,
        )
    };
    let previous = cluster.status.clone().unwrap_or_default();
    ClusterStatus {
        observed_generation: generation,
        conditions: with_transitions(
            &previous.conditions,
            vec![ready, progressing, degraded],
            Timestamp::now(),
        ),
        ready_brokers,
        brokers,
        zones,
        bootstrap: Some(validated.bootstrap_address()),
        node_id_ranges: previous.node_id_ranges,
        cluster: None,
    }
}

async fn write_status(
    clusters: &Api<Cluster>,
    cluster: &Cluster,
    status: ClusterStatus,
) -> Result<(), Error> {
    let name = cluster.name_any();
    clusters
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(kube_error::<Cluster>("writing the status of", &name))?;
    Ok(())
}
