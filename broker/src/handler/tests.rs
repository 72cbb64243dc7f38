//! Handlers called directly, without a socket: each runs against a metadata image the test
//! writes (other brokers, other leaders and epochs), on a broker whose partitions are real logs.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, ProduceRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{Context, dispatch, start_with, topic_name};
use crate::broker::Broker;
use crate::cluster::{BrokerRegistration, MetadataImage, PartitionImage, TopicImage};
use crate::coordinator::OFFSETS_TOPIC;
use crate::protocol::Request;
use crate::record::{ProducerInfo, Record, build_batch};
use crate::security::Session;

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

/// A broker (node 1) hosting topic `t` with two partitions, both led here at epoch 0.
async fn broker(dir: &std::path::Path) -> Arc<Broker> {
    crate::broker::test_broker(dir, 2).await
}

fn registration(id: i32, fenced: bool) -> BrokerRegistration {
    BrokerRegistration {
        id,
        rack: Some(format!("rack-{id}")),
        host: format!("10.0.0.{id}"),
        port: 9092,
        listeners: Vec::new(),
        fenced,
        incarnation: Uuid::from_u128(u128::from(id.unsigned_abs())),
        epoch: 7,
        shut_down: false,
        replaces: None,
    }
}

/// The broker's image as a cluster of three would have it: broker 2 up, broker 3 fenced; `t-1`
/// moved to broker 2 at leader epoch 4; a topic `gone` whose only replica is on broker 3; every
/// `__consumer_offsets` partition led by broker 2.
fn cluster_image(image: &MetadataImage) -> Arc<MetadataImage> {
    let mut image = image.clone();
    image.brokers.insert(2, registration(2, false));
    image.brokers.insert(3, registration(3, true));
    let moved = PartitionImage {
        replicas: vec![2],
        leader: 2,
        leader_epoch: 4,
        isr: vec![2],
        partition_epoch: 5,
        adding: Vec::new(),
        removing: Vec::new(),
    };
    Arc::make_mut(image.topics.get_mut("t").unwrap()).partitions[1] = moved.clone();
    for partition in &mut Arc::make_mut(image.topics.get_mut(OFFSETS_TOPIC).unwrap()).partitions {
        *partition = moved.clone();
    }
    image.topics.insert(
        "gone".to_owned(),
        Arc::new(TopicImage {
            name: "gone".to_owned(),
            id: Uuid::from_u128(9),
            configs: Default::default(),
            partitions: vec![PartitionImage {
                replicas: vec![3],
                leader: -1,
                leader_epoch: 2,
                isr: vec![3],
                partition_epoch: 3,
                adding: Vec::new(),
                removing: Vec::new(),
            }],
        }),
    );
    Arc::new(image)
}

async fn call(ctx: &Context, body: RequestKind, version: i16) -> ResponseKind {
    dispatch(ctx, body, version, "test", &Session::anonymous(PEER))
        .await
        .unwrap()
}

fn name(topic: &str) -> kafka_protocol::messages::TopicName {
    topic_name(topic)
}

fn fetch(partitions: &[(i32, i32)]) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default().with_topic(name("t")).with_partitions(
                    partitions
                        .iter()
                        .map(|(partition, epoch)| {
                            FetchPartition::default()
                                .with_partition(*partition)
                                .with_current_leader_epoch(*epoch)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                ),
            ]),
    )
}

/// A fetch of topic `t` by its id, as Fetch v13+ names topics.
fn by_id(ctx: &Context, mut fetch: RequestKind) -> RequestKind {
    if let RequestKind::Fetch(request) = &mut fetch {
        request.topics[0].topic_id = ctx.topic("t").unwrap().id;
    }
    fetch
}

fn produce(partition: i32) -> Request {
    let batch = build_batch(
        &[Record {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
            timestamp: 1,
        }],
        ProducerInfo::NONE,
    );
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("t"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(Bytes::from(batch))),
                ]),
        ]);
    Request {
        api: kafka_protocol::messages::ApiKey::Produce,
        header: Default::default(),
        version: 9,
        body: RequestKind::Produce(body),
    }
}

