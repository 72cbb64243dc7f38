//! The broker over a real socket, in-process on 127.0.0.1:0: what a client sees for good and bad
//! requests (records, offsets, error codes, closed connections).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use fjord_broker::record::{ProducerInfo, Record, build_batch};
use fjord_broker::{BrokerConfig, RunningBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn connect(broker: &RunningBroker) -> Self {
        Self {
            stream: TcpStream::connect(broker.kafka_addr).await.unwrap(),
            correlation_id: 0,
        }
    }

    async fn send_raw(&mut self, frame: &[u8]) {
        self.stream
            .write_all(&(frame.len() as i32).to_be_bytes())
            .await
            .unwrap();
        self.stream.write_all(frame).await.unwrap();
    }

    /// The next response frame, or `None` if the broker closed the connection.
    async fn read_frame(&mut self) -> Option<Bytes> {
        let size = self.stream.read_i32().await.ok()?;
        let mut frame = vec![0u8; size as usize];
        self.stream.read_exact(&mut frame).await.ok()?;
        Some(Bytes::from(frame))
    }

    fn frame<R: Request>(&mut self, request: &R, version: i16) -> BytesMut {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("fjord-test")))
            .encode(&mut buf, R::header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        buf
    }

    async fn call<R: Request>(&mut self, request: R, version: i16) -> R::Response {
        let frame = self.frame(&request, version);
        self.send_raw(&frame).await;
        let mut response = self
            .read_frame()
            .await
            .expect("the broker closed the connection");
        let header =
            ResponseHeader::decode(&mut response, R::Response::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let body = R::Response::decode(&mut response, version).unwrap();
        assert!(!response.has_remaining(), "trailing bytes in the response");
        body
    }
}

impl Client {
    /// Metadata for all topics, without the internal ones (`__consumer_offsets`).
    async fn user_topics(&mut self) -> Vec<metadata_response::MetadataResponseTopic> {
        self.call(MetadataRequest::default().with_topics(None), 12)
            .await
            .topics
            .into_iter()
            .filter(|t| !t.is_internal)
            .collect()
    }
}

async fn start(config: impl FnOnce(&mut BrokerConfig)) -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut broker_config = BrokerConfig::for_tests(dir.path().to_path_buf());
    config(&mut broker_config);
    let running = fjord_broker::start(broker_config, CancellationToken::new())
        .await
        .unwrap();
    (running, dir)
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn records(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(v.as_bytes().to_vec()),
            headers: vec![],
            timestamp: timestamp + i as i64,
        })
        .collect();
    Bytes::from(build_batch(&records, ProducerInfo::NONE))
}

fn create(topic: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ])
}

fn produce(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

fn fetch(
    topic: &str,
    partition: i32,
    offset: i64,
    min_bytes: i32,
    max_wait_ms: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

fn produce_code(response: &ProduceResponse) -> (i16, i64) {
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn api_versions_lists_the_table_and_answers_unknown_versions_in_v0() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    let response = client.call(ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 0);
    let produce = response.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 13));
    assert_eq!(
        response.api_keys.len(),
        fjord_broker::protocol::SUPPORTED_APIS.len()
    );

    // A newer ApiVersions than the broker knows: UNSUPPORTED_VERSION in a v0 body.
    let mut frame = client.frame(&ApiVersionsRequest::default(), 3);
    frame[2..4].copy_from_slice(&77i16.to_be_bytes());
    client.send_raw(&frame).await;
    let mut body = client.read_frame().await.unwrap();
    assert_eq!(body.get_i32(), client.correlation_id);
    let v0 = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(v0.error_code, 35);
    assert!(
        v0.api_keys
            .iter()
            .any(|k| k.api_key == 18 && k.max_version == 4)
    );
    // The connection stays usable.
    assert_eq!(
        client
            .call(ApiVersionsRequest::default(), 0)
            .await
            .error_code,
        0
    );
}

#[tokio::test]
async fn bad_frames_close_the_connection_and_the_broker_keeps_serving() {
    let (broker, _dir) = start(|c| c.max_request_bytes = 1024).await;
    let mut oversized = Client::connect(&broker).await;
    oversized.send_raw(&vec![0u8; 2048]).await;
    assert!(
        oversized.read_frame().await.is_none(),
        "a frame over the limit closes the connection"
    );

    let mut unknown = Client::connect(&broker).await;
    let mut frame = unknown.frame(&MetadataRequest::default(), 1);
    frame[0..2].copy_from_slice(&4242i16.to_be_bytes());
    unknown.send_raw(&frame).await;
    assert!(
        unknown.read_frame().await.is_none(),
        "an unknown API closes the connection"
    );

    let mut garbage = Client::connect(&broker).await;
    garbage
        .send_raw(&[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff])
        .await;
    assert!(garbage.read_frame().await.is_none());

    let mut fine = Client::connect(&broker).await;
    assert_eq!(
        fine.call(MetadataRequest::default(), 12)
            .await
            .brokers
            .len(),
        1
    );
}

#[tokio::test]
async fn produce_fetch_and_list_offsets_round_trip() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    let created = client.call(create("orders", 2), 7).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].num_partitions, 2);

    let first = records(&["a", "b", "c"], 1_000);
    let second = records(&["d"], 2_000);
    assert_eq!(
        produce_code(
            &client
                .call(produce("orders", 1, first.clone(), -1), 9)
                .await
        ),
        (0, 0)
    );
    assert_eq!(
        produce_code(&client.call(produce("orders", 1, second, 1), 3).await),
        (0, 3)
    );

    let fetched = client.call(fetch("orders", 1, 0, 1, 100), 12).await;
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(
        (
            partition.error_code,
            partition.high_watermark,
            partition.log_start_offset
        ),
        (0, 4, 0)
    );
    let bytes = partition.records.clone().unwrap();
    // The stored batch is the produced one with its base offset (0) and leader epoch (0) set.
    assert_eq!(&bytes[16..first.len()], &first[16..]);
    assert_eq!(bytes.len(), first.len() + records(&["d"], 2_000).len());

    let from_three = client.call(fetch("orders", 1, 3, 1, 100), 4).await;
    let batch = from_three.responses[0].partitions[0]
        .records
        .clone()
        .unwrap();
    assert_eq!(i64::from_be_bytes(batch[0..8].try_into().unwrap()), 3);

    let out_of_range = client.call(fetch("orders", 1, 99, 1, 100), 12).await;
    assert_eq!(out_of_range.responses[0].partitions[0].error_code, 1);

    let list = |timestamp| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("orders"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(timestamp),
                    ]),
            ])
    };
    for (timestamp, version, offset) in [
        (-2, 1, 0),
        (-1, 6, 4),
        (1_001, 6, 1),
        (1_500, 2, 3),
        (9_999, 6, -1),
    ] {
        let response = client.call(list(timestamp), version).await;
        let p = &response.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.offset),
            (0, offset),
            "timestamp {timestamp}"
        );
    }
}

