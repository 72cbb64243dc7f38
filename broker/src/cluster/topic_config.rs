//! Topic configs by their Kafka names, validated and turned into the log's settings.

use std::collections::BTreeMap;

use crate::log::{CleanupPolicy, DirtyRatio, FlushPolicy, LogConfig};
use crate::record::{Compression, TimestampType};

/// Kafka's config value types, as DescribeConfigs (v3+) reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// A topic config Fjord understands, with its default as Kafka spells it.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigSpec {
    pub key: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
}

const fn spec(
    key: &'static str,
    default: &'static str,
    kind: ConfigType,
    doc: &'static str,
) -> TopicConfigSpec {
    TopicConfigSpec {
        key,
        default,
        kind,
        doc,
    }
}

/// Every topic config Kafka 4.1 defines. Those Fjord has no mechanism for accept only their
/// default (a manifest copied from a Kafka setup still applies), and any other value is refused
/// with the reason ([`fixed_default`]). Anything else is rejected, so a typo does not pass
/// silently.
pub const TOPIC_CONFIGS: &[TopicConfigSpec] = &[
    spec(
        "cleanup.policy",
        "delete",
        ConfigType::List,
        "delete (retention deletes old segments), compact (keep the latest record of each key), or compact,delete (both)",
    ),
    spec(
        "compression.gzip.level",
        "-1",
        ConfigType::Int,
        "gzip level of batches the broker compresses; Fjord uses the codec's default level (-1), the only value accepted",
    ),
    spec(
        "compression.lz4.level",
        "9",
        ConfigType::Int,
        "lz4 level of batches the broker compresses; Fjord uses the codec's default level (9), the only value accepted",
    ),
    spec(
        "compression.type",
        "producer",
        ConfigType::String,
        "producer (store batches as producers compressed them), or uncompressed, gzip, snappy, lz4, zstd: batches in another codec are re-encoded on produce",
    ),
    spec(
        "compression.zstd.level",
        "3",
        ConfigType::Int,
        "zstd level of batches the broker compresses; Fjord uses the codec's default level (3), the only value accepted",
    ),
    spec(
        "delete.retention.ms",
        "86400000",
        ConfigType::Long,
        "how long compaction keeps a tombstone after its batch's newest timestamp",
    ),
    spec(
        "file.delete.delay.ms",
        "60000",
        ConfigType::Long,
        "Kafka's wait before removing a deleted segment's files; Fjord removes them at once (readers that have a segment open keep reading it), so only the default is accepted",
    ),
    spec(
        "flush.messages",
        "9223372036854775807",
        ConfigType::Long,
        "fsync after this many records; Fjord fsyncs by time (flush.ms), and by default every produce before it is acknowledged, so only the default is accepted",
    ),
    spec(
        "flush.ms",
        "9223372036854775807",
        ConfigType::Long,
        "fsync interval; the default (Long.MAX) means every produce is fsynced before it is acknowledged",
    ),
    spec(
        "follower.replication.throttled.replicas",
        "",
        ConfigType::List,
        "replicas that, as followers out of sync, throttle what they fetch to follower.replication.throttled.rate: partition:broker pairs (0:1,1:2), or * for every replica",
    ),
    spec(
        "index.interval.bytes",
        "4096",
        ConfigType::Int,
        "bytes between offset index entries",
    ),
    spec(
        "leader.replication.throttled.replicas",
        "",
        ConfigType::List,
        "replicas that, as leader, throttle what they serve to followers out of sync to leader.replication.throttled.rate: partition:broker pairs (0:1,1:2), or * for every replica",
    ),
    spec(
        "local.retention.bytes",
        "-2",
        ConfigType::Long,
        "local retention under tiered storage; Fjord keeps every segment locally, so only -2 (same as retention.bytes) is accepted",
    ),
    spec(
        "local.retention.ms",
        "-2",
        ConfigType::Long,
        "local retention under tiered storage; Fjord keeps every segment locally, so only -2 (same as retention.ms) is accepted",
    ),
    spec(
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigType::Long,
        "the longest a record stays uncompacted: a compacted topic rolls its active segment at least this often and compacts a segment whose newest record is this old, whatever the dirty ratio (so a record is compacted within about twice this)",
    ),
    spec(
        "max.message.bytes",
        "1048588",
        ConfigType::Int,
        "largest record batch accepted",
    ),
    spec(
        "message.timestamp.after.max.ms",
        "3600000",
        ConfigType::Long,
        "CreateTime topics refuse a batch holding a record timestamped more than this far in the future (INVALID_TIMESTAMP)",
    ),
    spec(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigType::Long,
        "CreateTime topics refuse a batch holding a record timestamped more than this far in the past (INVALID_TIMESTAMP)",
    ),
    spec(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        "CreateTime (the producer's) or LogAppendTime (the broker's)",
    ),
    spec(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigType::Double,
        "share of the cleanable log not yet compacted at which compaction runs",
    ),
    spec(
        "min.compaction.lag.ms",
        "0",
        ConfigType::Long,
        "records stay uncompacted at least this long",
    ),
    spec(
        "min.insync.replicas",
        "1",
        ConfigType::Int,
        "acks=all produces fail with NOT_ENOUGH_REPLICAS while fewer replicas are in sync (a single broker has 1)",
    ),
    spec(
        "preallocate",
        "false",
        ConfigType::Boolean,
        "preallocate segment files; Fjord does not, so only false is accepted",
    ),
    spec(
        "remote.log.copy.disable",
        "false",
        ConfigType::Boolean,
        "tiered storage is not implemented: only false is accepted",
    ),
    spec(
        "remote.log.delete.on.disable",
        "false",
        ConfigType::Boolean,
        "tiered storage is not implemented: only false is accepted",
    ),
    spec(
        "remote.storage.enable",
        "false",
        ConfigType::Boolean,
        "tiered storage is not implemented: only false is accepted",
    ),
    spec(
        "retention.bytes",
        "-1",
        ConfigType::Long,
        "largest size of a partition before old segments are deleted; -1: no limit",
    ),
    spec(
        "retention.ms",
        "604800000",
        ConfigType::Long,
        "age after which segments are deleted; -1: keep forever",
    ),
    spec(
        "segment.bytes",
        "1073741824",
        ConfigType::Int,
        "size at which a segment is rolled",
    ),
    spec(
        "segment.index.bytes",
        "10485760",
        ConfigType::Int,
        "Kafka's preallocated index size; Fjord's indexes grow with their segment, so only the default is accepted",
    ),
    spec(
        "segment.jitter.ms",
        "0",
        ConfigType::Long,
        "each segment rolls up to this much (at most segment.ms) before segment.ms, so partitions created together do not all roll at once",
    ),
    spec(
        "segment.ms",
        "604800000",
        ConfigType::Long,
        "age at which a segment is rolled",
    ),
    spec(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
        "true: when every in-sync replica is lost, a replica out of sync may lead (records the ISR had and it lacks are lost); false: the partition waits for an in-sync replica",
    ),
];

