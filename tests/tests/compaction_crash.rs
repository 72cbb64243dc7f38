//! Compaction survives SIGKILL: a real process appends keyed records to a compacted log and
//! compacts it continuously; it is killed at random moments (inside appends, cleaning passes and
//! segment swaps) and restarted, and after every kill the reopened log must hold, for every key,
//! its latest acknowledged write (or a later one), and nothing that was never written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_broker::log::{CleanupPolicy, Log, LogConfig, SystemClock};
use fjord_broker::record::batch::{Records, records_payload, split_batches};
use rand::Rng;

/// A write: its sequence number and whether it was a tombstone.
type Write = (u64, bool);

/// Every record of the log, in offset order, with its key.
fn read_log(dir: &std::path::Path) -> Vec<(String, Write)> {
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let log = Log::open(dir, config, Arc::new(SystemClock)).expect("reopening after SIGKILL");
    let reader = log.reader();
    let mut offset = reader.offsets().log_start_offset();
    let mut records = Vec::new();
    loop {
        let read = reader.read(offset, 1 << 20).expect("reading the log");
        if read.records.is_empty() {
            break;
        }
        for batch in split_batches(&read.records) {
            let (header, bytes) = batch.expect("a well-framed batch");
            let payload = records_payload(bytes, &header).expect("a readable batch");
            for record in Records::stored(&payload, header.record_count) {
                let record = record.expect("a well-formed record");
                let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
                let (_, seq) = &record.headers[0];
                let seq: u64 = std::str::from_utf8(seq.unwrap()).unwrap().parse().unwrap();
                if let Some(value) = record.value {
                    let text = std::str::from_utf8(value).unwrap();
                    assert_eq!(text.split(':').next(), Some(seq.to_string().as_str()));
                }
                records.push((key, (seq, record.value.is_none())));
            }
        }
        offset = read.next_offset;
    }
    log.close().expect("closing");
    records
}

#[test]
fn compaction_keeps_every_acknowledged_latest_write_through_sigkills() {
    let cycles: usize = std::env::var("FJORD_COMPACTION_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let started = Instant::now();
    // Per key, its latest acknowledged write.
    let mut acked: BTreeMap<String, Write> = BTreeMap::new();
    let mut writes = 0usize;
    let mut held = 0usize;
    // Kills that left a pass's files behind: while cleaning, and inside a segment swap.
    let mut killed_cleaning = 0usize;
    let mut killed_swapping = 0usize;
    let parse = |line: &str| -> (String, Write) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        (
            parts[1].to_owned(),
            (parts[2].parse().unwrap(), parts[3] == "tombstone"),
        )
    };
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_compaction-appender"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = rng.random_range(1..400);
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut read = 0;
        while read < kill_after && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            let (key, write) = parse(&line);
            acked.insert(key, write);
            read += 1;
            writes += 1;
        }
        // Land the kill anywhere in the appender's loop, not just after an acknowledgement.
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let leftovers = |suffix: &str| {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
        };
        if leftovers(".cleaned") {
            killed_cleaning += 1;
        }
        if leftovers(".swap") {
            killed_swapping += 1;
        }
        // Lines printed before the kill and not read yet were acknowledged too.
        for line in lines.map_while(Result::ok) {
            let (key, write) = parse(&line);
            acked.insert(key, write);
            writes += 1;
        }

        let records = read_log(dir.path());
        let mut latest: BTreeMap<&str, Write> = BTreeMap::new();
        let mut previous = 0;
        for (key, write) in &records {
            assert!(write.0 > previous, "cycle {cycle}: records out of order");
            previous = write.0;
            latest.insert(key, *write);
        }
        for (key, (seq, tombstone)) in &acked {
            let Some((found, found_tombstone)) = latest.get(key.as_str()) else {
                panic!("cycle {cycle}: {key} is gone; its last acknowledged write was {seq}");
            };
            // The latest acknowledged write, or a later one (written but not yet acknowledged
            // when the process died).
            assert!(
                found >= seq,
                "cycle {cycle}: {key} holds write {found}, older than the acknowledged {seq}"
            );
            if found == seq {
                assert_eq!(found_tombstone, tombstone, "cycle {cycle}: {key}");
            }
        }
        held = records.len();
    }
    eprintln!(
        "{cycles} SIGKILL cycles ({killed_cleaning} while cleaning, {killed_swapping} inside a swap), {writes} acknowledged writes of {} keys, {held} records left in the log, in {:.1?}",
        acked.len(),
        started.elapsed()
    );
    // The kills landed inside compaction passes, not only between them...
    assert!(
        killed_cleaning >= cycles / 10,
        "only {killed_cleaning} of {cycles} kills landed while cleaning"
    );
    // ...and compaction kept the log to little more than the latest record of each key.
    assert!(held < writes / 10, "{held} of {writes} records left");
}
