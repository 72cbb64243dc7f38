//! Tests of the log against real files in a temp directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::record::batch::{HEADER_LEN, set_offset_and_epoch, split_batches};
use crate::record::{ProducerInfo, Record, Records, build_batch};

const T0: i64 = 1_700_000_000_000;

fn batch(records: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![b'a' + (i % 26) as u8; value_len]),
            headers: vec![(b"trace".to_vec(), Some(i.to_string().into_bytes()))],
            timestamp: timestamp + i as i64,
        })
        .collect();
    build_batch(&records, ProducerInfo::NONE)
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(T0)),
        }
    }

    fn open(&self, config: LogConfig) -> Log {
        Log::open(self.dir.path(), config, self.clock.clone()).unwrap()
    }

    fn path(&self, base: i64, suffix: &str) -> PathBuf {
        self.dir.path().join(segment::file_name(base, suffix))
    }
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Appends and returns the stored bytes as the log should hold them.
fn append(log: &mut Log, mut bytes: Vec<u8>) -> (AppendInfo, Vec<u8>) {
    let info = log.append(&mut bytes, 3).unwrap();
    (info, bytes)
}

/// Reads the whole readable log, batch by batch.
fn read_all(reader: &LogReader) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = reader.offsets().log_start_offset();
    loop {
        let read = reader.read(offset, 1000).unwrap();
        if read.records.is_empty() {
            return out;
        }
        for item in split_batches(&read.records) {
            let (header, bytes) = item.unwrap();
            out.push((header.base_offset, bytes.to_vec()));
        }
        offset = read.next_offset;
    }
}

#[test]
fn append_assigns_offsets_and_stores_batches_as_sent() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    let sent = batch(3, 10, T0);
    let (first, stored) = append(&mut log, sent.clone());
    assert_eq!((first.base_offset, first.last_offset), (0, 2));
    let (second, _) = append(&mut log, batch(2, 10, T0));
    assert_eq!((second.base_offset, second.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);

    // Only base offset (0..8) and leader epoch (12..16) differ from what the producer sent.
    assert_eq!(stored[8..12], sent[8..12]);
    assert_eq!(stored[16..], sent[16..]);
    let header = BatchHeader::parse(&stored).unwrap();
    assert_eq!((header.base_offset, header.partition_leader_epoch), (0, 3));

    let read = log.reader().read(0, 1 << 20).unwrap();
    assert_eq!(read.next_offset, 5);
    assert_eq!(&read.records[..stored.len()], &stored[..]);
    let mid = log.reader().read(4, 1 << 20).unwrap();
    assert_eq!(
        BatchHeader::parse(&mid.records).unwrap().base_offset,
        3,
        "whole batch holding 4"
    );
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    let mut bytes = batch(2, 5, T0);
    bytes.extend(batch(4, 5, T0));
    let info = log.append(&mut bytes, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 5));
    let bases: Vec<i64> = read_all(&log.reader()).iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, vec![0, 2]);
}

#[test]
fn read_returns_at_least_one_batch_and_whole_batches_only() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    for _ in 0..5 {
        append(&mut log, batch(1, 500, T0));
    }
    let one = log.reader().read(0, 10).unwrap();
    assert_eq!(
        split_batches(&one.records).count(),
        1,
        "larger than max_bytes, still one"
    );
    let len = one.records.len();
    let two = log.reader().read(0, 2 * len + len / 2).unwrap();
    assert_eq!(two.records.len(), 2 * len);
    assert_eq!(two.next_offset, 2);
    let end = log.reader().read(5, 1000).unwrap();
    assert!(end.records.is_empty());
    assert_eq!(end.next_offset, 5);
    assert!(matches!(
        log.reader().read(6, 1000),
        Err(Error::OffsetOutOfRange {
            offset: 6,
            log_start_offset: 0,
            log_end_offset: 5
        })
    ));
}

#[test]
fn read_below_stops_at_the_bound() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    for _ in 0..4 {
        append(&mut log, batch(2, 10, T0));
    }
    let read = log.reader().read_below(0, 1 << 20, 4).unwrap();
    assert_eq!(read.next_offset, 4);
    assert!(
        log.reader()
            .read_below(4, 1 << 20, 4)
            .unwrap()
            .records
            .is_empty()
    );
}

