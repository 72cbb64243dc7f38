//! The benchmark: Fjord against a peer broker (Tansu) and against the machine's ceiling, in one
//! run, in order-balanced rounds. `make bench` builds Fjord in release mode and runs this; see
//! docs/benchmarks.md for what each workload does and the latest figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use fjord_tests::bench::ceiling;
use fjord_tests::bench::report::{Column, Figure, Results};
use fjord_tests::bench::target::{Binaries, Running, Target, cpu_seconds, written_bytes};
use fjord_tests::bench::workload::{
    ConsumeResult, EndToEnd, ProduceResult, ProduceSpec, consume_from_start, produce,
};

#[derive(Debug, Parser)]
struct Args {
    /// A smoke profile: two rounds, short runs, a small W3 topic (about two minutes).
    #[arg(long)]
    quick: bool,
    /// Rounds (each runs every workload on Fjord and the peer, the order alternating).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds each produce workload runs.
    #[arg(long)]
    seconds: Option<f64>,
    /// MiB the W3 topic holds.
    #[arg(long)]
    consume_mib: Option<u64>,
    /// Skip the peer-against-itself runs (the noise floor).
    #[arg(long)]
    no_self_comparison: bool,
    /// The fjord-broker binary (default: next to this one).
    #[arg(long)]
    fjord: Option<PathBuf>,
    /// Where brokers keep their data (on the disk being measured).
    #[arg(long, default_value = "target/bench-data")]
    data_dir: PathBuf,
    /// Only these workloads (comma-separated: W1,W1-TLS,W2,W3,W3-TLS,W4,W6,W7,W8; W5 comes with
    /// W1), e.g. to profile one.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only Fjord (no peer runs, no ratios), e.g. to profile the broker alone under `perf`.
    #[arg(long)]
    fjord_only: bool,
    /// Write the table into docs/benchmarks.md (between its markers) and the chart next to it.
    #[arg(long)]
    write_docs: bool,
}

struct Profile {
    rounds: usize,
    produce_for: Duration,
    consume_bytes: u64,
}

const KIB: usize = 1024;

fn w1() -> ProduceSpec {
    ProduceSpec {
        record_bytes: KIB,
        partitions: 1,
        acks: "all",
        linger_ms: 5,
        batch_bytes: 1_000_000,
        compression: "none",
        producers: 1,
        duration: Duration::from_secs(5),
        count: None,
        rate: None,
    }
}

fn w2() -> ProduceSpec {
    ProduceSpec {
        record_bytes: 100,
        partitions: 8,
        acks: "1",
        ..w1()
    }
}

/// W4: a fixed 20 MB/s of 1 KiB records, acks=all; a latency workload, so the producer lingers
/// 1 ms, not 5 (W1's 5 ms would be most of the latency measured).
fn w4() -> ProduceSpec {
    ProduceSpec {
        rate: Some(20e6 / KIB as f64),
        linger_ms: 1,
        ..w1()
    }
}

