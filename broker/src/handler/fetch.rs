//! Fetch: from the partition's leader, in the leader epoch the consumer names (Kafka's
//! NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH and UNKNOWN_LEADER_EPOCH otherwise, with the
//! current leader in v12+ and its endpoint in v16+), topics by name or, from v13, by id (an
//! unknown id is UNKNOWN_TOPIC_ID), whole batches below the high watermark, bounded by the
//! request's and each partition's byte limits (the first batch of the response always goes,
//! however large, so a consumer always progresses). A long poll waits on the partitions'
//! high-watermark watches until `min_bytes` are there or `max_wait_ms` passes. Fetch sessions
//! (KIP-227) are declined the way the protocol allows: every response carries session id 0, so
//! clients send full requests. From v11 a consumer that names its rack (`client.rack`) reads from
//! the replica in its rack (KIP-392): the leader answers with `preferred_read_replica`, an
//! unfenced in-sync follower in that rack, and no records; a follower serves such a consumer up
//! to its own high watermark (an offset above it waits there, it is not out of range). From v12
//! a consumer that names the epoch of the last record it
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

use super::{Context, NotServed, leader_endpoints, log_error_code, readable_partition, str_bytes};
use crate::cluster::TopicCompression;
use crate::log::{self, Divergence};
use crate::record::Compression;
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(ctx: &Context, request: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let request = Arc::new(request);
    let mut ctx = ctx.clone();
    loop {
        let mut pass = read_once(&ctx, &request, version).await;
        if pass.bytes >= request.min_bytes.max(0) as usize
            || pass.answer_now
            || Instant::now() >= deadline
            || pass.watches.is_empty()
        {
            return pass.answer(&ctx);
        }
        let changes = pass.watches.iter_mut().map(|w| Box::pin(w.changed()));
        let waited = tokio::time::timeout_at(deadline, select_all(changes)).await;
        // Leadership may have moved while the fetch waited: read again as the metadata stands.
        ctx = ctx.refreshed();
        if waited.is_err() {
            // Waited the full max_wait_ms: answer with what is there now.
            return read_once(&ctx, &request, version).await.answer(&ctx);
        }
    }
}

/// Whether topic `name` stores zstd batches by its own `compression.type`.
fn zstd_topic(ctx: &Context, name: &str) -> bool {
    ctx.produce_config(name)
        .is_some_and(|config| config.compression == TopicCompression::Codec(Compression::Zstd))
}

/// KIP-392: the broker a consumer in `rack` should read `topic`-`partition` from instead of this
/// leader, if this broker is in another rack: an unfenced in-sync follower in `rack` (the lowest
/// id, so a consumer is not moved back and forth).
fn preferred_read_replica(ctx: &Context, topic: &str, partition: i32, rack: &str) -> Option<i32> {
    let image = ctx.image();
    let node = ctx.node_id();
    let rack_of = |id: i32| image.brokers.get(&id).and_then(|b| b.rack.as_deref());
    if rack_of(node) == Some(rack) {
        return None;
    }
    let known = ctx.topic(topic)?.partition(partition)?;
    known
        .isr
        .iter()
        .copied()
        .filter(|id| *id != node && rack_of(*id) == Some(rack))
        .filter(|id| image.brokers.get(id).is_some_and(|b| !b.fenced))
        .min()
}

/// One pass over the requested partitions.
struct Pass {
    response: FetchResponse,
    /// Record bytes in the response.
    bytes: usize,
    /// Of those, the bytes of partitions this broker follows.
    followed: usize,
    /// A partition failed, or its consumer is sent to another replica.
    answer_now: bool,
    /// The high-watermark watches to wait on.
    watches: Vec<watch::Receiver<i64>>,
}

impl Pass {
    /// The response, counted in the metrics.
    fn answer(self, ctx: &Context) -> FetchResponse {
        ctx.metrics()
            .fetched(self.bytes - self.followed, self.followed);
        self.response
    }
}