#[tokio::test]
async fn produce_errors_are_kafka_codes_and_leave_the_log_intact() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    let mut configs = create("small", 1);
    configs.topics[0].configs = vec![
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("max.message.bytes"))
            .with_value(Some(StrBytes::from_static_str("200"))),
    ];
    assert_eq!(client.call(configs, 7).await.topics[0].error_code, 0);

    let mut corrupt = records(&["x"], 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let response = client
        .call(produce("small", 0, Bytes::from(corrupt), -1), 9)
        .await;
    assert_eq!(produce_code(&response), (2, -1), "CORRUPT_MESSAGE");

    // A record timestamped more than message.timestamp.after.max.ms (Kafka 4's default: an hour)
    // ahead: INVALID_TIMESTAMP, naming the record.
    let ahead = records(&["now", "later"], now_ms() + 3_600_000 + 60_000);
    let response = client.call(produce("small", 0, ahead, -1), 9).await;
    let refused = &response.responses[0].partition_responses[0];
    assert_eq!(
        (refused.error_code, refused.base_offset),
        (32, -1),
        "INVALID_TIMESTAMP"
    );
    let indices: Vec<i32> = refused
        .record_errors
        .iter()
        .map(|e| e.batch_index)
        .collect();
    assert_eq!(indices, [0, 1]);
    assert!(
        refused.record_errors[0]
            .batch_index_error_message
            .as_deref()
            .is_some_and(|m| m.contains("is out of range")),
        "{:?}",
        refused.record_errors
    );

    let big = records(&[&"y".repeat(500)], 1);
    assert_eq!(
        produce_code(&client.call(produce("small", 0, big, -1), 9).await),
        (10, -1),
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce_code(
            &client
                .call(produce("nope", 0, records(&["z"], 1), -1), 9)
                .await
        )
        .0,
        3
    );
    assert_eq!(
        produce_code(
            &client
                .call(produce("small", 5, records(&["z"], 1), -1), 9)
                .await
        )
        .0,
        3
    );
    assert_eq!(
        produce_code(
            &client
                .call(produce("small", 0, records(&["z"], 1), 2), 9)
                .await
        )
        .0,
        21
    );

    // Produce v3+ carries exactly one v2 batch per partition: two, none, or magic 1 are
    // INVALID_RECORD, as in Kafka.
    let mut two = records(&["a"], 1).to_vec();
    two.extend_from_slice(&records(&["b"], 1));
    let mut old_magic = records(&["c"], 1).to_vec();
    old_magic[16] = 1;
    for (what, bytes) in [
        ("two batches", two),
        ("no batch", Vec::new()),
        ("magic 1", old_magic),
    ] {
        let response = client
            .call(produce("small", 0, Bytes::from(bytes), -1), 9)
            .await;
        assert_eq!(produce_code(&response), (87, -1), "{what}");
        let message = response.responses[0].partition_responses[0]
            .error_message
            .as_deref();
        assert!(
            message
                .unwrap()
                .starts_with("Produce requests with version 9"),
            "{what}"
        );
    }

    // Nothing was appended; a good batch gets offset 0.
    assert_eq!(
        produce_code(
            &client
                .call(produce("small", 0, records(&["ok"], 1), -1), 9)
                .await
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn acks_zero_gets_no_response_but_is_appended() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    client.call(create("fire", 1), 7).await;
    let frame = client.frame(&produce("fire", 0, records(&["a", "b"], 1), 0), 9);
    client.send_raw(&frame).await;
    // The next response on the connection answers the next request.
    let fetched = client.call(fetch("fire", 0, 0, 1, 1000), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 2);
    let metrics = broker.broker.metrics().render(&[], &[]);
    assert!(
        metrics.contains(r#"fjord_requests_total{api="Produce",version="9"} 1"#),
        "acks=0 counted: {metrics}"
    );
}

#[tokio::test]
async fn create_topics_validates_names_counts_configs_and_duplicates() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    let code = |r: CreateTopicsResponse| r.topics[0].error_code;
    assert_eq!(code(client.call(create("bad name", 1), 7).await), 17);
    assert_eq!(code(client.call(create("zero", 0), 7).await), 37);
    let mut rf = create("rf", 1);
    rf.topics[0].replication_factor = 3;
    assert_eq!(code(client.call(rf, 7).await), 38);
    let mut config = create("cfg", 1);
    config.topics[0].configs = vec![
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("shred"))),
    ];
    let response = client.call(config, 7).await;
    assert_eq!(response.topics[0].error_code, 40);
    assert!(
        response.topics[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("cleanup.policy")
    );

    let mut validate_only = create("later", 3);
    validate_only.validate_only = true;
    let response = client.call(validate_only, 7).await;
    assert_eq!(
        (
            response.topics[0].error_code,
            response.topics[0].num_partitions
        ),
        (0, 3)
    );
    assert!(
        client.user_topics().await.is_empty(),
        "validate_only created nothing"
    );

    assert_eq!(code(client.call(create("once", 1), 7).await), 0);
    assert_eq!(code(client.call(create("once", 1), 7).await), 36);
    assert_eq!(code(client.call(create("twice", -1), 2).await), 0);
}

#[tokio::test]
async fn metadata_auto_creates_when_allowed() {
    let (broker, _dir) = start(|c| c.default_partitions = 3).await;
    let mut client = Client::connect(&broker).await;
    let request = |allow| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("auto"))),
            ]))
            .with_allow_auto_topic_creation(allow)
    };
    let refused = client.call(request(false), 12).await;
    assert_eq!(refused.topics[0].error_code, 3);
    let created = client.call(request(true), 12).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].partitions.len(), 3);
    assert_eq!(created.cluster_id.as_deref().map(str::len), Some(22));
    let (host, port) = (created.brokers[0].host.to_string(), created.brokers[0].port);
    assert_eq!(format!("{host}:{port}"), broker.kafka_addr.to_string());

    // With auto-creation off (--auto-create-topics false) a client's request creates nothing.
    let (strict, _strict_dir) = start(|c| c.auto_create_topics = false).await;
    let mut client = Client::connect(&strict).await;
    assert_eq!(client.call(request(true), 12).await.topics[0].error_code, 3);
    assert_eq!(
        client.call(request(true), 3).await.topics[0].error_code,
        3,
        "v3 has no flag"
    );
    assert!(client.user_topics().await.is_empty());
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives() {
    let (broker, _dir) = start(|_| {}).await;
    let mut consumer = Client::connect(&broker).await;
    let mut producer = Client::connect(&broker).await;
    producer.call(create("poll", 1), 7).await;

    // Nothing there: waits the full max_wait_ms, then answers empty.
    let started = Instant::now();
    let empty = consumer.call(fetch("poll", 0, 0, 1, 300), 12).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        empty.responses[0].partitions[0]
            .records
            .as_ref()
            .is_none_or(|r| r.is_empty())
    );

    // Data produced while the fetch waits wakes it well before max_wait_ms.
    let started = Instant::now();
    let waiting =
        tokio::spawn(async move { consumer.call(fetch("poll", 0, 0, 1, 30_000), 12).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    producer
        .call(produce("poll", 0, records(&["wake"], 1), -1), 9)
        .await;
    let response = waiting.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(response.responses[0].partitions[0].high_watermark, 1);
    assert!(
        !response.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn topics_and_records_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("kept", 2), 7).await;
    client
        .call(produce("kept", 1, records(&["a", "b"], 1), -1), 9)
        .await;
    let topic_id = client.user_topics().await[0].topic_id;
    drop(client);
    broker.shutdown().await;

    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let topics = client.user_topics().await;
    assert_eq!(topics[0].topic_id, topic_id);
    assert_eq!(topics[0].partitions.len(), 2);
    let fetched = client.call(fetch("kept", 1, 0, 1, 100), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 2);
}

/// A data directory as the single-node releases left it (partition logs, `__consumer_offsets`,
/// and the cluster metadata as one JSON file: format version 2, the image; format version 1,
/// topics with partition counts only) starts as a one-voter metadata quorum with every topic,
/// id, config, record, committed offset and producer id intact.
#[tokio::test]
async fn data_directories_of_the_single_node_releases_start_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let request = create_with("kept", &[("retention.ms", "123456789")]);
    assert_eq!(client.call(request, 7).await.topics[0].error_code, 0);
    client
        .call(
            produce("kept", 0, records(&["a", "b", "c"], now_ms()), -1),
            9,
        )
        .await;
    let committed = client.call(commit("old-group", "kept", 0, 2), 8).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let mut last_producer_id = new_producer_id(&mut client).await;
    let topic_id = client.user_topics().await[0].topic_id;
    let mut image = serde_json::to_value(broker.broker.image().as_ref()).unwrap();
    let cluster_id = image["cluster_id"].clone();
    drop(client);
    broker.shutdown().await;

    for version in [2, 1] {
        std::fs::remove_dir_all(dir.path().join("metadata-quorum")).unwrap();
        let _ = std::fs::remove_file(dir.path().join("cluster-metadata.json.upgraded"));
        let path = dir.path().join("cluster-metadata.json");
        let file = release_metadata_file(version, &image);
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();

        let broker = fjord_broker::start(config.clone(), CancellationToken::new())
            .await
            .unwrap();
        let mut client = Client::connect(&broker).await;
        let topics = client.user_topics().await;
        assert_eq!(
            (topics.len(), topics[0].topic_id),
            (1, topic_id),
            "{version}"
        );
        let partition = &topics[0].partitions[0];
        assert_eq!(
            (
                partition.leader_id.0,
                partition.replica_nodes.len(),
                partition.isr_nodes.len()
            ),
            (1, 1, 1)
        );
        assert_eq!(broker.broker.cluster_id(), cluster_id.as_str().unwrap());
        let described = client.call(describe_topic_configs("kept"), 4).await;
        assert_eq!(config_of(&described, "retention.ms").0, "123456789");
        let values: Vec<Option<String>> = fetch_records(&mut client, "kept")
            .await
            .into_iter()
            .map(|(_, _, value)| value)
            .collect();
        assert_eq!(values, ["a", "b", "c"].map(|v| Some(v.to_owned())));
        let offsets = client.call(fetch_offsets("old-group", "kept", 0), 7).await;
        assert_eq!(offsets.topics[0].partitions[0].committed_offset, 2);
        let next = new_producer_id(&mut client).await;
        assert!(
            next.0 > last_producer_id.0,
            "producer ids never repeat: {next:?} after {last_producer_id:?}"
        );
        last_producer_id = next;
        image = serde_json::to_value(broker.broker.image().as_ref()).unwrap();
        drop(client);
        broker.shutdown().await;
        // The quorum's snapshot now holds the image; the file is set aside, and a restart
        // without it keeps everything.
        assert!(!path.exists(), "{version}");
        assert!(dir.path().join("cluster-metadata.json.upgraded").exists());
        let broker = fjord_broker::start(config.clone(), CancellationToken::new())
            .await
            .unwrap();
        let mut client = Client::connect(&broker).await;
        assert_eq!(client.user_topics().await[0].topic_id, topic_id);
        drop(client);
        broker.shutdown().await;
    }
}

/// A producer id from InitProducerId v4 without a transactional id.
async fn new_producer_id(client: &mut Client) -> kafka_protocol::messages::ProducerId {
    client
        .call(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .await
        .producer_id
}

/// The cluster metadata file a single-node release of `version` would have written for `image`.
fn release_metadata_file(version: u32, image: &serde_json::Value) -> serde_json::Value {
    if version == 2 {
        return serde_json::json!({"format_version": 2, "node_id": 1, "image": image});
    }
    let topics: serde_json::Map<String, serde_json::Value> = image["topics"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, topic)| {
            let topic = serde_json::json!({
                "name": name,
                "id": topic["id"],
                "partitions": topic["partitions"].as_array().unwrap().len(),
                "configs": topic["configs"],
            });
            (name.clone(), topic)
        })
        .collect();
    serde_json::json!({
        "format_version": 1,
        "cluster_id": image["cluster_id"],
        "topics": topics,
        "next_producer_id": image["next_producer_id"],
    })
}