const W1_THROUGHPUT: Figure = Figure {
    workload: "W1",
    name: "produce 1 KiB, acks=all, 1 partition",
    unit: "MB/s",
    higher_is_better: true,
};
const W1_TLS_THROUGHPUT: Figure = Figure {
    workload: "W1-TLS",
    name: "W1 over TLS",
    unit: "MB/s",
    higher_is_better: true,
};
const W1_TLS_CPU: Figure = Figure {
    workload: "W1-TLS",
    name: "broker CPU during W1 over TLS",
    unit: "cores",
    higher_is_better: false,
};
const W3_TLS_THROUGHPUT: Figure = Figure {
    workload: "W3-TLS",
    name: "W3 over TLS",
    unit: "MB/s",
    higher_is_better: true,
};
const W1_CPU: Figure = Figure {
    workload: "W1",
    name: "broker CPU during W1",
    unit: "cores",
    higher_is_better: false,
};
const W1_CPU_PER_MB: Figure = Figure {
    workload: "W1",
    name: "broker CPU per MB produced",
    unit: "ms",
    higher_is_better: false,
};
const W3_CPU_PER_MB: Figure = Figure {
    workload: "W3",
    name: "broker CPU per MB consumed",
    unit: "ms",
    higher_is_better: false,
};
const W2_CPU: Figure = Figure {
    workload: "W2",
    name: "broker CPU during W2",
    unit: "cores",
    higher_is_better: false,
};
const W2_THROUGHPUT: Figure = Figure {
    workload: "W2",
    name: "produce 100 B, acks=1, 8 partitions",
    unit: "k records/s",
    higher_is_better: true,
};
const W3_THROUGHPUT: Figure = Figure {
    workload: "W3",
    name: "consume 1 KiB records from the start",
    unit: "MB/s",
    higher_is_better: true,
};
const W4_ACK_P99: Figure = Figure {
    workload: "W4",
    name: "produce acknowledgement p99 at 20 MB/s",
    unit: "ms",
    higher_is_better: false,
};
const W4_P50: Figure = Figure {
    workload: "W4",
    name: "end-to-end p50 at 20 MB/s",
    unit: "ms",
    higher_is_better: false,
};
const W4_P99: Figure = Figure {
    workload: "W4",
    name: "end-to-end p99 at 20 MB/s",
    unit: "ms",
    higher_is_better: false,
};
const W4_P999: Figure = Figure {
    workload: "W4",
    name: "end-to-end p99.9 at 20 MB/s",
    unit: "ms",
    higher_is_better: false,
};
const W5_IDLE: Figure = Figure {
    workload: "W5",
    name: "resident memory, idle",
    unit: "MiB",
    higher_is_better: false,
};
const W5_LOADED: Figure = Figure {
    workload: "W5",
    name: "resident memory, peak under W1",
    unit: "MiB",
    higher_is_better: false,
};

const W6_THROUGHPUT: Figure = Figure {
    workload: "W6",
    name: "produce 1 KiB, acks=all, 3 brokers, RF 3, min.insync.replicas 2",
    unit: "MB/s",
    higher_is_better: true,
};
const W6_CPU: Figure = Figure {
    workload: "W6",
    name: "CPU of the three brokers during W6",
    unit: "cores",
    higher_is_better: false,
};
const W6_DISK: Figure = Figure {
    workload: "W6",
    name: "disk writes of the three brokers during W6",
    unit: "MB/s",
    higher_is_better: true,
};
const W7_P50: Figure = Figure {
    workload: "W7",
    name: "end-to-end p50 at 20 MB/s, RF 3",
    unit: "ms",
    higher_is_better: false,
};
const W7_P99: Figure = Figure {
    workload: "W7",
    name: "end-to-end p99 at 20 MB/s, RF 3",
    unit: "ms",
    higher_is_better: false,
};
const W8_CROSS_RACK: Figure = Figure {
    workload: "W8",
    name: "consumer with client.rack, RF 3: record bytes from other racks",
    unit: "% of bytes read",
    higher_is_better: false,
};
const W8_THROUGHPUT: Figure = Figure {
    workload: "W8",
    name: "consume 1 KiB records from the replica in the consumer's rack",
    unit: "MB/s",
    higher_is_better: true,
};

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn mib(bytes: Option<u64>) -> f64 {
    bytes.map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0))
}

/// W1 and W5: produce as fast as possible while sampling the broker's resident memory.
fn run_w1(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    broker.create_topic("w1", 1);
    let idle = broker.resident_bytes();
    let pids = broker.pids();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let now: u64 = pids
                    .iter()
                    .map(|pid| fjord_tests::bench::target::resident_bytes(*pid).unwrap_or(0))
                    .sum();
                peak = peak.max(now);
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let spec = ProduceSpec {
        duration: profile.produce_for,
        ..w1()
    };
    let (result, broker_cores, client_cores) = cores(broker, || {
        produce(&broker.bootstrap, "w1", &spec, Instant::now())
    });
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    results.record(W1_THROUGHPUT, column, result.mb_per_s());
    results.record(W1_CPU, column, broker_cores);
    results.record(
        W1_CPU_PER_MB,
        column,
        broker_cores * 1000.0 / result.mb_per_s(),
    );
    results.record(W5_IDLE, column, mib(idle));
    results.record(W5_LOADED, column, mib(Some(peak)));
    eprintln!(
        "  W1 {:<22} {:>8.1} MB/s  rss idle {:.0} MiB, peak {:.0} MiB  cores: broker {broker_cores:.2}, clients {client_cores:.2}{}",
        broker.target.label(),
        result.mb_per_s(),
        mib(idle),
        mib(Some(peak)),
        failures(result.failed)
    );
}

