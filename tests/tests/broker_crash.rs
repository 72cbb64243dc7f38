//! SIGKILL through the protocol: an idempotent librdkafka producer (acks=all) writes continuously
//! while the test kills the broker process with SIGKILL and restarts it, again and again. A batch
//! the broker appended but did not answer before it died comes back as a retry with the same
//! sequence numbers and must not be appended twice.
//! Afterwards every acknowledged record is at the offset it was acknowledged with, exactly once,
//! and each partition holds the records in the order they were produced.
//! `FJORD_BROKER_CRASH_CYCLES` sets the cycle count (default 50).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_tests::{BrokerProcess, assign_from_beginning};
use rand::Rng;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 3;

#[derive(Default)]
struct Deliveries {
    /// sequence number -> (partition, offset)
    acked: Mutex<HashMap<u64, (i32, i64)>>,
    failed: Mutex<Vec<String>>,
}

struct Recorder(Arc<Deliveries>);

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let sequence: u64 = std::str::from_utf8(message.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                let previous = self
                    .0
                    .acked
                    .lock()
                    .unwrap()
                    .insert(sequence, (message.partition(), message.offset()));
                assert!(previous.is_none(), "record {sequence} acknowledged twice");
            }
            Err((error, _)) => self.0.failed.lock().unwrap().push(error.to_string()),
        }
    }
}

#[test]
fn acknowledged_records_survive_sigkill_exactly_once_in_order() {
    let cycles: usize = std::env::var("FJORD_BROKER_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let data = tempfile::tempdir().unwrap();
    let partitions = PARTITIONS.to_string();
    let mut broker = BrokerProcess::start(data.path(), &["--default-partitions", &partitions]);

    let deliveries = Arc::new(Deliveries::default());
    let producer: ThreadedProducer<Recorder> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "300000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .create_with_context(Recorder(Arc::clone(&deliveries)))
        .unwrap();

    let mut rng = rand::rng();
    let mut sent: u64 = 0;
    let started = Instant::now();
    for _ in 0..cycles {
        let until = Instant::now() + Duration::from_millis(rng.random_range(30..200));
        while Instant::now() < until {
            let payload = sent.to_string();
            let key = (sent % 16).to_string();
            match producer.send(BaseRecord::to(TOPIC).key(&key).payload(&payload)) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => panic!("send failed: {error}"),
            }
            if sent.is_multiple_of(64) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        broker.kill();
        broker.restart();
    }
    assert_eq!(
        producer.flush(Duration::from_secs(120)),
        Ok(()),
        "every record delivered"
    );
    let failed = deliveries.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    let acked = deliveries.acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, sent, "every sent record acknowledged");

    // Read every partition from the beginning to its end.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.partition.eof", "false")
        // librdkafka's assign() needs a group id; offsets are neither fetched nor committed.
        .set("group.id", "fjord-crash-verify")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let ends = assign_from_beginning(&consumer, TOPIC, PARTITIONS);
    let mut stored: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let consumed_to_end = |stored: &BTreeMap<i32, Vec<(i64, u64)>>| {
        ends.iter().all(|(partition, &end)| {
            stored
                .get(partition)
                .and_then(|r| r.last())
                .map_or(0, |&(offset, _)| offset + 1)
                >= end
        })
    };
    while !consumed_to_end(&stored) {
        assert!(Instant::now() < deadline, "consuming took too long");
        // Group coordination errors (no consumer groups yet) come through poll; records still do.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let sequence: u64 = std::str::from_utf8(message.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            stored
                .entry(message.partition())
                .or_default()
                .push((message.offset(), sequence));
        }
    }

    let mut seen: HashMap<u64, (i32, i64)> = HashMap::new();
    for (partition, records) in &stored {
        let mut last_sequence = None;
        for &(offset, sequence) in records {
            assert!(
                seen.insert(sequence, (*partition, offset)).is_none(),
                "record {sequence} stored twice"
            );
            assert!(
                last_sequence < Some(sequence),
                "partition {partition}: {sequence} after {last_sequence:?}"
            );
            last_sequence = Some(sequence);
        }
    }
    for (sequence, place) in &acked {
        assert_eq!(
            seen.get(sequence),
            Some(place),
            "acknowledged record {sequence} not where it was acknowledged"
        );
    }
    eprintln!(
        "{cycles} SIGKILL/restart cycles, {sent} records produced and acknowledged, all present once, in order, in {:.1?}",
        started.elapsed()
    );
}
