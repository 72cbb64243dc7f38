//! Cluster reconcile, step 3: every object a [`ValidatedCluster`] needs, built as plain values
//! (pure; golden-tested; also what `fjord-operator render` prints). Server-side apply sends them
//! as they are, so a field absent here is a field the operator does not own.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector,
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use crate::crd::Cluster;

use super::validate::{ValidatedCluster, ValidatedZone};

/// The field manager of every server-side apply, and the `managed-by` label value.
pub const MANAGER: &str = "fjord-operator";
/// The pod template annotation that changes whenever the broker configuration does, so a
/// config change is a template change and rolls the brokers.
pub const CONFIG_HASH_ANNOTATION: &str = "fjord.dev/config-hash";
pub const CLUSTER_LABEL: &str = "fjord.dev/cluster";
pub const ZONE_LABEL: &str = "fjord.dev/zone";
const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";
/// The broker image runs as this unprivileged user (distroless `nonroot`).
const BROKER_UID: i64 = 65532;
const DATA_VOLUME: &str = "data";
const DATA_DIR: &str = "/var/lib/fjord";

/// Every child of one Cluster, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterChildren {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub bootstrap_service: Service,
    pub stateful_sets: Vec<StatefulSet>,
    pub pod_disruption_budget: PodDisruptionBudget,
}

impl ClusterChildren {
    /// The objects as JSON, in apply order (for `render` and the golden tests).
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut values = vec![
            to_value(&self.service_account),
            to_value(&self.config_map),
            to_value(&self.headless_service),
            to_value(&self.bootstrap_service),
        ];
        values.extend(self.stateful_sets.iter().map(to_value));
        values.push(to_value(&self.pod_disruption_budget));
        values
    }
}

/// `object` as JSON with its `apiVersion` and `kind`, which k8s-openapi's serialization leaves
/// out: what `render` prints and what server-side apply sends.
pub fn to_value<K: serde::Serialize + Resource<DynamicType = ()>>(object: &K) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
    }
    value
}

/// Builds every child object of `cluster`.
pub fn build_cluster(cluster: &ValidatedCluster) -> ClusterChildren {
    let config_map = build_config_map(cluster);
    let config_hash = config_hash(&config_map);
    ClusterChildren {
        service_account: build_service_account(cluster),
        headless_service: build_headless_service(cluster),
        bootstrap_service: build_bootstrap_service(cluster),
        stateful_sets: cluster
            .zones
            .iter()
            .map(|zone| build_stateful_set(cluster, zone, &config_hash))
            .collect(),
        pod_disruption_budget: build_pod_disruption_budget(cluster),
        config_map,
    }
}

/// Labels every child carries; [`selector_labels`] is the subset that selects broker pods.
pub fn labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels.insert("app.kubernetes.io/part-of".into(), "fjord".into());
    labels.insert(CLUSTER_LABEL.into(), cluster.name.clone());
    labels
}

/// Selects every broker pod of the cluster.
pub fn selector_labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "fjord".into()),
        ("app.kubernetes.io/instance".into(), cluster.name.clone()),
        ("app.kubernetes.io/component".into(), "broker".into()),
    ])
}

/// The label selector (as a string) that finds the children and pods of a cluster.
pub fn managed_selector(cluster_name: &str) -> String {
    format!("{CLUSTER_LABEL}={cluster_name},app.kubernetes.io/managed-by={MANAGER}")
}

