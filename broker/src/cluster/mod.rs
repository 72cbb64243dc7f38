//! Cluster metadata: the brokers, the topics with their configs, and every partition's replicas
//! and leadership, as one immutable [`MetadataImage`] that readers share without locks. Changes
//! are [`MetadataRecord`]s, committed through the metadata quorum ([`crate::quorum`]) whose state
//! machine applies them in log order on every broker.
//!
//! Single-node releases kept the image as one JSON file in the data directory
//! (`cluster-metadata.json`); [`read_single_node_file`] reads it so that a one-voter quorum starts
//! from it, and [`retire_single_node_file`] sets it aside once the quorum's snapshot holds it.

pub mod balance;
pub mod broker_config;
pub mod controller;
pub mod freshness;
pub mod image;
pub mod placement;
pub mod reassignment;
pub mod topic_config;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use image::{
    ApplyError, BrokerRegistration, ListenerEndpoint, MetadataImage, MetadataRecord,
    PartitionImage, TopicImage, UserScramCredential,
};
pub use topic_config::{
    ConfigError, ConfigOp, ProduceConfig, TOPIC_CONFIGS, TopicCompression, apply_ops, log_config,
    produce_config, topic_config_spec,
};

const FILE_NAME: &str = "cluster-metadata.json";
/// Version 1 (the single-node releases before the image) held topics with partition counts only.
const FORMAT_VERSION: u32 = 2;

/// The file: the image, and the node whose data directory this is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    format_version: u32,
    node_id: i32,
    image: MetadataImage,
}

/// Version 1 of the file, read to upgrade it.
#[derive(Debug, Deserialize)]
struct SnapshotV1 {
    cluster_id: String,
    topics: std::collections::BTreeMap<String, TopicV1>,
    #[serde(default)]
    next_producer_id: i64,
}

#[derive(Debug, Deserialize)]
struct TopicV1 {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: std::collections::BTreeMap<String, String>,
}

impl SnapshotV1 {
    /// The image of a single-node cluster of `node_id`, which held every partition.
    fn upgrade(self, node_id: i32) -> MetadataImage {
        let topics = self
            .topics
            .into_values()
            .map(|topic| {
                let partitions = (0..topic.partitions.max(0))
                    .map(|_| PartitionImage::new(vec![node_id]))
                    .collect();
                let image = TopicImage {
                    name: topic.name.clone(),
                    id: topic.id,
                    configs: topic.configs,
                    partitions,
                };
                (topic.name, Arc::new(image))
            })
            .collect();
        MetadataImage {
            topics,
            next_producer_id: self.next_producer_id,
            ..MetadataImage::new(self.cluster_id)
        }
    }
}

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid cluster metadata")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} has format version {found}; this broker reads versions 1 and {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{path} belongs to node {stored}, not to node {configured}: start this data directory with --node-id {stored}, or give node {configured} a data directory of its own"
    )]
    NodeIdMismatch {
        path: PathBuf,
        stored: i32,
        configured: i32,
    },
    #[error("setting aside {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
}

/// The image a single-node release left in `data_dir`, if any (format 1 upgraded as a cluster of
/// `node_id` alone). A data directory of another node is refused.
pub fn read_single_node_file(
    data_dir: &Path,
    node_id: i32,
) -> Result<Option<MetadataImage>, MetadataError> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => read_snapshot(&path, &bytes, node_id).map(Some),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetadataError::Read { path, source }),
    }
}

/// Renames the single-node file to `cluster-metadata.json.upgraded` (kept for a downgrade by
/// hand; never read again).
pub fn retire_single_node_file(data_dir: &Path) -> Result<(), MetadataError> {
    let path = data_dir.join(FILE_NAME);
    std::fs::rename(&path, path.with_extension("json.upgraded"))
        .map_err(|source| MetadataError::Write { path, source })
}

fn read_snapshot(path: &Path, bytes: &[u8], node_id: i32) -> Result<MetadataImage, MetadataError> {
    let parse = |source| MetadataError::Parse {
        path: path.to_path_buf(),
        source,
    };
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    match serde_json::from_slice::<Version>(bytes)
        .map_err(parse)?
        .format_version
    {
        1 => {
            let v1: SnapshotV1 = serde_json::from_slice(bytes).map_err(parse)?;
            Ok(v1.upgrade(node_id))
        }
        FORMAT_VERSION => {
            let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(parse)?;
            if snapshot.node_id != node_id {
                return Err(MetadataError::NodeIdMismatch {
                    path: path.to_path_buf(),
                    stored: snapshot.node_id,
                    configured: node_id,
                });
            }
            Ok(snapshot.image)
        }
        found => Err(MetadataError::Version {
            path: path.to_path_buf(),
            found,
        }),
    }
}

/// A Kafka-style cluster id: 22 characters of URL-safe base64 from a random UUID.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

/// Why a topic name is not acceptable (Kafka's rules).
pub fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("topic name is empty");
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'");
    }
    if name.len() > 249 {
        return Err("topic name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("topic name may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by the single-node releases before the image (format version 1) reads as
    /// a one-broker cluster of this node, with every topic, id, config and producer id kept.
    #[test]
    fn a_version_1_file_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let v1 = serde_json::json!({
            "format_version": 1,
            "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA",
            "topics": {
                "orders": {"name": "orders", "id": id, "partitions": 2, "configs": {"retention.ms": "5"}}
            },
            "next_producer_id": 3000
        });
        std::fs::write(dir.path().join(FILE_NAME), v1.to_string()).unwrap();
        let image = read_single_node_file(dir.path(), 4).unwrap().unwrap();
        assert_eq!(image.cluster_id, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(image.next_producer_id, 3000);
        let topic = image.topic("orders").unwrap();
        assert_eq!(
            (topic.id, topic.configs["retention.ms"].as_str()),
            (id, "5")
        );
        assert_eq!(topic.partitions, vec![PartitionImage::new(vec![4]); 2]);
    }

    /// Format 2 (the image itself) reads back as written, only for the node that wrote it; once
    /// retired it is not read again.
    #[test]
    fn a_version_2_file_belongs_to_its_node() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_single_node_file(dir.path(), 1).unwrap().is_none());
        let mut image = MetadataImage::new("BBBBBBBBBBBBBBBBBBBBBB".to_owned());
        image
            .apply(&MetadataRecord::CreateTopic {
                name: "orders".to_owned(),
                id: Uuid::new_v4(),
                configs: std::collections::BTreeMap::new(),
                partitions: vec![PartitionImage::new(vec![1])],
            })
            .unwrap();
        let file = Snapshot {
            format_version: 2,
            node_id: 1,
            image: image.clone(),
        };
        std::fs::write(
            dir.path().join(FILE_NAME),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        assert_eq!(read_single_node_file(dir.path(), 1).unwrap(), Some(image));
        assert!(matches!(
            read_single_node_file(dir.path(), 2),
            Err(MetadataError::NodeIdMismatch {
                stored: 1,
                configured: 2,
                ..
            })
        ));
        retire_single_node_file(dir.path()).unwrap();
        assert!(read_single_node_file(dir.path(), 1).unwrap().is_none());
        assert!(dir.path().join("cluster-metadata.json.upgraded").exists());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "has space", "slash/no", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
