//! Cluster reconcile, step 2: the raw `Cluster` checked into a [`ValidatedCluster`] (pure). The
//! builders read only this model, never the raw resource, so every default and every derived
//! name (StatefulSets, node ids, the voter set) is decided once, here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::crd::Cluster;

/// Node ids of zone `i` start at `i * NODE_ID_STRIDE` (the StatefulSet's `ordinals.start`), so
/// they stay unique across zones and stable when a zone grows.
pub const NODE_ID_STRIDE: i32 = 100;

/// Controller quorum size: three voters (one per zone when there are three zones) survive the
/// loss of any one zone.
const VOTERS: usize = 3;

/// Pod names are DNS labels (63 characters) and a StatefulSet name must leave room for the
/// `controller-revision-hash` label value (`<name>-<hash>`, 63 characters).
const MAX_STATEFULSET_NAME: usize = 52;

/// Broker settings a Cluster's `config` may set, by their Kafka names, with the broker's
/// environment variable and the values it accepts.
pub const BROKER_CONFIGS: &[BrokerConfigKey] = &[
    BrokerConfigKey::new(
        "auto.create.topics.enable",
        "FJORD_AUTO_CREATE_TOPICS",
        Kind::Bool,
    ),
    BrokerConfigKey::new(
        "num.partitions",
        "FJORD_DEFAULT_PARTITIONS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "default.replication.factor",
        "FJORD_DEFAULT_REPLICATION_FACTOR",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "replica.lag.time.max.ms",
        "FJORD_REPLICA_LAG_TIME_MAX_MS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "socket.request.max.bytes",
        "FJORD_MAX_REQUEST_BYTES",
        Kind::Int { min: 1024 },
    ),
    BrokerConfigKey::new(
        "max.connections",
        "FJORD_MAX_CONNECTIONS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "log.cleaner.backoff.ms",
        "FJORD_LOG_CLEANER_BACKOFF_MS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "offsets.topic.num.partitions",
        "FJORD_OFFSETS_TOPIC_PARTITIONS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "offsets.topic.replication.factor",
        "FJORD_OFFSETS_TOPIC_REPLICATION_FACTOR",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "offsets.commit.timeout.ms",
        "FJORD_OFFSETS_COMMIT_TIMEOUT_MS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "offsets.topic.segment.bytes",
        "FJORD_OFFSETS_TOPIC_SEGMENT_BYTES",
        Kind::Int { min: 1024 },
    ),
    BrokerConfigKey::new(
        "offsets.retention.minutes",
        "FJORD_OFFSETS_RETENTION_MINUTES",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "offsets.retention.check.interval.ms",
        "FJORD_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "group.initial.rebalance.delay.ms",
        "FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS",
        Kind::Int { min: 0 },
    ),
    BrokerConfigKey::new(
        "group.min.session.timeout.ms",
        "FJORD_GROUP_MIN_SESSION_TIMEOUT_MS",
        Kind::Int { min: 1 },
    ),
    BrokerConfigKey::new(
        "group.max.session.timeout.ms",
        "FJORD_GROUP_MAX_SESSION_TIMEOUT_MS",
        Kind::Int { min: 1 },
    ),
];

/// One entry of [`BROKER_CONFIGS`].
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfigKey {
    pub kafka_name: &'static str,
    pub env: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int { min: i64 },
}

