//! Moving replicas between brokers, as pure functions of the image: where the replicas of a
//! draining broker go (by the rack rule: a partition's replicas on distinct racks), how the
//! balancer evens out replicas and then preferred leaders over the brokers, which moves the
//! controller starts now (a bounded number at a time, through the reassignment machinery), and
//! whether restarting a broker now is safe.
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
    let room = MAX_CONCURRENT_MOVES.saturating_sub(running_moves(image));
    let planned: Vec<Move> = drain_plan(image, &image.draining)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|planned| {
            image
                .topic(&planned.topic)
                .and_then(|t| t.partition(planned.partition))
                .is_some_and(|p| !p.is_reassigning())
        })
        .take(room)
        .collect();
    start_moves(image, planned)
}

/// The balancer's next moves, at most `limit` of them, over the usable brokers not being
/// drained: first replicas, one at a time from the broker with the most to the one with the
/// fewest while they differ by more than one, by the rack rule, from the topic the giver holds
/// the most more of than the taker, a replica that does not lead first; once replicas are even, preferred leaders (the first replica, which the controller
/// makes the leader), by putting the broker with the fewest first in a partition whose first is
/// on the broker with the most. Empty: balanced, as far as the rack rule allows.
pub fn balance_plan(image: &MetadataImage, limit: usize) -> Vec<Move> {
    let brokers: BTreeSet<i32> = image
        .usable_brokers()
        .into_iter()
        .filter(|id| !image.draining.contains(id))
        .collect();
    if brokers.len() < 2 || limit == 0 {
        return Vec::new();
    }
    let mut targets: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    let mut moves = replica_moves(image, &brokers, limit, &mut targets);
    if moves.is_empty() {
        moves = leader_moves(image, &brokers, limit);
    }
    moves
}

/// Partitions that may move (none of them is moving), with their replicas.
fn movable(image: &MetadataImage) -> impl Iterator<Item = (&str, i32, &PartitionImage)> {
    image.topics.values().flat_map(|topic| {
        (0..)
            .zip(&topic.partitions)
            .filter(|(_, p)| !p.is_reassigning())
            .map(|(index, p)| (topic.name.as_str(), index, p))
    })
}

fn replica_moves(
    image: &MetadataImage,
    brokers: &BTreeSet<i32>,
    limit: usize,
    targets: &mut BTreeMap<(String, i32), Vec<i32>>,
) -> Vec<Move> {
    let mut load: BTreeMap<i32, usize> = replica_counts(image)
        .into_iter()
        .filter(|(id, _)| brokers.contains(id))
        .collect();
    // Replicas per topic and broker: a move is taken from the topic where the giver holds the
    // most more than the taker, so each topic spreads too.
    let mut per_topic: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            for id in reassignment::target(partition) {
                *per_topic.entry((topic.name.as_str(), id)).or_default() += 1;
            }
        }
    }
    let mut moves = Vec::new();
    while moves.len() < limit {
        let mut by_load: Vec<(usize, i32)> = load.iter().map(|(id, n)| (*n, *id)).collect();
        by_load.sort_unstable();
        let mut found = None;
        'pairs: for &(most, from) in by_load.iter().rev() {
            for &(fewest, to) in &by_load {
                if most <= fewest + 1 {
                    // Nothing to give to anyone from this broker: try the next.
                    break;
                }
                // A replica of `from` that `to` can take by the rack rule, a follower first.
                let candidate = movable(image)
                    .filter(|(name, index, _)| !targets.contains_key(&((*name).to_owned(), *index)))
                    .filter(|(_, _, p)| p.replicas.contains(&from) && !p.replicas.contains(&to))
                    .filter(|(_, _, p)| {
                        let rack = rack_of(image, to);
                        p.replicas
                            .iter()
                            .filter(|id| **id != from)
                            .all(|id| rack_of(image, *id) != rack)
                    })
                    .max_by_key(|(name, _, p)| {
                        let held = |id| per_topic.get(&(*name, id)).copied().unwrap_or(0);
                        (held(from).saturating_sub(held(to)), p.leader != from)
                    });
                if let Some((name, index, p)) = candidate {
                    found = Some((name.to_owned(), index, p, from, to));
                    break 'pairs;
                }
            }
        }
        let Some((name, index, partition, from, to)) = found else {
            break;
        };
        let target: Vec<i32> = partition
            .replicas
            .iter()
            .map(|id| if *id == from { to } else { *id })
            .collect();
        *load.entry(from).or_default() -= 1;
        *load.entry(to).or_default() += 1;
        if let Some(topic) = image.topic(&name) {
            *per_topic.entry((topic.name.as_str(), from)).or_default() -= 1;
            *per_topic.entry((topic.name.as_str(), to)).or_default() += 1;
        }
        targets.insert((name.clone(), index), target.clone());
        moves.push(Move {
            topic: name,
            partition: index,
            target,
        });
    }
    moves
}

