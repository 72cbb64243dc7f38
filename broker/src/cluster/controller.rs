//! What the controller (the metadata quorum's leader) decides from the brokers it hears from:
//! which brokers to fence and unfence, and which partitions get a new leader. Pure: the image and
//! the set of brokers heard from recently in, conditional records out. Each record names the
//! epochs it was computed from, so a decision made on an image that has moved on is refused when
//! applied, not applied twice.
//!
//! Leaders are chosen from the ISR only: a partition whose in-sync replicas are all fenced has no
//! leader (-1) until one of them is heard from again, and then it leads in a new leader epoch,
//! unless the topic sets `unclean.leader.election.enable` (then a replica out of sync leads, and
//! is the whole ISR). A fenced broker leaves the ISR unless it is the last member (Kafka keeps the
//! last one, so the partition knows whose return brings its data back). A broker in controlled
//! shutdown leads nothing. With `auto.leader.rebalance.enable`, a partition's preferred replica
//! (its first) leads again once it is usable and in sync. A broker whose leadership is drained
//! leads only partitions no other in-sync replica can. A reassignment whose target replicas are
//! all in sync completes (see [`super::reassignment`]); draining brokers' replicas are moved,
//! and the balancer evens out replicas and leaders, a bounded number at a time (see
//! [`super::balance`]).

use std::collections::BTreeSet;

use super::{MetadataImage, MetadataRecord, PartitionImage};

/// The controller's election settings (broker flags of the controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Hand leadership back to a partition's preferred replica (the first) once it is usable
    /// and in sync again (`auto.leader.rebalance.enable`).
    pub auto_leader_rebalance: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            auto_leader_rebalance: true,
        }
    }
}

/// The changes the controller makes now, given the brokers `alive` (heard from within the session
/// timeout). Each is applied on its own: one refused as stale does not hold back the others.
pub fn decide(image: &MetadataImage, alive: &BTreeSet<i32>, policy: Policy) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    // The brokers that may lead once these changes apply: heard from, and not stopping.
    let usable: BTreeSet<i32> = image
        .brokers
        .values()
        .filter(|b| alive.contains(&b.id) && !b.shut_down)
        .map(|b| b.id)
        .collect();
    for broker in image.brokers.values() {
        let heard = usable.contains(&broker.id);
        if broker.fenced == heard && !broker.shut_down {
            records.push(if heard {
                MetadataRecord::UnfenceBroker {
                    id: broker.id,
                    epoch: broker.epoch,
                }
            } else {
                MetadataRecord::FenceBroker {
                    id: broker.id,
                    epoch: broker.epoch,
                }
            });
        }
    }
    let may_lead: BTreeSet<i32> = usable
        .iter()
        .copied()
        .filter(|id| !image.is_leadership_drained(*id))
        .collect();
    for topic in image.topics.values() {
        // The topic's override, else the cluster-wide dynamic default.
        let unclean = super::topic_config::unclean_leader_election(
            topic
                .configs
                .get("unclean.leader.election.enable")
                .or_else(|| {
                    image
                        .broker_configs
                        .get(super::broker_config::CLUSTER_DEFAULT)
                        .and_then(|c| c.get("unclean.leader.election.enable"))
                }),
        );
        for (index, partition) in (0..).zip(&topic.partitions) {
            if let Some(completed) = super::reassignment::complete(partition, &usable) {
                records.push(super::reassignment::record(
                    topic, index, partition, completed,
                ));
                continue;
            }
            let (leader, isr) = elect(partition, &usable, &may_lead, unclean, policy);
            if leader != partition.leader || isr != partition.isr {
                records.push(MetadataRecord::ChangePartition {
                    topic: topic.name.clone(),
                    topic_id: topic.id,
                    partition: index,
                    partition_epoch: partition.partition_epoch,
                    leader,
                    isr,
                });
            }
        }
    }
    // One budget of moves: the balancer waits while a drain has moves to start.
    let drains = super::balance::drain_moves(image);
    if drains.is_empty() {
        records.extend(super::balance::balance_moves(image));
    }
    records.extend(drains);
    records
}

/// The election an ElectLeaders request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The preferred replica (the first) leads, if it is usable and in sync.
    Preferred,
    /// A partition without a leader gets one: an in-sync replica if any is usable, otherwise
    /// one out of sync (which loses what the ISR had and it lacks).
    Unclean,
}