impl BrokerConfigKey {
    const fn new(kafka_name: &'static str, env: &'static str, kind: Kind) -> Self {
        Self {
            kafka_name,
            env,
            kind,
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match self.kind {
            Kind::Bool => matches!(value, "true" | "false"),
            Kind::Int { min } => value.parse::<i64>().is_ok_and(|v| v >= min),
        }
    }

    fn expected(&self) -> String {
        match self.kind {
            Kind::Bool => "true or false".to_owned(),
            Kind::Int { min } => format!("an integer >= {min}"),
        }
    }
}

/// A Cluster spec the operator cannot build. Reported as `Ready=False, reason=InvalidSpec`;
/// the controller waits for the spec to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the Cluster has no {0}")]
    MissingMetadata(&'static str),
    #[error(
        "Cluster name '{0}' cannot name Services: use lowercase letters, digits and '-', starting with a letter"
    )]
    InvalidName(String),
    #[error(
        "Cluster name '{name}' is {length} characters long, more than the {max} its StatefulSets' names may have: use a shorter name"
    )]
    ClusterNameTooLong {
        name: String,
        length: usize,
        max: usize,
    },
    #[error("set either zones with brokersPerZone, or replicas without zones, not both")]
    ReplicasWithZones,
    #[error(
        "authorization needs listeners.authentication: without logins every client is User:ANONYMOUS, the operator as much as any other"
    )]
    AuthorizationWithoutAuthentication,
    #[error("zone '{0}' is listed twice")]
    DuplicateZone(String),
    #[error("{field} must be at least 1, got {value}")]
    NotPositive { field: &'static str, value: i32 },
    #[error("{field} must be at most {max}, got {value}")]
    TooLarge {
        field: &'static str,
        value: i32,
        max: i32,
    },
    #[error(
        "StatefulSet name '{name}' is longer than {max} characters: shorten the Cluster or zone name"
    )]
    NameTooLong { name: String, max: usize },
    #[error("config '{key}' is not a broker setting this operator knows (known: {known})")]
    UnknownConfig { key: String, known: String },
    #[error("config '{key}' is '{value}', expected {expected}")]
    ConfigValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("{field} is '{value}', expected {expected}")]
    Quantity {
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("listener ports must differ, {0} is used twice")]
    PortClash(i32),
    #[error("listeners.clientCertificates needs listeners.tls and listeners.authentication")]
    ClientCertificatesWithoutTls,
    #[error(
        "listeners.authentication.serviceAccounts needs authorization.type acl: any pod can \
         mint a service-account token, so without ACLs any pod could do everything"
    )]
    ServiceAccountsWithoutAuthorization,
}

/// A Cluster the builders can turn into objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// One per StatefulSet, in spec order.
    pub zones: Vec<ValidatedZone>,
    pub image: String,
    pub storage_size: Quantity,
    pub storage_class: Option<String>,
    /// Delete a removed broker's volume claim after its drain.
    pub delete_claim: bool,
    pub resources: Option<ResourceRequirements>,
    /// The broker's environment from `spec.config` (`FJORD_*` name -> value).
    pub broker_env: BTreeMap<String, String>,
    pub ports: Ports,
    /// `id@host:port` entries of the controller quorum.
    pub voters: Vec<String>,
    pub security: ClusterSecurity,
}

/// How a Cluster's listeners are secured and its requests authorised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSecurity {
    /// The Secret with `tls.crt`, `tls.key` and `ca.crt`, when the brokers speak TLS.
    pub tls_secret: Option<String>,
    /// The operator issues that Secret's certificate (the spec names no Secret).
    pub tls_issued: bool,
    /// Clients log in with SCRAM-SHA-512.
    pub scram: bool,
    /// ACL authorisation, with these super users besides the operator.
    pub acl: Option<Vec<String>>,
    /// The port of the listener for clients with certificates, when there is one.
    pub client_certificates: Option<i32>,
    /// The audience of service-account tokens clients may also log in with (OAUTHBEARER).
    pub service_account_audience: Option<String>,
}

/// The SCRAM user the operator logs in as, on a Cluster whose clients log in.
pub const OPERATOR_USER: &str = "fjord-operator";

/// Checks the listener and authorisation settings together.
fn security(name: &str, spec: &crate::crd::ClusterSpec) -> Result<ClusterSecurity, SpecError> {
    let scram = spec.listeners.authentication.is_some();
    let acl = spec.authorization.as_ref().map(|a| a.super_users.clone());
    if acl.is_some() && !scram {
        return Err(SpecError::AuthorizationWithoutAuthentication);
    }
    let service_accounts = spec
        .listeners
        .authentication
        .as_ref()
        .and_then(|a| a.service_accounts.as_ref());
    // Every pod of the Kubernetes cluster can mint a token for any audience: without ACLs, every
    // one of them could do everything.
    if service_accounts.is_some() && acl.is_none() {
        return Err(SpecError::ServiceAccountsWithoutAuthorization);
    }
    let tls = spec.listeners.tls.as_ref();
    Ok(ClusterSecurity {
        tls_secret: tls.map(|t| {
            t.secret_name
                .clone()
                .unwrap_or_else(|| issued_tls_secret(name))
        }),
        tls_issued: tls.is_some_and(|t| t.secret_name.is_none()),
        scram,
        acl,
        client_certificates: spec.listeners.client_certificates.as_ref().map(|c| c.port),
        service_account_audience: spec
            .listeners
            .authentication
            .as_ref()
            .and_then(|a| a.service_accounts.as_ref())
            .map(|s| s.audience.clone()),
    })
}