/// Preferred leaders evened out: while some broker is first in two more partitions than
/// another, a chain of reorders moves one preference from it to that broker, each step a
/// partition whose first replica is the step's giver and whose ISR holds its taker (found
/// breadth-first, so the chain is the shortest).
fn leader_moves(image: &MetadataImage, brokers: &BTreeSet<i32>, limit: usize) -> Vec<Move> {
    // Partitions by index in `movable`, and each one's current first replica.
    let partitions: Vec<(&str, i32, &PartitionImage)> = movable(image).collect();
    let mut first: Vec<Option<i32>> = partitions
        .iter()
        .map(|(_, _, p)| p.replicas.first().copied())
        .collect();
    let count = |first: &[Option<i32>]| {
        let mut counts: BTreeMap<i32, usize> = brokers.iter().map(|id| (*id, 0)).collect();
        for id in first.iter().flatten() {
            if let Some(n) = counts.get_mut(id) {
                *n += 1;
            }
        }
        counts
    };
    let mut moved: BTreeSet<usize> = BTreeSet::new();
    let mut moves = Vec::new();
    while moves.len() < limit {
        let counts = count(&first);
        let Some((&source, &most)) = counts.iter().max_by_key(|(id, n)| (**n, -**id)) else {
            break;
        };
        // Breadth-first from `source`: how each broker was reached (partition, giver).
        let mut reached: BTreeMap<i32, Option<(usize, i32)>> = BTreeMap::from([(source, None)]);
        let mut queue = std::collections::VecDeque::from([source]);
        let mut sink = None;
        while let Some(giver) = queue.pop_front() {
            if counts.get(&giver).is_some_and(|n| n + 2 <= most) {
                sink = Some(giver);
                break;
            }
            for (index, (_, _, partition)) in partitions.iter().enumerate() {
                if first[index] != Some(giver) || moved.contains(&index) {
                    continue;
                }
                for taker in partition.isr.iter().copied() {
                    if brokers.contains(&taker) && !reached.contains_key(&taker) {
                        reached.insert(taker, Some((index, giver)));
                        queue.push_back(taker);
                    }
                }
            }
        }
        let Some(mut at) = sink else {
            break;
        };
        while let Some(Some((index, giver))) = reached.get(&at).copied() {
            let (name, partition_index, partition) = partitions[index];
            let mut target = vec![at];
            target.extend(partition.replicas.iter().copied().filter(|id| *id != at));
            first[index] = Some(at);
            moved.insert(index);
            moves.push(Move {
                topic: name.to_owned(),
                partition: partition_index,
                target,
            });
            at = giver;
        }
    }
    moves
}

/// The balancer's records now: while it runs, its next moves (keeping at most
/// [`MAX_CONCURRENT_MOVES`] reassignments running); once nothing is left to move and nothing
/// moves, its end.
pub fn balance_moves(image: &MetadataImage) -> Vec<MetadataRecord> {
    if !image.balancing {
        return Vec::new();
    }
    let running = running_moves(image);
    let plan = balance_plan(image, MAX_CONCURRENT_MOVES.saturating_sub(running));
    if plan.is_empty() && running == 0 {
        return vec![MetadataRecord::Balance { balancing: false }];
    }
    start_moves(image, plan)
}

/// Reassignments running, cluster-wide.
fn running_moves(image: &MetadataImage) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.is_reassigning())
        .count()
}

