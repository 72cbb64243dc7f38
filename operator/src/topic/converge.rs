//! The Topic controller's Kafka side, free of Kubernetes: a validated [`DesiredTopic`] (built
//! from a `Topic` resource) -> [`converge_topic`] -> [`KafkaAdmin`] requests -> the topic in the
//! cluster, and a [`ConvergedTopic`] (or a [`ConvergeError`] with a reason) for the status.
//!
//! Git is the source of truth for what it names: a topic that is absent is created, a topic
//! with fewer partitions grows, a config that differs is set, a per-topic override the spec no
//! longer names returns to the broker's default, and a replication factor that differs is
//! reached by reassigning the partitions (AlterPartitionReassignments; the brokers copy the data
//! to new replicas before dropping any). What Kafka cannot do safely is refused rather than
//! approximated: removing partitions, a replication factor below `min.insync.replicas`. Topics
//! and configs the spec does not name (broker defaults, other topics) are left alone.

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
    /// Partitions being moved to reach the spec's replication factor (0: it has it).
    pub reassigning: usize,
    /// Partitions whose move to the spec's replication factor this converge started.
    pub reassignments_started: usize,
}

/// Why a topic could not be converged. [`reason`](Self::reason) is the label for conditions,
/// Events and metrics.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(
        "the spec asks for {desired} partitions, the topic has {actual}: Kafka cannot remove any"
    )]
    PartitionDecreaseRejected { actual: i32, desired: i32 },
    /// Fewer replicas than `min.insync.replicas` would refuse every `acks=all` produce.
    #[error(
        "the spec asks for replication factor {desired}, below min.insync.replicas {min_insync}: every acks=all produce would be refused"
    )]
    ReplicationFactorChangeRejected { desired: i16, min_insync: i16 },
    /// The brokers cannot hold that many replicas of a partition.
    #[error("replication factor {desired} cannot be placed: {reason}")]
    ReplicationFactorUnplaceable { desired: i16, reason: String },
    #[error("reassigning the partitions of topic '{topic}'")]
    Reassign {
        topic: String,
        #[source]
        source: KafkaError,
    },
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
            Self::ReplicationFactorUnplaceable { .. } => "ReplicationFactorUnplaceable",
            Self::PendingDeletion { .. } => "TopicPendingDeletion",
            Self::Describe { source, .. }
            | Self::Reassign { source, .. }
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
            // Brokers may join.
            Self::ReplicationFactorUnplaceable { .. } | Self::PendingDeletion { .. } => true,
            Self::Describe { source, .. }
            | Self::Reassign { source, .. }
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
    let entries = admin
        .describe_topic_configs(&topic)
        .await
        .map_err(|source| ConvergeError::DescribeConfigs {
            topic: topic.clone(),
            source,
        })?;
    let (reassigning, reassignments_started) =
        converge_replication_factor(admin, &current, desired, &entries).await?;
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
        reassigning,
        reassignments_started,
    })
}

/// Moves the topic's partitions toward the spec's replication factor, unless it has it
/// already (or the spec leaves it to the broker): `(moving, started)`, the partitions being
/// moved, and of those the ones this call started. Moves running are left to finish (the next
/// converge looks again); a factor below `min.insync.replicas` (the spec's, else the topic's
/// effective one) is refused.
async fn converge_replication_factor(
    admin: &mut KafkaAdmin,
    current: &crate::kafka::TopicDescription,
    desired: &DesiredTopic,
    entries: &[ConfigEntry],
) -> Result<(usize, usize), ConvergeError> {
    let wanted = desired.replication_factor;
    let topic = &desired.name;
    let reassign_error = |source| ConvergeError::Reassign {
        topic: topic.clone(),
        source,
    };
    let off = current
        .replicas
        .iter()
        .filter(|replicas| replicas.len() != usize::try_from(wanted).unwrap_or(0))
        .count();
    if wanted < 1 || off == 0 {
        return Ok((0, 0));
    }
    let min_insync = desired
        .config
        .get("min.insync.replicas")
        .cloned()
        .or_else(|| {
            entries
                .iter()
                .find(|e| e.name == "min.insync.replicas")
                .and_then(|e| e.value.clone())
        })
        .and_then(|value| value.trim().parse::<i16>().ok())
        .unwrap_or(1);
    if wanted < min_insync {
        return Err(ConvergeError::ReplicationFactorChangeRejected {
            desired: wanted,
            min_insync,
        });
    }
    let moving = admin
        .reassigning_partitions(topic)
        .await
        .map_err(reassign_error)?;
    if !moving.is_empty() {
        return Ok((moving.len(), 0));
    }
    let targets =
        replica_targets(&current.replicas, &current.brokers, wanted).map_err(|reason| {
            ConvergeError::ReplicationFactorUnplaceable {
                desired: wanted,
                reason,
            }
        })?;
    admin
        .reassign_partitions(topic, &targets)
        .await
        .map_err(reassign_error)?;
    tracing::info!(
        topic,
        from = current.replication_factor,
        to = wanted,
        partitions = targets.len(),
        "reassigning partitions to a new replication factor"
    );
    Ok((targets.len(), targets.len()))
}

