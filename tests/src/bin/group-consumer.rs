//! A consumer-group member on librdkafka (the `rdkafka` crate) for the group tests: the same
//! command line and JSON-lines output as `tests/clients/group_consumer.py`, so one harness drives
//! every client. It subscribes, prints each record, commits synchronously after processing, prints every assignment change, and on SIGTERM commits, closes (leaving the
//! group) and exits 0.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    topic: String,
    /// `group.instance.id`: a static member.
    #[arg(long)]
    instance_id: Option<String>,
    /// range, roundrobin or cooperative-sticky.
    #[arg(long)]
    assignor: Option<String>,
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u32,
    #[arg(long, default_value_t = 1000)]
    heartbeat_interval_ms: u32,
    /// Accepted for a common command line; librdkafka returns one record per poll anyway.
    #[arg(long)]
    max_poll_records: Option<u32>,
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

struct Context;

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(error) = rebalance {
            eprintln!("rebalance error: {error}");
            return;
        }
        let mut partitions: Vec<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        partitions.sort_unstable();
        emit(serde_json::json!({"event": "assigned", "partitions": partitions}));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a signal runtime");
        runtime.block_on(async {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                flag.store(true, Ordering::SeqCst);
            }
        });
    });

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", args.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            args.heartbeat_interval_ms.to_string(),
        );
    if let Some(instance) = &args.instance_id {
        config.set("group.instance.id", instance);
    }
    if let Some(assignor) = &args.assignor {
        config.set("partition.assignment.strategy", assignor);
    }
    let consumer: BaseConsumer<Context> = config.create_with_context(Context)?;
    consumer.subscribe(&[&args.topic])?;
    emit(serde_json::json!({"event": "started"}));

    // Next offsets of what was processed and not yet committed: committed every 50 records
    // and whenever a poll comes back empty.
    let mut processed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut pending = 0;
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                emit(serde_json::json!({
                    "event": "record",
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "key": text(message.key()),
                    "value": text(message.payload()),
                }));
                processed.insert(message.partition(), message.offset() + 1);
                pending += 1;
                if pending >= 50 {
                    commit(&consumer, &args.topic, &mut processed);
                    pending = 0;
                }
            }
            Some(Err(error)) => eprintln!("poll: {error}"),
            None => {
                commit(&consumer, &args.topic, &mut processed);
                pending = 0;
            }
        }
    }
    commit(&consumer, &args.topic, &mut processed);
    consumer.unsubscribe();
    // Serve the revocation and LeaveGroup before the process ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline && consumer.assignment().is_ok_and(|a| a.count() > 0)
    {
        consumer.poll(Duration::from_millis(100));
    }
    drop(consumer);
    emit(serde_json::json!({"event": "closed"}));
    Ok(())
}

/// Commits what was processed; a commit refused because of a rebalance is reported and the
/// records are consumed again by whoever gets the partition (at least once).
fn commit(consumer: &BaseConsumer<Context>, topic: &str, processed: &mut BTreeMap<i32, i64>) {
    if processed.is_empty() {
        return;
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in processed.iter() {
        if offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*next))
            .is_err()
        {
            return;
        }
    }
    match consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => {
            let committed: serde_json::Map<String, serde_json::Value> = processed
                .iter()
                .map(|(p, o)| (p.to_string(), serde_json::json!(o)))
                .collect();
            emit(serde_json::json!({"event": "committed", "offsets": committed}));
        }
        Err(KafkaError::ConsumerCommit(code)) => eprintln!("commit refused: {code}"),
        Err(error) => eprintln!("commit failed: {error}"),
    }
    processed.clear();
}
