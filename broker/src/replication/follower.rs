//! The follower's side: one fetcher task per leader broker, fetching every partition this broker
//! follows from that leader over one stream (as Kafka's replica fetcher threads do). The set of
//! partitions comes from the committed metadata ([`Fetchers::update`], after each image is
//! applied to the hosted partitions).
//!
//! Per partition, each answer is applied only if it still concerns the replica as it was when
//! the fetch was sent (same leader epoch, same log end): a delayed or duplicated answer never
//! truncates and never appends. A diverged log is cut at the end the leader gives for the
//! follower's last epoch (never at the follower's own high watermark); records are appended at the
//! leader's offsets, then the leader's high watermark is taken, bounded by what this replica holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::throttle::{self, Throttle};
use super::transport::FetchClient;
use super::wire::{FetchPartition, FetchRequest, FetchResponse, PartitionData};
use crate::cluster::MetadataImage;
use crate::cluster::broker_config::FOLLOWER_THROTTLED_RATE;
use crate::cluster::topic_config::ThrottledReplicas;
use crate::partition::PartitionHandle;
use crate::partition::registry::PartitionRegistry;
use crate::partition::state::Event as ReplicaEvent;
use crate::quorum::Quorum;

/// How long a leader may hold a fetch that finds nothing new.
const MAX_WAIT_MS: u32 = 500;
/// Record bytes per fetch, and per partition in it.
const MAX_BYTES: u32 = 8 << 20;
const PARTITION_MAX_BYTES: u32 = 1 << 20;
/// Beyond the leader's wait: how long an answer may take before the stream is dropped.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// The topic config naming the replicas whose fetches their follower throttles.
const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
/// The longest a fetcher whose every partition is throttled waits before looking again.
const THROTTLED_WAIT: Duration = Duration::from_millis(500);
/// Pause after a failure (no stream, or every partition refused) before trying again.
const BACKOFF: Duration = Duration::from_millis(200);

/// A partition this broker follows, as the metadata gives it.
#[derive(Debug, Clone)]
struct Followed {
    name: String,
    leader_epoch: i32,
    handle: PartitionHandle,
}

/// Partitions by topic id and index.
type Assignment = BTreeMap<(uuid::Uuid, i32), Followed>;

/// The fetchers of this broker, one per leader it follows partitions from.
#[derive(Debug)]
pub struct Fetchers {
    node_id: i32,
    quorum: Arc<Quorum>,
    /// What this broker fetches, as follower, for throttled replicas out of sync.
    throttle: Arc<Throttle>,
    fetchers: Mutex<HashMap<i32, watch::Sender<Assignment>>>,
    shutdown: CancellationToken,
}

