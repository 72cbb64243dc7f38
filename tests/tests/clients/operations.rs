//! Changing a running cluster under load: partitions reassigned from a real admin client
//! (kafka-python's AlterPartitionReassignments and ListPartitionReassignments), a rolling
//! restart through the admin API's leadership drain, pre-restart check and catch-up status, and
//! a broker drained, each while an idempotent `acks=all` producer writes, a consumer reads and
//! ListOffsets is asked throughout; the checker of the fault tests then reads every
//! acknowledged record back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fjord_admin_api::{
    BALANCE_PATH, Balance, BrokerState, Drain, LeadershipDrain, PreRestartCheck, Refusal, Status,
    drain_path, leadership_drain_path, pre_restart_path,
};
use fjord_tests::{ClusterProcesses, admin_call, run_client};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::faults::observed;
use super::replication::{QUICK_FENCING, isrs};

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
    wait_files_removed(&cluster.brokers[3].data_dir, TOPIC, PARTITIONS);
    // Records keep being acknowledged by the new replicas.
    writer.wait_acknowledged(writer.acknowledged() + 500, "after the move");
    let observed = observers.finish(writer);
    eprintln!("{observed}");
    observed.check(&cluster, TOPIC, PARTITIONS);
}

/// Waits (up to 20 s) until the broker with `data_dir` has closed its replicas of `topic` and
/// removed their files, as it does once it has applied the moves that took them away.
fn wait_files_removed(data_dir: &std::path::Path, topic: &str, partitions: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: BTreeSet<i32> = (0..partitions)
            .filter(|p| data_dir.join(format!("{topic}-{p}")).exists())
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} still holds {topic} partitions {left:?}",
            data_dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the ISRs of `topic` in the background and keeps the smallest ISR size seen, so a test
