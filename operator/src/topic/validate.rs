//! Topic reconcile, step 2: the raw `Topic` checked into a [`ValidatedTopic`] (pure). The API
//! server has already applied the schema's bounds; this adds what a schema cannot say.

use kube::ResourceExt;

use crate::crd::{DeletionPolicy, Topic};
use crate::topic::converge::DesiredTopic;

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME: usize = 249;

/// A Topic spec that cannot be applied. Reported as `Ready=False, reason=InvalidSpec`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicSpecError {
    #[error(
        "topic name '{0}' is not valid in Kafka: use 1 to 249 of [a-zA-Z0-9._-], not '.' or '..'"
    )]
    InvalidName(String),
    #[error("partitions must be at least 1, got {0}")]
    InvalidPartitions(i32),
    #[error("replicationFactor must be from 1 to 32767, got {0}")]
    InvalidReplicationFactor(i32),
    #[error("config has an empty key")]
    EmptyConfigKey,
}

/// A Topic the controller can converge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedTopic {
    pub cluster: String,
    pub desired: DesiredTopic,
    pub deletion_policy: DeletionPolicy,
}

pub fn validate_topic(topic: &Topic) -> Result<ValidatedTopic, TopicSpecError> {
    let spec = &topic.spec;
    let name = spec.topic_name.clone().unwrap_or_else(|| topic.name_any());
    let legal = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > MAX_TOPIC_NAME || !legal || name == "." || name == ".." {
        return Err(TopicSpecError::InvalidName(name));
    }
    if spec.partitions < 1 {
        return Err(TopicSpecError::InvalidPartitions(spec.partitions));
    }
    let replication_factor = i16::try_from(spec.replication_factor)
        .ok()
        .filter(|rf| *rf >= 1)
        .ok_or(TopicSpecError::InvalidReplicationFactor(
            spec.replication_factor,
        ))?;
    if spec.config.keys().any(String::is_empty) {
        return Err(TopicSpecError::EmptyConfigKey);
    }
    Ok(ValidatedTopic {
        cluster: spec.cluster.clone(),
        desired: DesiredTopic {
            name,
            partitions: spec.partitions,
            replication_factor,
            config: spec.config.clone(),
        },
        deletion_policy: spec.deletion_policy,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;
    use crate::crd::TopicSpec;

    fn topic(name: &str, topic_name: Option<&str>) -> Topic {
        Topic::new(
            name,
            TopicSpec {
                cluster: "events".into(),
                topic_name: topic_name.map(str::to_owned),
                partitions: 6,
                replication_factor: 3,
                config: BTreeMap::from([("retention.ms".into(), "3600000".into())]),
                deletion_policy: DeletionPolicy::Delete,
            },
        )
    }

    #[test]
    fn the_kafka_name_defaults_to_the_resource_name() {
        let validated = validate_topic(&topic("orders", None)).unwrap();
        assert_eq!(validated.desired.name, "orders");
        assert_eq!(validated.desired.replication_factor, 3);
        let renamed = validate_topic(&topic("orders", Some("Orders_v2"))).unwrap();
        assert_eq!(renamed.desired.name, "Orders_v2");
    }

    #[test]
    fn names_and_counts_kafka_refuses_are_invalid_specs() {
        for bad in ["..", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(
                validate_topic(&topic("t", Some(bad))),
                Err(TopicSpecError::InvalidName(bad.to_owned()))
            );
        }
        let mut zero = topic("t", None);
        zero.spec.partitions = 0;
        assert_eq!(
            validate_topic(&zero),
            Err(TopicSpecError::InvalidPartitions(0))
        );
        let mut huge = topic("t", None);
        huge.spec.replication_factor = 40_000;
        assert_eq!(
            validate_topic(&huge),
            Err(TopicSpecError::InvalidReplicationFactor(40_000))
        );
    }
}
