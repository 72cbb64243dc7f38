//! `fjord-broker`: with no subcommand, runs the broker (a single-node cluster on
//! 127.0.0.1:9092 with data in ./fjord-data unless flags or `FJORD_*` variables say otherwise);
//! `dump-log` inspects a partition log directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fjord_broker::BrokerConfig;
use fjord_broker::log::{Log, LogConfig, SystemClock};
use fjord_broker::record::batch;
use tokio_util::sync::CancellationToken;

/// Keeps hostile length prefixes from aborting the broker (see `fjord_broker::alloc`).
#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

#[derive(Debug, Parser)]
#[command(
    name = "fjord-broker",
    version,
    about = "Fjord: Kafka-compatible event streaming"
)]
struct Cli {
    /// Log format: `text` (readable) or `json`.
    #[arg(long, env = "FJORD_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(flatten)]
    broker: BrokerConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Opens a partition log directory (recovering it if it was not closed cleanly) and prints
    /// its offsets and, with --batches, every batch header.
    DumpLog {
        /// The partition directory, e.g. `fjord-data/orders-0`.
        dir: PathBuf,
        /// Print one line per record batch.
        #[arg(long)]
        batches: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    match cli.command {
        Some(Command::DumpLog { dir, batches }) => dump_log(dir, batches),
        None => run(cli.broker),
    }
}

fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let running = fjord_broker::start(config, shutdown.clone())
            .await
            .context("starting the broker")?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        running.shutdown().await;
        tracing::info!("stopped cleanly");
        anyhow::Ok(())
    })
}

fn dump_log(dir: PathBuf, batches: bool) -> anyhow::Result<()> {
    let log = Log::open(&dir, LogConfig::default(), Arc::new(SystemClock))
        .with_context(|| format!("opening {}", dir.display()))?;
    let reader = log.reader();
    let offsets = reader.offsets();
    println!(
        "log_start_offset={} log_end_offset={} segments={} bytes={}",
        offsets.log_start_offset(),
        offsets.log_end_offset(),
        reader.segment_count(),
        reader.size_bytes()
    );
    if batches {
        let mut offset = offsets.log_start_offset();
        while offset < offsets.log_end_offset() {
            let read = reader
                .read(offset, 1 << 20)
                .with_context(|| format!("reading offset {offset}"))?;
            if read.records.is_empty() {
                break;
            }
            for item in batch::split_batches(&read.records) {
                let (header, bytes) = item.context("splitting a read")?;
                println!(
                    "base_offset={} last_offset={} records={} bytes={} leader_epoch={} max_timestamp={} compression={:?} producer_id={}",
                    header.base_offset,
                    header.last_offset(),
                    header.record_count,
                    bytes.len(),
                    header.partition_leader_epoch,
                    header.max_timestamp,
                    header.compression().ok(),
                    header.producer_id,
                );
            }
            offset = read.next_offset;
        }
    }
    log.close().context("closing the log")?;
    Ok(())
}