async fn read_once(ctx: &Context, request: &Arc<FetchRequest>, version: i16) -> Pass {
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
    let allowed: Vec<bool> = names
        .iter()
        .map(|name| {
            name.as_deref()
                .is_none_or(|name| ctx.authorized(Operation::Read, ResourceType::Topic, name))
        })
        .collect();
    // KIP-392: a consumer that names its rack may read from a follower.
    let rack = (version >= 11 && !request.rack_id.is_empty()).then(|| request.rack_id.as_str());
    let handles: Vec<Vec<_>> = request
        .topics
        .iter()
        .zip(&names)
        .zip(&allowed)
        .map(|((topic, name), allowed)| {
            topic
                .partitions
                .iter()
                .map(|p| match name {
                    Some(_) if !allowed => Err(NotServed {
                        code: ResponseError::TopicAuthorizationFailed.code(),
                        leader: -1,
                        leader_epoch: -1,
                    }),
                    Some(name) => readable_partition(
                        ctx,
                        name,
                        p.partition,
                        p.current_leader_epoch,
                        rack.is_some(),
                    )
                    .map(|(handle, leads)| {
                        let preferred = rack
                            .filter(|_| leads)
                            .and_then(|rack| preferred_read_replica(ctx, name, p.partition, rack));
                        Served {
                            handle,
                            leads,
                            preferred,
                        }
                    }),
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
        .map(|served| served.handle.watch_high_watermark())
        .collect();
    let request = Arc::clone(request);
    let result = tokio::task::spawn_blocking(move || {
        let mut remaining = request.max_bytes.max(0) as usize;
        let mut total = 0;
        let mut followed = 0;
        let mut answer_now = false;
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
                        let Served { handle, leads, preferred } = match handle {
                            Ok(served) => served,
                            Err(not_served) => {
                                answer_now = true;
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
                            answer_now = true;
                            return data.with_error_code(ResponseError::UnsupportedCompressionType.code());
                        }
                        let high_watermark = handle.high_watermark();
                        let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                        let data = data
                            .with_high_watermark(high_watermark)
                            .with_last_stable_offset(high_watermark)
                            .with_log_start_offset(handle.reader().offsets().log_start_offset());
                        if let Some(replica) = preferred {
                            answer_now = true;
                            return data.with_preferred_read_replica(BrokerId(replica));
                        }
                        // A follower behind the leader the consumer came from: nothing to read
                        // here yet, and nothing out of range.
                        if !leads && p.fetch_offset > high_watermark {
                            return data;
                        }
                        // KIP-320: the consumer names the epoch of the last record it read; if this
                        // log's copy of that epoch ends below the fetch offset (or the log never
                        // held it), the consumer's log diverged: tell it where, send nothing.
                        // Kafka's order: an offset below the log start, or an epoch this log
                        // cannot place, is OFFSET_OUT_OF_RANGE (the consumer resets).
                        if version >= 12 {
                            match handle.reader().divergence(p.fetch_offset, p.last_fetched_epoch) {
                                Divergence::None => {}
                                Divergence::OutOfRange => {
                                    answer_now = true;
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
                                if !leads {
                                    followed += read.records.len();
                                }
                                remaining = remaining.saturating_sub(read.records.len());
                                data.with_records(Some(Bytes::from(read.records)))
                            }
                            Err(error) => {
                                answer_now = true;
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
        let response = FetchResponse::default().with_session_id(0).with_responses(topics);
        (response, total, followed, answer_now)
    })
    .await;
    match result {
        Ok((response, bytes, followed, answer_now)) => Pass {
            response: with_leader_endpoints(ctx, response),
            bytes,
            followed,
            answer_now,
            watches,
        },
        Err(error) => {
            tracing::error!(%error, "fetch task failed");
            Pass {
                response: FetchResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code()),
                bytes: 0,
                followed: 0,
                answer_now: true,
                watches: Vec::new(),
            }
        }
    }
}

/// A partition this broker serves a fetch of.
struct Served {
    handle: crate::partition::PartitionHandle,
    /// Whether this broker leads it (otherwise it follows, for a consumer in its rack).
    leads: bool,
    /// The replica the consumer should read from instead (KIP-392).
    preferred: Option<i32>,
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
        .map(|(broker, (host, port))| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(broker.id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(broker.rack.clone().map(str_bytes))
        })
        .collect();
    response.with_node_endpoints(node_endpoints)
}