impl Fetchers {
    pub fn new(node_id: i32, quorum: Arc<Quorum>, shutdown: CancellationToken) -> Self {
        Self {
            node_id,
            quorum,
            throttle: Arc::new(Throttle::default()),
            fetchers: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    /// Makes the fetchers match `image`: each hosted partition this broker follows is fetched
    /// from its leader, in its leader epoch; a fetcher left with no partition stops.
    pub fn update(&self, image: &MetadataImage, registry: &PartitionRegistry) {
        let mut wanted: BTreeMap<i32, Assignment> = BTreeMap::new();
        for ((name, index), handle) in registry.hosted() {
            let Some(topic) = image.topic(&name) else {
                continue;
            };
            let Some(partition) = topic.partition(index) else {
                continue;
            };
            if partition.leader < 0
                || partition.leader == self.node_id
                || !partition.replicas.contains(&self.node_id)
            {
                continue;
            }
            wanted.entry(partition.leader).or_default().insert(
                (topic.id, index),
                Followed {
                    name,
                    leader_epoch: partition.leader_epoch,
                    handle,
                },
            );
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        // A fetcher whose sender goes stops.
        fetchers.retain(|leader, _| wanted.contains_key(leader));
        for (leader, assignment) in wanted {
            match fetchers.get(&leader) {
                Some(sender) => {
                    sender.send_if_modified(|current| {
                        let same = current.len() == assignment.len()
                            && current
                                .iter()
                                .zip(&assignment)
                                .all(|((a, x), (b, y))| a == b && x.leader_epoch == y.leader_epoch);
                        if !same {
                            *current = assignment;
                        }
                        !same
                    });
                }
                None => {
                    let (sender, receiver) = watch::channel(assignment);
                    tokio::spawn(
                        Fetcher {
                            node_id: self.node_id,
                            leader,
                            quorum: Arc::clone(&self.quorum),
                            throttle: Arc::clone(&self.throttle),
                            assignment: receiver,
                            shutdown: self.shutdown.clone(),
                            fetch_from: HashMap::new(),
                        }
                        .run(),
                    );
                    fetchers.insert(leader, sender);
                }
            }
        }
    }
}

/// Where a follower whose log diverged cuts it (KIP-279): at the smaller of the leader's end of
/// the epoch it names and this replica's own end of that epoch (of the largest it holds up to
/// it; its log start if it holds none).
fn truncation_point(reader: &crate::log::LogReader, diverging: super::wire::EpochEnd) -> i64 {
    let (own_epoch, own_end) = reader.end_offset_for_epoch(diverging.epoch);
    let own_end = if own_epoch < 0 {
        reader.offsets().log_start_offset()
    } else {
        own_end
    };
    diverging.end_offset.min(own_end)
}

/// The task fetching from one leader.
struct Fetcher {
    node_id: i32,
    leader: i32,
    quorum: Arc<Quorum>,
    throttle: Arc<Throttle>,
    assignment: watch::Receiver<Assignment>,
    shutdown: CancellationToken,
    /// Partitions whose log ends below the leader's log start: emptied, they fetch from the
    /// leader's log start instead of their own log end until the first batch arrives. Holds
    /// for the leader epoch it was learnt in only.
    fetch_from: HashMap<(uuid::Uuid, i32), (i32, i64)>,
}

impl Fetcher {
    async fn run(mut self) {
        let mut client: Option<FetchClient> = None;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let assignment = self.assignment.borrow_and_update().clone();
            if assignment.is_empty() {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    changed = self.assignment.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let stream = match client.take() {
                Some(stream) => Ok(stream),
                None => self.connect().await,
            };
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(leader = self.leader, %error, "no replica fetch stream");
                    if self.pause().await {
                        return;
                    }
                    continue;
                }
            };
            let (request, throttled, delay) = self.request(&assignment);
            if request.partitions.is_empty() {
                // Every partition is throttled and the rate is spent: wait it out.
                client = Some(stream);
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay.min(THROTTLED_WAIT)) => {}
                }
                continue;
            }
            let answer = tokio::select! {
                () = self.shutdown.cancelled() => return,
                answer = stream.fetch(request.clone(), ANSWER_TIMEOUT) => answer,
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::warn!(leader = self.leader, %error, "replica fetch failed");
                    if self.pause().await {
                        return;
                    }
                    continue;
                }
            };
            client = Some(stream);
            let throttled_bytes: usize = answer
                .partitions
                .iter()
                .filter(|data| throttled.contains(&(data.topic_id, data.partition)))
                .map(|data| data.records.len())
                .sum();
            self.throttle.charge(throttled_bytes);
            // A fetcher whose leader is no longer followed applies nothing more.
            if self.assignment.has_changed().is_err() {
                return;
            }
            // Any partition refused or stuck: pause before asking again, so the pair of brokers
            // does not spin on it (the others wait that long too).
            if !self.apply(&request, &assignment, answer).await && self.pause().await {
                return;
            }
            // Fetchers for a leader no longer followed stop once their sender is gone.
            if self.assignment.has_changed().is_err() {
                return;
            }
        }
    }

    /// Waits out the backoff; true when the fetcher should stop.
    async fn pause(&mut self) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => true,
            () = tokio::time::sleep(BACKOFF) => self.assignment.has_changed().is_err(),
        }
    }

    async fn connect(&self) -> Result<FetchClient, String> {
        let address = self
            .quorum
            .address_of(self.leader)
            .ok_or_else(|| format!("no cluster address known for broker {}", self.leader))?;
        let cluster_id = self.quorum.image().cluster_id.clone();
        FetchClient::open(&address, &cluster_id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Where this replica stands on each partition it follows from the leader; the partitions
    /// of it throttled here (out of sync, named by `follower.replication.throttled.replicas`),
    /// which are left out while this broker's `follower.replication.throttled.rate` is spent,
    /// and how long until it is not.
    fn request(
        &self,
        assignment: &Assignment,
    ) -> (FetchRequest, HashSet<(uuid::Uuid, i32)>, Duration) {
        let image = self.quorum.image();
        let broker_epoch = image
            .brokers
            .get(&self.node_id)
            .and_then(|b| i64::try_from(b.epoch).ok())
            .unwrap_or(-1);
        let rate = throttle::rate(&image, self.node_id, FOLLOWER_THROTTLED_RATE);
        let delay = self.throttle.delay(rate);
        let throttled: HashSet<(uuid::Uuid, i32)> = match rate {
            None => HashSet::new(),
            Some(_) => assignment
                .iter()
                .filter(|((_, partition), followed)| {
                    image.topic(&followed.name).is_some_and(|topic| {
                        topic
                            .partition(*partition)
                            .is_some_and(|p| !p.isr.contains(&self.node_id))
                            && ThrottledReplicas::of(&topic.configs, FOLLOWER_THROTTLED_REPLICAS)
                                .contains(*partition, self.node_id)
                    })
                })
                .map(|(key, _)| *key)
                .collect(),
        };
        let request = FetchRequest {
            follower: self.node_id,
            broker_epoch,
            max_wait_ms: MAX_WAIT_MS,
            max_bytes: MAX_BYTES,
            partitions: assignment
                .iter()
                .filter(|(key, _)| delay.is_zero() || !throttled.contains(*key))
                .map(|((topic_id, partition), followed)| {
                    let reader = followed.handle.reader();
                    let log_end = reader.offsets().log_end_offset();
                    let (fetch_offset, last_fetched_epoch) =
                        match self.fetch_from.get(&(*topic_id, *partition)) {
                            Some((epoch, start)) if *epoch == followed.leader_epoch => (*start, -1),
                            _ => (log_end, reader.latest_epoch()),
                        };
                    FetchPartition {
                        topic_id: *topic_id,
                        partition: *partition,
                        current_leader_epoch: followed.leader_epoch,
                        fetch_offset,
                        last_fetched_epoch,
                        durable_offset: followed.handle.durable_offset().min(log_end),
                        max_bytes: PARTITION_MAX_BYTES,
                    }
                })
                .collect(),
        };
        (request, throttled, delay)
    }

    /// Applies an answer; false when any partition of it could not be used (refused, or a
    /// divergence this replica cannot resolve).
    async fn apply(
        &mut self,
        request: &FetchRequest,
        assignment: &Assignment,
        answer: FetchResponse,
    ) -> bool {
        if answer.error != 0 {
            tracing::debug!(
                leader = self.leader,
                error = answer.error,
                "the leader refused this broker's fetch"
            );
            return false;
        }
        self.fetch_from.retain(|key, (epoch, _)| {
            assignment
                .get(key)
                .is_some_and(|f| f.leader_epoch == *epoch)
        });
        let mut usable = true;
        for data in answer.partitions {
            let key = (data.topic_id, data.partition);
            let (Some(sent), Some(followed)) = (
                request
                    .partitions
                    .iter()
                    .find(|p| (p.topic_id, p.partition) == key),
                assignment.get(&key),
            ) else {
                continue;
            };
            // Still the replica the fetch was sent for: same leader epoch, same position.
            let current = self.assignment.borrow().get(&key).map(|f| f.leader_epoch);
            let position = self
                .fetch_from
                .get(&key)
                .map(|(_, start)| *start)
                .unwrap_or_else(|| followed.handle.reader().offsets().log_end_offset());
            if current != Some(followed.leader_epoch) || position != sent.fetch_offset {
                continue;
            }
            usable &= self.apply_partition(sent, followed, data).await;
        }
        usable
    }

    async fn apply_partition(
        &mut self,
        sent: &FetchPartition,
        followed: &Followed,
        data: PartitionData,
    ) -> bool {
        let handle = &followed.handle;
        let partition = data.partition;
        let key = (data.topic_id, partition);
        if data.error != 0 {
            // Behind the leader's log start (retention or DeleteRecords moved it while this
            // replica was away, or it starts empty): what it holds is of no use; it starts again
            // at the leader's log start.
            if data.error == ResponseError::OffsetOutOfRange.code()
                && data.log_start_offset > sent.fetch_offset
            {
                let own_start = handle.reader().offsets().log_start_offset();
                if !self.truncate(followed, partition, own_start).await {
                    return false;
                }
                tracing::info!(
                    leader = self.leader,
                    topic = followed.name,
                    partition,
                    from = data.log_start_offset,
                    "this replica is behind its leader's log start: fetching from there"
                );
                self.fetch_from
                    .insert(key, (followed.leader_epoch, data.log_start_offset));
                return true;
            }
            // Ahead of the leader's log end with no epoch to place (an empty epoch cache): cut
            // back to the leader's end.
            if data.error == ResponseError::OffsetOutOfRange.code()
                && data.log_end_offset >= 0
                && sent.fetch_offset > data.log_end_offset
                && sent.fetch_offset > data.log_start_offset
            {
                return self
                    .truncate(followed, partition, data.log_end_offset)
                    .await;
            }
            tracing::debug!(
                leader = self.leader,
                topic = followed.name,
                partition,
                error = data.error,
                "the leader refused a partition"
            );
            return false;
        }
        if let Some(diverging) = data.diverging {
            // Kafka's rule (KIP-279): cut at the smaller of the leader's end of that epoch and
            // this replica's own end of it (its records past that are of a later epoch the leader
            // never had), then ask again with the epoch that is now last.
            let reader = handle.reader();
            let target = truncation_point(reader, diverging);
            // At the log end too: what goes then is an epoch this replica began as leader and
            // wrote nothing in, which the leader never had.
            let before = (reader.offsets().log_end_offset(), reader.latest_epoch());
            if target <= before.0 {
                let truncated = self.truncate(followed, partition, target).await;
                let reader = handle.reader();
                // Nothing changed: asking again would get the same answer at once.
                return truncated
                    && (reader.offsets().log_end_offset(), reader.latest_epoch()) != before;
            }
            tracing::warn!(
                leader = self.leader,
                topic = followed.name,
                partition,
                ?diverging,
                "a divergence this replica cannot resolve"
            );
            return false;
        }
        if !data.records.is_empty() {
            if let Err(error) = handle.append_replicated(data.records).await {
                tracing::warn!(
                    topic = followed.name,
                    partition,
                    %error,
                    "appending what the leader sent failed"
                );
                return false;
            }
            self.fetch_from.remove(&key);
        }
        handle
            .replica_event(ReplicaEvent::LeaderHighWatermark {
                offset: data.high_watermark,
            })
            .await;
        // The leader's log start (retention, DeleteRecords) moves this replica's, once it holds
        // records up to there.
        let own = handle.reader().offsets();
        if data.log_start_offset > own.log_start_offset()
            && data.log_start_offset <= handle.high_watermark()
            && let Err(error) = handle.delete_records_before(data.log_start_offset).await
        {
            tracing::debug!(topic = followed.name, partition, %error, "taking the leader's log start failed");
        }
        true
    }

    async fn truncate(&self, followed: &Followed, partition: i32, offset: i64) -> bool {
        match followed.handle.truncate_to(offset).await {
            Ok(end) => {
                tracing::info!(
                    leader = self.leader,
                    topic = followed.name,
                    partition,
                    end,
                    "truncated a diverged log to the leader's"
                );
                true
            }
            Err(error) => {
                tracing::warn!(topic = followed.name, partition, %error, "truncating failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::{Log, LogConfig, ManualClock};
    use crate::record::{ProducerInfo, Record, build_batch};
    use crate::replication::wire::EpochEnd;

    fn batch(count: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|_| Record {
                key: None,
                value: Some(b"v".to_vec()),
                headers: vec![],
                timestamp: 1,
            })
            .collect();
        build_batch(&records, ProducerInfo::NONE)
    }

    /// The leader held epoch 0 up to 12 and leads in epoch 2; this replica holds epoch 0 up to 10
    /// and then epoch 1 (from a leader whose records never reached the new one) up to 20. The
    /// leader names the end of epoch 0 as 12, but this replica's records from 10 on are epoch 1's:
    /// it cuts at 10, not at 12.
    #[test]
    fn a_diverged_replica_cuts_where_its_own_copy_of_the_epoch_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(
            dir.path(),
            LogConfig::default(),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap();
        log.append(&mut batch(10), 0).unwrap();
        log.append(&mut batch(10), 1).unwrap();
        let reader = log.reader();
        let at = |epoch, end_offset| truncation_point(&reader, EpochEnd { epoch, end_offset });
        assert_eq!(at(0, 12), 10);
        // The leader's copy of epoch 0 is shorter: its end wins.
        assert_eq!(at(0, 6), 6);
        // An epoch this replica holds all of, the leader's end.
        assert_eq!(at(1, 15), 15);
        // An epoch older than any it holds: all of it goes.
        let dir2 = tempfile::tempdir().unwrap();
        let mut later = Log::open(
            dir2.path(),
            LogConfig::default(),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap();
        later.append(&mut batch(5), 3).unwrap();
        let reader = later.reader();
        assert_eq!(
            truncation_point(
                &reader,
                EpochEnd {
                    epoch: 2,
                    end_offset: 4
                }
            ),
            0
        );
    }
}