/// CPU the broker (all its processes) and this process (the clients) used while `work` ran, in
/// cores.
fn cores<T>(broker: &Running, work: impl FnOnce() -> T) -> (T, f64, f64) {
    let own = std::process::id();
    let brokers = || -> Option<f64> { broker.pids().into_iter().map(cpu_seconds).sum() };
    let before = (brokers(), cpu_seconds(own));
    let started = Instant::now();
    let result = work();
    let elapsed = started.elapsed().as_secs_f64();
    let after = (brokers(), cpu_seconds(own));
    let used = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / elapsed,
        _ => f64::NAN,
    };
    (result, used(before.0, after.0), used(before.1, after.1))
}

fn failures(failed: u64) -> String {
    if failed == 0 {
        String::new()
    } else {
        format!("  ({failed} records failed)")
    }
}

fn run_w2(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    broker.create_topic("w2", 8);
    let spec = ProduceSpec {
        duration: profile.produce_for,
        ..w2()
    };
    let (result, broker_cores, client_cores) = cores(broker, || {
        produce(&broker.bootstrap, "w2", &spec, Instant::now())
    });
    results.record(W2_THROUGHPUT, column, result.records_per_s() / 1000.0);
    results.record(W2_CPU, column, broker_cores);
    eprintln!(
        "  W2 {:<22} {:>8.1} k records/s  cores: broker {broker_cores:.2}, clients {client_cores:.2}{}",
        broker.target.label(),
        result.records_per_s() / 1000.0,
        failures(result.failed)
    );
}

fn run_w3(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    let (read, broker_cores) = fill_and_consume(broker, profile);
    results.record(W3_THROUGHPUT, column, read.mb_per_s());
    results.record(
        W3_CPU_PER_MB,
        column,
        broker_cores * 1000.0 / read.mb_per_s(),
    );
}

/// W1 over TLS: throughput and broker CPU, beside W1's plaintext figures.
fn run_w1_tls(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    broker.create_topic("w1", 1);
    let spec = ProduceSpec {
        duration: profile.produce_for,
        ..w1()
    };
    let (result, broker_cores, client_cores) = cores(broker, || {
        produce(&broker.bootstrap, "w1", &spec, Instant::now())
    });
    results.record(W1_TLS_THROUGHPUT, column, result.mb_per_s());
    results.record(W1_TLS_CPU, column, broker_cores);
    eprintln!(
        "  W1 {:<22} {:>8.1} MB/s  cores: broker {broker_cores:.2}, clients {client_cores:.2}{}",
        broker.target.label(),
        result.mb_per_s(),
        failures(result.failed)
    );
}

/// W3 over TLS.
fn run_w3_tls(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    let (read, _) = fill_and_consume(broker, profile);
    results.record(W3_TLS_THROUGHPUT, column, read.mb_per_s());
}

/// W3's measurement: fills the topic (not timed), then reads it from the start; what was read
/// and the broker's cores while reading.
fn fill_and_consume(broker: &Running, profile: &Profile) -> (ConsumeResult, f64) {
    broker.create_topic("w3", 1);
    let count = profile.consume_bytes / KIB as u64;
    // Filling is not measured: large batches, leader acknowledgement.
    let fill = ProduceSpec {
        acks: "1",
        linger_ms: 20,
        duration: Duration::from_secs(600),
        count: Some(count),
        ..w1()
    };
    let filled = produce(&broker.bootstrap, "w3", &fill, Instant::now());
    let (read, broker_cores, _): (ConsumeResult, f64, f64) = cores(broker, || {
        consume_from_start(
            &broker.bootstrap,
            "w3",
            1,
            1,
            filled.records,
            Duration::from_secs(600),
            None,
        )
    });
    if read.records < filled.records {
        eprintln!(
            "  W3 {}: read {} of {} records",
            broker.target.label(),
            read.records,
            filled.records
        );
    }
    eprintln!(
        "  W3 {:<22} {:>8.1} MB/s ({} MiB)",
        broker.target.label(),
        read.mb_per_s(),
        read.bytes >> 20
    );
    (read, broker_cores)
}

