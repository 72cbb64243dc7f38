//! A seeded schedule of faults on three real `fjord-broker` processes, each on its own loopback
//! address, under an idempotent `acks=all` librdkafka producer, with a checker in the manner of
//! Jepsen's queue workload: what was acknowledged, what consumers read while the faults ran, and
//! what ListOffsets answered, against what the partitions hold afterwards.
//!
//! `FJORD_FAULT_SEED` replays a schedule (the seed is printed, and named again on failure);
//! `FJORD_FAULTS` sets how many faults (20 in CI). A soak is the same test with more faults:
//! `FJORD_FAULTS=300 cargo test -p fjord-tests --test clients faults::` (docs/cluster.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fjord_tests::{ClusterProcesses, LinkCut};
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::cluster::leaders;
use super::replication::{
    Placed, QUICK_FENCING, Writer, create_replicated, isrs, read_partition, wait_identical,
};

const TOPIC: &str = "faults";
const PARTITIONS: i32 = 3;

/// One fault of the schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL, then a restart after a while.
    Kill { down_ms: u64 },
    /// SIGKILL, the topic's partition directories deleted, then a restart: a replica that lost
    /// its disk.
    Wipe,
    /// SIGSTOP, then SIGCONT: a paused process wakes up as a zombie.
    Pause { ms: u64 },
    /// Every packet between the broker and the other two dropped, both ways.
    Isolate { ms: u64 },
    /// Packets from the broker to the other two dropped; the other way works.
    OneWay { ms: u64 },
    /// 30 % of the packets between the broker and the other two dropped, both ways.
    Lossy { ms: u64 },
}

impl Fault {
    fn pick(rng: &mut impl Rng) -> Self {
        match rng.random_range(0..12) {
            0..=2 => Fault::Kill {
                down_ms: rng.random_range(500..4000),
            },
            3 => Fault::Wipe,
            4..=6 => Fault::Pause {
                ms: rng.random_range(500..6000),
            },
            7..=8 => Fault::Isolate {
                ms: rng.random_range(1000..6000),
            },
            9..=10 => Fault::OneWay {
                ms: rng.random_range(1000..6000),
            },
            _ => Fault::Lossy {
                ms: rng.random_range(2000..6000),
            },
        }
    }
}

/// Names the seed in the failure message, however the test fails.
struct Seed(u64);

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("replay this schedule with FJORD_FAULT_SEED={}", self.0);
        }
    }
}