#[test]
fn invalid_appends_are_rejected_and_change_nothing() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig {
        max_message_bytes: 1000,
        ..LogConfig::default()
    });
    append(&mut log, batch(1, 10, T0));
    let size_before = log.reader().size_bytes();

    let mut corrupt = batch(1, 10, T0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        log.append(&mut corrupt, 0),
        Err(Error::InvalidBatch {
            index: 0,
            source: BatchError::CrcMismatch { .. }
        })
    ));

    let mut too_big = batch(1, 2000, T0);
    let size = too_big.len();
    assert!(matches!(
        log.append(&mut too_big, 0),
        Err(Error::BatchTooLarge { size: s, max: 1000 }) if s == size
    ));

    // A good batch followed by a bad one: all or nothing.
    let mut mixed = batch(1, 10, T0);
    mixed.extend_from_slice(&[0u8; 30]);
    assert!(matches!(
        log.append(&mut mixed, 0),
        Err(Error::InvalidBatch { index: 1, .. })
    ));
    assert!(matches!(log.append(&mut [], 0), Err(Error::EmptyAppend)));

    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.reader().size_bytes(), size_before);
}

#[test]
fn log_append_time_sets_the_broker_time() {
    let fx = Fixture::new();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = fx.open(config);
    fx.clock.set(T0 + 5_000);
    let (info, stored) = append(&mut log, batch(2, 10, T0));
    assert_eq!(info.log_append_time, Some(T0 + 5_000));
    let header = batch::validate(&stored).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, T0 + 5_000);
    assert_eq!(log.reader().read(0, 1 << 20).unwrap().records, stored);
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig {
        segment_ms: 60_000,
        ..small_segments()
    });
    for _ in 0..10 {
        append(&mut log, batch(1, 400, T0));
    }
    let by_size = log.reader().segment_count();
    assert!(
        by_size >= 3,
        "10 batches of ~470 bytes in 2 KiB segments: {by_size} segments"
    );
    for base in log.reader().segment_base_offsets() {
        assert!(fx.path(base, "log").exists());
    }
    fx.clock.advance(60_000);
    append(&mut log, batch(1, 10, T0));
    assert_eq!(
        log.reader().segment_count(),
        by_size + 1,
        "an old segment rolls on the next append"
    );
    assert_eq!(*log.reader().segment_base_offsets().last().unwrap(), 10);
    // Sealed segments have their index files on disk.
    assert!(fx.path(0, "index").exists() && fx.path(0, "timeindex").exists());
}

#[test]
fn retention_by_time_moves_the_log_start_offset() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig {
        retention_ms: Some(3_600_000),
        ..small_segments()
    });
    for i in 0..12 {
        append(&mut log, batch(1, 400, T0 + i * 60_000));
    }
    assert_eq!(log.enforce_retention().unwrap().deleted_segments, 0);
    // Records older than T0 + 5 min expire.
    fx.clock.set(T0 + 3_600_000 + 5 * 60_000 + 1);
    let outcome = log.enforce_retention().unwrap();
    assert!(outcome.deleted_segments >= 1);
    let start = log.offsets().log_start_offset();
    assert_eq!(outcome.log_start_offset, start);
    assert!(start > 0 && start <= 5, "log start {start}");
    assert!(!fx.path(0, "log").exists());
    assert!(matches!(
        log.reader().read(0, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log.reader()).first().unwrap().0, start);

    // Everything expires, including the active segment: the log is empty at its end offset.
    fx.clock.set(T0 + 10 * 3_600_000);
    log.enforce_retention().unwrap();
    assert_eq!(log.offsets().log_start_offset(), 12);
    assert_eq!(log.offsets().log_end_offset(), 12);
    assert!(read_all(&log.reader()).is_empty());
    let (next, _) = append(&mut log, batch(1, 10, T0 + 10 * 3_600_000));
    assert_eq!(next.base_offset, 12);
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig {
        retention_bytes: Some(4096),
        ..small_segments()
    });
    for _ in 0..40 {
        append(&mut log, batch(1, 400, T0));
    }
    let before = log.reader().size_bytes();
    let outcome = log.enforce_retention().unwrap();
    let after = log.reader().size_bytes();
    assert!(outcome.deleted_segments > 0);
    assert_eq!(before - after, outcome.deleted_bytes);
    assert!(
        after <= 4096 + 2048,
        "within one segment of the limit: {after}"
    );
    let start = log.offsets().log_start_offset();
    assert_eq!(start, log.reader().segment_base_offsets()[0]);
    assert_eq!(read_all(&log.reader()).len() as i64, 40 - start);
    // Survives a reopen.
    log.close().unwrap();
    let log = fx.open(small_segments());
    assert_eq!(log.offsets().log_start_offset(), start);
}

