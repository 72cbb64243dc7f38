//! Metadata: the broker, the cluster id, and topics with their partitions. With
//! `allow_auto_topic_creation` (and the broker's auto-create on) unknown topics are created.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, topic_name};
use crate::broker::{Broker, CreateTopicError};
use crate::cluster::TopicMetadata;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let (host, port) = broker.advertised();
    let me = MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(str_bytes(host))
        .with_port(port)
        .with_rack(broker.config().rack.clone().map(str_bytes));
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
        (version < 4 || request.allow_auto_topic_creation) && broker.config().auto_create_topics;
    let topics = match requested {
        None => broker
            .topics()
            .iter()
            .map(|t| describe(broker, t))
            .collect(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(match broker.topic(&name) {
                    Some(topic) => describe(broker, &topic),
                    None if allow_create => auto_create(broker, &name).await,
                    None => error_topic(&name, ResponseError::UnknownTopicOrPartition.code()),
                });
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![me])
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(topics)
}

async fn auto_create(broker: &Arc<Broker>, name: &str) -> MetadataResponseTopic {
    match broker.create_topic(name, -1, -1, BTreeMap::new()).await {
        Ok(topic) => describe(broker, &topic),
        Err(CreateTopicError::InvalidName(_)) => {
            error_topic(name, ResponseError::InvalidTopicException.code())
        }
        Err(error) => match broker.topic(name) {
            // Created meanwhile by another request: describe what is there.
            Some(topic) => describe(broker, &topic),
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

fn describe(broker: &Broker, topic: &TopicMetadata) -> MetadataResponseTopic {
    let me = BrokerId(broker.node_id());
    let partitions = (0..topic.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(me)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
