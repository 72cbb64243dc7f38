//! The replica fetch messages as bytes: sans-IO, no gRPC types. A follower sends a
//! [`FetchRequest`] naming every partition it follows on the leader it talks to; the leader
//! answers with a [`FetchResponse`] carrying, per partition, the record batches exactly as its
//! log stores them (never re-encoded), its high watermark, log start and log end, or an error
//! (Kafka's codes) and, where the follower's log has diverged, the epoch and end offset it must
//! truncate to (KIP-101, KIP-279).
//!
//! Layout: big-endian integers, a leading version and kind byte, counts as `u32` and record bytes
//! as a `u32` length. Decoding never trusts a count or length: each is checked against the bytes
//! that remain before anything is allocated, and trailing bytes are an error. Records are kept
//! as a slice of the received buffer (no copy).

use bytes::{Buf, BufMut, Bytes};

/// The only layout so far; a peer that sends another is refused with [`DecodeError::Version`].
pub const VERSION: u8 = 0;
const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;

/// Bytes of one partition entry of a request.
const REQUEST_PARTITION_LEN: usize = 16 + 4 + 4 + 8 + 4 + 8 + 4;
/// Bytes of one partition entry of a response without its records.
const RESPONSE_PARTITION_MIN_LEN: usize = 16 + 4 + 2 + 4 + 8 + 8 + 8 + 1 + 4;

/// A follower's fetch: where it stands on every partition it follows on this leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The follower's broker id.
    pub follower: i32,
    /// The follower's broker epoch (its registration), so a leader can tell a restarted
    /// follower from the process it replaced (KIP-841, KIP-903).
    pub broker_epoch: i64,
    /// How long the leader may hold the request while no partition has anything new.
    pub max_wait_ms: u32,
    /// Record bytes across the response (at least one batch is sent whatever its size).
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

/// One partition of a [`FetchRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    /// The leader epoch the follower follows in (the leader refuses another).
    pub current_leader_epoch: i32,
    /// The follower's log end: where the leader reads from.
    pub fetch_offset: i64,
    /// The leader epoch of the follower's last batch (-1: its log is empty), checked against the
    /// leader's epoch cache before anything is sent.
    pub last_fetched_epoch: i32,
    /// How far the follower holds the log durably (exclusive): what counts for the high watermark.
    pub durable_offset: i64,
    /// Record bytes for this partition.
    pub max_bytes: u32,
}

/// The leader's answer to one [`FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// A Kafka error code for the whole request (0: none), e.g. STALE_BROKER_EPOCH.
    pub error: i16,
    pub partitions: Vec<PartitionData>,
}

/// One partition of a [`FetchResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionData {
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    /// A Kafka error code (0: none): NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
    /// UNKNOWN_LEADER_EPOCH, OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_ID, ...
    pub error: i16,
    /// The leader's epoch for the partition.
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Set when the follower's log diverged from the leader's: truncate to this end offset of
    /// this epoch before fetching again. No records come with it.
    pub diverging: Option<EpochEnd>,
    /// Whole record batches as the leader stored them, from the fetch offset.
    pub records: Bytes,
}

/// The end offset of a leader epoch, as the leader's epoch cache has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

/// Why bytes are not a replica fetch message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message ends at byte {at}, {needed} more bytes were expected")]
    Truncated { at: usize, needed: usize },
    #[error("unknown message version {0}")]
    Version(u8),
    #[error("expected a {expected} message, found kind {found}")]
    Kind { expected: &'static str, found: u8 },
    #[error("{count} partitions cannot fit in the {remaining} bytes that remain")]
    Count { count: u32, remaining: usize },
    #[error("a diverging-epoch flag of {0} (0 or 1 expected)")]
    Flag(u8),
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
}

impl FetchRequest {
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(VERSION);
        dst.put_u8(KIND_REQUEST);
        dst.put_i32(self.follower);
        dst.put_i64(self.broker_epoch);
        dst.put_u32(self.max_wait_ms);
        dst.put_u32(self.max_bytes);
        put_count(dst, self.partitions.len());
        for p in &self.partitions {
            dst.put_slice(p.topic_id.as_bytes());
            dst.put_i32(p.partition);
            dst.put_i32(p.current_leader_epoch);
            dst.put_i64(p.fetch_offset);
            dst.put_i32(p.last_fetched_epoch);
            dst.put_i64(p.durable_offset);
            dst.put_u32(p.max_bytes);
        }
    }

    pub fn encoded_len(&self) -> usize {
        2 + 4 + 8 + 4 + 4 + 4 + self.partitions.len() * REQUEST_PARTITION_LEN
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.into()
    }

    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header("request", KIND_REQUEST)?;
        let follower = r.i32()?;
        let broker_epoch = r.i64()?;
        let max_wait_ms = r.u32()?;
        let max_bytes = r.u32()?;
        let count = r.count(REQUEST_PARTITION_LEN)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(FetchPartition {
                topic_id: r.uuid()?,
                partition: r.i32()?,
                current_leader_epoch: r.i32()?,
                fetch_offset: r.i64()?,
                last_fetched_epoch: r.i32()?,
                durable_offset: r.i64()?,
                max_bytes: r.u32()?,
            });
        }
        r.finish()?;
        Ok(Self {
            follower,
            broker_epoch,
            max_wait_ms,
            max_bytes,
            partitions,
        })
    }
}