#[test]
fn delete_records_moves_the_start_inside_a_segment_and_persists() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    for _ in 0..12 {
        append(&mut log, batch(2, 300, T0));
    }
    assert_eq!(log.delete_records_before(7).unwrap(), 7);
    assert_eq!(log.delete_records_before(3).unwrap(), 7, "never moves back");
    assert!(matches!(
        log.delete_records_before(25),
        Err(Error::LogStartBeyondEnd { .. })
    ));
    assert!(matches!(
        log.reader().read(6, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let read = log.reader().read(7, 100).unwrap();
    assert_eq!(
        BatchHeader::parse(&read.records).unwrap().base_offset,
        6,
        "batch holding 7"
    );
    assert!(log.reader().segment_base_offsets()[0] <= 6);
    drop(log); // no clean close: the checkpoint written by DeleteRecords must be enough
    let log = fx.open(small_segments());
    assert_eq!(log.offsets().log_start_offset(), 7);
}

#[test]
fn truncate_to_removes_the_batch_holding_the_offset_and_later_segments() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    let mut stored = Vec::new();
    for _ in 0..12 {
        stored.push(append(&mut log, batch(2, 300, T0)).1);
    }
    let segments_before = log.reader().segment_count();
    assert_eq!(log.truncate_to(9).unwrap(), 8);
    assert_eq!(log.log_end_offset(), 8);
    assert!(log.reader().segment_count() < segments_before);
    let all: Vec<Vec<u8>> = read_all(&log.reader())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(all, stored[..4]);
    let (info, _) = append(&mut log, batch(1, 10, T0));
    assert_eq!(info.base_offset, 8);
    drop(log);
    let log = fx.open(small_segments());
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(read_all(&log.reader()).len(), 5);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    // Batch i holds records with timestamps T0 + 100*i + {0, 1, 2}.
    for i in 0..20 {
        append(&mut log, batch(3, 100, T0 + 100 * i));
    }
    let reader = log.reader();
    assert_eq!(
        reader.offset_for_timestamp(0).unwrap().map(|t| t.offset),
        Some(0)
    );
    assert_eq!(
        reader
            .offset_for_timestamp(T0 + 1)
            .unwrap()
            .map(|t| t.offset),
        Some(1)
    );
    assert_eq!(
        reader
            .offset_for_timestamp(T0 + 3)
            .unwrap()
            .map(|t| t.offset),
        Some(3)
    );
    assert_eq!(
        reader
            .offset_for_timestamp(T0 + 1002)
            .unwrap()
            .map(|t| t.offset),
        Some(32)
    );
    assert_eq!(
        reader
            .offset_for_timestamp(T0 + 1903)
            .unwrap()
            .map(|t| t.offset),
        None
    );
    log.close().unwrap();
    // Same answers from indexes loaded from disk.
    let log = fx.open(small_segments());
    assert_eq!(
        log.reader()
            .offset_for_timestamp(T0 + 1002)
            .unwrap()
            .map(|t| t.offset),
        Some(32)
    );
}

#[test]
fn max_timestamp_names_the_first_record_that_carries_it() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    // Batch i holds timestamps T0 + 100*i + {0, 1, 2}, except batch 7, which is from the future,
    // and batch 12, which repeats its largest timestamp in a later segment.
    for i in 0..20 {
        let base = match i {
            7 => T0 + 50_000,
            12 => T0 + 49_998,
            _ => T0 + 100 * i,
        };
        append(&mut log, batch(3, 100, base));
    }
    let reader = log.reader();
    let found = reader.max_timestamp_offset(i64::MAX).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (23, T0 + 50_002));
    // Below a high watermark that the newest record has not reached, segments that start at or
    // above it do not count.
    // Offset o holds T0 + 100 * (o / 3) + o % 3 there: the newest is the segment's last record.
    let first_segment_end = reader.segment_base_offsets()[1];
    let last = first_segment_end - 1;
    assert!(last < 21, "the first segment ends before batch 7");
    let found = reader
        .max_timestamp_offset(first_segment_end)
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.offset, found.timestamp),
        (last, T0 + 100 * (last / 3) + last % 3)
    );
    log.close().unwrap();
    let log = fx.open(small_segments());
    let found = log
        .reader()
        .max_timestamp_offset(i64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!((found.offset, found.timestamp), (23, T0 + 50_002));
    // An empty log has no such record.
    let empty = Fixture::new();
    assert_eq!(
        empty
            .open(small_segments())
            .reader()
            .max_timestamp_offset(i64::MAX)
            .unwrap(),
        None
    );
}

