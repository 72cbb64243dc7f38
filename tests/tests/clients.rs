//! Real Kafka clients against Fjord: the `rdkafka` crate (librdkafka, also idempotent), the
//! Python clients confluent-kafka, kafka-python and aiokafka (tests/clients/python_clients.py),
//! and kafkajs (tests/clients/kafkajs_client.js, read back with kcat). Each produces keyed records
//! with headers, timestamps, null and empty values to a multi-partition topic in every codec it
//! supports, and what is read back by partition must match: order, key to partition, keys, values,
//! headers and timestamps. librdkafka also reads a compacted topic back, and kafka-python's own
//! integration suite runs against Fjord. `scripts/install-test-deps.sh` installs the clients.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

// The multi-process cluster tests share this binary: one fewer test binary linking librdkafka.
#[path = "clients/cluster.rs"]
mod cluster;
#[path = "clients/coordinator.rs"]
mod coordinator;
#[path = "clients/faults.rs"]
mod faults;
#[path = "clients/operations.rs"]
mod operations;
#[path = "clients/replication.rs"]
mod replication;
#[path = "clients/security.rs"]
mod security;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fjord_tests::{TestBroker, assign_from_beginning, require_tool};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

const PARTITIONS: i32 = 3;

fn run(program: &str, args: &[&str]) -> String {
    fjord_tests::run_client(program, args)
}

fn python_client(client: &str) {
    let broker = TestBroker::start(|_| {});
    let out = run(
        "python3",
        &["python_clients.py", client, &broker.bootstrap()],
    );
    assert!(
        out.contains(&format!("ok {client}: 60 records produced and read back")),
        "{out}"
    );
}

#[test]
fn confluent_kafka_produces_consumes_and_administers() {
    python_client("confluent-kafka");
}

#[test]
fn kafka_python_produces_consumes_and_administers() {
    python_client("kafka-python");
}

#[test]
fn aiokafka_produces_consumes_and_administers() {
    python_client("aiokafka");
}

/// kafka-python's own integration suite (from its PyPI source package, in its external-broker
/// mode) against a broker started with the settings the suite's fixture gives Kafka; only the
/// tests in tests/kafka-python/expected-failures.txt may fail, each with its reason there, and
/// each of those must still fail (tests/kafka-python/run_suite.py).
#[test]
fn kafka_python_integration_suite_fails_only_where_expected() {
    let broker = TestBroker::start(|c| {
        c.node_id = 0;
        c.default_partitions = 4;
        c.coordinator.group_min_session_timeout_ms = 1000;
        c.coordinator.group_initial_rebalance_delay_ms = 0;
        c.coordinator.offsets_topic_partitions = 2;
    });
    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka-python");
    let sdist = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/kafka-python/kafka_python-3.0.12.tar.gz");
    assert!(
        sdist.is_file(),
        "{} is missing: run scripts/install-test-deps.sh (make deps)",
        sdist.display()
    );
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(require_tool("python3"))
        .arg(suite.join("run_suite.py"))
        .arg(&sdist)
        .arg(broker.bootstrap())
        .arg(work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            line.starts_with("kafka-python suite:")
                || line.starts_with("NEW FAILURE")
                || line.starts_with("FLAKY")
                || line.starts_with("NOW PASSES")
                || line.starts_with("NOT RUN")
                || line.starts_with("FAILED")
                || line.starts_with("ERROR")
        })
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        output.status.success(),
        "kafka-python's suite did not fail only where expected:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kafkajs_administers_and_produces_what_kcat_reads_back() {
    let broker = TestBroker::start(|_| {});
    let out = run(
        "node",
        &["kafkajs_client.js", "produce", &broker.bootstrap(), "js"],
    );
    let sent: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sent.len(), 24);
    let mut stored = HashMap::new();
    for partition in 0..PARTITIONS {
        let lines = run(
            "kcat",
            &[
                "-b",
                &broker.bootstrap(),
                "-C",
                "-t",
                "js",
                "-p",
                &partition.to_string(),
                "-o",
                "beginning",
                "-e",
                "-f",
                "%o|%k|%S|%s|%h|%T\\n",
            ],
        );
        for (expected_offset, line) in lines.lines().enumerate() {
            let fields: Vec<&str> = line.splitn(6, '|').collect();
            assert_eq!(
                fields[0].parse::<usize>().unwrap(),
                expected_offset,
                "partition {partition} offsets contiguous"
            );
            stored.insert(
                (partition as i64, fields[0].parse::<i64>().unwrap()),
                fields[1..]
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>(),
            );
        }
    }
    assert_eq!(stored.len(), sent.len());
    let mut partition_of_key = HashMap::new();
    for record in &sent {
        let place = (
            record["partition"].as_i64().unwrap(),
            record["offset"].as_i64().unwrap(),
        );
        let got = &stored[&place];
        let key = record["key"].as_str().unwrap();
        assert_eq!(got[0], key);
        match record["value"].as_str() {
            None => assert_eq!(got[1], "-1", "null value stays null"),
            Some(value) => assert_eq!(got[2], value),
        }
        let headers = record["headers"].as_object().unwrap();
        assert_eq!(
            got[3],
            format!(
                "codec={},index={}",
                headers["codec"].as_str().unwrap(),
                headers["index"].as_str().unwrap()
            )
        );
        assert_eq!(got[4], record["timestamp"].to_string());
        assert_eq!(
            *partition_of_key.entry(key.to_owned()).or_insert(place.0),
            place.0,
            "key {key} in one partition"
        );
    }
    assert!(
        run(
            "node",
            &["kafkajs_client.js", "delete", &broker.bootstrap(), "js"]
        )
        .contains("deleted")
    );
}

