//! The partitions this broker hosts, kept in step with the cluster metadata. Nothing opens or
//! closes a partition directly: a change is committed to the metadata, and [`PartitionRegistry::apply`]
//! makes the hosted partitions match the committed image. A partition whose replicas name this
//! broker is opened (a new one starts empty), its topic's configs are applied to it, and it
//! takes the role the image gives it (leader, or follower of another broker); a partition that
//! left the image (its topic deleted) or no longer names this broker (reassigned away) is
//! closed and its files removed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::cluster::broker_config::effective_topic_configs;
use crate::cluster::{self, MetadataImage, PartitionImage, TopicImage};
use crate::log::{self, Clock};
use crate::metrics::Metrics;
use crate::partition::state::Event as ReplicaEvent;
use crate::partition::{CleanerSettings, PartitionHandle};

/// Topic name and partition index.
pub type TopicPartition = (String, i32);

/// What this broker is for a partition it hosts, as the metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader {
        leader_epoch: i32,
    },
    /// `leader` is -1 while the partition has no leader.
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

impl Role {
    /// The role of broker `node_id` for `partition`.
    pub fn of(node_id: i32, partition: &PartitionImage) -> Self {
        if partition.leader == node_id {
            Role::Leader {
                leader_epoch: partition.leader_epoch,
            }
        } else {
            Role::Follower {
                leader: partition.leader,
                leader_epoch: partition.leader_epoch,
            }
        }
    }
}

/// The event that puts a replica of broker `node_id` in the role `partition` gives it.
fn role_event(node_id: i32, partition: &PartitionImage) -> ReplicaEvent {
    if partition.leader == node_id {
        ReplicaEvent::BecameLeader {
            leader_epoch: partition.leader_epoch,
            isr: partition.isr.clone(),
        }
    } else {
        ReplicaEvent::BecameFollower {
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
        }
    }
}

/// One hosted partition.
#[derive(Debug, Clone)]
struct Hosted {
    handle: PartitionHandle,
    /// The partition as the applied image has it.
    partition: PartitionImage,
    /// The id of the topic the partition belongs to: a topic deleted and created again under
    /// the same name is another topic.
    topic_id: uuid::Uuid,
}

/// Why the registry could not make the hosted partitions match an image.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("topic '{topic}' has configs this broker refuses")]
    TopicConfig {
        topic: String,
        #[source]
        source: cluster::ConfigError,
    },
    #[error("opening partition {topic}-{partition}")]
    Open {
        topic: String,
        partition: i32,
        #[source]
        source: log::Error,
    },
}

/// What the registry has applied.
#[derive(Debug)]
struct Applied {
    /// The last image the hosted partitions were made to match in full.
    image: Arc<MetadataImage>,
    /// The newest image offset an apply was started for, whether or not it went through: an
    /// older image must not be applied after it (it could bring back a topic it deleted).
    newest: u64,
}

/// The hosted partitions of broker `node_id`.
pub struct PartitionRegistry {
    node_id: i32,
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    cleaner_backoff: Duration,
    hosted: RwLock<HashMap<TopicPartition, Hosted>>,
    /// Applies are serialized on this.
    applied: tokio::sync::Mutex<Applied>,
}

