//! Crash-test appender for compaction: appends keyed records (50 keys, now and then a
//! tombstone) to a compacted partition log with small segments, compacting whenever a pass is
//! due, and prints `ack <key> <seq> value|tombstone` once a record is durable. Sequences grow
//! with every record, also across restarts.
//! `compaction_crash` SIGKILLs it at random moments (mid-append, mid-clean, mid-swap) and checks
//! that the latest acknowledged write of every key survived.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use fjord_broker::log::{CleanupPolicy, DirtyRatio, Log, LogConfig, SystemClock};
use fjord_broker::record::{ProducerInfo, Record, build_batch};

/// Keys written; every record's key is one of `k0` .. `k49`.
const KEYS: u64 = 50;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: compaction-appender <dir>")?,
    );
    let config = LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 512,
        cleanup_policy: CleanupPolicy::Compact,
        min_cleanable_dirty_ratio: DirtyRatio::new(0.0).context("ratio")?,
        delete_retention_ms: i64::MAX / 2,
        ..LogConfig::default()
    };
    let mut log = Log::open(&dir, config, Arc::new(SystemClock)).context("opening the log")?;
    // Continue the sequence after whatever the log holds, so sequences only grow.
    let mut seq = log.log_end_offset() as u64 * 10;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let cancel = AtomicBool::new(false);
    let mut out = std::io::stdout().lock();
    loop {
        let records: Vec<(u64, u64, bool)> = (0..5)
            .map(|i| {
                seq += 1;
                (seq, (seq * 7 + i) % KEYS, seq.is_multiple_of(13))
            })
            .collect();
        let batch: Vec<Record> = records
            .iter()
            .map(|(seq, key, tombstone)| Record {
                key: Some(format!("k{key}").into_bytes()),
                value: (!tombstone).then(|| format!("{seq}:{}", "x".repeat(200)).into_bytes()),
                // Tombstones carry their sequence in a header.
                headers: vec![(b"seq".to_vec(), Some(seq.to_string().into_bytes()))],
                timestamp: now(),
            })
            .collect();
        let mut bytes = build_batch(&batch, ProducerInfo::NONE);
        let info = log.append(&mut bytes, 0).context("append")?;
        log.flusher()
            .flush_to(info.last_offset + 1)
            .context("flush")?;
        for (seq, key, tombstone) in &records {
            let kind = if *tombstone { "tombstone" } else { "value" };
            writeln!(out, "ack k{key} {seq} {kind}")?;
        }
        out.flush()?;
        if log.compaction_due()
            && let Some(plan) = log.plan_compaction()
        {
            let cleaned = plan.run(&cancel).context("cleaning")?;
            log.finish_compaction(cleaned).context("swapping")?;
        }
    }
}