/// W4's run on a new one-partition `topic`: what was produced, and each record's end-to-end
/// latency.
fn end_to_end(
    broker: &Running,
    profile: &Profile,
    topic: &str,
) -> (ProduceResult, hdrhistogram::Histogram<u64>) {
    broker.create_topic(topic, 1);
    let epoch = Instant::now();
    let consumer = EndToEnd::start(&broker.bootstrap, topic, 1, epoch);
    let spec = ProduceSpec {
        duration: profile.produce_for,
        ..w4()
    };
    let produced = produce(&broker.bootstrap, topic, &spec, epoch);
    let latency = consumer.finish(produced.records, Duration::from_secs(30));
    (produced, latency)
}

fn run_w4(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    let (produced, latency) = end_to_end(broker, profile, "w4");
    let (p50, p99, p999) = (
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.value_at_quantile(0.999)),
    );
    let ack_p99 = ms(produced.ack_latency.value_at_quantile(0.99));
    results.record(W4_ACK_P99, column, ack_p99);
    results.record(W4_P50, column, p50);
    results.record(W4_P99, column, p99);
    results.record(W4_P999, column, p999);
    eprintln!(
        "  W4 {:<22} p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  p99.9 {p999:>6.2} ms  ack p99 {ack_p99:>6.2} ms  ({} of {} records, {:.1} MB/s){}",
        broker.target.label(),
        latency.len(),
        produced.records,
        produced.mb_per_s(),
        failures(produced.failed)
    );
}

/// W6: W1 on three brokers, each record on all three (acknowledged once every in-sync replica has
/// it on disk).
fn run_w6(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    broker.create_topic("w6", 1);
    let spec = ProduceSpec {
        duration: profile.produce_for,
        ..w1()
    };
    let written = || -> Option<u64> { broker.pids().into_iter().map(written_bytes).sum() };
    let (before, started) = (written(), Instant::now());
    let (result, broker_cores, client_cores) = cores(broker, || {
        produce(&broker.bootstrap, "w6", &spec, Instant::now())
    });
    // Every replica writes every record to the one disk these brokers share.
    let disk = match (before, written()) {
        (Some(a), Some(b)) => (b - a) as f64 / started.elapsed().as_secs_f64() / 1e6,
        _ => f64::NAN,
    };
    results.record(W6_THROUGHPUT, column, result.mb_per_s());
    results.record(W6_CPU, column, broker_cores);
    results.record(W6_DISK, column, disk);
    eprintln!(
        "  W6 {:<22} {:>8.1} MB/s  disk writes {disk:.0} MB/s  cores: brokers {broker_cores:.2}, clients {client_cores:.2}{}",
        broker.target.label(),
        result.mb_per_s(),
        failures(result.failed)
    );
}

/// W7: W4 on three brokers, RF 3.
fn run_w7(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    let (produced, latency) = end_to_end(broker, profile, "w7");
    let (p50, p99) = (
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.99)),
    );
    results.record(W7_P50, column, p50);
    results.record(W7_P99, column, p99);
    eprintln!(
        "  W7 {:<22} p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  ({} of {} records, {:.1} MB/s){}",
        broker.target.label(),
        latency.len(),
        produced.records,
        produced.mb_per_s(),
        failures(produced.failed)
    );
}

