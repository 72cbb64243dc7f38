//! The leader's side of a replica fetch: for every partition a follower names, check that this
//! broker leads it in the epoch the follower follows and that the follower is one of its
//! replicas, find where the follower's log diverged from this one (by leader epoch, never by
//! high watermark), and send the batches from the follower's log end exactly as they are stored,
//! with the high watermark, log start and log end. What the follower reports durable is passed to
//! the partition's replica state, which turns the reports into the high watermark.
//!
//! A fetch that finds nothing new waits (up to the follower's `max_wait_ms`) for an append or a
//! high watermark move on any of its partitions, then reads once more: a follower is told of new
//! records, and of the high watermark its own report advanced, without polling.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use super::throttle;
use super::wire::{EpochEnd, FetchPartition, FetchRequest, FetchResponse, PartitionData};
use crate::cluster::TopicImage;
use crate::cluster::broker_config::LEADER_THROTTLED_RATE;
use crate::cluster::topic_config::ThrottledReplicas;
use crate::handler::{Context, leader_partition};
use crate::log::Divergence;
use crate::partition::PartitionHandle;
use crate::partition::state::Event as ReplicaEvent;

/// The topic config naming the replicas whose fetches their leader throttles.
const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";

/// The longest a fetch is held, whatever the follower asks.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Answers one replica fetch, as the leader `ctx` sees the cluster.
pub async fn serve(ctx: &Context, request: &FetchRequest) -> FetchResponse {
    serve_with(ctx, request, Context::refreshed).await
}

/// [`serve`], with `refresh` giving the view a fetch that waited reads again with (the metadata
/// as it stands then; tests keep theirs).
async fn serve_with(
    ctx: &Context,
    request: &FetchRequest,
    refresh: impl Fn(&Context) -> Context,
) -> FetchResponse {
    if let Some(error) = broker_epoch_error(ctx, request) {
        return FetchResponse {
            error,
            partitions: Vec::new(),
        };
    }
    let first = read(ctx, request).await;
    let wait = Duration::from_millis(u64::from(request.max_wait_ms)).min(MAX_WAIT);
    if wait.is_zero() || first.news {
        return first.response;
    }
    // Nothing to send: wait for the log or the high watermark of one of the partitions to move,
    // then answer from the metadata as it stands then.
    let mut watches = first.watches;
    if watches.is_empty() {
        tokio::time::sleep(wait).await;
        return first.response;
    }
    let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
    if tokio::time::timeout(wait, changed).await.is_err() {
        return first.response;
    }
    read(&refresh(ctx), request).await.response
}

/// STALE_BROKER_EPOCH unless the follower is registered, in the broker epoch it names (a process
/// that has been replaced fetches for nothing).
fn broker_epoch_error(ctx: &Context, request: &FetchRequest) -> Option<i16> {
    let registered = ctx.image().brokers.get(&request.follower);
    let current = registered.is_some_and(|broker| {
        i64::try_from(broker.epoch).is_ok_and(|epoch| epoch == request.broker_epoch)
    });
    (!current).then(|| ResponseError::StaleBrokerEpoch.code())
}

/// One pass over the request's partitions.
struct Read {
    response: FetchResponse,
    /// Each served partition's log end and high watermark, to wait on.
    watches: Vec<watch::Receiver<i64>>,
    /// Whether any partition sent records, an error or a divergence.
    news: bool,
}

/// What one partition answers before its records are read.
enum Served {
    Answer(PartitionData),
    Read {
        handle: PartitionHandle,
        data: PartitionData,
        fetch: FetchPartition,
        /// The topic as the request's image has it, when the follower is not in the ISR.
        joining: Option<Arc<TopicImage>>,
    },
}

