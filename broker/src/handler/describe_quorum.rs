//! DescribeQuorum (KIP-595): the metadata quorum as this broker knows it, as the one partition
//! of `__cluster_metadata`: the leader (the controller), its epoch (the Raft term), the high
//! watermark (the last committed entry), the voters, and the brokers outside the voters as
//! observers. Log end offsets of the others are known on the leader only (-1 elsewhere). v2 lists
//! the voters' cluster listeners.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{Context, str_bytes, topic_name};

pub(super) fn handle(
    ctx: &Context,
    _request: &DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let quorum = ctx.quorum();
    let replica = |(id, end): &(i32, Option<u64>)| {
        ReplicaState::default()
            .with_replica_id(BrokerId(*id))
            .with_log_end_offset(end.and_then(|e| i64::try_from(e).ok()).unwrap_or(-1))
            .with_last_fetch_timestamp(-1)
            .with_last_caught_up_timestamp(-1)
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(quorum.leader.unwrap_or(-1)))
        .with_leader_epoch(i32::try_from(quorum.term).unwrap_or(i32::MAX))
        .with_high_watermark(i64::try_from(quorum.committed).unwrap_or(i64::MAX))
        .with_current_voters(quorum.voters.iter().map(replica).collect())
        .with_observers(quorum.observers.iter().map(replica).collect());
    // The listeners of the voters exist from v2.
    let listed = if version >= 2 {
        quorum.addresses.as_slice()
    } else {
        &[]
    };
    let nodes = listed
        .iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            Some(
                Node::default()
                    .with_node_id(BrokerId(*id))
                    .with_listeners(vec![
                        Listener::default()
                            .with_name(str_bytes("CLUSTER"))
                            .with_host(str_bytes(host))
                            .with_port(port.parse().ok()?),
                    ]),
            )
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(vec![
            TopicData::default()
                .with_topic_name(topic_name("__cluster_metadata"))
                .with_partitions(vec![partition]),
        ])
        .with_nodes(nodes)
}
