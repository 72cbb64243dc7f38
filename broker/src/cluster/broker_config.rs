//! Broker configs by their Kafka names. Two kinds:
//!
//! - **Dynamic** ones, changed at run time with AlterConfigs or IncrementalAlterConfigs and kept
//!   in the cluster metadata, so every broker applies them: cluster-wide (the BROKER resource
//!   named `""`, Kafka's `--entity-default`) or for one broker (named by its id), the broker's own
//!   value winning. Each is the default of a topic config for topics without an override
//!   (`log.retention.ms` for `retention.ms`, `log.cleaner.min.cleanable.ratio` for
//!   `min.cleanable.dirty.ratio`, ...), as in Kafka.
//! - **Read-only** ones, the process's flags (`node.id`, `advertised.listeners`, `log.dirs`, ...):
//!   described, never altered (INVALID_REQUEST, as Kafka answers a config it cannot update
//!   dynamically).
//!
//! A topic's effective config is its override, else the broker's dynamic value, else the
//! cluster-wide one, else Kafka's default: [`effective_topic_configs`].

use std::collections::BTreeMap;

use super::ConfigOp;
use super::image::{MetadataImage, TopicImage};
use super::topic_config::{ConfigError, ConfigType, apply_ops_with, log_config, topic_config_spec};

/// The BROKER resource name of the cluster-wide dynamic configs.
pub const CLUSTER_DEFAULT: &str = "";

/// A dynamic broker config and the topic config it is the default of (`None`: a setting of the
/// broker alone, such as a replication throttle rate).
#[derive(Debug, Clone, Copy)]
pub struct DynamicBrokerConfig {
    pub key: &'static str,
    pub topic: Option<&'static str>,
}

const fn dynamic(key: &'static str, topic: &'static str) -> DynamicBrokerConfig {
    DynamicBrokerConfig {
        key,
        topic: Some(topic),
    }
}

/// Kafka's default of the replication throttle rates: no throttle (Long.MAX bytes per second).
pub const UNTHROTTLED: &str = "9223372036854775807";

impl DynamicBrokerConfig {
    /// Its value where nothing sets it.
    pub fn default_value(&self) -> &'static str {
        match self.topic {
            Some(topic) => topic_config_spec(topic).map_or("", |spec| spec.default),
            None => UNTHROTTLED,
        }
    }

    /// Its type.
    pub fn kind(&self) -> ConfigType {
        match self.topic {
            Some(topic) => topic_config_spec(topic).map_or(ConfigType::String, |spec| spec.kind),
            None => ConfigType::Long,
        }
    }
}

/// The rate, in bytes per second, of replica fetches of throttled replicas that a broker serves
/// as leader, or makes as follower (Kafka's names and meaning).
pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_THROTTLED_RATE: &str = "follower.replication.throttled.rate";

/// Every dynamic broker config, by name. Their values, defaults and types are the topic
/// configs'.
pub const DYNAMIC_BROKER_CONFIGS: &[DynamicBrokerConfig] = &[
    dynamic("compression.gzip.level", "compression.gzip.level"),
    dynamic("compression.lz4.level", "compression.lz4.level"),
    dynamic("compression.type", "compression.type"),
    DynamicBrokerConfig {
        key: FOLLOWER_THROTTLED_RATE,
        topic: None,
    },
    DynamicBrokerConfig {
        key: LEADER_THROTTLED_RATE,
        topic: None,
    },
    dynamic("compression.zstd.level", "compression.zstd.level"),
    dynamic("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    dynamic("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    dynamic(
        "log.cleaner.min.cleanable.ratio",
        "min.cleanable.dirty.ratio",
    ),
    dynamic("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    dynamic("log.cleanup.policy", "cleanup.policy"),
    dynamic("log.flush.interval.messages", "flush.messages"),
    dynamic("log.flush.interval.ms", "flush.ms"),
    dynamic("log.index.interval.bytes", "index.interval.bytes"),
    dynamic("log.index.size.max.bytes", "segment.index.bytes"),
    dynamic("log.local.retention.bytes", "local.retention.bytes"),
    dynamic("log.local.retention.ms", "local.retention.ms"),
    dynamic(
        "log.message.timestamp.after.max.ms",
        "message.timestamp.after.max.ms",
    ),
    dynamic(
        "log.message.timestamp.before.max.ms",
        "message.timestamp.before.max.ms",
    ),
    dynamic("log.message.timestamp.type", "message.timestamp.type"),
    dynamic("log.preallocate", "preallocate"),
    dynamic("log.retention.bytes", "retention.bytes"),
    dynamic("log.retention.ms", "retention.ms"),
    dynamic("log.roll.jitter.ms", "segment.jitter.ms"),
    dynamic("log.roll.ms", "segment.ms"),
    dynamic("log.segment.bytes", "segment.bytes"),
    dynamic("log.segment.delete.delay.ms", "file.delete.delay.ms"),
    dynamic("message.max.bytes", "max.message.bytes"),
    dynamic("min.insync.replicas", "min.insync.replicas"),
    dynamic(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
    ),
];

/// The dynamic broker config named `key`.
pub fn dynamic_broker_config(key: &str) -> Option<&'static DynamicBrokerConfig> {
    DYNAMIC_BROKER_CONFIGS.iter().find(|c| c.key == key)
}

/// The dynamic broker config that is the default of topic config `topic`.
pub fn broker_key_of_topic_config(topic: &str) -> Option<&'static DynamicBrokerConfig> {
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .find(|c| c.topic == Some(topic))
}

