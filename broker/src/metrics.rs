//! Prometheus metrics, served as text on the admin endpoint's `/metrics`: requests by API and
//! version, request latency histograms by API, bytes in and out, connections, partitions, per
//! partition log size, log start offset and high watermark, per consumer group and partition
//! the committed offset and the lag behind the high watermark (what autoscalers such as KEDA
//! scale consumers on), per topic compaction passes and the bytes and records they removed, and
//! the cluster as this broker sees it: the controller, this broker's metadata offset and its lag
//! behind the controller, fenced brokers, offline and under-replicated partitions, and the
//! partitions each broker leads.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MechanismLabel {
    mechanism: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    operation: String,
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaRoleLabel {
    /// `leader` or `follower`.
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerLabel {
    broker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: String,
}

/// 100 µs to ~6.5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// A partition's figures at scrape time.
#[derive(Debug, Clone)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

/// The cluster as this broker sees it, at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ClusterSample {
    /// The controller's node id, -1 while none is known.
    pub controller: i32,
    /// Whether this broker is the controller.
    pub active_controller: bool,
    /// The index of the last metadata log entry applied here.
    pub metadata_applied: u64,
    /// Entries the controller had applied, at its last heartbeat answer, that this broker has not.
    pub metadata_lag_entries: u64,
    /// Seconds since this broker's metadata was last known current (`None`: never yet).
    pub metadata_lag_seconds: Option<f64>,
    pub registered_brokers: usize,
    pub fenced_brokers: usize,
    /// Partitions this broker leads, and of those, with fewer in-sync replicas than replicas.
    pub leader_partitions: usize,
    pub under_replicated_partitions: usize,
    /// Partitions without a leader, in the whole cluster.
    pub offline_partitions: usize,
    /// Partitions each registered broker leads.
    pub leaders_per_broker: Vec<(i32, usize)>,
}

/// A consumer group's committed offset for one partition, at scrape time.
#[derive(Debug, Clone)]
pub struct GroupOffsetSample {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// Records between the committed offset and the high watermark.
    pub lag: i64,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ApiLabel, Histogram, fn() -> Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    /// `fetch_record_bytes` of partitions this broker leads, and of those it follows: looked up
    /// once, not per Fetch.
    fetch_bytes_led: Counter,
    fetch_bytes_followed: Counter,
    connections: Gauge,
    connections_accepted: Counter,
    authentication_failures: Family<MechanismLabel, Counter>,
    authorization_denials: Family<DenialLabels, Counter>,
    certificate_reloads: Family<OutcomeLabel, Counter>,
    partitions: Gauge,
    log_size: Family<PartitionLabels, Gauge>,
    log_start: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    group_committed: Family<GroupPartitionLabels, Gauge>,
    group_lag: Family<GroupPartitionLabels, Gauge>,
    compaction_passes: Family<TopicLabel, Counter>,
    compaction_bytes_removed: Family<TopicLabel, Counter>,
    compaction_records_removed: Family<TopicLabel, Counter>,
    cluster: ClusterGauges,
}

/// Gauges of [`ClusterSample`].
#[derive(Debug, Default)]
struct ClusterGauges {
    controller: Gauge,
    active_controller: Gauge,
    metadata_applied: Gauge,
    metadata_lag_entries: Gauge,
    metadata_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    registered_brokers: Gauge,
    fenced_brokers: Gauge,
    leader_partitions: Gauge,
    under_replicated_partitions: Gauge,
    offline_partitions: Gauge,
    leaders_per_broker: Family<BrokerLabel, Gauge>,
}