struct Positions;

impl ClientContext for Positions {}

impl ProducerContext for Positions {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let message = result
            .as_ref()
            .map_err(|(error, _)| error.to_string())
            .unwrap();
        DELIVERED
            .lock()
            .unwrap()
            .insert(*index, (message.partition(), message.offset()));
    }
}

static DELIVERED: std::sync::Mutex<BTreeMap<usize, (i32, i64)>> =
    std::sync::Mutex::new(BTreeMap::new());

struct Sent {
    key: String,
    value: Option<Vec<u8>>,
    header: String,
    timestamp: i64,
}

/// librdkafka through the rdkafka crate, plain and idempotent, in every codec.
#[test]
fn rdkafka_round_trips_keyed_records_in_every_codec() {
    let broker = TestBroker::start(|c| c.default_partitions = PARTITIONS);
    DELIVERED.lock().unwrap().clear();
    // Current timestamps: records far in the past would be due for deletion by retention.ms.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut sent = Vec::new();
    for idempotent in [false, true] {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let producer: BaseProducer<Positions> = ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap())
                .set("compression.type", codec)
                .set("enable.idempotence", idempotent.to_string())
                .set("linger.ms", "5")
                .create_with_context(Positions)
                .unwrap();
            for i in 0..10 {
                let index = sent.len();
                let record = Sent {
                    key: format!("key-{}", i % 4),
                    value: match i % 5 {
                        3 => None,
                        4 => Some(Vec::new()),
                        _ => Some(format!("{codec}-{idempotent}-{i}").into_bytes()),
                    },
                    header: format!("{codec}-{i}"),
                    timestamp: now_ms + index as i64,
                };
                let mut base = BaseRecord::with_opaque_to("rd", Box::new(index))
                    .key(&record.key)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: "h",
                        value: Some(&record.header),
                    }))
                    .timestamp(record.timestamp);
                if let Some(value) = &record.value {
                    base = base.payload(value);
                }
                producer.send(base).map_err(|(e, _)| e).unwrap();
                sent.push(record);
            }
            producer.flush(Duration::from_secs(30)).unwrap();
        }
    }
    let delivered = DELIVERED.lock().unwrap().clone();
    assert_eq!(delivered.len(), sent.len());

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "fjord-verify")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let ends = assign_from_beginning(&consumer, "rd", PARTITIONS);
    // (partition, offset) -> (key, value, header, timestamp)
    type Stored = (String, Option<Vec<u8>>, String, i64);
    let mut stored: HashMap<(i32, i64), Stored> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (stored.len() as i64) < ends.values().sum::<i64>() {
        if Instant::now() >= deadline {
            let mut have: Vec<(i32, i64)> = stored.keys().copied().collect();
            have.sort();
            panic!(
                "consuming timed out: {} of {ends:?}: {have:?}",
                stored.len()
            );
        }
        // Group coordination errors come through poll (no consumer groups yet); records still do.
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let header = m
                .headers()
                .map(|h| String::from_utf8(h.get(0).value.unwrap().to_vec()).unwrap())
                .unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            stored.insert(
                (m.partition(), m.offset()),
                (
                    key,
                    m.payload().map(<[u8]>::to_vec),
                    header,
                    m.timestamp().to_millis().unwrap(),
                ),
            );
        }
    }
    let mut partition_of_key = HashMap::new();
    for (index, record) in sent.iter().enumerate() {
        let place = delivered[&index];
        let got = &stored[&place];
        assert_eq!(got.0, record.key);
        assert_eq!(got.1, record.value, "record {index}");
        assert_eq!(got.2, record.header);
        assert_eq!(got.3, record.timestamp);
        assert_eq!(
            *partition_of_key.entry(&record.key).or_insert(place.0),
            place.0
        );
    }
}

