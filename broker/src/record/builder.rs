//! Builds v2 record batches: what the broker writes for its own records (group metadata, control
//! records) and what tests and benchmarks feed the log.

use super::batch::{self, BatchHeader, Compression};
use super::compression::{self, CodecError};
use super::varint::{write_varint, write_varlong};

/// One record to put in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Producer identity carried by an idempotent or transactional batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerInfo {
    /// A batch from a producer without idempotence.
    pub const NONE: Self = Self {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes `records` as one uncompressed v2 batch with base offset 0 and leader epoch -1, the
/// way a producer sends it. Panics on an empty slice (Kafka has no empty producer batches).
pub fn build_batch(records: &[Record], producer: ProducerInfo) -> Vec<u8> {
    build_compressed_batch(records, producer, Compression::None)
        .expect("an uncompressed batch needs no codec")
}

/// [`build_batch`] with the records compressed by `codec`, as a producer with
/// `compression.type` set sends them.
pub fn build_compressed_batch(
    records: &[Record],
    producer: ProducerInfo,
    codec: Compression,
) -> Result<Vec<u8>, CodecError> {
    assert!(
        !records.is_empty(),
        "a record batch holds at least one record"
    );
    let base_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .unwrap_or_default();
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or_default();
    let count = i32::try_from(records.len()).expect("record count fits in i32");

    let mut payload = Vec::new();
    let mut body = Vec::new();
    for (index, record) in records.iter().enumerate() {
        body.clear();
        body.push(0); // record attributes: unused
        write_varlong(&mut body, record.timestamp - base_timestamp);
        write_varint(&mut body, index as i32);
        write_nullable(&mut body, record.key.as_deref());
        write_nullable(&mut body, record.value.as_deref());
        write_varint(&mut body, record.headers.len() as i32);
        for (key, value) in &record.headers {
            write_nullable(&mut body, Some(key));
            write_nullable(&mut body, value.as_deref());
        }
        write_varint(&mut payload, body.len() as i32);
        payload.extend_from_slice(&body);
    }
    let payload = compression::compress(codec, &payload)?;
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: codec.attribute_bits(),
        last_offset_delta: count - 1,
        base_timestamp,
        max_timestamp,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
        record_count: count,
    };
    Ok(batch::encode(&header, &payload).expect("batch fits in i32"))
}

fn write_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(out, -1),
        Some(bytes) => {
            write_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}
