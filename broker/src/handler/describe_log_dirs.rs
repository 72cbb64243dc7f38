//! DescribeLogDirs: the broker's one log directory (the data directory) with the size of every
//! partition hosted in it (all, or the ones asked for), each partition's lag of its log end
//! behind its high watermark, and the volume's total and usable bytes (v4).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{Context, str_bytes, topic_name};

pub(super) fn handle(ctx: &Context, request: &DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, partition), handle) in ctx.hosted() {
        let asked = wanted
            .as_ref()
            .is_none_or(|w| w.get(&topic).is_some_and(|ps| ps.contains(&partition)));
        if !asked {
            continue;
        }
        let reader = handle.reader();
        let lag = (reader.offsets().log_end_offset() - handle.high_watermark()).max(0);
        topics.entry(topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition)
                .with_partition_size(i64::try_from(reader.size_bytes()).unwrap_or(i64::MAX))
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let dir = ctx.log_dir();
    // Kafka's -1 when the volume cannot be read.
    let (total, usable) = rustix::fs::statvfs(&dir).map_or((-1, -1), |volume| {
        let bytes =
            |blocks: u64| i64::try_from(blocks.saturating_mul(volume.f_frsize)).unwrap_or(i64::MAX);
        (bytes(volume.f_blocks), bytes(volume.f_bavail))
    });
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, mut partitions)| {
                    // In partition order, whatever order the registry keeps them in.
                    partitions.sort_by_key(|p| p.partition_index);
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_results(vec![result])
}