/// librdkafka's admin client for `broker`, with a runtime to drive its calls.
fn admin_client(
    broker: &TestBroker,
) -> (tokio::runtime::Runtime, AdminClient<DefaultClientContext>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    (runtime, admin)
}

/// Creates `topics` through librdkafka's admin client; each must succeed.
fn create_topics(broker: &TestBroker, topics: &[NewTopic<'_>]) {
    let (runtime, admin) = admin_client(broker);
    let created = runtime
        .block_on(admin.create_topics(topics, &AdminOptions::new()))
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Delivery reports of a producer: offset or error, by send index.
struct Reports(std::sync::Mutex<BTreeMap<usize, Result<i64, KafkaError>>>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let report = result
            .as_ref()
            .map(|m| m.offset())
            .map_err(|(error, _)| error.clone());
        self.0.lock().unwrap().insert(*index, report);
    }
}

/// librdkafka on a compacted topic: overwrites in every codec are compacted by the broker's
/// cleaner (on its timer), a consumer reading from the beginning gets exactly the latest value
/// of every key at the offset it was delivered at, and a record without a key is refused.
#[test]
fn rdkafka_reads_a_compacted_topic_as_the_latest_value_of_every_key() {
    let broker = TestBroker::start(|c| c.log_cleaner_backoff_ms = 50);
    create_topics(
        &broker,
        &[NewTopic::new("table", 1, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact")
            .set("segment.bytes", "2048")
            .set("min.cleanable.dirty.ratio", "0.01")],
    );

    let mut delivered: BTreeMap<usize, Result<i64, KafkaError>> = BTreeMap::new();
    let mut sent: Vec<(Option<String>, String)> = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let producer: BaseProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("compression.type", codec)
            .set("linger.ms", "5")
            .set("message.send.max.retries", "0")
            .create_with_context(Reports(std::sync::Mutex::new(BTreeMap::new())))
            .unwrap();
        for i in 0..30 {
            let key = format!("key-{}", i % 7);
            let value = format!("{codec}-{i}");
            let index = sent.len();
            producer
                .send(
                    BaseRecord::with_opaque_to("table", Box::new(index))
                        .key(&key)
                        .payload(&value),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            sent.push((Some(key), value));
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        delivered.extend(std::mem::take(&mut *producer.context().0.lock().unwrap()));
    }
    // No key: refused (INVALID_RECORD), never stored.
    let keyless: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("message.send.max.retries", "0")
        .create_with_context(Reports(std::sync::Mutex::new(BTreeMap::new())))
        .unwrap();
    keyless
        .send(BaseRecord::<(), _, _>::with_opaque_to("table", Box::new(0)).payload("no key"))
        .map_err(|(e, _)| e)
        .unwrap();
    keyless.flush(Duration::from_secs(30)).unwrap();
    let refused = keyless.context().0.lock().unwrap()[&0].clone();
    assert!(refused.is_err(), "{refused:?}");
    // Fresh keys to fill the active segment, so every overwrite above is in a sealed one.
    let filler: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "0")
        .create_with_context(Reports(std::sync::Mutex::new(BTreeMap::new())))
        .unwrap();
    for i in 0..20 {
        let key = format!("fill-{i:02}");
        let value = "f".repeat(200);
        let index = sent.len();
        filler
            .send(
                BaseRecord::with_opaque_to("table", Box::new(index))
                    .key(&key)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        filler.flush(Duration::from_secs(30)).unwrap();
        sent.push((Some(key), value));
    }
    delivered.extend(std::mem::take(&mut *filler.context().0.lock().unwrap()));

    // key -> (offset, value) of its latest record, as delivered.
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for (index, (key, value)) in sent.iter().enumerate() {
        let offset = delivered[&index].clone().unwrap();
        let entry = latest
            .entry(key.clone().unwrap())
            .or_insert((offset, value.clone()));
        if offset >= entry.0 {
            *entry = (offset, value.clone());
        }
    }
    let expected: Vec<(i64, String, String)> = {
        let mut rows: Vec<_> = latest
            .into_iter()
            .map(|(key, (offset, value))| (offset, key, value))
            .collect();
        rows.sort();
        rows
    };

    // The cleaner runs on its timer; read from the beginning until it has, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", "fjord-compacted")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let ends = assign_from_beginning(&consumer, "table", 1);
        let mut read = Vec::new();
        let mut next = 0;
        let read_deadline = Instant::now() + Duration::from_secs(30);
        while next < ends[&0] {
            assert!(
                Instant::now() < read_deadline,
                "reading timed out at {next}: {read:?}"
            );
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                read.push((m.offset(), key, value));
                next = m.offset() + 1;
            }
        }
        if read == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted in time:\n{read:?}\nexpected\n{expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// librdkafka sends 100 records in one batch to a compacted topic, every tenth without a key:
/// the broker names all ten in the response's record errors, so librdkafka fails exactly those
/// with INVALID_RECORD and the other 90 with its "another record in the batch was invalid"
/// error, as against Kafka; nothing is stored, and the same records with keys then are.
#[test]
fn rdkafka_sees_every_invalid_record_of_a_batch_named() {
    let broker = TestBroker::start(|_| {});
    create_topics(
        &broker,
        &[NewTopic::new("keyed", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact")],
    );
    let send = |keyless: bool| {
        let producer: BaseProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("linger.ms", "500")
            .set("batch.num.messages", "1000")
            .set("message.send.max.retries", "0")
            .create_with_context(Reports(std::sync::Mutex::new(BTreeMap::new())))
            .unwrap();
        for index in 0..100 {
            let key = (!keyless || index % 10 != 3).then(|| format!("key-{index}"));
            let value = format!("value-{index}");
            let mut record = BaseRecord::with_opaque_to("keyed", Box::new(index)).payload(&value);
            if let Some(key) = &key {
                record = record.key(key);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        std::mem::take(&mut *producer.context().0.lock().unwrap())
    };

    let outcomes = send(true);
    assert_eq!(outcomes.len(), 100);
    for (index, outcome) in &outcomes {
        let expected = if index % 10 == 3 {
            RDKafkaErrorCode::InvalidRecord
        } else {
            RDKafkaErrorCode::InvalidDifferentRecord
        };
        let code = outcome.as_ref().map_err(KafkaError::rdkafka_error_code);
        assert_eq!(code, Err(Some(expected)), "record {index}");
    }
    let stored = send(false);
    let offsets: Vec<i64> = (0..100).map(|i| stored[&i].clone().unwrap()).collect();
    assert_eq!(
        offsets,
        (0..100).collect::<Vec<i64>>(),
        "the refused batch stored nothing"
    );
}

/// librdkafka against the produce-side topic configs: with `min.insync.replicas=2` on one broker
/// an `acks=all` produce fails with NOT_ENOUGH_REPLICAS and an `acks=1` produce is stored; on a
/// topic with `compression.type=zstd`, librdkafka's lz4 batches are re-encoded by the broker and
/// a consumer reads every record back unchanged (broker/tests/protocol.rs checks the stored codec).
#[test]
fn rdkafka_meets_min_insync_replicas_and_reads_a_topic_the_broker_recompressed() {
    let broker = TestBroker::start(|_| {});
    create_topics(
        &broker,
        &[
            NewTopic::new("guarded", 1, TopicReplication::Fixed(1)).set("min.insync.replicas", "2"),
            NewTopic::new("squeezed", 1, TopicReplication::Fixed(1))
                .set("compression.type", "zstd"),
        ],
    );

    let produce = |topic: &str, acks: &str, codec: &str, values: &[String]| {
        let producer: BaseProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("acks", acks)
            .set("compression.type", codec)
            .set("linger.ms", "5")
            .set("message.send.max.retries", "0")
            .create_with_context(Reports(std::sync::Mutex::new(BTreeMap::new())))
            .unwrap();
        for (index, value) in values.iter().enumerate() {
            let key = format!("key-{index}");
            producer
                .send(
                    BaseRecord::with_opaque_to(topic, Box::new(index))
                        .key(&key)
                        .payload(value),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        std::mem::take(&mut *producer.context().0.lock().unwrap())
    };

    let refused = produce("guarded", "all", "none", &["lost".to_owned()]);
    let error = refused[&0].clone().unwrap_err().to_string();
    assert!(error.contains("Not enough in-sync replicas"), "{error}");
    let stored = produce("guarded", "1", "none", &["kept".to_owned()]);
    assert_eq!(
        stored[&0],
        Ok(0),
        "acks=1 is not subject to min.insync.replicas"
    );

    let values: Vec<String> = (0..50)
        .map(|i| format!("value-{i}-{}", "z".repeat(i)))
        .collect();
    let delivered = produce("squeezed", "all", "lz4", &values);
    assert!(delivered.values().all(Result::is_ok), "{delivered:?}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "fjord-recompressed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let ends = assign_from_beginning(&consumer, "squeezed", 1);
    assert_eq!(ends[&0], 50);
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < values.len() {
        assert!(Instant::now() < deadline, "read {} of 50", read.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            read.push((message.offset(), key, value));
        }
    }
    let expected: Vec<(i64, String, String)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, format!("key-{i}"), v.clone()))
        .collect();
    assert_eq!(read, expected);
}

/// rskafka produces with Produce v7 and fetches with Fetch v4 only: it round-trips its own zstd
/// records on a topic that leaves the codec to producers (Kafka serves those to every Fetch
/// version), and is refused UNSUPPORTED_COMPRESSION_TYPE on a topic with `compression.type=zstd`,
/// where the broker writes zstd batches that a consumer below Fetch v10 never asked for.
#[test]
fn rskafka_mixes_produce_v7_and_fetch_v4_with_zstd_as_against_kafka() {
    use rskafka::client::error::{Error, ProtocolError};
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;

    let broker = TestBroker::start(|_| {});
    create_topics(
        &broker,
        &[
            NewTopic::new("mixed", 1, TopicReplication::Fixed(1)),
            NewTopic::new("zstd-only", 1, TopicReplication::Fixed(1))
                .set("compression.type", "zstd"),
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![broker.bootstrap()])
            .build()
            .await
            .unwrap();
        let record = |i: usize| Record {
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(format!("value-{i}-{}", "z".repeat(i)).into_bytes()),
            headers: [("n".to_owned(), i.to_string().into_bytes())].into(),
            timestamp: rskafka::chrono::DateTime::from_timestamp_millis(
                1_700_000_000_000 + i as i64,
            )
            .unwrap(),
        };
        let sent: Vec<Record> = (0..20).map(record).collect();

        let mixed = client
            .partition_client("mixed", 0, UnknownTopicHandling::Error)
            .await
            .unwrap();
        let offsets = mixed
            .produce(sent.clone(), Compression::Zstd)
            .await
            .unwrap();
        assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
        let (read, high_watermark) = mixed.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(high_watermark, 20);
        let read: Vec<(i64, Record)> = read.into_iter().map(|r| (r.offset, r.record)).collect();
        let expected: Vec<(i64, Record)> = sent
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (i as i64, r))
            .collect();
        assert_eq!(read, expected);

        let zstd_only = client
            .partition_client("zstd-only", 0, UnknownTopicHandling::Error)
            .await
            .unwrap();
        zstd_only
            .produce(sent.clone(), Compression::Zstd)
            .await
            .unwrap();
        match zstd_only.fetch_records(0, 1..1_000_000, 1_000).await {
            Err(Error::ServerError {
                protocol_error: ProtocolError::UnsupportedCompressionType,
                ..
            }) => {}
            other => panic!("expected UNSUPPORTED_COMPRESSION_TYPE, got {other:?}"),
        }
    });
}

/// librdkafka's admin API with manual replica assignments: CreateTopics and CreatePartitions that
/// name this broker are placed as asked (partitions appear and take records); one that names an
/// unregistered broker, or a broker twice, gets INVALID_REPLICA_ASSIGNMENT and creates nothing.
#[test]
fn rdkafka_admin_creates_topics_and_partitions_with_manual_assignments() {
    let broker = TestBroker::start(|c| c.node_id = 7);
    let (runtime, admin) = admin_client(&broker);
    let options = AdminOptions::new();
    let error_of =
        |result: &Result<String, (String, RDKafkaErrorCode)>| result.as_ref().err().map(|e| e.1);

    let on_seven: &[&[i32]] = &[&[7], &[7]];
    let created = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                "placed",
                2,
                TopicReplication::Variable(on_seven),
            )],
            &options,
        ))
        .unwrap();
    assert_eq!(created, vec![Ok("placed".to_owned())]);
    let grown = runtime
        .block_on(
            admin.create_partitions(&[NewPartitions::new("placed", 3).assign(&[&[7]])], &options),
        )
        .unwrap();
    assert_eq!(grown, vec![Ok("placed".to_owned())]);

    let elsewhere: &[&[i32]] = &[&[7], &[8]];
    let twice: &[&[i32]] = &[&[7, 7]];
    let refused = runtime
        .block_on(admin.create_topics(
            &[
                NewTopic::new("nowhere", 2, TopicReplication::Variable(elsewhere)),
                NewTopic::new("twice", 1, TopicReplication::Variable(twice)),
            ],
            &options,
        ))
        .unwrap();
    assert_eq!(
        refused.iter().map(error_of).collect::<Vec<_>>(),
        vec![Some(RDKafkaErrorCode::InvalidReplicaAssignment); 2]
    );
    let refused = runtime
        .block_on(admin.create_partitions(
            &[NewPartitions::new("placed", 5).assign(&[&[7], &[9]])],
            &options,
        ))
        .unwrap();
    assert_eq!(
        error_of(&refused[0]),
        Some(RDKafkaErrorCode::InvalidReplicaAssignment)
    );

    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    // (topic, [(partition, leader, replicas)])
    type Placed = (String, Vec<(i32, i32, Vec<i32>)>);
    let mut topics: Vec<Placed> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() != "__consumer_offsets")
        .map(|t| {
            let partitions = t
                .partitions()
                .iter()
                .map(|p| (p.id(), p.leader(), p.replicas().to_vec()))
                .collect();
            (t.name().to_owned(), partitions)
        })
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        vec![(
            "placed".to_owned(),
            vec![(0, 7, vec![7]), (1, 7, vec![7]), (2, 7, vec![7])]
        )]
    );

    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create_with_context(Reports(std::sync::Mutex::new(BTreeMap::new())))
        .unwrap();
    for partition in 0..3 {
        let value = format!("to-{partition}");
        producer
            .send(
                BaseRecord::<(), _, _>::with_opaque_to("placed", Box::new(partition as usize))
                    .partition(partition)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let outcomes = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(
        outcomes,
        (0..3).map(|p| (p, Ok(0))).collect::<BTreeMap<_, _>>()
    );
}
