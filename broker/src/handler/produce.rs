//! Produce: append each partition's record batches through its actor, all partitions at once;
//! answer once each append is acknowledged under its topic's flush policy. `acks=0` gets no
//! response, as in Kafka. Before the log: `acks=all` needs `min.insync.replicas` replicas in
//! sync (NOT_ENOUGH_REPLICAS otherwise, nothing appended), and a topic whose
//! `compression.type` names a codec gets batches in any other codec re-encoded.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use tokio::sync::Semaphore;

use super::{append_error_code, internal_topic_error, str_bytes};
use crate::broker::Broker;
use crate::cluster::TopicCompression;
use crate::log;
use crate::partition::AppendError;
use crate::record::Compression;
use crate::record::batch::{self, RecompressError};

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let topics = request.topic_data.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let settings = broker.produce_config(&name).unwrap_or_default();
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
                // zstd came with Produce v7 (KIP-110): older clients cannot have meant it.
                if version < 7 && batch::uses_codec(&records, Compression::Zstd) {
                    return response
                        .with_error_code(ResponseError::UnsupportedCompressionType.code());
                }
                let in_sync = broker.in_sync_replicas(&name, data.index);
                if acks == -1 && in_sync < settings.min_insync_replicas {
                    let message = format!(
                        "{name}-{}: {in_sync} in-sync replica(s), fewer than min.insync.replicas={} that acks=all requires",
                        data.index, settings.min_insync_replicas
                    );
                    return response
                        .with_error_code(ResponseError::NotEnoughReplicas.code())
                        .with_error_message(Some(str_bytes(message)));
                }
                let records = match settings.compression {
                    TopicCompression::Producer => records.to_vec(),
                    // Batches already in the topic's codec go to the log as they are.
                    TopicCompression::Codec(codec)
                        if !batch::needs_recompress(&records, codec) =>
                    {
                        records.to_vec()
                    }
                    TopicCompression::Codec(codec) => {
                        match recompress(records, codec, settings.max_message_bytes).await {
                            Ok(records) => records,
                            Err(error) => {
                                return response
                                    .with_error_code(append_error_code(&error))
                                    .with_error_message(Some(str_bytes(error.to_string())));
                            }
                        }
                    }
                };
                match partition.append(records).await {
                    Ok(info) => response
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                        .with_log_start_offset(info.log_start_offset),
                    Err(error) => {
                        tracing::debug!(topic = name, partition = data.index, %error, "produce rejected");
                        let message = record_error_message(&error, &name, data.index);
                        let record_errors = match (&error, &message) {
                            (
                                AppendError::Log(log::Error::RecordWithoutKey {
                                    record_index, ..
                                }),
                                Some(message),
                            ) => vec![
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(i32::try_from(*record_index).unwrap_or(i32::MAX))
                                    .with_batch_index_error_message(Some(str_bytes(message.clone()))),
                            ],
                            _ => Vec::new(),
                        };
                        response
                            .with_error_code(append_error_code(&error))
                            .with_error_message(Some(str_bytes(
                                message.unwrap_or_else(|| error.to_string()),
                            )))
                            .with_record_errors(record_errors)
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

/// Re-encoding opens a batch whole (its records up to 64 MiB): at most this many at once, so one
/// request naming many partitions, or many connections, cannot multiply that memory.
static RECOMPRESSING: Semaphore = Semaphore::const_new(2);

/// `records` with every batch in `codec` (`compression.type`), re-encoded on the blocking pool
/// (compression is CPU work that must not stall the connection tasks).
async fn recompress(
    records: Bytes,
    codec: Compression,
    max: usize,
) -> Result<Vec<u8>, AppendError> {
    let Ok(_permit) = RECOMPRESSING.acquire().await else {
        return Err(AppendError::Closed);
    };
    let encoded = tokio::task::spawn_blocking(move || {
        batch::recompress(&records, codec, max).map(|out| out.unwrap_or_else(|| records.to_vec()))
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "re-encoding a produce request's batches failed");
        AppendError::Closed
    })?;
    encoded.map_err(|error| match error {
        RecompressError::Invalid { index, source } => {
            AppendError::Log(log::Error::InvalidBatch { index, source })
        }
        RecompressError::TooLarge { size, max } => {
            AppendError::Log(log::Error::BatchTooLarge { size, max })
        }
    })
}

/// Kafka's words for a record it refuses, so clients and people searching for them find them.
fn record_error_message(error: &AppendError, topic: &str, partition: i32) -> Option<String> {
    match error {
        AppendError::Log(log::Error::RecordWithoutKey { .. }) => Some(format!(
            "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
        )),
        _ => None,
    }
}
