//! Producer and consumer workloads on librdkafka (the `rdkafka` crate): throughput, produce
//! acknowledgement latency and end-to-end latency in HDR histograms. Every librdkafka setting
//! that changes the results is set here from the workload, never left to a default.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// How a producer workload runs.
#[derive(Debug, Clone)]
pub struct ProduceSpec {
    pub record_bytes: usize,
    pub partitions: i32,
    /// "all", "1" or "0".
    pub acks: &'static str,
    pub linger_ms: u32,
    /// librdkafka `batch.size`.
    pub batch_bytes: u32,
    /// "none", "gzip", "snappy", "lz4" or "zstd".
    pub compression: &'static str,
    pub producers: usize,
    /// How long producers send; with `count`, the longest they may take.
    pub duration: Duration,
    /// Records to send over all producers, instead of sending until `duration` ends.
    pub count: Option<u64>,
    /// Records per second over all producers; `None`: as fast as possible.
    pub rate: Option<f64>,
}

impl ProduceSpec {
    /// Settings for sending a few warm-up records.
    fn warm_up() -> Self {
        Self {
            record_bytes: 8,
            partitions: 1,
            acks: "all",
            linger_ms: 0,
            batch_bytes: 1_000_000,
            compression: "none",
            producers: 1,
            duration: Duration::from_secs(30),
            count: Some(1),
            rate: None,
        }
    }
}

#[derive(Debug)]
pub struct ProduceResult {
    pub records: u64,
    pub bytes: u64,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Acknowledgement latency; at a fixed rate measured from the scheduled send time, so a
    /// stalled broker counts for every record it delayed (no coordinated omission).
    pub ack_latency: Histogram<u64>,
    pub failed: u64,
}

impl ProduceResult {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

struct Delivery {
    epoch: Instant,
    latency: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

struct DeliveryContext(Arc<Delivery>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    /// Nanoseconds since the epoch at which the record was due to be sent.
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, due: Self::DeliveryOpaque) {
        match result {
            Ok(_) if *due == WARM_UP => {}
            Ok(_) => {
                let now = self.0.epoch.elapsed().as_nanos() as u64;
                let micros = now.saturating_sub(*due) / 1000;
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut histogram) = self.0.latency.lock() {
                    let _ = histogram.record(micros.max(1));
                }
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Client settings a listener needs besides its address (TLS: the protocol and the CA), by
/// bootstrap address; registered by the target that starts the listener.
static CLIENT_SETTINGS: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Clients of `bootstrap` set `settings` too (until [`forget_client_settings`]).
pub fn register_client_settings(bootstrap: &str, settings: Vec<(String, String)>) {
    CLIENT_SETTINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(bootstrap.to_owned(), settings);
}

pub fn forget_client_settings(bootstrap: &str) {
    CLIENT_SETTINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(bootstrap);
}

/// A client configuration for `bootstrap`, with what its listener needs.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let settings = CLIENT_SETTINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (key, value) in settings.get(bootstrap).into_iter().flatten() {
        config.set(key, value);
    }
    config
}

pub fn producer_config(bootstrap: &str, spec: &ProduceSpec) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("acks", spec.acks)
        .set("linger.ms", spec.linger_ms.to_string())
        .set("batch.size", spec.batch_bytes.to_string())
        .set("compression.type", spec.compression)
        // Pinned so that results do not depend on librdkafka's defaults changing.
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "5")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.max.bytes", "1000000")
        .set("socket.nagle.disable", "true")
        .set("message.timeout.ms", "60000");
    config
}

/// The "due" time of warm-up records: neither counted nor timed.
pub const WARM_UP: u64 = u64::MAX;

/// The record value: 8 bytes of "due" time (ns since `epoch`) then filler up to `record_bytes`.
fn value(record_bytes: usize, due_ns: u64) -> Vec<u8> {
    let mut value = vec![b'x'; record_bytes.max(8)];
    value[..8].copy_from_slice(&due_ns.to_be_bytes());
    value
}

