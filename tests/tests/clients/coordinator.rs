//! The group coordinator on a replicated `__consumer_offsets`, with real `fjord-broker`
//! processes and librdkafka: a commit is acknowledged once every in-sync replica of the group's
//! partition holds it, and when the coordinator dies the partition's new leader loads it, so no
//! acknowledged commit is lost or goes backwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_tests::ClusterProcesses;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::cluster::{leaders, wait_status};
use super::replication::{QUICK_FENCING, create_replicated, wait_isrs};

/// Partitions of `__consumer_offsets` in these tests: one led by each broker.
const OFFSETS_PARTITIONS: i32 = 3;

/// Partitions of the topic whose offsets are committed: one commit per partition in turn, so an
/// OffsetFetch right after a failover also asks for offsets the new coordinator has not been
/// sent since.
const COMMITTED_PARTITIONS: i32 = 4;

/// What the committer saw.
#[derive(Debug, Default)]
struct Commits {
    /// Offsets whose commit was acknowledged (offset `n` is partition `n % 4`'s), in order, with
    /// when.
    acknowledged: Vec<(i64, Instant)>,
    /// The last offset whose commit was sent (acknowledged or not).
    attempted: i64,
    /// OffsetFetch answers below a commit acknowledged before the fetch was sent: partition,
    /// answer, acknowledged.
    backwards: Vec<(i32, i64, i64)>,
    /// OffsetFetch answers in full.
    fetches: usize,
}

impl Commits {
    /// The highest acknowledged commit of `partition` (-1 for none).
    fn highest_acknowledged(&self, partition: i32) -> i64 {
        self.acknowledged
            .iter()
            .rev()
            .map(|(offset, _)| *offset)
            .find(|offset| partition_of(*offset) == partition)
            .unwrap_or(-1)
    }

    fn acknowledged_since(&self, since: Instant) -> usize {
        self.acknowledged
            .iter()
            .filter(|(_, at)| *at > since)
            .count()
    }
}

/// The partition whose commit offset `offset` is.
fn partition_of(offset: i64) -> i32 {
    i32::try_from(offset % i64::from(COMMITTED_PARTITIONS)).unwrap()
}