impl ClusterGauges {
    fn register(&self, registry: &mut Registry) {
        let gauges: [(&str, &str, &Gauge); 9] = [
            (
                "controller_id",
                "The controller's node id (the metadata quorum's leader), -1 while none is known",
                &self.controller,
            ),
            (
                "active_controller",
                "1 on the broker that is the controller, 0 elsewhere",
                &self.active_controller,
            ),
            (
                "metadata_applied_offset",
                "The index of the last metadata log entry applied on this broker",
                &self.metadata_applied,
            ),
            (
                "metadata_lag_entries",
                "Metadata log entries the controller had applied at its last heartbeat answer that this broker has not",
                &self.metadata_lag_entries,
            ),
            (
                "registered_brokers",
                "Brokers registered in the cluster",
                &self.registered_brokers,
            ),
            (
                "fenced_brokers",
                "Registered brokers that are fenced (lead nothing)",
                &self.fenced_brokers,
            ),
            (
                "leader_partitions",
                "Partitions this broker leads",
                &self.leader_partitions,
            ),
            (
                "under_replicated_partitions",
                "Partitions this broker leads with fewer in-sync replicas than replicas",
                &self.under_replicated_partitions,
            ),
            (
                "offline_partitions",
                "Partitions without a leader, in the whole cluster",
                &self.offline_partitions,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "metadata_lag_seconds",
            "Seconds since this broker's metadata was last known current (the controller's last answered heartbeat applied here)",
            self.metadata_lag_seconds.clone(),
        );
        registry.register(
            "partition_leaders",
            "Partitions each registered broker leads",
            self.leaders_per_broker.clone(),
        );
    }

    fn set(&self, sample: &ClusterSample) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.controller.set(i64::from(sample.controller));
        self.active_controller
            .set(i64::from(sample.active_controller));
        self.metadata_applied
            .set(i64::try_from(sample.metadata_applied).unwrap_or(i64::MAX));
        self.metadata_lag_entries
            .set(i64::try_from(sample.metadata_lag_entries).unwrap_or(i64::MAX));
        self.metadata_lag_seconds
            .set(sample.metadata_lag_seconds.unwrap_or(f64::INFINITY));
        self.registered_brokers
            .set(count(sample.registered_brokers));
        self.fenced_brokers.set(count(sample.fenced_brokers));
        self.leader_partitions.set(count(sample.leader_partitions));
        self.under_replicated_partitions
            .set(count(sample.under_replicated_partitions));
        self.offline_partitions
            .set(count(sample.offline_partitions));
        self.leaders_per_broker.clear();
        for (broker, led) in &sample.leaders_per_broker {
            self.leaders_per_broker
                .get_or_create(&BrokerLabel {
                    broker: broker.to_string(),
                })
                .set(count(*led));
        }
    }
}

/// One topic's compaction counters, handed to its partitions. The default counts into
/// counters nobody exports (for partitions opened outside a broker).
#[derive(Debug, Clone, Default)]
pub struct CompactionCounters {
    passes: Counter,
    bytes_removed: Counter,
    records_removed: Counter,
}