/// Error code and base offset of a one-record produce to `t-partition`.
async fn produced(ctx: &Context, partition: i32) -> (i16, i64) {
    let pending = start_with(ctx, produce(partition), &Session::anonymous(PEER)).await;
    let Some(ResponseKind::Produce(response)) = pending.await else {
        panic!("no produce response");
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// A partition this broker does not lead (in the image the request sees) is refused with
/// NOT_LEADER_OR_FOLLOWER and, in Fetch v12+, the leader to go to; leader epochs are checked
/// first: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
#[tokio::test]
async fn partitions_led_elsewhere_are_refused_with_where_to_go() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::with_image(&broker, cluster_image(&broker.image()));

    let ResponseKind::Fetch(FetchResponse {
        responses,
        node_endpoints,
        ..
    }) = call(
        &ctx,
        by_id(&ctx, fetch(&[(0, 0), (1, -1), (1, 3), (0, 1)])),
        16,
    )
    .await
    else {
        panic!("not a fetch response");
    };
    let partitions = &responses[0].partitions;
    let codes: Vec<i16> = partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(
        codes,
        [
            0,
            ResponseError::NotLeaderOrFollower.code(),
            ResponseError::FencedLeaderEpoch.code(),
            ResponseError::UnknownLeaderEpoch.code(),
        ]
    );
    assert_eq!(
        (
            partitions[1].current_leader.leader_id,
            partitions[1].current_leader.leader_epoch
        ),
        (BrokerId(2), 4)
    );
    // KIP-951: where broker 2 listens, once for both partitions that name it.
    let endpoints: Vec<_> = node_endpoints
        .iter()
        .map(|n| (n.node_id, n.host.as_str(), n.port, n.rack.as_deref()))
        .collect();
    assert_eq!(endpoints, [(BrokerId(2), "10.0.0.2", 9092, Some("rack-2"))]);

    let mut request = produce(1);
    request.version = 10;
    let Some(ResponseKind::Produce(response)) =
        start_with(&ctx, request, &Session::anonymous(PEER))
            .await
            .await
    else {
        panic!("no produce response");
    };
    let refused = &response.responses[0].partition_responses[0];
    assert_eq!(
        (
            refused.current_leader.leader_id,
            refused.current_leader.leader_epoch
        ),
        (BrokerId(2), 4)
    );
    assert_eq!(response.node_endpoints.len(), 1);
    assert_eq!(response.node_endpoints[0].host.as_str(), "10.0.0.2");

    assert_eq!(produced(&ctx, 0).await, (0, 0));
    assert_eq!(
        produced(&ctx, 1).await,
        (ResponseError::NotLeaderOrFollower.code(), -1)
    );
    // The broker's own image still has it led here: the refusal came from the image alone.
    assert_eq!(produced(&Context::new(&broker), 1).await, (0, 0));

    let list = RequestKind::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(-1)
                            .with_current_leader_epoch(-1),
                    ]),
            ]),
    );
    let ResponseKind::ListOffsets(listed) = call(&ctx, list, 7).await else {
        panic!("not a list offsets response");
    };
    assert_eq!(
        listed.topics[0].partitions[0].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
}

