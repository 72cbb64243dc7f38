//! DescribeCluster: the cluster id, the controller and the brokers (one, on a single node).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(
    broker: &Arc<Broker>,
    request: &DescribeClusterRequest,
) -> DescribeClusterResponse {
    let (host, port) = broker.advertised();
    let me = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.node_id()))
        .with_host(str_bytes(host))
        .with_port(port)
        .with_rack(broker.config().rack.clone().map(str_bytes));
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(vec![me])
}