/// The spec of a topic config key.
pub fn topic_config_spec(key: &str) -> Option<&'static TopicConfigSpec> {
    TOPIC_CONFIGS.iter().find(|spec| spec.key == key)
}

/// How IncrementalAlterConfigs changes one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl ConfigOp {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            0 => Some(Self::Set),
            1 => Some(Self::Delete),
            2 => Some(Self::Append),
            3 => Some(Self::Subtract),
            _ => None,
        }
    }
}

/// Applies IncrementalAlterConfigs operations to a topic's overrides and validates the result.
/// A deleted key returns to its default.
pub fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, ConfigOp, Option<String>)],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let next = apply_ops_with(current, ops, |key| {
        topic_config_spec(key)
            .map(|spec| (spec.kind, spec.default))
            .ok_or_else(|| ConfigError::UnknownKey {
                key: key.to_owned(),
            })
    })?;
    log_config(&next)?;
    Ok(next)
}

/// IncrementalAlterConfigs operations on a resource's configs, `spec_of` giving each key's type
/// and default (or why the key cannot be set). The result is not validated.
pub(crate) fn apply_ops_with(
    current: &BTreeMap<String, String>,
    ops: &[(String, ConfigOp, Option<String>)],
    spec_of: impl Fn(&str) -> Result<(ConfigType, &'static str), ConfigError>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut next = current.clone();
    for (key, op, value) in ops {
        let (kind, default) = spec_of(key)?;
        let value = value.clone().unwrap_or_default();
        match op {
            ConfigOp::Set => {
                next.insert(key.clone(), value);
            }
            ConfigOp::Delete => {
                next.remove(key);
            }
            ConfigOp::Append | ConfigOp::Subtract => {
                if kind != ConfigType::List {
                    return Err(ConfigError::InvalidValue {
                        key: key.clone(),
                        value,
                        expected: "a list config for APPEND and SUBTRACT",
                    });
                }
                let existing = next.get(key).map_or(default, String::as_str);
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
                    .collect();
                for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if *op == ConfigOp::Append && !items.iter().any(|i| i == item) {
                        items.push(item.to_owned());
                    } else if *op == ConfigOp::Subtract {
                        items.retain(|i| i != item);
                    }
                }
                next.insert(key.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

/// Why a topic config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config '{key}'")]
    UnknownKey { key: String },
    #[error("invalid value '{value}' for {key}: {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("{key} is not a dynamic broker config: it cannot be changed at run time")]
    ReadOnly { key: String },
    #[error("{key}={value} is not supported, only its default {default}: {why}")]
    Unsupported {
        key: String,
        value: String,
        default: &'static str,
        why: &'static str,
    },
}

/// Why each config Fjord has no mechanism for accepts only its default.
const FIXED: &[(&str, &str)] = &[
    (
        "compression.gzip.level",
        "Fjord compresses with each codec's default level",
    ),
    (
        "compression.lz4.level",
        "Fjord compresses with each codec's default level",
    ),
    (
        "compression.zstd.level",
        "Fjord compresses with each codec's default level",
    ),
    (
        "file.delete.delay.ms",
        "Fjord removes a deleted segment's files at once; readers that have it open keep reading",
    ),
    (
        "flush.messages",
        "Fjord fsyncs by time (flush.ms); by default every produce is fsynced before it is acknowledged",
    ),
    (
        "local.retention.bytes",
        "tiered storage is not implemented: every segment is local",
    ),
    (
        "local.retention.ms",
        "tiered storage is not implemented: every segment is local",
    ),
    ("preallocate", "Fjord does not preallocate segment files"),
    (
        "remote.log.copy.disable",
        "tiered storage is not implemented",
    ),
    (
        "remote.log.delete.on.disable",
        "tiered storage is not implemented",
    ),
    ("remote.storage.enable", "tiered storage is not implemented"),
    (
        "segment.index.bytes",
        "Fjord's indexes grow with their segment: there is no index size to preallocate",
    ),
];

/// A config Fjord has no mechanism for: its default (spelled any way Kafka accepts it: `-1` or
/// ` -1 `, `FALSE`) passes, anything else is refused with the reason.
fn fixed_default(key: &str, value: &str) -> Option<Result<(), ConfigError>> {
    let (_, why) = FIXED.iter().find(|(fixed, _)| *fixed == key)?;
    let spec = topic_config_spec(key)?;
    let value_trimmed = value.trim();
    let is_default = match spec.kind {
        ConfigType::Boolean => value_trimmed.eq_ignore_ascii_case(spec.default),
        ConfigType::Int | ConfigType::Long => {
            value_trimmed.parse::<i64>().ok() == spec.default.parse().ok()
        }
        _ => value_trimmed == spec.default,
    };
    Some(if is_default {
        Ok(())
    } else {
        Err(ConfigError::Unsupported {
            key: key.to_owned(),
            value: value.to_owned(),
            default: spec.default,
            why,
        })
    })
}

/// The replicas a `*.replication.throttled.replicas` topic config names: Kafka's list of
/// `partition:broker` pairs, or `*` for every replica of the topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ThrottledReplicas {
    /// None (the default, an empty list).
    #[default]
    None,
    All,
    Listed(std::collections::BTreeSet<(i32, i32)>),
}

impl ThrottledReplicas {
    pub fn parse(key: &str, value: &str) -> Result<Self, ConfigError> {
        let value_trimmed = value.trim();
        if value_trimmed.is_empty() {
            return Ok(Self::None);
        }
        if value_trimmed == "*" {
            return Ok(Self::All);
        }
        let invalid = || ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "partition:broker pairs separated by commas (0:1,1:2), or *",
        };
        value_trimmed
            .split(',')
            .map(|pair| {
                let (partition, broker) = pair.trim().split_once(':').ok_or_else(invalid)?;
                let partition = partition.trim().parse::<i32>().ok().filter(|p| *p >= 0);
                let broker = broker.trim().parse::<i32>().ok().filter(|b| *b >= 0);
                partition.zip(broker).ok_or_else(invalid)
            })
            .collect::<Result<_, _>>()
            .map(Self::Listed)
    }

    /// Whether the replica of `partition` on broker `broker` is throttled.
    pub fn contains(&self, partition: i32, broker: i32) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Listed(pairs) => pairs.contains(&(partition, broker)),
        }
    }

    /// The topic config `key` of `configs` (an unreadable value throttles nothing: configs are
    /// checked when they are set).
    pub fn of(configs: &BTreeMap<String, String>, key: &str) -> Self {
        configs
            .get(key)
            .and_then(|value| Self::parse(key, value).ok())
            .unwrap_or_default()
    }
}

