//! The Topic controller's Kafka side against a real Fjord broker, in-process on 127.0.0.1:0:
//! `converge_topic` and `delete_topic` over `KafkaAdmin`, asserting what a user would see
//! afterwards (partition counts, topic ids, config values and their sources, error reasons).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fjord_broker::{BrokerConfig, RunningBroker};
use fjord_operator::kafka::{ConfigEntry, ConfigSource, KafkaAdmin, KafkaError};
use fjord_operator::topic::converge::{
    ConvergeError, ConvergedTopic, DesiredTopic, converge_topic, delete_topic,
};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(5);

// kafka-protocol 0.18 reserves a `Vec` for an array length read off the wire before it decodes
// any element: a 7-byte response can ask for 100+ GiB and the process aborts. The broker's
// allocator maps such reservations without committing memory (see broker/src/alloc.rs); a
// binary that runs `KafkaAdmin` needs it as much as the broker does.
#[global_allocator]
static ALLOCATOR: fjord_runtime::alloc::GuardedAlloc = fjord_runtime::alloc::GuardedAlloc;

async fn start_in(dir: &Path, listen: Option<SocketAddr>) -> RunningBroker {
    let mut config = BrokerConfig::for_tests(dir.to_path_buf());
    if let Some(listen) = listen {
        config.listen = listen;
    }
    fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap()
}

async fn start() -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (start_in(dir.path(), None).await, dir)
}

async fn admin(broker: &RunningBroker) -> KafkaAdmin {
    KafkaAdmin::connect(&broker.kafka_addr.to_string(), TIMEOUT)
        .await
        .unwrap()
}

fn desired(name: &str, partitions: i32, config: &[(&str, &str)]) -> DesiredTopic {
    DesiredTopic {
        name: name.to_owned(),
        partitions,
        replication_factor: 1,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn config(admin: &mut KafkaAdmin, topic: &str, key: &str) -> ConfigEntry {
    admin
        .describe_topic_configs(topic)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.name == key)
        .unwrap_or_else(|| panic!("{topic} has no config {key}"))
}

async fn partitions(admin: &mut KafkaAdmin, topic: &str) -> i32 {
    admin
        .describe_topic(topic)
        .await
        .unwrap()
        .unwrap()
        .partitions
}

/// The Kafka error under a converge error.
fn kafka_error(error: &ConvergeError) -> &KafkaError {
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<KafkaError>())
        .unwrap_or_else(|| panic!("no Kafka error under {error:?}"))
}

#[tokio::test]
async fn create_then_converge_again_is_a_no_op() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;
    let spec = desired(
        "orders",
        3,
        &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
    );

    let first = converge_topic(&mut admin, &spec).await.unwrap();
    assert!(first.created);
    assert_eq!((first.partitions, first.replication_factor), (3, 1));
    assert_eq!(first.configs_set, vec!["cleanup.policy", "retention.ms"]);

    let described = admin.describe_topic("orders").await.unwrap().unwrap();
    assert_eq!((described.partitions, described.replication_factor), (3, 1));
    assert!(first.topic_id.is_some());
    assert_eq!(first.topic_id, described.topic_id);
    let stored = broker.broker.topic("orders").unwrap();
    assert_eq!(described.topic_id, Some(stored.id.to_string()));
    for (key, value) in [("retention.ms", "3600000"), ("cleanup.policy", "compact")] {
        let entry = config(&mut admin, "orders", key).await;
        assert_eq!(entry.value.as_deref(), Some(value), "{key}");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{key}");
    }

    let second = converge_topic(&mut admin, &spec).await.unwrap();
    assert_eq!(
        second,
        ConvergedTopic {
            topic_id: first.topic_id.clone(),
            partitions: 3,
            replication_factor: 1,
            created: false,
            partitions_added: false,
            configs_set: vec![],
            configs_reset: vec![],
            reassigning: 0,
            reassignments_started: 0,
        }
    );
    assert_eq!(
        admin.describe_topic("orders").await.unwrap().unwrap(),
        described
    );
}