#[tokio::test]
async fn every_supported_version_of_every_api_is_served() {
    use fjord_broker::protocol::SUPPORTED_APIS;
    // With the ACL authorizer on, and this anonymous client a super user: every API is served
    // through the authorizer, and the ACL APIs are served at all.
    let (broker, _dir) = start(|config| {
        config.security.authorizer = Some(fjord_broker::security::AuthorizerKind::Acl);
        config.security.super_users = vec!["User:ANONYMOUS".to_owned()];
    })
    .await;
    let mut client = Client::connect(&broker).await;
    client.call(create("versions", 1), 7).await;
    let topic_id = client.user_topics().await[0].topic_id;
    // From Produce and Fetch v13 and DeleteTopics v6 topics go by id (KIP-516).
    let by_id = |mut request: ProduceRequest| {
        request.topic_data[0].topic_id = topic_id;
        request.topic_data[0].name = TopicName::default();
        request
    };
    let mut produced = 0;
    for api in SUPPORTED_APIS {
        for version in api.min..=api.max {
            let context = format!("{:?} v{version}", api.key);
            match api.key {
                ApiKey::ApiVersions => {
                    assert_eq!(
                        client
                            .call(ApiVersionsRequest::default(), version)
                            .await
                            .error_code,
                        0,
                        "{context}"
                    );
                }
                ApiKey::Metadata => {
                    let topics = if version == 0 { Some(Vec::new()) } else { None };
                    let response = client
                        .call(MetadataRequest::default().with_topics(topics), version)
                        .await;
                    let (internal, user): (Vec<_>, Vec<_>) =
                        response.topics.iter().partition(|t| {
                            t.name
                                .as_ref()
                                .is_some_and(|n| n.as_str() == "__consumer_offsets")
                        });
                    assert_eq!(internal.len(), 1, "{context}");
                    assert!(version == 0 || internal[0].is_internal, "{context}");
                    assert_eq!(user.len(), 1, "{context}");
                    assert_eq!(user[0].partitions[0].leader_id, BrokerId(1), "{context}");
                }
                ApiKey::CreateTopics => {
                    let response = client
                        .call(create(&format!("created-v{version}"), 2), version)
                        .await;
                    assert_eq!(response.topics[0].error_code, 0, "{context}");
                    client
                        .call(MetadataRequest::default().with_topics(None), 12)
                        .await;
                }
                ApiKey::Produce => {
                    let mut request = produce("versions", 0, records(&["v"], 5), -1);
                    if version >= 13 {
                        request = by_id(request);
                    }
                    let response = client.call(request, version).await;
                    assert_eq!(produce_code(&response), (0, produced), "{context}");
                    if version >= 13 {
                        assert_eq!(response.responses[0].topic_id, topic_id, "{context}");
                        // An id no topic has.
                        let mut unknown = by_id(produce("versions", 0, records(&["v"], 5), -1));
                        unknown.topic_data[0].topic_id = uuid::Uuid::from_u128(7);
                        let response = client.call(unknown, version).await;
                        assert_eq!(produce_code(&response), (100, -1), "{context}");
                    }
                    produced += 1;
                }
                ApiKey::Fetch => {
                    let mut request = fetch("versions", 0, 0, 1, 10);
                    if version >= 13 {
                        request.topics[0].topic_id = topic_id;
                        request.topics[0].topic = TopicName::default();
                    }
                    let response = client.call(request.clone(), version).await;
                    let partition = &response.responses[0].partitions[0];
                    assert_eq!(partition.error_code, 0, "{context}");
                    assert!(!partition.records.as_ref().unwrap().is_empty(), "{context}");
                    if version >= 13 {
                        assert_eq!(response.responses[0].topic_id, topic_id, "{context}");
                        request.topics[0].topic_id = uuid::Uuid::from_u128(7);
                        let response = client.call(request, version).await;
                        let partition = &response.responses[0].partitions[0];
                        assert_eq!(partition.error_code, 100, "{context}: UNKNOWN_TOPIC_ID");
                    }
                }
                ApiKey::ListOffsets => {
                    let request = ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![
                            ListOffsetsTopic::default()
                                .with_name(name("versions"))
                                .with_partitions(vec![
                                    ListOffsetsPartition::default()
                                        .with_partition_index(0)
                                        .with_timestamp(-1),
                                ]),
                        ]);
                    let response = client.call(request.clone(), version).await;
                    assert_eq!(
                        response.topics[0].partitions[0].offset, produced,
                        "{context}"
                    );
                    // The sentinels of later versions: the record with the largest timestamp
                    // (every record has 5: the first), the earliest local offset, and no tiered
                    // offset. Before its version a sentinel is UNSUPPORTED_VERSION.
                    for (timestamp, since, expected) in
                        [(-3, 7, (0, 5)), (-4, 8, (0, -1)), (-5, 9, (-1, -1))]
                    {
                        let mut request = request.clone();
                        request.topics[0].partitions[0].timestamp = timestamp;
                        let response = client.call(request, version).await;
                        let p = &response.topics[0].partitions[0];
                        if version >= since {
                            assert_eq!(
                                (p.error_code, (p.offset, p.timestamp)),
                                (0, expected),
                                "{context} {timestamp}"
                            );
                        } else {
                            assert_eq!(
                                p.error_code, 35,
                                "{context} {timestamp}: UNSUPPORTED_VERSION"
                            );
                        }
                    }
                }
                ApiKey::DeleteTopics => {
                    let topic = format!("deleted-v{version}");
                    client.call(create(&topic, 1), 7).await;
                    let request = if version >= 6 {
                        let id = client
                            .user_topics()
                            .await
                            .into_iter()
                            .find(|t| t.name == Some(name(&topic)))
                            .unwrap()
                            .topic_id;
                        let by_id = |id| {
                            delete_topics_request::DeleteTopicState::default()
                                .with_name(None)
                                .with_topic_id(id)
                        };
                        DeleteTopicsRequest::default()
                            .with_topics(vec![by_id(id), by_id(uuid::Uuid::from_u128(7))])
                    } else {
                        DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
                    };
                    let response = client.call(request, version).await;
                    assert_eq!(response.responses[0].error_code, 0, "{context}");
                    assert_eq!(response.responses[0].name, Some(name(&topic)), "{context}");
                    if version >= 6 {
                        assert_eq!(response.responses[1].error_code, 100, "{context}");
                    }
                    let left: Vec<_> = client
                        .user_topics()
                        .await
                        .into_iter()
                        .filter_map(|t| t.name)
                        .collect();
                    assert!(!left.contains(&name(&topic)), "{context}");
                }
                ApiKey::OffsetForLeaderEpoch => {
                    let ask = |epoch: i32| {
                        OffsetForLeaderEpochRequest::default()
                            .with_replica_id(BrokerId(-1))
                            .with_topics(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                                    .with_topic(name("versions"))
                                    .with_partitions(vec![
                                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                            .with_partition(0)
                                            .with_current_leader_epoch(-1)
                                            .with_leader_epoch(epoch),
                                    ]),
                            ])
                    };
                    // Every record was written in leader epoch 0: it ends at the log end.
                    let response = client.call(ask(0), version).await;
                    let p = &response.topics[0].partitions[0];
                    assert_eq!(
                        (p.error_code, p.leader_epoch, p.end_offset),
                        (0, 0, produced),
                        "{context}"
                    );
                    let response = client.call(ask(3), version).await;
                    let p = &response.topics[0].partitions[0];
                    assert_eq!(
                        (p.error_code, p.leader_epoch, p.end_offset),
                        (0, -1, -1),
                        "{context}"
                    );
                }
                ApiKey::ListConfigResources => {
                    let request = ListConfigResourcesRequest::default();
                    let response = client.call(request, version).await;
                    let listed: Vec<(i8, &str)> = response
                        .config_resources
                        .iter()
                        .map(|r| (r.resource_type, r.resource_name.as_str()))
                        .collect();
                    if version == 0 {
                        // The former ListClientMetricsResources: Fjord has no subscriptions.
                        assert_eq!(listed, [], "{context}");
                    } else {
                        assert!(listed.contains(&(2, "versions")), "{context}: {listed:?}");
                        assert!(listed.contains(&(4, "1")), "{context}: {listed:?}");
                        let brokers = client
                            .call(
                                ListConfigResourcesRequest::default().with_resource_types(vec![4]),
                                version,
                            )
                            .await;
                        assert_eq!(brokers.config_resources.len(), 1, "{context}");
                        let unknown = client
                            .call(
                                ListConfigResourcesRequest::default().with_resource_types(vec![3]),
                                version,
                            )
                            .await;
                        assert_eq!(unknown.error_code, 35, "{context}");
                    }
                }
                ApiKey::CreatePartitions => {
                    let topic = format!("grown-v{version}");
                    client.call(create(&topic, 1), 7).await;
                    let response = client.call(grow(&topic, 2, false), version).await;
                    assert_eq!(response.results[0].error_code, 0, "{context}");
                }
                ApiKey::DeleteRecords => {
                    let response = client.call(delete_records("versions", 0, 1), version).await;
                    let p = &response.topics[0].partitions[0];
                    assert_eq!((p.error_code, p.low_watermark), (0, 1), "{context}");
                }
                ApiKey::DescribeCluster => {
                    let response = client
                        .call(
                            DescribeClusterRequest::default().with_endpoint_type(1),
                            version,
                        )
                        .await;
                    assert_eq!(response.brokers.len(), 1, "{context}");
                }
                ApiKey::DescribeQuorum => {
                    let response = client.call(DescribeQuorumRequest::default(), version).await;
                    let partition = &response.topics[0].partitions[0];
                    assert_eq!(partition.leader_id.0, 1, "{context}");
                    assert_eq!(partition.current_voters.len(), 1, "{context}");
                }
                ApiKey::ElectLeaders => {
                    let request = ElectLeadersRequest::default()
                        .with_election_type(0)
                        .with_timeout_ms(5000)
                        .with_topic_partitions(Some(vec![
                            elect_leaders_request::TopicPartitions::default()
                                .with_topic(name("versions"))
                                .with_partitions(vec![0]),
                        ]));
                    let response = client.call(request, version).await;
                    // One replica: it leads already.
                    assert_eq!(
                        response.replica_election_results[0].partition_result[0].error_code,
                        kafka_protocol::error::ResponseError::ElectionNotNeeded.code(),
                        "{context}"
                    );
                }
                ApiKey::AlterPartitionReassignments => {
                    use kafka_protocol::messages::AlterPartitionReassignmentsRequest;
                    use kafka_protocol::messages::alter_partition_reassignments_request::{
                        ReassignablePartition, ReassignableTopic,
                    };
                    // A cancellation with nothing moving, then the replica it has already.
                    let reassign = |replicas: Option<Vec<i32>>| {
                        AlterPartitionReassignmentsRequest::default()
                            .with_timeout_ms(5000)
                            .with_allow_replication_factor_change(true)
                            .with_topics(vec![
                                ReassignableTopic::default()
                                    .with_name(name("versions"))
                                    .with_partitions(vec![
                                        ReassignablePartition::default()
                                            .with_partition_index(0)
                                            .with_replicas(replicas.map(|r| {
                                                r.into_iter()
                                                    .map(kafka_protocol::messages::BrokerId)
                                                    .collect()
                                            })),
                                    ]),
                            ])
                    };
                    let cancel = client.call(reassign(None), version).await;
                    assert_eq!(
                        cancel.responses[0].partitions[0].error_code,
                        kafka_protocol::error::ResponseError::NoReassignmentInProgress.code(),
                        "{context}"
                    );
                    let same = client.call(reassign(Some(vec![1])), version).await;
                    assert_eq!(same.responses[0].partitions[0].error_code, 0, "{context}");
                }
                // This listener has no SASL: both are answered ILLEGAL_SASL_STATE, as Kafka's
                // plaintext listeners answer them, and the connection goes on.
                ApiKey::SaslHandshake => {
                    let response = client
                        .call(
                            kafka_protocol::messages::SaslHandshakeRequest::default()
                                .with_mechanism(StrBytes::from_static_str("PLAIN")),
                            version,
                        )
                        .await;
                    assert_eq!(
                        response.error_code,
                        kafka_protocol::error::ResponseError::IllegalSaslState.code(),
                        "{context}"
                    );
                }
                ApiKey::SaslAuthenticate => {
                    let response = client
                        .call(
                            kafka_protocol::messages::SaslAuthenticateRequest::default()
                                .with_auth_bytes(Bytes::from_static(b"\0user\0password")),
                            version,
                        )
                        .await;
                    assert_eq!(
                        response.error_code,
                        kafka_protocol::error::ResponseError::IllegalSaslState.code(),
                        "{context}"
                    );
                }
                ApiKey::AlterUserScramCredentials => {
                    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
                    let response = client
                        .call(
                            kafka_protocol::messages::AlterUserScramCredentialsRequest::default()
                                .with_upsertions(vec![
                                    ScramCredentialUpsertion::default()
                                        .with_name(StrBytes::from_static_str("versions"))
                                        .with_mechanism(2)
                                        .with_iterations(4096)
                                        .with_salt(Bytes::from_static(b"salt"))
                                        .with_salted_password(Bytes::from_static(&[7; 64])),
                                ]),
                            version,
                        )
                        .await;
                    assert_eq!(response.results.len(), 1, "{context}");
                    assert_eq!(response.results[0].error_code, 0, "{context}");
                }
                ApiKey::DescribeUserScramCredentials => {
                    let response = client
                        .call(
                            kafka_protocol::messages::DescribeUserScramCredentialsRequest::default(
                            )
                            .with_users(None),
                            version,
                        )
                        .await;
                    assert_eq!(response.error_code, 0, "{context}");
                    // AlterUserScramCredentials comes later in the table: none yet.
                    assert!(response.results.is_empty(), "{context}");
                }
                ApiKey::DescribeAcls => {
                    let response = client
                        .call(
                            kafka_protocol::messages::DescribeAclsRequest::default()
                                .with_resource_type_filter(1)
                                .with_resource_name_filter(None)
                                .with_principal_filter(None)
                                .with_host_filter(None)
                                .with_pattern_type_filter(1)
                                .with_operation(1)
                                .with_permission_type(1),
                            version,
                        )
                        .await;
                    assert_eq!(response.error_code, 0, "{context}");
                    // CreateAcls comes later in the table: none yet.
                    assert!(response.resources.is_empty(), "{context}");
                }
                ApiKey::CreateAcls => {
                    use kafka_protocol::messages::create_acls_request::AclCreation;
                    let response = client
                        .call(
                            kafka_protocol::messages::CreateAclsRequest::default().with_creations(
                                vec![
                                    AclCreation::default()
                                        .with_resource_type(2)
                                        .with_resource_name(StrBytes::from_string(format!(
                                            "versions-{version}"
                                        )))
                                        .with_resource_pattern_type(3)
                                        .with_principal(StrBytes::from_static_str("User:app"))
                                        .with_host(StrBytes::from_static_str("*"))
                                        .with_operation(4)
                                        .with_permission_type(3),
                                ],
                            ),
                            version,
                        )
                        .await;
                    assert_eq!(response.results[0].error_code, 0, "{context}");
                }
                ApiKey::DeleteAcls => {
                    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
                    let response = client
                        .call(
                            kafka_protocol::messages::DeleteAclsRequest::default().with_filters(
                                vec![
                                    DeleteAclsFilter::default()
                                        .with_resource_type_filter(1)
                                        .with_resource_name_filter(None)
                                        .with_principal_filter(None)
                                        .with_host_filter(None)
                                        .with_pattern_type_filter(1)
                                        .with_operation(1)
                                        .with_permission_type(1),
                                ],
                            ),
                            version,
                        )
                        .await;
                    let result = &response.filter_results[0];
                    assert_eq!(result.error_code, 0, "{context}");
                    // The first version deletes the three CreateAcls made.
                    let deleted = if version == 1 { 3 } else { 0 };
                    assert_eq!(result.matching_acls.len(), deleted, "{context}");
                }
                ApiKey::ListPartitionReassignments => {
                    let response = client
                        .call(
                            kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
                                .with_timeout_ms(5000)
                                .with_topics(None),
                            version,
                        )
                        .await;
                    assert_eq!(response.error_code, 0, "{context}");
                    assert!(response.topics.is_empty(), "{context}: nothing moves");
                }
                ApiKey::DescribeLogDirs => {
                    let response = client
                        .call(DescribeLogDirsRequest::default().with_topics(None), version)
                        .await;
                    let hosted: Vec<&str> = response.results[0]
                        .topics
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect();
                    assert!(hosted.contains(&"versions"), "{context}: {hosted:?}");
                }
                ApiKey::AlterReplicaLogDirs => {
                    let data_dir = std::fs::canonicalize(&broker.broker.config().data_dir).unwrap();
                    let request = AlterReplicaLogDirsRequest::default().with_dirs(vec![
                        alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                            .with_path(StrBytes::from_string(data_dir.display().to_string()))
                            .with_topics(vec![
                                alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                                    .with_name(name("versions"))
                                    .with_partitions(vec![0]),
                            ]),
                    ]);
                    let response = client.call(request, version).await;
                    assert_eq!(response.results[0].partitions[0].error_code, 0, "{context}");
                }
                ApiKey::DescribeTopicPartitions => {
                    let response = client
                        .call(describe_topic_partitions(&["versions"], 10, None), version)
                        .await;
                    assert_eq!(response.topics[0].partitions.len(), 1, "{context}");
                }
                ApiKey::DescribeConfigs => {
                    let response = client
                        .call(describe_topic_configs("versions"), version)
                        .await;
                    assert_eq!(response.results[0].error_code, 0, "{context}");
                    assert_eq!(
                        response.results[0].configs.len(),
                        fjord_broker::cluster::topic_config::TOPIC_CONFIGS.len(),
                        "{context}"
                    );
                }
                ApiKey::AlterConfigs => {
                    let request = AlterConfigsRequest::default().with_resources(vec![
                        alter_configs_request::AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("versions"))
                            .with_configs(vec![
                                alter_configs_request::AlterableConfig::default()
                                    .with_name(StrBytes::from_static_str("retention.ms"))
                                    .with_value(Some(StrBytes::from_static_str("86400000"))),
                            ]),
                    ]);
                    assert_eq!(
                        client.call(request, version).await.responses[0].error_code,
                        0,
                        "{context}"
                    );
                }
                ApiKey::IncrementalAlterConfigs => {
                    let response = client
                        .call(
                            incremental("versions", &[("retention.ms", 1, None)]),
                            version,
                        )
                        .await;
                    assert_eq!(response.responses[0].error_code, 0, "{context}");
                }
                ApiKey::InitProducerId => {
                    let response = client
                        .call(
                            InitProducerIdRequest::default()
                                .with_transactional_id(None)
                                .with_transaction_timeout_ms(60_000),
                            version,
                        )
                        .await;
                    assert_eq!(
                        (response.error_code, response.producer_epoch),
                        (0, 0),
                        "{context}"
                    );
                }
                ApiKey::FindCoordinator => {
                    let request = if version >= 4 {
                        FindCoordinatorRequest::default().with_coordinator_keys(vec![
                            StrBytes::from_static_str("g1"),
                            StrBytes::from_static_str("g2"),
                        ])
                    } else {
                        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g1"))
                    };
                    let response = client.call(request, version).await;
                    if version >= 4 {
                        assert_eq!(response.coordinators.len(), 2, "{context}");
                        for c in &response.coordinators {
                            assert_eq!((c.error_code, c.node_id), (0, BrokerId(1)), "{context}");
                            assert_eq!(c.port, i32::from(broker.kafka_addr.port()), "{context}");
                        }
                    } else {
                        assert_eq!((response.error_code, response.node_id), (0, BrokerId(1)));
                    }
                }
                ApiKey::JoinGroup => {
                    let group = format!("join-v{version}");
                    let joined = join(&mut client, &group, version).await;
                    assert_eq!(joined.error_code, 0, "{context}");
                    assert_eq!(joined.generation_id, 1, "{context}");
                    assert_eq!(joined.leader, joined.member_id, "{context}");
                    assert_eq!(joined.members.len(), 1, "{context}");
                    assert_eq!(joined.members[0].metadata, subscription(), "{context}");
                }
                ApiKey::SyncGroup => {
                    let group = format!("sync-v{version}");
                    let joined = join(&mut client, &group, 5).await;
                    let synced = client.call(sync(&group, &joined, b"mine"), version).await;
                    assert_eq!(synced.error_code, 0, "{context}");
                    assert_eq!(&synced.assignment[..], b"mine", "{context}");
                }
                ApiKey::Heartbeat => {
                    let group = format!("heartbeat-v{version}");
                    let joined = join(&mut client, &group, 5).await;
                    client.call(sync(&group, &joined, b"a"), 3).await;
                    let beat = |member: &StrBytes| {
                        HeartbeatRequest::default()
                            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                            .with_generation_id(joined.generation_id)
                            .with_member_id(member.clone())
                    };
                    let ok = client.call(beat(&joined.member_id), version).await;
                    assert_eq!(ok.error_code, 0, "{context}");
                    let unknown = client
                        .call(beat(&StrBytes::from_static_str("nobody")), version)
                        .await;
                    assert_eq!(unknown.error_code, 25, "{context}: UNKNOWN_MEMBER_ID");
                }
                ApiKey::LeaveGroup => {
                    let group = format!("leave-v{version}");
                    let joined = join(&mut client, &group, 5).await;
                    let mut request = LeaveGroupRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group.clone())));
                    if version >= 3 {
                        request = request.with_members(vec![
                            leave_group_request::MemberIdentity::default()
                                .with_member_id(joined.member_id.clone()),
                        ]);
                    } else {
                        request = request.with_member_id(joined.member_id.clone());
                    }
                    let left = client.call(request, version).await;
                    assert_eq!(left.error_code, 0, "{context}");
                    if version >= 3 {
                        assert_eq!(left.members[0].error_code, 0, "{context}");
                    }
                    let described = client.call(describe_groups(&[&group]), 5).await;
                    assert_eq!(
                        described.groups[0].group_state.as_str(),
                        "Empty",
                        "{context}"
                    );
                }
                ApiKey::OffsetCommit => {
                    let group = format!("commit-v{version}");
                    let response = client
                        .call(
                            commit(&group, "versions", 0, 100 + i64::from(version)),
                            version,
                        )
                        .await;
                    assert_eq!(response.topics[0].partitions[0].error_code, 0, "{context}");
                    let fetched = client.call(fetch_offsets(&group, "versions", 0), 7).await;
                    assert_eq!(
                        fetched.topics[0].partitions[0].committed_offset,
                        100 + i64::from(version),
                        "{context}"
                    );
                }
                ApiKey::OffsetFetch => {
                    let group = format!("fetch-v{version}");
                    client.call(commit(&group, "versions", 0, 7), 8).await;
                    if version >= 8 {
                        let request = OffsetFetchRequest::default().with_groups(vec![
                            // No topics: every committed offset of the group.
                            offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                                .with_topics(None),
                            offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(StrBytes::from_static_str("never")))
                                .with_topics(None),
                        ]);
                        let response = client.call(request, version).await;
                        assert_eq!(response.groups.len(), 2, "{context}");
                        let ours = &response.groups[0].topics[0];
                        assert_eq!(ours.partitions[0].committed_offset, 7, "{context}");
                        assert!(response.groups[1].topics.is_empty(), "{context}");
                    } else {
                        let response = client
                            .call(fetch_offsets(&group, "versions", 0), version)
                            .await;
                        let p = &response.topics[0].partitions[0];
                        assert_eq!((p.error_code, p.committed_offset), (0, 7), "{context}");
                        let none = client
                            .call(fetch_offsets(&group, "versions", 9), version)
                            .await;
                        assert_eq!(none.topics[0].partitions[0].committed_offset, -1);
                    }
                }
                ApiKey::ListGroups => {
                    let response = client.call(ListGroupsRequest::default(), version).await;
                    assert_eq!(response.error_code, 0, "{context}");
                    assert!(
                        response
                            .groups
                            .iter()
                            .any(|g| g.group_id.as_str() == "fetch-v1"),
                        "{context}"
                    );
                }
                ApiKey::DescribeGroups => {
                    let group = format!("describe-v{version}");
                    let joined = join(&mut client, &group, 5).await;
                    client.call(sync(&group, &joined, b"asg"), 3).await;
                    let response = client.call(describe_groups(&[&group]), version).await;
                    let described = &response.groups[0];
                    assert_eq!(described.error_code, 0, "{context}");
                    assert_eq!(described.group_state.as_str(), "Stable", "{context}");
                    assert_eq!(described.protocol_data.as_str(), "range", "{context}");
                    assert_eq!(described.members[0].client_id.as_str(), "fjord-test");
                    assert_eq!(&described.members[0].member_assignment[..], b"asg");
                    // An unknown group: Dead, and from v6 GROUP_ID_NOT_FOUND (KIP-1043).
                    let response = client.call(describe_groups(&["nobody"]), version).await;
                    let unknown = &response.groups[0];
                    assert_eq!(unknown.group_state.as_str(), "Dead", "{context}");
                    let code = if version >= 6 { 69 } else { 0 };
                    assert_eq!(unknown.error_code, code, "{context}");
                }
                ApiKey::DeleteGroups => {
                    let group = format!("delete-v{version}");
                    client.call(commit(&group, "versions", 0, 3), 8).await;
                    let request = DeleteGroupsRequest::default()
                        .with_groups_names(vec![GroupId(StrBytes::from_string(group.clone()))]);
                    let response = client.call(request.clone(), version).await;
                    assert_eq!(response.results[0].error_code, 0, "{context}");
                    let again = client.call(request, version).await;
                    assert_eq!(
                        again.results[0].error_code, 69,
                        "{context}: GROUP_ID_NOT_FOUND"
                    );
                }
                ApiKey::OffsetDelete => {
                    let group = format!("offset-delete-v{version}");
                    client.call(commit(&group, "versions", 0, 3), 8).await;
                    let request = OffsetDeleteRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                        .with_topics(vec![
                            offset_delete_request::OffsetDeleteRequestTopic::default()
                                .with_name(name("versions"))
                                .with_partitions(vec![
                                    offset_delete_request::OffsetDeleteRequestPartition::default()
                                        .with_partition_index(0),
                                ]),
                        ]);
                    let response = client.call(request, version).await;
                    assert_eq!(response.error_code, 0, "{context}");
                    assert_eq!(response.topics[0].partitions[0].error_code, 0, "{context}");
                    let fetched = client.call(fetch_offsets(&group, "versions", 0), 7).await;
                    assert_eq!(fetched.topics[0].partitions[0].committed_offset, -1);
                }
                other => panic!("no check for {other:?}"),
            }
        }
    }
}