/// Asks every partition's latest offset (ListOffsets, to its leader) in a loop, noting any answer
/// below one given before.
struct Watermarks {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Watermarks {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, bootstrap, topic) =
            (Arc::clone(&stop), bootstrap.to_owned(), topic.to_owned());
        let thread = std::thread::spawn(move || {
            let client: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            let mut highest = vec![i64::MIN; usize::try_from(partitions).unwrap()];
            let (mut answers, mut backwards) = (0, Vec::new());
            while !stopping.load(Ordering::Relaxed) {
                for (partition, highest) in (0..).zip(highest.iter_mut()) {
                    let Ok((_, latest)) =
                        client.fetch_watermarks(&topic, partition, Duration::from_secs(2))
                    else {
                        continue;
                    };
                    answers += 1;
                    if latest < *highest {
                        backwards.push(format!(
                            "{topic}-{partition}: latest {latest} after {}",
                            *highest
                        ));
                    }
                    *highest = (*highest).max(latest);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (answers, backwards)
        });
        Self { stop, thread }
    }

    /// How many answers there were, and those that went backwards.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A consumer reading every partition from the start while the faults run, noting what it read
/// where.
struct LiveReader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(i32, i64, String)>>,
}

impl LiveReader {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        use rdkafka::Message;
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, bootstrap, topic) =
            (Arc::clone(&stop), bootstrap.to_owned(), topic.to_owned());
        let thread = std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", format!("{topic}-live-reader"))
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let mut assignment = rdkafka::TopicPartitionList::new();
            for partition in 0..partitions {
                assignment
                    .add_partition_offset(&topic, partition, rdkafka::Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&assignment).unwrap();
            let mut read = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    read.push((
                        message.partition(),
                        message.offset(),
                        String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                    ));
                }
            }
            read
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<(i32, i64, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A seeded schedule of faults on three brokers under an idempotent `acks=all` producer (five
/// requests in flight) writing to three partitions with three replicas and
/// `min.insync.replicas=2`. Each fault hits the leader of a random partition or one of its
/// followers: SIGKILL and restart, SIGKILL and restart with the partitions' directories deleted,
/// SIGSTOP for up to twice the session timeout, a network cut from the other two (both ways, one
/// way, or 30 % of the packets lost) for up to twice the session timeout; records must be
/// acknowledged between faults, so every fault lands on a working cluster. Meanwhile a consumer
/// reads every partition and ListOffsets is asked for every latest offset in a loop.
///
/// Afterwards every ISR is back to three within 30 s, and the checker reads every partition back:
/// every acknowledged record is there, at the offset it was acknowledged with, exactly once, in
/// the order it was sent; every record the live consumer read is at the offset it read it at (no
/// consumer read a record that later vanished); no ListOffsets answer went below an earlier one;
/// the three copies are byte-identical.
#[test]
fn a_seeded_schedule_of_faults_loses_no_acknowledged_record() {
    let seed: u64 = std::env::var("FJORD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let faults: usize = std::env::var("FJORD_FAULTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("fault schedule: FJORD_FAULT_SEED={seed} FJORD_FAULTS={faults}");
    let _seed = Seed(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut flags = QUICK_FENCING.to_vec();
    flags.extend(["--replica-lag-time-max-ms", "3000"]);
    let mut cluster = ClusterProcesses::start_apart(&["a", "b", "c"], 3, &flags);
    let bootstrap = cluster.bootstrap();
    let (writer, observers) = observed(&cluster, TOPIC, PARTITIONS, None, &[0, 1, 2]);

    let started = Instant::now();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for number in 0..faults {
        let partition = rng.random_range(0..PARTITIONS as usize);
        let (_, leaders_now) = leaders(&bootstrap, TOPIC);
        let leader = usize::try_from(leaders_now[partition]).unwrap_or(0);
        let target = if rng.random_bool(0.5) {
            leader
        } else {
            (leader + rng.random_range(1..3usize)) % 3
        };
        let role = if target == leader {
            "leader"
        } else {
            "follower"
        };
        let fault = Fault::pick(&mut rng);
        eprintln!("fault {number}: {fault:?} of broker {target} ({role} of {TOPIC}-{partition})");
        let host = cluster.brokers[target].host.clone();
        let others: Vec<String> = (0..3)
            .filter(|i| *i != target)
            .map(|i| cluster.brokers[i].host.clone())
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let kind = match fault {
            Fault::Kill { down_ms } => {
                cluster.brokers[target].kill();
                std::thread::sleep(Duration::from_millis(down_ms));
                cluster.brokers[target].start();
                assert!(cluster.brokers[target].wait_ready(Duration::from_secs(60)));
                "SIGKILL"
            }
            Fault::Wipe => {
                cluster.brokers[target].kill();
                for p in 0..PARTITIONS {
                    let dir = cluster.brokers[target]
                        .data_dir
                        .join(format!("{TOPIC}-{p}"));
                    std::fs::remove_dir_all(&dir).unwrap();
                }
                cluster.brokers[target].start();
                assert!(cluster.brokers[target].wait_ready(Duration::from_secs(60)));
                "SIGKILL, disk wiped"
            }
            Fault::Pause { ms } => {
                cluster.brokers[target].signal("STOP");
                std::thread::sleep(Duration::from_millis(ms));
                cluster.brokers[target].signal("CONT");
                "SIGSTOP"
            }
            Fault::Isolate { ms } => {
                let cut = LinkCut::between(&[&host], &others);
                std::thread::sleep(Duration::from_millis(ms));
                drop(cut);
                "isolated"
            }
            Fault::OneWay { ms } => {
                let cut = LinkCut::one_way(&[&host], &others);
                std::thread::sleep(Duration::from_millis(ms));
                drop(cut);
                "cut one way"
            }
            Fault::Lossy { ms } => {
                let cut = LinkCut::lossy(&[&host], &others, 30);
                std::thread::sleep(Duration::from_millis(ms));
                drop(cut);
                "30% packet loss"
            }
        };
        *kinds.entry(kind).or_default() += 1;
        // The cluster takes records again before the next fault.
        writer.wait_acknowledged(
            writer.acknowledged() + 100,
            &format!("after fault {number}"),
        );
    }
    let observed = observers.finish(writer);
    eprintln!(
        "{faults} faults {kinds:?} in {:.0} s; {observed}",
        started.elapsed().as_secs_f64()
    );
    observed.check(&cluster, TOPIC, PARTITIONS);
}

/// What a producer, a consumer and a ListOffsets loop see while faults run.
pub(super) struct Observers {
    watermarks: Watermarks,
    live: LiveReader,
}

impl Observers {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        Self {
            watermarks: Watermarks::start(bootstrap, topic, partitions),
            live: LiveReader::start(bootstrap, topic, partitions),
        }
    }

    /// Stops the observers and the writer (every record it sent delivered).
    pub(super) fn finish(self, writer: Writer) -> Observed {
        let placed = writer.finish();
        let read_live = self.live.finish();
        let (answers, backwards) = self.watermarks.finish();
        Observed {
            placed,
            read_live,
            answers,
            backwards,
        }
    }
}

/// What was seen while the faults ran.
pub(super) struct Observed {
    placed: Vec<Placed>,
    read_live: Vec<(i32, i64, String)>,
    answers: usize,
    backwards: Vec<String>,
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records acknowledged, {} read while the faults ran, {} ListOffsets answers",
            self.placed.len(),
            self.read_live.len(),
            self.answers
        )
    }
}

impl Observed {
    /// Once every ISR is whole again (within 30 s), the checker reads every partition back:
    /// nothing out of order or twice; every acknowledged record at the offset it was
    /// acknowledged with; every record the live consumer read still where it read it; no
    /// ListOffsets answer below an earlier one; the copies byte-identical.
    pub(super) fn check(&self, cluster: &ClusterProcesses, topic: &str, partitions: i32) {
        let replicas = cluster.brokers.len().min(3);
        wait_isrs_whole(cluster, topic, replicas, Duration::from_secs(30));
        assert!(
            self.backwards.is_empty(),
            "ListOffsets went backwards: {:?}",
            self.backwards
        );
        assert!(self.answers > 0 && !self.read_live.is_empty(), "{self}");
        let bootstrap = cluster.bootstrap();
        for partition in 0..partitions {
            let read = read_partition(&bootstrap, topic, partition);
            // In the order sent, none twice.
            let values: Vec<&String> = read.iter().map(|(_, v)| v).collect();
            let mut sorted = values.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                values, sorted,
                "partition {partition}: out of order or duplicated"
            );
            // Every acknowledged record at the offset it was acknowledged with. librdkafka
            // reports some records delivered without an offset (-1001: a later batch of the same
            // producer showed they were written): those must be in the partition somewhere.
            let at: BTreeMap<i64, &String> = read.iter().map(|(o, v)| (*o, v)).collect();
            let present: BTreeSet<&String> = read.iter().map(|(_, v)| v).collect();
            for record in self.placed.iter().filter(|p| p.partition == partition) {
                if record.offset >= 0 {
                    assert_eq!(
                        at.get(&record.offset).copied(),
                        Some(&record.value),
                        "acknowledged {record:?} is not where it was acknowledged"
                    );
                } else {
                    assert!(
                        present.contains(&record.value),
                        "acknowledged {record:?} is missing"
                    );
                }
            }
            // What the live consumer read is still there, where it read it.
            for (_, offset, value) in self.read_live.iter().filter(|(p, _, _)| *p == partition) {
                assert_eq!(
                    at.get(offset).copied(),
                    Some(value),
                    "{topic}-{partition}: a consumer read {value} at {offset}, which vanished"
                );
            }
            // The copies agree byte for byte.
            wait_identical(cluster, topic, partition);
        }
    }
}