#[test]
fn create_time_timestamps_must_lie_within_the_topic_bounds() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    // Kafka 4's default: an hour ahead at most, any age.
    append(&mut log, batch(2, 10, T0 + 3_600_000 - 1));
    append(&mut log, batch(1, 10, 0));
    let mut ahead = batch(3, 10, T0 + 3_600_000 - 1);
    assert!(matches!(
        log.append(&mut ahead, 0),
        Err(Error::TimestampOutOfRange { ref records, count: 1, .. })
            if records == &[(2, T0 + 3_600_001)]
    ));
    // A header that understates the newest timestamp does not get a record past the bound.
    let mut lying = batch(2, 10, T0 + 3_600_000);
    lying[35..43].copy_from_slice(&T0.to_be_bytes());
    let crc = crate::record::batch::compute_crc(&lying);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append(&mut lying, 0),
        Err(Error::TimestampOutOfRange { count: 1, .. })
    ));
    // With a lower bound every record is judged, the earliest one included.
    log.set_config(LogConfig {
        timestamp_before_max_ms: 1000,
        ..LogConfig::default()
    });
    let mut old = build_batch(
        &[
            Record {
                key: None,
                value: Some(b"new".to_vec()),
                headers: vec![],
                timestamp: T0,
            },
            Record {
                key: None,
                value: Some(b"old".to_vec()),
                headers: vec![],
                timestamp: T0 - 1001,
            },
        ],
        ProducerInfo::NONE,
    );
    let end = log.log_end_offset();
    match log.append(&mut old, 0) {
        Err(Error::TimestampOutOfRange {
            records,
            count,
            earliest,
            latest,
        }) => {
            assert_eq!((records, count), (vec![(1, T0 - 1001)], 1));
            assert_eq!((earliest, latest), (T0 - 1000, T0 + 3_600_000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        log.log_end_offset(),
        end,
        "nothing of a refused batch is appended"
    );
    // LogAppendTime topics take the broker's time: producers' timestamps are not judged.
    log.set_config(LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        timestamp_before_max_ms: 1000,
        ..LogConfig::default()
    });
    append(&mut log, batch(1, 10, T0 + 10 * 3_600_000));
}

#[test]
fn segment_jitter_rolls_segments_early_by_a_stable_amount() {
    let fx = Fixture::new();
    let config = LogConfig {
        segment_ms: 100_000,
        segment_jitter_ms: 50_000,
        ..LogConfig::default()
    };
    let mut log = fx.open(config.clone());
    append(&mut log, batch(1, 10, T0));
    // The segment rolls somewhere in (50 s, 100 s]: find where, second by second.
    let mut waited = 0;
    let segments = log.reader().segment_count();
    while log.reader().segment_count() == segments {
        fx.clock.advance(1000);
        waited += 1000;
        append(&mut log, batch(1, 10, T0 + waited));
        assert!(waited <= 100_000, "never rolled");
    }
    assert!(waited > 50_000, "rolled after {waited} ms");
    // The jitter is drawn from the partition and the segment: stable across a reopen, and spread
    // over (0, segment.jitter.ms] across segments.
    let ages: Vec<i64> = (0..32).map(|base| log.roll_age_ms(base * 1000)).collect();
    log.close().unwrap();
    let log = fx.open(config.clone());
    let again: Vec<i64> = (0..32).map(|base| log.roll_age_ms(base * 1000)).collect();
    assert_eq!(ages, again);
    assert!(
        ages.iter().all(|age| (50_001..=100_000).contains(age)),
        "{ages:?}"
    );
    let distinct: std::collections::BTreeSet<_> = ages.iter().collect();
    assert!(distinct.len() > 16, "{ages:?}");
    // Without jitter, exactly at segment.ms.
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig {
        segment_jitter_ms: 0,
        ..config
    });
    append(&mut log, batch(1, 10, T0));
    fx.clock.advance(99_999);
    append(&mut log, batch(1, 10, T0));
    assert_eq!(log.reader().segment_count(), 1);
    fx.clock.advance(1);
    append(&mut log, batch(1, 10, T0));
    assert_eq!(log.reader().segment_count(), 2);
}