impl FetchResponse {
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(VERSION);
        dst.put_u8(KIND_RESPONSE);
        dst.put_i16(self.error);
        put_count(dst, self.partitions.len());
        for p in &self.partitions {
            dst.put_slice(p.topic_id.as_bytes());
            dst.put_i32(p.partition);
            dst.put_i16(p.error);
            dst.put_i32(p.leader_epoch);
            dst.put_i64(p.high_watermark);
            dst.put_i64(p.log_start_offset);
            dst.put_i64(p.log_end_offset);
            match p.diverging {
                Some(EpochEnd { epoch, end_offset }) => {
                    dst.put_u8(1);
                    dst.put_i32(epoch);
                    dst.put_i64(end_offset);
                }
                None => dst.put_u8(0),
            }
            put_count(dst, p.records.len());
            dst.put_slice(&p.records);
        }
    }

    pub fn encoded_len(&self) -> usize {
        2 + 2
            + 4
            + self
                .partitions
                .iter()
                .map(|p| {
                    RESPONSE_PARTITION_MIN_LEN + p.diverging.map_or(0, |_| 12) + p.records.len()
                })
                .sum::<usize>()
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.into()
    }

    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header("response", KIND_RESPONSE)?;
        let error = r.i16()?;
        let count = r.count(RESPONSE_PARTITION_MIN_LEN)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            let topic_id = r.uuid()?;
            let partition = r.i32()?;
            let error = r.i16()?;
            let leader_epoch = r.i32()?;
            let high_watermark = r.i64()?;
            let log_start_offset = r.i64()?;
            let log_end_offset = r.i64()?;
            let diverging = match r.u8()? {
                0 => None,
                1 => Some(EpochEnd {
                    epoch: r.i32()?,
                    end_offset: r.i64()?,
                }),
                other => return Err(DecodeError::Flag(other)),
            };
            let length = r.u32()?;
            let records = r.bytes(length)?;
            partitions.push(PartitionData {
                topic_id,
                partition,
                error,
                leader_epoch,
                high_watermark,
                log_start_offset,
                log_end_offset,
                diverging,
                records,
            });
        }
        r.finish()?;
        Ok(Self { error, partitions })
    }
}

/// Counts and lengths are `u32` on the wire; the encoder is given no more (a message is bounded
/// far below 4 GiB by the transport's message limit).
fn put_count(dst: &mut impl BufMut, count: usize) {
    dst.put_u32(u32::try_from(count).expect("a count below 2^32"));
}

/// Reads a message front to back, every read checked against what remains.
struct Reader {
    bytes: Bytes,
    len: usize,
}

impl Reader {
    fn new(bytes: Bytes) -> Self {
        let len = bytes.len();
        Self { bytes, len }
    }

    fn need(&self, needed: usize) -> Result<(), DecodeError> {
        if self.bytes.remaining() < needed {
            return Err(DecodeError::Truncated {
                at: self.len - self.bytes.remaining(),
                needed: needed - self.bytes.remaining(),
            });
        }
        Ok(())
    }

    fn header(&mut self, expected: &'static str, kind: u8) -> Result<(), DecodeError> {
        let version = self.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let found = self.u8()?;
        if found != kind {
            return Err(DecodeError::Kind { expected, found });
        }
        Ok(())
    }

    /// The next `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut out = [0; N];
        self.bytes.copy_to_slice(&mut out);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn uuid(&mut self) -> Result<uuid::Uuid, DecodeError> {
        Ok(uuid::Uuid::from_bytes(self.array()?))
    }

    fn bytes(&mut self, length: u32) -> Result<Bytes, DecodeError> {
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        self.need(length)?;
        Ok(self.bytes.split_to(length))
    }

    /// A count of entries of at least `entry_len` bytes each, refused when they cannot fit.
    fn count(&mut self, entry_len: usize) -> Result<usize, DecodeError> {
        let count = self.u32()?;
        let remaining = self.bytes.remaining();
        let fits = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(entry_len))
            .is_some_and(|needed| needed <= remaining);
        if !fits {
            return Err(DecodeError::Count { count, remaining });
        }
        Ok(count as usize)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::Trailing(trailing)),
        }
    }
}

