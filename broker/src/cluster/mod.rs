//! Cluster metadata: the brokers, the topics with their configs, and every partition's replicas
//! and leadership, as one immutable [`MetadataImage`] that readers share without locks. Changes
//! are [`MetadataRecord`]s committed through one write path ([`MetadataStore::commit`]): applied to
//! a copy of the image, made durable, then published. On a single node the store keeps the image
//! as one JSON file in the data directory, replaced atomically (temp file, fsync, rename, directory
//! fsync); that file is what a one-voter metadata quorum starts from.

pub mod image;
pub mod placement;
pub mod topic_config;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use image::{BrokerRegistration, MetadataImage, MetadataRecord, PartitionImage, TopicImage};
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
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("topic '{name}' already exists")]
    TopicExists { name: String },
    #[error("topic '{name}' does not exist")]
    UnknownTopic { name: String },
}

/// The metadata store of a single-node cluster: the image, the one write path that changes it,
/// and the file that keeps it.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    node_id: i32,
    current: ArcSwap<MetadataImage>,
    writer: tokio::sync::Mutex<()>,
}

impl MetadataStore {
    /// Opens the store of node `node_id` in `data_dir`, creating it (with a new cluster id) if
    /// absent and upgrading a version 1 file (read as a single-node cluster of this node). A data
    /// directory of another node is refused.
    pub fn open(data_dir: &Path, node_id: i32) -> Result<Self, MetadataError> {
        let path = data_dir.join(FILE_NAME);
        let image = match std::fs::read(&path) {
            Ok(bytes) => read_snapshot(&path, &bytes, node_id)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let image = MetadataImage::new(new_cluster_id());
                write_atomically(&path, node_id, &image)?;
                image
            }
            Err(source) => return Err(MetadataError::Read { path, source }),
        };
        Ok(Self {
            path,
            node_id,
            current: ArcSwap::from_pointee(image),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The current image: a cheap shared snapshot, never locked.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.current.load_full()
    }

    pub fn cluster_id(&self) -> String {
        self.current.load().cluster_id.clone()
    }

    /// Commits `records` as one change: applies them in order to a copy of the image, makes the
    /// result durable, then publishes it and returns it. Commits are serialized; readers see the
    /// old image until the new one is on disk. A record that does not fit fails the whole change
    /// and nothing is written.
    pub async fn commit(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let _writer = self.writer.lock().await;
        let mut next = self.image().as_ref().clone();
        for record in &records {
            next.apply(record)?;
        }
        next.offset += 1;
        let (path, node_id) = (self.path.clone(), self.node_id);
        let next = tokio::task::spawn_blocking(move || {
            write_atomically(&path, node_id, &next).map(|()| Arc::new(next))
        })
        .await
        .map_err(|join| MetadataError::Write {
            path: self.path.clone(),
            source: io::Error::other(join),
        })??;
        self.current.store(Arc::clone(&next));
        Ok(next)
    }

    /// Reserves `count` producer ids, durably, and returns them.
    pub async fn allocate_producer_ids(
        &self,
        count: i64,
    ) -> Result<std::ops::Range<i64>, MetadataError> {
        let image = self
            .commit(vec![MetadataRecord::AllocateProducerIds { count }])
            .await?;
        Ok(image.next_producer_id - count..image.next_producer_id)
    }
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

fn write_atomically(path: &Path, node_id: i32, image: &MetadataImage) -> Result<(), MetadataError> {
    let write_error = |source| MetadataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let snapshot = Snapshot {
        format_version: FORMAT_VERSION,
        node_id,
        image: image.clone(),
    };
    let bytes =
        serde_json::to_vec_pretty(&snapshot).map_err(|e| write_error(io::Error::other(e)))?;
    let temp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temp).map_err(write_error)?;
    io::Write::write_all(&mut file, &bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    std::fs::rename(&temp, path).map_err(write_error)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)
}

/// A Kafka-style cluster id: 22 characters of URL-safe base64 from a random UUID.
fn new_cluster_id() -> String {
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

    fn create(name: &str, partitions: usize) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.to_owned(),
            id: Uuid::new_v4(),
            configs: std::collections::BTreeMap::from([(
                "retention.ms".to_owned(),
                "1000".to_owned(),
            )]),
            partitions: vec![PartitionImage::new(vec![1]); partitions],
        }
    }

    #[tokio::test]
    async fn the_image_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), 1).unwrap();
        let cluster_id = store.cluster_id();
        assert_eq!(cluster_id.len(), 22);
        let created = store.commit(vec![create("orders", 3)]).await.unwrap();
        let before = store.image();
        assert!(matches!(
            store
                .commit(vec![create("other", 1), create("orders", 1)])
                .await,
            Err(MetadataError::TopicExists { .. })
        ));
        assert_eq!(store.image(), before, "a failed change changes nothing");
        assert_eq!(store.allocate_producer_ids(10).await.unwrap(), 0..10);
        let reopened = MetadataStore::open(dir.path(), 1).unwrap();
        assert_eq!(
            reopened.allocate_producer_ids(10).await.unwrap(),
            10..20,
            "ids never repeat"
        );
        assert_eq!(reopened.cluster_id(), cluster_id);
        assert_eq!(reopened.image().topics, created.topics);
        assert!(matches!(
            reopened
                .commit(vec![MetadataRecord::DeleteTopic {
                    name: "nope".to_owned()
                }])
                .await,
            Err(MetadataError::UnknownTopic { .. })
        ));
        assert!(matches!(
            MetadataStore::open(dir.path(), 2),
            Err(MetadataError::NodeIdMismatch {
                stored: 1,
                configured: 2,
                ..
            })
        ));
    }

    /// A file written by the single-node releases before the image (format version 1) opens as a
    /// one-broker cluster of this node, with every topic, id, config and producer id kept.
    #[tokio::test]
    async fn a_version_1_file_is_upgraded() {
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
        let store = MetadataStore::open(dir.path(), 4).unwrap();
        let image = store.image();
        assert_eq!(image.cluster_id, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(image.next_producer_id, 3000);
        let topic = image.topic("orders").unwrap();
        assert_eq!(
            (topic.id, topic.configs["retention.ms"].as_str()),
            (id, "5")
        );
        assert_eq!(topic.partitions, vec![PartitionImage::new(vec![4]); 2]);
        // The first change writes version 2, which opens the same.
        store.allocate_producer_ids(1).await.unwrap();
        let reopened = MetadataStore::open(dir.path(), 4).unwrap();
        assert_eq!(reopened.image(), store.image());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "has space", "slash/no", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
