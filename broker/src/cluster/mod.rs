//! Cluster metadata: the broker itself, the topics, their partition counts and configs.
//! Persisted as one JSON file in the data directory, replaced atomically (temp file, fsync,
//! rename, directory fsync). Handlers read a snapshot; changes are serialized by one async lock
//! so no lock is held across the file write.

pub mod placement;
pub mod topic_config;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use topic_config::{
    ConfigError, ConfigOp, ProduceConfig, TOPIC_CONFIGS, TopicCompression, apply_ops, log_config,
    produce_config, topic_config_spec,
};

const FILE_NAME: &str = "cluster-metadata.json";
const FORMAT_VERSION: u32 = 1;

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level config overrides (Kafka names); absent keys take the broker defaults.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    format_version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMetadata>,
    /// Producer ids below this have been handed out (in blocks); they are never reused.
    #[serde(default)]
    next_producer_id: i64,
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
    #[error("{path} has format version {found}; this broker reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
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

/// The metadata store.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    writer: tokio::sync::Mutex<()>,
}

impl MetadataStore {
    /// Opens the store in `data_dir`, creating it (with a new cluster id) if absent.
    pub fn open(data_dir: &Path) -> Result<Self, MetadataError> {
        let path = data_dir.join(FILE_NAME);
        let snapshot = match std::fs::read(&path) {
            Ok(bytes) => {
                let snapshot: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|source| MetadataError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                if snapshot.format_version != FORMAT_VERSION {
                    return Err(MetadataError::Version {
                        path,
                        found: snapshot.format_version,
                    });
                }
                snapshot
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let snapshot = Snapshot {
                    format_version: FORMAT_VERSION,
                    cluster_id: new_cluster_id(),
                    topics: BTreeMap::new(),
                    next_producer_id: 0,
                };
                write_atomically(&path, &snapshot)?;
                snapshot
            }
            Err(source) => return Err(MetadataError::Read { path, source }),
        };
        Ok(Self {
            path,
            current: RwLock::new(Arc::new(snapshot)),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn cluster_id(&self) -> String {
        self.snapshot().cluster_id.clone()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.snapshot().topics.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<TopicMetadata> {
        self.snapshot().topics.values().cloned().collect()
    }

    /// The produce settings of topic `name` (on every produce: no copy of the topic is made).
    pub fn produce_config(&self, name: &str) -> Option<ProduceConfig> {
        self.snapshot()
            .topics
            .get(name)
            .map(|topic| produce_config(&topic.configs))
    }

    /// Applies `change` to a copy of the metadata, persists the copy, then publishes it. Changes
    /// are serialized; readers see the old snapshot until the new one is on disk.
    async fn update<R>(
        &self,
        change: impl FnOnce(&mut Snapshot) -> Result<R, MetadataError>,
    ) -> Result<R, MetadataError> {
        let _writer = self.writer.lock().await;
        let mut next = self.snapshot().as_ref().clone();
        let result = change(&mut next)?;
        let path = self.path.clone();
        let next =
            tokio::task::spawn_blocking(move || write_atomically(&path, &next).map(|()| next))
                .await
                .map_err(|join| MetadataError::Write {
                    path: self.path.clone(),
                    source: io::Error::other(join),
                })??;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(result)
    }

    /// Reserves `count` producer ids, durably, and returns them.
    pub async fn allocate_producer_ids(
        &self,
        count: i64,
    ) -> Result<std::ops::Range<i64>, MetadataError> {
        self.update(|next| {
            let start = next.next_producer_id;
            next.next_producer_id = start + count;
            Ok(start..start + count)
        })
        .await
    }

    /// Removes a topic and persists the change; returns what it was.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMetadata, MetadataError> {
        self.update(|next| next.topics.remove(name).ok_or_else(|| unknown(name)))
            .await
    }

    /// Raises a topic's partition count and persists the change; returns the topic before.
    pub async fn set_partition_count(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<TopicMetadata, MetadataError> {
        self.update(|next| {
            let topic = next.topics.get_mut(name).ok_or_else(|| unknown(name))?;
            let before = topic.clone();
            topic.partitions = partitions;
            Ok(before)
        })
        .await
    }

    /// Replaces a topic's config overrides and persists the change.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMetadata, MetadataError> {
        self.update(|next| {
            let topic = next.topics.get_mut(name).ok_or_else(|| unknown(name))?;
            topic.configs = configs;
            Ok(topic.clone())
        })
        .await
    }

    /// Adds a topic and persists the change before returning it.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMetadata, MetadataError> {
        self.update(|next| {
            if next.topics.contains_key(name) {
                return Err(MetadataError::TopicExists {
                    name: name.to_owned(),
                });
            }
            let topic = TopicMetadata {
                name: name.to_owned(),
                id: Uuid::new_v4(),
                partitions,
                configs,
            };
            next.topics.insert(name.to_owned(), topic.clone());
            Ok(topic)
        })
        .await
    }
}

fn unknown(name: &str) -> MetadataError {
    MetadataError::UnknownTopic {
        name: name.to_owned(),
    }
}

fn write_atomically(path: &Path, snapshot: &Snapshot) -> Result<(), MetadataError> {
    let write_error = |source| MetadataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes =
        serde_json::to_vec_pretty(snapshot).map_err(|e| write_error(io::Error::other(e)))?;
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

    #[tokio::test]
    async fn topics_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        let cluster_id = store.cluster_id();
        assert_eq!(cluster_id.len(), 22);
        let configs = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        let created = store.create_topic("orders", 3, configs).await.unwrap();
        assert!(matches!(
            store.create_topic("orders", 1, BTreeMap::new()).await,
            Err(MetadataError::TopicExists { .. })
        ));
        assert_eq!(store.allocate_producer_ids(10).await.unwrap(), 0..10);
        let reopened = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened.allocate_producer_ids(10).await.unwrap(),
            10..20,
            "ids never repeat"
        );
        assert_eq!(reopened.cluster_id(), cluster_id);
        assert_eq!(reopened.topic("orders"), Some(created));
        assert_eq!(reopened.topics().len(), 1);
        reopened.set_partition_count("orders", 5).await.unwrap();
        assert_eq!(reopened.delete_topic("orders").await.unwrap().partitions, 5);
        assert!(matches!(
            reopened.delete_topic("orders").await,
            Err(MetadataError::UnknownTopic { .. })
        ));
        assert!(MetadataStore::open(dir.path()).unwrap().topics().is_empty());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "has space", "slash/no", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