async fn read(ctx: &Context, request: &FetchRequest) -> Read {
    let served: Vec<Served> = request
        .partitions
        .iter()
        .map(|p| check(ctx, request.follower, p))
        .collect();
    // Report what the follower holds durably before reading: the high watermark sent back
    // includes the report.
    for served in &served {
        if let Served::Read {
            handle,
            data,
            fetch,
            joining,
        } = served
        {
            let offset = fetch.durable_offset.min(fetch.fetch_offset);
            if offset < 0 || offset > data.log_end_offset {
                continue;
            }
            handle
                .replica_event(ReplicaEvent::FollowerFetched {
                    replica: request.follower,
                    fetch_offset: fetch.fetch_offset,
                    durable: offset,
                    now_ms: crate::partition::monotonic_ms(),
                })
                .await;
            // Out of the ISR: it rejoins once it holds everything up to the high watermark and
            // the start of this leader's epoch (KIP-841: a replica restarted on an empty disk
            // cannot rejoin, or lead, before it has caught up).
            if let Some(topic) = joining {
                let reader = handle.reader();
                let epoch_start = reader
                    .epoch_start(data.leader_epoch)
                    .unwrap_or_else(|| reader.offsets().log_end_offset());
                if offset >= handle.high_watermark() && offset >= epoch_start {
                    ctx.join_isr(topic, fetch.partition, request.follower);
                }
            }
        }
    }
    // Replicas out of sync that their topic throttles here, while the leader's rate is spent,
    // get no records (the fetch waits, as one with nothing new does).
    let rate = throttle::rate(ctx.image(), ctx.node_id(), LEADER_THROTTLED_RATE);
    let throttled: Vec<bool> = served
        .iter()
        .map(|served| match served {
            Served::Read {
                joining: Some(topic),
                fetch,
                ..
            // Kafka's meaning: the pairs name the replicas that, as leader, throttle what they
            // serve; this broker's own.
            } if rate.is_some() => ThrottledReplicas::of(&topic.configs, LEADER_THROTTLED_REPLICAS)
                .contains(fetch.partition, ctx.node_id()),
            _ => false,
        })
        .collect();
    let held_back = throttled.contains(&true) && !ctx.leader_throttle().delay(rate).is_zero();
    // Taken before reading: a change after the read wakes a waiting fetch (not one of a
    // partition held back: its fetch waits out the follower's wait).
    let mut watches = Vec::new();
    for (served, throttled) in served.iter().zip(&throttled) {
        if let Served::Read { handle, .. } = served
            && !(*throttled && held_back)
        {
            watches.push(handle.watch_appended());
            watches.push(handle.watch_high_watermark());
        }
    }
    let max_bytes = request.max_bytes as usize;
    let read = tokio::task::spawn_blocking(move || {
        let mut total = 0usize;
        let mut throttled_bytes = 0usize;
        let mut news = false;
        let partitions = served
            .into_iter()
            .zip(throttled)
            .map(|(served, throttled)| match served {
                Served::Answer(data) => {
                    news = true;
                    data
                }
                Served::Read {
                    handle,
                    mut data,
                    fetch,
                    ..
                } => {
                    // The high watermark after this follower's report.
                    data.high_watermark = handle.high_watermark();
                    if throttled && held_back {
                        return data;
                    }
                    let limit = (fetch.max_bytes as usize).min(max_bytes.saturating_sub(total));
                    if limit == 0 && total > 0 {
                        return data;
                    }
                    // The first batch of the response always goes, whatever its size.
                    let max = if total == 0 { limit.max(1) } else { limit };
                    match handle.reader().read(fetch.fetch_offset, max) {
                        Ok(read) if total > 0 && read.records.len() > limit => data,
                        Ok(read) => {
                            total += read.records.len();
                            if throttled {
                                throttled_bytes += read.records.len();
                            }
                            news |= !read.records.is_empty();
                            data.records = Bytes::from(read.records);
                            data
                        }
                        Err(error) => {
                            news = true;
                            if !matches!(error, crate::log::Error::OffsetOutOfRange { .. }) {
                                tracing::error!(topic_id = %fetch.topic_id, partition = fetch.partition, %error, "replica fetch failed");
                            }
                            data.error = crate::handler::log_error_code(&error);
                            data
                        }
                    }
                }
            })
            .collect();
        (partitions, news, throttled_bytes)
    })
    .await;
    match read {
        Ok((partitions, news, throttled_bytes)) => {
            ctx.leader_throttle().charge(throttled_bytes);
            Read {
                response: FetchResponse {
                    error: 0,
                    partitions,
                },
                watches,
                news,
            }
        }
        Err(error) => {
            tracing::error!(%error, "replica fetch task failed");
            Read {
                response: FetchResponse {
                    error: ResponseError::UnknownServerError.code(),
                    partitions: Vec::new(),
                },
                watches: Vec::new(),
                news: true,
            }
        }
    }
}

