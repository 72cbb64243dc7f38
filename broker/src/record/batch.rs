//! Kafka `RecordBatch` v2: header parsing, validation of what producers send, and the two in-place
//! header edits the broker makes (offsets, leader epoch; `LogAppendTime`).
//!
//! Layout (big-endian), from the Kafka "Message Format" docs:
//!
//! ```text
//! 0  baseOffset i64          | outside the CRC: the broker writes it
//! 8  batchLength i32         | bytes after this field
//! 12 partitionLeaderEpoch i32| outside the CRC: the broker writes it
//! 16 magic i8 (= 2)
//! 17 crc u32                 | CRC-32C of bytes 21..end
//! 21 attributes i16          | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control
//! 23 lastOffsetDelta i32
//! 27 baseTimestamp i64
//! 35 maxTimestamp i64
//! 43 producerId i64
//! 51 producerEpoch i16
//! 53 baseSequence i32
//! 57 recordCount i32
//! 61 records...
//! ```

use std::borrow::Cow;

use super::compression::{self, CodecError};
use super::varint::{VarintError, read_varint, read_varlong};

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the part counted by `batchLength` (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            codec => Err(BatchError::InvalidCompression { codec: codec as u8 }),
        }
    }

    /// The codec's bits in the attributes field.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

/// Which clock a batch's timestamps come from (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps.
    CreateTime,
    /// The broker's clock at append; `maxTimestamp` holds it.
    LogAppendTime,
}

/// Why bytes are not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{len} bytes are too few for the {HEADER_LEN}-byte record batch header")]
    TooShort { len: usize },
    #[error("batchLength says the batch is {declared} bytes but {available} bytes are there")]
    LengthMismatch { declared: i64, available: usize },
    #[error("magic byte {magic}: only v2 record batches (magic 2) are accepted")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC-32C mismatch: the header says {expected:#010x}, the bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("compression codec {codec} in the attributes is not a Kafka codec")]
    InvalidCompression { codec: u8 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    CountMismatch { count: i32, last_offset_delta: i32 },
    #[error("record {index} is malformed: {defect}")]
    MalformedRecord { index: usize, defect: RecordDefect },
    #[error("the {codec:?} payload does not decompress")]
    Decompression { codec: Compression },
    #[error("the {codec:?} payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge { codec: Compression, limit: usize },
    #[error("the records could not be re-encoded with {codec:?}")]
    Recompression { codec: Compression },
}

/// Why [`recompress`] refused a produce request's records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecompressError {
    #[error("record batch {index} is invalid: {source}")]
    Invalid {
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("a record batch of {size} bytes exceeds max.message.bytes ({max})")]
    TooLarge { size: usize, max: usize },
}

/// What is wrong inside one record of an uncompressed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordDefect {
    #[error("a varint is truncated or too long")]
    BadVarint,
    #[error("its length is negative or runs past the end of the batch")]
    BadLength,
    #[error("its fields do not fill exactly its declared length")]
    LengthDisagrees,
    #[error("offset delta {found} where {expected} was expected")]
    OffsetDelta { expected: i32, found: i32 },
    #[error("offset delta {found} does not follow the previous record's {previous}")]
    OffsetDeltaNotIncreasing { previous: i32, found: i32 },
    #[error("a key, value or header has a negative length other than -1")]
    BadFieldLength,
    #[error("bytes remain after the last record")]
    TrailingBytes,
    #[error("the batch ends before its last record")]
    MissingRecords,
}

