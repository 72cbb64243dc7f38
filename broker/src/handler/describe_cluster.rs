//! DescribeCluster: the cluster id, the controller (the metadata quorum's leader) and the brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Context, str_bytes};
use crate::security::acl::{self, Operation, ResourceType};

pub(super) fn handle(ctx: &Context, request: &DescribeClusterRequest) -> DescribeClusterResponse {
    let image = ctx.image();
    // Fenced brokers only when asked for (v2's include_fenced_brokers), marked as such.
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced || request.include_fenced_brokers)
        .filter_map(|b| {
            let (host, port) = ctx.endpoint(b)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    // Kafka's "not asked for" unless asked; then what the client may do on the cluster, if it
    // may describe it (nothing otherwise).
    let operations = if !request.include_cluster_authorized_operations {
        i32::MIN
    } else if ctx.may(
        Operation::Describe,
        ResourceType::Cluster,
        acl::CLUSTER_NAME,
    ) {
        ctx.authorized_operations(ResourceType::Cluster, acl::CLUSTER_NAME)
    } else {
        0
    };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(operations)
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.controller_id()))
        .with_brokers(brokers)
}