#[test]
fn leader_epochs_are_cached_checkpointed_and_rebuilt() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    let epoch = |log: &mut Log, epoch: i32, count: usize| {
        for _ in 0..count {
            log.append(&mut batch(2, 100, T0), epoch).unwrap();
        }
    };
    epoch(&mut log, 3, 5); // offsets 0..10
    epoch(&mut log, 5, 5); // 10..20
    epoch(&mut log, 8, 5); // 20..30
    let entries = |log: &Log| -> Vec<(i32, i64)> {
        log.leader_epochs()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    };
    assert_eq!(entries(&log), [(3, 0), (5, 10), (8, 20)]);
    assert_eq!(log.end_offset_for_epoch(5), (5, 20));
    assert_eq!(log.end_offset_for_epoch(8), (8, 30));
    assert_eq!(log.end_offset_for_epoch(6), (5, 20));
    assert!(log.reader().segment_count() > 2, "the epochs span segments");

    // A follower's truncation takes the epochs it cut; DeleteRecords moves the first one up.
    log.truncate_to(16).unwrap();
    assert_eq!(entries(&log), [(3, 0), (5, 10)]);
    log.delete_records_before(4).unwrap();
    assert_eq!(entries(&log), [(3, 4), (5, 10)]);
    // An epoch begun by a leader that wrote nothing in it: a truncation at the log end takes it.
    log.begin_leader_epoch(7).unwrap();
    assert_eq!(entries(&log), [(3, 4), (5, 10), (7, 16)]);
    assert_eq!(log.truncate_to(16).unwrap(), 16);
    assert_eq!(entries(&log), [(3, 4), (5, 10)]);
    epoch(&mut log, 9, 1);
    let before = entries(&log);
    log.close().unwrap();

    // The same after a reopen, and after one that must rebuild the cache from the batches.
    let log = fx.open(small_segments());
    assert_eq!(entries(&log), before);
    log.close().unwrap();
    fs::remove_file(fx.dir.path().join("leader-epoch.checkpoint")).unwrap();
    let log = fx.open(small_segments());
    assert_eq!(entries(&log), before);
    log.close().unwrap();

    // A cache that names an epoch whose records a crash took back is cut to the log at open.
    fs::write(
        fx.dir.path().join("leader-epoch.checkpoint"),
        "fjord-leader-epochs v1\n3 4\n5 10\n9 16\n12 99\n",
    )
    .unwrap();
    let log = fx.open(small_segments());
    assert_eq!(entries(&log), before);
}

/// A follower's log takes the leader's batches byte for byte: same offsets, epochs and
/// timestamps, so the two logs are identical; what does not continue the log is refused whole.
#[test]
fn replicated_appends_keep_the_leaders_offsets_and_bytes() {
    let (leader_fx, follower_fx) = (Fixture::new(), Fixture::new());
    let mut leader = leader_fx.open(small_segments());
    for (epoch, count) in [(0, 6), (2, 6), (3, 6)] {
        for _ in 0..count {
            leader.append(&mut batch(3, 50, T0), epoch).unwrap();
        }
    }
    // A compacted leader's log has gaps: a batch removed whole.
    let stored = read_all(&leader.reader());
    let mut follower = follower_fx.open(small_segments());
    for (index, (_, bytes)) in stored.iter().enumerate() {
        if index == 4 {
            continue;
        }
        follower.append_replicated(bytes).unwrap();
    }
    let expected: Vec<_> = stored
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(read_all(&follower.reader()), expected);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());

    // Refused whole: a batch behind the log end, a batch from an older epoch, a damaged batch.
    let end = follower.log_end_offset();
    let mut more = batch(1, 10, T0);
    set_offset_and_epoch(&mut more, end, 3);
    let mut behind = batch(1, 10, T0);
    set_offset_and_epoch(&mut behind, end - 1, 3);
    let mut older = batch(1, 10, T0);
    set_offset_and_epoch(&mut older, end, 2);
    for (bad, what) in [(behind, "behind"), (older, "older epoch")] {
        assert!(
            matches!(
                follower.append_replicated(&bad),
                Err(Error::NotContiguous { index: 0, .. })
            ),
            "{what}"
        );
        assert_eq!(follower.log_end_offset(), end, "{what}: nothing appended");
    }
    let mut damaged = more.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(matches!(
        follower.append_replicated(&damaged),
        Err(Error::InvalidBatch { .. })
    ));
    // A batch whose CRC holds but whose offset deltas run backwards (found by fuzzing).
    let mut backwards = more.clone();
    backwards[23..27].copy_from_slice(&(-5i32).to_be_bytes());
    let crc = crate::record::batch::compute_crc(&backwards);
    backwards[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        follower.append_replicated(&backwards),
        Err(Error::InvalidBatch { .. })
    ));
    // Two batches where the second overlaps the first: nothing of either goes in.
    let mut overlapping = more.clone();
    overlapping.extend_from_slice(&more);
    assert!(matches!(
        follower.append_replicated(&overlapping),
        Err(Error::NotContiguous { index: 1, .. })
    ));
    assert_eq!(follower.log_end_offset(), end);
    follower.append_replicated(&more).unwrap();
    assert_eq!(follower.log_end_offset(), end + 1);
    // A newer epoch starts in the cache where its first batch does.
    let mut newer = batch(1, 10, T0);
    set_offset_and_epoch(&mut newer, end + 1, 7);
    follower.append_replicated(&newer).unwrap();
    assert_eq!(follower.end_offset_for_epoch(3), (3, end + 1));
    // A gap wider than a segment's 32-bit offsets: the batch starts a segment of its own.
    let far = end + 2 + (1 << 40);
    let mut beyond = batch(2, 10, T0);
    set_offset_and_epoch(&mut beyond, far, 7);
    follower.append_replicated(&beyond).unwrap();
    assert_eq!(follower.log_end_offset(), far + 2);
    let read = follower.reader().read(end + 2, 1 << 20).unwrap();
    assert_eq!(read.records, beyond);
    // One append spanning such a gap cannot be placed: refused whole.
    let mut near = batch(1, 10, T0);
    set_offset_and_epoch(&mut near, far + 2, 7);
    let mut wide = batch(1, 10, T0);
    set_offset_and_epoch(&mut wide, far + 3 + (1 << 33), 7);
    near.extend_from_slice(&wide);
    assert!(matches!(
        follower.append_replicated(&near),
        Err(Error::NotContiguous { index: 1, .. })
    ));
    follower.close().unwrap();
    let follower = follower_fx.open(small_segments());
    assert_eq!(follower.end_offset_for_epoch(7), (7, far + 2));
    assert_eq!(
        follower.reader().read(far, 1 << 20).unwrap().records,
        beyond
    );

    // An empty log whose first replicated batch lies far past its start.
    let fx = Fixture::new();
    let mut fresh = fx.open(small_segments());
    fresh.append_replicated(&beyond).unwrap();
    fresh.close().unwrap();
    let fresh = fx.open(small_segments());
    assert_eq!(fresh.log_end_offset(), far + 2);
    assert_eq!(fresh.reader().read(far, 1 << 20).unwrap().records, beyond);
}

