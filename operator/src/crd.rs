//! The custom resources users write: `Cluster` and `Topic` in `fjord.dev/v1alpha1`. Their
//! OpenAPI schemas (and so `crds/`) are generated from these types; the controllers read them,
//! validate them into `Validated*` models and write their `status`.
//!
//! What the API server enforces on its own lives here as schema bounds and CEL rules, so a bad
//! manifest is refused by `kubectl apply` before any controller sees it: counts of at least one,
//! DNS-label zone names, partitions that never decrease, immutable storage.

// The `KubeSchema` derive re-declares each spec struct, `pub`, inside a private scope.
#![allow(unreachable_pub)]
// Repeated `printcolumn(...)` entries in `#[kube]` look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Fjord resource.
pub const GROUP: &str = "fjord.dev";

/// A Fjord cluster: brokers spread over availability zones, each with its own volume.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "fjc",
    shortname = "fjordcluster",
    category = "fjord",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Brokers",
        type_ = "integer",
        json_path = ".status.readyBrokers"
    ),
    printcolumn(
        name = "Controller",
        type_ = "integer",
        json_path = ".status.cluster.controller"
    ),
    printcolumn(
        name = "Under-replicated",
        type_ = "integer",
        json_path = ".status.cluster.underReplicatedPartitions"
    ),
    printcolumn(
        name = "Moving",
        type_ = "integer",
        priority = 1,
        json_path = ".status.cluster.reassigningPartitions"
    ),
    printcolumn(name = "Bootstrap", type_ = "string", json_path = ".status.bootstrap"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.replicas) || size(self.zones) == 0")
        .message("replicas is for a cluster without zones; with zones, set brokersPerZone"),
    validation = Rule::new("(size(self.zones) == 0) == (size(oldSelf.zones) == 0)").message(
        "a Cluster created without zones cannot gain them, nor lose all of them: that replaces every broker"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Availability zones (values of the nodes' `topology.kubernetes.io/zone` label). Each zone
    /// gets its own StatefulSet pinned to it, and its brokers report the zone as their rack.
    /// Empty: one StatefulSet, scheduled anywhere.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 32)))]
    #[schemars(inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub zones: Vec<String>,
    /// Brokers in each zone (default 1).
    #[schemars(range(min = 1, max = 100))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers_per_zone: Option<i32>,
    /// Brokers of a cluster without zones (default 1).
    #[schemars(range(min = 1, max = 100))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Broker image; defaults to the image of this operator's release.
    #[schemars(length(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The persistent volume each broker keeps its partitions on.
    pub storage: StorageSpec,
    /// CPU and memory for each broker container.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Broker settings by their Kafka names (e.g. `num.partitions`,
    /// `offsets.topic.num.partitions`, `auto.create.topics.enable`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Ports the brokers listen on, and how the Kafka listener is secured.
    #[serde(default)]
    pub listeners: ListenersSpec,
    /// How requests are authorised. Absent: every client may do everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,
}

/// Request authorisation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// `acl`: each request is checked against the ACLs (managed with `User` resources or the
    /// Kafka API); what no ACL allows is denied.
    #[serde(rename = "type")]
    pub kind: AuthorizationType,
    /// Principals allowed everything (Kafka's `super.users`), besides the operator's own.
    #[serde(default)]
    #[schemars(
        length(max = 100),
        inner(length(min = 6, max = 512), regex(pattern = r"^User:.+$"))
    )]
    pub super_users: Vec<String>,
}

/// See [`AuthorizationSpec::kind`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthorizationType {
    Acl,
}

/// TLS on the Kafka listener, and mutual TLS between brokers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// A Secret of type `kubernetes.io/tls` in the Cluster's namespace with `tls.crt`,
    /// `tls.key` and `ca.crt`: what a cert-manager Certificate writes. Its certificate must name
    /// the bootstrap Service and every broker pod (see the docs). Absent: the operator issues
    /// the certificate from a CA it keeps in Secret `<name>-ca`, into Secret `<name>-tls`, and
    /// renews it. The brokers re-read it when it is renewed, without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// How clients authenticate on the Kafka listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerAuthentication {
    /// `scram-sha-512`: clients log in with SCRAM-SHA-512 (SASL_SSL with `tls`,
    /// SASL_PLAINTEXT without); their credentials come from `User` resources.
    #[serde(rename = "type")]
    pub kind: ListenerAuthenticationType,
    /// Clients may also log in with a Kubernetes service-account token (OAUTHBEARER) minted
    /// for `audience`: Users of `authentication.type: serviceAccount`. The operator publishes
    /// the API server's token-signing keys to the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountLogins>,
}

