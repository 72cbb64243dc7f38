//! Produce: append each partition's record batches through its actor, all partitions at once;
//! answer once each append is acknowledged under its topic's flush policy. `acks=0` gets no
//! response, as in Kafka.

use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

use super::{append_error_code, internal_topic_error, str_bytes};
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let topics = request.topic_data.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let partitions = topic.partition_data.into_iter().map(|data| {
            let name = name.clone();
            async move {
                let response = PartitionProduceResponse::default()
                    .with_index(data.index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
                if !valid_acks {
                    return response.with_error_code(ResponseError::InvalidRequiredAcks.code());
                }
                if let Some((code, message)) = internal_topic_error(&name, "append to") {
                    return response
                        .with_error_code(code)
                        .with_error_message(Some(message));
                }
                let Some(partition) = broker.partition(&name, data.index) else {
                    return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                let Some(records) = data.records else {
                    return response.with_error_code(ResponseError::CorruptMessage.code());
                };
                match partition.append(records.to_vec()).await {
                    Ok(info) => response
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                        .with_log_start_offset(info.log_start_offset),
                    Err(error) => {
                        tracing::debug!(topic = name, partition = data.index, %error, "produce rejected");
                        response
                            .with_error_code(append_error_code(&error))
                            .with_error_message(Some(str_bytes(error.to_string())))
                    }
                }
            }
        });
        TopicProduceResponse::default()
            .with_name(topic.name.clone())
            .with_partition_responses(join_all(partitions).await)
    });
    let responses = join_all(topics).await;
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