/// KIP-320: a consumer that names the epoch of the last record it read is told where its log
/// diverged when this broker's copy of that epoch ends below its position (Fetch v12+), and
/// OffsetForLeaderEpoch answers the same question.
#[tokio::test]
async fn consumers_learn_where_their_log_diverged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::new(&broker);
    for _ in 0..3 {
        assert_eq!(produced(&ctx, 0).await.0, 0);
    }
    let fetch_at = |offset: i64, last_fetched_epoch: i32| {
        let mut request = fetch(&[(0, -1)]);
        if let RequestKind::Fetch(request) = &mut request {
            let partition = &mut request.topics[0].partitions[0];
            partition.fetch_offset = offset;
            partition.last_fetched_epoch = last_fetched_epoch;
        }
        request
    };
    // Epoch 0 holds offsets 0..3: a consumer at 2 that last read epoch 0 reads on...
    let ResponseKind::Fetch(response) = call(&ctx, fetch_at(2, 0), 12).await else {
        panic!("not a fetch response");
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.diverging_epoch.epoch, -1, "no divergence");
    assert!(!partition.records.as_ref().unwrap().is_empty());
    // ...one at 5 in epoch 0 read records this log no longer has: epoch 0 ends at 3.
    let ResponseKind::Fetch(response) = call(&ctx, fetch_at(5, 0), 12).await else {
        panic!("not a fetch response");
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(
        (
            partition.diverging_epoch.epoch,
            partition.diverging_epoch.end_offset
        ),
        (0, 3)
    );
    assert!(partition.records.as_ref().unwrap().is_empty());
    // One that read an epoch this log cannot place is out of range, as in Kafka: it resets.
    let ResponseKind::Fetch(response) = call(&ctx, fetch_at(1, 4), 12).await else {
        panic!("not a fetch response");
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(partition.diverging_epoch.epoch, -1);
}

/// Metadata lists the unfenced brokers with their racks, each partition's leader and epoch, and
/// a partition whose only replica is on a fenced broker as leaderless (LEADER_NOT_AVAILABLE),
/// with that replica offline.
#[tokio::test]
async fn metadata_describes_the_image_the_request_sees() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::with_image(&broker, cluster_image(&broker.image()));
    let request = MetadataRequest::default().with_topics(Some(
        ["t", "gone"]
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect(),
    ));
    let ResponseKind::Metadata(response) = call(&ctx, RequestKind::Metadata(request), 12).await
    else {
        panic!("not a metadata response");
    };
    let brokers: Vec<(i32, String, Option<String>)> = response
        .brokers
        .iter()
        .map(|b| {
            (
                b.node_id.0,
                b.host.to_string(),
                b.rack.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(brokers.len(), 2, "{brokers:?}");
    assert_eq!(
        brokers[1],
        (2, "10.0.0.2".to_owned(), Some("rack-2".to_owned()))
    );
    let t = &response.topics[0];
    let leaders: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.leader_id.0, p.leader_epoch))
        .collect();
    assert_eq!(leaders, [(1, 0), (2, 4)]);
    let gone = &response.topics[1].partitions[0];
    assert_eq!(gone.error_code, ResponseError::LeaderNotAvailable.code());
    assert_eq!(gone.leader_id.0, -1);
    assert_eq!(gone.offline_replicas, [BrokerId(3)]);
}

/// A client of a `--listener` is told each broker's endpoint on that listener, in Metadata and
/// FindCoordinator; a broker without it is left out, and a partition it leads has no leader
/// for that client (LISTENER_NOT_FOUND). The first listener's clients see the first listener's
/// endpoints.
#[tokio::test]
async fn a_client_is_told_the_endpoints_of_the_listener_it_came_in_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let mut image = (*cluster_image(&broker.image())).clone();
    image.brokers.get_mut(&2).unwrap().listeners = vec![crate::cluster::ListenerEndpoint {
        name: "CLIENT_CERTS".to_owned(),
        host: "10.1.0.2".to_owned(),
        port: 9094,
    }];
    let image = Arc::new(image);
    let on = |listener: Option<&str>| {
        Context::with_image(&broker, Arc::clone(&image)).for_session(&Session {
            listener: listener.map(Into::into),
            ..Session::anonymous(PEER)
        })
    };
    for (listener, expected) in [
        (Some("CLIENT_CERTS"), vec![(2, "10.1.0.2".to_owned(), 9094)]),
        (
            None,
            vec![
                (1, "127.0.0.1".to_owned(), 1),
                (2, "10.0.0.2".to_owned(), 9092),
            ],
        ),
    ] {
        let ctx = on(listener);
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("t"))),
        ]));
        let ResponseKind::Metadata(response) = call(&ctx, RequestKind::Metadata(request), 12).await
        else {
            panic!("not a metadata response");
        };
        let brokers: Vec<(i32, String, i32)> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        assert_eq!(brokers, expected, "{listener:?}");
        // Partition 0 is led here (no CLIENT_CERTS endpoint), partition 1 by broker 2.
        let leaders: Vec<(i16, i32)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_id.0))
            .collect();
        let led_here = if listener.is_some() {
            (ResponseError::ListenerNotFound.code(), -1)
        } else {
            (0, 1)
        };
        assert_eq!(leaders, [led_here, (0, 2)], "{listener:?}");
        let find =
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("orders-readers"));
        let ResponseKind::FindCoordinator(found) =
            call(&ctx, RequestKind::FindCoordinator(find), 3).await
        else {
            panic!("not a find coordinator response");
        };
        let coordinator = expected.iter().find(|(id, _, _)| *id == 2).unwrap();
        assert_eq!(
            (found.node_id.0, found.host.to_string(), found.port),
            coordinator.clone(),
            "{listener:?}"
        );
    }
}