/// Logins with service-account tokens.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountLogins {
    /// The audience a token must be minted for (a projected token's `audience`), so a token
    /// for another purpose is refused.
    #[serde(default = "default_audience")]
    #[schemars(length(min = 1, max = 253))]
    pub audience: String,
}

fn default_audience() -> String {
    "fjord".to_owned()
}

/// See [`ListenerAuthentication::kind`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ListenerAuthenticationType {
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

/// Each broker's volume. Neither its class nor its size can change after creation: a
/// StatefulSet's volume claim templates are immutable, and moving data between volumes is a
/// disruptive step of its own. (A size that never made a volume, not a quantity greater than
/// zero, can still be corrected.)
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(
    cel,
    validation = Rule::new(
        "(has(self.storageClassName) ? self.storageClassName : '') == \
         (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')"
    )
    .message("storageClassName is immutable"),
    // A size that is not a quantity greater than zero (accepted before the schema checked it)
    // never made a volume, so it may still be corrected.
    validation = Rule::new(
        "self.size == oldSelf.size || !isQuantity(string(oldSelf.size)) || \
         quantity(string(oldSelf.size)).sign() != 1"
    )
    .message("storage size is immutable: resizing broker volumes is not supported yet")
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, e.g. `100Gi`.
    #[schemars(extend("pattern" = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"))]
    #[x_kube(
        validation = Rule::new(
            "isQuantity(string(self)) && quantity(string(self)).sign() == 1"
        )
        .message("storage size must be a quantity greater than zero, such as 100Gi")
    )]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster's default class when left out.
    #[schemars(length(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Delete a removed broker's volume claim once its replicas have been drained off it
    /// (scale-in); by default the claim, and its data, are kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_claim: bool,
}

/// A Kubernetes quantity of at least zero (`2`, `500m`, `4Gi`, `1e3`): the API server's own
/// grammar, without the minus sign.
pub const NON_NEGATIVE_QUANTITY_PATTERN: &str =
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$";

/// `ResourceRequirements` as Kubernetes defines it, with the quantities of `limits` and
/// `requests` held to [`NON_NEGATIVE_QUANTITY_PATTERN`], so `cpu: lots` is refused by the API
/// server when the Cluster is applied, not when its StatefulSet is.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use schemars::JsonSchema as _;
    let mut schema = ResourceRequirements::json_schema(generator);
    for map in ["limits", "requests"] {
        if let Some(values) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(map))
            .and_then(|m| m.as_object_mut())
        {
            values.insert(
                "additionalProperties".into(),
                serde_json::json!({
                    "description": "A quantity of at least zero, e.g. `500m`, `2` or `4Gi`.",
                    "pattern": NON_NEGATIVE_QUANTITY_PATTERN,
                    "x-kubernetes-int-or-string": true,
                }),
            );
        }
    }
    schema.insert("nullable".into(), true.into());
    schema
}

/// Listener ports and security.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.tls) == has(oldSelf.tls)",
        "message": "listeners.tls is chosen when the Cluster is created: brokers with and without TLS between them cannot form one cluster during a rolling restart"
    },
    {
        "rule": "!has(self.clientCertificates) || (has(self.tls) && has(self.authentication))",
        "message": "listeners.clientCertificates needs listeners.tls and listeners.authentication"
    },
    {
        "rule": "has(self.authentication) == has(oldSelf.authentication)",
        "message": "listeners.authentication is chosen when the Cluster is created: the brokers take the operator's credential only when the cluster first forms"
    }
]))]
pub struct ListenersSpec {
    /// Kafka protocol port (clients and the bootstrap Service).
    #[serde(default = "default_kafka_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka_port: i32,
    /// Controller quorum port (the `--voters` addresses).
    #[serde(default = "default_controller_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub controller_port: i32,
    /// HTTP admin port: probes, `/metrics`, `/v1/status`.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
    /// TLS on the Kafka listener (and mutual TLS between brokers). Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// How clients log in. Absent: they do not (every client is `User:ANONYMOUS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
    /// A second Kafka listener for clients that present a certificate (Users with
    /// `authentication.type: tls`), signed by a clients CA the operator keeps in Secret
    /// `<name>-clients-ca`; the certificate names the client. Needs `tls` and `authentication`
    /// (the Kafka port stays the login port, which the operator itself uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<ClientCertificates>,
}

