//! The Topic controller's Kafka side, free of Kubernetes: a validated [`DesiredTopic`] (built
//! from a `Topic` resource) -> [`converge_topic`] -> [`KafkaAdmin`] requests -> the topic in the
//! cluster, and a [`ConvergedTopic`] (or a [`ConvergeError`] with a reason) for the status.
//!
//! Git is the source of truth for what it names: a topic that is absent is created, a topic
//! with fewer partitions grows, a config that differs is set, and a per-topic override the spec
//! no longer names returns to the broker's default. What Kafka cannot do safely is refused
//! rather than approximated: removing partitions, changing the replication factor. Topics and
//! configs the spec does not name (broker defaults, other topics) are left alone.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use crate::kafka::{ConfigEntry, ConfigOp, ConfigSource, KafkaAdmin, KafkaError};

/// What the spec asks for. `-1` partitions or replication factor: the broker's default, at
/// creation only (an existing topic is then not compared on that count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub config: BTreeMap<String, String>,
}

/// The topic after convergence and what it took to get there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvergedTopic {
    pub topic_id: Option<String>,
    pub partitions: i32,
    pub replication_factor: i16,
    /// The topic did not exist and was created (with the spec's configs).
    pub created: bool,
    /// Partitions were added to reach the spec's count.
    pub partitions_added: bool,
    /// Config keys set, in name order (at creation: every key of the spec).
    pub configs_set: Vec<String>,
    /// Per-topic overrides removed (back to the broker's default), in name order.
    pub configs_reset: Vec<String>,
}

/// Why a topic could not be converged. [`reason`](Self::reason) is the label for conditions,
/// Events and metrics.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(
        "the spec asks for {desired} partitions, the topic has {actual}: Kafka cannot remove any"
    )]
    PartitionDecreaseRejected { actual: i32, desired: i32 },
    /// Changing it takes a partition reassignment, a disruptive step of its own.
    #[error("the spec asks for replication factor {desired}, the topic has {actual}")]
    ReplicationFactorChangeRejected { actual: i16, desired: i16 },
    /// CreateTopics says the topic exists, Metadata does not know it: a deletion is in progress.
    #[error("topic '{topic}' is still being deleted")]
    PendingDeletion { topic: String },
    #[error("describing topic '{topic}'")]
    Describe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("creating topic '{topic}'")]
    Create {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("adding partitions to topic '{topic}'")]
    CreatePartitions {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading the configs of topic '{topic}'")]
    DescribeConfigs {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("altering the configs of topic '{topic}'")]
    AlterConfigs {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("deleting topic '{topic}'")]
    Delete {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl ConvergeError {
    /// A low-cardinality label: `PartitionDecreaseRejected`, `ReplicationFactorChangeRejected`,
    /// `TopicPendingDeletion`, or the Kafka error's [reason](KafkaError::reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PartitionDecreaseRejected { .. } => "PartitionDecreaseRejected",
            Self::ReplicationFactorChangeRejected { .. } => "ReplicationFactorChangeRejected",
            Self::PendingDeletion { .. } => "TopicPendingDeletion",
            Self::Describe { source, .. }
            | Self::Create { source, .. }
            | Self::CreatePartitions { source, .. }
            | Self::DescribeConfigs { source, .. }
            | Self::AlterConfigs { source, .. }
            | Self::Delete { source, .. } => source.reason(),
        }
    }

    /// Whether retrying soon may succeed. A rejected spec waits for the spec to change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::PartitionDecreaseRejected { .. }
            | Self::ReplicationFactorChangeRejected { .. } => false,
            Self::PendingDeletion { .. } => true,
            Self::Describe { source, .. }
            | Self::Create { source, .. }
            | Self::CreatePartitions { source, .. }
            | Self::DescribeConfigs { source, .. }
            | Self::AlterConfigs { source, .. }
            | Self::Delete { source, .. } => source.is_transient(),
        }
    }
}