/// A consumer of `group` that commits offsets 1, 2, 3, ... one at a time (synchronously), each to
/// the next partition of `topic` in turn, and reads every partition's committed offset back
/// after each, until stopped.
struct Committer {
    stop: Arc<AtomicBool>,
    commits: Arc<Mutex<Commits>>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(Mutex::new(Commits::default()));
        let consumer = committing_consumer(bootstrap, group);
        let (stopping, seen, topic) = (Arc::clone(&stop), Arc::clone(&commits), topic.to_owned());
        let thread = std::thread::spawn(move || {
            let mut next = 1;
            while !stopping.load(Ordering::Relaxed) {
                let mut offsets = TopicPartitionList::new();
                offsets
                    .add_partition_offset(&topic, partition_of(next), Offset::Offset(next))
                    .unwrap();
                let committed = consumer.commit(&offsets, CommitMode::Sync);
                let floors: Vec<i64> = {
                    let mut commits = seen.lock().unwrap();
                    commits.attempted = next;
                    if committed.is_ok() {
                        commits.acknowledged.push((next, Instant::now()));
                    }
                    (0..COMMITTED_PARTITIONS)
                        .map(|p| commits.highest_acknowledged(p))
                        .collect()
                };
                next += 1;
                if let Some(read) = committed_offsets(&consumer, &topic, Duration::from_secs(5)) {
                    let mut commits = seen.lock().unwrap();
                    commits.fetches += 1;
                    for (partition, (read, floor)) in (0..).zip(read.into_iter().zip(floors)) {
                        if read < floor {
                            commits.backwards.push((partition, read, floor));
                        }
                    }
                }
            }
        });
        Self {
            stop,
            commits,
            thread,
        }
    }

    /// Waits until `count` more commits have been acknowledged since `since`.
    fn wait_acknowledged(&self, since: Instant, count: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.commits.lock().unwrap().acknowledged_since(since) < count {
            assert!(
                Instant::now() < deadline,
                "{what}: {} commits acknowledged",
                self.commits.lock().unwrap().acknowledged_since(since)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn finish(self) -> Commits {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.commits).unwrap().into_inner().unwrap()
    }
}

fn committing_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// The offsets `consumer`'s group has committed for each partition of `topic` (-1 for none), if
/// the coordinator answered for all.
fn committed_offsets(consumer: &BaseConsumer, topic: &str, limit: Duration) -> Option<Vec<i64>> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..COMMITTED_PARTITIONS {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(wanted, limit).ok()?;
    (0..COMMITTED_PARTITIONS)
        .map(|p| {
            let partition = committed.find_partition(topic, p)?;
            partition.error().ok()?;
            Some(match partition.offset() {
                Offset::Offset(offset) => offset,
                _ => -1,
            })
        })
        .collect()
}

/// A group whose `__consumer_offsets` partition `leaders` (the partitions' leaders) puts on
/// `broker`.
fn group_coordinated_by(leaders: &[i32], broker: i32) -> String {
    (0..)
        .map(|i| format!("committers-{i}"))
        .find(|group| {
            let partition =
                fjord_broker::coordinator::partition_for(group, OFFSETS_PARTITIONS) as usize;
            leaders[partition] == broker
        })
        .unwrap()
}

/// Three brokers, `__consumer_offsets` with its default three replicas and
/// `min.insync.replicas=2`. A consumer commits offsets one after another while the broker
/// coordinating its group is SIGKILLed mid-stream, and later, once that broker is back in
/// every ISR, the second coordinator too. Each time the group's partition gets a new leader,
/// which loads it. Checked: commits are acknowledged by each new coordinator (the faults
/// landed); no OffsetFetch ever answered less than a commit acknowledged before it was asked;
/// and at the end the committed offset is at least the last acknowledged commit.
#[test]
fn committed_offsets_survive_the_group_coordinators_failover() {
    let mut extra = QUICK_FENCING.to_vec();
    let partitions = OFFSETS_PARTITIONS.to_string();
    extra.extend(["--offsets-topic-partitions", partitions.as_str()]);
    let mut cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &extra);
    let bootstrap = cluster.bootstrap();
    let all = vec![BTreeSet::from([0, 1, 2]); OFFSETS_PARTITIONS as usize];
    wait_isrs(
        &bootstrap,
        "__consumer_offsets",
        &all,
        Duration::from_secs(30),
        "__consumer_offsets replicated",
    );
    create_replicated(
        &bootstrap,
        "committed",
        COMMITTED_PARTITIONS,
        None,
        &[0, 1, 2],
    );

    let controller = cluster.controller(Duration::from_secs(10)).unwrap();
    let (_, offsets_leaders) = leaders(&bootstrap, "__consumer_offsets");
    // A coordinator that is not the controller, if one is: the faults are the coordinator's.
    let first = offsets_leaders
        .iter()
        .copied()
        .filter(|leader| *leader >= 0)
        .find(|leader| *leader != controller)
        .unwrap_or(offsets_leaders[0]);
    let group = group_coordinated_by(&offsets_leaders, first);
    let partition = fjord_broker::coordinator::partition_for(&group, OFFSETS_PARTITIONS) as usize;
    let committer = Committer::start(&bootstrap, &group, "committed");
    let started = Instant::now();
    committer.wait_acknowledged(started, 50, "before the first kill");

    let mut killed = first;
    for round in 0..2 {
        let victim = usize::try_from(killed).unwrap();
        cluster.brokers[victim].kill();
        let at_kill = Instant::now();
        let survivor = (victim + 1) % 3;
        // The group's partition is led elsewhere, and commits are acknowledged there.
        let deadline = Instant::now() + Duration::from_secs(30);
        let next = loop {
            let (_, now) = leaders(&cluster.brokers[survivor].bootstrap(), "__consumer_offsets");
            if let Some(leader) = now.get(partition).filter(|l| ![-1, killed].contains(*l)) {
                break *leader;
            }
            assert!(Instant::now() < deadline, "round {round}: leaders {now:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        committer.wait_acknowledged(at_kill, 50, &format!("round {round}: after the kill"));

        cluster.brokers[victim].start();
        assert!(cluster.brokers[victim].wait_ready(Duration::from_secs(60)));
        assert!(
            wait_status(&cluster, survivor, Duration::from_secs(20), |s| {
                s["brokers"][victim]["fenced"] == false
            }),
            "{:?}",
            cluster.brokers[survivor].status()
        );
        wait_isrs(
            &cluster.brokers[survivor].bootstrap(),
            "__consumer_offsets",
            &all,
            Duration::from_secs(60),
            &format!("round {round}: broker {victim} rejoining"),
        );
        committer.wait_acknowledged(Instant::now(), 20, &format!("round {round}: rejoined"));
        killed = next;
    }

    let commits = committer.finish();
    assert!(commits.backwards.is_empty(), "{:?}", commits.backwards);
    assert!(commits.fetches > 100, "{commits:?}");
    let reader = committing_consumer(&bootstrap, &group);
    let deadline = Instant::now() + Duration::from_secs(30);
    let committed = loop {
        if let Some(offsets) = committed_offsets(&reader, "committed", Duration::from_secs(5)) {
            break offsets;
        }
        assert!(
            Instant::now() < deadline,
            "the committed offsets are not readable"
        );
    };
    for (partition, committed) in (0..).zip(committed) {
        let last = commits.highest_acknowledged(partition);
        assert!(
            (last..=commits.attempted).contains(&committed) && partition_of(committed) == partition,
            "partition {partition}: committed {committed}, last acknowledged {last}, last attempted {}",
            commits.attempted
        );
    }
}