fn parse_long(
    key: &str,
    value: &str,
    min: i64,
    expected: &'static str,
) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= min)
        .ok_or_else(|| ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected,
        })
}

/// `delete`, `compact`, or both in either order (a list, as Kafka spells it).
fn parse_cleanup_policy(key: &str, value: &str) -> Result<CleanupPolicy, ConfigError> {
    let (mut delete, mut compact) = (false, false);
    for item in value.split(',').map(str::trim) {
        match item {
            "delete" => delete = true,
            "compact" => compact = true,
            _ => {
                return Err(ConfigError::InvalidValue {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    expected: "delete, compact, or compact,delete",
                });
            }
        }
    }
    Ok(match (compact, delete) {
        (true, true) => CleanupPolicy::CompactDelete,
        (true, false) => CleanupPolicy::Compact,
        _ => CleanupPolicy::Delete,
    })
}

/// `compression.type`: what produce does with a batch's codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicCompression {
    /// Batches are stored as the producer compressed them.
    #[default]
    Producer,
    /// Batches in another codec are re-encoded with this one.
    Codec(Compression),
}

/// The settings produce requests are checked against before the log sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceConfig {
    /// `min.insync.replicas`: the fewest in-sync replicas an `acks=all` produce needs.
    pub min_insync_replicas: i32,
    /// `compression.type`.
    pub compression: TopicCompression,
    /// `max.message.bytes`: re-encoding refuses larger batches before opening them.
    pub max_message_bytes: usize,
}