fn describe_topic_partitions(
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsRequest {
    DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    describe_topic_partitions_request::TopicRequest::default().with_name(name(t))
                })
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(topic, partition)| {
            describe_topic_partitions_request::Cursor::default()
                .with_topic_name(name(topic))
                .with_partition_index(partition)
        }))
}

/// DescribeTopicPartitions answers topics in name order, in pages of at most the limit asked
/// for, with a cursor to the next page; an unknown topic gets UNKNOWN_TOPIC_OR_PARTITION.
/// DescribeQuorum names this broker, a quorum of one voter, as the leader.
#[tokio::test]
async fn describe_topic_partitions_pages_and_describe_quorum_names_the_leader() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    client.call(create("paged-b", 3), 7).await;
    client.call(create("paged-a", 2), 7).await;

    let first = client
        .call(
            describe_topic_partitions(&["paged-b", "paged-a", "nope"], 3, None),
            0,
        )
        .await;
    let names: Vec<String> = first
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(names, ["nope", "paged-a", "paged-b"]);
    assert_eq!(
        first.topics[0].error_code,
        kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code()
    );
    let partitions =
        |topic: &describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic| {
            topic
                .partitions
                .iter()
                .map(|p| p.partition_index)
                .collect::<Vec<_>>()
        };
    assert_eq!(partitions(&first.topics[1]), [0, 1]);
    assert_eq!(partitions(&first.topics[2]), [0]);
    let cursor = first.next_cursor.unwrap();
    assert_eq!(
        (
            cursor.topic_name.0.to_string().as_str(),
            cursor.partition_index
        ),
        ("paged-b", 1)
    );

    let rest = client
        .call(
            describe_topic_partitions(&["paged-b", "paged-a"], 3, Some(("paged-b", 1))),
            0,
        )
        .await;
    assert_eq!(rest.topics.len(), 1);
    assert_eq!(partitions(&rest.topics[0]), [1, 2]);
    assert!(rest.next_cursor.is_none());
    let leader = &rest.topics[0].partitions[0];
    assert_eq!((leader.leader_id.0, leader.replica_nodes.len()), (1, 1));

    let quorum = client.call(DescribeQuorumRequest::default(), 2).await;
    assert_eq!(
        quorum.topics[0].topic_name.0.to_string(),
        "__cluster_metadata"
    );
    let partition = &quorum.topics[0].partitions[0];
    assert_eq!(partition.leader_id.0, 1);
    assert!(partition.leader_epoch >= 1 && partition.high_watermark >= 1);
    let voters: Vec<i32> = partition
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    assert_eq!(voters, [1]);
    assert!(partition.current_voters[0].log_end_offset >= partition.high_watermark);
    assert_eq!(quorum.nodes[0].node_id.0, 1);
}

