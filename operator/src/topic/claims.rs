//! Which Topic resource manages a Kafka topic when several name it (pure).
//!
//! Two Topics naming the same Kafka topic of the same Cluster would undo each other's config
//! and partition changes on every resync, and deleting either would delete the data the other
//! still declares. As in Strimzi, the oldest Topic (creation time, then name) manages it; the
//! others report `ResourceConflict` and change nothing. A Topic being deleted no longer claims
//! anything, so the next oldest takes over, and a deleted Topic leaves the Kafka topic in place
//! while another Topic still names it. A Topic whose spec became invalid keeps its claim on the
//! name its status recorded, so a typo in the manager hands its topic to no one.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::crd::Topic;
use crate::topic::validate::validate_topic;

/// The Kafka topic `topic` names: from its spec, or from its status when the spec is invalid.
fn claimed_name(topic: &Topic) -> Option<String> {
    match validate_topic(topic) {
        Ok(validated) => Some(validated.desired.name),
        Err(_) => topic.status.as_ref().and_then(|s| s.topic_name.clone()),
    }
}

/// The other live Topics in `all` that name Kafka topic `kafka_name` of Cluster `cluster`.
pub fn rivals<'a: 'b, 'b>(
    topic: &'b Topic,
    cluster: &'b str,
    kafka_name: &'b str,
    all: &'a [Arc<Topic>],
) -> impl Iterator<Item = &'a Topic> + 'b {
    all.iter().map(Arc::as_ref).filter(move |other| {
        !same_object(topic, other)
            && other.meta().deletion_timestamp.is_none()
            && other.spec.cluster == cluster
            && claimed_name(other).is_some_and(|name| name == kafka_name)
    })
}

/// The Topic that manages the Kafka topic `topic` names, when it is another one.
pub fn managed_by_another<'a>(
    topic: &Topic,
    cluster: &str,
    kafka_name: &str,
    all: &'a [Arc<Topic>],
) -> Option<&'a Topic> {
    rivals(topic, cluster, kafka_name, all)
        .filter(|other| seniority(other) < seniority(topic))
        .min_by_key(|other| seniority(other))
}

fn seniority(topic: &Topic) -> (Option<Timestamp>, String) {
    (
        topic.meta().creation_timestamp.as_ref().map(|t| t.0),
        topic.name_any(),
    )
}

fn same_object(a: &Topic, b: &Topic) -> bool {
    match (a.uid(), b.uid()) {
        (Some(a), Some(b)) => a == b,
        _ => a.name_any() == b.name_any() && a.namespace() == b.namespace(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::{DeletionPolicy, TopicSpec, TopicStatus};

    fn topic(name: &str, kafka_name: Option<&str>, created: i64) -> Topic {
        let mut topic = Topic::new(
            name,
            TopicSpec {
                cluster: "events".into(),
                topic_name: kafka_name.map(str::to_owned),
                partitions: 3,
                replication_factor: 1,
                config: BTreeMap::new(),
                deletion_policy: DeletionPolicy::Delete,
            },
        );
        topic.metadata.namespace = Some("streaming".into());
        topic.metadata.uid = Some(format!("uid-{name}"));
        topic.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        topic
    }

    /// The namespace's Topics as the caches and lists hand them over.
    fn shared(all: &[Topic]) -> Vec<Arc<Topic>> {
        all.iter().cloned().map(Arc::new).collect()
    }

    fn manager(topic: &Topic, all: &[Topic]) -> Option<String> {
        let name = validate_topic(topic).unwrap().desired.name;
        managed_by_another(topic, "events", &name, &shared(all)).map(ResourceExt::name_any)
    }

    #[test]
    fn the_oldest_topic_naming_a_kafka_topic_manages_it() {
        let orders = topic("orders", None, 100);
        let copy = topic("orders-copy", Some("orders"), 200);
        let unrelated = topic("payments", None, 50);
        let all = vec![orders.clone(), copy.clone(), unrelated];
        assert_eq!(manager(&orders, &all), None);
        assert_eq!(manager(&copy, &all).as_deref(), Some("orders"));
        // Same creation second: the name decides, the same way for both.
        let twin = topic("a-orders", Some("orders"), 100);
        let all = vec![orders.clone(), twin.clone()];
        assert_eq!(manager(&orders, &all).as_deref(), Some("a-orders"));
        assert_eq!(manager(&twin, &all), None);
    }

    #[test]
    fn deleted_other_cluster_and_never_valid_topics_claim_nothing() {
        let orders = topic("orders", None, 100);
        let mut deleting = topic("old", Some("orders"), 10);
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(300).unwrap()));
        let mut elsewhere = topic("other-cluster", Some("orders"), 10);
        elsewhere.spec.cluster = "metrics".into();
        let mut invalid = topic("invalid", Some("orders"), 10);
        invalid.spec.partitions = 0;
        let all = vec![orders.clone(), deleting, elsewhere, invalid];
        assert_eq!(manager(&orders, &all), None);
        assert_eq!(
            rivals(&orders, "events", "orders", &shared(&all)).count(),
            0
        );
    }

    #[test]
    fn a_manager_whose_spec_became_invalid_keeps_its_claim() {
        let mut broken = topic("orders", None, 100);
        broken.spec.partitions = 0;
        broken.status = Some(TopicStatus {
            topic_name: Some("orders".into()),
            ..TopicStatus::default()
        });
        let newer = topic("orders-v2", Some("orders"), 200);
        let all = vec![broken, newer.clone()];
        assert_eq!(manager(&newer, &all).as_deref(), Some("orders"));
    }

    #[test]
    fn a_topic_is_never_its_own_rival() {
        let orders = topic("orders", None, 100);
        let newer = topic("orders-v2", Some("orders"), 200);
        let all = vec![orders.clone(), newer.clone()];
        let rivals: Vec<String> = rivals(&orders, "events", "orders", &shared(&all))
            .map(ResourceExt::name_any)
            .collect();
        assert_eq!(rivals, ["orders-v2"]);
    }
}