/// FindCoordinator names the broker that leads the group's `__consumer_offsets` partition in the
/// image; this broker, not leading it, answers the group's requests with NOT_COORDINATOR.
#[tokio::test]
async fn groups_coordinated_elsewhere_are_sent_there() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::with_image(&broker, cluster_image(&broker.image()));
    let find =
        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("orders-readers"));
    let ResponseKind::FindCoordinator(found) =
        call(&ctx, RequestKind::FindCoordinator(find), 3).await
    else {
        panic!("not a find coordinator response");
    };
    assert_eq!(
        (found.error_code, found.node_id.0, found.host.to_string()),
        (0, 2, "10.0.0.2".to_owned())
    );

    let commit = OffsetCommitRequest::default()
        .with_group_id(StrBytes::from_static_str("orders-readers").into())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    let ResponseKind::OffsetCommit(committed) =
        call(&ctx, RequestKind::OffsetCommit(commit), 8).await
    else {
        panic!("not an offset commit response");
    };
    assert_eq!(
        committed.topics[0].partitions[0].error_code,
        ResponseError::NotCoordinator.code()
    );
}

/// ElectLeaders through the broker's own metadata: a single-replica partition needs no election
/// of either kind, a partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION, and an unknown
/// election type is INVALID_REQUEST. DescribeLogDirs reports the data directory with each hosted
/// partition's size; AlterReplicaLogDirs takes that directory and refuses any other.
#[tokio::test]
async fn elections_and_log_directories() {
    use kafka_protocol::messages::alter_replica_log_dirs_request::{
        AlterReplicaLogDir, AlterReplicaLogDirTopic,
    };
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        AlterReplicaLogDirsRequest, DescribeLogDirsRequest, ElectLeadersRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::new(&broker);
    let elect = |kind: i8, partitions: Vec<i32>| {
        RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_election_type(kind)
                .with_timeout_ms(5000)
                .with_topic_partitions(Some(vec![
                    TopicPartitions::default()
                        .with_topic(name("t"))
                        .with_partitions(partitions),
                ])),
        )
    };
    for (kind, partitions, expected) in [
        (
            0,
            vec![0, 1],
            vec![ResponseError::ElectionNotNeeded.code(); 2],
        ),
        (1, vec![0], vec![ResponseError::ElectionNotNeeded.code()]),
        (
            0,
            vec![7],
            vec![ResponseError::UnknownTopicOrPartition.code()],
        ),
        (5, vec![0], vec![ResponseError::InvalidRequest.code()]),
    ] {
        let ResponseKind::ElectLeaders(response) = call(&ctx, elect(kind, partitions), 2).await
        else {
            panic!("not an elect leaders response");
        };
        let codes: Vec<i16> = response.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, expected, "election type {kind}");
    }

    assert_eq!(produced(&ctx, 1).await, (0, 0));
    let describe = DescribeLogDirsRequest::default().with_topics(Some(vec![
        DescribableLogDirTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![0, 1]),
    ]));
    let ResponseKind::DescribeLogDirs(described) =
        call(&ctx, RequestKind::DescribeLogDirs(describe), 4).await
    else {
        panic!("not a describe log dirs response");
    };
    let result = &described.results[0];
    let data_dir = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(result.log_dir.as_str(), data_dir.display().to_string());
    assert!(result.total_bytes > 0 && result.usable_bytes > 0);
    let sizes: Vec<(i32, bool)> = result.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size > 0))
        .collect();
    assert_eq!(sizes, [(0, false), (1, true)]);

    let alter = |path: String| {
        RequestKind::AlterReplicaLogDirs(AlterReplicaLogDirsRequest::default().with_dirs(vec![
            AlterReplicaLogDir::default()
                .with_path(StrBytes::from_string(path))
                .with_topics(vec![
                    AlterReplicaLogDirTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![0]),
                ]),
        ]))
    };
    for (path, code) in [
        (data_dir.display().to_string(), 0),
        (
            "/elsewhere".to_owned(),
            ResponseError::LogDirNotFound.code(),
        ),
    ] {
        let ResponseKind::AlterReplicaLogDirs(altered) = call(&ctx, alter(path), 2).await else {
            panic!("not an alter replica log dirs response");
        };
        assert_eq!(altered.results[0].partitions[0].error_code, code);
    }
}

