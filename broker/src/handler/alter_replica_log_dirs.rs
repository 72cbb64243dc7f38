//! AlterReplicaLogDirs: a broker has one log directory (its data directory), so moving a replica
//! there is already done (no error, as Kafka answers a move to the current directory), and any
//! other directory is LOG_DIR_NOT_FOUND.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};

use super::Context;

pub(super) fn handle(
    ctx: &Context,
    request: &AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let ours = ctx.log_dir();
    let results = request
        .dirs
        .iter()
        .flat_map(|dir| {
            let asked = std::path::Path::new(dir.path.as_str());
            let same = std::fs::canonicalize(asked).is_ok_and(|path| path == ours);
            let code = if same {
                0
            } else {
                ResponseError::LogDirNotFound.code()
            };
            dir.topics.iter().map(move |topic| {
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|p| {
                                AlterReplicaLogDirPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
        })
        .collect();
    AlterReplicaLogDirsResponse::default().with_results(results)
}