/// A consumer-protocol subscription to "versions".
fn subscription() -> Bytes {
    Bytes::from_static(&[
        0, 0, 0, 0, 0, 1, 0, 8, b'v', b'e', b'r', b's', b'i', b'o', b'n', b's', 255, 255, 255, 255,
    ])
}

/// Joins `group` as a new member (retrying once with the id a v4+ broker hands out).
async fn join(client: &mut Client, group: &str, version: i16) -> JoinGroupResponse {
    let request = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(member)
            .with_group_instance_id(None)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(subscription()),
            ])
    };
    let first = client.call(request(StrBytes::default()), version).await;
    if first.error_code != 79 {
        assert!(version < 4, "v{version} hands out a member id first");
        return first;
    }
    client.call(request(first.member_id), version).await
}

fn sync(group: &str, joined: &JoinGroupResponse, assignment: &'static [u8]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_group_instance_id(None)
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(Bytes::from_static(assignment)),
        ])
}

fn describe_groups(groups: &[&str]) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(
        groups
            .iter()
            .map(|g| GroupId(StrBytes::from_string((*g).to_owned())))
            .collect(),
    )
}

/// A commit from outside the group protocol (generation -1), as `assign()` consumers send.
fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_group_instance_id(None)
        .with_retention_time_ms(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                ]),
        ])
}

fn fetch_offsets(group: &str, topic: &str, partition: i32) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![partition]),
        ]))
}

fn idempotent(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(v.as_bytes().to_vec()),
            headers: vec![],
            timestamp: 1,
        })
        .collect();
    Bytes::from(build_batch(
        &records,
        ProducerInfo {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
        },
    ))
}

#[tokio::test]
async fn idempotent_retries_are_not_appended_twice_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("idem", 1), 7).await;
    let init = client
        .call(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .await;
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let other = client
        .call(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .await;
    assert_ne!(other.producer_id.0, pid, "each producer gets its own id");

    let send = |sequence, values: &'static [&'static str]| {
        produce("idem", 0, idempotent(pid, epoch, sequence, values), -1)
    };
    assert_eq!(
        produce_code(&client.call(send(0, &["a", "b"]), 9).await),
        (0, 0)
    );
    assert_eq!(produce_code(&client.call(send(2, &["c"]), 9).await), (0, 2));
    // A retry of the first batch: its original offsets, nothing appended.
    assert_eq!(
        produce_code(&client.call(send(0, &["a", "b"]), 9).await),
        (0, 0)
    );
    // A gap in the sequence.
    assert_eq!(
        produce_code(&client.call(send(7, &["x"]), 9).await).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // An old epoch after a bump.
    let bumped = client
        .call(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            4,
        )
        .await;
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (pid, epoch + 1)
    );
    let fetched = client.call(fetch("idem", 0, 0, 1, 10), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 3);
    drop(client);
    broker.shutdown().await;

    // Clean restart: the snapshot brings the state back.
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        produce_code(&client.call(send(2, &["c"]), 9).await),
        (0, 2),
        "retry after restart"
    );
    assert_eq!(produce_code(&client.call(send(3, &["d"]), 9).await), (0, 3));
    drop(client);
    broker.shutdown().await;

    // Without the snapshot the state is rebuilt from the log itself.
    std::fs::remove_file(dir.path().join("idem-0/producer-state.json")).unwrap();
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        produce_code(&client.call(send(3, &["d"]), 9).await),
        (0, 3),
        "retry after replay"
    );
    assert_eq!(produce_code(&client.call(send(4, &["e"]), 9).await), (0, 4));
    let fetched = client.call(fetch("idem", 0, 0, 1, 10), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 5);
    // Two batches in one idempotent produce are refused.
    let mut two = idempotent(pid, epoch, 5, &["f"]).to_vec();
    two.extend_from_slice(&idempotent(pid, epoch, 6, &["g"]));
    assert_eq!(
        produce_code(
            &client
                .call(produce("idem", 0, Bytes::from(two), -1), 9)
                .await
        )
        .0,
        87
    );
}

fn grow(topic: &str, count: i32, validate_only: bool) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_validate_only(validate_only)
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(count)
                .with_assignments(None),
        ])
}

#[tokio::test]
async fn partitions_grow_and_deleted_topics_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("grow", 1), 7).await;
    client
        .call(produce("grow", 0, records(&["old"], 1), -1), 9)
        .await;

    let code = |r: CreatePartitionsResponse| r.results[0].error_code;
    assert_eq!(
        code(client.call(grow("grow", 5, true), 3).await),
        0,
        "validate only"
    );
    assert_eq!(code(client.call(grow("grow", 3, false), 3).await), 0);
    assert_eq!(
        code(client.call(grow("grow", 2, false), 3).await),
        37,
        "never fewer partitions"
    );
    assert_eq!(code(client.call(grow("missing", 2, false), 3).await), 3);
    let topics = client.user_topics().await;
    assert_eq!(topics[0].partitions.len(), 3, "validate_only added nothing");
    // An empty assignment list (the kafka-protocol crate's default) is no assignment.
    let mut empty = grow("grow", 4, false);
    empty.topics[0].assignments = Some(Vec::new());
    assert_eq!(code(client.call(empty, 3).await), 0);
    let topics = client.user_topics().await;
    assert_eq!(topics[0].partitions.len(), 4);
    assert_eq!(
        produce_code(
            &client
                .call(produce("grow", 2, records(&["new"], 1), -1), 9)
                .await
        ),
        (0, 0)
    );

    let deleted = client
        .call(
            DeleteTopicsRequest::default().with_topic_names(vec![name("grow"), name("missing")]),
            5,
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(deleted.responses[1].error_code, 3);
    for partition in 0..4 {
        assert!(
            !dir.path().join(format!("grow-{partition}")).exists(),
            "files of grow-{partition} removed"
        );
    }
    assert!(client.user_topics().await.is_empty());
    assert_eq!(
        produce_code(
            &client
                .call(produce("grow", 0, records(&["x"], 1), -1), 9)
                .await
        )
        .0,
        3
    );

    // A new topic of the same name starts empty, and all of this survives a restart.
    client.call(create("grow", 1), 7).await;
    drop(client);
    broker.shutdown().await;
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let fetched = client.call(fetch("grow", 0, 0, 1, 10), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 0);
    assert_eq!(client.user_topics().await[0].partitions.len(), 1);
}

fn delete_records(topic: &str, partition: i32, offset: i64) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ])
}

#[tokio::test]
async fn delete_records_moves_the_low_watermark_and_describe_cluster_names_the_broker() {
    let (broker, _dir) = start(|c| c.rack = Some("zone-a".into())).await;
    let mut client = Client::connect(&broker).await;
    client.call(create("trim", 1), 7).await;
    for _ in 0..4 {
        client
            .call(produce("trim", 0, records(&["a", "b"], 1), -1), 9)
            .await;
    }
    let low = |r: DeleteRecordsResponse| {
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].low_watermark,
        )
    };
    assert_eq!(
        low(client.call(delete_records("trim", 0, 3), 2).await),
        (0, 3)
    );
    assert_eq!(
        low(client.call(delete_records("trim", 0, 99), 2).await).0,
        1,
        "past the high watermark"
    );
    assert_eq!(low(client.call(delete_records("nope", 0, 1), 2).await).0, 3);
    assert_eq!(
        client.call(fetch("trim", 0, 2, 1, 10), 12).await.responses[0].partitions[0].error_code,
        1
    );
    let fetched = client.call(fetch("trim", 0, 3, 1, 10), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].log_start_offset, 3);
    assert_eq!(
        low(client.call(delete_records("trim", 0, -1), 2).await),
        (0, 8),
        "-1 is the high watermark"
    );

    let cluster = client
        .call(DescribeClusterRequest::default().with_endpoint_type(1), 1)
        .await;
    assert_eq!(cluster.cluster_id.len(), 22);
    assert_eq!(cluster.controller_id, BrokerId(1));
    assert_eq!(cluster.brokers[0].rack.as_deref(), Some("zone-a"));
    assert_eq!(cluster.brokers[0].port, i32::from(broker.kafka_addr.port()));
}

fn describe_topic_configs(topic: &str) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configuration_keys(None),
    ])
}

fn incremental(topic: &str, ops: &[(&str, i8, Option<&str>)]) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configs(
                ops.iter()
                    .map(|(key, op, value)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string((*key).to_owned()))
                            .with_config_operation(*op)
                            .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
                    })
                    .collect(),
            ),
    ])
}

/// (value, source) of one config in a DescribeConfigs response.
fn config_of(response: &DescribeConfigsResponse, key: &str) -> (String, i8) {
    let entry = response.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap();
    (
        entry.value.as_deref().unwrap().to_owned(),
        entry.config_source,
    )
}