/// An `acks=all` produce waits for the high watermark; if this broker loses the leadership while
/// it waits, the high watermark it then follows (another leader's) says nothing about its
/// records, which may be cut: the answer is NOT_LEADER_OR_FOLLOWER, not success.
#[tokio::test]
async fn acks_all_is_not_answered_from_a_high_watermark_heard_as_follower() {
    use crate::partition::state::Event as ReplicaEvent;

    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::new(&broker);
    let handle = broker.partition("t", 0).unwrap();
    // Broker 2 is in the ISR and has reported nothing: the high watermark waits for it.
    handle
        .replica_event(ReplicaEvent::IsrChanged { isr: vec![1, 2] })
        .await;
    let mut request = produce(0);
    if let RequestKind::Produce(body) = &mut request.body {
        body.acks = -1;
    }
    let pending = tokio::spawn(start_with(&ctx, request, &Session::anonymous(PEER)).await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !pending.is_finished(),
        "answered before the follower had it"
    );

    // Deposed: broker 2 leads in epoch 1, and its high watermark passes offset 0.
    handle
        .replica_event(ReplicaEvent::BecameFollower {
            leader: 2,
            leader_epoch: 1,
        })
        .await;
    handle
        .replica_event(ReplicaEvent::LeaderHighWatermark { offset: 5 })
        .await;
    assert_eq!(handle.high_watermark(), 1);
    let Some(ResponseKind::Produce(response)) = pending.await.unwrap() else {
        panic!("no produce response");
    };
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (ResponseError::NotLeaderOrFollower.code(), -1)
    );
}

/// AlterPartitionReassignments answers each partition with Kafka's code: a target naming an
/// unregistered broker is INVALID_REPLICA_ASSIGNMENT, a partition that does not exist
/// UNKNOWN_TOPIC_OR_PARTITION, a cancellation with nothing moving NO_REASSIGNMENT_IN_PROGRESS,
/// another replication factor where v1 does not allow it INVALID_REPLICATION_FACTOR, and the
/// current replicas again nothing at all. ListPartitionReassignments then lists nothing.
#[tokio::test]
async fn reassignments_are_checked_with_kafka_codes() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let ctx = Context::new(&broker);
    let me = broker.node_id();
    let reassign = |partition: i32, replicas: Option<Vec<i32>>, allow_change: bool| {
        RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_allow_replication_factor_change(allow_change)
                .with_topics(vec![
                    ReassignableTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            ReassignablePartition::default()
                                .with_partition_index(partition)
                                .with_replicas(
                                    replicas.map(|r| r.into_iter().map(BrokerId).collect()),
                                ),
                        ]),
                ]),
        )
    };
    for (partition, replicas, allow_change, expected) in [
        (
            0,
            Some(vec![me, 99]),
            true,
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            7,
            Some(vec![me]),
            true,
            ResponseError::UnknownTopicOrPartition,
        ),
        (0, None, true, ResponseError::NoReassignmentInProgress),
        (
            0,
            Some(vec![me, 99]),
            false,
            ResponseError::InvalidReplicationFactor,
        ),
    ] {
        let ResponseKind::AlterPartitionReassignments(response) =
            call(&ctx, reassign(partition, replicas.clone(), allow_change), 1).await
        else {
            panic!("not an alter partition reassignments response");
        };
        let answer = &response.responses[0].partitions[0];
        assert_eq!(
            (answer.partition_index, answer.error_code),
            (partition, expected.code()),
            "{replicas:?}"
        );
        assert!(answer.error_message.is_some());
    }
    let ResponseKind::AlterPartitionReassignments(response) =
        call(&ctx, reassign(1, Some(vec![me]), false), 1).await
    else {
        panic!("not an alter partition reassignments response");
    };
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    assert!(!response.allow_replication_factor_change);

    let ResponseKind::ListPartitionReassignments(listed) = call(
        &ctx,
        RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
        0,
    )
    .await
    else {
        panic!("not a list partition reassignments response");
    };
    assert!(listed.topics.is_empty());
    assert_eq!(
        produced(&ctx, 1).await,
        (0, 0),
        "the partition still takes writes"
    );
}

