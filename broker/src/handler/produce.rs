//! Produce: append each partition's record batch through its actor, all partitions at once;
//! answer once each append is acknowledged under its topic's flush policy. `acks=0` gets no
//! response, as in Kafka. Topics go by name or, from v13, by id (UNKNOWN_TOPIC_ID for an id no
//! topic has). Before the log: the partition must be led by this broker (NOT_LEADER_OR_FOLLOWER
//! otherwise, with the current leader and its endpoint from v10, KIP-951), carry exactly one v2
//! batch (Kafka's rule for Produce v3+, INVALID_RECORD otherwise), and for `acks=all` have
//! `min.insync.replicas` replicas in sync (NOT_ENOUGH_REPLICAS otherwise, nothing appended); a
//! topic whose `compression.type` names a codec gets batches in any other codec re-encoded. A
//! batch refused for invalid records names them in `record_errors` (the first
//! [`log::MAX_NAMED_RECORDS`], and counts them all), as Kafka does, so a client fails exactly
//! those records with INVALID_RECORD.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use tokio::sync::Semaphore;

use crate::security::acl::{Operation, ResourceType};

use super::{
    Context, append_error_code, internal_topic_error, leader_endpoints, leader_partition, str_bytes,
};
use crate::cluster::{ProduceConfig, TopicCompression};
use crate::log;
use crate::partition::{AppendError, Appending, PartitionHandle};
use crate::record::Compression;
use crate::record::batch::{self, RecompressError};

/// A produce's response once its appends are acknowledged (`None` for `acks=0`).
pub(super) type Acknowledged = Pin<Box<dyn Future<Output = Option<ProduceResponse>> + Send>>;

/// Starts a produce: checks every partition's batch and puts it in the partition's append queue
/// (all partitions at once), then returns the wait for the acknowledgements. The start is what a
/// connection runs in request order, so its produces are appended in the order they were sent.
pub(super) async fn start(ctx: &Context, request: ProduceRequest, version: i16) -> Acknowledged {
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let steps = request.topic_data.into_iter().map(|topic| async move {
        // From v13 a topic is named by its id (KIP-516), and answered by it.
        let name = if version >= 13 {
            ctx.topic_by_id(topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.name.0.to_string())
        };
        let response = TopicProduceResponse::default()
            .with_name(topic.name)
            .with_topic_id(topic.topic_id);
        let refused_all = |error: ResponseError| {
            topic
                .partition_data
                .iter()
                .map(|data| Step::Done(refused(data.index, error.code())))
                .collect()
        };
        let Some(name) = name else {
            return (response, refused_all(ResponseError::UnknownTopicId));
        };
        if !ctx.authorized(Operation::Write, ResourceType::Topic, &name) {
            return (
                response,
                refused_all(ResponseError::TopicAuthorizationFailed),
            );
        }
        let settings = ctx.produce_config(&name).unwrap_or_default();
        let partitions = topic
            .partition_data
            .into_iter()
            .map(|data| queue_partition(ctx, &name, &settings, data, acks, version));
        (response, join_all(partitions).await)
    });
    let steps = join_all(steps).await;
    let ctx = ctx.clone();
    Box::pin(async move {
        let ctx = &ctx;
        let topics = steps.into_iter().map(|(response, partitions)| async move {
            let partitions = partitions
                .into_iter()
                .map(|step| step.acknowledged(ctx, acks, timeout));
            response.with_partition_responses(join_all(partitions).await)
        });
        let responses = join_all(topics).await;
        (acks != 0).then(|| {
            // Where the partitions this broker does not lead went (KIP-951, v10+): the client
            // retries there without asking for metadata first.
            let leaders = responses
                .iter()
                .flat_map(|topic| &topic.partition_responses)
                .filter(|p| p.error_code == ResponseError::NotLeaderOrFollower.code())
                .map(|p| p.current_leader.leader_id.0);
            let node_endpoints = leader_endpoints(ctx, leaders)
                .map(|(broker, (host, port))| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(broker.id))
                        .with_host(str_bytes(host))
                        .with_port(port)
                        .with_rack(broker.rack.clone().map(str_bytes))
                })
                .collect();
            ProduceResponse::default()
                .with_responses(responses)
                .with_node_endpoints(node_endpoints)
        })
    })
}