/// Brings the topic to `desired`: creates it when absent; otherwise adds partitions, then sets
/// and resets configs. A partition decrease or a replication factor change is refused before
/// anything is changed.
pub async fn converge_topic(
    admin: &mut KafkaAdmin,
    desired: &DesiredTopic,
) -> Result<ConvergedTopic, ConvergeError> {
    let topic = desired.name.clone();
    let current = match describe(admin, &topic).await? {
        Some(current) => current,
        None => {
            match admin
                .create_topic(
                    &topic,
                    desired.partitions,
                    desired.replication_factor,
                    &desired.config,
                )
                .await
            {
                Ok(topic_id) => return created(admin, desired, topic_id).await,
                // Created by someone else since the describe: converge what is there.
                Err(source)
                    if source.error_code() == Some(ResponseError::TopicAlreadyExists.code()) =>
                {
                    describe(admin, &topic)
                        .await?
                        .ok_or(ConvergeError::PendingDeletion {
                            topic: topic.clone(),
                        })?
                }
                Err(source) => return Err(ConvergeError::Create { topic, source }),
            }
        }
    };
    if desired.partitions > 0 && current.partitions > desired.partitions {
        return Err(ConvergeError::PartitionDecreaseRejected {
            actual: current.partitions,
            desired: desired.partitions,
        });
    }
    if desired.replication_factor > 0 && current.replication_factor != desired.replication_factor {
        return Err(ConvergeError::ReplicationFactorChangeRejected {
            actual: current.replication_factor,
            desired: desired.replication_factor,
        });
    }
    let partitions_added = desired.partitions > current.partitions;
    if partitions_added {
        admin
            .create_partitions(&topic, desired.partitions)
            .await
            .map_err(|source| ConvergeError::CreatePartitions {
                topic: topic.clone(),
                source,
            })?;
        tracing::info!(
            topic,
            from = current.partitions,
            to = desired.partitions,
            "added partitions"
        );
    }
    let entries = admin
        .describe_topic_configs(&topic)
        .await
        .map_err(|source| ConvergeError::DescribeConfigs {
            topic: topic.clone(),
            source,
        })?;
    let ops = config_ops(&entries, &desired.config);
    admin
        .alter_topic_configs(&topic, &ops)
        .await
        .map_err(|source| ConvergeError::AlterConfigs {
            topic: topic.clone(),
            source,
        })?;
    let (mut configs_set, mut configs_reset) = (Vec::new(), Vec::new());
    for op in ops {
        match op {
            ConfigOp::Set { name, .. } => configs_set.push(name),
            ConfigOp::Delete { name } => configs_reset.push(name),
        }
    }
    if !configs_set.is_empty() || !configs_reset.is_empty() {
        tracing::info!(
            topic,
            ?configs_set,
            ?configs_reset,
            "converged topic configs"
        );
    }
    Ok(ConvergedTopic {
        topic_id: current.topic_id,
        partitions: current.partitions.max(desired.partitions),
        replication_factor: current.replication_factor,
        created: false,
        partitions_added,
        configs_set,
        configs_reset,
    })
}

/// Deletes the topic. `Ok(false)`: it did not exist.
pub async fn delete_topic(admin: &mut KafkaAdmin, name: &str) -> Result<bool, ConvergeError> {
    let existed = admin
        .delete_topic(name)
        .await
        .map_err(|source| ConvergeError::Delete {
            topic: name.to_owned(),
            source,
        })?;
    if existed {
        tracing::info!(topic = name, "deleted topic");
    }
    Ok(existed)
}

/// The IncrementalAlterConfigs operations that bring `current` (DescribeConfigs) to `desired`:
/// SET every key of the spec whose value differs (or is unknown, e.g. sensitive), DELETE every
/// per-topic override the spec does not name. Values are compared as strings, as Kafka stores
/// them. Keys the spec does not name and that are not overrides are left alone.
pub fn config_ops(current: &[ConfigEntry], desired: &BTreeMap<String, String>) -> Vec<ConfigOp> {
    let sets = desired
        .iter()
        .filter(|(name, value)| {
            !current
                .iter()
                .any(|e| &e.name == *name && e.value.as_deref() == Some(value.as_str()))
        })
        .map(|(name, value)| ConfigOp::Set {
            name: name.clone(),
            value: value.clone(),
        });
    let mut resets: Vec<ConfigOp> = current
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic && !desired.contains_key(&e.name))
        .map(|e| ConfigOp::Delete {
            name: e.name.clone(),
        })
        .collect();
    resets.sort_by(|a, b| a.name().cmp(b.name()));
    resets.dedup();
    sets.chain(resets).collect()
}

async fn describe(
    admin: &mut KafkaAdmin,
    topic: &str,
) -> Result<Option<crate::kafka::TopicDescription>, ConvergeError> {
    admin
        .describe_topic(topic)
        .await
        .map_err(|source| ConvergeError::Describe {
            topic: topic.to_owned(),
            source,
        })
}