impl Default for ProduceConfig {
    fn default() -> Self {
        Self {
            min_insync_replicas: 1,
            compression: TopicCompression::Producer,
            max_message_bytes: LogConfig::default().max_message_bytes,
        }
    }
}

fn parse_compression(key: &str, value: &str) -> Result<TopicCompression, ConfigError> {
    Ok(match value.trim() {
        "producer" => TopicCompression::Producer,
        "uncompressed" => TopicCompression::Codec(Compression::None),
        "gzip" => TopicCompression::Codec(Compression::Gzip),
        "snappy" => TopicCompression::Codec(Compression::Snappy),
        "lz4" => TopicCompression::Codec(Compression::Lz4),
        "zstd" => TopicCompression::Codec(Compression::Zstd),
        _ => {
            return Err(ConfigError::InvalidValue {
                key: key.to_owned(),
                value: value.to_owned(),
                expected: "producer, uncompressed, gzip, snappy, lz4 or zstd",
            });
        }
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

/// Whether an `unclean.leader.election.enable` value (absent: the default, false) allows an
/// unclean leader election.
pub fn unclean_leader_election(value: Option<&String>) -> bool {
    value
        .and_then(|value| parse_bool("unclean.leader.election.enable", value).ok())
        .unwrap_or(false)
}

fn parse_min_insync_replicas(key: &str, value: &str) -> Result<i32, ConfigError> {
    let replicas = parse_long(key, value, 1, "a replica count >= 1")?;
    i32::try_from(replicas).map_err(|_| ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: "a replica count >= 1",
    })
}

/// The produce settings of a topic with these overrides. The overrides were validated when they
/// were set ([`log_config`]); a value that does not parse counts as the default.
pub fn produce_config(configs: &BTreeMap<String, String>) -> ProduceConfig {
    let mut config = ProduceConfig::default();
    if let Some(value) = configs.get("min.insync.replicas")
        && let Ok(replicas) = parse_min_insync_replicas("min.insync.replicas", value)
    {
        config.min_insync_replicas = replicas;
    }
    if let Some(value) = configs.get("compression.type")
        && let Ok(compression) = parse_compression("compression.type", value)
    {
        config.compression = compression;
    }
    if let Some(value) = configs.get("max.message.bytes")
        && let Ok(bytes) = parse_long("max.message.bytes", value, 0, "bytes >= 0")
    {
        config.max_message_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    config
}

/// The log settings for a topic with these overrides on top of Kafka's defaults (and the check
/// of every override, including those produce applies: [`produce_config`]).
pub fn log_config(configs: &BTreeMap<String, String>) -> Result<LogConfig, ConfigError> {
    let mut config = LogConfig::default();
    for (key, value) in configs {
        if let Some(checked) = fixed_default(key, value) {
            checked?;
            continue;
        }
        match key.as_str() {
            "compression.type" => {
                parse_compression(key, value)?;
            }
            "min.insync.replicas" => {
                parse_min_insync_replicas(key, value)?;
            }
            "unclean.leader.election.enable" => {
                parse_bool(key, value)?;
            }
            "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => {
                ThrottledReplicas::parse(key, value)?;
            }
            "cleanup.policy" => config.cleanup_policy = parse_cleanup_policy(key, value)?,
            "delete.retention.ms" => {
                config.delete_retention_ms = parse_long(key, value, 0, "milliseconds >= 0")?;
            }
            "min.cleanable.dirty.ratio" => {
                config.min_cleanable_dirty_ratio = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(DirtyRatio::new)
                    .ok_or_else(|| ConfigError::InvalidValue {
                        key: key.clone(),
                        value: value.clone(),
                        expected: "a number from 0 to 1",
                    })?;
            }
            "min.compaction.lag.ms" => {
                config.min_compaction_lag_ms = parse_long(key, value, 0, "milliseconds >= 0")?;
            }
            "flush.ms" => {
                let ms = parse_long(key, value, 0, "milliseconds >= 0")?;
                config.flush = if ms == i64::MAX {
                    FlushPolicy::EveryAppend
                } else {
                    FlushPolicy::Interval {
                        interval_ms: ms.max(1) as u64,
                    }
                };
            }
            "index.interval.bytes" => {
                config.index_interval_bytes = parse_long(key, value, 0, "bytes >= 0")? as u64;
            }
            "max.message.bytes" => {
                config.max_message_bytes = parse_long(key, value, 0, "bytes >= 0")? as usize;
            }
            "message.timestamp.type" => {
                config.timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            key: key.clone(),
                            value: value.clone(),
                            expected: "CreateTime or LogAppendTime",
                        });
                    }
                };
            }
            "retention.bytes" => {
                let bytes = parse_long(key, value, -1, "bytes, or -1 for no limit")?;
                config.retention_bytes = (bytes >= 0).then_some(bytes as u64);
            }
            "retention.ms" => {
                let ms = parse_long(key, value, -1, "milliseconds, or -1 to keep forever")?;
                config.retention_ms = (ms >= 0).then_some(ms);
            }
            "segment.bytes" => {
                config.segment_bytes = parse_long(key, value, 14, "bytes >= 14")? as u64;
            }
            "segment.ms" => {
                config.segment_ms = parse_long(key, value, 1, "milliseconds >= 1")?;
            }
            "segment.jitter.ms" => {
                config.segment_jitter_ms = parse_long(key, value, 0, "milliseconds >= 0")?;
            }
            "max.compaction.lag.ms" => {
                config.max_compaction_lag_ms = parse_long(key, value, 1, "milliseconds >= 1")?;
            }
            "message.timestamp.after.max.ms" => {
                config.timestamp_after_max_ms = parse_long(key, value, 0, "milliseconds >= 0")?;
            }
            "message.timestamp.before.max.ms" => {
                config.timestamp_before_max_ms = parse_long(key, value, 0, "milliseconds >= 0")?;
            }
            _ => return Err(ConfigError::UnknownKey { key: key.clone() }),
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_keys_map_onto_the_log() {
        let config = log_config(&configs(&[
            ("retention.ms", "-1"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "65536"),
            ("message.timestamp.type", "LogAppendTime"),
            ("flush.ms", "1000"),
            ("cleanup.policy", "delete"),
        ]))
        .unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1_048_576));
        assert_eq!(config.segment_bytes, 65_536);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.flush, FlushPolicy::Interval { interval_ms: 1000 });
        assert_eq!(log_config(&BTreeMap::new()).unwrap(), LogConfig::default());
    }

    #[test]
    fn defaults_are_what_the_log_uses() {
        let defaults: BTreeMap<String, String> = TOPIC_CONFIGS
            .iter()
            .map(|s| (s.key.to_owned(), s.default.to_owned()))
            .collect();
        assert_eq!(log_config(&defaults).unwrap(), LogConfig::default());
    }

    /// Kafka 4.1's topic configs (`TopicConfig` and `LogConfig`), so a manifest copied from a
    /// Kafka or Strimzi setup is understood.
    const KAFKA_4_1_TOPIC_CONFIGS: &[&str] = &[
        "cleanup.policy",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.type",
        "compression.zstd.level",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "follower.replication.throttled.replicas",
        "index.interval.bytes",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
        "unclean.leader.election.enable",
    ];

    /// Throttled replicas: Kafka's `partition:broker` pairs, `*`, or none; anything else is
    /// refused with the form expected.
    #[test]
    fn throttled_replicas_are_pairs_or_a_star() {
        let key = "leader.replication.throttled.replicas";
        let listed = ThrottledReplicas::parse(key, "0:1, 2:3").unwrap();
        assert!(listed.contains(0, 1) && listed.contains(2, 3) && !listed.contains(1, 0));
        assert!(ThrottledReplicas::parse(key, "*").unwrap().contains(9, 9));
        assert_eq!(
            ThrottledReplicas::parse(key, " "),
            Ok(ThrottledReplicas::None)
        );
        for bad in ["0", "a:1", "0:1,", "-1:2", "0:1:2"] {
            assert!(
                log_config(&configs(&[(key, bad)]))
                    .is_err_and(|e| e.to_string().contains("partition:broker")),
                "{bad}"
            );
        }
        assert!(
            log_config(&configs(&[(
                "follower.replication.throttled.replicas",
                "1:0"
            )]))
            .is_ok()
        );
    }

    #[test]
    fn every_kafka_topic_config_is_known_and_unsupported_ones_take_only_their_default() {
        let known: Vec<&str> = TOPIC_CONFIGS.iter().map(|s| s.key).collect();
        assert_eq!(known, KAFKA_4_1_TOPIC_CONFIGS);
        for (key, default_spelled_otherwise, other) in [
            ("preallocate", "FALSE", "true"),
            ("remote.storage.enable", " false", "true"),
            ("local.retention.ms", "-2 ", "86400000"),
            ("segment.index.bytes", "10485760", "1024"),
            ("flush.messages", "9223372036854775807", "1"),
            ("compression.zstd.level", "3", "19"),
            ("file.delete.delay.ms", "60000", "0"),
        ] {
            assert!(
                log_config(&configs(&[(key, default_spelled_otherwise)])).is_ok(),
                "{key}"
            );
            let error = log_config(&configs(&[(key, other)])).unwrap_err();
            assert!(matches!(error, ConfigError::Unsupported { .. }), "{key}");
            assert!(error.to_string().contains("not supported"), "{error}");
        }
        let config = log_config(&configs(&[
            ("segment.jitter.ms", "1000"),
            ("max.compaction.lag.ms", "60000"),
            ("message.timestamp.after.max.ms", "10"),
            ("message.timestamp.before.max.ms", "20"),
        ]))
        .unwrap();
        assert_eq!(
            (
                config.segment_jitter_ms,
                config.max_compaction_lag_ms,
                config.timestamp_after_max_ms,
                config.timestamp_before_max_ms
            ),
            (1000, 60_000, 10, 20)
        );
        for (key, value) in [
            ("segment.jitter.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
            ("message.timestamp.after.max.ms", "soon"),
        ] {
            assert!(
                matches!(
                    log_config(&configs(&[(key, value)])),
                    Err(ConfigError::InvalidValue { .. })
                ),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn incremental_ops_set_delete_and_edit_lists() {
        let current = configs(&[("retention.ms", "1000")]);
        let next = apply_ops(
            &current,
            &[
                ("retention.ms".into(), ConfigOp::Delete, None),
                ("segment.bytes".into(), ConfigOp::Set, Some("65536".into())),
                (
                    "cleanup.policy".into(),
                    ConfigOp::Append,
                    Some("delete".into()),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            next,
            configs(&[("segment.bytes", "65536"), ("cleanup.policy", "delete")])
        );
        let both = apply_ops(
            &next,
            &[(
                "cleanup.policy".into(),
                ConfigOp::Append,
                Some("compact".into()),
            )],
        )
        .unwrap();
        assert_eq!(both["cleanup.policy"], "delete,compact");
        assert!(matches!(
            apply_ops(
                &both,
                &[(
                    "cleanup.policy".into(),
                    ConfigOp::Subtract,
                    Some("compact,delete".into())
                )]
            ),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            apply_ops(
                &next,
                &[("retention.ms".into(), ConfigOp::Append, Some("5".into()))]
            ),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            apply_ops(&next, &[("nope".into(), ConfigOp::Set, Some("5".into()))]),
            Err(ConfigError::UnknownKey { .. })
        ));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        assert_eq!(
            log_config(&configs(&[("retention.msec", "1")])),
            Err(ConfigError::UnknownKey {
                key: "retention.msec".into()
            })
        );
        assert!(matches!(
            log_config(&configs(&[("segment.bytes", "ten")])),
            Err(ConfigError::InvalidValue { .. })
        ));
        for (key, value) in [
            ("cleanup.policy", "shred"),
            ("cleanup.policy", ""),
            ("cleanup.policy", "compact,"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "-0.1"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("delete.retention.ms", "-1"),
            ("min.compaction.lag.ms", "soon"),
        ] {
            assert!(
                matches!(
                    log_config(&configs(&[(key, value)])),
                    Err(ConfigError::InvalidValue { .. })
                ),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn produce_configs_are_checked_and_parsed() {
        assert_eq!(produce_config(&BTreeMap::new()), ProduceConfig::default());
        let set = configs(&[("min.insync.replicas", "2"), ("compression.type", "zstd")]);
        assert!(log_config(&set).is_ok());
        assert_eq!(
            produce_config(&set),
            ProduceConfig {
                min_insync_replicas: 2,
                compression: TopicCompression::Codec(Compression::Zstd),
                max_message_bytes: 1_048_588,
            }
        );
        for (value, compression) in [
            ("producer", TopicCompression::Producer),
            ("uncompressed", TopicCompression::Codec(Compression::None)),
            ("gzip", TopicCompression::Codec(Compression::Gzip)),
            ("snappy", TopicCompression::Codec(Compression::Snappy)),
            ("lz4", TopicCompression::Codec(Compression::Lz4)),
        ] {
            let config = configs(&[("compression.type", value)]);
            assert_eq!(produce_config(&config).compression, compression, "{value}");
        }
        for (key, value) in [
            ("min.insync.replicas", "0"),
            ("min.insync.replicas", "-1"),
            ("min.insync.replicas", "3000000000"),
            ("compression.type", "brotli"),
            ("compression.type", "none"),
        ] {
            assert!(
                matches!(
                    log_config(&configs(&[(key, value)])),
                    Err(ConfigError::InvalidValue { .. })
                ),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn compaction_configs_map_onto_the_log() {
        for (value, policy) in [
            ("delete", CleanupPolicy::Delete),
            ("compact", CleanupPolicy::Compact),
            ("compact,delete", CleanupPolicy::CompactDelete),
            ("delete, compact", CleanupPolicy::CompactDelete),
        ] {
            let config = log_config(&configs(&[("cleanup.policy", value)])).unwrap();
            assert_eq!(config.cleanup_policy, policy, "{value}");
        }
        let config = log_config(&configs(&[
            ("delete.retention.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("min.compaction.lag.ms", "60000"),
        ]))
        .unwrap();
        assert_eq!(config.delete_retention_ms, 1000);
        assert_eq!(config.min_cleanable_dirty_ratio.get(), 0.25);
        assert_eq!(config.min_compaction_lag_ms, 60_000);
    }
}