impl std::fmt::Debug for PartitionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionRegistry")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl PartitionRegistry {
    /// A registry hosting nothing yet.
    pub fn new(
        node_id: i32,
        data_dir: PathBuf,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        cleaner_backoff: Duration,
    ) -> Self {
        Self {
            node_id,
            data_dir,
            clock,
            metrics,
            cleaner_backoff,
            hosted: RwLock::new(HashMap::new()),
            applied: tokio::sync::Mutex::new(Applied {
                image: Arc::new(MetadataImage::new(String::new())),
                newest: 0,
            }),
        }
    }

    /// The hosted partition `topic`-`partition`.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionHandle> {
        self.read()
            .get(&(topic.to_owned(), partition))
            .map(|hosted| hosted.handle.clone())
    }

    /// This broker's role for a hosted partition.
    pub fn role(&self, topic: &str, partition: i32) -> Option<Role> {
        self.read()
            .get(&(topic.to_owned(), partition))
            .map(|hosted| Role::of(self.node_id, &hosted.partition))
    }

    /// Every hosted partition, in no order.
    pub fn hosted(&self) -> Vec<(TopicPartition, PartitionHandle)> {
        self.read()
            .iter()
            .map(|(key, hosted)| (key.clone(), hosted.handle.clone()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Hosted>> {
        self.hosted.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Hosted>> {
        self.hosted.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the partitions of `image` this broker hosts from what is on disk: the start-up of
    /// a broker, whose data directory holds its partitions as they were. `image` is caught up
    /// with the metadata log (the broker's registration is applied in it): a partition directory
    /// it does not assign to this broker is a stray, left by a move away from this broker or a
    /// topic deletion committed while it was down, and is removed.
    pub async fn open(&self, image: Arc<MetadataImage>) -> Result<(), RegistryError> {
        let mut applied = self.applied.lock().await;
        applied.newest = applied.newest.max(image.offset);
        for topic in image.topics.values() {
            let configs = effective_topic_configs(&image, self.node_id, topic);
            self.host(topic, &configs, None, true).await?;
        }
        self.remove_strays().await;
        applied.image = image;
        Ok(())
    }

    /// Removes the partition directories in the data directory that no hosted partition owns.
    /// Only directories that name their topic id are judged: anything else is not a partition
    /// this broker wrote, and stays.
    async fn remove_strays(&self) {
        let data_dir = self.data_dir.clone();
        let found = tokio::task::spawn_blocking(move || partition_dirs(&data_dir)).await;
        let found = match found.map_err(std::io::Error::other).and_then(|found| found) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(dir = %self.data_dir.display(), %error, "looking for stray partitions failed");
                return;
            }
        };
        for (key, topic_id, dir) in found {
            let owned = self
                .read()
                .get(&key)
                .is_some_and(|hosted| hosted.topic_id == topic_id);
            if owned {
                continue;
            }
            tracing::warn!(dir = %dir.display(), %topic_id, "removing a stray partition: the metadata no longer names this broker as one of its replicas");
            if let Err(error) = remove_partition_dir(dir.clone()).await {
                tracing::warn!(dir = %dir.display(), %error, "removing a stray partition failed");
            }
        }
    }

    /// Makes the hosted partitions match `image`, a later image than the one applied before (an
    /// older one, which a concurrent apply already went past, changes nothing). Topics new to
    /// the cluster get new, empty partitions; deleted topics' partitions are closed and their
    /// files removed; changed configs and roles are applied.
    pub async fn apply(&self, image: Arc<MetadataImage>) -> Result<(), RegistryError> {
        let mut applied = self.applied.lock().await;
        if image.offset < applied.newest || image.offset <= applied.image.offset {
            return Ok(());
        }
        applied.newest = image.offset;
        // Against the last image applied in full: what a failed apply left undone is done now.
        let previous = Arc::clone(&applied.image);
        for (name, topic) in &previous.topics {
            if image.topic(name).is_none_or(|now| now.id != topic.id) {
                self.remove(topic).await;
            }
        }
        for (name, topic) in &image.topics {
            let before = previous.topic(name).filter(|before| before.id == topic.id);
            // A topic's log settings: its overrides over the dynamic broker configs.
            let configs = effective_topic_configs(&image, self.node_id, topic);
            let configs_before =
                before.map(|before| effective_topic_configs(&previous, self.node_id, before));
            self.host(topic, &configs, configs_before.as_ref(), false)
                .await?;
        }
        applied.image = image;
        Ok(())
    }

    /// Hosts the partitions of `topic` that name this broker: opens those not open yet
    /// (`existing`: from the data directory as it is; otherwise new and empty), applies changed
    /// `configs` (its effective configs, against `before`, those of the image applied before)
    /// and roles.
    async fn host(
        &self,
        topic: &TopicImage,
        configs: &BTreeMap<String, String>,
        before: Option<&BTreeMap<String, String>>,
        existing: bool,
    ) -> Result<(), RegistryError> {
        let config = cluster::log_config(configs).map_err(|source| RegistryError::TopicConfig {
            topic: topic.name.clone(),
            source,
        })?;
        let configs_changed = before.is_some_and(|before| before != configs);
        // KIP-966: a leader's high watermark needs this many in sync.
        let replicas =
            usize::try_from(cluster::produce_config(configs).min_insync_replicas).unwrap_or(1);
        let min_insync = ReplicaEvent::MinInsync { replicas };
        for (index, partition) in (0..).zip(&topic.partitions) {
            if !partition.replicas.contains(&self.node_id) {
                // Reassigned away: it holds nothing here any more.
                if !existing {
                    self.remove_partition(topic, index).await;
                }
                continue;
            }
            let key = (topic.name.clone(), index);
            let hosted = self.read().get(&key).cloned();
            match hosted {
                Some(hosted) => {
                    if configs_changed {
                        hosted.handle.set_config(config.clone()).await;
                        hosted.handle.replica_event(min_insync.clone()).await;
                    }
                    if hosted.partition != *partition {
                        let role = Role::of(self.node_id, partition);
                        tracing::info!(topic = topic.name, partition = index, ?role, isr = ?partition.isr, "replica changed");
                        hosted
                            .handle
                            .replica_event(role_event(self.node_id, partition))
                            .await;
                        if let Some(entry) = self.write().get_mut(&key) {
                            entry.partition = partition.clone();
                        }
                    }
                }
                None => {
                    let role = role_event(self.node_id, partition);
                    let handle = self
                        .open_partition(topic, index, config.clone(), existing, replicas, role)
                        .await
                        .map_err(|source| RegistryError::Open {
                            topic: topic.name.clone(),
                            partition: index,
                            source,
                        })?;
                    let hosted = Hosted {
                        handle,
                        partition: partition.clone(),
                        topic_id: topic.id,
                    };
                    self.write().insert(key, hosted);
                }
            }
        }
        Ok(())
    }

    async fn open_partition(
        &self,
        topic: &TopicImage,
        partition: i32,
        config: log::LogConfig,
        existing: bool,
        min_insync: usize,
        role: ReplicaEvent,
    ) -> Result<PartitionHandle, log::Error> {
        let dir = log::partition_dir(&self.data_dir, &topic.name, partition);
        let io = |dir: &std::path::Path, op| {
            let path = dir.to_path_buf();
            move |source| log::Error::Io { op, path, source }
        };
        // A directory there for a partition new to the cluster, or one that names another topic
        // id, is left over from a deleted topic of the same name (a crash between forgetting the
        // topic and removing its files): it goes, so the partition starts empty.
        let stored_id = read_topic_id(&dir);
        let leftover =
            dir.exists() && (!existing || stored_id.as_ref().is_some_and(|id| *id != topic.id));
        if leftover {
            tracing::warn!(dir = %dir.display(), ?stored_id, "removing a leftover directory of a deleted topic");
            remove_partition_dir(dir.clone())
                .await
                .map_err(|source| log::Error::Io {
                    op: log::IoOp::DeleteSegment,
                    path: dir.clone(),
                    source,
                })?;
        }
        let cleaner = CleanerSettings {
            backoff: self.cleaner_backoff,
            counters: self.metrics.compaction(&topic.name),
        };
        let handle = PartitionHandle::open(
            dir.clone(),
            config,
            Arc::clone(&self.clock),
            self.node_id,
            min_insync,
            role,
            cleaner,
        )
        .await?;
        if leftover || stored_id != Some(topic.id) {
            let id = topic.id;
            let written = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || write_topic_id(&dir, id))
            };
            written
                .await
                .map_err(std::io::Error::other)
                .and_then(|result| result)
                .map_err(io(&dir, log::IoOp::OpenSegment))?;
        }
        Ok(handle)
    }

    /// Closes the hosted partitions of a topic that left the cluster and removes their files.
    async fn remove(&self, topic: &TopicImage) {
        for index in 0..topic.partition_count() {
            self.remove_partition(topic, index).await;
        }
    }

    /// Closes partition `index` of `topic` if this broker hosts it, and removes its files: the
    /// topic is gone, or the partition moved off this broker.
    async fn remove_partition(&self, topic: &TopicImage, index: i32) {
        let key = (topic.name.clone(), index);
        // Most partitions not on this broker were never hosted here: no write lock for them.
        if !self.read().contains_key(&key) {
            return;
        }
        let removed = {
            let mut hosted = self.write();
            match hosted.get(&key) {
                Some(entry) if entry.topic_id == topic.id => hosted.remove(&key),
                _ => None,
            }
        };
        let Some(removed) = removed else { return };
        removed.handle.close().await;
        let dir = log::partition_dir(&self.data_dir, &topic.name, index);
        if let Err(error) = remove_partition_dir(dir.clone()).await {
            // Removed when the partition is next hosted here, or its topic next created.
            tracing::warn!(dir = %dir.display(), %error, "removing a partition's files failed");
        }
    }

    /// Flushes and closes every hosted partition.
    pub async fn close(&self) {
        let handles: Vec<PartitionHandle> =
            self.read().values().map(|h| h.handle.clone()).collect();
        for handle in handles {
            handle.close().await;
        }
    }
}