/// Waits until some running broker describes every ISR of `topic` as holding all `replicas`
/// replicas.
fn wait_isrs_whole(cluster: &ClusterProcesses, topic: &str, replicas: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = cluster
            .brokers
            .iter()
            .filter(|b| b.status().is_some())
            .map(|b| isrs(&b.bootstrap(), topic))
            .find(|isrs| !isrs.is_empty());
        if seen
            .as_ref()
            .is_some_and(|isrs| isrs.iter().all(|isr| isr.len() == replicas))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: ISRs {seen:?} {limit:?} after the faults"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The brokers that answer, by index.
fn running(cluster: &ClusterProcesses) -> Vec<usize> {
    (0..cluster.brokers.len())
        .filter(|i| cluster.brokers[*i].status().is_some())
        .collect()
}

/// Waits (up to 30 s) until broker `via` names a leader of `topic`-`partition` that `wanted`
/// accepts, and returns it.
fn wait_leader(
    cluster: &ClusterProcesses,
    via: usize,
    topic: &str,
    partition: usize,
    wanted: impl Fn(usize) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, now) = leaders(&cluster.brokers[via].bootstrap(), topic);
        if let Some(leader) = now
            .get(partition)
            .and_then(|l| usize::try_from(*l).ok())
            .filter(|l| wanted(*l))
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition}: leaders {now:?} as broker {via} sees them"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a writer and the observers on a new one-partition topic with three replicas.
fn observed_topic(cluster: &ClusterProcesses, topic: &str) -> (Writer, Observers) {
    observed(cluster, topic, 1, None, &[0, 1, 2])
}

