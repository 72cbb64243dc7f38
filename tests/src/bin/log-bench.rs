//! Micro-benchmark of the partition log: append throughput and acknowledgement latency with 1 and
//! 16 concurrent appenders under the durable default (group commit: ack after fsync) and the
//! relaxed policy (fsync every interval, ack from the page cache), then sequential read. Configs
//! run in alternating order each round, so neither policy is always measured first; the table
//! shows medians over rounds and the durable/relaxed ratio as the geometric mean of per-round
//! ratios.
//!
//! `cargo run --release -p fjord-tests --bin log-bench -- --dir /path/on/the/data/disk`

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use fjord_broker::log::{FlushPolicy, Log, LogConfig, SystemClock};
use fjord_broker::record::{ProducerInfo, Record, build_batch};

#[derive(Debug, Parser)]
struct Args {
    /// Where the logs are written (the disk being measured). Default: a temp dir under target/.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds each append run lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds over all configurations.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The relaxed policy's flush interval.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Config {
    appenders: usize,
    durable: bool,
}

impl Config {
    fn name(&self) -> String {
        let policy = if self.durable {
            "durable (group commit)"
        } else {
            "relaxed (flush interval)"
        };
        format!(
            "append, {} appender{}, {policy}",
            self.appenders,
            if self.appenders == 1 { "" } else { "s" }
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    mb_per_s: f64,
    appends_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn template_batch() -> Vec<u8> {
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| Record {
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![b'x'; RECORD_BYTES - 16]),
            headers: Vec::new(),
            timestamp: 1_700_000_000_000,
        })
        .collect();
    build_batch(&records, ProducerInfo::NONE)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[rank])
}

fn run_append(dir: &Path, config: Config, args: &Args) -> anyhow::Result<(Measured, Log)> {
    let flush = if config.durable {
        FlushPolicy::EveryAppend
    } else {
        FlushPolicy::Interval {
            interval_ms: args.interval_ms,
        }
    };
    let log = Log::open(
        dir,
        LogConfig {
            flush,
            ..LogConfig::default()
        },
        Arc::new(SystemClock),
    )?;
    let flusher = log.flusher();
    let log = Mutex::new(log);
    let template = template_batch();
    let stop = AtomicBool::new(false);
    let duration = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let latencies: Vec<Vec<u32>> = std::thread::scope(|scope| {
        if !config.durable {
            let flusher = flusher.clone();
            let stop = &stop;
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(args.interval_ms));
                    flusher.flush_to(flusher.appended_offset()).expect("flush");
                }
            });
        }
        let workers: Vec<_> = (0..config.appenders)
            .map(|_| {
                let (log, flusher, template, stop) = (&log, &flusher, &template, &stop);
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut buf = template.clone();
                    while started.elapsed() < duration {
                        let t = Instant::now();
                        buf.copy_from_slice(template);
                        let info = log
                            .lock()
                            .expect("lock")
                            .append(&mut buf, 0)
                            .expect("append");
                        if config.durable {
                            flusher.flush_to(info.last_offset + 1).expect("flush");
                        }
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    stop.store(true, Ordering::Relaxed);
                    latencies
                })
            })
            .collect();
        let latencies = workers
            .into_iter()
            .map(|w| w.join().expect("appender"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        latencies
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<u32> = latencies.into_iter().flatten().collect();
    all.sort_unstable();
    let appends = all.len() as f64;
    let bytes = appends * template.len() as f64;
    let log = log.into_inner().expect("lock");
    Ok((
        Measured {
            mb_per_s: bytes / elapsed / 1e6,
            appends_per_s: appends / elapsed,
            p50_us: percentile(&all, 0.5),
            p99_us: percentile(&all, 0.99),
        },
        log,
    ))
}

/// Reads the whole log from offset 0 in 1 MiB reads; MB/s (page cache warm: it was just written).
fn run_read(log: &Log) -> anyhow::Result<f64> {
    let reader = log.reader();
    let end = reader.offsets().log_end_offset();
    let started = Instant::now();
    let (mut offset, mut bytes) = (0, 0usize);
    while offset < end {
        let read = reader.read(offset, 1 << 20)?;
        bytes += read.records.len();
        offset = read.next_offset;
    }
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn geomean(values: &[f64]) -> f64 {
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/log-bench"),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let scratch = tempfile::tempdir_in(&base)?;
    let configs = [
        Config {
            appenders: 1,
            durable: true,
        },
        Config {
            appenders: 1,
            durable: false,
        },
        Config {
            appenders: 16,
            durable: true,
        },
        Config {
            appenders: 16,
            durable: false,
        },
    ];
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); configs.len()];
    let mut reads = Vec::new();
    let mut run = 0;
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..configs.len()).collect()
        } else {
            (0..configs.len()).rev().collect()
        };
        for i in order {
            run += 1;
            let dir = scratch.path().join(format!("bench-{run}"));
            let (measured, log) = run_append(&dir, configs[i], &args)?;
            eprintln!(
                "round {} {}: {:.0} MB/s, p99 {:.0} us",
                round + 1,
                configs[i].name(),
                measured.mb_per_s,
                measured.p99_us
            );
            if configs[i] == configs[2] {
                reads.push(run_read(&log)?);
            }
            drop(log);
            std::fs::remove_dir_all(&dir)?;
            results[i].push(measured);
        }
    }

    println!(
        "Log micro-benchmark: {RECORD_BYTES} B records in {RECORDS_PER_BATCH}-record batches ({} B), {} s per run, {} rounds, relaxed flush every {} ms, data in {}",
        template_batch().len(),
        args.seconds,
        args.rounds,
        args.interval_ms,
        base.display()
    );
    println!();
    println!("| workload | MB/s (median) | min–max | appends/s | ack p50 (µs) | ack p99 (µs) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (config, runs) in configs.iter().zip(&results) {
        let mbs: Vec<f64> = runs.iter().map(|m| m.mb_per_s).collect();
        let (min, max) = (
            mbs.iter().copied().fold(f64::MAX, f64::min),
            mbs.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.0} | {:.0} | {:.0} |",
            config.name(),
            median(&mbs),
            min,
            max,
            median(&runs.iter().map(|m| m.appends_per_s).collect::<Vec<_>>()),
            median(&runs.iter().map(|m| m.p50_us).collect::<Vec<_>>()),
            median(&runs.iter().map(|m| m.p99_us).collect::<Vec<_>>()),
        );
    }
    println!(
        "| sequential read, 1 MiB reads, page cache warm | {:.0} | {:.0}–{:.0} | | | |",
        median(&reads),
        reads.iter().copied().fold(f64::MAX, f64::min),
        reads.iter().copied().fold(0.0, f64::max)
    );
    println!();
    for (durable, relaxed, label) in [(0, 1, "1 appender"), (2, 3, "16 appenders")] {
        let ratios: Vec<f64> = results[durable]
            .iter()
            .zip(&results[relaxed])
            .map(|(d, r)| d.mb_per_s / r.mb_per_s)
            .collect();
        println!(
            "durable/relaxed throughput, {label}: {:.2} (geometric mean of per-round ratios)",
            geomean(&ratios)
        );
    }
    Ok(())
}
