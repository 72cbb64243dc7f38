//! ListConfigResources (KIP-1142): the resources DescribeConfigs can describe, by type. Version 0
//! is the former ListClientMetricsResources and lists client-metrics subscriptions only; Fjord has
//! none. Version 1 lists topics (every topic the metadata knows) and brokers (every registered
//! broker), for the types asked for or, when none are named, for every type. Broker loggers,
//! client-metrics subscriptions and group configs do not exist in Fjord, so those types list
//! nothing; a type Kafka does not define is UNSUPPORTED_VERSION.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

use super::{Context, str_bytes};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;
const KNOWN: [i8; 5] = [TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP];

pub(super) fn handle(
    ctx: &Context,
    request: &ListConfigResourcesRequest,
    version: i16,
) -> ListConfigResourcesResponse {
    let response = ListConfigResourcesResponse::default();
    if version == 0 {
        return response;
    }
    if let Some(unknown) = request.resource_types.iter().find(|t| !KNOWN.contains(t)) {
        tracing::debug!(
            resource_type = unknown,
            "ListConfigResources for an unknown type"
        );
        return response.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let wanted =
        |kind: i8| request.resource_types.is_empty() || request.resource_types.contains(&kind);
    let image = ctx.image();
    let mut resources = Vec::new();
    if wanted(TOPIC) {
        resources.extend(image.topics.keys().map(|name| {
            ConfigResource::default()
                .with_resource_name(str_bytes(name.clone()))
                .with_resource_type(TOPIC)
        }));
    }
    if wanted(BROKER) {
        resources.extend(image.brokers.keys().map(|id| {
            ConfigResource::default()
                .with_resource_name(str_bytes(id.to_string()))
                .with_resource_type(BROKER)
        }));
    }
    response.with_config_resources(resources)
}