/// can show that no partition ever fell below `min.insync.replicas`.
struct IsrWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl IsrWatch {
    fn start(cluster: &ClusterProcesses, topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bootstraps: Vec<String> = cluster.brokers.iter().map(|b| b.bootstrap()).collect();
        let (topic, stopping) = (topic.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let (mut smallest, mut answers) = (usize::MAX, 0);
            while !stopping.load(Ordering::Relaxed) {
                // Any broker that answers (one of them is restarting).
                for bootstrap in &bootstraps {
                    let isrs = isrs(bootstrap, &topic);
                    if !isrs.is_empty() {
                        smallest = smallest.min(isrs.iter().map(BTreeSet::len).min().unwrap());
                        answers += 1;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (smallest, answers)
        });
        Self { stop, thread }
    }

    /// The smallest ISR seen, and how many times the ISRs were read.
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// `/v1/status` of a broker, typed.
fn status(broker: &fjord_tests::ClusterBroker) -> Option<Status> {
    admin_call::<Status>(&broker.admin(), "GET", fjord_admin_api::STATUS_PATH)
        .and_then(|(code, status)| (code == 200).then_some(status))
}

/// A rolling restart of three brokers under an `acks=all` producer, the way the operator does
/// it: the controller last; for each broker its leaderships drained, the pre-restart check
/// asked until it says yes, a SIGTERM and a start, then waiting until its replicas are back in
/// every ISR. While a broker is down the check refuses every other broker (their partitions
/// would fall below `min.insync.replicas`). No produce fails, no ISR is ever below 2, and the
/// checker reads every acknowledged record back.
#[test]
fn a_rolling_restart_under_load_never_drops_below_min_insync() {
    const TOPIC: &str = "rolling";
    const PARTITIONS: i32 = 6;
    // The default session timeout: a restart is a controlled shutdown, nothing waits for
    // fencing, and a broker starved of CPU for a few seconds (these machines are shared) is not
    // fenced, which would take it out of the ISRs this test watches.
    let mut cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &[]);
    let (writer, observers) = observed(&cluster, TOPIC, PARTITIONS, None, &[0, 1, 2]);
    let watch = IsrWatch::start(&cluster, TOPIC);
    let controller = cluster.controller(Duration::from_secs(30)).unwrap();
    let mut order: Vec<usize> = (0..3).filter(|i| *i != controller as usize).collect();
    order.push(controller as usize);
    for &restarted in &order {
        let id = cluster.brokers[restarted].node_id;
        let via = cluster.brokers[(restarted + 1) % 3].admin();
        let (code, drained) =
            admin_call::<LeadershipDrain>(&via, "POST", &leadership_drain_path(id)).unwrap();
        assert_eq!((code, drained.leaders_left), (200, 0), "{drained:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, check) =
                admin_call::<PreRestartCheck>(&via, "GET", &pre_restart_path(id)).unwrap();
            assert_eq!(code, 200);
            if check.restart_safe {
                break;
            }
            assert!(Instant::now() < deadline, "broker {id}: {check:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let acknowledged = writer.acknowledged();
        cluster.brokers[restarted].signal("TERM");
        cluster.brokers[restarted].wait_exit(Duration::from_secs(30));
        // With it down, restarting any other broker is refused, with the partitions named.
        let other = cluster.brokers[(restarted + 1) % 3].node_id;
        let (_, refused) =
            admin_call::<PreRestartCheck>(&via, "GET", &pre_restart_path(other)).unwrap();
        assert!(!refused.restart_safe, "{refused:?}");
        assert!(
            refused
                .reasons
                .iter()
                .any(|r| r.contains("below min.insync.replicas 2")),
            "{refused:?}"
        );
        writer.wait_acknowledged(acknowledged + 200, &format!("broker {id} down"));
        cluster.brokers[restarted].start();
        assert!(cluster.brokers[restarted].wait_ready(Duration::from_secs(60)));
        // Caught up: its replicas are back in every ISR.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let back = status(&cluster.brokers[restarted]);
            if back
                .as_ref()
                .is_some_and(|s| s.replicas_out_of_sync == 0 && s.caught_up)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broker {id} not caught up: {back:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    writer.wait_acknowledged(writer.acknowledged() + 200, "after the restarts");
    let (smallest, answers) = watch.finish();
    eprintln!("smallest ISR seen: {smallest} in {answers} reads");
    assert!(answers > 20, "{answers} ISR reads");
    assert_eq!(
        smallest, 2,
        "an ISR fell below min.insync.replicas, or never lost a member"
    );
    let observed = observers.finish(writer);
    eprintln!("{observed}");
    observed.check(&cluster, TOPIC, PARTITIONS);
}

/// Scale-in, the broker side: four brokers on racks a, b, c, c under an `acks=all` producer.
/// Draining broker 0 (rack a's only broker) is refused with the partitions it would break, and
/// changes nothing; draining broker 3 moves its replicas to broker 2 (the other broker of rack
/// c) a bounded number at a time, until it holds nothing and its state is drained; then it is
/// stopped, as a scale-in removes it. No produce fails and the checker reads every acknowledged
/// record back.
#[test]
fn a_drained_broker_ends_up_holding_nothing_under_load() {
    const TOPIC: &str = "draining";
    const PARTITIONS: i32 = 12;
    let mut cluster = ClusterProcesses::start(&["a", "b", "c", "c"], 3, &QUICK_FENCING);
    // Racks a, b and c: broker 3 in the even partitions, broker 2 in the odd ones.
    let placement: Vec<Vec<i32>> = (0..PARTITIONS)
        .map(|p| {
            let mut replicas = vec![0, 1, if p % 2 == 0 { 3 } else { 2 }];
            replicas.rotate_left(usize::try_from(p % 3).unwrap());
            replicas
        })
        .collect();
    let refs: Vec<&[i32]> = placement.iter().map(Vec::as_slice).collect();
    let (writer, observers) = observed(&cluster, TOPIC, PARTITIONS, Some(&refs), &[]);
    let via = cluster.brokers[1].admin();

    let (code, refusal) = admin_call::<Refusal>(&via, "POST", &drain_path(0)).unwrap();
    assert_eq!(code, 409, "{refusal:?}");
    assert!(
        refusal.message.contains("distinct racks") && refusal.message.contains("draining-0"),
        "{refusal:?}"
    );
    let (_, untouched) = admin_call::<Drain>(&via, "GET", &drain_path(0)).unwrap();
    assert_eq!(untouched.state, BrokerState::Active);

    let acknowledged = writer.acknowledged();
    // Six replicas of the topic, and those of `__consumer_offsets` once the live reader's group
    // coordinator made it (a draining broker gets no replicas of a topic made later).
    let before = status(&cluster.brokers[0]).unwrap();
    let held = before.brokers.iter().find(|b| b.id == 3).unwrap().replicas;
    assert!(held >= 6, "broker 3 holds {held} replicas");
    let (code, started) = admin_call::<Drain>(&via, "POST", &drain_path(3)).unwrap();
    assert_eq!(
        (code, started.state),
        (202, BrokerState::Draining),
        "{started:?}"
    );
    assert!(started.replicas_left >= held, "{started:?}, {held} before");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most_moving = 0;
    loop {
        let (_, drain) = admin_call::<Drain>(&via, "GET", &drain_path(3)).unwrap();
        most_moving = most_moving.max(drain.moving);
        if drain.state == BrokerState::Drained {
            assert_eq!(drain.replicas_left, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{drain:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        most_moving <= 8,
        "at most 8 moves at a time, saw {most_moving}"
    );
    let bootstrap = cluster.bootstrap();
    for (p, replicas) in replicas(&bootstrap, TOPIC).iter().enumerate() {
        assert!(!replicas.contains(&3), "partition {p}: {replicas:?}");
        let expected: BTreeSet<i32> = placement[p]
            .iter()
            .map(|id| if *id == 3 { 2 } else { *id })
            .collect();
        assert_eq!(replicas.iter().copied().collect::<BTreeSet<_>>(), expected);
    }
    let shown = status(&cluster.brokers[0]).unwrap();
    let broker_3 = shown.brokers.iter().find(|b| b.id == 3).unwrap();
    assert_eq!(
        (broker_3.state, broker_3.replicas),
        (BrokerState::Drained, 0)
    );
    // Its disk is free too (the controller counts it drained as soon as the last move is
    // committed; the broker removes the files when it applies that).
    wait_files_removed(&cluster.brokers[3].data_dir, TOPIC, PARTITIONS);
    // Then it goes, as a scale-in removes it: nothing notices.
    cluster.brokers[3].signal("TERM");
    cluster.brokers[3].wait_exit(Duration::from_secs(30));
    writer.wait_acknowledged(acknowledged + 500, "after the drain and the removal");
    let observed = observers.finish(writer);
    eprintln!("{observed}");
    observed.check(&cluster, TOPIC, PARTITIONS);
}

/// A reassignment under a replication throttle, set as Kafka's reassignment tool sets it (the
/// topic's `leader.replication.throttled.replicas` naming the current replicas, the leader's
/// `leader.replication.throttled.rate`):
/// the new replica copies 6 MB at 1 MB/s, so the move takes seconds and ListPartitionReassignments
/// shows it running meanwhile; once done, the copies are identical. Then the same with the
/// follower's throttle (`follower.replication.throttled.replicas` and `.rate`).
#[test]
fn a_throttled_reassignment_moves_at_the_throttle_rate() {
    use rdkafka::admin::{
        AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };

    const TOPIC: &str = "throttled";
    let cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    let admin = super::cluster::admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let created = super::cluster::futures_executor(admin.create_topics(
        &[NewTopic::new(
            TOPIC,
            1,
            TopicReplication::Variable(&[&[0, 1]]),
        )],
        &options,
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let value = "v".repeat(1000);
    let values: Vec<String> = (0..6000).map(|i| format!("{i:06}-{value}")).collect();
    assert_eq!(
        super::replication::produce_all(&bootstrap, TOPIC, &values),
        0
    );

    let altered = super::cluster::futures_executor(
        admin.alter_configs(
            &[
                // As Kafka's tool sets it: the current replicas throttle what they serve.
                AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
                    .set("leader.replication.throttled.replicas", "0:0,0:1"),
                AlterConfig::new(ResourceSpecifier::Broker(0))
                    .set("leader.replication.throttled.rate", "1000000"),
            ],
            &options,
        ),
    )
    .unwrap();
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    // The leader (broker 0) throttles what it serves to the new replica.
    let started = Instant::now();
    let out = run_client(
        "python3",
        &["reassign.py", &bootstrap, TOPIC, "0=0,1,2", "120"],
    );
    let took = started.elapsed();
    assert!(
        out.contains("partition 0 ok\n") && out.ends_with("done\n"),
        "{out}"
    );
    assert!(
        out.contains("moving 1\n"),
        "the move was listed while it ran: {out}"
    );
    eprintln!(
        "6 MB moved under a 1 MB/s throttle in {:.1} s",
        took.as_secs_f64()
    );
    // 6 MB at 1 MB/s, less the bucket's first second: at least 4 s on any machine.
    assert!(
        took >= Duration::from_secs(4),
        "moved in {took:?}: not throttled"
    );
    assert_eq!(replicas(&bootstrap, TOPIC), [vec![0, 1, 2]]);
    super::replication::wait_identical(&cluster, TOPIC, 0);

    // Broker 2 leaves, and comes back throttled by itself as follower this time.
    let out = run_client(
        "python3",
        &["reassign.py", &bootstrap, TOPIC, "0=0,1", "60"],
    );
    assert!(out.ends_with("done\n"), "{out}");
    // (AlterConfigs replaces a resource's configs: broker 0's rate is cleared. One broker
    // resource per request, as librdkafka sends them.)
    for change in [
        AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
            .set("follower.replication.throttled.replicas", "0:2"),
        AlterConfig::new(ResourceSpecifier::Broker(0)),
        AlterConfig::new(ResourceSpecifier::Broker(2))
            .set("follower.replication.throttled.rate", "1000000"),
    ] {
        let altered =
            super::cluster::futures_executor(admin.alter_configs(&[change], &options)).unwrap();
        assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    }
    let started = Instant::now();
    let out = run_client(
        "python3",
        &["reassign.py", &bootstrap, TOPIC, "0=0,1,2", "120"],
    );
    let took = started.elapsed();
    assert!(out.ends_with("done\n"), "{out}");
    eprintln!(
        "6 MB fetched under a 1 MB/s follower throttle in {:.1} s",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_secs(4),
        "moved in {took:?}: not throttled"
    );
    super::replication::wait_identical(&cluster, TOPIC, 0);
}

/// Scale-out, the broker side: a fourth broker (rack d) joins three that hold 12 partitions of
/// three replicas (and `__consumer_offsets`) under an `acks=all` producer. The balancer starts
/// by itself, moves replicas onto it a bounded number at a time and then evens out preferred
/// leaders; it stops with replicas and leaderships even (one apart at most) over the four
/// brokers, the topic's own replicas spread over all four. No produce fails and the checker
/// reads every acknowledged record back.
#[test]
fn a_new_broker_is_given_its_share_by_the_balancer_under_load() {
    const TOPIC: &str = "growing";
    const PARTITIONS: i32 = 12;
    let mut cluster = ClusterProcesses::prepare(&["a", "b", "c", "d"], 3, &QUICK_FENCING);
    for broker in &mut cluster.brokers[..3] {
        broker.start();
    }
    for broker in &cluster.brokers[..3] {
        assert!(broker.wait_ready(Duration::from_secs(60)));
    }
    let placement: Vec<Vec<i32>> = (0..PARTITIONS)
        .map(|p| {
            let mut replicas = vec![0, 1, 2];
            replicas.rotate_left(usize::try_from(p % 3).unwrap());
            replicas
        })
        .collect();
    let refs: Vec<&[i32]> = placement.iter().map(Vec::as_slice).collect();
    let (writer, observers) = observed(&cluster, TOPIC, PARTITIONS, Some(&refs), &[]);
    let via = cluster.brokers[0].admin();
    let (_, before) = admin_call::<Balance>(&via, "GET", BALANCE_PATH).unwrap();
    assert!(!before.balancing, "{before:?}");

    let acknowledged = writer.acknowledged();
    cluster.brokers[3].start();
    assert!(cluster.brokers[3].wait_ready(Duration::from_secs(60)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen_running, mut most_moving) = (false, 0);
    let settled = loop {
        let (_, balance) = admin_call::<Balance>(&via, "GET", BALANCE_PATH).unwrap();
        seen_running |= balance.balancing;
        most_moving = most_moving.max(balance.moving);
        let spread = |per_broker: &std::collections::BTreeMap<String, usize>| {
            let counts = per_broker.values().copied();
            counts.clone().max().unwrap_or(0) - counts.min().unwrap_or(0)
        };
        let even =
            spread(&balance.replicas_per_broker) <= 1 && spread(&balance.leaders_per_broker) <= 1;
        if seen_running && !balance.balancing && even {
            break balance;
        }
        assert!(Instant::now() < deadline, "{balance:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("balanced: {settled:?}, at most {most_moving} moving at once");
    assert!(most_moving <= 8, "{most_moving} moves at once");
    // The topic spreads too: 36 replicas, 9 on each broker give or take one.
    let mut on: std::collections::BTreeMap<i32, usize> = std::collections::BTreeMap::new();
    for (p, replicas) in replicas(&cluster.bootstrap(), TOPIC).iter().enumerate() {
        assert_eq!(replicas.len(), 3, "partition {p}: {replicas:?}");
        for id in replicas {
            *on.entry(*id).or_default() += 1;
        }
    }
    assert!(
        on.len() == 4 && on.values().all(|n| (8..=10).contains(n)),
        "{on:?}"
    );
    writer.wait_acknowledged(acknowledged + 500, "after the balance");
    let observed = observers.finish(writer);
    eprintln!("{observed}");
    observed.check(&cluster, TOPIC, PARTITIONS);
}

/// The operator's Topic controller (its Kafka side, `converge_topic`) against three real
/// brokers: a topic created with one replica is raised to three (the controller reassigns
/// every partition, reports the move while it runs, and the copies end up identical), a
/// lowering below `min.insync.replicas` is refused, and lowering back to one keeps every record.
#[test]
fn the_topic_controller_raises_and_lowers_a_replication_factor_on_real_brokers() {
    use fjord_operator::kafka::KafkaAdmin;
    use fjord_operator::topic::converge::{ConvergeError, DesiredTopic, converge_topic};

    const TOPIC: &str = "refactored";
    let cluster = ClusterProcesses::start(&["a", "b", "c"], 3, &QUICK_FENCING);
    let bootstrap = cluster.bootstrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut admin = runtime
        .block_on(KafkaAdmin::connect(&bootstrap, Duration::from_secs(10)))
        .unwrap();
    let mut desired = DesiredTopic {
        name: TOPIC.to_owned(),
        partitions: 3,
        replication_factor: 1,
        config: std::collections::BTreeMap::new(),
    };
    let created = runtime
        .block_on(converge_topic(&mut admin, &desired))
        .unwrap();
    assert!(created.created);
    let values: Vec<String> = (0..2000).map(|i| format!("record-{i:05}")).collect();
    assert_eq!(
        super::replication::produce_all(&bootstrap, TOPIC, &values),
        0
    );

    // Converges until the topic has the spec's replicas everywhere; how many converges saw the
    // move running.
    let converge_to = |admin: &mut KafkaAdmin, desired: &DesiredTopic| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut saw_moving = 0;
        loop {
            let converged = runtime.block_on(converge_topic(admin, desired)).unwrap();
            let factor = usize::try_from(desired.replication_factor).unwrap();
            if converged.reassigning == 0
                && replicas(&bootstrap, TOPIC)
                    .iter()
                    .all(|r| r.len() == factor)
            {
                return saw_moving;
            }
            saw_moving += usize::from(converged.reassigning > 0);
            assert!(Instant::now() < deadline, "{converged:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    desired.replication_factor = 3;
    let moving = converge_to(&mut admin, &desired);
    eprintln!("raised to 3 replicas; {moving} converges saw the move running");
    for replicas in replicas(&bootstrap, TOPIC) {
        let racks: BTreeSet<i32> = replicas.iter().copied().collect();
        assert_eq!(racks.len(), 3, "{replicas:?}");
    }
    super::replication::wait_identical(&cluster, TOPIC, 0);

    desired
        .config
        .insert("min.insync.replicas".to_owned(), "2".to_owned());
    desired.replication_factor = 1;
    let refused = runtime.block_on(converge_topic(&mut admin, &desired));
    assert!(
        matches!(
            refused,
            Err(ConvergeError::ReplicationFactorChangeRejected {
                desired: 1,
                min_insync: 2
            })
        ),
        "{refused:?}"
    );
    desired.config.clear();
    converge_to(&mut admin, &desired);
    let read: Vec<String> = super::replication::read_partition(&bootstrap, TOPIC, 0)
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(read, values, "every record, in order, after 1 -> 3 -> 1");
}

/// A reassignment outlives the controller that started it: a move throttled to take seconds
/// is running when the controller is SIGKILLed; the next controller (elected by the two
/// voters left) completes it, and the copies are identical.
#[test]
fn a_reassignment_completes_after_the_controller_is_sigkilled() {
    use rdkafka::admin::{
        AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };

    const TOPIC: &str = "outlived";
    let mut cluster = ClusterProcesses::start(&["a", "b", "c", "d"], 3, &QUICK_FENCING);
    let controller = usize::try_from(cluster.controller(Duration::from_secs(30)).unwrap()).unwrap();
    // The partition lives on a voter that is not the controller, and moves to add broker 3.
    let leader = (0..3).find(|id| *id != controller).unwrap();
    let leader_id = i32::try_from(leader).unwrap();
    let bootstrap = cluster.bootstrap();
    // The balancer, started by the brokers joining, has nothing left to move.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, balance) =
            admin_call::<Balance>(&cluster.brokers[leader].admin(), "GET", BALANCE_PATH).unwrap();
        if !balance.balancing && balance.moving == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{balance:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin = super::cluster::admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let created = super::cluster::futures_executor(admin.create_topics(
        &[NewTopic::new(
            TOPIC,
            1,
            TopicReplication::Variable(&[&[leader_id]]),
        )],
        &options,
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let value = "v".repeat(1000);
    let values: Vec<String> = (0..6000).map(|i| format!("{i:06}-{value}")).collect();
    assert_eq!(
        super::replication::produce_all(&bootstrap, TOPIC, &values),
        0
    );
    for change in [
        AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
            .set("leader.replication.throttled.replicas", "*"),
        AlterConfig::new(ResourceSpecifier::Broker(leader_id))
            .set("leader.replication.throttled.rate", "1000000"),
    ] {
        let altered =
            super::cluster::futures_executor(admin.alter_configs(&[change], &options)).unwrap();
        assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    }

    let plan = format!("0={leader_id},3");
    let reassigning = {
        let (bootstrap, plan) = (bootstrap.clone(), plan.clone());
        std::thread::spawn(move || {
            run_client("python3", &["reassign.py", &bootstrap, TOPIC, &plan, "120"])
        })
    };
    // The move is under way (broker 3 is a replica, not yet in sync) before the controller goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while replicas(&bootstrap, TOPIC) != [vec![leader_id, 3]] {
        assert!(Instant::now() < deadline, "the move never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.brokers[controller].kill();
    let in_sync = isrs(&cluster.brokers[leader].bootstrap(), TOPIC);
    assert_eq!(
        in_sync,
        [BTreeSet::from([leader_id])],
        "the kill landed while broker 3 was still catching up"
    );
    let out = reassigning.join().unwrap();
    assert!(
        out.contains("partition 0 ok\n") && out.ends_with("done\n"),
        "{out}"
    );
    let new_controller = status(&cluster.brokers[leader]).unwrap().controller;
    assert_ne!(new_controller, i32::try_from(controller).unwrap());
    eprintln!("controller {controller} killed mid-move; controller {new_controller} completed it");
    assert_eq!(
        replicas(&cluster.brokers[leader].bootstrap(), TOPIC),
        [vec![leader_id, 3]]
    );
    cluster.brokers[controller].start();
    assert!(cluster.brokers[controller].wait_ready(Duration::from_secs(60)));
    super::replication::wait_identical(&cluster, TOPIC, 0);
}
