//! Metadata: the broker, the cluster id, and topics with their partitions. With
//! `allow_auto_topic_creation` (and the broker's auto-create on) unknown topics are created.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{Context, str_bytes, topic_name};
use crate::broker::CreateTopicError;
use crate::cluster::{MetadataImage, PartitionImage, TopicImage};
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(
    ctx: &Context,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // A broker whose metadata is not known current may have lost its leaderships without knowing
    // it (cut off from the controller): it does not name itself leader, so clients look elsewhere.
    // Nor does it list itself: a client then asks another broker, which knows who leads now.
    let current = ctx.metadata_current();
    let unclaimed;
    let image: &MetadataImage = if current {
        ctx.image()
    } else {
        unclaimed = without_leaderships_of(ctx.image(), ctx.node_id());
        &unclaimed
    };
    let brokers = image
        .unfenced_brokers()
        .filter(|b| current || b.id != ctx.node_id())
        .filter_map(|b| {
            let (host, port) = ctx.endpoint(b)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    // Version 0 has no null "all topics": an empty list means all.
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    // Before v4 there is no flag: auto-creation follows the broker setting.
    let allow_create =
        (version < 4 || request.allow_auto_topic_creation) && ctx.config().auto_create_topics;
    // As Kafka: a listing of all topics leaves out those the client may not describe; a topic
    // named is TOPIC_AUTHORIZATION_FAILED, whether it exists or not; creating one takes CREATE on
    // the cluster or on the topic.
    // Kafka's "not asked for" unless asked (v8+); then what the client may do on each topic.
    let topic_operations = |name: &str| {
        if version >= 8 && request.include_topic_authorized_operations {
            ctx.authorized_operations(ResourceType::Topic, name)
        } else {
            i32::MIN
        }
    };
    let topics: Vec<MetadataResponseTopic> = match requested {
        None => image
            .topics
            .values()
            .filter(|t| ctx.may(Operation::Describe, ResourceType::Topic, &t.name))
            .map(|t| describe(image, t))
            .collect(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                if !ctx.authorized(Operation::Describe, ResourceType::Topic, &name) {
                    out.push(error_topic(
                        &name,
                        ResponseError::TopicAuthorizationFailed.code(),
                    ));
                    continue;
                }
                out.push(match image.topic(&name) {
                    Some(topic) => describe(image, topic),
                    None if allow_create && !may_create(ctx, &name) => {
                        error_topic(&name, ResponseError::TopicAuthorizationFailed.code())
                    }
                    None if allow_create => auto_create(ctx, &name).await,
                    None => error_topic(&name, ResponseError::UnknownTopicOrPartition.code()),
                });
            }
            out
        }
    };
    let topics = topics
        .into_iter()
        .map(|topic| {
            let operations = match (&topic.name, topic.error_code) {
                (Some(name), 0) => topic_operations(name),
                _ => i32::MIN,
            };
            let topic = without_unreachable_leaders(ctx, image, topic, version);
            topic.with_topic_authorized_operations(operations)
        })
        .collect();
    // v8–10 only (later versions ask DescribeCluster), and nothing without DESCRIBE on the
    // cluster, as Kafka answers.
    let cluster = crate::security::acl::CLUSTER_NAME;
    let cluster_operations =
        if !(8..=10).contains(&version) || !request.include_cluster_authorized_operations {
            i32::MIN
        } else if ctx.may(Operation::Describe, ResourceType::Cluster, cluster) {
            ctx.authorized_operations(ResourceType::Cluster, cluster)
        } else {
            0
        };
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(image.cluster_id.clone())))
        // As a KRaft broker does, a broker that answers is named the controller: it takes every
        // admin request and forwards metadata changes to the quorum's leader, so a client never
        // waits on a controller that has just gone away.
        .with_controller_id(BrokerId(ctx.node_id()))
        .with_topics(topics)
}

/// Whether the client may create topic `name`: CREATE on the cluster or on the topic (Kafka's
/// rule for CreateTopics and auto-creation alike).
pub(super) fn may_create(ctx: &Context, name: &str) -> bool {
    ctx.may(
        Operation::Create,
        ResourceType::Cluster,
        crate::security::acl::CLUSTER_NAME,
    ) || ctx.authorized(Operation::Create, ResourceType::Topic, name)
}

async fn auto_create(ctx: &Context, name: &str) -> MetadataResponseTopic {
    match ctx.create_topic(name, -1, -1, None, BTreeMap::new()).await {
        Ok(topic) => describe(&ctx.current_image(), &topic),
        Err(CreateTopicError::InvalidName(_)) => {
            error_topic(name, ResponseError::InvalidTopicException.code())
        }
        Err(error) => match ctx.current_image().topic(name) {
            // Created meanwhile by another request: describe what is there.
            Some(topic) => describe(&ctx.current_image(), topic),
            None => {
                tracing::warn!(topic = name, %error, "auto-creating a topic failed");
                error_topic(name, ResponseError::UnknownTopicOrPartition.code())
            }
        },
    }
}

fn error_topic(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(code)
}

/// `image` with every partition led by `node_id` shown without a leader.
fn without_leaderships_of(image: &MetadataImage, node_id: i32) -> MetadataImage {
    let mut image = image.clone();
    for topic in image.topics.values_mut() {
        if topic.partitions.iter().any(|p| p.leader == node_id) {
            for partition in &mut std::sync::Arc::make_mut(topic).partitions {
                if partition.leader == node_id {
                    partition.leader = -1;
                }
            }
        }
    }
    image
}

/// `topic` with the partitions whose leader has no endpoint on the client's listener (a broker
/// not yet restarted with it) shown without one, as Kafka shows them: LISTENER_NOT_FOUND from
/// version 6, LEADER_NOT_AVAILABLE before. The client asks again later.
fn without_unreachable_leaders(
    ctx: &Context,
    image: &MetadataImage,
    mut topic: MetadataResponseTopic,
    version: i16,
) -> MetadataResponseTopic {
    let code = if version >= 6 {
        ResponseError::ListenerNotFound.code()
    } else {
        ResponseError::LeaderNotAvailable.code()
    };
    for partition in &mut topic.partitions {
        let leader = partition.leader_id.0;
        let unreachable = image
            .brokers
            .get(&leader)
            .is_some_and(|broker| ctx.endpoint(broker).is_none());
        if unreachable {
            partition.leader_id = BrokerId(-1);
            partition.error_code = code;
        }
    }
    topic
}

/// The replicas of `partition` on brokers that are not serving (fenced or gone).
pub(super) fn offline_replicas(image: &MetadataImage, partition: &PartitionImage) -> Vec<i32> {
    partition
        .replicas
        .iter()
        .copied()
        .filter(|id| image.brokers.get(id).is_none_or(|b| b.fenced))
        .collect()
}

/// LEADER_NOT_AVAILABLE for a partition without a leader, otherwise none.
pub(super) fn partition_error(partition: &PartitionImage) -> i16 {
    if partition.leader < 0 {
        ResponseError::LeaderNotAvailable.code()
    } else {
        0
    }
}

/// A topic's partitions as the metadata image records them: leader, leader epoch, replicas, ISR,
/// and the replicas on brokers that are not serving (fenced or gone) as offline.
fn describe(image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .zip(0..)
        .map(|(partition, index)| {
            let offline = offline_replicas(image, partition);
            let error = partition_error(partition);
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(partition.leader))
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(ids(&partition.replicas))
                .with_isr_nodes(ids(&partition.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