/// The pod selector of all brokers of a cluster (as a string).
pub fn pod_selector(cluster: &ValidatedCluster) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The metadata of a child object `name` of `cluster`: its labels and owner reference.
pub fn metadata(cluster: &ValidatedCluster, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(cluster: &ValidatedCluster) -> OwnerReference {
    OwnerReference {
        api_version: Cluster::api_version(&()).into_owned(),
        kind: Cluster::kind(&()).into_owned(),
        name: cluster.name.clone(),
        uid: cluster.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn build_service_account(cluster: &ValidatedCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(cluster, &cluster.service_account()),
        // Brokers never call the Kubernetes API.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The broker settings from `spec.config`, as the environment the brokers load with `envFrom`.
/// The ConfigMap the brokers read the API server's service-account `issuer` and token-signing
/// keys (`jwks.json`) from, to take OAUTHBEARER logins with service-account tokens.
pub fn build_service_account_keys(
    cluster: &ValidatedCluster,
    issuer: &str,
    jwks: &str,
) -> ConfigMap {
    ConfigMap {
        metadata: metadata(cluster, &cluster.service_account_keys()),
        data: Some(
            [(ISSUER_KEY, issuer), (JWKS_KEY, jwks)]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

/// The keys of [`build_service_account_keys`].
pub const ISSUER_KEY: &str = "issuer";
pub const JWKS_KEY: &str = "jwks.json";

pub fn build_config_map(cluster: &ValidatedCluster) -> ConfigMap {
    ConfigMap {
        metadata: metadata(cluster, &cluster.config_map()),
        data: Some(cluster.broker_env.clone()),
        ..ConfigMap::default()
    }
}

fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Stable per-broker DNS names (`<pod>.<cluster>-brokers.<namespace>.svc`), published before
/// the brokers are ready: a quorum has to find its voters to become ready at all.
pub fn build_headless_service(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: metadata(cluster, &cluster.headless_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(
                vec![
                    port("kafka", cluster.ports.kafka),
                    port("controller", cluster.ports.controller),
                    port("admin", cluster.ports.admin),
                ]
                .into_iter()
                .chain(client_certificates_port(cluster))
                .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service port of the listener for clients with certificates, if the Cluster has one.
fn client_certificates_port(cluster: &ValidatedCluster) -> Option<ServicePort> {
    let number = cluster.security.client_certificates?;
    Some(port(CLIENT_CERTIFICATES_PORT_NAME, number))
}

const CLIENT_CERTIFICATES_PORT_NAME: &str = "client-certs";

/// The address clients bootstrap from: any ready broker.
pub fn build_bootstrap_service(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: metadata(cluster, &cluster.bootstrap_service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(cluster)),
            ports: Some(
                std::iter::once(port("kafka", cluster.ports.kafka))
                    .chain(client_certificates_port(cluster))
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one broker down at a time for voluntary disruptions through the Eviction API (node
/// drains, cluster upgrades). The operator's own restarts delete pods directly and are gated by
/// its rollout step instead.
pub fn build_pod_disruption_budget(cluster: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(cluster, &cluster.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// One zone's brokers. `OnDelete`: a template change alone restarts nothing; the operator
/// replaces pods one at a time (see `rollout`). `Parallel`: brokers of a quorum must start
/// together. `ordinals.start` makes each pod's ordinal its node id.
pub fn build_stateful_set(
    cluster: &ValidatedCluster,
    zone: &ValidatedZone,
    config_hash: &str,
) -> StatefulSet {
    let mut zone_selector = selector_labels(cluster);
    zone_selector.insert(ZONE_LABEL.into(), zone.label().to_owned());
    let mut pod_labels = zone_selector.clone();
    pod_labels.insert(CLUSTER_LABEL.into(), cluster.name.clone());
    let mut object_labels = labels(cluster);
    object_labels.insert(ZONE_LABEL.into(), zone.label().to_owned());

    let mut broker_env = vec![
        env_from_field("POD_NAME", "metadata.name"),
        // The StatefulSet ordinal, which `ordinals.start` makes unique across zones.
        env_from_field(
            "FJORD_NODE_ID",
            "metadata.labels['apps.kubernetes.io/pod-index']",
        ),
        env("FJORD_DATA_DIR", format!("{DATA_DIR}/data")),
        env("FJORD_LISTEN", format!("0.0.0.0:{}", cluster.ports.kafka)),
        env(
            "FJORD_ADMIN_LISTEN",
            format!("0.0.0.0:{}", cluster.ports.admin),
        ),
        env(
            "FJORD_ADVERTISE",
            format!(
                "$(POD_NAME).{}.{}.svc:{}",
                cluster.headless_service(),
                cluster.namespace,
                cluster.ports.kafka
            ),
        ),
        env("FJORD_VOTERS", cluster.voters.join(",")),
        env(
            "FJORD_CLUSTER_LISTEN",
            format!("0.0.0.0:{}", cluster.ports.controller),
        ),
        // What other brokers dial: brokers outside the voters name it when they join.
        env(
            "FJORD_CLUSTER_ADVERTISE",
            format!(
                "$(POD_NAME).{}.{}.svc:{}",
                cluster.headless_service(),
                cluster.namespace,
                cluster.ports.controller
            ),
        ),
        env("FJORD_LOG_FORMAT", "json"),
    ];
    if let Some(zone) = &zone.zone {
        broker_env.push(env("FJORD_RACK", zone.clone()));
    }
    let (security_env, security_mounts, security_volumes) = security(cluster);
    broker_env.extend(security_env);
    let mut volume_mounts = vec![
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    volume_mounts.extend(security_mounts);
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    volumes.extend(security_volumes);

    let container = Container {
        name: "broker".into(),
        image: Some(cluster.image.clone()),
        env: Some(broker_env),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: cluster.config_map(),
                ..ConfigMapEnvSource::default()
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(
            [
                container_port("kafka", cluster.ports.kafka),
                container_port("controller", cluster.ports.controller),
                container_port("admin", cluster.ports.admin),
            ]
            .into_iter()
            .chain(
                cluster
                    .security
                    .client_certificates
                    .map(|number| container_port(CLIENT_CERTIFICATES_PORT_NAME, number)),
            )
            .collect(),
        ),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        // Log recovery after an unclean stop can take a while: /livez answers as soon as the
        // admin listener is up, and a generous threshold keeps a slow disk from a restart loop.
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        resources: cluster.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };

    let affinity = zone.zone.as_ref().map(|zone| Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: ZONE_TOPOLOGY_KEY.into(),
                        operator: "In".into(),
                        values: Some(vec![zone.clone()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    });

    let pod = PodSpec {
        service_account_name: Some(cluster.service_account()),
        automount_service_account_token: Some(false),
        affinity,
        // Brokers of a zone on different nodes where the zone has them.
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(zone_selector.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(BROKER_UID),
            run_as_group: Some(BROKER_UID),
            fs_group: Some(BROKER_UID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(60),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    let mut storage_request = BTreeMap::new();
    storage_request.insert("storage".to_owned(), cluster.storage_size.clone());
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(pod_labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: cluster.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(storage_request),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    StatefulSet {
        metadata: ObjectMeta {
            labels: Some(object_labels),
            ..metadata(cluster, &zone.statefulset)
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(zone.brokers),
            ordinals: Some(StatefulSetOrdinals {
                start: Some(zone.first_node_id),
            }),
            service_name: Some(cluster.headless_service()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Volumes outlive their pods and the Cluster: data is deleted by people, not by
            // a reconcile.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(zone_selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The operator's credentials Secret of a Cluster whose clients log in: its SCRAM password,
/// and the `--initial-scram-credentials` line the brokers seed the cluster with.
pub fn build_operator_credentials(cluster: &ValidatedCluster, password: &str) -> Secret {
    let data = [
        ("password", password.to_owned()),
        (
            INITIAL_CREDENTIALS_KEY,
            format!(
                "SCRAM-SHA-512 {} {password}\n",
                super::validate::OPERATOR_USER
            ),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), ByteString(value.into_bytes())))
    .collect();
    Secret {
        metadata: metadata(cluster, &cluster.operator_credentials()),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// Where a broker finds its TLS files (the listener Secret) and the operator's initial
/// credential.
const TLS_DIR: &str = "/etc/fjord/tls";
const CREDENTIALS_DIR: &str = "/etc/fjord/credentials";
const CLIENTS_CA_DIR: &str = "/etc/fjord/clients-ca";
const SERVICE_ACCOUNT_KEYS_DIR: &str = "/etc/fjord/service-account-keys";
/// The brokers' name of the listener for clients with certificates.
const CLIENT_CERTIFICATES_LISTENER: &str = "CLIENT_CERTS";
/// The key of the operator's credentials Secret the brokers read (`--initial-scram-credentials`).
pub const INITIAL_CREDENTIALS_KEY: &str = "initial";

/// The broker environment, mounts and volumes of the Cluster's listener security: TLS files
/// from the listener Secret for the Kafka listener and between brokers; SCRAM-SHA-512 logins
/// with the operator's credential seeded; the ACL authorizer with the operator a super user.
fn security(cluster: &ValidatedCluster) -> (Vec<EnvVar>, Vec<VolumeMount>, Vec<Volume>) {
    let security = &cluster.security;
    let (mut environment, mut mounts, mut volumes) = (Vec::new(), Vec::new(), Vec::new());
    let secret_volume = |name: &str, secret: String, items: Option<Vec<KeyToPath>>| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    if let Some(secret) = &security.tls_secret {
        volumes.push(secret_volume("tls", secret.clone(), None));
        mounts.push(mount("tls", TLS_DIR));
        for (name, file) in [
            ("FJORD_TLS_CERT", "tls.crt"),
            ("FJORD_TLS_KEY", "tls.key"),
            ("FJORD_CLUSTER_TLS_CERT", "tls.crt"),
            ("FJORD_CLUSTER_TLS_KEY", "tls.key"),
            ("FJORD_CLUSTER_TLS_CA", "ca.crt"),
        ] {
            environment.push(env(name, format!("{TLS_DIR}/{file}")));
        }
    }
    if let Some(port) = security.client_certificates {
        // The trusted CAs' certificates only: their keys stay with the operator.
        let items = vec![KeyToPath {
            key: "bundle.crt".into(),
            path: "ca.crt".into(),
            ..KeyToPath::default()
        }];
        volumes.push(secret_volume(
            "clients-ca",
            cluster.clients_ca_secret(),
            Some(items),
        ));
        mounts.push(mount("clients-ca", CLIENTS_CA_DIR));
        environment.push(env(
            "FJORD_TLS_CLIENT_CA",
            format!("{CLIENTS_CA_DIR}/ca.crt"),
        ));
        environment.push(env(
            "FJORD_LISTENERS",
            format!("{CLIENT_CERTIFICATES_LISTENER}:SSL://0.0.0.0:{port}"),
        ));
        environment.push(env(
            "FJORD_ADVERTISE_LISTENERS",
            format!(
                "{CLIENT_CERTIFICATES_LISTENER}://$(POD_NAME).{}.{}.svc:{port}",
                cluster.headless_service(),
                cluster.namespace
            ),
        ));
    }
    if security.scram {
        let items = vec![KeyToPath {
            key: INITIAL_CREDENTIALS_KEY.into(),
            path: INITIAL_CREDENTIALS_KEY.into(),
            ..KeyToPath::default()
        }];
        volumes.push(secret_volume(
            "operator-credentials",
            cluster.operator_credentials(),
            Some(items),
        ));
        mounts.push(mount("operator-credentials", CREDENTIALS_DIR));
        let mechanisms = if security.service_account_audience.is_some() {
            "SCRAM-SHA-512,OAUTHBEARER"
        } else {
            "SCRAM-SHA-512"
        };
        environment.push(env("FJORD_SASL_MECHANISMS", mechanisms));
        environment.push(env(
            "FJORD_INITIAL_SCRAM_CREDENTIALS",
            format!("{CREDENTIALS_DIR}/{INITIAL_CREDENTIALS_KEY}"),
        ));
    }
    if let Some(audience) = &security.service_account_audience {
        let keys = cluster.service_account_keys();
        volumes.push(Volume {
            name: "service-account-keys".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: keys.clone(),
                items: Some(vec![KeyToPath {
                    key: JWKS_KEY.into(),
                    path: JWKS_KEY.into(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("service-account-keys", SERVICE_ACCOUNT_KEYS_DIR));
        environment.push(env(
            "FJORD_OAUTH_JWKS_FILE",
            format!("{SERVICE_ACCOUNT_KEYS_DIR}/{JWKS_KEY}"),
        ));
        environment.push(EnvVar {
            name: "FJORD_OAUTH_ISSUER".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: keys,
                    key: ISSUER_KEY.into(),
                    ..ConfigMapKeySelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
        environment.push(env("FJORD_OAUTH_AUDIENCE", audience.clone()));
    }
    if let Some(super_users) = &security.acl {
        environment.push(env("FJORD_AUTHORIZER", "acl"));
        let operator = format!("User:{}", super::validate::OPERATOR_USER);
        let all: Vec<&str> = std::iter::once(operator.as_str())
            .chain(super_users.iter().map(String::as_str))
            .collect();
        // `;` between them: a certificate subject holds commas.
        environment.push(env("FJORD_SUPER_USERS", all.join(";")));
    }
    (environment, mounts, volumes)
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}
