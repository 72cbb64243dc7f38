//! Moving replicas between brokers, as pure functions of the image: where the replicas of a
//! draining broker go (by the rack rule: a partition's replicas on distinct racks), which moves
//! the controller starts now (a bounded number at a time, through the reassignment machinery),
//! and whether restarting a broker now is safe.
//!
//! A broker without a rack counts as a rack of its own.

use std::collections::{BTreeMap, BTreeSet};

use super::{MetadataImage, MetadataRecord, PartitionImage, reassignment};

/// Reassignments the controller keeps running at most, cluster-wide, for drains.
pub const MAX_CONCURRENT_MOVES: usize = 8;

/// One partition moved to new replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub target: Vec<i32>,
}

/// The rack of broker `id` (its id when it has none, or is not registered).
fn rack_of(image: &MetadataImage, id: i32) -> String {
    image
        .brokers
        .get(&id)
        .and_then(|b| b.rack.clone())
        .unwrap_or_else(|| format!("broker-{id}"))
}

/// Replicas per broker (target replicas of partitions being moved), every registered broker
/// included.
fn replica_counts(image: &MetadataImage) -> BTreeMap<i32, usize> {
    let mut counts: BTreeMap<i32, usize> = image.brokers.keys().map(|id| (*id, 0)).collect();
    for partition in image.topics.values().flat_map(|t| &t.partitions) {
        for id in reassignment::target(partition) {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Where the replicas on the brokers `leaving` go: for every partition with a replica on one of
/// them (its target, if it is being moved already), the target that replaces each such replica
/// in place with a broker that stays, is usable, holds no replica of the partition and is on a
/// rack none of the partition's other replicas is on, the least loaded first. A partition that
/// cannot be placed so is an `Err` naming it and why.
pub fn drain_plan(image: &MetadataImage, leaving: &BTreeSet<i32>) -> Vec<Result<Move, String>> {
    let candidates: Vec<i32> = image
        .usable_brokers()
        .into_iter()
        .filter(|id| !leaving.contains(id) && !image.draining.contains(id))
        .collect();
    let mut load = replica_counts(image);
    let mut plan = Vec::new();
    for topic in image.topics.values() {
        for (index, partition) in (0..).zip(&topic.partitions) {
            let current = reassignment::target(partition);
            if !current.iter().any(|id| leaving.contains(id)) {
                continue;
            }
            let mut target = current.clone();
            let mut refused = None;
            for slot in 0..target.len() {
                if !leaving.contains(&target[slot]) {
                    continue;
                }
                let racks: BTreeSet<String> = target
                    .iter()
                    .enumerate()
                    .filter(|(i, id)| *i != slot && !leaving.contains(id))
                    .map(|(_, id)| rack_of(image, *id))
                    .collect();
                let chosen = candidates
                    .iter()
                    .copied()
                    .filter(|id| !target.contains(id) && !racks.contains(&rack_of(image, *id)))
                    .min_by_key(|id| (load.get(id).copied().unwrap_or(0), *id));
                match chosen {
                    Some(id) => {
                        *load.entry(id).or_default() += 1;
                        target[slot] = id;
                    }
                    None => {
                        refused = Some(format!(
                            "partition {}-{index} (replicas {current:?}) cannot keep {} replicas on distinct racks without broker {}: no usable broker outside racks {racks:?} is left",
                            topic.name,
                            current.len(),
                            target[slot]
                        ));
                        break;
                    }
                }
            }
            plan.push(match refused {
                Some(reason) => Err(reason),
                None => Ok(Move {
                    topic: topic.name.clone(),
                    partition: index,
                    target,
                }),
            });
        }
    }
    plan
}

/// The reassignments the controller starts now for the brokers being drained: the planned
/// moves of partitions not moving already, as many as keep [`MAX_CONCURRENT_MOVES`] running.
pub fn drain_moves(image: &MetadataImage) -> Vec<MetadataRecord> {
    if image.draining.is_empty() {
        return Vec::new();
    }
    let running = image
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.is_reassigning())
        .count();
    let usable = image.usable_brokers();
    let mut records = Vec::new();
    for planned in drain_plan(image, &image.draining) {
        if running + records.len() >= MAX_CONCURRENT_MOVES {
            break;
        }
        let Ok(planned) = planned else { continue };
        let Some(topic) = image.topic(&planned.topic) else {
            continue;
        };
        let Some(current) = topic.partition(planned.partition) else {
            continue;
        };
        if current.is_reassigning() {
            continue;
        }
        if let Ok(Some(next)) =
            reassignment::start(current, &planned.target, &image.brokers, &usable)
        {
            records.push(reassignment::record(
                topic,
                planned.partition,
                current,
                next,
            ));
        }
    }
    records
}

/// Partitions with a replica on broker `id` (counted by target, as [`drain_plan`] moves them),
/// and of those the ones being moved now.
pub fn replicas_on(image: &MetadataImage, id: i32) -> (usize, usize) {
    let on: Vec<&PartitionImage> = image
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.replicas.contains(&id))
        .collect();
    let moving = on.iter().filter(|p| p.is_reassigning()).count();
    (on.len(), moving)
}

/// Why restarting broker `id` now is not safe (empty: it is): a partition whose ISR it is in
/// would fall below its `min.insync.replicas`, or one it leads has no other in-sync replica to
/// lead; or, if it is one of the metadata quorum's `voters`, the voters left would not be a
/// majority.
pub fn pre_restart_check(image: &MetadataImage, id: i32, voters: &[i32]) -> Vec<String> {
    let mut reasons = Vec::new();
    let usable = image.usable_brokers();
    for topic in image.topics.values() {
        let min_insync = image
            .produce_config(&topic.name, id)
            .map_or(1, |c| usize::try_from(c.min_insync_replicas).unwrap_or(1));
        for (index, partition) in (0..).zip(&topic.partitions) {
            if !partition.isr.contains(&id) {
                continue;
            }
            let others: Vec<i32> = partition
                .isr
                .iter()
                .copied()
                .filter(|member| *member != id && usable.contains(member))
                .collect();
            if partition.replicas.len() > 1 && others.len() < min_insync {
                reasons.push(format!(
                    "{}-{index}: its ISR {:?} would fall to {} in sync, below min.insync.replicas {min_insync}",
                    topic.name,
                    partition.isr,
                    others.len()
                ));
            } else if partition.leader == id && others.is_empty() {
                reasons.push(format!(
                    "{}-{index}: no other in-sync replica would lead it",
                    topic.name
                ));
            }
        }
    }
    if voters.contains(&id) {
        let up = voters
            .iter()
            .filter(|voter| **voter != id && usable.contains(voter))
            .count();
        if up <= voters.len() / 2 {
            reasons.push(format!(
                "the metadata quorum would keep {up} of {} voters, not a majority",
                voters.len()
            ));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::BrokerRegistration;

    fn image(racks: &[(i32, &str)], partitions: &[&[i32]]) -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        for (id, rack) in racks {
            image
                .apply(&MetadataRecord::RegisterBroker(
                    BrokerRegistration::for_tests(*id, Some(rack)),
                ))
                .unwrap();
        }
        image
            .apply(&MetadataRecord::topic_for_tests(
                "t",
                &[("min.insync.replicas", "2")],
                partitions,
            ))
            .unwrap();
        image
    }

    /// Broker 4's replicas go to the brokers on racks the partition lacks, the least loaded
    /// first, in its place in the replica list.
    #[test]
    fn a_drain_keeps_replicas_on_distinct_racks() {
        let image = image(
            &[(1, "a"), (2, "b"), (3, "c"), (4, "c"), (5, "a")],
            &[&[4, 1, 2], &[1, 2, 3], &[2, 4, 5]],
        );
        let plan: Vec<Move> = drain_plan(&image, &BTreeSet::from([4]))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(plan.len(), 2);
        assert_eq!(
            (plan[0].partition, plan[0].target.as_slice()),
            (0, &[3, 1, 2][..])
        );
        // Partition 2 lacks rack c: broker 3 is the only one left there.
        assert_eq!(
            (plan[1].partition, plan[1].target.as_slice()),
            (2, &[2, 3, 5][..])
        );
    }

    /// With a rack's only other broker gone, a partition cannot keep three racks: the drain
    /// names it.
    #[test]
    fn a_drain_that_breaks_the_rack_rule_is_refused_with_the_partition() {
        let image = image(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], &[&[1, 2, 3]]);
        let plan = drain_plan(&image, &BTreeSet::from([3]));
        let reason = plan[0].clone().unwrap_err();
        assert!(
            reason.contains("t-0") && reason.contains("distinct racks"),
            "{reason}"
        );
        assert!(
            drain_plan(&image, &BTreeSet::from([1]))
                .iter()
                .all(Result::is_ok)
        );
    }

    /// The controller starts at most the bounded number of moves, and none for partitions
    /// moving already.
    #[test]
    fn drain_moves_are_bounded() {
        let partitions: Vec<Vec<i32>> = (0..20).map(|_| vec![1, 2]).collect();
        let refs: Vec<&[i32]> = partitions.iter().map(Vec::as_slice).collect();
        let mut image = image(&[(1, "a"), (2, "b"), (3, "a")], &refs);
        assert!(drain_moves(&image).is_empty(), "nothing drains");
        image
            .apply(&MetadataRecord::DrainBroker {
                id: 1,
                draining: true,
            })
            .unwrap();
        let records = drain_moves(&image);
        assert_eq!(records.len(), MAX_CONCURRENT_MOVES);
        for record in &records {
            image.apply(record).unwrap();
        }
        assert!(drain_moves(&image).is_empty(), "the bound is reached");
        assert_eq!(replicas_on(&image, 1), (20, MAX_CONCURRENT_MOVES));
        let moving = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(moving.replicas, [3, 2, 1]);
    }

    /// Restarting a broker is refused where a partition would fall below min.insync.replicas
    /// (two of three in sync already), or lose its only in-sync leader, or the quorum its
    /// majority.
    #[test]
    fn a_restart_is_safe_only_if_every_partition_keeps_enough_in_sync() {
        let mut image = image(&[(1, "a"), (2, "b"), (3, "c")], &[&[1, 2, 3], &[2]]);
        assert!(pre_restart_check(&image, 1, &[1, 2, 3]).is_empty());
        let reasons = pre_restart_check(&image, 2, &[1, 2, 3]);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("t-1: no other in-sync replica"),
            "{reasons:?}"
        );
        std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap()).partitions[0].isr = vec![1, 3];
        let reasons = pre_restart_check(&image, 1, &[1, 2, 3]);
        assert!(
            reasons[0].contains("below min.insync.replicas 2"),
            "{reasons:?}"
        );
        assert!(
            pre_restart_check(&image, 2, &[1, 2, 3])
                .iter()
                .all(|r| !r.contains("t-0"))
        );
        let epoch = image.brokers[&3].epoch;
        image
            .apply(&MetadataRecord::FenceBroker { id: 3, epoch })
            .unwrap();
        let reasons = pre_restart_check(&image, 2, &[1, 2, 3]);
        assert!(
            reasons.iter().any(|r| r.contains("1 of 3 voters")),
            "{reasons:?}"
        );
    }
}