/// The Secret the operator keeps a Cluster's clients CA in.
pub fn clients_ca_secret(cluster: &str) -> String {
    format!("{cluster}-clients-ca")
}

/// The Secret the operator issues a Cluster's brokers' certificate into.
pub fn issued_tls_secret(cluster: &str) -> String {
    format!("{cluster}-tls")
}

/// One zone's StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedZone {
    /// The `topology.kubernetes.io/zone` value; `None` for a cluster without zones.
    pub zone: Option<String>,
    pub statefulset: String,
    pub first_node_id: i32,
    pub brokers: i32,
}

impl ValidatedZone {
    /// The name `status.zones` and the pods' `fjord.dev/zone` label use.
    pub fn label(&self) -> &str {
        self.zone.as_deref().unwrap_or("default")
    }

    pub fn pod_name(&self, node_id: i32) -> String {
        format!("{}-{node_id}", self.statefulset)
    }
}

/// Listener ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub kafka: i32,
    pub controller: i32,
    pub admin: i32,
}

impl ValidatedCluster {
    pub fn headless_service(&self) -> String {
        format!("{}-brokers", self.name)
    }

    pub fn bootstrap_service(&self) -> String {
        format!("{}-bootstrap", self.name)
    }

    pub fn config_map(&self) -> String {
        format!("{}-config", self.name)
    }

    pub fn service_account(&self) -> String {
        format!("{}-broker", self.name)
    }

    /// The Secret the operator keeps the Cluster's CA in (certificate and key).
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.name)
    }

    /// The Secret the operator keeps the CA of client certificates in (certificate and key).
    pub fn clients_ca_secret(&self) -> String {
        clients_ca_secret(&self.name)
    }

    /// The ConfigMap the operator publishes the API server's service-account issuer and
    /// token-signing keys in, for the brokers.
    pub fn service_account_keys(&self) -> String {
        format!("{}-service-account-keys", self.name)
    }

    /// The Secret the operator issues the brokers' certificate into.
    pub fn tls_secret(&self) -> String {
        issued_tls_secret(&self.name)
    }

    /// The Secret the operator keeps its own SCRAM password in, and the brokers the initial
    /// credential made from it (`--initial-scram-credentials`).
    pub fn operator_credentials(&self) -> String {
        format!("{}-operator-credentials", self.name)
    }

    /// `host:port` clients in the cluster bootstrap from.
    pub fn bootstrap_address(&self) -> String {
        bootstrap_address(&self.name, &self.namespace, self.ports.kafka)
    }

    /// The stable DNS name of a broker pod, through the headless Service.
    pub fn pod_host(&self, pod: &str) -> String {
        format!("{pod}.{}.{}.svc", self.headless_service(), self.namespace)
    }

    pub fn brokers(&self) -> i32 {
        self.zones.iter().map(|z| z.brokers).sum()
    }
}

/// The bootstrap Service's address of Cluster `name` (what clients and the Topic controller
/// connect to).
pub fn bootstrap_address(name: &str, namespace: &str, kafka_port: i32) -> String {
    format!("{name}-bootstrap.{namespace}.svc:{kafka_port}")
}

/// Checks `cluster` and derives everything the builders need, for a Cluster with no
/// StatefulSets yet (zone *i* gets node ids from `100·i`). `default_image` is the broker image
/// used when the spec names none.
pub fn validate_cluster(
    cluster: &Cluster,
    default_image: &str,
) -> Result<ValidatedCluster, SpecError> {
    validate_cluster_with(cluster, default_image, &BTreeMap::new())
}