/// The target replicas that give each partition `factor` replicas: a partition with too few
/// gets brokers it lacks, on racks it does not use first (a broker without a rack is a rack of
/// its own), the ones holding fewest replicas of the topic first; one with too many keeps its
/// first ones (its preferred leader first). Partitions that have `factor` already are left out.
pub fn replica_targets(
    replicas: &[Vec<i32>],
    brokers: &[(i32, Option<String>)],
    factor: i16,
) -> Result<Vec<(i32, Vec<i32>)>, String> {
    let factor = usize::try_from(factor).unwrap_or(0);
    if brokers.len() < factor {
        return Err(format!(
            "the cluster has {} brokers, fewer than {factor} replicas",
            brokers.len()
        ));
    }
    let rack = |id: i32| {
        brokers
            .iter()
            .find(|(broker, _)| *broker == id)
            .and_then(|(_, rack)| rack.clone())
            .unwrap_or_else(|| format!("broker-{id}"))
    };
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|(id, _)| (*id, 0)).collect();
    for id in replicas.iter().flatten() {
        *load.entry(*id).or_default() += 1;
    }
    let mut targets = Vec::new();
    for (index, current) in (0..).zip(replicas) {
        if current.len() == factor {
            continue;
        }
        let mut target: Vec<i32> = current.iter().copied().take(factor).collect();
        while target.len() < factor {
            let used: Vec<String> = target.iter().map(|id| rack(*id)).collect();
            let chosen = brokers
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !target.contains(id))
                .min_by_key(|id| {
                    (
                        used.contains(&rack(*id)),
                        load.get(id).copied().unwrap_or(0),
                        *id,
                    )
                })
                .ok_or_else(|| format!("partition {index} has no broker left to add"))?;
            *load.entry(chosen).or_default() += 1;
            target.push(chosen);
        }
        targets.push((index, target));
    }
    Ok(targets)
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
        reassigning: 0,
        reassignments_started: 0,
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

    /// Growing adds brokers the partition lacks, on racks it does not use, the least loaded
    /// first; shrinking keeps the first replicas (the preferred leader stays); partitions at the
    /// factor already are left out; too few brokers is an error.
    #[test]
    fn replica_targets_grow_by_rack_and_shrink_from_the_end() {
        let brokers: Vec<(i32, Option<String>)> = [(1, "a"), (2, "a"), (3, "b"), (4, "c")]
            .iter()
            .map(|(id, rack)| (*id, Some((*rack).to_owned())))
            .collect();
        let grown = replica_targets(&[vec![1], vec![3], vec![1, 3, 4]], &brokers, 3).unwrap();
        assert_eq!(grown, [(0, vec![1, 4, 3]), (1, vec![3, 2, 4])]);
        let shrunk = replica_targets(&[vec![1, 3, 4], vec![3]], &brokers, 1).unwrap();
        assert_eq!(shrunk, [(0, vec![1])]);
        let error = replica_targets(&[vec![1]], &brokers, 5).unwrap_err();
        assert!(error.contains("4 brokers"), "{error}");
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
            desired: 1,
            min_insync: 2,
        };
        assert_eq!(replication.reason(), "ReplicationFactorChangeRejected");
        assert!(!replication.is_transient());
        assert!(
            replication
                .to_string()
                .contains("below min.insync.replicas 2")
        );
        let pending = ConvergeError::PendingDeletion {
            topic: "t".to_owned(),
        };
        assert_eq!(pending.reason(), "TopicPendingDeletion");
        assert!(pending.is_transient());
    }
}
