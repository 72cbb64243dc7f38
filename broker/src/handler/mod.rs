//! Request handlers, one file per API key, behind one `dispatch` match. Per-partition failures
//! become Kafka error codes in the response; handlers never fail the connection.

mod api_versions;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::log;
use crate::partition::AppendError;
use crate::protocol::Request;
use crate::record::BatchError;

pub use api_versions::unsupported_version_response;

/// Handles one request. `None` means no response is sent (a produce with `acks=0`).
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> Option<ResponseKind> {
    let version = request.version;
    match request.body {
        RequestKind::ApiVersions(_) => Some(ResponseKind::ApiVersions(api_versions::handle())),
        RequestKind::Metadata(req) => Some(ResponseKind::Metadata(
            metadata::handle(broker, req, version).await,
        )),
        RequestKind::Produce(req) => produce::handle(broker, req)
            .await
            .map(ResponseKind::Produce),
        RequestKind::Fetch(req) => Some(ResponseKind::Fetch(fetch::handle(broker, req).await)),
        RequestKind::ListOffsets(req) => Some(ResponseKind::ListOffsets(
            list_offsets::handle(broker, req).await,
        )),
        RequestKind::DescribeConfigs(req) => Some(ResponseKind::DescribeConfigs(
            configs::describe(broker, &req),
        )),
        RequestKind::AlterConfigs(req) => Some(ResponseKind::AlterConfigs(
            configs::alter(broker, req).await,
        )),
        RequestKind::IncrementalAlterConfigs(req) => Some(ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter(broker, req).await,
        )),
        RequestKind::DeleteRecords(req) => Some(ResponseKind::DeleteRecords(
            delete_records::handle(broker, req).await,
        )),
        RequestKind::DescribeCluster(req) => Some(ResponseKind::DescribeCluster(
            describe_cluster::handle(broker, &req),
        )),
        RequestKind::DeleteTopics(req) => Some(ResponseKind::DeleteTopics(
            delete_topics::handle(broker, req).await,
        )),
        RequestKind::CreatePartitions(req) => Some(ResponseKind::CreatePartitions(
            create_partitions::handle(broker, req).await,
        )),
        RequestKind::InitProducerId(req) => Some(ResponseKind::InitProducerId(
            init_producer_id::handle(broker, req).await,
        )),
        RequestKind::CreateTopics(req) => Some(ResponseKind::CreateTopics(
            create_topics::handle(broker, req).await,
        )),
        // The version table admits only the APIs above, so decoding never yields another.
        other => {
            tracing::error!(api = ?request.api, "no handler for a decoded request: {:?}", std::mem::discriminant(&other));
            None
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A request's config entries as a map; entries without a value are left out.
fn config_map<'a>(
    entries: impl IntoIterator<Item = (&'a StrBytes, Option<&'a StrBytes>)>,
) -> std::collections::BTreeMap<String, String> {
    entries
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_string(), v.to_string())))
        .collect()
}

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// The Kafka error code for a failed append.
fn append_error_code(error: &AppendError) -> i16 {
    match error {
        AppendError::Log(error) => log_error_code(error),
        AppendError::Closed => ResponseError::NotLeaderOrFollower.code(),
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
        AppendError::UnknownProducerId => ResponseError::UnknownProducerId.code(),
        AppendError::IdempotentBatchCount { .. } => ResponseError::InvalidRecord.code(),
    }
}

/// The Kafka error code for a log error.
fn log_error_code(error: &log::Error) -> i16 {
    match error {
        log::Error::InvalidBatch {
            source: BatchError::CrcMismatch { .. },
            ..
        } => ResponseError::CorruptMessage.code(),
        log::Error::InvalidBatch {
            source: BatchError::UnsupportedMagic { .. },
            ..
        } => ResponseError::UnsupportedForMessageFormat.code(),
        log::Error::InvalidBatch { .. } | log::Error::EmptyAppend => {
            ResponseError::CorruptMessage.code()
        }
        log::Error::BatchTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        log::Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        log::Error::LogStartBeyondEnd { .. } | log::Error::TruncateBelowStart { .. } => {
            ResponseError::OffsetOutOfRange.code()
        }
        // Kafka 3.x: INVALID_RECORD, with the record named in the response's record errors.
        log::Error::RecordWithoutKey { .. } => ResponseError::InvalidRecord.code(),
        log::Error::CorruptBatch { .. } | log::Error::Io { .. } | log::Error::Flush(_) => {
            ResponseError::KafkaStorageError.code()
        }
        // Compaction's own failures never answer a request.
        log::Error::CompactionCancelled | log::Error::RewriteBatch { .. } => {
            ResponseError::UnknownServerError.code()
        }
    }
}