/// Why an ElectLeaders request leaves a partition as it is (Kafka's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElectionRefused {
    /// ELECTION_NOT_NEEDED: the preferred replica leads already, or (unclean) a leader is there.
    #[error("no election is needed")]
    NotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE: the preferred replica is fenced or out of sync.
    #[error("the preferred replica is not available or not in sync")]
    PreferredNotAvailable,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE: no replica may lead.
    #[error("no replica of the partition is available to lead")]
    NoEligibleLeader,
}

/// The leader and ISR an ElectLeaders request gives `partition`, with the brokers `usable`
/// (registered, unfenced, not shutting down).
pub fn elect_on_request(
    partition: &PartitionImage,
    usable: &BTreeSet<i32>,
    kind: ElectionType,
) -> Result<(i32, Vec<i32>), ElectionRefused> {
    match kind {
        ElectionType::Preferred => match partition.replicas.first().copied() {
            Some(preferred) if preferred == partition.leader => Err(ElectionRefused::NotNeeded),
            Some(preferred)
                if usable.contains(&preferred) && partition.isr.contains(&preferred) =>
            {
                Ok((preferred, partition.isr.clone()))
            }
            _ => Err(ElectionRefused::PreferredNotAvailable),
        },
        ElectionType::Unclean => {
            if usable.contains(&partition.leader) {
                return Err(ElectionRefused::NotNeeded);
            }
            match elect(partition, usable, usable, true, Policy::default()) {
                (-1, _) => Err(ElectionRefused::NoEligibleLeader),
                elected => Ok(elected),
            }
        }
    }
}

