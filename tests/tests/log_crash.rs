//! SIGKILL crash test of the partition log with real processes: `log-appender` appends and
//! reports acknowledged batches; this test kills it at random moments, reopens the log (running
//! recovery) and checks that every acknowledged batch is there byte for byte, that offsets are
//! contiguous and that nothing partial is served. `FJORD_CRASH_CYCLES` sets the cycle count.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_broker::log::{Log, LogConfig, SystemClock};
use fjord_broker::record::batch::{split_batches, validate};
use fjord_tests::stored_crash_batch;
use rand::Rng;

/// Reads the whole log: every batch whole, valid and contiguous, equal byte for byte to what the
/// generator made for its offset; every acknowledged batch present. Returns the log end offset.
fn verify(dir: &std::path::Path, acked: &BTreeMap<i64, i64>, cycle: usize) -> i64 {
    let log = Log::open(dir, LogConfig::default(), Arc::new(SystemClock))
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopening after SIGKILL failed: {e:#}"));
    let reader = log.reader();
    let offsets = reader.offsets();
    assert_eq!(offsets.log_start_offset(), 0, "cycle {cycle}");
    let mut offset = 0;
    let mut found = BTreeMap::new();
    while offset < offsets.log_end_offset() {
        let read = reader
            .read(offset, 1 << 20)
            .unwrap_or_else(|e| panic!("cycle {cycle}: read at {offset}: {e:#}"));
        assert!(
            !read.records.is_empty(),
            "cycle {cycle}: empty read at {offset} below the log end"
        );
        for item in split_batches(&read.records) {
            let (header, bytes) =
                item.unwrap_or_else(|e| panic!("cycle {cycle}: partial batch at {offset}: {e}"));
            assert_eq!(
                header.base_offset, offset,
                "cycle {cycle}: offsets not contiguous"
            );
            validate(bytes)
                .unwrap_or_else(|e| panic!("cycle {cycle}: invalid batch at {offset}: {e}"));
            assert!(
                bytes == stored_crash_batch(offset).as_slice(),
                "cycle {cycle}: batch at {offset} altered"
            );
            found.insert(header.base_offset, header.last_offset());
            offset = header.next_offset();
        }
    }
    assert_eq!(offset, offsets.log_end_offset(), "cycle {cycle}");
    for (base, last) in acked {
        assert_eq!(
            found.get(base),
            Some(last),
            "cycle {cycle}: acknowledged batch {base}..={last} lost"
        );
    }
    drop(log); // no clean close: the next appender recovers too
    offset
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    let cycles: usize = std::env::var("FJORD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acked: BTreeMap<i64, i64> = BTreeMap::new();
    let mut kills_with_acks_in_flight = 0;
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log-appender"))
            .arg(dir.path())
            .arg(rng.random_range(1..=8).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting log-appender");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut record = |line: String| {
            let mut parts = line
                .split_whitespace()
                .skip(1)
                .map(|p| p.parse::<i64>().unwrap());
            let (base, last) = (parts.next().unwrap(), parts.next().unwrap());
            acked.insert(base, last);
        };
        // Kill either after a random number of acknowledgements, with appends in flight, or
        // after a random delay that may fall in the middle of opening and recovery.
        if rng.random_bool(0.75) {
            let wanted = rng.random_range(1..=60);
            for _ in 0..wanted {
                match lines.next() {
                    Some(line) => record(line.unwrap()),
                    None => panic!("cycle {cycle}: log-appender exited early"),
                }
            }
            kills_with_acks_in_flight += 1;
        } else {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
        }
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "cycle {cycle}: the appender must die by the signal"
        );
        // Acks printed before the kill were acknowledged; collect every one of them.
        for line in lines {
            record(line.unwrap());
        }
        let log_end = verify(dir.path(), &acked, cycle);
        assert!(acked.values().all(|&last| last < log_end));
    }
    eprintln!(
        "{cycles} SIGKILL cycles ({kills_with_acks_in_flight} with appends in flight), {} acknowledged batches, all present, in {:.1?}",
        acked.len(),
        started.elapsed()
    );
    assert!(kills_with_acks_in_flight > cycles / 2);
    assert!(acked.len() > cycles);
}
