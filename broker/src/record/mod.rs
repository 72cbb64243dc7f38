//! The Kafka record batch format (v2), shared by the protocol layer, the log and the group
//! coordinator: parse and validate what producers send, build batches the broker writes itself.

pub mod batch;
pub mod builder;
pub mod compression;
mod varint;

pub use batch::{
    BatchError, BatchHeader, Compression, RecordDefect, RecordView, Records, TimestampType,
};
pub use builder::{ProducerInfo, Record, build_batch, build_compressed_batch};