#[tokio::test]
async fn topic_configs_are_described_changed_applied_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("conf", 1), 7).await;

    let described = client.call(describe_topic_configs("conf"), 4).await;
    assert_eq!(
        config_of(&described, "retention.ms"),
        ("604800000".into(), 5),
        "default"
    );
    assert_eq!(
        config_of(&described, "cleanup.policy"),
        ("delete".into(), 5)
    );

    // SET applies to the running partition at once.
    let set = client
        .call(
            incremental(
                "conf",
                &[
                    ("max.message.bytes", 0, Some("200")),
                    ("retention.ms", 0, Some("1000")),
                ],
            ),
            1,
        )
        .await;
    assert_eq!(set.responses[0].error_code, 0);
    let big = records(&[&"y".repeat(500)], 1);
    assert_eq!(
        produce_code(&client.call(produce("conf", 0, big.clone(), -1), 9).await).0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    let described = client.call(describe_topic_configs("conf"), 4).await;
    assert_eq!(
        config_of(&described, "retention.ms"),
        ("1000".into(), 1),
        "an override"
    );

    // Refused changes say why and change nothing.
    let refused = client
        .call(
            incremental("conf", &[("min.cleanable.dirty.ratio", 0, Some("2"))]),
            1,
        )
        .await;
    assert_eq!(refused.responses[0].error_code, 40);
    assert!(
        refused.responses[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("min.cleanable.dirty.ratio")
    );
    assert_eq!(
        client
            .call(incremental("conf", &[("retention.msec", 0, Some("1"))]), 1)
            .await
            .responses[0]
            .error_code,
        40
    );
    assert_eq!(
        client
            .call(incremental("missing", &[("retention.ms", 0, Some("1"))]), 1)
            .await
            .responses[0]
            .error_code,
        3
    );

    // DELETE returns a key to its default; the change survives a restart.
    client
        .call(incremental("conf", &[("max.message.bytes", 1, None)]), 1)
        .await;
    drop(client);
    broker.shutdown().await;
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let described = client.call(describe_topic_configs("conf"), 1).await;
    assert_eq!(
        config_of(&described, "max.message.bytes"),
        ("1048588".into(), 5)
    );
    assert_eq!(config_of(&described, "retention.ms"), ("1000".into(), 1));
    assert_eq!(
        produce_code(&client.call(produce("conf", 0, big, -1), 9).await),
        (0, 0)
    );

    let brokers = client
        .call(
            DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configuration_keys(None),
            ]),
            4,
        )
        .await;
    assert!(
        brokers.results[0]
            .configs
            .iter()
            .any(|c| c.name.as_str() == "num.partitions" && c.read_only)
    );
}

/// IncrementalAlterConfigs on a BROKER resource (`""` cluster-wide, or a broker id).
fn incremental_broker(
    resource: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> IncrementalAlterConfigsRequest {
    let mut request = incremental(resource, ops);
    request.resources[0].resource_type = 4;
    request
}

fn describe_broker(resource: &str, synonyms: bool) -> DescribeConfigsRequest {
    let mut request = describe_topic_configs(resource).with_include_synonyms(synonyms);
    request.resources[0].resource_type = 4;
    request
}

/// Dynamic broker configs: set cluster-wide or for one broker with IncrementalAlterConfigs and
/// AlterConfigs, kept in the metadata across restarts, inherited by topics without an override
/// (DescribeConfigs says from where, with synonyms) and applied by their logs; read-only ones and
/// bad values are refused with Kafka's codes.
#[tokio::test]
async fn dynamic_broker_configs_are_inherited_applied_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("inherits", 1), 7).await;

    // The broker's whole configuration: its flags read-only and static, the rest defaults.
    let described = client.call(describe_broker("1", false), 4).await;
    let entry = |response: &DescribeConfigsResponse, key: &str| {
        response.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} not described"))
    };
    let advertised = entry(&described, "advertised.listeners");
    assert_eq!((advertised.config_source, advertised.read_only), (4, true));
    assert_eq!(
        advertised.value.as_deref(),
        Some(format!("PLAINTEXT://{}", broker.kafka_addr).as_str())
    );
    assert_eq!(
        config_of(&described, "log.retention.ms"),
        ("604800000".into(), 5)
    );
    assert_eq!(config_of(&described, "log.flush.interval.messages").1, 5);

    // Cluster-wide, then for broker 1: the broker's own value wins, and topics inherit it.
    let set = |resource: &str, key: &'static str, value: &'static str| {
        incremental_broker(resource, &[(key, 0, Some(value))])
    };
    for (resource, value) in [("", "3600000"), ("1", "7200000")] {
        let response = client
            .call(set(resource, "log.retention.ms", value), 1)
            .await;
        assert_eq!(response.responses[0].error_code, 0, "{resource}");
    }
    let topic = client
        .call(
            describe_topic_configs("inherits").with_include_synonyms(true),
            4,
        )
        .await;
    assert_eq!(config_of(&topic, "retention.ms"), ("7200000".into(), 2));
    let synonyms: Vec<(String, String, i8)> = topic.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap()
        .synonyms
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.value.as_deref().unwrap_or_default().to_owned(),
                s.source,
            )
        })
        .collect();
    assert_eq!(
        synonyms,
        [
            ("log.retention.ms".into(), "7200000".into(), 2),
            ("log.retention.ms".into(), "3600000".into(), 3),
            ("log.retention.ms".into(), "604800000".into(), 5),
        ]
    );
    let cluster = client.call(describe_broker("", false), 4).await;
    assert_eq!(
        config_of(&cluster, "log.retention.ms"),
        ("3600000".into(), 3)
    );
    assert_eq!(cluster.results[0].configs.len(), 1);

    // AlterConfigs replaces broker 1's dynamic configs: its retention goes, the cluster's shows.
    let replace = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configs(vec![
                alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(
                        "log.message.timestamp.after.max.ms",
                    ))
                    .with_value(Some(StrBytes::from_static_str("60000"))),
            ]),
    ]);
    assert_eq!(client.call(replace, 2).await.responses[0].error_code, 0);
    let topic = client.call(describe_topic_configs("inherits"), 4).await;
    assert_eq!(config_of(&topic, "retention.ms"), ("3600000".into(), 3));
    assert_eq!(
        config_of(&topic, "message.timestamp.after.max.ms"),
        ("60000".into(), 2)
    );
    // The topic's log applies it: a record two minutes ahead is refused now.
    let ahead = records(&["soon"], now_ms() + 120_000);
    let response = client
        .call(produce("inherits", 0, ahead.clone(), -1), 9)
        .await;
    assert_eq!(produce_code(&response), (32, -1), "INVALID_TIMESTAMP");
    // A topic override wins over the broker's value.
    client
        .call(
            incremental(
                "inherits",
                &[("message.timestamp.after.max.ms", 0, Some("600000"))],
            ),
            1,
        )
        .await;
    let response = client.call(produce("inherits", 0, ahead, -1), 9).await;
    assert_eq!(produce_code(&response), (0, 0));

    // Read-only configs, bad values, unknown keys and broker names are refused.
    for (request, code) in [
        (set("1", "node.id", "7"), 42),
        (set("", "num.partitions", "7"), 42),
        (set("", "log.segment.bytes", "big"), 40),
        (set("", "log.preallocate", "true"), 40),
        (set("", "no.such.config", "1"), 42),
        (set("broker-one", "log.retention.ms", "1"), 42),
        (set("01", "log.retention.ms", "1"), 42),
    ] {
        let name = request.resources[0].configs[0].name.to_string();
        let response = client.call(request, 1).await;
        assert_eq!(response.responses[0].error_code, code, "{name}");
        assert!(response.responses[0].error_message.is_some(), "{name}");
    }
    // Produce reads inherited values too: min.insync.replicas=2 cluster-wide refuses acks=all on
    // a single broker, until it is deleted again.
    let response = client.call(set("", "min.insync.replicas", "2"), 1).await;
    assert_eq!(response.responses[0].error_code, 0);
    let response = client
        .call(produce("inherits", 0, records(&["r"], now_ms()), -1), 9)
        .await;
    assert_eq!(produce_code(&response).0, 19, "NOT_ENOUGH_REPLICAS");
    let response = client
        .call(
            incremental_broker("", &[("min.insync.replicas", 1, None)]),
            1,
        )
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    let response = client
        .call(produce("inherits", 0, records(&["r"], now_ms()), -1), 9)
        .await;
    assert_eq!(produce_code(&response).0, 0);
    // Another broker's configs are described by that broker, as in Kafka.
    let other = client.call(describe_broker("2", false), 4).await;
    assert_eq!(other.results[0].error_code, 42);

    // Kept in the metadata across a restart.
    drop(client);
    broker.shutdown().await;
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let described = client.call(describe_broker("1", false), 4).await;
    assert_eq!(
        config_of(&described, "log.message.timestamp.after.max.ms"),
        ("60000".into(), 2)
    );
    assert_eq!(
        config_of(&described, "log.retention.ms"),
        ("3600000".into(), 3)
    );
    // DELETE returns a key to what it inherits.
    client
        .call(incremental_broker("", &[("log.retention.ms", 1, None)]), 1)
        .await;
    let topic = client.call(describe_topic_configs("inherits"), 4).await;
    assert_eq!(config_of(&topic, "retention.ms"), ("604800000".into(), 5));
}

#[tokio::test]
async fn committed_offsets_survive_restarts_show_lag_and_expire_when_the_group_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("versions", 2), 7).await;
    let now = now_ms();
    client
        .call(
            produce("versions", 1, records(&["a", "b", "c", "d"], now), -1),
            9,
        )
        .await;
    let committed = client.call(commit("lagging", "versions", 1, 1), 8).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let unknown = client.call(commit("lagging", "missing", 0, 1), 8).await;
    assert_eq!(
        unknown.topics[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    // A member of another group: its group cannot be deleted, nor its subscribed offsets.
    let joined = join(&mut client, "busy", 5).await;
    client.call(sync("busy", &joined, b"x"), 3).await;
    let busy_commit = commit("busy", "versions", 0, 0)
        .with_generation_id_or_member_epoch(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    let response = client.call(busy_commit, 8).await;
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let stale = commit("busy", "versions", 0, 0)
        .with_generation_id_or_member_epoch(joined.generation_id + 1)
        .with_member_id(joined.member_id.clone());
    let response = client.call(stale, 8).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code, 22,
        "ILLEGAL_GENERATION"
    );
    let request = DeleteGroupsRequest::default()
        .with_groups_names(vec![GroupId(StrBytes::from_static_str("busy"))]);
    assert_eq!(
        client.call(request, 2).await.results[0].error_code,
        68,
        "NON_EMPTY_GROUP"
    );

    let metrics = broker.broker.metrics().render(
        &broker.broker.partition_samples(),
        &broker.broker.group_offset_samples(),
    );
    assert!(
        metrics.contains(
            r#"fjord_consumer_group_lag{group="lagging",topic="versions",partition="1"} 3"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"fjord_consumer_group_committed_offset{group="lagging",topic="versions",partition="1"} 1"#
        ),
        "{metrics}"
    );
    drop(client);
    broker.shutdown().await;

    // After a restart the offsets and the group are still there; the member must rejoin or
    // heartbeat within its session timeout.
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let fetched = client
        .call(fetch_offsets("lagging", "versions", 1), 7)
        .await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 1);
    let fetched = client.call(fetch_offsets("busy", "versions", 0), 7).await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 0);
    let described = client.call(describe_groups(&["busy"]), 5).await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members[0].member_id, joined.member_id);
    let beat = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("busy")))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    assert_eq!(client.call(beat, 4).await.error_code, 0);
    drop(client);
    broker.shutdown().await;

    // With a retention of zero, an empty group's offsets expire at the next check.
    let mut expiring = config;
    expiring.coordinator.offsets_retention_minutes = 0;
    let broker = fjord_broker::start(expiring, CancellationToken::new())
        .await
        .unwrap();
    let coordinator = broker.broker.coordinator().unwrap();
    assert_eq!(
        coordinator.expire_offsets().await,
        1,
        "only the empty group's offset"
    );
    let mut client = Client::connect(&broker).await;
    let fetched = client
        .call(fetch_offsets("lagging", "versions", 1), 7)
        .await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, -1);
    let fetched = client.call(fetch_offsets("busy", "versions", 0), 7).await;
    assert_eq!(
        fetched.topics[0].partitions[0].committed_offset, 0,
        "busy has a member"
    );
}