impl CompactionCounters {
    /// Counts one finished pass.
    pub fn pass(&self, bytes_removed: u64, records_removed: u64) {
        self.passes.inc();
        self.bytes_removed.inc_by(bytes_removed);
        self.records_removed.inc_by(records_removed);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fjord");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Kafka requests served, by API and version",
            requests.clone(),
        );
        let latency = Family::<ApiLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response, by API",
            latency.clone(),
        );
        let bytes_in = Counter::default();
        registry.register("bytes_in", "Request bytes received", bytes_in.clone());
        let bytes_out = Counter::default();
        registry.register("bytes_out", "Response bytes sent", bytes_out.clone());
        let fetch_bytes = Family::<ReplicaRoleLabel, Counter>::default();
        registry.register(
            "fetch_record_bytes",
            "Record bytes sent to consumers in Fetch responses, by whether this broker led the partition or followed it (a consumer in its rack)",
            fetch_bytes.clone(),
        );
        let fetch_bytes_led = fetch_bytes
            .get_or_create(&ReplicaRoleLabel { role: "leader" })
            .clone();
        let fetch_bytes_followed = fetch_bytes
            .get_or_create(&ReplicaRoleLabel { role: "follower" })
            .clone();
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let connections_accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        let authentication_failures = Family::<MechanismLabel, Counter>::default();
        registry.register(
            "authentication_failures",
            "Client connections that failed to authenticate (a refused TLS handshake, a failed SASL login), by mechanism",
            authentication_failures.clone(),
        );
        let authorization_denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "authorization_denials",
            "Operations the ACLs denied a client, by operation and resource type (topics left out of an all-topics listing are not counted)",
            authorization_denials.clone(),
        );
        let certificate_reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "tls_certificate_reloads",
            "Rotations of the Kafka listener's TLS files: loaded (in use for new connections) or refused (unusable; the previous certificate stays)",
            certificate_reloads.clone(),
        );
        let partitions = Gauge::default();
        registry.register(
            "partitions",
            "Partitions hosted by this broker",
            partitions.clone(),
        );
        let log_size = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "log_size_bytes",
            "Bytes of record data in a partition's log",
            log_size.clone(),
        );
        let log_start = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "log_start_offset",
            "A partition's log start offset",
            log_start.clone(),
        );
        let high_watermark = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "high_watermark",
            "A partition's high watermark (end of what consumers may read)",
            high_watermark.clone(),
        );
        let group_committed = Family::<GroupPartitionLabels, Gauge>::default();
        registry.register(
            "consumer_group_committed_offset",
            "A consumer group's committed offset for a partition",
            group_committed.clone(),
        );
        let group_lag = Family::<GroupPartitionLabels, Gauge>::default();
        registry.register(
            "consumer_group_lag",
            "Records a consumer group has not committed yet: high watermark minus committed offset",
            group_lag.clone(),
        );
        let compaction_passes = Family::<TopicLabel, Counter>::default();
        registry.register(
            "compaction_passes",
            "Log compaction passes finished, by topic",
            compaction_passes.clone(),
        );
        let compaction_bytes_removed = Family::<TopicLabel, Counter>::default();
        registry.register(
            "compaction_removed_bytes",
            "Bytes log compaction removed, by topic",
            compaction_bytes_removed.clone(),
        );
        let compaction_records_removed = Family::<TopicLabel, Counter>::default();
        registry.register(
            "compaction_removed_records",
            "Records log compaction removed, by topic",
            compaction_records_removed.clone(),
        );
        let cluster = ClusterGauges::default();
        cluster.register(&mut registry);
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            fetch_bytes_led,
            fetch_bytes_followed,
            connections,
            connections_accepted,
            authentication_failures,
            authorization_denials,
            certificate_reloads,
            partitions,
            log_size,
            log_start,
            high_watermark,
            group_committed,
            group_lag,
            compaction_passes,
            compaction_bytes_removed,
            compaction_records_removed,
            cluster,
        }
    }

    /// Sets the cluster gauges for the next [`Metrics::render`].
    pub fn set_cluster(&self, sample: &ClusterSample) {
        self.cluster.set(sample);
    }

    /// The compaction counters of `topic`.
    pub fn compaction(&self, topic: &str) -> CompactionCounters {
        let label = TopicLabel {
            topic: topic.to_owned(),
        };
        CompactionCounters {
            passes: self.compaction_passes.get_or_create(&label).clone(),
            bytes_removed: self.compaction_bytes_removed.get_or_create(&label).clone(),
            records_removed: self
                .compaction_records_removed
                .get_or_create(&label)
                .clone(),
        }
    }

    /// Records one served request.
    pub fn request(
        &self,
        api: &str,
        version: i16,
        elapsed: Duration,
        bytes_in: usize,
        bytes_out: usize,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                api: api.to_owned(),
                version: version.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&ApiLabel {
                api: api.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.bytes_in.inc_by(bytes_in as u64);
        self.bytes_out.inc_by(bytes_out as u64);
    }

    /// Counts record bytes a Fetch sent from partitions this broker leads and from those it
    /// follows.
    pub fn fetched(&self, led: usize, followed: usize) {
        self.fetch_bytes_led.inc_by(led as u64);
        self.fetch_bytes_followed.inc_by(followed as u64);
    }

    /// Counts a client that failed to authenticate with `mechanism` (`SSL` for a refused TLS
    /// handshake, or a SASL mechanism).
    pub fn authentication_failed(&self, mechanism: &str) {
        self.authentication_failures
            .get_or_create(&MechanismLabel {
                mechanism: mechanism.to_owned(),
            })
            .inc();
    }

    /// Counts an operation the ACLs denied.
    pub fn authorization_denied(&self, operation: &str, resource_type: &str) {
        self.authorization_denials
            .get_or_create(&DenialLabels {
                operation: operation.to_owned(),
                resource_type: resource_type.to_owned(),
            })
            .inc();
    }

    /// Counts a rotation of the TLS files: `loaded`, or refused.
    pub fn certificate_reload(&self, loaded: bool) {
        let outcome = if loaded { "loaded" } else { "refused" };
        self.certificate_reloads
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts an open connection until the guard drops.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections.inc();
        self.connections_accepted.inc();
        ConnectionGuard(self.connections.clone())
    }

    /// The exposition text, with partition gauges set from `samples` and group gauges from
    /// `groups`.
    pub fn render(&self, samples: &[PartitionSample], groups: &[GroupOffsetSample]) -> String {
        self.group_committed.clear();
        self.group_lag.clear();
        for sample in groups {
            let labels = GroupPartitionLabels {
                group: sample.group.clone(),
                topic: sample.topic.clone(),
                partition: sample.partition.to_string(),
            };
            self.group_committed
                .get_or_create(&labels)
                .set(sample.committed_offset);
            self.group_lag.get_or_create(&labels).set(sample.lag);
        }
        self.partitions.set(samples.len() as i64);
        self.log_size.clear();
        self.log_start.clear();
        self.high_watermark.clear();
        for sample in samples {
            let labels = PartitionLabels {
                topic: sample.topic.clone(),
                partition: sample.partition.to_string(),
            };
            self.log_size
                .get_or_create(&labels)
                .set(sample.size_bytes as i64);
            self.log_start
                .get_or_create(&labels)
                .set(sample.log_start_offset);
            self.high_watermark
                .get_or_create(&labels)
                .set(sample.high_watermark);
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

/// Decrements the open-connection gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