/// Whether this broker serves `fetch` to `follower`, and where the follower's log stands.
fn check(ctx: &Context, follower: i32, fetch: &FetchPartition) -> Served {
    let answer = |error: ResponseError, leader_epoch: i32| {
        Served::Answer(PartitionData {
            error: error.code(),
            ..answer_data(fetch, leader_epoch)
        })
    };
    let Some(topic) = ctx.topic_by_id(fetch.topic_id) else {
        return answer(ResponseError::UnknownTopicId, -1);
    };
    let Some(known) = topic.partition(fetch.partition) else {
        return answer(ResponseError::UnknownTopicOrPartition, -1);
    };
    // A follower always names the epoch it follows in.
    let current_leader_epoch = fetch.current_leader_epoch.max(0);
    let handle = match leader_partition(ctx, &topic.name, fetch.partition, current_leader_epoch) {
        Ok(handle) => handle,
        Err(not_served) => {
            return Served::Answer(PartitionData {
                error: not_served.code,
                ..answer_data(fetch, not_served.leader_epoch)
            });
        }
    };
    if follower == ctx.node_id() || !known.replicas.contains(&follower) {
        return answer(ResponseError::NotLeaderOrFollower, known.leader_epoch);
    }
    let offsets = handle.reader().offsets();
    let data = PartitionData {
        high_watermark: handle.high_watermark(),
        log_start_offset: offsets.log_start_offset(),
        log_end_offset: offsets.log_end_offset(),
        ..answer_data(fetch, known.leader_epoch)
    };
    match handle
        .reader()
        .divergence(fetch.fetch_offset, fetch.last_fetched_epoch)
    {
        Divergence::None
            if (offsets.log_start_offset()..=offsets.log_end_offset())
                .contains(&fetch.fetch_offset) =>
        {
            Served::Read {
                handle,
                data,
                fetch: *fetch,
                joining: (!known.isr.contains(&follower)).then(|| Arc::clone(topic)),
            }
        }
        Divergence::None | Divergence::OutOfRange => Served::Answer(PartitionData {
            error: ResponseError::OffsetOutOfRange.code(),
            ..data
        }),
        Divergence::Diverged { epoch, end_offset } => Served::Answer(PartitionData {
            diverging: Some(EpochEnd { epoch, end_offset }),
            ..data
        }),
    }
}