#[test]
fn clean_reopen_keeps_everything() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    for _ in 0..15 {
        append(&mut log, batch(2, 200, T0));
    }
    let before = read_all(&log.reader());
    log.close().unwrap();
    let log = fx.open(small_segments());
    assert_eq!(read_all(&log.reader()), before);
    assert_eq!(log.log_end_offset(), 30);
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    for i in 0..20 {
        append(&mut log, batch(2, 200, T0 + i));
    }
    let before = read_all(&log.reader());
    log.close().unwrap();
    fs::remove_file(fx.path(0, "index")).unwrap();
    let bases = fx.open(small_segments()).reader().segment_base_offsets();
    fs::write(fx.path(bases[1], "index"), [1u8, 2, 3]).unwrap();
    fs::write(fx.path(bases[2], "timeindex"), [0xffu8; 24]).unwrap();
    let log = fx.open(small_segments());
    assert_eq!(read_all(&log.reader()), before);
    assert_eq!(log.reader().read(5, 10).unwrap().next_offset, 6);
    assert!(
        fs::metadata(fx.path(0, "index")).unwrap().len() > 0,
        "rebuilt and written back"
    );
}

#[test]
fn recovery_cuts_a_torn_tail() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    let mut stored = Vec::new();
    for _ in 0..5 {
        stored.push(append(&mut log, batch(2, 100, T0)).1);
    }
    log.flush().unwrap();
    drop(log); // crash: no checkpoint beyond the empty log
    // Half of a sixth batch reached the file.
    let mut half = batch(2, 100, T0);
    set_offset_and_epoch(&mut half, 10, 3);
    let mut file = OpenOptions::new()
        .append(true)
        .open(fx.path(0, "log"))
        .unwrap();
    file.write_all(&half[..half.len() / 2]).unwrap();
    drop(file);

    let mut log = fx.open(LogConfig::default());
    assert_eq!(log.log_end_offset(), 10);
    let all: Vec<Vec<u8>> = read_all(&log.reader())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(all, stored);
    let (info, _) = append(&mut log, batch(1, 10, T0));
    assert_eq!(info.base_offset, 10);
}