/// The listener for clients with certificates.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificates {
    /// Its port, on every broker and the bootstrap Service.
    #[serde(default = "default_client_certificates_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn default_client_certificates_port() -> i32 {
    9094
}

fn default_kafka_port() -> i32 {
    9092
}

fn default_controller_port() -> i32 {
    9093
}

fn default_admin_port() -> i32 {
    9644
}

impl Default for ListenersSpec {
    fn default() -> Self {
        Self {
            kafka_port: default_kafka_port(),
            controller_port: default_controller_port(),
            admin_port: default_admin_port(),
            tls: None,
            authentication: None,
            client_certificates: None,
        }
    }
}

/// What the operator last saw of a Cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Brokers passing their readiness probe.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Brokers the spec asks for.
    #[serde(default)]
    pub brokers: i32,
    /// Per zone (or one entry named `default` without zones).
    #[serde(default)]
    pub zones: Vec<ZoneStatus>,
    /// `host:port` for clients inside the cluster.
    pub bootstrap: Option<String>,
    /// The first node id of every StatefulSet this Cluster has had, by StatefulSet name, kept
    /// after its zone is removed: a removed zone's node ids (and the volumes named after them)
    /// are never given to another zone, and the zone gets them back if it returns.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_id_ranges: BTreeMap<String, i32>,
    /// The brokers' own view, from a Ready broker's admin API (absent while none answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<BrokersStatus>,
}

/// What the brokers report about the cluster they form.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokersStatus {
    /// The node id of the metadata quorum's leader (the controller), -1 while there is none.
    pub controller: i32,
    /// Partitions with fewer in-sync replicas than replicas.
    pub under_replicated_partitions: i64,
    /// Partitions without a leader.
    pub offline_partitions: i64,
    /// Partitions being moved (reassignments, drains, the balancer).
    pub reassigning_partitions: i64,
    /// Whether the balancer is running.
    pub balancing: bool,
    /// Each registered broker: `active`, `leadership_drained`, `draining`, `drained` or `fenced`,
    /// with its replicas and leaderships.
    #[serde(default)]
    pub brokers: Vec<BrokerEntry>,
}

/// One registered broker, as the brokers report it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerEntry {
    pub id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub state: String,
    pub replicas: i64,
    pub leaders: i64,
}

/// Brokers of one zone.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    pub name: String,
    pub brokers: i32,
    pub ready_brokers: i32,
}

/// A Kafka topic of a `Cluster` in the same namespace. The spec is the source of truth: a
/// config key removed from it returns to the broker's default.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "fjt",
    shortname = "fjordtopic",
    category = "fjord",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.partitions"
    ),
    printcolumn(
        name = "Replication",
        type_ = "integer",
        json_path = ".spec.replicationFactor"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new(
        "(has(self.topicName) ? self.topicName : '') == \
         (has(oldSelf.topicName) ? oldSelf.topicName : '')"
    )
    .message("topicName is immutable: create a new Topic instead")
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Name of the `Cluster` (same namespace) the topic lives in.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: String,
    /// Kafka topic name; defaults to `metadata.name`.
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Number of partitions. Kafka cannot remove partitions, so it can only grow.
    #[schemars(range(min = 1, max = 100000))]
    #[x_kube(
        validation = Rule::new("self >= oldSelf")
            .message("partitions can only grow: Kafka cannot remove a partition")
    )]
    pub partitions: i32,
    /// Copies of each partition (default 1). A change reassigns the partitions: the brokers copy
    /// them to new replicas before dropping any; below `min.insync.replicas` is refused.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: i32,
    /// Topic configs by their Kafka names (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// What deleting this resource does to the topic: `Retain` (default) keeps it and its data;
    /// `Delete` deletes the topic from the cluster.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_replication_factor() -> i32 {
    1
}

/// See [`TopicSpec::deletion_policy`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    Delete,
    #[default]
    Retain,
}

