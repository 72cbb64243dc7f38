//! Several real `fjord-broker` processes on loopback forming one cluster through the metadata
//! quorum (`--node-id`, `--rack`, `--cluster-listen`, `--voters`): partitions placed across
//! brokers and racks, real clients routed to leaders, a consumer group spanning the brokers, and
//! the controller SIGKILLed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fjord_tests::{ClusterProcesses, assign_from_beginning};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub(super) fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let created = futures_executor(admin(bootstrap).create_topics(
        &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

pub(super) fn futures_executor<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The leader of each partition of `topic`, as the broker at `bootstrap` alone describes it.
pub(super) fn leaders(bootstrap: &str, topic: &str) -> (BTreeSet<i32>, Vec<i32>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let brokers = metadata.brokers().iter().map(|b| b.id()).collect();
    let leaders = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.leader())
        .collect();
    (brokers, leaders)
}

fn run(program: &str, args: &[&str]) -> String {
    fjord_tests::run_client(program, args)
}

/// Three brokers in racks a, b and c form one cluster: each names all three with their racks,
/// a 6-partition topic created through one broker is led by all three (two partitions each) and
/// described the same by every broker; librdkafka produces keyed records through the cluster
/// and reads every one back in order per key; a three-member consumer group spans the brokers;
/// a cluster-wide dynamic broker config set through one broker is described by all three;
/// kafka-python and kafkajs produce, consume and administer through it.
#[test]
fn three_brokers_form_one_cluster_that_real_clients_use() {
    let cluster =
        ClusterProcesses::start(&["a", "b", "c"], 3, &["--offsets-topic-partitions", "6"]);
    let bootstrap = cluster.bootstrap();
    create_topic(&cluster.brokers[1].bootstrap(), "spread", 6);

    let (brokers, first) = leaders(&cluster.brokers[0].bootstrap(), "spread");
    assert_eq!(brokers, BTreeSet::from([0, 1, 2]));
    for broker in 0..3 {
        assert_eq!(
            first.iter().filter(|l| **l == broker).count(),
            2,
            "leaders {first:?}"
        );
    }
    for broker in &cluster.brokers {
        let (brokers, seen) = leaders(&broker.bootstrap(), "spread");
        assert_eq!(brokers.len(), 3);
        assert_eq!(
            seen, first,
            "broker {} describes another placement",
            broker.node_id
        );
        let described = run(
            "python3",
            &["cluster_metadata.py", &broker.bootstrap(), "spread"],
        );
        for (id, rack) in [(0, "a"), (1, "b"), (2, "c")] {
            assert!(
                described.contains(&format!("broker {id} {rack}\n")),
                "{described}"
            );
        }
    }

    // A cluster-wide dynamic broker config set through broker 0 reaches every broker's copy of
    // the metadata: each describes it as the cluster-wide value.
    let out = run(
        "python3",
        &[
            "broker_configs.py",
            &cluster.brokers[0].bootstrap(),
            "log.roll.jitter.ms",
            "60000",
            "0",
            "0,1,2",
        ],
    );
    for id in 0..3 {
        assert!(
            out.contains(&format!(
                "broker {id} log.roll.jitter.ms=60000 DYNAMIC_DEFAULT_BROKER_CONFIG\n"
            )),
            "{out}"
        );
    }

    // Keyed records through the whole cluster: each key stays in one partition, in order.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let keys = 12;
    let per_key = 50;
    for sequence in 0..per_key {
        for key in 0..keys {
            let (key, value) = (format!("key-{key}"), format!("{sequence}"));
            producer
                .send(BaseRecord::to("spread").key(&key).payload(&value))
                .unwrap();
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.in_flight_count(), 0);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "spread-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let ends = assign_from_beginning(&consumer, "spread", 6);
    assert_eq!(ends.values().sum::<i64>(), keys * per_key);
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.values().map(Vec::len).sum::<usize>() < (keys * per_key) as usize {
        assert!(Instant::now() < deadline, "read {seen:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let value: u32 = std::str::from_utf8(message.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                *partition_of
                    .entry(key.clone())
                    .or_insert(message.partition()),
                message.partition()
            );
            seen.entry(key).or_default().push(value);
        }
    }
    for values in seen.values() {
        assert_eq!(*values, (0..per_key as u32).collect::<Vec<_>>());
    }
    let used: BTreeSet<i32> = partition_of.values().copied().collect();
    assert!(
        used.len() > 1,
        "every key in one partition: {partition_of:?}"
    );

    // A consumer group of three members over the cluster: each member gets partitions, and
    // together they read every record once.
    let members: Vec<BaseConsumer> = (0..3)
        .map(|_| {
            let member: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "spread-group")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .create()
                .unwrap();
            member.subscribe(&["spread"]).unwrap();
            member
        })
        .collect();
    // Distinct (partition, offset) pairs: a record redelivered after a rebalance counts once.
    let mut read: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut assigned = [false; 3];
    let deadline = Instant::now() + Duration::from_secs(90);
    while read.len() < (keys * per_key) as usize || !assigned.iter().all(|a| *a) {
        assert!(
            Instant::now() < deadline,
            "group read {}, assigned {assigned:?}",
            read.len()
        );
        for (index, member) in members.iter().enumerate() {
            if let Some(message) = member.poll(Duration::from_millis(50)) {
                let message = message.unwrap();
                read.insert((message.partition(), message.offset()));
            }
            if member.assignment().is_ok_and(|a| a.count() > 0) {
                assigned[index] = true;
            }
        }
    }
    drop(members);

    let out = run(
        "python3",
        &["python_clients.py", "kafka-python", &bootstrap],
    );
    assert!(
        out.contains("ok kafka-python: 60 records produced and read back"),
        "{out}"
    );
    let out = run(
        "node",
        &["kafkajs_client.js", "produce", &bootstrap, "js-cluster"],
    );
    let sent: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sent.len(), 24);
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "js-reader")
        .create()
        .unwrap();
    let ends = assign_from_beginning(&reader, "js-cluster", 3);
    assert_eq!(ends.values().sum::<i64>(), 24, "{ends:?}");
    let out = run(
        "node",
        &["kafkajs_client.js", "delete", &bootstrap, "js-cluster"],
    );
    assert!(out.contains("deleted"), "{out}");
}