#[test]
fn recovery_cuts_at_a_flipped_byte_in_the_active_tail() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    let mut stored = Vec::new();
    for _ in 0..5 {
        stored.push(append(&mut log, batch(2, 100, T0)).1);
    }
    log.checkpoint().unwrap(); // recovery point 0: nothing flushed before the checkpoint
    drop(log);
    let fourth_at: usize = stored[..3].iter().map(Vec::len).sum();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.path(0, "log"))
        .unwrap();
    let mut byte = [0u8];
    let at = (fourth_at + HEADER_LEN + 20) as u64;
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop(file);

    let log = fx.open(LogConfig::default());
    assert_eq!(
        log.log_end_offset(),
        6,
        "cut before the damaged fourth batch"
    );
    let all: Vec<Vec<u8>> = read_all(&log.reader())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(all, stored[..3]);
    assert_eq!(
        fs::metadata(fx.path(0, "log")).unwrap().len() as usize,
        fourth_at
    );
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_fails_reads_of_that_range_only() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    for _ in 0..20 {
        append(&mut log, batch(2, 200, T0));
    }
    log.close().unwrap();
    let bases = fx.open(small_segments()).reader().segment_base_offsets();
    assert!(bases.len() >= 3);
    let damaged_base = bases[1];
    // Flip a byte inside the first batch of the second segment.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.path(damaged_base, "log"))
        .unwrap();
    file.write_all_at(&[0xee], (HEADER_LEN + 30) as u64)
        .unwrap();
    drop(file);

    let log = fx.open(small_segments());
    assert_eq!(log.log_end_offset(), 40, "nothing was cut");
    let reader = log.reader();
    assert!(matches!(
        reader.read(damaged_base, 1 << 20),
        Err(Error::CorruptBatch {
            position: 0,
            source: BatchError::CrcMismatch { .. },
            ..
        })
    ));
    assert!(matches!(
        reader.read(damaged_base + 1, 1 << 20),
        Err(Error::CorruptBatch { .. })
    ));
    // Before and after the damaged batch, reads work.
    assert!(!reader.read(0, 1 << 20).unwrap().records.is_empty());
    let after = reader.read(damaged_base + 2, 1 << 20).unwrap();
    assert_eq!(
        BatchHeader::parse(&after.records).unwrap().base_offset,
        damaged_base + 2
    );
    assert!(!reader.read(bases[2], 1 << 20).unwrap().records.is_empty());
}

#[test]
fn group_commit_makes_concurrent_appends_durable() {
    let fx = Fixture::new();
    let log = std::sync::Mutex::new(fx.open(LogConfig::default()));
    let flusher = log.lock().unwrap().flusher();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let mut bytes = batch(4, 64, T0);
                    let info = log.lock().unwrap().append(&mut bytes, 0).unwrap();
                    flusher.flush_to(info.last_offset + 1).unwrap();
                    assert!(flusher.durable_offset() > info.last_offset);
                }
            });
        }
    });
    let log = log.into_inner().unwrap();
    assert_eq!(log.log_end_offset(), 8 * 25 * 4);
    assert_eq!(flusher.durable_offset(), 8 * 25 * 4);
    let offsets: Vec<i64> = read_all(&log.reader()).iter().map(|(b, _)| *b).collect();
    assert_eq!(offsets, (0..200).map(|i| i * 4).collect::<Vec<_>>());
}

#[test]
fn readers_on_other_threads_see_appends_while_they_happen() {
    let fx = Fixture::new();
    let mut log = fx.open(small_segments());
    let reader = log.reader();
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let mut seen = 0;
            let mut offset = 0;
            while seen < 300 {
                let read = reader.read(offset, 4096).unwrap();
                for item in split_batches(&read.records) {
                    let (header, bytes) = item.unwrap();
                    assert_eq!(header.base_offset, offset);
                    batch::validate(bytes).unwrap();
                    offset = header.next_offset();
                    seen += 1;
                }
            }
            offset
        });
        for _ in 0..300 {
            append(&mut log, batch(1, 100, T0));
        }
        assert_eq!(handle.join().unwrap(), 300);
    });
}

#[test]
fn stored_records_keep_keys_values_and_headers() {
    let fx = Fixture::new();
    let mut log = fx.open(LogConfig::default());
    append(&mut log, batch(3, 7, T0));
    let read = log.reader().read(0, 1 << 20).unwrap();
    let header = BatchHeader::parse(&read.records).unwrap();
    let records: Vec<_> = Records::new(&read.records[HEADER_LEN..], header.record_count)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records[2].key, Some(&b"key-2"[..]));
    assert_eq!(records[2].value, Some(&b"ccccccc"[..]));
    assert_eq!(records[2].headers, vec![(&b"trace"[..], Some(&b"2"[..]))]);
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_len: usize,
    },
    Read {
        at: prop::sample::Index,
        max_bytes: usize,
    },
    Roll,
    Reopen {
        clean: bool,
    },
    Truncate {
        at: prop::sample::Index,
    },
    DeleteRecords {
        at: prop::sample::Index,
    },
    RetainBytes {
        limit: u64,
    },
    Tick {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..4, 0usize..300).prop_map(|(records, value_len)| Op::Append { records, value_len }),
        4 => (any::<prop::sample::Index>(), 1usize..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::Roll),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => any::<prop::sample::Index>().prop_map(|at| Op::Truncate { at }),
        1 => any::<prop::sample::Index>().prop_map(|at| Op::DeleteRecords { at }),
        1 => (1000u64..8000).prop_map(|limit| Op::RetainBytes { limit }),
        1 => (0i64..30_000).prop_map(|ms| Op::Tick { ms }),
    ]
}

