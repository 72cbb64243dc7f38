//! Fetch: from the partition's leader, in the leader epoch the consumer names (Kafka's
//! NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH and UNKNOWN_LEADER_EPOCH otherwise, with the
//! current leader in v12+ and its endpoint in v16+), topics by name or, from v13, by id (an
//! unknown id is UNKNOWN_TOPIC_ID), whole batches below the high watermark, bounded by the
//! request's and each partition's byte limits (the first batch of the response always goes,
//! however large, so a consumer always progresses). A long poll waits on the partitions'
//! high-watermark watches until `min_bytes` are there or `max_wait_ms` passes. Fetch sessions
//! (KIP-227) are declined the way the protocol allows: every response carries session id 0, so
//! clients send full requests. From v12 a consumer that names the epoch of the last record it
//! read learns when the log diverged from what it read (`diverging_epoch`, KIP-320). Below Fetch
//! v10 a partition of a topic whose `compression.type` is `zstd` answers
//! UNSUPPORTED_COMPRESSION_TYPE, Kafka's rule (KIP-110): the broker itself writes zstd batches to
//! such a topic, which an old consumer never asked for. Zstd batches a producer sent (with Produce
//! v7+) to any other topic are served to every version, as Kafka serves them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Context, NotServed, leader_endpoints, leader_partition, log_error_code, str_bytes};
use crate::cluster::TopicCompression;
use crate::log::{self, Divergence};
use crate::record::Compression;

pub(super) async fn handle(ctx: &Context, request: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let request = Arc::new(request);
    let mut ctx = ctx.clone();
    loop {
        let (response, bytes, errors, mut watches) = read_once(&ctx, &request, version).await;
        if bytes >= request.min_bytes.max(0) as usize
            || errors
            || Instant::now() >= deadline
            || watches.is_empty()
        {
            return response;
        }
        let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let waited = tokio::time::timeout_at(deadline, select_all(changes)).await;
        // Leadership may have moved while the fetch waited: read again as the metadata stands.
        ctx = ctx.refreshed();
        if waited.is_err() {
            // Waited the full max_wait_ms: answer with what is there now.
            return read_once(&ctx, &request, version).await.0;
        }
    }
}

/// Whether topic `name` stores zstd batches by its own `compression.type`.
fn zstd_topic(ctx: &Context, name: &str) -> bool {
    ctx.produce_config(name)
        .is_some_and(|config| config.compression == TopicCompression::Codec(Compression::Zstd))
}