/// AlterUserScramCredentials stores what a salted password derives (a SCRAM login with the
/// password then succeeds against the stored credential); DescribeUserScramCredentials shows
/// mechanisms and iterations; bad changes get Kafka's codes per user and change nothing of that
/// user.
#[tokio::test]
async fn scram_credentials_are_altered_and_described_with_kafka_codes() {
    use super::str_bytes;
    use crate::security::scram::{ScramCredential, ScramMechanism};
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    use kafka_protocol::messages::{
        AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path()).await;
    let upsert = |user: &str, mechanism: i8, iterations: i32, password: &[u8]| {
        let salted = ScramMechanism::from_kafka_type(mechanism).map_or(b"x".to_vec(), |m| {
            ScramCredential::salted_password(m, password, b"salt", 4096)
        });
        ScramCredentialUpsertion::default()
            .with_name(str_bytes(user))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(bytes::Bytes::from_static(b"salt"))
            .with_salted_password(salted.into())
    };
    let delete = |user: &str, mechanism: i8| {
        ScramCredentialDeletion::default()
            .with_name(str_bytes(user))
            .with_mechanism(mechanism)
    };
    let alter = |deletions: Vec<ScramCredentialDeletion>, upsertions| {
        RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default()
                .with_deletions(deletions)
                .with_upsertions(upsertions),
        )
    };
    let outcome = |response: ResponseKind| -> Vec<(String, i16)> {
        let ResponseKind::AlterUserScramCredentials(response) = response else {
            panic!("{response:?}")
        };
        response
            .results
            .iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect()
    };

    let ctx = Context::new(&broker);
    let response = call(
        &ctx,
        alter(
            vec![delete("carol", 2)],
            vec![
                upsert("alice", 2, 4096, b"secret"),
                upsert("alice", 1, 8192, b"secret"),
                upsert("bob", 2, 100, b"pw"),
                upsert("dave", 3, 4096, b"pw"),
                upsert("erin", 2, 4096, b"pw"),
                upsert("erin", 2, 4096, b"pw2"),
                upsert("", 2, 4096, b"pw"),
            ],
        ),
        0,
    )
    .await;
    assert_eq!(
        outcome(response),
        [
            ("carol".to_owned(), ResponseError::ResourceNotFound.code()),
            ("alice".to_owned(), 0),
            (
                "bob".to_owned(),
                ResponseError::UnacceptableCredential.code()
            ),
            (
                "dave".to_owned(),
                ResponseError::UnsupportedSaslMechanism.code()
            ),
            ("erin".to_owned(), ResponseError::DuplicateResource.code()),
            (String::new(), ResponseError::UnacceptableCredential.code()),
        ]
    );
    let image = broker.image();
    let stored = image
        .scram_credential("alice", ScramMechanism::Sha512)
        .unwrap();
    assert!(stored.verifies(ScramMechanism::Sha512, b"secret"));
    assert!(!stored.verifies(ScramMechanism::Sha512, b"wrong"));
    assert_eq!(image.scram.len(), 1, "only alice's changes were made");

    let describe = |users: Option<Vec<&str>>| {
        RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(users.map(|users| {
                users
                    .into_iter()
                    .map(|u| UserName::default().with_name(str_bytes(u)))
                    .collect()
            })),
        )
    };
    let ctx = Context::new(&broker);
    let ResponseKind::DescribeUserScramCredentials(all) = call(&ctx, describe(None), 0).await
    else {
        panic!()
    };
    assert_eq!(all.results.len(), 1);
    let infos: Vec<(i8, i32)> = all.results[0]
        .credential_infos
        .iter()
        .map(|i| (i.mechanism, i.iterations))
        .collect();
    assert_eq!(infos, [(1, 8192), (2, 4096)]);
    let ResponseKind::DescribeUserScramCredentials(some) = call(
        &ctx,
        describe(Some(vec!["alice", "nobody", "bob", "bob"])),
        0,
    )
    .await
    else {
        panic!()
    };
    let codes: Vec<(String, i16)> = some
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("alice".to_owned(), 0),
            ("nobody".to_owned(), ResponseError::ResourceNotFound.code()),
            ("bob".to_owned(), ResponseError::DuplicateResource.code()),
        ]
    );

    // Deleted, one mechanism at a time.
    let response = call(
        &ctx,
        alter(vec![delete("alice", 1), delete("alice", 2)], vec![]),
        0,
    )
    .await;
    assert_eq!(outcome(response), [("alice".to_owned(), 0)]);
    assert!(broker.image().scram.is_empty());
}

