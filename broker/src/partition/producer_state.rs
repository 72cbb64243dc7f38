//! Idempotent-producer state of one partition, as a pure value: for each producer id its epoch
//! and the sequence ranges and offsets of its last five batches. A batch is checked before it
//! is appended ([`ProducerState::check`]) and recorded after ([`ProducerState::record`]):
//! - a retry of one of the last five batches is a duplicate: answered with its original
//!   offsets, not appended again;
//! - a sequence that does not follow the last one is `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - an older epoch is `INVALID_PRODUCER_EPOCH`; a newer epoch starts again at sequence 0.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::record::BatchHeader;

/// Batches remembered per producer, as in Kafka.
pub const CACHED_BATCHES: usize = 5;

/// A remembered batch: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
}

/// The verdict on a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already appended: answer with these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
    OutOfOrderSequence {
        expected: i32,
        found: i32,
    },
    InvalidEpoch {
        current: i16,
        found: i16,
    },
    /// A producer the partition has no state for, starting past sequence 0.
    UnknownProducer,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((i64::from(header.base_sequence) + i64::from(header.last_offset_delta))
        % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerState {
    pub fn check(&self, header: &BatchHeader) -> Check {
        if header.producer_id < 0 {
            return Check::Append;
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return if header.base_sequence == 0 {
                Check::Append
            } else {
                Check::UnknownProducer
            };
        };
        if header.producer_epoch < entry.epoch {
            return Check::InvalidEpoch {
                current: entry.epoch,
                found: header.producer_epoch,
            };
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                Check::Append
            } else {
                Check::OutOfOrderSequence {
                    expected: 0,
                    found: header.base_sequence,
                }
            };
        }
        let last = last_sequence(header);
        if let Some(done) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
        {
            return Check::Duplicate {
                base_offset: done.base_offset,
                last_offset: done.last_offset,
            };
        }
        let expected = entry.batches.back().map_or(0, |b| {
            if b.last_sequence == i32::MAX {
                0
            } else {
                b.last_sequence + 1
            }
        });
        if header.base_sequence == expected {
            Check::Append
        } else {
            Check::OutOfOrderSequence {
                expected,
                found: header.base_sequence,
            }
        }
    }

    /// Records an appended batch (`header` carries its assigned base offset).
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchRecord {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        records: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn sequences_must_follow_and_retries_get_their_offsets() {
        let mut state = ProducerState::default();
        let first = batch(7, 0, 0, 3, 100);
        assert_eq!(state.check(&first), Check::Append);
        state.record(&first);
        assert_eq!(
            state.check(&batch(7, 0, 0, 3, 0)),
            Check::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        assert_eq!(
            state.check(&batch(7, 0, 5, 1, 0)),
            Check::OutOfOrderSequence {
                expected: 3,
                found: 5
            }
        );
        let second = batch(7, 0, 3, 2, 103);
        assert_eq!(state.check(&second), Check::Append);
        state.record(&second);
        assert_eq!(
            state.check(&batch(7, 0, 3, 2, 0)),
            Check::Duplicate {
                base_offset: 103,
                last_offset: 104
            }
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = ProducerState::default();
        for i in 0..7 {
            state.record(&batch(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(
            state.check(&batch(1, 0, 2, 1, 0)),
            Check::Duplicate {
                base_offset: 2,
                last_offset: 2
            }
        );
        assert!(matches!(
            state.check(&batch(1, 0, 1, 1, 0)),
            Check::OutOfOrderSequence { expected: 7, .. }
        ));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut state = ProducerState::default();
        state.record(&batch(1, 3, 0, 1, 0));
        assert_eq!(
            state.check(&batch(1, 2, 1, 1, 0)),
            Check::InvalidEpoch {
                current: 3,
                found: 2
            }
        );
        assert_eq!(
            state.check(&batch(1, 4, 5, 1, 0)),
            Check::OutOfOrderSequence {
                expected: 0,
                found: 5
            }
        );
        assert_eq!(state.check(&batch(1, 4, 0, 1, 0)), Check::Append);
        assert_eq!(state.check(&batch(2, 0, 9, 1, 0)), Check::UnknownProducer);
        assert_eq!(state.check(&batch(-1, -1, -1, 4, 0)), Check::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut state = ProducerState::default();
        state.record(&batch(1, 0, 0, 1, 0));
        let mut high = ProducerState::default();
        high.producers.insert(
            1,
            ProducerEntry {
                epoch: 0,
                batches: VecDeque::new(),
            },
        );
        high.record(&batch(1, 0, i32::MAX - 1, 2, 10));
        assert_eq!(high.check(&batch(1, 0, 0, 1, 0)), Check::Append);
    }
}
