//! Replicated partitions on real `fjord-broker` processes: followers copy their leaders byte for
//! byte, `acks=all` is answered once every in-sync replica holds a record, and a broker SIGKILLed
//! under load loses no acknowledged record, catches up when it returns and rejoins the ISR.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_tests::{ClusterProcesses, LinkCut};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::cluster::{admin, futures_executor, leaders, read_all, wait_status};

/// Records each delivery's broker error (`None`: delivered).
struct Refusals(Arc<Mutex<Vec<Option<rdkafka::error::RDKafkaErrorCode>>>>);

impl rdkafka::ClientContext for Refusals {}

impl rdkafka::producer::ProducerContext for Refusals {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        let code = result
            .as_ref()
            .err()
            .and_then(|(error, _)| error.rdkafka_error_code());
        self.0.lock().unwrap().push(code);
    }
}

/// The in-sync replicas of each partition of `topic`, as the broker at `bootstrap` describes them.
pub(super) fn isrs(bootstrap: &str, topic: &str) -> Vec<BTreeSet<i32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return Vec::new();
    };
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.isr().iter().copied().collect())
        .collect()
}

/// The bytes of every segment of `topic`-`partition` in a broker's data directory, in order.
pub(super) fn segments(data_dir: &std::path::Path, topic: &str, partition: i32) -> Vec<u8> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| std::fs::read(path).unwrap())
        .collect()
}

/// Fencing within seconds: what the fault tests run brokers with.
pub(super) const QUICK_FENCING: [&str; 4] = [
    "--broker-session-timeout-ms",
    "3000",
    "--broker-heartbeat-interval-ms",
    "500",
];

