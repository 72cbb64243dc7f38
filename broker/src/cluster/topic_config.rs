//! Topic configs by their Kafka names, validated and turned into the log's settings.

use std::collections::BTreeMap;

use crate::log::{FlushPolicy, LogConfig};
use crate::record::TimestampType;

/// The topic configs Fjord understands. Anything else is rejected, so a typo does not pass
/// silently.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

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
    #[error(
        "cleanup.policy={value} is not supported yet: Fjord does not compact logs; use 'delete'"
    )]
    CompactionUnsupported { value: String },
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

/// The log settings for a topic with these overrides on top of Kafka's defaults.
pub fn log_config(configs: &BTreeMap<String, String>) -> Result<LogConfig, ConfigError> {
    let mut config = LogConfig::default();
    for (key, value) in configs {
        match key.as_str() {
            "cleanup.policy" => {
                if value.trim() != "delete" {
                    return Err(ConfigError::CompactionUnsupported {
                        value: value.clone(),
                    });
                }
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
        assert!(matches!(
            log_config(&configs(&[("cleanup.policy", "compact")])),
            Err(ConfigError::CompactionUnsupported { .. })
        ));
    }
}