/// Where a dynamic broker config's value comes from, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicSource {
    /// Set for this broker.
    Broker,
    /// Set cluster-wide.
    Cluster,
    /// Kafka's default.
    Default,
}

/// The dynamic value of `key` as it applies to broker `node_id`: each level that sets it, most
/// specific first, then the default.
pub fn dynamic_values(
    image: &MetadataImage,
    node_id: i32,
    config: &DynamicBrokerConfig,
) -> Vec<(DynamicSource, String)> {
    let mut values = Vec::new();
    if let Some(value) = image
        .broker_configs
        .get(&node_id.to_string())
        .and_then(|c| c.get(config.key))
    {
        values.push((DynamicSource::Broker, value.clone()));
    }
    if let Some(value) = image
        .broker_configs
        .get(CLUSTER_DEFAULT)
        .and_then(|c| c.get(config.key))
    {
        values.push((DynamicSource::Cluster, value.clone()));
    }
    values.push((DynamicSource::Default, config.default_value().to_owned()));
    values
}

/// The topic config defaults the dynamic broker configs in `image` set on broker `node_id`, by
/// topic config name: the broker's own value over the cluster-wide one.
pub fn topic_defaults(image: &MetadataImage, node_id: i32) -> BTreeMap<String, String> {
    let mut defaults = BTreeMap::new();
    for level in [CLUSTER_DEFAULT.to_owned(), node_id.to_string()] {
        for (key, value) in image.broker_configs.get(&level).into_iter().flatten() {
            if let Some(topic) = dynamic_broker_config(key).and_then(|c| c.topic) {
                defaults.insert(topic.to_owned(), value.clone());
            }
        }
    }
    defaults
}

/// The dynamic broker value topic config `topic_key` inherits on broker `node_id`, if one is set:
/// the broker's own, else the cluster-wide one.
pub fn inherited<'a>(
    image: &'a MetadataImage,
    node_id: i32,
    topic_key: &str,
) -> Option<&'a String> {
    let config = broker_key_of_topic_config(topic_key)?;
    let level = |name: &str| image.broker_configs.get(name)?.get(config.key);
    level(&node_id.to_string()).or_else(|| level(CLUSTER_DEFAULT))
}

/// `topic`'s configs as broker `node_id` applies them: its overrides over [`topic_defaults`].
pub fn effective_topic_configs(
    image: &MetadataImage,
    node_id: i32,
    topic: &TopicImage,
) -> BTreeMap<String, String> {
    let mut configs = topic_defaults(image, node_id);
    configs.extend(topic.configs.iter().map(|(k, v)| (k.clone(), v.clone())));
    configs
}

/// Checks dynamic broker configs (one resource's): every key a dynamic broker config, every
/// value one its topic config accepts.
pub fn validate_broker_configs(configs: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let mut as_topic = BTreeMap::new();
    for (key, value) in configs {
        let config =
            dynamic_broker_config(key).ok_or_else(|| ConfigError::ReadOnly { key: key.clone() })?;
        match config.topic {
            Some(topic) => {
                as_topic.insert(topic.to_owned(), value.clone());
            }
            None => {
                if !value.parse::<i64>().is_ok_and(|rate| rate > 0) {
                    return Err(ConfigError::InvalidValue {
                        key: key.clone(),
                        value: value.clone(),
                        expected: "a rate in bytes per second, at least 1",
                    });
                }
            }
        }
    }
    log_config(&as_topic).map_err(|error| match error {
        // Name the broker config, not the topic config it stands for.
        ConfigError::InvalidValue {
            key,
            value,
            expected,
        } => ConfigError::InvalidValue {
            key: broker_key_of_topic_config(&key).map_or(key, |c| c.key.to_owned()),
            value,
            expected,
        },
        ConfigError::Unsupported {
            key,
            value,
            default,
            why,
        } => ConfigError::Unsupported {
            key: broker_key_of_topic_config(&key).map_or(key, |c| c.key.to_owned()),
            value,
            default,
            why,
        },
        other => other,
    })?;
    Ok(())
}