/// Creates `topic` with three replicas of each of its `partitions` (placed by `replicas`, if
/// given; in sync: `isr`), starts a writer and the observers on it, and waits for 200
/// acknowledgements.
pub(super) fn observed(
    cluster: &ClusterProcesses,
    topic: &str,
    partitions: i32,
    replicas: Option<&[&[i32]]>,
    isr: &[i32],
) -> (Writer, Observers) {
    let bootstrap = cluster.bootstrap();
    create_replicated(&bootstrap, topic, partitions, replicas, isr);
    let writer = Writer::start(&bootstrap, topic, usize::try_from(partitions).unwrap());
    let observers = Observers::start(&bootstrap, topic, partitions);
    writer.wait_acknowledged(200, "before the first fault");
    (writer, observers)
}

/// The leader of a partition SIGKILLed five times under load, restarted each time once records
/// were acknowledged without it: nothing acknowledged is lost, and the checker finds every
/// record where it was acknowledged.
#[test]
fn a_leader_sigkilled_again_and_again_loses_nothing() {
    let mut cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &QUICK_FENCING);
    let (writer, observers) = observed_topic(&cluster, "killed");
    for round in 0..5 {
        let via = running(&cluster)[0];
        let leader = wait_leader(&cluster, via, "killed", 0, |_| true);
        cluster.brokers[leader].kill();
        writer.wait_acknowledged(
            writer.acknowledged() + 200,
            &format!("round {round}: broker {leader} down"),
        );
        cluster.brokers[leader].start();
        assert!(cluster.brokers[leader].wait_ready(Duration::from_secs(60)));
        wait_isrs_whole(&cluster, "killed", 3, Duration::from_secs(60));
    }
    observers.finish(writer).check(&cluster, "killed", 1);
}

/// A leader SIGSTOPped past the session timeout: the controller fences it and another replica
/// leads, and records are acknowledged there. Woken, the old leader is a zombie that still
/// believes it leads; it learns otherwise, truncates what only it took, and rejoins the ISR.
#[test]
fn a_leader_paused_past_its_session_wakes_as_a_follower_and_loses_nothing() {
    let cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &QUICK_FENCING);
    let (writer, observers) = observed_topic(&cluster, "paused");
    let leader = wait_leader(&cluster, 0, "paused", 0, |_| true);
    cluster.brokers[leader].signal("STOP");
    let other = (leader + 1) % 3;
    let next = wait_leader(&cluster, other, "paused", 0, |l| l != leader);
    writer.wait_acknowledged(
        writer.acknowledged() + 200,
        &format!("broker {next} leading"),
    );
    cluster.brokers[leader].signal("CONT");
    wait_isrs_whole(&cluster, "paused", 3, Duration::from_secs(60));
    writer.wait_acknowledged(writer.acknowledged() + 100, "the old leader back");
    observers.finish(writer).check(&cluster, "paused", 1);
}