/// An answer for `fetch` with nothing in it yet.
fn answer_data(fetch: &FetchPartition, leader_epoch: i32) -> PartitionData {
    PartitionData {
        topic_id: fetch.topic_id,
        partition: fetch.partition,
        error: 0,
        leader_epoch,
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        diverging: None,
        records: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::broker::Broker;
    use crate::cluster::{BrokerRegistration, MetadataImage, PartitionImage};
    use crate::record::batch::BatchHeader;
    use crate::record::{ProducerInfo, Record, build_batch};

    /// The follower's broker epoch in the images below.
    const EPOCH: i64 = 7;

    /// A broker (node 1) leading `t-0`, whose ISR in its replica state is brokers 1 and 2.
    async fn leader(dir: &std::path::Path) -> (Arc<Broker>, PartitionHandle) {
        let broker = crate::broker::test_broker(dir, 1).await;
        let handle = broker.partition("t", 0).unwrap();
        handle
            .replica_event(ReplicaEvent::IsrChanged { isr: vec![1, 2] })
            .await;
        (broker, handle)
    }

    /// The image of a cluster where `t-0` is on brokers 1 (the leader, in `leader_epoch`) and 2,
    /// and brokers 2 and 3 are registered.
    fn image(broker: &Broker, leader_epoch: i32) -> Arc<MetadataImage> {
        let mut image = (*broker.image()).clone();
        for id in [2, 3] {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    rack: None,
                    host: format!("10.0.0.{id}"),
                    port: 9092,
                    listeners: Vec::new(),
                    fenced: false,
                    incarnation: Uuid::from_u128(u128::from(id.unsigned_abs())),
                    epoch: EPOCH as u64,
                    shut_down: false,
                    replaces: None,
                },
            );
        }
        Arc::make_mut(image.topics.get_mut("t").unwrap()).partitions[0] = PartitionImage {
            replicas: vec![1, 2],
            leader: 1,
            leader_epoch,
            isr: vec![1, 2],
            partition_epoch: 1,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        Arc::new(image)
    }

    fn batch(count: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(b"v".to_vec()),
                headers: vec![],
                timestamp: 1,
            })
            .collect();
        build_batch(&records, ProducerInfo::NONE)
    }

    fn fetch(ctx: &Context, follower: i32, at: i64, last_epoch: i32, durable: i64) -> FetchRequest {
        FetchRequest {
            follower,
            broker_epoch: EPOCH,
            max_wait_ms: 0,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic_id: ctx.topic("t").unwrap().id,
                partition: 0,
                current_leader_epoch: ctx.topic("t").unwrap().partitions[0].leader_epoch,
                fetch_offset: at,
                last_fetched_epoch: last_epoch,
                durable_offset: durable,
                max_bytes: 1 << 20,
            }],
        }
    }

    /// A follower gets the batches as the leader stored them, and its report of what it holds
    /// durably moves the high watermark, which the same answer carries.
    #[tokio::test]
    async fn a_follower_gets_batches_as_stored_and_its_report_moves_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, handle) = leader(dir.path()).await;
        for _ in 0..3 {
            handle.append(batch(2)).await.unwrap();
        }
        assert_eq!(
            handle.high_watermark(),
            0,
            "follower 2 has reported nothing"
        );
        let ctx = Context::with_image(&broker, image(&broker, 0));

        let answer = serve(&ctx, &fetch(&ctx, 2, 0, -1, 0)).await;
        assert_eq!(answer.error, 0);
        let p = &answer.partitions[0];
        assert_eq!((p.error, p.leader_epoch, p.diverging), (0, 0, None));
        assert_eq!(
            (p.high_watermark, p.log_start_offset, p.log_end_offset),
            (0, 0, 6)
        );
        let stored = handle.reader().read(0, usize::MAX).unwrap().records;
        assert_eq!(p.records, stored);

        // Caught up and durable: the high watermark reaches the log end, in this very answer.
        let answer = serve(&ctx, &fetch(&ctx, 2, 6, 0, 6)).await;
        let p = &answer.partitions[0];
        assert_eq!((p.error, p.high_watermark), (0, 6));
        assert!(p.records.is_empty());
        assert_eq!(handle.high_watermark(), 6);
    }

    /// A caught-up follower's fetch waits for the next append and returns with it.
    #[tokio::test]
    async fn a_caught_up_fetch_waits_for_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, handle) = leader(dir.path()).await;
        handle.append(batch(2)).await.unwrap();
        let ctx = Context::with_image(&broker, image(&broker, 0));
        let mut request = fetch(&ctx, 2, 2, 0, 2);
        request.max_wait_ms = 30_000;
        let waiting = tokio::spawn({
            let ctx = ctx.clone();
            async move { serve_with(&ctx, &request, Context::clone).await }
        });
        // Still waiting: nothing new was appended.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "answered with nothing new");
        handle.append(batch(3)).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the append woke the fetch")
            .unwrap();
        let p = &answer.partitions[0];
        let header = BatchHeader::parse(&p.records).unwrap();
        assert_eq!((header.base_offset, header.record_count), (2, 3));
        assert_eq!(p.log_end_offset, 5);
    }

    /// Errors: a replaced follower process, an unknown topic id, a broker that is not a
    /// replica, an epoch the leader does not know, an offset past the log end.
    #[tokio::test]
    async fn fetches_the_leader_cannot_serve_get_kafka_error_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, handle) = leader(dir.path()).await;
        handle.append(batch(2)).await.unwrap();
        let ctx = Context::with_image(&broker, image(&broker, 0));
        let code = |answer: &FetchResponse| answer.partitions[0].error;

        let mut stale = fetch(&ctx, 2, 0, -1, 0);
        stale.broker_epoch = EPOCH + 1;
        let answer = serve(&ctx, &stale).await;
        assert_eq!(answer.error, ResponseError::StaleBrokerEpoch.code());
        assert!(answer.partitions.is_empty());

        let mut unknown = fetch(&ctx, 2, 0, -1, 0);
        unknown.partitions[0].topic_id = Uuid::from_u128(42);
        assert_eq!(
            code(&serve(&ctx, &unknown).await),
            ResponseError::UnknownTopicId.code()
        );

        assert_eq!(
            code(&serve(&ctx, &fetch(&ctx, 3, 0, -1, 0)).await),
            ResponseError::NotLeaderOrFollower.code()
        );

        let mut newer = fetch(&ctx, 2, 0, -1, 0);
        newer.partitions[0].current_leader_epoch = 1;
        assert_eq!(
            code(&serve(&ctx, &newer).await),
            ResponseError::UnknownLeaderEpoch.code()
        );

        assert_eq!(
            code(&serve(&ctx, &fetch(&ctx, 2, 100, -1, 0)).await),
            ResponseError::OffsetOutOfRange.code()
        );
        // None of these moved the high watermark.
        assert_eq!(handle.high_watermark(), 0);
    }

    /// A follower that wrote more of an old epoch than the leader kept is told the end of that
    /// epoch on the leader, and gets no records until it has truncated there.
    #[tokio::test]
    async fn a_follower_ahead_in_an_old_epoch_is_told_where_to_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, handle) = leader(dir.path()).await;
        handle.append(batch(2)).await.unwrap();
        handle.append(batch(2)).await.unwrap();
        handle
            .replica_event(ReplicaEvent::BecameLeader {
                leader_epoch: 1,
                isr: vec![1, 2],
            })
            .await;
        handle.append(batch(3)).await.unwrap();
        let ctx = Context::with_image(&broker, image(&broker, 1));

        // The follower holds epoch 0 up to offset 6; the leader's epoch 0 ended at 4.
        let answer = serve(&ctx, &fetch(&ctx, 2, 6, 0, 6)).await;
        let p = &answer.partitions[0];
        assert_eq!(p.error, 0);
        assert_eq!(
            p.diverging,
            Some(EpochEnd {
                epoch: 0,
                end_offset: 4
            })
        );
        assert!(p.records.is_empty());
        assert_eq!(
            handle.high_watermark(),
            0,
            "a diverged report counts for nothing"
        );

        // Truncated to 4: it gets epoch 1 from there.
        let answer = serve(&ctx, &fetch(&ctx, 2, 4, 0, 4)).await;
        let p = &answer.partitions[0];
        assert_eq!(p.diverging, None);
        let header = BatchHeader::parse(&p.records).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (4, 1));
        assert_eq!(p.high_watermark, 4);
    }
}