/// The file in a partition directory naming the topic id it belongs to, as Kafka keeps one: the
/// directory's name alone cannot tell a deleted topic from a new one of the same name.
const TOPIC_ID_FILE: &str = "partition.metadata";

/// The topic id a partition directory was made for (`None`: no file, or one that cannot be read:
/// a directory of the releases before the file).
fn read_topic_id(dir: &std::path::Path) -> Option<uuid::Uuid> {
    let text = std::fs::read_to_string(dir.join(TOPIC_ID_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id: "))
        .and_then(|id| uuid::Uuid::parse_str(id.trim()).ok())
}

/// The partition directories under `data_dir`: those named `<topic>-<index>` that hold a topic
/// id file, with their topic and index, topic id and path.
fn partition_dirs(
    data_dir: &std::path::Path,
) -> std::io::Result<Vec<(TopicPartition, uuid::Uuid, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let Some((topic, index)) = name.to_str().and_then(|name| name.rsplit_once('-')) else {
            continue;
        };
        let Ok(index) = index.parse::<i32>() else {
            continue;
        };
        let dir = entry.path();
        if let Some(topic_id) = read_topic_id(&dir) {
            found.push(((topic.to_owned(), index), topic_id, dir));
        }
    }
    Ok(found)
}

/// Records the topic id of a partition directory, durably (temp file, fsync, rename, directory
/// fsync).
fn write_topic_id(dir: &std::path::Path, id: uuid::Uuid) -> std::io::Result<()> {
    let temp = dir.join(format!("{TOPIC_ID_FILE}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    std::io::Write::write_all(
        &mut file,
        format!("version: 0\ntopic_id: {id}\n").as_bytes(),
    )?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(TOPIC_ID_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes a partition directory and makes the removal durable.
async fn remove_partition_dir(dir: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        match dir.parent() {
            Some(parent) => std::fs::File::open(parent)?.sync_all(),
            None => Ok(()),
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::MetadataRecord;
    use crate::log::SystemClock;
    use crate::record::{ProducerInfo, Record, build_batch};

    fn registry(node_id: i32, dir: &std::path::Path) -> PartitionRegistry {
        PartitionRegistry::new(
            node_id,
            dir.to_path_buf(),
            Arc::new(SystemClock),
            Arc::new(Metrics::new()),
            Duration::from_secs(15),
        )
    }

    /// `image` after `records`, as the next commit.
    fn next(image: &MetadataImage, records: &[MetadataRecord]) -> Arc<MetadataImage> {
        let mut next = image.clone();
        for record in records {
            next.apply(record).unwrap();
        }
        next.offset += 1;
        Arc::new(next)
    }

    fn create(name: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.to_owned(),
            id: uuid::Uuid::new_v4(),
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            partitions: replicas
                .iter()
                .map(|r| PartitionImage::new(r.to_vec()))
                .collect(),
        }
    }

    fn batch() -> Vec<u8> {
        let record = Record {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
            timestamp: 0,
        };
        build_batch(&[record], ProducerInfo::NONE)
    }

    fn hosted(registry: &PartitionRegistry) -> Vec<(TopicPartition, Role)> {
        let keys: Vec<TopicPartition> = registry.read().keys().cloned().collect();
        let mut out: Vec<_> = keys
            .into_iter()
            .map(|key| {
                let role = registry.role(&key.0, key.1).unwrap();
                (key, role)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[tokio::test]
    async fn committed_images_open_change_and_close_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(2, dir.path());
        let empty = MetadataImage::new("c".to_owned());
        // Partition 0 led by broker 2, partition 1 by broker 1, partition 2 not on broker 2.
        let one = next(&empty, &[create("t", &[&[2, 1], &[1, 2], &[1, 3]], &[])]);
        registry.apply(Arc::clone(&one)).await.unwrap();
        let t = |p: i32| ("t".to_owned(), p);
        assert_eq!(
            hosted(&registry),
            [
                (t(0), Role::Leader { leader_epoch: 0 }),
                (
                    t(1),
                    Role::Follower {
                        leader: 1,
                        leader_epoch: 0
                    }
                ),
            ]
        );
        assert!(registry.partition("t", 2).is_none());
        registry
            .partition("t", 0)
            .unwrap()
            .append(batch())
            .await
            .unwrap();

        let configs = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        let two = next(
            &one,
            &[MetadataRecord::SetTopicConfigs {
                name: "t".to_owned(),
                configs,
                from: None,
            }],
        );
        registry.apply(Arc::clone(&two)).await.unwrap();
        // An older image, applied late by a concurrent caller, changes nothing (below, it does not
        // bring back a deleted topic).
        registry.apply(Arc::clone(&one)).await.unwrap();
        let led = registry.partition("t", 0).unwrap();
        assert_eq!(led.durable_offset(), 1, "the partition stayed open");
        // Broker 1 is in the ISR and has reported nothing: the high watermark waits for it.
        assert_eq!(led.high_watermark(), 0);
        // A follower refuses appends.
        let followed = registry.partition("t", 1).unwrap();
        assert!(matches!(
            followed.append(batch()).await,
            Err(crate::partition::AppendError::NotLeader)
        ));

        let three = next(
            &two,
            &[MetadataRecord::DeleteTopic {
                name: "t".to_owned(),
                id: None,
            }],
        );
        registry.apply(Arc::clone(&three)).await.unwrap();
        assert!(hosted(&registry).is_empty());
        // The image before the deletion, applied late, does not bring the topic back.
        registry.apply(Arc::clone(&two)).await.unwrap();
        assert!(hosted(&registry).is_empty());
        assert!(
            !log::partition_dir(dir.path(), "t", 0).exists(),
            "files removed"
        );

        // Created again: a new topic, with new and empty partitions.
        let four = next(&three, &[create("t", &[&[2]], &[])]);
        registry.apply(four).await.unwrap();
        assert_eq!(registry.partition("t", 0).unwrap().high_watermark(), 0);
        registry.close().await;
    }

    /// A reassignment that adds this broker opens the partition (empty, a follower); one that
    /// completes without it closes the partition and removes its files.
    #[tokio::test]
    async fn a_partition_reassigned_away_is_closed_and_its_files_removed() {
        use crate::cluster::reassignment;
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(3, dir.path());
        let empty = MetadataImage::new("c".to_owned());
        let one = next(&empty, &[create("t", &[&[1, 2]], &[])]);
        registry.apply(Arc::clone(&one)).await.unwrap();
        assert!(hosted(&registry).is_empty());

        let topic = one.topic("t").unwrap();
        let current = topic.partition(0).unwrap();
        let usable = [1, 2, 3].into();
        let moving = reassignment::start(
            current,
            &[3, 2],
            &one.brokers,
            &std::collections::BTreeSet::new(),
            &usable,
        )
        .unwrap_err();
        // Broker 3 must be registered first.
        assert!(moving.to_string().contains("broker 3"), "{moving}");
        let mut registered = (*one).clone();
        for id in [1, 2, 3] {
            registered
                .brokers
                .insert(id, crate::cluster::BrokerRegistration::for_tests(id, None));
        }
        let moving = reassignment::start(
            current,
            &[3, 2],
            &registered.brokers,
            &std::collections::BTreeSet::new(),
            &usable,
        )
        .unwrap()
        .unwrap();
        let two = next(
            &registered,
            &[reassignment::record(topic, 0, current, moving.clone())],
        );
        registry.apply(Arc::clone(&two)).await.unwrap();
        assert_eq!(
            hosted(&registry),
            [(
                ("t".to_owned(), 0),
                Role::Follower {
                    leader: 1,
                    leader_epoch: 0
                }
            )]
        );
        let partition_dir = log::partition_dir(dir.path(), "t", 0);
        assert!(partition_dir.exists());

        // Cancelled: broker 3 holds nothing again.
        let moved = two.topic("t").unwrap();
        let cancelled = reassignment::cancel(moved.partition(0).unwrap(), &usable).unwrap();
        let three = next(
            &two,
            &[reassignment::record(
                moved,
                0,
                moved.partition(0).unwrap(),
                cancelled,
            )],
        );
        registry.apply(three).await.unwrap();
        assert!(hosted(&registry).is_empty());
        assert!(!partition_dir.exists());
    }

    #[tokio::test]
    async fn start_up_opens_what_is_on_disk_and_a_new_topic_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = MetadataImage::new("c".to_owned());
        let one = next(&empty, &[create("kept", &[&[1]], &[])]);
        let first = registry(1, dir.path());
        first.apply(Arc::clone(&one)).await.unwrap();
        first
            .partition("kept", 0)
            .unwrap()
            .append(batch())
            .await
            .unwrap();
        first.close().await;
        // Files of a topic deleted while its broker was down.
        let stale = log::partition_dir(dir.path(), "stale", 0);
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("00000000000000000000.log"), b"old").unwrap();

        let second = registry(1, dir.path());
        second.open(Arc::clone(&one)).await.unwrap();
        assert_eq!(second.partition("kept", 0).unwrap().high_watermark(), 1);
        let two = next(&one, &[create("stale", &[&[1]], &[])]);
        second.apply(two).await.unwrap();
        assert_eq!(second.partition("stale", 0).unwrap().high_watermark(), 0);
        second.close().await;
    }

    /// While this broker was down, one of its partitions moved to another broker and one of its
    /// topics was deleted: at start-up, with the caught-up image, both directories go; its other
    /// partition opens with its records, and a directory that is not a partition's stays.
    #[tokio::test]
    async fn start_up_removes_partitions_moved_away_or_deleted_while_down() {
        let dir = tempfile::tempdir().unwrap();
        let empty = MetadataImage::new("c".to_owned());
        let one = next(
            &empty,
            &[
                create("kept", &[&[1]], &[]),
                create("moved", &[&[1, 2]], &[]),
                create("gone", &[&[1]], &[]),
            ],
        );
        let first = registry(1, dir.path());
        first.apply(Arc::clone(&one)).await.unwrap();
        for topic in ["kept", "gone"] {
            first
                .partition(topic, 0)
                .unwrap()
                .append(batch())
                .await
                .unwrap();
        }
        first.close().await;
        let other = dir.path().join("notes-1");
        std::fs::create_dir_all(&other).unwrap();

        let mut two = (*next(
            &one,
            &[MetadataRecord::DeleteTopic {
                name: "gone".to_owned(),
                id: None,
            }],
        ))
        .clone();
        let moved = Arc::make_mut(two.topics.get_mut("moved").unwrap());
        moved.partitions[0].replicas = vec![2];
        moved.partitions[0].isr = vec![2];
        moved.partitions[0].leader = 2;
        let second = registry(1, dir.path());
        second.open(Arc::new(two)).await.unwrap();
        assert_eq!(
            hosted(&second),
            [(("kept".to_owned(), 0), Role::Leader { leader_epoch: 0 })]
        );
        assert_eq!(second.partition("kept", 0).unwrap().high_watermark(), 1);
        assert!(!log::partition_dir(dir.path(), "moved", 0).exists());
        assert!(!log::partition_dir(dir.path(), "gone", 0).exists());
        assert!(other.exists());
        second.close().await;
    }

    /// The topic was deleted and created again under its name while this broker was down (or
    /// before it removed the files): its directory names the old topic id, and the new topic
    /// starts empty instead of serving the deleted topic's records.
    #[tokio::test]
    async fn a_directory_of_another_topic_id_is_not_taken_for_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let empty = MetadataImage::new("c".to_owned());
        let one = next(&empty, &[create("t", &[&[1]], &[])]);
        let first = registry(1, dir.path());
        first.apply(Arc::clone(&one)).await.unwrap();
        first
            .partition("t", 0)
            .unwrap()
            .append(batch())
            .await
            .unwrap();
        first.close().await;
        let old_id = one.topic("t").unwrap().id;
        assert_eq!(
            read_topic_id(&log::partition_dir(dir.path(), "t", 0)),
            Some(old_id)
        );

        // The same image again: the directory is the partition's own.
        let again = registry(1, dir.path());
        again.open(Arc::clone(&one)).await.unwrap();
        assert_eq!(again.partition("t", 0).unwrap().high_watermark(), 1);
        again.close().await;

        let deleted = next(
            &one,
            &[MetadataRecord::DeleteTopic {
                name: "t".to_owned(),
                id: None,
            }],
        );
        let recreated = next(&deleted, &[create("t", &[&[1]], &[])]);
        let second = registry(1, dir.path());
        second.open(Arc::clone(&recreated)).await.unwrap();
        assert_eq!(second.partition("t", 0).unwrap().high_watermark(), 0);
        let new_id = recreated.topic("t").unwrap().id;
        assert_eq!(
            read_topic_id(&log::partition_dir(dir.path(), "t", 0)),
            Some(new_id)
        );
        second.close().await;
    }

    #[tokio::test]
    async fn a_topic_with_refused_configs_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(1, dir.path());
        let empty = MetadataImage::new("c".to_owned());
        let bad = next(&empty, &[create("t", &[&[1]], &[("retention.ms", "soon")])]);
        assert!(matches!(
            registry.apply(bad).await,
            Err(RegistryError::TopicConfig { .. })
        ));
    }
}
