//! The one table of supported API versions. It drives the ApiVersions response and the
//! rejection of everything else, and the README's table is checked against it by a test.

use kafka_protocol::messages::ApiKey;

/// An API Fjord serves, with the versions it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi { key, min, max }
}

/// Every API and version range the broker answers. Minimums are the oldest the protocol library
/// decodes (Kafka 4 dropped older ones); maximums are Kafka 4.1's, each implemented fully.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 3, 13),
    api(ApiKey::Fetch, 4, 18),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterReplicaLogDirs, 1, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::ListConfigResources, 0, 1),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
];

/// The supported range of `key`, if any.
pub fn supported(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|api| api.key == key)
}

/// Whether a request with this key and version is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|api| api.min <= version && version <= api.max)
}

/// The table as Markdown, for the README.
pub fn markdown_table() -> String {
    let mut out = String::from("| API | key | versions |\n|---|---:|---|\n");
    for api in SUPPORTED_APIS {
        out.push_str(&format!(
            "| {:?} | {} | {}–{} |\n",
            api.key, api.key as i16, api.min, api.max
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_within_what_the_protocol_library_decodes() {
        for api in SUPPORTED_APIS {
            let library = api.key.valid_versions();
            assert!(
                library.min <= api.min && api.max <= library.max,
                "{:?}: {}..{} outside {}",
                api.key,
                api.min,
                api.max,
                library
            );
            assert!(api.min <= api.max);
        }
    }

    /// Kafka 4.1's highest version of each API Fjord serves (its ApiVersions response), so a
    /// client that infers the broker's release from versions sees 4.1.
    const KAFKA_4_1_MAX: &[(ApiKey, i16)] = &[
        (ApiKey::Produce, 13),
        (ApiKey::Fetch, 18),
        (ApiKey::ListOffsets, 10),
        (ApiKey::Metadata, 13),
        (ApiKey::OffsetCommit, 9),
        (ApiKey::OffsetFetch, 9),
        (ApiKey::FindCoordinator, 6),
        (ApiKey::JoinGroup, 9),
        (ApiKey::Heartbeat, 4),
        (ApiKey::LeaveGroup, 5),
        (ApiKey::SyncGroup, 5),
        (ApiKey::DescribeGroups, 6),
        (ApiKey::ListGroups, 5),
        (ApiKey::ApiVersions, 4),
        (ApiKey::CreateTopics, 7),
        (ApiKey::DeleteTopics, 6),
        (ApiKey::DeleteRecords, 2),
        (ApiKey::InitProducerId, 5),
        (ApiKey::OffsetForLeaderEpoch, 4),
        (ApiKey::DescribeConfigs, 4),
        (ApiKey::AlterConfigs, 2),
        (ApiKey::AlterReplicaLogDirs, 2),
        (ApiKey::DescribeLogDirs, 4),
        (ApiKey::CreatePartitions, 3),
        (ApiKey::DeleteGroups, 2),
        (ApiKey::ElectLeaders, 2),
        (ApiKey::AlterPartitionReassignments, 1),
        (ApiKey::ListPartitionReassignments, 0),
        (ApiKey::IncrementalAlterConfigs, 1),
        (ApiKey::OffsetDelete, 0),
        (ApiKey::DescribeQuorum, 2),
        (ApiKey::DescribeCluster, 2),
        (ApiKey::ListConfigResources, 1),
        (ApiKey::DescribeTopicPartitions, 0),
        (ApiKey::SaslHandshake, 1),
        (ApiKey::SaslAuthenticate, 2),
        (ApiKey::DescribeUserScramCredentials, 0),
        (ApiKey::AlterUserScramCredentials, 0),
        (ApiKey::DescribeAcls, 3),
        (ApiKey::CreateAcls, 3),
        (ApiKey::DeleteAcls, 3),
    ];

    #[test]
    fn highest_versions_are_kafka_4_1s() {
        assert_eq!(KAFKA_4_1_MAX.len(), SUPPORTED_APIS.len());
        for api in SUPPORTED_APIS {
            let kafka = KAFKA_4_1_MAX
                .iter()
                .find(|(key, _)| *key == api.key)
                .map(|(_, max)| *max);
            assert_eq!(Some(api.max), kafka, "{:?}", api.key);
        }
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md must contain the supported API table exactly as generated:\n{}",
            markdown_table()
        );
    }
}