/// With `--authorizer acl`, each API checks what Kafka's authorizer checks, with Kafka's codes;
/// the ACL APIs need the cluster operations; without an authorizer they are SECURITY_DISABLED.
#[tokio::test]
async fn requests_are_authorised_with_kafka_codes() {
    use super::str_bytes;
    use crate::cluster::MetadataRecord;
    use crate::security::Principal;
    use crate::security::acl::{
        AclBinding, CLUSTER_NAME, Operation, PatternType, Permission, ResourceType,
    };
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        DescribeAclsRequest, DescribeConfigsRequest, DescribeGroupsRequest, ElectLeadersRequest,
        GroupId, InitProducerIdRequest, ListGroupsRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let broker = crate::broker::test_broker_configured(dir.path(), 2, |config| {
        config.security.authorizer = Some(crate::security::AuthorizerKind::Acl);
        config.security.super_users = vec!["User:admin".to_owned()];
    })
    .await;
    let session = |user: &str| Session {
        principal: Principal::user(user),
        ..Session::anonymous(PEER)
    };
    let as_user = |user: &str| Context::new(&broker).for_session(&session(user));
    let allow = |resource_type, name: &str, pattern, operation| AclBinding {
        resource_type,
        resource_name: name.to_owned(),
        pattern,
        principal: "User:app".to_owned(),
        host: "*".to_owned(),
        operation,
        permission: Permission::Allow,
    };
    let call_as = |ctx: Context, body: RequestKind| async move { call(&ctx, body, 2).await };
    let describe_acls = RequestKind::DescribeAcls(
        DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1),
    );
    let elect = RequestKind::ElectLeaders(ElectLeadersRequest::default().with_topic_partitions(
        Some(vec![
            TopicPartitions::default()
                .with_topic(name("t"))
                .with_partitions(vec![0]),
        ]),
    ));
    let broker_configs =
        RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(str_bytes("1")),
        ]));
    let producer_id = RequestKind::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1),
    );

    // No ACL: everything is refused to app, nothing to the super user.
    let ResponseKind::DescribeAcls(described) =
        call_as(as_user("app"), describe_acls.clone()).await
    else {
        panic!()
    };
    assert_eq!(
        described.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    let ResponseKind::DescribeAcls(described) =
        call_as(as_user("admin"), describe_acls.clone()).await
    else {
        panic!()
    };
    assert_eq!(described.error_code, 0);
    assert_eq!(
        produced(&as_user("app"), 0).await.0,
        ResponseError::TopicAuthorizationFailed.code()
    );
    assert_eq!(produced(&as_user("admin"), 0).await.0, 0);
    let ResponseKind::Fetch(fetched) = call_as(as_user("app"), fetch(&[(0, -1)])).await else {
        panic!()
    };
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let ResponseKind::InitProducerId(id) = call_as(as_user("app"), producer_id.clone()).await
    else {
        panic!()
    };
    assert_eq!(
        id.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    let ResponseKind::ElectLeaders(elected) = call_as(as_user("app"), elect.clone()).await else {
        panic!()
    };
    assert_eq!(
        elected.replica_election_results[0].partition_result[0].error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    let ResponseKind::DescribeConfigs(configs) =
        call_as(as_user("app"), broker_configs.clone()).await
    else {
        panic!()
    };
    assert_eq!(
        configs.results[0].error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    let ResponseKind::Metadata(all) = call_as(
        as_user("app"),
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    )
    .await
    else {
        panic!()
    };
    assert!(all.topics.is_empty(), "{:?}", all.topics);

    // WRITE on t: produce, and (KIP-679) an idempotent producer id; READ on t-readers groups.
    broker
        .commit(vec![MetadataRecord::CreateAcls {
            bindings: vec![
                allow(
                    ResourceType::Topic,
                    "t",
                    PatternType::Literal,
                    Operation::Write,
                ),
                allow(
                    ResourceType::Group,
                    "t-",
                    PatternType::Prefixed,
                    Operation::Read,
                ),
                allow(
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                    PatternType::Literal,
                    Operation::DescribeConfigs,
                ),
            ],
        }])
        .await
        .unwrap();
    assert_eq!(produced(&as_user("app"), 0).await.0, 0);
    let ResponseKind::InitProducerId(id) = call_as(as_user("app"), producer_id).await else {
        panic!()
    };
    assert_eq!(id.error_code, 0);
    let ResponseKind::Fetch(fetched) = call_as(as_user("app"), fetch(&[(0, -1)])).await else {
        panic!()
    };
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code(),
        "WRITE is not READ"
    );
    let ResponseKind::DescribeConfigs(configs) = call_as(as_user("app"), broker_configs).await
    else {
        panic!()
    };
    assert_eq!(configs.results[0].error_code, 0);
    let ResponseKind::Metadata(all) = call_as(
        as_user("app"),
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    )
    .await
    else {
        panic!()
    };
    let listed: Vec<String> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["t"], "WRITE implies DESCRIBE; nothing else shows");
    let ResponseKind::DescribeGroups(groups) = call_as(
        as_user("app"),
        RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
            GroupId(str_bytes("other")),
            GroupId(str_bytes("t-readers")),
        ])),
    )
    .await
    else {
        panic!()
    };
    let codes: Vec<(String, i16)> = groups
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            (
                "other".to_owned(),
                ResponseError::GroupAuthorizationFailed.code()
            ),
            ("t-readers".to_owned(), 0),
        ]
    );
    let ResponseKind::ListGroups(listed) = call_as(
        as_user("app"),
        RequestKind::ListGroups(ListGroupsRequest::default()),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(listed.error_code, 0);
    let ResponseKind::ElectLeaders(elected) = call_as(as_user("app"), elect).await else {
        panic!()
    };
    assert_eq!(
        elected.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );

    // What it may do, as the authorized_operations bit fields report it (bit 1 << code).
    let bits = |ops: &[Operation]| ops.iter().fold(0, |b, op| b | (1 << op.code()));
    let ResponseKind::Metadata(asked) = call(
        &as_user("app"),
        RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(None)
                .with_include_topic_authorized_operations(true),
        ),
        12,
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        asked.topics[0].topic_authorized_operations,
        bits(&[Operation::Write, Operation::Describe])
    );
    let ResponseKind::DescribeGroups(groups) = call(
        &as_user("app"),
        RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(str_bytes("t-readers"))])
                .with_include_authorized_operations(true),
        ),
        5,
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        groups.groups[0].authorized_operations,
        bits(&[Operation::Read, Operation::Describe])
    );
    let describe_cluster = RequestKind::DescribeCluster(
        kafka_protocol::messages::DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true),
    );
    let ResponseKind::DescribeCluster(cluster) =
        call_as(as_user("app"), describe_cluster.clone()).await
    else {
        panic!()
    };
    assert_eq!(
        cluster.cluster_authorized_operations, 0,
        "DESCRIBE_CONFIGS does not let it describe the cluster"
    );
    let every_cluster_operation = bits(ResourceType::Cluster.operations());
    let ResponseKind::DescribeCluster(cluster) =
        call_as(as_user("admin"), describe_cluster.clone()).await
    else {
        panic!()
    };
    assert_eq!(
        cluster.cluster_authorized_operations,
        every_cluster_operation
    );

    // A topic named by id is not named back to a client that may not delete it.
    let ResponseKind::DeleteTopics(deleted) = call(
        &as_user("app"),
        RequestKind::DeleteTopics(
            kafka_protocol::messages::DeleteTopicsRequest::default().with_topics(vec![
                kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(broker.image().topic("t").unwrap().id),
            ]),
        ),
        6,
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        deleted.responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    assert_eq!(deleted.responses[0].name, None);
    assert!(broker.image().topic("t").is_some());

    // Without an authorizer the ACL APIs are SECURITY_DISABLED.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = crate::broker::test_broker(plain_dir.path(), 1).await;
    let ResponseKind::DescribeAcls(described) = call(&Context::new(&plain), describe_acls, 2).await
    else {
        panic!()
    };
    assert_eq!(described.error_code, ResponseError::SecurityDisabled.code());
    // ... and every operation is authorised.
    let ResponseKind::DescribeCluster(cluster) =
        call(&Context::new(&plain), describe_cluster, 2).await
    else {
        panic!()
    };
    assert_eq!(
        cluster.cluster_authorized_operations,
        every_cluster_operation
    );
}