#[tokio::test]
async fn clients_cannot_write_delete_or_grow_the_offsets_topic() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    let response = client
        .call(
            produce("__consumer_offsets", 0, records(&["x"], now_ms()), -1),
            9,
        )
        .await;
    assert_eq!(produce_code(&response).0, 17, "INVALID_TOPIC_EXCEPTION");
    let deleted = client
        .call(
            DeleteTopicsRequest::default().with_topic_names(vec![name("__consumer_offsets")]),
            5,
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 17);
    let grown = client.call(grow("__consumer_offsets", 10, false), 3).await;
    assert_eq!(grown.results[0].error_code, 17);
    let offsets = broker.broker.partition("__consumer_offsets", 0).unwrap();
    assert_eq!(offsets.high_watermark(), 0, "nothing was appended");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn create_with(topic: &str, configs: &[(&str, &str)]) -> CreateTopicsRequest {
    let mut request = create(topic, 1);
    request.topics[0].configs = configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string((*key).to_owned()))
                .with_value(Some(StrBytes::from_string((*value).to_owned())))
        })
        .collect();
    request
}

/// One batch of `key=value` records (`None`: a tombstone; a `None` key: no key).
fn keyed_batch(
    pairs: &[(Option<&str>, Option<&str>)],
    timestamp: i64,
    codec: fjord_broker::record::Compression,
) -> Bytes {
    let records: Vec<Record> = pairs
        .iter()
        .map(|(key, value)| Record {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![],
            timestamp,
        })
        .collect();
    Bytes::from(
        fjord_broker::record::build_compressed_batch(&records, ProducerInfo::NONE, codec).unwrap(),
    )
}

/// Every record of partition 0 from offset 0, fetched and decoded as a client does:
/// (offset, key, value).
async fn fetch_records(client: &mut Client, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut request = fetch(topic, 0, offset, 1, 0);
        request.max_bytes = 700;
        request.topics[0].partitions[0].partition_max_bytes = 700;
        let response = client.call(request, 12).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        let mut bytes = partition.records.clone().unwrap_or_default();
        if bytes.is_empty() {
            return out;
        }
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        for record in sets.into_iter().flat_map(|set| set.records) {
            assert!(record.offset >= offset, "offsets only grow");
            offset = record.offset + 1;
            out.push((record.offset, text(record.key).unwrap(), text(record.value)));
        }
    }
}