/// Five brokers, three of them voters, and a partition on two that are not (its leader and a
/// follower) and a voter. The follower is cut off by nftables until it has left the ISR, then
/// the leader is SIGKILLed: the replica left in sync leads, never the one that fell behind. With
/// one replica in sync of `min.insync.replicas=2`, nothing is acknowledged until the cut heals
/// and the follower catches up; then everything acknowledged before is there.
#[test]
fn a_follower_cut_off_past_the_lag_time_then_the_leader_killed_loses_nothing() {
    let mut flags = QUICK_FENCING.to_vec();
    flags.extend(["--replica-lag-time-max-ms", "2000"]);
    let mut cluster = ClusterProcesses::start_apart(&["a", "b", "c", "a", "b"], 3, &flags);
    let (leader, cut_off, third) = (3, 4, 2);
    let (writer, observers) = observed(&cluster, "lagging", 1, Some(&[&[3, 4, 2]]), &[2, 3, 4]);
    let hosts: Vec<String> = (0..5)
        .filter(|i| *i != cut_off)
        .map(|i| cluster.brokers[i].host.clone())
        .collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let cut = LinkCut::between(&[&cluster.brokers[cut_off].host], &hosts);
    let in_sync = BTreeSet::from([leader as i32, third as i32]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while isrs(&cluster.brokers[leader].bootstrap(), "lagging").first() != Some(&in_sync) {
        assert!(Instant::now() < deadline, "broker {cut_off} stayed in sync");
        std::thread::sleep(Duration::from_millis(100));
    }
    writer.wait_acknowledged(writer.acknowledged() + 200, "without the cut-off follower");

    cluster.brokers[leader].kill();
    let next = wait_leader(&cluster, third, "lagging", 0, |l| l != leader);
    assert_eq!(next, third, "a replica out of sync was elected");
    drop(cut);
    writer.wait_acknowledged(writer.acknowledged() + 200, "once the follower caught up");
    cluster.brokers[leader].start();
    assert!(cluster.brokers[leader].wait_ready(Duration::from_secs(60)));
    observers.finish(writer).check(&cluster, "lagging", 1);
}

/// Five brokers, three of them voters; a partition on the three brokers that are not voters
/// 1 and 2. With voters 1 and 2 SIGSTOPped the metadata quorum is lost: no controller. Nothing is
/// elected and no metadata changes while it is gone (its brokers cannot tell a lost quorum from
/// being cut off from a live one, so after the session timeout they stop taking writes, and
/// consumers still read); nothing acknowledged is lost, and once the voters return the cluster
/// takes records again.
#[test]
fn the_metadata_quorum_lost_elects_nothing_and_loses_nothing() {
    let cluster = ClusterProcesses::start(&["a", "b", "c", "a", "b"], 3, &QUICK_FENCING);
    let (writer, observers) = observed(&cluster, "quorumless", 1, Some(&[&[3, 4, 0]]), &[0, 3, 4]);

    for voter in [1, 2] {
        cluster.brokers[voter].signal("STOP");
    }
    let applied = |i: usize| {
        cluster.brokers[i]
            .status()
            .map(|s| s["metadata_offset"].as_u64().unwrap())
    };
    let before: Vec<Option<u64>> = [0, 3, 4].into_iter().map(applied).collect();
    // Twice the session timeout without a controller.
    std::thread::sleep(Duration::from_secs(6));
    let after: Vec<Option<u64>> = [0, 3, 4].into_iter().map(applied).collect();
    assert_eq!(before, after, "metadata changed without a quorum");
    assert!(before.iter().all(Option::is_some));
    let during = writer.acknowledged();

    for voter in [1, 2] {
        cluster.brokers[voter].signal("CONT");
    }
    for broker in &cluster.brokers {
        assert!(broker.wait_ready(Duration::from_secs(60)));
    }
    writer.wait_acknowledged(during + 200, "once the quorum was back");
    observers.finish(writer).check(&cluster, "quorumless", 1);
}

/// Six brokers over three racks, a topic of six partitions with a replica in each rack, and
/// rack a (two brokers, one a voter) SIGKILLed at once while a producer and a consumer run:
/// records go on being acknowledged with the two racks left, and once rack a is back every ISR
/// is whole and nothing acknowledged is missing.
#[test]
fn a_whole_rack_down_in_six_brokers_loses_nothing() {
    let mut cluster = ClusterProcesses::start(&["a", "b", "c", "a", "b", "c"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    let created = super::cluster::futures_executor(
        super::cluster::admin(&bootstrap).create_topics(
            &[rdkafka::admin::NewTopic::new(
                "racks",
                6,
                rdkafka::admin::TopicReplication::Fixed(3),
            )
            .set("min.insync.replicas", "2")],
            &rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ),
    )
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    wait_isrs_whole(&cluster, "racks", 3, Duration::from_secs(30));
    let writer = Writer::start(&bootstrap, "racks", 6);
    let observers = Observers::start(&bootstrap, "racks", 6);
    writer.wait_acknowledged(300, "before rack a goes");

    let rack_a: Vec<usize> = (0..6).filter(|i| cluster.brokers[*i].rack == "a").collect();
    for broker in &rack_a {
        cluster.brokers[*broker].kill();
    }
    writer.wait_acknowledged(writer.acknowledged() + 600, "with rack a down");
    for broker in &rack_a {
        cluster.brokers[*broker].start();
    }
    for broker in &rack_a {
        assert!(cluster.brokers[*broker].wait_ready(Duration::from_secs(60)));
    }
    observers.finish(writer).check(&cluster, "racks", 6);
}