/// Runs `spec` against `topic`; `epoch` is the clock record values carry (share it with an
/// end-to-end consumer).
pub fn produce(bootstrap: &str, topic: &str, spec: &ProduceSpec, epoch: Instant) -> ProduceResult {
    let delivery = Arc::new(Delivery {
        epoch,
        latency: Mutex::new(latency_histogram()),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let per_producer_rate = spec.rate.map(|r| r / spec.producers as f64);
    let per_producer_count = spec.count.map(|c| c.div_ceil(spec.producers as u64));
    // Every producer connects and sends a warm-up record first; the clock starts when all have.
    let ready = Arc::new(std::sync::Barrier::new(spec.producers + 1));
    let threads: Vec<_> = (0..spec.producers)
        .map(|index| {
            let delivery = Arc::clone(&delivery);
            let ready = Arc::clone(&ready);
            let spec = spec.clone();
            let bootstrap = bootstrap.to_owned();
            let topic = topic.to_owned();
            std::thread::spawn(move || {
                let producer: BaseProducer<DeliveryContext> = producer_config(&bootstrap, &spec)
                    .create_with_context(DeliveryContext(Arc::clone(&delivery)))
                    .expect("creating a producer");
                let warm_up = value(spec.record_bytes, WARM_UP);
                for partition in 0..spec.partitions.max(1) {
                    let record =
                        BaseRecord::<(), _, _>::with_opaque_to(topic.as_str(), Box::new(WARM_UP))
                            .payload(&warm_up)
                            .partition(partition);
                    let _ = producer.send(record);
                }
                let _ = producer.flush(Duration::from_secs(30));
                ready.wait();
                let started = Instant::now();
                let deadline = started + spec.duration;
                let mut sent: u64 = 0;
                loop {
                    let now = Instant::now();
                    if now >= deadline || per_producer_count.is_some_and(|c| sent >= c) {
                        break;
                    }
                    let due = match per_producer_rate {
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(sent as f64 / rate);
                            if due > now {
                                producer.poll(Duration::ZERO);
                                std::thread::sleep((due - now).min(Duration::from_millis(1)));
                                continue;
                            }
                            due
                        }
                        None => now,
                    };
                    let due_ns = due.duration_since(epoch).as_nanos() as u64;
                    let payload = value(spec.record_bytes, due_ns);
                    let key = format!("{index}-{sent}");
                    let mut record = BaseRecord::with_opaque_to(topic.as_str(), Box::new(due_ns))
                        .key(&key)
                        .payload(&payload)
                        .partition((sent % spec.partitions.max(1) as u64) as i32);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((_, returned)) => {
                                record = returned;
                                producer.poll(Duration::from_millis(1));
                            }
                        }
                    }
                    sent += 1;
                    if sent.is_multiple_of(64) {
                        producer.poll(Duration::ZERO);
                    }
                }
                let _ = producer.flush(Duration::from_secs(60));
            })
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = started.elapsed();
    let records = delivery.acked.load(Ordering::Relaxed);
    let ack_latency = delivery
        .latency
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| latency_histogram());
    ProduceResult {
        records,
        bytes: records * spec.record_bytes as u64,
        elapsed,
        ack_latency,
        failed: delivery.failed.load(Ordering::Relaxed),
    }
}

pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", "fjord-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Pinned fetch behaviour.
        .set("fetch.min.bytes", "1")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "1048576")
        .set("queued.max.messages.kbytes", "65536")
        .set("check.crcs", "false")
        .set("socket.nagle.disable", "true");
    config
}

#[derive(Debug)]
pub struct ConsumeResult {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl ConsumeResult {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Reads `expected` records of `topic` from the beginning with `consumers` consumers sharing its
/// partitions, in `rack` (`client.rack`) if given; stops at `limit` whatever was read.
pub fn consume_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    consumers: usize,
    expected: u64,
    limit: Duration,
    rack: Option<&str>,
) -> ConsumeResult {
    let records = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..consumers.max(1))
        .map(|index| {
            let records = Arc::clone(&records);
            let bytes = Arc::clone(&bytes);
            let bootstrap = bootstrap.to_owned();
            let topic = topic.to_owned();
            let rack = rack.map(str::to_owned);
            std::thread::spawn(move || {
                let mut config = consumer_config(&bootstrap);
                if let Some(rack) = rack {
                    config.set("client.rack", rack);
                }
                let consumer: BaseConsumer = config.create().expect("creating a consumer");
                let mut assignment = rdkafka::TopicPartitionList::new();
                for partition in (0..partitions).filter(|p| *p as usize % consumers == index) {
                    let _ = assignment.add_partition_offset(
                        &topic,
                        partition,
                        rdkafka::Offset::Beginning,
                    );
                }
                consumer.assign(&assignment).expect("assigning partitions");
                while records.load(Ordering::Relaxed) < expected && started.elapsed() < limit {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                        records.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(
                            message.payload().map_or(0, <[u8]>::len) as u64,
                            Ordering::Relaxed,
                        );
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    ConsumeResult {
        records: records.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// A consumer reading new records of `topic` as they arrive and recording, for each, the time
/// from its due send time (in its value) to its arrival.
#[derive(Debug)]
pub struct EndToEnd {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Histogram<u64>>,
}

impl EndToEnd {
    /// Starts reading a new, empty topic from its beginning (an `End` position would be
    /// resolved lazily, after the first records arrived, and miss them); returns once a warm-up
    /// record has gone all the way through, so connection set-up is not measured.
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, epoch: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let warm = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer = consumer_config(bootstrap)
            .create()
            .expect("creating a consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        for partition in 0..partitions {
            let _ = assignment.add_partition_offset(topic, partition, rdkafka::Offset::Beginning);
        }
        consumer.assign(&assignment).expect("assigning partitions");
        let thread = {
            let stop = Arc::clone(&stop);
            let seen = Arc::clone(&seen);
            let warm = Arc::clone(&warm);
            std::thread::spawn(move || {
                let mut histogram = latency_histogram();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        let now = epoch.elapsed().as_nanos() as u64;
                        if let Some(due) = message.payload().and_then(|p| p.get(..8)) {
                            let due = u64::from_be_bytes(due.try_into().unwrap_or([0; 8]));
                            if due == WARM_UP {
                                warm.store(true, Ordering::Relaxed);
                                continue;
                            }
                            let _ = histogram.record((now.saturating_sub(due) / 1000).max(1));
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                histogram
            })
        };
        let producer: BaseProducer = producer_config(bootstrap, &ProduceSpec::warm_up())
            .create()
            .expect("creating a producer");
        let payload = value(8, WARM_UP);
        for partition in 0..partitions {
            let _ = producer.send(
                BaseRecord::<(), [u8]>::to(topic)
                    .payload(&payload[..])
                    .partition(partition),
            );
        }
        let _ = producer.flush(Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !warm.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { stop, seen, thread }
    }

    /// Waits until `count` records arrived (or `limit` passed) and returns their latencies.
    pub fn finish(self, count: u64, limit: Duration) -> Histogram<u64> {
        let deadline = Instant::now() + limit;
        while self.seen.load(Ordering::Relaxed) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| latency_histogram())
    }
}