/// The model: the batches as stored, and the log start offset.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<(i64, i64, Vec<u8>)>,
    log_start: i64,
}

impl Model {
    fn log_end(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.log_start, |(_, last, _)| last + 1)
            .max(self.log_start)
    }

    fn readable(&self) -> impl Iterator<Item = &(i64, i64, Vec<u8>)> {
        self.batches
            .iter()
            .filter(|(_, last, _)| *last >= self.log_start)
    }
}

fn model_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        segment_ms: 20_000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

proptest! {
    #[test]
    fn log_matches_its_model(ops in proptest::collection::vec(op(), 1..60)) {
        let fx = Fixture::new();
        let mut config = model_config();
        let mut log = Some(fx.open(config.clone()));
        let mut model = Model::default();
        for op in ops {
            let current = log.as_mut().unwrap();
            match op {
                Op::Append { records, value_len } => {
                    let (info, stored) = append(current, batch(records, value_len, fx.clock.now_ms()));
                    prop_assert_eq!(info.base_offset, model.log_end());
                    model.batches.push((info.base_offset, info.last_offset, stored));
                }
                Op::Read { at, max_bytes } => {
                    let start = model.log_start;
                    let offset = start + at.index((model.log_end() - start + 1) as usize) as i64;
                    let read = current.reader().read(offset, max_bytes).unwrap();
                    let expected: Vec<_> = model.readable().filter(|(_, last, _)| *last >= offset).collect();
                    let got: Vec<_> = split_batches(&read.records).map(|b| b.unwrap().1.to_vec()).collect();
                    prop_assert_eq!(got.is_empty(), expected.is_empty());
                    prop_assert!(got.len() <= expected.len());
                    for (got, (_, _, want)) in got.iter().zip(&expected) {
                        prop_assert_eq!(got, want);
                    }
                    if got.len() > 1 {
                        prop_assert!(read.records.len() <= max_bytes);
                    }
                }
                Op::Roll => current.roll().unwrap(),
                Op::Reopen { clean } => {
                    let old = log.take().unwrap();
                    if clean { old.close().unwrap() } else { drop(old) }
                    log = Some(fx.open(config.clone()));
                }
                Op::Truncate { at } => {
                    let start = model.log_start;
                    let offset = start + at.index((model.log_end() - start + 1) as usize) as i64;
                    let new_end = current.truncate_to(offset).unwrap();
                    if offset < model.log_end() {
                        // The batch holding `offset` goes too: the log ends at its base.
                        let cut = model.batches.iter().position(|(_, last, _)| *last >= offset).unwrap();
                        let expected_end = model.batches[cut].0;
                        model.batches.truncate(cut);
                        prop_assert_eq!(new_end, expected_end);
                        model.log_start = model.log_start.min(new_end);
                    }
                }
                Op::DeleteRecords { at } => {
                    let start = model.log_start;
                    let offset = start + at.index((model.log_end() - start + 1) as usize) as i64;
                    prop_assert_eq!(current.delete_records_before(offset).unwrap(), offset);
                    model.log_start = offset;
                }
                Op::RetainBytes { limit } => {
                    config.retention_bytes = Some(limit);
                    current.set_config(config.clone());
                    let outcome = current.enforce_retention().unwrap();
                    prop_assert!(outcome.log_start_offset >= model.log_start);
                    let start = outcome.log_start_offset;
                    prop_assert!(start == model.log_end() || model.batches.iter().any(|b| b.0 == start) || start == model.log_start);
                    model.log_start = start;
                    config.retention_bytes = None;
                    current.set_config(config.clone());
                }
                Op::Tick { ms } => fx.clock.advance(ms),
            }
            let current = log.as_ref().unwrap();
            prop_assert_eq!(current.offsets().log_start_offset(), model.log_start);
            prop_assert_eq!(current.offsets().log_end_offset(), model.log_end());
        }
        // Everything readable is there, byte for byte, offsets contiguous.
        let log = log.take().unwrap();
        let all = read_all(&log.reader());
        let expected: Vec<_> = model.readable().map(|(base, _, bytes)| (*base, bytes.clone())).collect();
        prop_assert_eq!(all, expected);
        log.close().unwrap();
        let log = fx.open(config);
        prop_assert_eq!(log.offsets().log_end_offset(), model.log_end());
    }
}