/// Record bytes a broker has sent to consumers (`fjord_fetch_record_bytes_total`, both roles).
fn fetch_record_bytes(admin: &str) -> u64 {
    let Some((_, metrics)) = fjord_tests::admin_get(admin, "/metrics") else {
        return 0;
    };
    metrics
        .lines()
        .filter(|line| line.starts_with("fjord_fetch_record_bytes_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.trim().parse::<u64>().ok())
        .sum()
}

/// W8: a consumer in a rack other than the leader's reads a replicated topic from the start;
/// what share of the record bytes came from brokers in other racks.
fn run_w8(broker: &Running, profile: &Profile, results: &mut Results, column: Column) {
    let Some(cluster) = broker.cluster() else {
        return;
    };
    broker.create_topic("w8", 1);
    let count = profile.consume_bytes / 4 / KIB as u64;
    let fill = ProduceSpec {
        linger_ms: 20,
        duration: Duration::from_secs(600),
        count: Some(count),
        ..w1()
    };
    let filled = produce(&broker.bootstrap, "w8", &fill, Instant::now());
    let leader = leader_of(&broker.bootstrap, "w8");
    let rack = cluster
        .brokers
        .iter()
        .map(|b| b.rack.clone())
        .find(|rack| Some(rack) != cluster.brokers.get(leader).map(|b| &b.rack))
        .unwrap_or_default();
    let sent = || -> Vec<u64> {
        cluster
            .brokers
            .iter()
            .map(|b| fetch_record_bytes(&b.admin()))
            .collect()
    };
    let before = sent();
    let read = consume_from_start(
        &broker.bootstrap,
        "w8",
        1,
        1,
        filled.records,
        Duration::from_secs(600),
        Some(&rack),
    );
    let after = sent();
    let (mut local, mut remote) = (0, 0);
    for ((b, before), after) in cluster.brokers.iter().zip(before).zip(after) {
        if b.rack == rack {
            local += after - before;
        } else {
            remote += after - before;
        }
    }
    let share = remote as f64 / (local + remote).max(1) as f64 * 100.0;
    results.record(W8_CROSS_RACK, column, share);
    results.record(W8_THROUGHPUT, column, read.mb_per_s());
    eprintln!(
        "  W8 {:<22} {:>8.1} MB/s in rack {rack}; {:.3}% of {} MiB from other racks",
        broker.target.label(),
        read.mb_per_s(),
        share,
        (local + remote) >> 20
    );
}

/// The leader of partition 0 of `topic`.
fn leader_of(bootstrap: &str, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let leader = metadata.topics()[0].partitions()[0].leader();
    usize::try_from(leader).unwrap_or(0)
}

type Workload = fn(&Running, &Profile, &mut Results, Column);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let profile = Profile {
        rounds: args.rounds.unwrap_or(if args.quick { 2 } else { 6 }),
        produce_for: Duration::from_secs_f64(args.seconds.unwrap_or(if args.quick {
            1.5
        } else {
            5.0
        })),
        consume_bytes: args
            .consume_mib
            .unwrap_or(if args.quick { 128 } else { 1024 })
            << 20,
    };
    let fjord = match args.fjord {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("fjord-broker"))
            .ok_or_else(|| anyhow::anyhow!("no directory for the fjord-broker binary"))?,
    };
    anyhow::ensure!(fjord.exists(), "{} does not exist", fjord.display());
    let tansu = if args.fjord_only {
        PathBuf::new()
    } else {
        Binaries::find_tansu().map_err(anyhow::Error::msg)?
    };
    let nisshi = if args.fjord_only {
        None
    } else {
        Binaries::find_nisshi()
    };
    if nisshi.is_none() && !args.fjord_only {
        eprintln!(
            "nisshi is not installed; its column is left out (cargo +nightly install nisshi@0.8.1 --no-default-features --features dynostore --locked)"
        );
    }
    let binaries = Binaries {
        fjord,
        tansu,
        nisshi,
    };
    let started = Instant::now();

    eprintln!("machine ceiling");
    let loopback = ceiling::loopback_mb_per_s(Duration::from_secs(2));
    let disk = ceiling::disk_mb_per_s(&args.data_dir, Duration::from_secs(2));
    eprintln!("  loopback TCP {loopback:.0} MB/s; disk, sequential writes + fsync {disk:.0} MB/s");

    // Name, workload, and what it runs on: every target, three Fjord brokers (the peer does not
    // replicate), or Fjord over TLS.
    let all: [(&str, Workload, Runs); 9] = [
        ("W1", run_w1, Runs::Each),
        ("W1-TLS", run_w1_tls, Runs::Tls),
        ("W2", run_w2, Runs::Each),
        ("W3", run_w3, Runs::Each),
        ("W3-TLS", run_w3_tls, Runs::Tls),
        ("W4", run_w4, Runs::Each),
        ("W6", run_w6, Runs::Cluster),
        ("W7", run_w7, Runs::Cluster),
        ("W8", run_w8, Runs::Cluster),
    ];
    let workloads: Vec<(&str, Workload, Runs)> = all
        .into_iter()
        .filter(|(name, _, _)| {
            args.workloads.is_empty() || args.workloads.iter().any(|w| w.eq_ignore_ascii_case(name))
        })
        .collect();
    let mut results = Results::default();
    for round in 0..profile.rounds {
        eprintln!("round {} of {}", round + 1, profile.rounds);
        // A B, then B A: whichever runs second in a pair is measurably favoured or penalised.
        let mut order = vec![(Target::Fjord, Column::Fjord)];
        if !args.fjord_only {
            // Next to Fjord, so the alternation puts each first in turn.
            if binaries.nisshi.is_some() {
                order.push((Target::Nisshi, Column::SecondPeer));
            }
            order.push((Target::Tansu, Column::Peer));
            if !args.no_self_comparison {
                order.push((Target::Tansu, Column::PeerAgain));
            }
            if round % 2 == 1 {
                order.reverse();
            }
            order.push((Target::FjordRelaxed, Column::FjordRelaxed));
        }
        for (_, workload, runs) in &workloads {
            let targets = match runs {
                Runs::Each => order.clone(),
                Runs::Cluster => vec![(Target::FjordCluster, Column::Fjord)],
                Runs::Tls => vec![(Target::FjordTls, Column::Fjord)],
            };
            for (target, column) in &targets {
                let broker = Running::start(*target, &binaries, &args.data_dir);
                workload(&broker, &profile, &mut results, *column);
            }
        }
    }

    let fjord_w1 = results_median(&results, W1_THROUGHPUT, Column::Fjord);
    let fjord_w3 = results_median(&results, W3_THROUGHPUT, Column::Fjord);
    let fjord_w6 = results_median(&results, W6_THROUGHPUT, Column::Fjord);
    let mut table = results.markdown("Tansu", binaries.nisshi.as_ref().map(|_| "Nisshi 0.8.1"));
    table.push_str(&format!(
        "\nMachine ceiling: loopback TCP {loopback:.0} MB/s (Fjord W3 reads at {:.0}% of it); \
         disk, sequential writes + fsync, {disk:.0} MB/s (Fjord W1 writes at {:.0}% of it).\n",
        fjord_w3 / loopback * 100.0,
        fjord_w1 / disk * 100.0
    ));
    let tls_w1 = results_median(&results, W1_TLS_THROUGHPUT, Column::Fjord);
    let tls_w3 = results_median(&results, W3_TLS_THROUGHPUT, Column::Fjord);
    if tls_w1.is_finite() && fjord_w1.is_finite() {
        table.push_str(&format!(
            "\nOver TLS, W1 produces at {:.0}% and W3 reads at {:.0}% of plaintext (target: at least 70%).\n",
            tls_w1 / fjord_w1 * 100.0,
            tls_w3 / fjord_w3 * 100.0
        ));
    }
    if fjord_w6.is_finite() && fjord_w1.is_finite() {
        table.push_str(&format!(
            "\nW6 (three replicas) produces at {:.0}% of W1 (one).\n",
            fjord_w6 / fjord_w1 * 100.0
        ));
    }
    table.push_str(&format!(
        "\n{} rounds, {:.1} s per produce run, {} MiB W3 topic; {:.0} s in all.\n",
        profile.rounds,
        profile.produce_for.as_secs_f64(),
        profile.consume_bytes >> 20,
        started.elapsed().as_secs_f64()
    ));
    println!("{table}");
    if args.write_docs {
        write_docs(
            &table,
            &results.svg("Fjord against Tansu, same run", "Tansu"),
        )?;
    }
    Ok(())
}

/// Where a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// On Fjord and every peer, in the round's order.
    Each,
    /// On three Fjord brokers.
    Cluster,
    /// On Fjord with a TLS listener.
    Tls,
}

fn results_median(results: &Results, figure: Figure, column: Column) -> f64 {
    results.median_of(figure, column).unwrap_or(f64::NAN)
}

/// Replaces the generated part of docs/benchmarks.md and writes the chart.
fn write_docs(table: &str, svg: &str) -> anyhow::Result<()> {
    const BEGIN: &str = "<!-- bench:begin -->";
    const END: &str = "<!-- bench:end -->";
    let path = PathBuf::from("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path)?;
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        anyhow::bail!("{} lacks the {BEGIN} / {END} markers", path.display());
    };
    let updated = format!(
        "{}{BEGIN}\n{table}\n![Fjord/Tansu ratios](benchmarks.svg)\n\n{}",
        &doc[..begin],
        &doc[end..]
    );
    std::fs::write(&path, updated)?;
    std::fs::write("docs/benchmarks.svg", svg)?;
    eprintln!("wrote docs/benchmarks.md and docs/benchmarks.svg");
    Ok(())
}
