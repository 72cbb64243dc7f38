//! Prometheus metrics, served as text on the admin endpoint's `/metrics`: requests by API and
//! version, request latency histograms by API, bytes in and out, connections, partitions, per
//! partition log size, log start offset and high watermark, per consumer group and partition
//! the committed offset and the lag behind the high watermark (what autoscalers such as KEDA
//! scale consumers on), and per topic compaction passes and the bytes and records they removed.

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
    connections: Gauge,
    connections_accepted: Counter,
    partitions: Gauge,
    log_size: Family<PartitionLabels, Gauge>,
    log_start: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    group_committed: Family<GroupPartitionLabels, Gauge>,
    group_lag: Family<GroupPartitionLabels, Gauge>,
    compaction_passes: Family<TopicLabel, Counter>,
    compaction_bytes_removed: Family<TopicLabel, Counter>,
    compaction_records_removed: Family<TopicLabel, Counter>,
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
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            connections,
            connections_accepted,
            partitions,
            log_size,
            log_start,
            high_watermark,
            group_committed,
            group_lag,
            compaction_passes,
            compaction_bytes_removed,
            compaction_records_removed,
        }
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