impl From<VarintError> for RecordDefect {
    fn from(_: VarintError) -> Self {
        Self::BadVarint
    }
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

/// The decoded fixed header of a v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Decodes the header from the first [`HEADER_LEN`] bytes. Checks only that they are there.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::TooShort { len: buf.len() });
        }
        Ok(Self {
            base_offset: be_i64(buf, BASE_OFFSET),
            batch_length: be_i32(buf, BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH),
            magic: buf[MAGIC] as i8,
            crc: be_i32(buf, CRC) as u32,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            record_count: be_i32(buf, RECORD_COUNT),
        })
    }

    /// Whole size of the batch on disk and on the wire, or `None` for a nonsensical length.
    pub fn total_len(&self) -> Option<usize> {
        let rest = usize::try_from(self.batch_length).ok()?;
        let total = rest.checked_add(LOG_OVERHEAD)?;
        (total >= HEADER_LEN).then_some(total)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C of a batch as the header's `crc` field defines it.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Checks the header alone: present, magic 2, a `batchLength` that covers at least the header.
/// Returns the header and the batch's total length, which `buf` need not hold.
pub fn parse_header(buf: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.magic != 2 {
        return Err(BatchError::UnsupportedMagic {
            magic: header.magic,
        });
    }
    let total = header.total_len().ok_or(BatchError::LengthMismatch {
        declared: i64::from(header.batch_length) + LOG_OVERHEAD as i64,
        available: buf.len(),
    })?;
    Ok((header, total))
}

/// Checks framing only: [`parse_header`] plus the whole batch being within `buf`.
/// Used to walk stored batches cheaply.
pub fn parse_frame(buf: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
    let (header, total) = parse_header(buf)?;
    if total > buf.len() {
        return Err(BatchError::LengthMismatch {
            declared: total as i64,
            available: buf.len(),
        });
    }
    Ok((header, total))
}

/// Checks a stored batch: framing and CRC. `batch` must be exactly one batch.
pub fn verify_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let (header, total) = parse_frame(batch)?;
    if total != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: total as i64,
            available: batch.len(),
        });
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    Ok(header)
}

/// Full validation of one batch a producer sent (`batch` is exactly one batch): framing, CRC,
/// codec, record count against `lastOffsetDelta`, and for uncompressed batches every record's
/// framing. Compressed payloads are not opened: the log stores them as they came (a topic's
/// `compression.type` is applied before the log, by [`recompress`]).
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_with_timestamps(batch).map(|(header, _)| header)
}