/// As [`validate_cluster`], keeping the node ids of zones whose StatefulSets exist:
/// `existing` maps a StatefulSet name to its `ordinals.start`. A zone keeps its node ids (and so
/// its brokers' identities and volumes) when zones before it are removed; a new zone takes the
/// first free range, preferring its position.
pub fn validate_cluster_with(
    cluster: &Cluster,
    default_image: &str,
    existing: &BTreeMap<String, i32>,
) -> Result<ValidatedCluster, SpecError> {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    let namespace = cluster
        .namespace()
        .ok_or(SpecError::MissingMetadata("namespace"))?;
    let uid = cluster.uid().ok_or(SpecError::MissingMetadata("uid"))?;
    // Services are named after the Cluster and need DNS-1035 labels, stricter than the
    // subdomain a resource name may be.
    let label = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !label {
        return Err(SpecError::InvalidName(name));
    }
    if name.len() > MAX_STATEFULSET_NAME {
        return Err(SpecError::ClusterNameTooLong {
            length: name.len(),
            max: MAX_STATEFULSET_NAME,
            name,
        });
    }

    let per_zone = positive("brokersPerZone", spec.brokers_per_zone.unwrap_or(1))?;
    let replicas = positive("replicas", spec.replicas.unwrap_or(1))?;
    let zones = if spec.zones.is_empty() {
        vec![ValidatedZone {
            zone: None,
            statefulset: format!("{name}-broker"),
            first_node_id: 0,
            brokers: at_most("replicas", replicas, NODE_ID_STRIDE)?,
        }]
    } else {
        if spec.replicas.is_some() {
            return Err(SpecError::ReplicasWithZones);
        }
        let per_zone = at_most("brokersPerZone", per_zone, NODE_ID_STRIDE)?;
        let mut zones = Vec::with_capacity(spec.zones.len());
        for (index, zone) in spec.zones.iter().enumerate() {
            if spec.zones[..index].contains(zone) {
                return Err(SpecError::DuplicateZone(zone.clone()));
            }
            let statefulset = format!("{name}-{zone}");
            zones.push(ValidatedZone {
                zone: Some(zone.clone()),
                first_node_id: existing.get(&statefulset).copied().unwrap_or(-1),
                statefulset,
                brokers: per_zone,
            });
        }
        // New zones: their position's range if free, else the first free one. Ranges of
        // StatefulSets still present (a removed zone not yet deleted) are not reused.
        let mut taken: Vec<i32> = existing.values().copied().collect();
        taken.extend(zones.iter().map(|z| z.first_node_id).filter(|b| *b >= 0));
        for (index, zone) in zones.iter_mut().enumerate() {
            if zone.first_node_id >= 0 {
                continue;
            }
            let preferred = i32::try_from(index)
                .unwrap_or(i32::MAX)
                .saturating_mul(NODE_ID_STRIDE);
            let base = std::iter::once(preferred)
                .chain((0..).map(|i: i32| i.saturating_mul(NODE_ID_STRIDE)))
                .find(|b| !taken.contains(b))
                .unwrap_or(preferred);
            taken.push(base);
            zone.first_node_id = base;
        }
        zones
    };
    if let Some(zone) = zones
        .iter()
        .find(|z| z.statefulset.len() > MAX_STATEFULSET_NAME)
    {
        return Err(SpecError::NameTooLong {
            name: zone.statefulset.clone(),
            max: MAX_STATEFULSET_NAME,
        });
    }

    let listeners = &spec.listeners;
    let ports = Ports {
        kafka: listeners.kafka_port,
        controller: listeners.controller_port,
        admin: listeners.admin_port,
    };
    if ports.kafka == ports.controller || ports.kafka == ports.admin {
        return Err(SpecError::PortClash(ports.kafka));
    }
    if ports.controller == ports.admin {
        return Err(SpecError::PortClash(ports.controller));
    }
    if let Some(port) = listeners.client_certificates.as_ref().map(|c| c.port) {
        if [ports.kafka, ports.controller, ports.admin].contains(&port) {
            return Err(SpecError::PortClash(port));
        }
        if listeners.tls.is_none() || listeners.authentication.is_none() {
            return Err(SpecError::ClientCertificatesWithoutTls);
        }
    }

    // Quantities are checked before anything is applied: the API server refuses a StatefulSet
    // with a malformed or negative one only after the Services and ConfigMap went out.
    if quantity_sign(&spec.storage.size.0) != Some(1) {
        return Err(SpecError::Quantity {
            field: "storage.size".into(),
            value: spec.storage.size.0.clone(),
            expected: POSITIVE_QUANTITY,
        });
    }
    if let Some(resources) = &spec.resources {
        for (kind, quantities) in [
            ("limits", &resources.limits),
            ("requests", &resources.requests),
        ] {
            for (resource, quantity) in quantities.iter().flatten() {
                if quantity_sign(&quantity.0).is_none_or(|sign| sign < 0) {
                    return Err(SpecError::Quantity {
                        field: format!("resources.{kind}.{resource}"),
                        value: quantity.0.clone(),
                        expected: NON_NEGATIVE_QUANTITY,
                    });
                }
            }
        }
    }

    let mut broker_env = BTreeMap::new();
    for (key, value) in &spec.config {
        let known = BROKER_CONFIGS
            .iter()
            .find(|c| c.kafka_name == key)
            .ok_or_else(|| SpecError::UnknownConfig {
                key: key.clone(),
                known: BROKER_CONFIGS
                    .iter()
                    .map(|c| c.kafka_name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if !known.accepts(value) {
            return Err(SpecError::ConfigValue {
                key: key.clone(),
                value: value.clone(),
                expected: known.expected(),
            });
        }
        broker_env.insert(known.env.to_owned(), value.clone());
    }

    let security = security(&name, spec)?;
    let mut validated = ValidatedCluster {
        name,
        namespace,
        uid,
        generation: cluster.metadata.generation,
        zones,
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| default_image.to_owned()),
        storage_size: spec.storage.size.clone(),
        storage_class: spec.storage.storage_class_name.clone(),
        delete_claim: spec.storage.delete_claim,
        resources: spec.resources.clone(),
        broker_env,
        ports,
        voters: Vec::new(),
        security,
    };
    validated.voters = voters(&validated);
    Ok(validated)
}

/// The first broker of each zone in turn, then the second of each, ... until [`VOTERS`]
/// (or every broker, in a smaller cluster).
fn voters(cluster: &ValidatedCluster) -> Vec<String> {
    let wanted = VOTERS.min(usize::try_from(cluster.brokers()).unwrap_or(0));
    let mut voters = Vec::with_capacity(wanted);
    'rounds: for round in 0.. {
        for zone in &cluster.zones {
            if voters.len() == wanted {
                break 'rounds;
            }
            if round < zone.brokers {
                let node_id = zone.first_node_id + round;
                let host = cluster.pod_host(&zone.pod_name(node_id));
                voters.push(format!("{node_id}@{host}:{}", cluster.ports.controller));
            }
        }
    }
    voters
}

const POSITIVE_QUANTITY: &str = "a quantity greater than zero, such as 100Gi";
const NON_NEGATIVE_QUANTITY: &str = "a quantity of at least zero, such as 500m, 2 or 4Gi";

/// The sign (-1, 0 or 1) of a Kubernetes quantity (`<signedNumber><suffix>`, suffixes `Ki` ..
/// `Ei`, `m` .. `E` or an exponent `e<n>`), or `None` when `text` is not one.
pub fn quantity_sign(text: &str) -> Option<i8> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let exponent = |s: &str| {
        let s = s.strip_prefix(['+', '-']).unwrap_or(s);
        !s.is_empty() && digits(s)
    };
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix.strip_prefix(['e', 'E']).is_some_and(exponent);
    if !suffix_ok {
        return None;
    }
    let zero = whole.bytes().chain(fraction.bytes()).all(|b| b == b'0');
    Some(match (zero, negative) {
        (true, _) => 0,
        (false, true) => -1,
        (false, false) => 1,
    })
}

