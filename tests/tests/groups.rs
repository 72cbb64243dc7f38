//! Consumer groups with real clients against the real broker binary: for librdkafka (the `rdkafka`
//! crate), confluent-kafka, kafka-python, aiokafka and kafkajs, three consumer processes share a
//! 6-partition topic without overlap; a SIGKILLed member's partitions move to the others and no
//! record is skipped; after the group stops and the broker is SIGKILLed and restarted, the group
//! resumes from its committed offsets. Each worker prints JSON lines (see
//! `tests/clients/group_consumer.py`), which this harness reads live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_tests::{BrokerProcess, KillOnDrop, require_tool};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const SESSION_TIMEOUT_MS: u64 = 6_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Rdkafka,
    Confluent,
    KafkaPython,
    Aiokafka,
    Kafkajs,
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

fn worker_command(client: Client) -> Command {
    match client {
        Client::Rdkafka => Command::new(env!("CARGO_BIN_EXE_group-consumer")),
        Client::Kafkajs => {
            let mut command = Command::new(require_tool("node"));
            command.arg(clients_dir().join("kafkajs_group_consumer.js"));
            command
        }
        python => {
            let mut command = Command::new(require_tool("python3"));
            command
                .arg(clients_dir().join("group_consumer.py"))
                .arg("--client")
                .arg(match python {
                    Client::Confluent => "confluent",
                    Client::KafkaPython => "kafka-python",
                    _ => "aiokafka",
                });
            command
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    assignments: Vec<Vec<i32>>,
    /// (partition, offset, value)
    records: Vec<(i32, i64, String)>,
    committed: BTreeMap<i32, i64>,
    started: bool,
    closed: bool,
}

/// One consumer process and what it has printed so far.
struct Worker {
    name: String,
    child: KillOnDrop,
    seen: Arc<Mutex<Seen>>,
}

impl Worker {
    fn spawn(client: Client, name: &str, bootstrap: &str, group: &str, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("fjord-group-{group}-{name}.stderr"));
        let mut child = worker_command(client)
            .args(["--bootstrap", bootstrap, "--group", group, "--topic", TOPIC])
            .args(if extra.contains(&"--session-timeout-ms") {
                vec![]
            } else {
                vec![
                    "--session-timeout-ms".to_owned(),
                    SESSION_TIMEOUT_MS.to_string(),
                ]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting a group worker");
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let mut seen = sink.lock().unwrap();
                match event["event"].as_str() {
                    Some("started") => seen.started = true,
                    Some("closed") => seen.closed = true,
                    Some("assigned") => {
                        let partitions = event["partitions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_i64().unwrap() as i32)
                            .collect();
                        seen.assignments.push(partitions);
                    }
                    Some("record") => seen.records.push((
                        event["partition"].as_i64().unwrap() as i32,
                        event["offset"].as_i64().unwrap(),
                        event["value"].as_str().unwrap_or_default().to_owned(),
                    )),
                    Some("committed") => {
                        for (partition, offset) in event["offsets"].as_object().unwrap() {
                            let partition: i32 = partition.parse().unwrap();
                            seen.committed.insert(partition, offset.as_i64().unwrap());
                        }
                    }
                    _ => {}
                }
            }
        });
        Self {
            name: name.to_owned(),
            child: KillOnDrop(child),
            seen,
        }
    }

    fn assignment(&self) -> Vec<i32> {
        self.seen
            .lock()
            .unwrap()
            .assignments
            .last()
            .cloned()
            .unwrap_or_default()
    }

    fn assignments(&self) -> Vec<Vec<i32>> {
        self.seen.lock().unwrap().assignments.clone()
    }

    fn values(&self) -> BTreeSet<String> {
        let seen = self.seen.lock().unwrap();
        seen.records.iter().map(|(_, _, v)| v.clone()).collect()
    }

    fn committed(&self) -> BTreeMap<i32, i64> {
        self.seen.lock().unwrap().committed.clone()
    }

    /// Values of the records whose processing this worker committed.
    fn committed_values(&self) -> BTreeSet<String> {
        let seen = self.seen.lock().unwrap();
        seen.records
            .iter()
            .filter(|(p, o, _)| seen.committed.get(p).is_some_and(|next| o < next))
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    fn records(&self) -> Vec<(i32, i64, String)> {
        self.seen.lock().unwrap().records.clone()
    }

    /// SIGTERM: the worker commits, leaves the group and exits 0.
    fn terminate(mut self) {
        let pid = self.child.0.id().to_string();
        Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The reader thread may still be draining the last lines.
        wait_until("the closed line", Duration::from_secs(5), || {
            self.seen.lock().unwrap().closed
        });
    }

    fn kill(mut self) {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `count` keyed records "<tag>-<i>" with acks=all; returns their values.
fn produce(bootstrap: &str, tag: &str, count: usize) -> BTreeSet<String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut values = BTreeSet::new();
    for i in 0..count {
        let key = format!("key-{}", i % 97);
        let value = format!("{tag}-{i}");
        loop {
            match producer.send(BaseRecord::to(TOPIC).key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        values.insert(value);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    values
}

fn create_topic(bootstrap: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

fn start_broker(dir: &std::path::Path) -> BrokerProcess {
    BrokerProcess::start(
        dir,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--offsets-topic-partitions",
            "5",
            "--group-initial-rebalance-delay-ms",
            "1000",
        ],
    )
}

/// The assignments are disjoint, cover every partition, and every worker has some.
fn shares_all_partitions(workers: &[&Worker]) -> bool {
    let mut all = Vec::new();
    for worker in workers {
        let assignment = worker.assignment();
        if assignment.is_empty() {
            return false;
        }
        all.extend(assignment);
    }
    all.sort_unstable();
    all == (0..PARTITIONS).collect::<Vec<_>>()
}

fn union(workers: &[&Worker], part: impl Fn(&Worker) -> BTreeSet<String>) -> BTreeSet<String> {
    workers.iter().flat_map(|w| part(w)).collect()
}

fn group_scenario(client: Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap);
    let group = format!("{client:?}-group").to_lowercase();

    // Three members share the six partitions.
    let first = produce(&bootstrap, "first", 600);
    let workers: Vec<Worker> = ["a", "b", "c"]
        .iter()
        .map(|name| Worker::spawn(client, name, &bootstrap, &group, &[]))
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();
    wait_until(
        "three members sharing six partitions",
        Duration::from_secs(60),
        || shares_all_partitions(&all),
    );
    wait_until("the first 600 records", Duration::from_secs(60), || {
        union(&all, Worker::values).is_superset(&first)
    });
    assert!(
        shares_all_partitions(&all),
        "assignments overlap: {:?}",
        all.iter().map(|w| w.assignment()).collect::<Vec<_>>()
    );
    wait_until(
        "commits of everything consumed",
        Duration::from_secs(30),
        || union(&all, Worker::committed_values).is_superset(&first),
    );

    // SIGKILL one member: the others take its partitions within the session timeout and
    // consume what arrives meanwhile; nothing is skipped.
    let mut workers = workers;
    let victim = workers.remove(0);
    let victim_partitions = victim.assignment();
    let victim_committed = victim.committed_values();
    victim.kill();
    let killed_at = Instant::now();
    let second = produce(&bootstrap, "second", 600);
    let survivors: Vec<&Worker> = workers.iter().collect();
    wait_until("the survivors taking over", Duration::from_secs(60), || {
        shares_all_partitions(&survivors)
    });
    let takeover = killed_at.elapsed();
    eprintln!("{client:?}: partitions {victim_partitions:?} moved after {takeover:?}");
    assert!(
        takeover < Duration::from_millis(SESSION_TIMEOUT_MS + 10_000),
        "takeover took {takeover:?}"
    );
    wait_until("the second 600 records", Duration::from_secs(60), || {
        union(&survivors, Worker::values).is_superset(&second)
    });
    // At least once: everything the victim did not commit was consumed by a survivor.
    let mut processed = union(&survivors, Worker::values);
    processed.extend(victim_committed);
    let expected: BTreeSet<String> = first.union(&second).cloned().collect();
    let missing: Vec<&String> = expected.difference(&processed).take(5).collect();
    assert!(missing.is_empty(), "records skipped: {missing:?}");

    // Stop the group cleanly; everything is committed.
    wait_until(
        "commits of the second batch",
        Duration::from_secs(30),
        || union(&survivors, Worker::committed_values).is_superset(&second),
    );
    let mut committed = BTreeMap::new();
    for worker in &workers {
        for (partition, offset) in worker.committed() {
            let entry = committed.entry(partition).or_insert(offset);
            *entry = (*entry).max(offset);
        }
    }
    for worker in workers {
        worker.terminate();
    }

    // SIGKILL the broker and restart it; the group resumes from its committed offsets.
    broker.kill();
    broker.restart();
    let third = produce(&bootstrap, "third", 300);
    let workers: Vec<Worker> = ["d", "e", "f"]
        .iter()
        .map(|name| Worker::spawn(client, name, &bootstrap, &group, &[]))
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();
    wait_until(
        "the third 300 records after the restart",
        Duration::from_secs(90),
        || union(&all, Worker::values).is_superset(&third),
    );
    for worker in &all {
        for (partition, offset, value) in worker.records() {
            let from = committed.get(&partition).copied().unwrap_or(0);
            assert!(
                offset >= from,
                "{client:?} re-read {value} at {partition}/{offset}, below the committed {from}"
            );
        }
    }
    for worker in workers {
        worker.terminate();
    }
}

#[test]
fn rdkafka_group_shares_fails_over_and_resumes() {
    group_scenario(Client::Rdkafka);
}

#[test]
fn confluent_kafka_group_shares_fails_over_and_resumes() {
    group_scenario(Client::Confluent);
}

#[test]
fn kafka_python_group_shares_fails_over_and_resumes() {
    group_scenario(Client::KafkaPython);
}

#[test]
fn aiokafka_group_shares_fails_over_and_resumes() {
    group_scenario(Client::Aiokafka);
}

#[test]
fn kafkajs_group_shares_fails_over_and_resumes() {
    group_scenario(Client::Kafkajs);
}

#[test]
fn librdkafka_cooperative_sticky_rebalances_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap);
    let group = "cooperative";
    let cooperative = ["--assignor", "cooperative-sticky"];
    let a = Worker::spawn(Client::Rdkafka, "a", &bootstrap, group, &cooperative);
    let b = Worker::spawn(Client::Rdkafka, "b", &bootstrap, group, &cooperative);
    wait_until(
        "two members sharing six partitions",
        Duration::from_secs(60),
        || shares_all_partitions(&[&a, &b]),
    );
    let before = [a.assignments().len(), b.assignments().len()];
    let held = [a.assignment(), b.assignment()];
    let c = Worker::spawn(Client::Rdkafka, "c", &bootstrap, group, &cooperative);
    wait_until(
        "three members sharing six partitions",
        Duration::from_secs(60),
        || shares_all_partitions(&[&a, &b, &c]),
    );
    // Incremental: the first two only ever gave partitions up, never all of them at once (an
    // eager rebalance revokes everything first).
    for ((worker, count), held) in [&a, &b].iter().zip(before).zip(held) {
        let history = worker.assignments();
        for assignment in &history[count..] {
            assert!(
                !assignment.is_empty(),
                "{} lost every partition: {history:?}",
                worker.name
            );
            assert!(
                assignment.iter().all(|p| held.contains(p)),
                "{} was given a partition it did not hold: {history:?}",
                worker.name
            );
        }
    }
    for worker in [a, b, c] {
        worker.terminate();
    }
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap);
    let group = "static";
    let args =
        |instance: &'static str| ["--instance-id", instance, "--session-timeout-ms", "30000"];
    let one = Worker::spawn(Client::Rdkafka, "one", &bootstrap, group, &args("one"));
    let two = Worker::spawn(Client::Rdkafka, "two", &bootstrap, group, &args("two"));
    wait_until(
        "two static members sharing six partitions",
        Duration::from_secs(60),
        || shares_all_partitions(&[&one, &two]),
    );
    let one_history = one.assignments();
    let two_partitions = two.assignment();
    two.kill();
    let two = Worker::spawn(
        Client::Rdkafka,
        "two-again",
        &bootstrap,
        group,
        &args("two"),
    );
    wait_until(
        "the restarted member's assignment",
        Duration::from_secs(30),
        || !two.assignment().is_empty(),
    );
    assert_eq!(
        two.assignment(),
        two_partitions,
        "it gets its partitions back"
    );
    // The other member saw no rebalance at all.
    let values = produce(&bootstrap, "after", 120);
    wait_until("records after the restart", Duration::from_secs(30), || {
        union(&[&one, &two], Worker::values).is_superset(&values)
    });
    assert_eq!(
        one.assignments(),
        one_history,
        "the other member was not disturbed"
    );
    for worker in [one, two] {
        worker.terminate();
    }
}

fn group_admin(bootstrap: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(require_tool("python3"))
        .arg(clients_dir().join("group_admin.py"))
        .args(args)
        .args(["--bootstrap", bootstrap])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "group_admin.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn confluent_kafka_admin_lists_describes_and_deletes_groups_and_lists_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap);
    let values = produce(&bootstrap, "admin", 60);
    let group = "administered";
    let workers = [
        Worker::spawn(Client::Rdkafka, "one", &bootstrap, group, &[]),
        Worker::spawn(Client::Rdkafka, "two", &bootstrap, group, &[]),
    ];
    let all: Vec<&Worker> = workers.iter().collect();
    wait_until(
        "two members sharing six partitions",
        Duration::from_secs(60),
        || shares_all_partitions(&all),
    );
    wait_until("every record committed", Duration::from_secs(60), || {
        union(&all, Worker::committed_values).is_superset(&values)
    });

    let listed = group_admin(&bootstrap, &["list"]);
    let ours = listed["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == group)
        .cloned()
        .unwrap_or_else(|| panic!("{group} not listed: {listed}"));
    assert_eq!(ours["state"], "STABLE", "{listed}");

    let described = group_admin(&bootstrap, &["describe", "--group", group]);
    assert_eq!(described["state"], "STABLE", "{described}");
    assert_eq!(described["protocol_type"], "consumer", "{described}");
    assert_eq!(described["assignor"], "range", "{described}");
    let members = described["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{described}");
    let mut assigned: Vec<i64> = Vec::new();
    for member in members {
        assert_eq!(member["client_id"], "rdkafka", "{described}");
        assert_eq!(member["host"], "/127.0.0.1", "{described}");
        for p in member["assignment"][TOPIC].as_array().unwrap() {
            assigned.push(p.as_i64().unwrap());
        }
    }
    assigned.sort_unstable();
    assert_eq!(assigned, (0..i64::from(PARTITIONS)).collect::<Vec<_>>());

    let offsets = group_admin(&bootstrap, &["offsets", "--group", group]);
    let total: i64 = offsets[TOPIC]
        .as_object()
        .unwrap()
        .values()
        .map(|o| o.as_i64().unwrap())
        .sum();
    assert_eq!(
        total, 60,
        "committed offsets add up to every record: {offsets}"
    );

    let refused = group_admin(&bootstrap, &["delete", "--group", group]);
    assert_eq!(refused["deleted"], false, "{refused}");
    assert_eq!(refused["error"]["name"], "NON_EMPTY_GROUP", "{refused}");

    for worker in workers {
        worker.terminate();
    }
    wait_until("the group to be empty", Duration::from_secs(30), || {
        let described = group_admin(&bootstrap, &["describe", "--group", group]);
        described["state"] == "EMPTY"
    });
    let deleted = group_admin(&bootstrap, &["delete", "--group", group]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let listed = group_admin(&bootstrap, &["list"]);
    assert!(
        listed["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["group"] != group),
        "{listed}"
    );
    let offsets = group_admin(&bootstrap, &["offsets", "--group", group]);
    assert_eq!(offsets, serde_json::json!({}), "no offsets left");
}
