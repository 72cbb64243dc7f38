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

/// Records the values the brokers acknowledged, and counts the failures.
struct Acknowledged {
    values: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicUsize>,
}

impl rdkafka::ClientContext for Acknowledged {}

impl rdkafka::producer::ProducerContext for Acknowledged {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let value = rdkafka::Message::payload(message).unwrap_or_default();
                self.values
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(value).into_owned());
            }
            Err((error, _)) => {
                eprintln!("delivery failed: {error}");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The in-sync replicas of each partition of `topic`, as the broker at `bootstrap` describes them.
fn isrs(bootstrap: &str, topic: &str) -> Vec<BTreeSet<i32>> {
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
fn segments(data_dir: &std::path::Path, topic: &str, partition: i32) -> Vec<u8> {
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

/// Three brokers, a topic of three partitions with three replicas each and
/// `min.insync.replicas=2`. An idempotent `acks=all` producer writes throughout the SIGKILL of the
/// broker leading partition 0 and its restart. The fault lands: records are acknowledged while the
/// broker is down. No record fails; every acknowledged record is read back exactly once; the
/// restarted broker catches up and is back in every ISR; and then the three copies of each
/// partition are byte-identical on disk.
#[test]
fn no_acknowledged_record_is_lost_when_a_leader_is_sigkilled() {
    let mut cluster = ClusterProcesses::start(
        &["a", "b", "c"],
        3,
        &[
            "--broker-session-timeout-ms",
            "3000",
            "--broker-heartbeat-interval-ms",
            "500",
        ],
    );
    let bootstrap = cluster.bootstrap();
    let created = futures_executor(
        admin(&bootstrap).create_topics(
            &[NewTopic::new("replicated", 3, TopicReplication::Fixed(3))
                .set("min.insync.replicas", "2")],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ),
    )
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while isrs(&bootstrap, "replicated") != vec![BTreeSet::from([0, 1, 2]); 3] {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            isrs(&bootstrap, "replicated")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let values = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, bootstrap) = (Arc::clone(&stop), bootstrap.clone());
        let context = Acknowledged {
            values: Arc::clone(&values),
            failed: Arc::clone(&failed),
        };
        std::thread::spawn(move || {
            let producer: BaseProducer<Acknowledged> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "60000")
                .create_with_context(context)
                .unwrap();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("{sent:06}");
                let partition = i32::try_from(sent % 3).unwrap();
                let record = BaseRecord::<(), _>::to("replicated")
                    .partition(partition)
                    .payload(&value);
                if producer.send(record).is_ok() {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(3));
            }
            producer.flush(Duration::from_secs(60)).unwrap();
            assert_eq!(producer.in_flight_count(), 0);
            sent
        })
    };
    let acknowledged = || values.lock().unwrap().len();
    let wait_acknowledged = |at_least: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged() < at_least {
            assert!(
                Instant::now() < deadline,
                "{what}: {} acknowledged",
                acknowledged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acknowledged(300, "before the kill");

    let (_, leaders_now) = leaders(&bootstrap, "replicated");
    let victim = usize::try_from(leaders_now[0]).unwrap();
    cluster.brokers[victim].kill();
    let at_kill = acknowledged();
    let survivor = (victim + 1) % 3;
    assert!(
        wait_status(&cluster, survivor, Duration::from_secs(20), |s| {
            s["brokers"][victim]["fenced"] == true
        }),
        "{:?}",
        cluster.brokers[survivor].status()
    );
    // The fault landed: with the leader gone, records are still acknowledged by the two left.
    wait_acknowledged(at_kill + 300, "while the broker was down");

    cluster.brokers[victim].start();
    assert!(cluster.brokers[victim].wait_ready(Duration::from_secs(60)));
    let survivor_bootstrap = cluster.brokers[survivor].bootstrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while isrs(&survivor_bootstrap, "replicated") != vec![BTreeSet::from([0, 1, 2]); 3] {
        assert!(
            Instant::now() < deadline,
            "broker {victim} never rejoined: {:?}",
            isrs(&survivor_bootstrap, "replicated")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_acknowledged(acknowledged() + 300, "after the broker rejoined");
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "records failed");

    let mut acknowledged_values = values.lock().unwrap().clone();
    acknowledged_values.sort();
    assert_eq!(acknowledged_values.len(), sent);
    let read = read_all(&bootstrap, "replicated", 3);
    assert_eq!(read, acknowledged_values, "every acknowledged record, once");

    // The followers fetch on their own: every copy reaches the leader's, byte for byte.
    for partition in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let copies: Vec<Vec<u8>> = cluster
                .brokers
                .iter()
                .map(|b| segments(&b.data_dir, "replicated", partition))
                .collect();
            if copies.iter().all(|c| *c == copies[0]) {
                assert!(!copies[0].is_empty());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: copies of {:?} bytes differ",
                copies.iter().map(Vec::len).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Produces `values` to partition 0 of `topic` with `acks=all` and returns how many failed.
fn produce_all(bootstrap: &str, topic: &str, values: &[String]) -> usize {
    let failed = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Acknowledged> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create_with_context(Acknowledged {
            values: Arc::clone(&acknowledged),
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copies: Vec<Vec<u8>> = cluster
            .brokers
            .iter()
            .map(|b| segments(&b.data_dir, "paused", 0))
            .collect();
        if copies.iter().all(|c| *c == copies[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "the copies differ");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A replica whose partition directory is lost (an empty disk) while DeleteRecords had moved the
/// log start past 0 starts again at its leader's log start: it fetches from there, catches up,
/// and rejoins the ISR, holding exactly the leader's batches from that point on.
#[test]
fn a_replica_that_lost_its_log_starts_again_at_the_leaders_log_start() {
    use rdkafka::{Offset, TopicPartitionList};

    let mut cluster = ClusterProcesses::start(
        &["a", "b", "c"],
        3,
        &[
            "--broker-session-timeout-ms",
            "3000",
            "--broker-heartbeat-interval-ms",
            "500",
        ],
    );
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
    let cluster = ClusterProcesses::start_apart(
        &["a", "b", "c"],
        3,
        &[
            "--broker-session-timeout-ms",
            "3000",
            "--broker-heartbeat-interval-ms",
            "500",
        ],
    );
    let bootstrap = cluster.bootstrap();
    let created = futures_executor(admin(&bootstrap).create_topics(
        &[NewTopic::new("cut", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2")],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let all = BTreeSet::from([0, 1, 2]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while isrs(&bootstrap, "cut").first() != Some(&all) {
        assert!(Instant::now() < deadline, "{:?}", isrs(&bootstrap, "cut"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, leader) = leaders(&bootstrap, "cut");
    let old_leader = usize::try_from(leader[0]).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let values = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, bootstrap) = (Arc::clone(&stop), bootstrap.clone());
        let context = Acknowledged {
            values: Arc::clone(&values),
            failed: Arc::clone(&failed),
        };
        std::thread::spawn(move || {
            let producer: BaseProducer<Acknowledged> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .set("request.timeout.ms", "5000")
                .set("message.timeout.ms", "120000")
                .create_with_context(context)
                .unwrap();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("{sent:06}");
                if producer
                    .send(BaseRecord::<(), _>::to("cut").partition(0).payload(&value))
                    .is_ok()
                {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(3));
            }
            producer.flush(Duration::from_secs(120)).unwrap();
            assert_eq!(producer.in_flight_count(), 0);
            sent
        })
    };
    let acknowledged = || values.lock().unwrap().len();
    let wait_acknowledged = |at_least: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while acknowledged() < at_least {
            assert!(
                Instant::now() < deadline,
                "{what}: {} acknowledged",
                acknowledged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acknowledged(300, "before the cut");

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
    let at_new_leader = acknowledged();
    wait_acknowledged(at_new_leader + 300, "at the new leader");
    // The old leader, cut off, still believes it leads: it has acknowledged nothing since the
    // others took over (every acknowledgement needs the high watermark, which it cannot move).
    drop(cut);
    let deadline = Instant::now() + Duration::from_secs(60);
    while isrs(&other_bootstrap, "cut").first() != Some(&all) {
        assert!(
            Instant::now() < deadline,
            "the old leader never rejoined: {:?}",
            isrs(&other_bootstrap, "cut")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_acknowledged(acknowledged() + 100, "after the heal");
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "records failed");
    let mut acknowledged_values = values.lock().unwrap().clone();
    acknowledged_values.sort();
    assert_eq!(acknowledged_values.len(), sent);
    assert_eq!(
        read_all(&bootstrap, "cut", 1),
        acknowledged_values,
        "every acknowledged record, once"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copies: Vec<Vec<u8>> = cluster
            .brokers
            .iter()
            .map(|b| segments(&b.data_dir, "cut", 0))
            .collect();
        if copies.iter().all(|c| *c == copies[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "the copies differ");
        std::thread::sleep(Duration::from_millis(200));
    }
}