/// What the operator last saw of a Topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// `Ready`, with the reason when it is not.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The Kafka topic name.
    pub topic_name: Option<String>,
    /// The topic id the brokers gave it.
    pub topic_id: Option<String>,
    /// Partitions the topic has on the brokers.
    pub partitions: Option<i32>,
}

/// A client of a `Cluster` in the same namespace: how it authenticates and what its ACLs allow
/// it (the brokers' `--authorizer acl` enforces them). Deleting the User removes its
/// credential and its ACLs from the cluster, and its Secret with it.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "User",
    namespaced,
    status = "UserStatus",
    shortname = "fju",
    shortname = "fjorduser",
    category = "fjord",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(
        name = "Authentication",
        type_ = "string",
        json_path = ".spec.authentication.type"
    ),
    printcolumn(name = "Principal", type_ = "string", json_path = ".status.principal"),
    printcolumn(name = "ACLs", type_ = "integer", json_path = ".status.acls"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// Name of the `Cluster` (same namespace) the user is a client of.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: String,
    /// How the user proves who it is; the principal its ACLs name follows from it.
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("authentication is immutable: create a new User instead")
    )]
    pub authentication: UserAuthentication,
    /// What the user may do. Without any, it may do nothing (the brokers deny what no ACL
    /// allows).
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub acls: Vec<AclRule>,
}

/// How a User authenticates.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.type == 'serviceAccount' ? has(self.serviceAccount) : !has(self.serviceAccount)",
    "message": "serviceAccount is set exactly when type is serviceAccount"
}]))]
pub struct UserAuthentication {
    /// `scram-sha-512`: the operator generates a password into a Secret named after the User
    /// (`username`, `password`, `sasl.jaas.config`) and sets the credential on the cluster; the
    /// principal is `User:<metadata.name>`. `tls`: the operator issues a client certificate
    /// for `CN=<metadata.name>` from the Cluster's clients CA into a Secret named after the
    /// User (`tls.crt`, `tls.key`, and `ca.crt` to trust the brokers by); clients present it
    /// on the Cluster's `listeners.clientCertificates` port, as `User:CN=<metadata.name>`.
    /// `serviceAccount`: no secret at all; pods running as
    /// the ServiceAccount log in with its token (OAUTHBEARER), as
    /// `User:system:serviceaccount:<namespace>:<serviceAccount>`.
    #[serde(rename = "type")]
    pub kind: AuthenticationType,
    /// The ServiceAccount (same namespace), for `type: serviceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account: Option<String>,
}

/// See [`UserAuthentication::kind`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "tls")]
    Tls,
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
}

/// One ACL rule: `operations` on a resource, allowed (or denied) from `host`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    pub resource: AclResource,
    /// Kafka operations, e.g. `[Read, Describe]`.
    #[schemars(length(min = 1, max = 11))]
    pub operations: Vec<AclOperation>,
    /// The client address the rule applies to; `*` (default) for any.
    #[serde(default = "any_host")]
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// `allow` (default) or `deny`; a deny wins over any allow.
    #[serde(default, rename = "type")]
    pub permission: AclPermission,
}

fn any_host() -> String {
    "*".to_owned()
}

/// The resource an ACL rule is about.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.type == 'cluster' ? !has(self.name) : has(self.name)",
    "message": "name is set for every resource type but cluster"
}]))]
pub struct AclResource {
    #[serde(rename = "type")]
    pub kind: AclResourceType,
    /// The resource's name, `*` for every one, or with `patternType: prefix` a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub name: Option<String>,
    /// `literal` (default): the name itself (or `*`); `prefix`: every name starting with it.
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

/// See [`AclResource::kind`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// See [`AclResource::pattern_type`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPatternType {
    #[default]
    Literal,
    Prefix,
}

/// Kafka's ACL operations.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

/// See [`AclRule::permission`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPermission {
    #[default]
    Allow,
    Deny,
}

/// What the operator last saw of a User.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// `Ready`, with the reason when it is not.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The principal the cluster knows the user by (what its ACLs name).
    pub principal: Option<String>,
    /// The Secret holding the user's credentials (`scram-sha-512`).
    pub secret: Option<String>,
    /// The ACL bindings the user has on the cluster.
    pub acls: Option<i32>,
    /// The `resourceVersion` of the Secret whose password the cluster's credential was last
    /// set from: a Secret changed since (a rotated password) sets it again.
    pub credential_secret_version: Option<String>,
}