/// [`validate`], also returning for an uncompressed batch the earliest and latest record
/// timestamps, read in the same walk over its records (`None` for a compressed batch, whose
/// records are not opened, and for records without timestamps, -1).
pub fn validate_with_timestamps(
    batch: &[u8],
) -> Result<(BatchHeader, Option<(i64, i64)>), BatchError> {
    let header = verify_stored(batch)?;
    let compression = header.compression()?;
    if header.record_count < 1
        || header.record_count.checked_sub(1) != Some(header.last_offset_delta)
    {
        return Err(BatchError::CountMismatch {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let mut range: Option<(i64, i64)> = None;
    if compression == Compression::None {
        let mut records = Records::new(&batch[HEADER_LEN..], header.record_count);
        for record in &mut records {
            let timestamp = header
                .base_timestamp
                .saturating_add(record?.timestamp_delta);
            if timestamp != NO_TIMESTAMP {
                range = Some(range.map_or((timestamp, timestamp), |(low, high)| {
                    (low.min(timestamp), high.max(timestamp))
                }));
            }
        }
    }
    Ok((header, range))
}

/// The records of a batch, uncompressed: borrowed for an uncompressed batch, decompressed
/// otherwise. `batch` is exactly one batch whose header is `header`.
pub fn records_payload<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<Cow<'a, [u8]>, BatchError> {
    let codec = header.compression()?;
    let payload = batch.get(HEADER_LEN..).unwrap_or_default();
    compression::decompress(codec, payload).map_err(|error| match error {
        CodecError::Decompress { codec } | CodecError::Compress { codec } => {
            BatchError::Decompression { codec }
        }
        CodecError::TooLarge { codec, limit } => BatchError::DecompressedTooLarge { codec, limit },
    })
}

/// The records without a key in a batch a producer sent: the indices of the first `keep` of them,
/// in order, and how many there are. A topic with `cleanup.policy=compact` refuses those, and
/// Kafka names them to the producer. Compressed payloads are opened (and every record's framing
/// checked), which is why only compacted topics call this.
pub fn records_without_key(
    batch: &[u8],
    header: &BatchHeader,
    keep: usize,
) -> Result<(Vec<usize>, usize), BatchError> {
    let payload = records_payload(batch, header)?;
    let mut keyless = Vec::new();
    let mut count = 0;
    for (index, record) in Records::new(&payload, header.record_count).enumerate() {
        if record?.key.is_none() {
            count += 1;
            if keyless.len() < keep {
                keyless.push(index);
            }
        }
    }
    Ok((keyless, count))
}

/// Kafka's timestamp of a record that has none.
const NO_TIMESTAMP: i64 = -1;

/// The records of a batch a producer sent whose timestamps fall outside `range` (inclusive): the
/// indices and timestamps of the first `keep`, in order, and how many there are. Compressed
/// payloads are opened, so the log calls this only when the header's timestamps do not already
/// settle it.
pub fn records_out_of_time_range(
    batch: &[u8],
    header: &BatchHeader,
    range: std::ops::RangeInclusive<i64>,
    keep: usize,
) -> Result<(Vec<(usize, i64)>, usize), BatchError> {
    let payload = records_payload(batch, header)?;
    let mut outside = Vec::new();
    let mut count = 0;
    for (index, record) in Records::new(&payload, header.record_count).enumerate() {
        let timestamp = header
            .base_timestamp
            .saturating_add(record?.timestamp_delta);
        // A record without a timestamp (-1) is not judged, as in Kafka.
        if timestamp != NO_TIMESTAMP && !range.contains(&timestamp) {
            count += 1;
            if outside.len() < keep {
                outside.push((index, timestamp));
            }
        }
    }
    Ok((outside, count))
}

/// Encodes a batch from `header` and `payload` (the records, compressed as the attributes say).
/// `batch_length`, `magic` and `crc` are computed, not taken from `header`. `None` when the
/// batch would be too long for `batchLength`.
pub fn encode(header: &BatchHeader, payload: &[u8]) -> Option<Vec<u8>> {
    let batch_length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + payload.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.record_count.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(payload);
    let crc = compute_crc(&out);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// Whether any whole batch in `records` (framing only) uses `codec`.
pub fn uses_codec(records: &[u8], codec: Compression) -> bool {
    split_batches(records)
        .map_while(Result::ok)
        .any(|(header, _)| header.compression() == Ok(codec))
}

/// Whether [`recompress`] has work to do: a batch (not a control batch) in another codec than
/// `codec`, or bytes that do not frame as batches. A scan of the headers only.
pub fn needs_recompress(records: &[u8], codec: Compression) -> bool {
    split_batches(records).any(|item| {
        item.map_or(true, |(header, _)| {
            !header.is_control() && header.compression() != Ok(codec)
        })
    })
}

/// Re-encodes each batch of `records` (a produce request's records for one partition) whose codec
/// is not `codec`, as Kafka's broker does for a topic whose `compression.type` names a codec. The
/// records (offset deltas, timestamps, keys, values, headers) and the producer fields stay; the
/// payload, the codec bits and the CRC are new. Control batches stay as they are. `Ok(None)`:
/// every batch already uses `codec`. Each batch is validated, CRC included, and its records'
/// framing walked before it is re-encoded, so a damaged batch is refused with its index, never
/// given a fresh CRC. As in Kafka, a batch larger than `max_batch_bytes` (`max.message.bytes`)
/// is refused before it is opened and after it is re-encoded.
pub fn recompress(
    records: &[u8],
    codec: Compression,
    max_batch_bytes: usize,
) -> Result<Option<Vec<u8>>, RecompressError> {
    if !needs_recompress(records, codec) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(records.len());
    for (index, item) in split_batches(records).enumerate() {
        let at = |source| RecompressError::Invalid { index, source };
        let (_, batch) = item.map_err(at)?;
        if batch.len() > max_batch_bytes {
            return Err(RecompressError::TooLarge {
                size: batch.len(),
                max: max_batch_bytes,
            });
        }
        let mut header = validate(batch).map_err(at)?;
        if header.is_control() || header.compression() == Ok(codec) {
            out.extend_from_slice(batch);
            continue;
        }
        let payload = records_payload(batch, &header).map_err(at)?;
        for record in Records::new(&payload, header.record_count) {
            record.map_err(at)?;
        }
        let packed = compression::compress(codec, &payload)
            .map_err(|_| at(BatchError::Recompression { codec }))?;
        header.attributes = (header.attributes & !COMPRESSION_MASK) | codec.attribute_bits();
        let encoded = encode(&header, &packed).ok_or(at(BatchError::Recompression { codec }))?;
        if encoded.len() > max_batch_bytes {
            return Err(RecompressError::TooLarge {
                size: encoded.len(),
                max: max_batch_bytes,
            });
        }
        out.extend_from_slice(&encoded);
    }
    Ok(Some(out))
}

/// Writes the broker-assigned base offset and leader epoch. Both sit outside the CRC.
pub fn set_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks the batch as `LogAppendTime` with `now_ms` as its max timestamp. Both fields are inside
/// the CRC, so it is recomputed, as Kafka does.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record as encoded, length prefix included: what compaction copies when it
    /// keeps the record.
    pub raw: &'a [u8],
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Iterates the records of an uncompressed batch payload (the bytes after the header), checking
/// each record's framing and that offset deltas run 0, 1, 2, ... ([`Records::new`], what a
/// producer sends) or only increase ([`Records::stored`], what the log holds after compaction).
#[derive(Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    remaining: i32,
    index: usize,
    failed: bool,
    /// Compaction removes records from a batch without renumbering the rest, so stored batches
    /// may skip offset deltas.
    gaps_allowed: bool,
    previous_delta: Option<i32>,
}

impl<'a> Records<'a> {
    /// Records as a producer sends them: offset deltas 0, 1, 2, ...
    pub fn new(payload: &'a [u8], count: i32) -> Self {
        Self {
            rest: payload,
            remaining: count,
            index: 0,
            failed: false,
            gaps_allowed: false,
            previous_delta: None,
        }
    }

    /// Records as the log stores them: offset deltas increase but may skip values (a compacted
    /// batch keeps its records' offsets).
    pub fn stored(payload: &'a [u8], count: i32) -> Self {
        Self {
            gaps_allowed: true,
            ..Self::new(payload, count)
        }
    }

    fn parse_one(&mut self) -> Result<RecordView<'a>, RecordDefect> {
        let (len, used) = read_varint(self.rest)?;
        let len = usize::try_from(len).map_err(|_| RecordDefect::BadLength)?;
        let end = used.checked_add(len).filter(|&end| end <= self.rest.len());
        let end = end.ok_or(RecordDefect::BadLength)?;
        let raw = &self.rest[..end];
        let mut body = Cursor {
            buf: &self.rest[used..end],
        };
        self.rest = &self.rest[end..];

        let attributes = body.byte()? as i8;
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        if self.gaps_allowed {
            let previous = self.previous_delta.unwrap_or(-1);
            if offset_delta <= previous {
                return Err(RecordDefect::OffsetDeltaNotIncreasing {
                    previous,
                    found: offset_delta,
                });
            }
            self.previous_delta = Some(offset_delta);
        } else {
            let expected = i32::try_from(self.index).map_err(|_| RecordDefect::BadLength)?;
            if offset_delta != expected {
                return Err(RecordDefect::OffsetDelta {
                    expected,
                    found: offset_delta,
                });
            }
        }
        let key = body.nullable_bytes()?;
        let value = body.nullable_bytes()?;
        let header_count = body.varint()?;
        let header_count =
            usize::try_from(header_count).map_err(|_| RecordDefect::BadFieldLength)?;
        // Each header takes at least two bytes, which bounds the allocation by the input size.
        if header_count > body.buf.len() / 2 {
            return Err(RecordDefect::LengthDisagrees);
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let key = body.nullable_bytes()?.ok_or(RecordDefect::BadFieldLength)?;
            let value = body.nullable_bytes()?;
            headers.push((key, value));
        }
        if !body.buf.is_empty() {
            return Err(RecordDefect::LengthDisagrees);
        }
        Ok(RecordView {
            raw,
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let index = self.index;
        let result = if self.remaining <= 0 {
            if self.rest.is_empty() {
                return None;
            }
            Err(RecordDefect::TrailingBytes)
        } else if self.rest.is_empty() {
            Err(RecordDefect::MissingRecords)
        } else {
            self.parse_one()
        };
        self.remaining -= 1;
        self.index += 1;
        match result {
            Ok(record) => Some(Ok(record)),
            Err(defect) => {
                self.failed = true;
                Some(Err(BatchError::MalformedRecord { index, defect }))
            }
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, RecordDefect> {
        let (&first, rest) = self
            .buf
            .split_first()
            .ok_or(RecordDefect::LengthDisagrees)?;
        self.buf = rest;
        Ok(first)
    }

    fn varint(&mut self) -> Result<i32, RecordDefect> {
        let (value, used) = read_varint(self.buf)?;
        self.buf = &self.buf[used..];
        Ok(value)
    }

    fn varlong(&mut self) -> Result<i64, RecordDefect> {
        let (value, used) = read_varlong(self.buf)?;
        self.buf = &self.buf[used..];
        Ok(value)
    }

    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, RecordDefect> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| RecordDefect::BadFieldLength)?;
        if len > self.buf.len() {
            return Err(RecordDefect::LengthDisagrees);
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(Some(bytes))
    }
}

/// Splits a buffer of concatenated batches (a produce request's records for one partition, or a
/// read result) into `(header, bytes)` pairs, checking framing only.
pub fn split_batches(
    mut buf: &[u8],
) -> impl Iterator<Item = Result<(BatchHeader, &[u8]), BatchError>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || buf.is_empty() {
            return None;
        }
        match parse_frame(buf) {
            Ok((header, total)) => {
                let (batch, rest) = buf.split_at(total);
                buf = rest;
                Some(Ok((header, batch)))
            }
            Err(error) => {
                failed = true;
                Some(Err(error))
            }
        }
    })
}

/// Entry point shared by the fuzz target and the property tests: validation must never panic,
/// and whatever it accepts must walk cleanly.
pub fn fuzz_validate(data: &[u8]) {
    for item in split_batches(data) {
        let Ok((_, batch)) = item else { break };
        let Ok(header) = validate(batch) else {
            continue;
        };
        if header.compression() == Ok(Compression::None) {
            let count = Records::new(&batch[HEADER_LEN..], header.record_count).count();
            assert_eq!(count, header.record_count as usize);
        }
        // What a compacted topic checks of every batch: the keyless records, in order.
        if let Ok((keyless, count)) = records_without_key(batch, &header, 8) {
            assert_eq!(keyless.len(), count.min(8));
            assert!(keyless.windows(2).all(|w| w[0] < w[1]));
            assert!(
                keyless
                    .last()
                    .is_none_or(|&i| i < header.record_count as usize)
            );
        }
    }
    // What `compression.type` re-encodes must be valid batches holding as many records.
    if let Ok(Some(recompressed)) = recompress(data, Compression::None, 1 << 20) {
        for item in split_batches(&recompressed) {
            let (_, batch) = item.expect("re-encoded batches frame");
            let header = validate(batch).expect("re-encoded batches validate");
            assert_eq!(header.compression(), Ok(Compression::None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::builder::{ProducerInfo, Record, build_batch};
    use proptest::prelude::*;

    fn record(key: &str, value: Option<&str>, timestamp: i64) -> Record {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![(b"h".to_vec(), Some(b"1".to_vec()))],
            timestamp,
        }
    }

    fn sample() -> Vec<u8> {
        build_batch(
            &[
                record("a", Some("one"), 1000),
                record("b", None, 1005),
                record("c", Some(""), 1002),
            ],
            ProducerInfo::NONE,
        )
    }

    #[test]
    fn built_batch_validates_and_reads_back() {
        let batch = sample();
        let header = validate(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1000);
        assert_eq!(header.max_timestamp, 1005);
        assert_eq!(header.total_len(), Some(batch.len()));
        let records: Vec<_> = Records::new(&batch[HEADER_LEN..], 3)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records[1].key, Some(&b"b"[..]));
        assert_eq!(records[1].value, None);
        assert_eq!(records[2].value, Some(&b""[..]));
        assert_eq!(records[2].timestamp_delta, 2);
        assert_eq!(records[0].headers, vec![(&b"h"[..], Some(&b"1"[..]))]);
    }

    /// The parts of a header re-encoding must keep: everything but length, CRC and codec bits.
    fn kept(header: &BatchHeader) -> (i64, i32, i16, i32, i64, i64, i64, i16, i32, i32) {
        (
            header.base_offset,
            header.partition_leader_epoch,
            header.attributes & !COMPRESSION_MASK,
            header.last_offset_delta,
            header.base_timestamp,
            header.max_timestamp,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.record_count,
        )
    }

    #[test]
    fn recompress_keeps_records_and_producer_fields_and_passes_control_batches() {
        use crate::record::builder::build_compressed_batch;
        let producer = ProducerInfo {
            producer_id: 7001,
            producer_epoch: 3,
            base_sequence: 41,
        };
        let records = [
            record("a", Some("one"), 1000),
            record("b", None, 1005),
            record("c", Some(""), 1002),
        ];
        let mut gzip = build_compressed_batch(&records, producer, Compression::Gzip).unwrap();
        set_log_append_time(&mut gzip, 99_000); // a header bit beside the codec's
        let gzip_header = validate(&gzip).unwrap();
        // A control batch (attributes bit 5), as a transaction marker would be: left alone.
        let mut control_header = validate(&sample()).unwrap();
        control_header.attributes |= CONTROL_BIT;
        let control = encode(&control_header, &sample()[HEADER_LEN..]).unwrap();
        let input = [gzip.clone(), control.clone()].concat();

        let out = recompress(&input, Compression::Zstd, 1 << 20)
            .unwrap()
            .expect("the gzip batch is re-encoded");
        let batches: Vec<_> = split_batches(&out).map(Result::unwrap).collect();
        assert_eq!(batches.len(), 2);
        let zstd_header = validate(batches[0].1).unwrap();
        assert_eq!(zstd_header.compression(), Ok(Compression::Zstd));
        assert_eq!(kept(&zstd_header), kept(&gzip_header));
        assert_eq!(zstd_header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(
            records_payload(batches[0].1, &zstd_header).unwrap(),
            records_payload(&gzip, &gzip_header).unwrap(),
            "the same records, byte for byte"
        );
        assert_eq!(batches[1].1, &control[..], "the control batch is untouched");

        // Already in the topic's codec: nothing to do, not even a re-encode.
        assert_eq!(recompress(&out, Compression::Zstd, 1 << 20), Ok(None));
    }

    #[test]
    fn recompress_refuses_damaged_and_oversized_batches() {
        use crate::record::builder::build_compressed_batch;
        let gzip = build_compressed_batch(
            &[record("a", Some(&"x".repeat(4000)), 1000)],
            ProducerInfo::NONE,
            Compression::Gzip,
        )
        .unwrap();
        let mut damaged = gzip.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        let input = [sample(), damaged].concat();
        assert!(matches!(
            recompress(&input, Compression::Lz4, 1 << 20),
            Err(RecompressError::Invalid {
                index: 1,
                source: BatchError::CrcMismatch { .. }
            })
        ));
        // Too large as sent: refused before it is opened.
        assert_eq!(
            recompress(&gzip, Compression::Zstd, gzip.len() - 1),
            Err(RecompressError::TooLarge {
                size: gzip.len(),
                max: gzip.len() - 1
            })
        );
        // Small compressed, too large once re-encoded uncompressed.
        assert!(gzip.len() < 1000, "{} bytes compressed", gzip.len());
        assert!(matches!(
            recompress(&gzip, Compression::None, 1000),
            Err(RecompressError::TooLarge { size, max: 1000 }) if size > 4000
        ));
    }

    #[test]
    fn offset_and_epoch_edit_keeps_crc_valid() {
        let mut batch = sample();
        set_offset_and_epoch(&mut batch, 42, 7);
        let header = validate(&batch).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (42, 7));
        assert_eq!(header.last_offset(), 44);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut batch = sample();
        set_log_append_time(&mut batch, 99_000);
        let header = validate(&batch).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, 99_000);
    }

    #[test]
    fn rejects_bad_magic_length_crc_codec_and_counts() {
        let good = sample();

        assert_eq!(validate(&good[..10]), Err(BatchError::TooShort { len: 10 }));

        let mut magic = good.clone();
        magic[MAGIC] = 1;
        assert_eq!(
            validate(&magic),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        );

        let short = &good[..good.len() - 1];
        assert!(matches!(
            validate(short),
            Err(BatchError::LengthMismatch { .. })
        ));

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            validate(&flipped),
            Err(BatchError::CrcMismatch { .. })
        ));

        let mut codec = good.clone();
        codec[ATTRIBUTES + 1] |= 0x07;
        let crc = compute_crc(&codec);
        codec[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&codec),
            Err(BatchError::InvalidCompression { codec: 7 })
        );

        let mut count = good.clone();
        count[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&count);
        count[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&count),
            Err(BatchError::CountMismatch {
                count: 5,
                last_offset_delta: 2
            })
        );
    }

    #[test]
    fn rejects_records_that_do_not_fill_the_batch() {
        // Claim two records while three are present (count and delta agree, framing does not).
        let mut batch = sample();
        batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&2i32.to_be_bytes());
        batch[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&1i32.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&batch),
            Err(BatchError::MalformedRecord {
                index: 2,
                defect: RecordDefect::TrailingBytes
            })
        );
    }

    #[test]
    fn split_batches_walks_concatenated_batches() {
        let mut buf = sample();
        buf.extend_from_slice(&sample());
        let parts: Vec<_> = split_batches(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts.len(), 2);
        buf.truncate(buf.len() - 3);
        let results: Vec<_> = split_batches(&buf).collect();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(BatchError::LengthMismatch { .. })));
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40);
        (
            proptest::option::of(bytes.clone()),
            proptest::option::of(bytes.clone()),
            proptest::collection::vec((bytes.clone(), proptest::option::of(bytes)), 0..3),
            0i64..1_000_000,
        )
            .prop_map(|(key, value, headers, timestamp)| Record {
                key,
                value,
                headers,
                timestamp,
            })
    }

    proptest! {
        #[test]
        fn build_then_parse_round_trips(records in proptest::collection::vec(arb_record(), 1..8)) {
            let batch = build_batch(&records, ProducerInfo::NONE);
            let header = validate(&batch).unwrap();
            let base = header.base_timestamp;
            let parsed: Vec<_> = Records::new(&batch[HEADER_LEN..], header.record_count)
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(parsed.len(), records.len());
            for (view, original) in parsed.iter().zip(&records) {
                prop_assert_eq!(view.key, original.key.as_deref());
                prop_assert_eq!(view.value, original.value.as_deref());
                prop_assert_eq!(base + view.timestamp_delta, original.timestamp);
                let headers: Vec<_> = original
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                prop_assert_eq!(&view.headers, &headers);
            }
        }

        #[test]
        fn any_flip_inside_the_crc_is_caught(
            records in proptest::collection::vec(arb_record(), 1..4),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut batch = build_batch(&records, ProducerInfo::NONE);
            let position = ATTRIBUTES + at.index(batch.len() - ATTRIBUTES);
            batch[position] ^= 1 << bit;
            prop_assert!(validate(&batch).is_err());
        }

        #[test]
        fn validation_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_validate(&data);
        }

        #[test]
        fn validation_never_panics_on_damaged_batches(
            records in proptest::collection::vec(arb_record(), 1..4),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            fix_crc: bool,
        ) {
            let mut batch = build_batch(&records, ProducerInfo::NONE);
            for (at, byte) in edits {
                let position = at.index(batch.len());
                batch[position] = byte;
            }
            if fix_crc && batch.len() > ATTRIBUTES {
                let crc = compute_crc(&batch);
                batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
            }
            fuzz_validate(&batch);
        }
    }
}