/// Decodes `bytes` as either message (the fuzz target's entry point): what decodes must encode
/// back to the same bytes.
pub fn decode_any(bytes: &[u8]) -> Result<(), DecodeError> {
    let owned = Bytes::copy_from_slice(bytes);
    let request = FetchRequest::decode(owned.clone()).map(|m| m.to_bytes());
    let response = FetchResponse::decode(owned).map(|m| m.to_bytes());
    match (request, response) {
        (Ok(encoded), _) | (_, Ok(encoded)) => {
            assert_eq!(encoded, bytes, "a decoded message encodes to other bytes");
            Ok(())
        }
        (Err(error), Err(_)) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> FetchRequest {
        FetchRequest {
            follower: 2,
            broker_epoch: 41,
            max_wait_ms: 500,
            max_bytes: 1 << 20,
            partitions: vec![
                FetchPartition {
                    topic_id: uuid::Uuid::from_u128(7),
                    partition: 0,
                    current_leader_epoch: 3,
                    fetch_offset: 120,
                    last_fetched_epoch: 2,
                    durable_offset: 118,
                    max_bytes: 1 << 16,
                },
                FetchPartition {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 5,
                    current_leader_epoch: 0,
                    fetch_offset: 0,
                    last_fetched_epoch: -1,
                    durable_offset: 0,
                    max_bytes: 1 << 16,
                },
            ],
        }
    }

    fn response() -> FetchResponse {
        FetchResponse {
            error: 0,
            partitions: vec![
                PartitionData {
                    topic_id: uuid::Uuid::from_u128(7),
                    partition: 0,
                    error: 0,
                    leader_epoch: 3,
                    high_watermark: 118,
                    log_start_offset: 4,
                    log_end_offset: 130,
                    diverging: None,
                    records: Bytes::from_static(b"batches as stored"),
                },
                PartitionData {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition: 5,
                    error: 0,
                    leader_epoch: 4,
                    high_watermark: 10,
                    log_start_offset: 0,
                    log_end_offset: 12,
                    diverging: Some(EpochEnd {
                        epoch: 2,
                        end_offset: 9,
                    }),
                    records: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn both_messages_round_trip_and_their_length_is_exact() {
        let request = request();
        let bytes = request.to_bytes();
        assert_eq!(bytes.len(), request.encoded_len());
        assert_eq!(FetchRequest::decode(bytes).unwrap(), request);

        let response = response();
        let bytes = response.to_bytes();
        assert_eq!(bytes.len(), response.encoded_len());
        let decoded = FetchResponse::decode(bytes.clone()).unwrap();
        assert_eq!(decoded, response);
        // The records are a view of the received buffer, not a copy.
        let records = &decoded.partitions[0].records;
        let start = records.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(&bytes[start..start + records.len()], b"batches as stored");
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        for bytes in [request().to_bytes(), response().to_bytes()] {
            for end in 0..bytes.len() {
                let cut = bytes.slice(..end);
                assert!(FetchRequest::decode(cut.clone()).is_err(), "cut at {end}");
                assert!(FetchResponse::decode(cut).is_err(), "cut at {end}");
            }
        }
    }

    #[test]
    fn hostile_counts_lengths_and_flags_are_refused_before_allocating() {
        // Four billion partitions in a few bytes.
        let mut bytes = request().to_bytes().to_vec();
        bytes[22..26].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            FetchRequest::decode(bytes.into()),
            Err(DecodeError::Count {
                count: u32::MAX,
                remaining: 2 * REQUEST_PARTITION_LEN
            })
        );

        // A record length past the end.
        let mut bytes = response().to_bytes().to_vec();
        let at = 8 + RESPONSE_PARTITION_MIN_LEN - 4;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            FetchResponse::decode(bytes.into()),
            Err(DecodeError::Truncated { .. })
        ));

        // A diverging flag that is neither 0 nor 1.
        let mut bytes = response().to_bytes().to_vec();
        bytes[8 + RESPONSE_PARTITION_MIN_LEN - 5] = 7;
        assert_eq!(
            FetchResponse::decode(bytes.into()),
            Err(DecodeError::Flag(7))
        );

        // Another version, the other kind, bytes after the end.
        let mut bytes = request().to_bytes().to_vec();
        bytes[0] = 1;
        assert_eq!(
            FetchRequest::decode(bytes.into()),
            Err(DecodeError::Version(1))
        );
        assert_eq!(
            FetchResponse::decode(request().to_bytes()),
            Err(DecodeError::Kind {
                expected: "response",
                found: KIND_REQUEST
            })
        );
        let mut bytes = response().to_bytes().to_vec();
        bytes.push(0);
        assert_eq!(
            FetchResponse::decode(bytes.into()),
            Err(DecodeError::Trailing(1))
        );
    }

    #[test]
    fn decode_any_accepts_both_and_rejects_garbage() {
        assert_eq!(decode_any(&request().to_bytes()), Ok(()));
        assert_eq!(decode_any(&response().to_bytes()), Ok(()));
        assert!(decode_any(b"\x00\x03").is_err());
        assert!(decode_any(b"").is_err());
    }
}