/// The records that start `moves` (those that change something).
fn start_moves(image: &MetadataImage, moves: Vec<Move>) -> Vec<MetadataRecord> {
    let usable = image.usable_brokers();
    moves
        .into_iter()
        .filter_map(|planned| {
            let topic = image.topic(&planned.topic)?;
            let current = topic.partition(planned.partition)?;
            let next = reassignment::start(
                current,
                &planned.target,
                &image.brokers,
                &image.draining,
                &usable,
            )
            .ok()
            .flatten()?;
            Some(reassignment::record(
                topic,
                planned.partition,
                current,
                next,
            ))
        })
        .collect()
}

/// Partitions with a replica on broker `id` (one being removed by a move still counts: the
/// broker holds its copy until the move completes), and of those the ones being moved now.
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

/// What restarting a broker now would do: `reasons` it should wait (each would clear as
/// replicas catch up or brokers return), and `risks` no wait can remove (a partition with one
/// replica goes offline, a quorum of one or two voters has no majority while it restarts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartCheck {
    pub reasons: Vec<String>,
    pub risks: Vec<String>,
}

/// Whether restarting broker `id` now is safe: not if a partition whose ISR it is in would keep
/// fewer than its `min.insync.replicas` in sync though it has replicas enough, or one it leads
/// has no other in-sync replica though it has others, or, if it is one of the metadata quorum's
/// `voters`, the voters left would not be a majority of a quorum that can lose one.
pub fn pre_restart_check(image: &MetadataImage, id: i32, voters: &[i32]) -> RestartCheck {
    let mut check = RestartCheck::default();
    let usable = image.usable_brokers();
    for topic in image.topics.values() {
        let min_insync = image
            .produce_config(&topic.name, id)
            .map_or(1, |c| usize::try_from(c.min_insync_replicas).unwrap_or(1));
        for (index, partition) in (0..).zip(&topic.partitions) {
            if !partition.isr.contains(&id) {
                continue;
            }
            let others = partition
                .isr
                .iter()
                .filter(|member| **member != id && usable.contains(member))
                .count();
            // The most that could be in sync without it.
            let possible = partition.replicas.len() - 1;
            let name = format!("{}-{index}", topic.name);
            if possible == 0 {
                check
                    .risks
                    .push(format!("{name}: one replica, offline while it restarts"));
            } else if others < min_insync && possible >= min_insync {
                check.reasons.push(format!(
                    "{name}: its ISR {:?} would fall to {others} in sync, below min.insync.replicas {min_insync}",
                    partition.isr
                ));
            } else if others < min_insync {
                check.risks.push(format!(
                    "{name}: {} replicas for min.insync.replicas {min_insync}: acks=all produces are refused while it restarts",
                    partition.replicas.len()
                ));
            } else if partition.leader == id && others == 0 {
                check
                    .reasons
                    .push(format!("{name}: no other in-sync replica would lead it"));
            }
        }
    }
    if voters.contains(&id) {
        let majority = voters.len() / 2 + 1;
        let up = voters
            .iter()
            .filter(|voter| **voter != id && usable.contains(voter))
            .count();
        let message = format!(
            "the metadata quorum would keep {up} of {} voters, not a majority",
            voters.len()
        );
        // The quorum could lose one voter and keep a majority: waiting for the others helps.
        if up < majority && voters.len() > majority {
            check.reasons.push(message);
        } else if up < majority {
            check.risks.push(message);
        }
    }
    check
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

    /// Applies `records`, then lets every moving partition catch up (its ISR is its replicas)
    /// and completes what can, as the controller would.
    fn run_moves(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for record in records {
            image.apply(record).unwrap();
        }
        let usable = image.usable_brokers();
        let names: Vec<String> = image.topics.keys().cloned().collect();
        for name in names {
            let topic = std::sync::Arc::make_mut(image.topics.get_mut(&name).unwrap());
            for partition in &mut topic.partitions {
                if partition.is_reassigning() {
                    partition.isr.clone_from(&partition.replicas);
                    if let Some(done) = reassignment::complete(partition, &usable) {
                        *partition = done;
                    }
                }
            }
        }
    }

    /// A fourth broker joins three that hold 12 partitions of three replicas: the balancer
    /// starts by itself, moves at most the bound at a time, and stops once every broker holds
    /// 9 replicas and is the preferred leader of 3, every partition still on three racks.
    #[test]
    fn a_new_broker_gets_its_share_of_replicas_and_leaders() {
        let partitions: Vec<Vec<i32>> = (0..12)
            .map(|p| {
                let mut replicas = vec![1, 2, 3];
                replicas.rotate_left(p % 3);
                replicas
            })
            .collect();
        let refs: Vec<&[i32]> = partitions.iter().map(Vec::as_slice).collect();
        let mut image = image(&[(1, "a"), (2, "b"), (3, "c")], &refs);
        assert!(!image.balancing);
        image
            .apply(&MetadataRecord::RegisterBroker(
                BrokerRegistration::for_tests(4, Some("a")),
            ))
            .unwrap();
        assert!(image.balancing, "a new broker starts the balancer");
        let mut rounds = 0;
        while image.balancing {
            let records = balance_moves(&image);
            let starts = records
                .iter()
                .filter(|r| matches!(r, MetadataRecord::ReassignPartition { .. }))
                .count();
            assert!(starts <= MAX_CONCURRENT_MOVES);
            run_moves(&mut image, &records);
            rounds += 1;
            assert!(rounds < 50, "the balancer does not settle");
        }
        let topic = image.topic("t").unwrap();
        let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
        let mut preferred: BTreeMap<i32, usize> = BTreeMap::new();
        for partition in &topic.partitions {
            for id in &partition.replicas {
                *replicas.entry(*id).or_default() += 1;
            }
            *preferred.entry(partition.replicas[0]).or_default() += 1;
            let racks: BTreeSet<String> = partition
                .replicas
                .iter()
                .map(|id| rack_of(&image, *id))
                .collect();
            assert_eq!(racks.len(), 3, "{partition:?}");
        }
        assert_eq!(replicas, BTreeMap::from([(1, 6), (2, 12), (3, 12), (4, 6)]));
        assert_eq!(preferred.values().copied().max(), Some(3), "{preferred:?}");
        assert_eq!(preferred.values().copied().min(), Some(3), "{preferred:?}");
    }

    /// Restarting a broker is refused where a partition would fall below min.insync.replicas
    /// though it has replicas enough, or the quorum lose its majority though it could survive
    /// the loss of one; a partition with one replica is a risk, not a reason (no wait helps).
    #[test]
    fn a_restart_is_safe_only_if_every_partition_keeps_enough_in_sync() {
        let mut image = image(&[(1, "a"), (2, "b"), (3, "c")], &[&[1, 2, 3], &[2]]);
        assert_eq!(
            pre_restart_check(&image, 1, &[1, 2, 3]),
            RestartCheck::default()
        );
        let single = pre_restart_check(&image, 2, &[1, 2, 3]);
        assert!(single.reasons.is_empty(), "{single:?}");
        assert_eq!(
            single.risks,
            ["t-1: one replica, offline while it restarts"]
        );
        std::sync::Arc::make_mut(image.topics.get_mut("t").unwrap()).partitions[0].isr = vec![1, 3];
        let lagging = pre_restart_check(&image, 1, &[1, 2, 3]);
        assert!(
            lagging.reasons[0].contains("below min.insync.replicas 2"),
            "{lagging:?}"
        );
        assert!(
            pre_restart_check(&image, 2, &[1, 2, 3])
                .reasons
                .iter()
                .all(|r| !r.contains("t-0"))
        );
        let epoch = image.brokers[&3].epoch;
        image
            .apply(&MetadataRecord::FenceBroker { id: 3, epoch })
            .unwrap();
        let quorum = pre_restart_check(&image, 2, &[1, 2, 3]);
        assert!(
            quorum.reasons.iter().any(|r| r.contains("1 of 3 voters")),
            "{quorum:?}"
        );
        // One voter: no majority while it restarts, whatever one waits for.
        let alone = pre_restart_check(&image, 1, &[1]);
        assert!(
            alone.reasons.iter().all(|r| !r.contains("voters")),
            "{alone:?}"
        );
        assert!(
            alone.risks.iter().any(|r| r.contains("0 of 1 voters")),
            "{alone:?}"
        );
    }
}