/// Waits until `check` holds for broker `index`'s `/v1/status`, up to `limit`.
pub(super) fn wait_status(
    cluster: &ClusterProcesses,
    index: usize,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cluster.brokers[index].status().is_some_and(|s| check(&s)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Reads every record of `topic` (of `partitions` partitions) through `bootstrap`.
pub(super) fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .create()
        .unwrap();
    let ends = assign_from_beginning(&consumer, topic, partitions);
    let total = usize::try_from(ends.values().sum::<i64>()).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < total {
        assert!(Instant::now() < deadline, "read {values:?} of {total}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    values.sort();
    values
}

/// SIGKILL the controller: a surviving broker creates a topic within 10 s and nothing committed
/// before is lost; the controller that takes over fences the killed broker once its session
/// times out, and its single-replica partition goes offline (no leader). Restarted, the broker
/// rejoins, leads that partition again in a new leader epoch, and every acknowledged record of
/// it is read back.
#[test]
fn a_survivor_creates_a_topic_within_10s_of_the_controller_being_sigkilled() {
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
    let controller = cluster.controller(Duration::from_secs(30)).unwrap();

    // A second process claiming a live broker's node id is refused: on the same data directory
    // at once (the directory is locked), elsewhere by the controller, once the live broker's
    // session has kept going past the timeout the newcomer waits out.
    let claimed = &cluster.brokers[1];
    let (status, stderr) = fjord_tests::run_to_exit(
        &mut claimed.twin(&claimed.data_dir),
        Duration::from_secs(30),
    );
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by another broker process"),
        "{stderr}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let (status, stderr) =
        fjord_tests::run_to_exit(&mut claimed.twin(elsewhere.path()), Duration::from_secs(60));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("node id 1 is registered by another live broker process"),
        "{stderr}"
    );
    assert!(claimed.wait_ready(Duration::from_secs(1)));
    assert!(wait_status(&cluster, 0, Duration::from_secs(5), |s| {
        s["brokers"][1]["fenced"] == false
    }));

    create_topic(&cluster.brokers[0].bootstrap(), "before", 3);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    let sent: Vec<String> = (0..30).map(|i| format!("record-{i:02}")).collect();
    for (i, value) in sent.iter().enumerate() {
        let partition = i32::try_from(i % 3).unwrap();
        producer
            .send(
                BaseRecord::<(), _>::to("before")
                    .partition(partition)
                    .payload(value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    drop(producer);

    let killed = usize::try_from(controller).unwrap();
    cluster.brokers[killed].kill();
    let survivor = (killed + 1) % 3;
    let started = Instant::now();
    create_topic(&cluster.brokers[survivor].bootstrap(), "after", 3);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "creating took {took:?}");
    let new_controller = cluster.controller(Duration::from_secs(10)).unwrap();
    assert_ne!(new_controller, controller);
    // A new controller counts sessions from its takeover: right after it, a second process
    // claiming a survivor's node id is refused as before.
    let claimed = &cluster.brokers[survivor];
    let elsewhere = tempfile::tempdir().unwrap();
    let (status, stderr) =
        fjord_tests::run_to_exit(&mut claimed.twin(elsewhere.path()), Duration::from_secs(60));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("is registered by another live broker process"),
        "{stderr}"
    );
    // Placed before the killed broker was fenced, "after" may have a partition on it too.
    let (_, after) = leaders(&cluster.brokers[survivor].bootstrap(), "after");
    assert_eq!(after.len(), 3);
    // The killed broker's partitions ("before" has one, __consumer_offsets a third) have no
    // leader once it is fenced.
    assert!(
        wait_status(&cluster, survivor, Duration::from_secs(20), |s| {
            s["offline_partitions"].as_i64() > Some(1)
                && s["brokers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["id"] == controller && b["fenced"] == true)
        }),
        "{:?}",
        cluster.brokers[survivor].status()
    );

    cluster.brokers[killed].start();
    assert!(cluster.brokers[killed].wait_ready(Duration::from_secs(60)));
    assert!(
        wait_status(&cluster, killed, Duration::from_secs(20), |s| {
            s["offline_partitions"] == 0
        }),
        "{:?}",
        cluster.brokers[killed].status()
    );
    let (brokers, after) = leaders(&cluster.brokers[killed].bootstrap(), "after");
    assert_eq!(brokers, BTreeSet::from([0, 1, 2]));
    assert!(after.iter().all(|l| *l >= 0), "{after:?}");
    let (_, before) = leaders(&cluster.brokers[killed].bootstrap(), "before");
    assert!(
        before.contains(&controller),
        "led again by the restarted broker: {before:?}"
    );
    assert!(before.iter().all(|l| *l >= 0), "{before:?}");
    assert_eq!(read_all(&cluster.bootstrap(), "before", 3), sent);

    // A group coordinated by the restarted broker joins, reads and commits. Its
    // __consumer_offsets partitions moved to the others while it was away; it leads its
    // preferred ones again once it is back in their ISRs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let offsets_leaders = loop {
        let (_, now) = leaders(&cluster.brokers[killed].bootstrap(), "__consumer_offsets");
        if now.contains(&controller) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "broker {controller} leads no __consumer_offsets partition: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let partitions = i32::try_from(offsets_leaders.len()).unwrap();
    let group = (0..)
        .map(|i| format!("group-{i}"))
        .find(|g| {
            let partition = fjord_broker::coordinator::partition_for(g, partitions);
            offsets_leaders[usize::try_from(partition).unwrap()] == controller
        })
        .unwrap();
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    member.subscribe(&["before"]).unwrap();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < sent.len() {
        assert!(Instant::now() < deadline, "group {group} read {read}");
        if let Some(message) = member.poll(Duration::from_millis(200)) {
            message.unwrap();
            read += 1;
        }
    }
    member
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    drop(member);

    // Cut off from a majority of the voters (two of three SIGSTOPped), a broker stops reporting
    // ready within the session timeout, whether it is the controller (which still believes it
    // leads) or not; it is ready again once they return.
    let controller = usize::try_from(cluster.controller(Duration::from_secs(10)).unwrap()).unwrap();
    let follower = (controller + 1) % 3;
    for (alone, stopped) in [
        (controller, [follower, (controller + 2) % 3]),
        (follower, [controller, (controller + 2) % 3]),
    ] {
        for index in stopped {
            cluster.brokers[index].signal("STOP");
        }
        let broker = &cluster.brokers[alone];
        let deadline = Instant::now() + Duration::from_secs(15);
        while fjord_tests::admin_get(&broker.admin(), "/readyz")
            .is_some_and(|(code, _)| code == 200)
        {
            assert!(
                Instant::now() < deadline,
                "broker {alone} stayed ready alone"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = broker.status().unwrap();
        assert_eq!(status["caught_up"], false, "{status}");
        for index in stopped {
            cluster.brokers[index].signal("CONT");
        }
        assert!(broker.wait_ready(Duration::from_secs(30)), "broker {alone}");
    }
}

/// A voter started while the quorum has no majority is alive (`/livez`) but not ready (`/readyz`
/// 503) however long it waits, and reports ready once the other voters start.
#[test]
fn a_voter_without_a_majority_is_alive_but_not_ready() {
    let mut cluster = ClusterProcesses::prepare(&["a", "b", "c"], 3, &[]);
    cluster.brokers[0].start();
    let admin = cluster.brokers[0].admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fjord_tests::admin_get(&admin, "/livez").is_none() {
        assert!(Instant::now() < deadline, "/livez never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        assert_eq!(
            fjord_tests::admin_get(&admin, "/livez").map(|(code, _)| code),
            Some(200)
        );
        let (code, body) = fjord_tests::admin_get(&admin, "/readyz").unwrap();
        assert_eq!(code, 503, "{body}");
        std::thread::sleep(Duration::from_millis(150));
    }
    cluster.brokers[1].start();
    cluster.brokers[2].start();
    for broker in &cluster.brokers {
        assert!(
            broker.wait_ready(Duration::from_secs(60)),
            "{}",
            broker.node_id
        );
    }
}

/// Counts the records whose delivery failed.
struct CountFailures(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl rdkafka::ClientContext for CountFailures {}

impl rdkafka::producer::ProducerContext for CountFailures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            eprintln!("delivery failed: {error}");
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Five brokers, three of them voters. A librdkafka producer keeps writing while a broker is
/// stopped with SIGTERM and started again: not one record fails (its partition is unavailable
/// for a while, which the client retries), and every record is read back once. Then one voter and
/// both non-voters are SIGKILLed at once: the two voters left still form the quorum, fence the
/// lost brokers, and take a new topic and its records.
#[test]
fn five_brokers_keep_working_through_a_restart_and_the_loss_of_three() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let mut cluster = ClusterProcesses::start(
        &["a", "b", "c", "a", "b"],
        3,
        &[
            "--broker-session-timeout-ms",
            "3000",
            "--broker-heartbeat-interval-ms",
            "500",
        ],
    );
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, "five", 5);
    let (brokers, leaders_five) = leaders(&bootstrap, "five");
    assert_eq!(brokers.len(), 5);
    assert_eq!(
        leaders_five.iter().copied().collect::<BTreeSet<_>>().len(),
        5,
        "one leader each: {leaders_five:?}"
    );

    // A producer writing throughout a SIGTERM and restart of broker 4 (a non-voter).
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, failed, bootstrap) = (Arc::clone(&stop), Arc::clone(&failed), bootstrap.clone());
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            // Idempotent: a retry of a request whose answer was lost (broker 4 stops with
            // requests in flight) is not written twice.
            let producer: BaseProducer<CountFailures> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .create_with_context(CountFailures(Arc::clone(&failed)))
                .unwrap();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("{sent:06}");
                let partition = i32::try_from(sent % 5).unwrap();
                if producer
                    .send(
                        BaseRecord::<(), _>::to("five")
                            .partition(partition)
                            .payload(&value),
                    )
                    .is_ok()
                {
                    sent += 1;
                    progress.store(sent, Ordering::Relaxed);
                }
                producer.poll(Duration::from_millis(5));
            }
            // Every record is delivered, or its failure counted, before the producer goes.
            producer.flush(Duration::from_secs(60)).unwrap();
            assert_eq!(producer.in_flight_count(), 0);
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    cluster.brokers[4].signal("TERM");
    cluster.brokers[4].wait_exit(Duration::from_secs(30));
    let down_at = progress.load(Ordering::Relaxed);
    // It stopped through a controlled shutdown, not by missing heartbeats: the controller holds
    // it shut down and leading nothing (its partition of "five" has no leader until it returns).
    let controller = usize::try_from(cluster.controller(Duration::from_secs(10)).unwrap()).unwrap();
    assert!(
        wait_status(&cluster, controller, Duration::from_secs(2), |s| {
            s["brokers"][4]["shut_down"] == true
                && s["brokers"][4]["fenced"] == true
                && s["leaders_per_broker"]["4"] == 0
        }),
        "{:?}",
        cluster.brokers[controller].status()
    );
    std::thread::sleep(Duration::from_millis(500));
    // The fault landed: records for broker 4's partition were sent while it was down.
    let sent_while_down = progress.load(Ordering::Relaxed) - down_at;
    assert!(
        sent_while_down >= 25,
        "only {sent_while_down} sent while down"
    );
    cluster.brokers[4].start();
    assert!(cluster.brokers[4].wait_ready(Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "records failed");
    let read = read_all(&bootstrap, "five", 5);
    assert_eq!(read.len(), sent, "every record once");
    let distinct: BTreeSet<&String> = read.iter().collect();
    assert_eq!(distinct.len(), sent, "no record twice");

    // Lose one voter that is not the controller, and both non-voters.
    let controller = cluster.controller(Duration::from_secs(10)).unwrap();
    let voter = (0..3).find(|v| *v != controller).unwrap();
    for index in [usize::try_from(voter).unwrap(), 3, 4] {
        cluster.brokers[index].kill();
    }
    let alive = (0..3).find(|i| *i != voter && *i != controller).unwrap();
    let alive = usize::try_from(alive).unwrap();
    assert!(
        wait_status(&cluster, alive, Duration::from_secs(20), |s| {
            s["brokers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["fenced"] == true)
                .count()
                == 3
        }),
        "{:?}",
        cluster.brokers[alive].status()
    );
    let survivors = format!(
        "{},{}",
        cluster.brokers[alive].bootstrap(),
        cluster.brokers[usize::try_from(controller).unwrap()].bootstrap()
    );
    create_topic(&cluster.brokers[alive].bootstrap(), "survives", 2);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &survivors)
        .set("acks", "all")
        .create()
        .unwrap();
    let values: Vec<String> = (0..20).map(|i| format!("kept-{i:02}")).collect();
    for value in &values {
        producer
            .send(BaseRecord::<(), _>::to("survives").payload(value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.in_flight_count(), 0);
    assert_eq!(read_all(&survivors, "survives", 2), values);
}