/// The outcome of a creation. The id, partition count and replication factor are read back
/// when the creation response could not tell them (an older broker, or broker defaults asked).
async fn created(
    admin: &mut KafkaAdmin,
    desired: &DesiredTopic,
    topic_id: Option<String>,
) -> Result<ConvergedTopic, ConvergeError> {
    tracing::info!(
        topic = desired.name,
        partitions = desired.partitions,
        "created topic"
    );
    let mut converged = ConvergedTopic {
        topic_id,
        partitions: desired.partitions,
        replication_factor: desired.replication_factor,
        created: true,
        partitions_added: false,
        configs_set: desired.config.keys().cloned().collect(),
        configs_reset: Vec::new(),
    };
    let unknown =
        converged.topic_id.is_none() || desired.partitions < 1 || desired.replication_factor < 1;
    if unknown {
        // A broker that propagates metadata lazily may not show the topic yet; then what was
        // asked is the best answer until the next reconcile.
        if let Some(current) = describe(admin, &desired.name).await? {
            converged.topic_id = current.topic_id;
            converged.partitions = current.partitions;
            converged.replication_factor = current.replication_factor;
        }
    }
    Ok(converged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: Option<&str>, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.to_owned(),
            value: value.map(str::to_owned),
            source,
            read_only: false,
        }
    }

    fn spec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(name: &str, value: &str) -> ConfigOp {
        ConfigOp::Set {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn delete(name: &str) -> ConfigOp {
        ConfigOp::Delete {
            name: name.to_owned(),
        }
    }

    fn current() -> Vec<ConfigEntry> {
        vec![
            entry(
                "cleanup.policy",
                Some("compact"),
                ConfigSource::DynamicTopic,
            ),
            entry("retention.ms", Some("3600000"), ConfigSource::DynamicTopic),
            entry("segment.bytes", Some("1073741824"), ConfigSource::Default),
            entry(
                "max.message.bytes",
                Some("2000000"),
                ConfigSource::StaticBroker,
            ),
        ]
    }

    #[test]
    fn a_topic_matching_its_spec_needs_no_ops() {
        let desired = spec(&[("cleanup.policy", "compact"), ("retention.ms", "3600000")]);
        assert_eq!(config_ops(&current(), &desired), vec![]);
    }

    #[test]
    fn a_changed_value_is_set() {
        let desired = spec(&[("cleanup.policy", "compact"), ("retention.ms", "7200000")]);
        assert_eq!(
            config_ops(&current(), &desired),
            vec![set("retention.ms", "7200000")]
        );
    }

    #[test]
    fn an_override_the_spec_no_longer_names_is_deleted() {
        let desired = spec(&[("retention.ms", "3600000")]);
        assert_eq!(
            config_ops(&current(), &desired),
            vec![delete("cleanup.policy")]
        );
    }

    #[test]
    fn defaults_and_broker_configs_the_spec_does_not_name_are_left_alone() {
        let desired = spec(&[("cleanup.policy", "compact"), ("retention.ms", "3600000")]);
        let ops = config_ops(&current(), &desired);
        assert!(
            !ops.iter()
                .any(|op| op.name() == "segment.bytes" || op.name() == "max.message.bytes"),
            "{ops:?}"
        );
    }

    #[test]
    fn a_value_equal_to_the_default_needs_no_override() {
        let mut desired = spec(&[("cleanup.policy", "compact"), ("retention.ms", "3600000")]);
        desired.insert("segment.bytes".to_owned(), "1073741824".to_owned());
        assert_eq!(config_ops(&current(), &desired), vec![]);
    }

    #[test]
    fn a_default_or_static_value_the_spec_changes_is_set() {
        let desired = spec(&[
            ("cleanup.policy", "compact"),
            ("max.message.bytes", "1048588"),
            ("retention.ms", "3600000"),
            ("segment.bytes", "104857600"),
        ]);
        assert_eq!(
            config_ops(&current(), &desired),
            vec![
                set("max.message.bytes", "1048588"),
                set("segment.bytes", "104857600")
            ]
        );
    }

    #[test]
    fn a_key_the_broker_does_not_report_is_set_so_the_broker_can_judge_it() {
        let desired = spec(&[
            ("cleanup.policy", "compact"),
            ("retention.ms", "3600000"),
            ("no.such.key", "1"),
        ]);
        assert_eq!(
            config_ops(&current(), &desired),
            vec![set("no.such.key", "1")]
        );
    }

    #[test]
    fn a_hidden_value_is_set_every_time() {
        let current = vec![entry("secret", None, ConfigSource::DynamicTopic)];
        let desired = spec(&[("secret", "s3cr3t")]);
        assert_eq!(
            config_ops(&current, &desired),
            vec![set("secret", "s3cr3t")]
        );
    }

    #[test]
    fn sets_come_in_name_order_then_deletes_in_name_order() {
        let current = vec![
            entry("z.key", Some("1"), ConfigSource::DynamicTopic),
            entry("a.key", Some("1"), ConfigSource::DynamicTopic),
        ];
        let desired = spec(&[("m.key", "2"), ("b.key", "2")]);
        assert_eq!(
            config_ops(&current, &desired),
            vec![
                set("b.key", "2"),
                set("m.key", "2"),
                delete("a.key"),
                delete("z.key")
            ]
        );
    }

    #[test]
    fn an_empty_spec_resets_every_override() {
        assert_eq!(
            config_ops(&current(), &BTreeMap::new()),
            vec![delete("cleanup.policy"), delete("retention.ms")]
        );
    }

    #[test]
    fn rejections_wait_for_a_spec_change_and_are_labelled() {
        let decrease = ConvergeError::PartitionDecreaseRejected {
            actual: 5,
            desired: 2,
        };
        assert_eq!(decrease.reason(), "PartitionDecreaseRejected");
        assert!(!decrease.is_transient());
        let replication = ConvergeError::ReplicationFactorChangeRejected {
            actual: 1,
            desired: 3,
        };
        assert_eq!(replication.reason(), "ReplicationFactorChangeRejected");
        assert!(!replication.is_transient());
        let pending = ConvergeError::PendingDeletion {
            topic: "t".to_owned(),
        };
        assert_eq!(pending.reason(), "TopicPendingDeletion");
        assert!(pending.is_transient());
    }
}
