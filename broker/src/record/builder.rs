//! Builds uncompressed v2 record batches: what the broker writes for its own records (group
//! metadata, control records) and what tests and benchmarks feed the log.

use super::batch::{HEADER_LEN, LOG_OVERHEAD, compute_crc};
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

    let mut out = vec![0u8; HEADER_LEN];
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
        write_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
    }

    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).expect("batch fits in i32");
    out[0..8].copy_from_slice(&0i64.to_be_bytes());
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    out[16] = 2;
    out[21..23].copy_from_slice(&0i16.to_be_bytes());
    out[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    out[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    out[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    out[43..51].copy_from_slice(&producer.producer_id.to_be_bytes());
    out[51..53].copy_from_slice(&producer.producer_epoch.to_be_bytes());
    out[53..57].copy_from_slice(&producer.base_sequence.to_be_bytes());
    out[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
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