#[tokio::test]
async fn describing_an_unknown_topic_does_not_create_it() {
    let (broker, _dir) = start().await;
    assert!(broker.broker.config().auto_create_topics);
    let mut admin = admin(&broker).await;
    assert_eq!(admin.describe_topic("ghost").await.unwrap(), None);
    assert!(broker.broker.topic("ghost").is_none());
}

#[tokio::test]
async fn partitions_grow_from_3_to_5() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;
    let created = converge_topic(&mut admin, &desired("events", 3, &[]))
        .await
        .unwrap();

    let grown = converge_topic(&mut admin, &desired("events", 5, &[]))
        .await
        .unwrap();
    assert!(!grown.created);
    assert!(grown.partitions_added);
    assert_eq!(grown.partitions, 5);
    assert_eq!(grown.topic_id, created.topic_id);
    assert_eq!(partitions(&mut admin, "events").await, 5);

    let again = converge_topic(&mut admin, &desired("events", 5, &[]))
        .await
        .unwrap();
    assert!(!again.partitions_added);
}

#[tokio::test]
async fn shrinking_partitions_is_rejected_and_nothing_changes() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;
    converge_topic(
        &mut admin,
        &desired("events", 5, &[("retention.ms", "3600000")]),
    )
    .await
    .unwrap();

    // The same spec also changes a config: a rejected spec changes nothing at all.
    let error = converge_topic(
        &mut admin,
        &desired("events", 2, &[("retention.ms", "7200000")]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConvergeError::PartitionDecreaseRejected {
                actual: 5,
                desired: 2
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.reason(), "PartitionDecreaseRejected");
    assert!(!error.is_transient());
    assert_eq!(partitions(&mut admin, "events").await, 5);
    let retention = config(&mut admin, "events", "retention.ms").await;
    assert_eq!(retention.value.as_deref(), Some("3600000"));
}

#[tokio::test]
async fn configs_converge_to_the_spec_and_a_removed_key_returns_to_its_default() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;
    converge_topic(
        &mut admin,
        &desired(
            "orders",
            1,
            &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
        ),
    )
    .await
    .unwrap();
    // A topic the spec does not name, with an override of its own.
    admin
        .create_topic(
            "bystander",
            1,
            1,
            &BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
        )
        .await
        .unwrap();

    let converged = converge_topic(
        &mut admin,
        &desired("orders", 1, &[("retention.ms", "7200000")]),
    )
    .await
    .unwrap();
    assert_eq!(converged.configs_set, vec!["retention.ms"]);
    assert_eq!(converged.configs_reset, vec!["cleanup.policy"]);

    let retention = config(&mut admin, "orders", "retention.ms").await;
    assert_eq!(retention.value.as_deref(), Some("7200000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let policy = config(&mut admin, "orders", "cleanup.policy").await;
    assert_eq!(policy.source, ConfigSource::Default);
    let default_policy = config(&mut admin, "bystander", "cleanup.policy").await;
    assert_eq!(default_policy.source, ConfigSource::Default);
    assert_eq!(policy.value, default_policy.value);
    assert_eq!(policy.value.as_deref(), Some("delete"));

    let bystander = config(&mut admin, "bystander", "retention.ms").await;
    assert_eq!(bystander.value.as_deref(), Some("1000"));
    assert_eq!(bystander.source, ConfigSource::DynamicTopic);

    let again = converge_topic(
        &mut admin,
        &desired("orders", 1, &[("retention.ms", "7200000")]),
    )
    .await
    .unwrap();
    assert!(again.configs_set.is_empty() && again.configs_reset.is_empty());
}

#[tokio::test]
async fn a_config_value_the_broker_refuses_is_an_invalid_spec() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;

    let error = converge_topic(
        &mut admin,
        &desired("orders", 3, &[("cleanup.policy", "shred")]),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ConvergeError::Create { .. }), "{error:?}");
    assert_eq!(error.reason(), "InvalidConfig");
    assert!(!error.is_transient());
    let KafkaError::Broker {
        error: name,
        message,
        ..
    } = kafka_error(&error)
    else {
        panic!("expected a broker error, got {error:?}");
    };
    assert_eq!(name, "INVALID_CONFIG");
    assert!(message.is_some(), "the broker says what is wrong");
    assert_eq!(admin.describe_topic("orders").await.unwrap(), None);

    // On an existing topic the whole change is refused: the valid key is not applied either.
    converge_topic(
        &mut admin,
        &desired("orders", 3, &[("retention.ms", "3600000")]),
    )
    .await
    .unwrap();
    let error = converge_topic(
        &mut admin,
        &desired(
            "orders",
            3,
            &[("retention.ms", "7200000"), ("cleanup.policy", "shred")],
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ConvergeError::AlterConfigs { .. }),
        "{error:?}"
    );
    assert_eq!(error.reason(), "InvalidConfig");
    assert!(!error.is_transient());
    let retention = config(&mut admin, "orders", "retention.ms").await;
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    let policy = config(&mut admin, "orders", "cleanup.policy").await;
    assert_eq!(policy.source, ConfigSource::Default);
}