/// One partition's leader and ISR, given the brokers `usable` (heard from, not stopping) and
/// those of them that `may_lead` (not kept from leading by a leadership drain: such a broker
/// leads only where no other in-sync replica can).
fn elect(
    partition: &PartitionImage,
    usable: &BTreeSet<i32>,
    may_lead: &BTreeSet<i32>,
    unclean: bool,
    policy: Policy,
) -> (i32, Vec<i32>) {
    let mut isr: Vec<i32> = partition
        .isr
        .iter()
        .copied()
        .filter(|id| usable.contains(id))
        .collect();
    // The first in-sync replica, in preference order (replicas), that `can` lead.
    let in_sync = |can: &BTreeSet<i32>| {
        partition
            .replicas
            .iter()
            .copied()
            .find(|id| can.contains(id) && partition.isr.contains(id))
    };
    let preferred = partition
        .replicas
        .first()
        .copied()
        .filter(|id| may_lead.contains(id) && partition.isr.contains(id));
    let leader = if usable.contains(&partition.leader) {
        if !may_lead.contains(&partition.leader) {
            in_sync(may_lead).unwrap_or(partition.leader)
        } else {
            match preferred {
                Some(preferred) if policy.auto_leader_rebalance => preferred,
                _ => partition.leader,
            }
        }
    } else if let Some(leader) = in_sync(may_lead).or_else(|| in_sync(usable)) {
        leader
    } else if let Some(leader) = partition
        .replicas
        .iter()
        .copied()
        // Never a replica a reassignment is adding: it may hold nothing yet.
        .find(|id| unclean && usable.contains(id) && !partition.adding.contains(id))
    {
        // Unclean: a replica out of sync leads, and is the whole ISR.
        isr = vec![leader];
        leader
    } else {
        -1
    };
    if isr.is_empty() {
        // The last in-sync replica stays in the ISR while it is away.
        isr.clone_from(&partition.isr);
    }
    (leader, isr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerRegistration, PartitionImage};

    fn image(brokers: &[i32], partitions: &[&[i32]]) -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        for id in brokers {
            image
                .apply(&MetadataRecord::RegisterBroker(
                    BrokerRegistration::for_tests(*id, None),
                ))
                .unwrap();
            image.offset += 1;
        }
        image
            .apply(&MetadataRecord::topic_for_tests("t", &[], partitions))
            .unwrap();
        image
    }

    fn decide_default(image: &MetadataImage, alive: &BTreeSet<i32>) -> Vec<MetadataRecord> {
        decide(image, alive, Policy::default())
    }

    fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for record in records {
            image.apply(record).unwrap();
        }
    }

    #[test]
    fn nothing_changes_while_every_broker_is_heard() {
        let image = image(&[1, 2, 3], &[&[1, 2, 3], &[2]]);
        assert!(decide_default(&image, &BTreeSet::from([1, 2, 3])).is_empty());
    }

    /// A single-replica partition goes offline with its broker and returns, in a new leader
    /// epoch, when its broker is heard from again.
    #[test]
    fn a_lost_broker_is_fenced_and_its_partitions_wait_for_it() {
        let mut image = image(&[1, 2], &[&[2], &[1]]);
        let records = decide_default(&image, &BTreeSet::from([1]));
        apply_all(&mut image, &records);
        assert!(image.brokers[&2].fenced);
        let lost = image.topic("t").unwrap().partition(0).unwrap().clone();
        assert_eq!((lost.leader, lost.leader_epoch, lost.isr), (-1, 1, vec![2]));
        assert_eq!(image.partition_summary(1).offline, 1);
        assert!(
            decide_default(&image, &BTreeSet::from([1])).is_empty(),
            "settled"
        );

        let records = decide_default(&image, &BTreeSet::from([1, 2]));
        apply_all(&mut image, &records);
        assert!(!image.brokers[&2].fenced);
        let back = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (2, 2));
    }

    /// A broker in controlled shutdown leads nothing from the next decision on, though it is
    /// still heard from, and stays fenced until it registers again.
    #[test]
    fn a_broker_shutting_down_hands_its_leaderships_away() {
        let mut image = image(&[1, 2], &[&[2, 1], &[2]]);
        let epoch = image.brokers[&2].epoch;
        image
            .apply(&MetadataRecord::ShutDownBroker { id: 2, epoch })
            .unwrap();
        let both = BTreeSet::from([1, 2]);
        let records = decide_default(&image, &both);
        apply_all(&mut image, &records);
        let topic = image.topic("t").unwrap();
        let moved = topic.partition(0).unwrap();
        assert_eq!((moved.leader, moved.isr.as_slice()), (1, &[1][..]));
        let alone = topic.partition(1).unwrap();
        assert_eq!((alone.leader, alone.isr.as_slice()), (-1, &[2][..]));
        assert!(image.brokers[&2].fenced);
        assert!(
            decide_default(&image, &both).is_empty(),
            "heartbeats do not unfence it"
        );
        assert!(matches!(
            image.apply(&MetadataRecord::UnfenceBroker { id: 2, epoch }),
            Err(crate::cluster::ApplyError::Stale(_))
        ));

        let mut registration = image.brokers[&2].clone();
        registration.fenced = false;
        image.offset += 1;
        image
            .apply(&MetadataRecord::RegisterBroker(registration))
            .unwrap();
        let records = decide_default(&image, &both);
        apply_all(&mut image, &records);
        assert_eq!(image.topic("t").unwrap().partition(1).unwrap().leader, 2);
    }

    /// With several replicas, leadership moves to the next in-sync replica in preference order,
    /// and the lost broker leaves the ISR.
    #[test]
    fn leadership_moves_within_the_isr_only() {
        let mut image = image(&[1, 2, 3], &[&[1, 2, 3]]);
        {
            let topic = std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap());
            topic.partitions[0].isr = vec![1, 3];
        }
        let records = decide_default(&image, &BTreeSet::from([2, 3]));
        apply_all(&mut image, &records);
        let partition = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(partition.leader, 3, "2 is not in sync: never elected");
        assert_eq!(partition.isr, [3]);
        assert_eq!(partition.leader_epoch, 1);
    }

    /// A preferred replica back in the ISR leads again (unless rebalancing is off); leadership
    /// never moves to a replica out of sync.
    #[test]
    fn preferred_leaders_are_restored_from_the_isr() {
        let mut image = image(&[1, 2, 3], &[&[1, 2, 3], &[1, 2, 3]]);
        {
            let topic = std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap());
            topic.partitions[0].leader = 2;
            topic.partitions[1].leader = 2;
            topic.partitions[1].isr = vec![2, 3];
        }
        let all = BTreeSet::from([1, 2, 3]);
        let off = Policy {
            auto_leader_rebalance: false,
        };
        assert!(decide(&image, &all, off).is_empty());
        let records = decide_default(&image, &all);
        apply_all(&mut image, &records);
        let topic = image.topic("t").unwrap();
        assert_eq!(topic.partition(0).unwrap().leader, 1);
        assert_eq!(topic.partition(0).unwrap().leader_epoch, 1);
        assert_eq!(topic.partition(1).unwrap().leader, 2, "1 is out of sync");
    }

    /// With every in-sync replica lost, a replica out of sync leads only where the topic allows
    /// an unclean election; it is then the whole ISR.
    #[test]
    fn an_unclean_election_needs_the_topic_to_allow_it() {
        let mut image = image(&[1, 2], &[&[1, 2]]);
        {
            let topic = std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap());
            topic.partitions[0].isr = vec![1];
        }
        let records = decide_default(&image, &BTreeSet::from([2]));
        let mut clean = image.clone();
        apply_all(&mut clean, &records);
        let partition = clean.topic("t").unwrap().partition(0).unwrap();
        assert_eq!((partition.leader, partition.isr.as_slice()), (-1, &[1][..]));

        std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap())
            .configs
            .insert(
                "unclean.leader.election.enable".to_owned(),
                "true".to_owned(),
            );
        let records = decide_default(&image, &BTreeSet::from([2]));
        apply_all(&mut image, &records);
        let partition = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!((partition.leader, partition.isr.as_slice()), (2, &[2][..]));
    }

    /// An unclean election never picks a replica a reassignment is adding: it may hold nothing.
    #[test]
    fn an_unclean_election_passes_over_replicas_being_added() {
        let moving = PartitionImage {
            replicas: vec![2, 3, 1],
            leader: -1,
            leader_epoch: 3,
            isr: vec![1],
            partition_epoch: 5,
            adding: vec![2, 3],
            removing: vec![1],
        };
        assert_eq!(
            elect_on_request(&moving, &BTreeSet::from([2, 3]), ElectionType::Unclean),
            Err(ElectionRefused::NoEligibleLeader)
        );
        let mut halfway = moving.clone();
        halfway.adding = vec![2];
        assert_eq!(
            elect_on_request(&halfway, &BTreeSet::from([2, 3]), ElectionType::Unclean),
            Ok((3, vec![3]))
        );
    }

    /// ElectLeaders: a preferred election moves leadership back to the first replica only if it
    /// is usable and in sync, and is not needed where it leads; an unclean one is needed only
    /// where no usable broker leads, and takes a replica out of sync only when none in sync is
    /// left.
    #[test]
    fn elections_on_request_follow_kafka() {
        let partition = |replicas: &[i32], leader, isr: &[i32]| PartitionImage {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            partition_epoch: 5,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let usable = BTreeSet::from([1, 2]);
        let preferred = ElectionType::Preferred;
        let unclean = ElectionType::Unclean;
        assert_eq!(
            elect_on_request(&partition(&[1, 2], 1, &[1, 2]), &usable, preferred),
            Err(ElectionRefused::NotNeeded)
        );
        assert_eq!(
            elect_on_request(&partition(&[1, 2], 2, &[1, 2]), &usable, preferred),
            Ok((1, vec![1, 2]))
        );
        assert_eq!(
            elect_on_request(&partition(&[1, 2], 2, &[2]), &usable, preferred),
            Err(ElectionRefused::PreferredNotAvailable)
        );
        assert_eq!(
            elect_on_request(&partition(&[3, 2], 2, &[3, 2]), &usable, preferred),
            Err(ElectionRefused::PreferredNotAvailable)
        );
        assert_eq!(
            elect_on_request(&partition(&[1, 2], 2, &[2]), &usable, unclean),
            Err(ElectionRefused::NotNeeded)
        );
        assert_eq!(
            elect_on_request(&partition(&[3, 2], -1, &[3]), &usable, unclean),
            Ok((2, vec![2]))
        );
        assert_eq!(
            elect_on_request(&partition(&[3, 2], -1, &[3, 2]), &usable, unclean),
            Ok((2, vec![2]))
        );
        assert_eq!(
            elect_on_request(&partition(&[3], -1, &[3]), &usable, unclean),
            Err(ElectionRefused::NoEligibleLeader)
        );
    }

    /// A reassignment completes once its target replicas are in sync, whichever broker is the
    /// controller then (its state is in the image): the removed replicas leave, and a leader
    /// among them hands over to a target replica in a new leader epoch.
    #[test]
    fn a_reassignment_completes_once_its_target_is_in_sync() {
        let mut image = image(&[1, 2, 3, 4], &[&[4, 1, 2]]);
        let all = BTreeSet::from([1, 2, 3, 4]);
        let topic = image.topic("t").unwrap().clone();
        let current = topic.partition(0).unwrap();
        let moving = super::super::reassignment::start(
            current,
            &[1, 2, 3],
            &image.brokers,
            &BTreeSet::new(),
            &all,
        )
        .unwrap()
        .unwrap();
        image
            .apply(&super::super::reassignment::record(
                &topic, 0, current, moving,
            ))
            .unwrap();
        let keep_leaders = Policy {
            auto_leader_rebalance: false,
        };
        assert!(
            decide(&image, &all, keep_leaders).is_empty(),
            "3 is not in sync yet"
        );
        {
            let topic = std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap());
            topic.partitions[0].isr.push(3);
        }
        let records = decide(&image, &all, keep_leaders);
        apply_all(&mut image, &records);
        let partition = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(partition.replicas, [1, 2, 3]);
        assert_eq!((partition.leader, partition.leader_epoch), (1, 1));
        assert_eq!(partition.isr, [1, 2, 3]);
        assert!(!partition.is_reassigning());
        assert!(decide_default(&image, &all).is_empty(), "settled");
    }

    /// A broker whose leadership is drained hands its leaderships to other in-sync replicas,
    /// is not given them back as the preferred replica, and keeps one no other replica can
    /// lead; once it registers again it may lead again.
    #[test]
    fn a_leadership_drain_moves_leaders_away_until_the_broker_registers_again() {
        let mut image = image(&[1, 2, 3], &[&[1, 2, 3], &[1]]);
        let all = BTreeSet::from([1, 2, 3]);
        let epoch = image.brokers[&1].epoch;
        image
            .apply(&MetadataRecord::DrainLeadership {
                id: 1,
                epoch,
                drained: true,
            })
            .unwrap();
        let records = decide_default(&image, &all);
        apply_all(&mut image, &records);
        let topic = image.topic("t").unwrap();
        assert_eq!(topic.partition(0).unwrap().leader, 2);
        assert_eq!(topic.partition(1).unwrap().leader, 1, "no one else can");
        assert!(decide_default(&image, &all).is_empty(), "settled");

        let registration = image.brokers[&1].clone();
        image.offset += 1;
        image
            .apply(&MetadataRecord::RegisterBroker(registration))
            .unwrap();
        assert!(!image.is_leadership_drained(1));
        let records = decide_default(&image, &all);
        apply_all(&mut image, &records);
        assert_eq!(image.topic("t").unwrap().partition(0).unwrap().leader, 1);
    }

    /// A decision applied twice (a retried write that had been committed) changes nothing the
    /// second time: a partition change is refused as stale, a fence is already in place.
    #[test]
    fn decisions_applied_twice_change_nothing() {
        let mut image = image(&[1, 2], &[&[2]]);
        let records = decide_default(&image, &BTreeSet::from([1]));
        apply_all(&mut image, &records);
        for record in &records {
            let mut again = image.clone();
            match record {
                MetadataRecord::ChangePartition { .. } => assert!(matches!(
                    again.apply(record),
                    Err(crate::cluster::ApplyError::Stale(_))
                )),
                _ => {
                    again.apply(record).unwrap();
                    assert_eq!(again, image, "{record:?}");
                }
            }
        }
        // A registration newer than the one a fence was computed for is not fenced by it.
        let mut restarted = image.clone();
        let mut registration = restarted.brokers[&2].clone();
        registration.fenced = false;
        restarted.offset += 1;
        restarted
            .apply(&MetadataRecord::RegisterBroker(registration))
            .unwrap();
        let old_fence = MetadataRecord::FenceBroker {
            id: 2,
            epoch: image.brokers[&2].epoch,
        };
        assert!(matches!(
            restarted.apply(&old_fence),
            Err(crate::cluster::ApplyError::Stale(_))
        ));
    }
}
