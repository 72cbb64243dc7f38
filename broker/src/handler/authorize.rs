//! The authorisation Kafka applies to a request as a whole, before any of it is served: the
//! cluster operations (ALTER to elect leaders, move replicas or change credentials; DESCRIBE to
//! list reassignments, log dirs, the quorum or credentials; DESCRIBE_CONFIGS to list config
//! resources) and READ on the group a member request names (DELETE for OffsetDelete). A denied
//! request gets Kafka's error response for it: CLUSTER_AUTHORIZATION_FAILED or
//! GROUP_AUTHORIZATION_FAILED, for the whole request or for each item it names. Checks on the
//! topics, groups and configs inside a request are in the handlers, item by item.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, AlterReplicaLogDirsResponse,
    AlterUserScramCredentialsResponse, DescribeLogDirsResponse, DescribeQuorumResponse,
    DescribeUserScramCredentialsResponse, ElectLeadersResponse, HeartbeatResponse,
    JoinGroupResponse, LeaveGroupResponse, ListConfigResourcesResponse,
    ListPartitionReassignmentsResponse, OffsetDeleteResponse, RequestKind, ResponseKind,
    SyncGroupResponse,
};

use super::{Context, str_bytes};
use crate::security::acl::{Operation, ResourceType};

/// Kafka's answer to `body` if the client may not make it at all.
pub(super) fn denied(ctx: &Context, body: &RequestKind) -> Option<ResponseKind> {
    if !ctx.authorizing() {
        return None;
    }
    let cluster = |operation| !ctx.authorized_cluster(operation);
    let group = |operation, id: &str| !ctx.authorized(operation, ResourceType::Group, id);
    let cluster_failed = ResponseError::ClusterAuthorizationFailed.code();
    let group_failed = ResponseError::GroupAuthorizationFailed.code();
    let message = || Some(str_bytes("Cluster authorization failed."));
    Some(match body {
        RequestKind::DescribeLogDirs(_) if cluster(Operation::Describe) => {
            ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(cluster_failed),
            )
        }
        RequestKind::AlterReplicaLogDirs(request) if cluster(Operation::Alter) => {
            let results = request
                .dirs
                .iter()
                .flat_map(|dir| &dir.topics)
                .map(|topic| {
                    AlterReplicaLogDirTopicResult::default()
                        .with_topic_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|p| {
                                    AlterReplicaLogDirPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_error_code(cluster_failed)
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::AlterReplicaLogDirs(
                AlterReplicaLogDirsResponse::default().with_results(results),
            )
        }
        RequestKind::ElectLeaders(request) if cluster(Operation::Alter) => {
            let results = request
                .topic_partitions
                .iter()
                .flatten()
                .map(|topic| {
                    ReplicaElectionResult::default()
                        .with_topic(topic.topic.clone())
                        .with_partition_result(
                            topic
                                .partitions
                                .iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(cluster_failed)
                                        .with_error_message(message())
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::ElectLeaders(
                ElectLeadersResponse::default()
                    .with_error_code(cluster_failed)
                    .with_replica_election_results(results),
            )
        }
        RequestKind::AlterPartitionReassignments(_) if cluster(Operation::Alter) => {
            ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default()
                    .with_error_code(cluster_failed)
                    .with_error_message(message()),
            )
        }
        RequestKind::ListPartitionReassignments(_) if cluster(Operation::Describe) => {
            ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default()
                    .with_error_code(cluster_failed)
                    .with_error_message(message()),
            )
        }
        RequestKind::DescribeQuorum(_) if cluster(Operation::Describe) => {
            ResponseKind::DescribeQuorum(
                DescribeQuorumResponse::default()
                    .with_error_code(cluster_failed)
                    .with_error_message(message()),
            )
        }
        RequestKind::ListConfigResources(_) if cluster(Operation::DescribeConfigs) => {
            ResponseKind::ListConfigResources(
                ListConfigResourcesResponse::default().with_error_code(cluster_failed),
            )
        }
        RequestKind::DescribeUserScramCredentials(_) if cluster(Operation::Describe) => {
            ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default()
                    .with_error_code(cluster_failed)
                    .with_error_message(message()),
            )
        }
        RequestKind::AlterUserScramCredentials(request) if cluster(Operation::Alter) => {
            let mut users: Vec<&str> = request
                .deletions
                .iter()
                .map(|d| d.name.as_str())
                .chain(request.upsertions.iter().map(|u| u.name.as_str()))
                .collect();
            users.sort_unstable();
            users.dedup();
            let results = users
                .into_iter()
                .map(|user| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(str_bytes(user))
                        .with_error_code(cluster_failed)
                        .with_error_message(message())
                })
                .collect();
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results),
            )
        }
        RequestKind::JoinGroup(request) if group(Operation::Read, &request.group_id) => {
            ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(group_failed)
                    .with_generation_id(-1),
            )
        }
        RequestKind::SyncGroup(request) if group(Operation::Read, &request.group_id) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(group_failed))
        }
        RequestKind::Heartbeat(request) if group(Operation::Read, &request.group_id) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(group_failed))
        }
        RequestKind::LeaveGroup(request) if group(Operation::Read, &request.group_id) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(group_failed))
        }
        RequestKind::OffsetDelete(request) if group(Operation::Delete, &request.group_id) => {
            ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(group_failed),
            )
        }
        _ => return None,
    })
}
