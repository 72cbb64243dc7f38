//! The HTTP admin endpoint over a real socket: health, readiness, Prometheus metrics, status.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;

use fjord_broker::BrokerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// (status code, body) of a GET.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: fjord\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_metrics_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let broker = fjord_broker::start(config, CancellationToken::new())
        .await
        .unwrap();
    let admin = broker.admin_addr;

    assert_eq!(get(admin, "/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(get(admin, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(admin, "/nope").await.0, 404);

    // A produce through the Kafka port shows up in the metrics.
    let created = broker
        .broker
        .create_topic("metered", 2, -1, None, Default::default())
        .await
        .unwrap();
    assert_eq!(created.partition_count(), 2);
    let mut kafka = TcpStream::connect(broker.kafka_addr).await.unwrap();
    // ApiVersions v0: size, key 18, version 0, correlation id 7, client id "t".
    let frame: &[u8] = &[0, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b't'];
    kafka.write_all(frame).await.unwrap();
    let size = kafka.read_i32().await.unwrap();
    let mut response = vec![0u8; size as usize];
    kafka.read_exact(&mut response).await.unwrap();

    let (status, metrics) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"fjord_requests_total{api="ApiVersions",version="0"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"fjord_request_duration_seconds_count{api="ApiVersions"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("fjord_bytes_in_total 15"), "{metrics}");
    assert!(
        metrics.contains(&format!("fjord_bytes_out_total {}", 4 + size)),
        "{metrics}"
    );
    assert!(metrics.contains("fjord_connections 1"), "{metrics}");
    // Two of "metered", three of __consumer_offsets.
    assert!(metrics.contains("fjord_partitions 5"), "{metrics}");
    for line in [
        "fjord_controller_id 1",
        "fjord_active_controller 1",
        "fjord_registered_brokers 1",
        "fjord_fenced_brokers 0",
        "fjord_leader_partitions 5",
        "fjord_offline_partitions 0",
        "fjord_metadata_lag_entries 0",
        r#"fjord_partition_leaders{broker="1"} 5"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains(&format!(
            "fjord_metadata_applied_offset {}",
            broker.broker.metadata_applied()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"fjord_log_size_bytes{topic="metered",partition="1"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"fjord_high_watermark{topic="metered",partition="0"} 0"#),
        "{metrics}"
    );

    let (status, body) = get(admin, "/v1/status").await;
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["partitions"], 5);
    // __consumer_offsets (3 partitions in tests) and metered (2), all led here.
    assert_eq!(status["leader_partitions"], 5);
    assert_eq!(status["under_replicated_partitions"], 0);
    assert_eq!(status["offline_partitions"], 0);
    // The metadata applied here is all there is: this broker is the controller.
    assert_eq!(status["controller"], 1);
    assert_eq!(status["metadata_offset"], broker.broker.metadata_applied());
    assert_eq!(status["metadata_lag"]["entries"], 0);
    assert!(status["metadata_lag"]["ms"].as_u64().unwrap() < 9000);
    assert_eq!(status["leaders_per_broker"]["1"], 5);
    assert_eq!(status["fenced_brokers"], 0);
    assert_eq!(status["caught_up"], true);
    assert_eq!(status["ready"], true);
    drop(kafka);
    broker.shutdown().await;
}