#[tokio::test]
async fn a_replication_factor_beyond_the_cluster_is_refused() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;
    let mut spec = desired("orders", 3, &[]);
    spec.replication_factor = 3;

    let error = converge_topic(&mut admin, &spec).await.unwrap_err();
    assert_eq!(error.reason(), "InvalidReplicationFactor");
    assert!(!error.is_transient());
    assert_eq!(admin.describe_topic("orders").await.unwrap(), None);

    // An existing topic raised beyond the brokers there are: no move is started, and the
    // controller tries again (brokers may join).
    converge_topic(&mut admin, &desired("orders", 3, &[]))
        .await
        .unwrap();
    let error = converge_topic(&mut admin, &spec).await.unwrap_err();
    assert!(
        matches!(
            error,
            ConvergeError::ReplicationFactorUnplaceable { desired: 3, .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("1 brokers"), "{error}");
    assert!(error.is_transient());
    assert!(
        admin
            .reassigning_partitions("orders")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn delete_removes_the_topic_and_deleting_again_is_a_no_op() {
    let (broker, _dir) = start().await;
    let mut admin = admin(&broker).await;
    converge_topic(&mut admin, &desired("orders", 3, &[]))
        .await
        .unwrap();

    assert!(delete_topic(&mut admin, "orders").await.unwrap());
    assert_eq!(admin.describe_topic("orders").await.unwrap(), None);
    assert!(broker.broker.topic("orders").is_none());
    assert!(!delete_topic(&mut admin, "orders").await.unwrap());
}

#[tokio::test]
async fn an_unreachable_broker_is_transient_and_reported_within_the_timeout() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let error = KafkaAdmin::connect(&format!("127.0.0.1:{port}"), timeout)
        .await
        .unwrap_err();
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    assert!(matches!(error, KafkaError::Connect { .. }), "{error:?}");
    assert_eq!(error.reason(), "BrokerUnavailable");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_broker_shut_down_between_calls_is_transient_and_the_client_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir.path(), None).await;
    let addr = broker.kafka_addr;
    let mut admin = admin(&broker).await;
    let spec = desired("orders", 3, &[("retention.ms", "3600000")]);
    let created = converge_topic(&mut admin, &spec).await.unwrap();

    broker.shutdown().await;
    let started = Instant::now();
    let error = admin.describe_topic("orders").await.unwrap_err();
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(error.reason(), "BrokerUnavailable", "{error:?}");
    assert!(error.is_transient());
    let error = converge_topic(&mut admin, &spec).await.unwrap_err();
    assert_eq!(error.reason(), "BrokerUnavailable", "{error:?}");
    assert!(error.is_transient());

    // The same client works again once the broker is back on its address.
    let broker = start_in(dir.path(), Some(addr)).await;
    let converged = converge_topic(&mut admin, &spec).await.unwrap();
    assert!(!converged.created);
    assert_eq!(converged.topic_id, created.topic_id);
    assert_eq!(converged.partitions, 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_response_declaring_billions_of_elements_is_an_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let size = stream.read_i32().await.unwrap();
        let mut request = vec![0; size as usize];
        stream.read_exact(&mut request).await.unwrap();
        // ApiVersions v3: correlation id, error code 0, then a compact array length of
        // 2^32 - 2 elements and nothing after it.
        let mut response = request[4..8].to_vec();
        response.extend([0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut frame = (response.len() as i32).to_be_bytes().to_vec();
        frame.extend(response);
        stream.write_all(&frame).await.unwrap();
        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
    });
    let error = KafkaAdmin::connect(&addr, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, KafkaError::Decode { .. }), "{error:?}");
    assert_eq!(error.reason(), "ProtocolError");
    assert!(!error.is_transient());
}

/// The admin client against a broker with a SASL_SSL listener (TLS, SCRAM-SHA-512) and the ACL
/// authorizer: as a super user it logs in and manages topics, credentials and ACLs; a wrong
/// password is SASL_AUTHENTICATION_FAILED; a client that does not log in, or does not speak
/// TLS, gets nothing done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_client_logs_in_over_sasl_ssl() {
    use fjord_operator::kafka::{AclEntry, AdminSecurity};
    let dir = tempfile::tempdir().unwrap();
    let (broker, ca) = support::secured_broker(dir.path(), "op-secret").await;
    let bootstrap = broker.kafka_addr.to_string();
    let tls = AdminSecurity::tls_config(ca.as_bytes(), None).unwrap();
    let security = |password: &str| AdminSecurity {
        tls: Some(tls.clone()),
        scram_sha_512: Some(("fjord-operator".to_owned(), password.to_owned())),
    };

    let mut admin = KafkaAdmin::connect_with(&bootstrap, TIMEOUT, security("op-secret"))
        .await
        .unwrap();
    admin
        .create_topic("secured", 2, 1, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        admin
            .describe_topic("secured")
            .await
            .unwrap()
            .unwrap()
            .partitions,
        2
    );
    admin
        .set_scram_credential("app", "app-secret")
        .await
        .unwrap();
    assert!(admin.has_scram_credential("app").await.unwrap());
    let grant = AclEntry {
        resource_type: 2,
        resource_name: "secured".into(),
        pattern_type: 3,
        principal: "User:app".into(),
        host: "*".into(),
        operation: 4,
        permission: 3,
    };
    admin
        .create_acls(std::slice::from_ref(&grant))
        .await
        .unwrap();
    assert_eq!(admin.acls_of("User:app").await.unwrap(), [grant]);

    let wrong = KafkaAdmin::connect_with(&bootstrap, TIMEOUT, security("not-it"))
        .await
        .unwrap_err();
    assert_eq!(
        wrong.error_code(),
        Some(58),
        "SASL_AUTHENTICATION_FAILED: {wrong}"
    );
    let anonymous = KafkaAdmin::connect_with(
        &bootstrap,
        TIMEOUT,
        AdminSecurity {
            tls: Some(tls.clone()),
            scram_sha_512: None,
        },
    )
    .await;
    assert!(anonymous.is_err(), "served without a login");
    let plaintext = KafkaAdmin::connect_with(
        &bootstrap,
        TIMEOUT,
        AdminSecurity {
            tls: None,
            scram_sha_512: Some(("fjord-operator".into(), "op-secret".into())),
        },
    )
    .await;
    assert!(plaintext.is_err(), "served without TLS");
    broker.shutdown().await;
}
