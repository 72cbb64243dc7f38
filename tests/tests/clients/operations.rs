//! Changing a running cluster under load: partitions reassigned from a real admin client
//! (kafka-python's AlterPartitionReassignments and ListPartitionReassignments) while an
//! idempotent `acks=all` producer writes, a consumer reads and ListOffsets is asked throughout;
//! the checker of the fault tests then reads every acknowledged record back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fjord_tests::{ClusterProcesses, run_client};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::faults::observed;
use super::replication::QUICK_FENCING;

/// The replicas of each partition of `topic` as the broker at `bootstrap` describes them.
fn replicas(bootstrap: &str, topic: &str) -> Vec<Vec<i32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.replicas().to_vec())
        .collect()
}

/// Four brokers, a 12-partition topic of three replicas with one on broker 3 in every
/// partition (its leader in four): kafka-python moves every replica off broker 3 while the
/// producer runs. The move completes, broker 3 holds no replica (in the metadata and on disk),
/// no produce fails, and every acknowledged record is read back where it was acknowledged from
/// byte-identical copies.
#[test]
fn a_reassignment_moves_every_replica_off_a_broker_under_load() {
    const TOPIC: &str = "moving";
    const PARTITIONS: i32 = 12;
    let cluster = ClusterProcesses::start(&["a", "b", "c", "d"], 3, &QUICK_FENCING);
    // Partition p: broker 3 and two of 0..3, broker 3 first (the leader) in every third.
    let placement: Vec<Vec<i32>> = (0..PARTITIONS)
        .map(|p| {
            let (one, two) = (p % 3, (p + 1) % 3);
            match p % 3 {
                0 => vec![3, one, two],
                1 => vec![one, 3, two],
                _ => vec![one, two, 3],
            }
        })
        .collect();
    let refs: Vec<&[i32]> = placement.iter().map(Vec::as_slice).collect();
    let (writer, observers) = observed(&cluster, TOPIC, PARTITIONS, Some(&refs), &[]);
    let bootstrap = cluster.bootstrap();
    let led_by_3 = super::cluster::leaders(&bootstrap, TOPIC)
        .1
        .iter()
        .filter(|leader| **leader == 3)
        .count();
    assert_eq!(led_by_3, 4, "broker 3 leads every third partition");

    // Broker 3 is replaced by the one of 0..3 the partition lacks, in its place.
    let targets: Vec<Vec<i32>> = placement
        .iter()
        .map(|replicas| {
            let missing = (0..3).find(|id| !replicas.contains(id)).unwrap();
            replicas
                .iter()
                .map(|id| if *id == 3 { missing } else { *id })
                .collect()
        })
        .collect();
    let plan = targets
        .iter()
        .enumerate()
        .map(|(p, target)| {
            let ids: Vec<String> = target.iter().map(i32::to_string).collect();
            format!("{p}={}", ids.join(","))
        })
        .collect::<Vec<_>>()
        .join(";");
    let acknowledged_before = writer.acknowledged();
    let started = Instant::now();
    let out = run_client("python3", &["reassign.py", &bootstrap, TOPIC, &plan, "120"]);
    for p in 0..PARTITIONS {
        assert!(out.contains(&format!("partition {p} ok\n")), "{out}");
    }
    assert!(out.ends_with("done\n"), "{out}");
    eprintln!(
        "moved 12 partitions off broker 3 in {:.1} s, {} records acknowledged meanwhile",
        started.elapsed().as_secs_f64(),
        writer.acknowledged() - acknowledged_before
    );
    assert_eq!(replicas(&bootstrap, TOPIC), targets);
    // Broker 3 closed its replicas and removed their files.
    let broker_3 = &cluster.brokers[3].data_dir;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: BTreeSet<i32> = (0..PARTITIONS)
            .filter(|p| broker_3.join(format!("{TOPIC}-{p}")).exists())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker 3 still holds {TOPIC} partitions {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Records keep being acknowledged by the new replicas.
    writer.wait_acknowledged(writer.acknowledged() + 500, "after the move");
    let observed = observers.finish(writer);
    eprintln!("{observed}");
    observed.check(&cluster, TOPIC, PARTITIONS);
}