#[tokio::test]
async fn compacted_topics_keep_the_latest_value_of_every_key() {
    use fjord_broker::record::Compression;
    let (broker, _dir) = start(|c| c.log_cleaner_backoff_ms = 20).await;
    let mut client = Client::connect(&broker).await;
    let created = client
        .call(
            create_with(
                "state",
                &[
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", "1024"),
                    ("min.cleanable.dirty.ratio", "0.01"),
                ],
            ),
            7,
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 24 * 60 * 60 * 1000;

    // Records without a key: INVALID_RECORD naming every one of them, and nothing appended.
    let response = client
        .call(
            produce(
                "state",
                0,
                keyed_batch(
                    &[
                        (Some("a"), Some("x")),
                        (None, Some("y")),
                        (Some("b"), Some("z")),
                        (None, None),
                    ],
                    now,
                    Compression::Gzip,
                ),
                -1,
            ),
            9,
        )
        .await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 87, "INVALID_RECORD");
    let named: Vec<(i32, Option<String>)> = partition
        .record_errors
        .iter()
        .map(|e| {
            (
                e.batch_index,
                e.batch_index_error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    let message = "Compacted topic cannot accept message without key in topic partition state-0.";
    assert_eq!(
        named,
        vec![(1, Some(message.to_owned())), (3, Some(message.to_owned()))]
    );
    assert_eq!(
        partition.error_message.as_deref().unwrap(),
        format!(
            "One or more records have been rejected due to 2 record errors in total, and only showing the \
             first three errors at most: [RecordError(batchIndex=1, message='{message}'), \
             RecordError(batchIndex=3, message='{message}')]"
        )
    );

    // Overwrites of 12 keys, in batches of three, some compressed; then tombstones: recent ones
    // for k0 and k1 (kept for delete.retention.ms), old ones for k2 and k3 (past it: removed).
    let mut expected = std::collections::BTreeMap::new();
    let mut next = 0;
    for round in 0..8 {
        for chunk in 0..4 {
            let values: Vec<(String, String)> = (0..3)
                .map(|i| (format!("k{}", chunk * 3 + i), format!("r{round}")))
                .collect();
            let pairs: Vec<_> = values
                .iter()
                .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
                .collect();
            let codec = if chunk % 2 == 0 {
                Compression::None
            } else {
                Compression::Zstd
            };
            let response = client
                .call(produce("state", 0, keyed_batch(&pairs, now, codec), -1), 9)
                .await;
            assert_eq!(produce_code(&response), (0, next));
            for (i, (key, value)) in values.into_iter().enumerate() {
                expected.insert(key, (next + i as i64, Some(value)));
            }
            next += 3;
        }
    }
    for (key, timestamp) in [
        ("k0", now),
        ("k1", now),
        ("k2", now - 2 * day),
        ("k3", now - 2 * day),
    ] {
        let response = client
            .call(
                produce(
                    "state",
                    0,
                    keyed_batch(&[(Some(key), None)], timestamp, Compression::None),
                    -1,
                ),
                9,
            )
            .await;
        assert_eq!(produce_code(&response), (0, next));
        if timestamp == now {
            expected.insert(key.to_owned(), (next, None));
        } else {
            expected.remove(key);
        }
        next += 1;
    }
    // Fresh keys that fill the active segment so every overwrite above is in a sealed one.
    for i in 0..12 {
        let key = format!("fill{i:02}");
        let value = "f".repeat(100);
        let response = client
            .call(
                produce(
                    "state",
                    0,
                    keyed_batch(&[(Some(&key), Some(&value))], now, Compression::None),
                    -1,
                ),
                9,
            )
            .await;
        assert_eq!(produce_code(&response), (0, next));
        expected.insert(key, (next, Some(value)));
        next += 1;
    }
    // The timer (20 ms here) finds the log dirty and compacts it; a forced pass then has
    // nothing left to do. Poll with a deadline, never sleep-and-hope.
    let partition = broker.broker.partition("state", 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let latest: Vec<(i64, String, Option<String>)> = expected
        .iter()
        .map(|(key, (offset, value))| (*offset, key.clone(), value.clone()))
        .collect();
    let mut latest = latest;
    latest.sort();
    loop {
        let now_read = fetch_records(&mut client, "state").await;
        if now_read == latest {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted in time: {now_read:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let forced = partition.compact_now().await.unwrap();
    assert_eq!(forced.records_removed, 0);
    assert_eq!(fetch_records(&mut client, "state").await, latest);

    // Offsets and watermarks are as produced: the log start stays 0, the high watermark at the end.
    let response = client.call(fetch("state", 0, 0, 1, 0), 12).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!((p.log_start_offset, p.high_watermark), (0, next));
    // A fetch from inside a removed range gets the next retained batch.
    let gap = client.call(fetch("state", 0, 1, 1, 0), 12).await;
    let mut bytes = gap.responses[0].partitions[0].records.clone().unwrap();
    let first = &kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap()[0];
    assert!(first.records[0].offset > 1);

    // DeleteRecords is refused on a topic that only compacts, as Kafka refuses it.
    let refused = client.call(delete_records("state", 0, 5), 2).await;
    assert_eq!(
        refused.topics[0].partitions[0].error_code, 44,
        "POLICY_VIOLATION"
    );

    // The cleaner's work is counted per topic.
    let metrics = broker.broker.metrics().render(&[], &[]);
    assert!(
        metrics.lines().any(|l| l
            .starts_with("fjord_compaction_removed_records_total{topic=\"state\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The compacted log survives a restart as it is.
    drop(client);
    let dir_path = _dir.path().to_path_buf();
    broker.shutdown().await;
    let mut config = BrokerConfig::for_tests(dir_path);
    config.log_cleaner_backoff_ms = 20;
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    assert_eq!(fetch_records(&mut client, "state").await, latest);
    broker.shutdown().await;
}

/// Commits offsets (with 100 bytes of metadata) for fifty partitions, `count` times, each time
/// one further along.
async fn commit_rounds(client: &mut Client, group: &str, first: i64, count: i64) {
    for round in first..first + count {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_generation_id_or_member_epoch(-1)
            .with_group_instance_id(None)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("busy-topic"))
                    .with_partitions(
                        (0..50)
                            .map(|p| {
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(round * 50 + i64::from(p))
                                    .with_committed_leader_epoch(-1)
                                    .with_committed_metadata(Some(StrBytes::from_string(
                                        "m".repeat(100),
                                    )))
                            })
                            .collect(),
                    ),
            ]);
        let response = client.call(request, 8).await;
        assert!(
            response.topics[0]
                .partitions
                .iter()
                .all(|p| p.error_code == 0)
        );
    }
}

#[tokio::test]
async fn the_offsets_topic_stays_bounded_under_a_commit_heavy_load() {
    const SEGMENT: u64 = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path().to_path_buf());
    config.coordinator.offsets_topic_partitions = 1;
    config.coordinator.offsets_topic_segment_bytes = SEGMENT;
    config.log_cleaner_backoff_ms = 50;
    let broker = fjord_broker::start(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    client.call(create("busy-topic", 50), 7).await;
    let offsets = broker.broker.partition("__consumer_offsets", 0).unwrap();
    // Each commit writes ~8 KiB (50 records); 200 commits write about 100 segments' worth, while
    // the latest commit of every partition fits in one.
    let mut written = 0;
    for round in 0..5 {
        commit_rounds(&mut client, "heavy", round * 40, 40).await;
        written += 40;
        // The background cleaner brings the log back to cleaned segments plus the active one.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let size = offsets.reader().size_bytes();
            if size <= 3 * SEGMENT {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "__consumer_offsets holds {size} bytes after {written} commits"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        offsets.high_watermark() >= 50 * written,
        "every commit was written"
    );
    drop(client);
    broker.shutdown().await;

    // What compaction kept is exactly the latest commit of every partition.
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    for partition in 0..50 {
        let fetched = client
            .call(fetch_offsets("heavy", "busy-topic", partition), 7)
            .await;
        assert_eq!(
            fetched.topics[0].partitions[0].committed_offset,
            (written - 1) * 50 + i64::from(partition)
        );
    }
}

/// The codec bits of every batch in a fetch result, and its records as a client decodes them.
fn codecs_and_records(mut bytes: Bytes) -> (Vec<i16>, Vec<(String, String, i64)>) {
    let mut codecs = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (header, len) = fjord_broker::record::batch::parse_header(rest).unwrap();
        codecs.push(header.attributes & 0x07);
        rest = &rest[len..];
    }
    let text = |b: Option<Bytes>| String::from_utf8(b.unwrap().to_vec()).unwrap();
    let records = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| (text(r.key), text(r.value), r.timestamp))
        .collect();
    (codecs, records)
}

#[tokio::test]
async fn produce_honours_min_insync_replicas_and_compression_type() {
    use fjord_broker::record::Compression;
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;

    // min.insync.replicas=2 on one broker: acks=all is refused and appends nothing; acks=1 is
    // not subject to it, as in Kafka.
    let created = client
        .call(create_with("strict", &[("min.insync.replicas", "2")]), 7)
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let refused = client
        .call(produce("strict", 0, records(&["a"], now_ms()), -1), 9)
        .await;
    let partition = &refused.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 19, "NOT_ENOUGH_REPLICAS");
    let message = partition.error_message.as_deref().unwrap();
    assert!(message.contains("min.insync.replicas=2"), "{message}");
    let empty = client.call(fetch("strict", 0, 0, 0, 0), 12).await;
    assert_eq!(empty.responses[0].partitions[0].high_watermark, 0);
    let leader_only = client
        .call(produce("strict", 0, records(&["b"], now_ms()), 1), 9)
        .await;
    assert_eq!(produce_code(&leader_only), (0, 0));
    let lowered = client
        .call(
            incremental("strict", &[("min.insync.replicas", 0, Some("1"))]),
            1,
        )
        .await;
    assert_eq!(lowered.responses[0].error_code, 0);
    let accepted = client
        .call(produce("strict", 0, records(&["c"], now_ms()), -1), 9)
        .await;
    assert_eq!(produce_code(&accepted), (0, 1));
    let zero = client
        .call(
            incremental("strict", &[("min.insync.replicas", 0, Some("0"))]),
            1,
        )
        .await;
    assert_eq!(zero.responses[0].error_code, 40, "INVALID_CONFIG");

    // compression.type=zstd: gzip and uncompressed batches are stored as zstd, with the same
    // records, timestamps and offsets; a zstd batch is stored as it came.
    let created = client
        .call(create_with("squeezed", &[("compression.type", "zstd")]), 7)
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let t = now_ms();
    let gzip = keyed_batch(
        &[(Some("k1"), Some("one")), (Some("k2"), Some("two"))],
        t,
        Compression::Gzip,
    );
    let plain = keyed_batch(&[(Some("k3"), Some("three"))], t + 1, Compression::None);
    let zstd = keyed_batch(&[(Some("k4"), Some("four"))], t + 2, Compression::Zstd);
    for (batch, offset) in [(gzip, 0), (plain, 2), (zstd, 3)] {
        let response = client.call(produce("squeezed", 0, batch, -1), 9).await;
        assert_eq!(produce_code(&response), (0, offset));
    }
    let fetched = client.call(fetch("squeezed", 0, 0, 1, 0), 12).await;
    let (codecs, stored) =
        codecs_and_records(fetched.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(codecs, [4, 4, 4], "every batch stored as zstd");
    let expect = |k: &str, v: &str, ts: i64| (k.to_owned(), v.to_owned(), ts);
    assert_eq!(
        stored,
        [
            expect("k1", "one", t),
            expect("k2", "two", t),
            expect("k3", "three", t + 1),
            expect("k4", "four", t + 2),
        ]
    );

    // A damaged gzip batch is refused as corrupt, never re-encoded with a fresh CRC.
    let mut damaged =
        BytesMut::from(&keyed_batch(&[(Some("k5"), Some("five"))], t, Compression::Gzip)[..]);
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let response = client
        .call(produce("squeezed", 0, damaged.freeze(), -1), 9)
        .await;
    assert_eq!(produce_code(&response).0, 2, "CORRUPT_MESSAGE");
    let after = client.call(fetch("squeezed", 0, 0, 0, 0), 12).await;
    assert_eq!(after.responses[0].partitions[0].high_watermark, 4);

    let described = client.call(describe_topic_configs("squeezed"), 4).await;
    assert_eq!(
        config_of(&described, "compression.type"),
        ("zstd".into(), 1)
    );
    assert_eq!(
        config_of(&described, "min.insync.replicas"),
        ("1".into(), 5)
    );
    broker.shutdown().await;
}

/// zstd needs Produce v7 and Fetch v10 (KIP-110): an older producer's zstd batch is refused, and
/// an older consumer gets UNSUPPORTED_COMPRESSION_TYPE instead of bytes it cannot decode.
#[tokio::test]
async fn zstd_needs_produce_v7_and_fetch_v10_only_where_kafka_asks() {
    use fjord_broker::record::Compression;
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    let zstd = || keyed_batch(&[(Some("k"), Some("v"))], now_ms(), Compression::Zstd);
    let lz4 = || keyed_batch(&[(Some("k"), Some("v"))], now_ms(), Compression::Lz4);
    let decoded = |partition: &kafka_protocol::messages::fetch_response::PartitionData| {
        let mut records = partition.records.clone().unwrap_or_default();
        kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
            .unwrap()
            .iter()
            .map(|set| set.records.len())
            .sum::<usize>()
    };

    // A topic that leaves the codec to producers: zstd needs Produce v7 (KIP-110), and what a
    // v7 producer stored is served to every Fetch version, as Kafka serves it.
    assert_eq!(client.call(create("z", 1), 7).await.topics[0].error_code, 0);
    let old = client.call(produce("z", 0, zstd(), -1), 6).await;
    assert_eq!(produce_code(&old).0, 76, "UNSUPPORTED_COMPRESSION_TYPE");
    assert_eq!(
        produce_code(&client.call(produce("z", 0, lz4(), -1), 6).await),
        (0, 0)
    );
    assert_eq!(
        produce_code(&client.call(produce("z", 0, zstd(), -1), 7).await),
        (0, 1)
    );
    for version in [4, 9, 10, 12] {
        let fetched = client.call(fetch("z", 0, 0, 1, 0), version).await;
        let partition = &fetched.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "fetch v{version}");
        assert_eq!(decoded(partition), 2, "fetch v{version}");
    }

    // compression.type=zstd: the broker writes zstd itself, so a consumer below Fetch v10 is
    // refused for the whole partition, whatever codec the batches it would reach have.
    let request = create_with("zz", &[("compression.type", "zstd")]);
    assert_eq!(client.call(request, 7).await.topics[0].error_code, 0);
    assert_eq!(
        produce_code(&client.call(produce("zz", 0, lz4(), -1), 6).await),
        (0, 0)
    );
    for version in [4, 9] {
        let fetched = client.call(fetch("zz", 0, 0, 1, 0), version).await;
        let partition = &fetched.responses[0].partitions[0];
        assert_eq!(partition.error_code, 76, "fetch v{version}");
        assert!(partition.records.as_ref().is_none_or(Bytes::is_empty));
    }
    let fetched = client.call(fetch("zz", 0, 0, 1, 0), 10).await;
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(decoded(partition), 1);
    broker.shutdown().await;
}

/// A connection's requests are pipelined: twenty produces and metadata requests sent without
/// waiting (acks=0 among them) are appended in the order sent and answered in that order, one
/// response per request that has one.
#[tokio::test]
async fn pipelined_requests_take_effect_and_are_answered_in_request_order() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        client.call(create("piped", 2), 7).await.topics[0].error_code,
        0
    );
    let first = client.correlation_id + 1;
    let mut expected = Vec::new();
    for i in 0..20_i32 {
        let partition = i % 2;
        let acks = if i % 5 == 4 { 0 } else { -1 };
        let frame = if i % 7 == 6 {
            client.frame(&MetadataRequest::default().with_topics(None), 12)
        } else {
            let value = format!("r{i}");
            client.frame(&produce("piped", partition, records(&[&value], 1), acks), 9)
        };
        if acks != 0 || i % 7 == 6 {
            expected.push(client.correlation_id);
        }
        client.send_raw(&frame).await;
    }
    let mut answered = Vec::new();
    let mut offsets = std::collections::BTreeMap::<i32, Vec<i64>>::new();
    for _ in 0..expected.len() {
        let mut frame = client.read_frame().await.unwrap();
        // Produce v9 and Metadata v12 are flexible versions: response header v1.
        let header = ResponseHeader::decode(&mut frame, 1).unwrap();
        answered.push(header.correlation_id);
        let sent = header.correlation_id - first;
        if sent % 7 != 6 {
            let response = ProduceResponse::decode(&mut frame, 9).unwrap();
            let p = &response.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            offsets.entry(p.index).or_default().push(p.base_offset);
        }
    }
    assert_eq!(answered, expected, "responses in request order");
    // Each partition's produces were appended in the order sent (acks=0 ones included).
    for (partition, offsets) in &offsets {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "{partition}: {offsets:?}"
        );
    }
    for partition in 0..2 {
        let fetched = client.call(fetch("piped", partition, 0, 1, 0), 12).await;
        let mut records = fetched.responses[0].partitions[0].records.clone().unwrap();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).unwrap();
        let values: Vec<String> = sets
            .iter()
            .flat_map(|s| &s.records)
            .map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap())
            .collect();
        let sent: Vec<String> = (0..20)
            .filter(|i| i % 2 == partition && i % 7 != 6)
            .map(|i| format!("r{i}"))
            .collect();
        assert_eq!(values, sent, "partition {partition}");
    }
    broker.shutdown().await;
}

/// Fetch and ListOffsets are answered in the leader epoch the client names: none (-1) or the
/// partition's own (0 on a new topic) is served; a newer one is UNKNOWN_LEADER_EPOCH (this broker
/// has not seen that epoch), with the leader the metadata names in Fetch v12's current leader.
/// Metadata reports the same leader and epoch.
#[tokio::test]
async fn requests_name_the_leader_epoch_they_expect() {
    let (broker, _dir) = start(|_| {}).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        client.call(create("epochs", 1), 7).await.topics[0].error_code,
        0
    );
    client
        .call(produce("epochs", 0, records(&["a", "b"], now_ms()), -1), 9)
        .await;
    let described = client.user_topics().await;
    let partition = &described[0].partitions[0];
    assert_eq!((partition.leader_id.0, partition.leader_epoch), (1, 0));

    for (epoch, code) in [(-1, 0), (0, 0), (5, 75)] {
        let mut request = fetch("epochs", 0, 0, 1, 0);
        request.topics[0].partitions[0].current_leader_epoch = epoch;
        let fetched = client.call(request, 12).await;
        let partition = &fetched.responses[0].partitions[0];
        assert_eq!(partition.error_code, code, "fetch in epoch {epoch}");
        if code != 0 {
            assert_eq!(
                (
                    partition.current_leader.leader_id.0,
                    partition.current_leader.leader_epoch
                ),
                (1, 0)
            );
            assert!(partition.records.as_ref().is_none_or(Bytes::is_empty));
        }

        let list = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("epochs"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_current_leader_epoch(epoch)
                            .with_timestamp(-1),
                    ]),
            ]);
        let listed = client.call(list, 6).await;
        let partition = &listed.topics[0].partitions[0];
        assert_eq!(partition.error_code, code, "list offsets in epoch {epoch}");
        assert_eq!(partition.offset, if code == 0 { 2 } else { -1 });
    }
    broker.shutdown().await;
}