/// Creates `topic` with `partitions` partitions of three replicas (`replicas`, when given, places
/// them), `min.insync.replicas=2`, and waits until every ISR is whole (`isr` without `replicas`).
pub(super) fn create_replicated(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replicas: Option<&[&[i32]]>,
    isr: &[i32],
) {
    let replication = match replicas {
        Some(replicas) => TopicReplication::Variable(replicas),
        None => TopicReplication::Fixed(3),
    };
    let created = futures_executor(admin(bootstrap).create_topics(
        &[NewTopic::new(topic, partitions, replication).set("min.insync.replicas", "2")],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    // A new partition's ISR is its replicas.
    let want: Vec<BTreeSet<i32>> = match replicas {
        Some(replicas) => replicas
            .iter()
            .map(|r| r.iter().copied().collect())
            .collect(),
        None => vec![isr.iter().copied().collect(); usize::try_from(partitions).unwrap()],
    };
    wait_isrs(
        bootstrap,
        topic,
        &want,
        Duration::from_secs(20),
        "after creation",
    );
}

/// Waits until the broker at `bootstrap` describes the ISRs of `topic` as `want`.
pub(super) fn wait_isrs(
    bootstrap: &str,
    topic: &str,
    want: &[BTreeSet<i32>],
    limit: Duration,
    what: &str,
) {
    let deadline = Instant::now() + limit;
    while isrs(bootstrap, topic) != want {
        assert!(
            Instant::now() < deadline,
            "{what}: ISRs {:?}, waiting for {want:?}",
            isrs(bootstrap, topic)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An idempotent `acks=all` librdkafka producer (five requests in flight) writing
/// `{partition}-{sequence}` round-robin over `partitions` partitions of `topic` in the
/// background, with a ledger of what was acknowledged where.
pub(super) struct Writer {
    stop: Arc<AtomicBool>,
    placed: Arc<Mutex<Vec<Placed>>>,
    failed: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<usize>,
}

impl Writer {
    pub(super) fn start(bootstrap: &str, topic: &str, partitions: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let placed = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        let ledger = Ledger {
            placed: Arc::clone(&placed),
            failed: Arc::clone(&failed),
        };
        let (bootstrap, topic, stopping) =
            (bootstrap.to_owned(), topic.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let producer: BaseProducer<Ledger> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("max.in.flight.requests.per.connection", "5")
                .set("linger.ms", "2")
                .set("request.timeout.ms", "5000")
                .set("message.timeout.ms", "300000")
                .create_with_context(ledger)
                .unwrap();
            let mut sent = 0usize;
            while !stopping.load(Ordering::Relaxed) {
                let partition = sent % partitions;
                let value = format!("{partition}-{:08}", sent / partitions);
                let record = BaseRecord::<(), _>::to(&topic)
                    .partition(i32::try_from(partition).unwrap())
                    .payload(&value);
                if producer.send(record).is_ok() {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(2));
            }
            producer.flush(Duration::from_secs(300)).unwrap();
            assert_eq!(producer.in_flight_count(), 0);
            sent
        });
        Self {
            stop,
            placed,
            failed,
            thread,
        }
    }

    pub(super) fn acknowledged(&self) -> usize {
        self.placed.lock().unwrap().len()
    }

    /// Waits until at least `at_least` records are acknowledged (up to 90 s).
    pub(super) fn wait_acknowledged(&self, at_least: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.acknowledged() < at_least {
            assert!(
                Instant::now() < deadline,
                "{what}: {} acknowledged",
                self.acknowledged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops, waits until every record sent is delivered or failed, and checks none failed and
    /// all were acknowledged; returns what was acknowledged where.
    pub(super) fn finish(self) -> Vec<Placed> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.thread.join().unwrap();
        assert_eq!(self.failed.load(Ordering::Relaxed), 0, "records failed");
        let placed = self.placed.lock().unwrap().clone();
        assert_eq!(placed.len(), sent, "every record acknowledged");
        placed
    }
}

/// Waits (up to 30 s) until every copy of `topic`-`partition` is byte-identical.
pub(super) fn wait_identical(cluster: &ClusterProcesses, topic: &str, partition: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The brokers that hold a replica of it.
        let copies: Vec<Vec<u8>> = cluster
            .brokers
            .iter()
            .filter(|b| b.data_dir.join(format!("{topic}-{partition}")).is_dir())
            .map(|b| segments(&b.data_dir, topic, partition))
            .collect();
        assert!(
            copies.len() >= 2,
            "{topic}-{partition}: {} copies",
            copies.len()
        );
        if copies.iter().all(|c| *c == copies[0]) {
            assert!(!copies[0].is_empty(), "{topic}-{partition} is empty");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition}: copies of {:?} bytes differ",
            copies.iter().map(Vec::len).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The values of `placed`, sorted.
fn sorted_values(placed: &[Placed]) -> Vec<String> {
    let mut values: Vec<String> = placed.iter().map(|p| p.value.clone()).collect();
    values.sort();
    values
}

/// Three brokers, a topic of three partitions with three replicas each and
/// `min.insync.replicas=2`. An idempotent `acks=all` producer writes throughout the SIGKILL of the
/// broker leading partition 0 and its restart. The fault lands: records are acknowledged while the
/// broker is down. No record fails; every acknowledged record is read back exactly once; the
/// restarted broker catches up and is back in every ISR; and then the three copies of each
/// partition are byte-identical on disk.
#[test]
fn no_acknowledged_record_is_lost_when_a_leader_is_sigkilled() {
    let mut cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    create_replicated(&bootstrap, "replicated", 3, None, &[0, 1, 2]);
    let writer = Writer::start(&bootstrap, "replicated", 3);
    writer.wait_acknowledged(300, "before the kill");

    let (_, leaders_now) = leaders(&bootstrap, "replicated");
    let victim = usize::try_from(leaders_now[0]).unwrap();
    cluster.brokers[victim].kill();
    let at_kill = writer.acknowledged();
    let survivor = (victim + 1) % 3;
    assert!(
        wait_status(&cluster, survivor, Duration::from_secs(20), |s| {
            s["brokers"][victim]["fenced"] == true
        }),
        "{:?}",
        cluster.brokers[survivor].status()
    );
    // The fault landed: with the leader gone, records are still acknowledged by the two left.
    writer.wait_acknowledged(at_kill + 300, "while the broker was down");

    cluster.brokers[victim].start();
    assert!(cluster.brokers[victim].wait_ready(Duration::from_secs(60)));
    wait_isrs(
        &cluster.brokers[survivor].bootstrap(),
        "replicated",
        &vec![BTreeSet::from([0, 1, 2]); 3],
        Duration::from_secs(60),
        &format!("broker {victim} rejoining"),
    );
    writer.wait_acknowledged(writer.acknowledged() + 300, "after the broker rejoined");
    let placed = writer.finish();
    let read = read_all(&bootstrap, "replicated", 3);
    assert_eq!(
        read,
        sorted_values(&placed),
        "every acknowledged record, once"
    );

    // The followers fetch on their own: every copy reaches the leader's, byte for byte.
    for partition in 0..3 {
        wait_identical(&cluster, "replicated", partition);
    }
}

/// Produces `values` to partition 0 of `topic` with `acks=all` and returns how many failed.
pub(super) fn produce_all(bootstrap: &str, topic: &str, values: &[String]) -> usize {
    let failed = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Ledger> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create_with_context(Ledger {
            placed: Arc::clone(&acknowledged),
            failed: Arc::clone(&failed),
        })
        .unwrap();
    for value in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).partition(0).payload(value))
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(
        acknowledged.lock().unwrap().len() + failed.load(Ordering::Relaxed),
        values.len()
    );
    failed.load(Ordering::Relaxed)
}

/// A follower paused with SIGSTOP, with a session timeout long enough that the controller does
/// not fence it, leaves the ISR once it has not caught up for `--replica-lag-time-max-ms`: its
/// leader drops it, and `acks=all` produces go on with the two replicas left. Resumed, it
/// catches up, rejoins the ISR, and holds the same bytes as the others.
#[test]
fn a_paused_follower_leaves_the_isr_and_rejoins_once_resumed() {
    let cluster = ClusterProcesses::start(
        &["a", "b", "c"],
        3,
        &[
            "--broker-session-timeout-ms",
            "60000",
            "--replica-lag-time-max-ms",
            "2000",
        ],
    );
    let bootstrap = cluster.bootstrap();
    let created = futures_executor(admin(&bootstrap).create_topics(
        &[NewTopic::new("paused", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2")],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let all = BTreeSet::from([0, 1, 2]);
    let wait_isr = |bootstrap: &str, want: &BTreeSet<i32>, limit: Duration| {
        let deadline = Instant::now() + limit;
        while isrs(bootstrap, "paused").first() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "ISR {:?}, waiting for {want:?}",
                isrs(bootstrap, "paused")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_isr(&bootstrap, &all, Duration::from_secs(20));
    let values: Vec<String> = (0..300).map(|i| format!("{i:04}")).collect();
    assert_eq!(produce_all(&bootstrap, "paused", &values[..100]), 0);

    let controller = cluster.controller(Duration::from_secs(10)).unwrap();
    let (_, leader) = leaders(&bootstrap, "paused");
    let leader = leader[0];
    // A follower that is not the controller, so the metadata keeps committing while it sleeps.
    let paused = (0..3)
        .find(|id| *id != leader && *id != controller)
        .or_else(|| (0..3).find(|id| *id != leader))
        .unwrap();
    let paused_index = usize::try_from(paused).unwrap();
    let leader_bootstrap = cluster.brokers[usize::try_from(leader).unwrap()].bootstrap();
    cluster.brokers[paused_index].signal("STOP");
    let stopped_at = Instant::now();
    // acks=all produces wait for the paused follower until the leader drops it, then go on.
    assert_eq!(
        produce_all(&leader_bootstrap, "paused", &values[100..200]),
        0
    );
    let others: BTreeSet<i32> = all.iter().copied().filter(|id| *id != paused).collect();
    wait_isr(&leader_bootstrap, &others, Duration::from_secs(20));
    assert!(
        stopped_at.elapsed() >= Duration::from_secs(2),
        "dropped before the lag limit"
    );
    // Dropped for lagging, not fenced: its session is still good.
    let status = cluster.brokers[usize::try_from(leader).unwrap()]
        .status()
        .unwrap();
    assert_eq!(status["brokers"][paused_index]["fenced"], false, "{status}");

    cluster.brokers[paused_index].signal("CONT");
    wait_isr(&leader_bootstrap, &all, Duration::from_secs(30));
    assert_eq!(produce_all(&leader_bootstrap, "paused", &values[200..]), 0);
    assert_eq!(read_all(&bootstrap, "paused", 1), values);
    wait_identical(&cluster, "paused", 0);
}

/// A replica whose partition directory is lost (an empty disk) while DeleteRecords had moved the
/// log start past 0 starts again at its leader's log start: it fetches from there, catches up,
/// and rejoins the ISR, holding exactly the leader's batches from that point on.
#[test]
fn a_replica_that_lost_its_log_starts_again_at_the_leaders_log_start() {
    use rdkafka::{Offset, TopicPartitionList};

    let mut cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    let admin = admin(&bootstrap);
    let created = futures_executor(admin.create_topics(
        &[NewTopic::new("trimmed", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2")],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let values: Vec<String> = (0..400).map(|i| format!("{i:04}")).collect();
    // Batches of 50 (each flushed on its own): offset 250 starts one.
    for chunk in values[..300].chunks(50) {
        assert_eq!(produce_all(&bootstrap, "trimmed", chunk), 0);
    }
    let mut below = TopicPartitionList::new();
    below
        .add_partition_offset("trimmed", 0, Offset::Offset(250))
        .unwrap();
    let deleted = futures_executor(admin.delete_records(&below, &AdminOptions::new())).unwrap();
    assert!(
        deleted.elements()[0].error().is_ok(),
        "{:?}",
        deleted.elements()[0].error()
    );

    let controller = cluster.controller(Duration::from_secs(10)).unwrap();
    let (_, leader) = leaders(&bootstrap, "trimmed");
    let leader = usize::try_from(leader[0]).unwrap();
    let lost = (0..3)
        .find(|i| *i != leader && i32::try_from(*i).unwrap() != controller)
        .unwrap();
    cluster.brokers[lost].kill();
    std::fs::remove_dir_all(cluster.brokers[lost].data_dir.join("trimmed-0")).unwrap();
    let leader_bootstrap = cluster.brokers[leader].bootstrap();
    assert_eq!(produce_all(&leader_bootstrap, "trimmed", &values[300..]), 0);
    cluster.brokers[lost].start();
    assert!(cluster.brokers[lost].wait_ready(Duration::from_secs(60)));
    let all = BTreeSet::from([0, 1, 2]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while isrs(&leader_bootstrap, "trimmed").first() != Some(&all) {
        assert!(
            Instant::now() < deadline,
            "never rejoined: {:?}",
            isrs(&leader_bootstrap, "trimmed")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It holds the leader's batches from the one holding offset 250, and nothing before.
    let leader_bytes = segments(&cluster.brokers[leader].data_dir, "trimmed", 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copy = segments(&cluster.brokers[lost].data_dir, "trimmed", 0);
        if !copy.is_empty() && leader_bytes.ends_with(&copy) {
            assert!(
                copy.len() < leader_bytes.len() / 2,
                "{} of {} bytes",
                copy.len(),
                leader_bytes.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} bytes, not the leader's tail",
            copy.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The leader of a partition is cut off from the other two brokers by nftables (packets dropped,
/// no reset; clients still reach every broker) while an idempotent `acks=all` producer writes.
/// Cut off, the old leader cannot complete a single `acks=all` write: its followers no longer
/// fetch and it cannot change the ISR. The two others fence it and elect a new leader, and the
/// producer goes on there. Healed, the old leader follows the new one, cutting what only it had
/// taken. Every acknowledged record is read back exactly once, and the three copies end
/// byte-identical.
#[test]
fn a_leader_cut_off_by_a_network_partition_loses_no_acknowledged_record() {
    fjord_tests::require_tool("nft");
    let cluster = ClusterProcesses::start_apart(&["a", "b", "c"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    create_replicated(&bootstrap, "cut", 1, None, &[0, 1, 2]);
    let (_, leader) = leaders(&bootstrap, "cut");
    let old_leader = usize::try_from(leader[0]).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    let writer = Writer::start(&bootstrap, "cut", 1);
    writer.wait_acknowledged(300, "before the cut");

    let cut = LinkCut::between(
        &[cluster.brokers[old_leader].host.as_str()],
        &others
            .iter()
            .map(|i| cluster.brokers[*i].host.as_str())
            .collect::<Vec<_>>(),
    );
    // The fault lands: within the session timeout the others fence the old leader and one of them
    // leads; records are acknowledged there.
    let other = others[0];
    assert!(
        wait_status(&cluster, other, Duration::from_secs(30), |s| {
            s["brokers"][old_leader]["fenced"] == true
        }),
        "{:?}",
        cluster.brokers[other].status()
    );
    let other_bootstrap = cluster.brokers[other].bootstrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, now) = leaders(&other_bootstrap, "cut");
        if now[0] >= 0 && usize::try_from(now[0]).unwrap() != old_leader {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    writer.wait_acknowledged(writer.acknowledged() + 300, "at the new leader");
    // Healed: the old leader follows the new one, cutting what only it took (the checker below
    // finds any record it acknowledged alone missing).
    drop(cut);
    wait_isrs(
        &other_bootstrap,
        "cut",
        &[BTreeSet::from([0, 1, 2])],
        Duration::from_secs(60),
        "the old leader rejoining",
    );
    writer.wait_acknowledged(writer.acknowledged() + 100, "after the heal");
    let placed = writer.finish();
    assert_eq!(
        read_all(&bootstrap, "cut", 1),
        sorted_values(&placed),
        "every acknowledged record, once"
    );
    wait_identical(&cluster, "cut", 0);
}

/// Two of a partition's three replicas down, on brokers that are not voters (the metadata quorum
/// stands): once the controller has fenced them and shrunk the ISR to the leader, an `acks=all`
/// produce is refused with NOT_ENOUGH_REPLICAS and nothing of it is appended. When they return
/// they catch up and rejoin, and every record acknowledged before is there.
#[test]
fn acks_all_is_refused_with_two_of_three_replicas_down_and_nothing_is_lost() {
    let mut cluster = ClusterProcesses::start(&["a", "b", "c", "a", "b"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    let created = futures_executor(
        admin(&bootstrap).create_topics(
            &[
                NewTopic::new("two-down", 1, TopicReplication::Variable(&[&[0, 3, 4]]))
                    .set("min.insync.replicas", "2"),
            ],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ),
    )
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let all = BTreeSet::from([0, 3, 4]);
    let wait_isr = |want: &BTreeSet<i32>, limit: Duration| {
        let deadline = Instant::now() + limit;
        while isrs(&bootstrap, "two-down").first() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "ISR {:?}, waiting for {want:?}",
                isrs(&bootstrap, "two-down")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_isr(&all, Duration::from_secs(20));
    let values: Vec<String> = (0..200).map(|i| format!("{i:04}")).collect();
    assert_eq!(produce_all(&bootstrap, "two-down", &values[..100]), 0);

    cluster.brokers[3].kill();
    cluster.brokers[4].kill();
    wait_isr(&BTreeSet::from([0]), Duration::from_secs(30));
    // Without retries, the broker's refusal is what the delivery report names.
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Refusals> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("retries", "0")
        .create_with_context(Refusals(Arc::clone(&refusals)))
        .unwrap();
    producer
        .send(
            BaseRecord::<(), _>::to("two-down")
                .partition(0)
                .payload("refused"),
        )
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(
        *refusals.lock().unwrap(),
        [Some(rdkafka::error::RDKafkaErrorCode::NotEnoughReplicas)]
    );
    // Refused, not appended: the log holds only what was acknowledged.
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    assert_eq!(fjord_tests::latest_offset(&watermarks, "two-down", 0), 100);

    cluster.brokers[3].start();
    cluster.brokers[4].start();
    wait_isr(&all, Duration::from_secs(60));
    assert_eq!(produce_all(&bootstrap, "two-down", &values[100..]), 0);
    assert_eq!(read_all(&bootstrap, "two-down", 1), values);
}

/// One acknowledged record: where the broker said it went.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Placed {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) value: String,
}

/// Records every acknowledged record with its partition and offset, and counts failures.
struct Ledger {
    placed: Arc<Mutex<Vec<Placed>>>,
    failed: Arc<AtomicUsize>,
}

impl rdkafka::ClientContext for Ledger {}

impl rdkafka::producer::ProducerContext for Ledger {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use rdkafka::Message;
        match result {
            Ok(message) => self.placed.lock().unwrap().push(Placed {
                partition: message.partition(),
                offset: message.offset(),
                value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            }),
            Err((error, _)) => {
                eprintln!("delivery failed: {error}");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Every record of `partition` of `topic` in offset order, read through `bootstrap`.
pub(super) fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<(i64, String)> {
    read_partition_in(bootstrap, topic, partition, None)
}

/// [`read_partition`] by a consumer in `rack` (`client.rack`), if given.
fn read_partition_in(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    rack: Option<&str>,
) -> Vec<(i64, String)> {
    use rdkafka::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-{partition}-checker"))
        .set("enable.auto.commit", "false");
    if let Some(rack) = rack {
        config.set("client.rack", rack);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let end = fjord_tests::latest_offset(&consumer, topic, partition);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut read: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.last().is_none_or(|(offset, _)| offset + 1 < end) {
        assert!(Instant::now() < deadline, "read {} of {end}", read.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = match message {
                Ok(message) => message,
                // A broker of the bootstrap list that is down (removed, or stopped by the test)
                // is no record; the others are asked.
                Err(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                    | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                )) => continue,
                Err(error) => panic!("reading {topic}-{partition}: {error}"),
            };
            read.push((
                message.offset(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    read
}

/// A broker's `fjord_fetch_record_bytes_total` for partitions it leads and for those it follows.
fn fetch_bytes(broker: &fjord_tests::ClusterBroker) -> (u64, u64) {
    let (_, metrics) = fjord_tests::admin_get(&broker.admin(), "/metrics").unwrap();
    let counter = |role: &str| {
        let name = format!("fjord_fetch_record_bytes_total{{role=\"{role}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name.as_str()))
            .map_or(0, |value| value.trim().parse().unwrap())
    };
    (counter("leader"), counter("follower"))
}

/// KIP-392: three brokers in racks a, b and c, and a partition with a replica on each, led in
/// rack a. A librdkafka consumer with `client.rack=b` reads every record from the broker in rack
/// b: the leader sends it where to read (`preferred_read_replica`) and no records. A consumer
/// that names no rack reads from the leader.
#[test]
fn a_consumer_with_client_rack_reads_from_the_replica_in_its_rack() {
    let cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &[]);
    let bootstrap = cluster.bootstrap();
    create_replicated(&bootstrap, "nearby", 1, Some(&[&[0, 1, 2]]), &[0, 1, 2]);
    let values: Vec<String> = (0..2000)
        .map(|i| format!("{i:04}{}", "x".repeat(1020)))
        .collect();
    assert_eq!(produce_all(&bootstrap, "nearby", &values), 0);
    let payload: u64 = values.iter().map(|v| v.len() as u64).sum();
    let before: Vec<(u64, u64)> = cluster.brokers.iter().map(fetch_bytes).collect();

    let read = read_partition_in(&bootstrap, "nearby", 0, Some("b"));
    assert_eq!(read.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), values);
    let after: Vec<(u64, u64)> = cluster.brokers.iter().map(fetch_bytes).collect();
    let sent = |broker: usize| {
        (
            after[broker].0 - before[broker].0,
            after[broker].1 - before[broker].1,
        )
    };
    // Rack b's broker sent the records, as a follower; the leader in rack a sent none.
    assert!(sent(1).1 >= payload, "{:?}", (sent(0), sent(1), sent(2)));
    assert_eq!(sent(0), (0, 0), "{:?}", (sent(1), sent(2)));
    assert_eq!(sent(2), (0, 0));

    let before = after;
    let read = read_partition(&bootstrap, "nearby", 0);
    assert_eq!(read.len(), values.len());
    let leader_sent = fetch_bytes(&cluster.brokers[0]).0 - before[0].0;
    assert!(leader_sent >= payload, "{leader_sent}");
}