fn positive(field: &'static str, value: i32) -> Result<i32, SpecError> {
    if value < 1 {
        return Err(SpecError::NotPositive { field, value });
    }
    Ok(value)
}

fn at_most(field: &'static str, value: i32, max: i32) -> Result<i32, SpecError> {
    if value > max {
        return Err(SpecError::TooLarge { field, value, max });
    }
    Ok(value)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crd::{ClusterSpec, ListenersSpec, StorageSpec};

    pub(crate) fn cluster(zones: &[&str], per_zone: Option<i32>) -> Cluster {
        let mut cluster = Cluster::new(
            "events",
            ClusterSpec {
                zones: zones.iter().map(|z| (*z).to_owned()).collect(),
                brokers_per_zone: per_zone,
                replicas: None,
                image: None,
                storage: StorageSpec {
                    size: Quantity("10Gi".into()),
                    storage_class_name: None,
                    delete_claim: false,
                },
                resources: None,
                config: BTreeMap::new(),
                listeners: ListenersSpec::default(),
                authorization: None,
            },
        );
        cluster.metadata.namespace = Some("streaming".into());
        cluster.metadata.uid = Some("0b7c".into());
        cluster
    }

    #[test]
    fn authorization_needs_logins_and_the_security_follows_the_spec() {
        use crate::crd::{AuthorizationSpec, AuthorizationType};
        let mut secured = cluster(&["a"], None);
        secured.spec.authorization = Some(AuthorizationSpec {
            kind: AuthorizationType::Acl,
            super_users: vec!["User:ops".into()],
        });
        assert!(matches!(
            validate_cluster(&secured, "img"),
            Err(SpecError::AuthorizationWithoutAuthentication)
        ));
        secured.spec.listeners.authentication = Some(crate::crd::ListenerAuthentication {
            kind: crate::crd::ListenerAuthenticationType::ScramSha512,
            service_accounts: None,
        });
        secured.spec.listeners.tls = Some(crate::crd::ListenerTls {
            secret_name: Some("events-tls".into()),
        });
        let validated = validate_cluster(&secured, "img").unwrap();
        assert_eq!(
            validated.security,
            ClusterSecurity {
                tls_secret: Some("events-tls".into()),
                tls_issued: false,
                scram: true,
                acl: Some(vec!["User:ops".into()]),
                client_certificates: None,
                service_account_audience: None,
            }
        );
        assert_eq!(
            validated.operator_credentials(),
            "events-operator-credentials"
        );
    }

    #[test]
    fn zones_get_their_own_statefulsets_and_disjoint_node_ids() {
        let validated = validate_cluster(&cluster(&["a", "b", "c"], Some(2)), "img").unwrap();
        let ids: Vec<Vec<i32>> = validated
            .zones
            .iter()
            .map(|z| (z.first_node_id..z.first_node_id + z.brokers).collect())
            .collect();
        assert_eq!(ids, vec![vec![0, 1], vec![100, 101], vec![200, 201]]);
        assert_eq!(validated.zones[1].statefulset, "events-b");
        assert_eq!(validated.brokers(), 6);
        // One voter per zone.
        assert_eq!(
            validated.voters,
            vec![
                "0@events-a-0.events-brokers.streaming.svc:9093",
                "100@events-b-100.events-brokers.streaming.svc:9093",
                "200@events-c-200.events-brokers.streaming.svc:9093",
            ]
        );
        assert_eq!(
            validated.bootstrap_address(),
            "events-bootstrap.streaming.svc:9092"
        );
    }

    #[test]
    fn zones_keep_their_node_ids_when_zones_before_them_go() {
        // a, b, c exist at 0, 100, 200; the spec drops a and adds d.
        let existing = BTreeMap::from([
            ("events-a".to_owned(), 0),
            ("events-b".to_owned(), 100),
            ("events-c".to_owned(), 200),
        ]);
        let validated =
            validate_cluster_with(&cluster(&["b", "c", "d"], Some(1)), "img", &existing).unwrap();
        let bases: Vec<(String, i32)> = validated
            .zones
            .iter()
            .map(|z| (z.label().to_owned(), z.first_node_id))
            .collect();
        // d cannot take 0 while events-a (being removed) still exists: it takes 300.
        assert_eq!(
            bases,
            [("b".into(), 100), ("c".into(), 200), ("d".into(), 300)]
        );
        // Once events-a is gone, a new zone may reuse its range.
        let existing = BTreeMap::from([("events-b".to_owned(), 100)]);
        let validated =
            validate_cluster_with(&cluster(&["b", "e"], Some(1)), "img", &existing).unwrap();
        assert_eq!(validated.zones[1].first_node_id, 0);
    }

    #[test]
    fn small_clusters_vote_with_every_broker() {
        let one = validate_cluster(&cluster(&[], None), "img").unwrap();
        assert_eq!(
            one.voters,
            vec!["0@events-broker-0.events-brokers.streaming.svc:9093"]
        );
        let two_zones = validate_cluster(&cluster(&["a", "b"], Some(2)), "img").unwrap();
        assert_eq!(
            two_zones.voters,
            vec![
                "0@events-a-0.events-brokers.streaming.svc:9093",
                "100@events-b-100.events-brokers.streaming.svc:9093",
                "1@events-a-1.events-brokers.streaming.svc:9093",
            ]
        );
    }

    #[test]
    fn config_keys_map_to_broker_flags_and_bad_ones_are_named() {
        let mut good = cluster(&[], None);
        good.spec.config = BTreeMap::from([
            ("num.partitions".to_owned(), "6".to_owned()),
            ("auto.create.topics.enable".to_owned(), "false".to_owned()),
        ]);
        let validated = validate_cluster(&good, "img").unwrap();
        assert_eq!(validated.broker_env["FJORD_DEFAULT_PARTITIONS"], "6");
        assert_eq!(validated.broker_env["FJORD_AUTO_CREATE_TOPICS"], "false");

        let mut unknown = cluster(&[], None);
        unknown.spec.config = BTreeMap::from([("log.dirs".to_owned(), "/x".to_owned())]);
        let error = validate_cluster(&unknown, "img").unwrap_err();
        assert!(matches!(&error, SpecError::UnknownConfig { key, .. } if key == "log.dirs"));

        let mut bad_value = cluster(&[], None);
        bad_value.spec.config = BTreeMap::from([("num.partitions".to_owned(), "0".to_owned())]);
        assert_eq!(
            validate_cluster(&bad_value, "img").unwrap_err().to_string(),
            "config 'num.partitions' is '0', expected an integer >= 1"
        );
    }

    #[test]
    fn every_config_key_sets_a_real_broker_flag() {
        use clap::Args;
        let broker = fjord_broker::BrokerConfig::augment_args(clap::Command::new("fjord-broker"));
        let envs: Vec<String> = broker
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        assert!(envs.len() > 10, "{envs:?}");
        for key in BROKER_CONFIGS {
            assert!(
                envs.iter().any(|e| e == key.env),
                "{} has no broker flag",
                key.env
            );
        }
        // Nor may a Cluster's config override what the operator sets per pod.
        for owned in [
            "FJORD_NODE_ID",
            "FJORD_VOTERS",
            "FJORD_DATA_DIR",
            "FJORD_ADVERTISE",
        ] {
            assert!(BROKER_CONFIGS.iter().all(|k| k.env != owned));
        }
    }

    #[test]
    fn quantities_follow_the_kubernetes_grammar() {
        for good in [
            "100Gi", "1", "0.5", ".5", "5.", "500m", "1e3", "1E3", "2E", "+1k", "1.5Gi",
        ] {
            assert_eq!(quantity_sign(good), Some(1), "{good}");
        }
        for zero in ["0", "0Gi", "0.0", "+0"] {
            assert_eq!(quantity_sign(zero), Some(0), "{zero}");
        }
        assert_eq!(quantity_sign("-1Gi"), Some(-1));
        for bad in [
            "banana", "lots", "", "Gi", ".", "1..5", "1 Gi", "1gi", "1GB", "1e", "1e+", "--1",
        ] {
            assert_eq!(quantity_sign(bad), None, "{bad}");
        }
    }

    #[test]
    fn storage_and_resources_must_be_valid_quantities() {
        let with_size = |size: &str| {
            let mut c = cluster(&[], None);
            c.spec.storage.size = Quantity(size.into());
            c
        };
        for size in ["banana", "-1Gi", "0"] {
            let error = validate_cluster(&with_size(size), "img").unwrap_err();
            assert_eq!(
                error,
                SpecError::Quantity {
                    field: "storage.size".into(),
                    value: size.into(),
                    expected: POSITIVE_QUANTITY
                }
            );
        }
        assert!(validate_cluster(&with_size("1Ti"), "img").is_ok());

        let with_requests = |cpu: &str| {
            let mut c = cluster(&[], None);
            c.spec.resources = Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity(cpu.into())),
                    ("memory".to_owned(), Quantity("2Gi".into())),
                ])),
                ..ResourceRequirements::default()
            });
            c
        };
        let error = validate_cluster(&with_requests("lots"), "img").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("resources.requests.cpu is 'lots', expected {NON_NEGATIVE_QUANTITY}")
        );
        assert!(validate_cluster(&with_requests("-1"), "img").is_err());
        assert!(validate_cluster(&with_requests("500m"), "img").is_ok());
    }

    #[test]
    fn contradictions_are_refused() {
        let mut both = cluster(&["a"], None);
        both.spec.replicas = Some(3);
        assert_eq!(
            validate_cluster(&both, "img"),
            Err(SpecError::ReplicasWithZones)
        );
        assert_eq!(
            validate_cluster(&cluster(&["a", "a"], None), "img"),
            Err(SpecError::DuplicateZone("a".into()))
        );
        assert!(matches!(
            validate_cluster(&cluster(&["a"], Some(101)), "img"),
            Err(SpecError::TooLarge { max: 100, .. })
        ));
        let long = "z".repeat(50);
        assert!(matches!(
            validate_cluster(&cluster(&[&long], None), "img"),
            Err(SpecError::NameTooLong { .. })
        ));
        let mut long_name = cluster(&[], None);
        long_name.metadata.name = Some("e".repeat(55));
        let error = validate_cluster(&long_name, "img").unwrap_err();
        assert!(
            matches!(
                &error,
                SpecError::ClusterNameTooLong {
                    length: 55,
                    max: 52,
                    ..
                }
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("55 characters") && message.contains("52"),
            "{message}"
        );
        assert!(!message.contains("lowercase"), "{message}");
        let mut dotted = cluster(&[], None);
        dotted.metadata.name = Some("my.events".into());
        assert_eq!(
            validate_cluster(&dotted, "img"),
            Err(SpecError::InvalidName("my.events".into()))
        );
        let mut clash = cluster(&[], None);
        clash.spec.listeners.admin_port = 9092;
        assert_eq!(
            validate_cluster(&clash, "img"),
            Err(SpecError::PortClash(9092))
        );
        let mut certificates = cluster(&[], None);
        certificates.spec.listeners.client_certificates =
            Some(crate::crd::ClientCertificates { port: 9094 });
        assert_eq!(
            validate_cluster(&certificates, "img"),
            Err(SpecError::ClientCertificatesWithoutTls)
        );
        certificates.spec.listeners.tls = Some(crate::crd::ListenerTls::default());
        certificates.spec.listeners.authentication = Some(crate::crd::ListenerAuthentication {
            kind: crate::crd::ListenerAuthenticationType::ScramSha512,
            service_accounts: None,
        });
        assert_eq!(
            validate_cluster(&certificates, "img")
                .unwrap()
                .security
                .client_certificates,
            Some(9094)
        );
        let mut accounts = certificates.clone();
        accounts.spec.listeners.authentication = Some(crate::crd::ListenerAuthentication {
            kind: crate::crd::ListenerAuthenticationType::ScramSha512,
            service_accounts: Some(crate::crd::ServiceAccountLogins {
                audience: "fjord".into(),
            }),
        });
        assert_eq!(
            validate_cluster(&accounts, "img"),
            Err(SpecError::ServiceAccountsWithoutAuthorization)
        );
        accounts.spec.authorization = Some(crate::crd::AuthorizationSpec {
            kind: crate::crd::AuthorizationType::Acl,
            super_users: Vec::new(),
        });
        assert_eq!(
            validate_cluster(&accounts, "img")
                .unwrap()
                .security
                .service_account_audience
                .as_deref(),
            Some("fjord")
        );
        certificates.spec.listeners.client_certificates =
            Some(crate::crd::ClientCertificates { port: 9093 });
        assert_eq!(
            validate_cluster(&certificates, "img"),
            Err(SpecError::PortClash(9093))
        );
    }
}