/// IncrementalAlterConfigs on one resource's dynamic broker configs, validated.
pub fn apply_broker_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, ConfigOp, Option<String>)],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let next = apply_ops_with(current, ops, |key| {
        let config = dynamic_broker_config(key).ok_or_else(|| ConfigError::ReadOnly {
            key: key.to_owned(),
        })?;
        Ok((config.kind(), config.default_value()))
    })?;
    validate_broker_configs(&next)?;
    Ok(next)
}

/// The type of dynamic broker config `config`.
pub fn dynamic_type(config: &DynamicBrokerConfig) -> ConfigType {
    config.kind()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::TOPIC_CONFIGS;
    use crate::cluster::image::MetadataRecord;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_dynamic_config_stands_for_a_known_topic_config_once() {
        for config in DYNAMIC_BROKER_CONFIGS {
            let Some(topic) = config.topic else {
                assert!(config.key.ends_with(".replication.throttled.rate"));
                continue;
            };
            assert!(topic_config_spec(topic).is_some(), "{}", config.key);
            assert_eq!(
                broker_key_of_topic_config(topic).map(|c| c.key),
                Some(config.key)
            );
        }
        // Every topic config has a broker default, as in Kafka, but those Kafka sets per topic only.
        let per_topic_only = [
            "follower.replication.throttled.replicas",
            "leader.replication.throttled.replicas",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
        ];
        for spec in TOPIC_CONFIGS {
            assert_eq!(
                broker_key_of_topic_config(spec.key).is_some(),
                !per_topic_only.contains(&spec.key),
                "{}",
                spec.key
            );
        }
    }

    #[test]
    fn topics_inherit_broker_over_cluster_over_default_and_overrides_win() {
        let mut image = MetadataImage::new("c".into());
        image.brokers.insert(
            1,
            crate::cluster::BrokerRegistration {
                id: 1,
                rack: None,
                host: "h".into(),
                port: 1,
                listeners: Vec::new(),
                fenced: false,
                incarnation: uuid::Uuid::nil(),
                epoch: 0,
                shut_down: false,
                replaces: None,
            },
        );
        for (resource, configs) in [
            (
                CLUSTER_DEFAULT,
                map(&[("log.retention.ms", "1000"), ("log.segment.bytes", "4096")]),
            ),
            ("1", map(&[("log.retention.ms", "2000")])),
        ] {
            image
                .apply(&MetadataRecord::SetBrokerConfigs {
                    resource: resource.to_owned(),
                    configs,
                    from: Some(BTreeMap::new()),
                })
                .unwrap();
        }
        assert_eq!(
            topic_defaults(&image, 1),
            map(&[("retention.ms", "2000"), ("segment.bytes", "4096")])
        );
        assert_eq!(
            topic_defaults(&image, 2),
            map(&[("retention.ms", "1000"), ("segment.bytes", "4096")])
        );
        let topic = TopicImage {
            name: "t".into(),
            id: uuid::Uuid::from_u128(1),
            configs: map(&[("segment.bytes", "8192")]),
            partitions: Vec::new(),
        };
        assert_eq!(
            effective_topic_configs(&image, 1, &topic),
            map(&[("retention.ms", "2000"), ("segment.bytes", "8192")])
        );
        let retention = dynamic_broker_config("log.retention.ms").unwrap();
        assert_eq!(
            dynamic_values(&image, 1, retention),
            [
                (DynamicSource::Broker, "2000".to_owned()),
                (DynamicSource::Cluster, "1000".to_owned()),
                (DynamicSource::Default, "604800000".to_owned()),
            ]
        );
        // A change computed from configs that moved on since is refused.
        let stale = MetadataRecord::SetBrokerConfigs {
            resource: "1".to_owned(),
            configs: map(&[("log.retention.ms", "3000")]),
            from: Some(BTreeMap::new()),
        };
        assert!(Arc::new(image).as_ref().clone().apply(&stale).is_err());
    }

    #[test]
    fn only_dynamic_configs_with_valid_values_are_accepted() {
        assert!(validate_broker_configs(&map(&[("log.retention.ms", "-1")])).is_ok());
        assert!(matches!(
            validate_broker_configs(&map(&[("node.id", "4")])),
            Err(ConfigError::ReadOnly { .. })
        ));
        match validate_broker_configs(&map(&[("log.segment.bytes", "big")])) {
            Err(ConfigError::InvalidValue { key, .. }) => assert_eq!(key, "log.segment.bytes"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            validate_broker_configs(&map(&[("log.preallocate", "true")])),
            Err(ConfigError::Unsupported { .. })
        ));
        let next = apply_broker_ops(
            &map(&[("log.retention.ms", "1000")]),
            &[
                ("log.retention.ms".into(), ConfigOp::Delete, None),
                (
                    "log.cleanup.policy".into(),
                    ConfigOp::Append,
                    Some("compact".into()),
                ),
            ],
        )
        .unwrap();
        assert_eq!(next, map(&[("log.cleanup.policy", "delete,compact")]));
    }
}