/// A partition's answer when nothing was appended.
fn refused(index: i32, error_code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error_code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// One partition of a produce after its start.
enum Step {
    /// Answered without appending.
    Done(PartitionProduceResponse),
    /// In the partition's append queue.
    Queued(Queued),
}

/// A partition's append in its queue, and what its answer is checked against.
struct Queued {
    response: PartitionProduceResponse,
    topic: String,
    appending: Appending,
    partition: PartitionHandle,
    /// The leader epoch it was queued in.
    leading: Option<i32>,
    /// The topic's `min.insync.replicas`.
    min_insync_replicas: i32,
}

impl Step {
    /// The partition's answer once its append is acknowledged: under the flush policy on this
    /// broker, and for `acks=all` once the high watermark has passed it (every in-sync replica
    /// holds it), or REQUEST_TIMED_OUT after `timeout`.
    async fn acknowledged(
        self,
        ctx: &Context,
        acks: i16,
        timeout: Duration,
    ) -> PartitionProduceResponse {
        let Queued {
            response,
            topic,
            appending,
            partition,
            leading,
            min_insync_replicas,
        } = match self {
            Step::Done(response) => return response,
            Step::Queued(queued) => queued,
        };
        match appending.acknowledged().await {
            Ok(info) => {
                let response = response
                    .with_base_offset(info.base_offset)
                    .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                    .with_log_start_offset(info.log_start_offset);
                if acks != -1 {
                    return response;
                }
                let mut high_watermark = partition.watch_high_watermark();
                let replicated = high_watermark.wait_for(|hw| *hw > info.last_offset);
                match tokio::time::timeout(timeout, replicated).await {
                    // The high watermark passed as this broker still leads in the epoch of the
                    // append: every in-sync replica holds the records. Had it lost the
                    // leadership meanwhile, the high watermark it follows may have passed other
                    // records at those offsets.
                    Ok(Ok(_)) if partition.leading_epoch() != leading => response
                        .with_error_code(ResponseError::NotLeaderOrFollower.code())
                        .with_base_offset(-1),
                    // Kafka's rule: the ISR shrank below min.insync.replicas while it waited.
                    Ok(Ok(_))
                        if ctx.refreshed().in_sync_replicas(&topic, response.index)
                            < min_insync_replicas =>
                    {
                        response
                            .with_error_code(ResponseError::NotEnoughReplicasAfterAppend.code())
                            .with_base_offset(-1)
                    }
                    Ok(Ok(_)) => response,
                    Ok(Err(_)) => response
                        .with_error_code(ResponseError::NotLeaderOrFollower.code())
                        .with_base_offset(-1),
                    Err(_) => {
                        let message = format!(
                            "{topic}-{}: not every in-sync replica held the records within the request's timeout",
                            response.index
                        );
                        response
                            .with_error_code(ResponseError::RequestTimedOut.code())
                            .with_error_message(Some(str_bytes(message)))
                            .with_base_offset(-1)
                    }
                }
            }
            Err(error) => {
                let partition = response.index;
                tracing::debug!(topic, partition, %error, "produce rejected");
                let response = response.with_error_code(append_error_code(&error));
                match &error {
                    AppendError::Log(log::Error::RecordsWithoutKey {
                        record_indices,
                        count,
                    }) => {
                        let message = format!(
                            "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                        );
                        let named: Vec<(usize, String)> = record_indices
                            .iter()
                            .map(|&index| (index, message.clone()))
                            .collect();
                        let (errors, summary) = record_errors(&named, *count);
                        response
                            .with_error_message(Some(str_bytes(summary)))
                            .with_record_errors(errors)
                    }
                    AppendError::Log(log::Error::TimestampOutOfRange {
                        records,
                        count,
                        earliest,
                        latest,
                    }) => {
                        // Kafka's words; the offset is the record's within the batch as sent.
                        let named: Vec<(usize, String)> = records
                            .iter()
                            .map(|&(index, timestamp)| {
                                (index, format!(
                                    "Timestamp {timestamp} of message with offset {index} is out of range. The timestamp should be within [{earliest}, {latest}]"
                                ))
                            })
                            .collect();
                        let (errors, summary) = record_errors(&named, *count);
                        response
                            .with_error_message(Some(str_bytes(summary)))
                            .with_record_errors(errors)
                    }
                    _ => response.with_error_message(Some(str_bytes(error.to_string()))),
                }
            }
        }
    }
}

/// Checks one partition's batch (re-encoding it to the topic's codec if it asks for one) and
/// queues its append.
async fn queue_partition(
    ctx: &Context,
    name: &str,
    settings: &ProduceConfig,
    data: PartitionProduceData,
    acks: i16,
    version: i16,
) -> Step {
    let response = refused(data.index, 0);
    let done = |code: i16, message: Option<String>| {
        Step::Done(
            response
                .clone()
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        )
    };
    if !matches!(acks, -1..=1) {
        return done(ResponseError::InvalidRequiredAcks.code(), None);
    }
    if let Some((code, message)) = internal_topic_error(name, "append to") {
        return done(code, Some(message.to_string()));
    }
    let partition = match leader_partition(ctx, name, data.index, -1) {
        Ok(partition) => partition,
        Err(not_served) => {
            let leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(not_served.leader))
                .with_leader_epoch(not_served.leader_epoch);
            return Step::Done(
                response
                    .with_error_code(not_served.code)
                    .with_current_leader(leader),
            );
        }
    };
    // Cut off from the controller for a session timeout, this broker may no longer lead.
    if !ctx.metadata_current() {
        return done(
            ResponseError::NotLeaderOrFollower.code(),
            Some("this broker's metadata is not current: it may no longer lead".to_owned()),
        );
    }
    let Some(records) = data.records else {
        return done(ResponseError::CorruptMessage.code(), None);
    };
    if let Err(message) = one_batch(&records, version) {
        return done(ResponseError::InvalidRecord.code(), Some(message));
    }
    // zstd came with Produce v7 (KIP-110): older clients cannot have meant it.
    if version < 7 && batch::uses_codec(&records, Compression::Zstd) {
        return done(ResponseError::UnsupportedCompressionType.code(), None);
    }
    let in_sync = ctx.in_sync_replicas(name, data.index);
    if acks == -1 && in_sync < settings.min_insync_replicas {
        let message = format!(
            "{name}-{}: {in_sync} in-sync replica(s), fewer than min.insync.replicas={} that acks=all requires",
            data.index, settings.min_insync_replicas
        );
        return done(ResponseError::NotEnoughReplicas.code(), Some(message));
    }
    let records = match settings.compression {
        TopicCompression::Producer => records.to_vec(),
        // Batches already in the topic's codec go to the log as they are.
        TopicCompression::Codec(codec) if !batch::needs_recompress(&records, codec) => {
            records.to_vec()
        }
        TopicCompression::Codec(codec) => {
            match recompress(records, codec, settings.max_message_bytes).await {
                Ok(records) => records,
                Err(error) => return done(append_error_code(&error), Some(error.to_string())),
            }
        }
    };
    let leading = partition.leading_epoch();
    Step::Queued(Queued {
        response,
        topic: name.to_owned(),
        appending: partition.queue_append(records).await,
        partition,
        leading,
        min_insync_replicas: settings.min_insync_replicas,
    })
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

/// Where the magic byte sits: after the base offset (8 bytes), the length (4) and the partition
/// leader epoch, or a legacy message's CRC (4).
const MAGIC_OFFSET: usize = 16;

/// Kafka's rule for a partition's records in Produce v3+ (every version Fjord serves): exactly
/// one batch, of magic 2. The message is Kafka's. A first batch whose framing is broken is left
/// to the log's validation (CORRUPT_MESSAGE).
fn one_batch(records: &[u8], version: i16) -> Result<(), String> {
    if records.is_empty() {
        return Err(format!(
            "Produce requests with version {version} must have at least one record batch per partition"
        ));
    }
    // The magic byte sits at the same place in every message format, so a legacy message too
    // short for a v2 header is still told apart from a torn v2 batch.
    if records.get(MAGIC_OFFSET).is_some_and(|&magic| magic != 2) {
        return Err(format!(
            "Produce requests with version {version} are only allowed to contain record batches with magic version 2"
        ));
    }
    match batch::parse_header(records) {
        Ok((_, total)) if total < records.len() => Err(format!(
            "Produce requests with version {version} are only allowed to contain exactly one record batch per partition"
        )),
        _ => Ok(()),
    }
}

/// Messages go on the first this many record errors; the rest name only their index, so a batch of
/// a hundred thousand bad records costs the response bytes per record, not a sentence each.
const RECORD_ERROR_MESSAGES: usize = 100;

/// The response's `record_errors` for the invalid records `named` (index and message, ascending,
/// as clients expect; the first of `count` in all), and the partition's error message, both in
/// Kafka's words so clients and people searching for them find them.
fn record_errors(
    named: &[(usize, String)],
    count: usize,
) -> (Vec<BatchIndexAndErrorMessage>, String) {
    let index = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
    let errors = named
        .iter()
        .enumerate()
        .map(|(n, (i, message))| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(index(*i))
                .with_batch_index_error_message(
                    (n < RECORD_ERROR_MESSAGES).then(|| str_bytes(message.clone())),
                )
        })
        .collect();
    let shown: Vec<String> = named
        .iter()
        .take(3)
        .map(|(i, message)| format!("RecordError(batchIndex={}, message='{message}')", index(*i)))
        .collect();
    let summary = format!(
        "One or more records have been rejected due to {count} record errors in total, and only showing the first three errors at most: [{}]",
        shown.join(", ")
    );
    (errors, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ProducerInfo, Record, build_batch};

    fn batch(values: &[&str]) -> Vec<u8> {
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record {
                key: Some(b"k".to_vec()),
                value: Some(v.as_bytes().to_vec()),
                headers: vec![],
                timestamp: 0,
            })
            .collect();
        build_batch(&records, ProducerInfo::NONE)
    }

    #[test]
    fn a_partition_carries_exactly_one_v2_batch() {
        assert!(one_batch(&batch(&["a", "b"]), 9).is_ok());
        let mut two = batch(&["a"]);
        two.extend_from_slice(&batch(&["b"]));
        let error = one_batch(&two, 9).unwrap_err();
        assert!(error.contains("exactly one record batch"), "{error}");
        assert!(
            one_batch(&[], 3)
                .unwrap_err()
                .contains("at least one record batch")
        );
        let mut old = batch(&["a"]);
        old[16] = 1; // magic
        assert!(one_batch(&old, 7).unwrap_err().contains("magic version 2"));
        // A legacy (magic 0) message shorter than a v2 batch header.
        let legacy = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 14, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0,
        ];
        assert!(
            one_batch(&legacy, 3)
                .unwrap_err()
                .contains("magic version 2")
        );
        // A torn batch is the log's to refuse, with CORRUPT_MESSAGE.
        let whole = batch(&["a"]);
        assert!(one_batch(&whole[..whole.len() - 3], 9).is_ok());
    }

    #[test]
    fn every_invalid_record_is_named_and_messages_are_bounded() {
        let named: Vec<(usize, String)> = (0..250).map(|i| (i * 2, "bad".to_owned())).collect();
        let (errors, summary) = record_errors(&named, 250);
        assert_eq!(errors.len(), 250);
        assert_eq!(errors[249].batch_index, 498);
        assert!(
            errors[..RECORD_ERROR_MESSAGES]
                .iter()
                .all(|e| e.batch_index_error_message.as_deref() == Some("bad"))
        );
        assert!(
            errors[RECORD_ERROR_MESSAGES..]
                .iter()
                .all(|e| e.batch_index_error_message.is_none())
        );
        assert_eq!(
            summary,
            "One or more records have been rejected due to 250 record errors in total, and only showing \
             the first three errors at most: [RecordError(batchIndex=0, message='bad'), \
             RecordError(batchIndex=2, message='bad'), RecordError(batchIndex=4, message='bad')]"
        );
    }
}
