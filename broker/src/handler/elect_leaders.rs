//! ElectLeaders: a preferred election hands a partition's leadership back to its first replica
//! (if usable and in sync), an unclean one gives a leaderless partition a leader even out of sync.
//! Every broker takes it and commits each change through the metadata quorum, conditional on the
//! partition it read (see [`crate::cluster::controller::elect_on_request`]).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{Context, str_bytes, topic_name};
use crate::broker::ElectLeaderError;
use crate::cluster::controller::{ElectionRefused, ElectionType};

pub(super) async fn handle(ctx: &Context, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let kind = match request.election_type {
        0 => Some(ElectionType::Preferred),
        1 => Some(ElectionType::Unclean),
        _ => None,
    };
    // No list: every partition of the cluster (as Kafka's admin tool asks for all).
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
        None => ctx
            .image()
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partition_count()).collect()))
            .collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_results = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let outcome = match kind {
                Some(kind) => Some(ctx.elect_leader(&topic, partition, kind).await),
                None => None,
            };
            let (code, message) = match outcome {
                None => (
                    ResponseError::InvalidRequest.code(),
                    Some(format!(
                        "unknown election type {}: 0 is preferred, 1 unclean",
                        request.election_type
                    )),
                ),
                Some(Ok(())) => (0, None),
                Some(Err(error)) => (error_code(&error).code(), Some(error.to_string())),
            };
            partition_results.push(
                PartitionResult::default()
                    .with_partition_id(partition)
                    .with_error_code(code)
                    .with_error_message(message.map(str_bytes)),
            );
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(topic_name(&topic))
                .with_partition_result(partition_results),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn error_code(error: &ElectLeaderError) -> ResponseError {
    match error {
        ElectLeaderError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
        ElectLeaderError::Refused(ElectionRefused::NotNeeded) => ResponseError::ElectionNotNeeded,
        ElectLeaderError::Refused(ElectionRefused::PreferredNotAvailable) => {
            ResponseError::PreferredLeaderNotAvailable
        }
        ElectLeaderError::Refused(ElectionRefused::NoEligibleLeader) => {
            ResponseError::EligibleLeadersNotAvailable
        }
        ElectLeaderError::Metadata(error) => {
            tracing::warn!(%error, "an election on request was not committed");
            ResponseError::RequestTimedOut
        }
    }
}