/// One pass over the requested partitions: the response, the record bytes in it, whether any
/// partition failed, and the high-watermark watches to wait on.
async fn read_once(
    ctx: &Context,
    request: &Arc<FetchRequest>,
    version: i16,
) -> (FetchResponse, usize, bool, Vec<watch::Receiver<i64>>) {
    // From v13 a topic is named by its id (KIP-516); an id the metadata does not know is
    // UNKNOWN_TOPIC_ID.
    let names: Vec<Option<String>> = request
        .topics
        .iter()
        .map(|topic| {
            if version >= 13 {
                ctx.topic_by_id(topic.topic_id).map(|t| t.name.clone())
            } else {
                Some(topic.topic.0.to_string())
            }
        })
        .collect();
    let handles: Vec<Vec<_>> = request
        .topics
        .iter()
        .zip(&names)
        .map(|(topic, name)| {
            topic
                .partitions
                .iter()
                .map(|p| match name {
                    Some(name) => leader_partition(ctx, name, p.partition, p.current_leader_epoch),
                    None => Err(NotServed {
                        code: ResponseError::UnknownTopicId.code(),
                        leader: -1,
                        leader_epoch: -1,
                    }),
                })
                .collect()
        })
        .collect();
    let zstd_refused: Vec<bool> = names
        .iter()
        .map(|name| version < 10 && name.as_deref().is_some_and(|name| zstd_topic(ctx, name)))
        .collect();
    let watches: Vec<_> = handles
        .iter()
        .flatten()
        .filter_map(|h| h.as_ref().ok())
        .map(|h| h.watch_high_watermark())
        .collect();
    let request = Arc::clone(request);
    let result = tokio::task::spawn_blocking(move || {
        let mut remaining = request.max_bytes.max(0) as usize;
        let mut total = 0;
        let mut errors = false;
        let topics = request
            .topics
            .iter()
            .zip(handles)
            .zip(zstd_refused)
            .map(|((topic, handles), zstd_refused)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(handles)
                    .map(|(p, handle)| {
                        let data = PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Bytes::new()));
                        let handle = match handle {
                            Ok(handle) => handle,
                            Err(not_served) => {
                                errors = true;
                                // Where to go instead (Fetch v12+ carries it).
                                let leader = LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(not_served.leader))
                                    .with_leader_epoch(not_served.leader_epoch);
                                return data
                                    .with_error_code(not_served.code)
                                    .with_current_leader(leader);
                            }
                        };
                        if zstd_refused {
                            errors = true;
                            return data.with_error_code(ResponseError::UnsupportedCompressionType.code());
                        }
                        let high_watermark = handle.high_watermark();
                        let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                        let data = data
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(high_watermark)
                            .with_log_start_offset(handle.reader().offsets().log_start_offset());
                        // KIP-320: the consumer names the epoch of the last record it read; if this
                        // log's copy of that epoch ends below the fetch offset (or the log never
                        // held it), the consumer's log diverged: tell it where, send nothing.
                        // Kafka's order: an offset below the log start, or an epoch this log
                        // cannot place, is OFFSET_OUT_OF_RANGE (the consumer resets).
                        if version >= 12 {
                            match handle.reader().divergence(p.fetch_offset, p.last_fetched_epoch) {
                                Divergence::None => {}
                                Divergence::OutOfRange => {
                                    errors = true;
                                    return data
                                        .with_error_code(ResponseError::OffsetOutOfRange.code());
                                }
                                Divergence::Diverged { epoch, end_offset } => {
                                    return data.with_diverging_epoch(
                                        EpochEndOffset::default()
                                            .with_epoch(epoch)
                                            .with_end_offset(end_offset),
                                    );
                                }
                            }
                        }
                        if limit == 0 && total > 0 {
                            return data;
                        }
                        // The first batch of the response always goes (KIP-74).
                        let max = if total == 0 { limit.max(1) } else { limit };
                        match handle.reader().read_below(p.fetch_offset, max, high_watermark) {
                            Ok(read) if total > 0 && read.records.len() > limit => data,
                            Ok(read) => {
                                total += read.records.len();
                                remaining = remaining.saturating_sub(read.records.len());
                                data.with_records(Some(Bytes::from(read.records)))
                            }
                            Err(error) => {
                                errors = true;
                                if !matches!(error, log::Error::OffsetOutOfRange { .. }) {
                                    tracing::error!(topic = %topic.topic.0, partition = p.partition, %error, "fetch failed");
                                }
                                data.with_error_code(log_error_code(&error))
                            }
                        }
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions)
            })
            .collect();
        (FetchResponse::default().with_session_id(0).with_responses(topics), total, errors)
    })
    .await;
    let result = result
        .map(|(response, total, errors)| (with_leader_endpoints(ctx, response), total, errors));
    match result {
        Ok((response, total, errors)) => (response, total, errors, watches),
        Err(error) => {
            tracing::error!(%error, "fetch task failed");
            (
                FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
                0,
                true,
                Vec::new(),
            )
        }
    }
}

/// The response with the endpoints of the leaders it names for partitions this broker does not
/// lead or leads in a newer epoch (KIP-951, v16+), so the consumer goes there without asking for
/// metadata first.
fn with_leader_endpoints(ctx: &Context, response: FetchResponse) -> FetchResponse {
    let moved = [
        ResponseError::NotLeaderOrFollower.code(),
        ResponseError::FencedLeaderEpoch.code(),
    ];
    let leaders: Vec<i32> = response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter(|p| moved.contains(&p.error_code))
        .map(|p| p.current_leader.leader_id.0)
        .collect();
    let node_endpoints = leader_endpoints(ctx, leaders)
        .map(|broker| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(broker.id))
                .with_host(str_bytes(broker.host.clone()))
                .with_port(broker.port)
                .with_rack(broker.rack.clone().map(str_bytes))
        })
        .collect();
    response.with_node_endpoints(node_endpoints)
}
