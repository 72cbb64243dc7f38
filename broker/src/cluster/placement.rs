//! Where a partition's replicas go. Manual assignments (the `assignments` of CreateTopics and
//! CreatePartitions) are checked as Kafka's controller checks them, with its messages: every
//! replica a registered broker, none twice, every partition with the same number of replicas,
//! partitions numbered from 0 without gaps. The checked lists are what the topic's partitions are
//! placed on.
//!
//! Without an assignment, [`place_partitions`] decides: a partition's replicas on distinct racks
//! while there are at least as many racks as replicas, otherwise on distinct brokers; leaders
//! (the first replica, the preferred leader) spread evenly over racks and brokers, counting the
//! partitions already placed. It is deterministic: the same brokers and image give the same
//! placement.

use std::collections::{BTreeMap, BTreeSet};

/// Why a manual assignment was refused; the text is Kafka's. [`Self::is_invalid_request`] tells
/// INVALID_REQUEST from INVALID_REPLICA_ASSIGNMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error(
        "A manual partition assignment was specified, but replication factor was not set to -1."
    )]
    ReplicationFactorSet,
    #[error("A manual partition assignment was specified, but numPartitions was not set to -1.")]
    PartitionCountSet,
    #[error("Found multiple manual partition assignments for partition {0}")]
    DuplicatePartition(i32),
    #[error("partitions should be a consecutive 0-based integer sequence")]
    NotConsecutive,
    #[error("The manual partition assignment includes an empty replica list.")]
    EmptyReplicas,
    #[error(
        "The manual partition assignment includes broker {0}, but no such broker is registered."
    )]
    UnknownBroker(i32),
    #[error("The manual partition assignment includes the broker {0} more than once.")]
    RepeatedBroker(i32),
    #[error(
        "The manual partition assignment includes a partition with {found} replica(s), but this is not consistent with previous partitions, which have {expected} replica(s)."
    )]
    InconsistentReplicas { found: usize, expected: usize },
    #[error(
        "Attempted to add {additional} additional partition(s), but only {given} assignment(s) were specified."
    )]
    WrongCount { additional: i32, given: usize },
}

impl AssignmentError {
    /// The request itself is inconsistent (Kafka's INVALID_REQUEST), rather than the assignment.
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, Self::ReplicationFactorSet | Self::PartitionCountSet)
    }
}

/// Checks the assignment of a new topic: `(partition index, broker ids)` pairs as the request
/// lists them, with the request's partition count and replication factor (both must be -1).
/// Returns the replicas of partitions 0, 1, ... in the order the client gave them (the first is
/// the preferred leader).
pub fn manual_topic_assignment(
    assignments: &[(i32, Vec<i32>)],
    num_partitions: i32,
    replication_factor: i16,
    registered: &BTreeSet<i32>,
) -> Result<Vec<Vec<i32>>, AssignmentError> {
    if replication_factor != -1 {
        return Err(AssignmentError::ReplicationFactorSet);
    }
    if num_partitions != -1 {
        return Err(AssignmentError::PartitionCountSet);
    }
    let mut by_partition: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let mut expected = None;
    for (partition, replicas) in assignments {
        if by_partition.contains_key(partition) {
            return Err(AssignmentError::DuplicatePartition(*partition));
        }
        check_replicas(replicas, registered, expected)?;
        expected = Some(replicas.len());
        by_partition.insert(*partition, replicas.clone());
    }
    let consecutive = by_partition
        .keys()
        .enumerate()
        .all(|(i, &partition)| i64::try_from(i).is_ok_and(|i| i == i64::from(partition)));
    if !consecutive {
        return Err(AssignmentError::NotConsecutive);
    }
    Ok(by_partition.into_values().collect())
}

/// Checks the assignment of the partitions CreatePartitions adds to a topic that has `current`
/// partitions of `replication_factor` replicas each, growing to `count`: one list per new
/// partition, in order.
pub fn manual_partitions_assignment(
    assignments: &[Vec<i32>],
    current: i32,
    count: i32,
    replication_factor: usize,
    registered: &BTreeSet<i32>,
) -> Result<Vec<Vec<i32>>, AssignmentError> {
    let additional = count.saturating_sub(current);
    if usize::try_from(additional).ok() != Some(assignments.len()) {
        return Err(AssignmentError::WrongCount {
            additional,
            given: assignments.len(),
        });
    }
    for replicas in assignments {
        check_replicas(replicas, registered, Some(replication_factor))?;
    }
    Ok(assignments.to_vec())
}

/// Kafka's `validateManualPartitionAssignment`: brokers are checked in ascending id order, so of
/// two faults the one with the lower broker id is reported.
fn check_replicas(
    replicas: &[i32],
    registered: &BTreeSet<i32>,
    expected: Option<usize>,
) -> Result<(), AssignmentError> {
    if replicas.is_empty() {
        return Err(AssignmentError::EmptyReplicas);
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for (i, &broker) in sorted.iter().enumerate() {
        if !registered.contains(&broker) {
            return Err(AssignmentError::UnknownBroker(broker));
        }
        if i > 0 && sorted[i - 1] == broker {
            return Err(AssignmentError::RepeatedBroker(broker));
        }
    }
    match expected {
        Some(expected) if expected != replicas.len() => {
            Err(AssignmentError::InconsistentReplicas {
                found: replicas.len(),
                expected,
            })
        }
        _ => Ok(()),
    }
}

/// Why partitions could not be placed automatically; the text is Kafka's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered."
    )]
    NotEnoughBrokers {
        replication_factor: usize,
        brokers: usize,
    },
}

/// A broker placement may use: its id and rack (a broker without a rack is a rack of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// How many replicas and leaders each broker already holds: of the topic being placed (evened
/// out first, so every topic spreads its leaders over all brokers) and of the whole cluster
/// (evened out among equals).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    pub replicas: BTreeMap<i32, usize>,
    pub leaders: BTreeMap<i32, usize>,
    pub cluster_replicas: BTreeMap<i32, usize>,
    pub cluster_leaders: BTreeMap<i32, usize>,
}

impl Load {
    /// The load in `image`, for new partitions of topic `topic` (which may not exist yet).
    pub fn of(image: &super::MetadataImage, topic: &str) -> Self {
        let mut load = Self::default();
        for (name, partitions) in image.topics.iter().map(|(n, t)| (n, &t.partitions)) {
            for partition in partitions {
                for replica in &partition.replicas {
                    *load.cluster_replicas.entry(*replica).or_default() += 1;
                    if name == topic {
                        *load.replicas.entry(*replica).or_default() += 1;
                    }
                }
                if let Some(first) = partition.replicas.first() {
                    *load.cluster_leaders.entry(*first).or_default() += 1;
                    if name == topic {
                        *load.leaders.entry(*first).or_default() += 1;
                    }
                }
            }
        }
        load
    }

    fn count(map: &BTreeMap<i32, usize>, id: i32) -> usize {
        map.get(&id).copied().unwrap_or_default()
    }

    fn add(&mut self, id: i32, leader: bool) {
        *self.replicas.entry(id).or_default() += 1;
        *self.cluster_replicas.entry(id).or_default() += 1;
        if leader {
            *self.leaders.entry(id).or_default() += 1;
            *self.cluster_leaders.entry(id).or_default() += 1;
        }
    }
}

/// Places `count` new partitions of `replication_factor` replicas on `brokers`, given the
/// `load` already placed (which it updates). Returns one replica list per partition, the
/// preferred leader first.
pub fn place_partitions(
    brokers: &[Candidate],
    count: usize,
    replication_factor: usize,
    load: &mut Load,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor == 0 || replication_factor > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let rack_of = |broker: &Candidate| -> String {
        broker
            .rack
            .clone()
            .unwrap_or_else(|| format!("\u{0}broker-{}", broker.id))
    };
    let racks: BTreeSet<String> = brokers.iter().map(rack_of).collect();
    let mut placed = Vec::with_capacity(count);
    for _ in 0..count {
        let mut replicas: Vec<i32> = Vec::with_capacity(replication_factor);
        let mut used_racks: BTreeSet<String> = BTreeSet::new();
        for position in 0..replication_factor {
            // Distinct racks while any rack is unused by this partition.
            let fresh_rack = used_racks.len() < racks.len();
            let chosen = brokers
                .iter()
                .filter(|b| !replicas.contains(&b.id))
                .filter(|b| !fresh_rack || !used_racks.contains(&rack_of(b)))
                .min_by_key(|b| {
                    let leaders = Load::count(&load.leaders, b.id);
                    let replicas = Load::count(&load.replicas, b.id);
                    let cluster_leaders = Load::count(&load.cluster_leaders, b.id);
                    let cluster_replicas = Load::count(&load.cluster_replicas, b.id);
                    let rack_leaders: usize = brokers
                        .iter()
                        .filter(|other| rack_of(other) == rack_of(b))
                        .map(|other| Load::count(&load.leaders, other.id))
                        .sum();
                    if position == 0 {
                        (
                            rack_leaders,
                            leaders,
                            cluster_leaders,
                            replicas,
                            cluster_replicas,
                            b.id,
                        )
                    } else {
                        (
                            0,
                            replicas,
                            cluster_replicas,
                            leaders,
                            cluster_leaders,
                            b.id,
                        )
                    }
                });
            let Some(chosen) = chosen else { break };
            replicas.push(chosen.id);
            used_racks.insert(rack_of(chosen));
            load.add(chosen.id, position == 0);
        }
        placed.push(replicas);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_topic_assignment_is_placed_as_given() {
        let registered = brokers(&[1, 2, 3]);
        let given = [(1, vec![3, 1]), (0, vec![2, 3]), (2, vec![1, 2])];
        assert_eq!(
            manual_topic_assignment(&given, -1, -1, &registered),
            Ok(vec![vec![2, 3], vec![3, 1], vec![1, 2]])
        );
    }

    #[test]
    fn bad_topic_assignments_get_kafkas_answers() {
        let registered = brokers(&[1, 2]);
        type Case<'a> = (&'a [(i32, Vec<i32>)], i32, i16, AssignmentError);
        let cases: [Case<'_>; 8] = [
            (
                &[(0, vec![1])],
                -1,
                1,
                AssignmentError::ReplicationFactorSet,
            ),
            (&[(0, vec![1])], 1, -1, AssignmentError::PartitionCountSet),
            (
                &[(0, vec![1, 2]), (0, vec![2, 1])],
                -1,
                -1,
                AssignmentError::DuplicatePartition(0),
            ),
            (&[(0, vec![])], -1, -1, AssignmentError::EmptyReplicas),
            (
                &[(0, vec![9, 1, 7])],
                -1,
                -1,
                AssignmentError::UnknownBroker(7),
            ),
            (
                &[(0, vec![2, 1, 2])],
                -1,
                -1,
                AssignmentError::RepeatedBroker(2),
            ),
            (
                &[(0, vec![1, 2]), (1, vec![1])],
                -1,
                -1,
                AssignmentError::InconsistentReplicas {
                    found: 1,
                    expected: 2,
                },
            ),
            (
                &[(0, vec![1]), (2, vec![2])],
                -1,
                -1,
                AssignmentError::NotConsecutive,
            ),
        ];
        for (given, partitions, factor, expected) in cases {
            assert_eq!(
                manual_topic_assignment(given, partitions, factor, &registered),
                Err(expected.clone()),
                "{given:?}"
            );
        }
        assert_eq!(
            AssignmentError::UnknownBroker(7).to_string(),
            "The manual partition assignment includes broker 7, but no such broker is registered."
        );
        assert!(AssignmentError::PartitionCountSet.is_invalid_request());
        assert!(!AssignmentError::NotConsecutive.is_invalid_request());
    }

    #[test]
    fn added_partitions_match_the_count_and_the_replication_factor() {
        let registered = brokers(&[1, 2, 3]);
        let given = [vec![1, 2], vec![3, 1]];
        assert_eq!(
            manual_partitions_assignment(&given, 2, 4, 2, &registered),
            Ok(given.to_vec())
        );
        assert_eq!(
            manual_partitions_assignment(&given, 2, 5, 2, &registered),
            Err(AssignmentError::WrongCount {
                additional: 3,
                given: 2
            })
        );
        assert_eq!(
            manual_partitions_assignment(&[vec![1]], 2, 3, 2, &registered),
            Err(AssignmentError::InconsistentReplicas {
                found: 1,
                expected: 2
            })
        );
        assert_eq!(
            manual_partitions_assignment(&[vec![4, 1]], 2, 3, 2, &registered),
            Err(AssignmentError::UnknownBroker(4))
        );
    }

    fn candidates(racks: &[&str]) -> Vec<Candidate> {
        (0..)
            .zip(racks)
            .map(|(id, rack)| Candidate {
                id,
                rack: Some((*rack).to_owned()),
            })
            .collect()
    }

    #[test]
    fn six_partitions_on_three_racks_lead_twice_each() {
        let brokers = candidates(&["a", "b", "c"]);
        let placed = place_partitions(&brokers, 6, 3, &mut Load::default()).unwrap();
        let leaders: Vec<i32> = placed.iter().map(|r| r[0]).collect();
        for broker in 0..3 {
            assert_eq!(leaders.iter().filter(|l| **l == broker).count(), 2);
        }
        for replicas in &placed {
            let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "{replicas:?}");
        }
        assert_eq!(
            place_partitions(&brokers, 1, 4, &mut Load::default()),
            Err(PlacementError::NotEnoughBrokers {
                replication_factor: 4,
                brokers: 3
            })
        );
    }

    #[test]
    fn each_topic_spreads_its_leaders_and_the_cluster_load_breaks_ties() {
        let brokers = candidates(&["a", "b", "c"]);
        let mut load = Load::default();
        load.cluster_leaders.insert(0, 3);
        load.cluster_replicas.insert(0, 3);
        // A new topic of three: one leader each, whatever the cluster holds.
        let placed = place_partitions(&brokers, 3, 1, &mut load.clone()).unwrap();
        let leaders: BTreeSet<i32> = placed.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 3, "{placed:?}");
        // Of two partitions, the loaded broker gets none.
        let placed = place_partitions(&brokers, 2, 1, &mut load).unwrap();
        assert!(placed.iter().all(|r| r[0] != 0), "{placed:?}");
    }

    proptest::proptest! {
        /// For any brokers, racks and replication factor: replicas on distinct brokers, on
        /// distinct racks while there are enough racks, and leader counts within one of each
        /// other on a new cluster.
        #[test]
        fn placement_keeps_the_rack_rule_and_balances_leaders(
            racks in proptest::collection::vec(0u8..4, 1..9),
            replication_factor in 1usize..4,
            count in 1usize..40,
        ) {
            let brokers: Vec<Candidate> = (0..)
                .zip(&racks)
                .map(|(id, rack)| Candidate { id, rack: Some(format!("zone-{rack}")) })
                .collect();
            let distinct_racks: BTreeSet<u8> = racks.iter().copied().collect();
            let result = place_partitions(&brokers, count, replication_factor, &mut Load::default());
            if replication_factor > brokers.len() {
                proptest::prop_assert!(result.is_err());
                return Ok(());
            }
            let placed = result.unwrap();
            proptest::prop_assert_eq!(placed.len(), count);
            let mut leaders: BTreeMap<i32, usize> = brokers.iter().map(|b| (b.id, 0)).collect();
            for replicas in &placed {
                proptest::prop_assert_eq!(replicas.len(), replication_factor);
                let ids: BTreeSet<i32> = replicas.iter().copied().collect();
                proptest::prop_assert_eq!(ids.len(), replication_factor);
                let used: BTreeSet<u8> = replicas.iter().map(|id| racks[*id as usize]).collect();
                proptest::prop_assert_eq!(used.len(), replication_factor.min(distinct_racks.len()));
                *leaders.entry(replicas[0]).or_default() += 1;
            }
            // Leaders spread over racks first: within one of each other per rack, and within
            // one per broker when every rack holds the same number of brokers.
            let mut per_rack: BTreeMap<u8, usize> = BTreeMap::new();
            for (id, count) in &leaders {
                *per_rack.entry(racks[*id as usize]).or_default() += count;
            }
            let (min, max) = (per_rack.values().min().unwrap(), per_rack.values().max().unwrap());
            proptest::prop_assert!(max - min <= 1, "per rack {:?}", per_rack);
            let sizes: BTreeSet<usize> = distinct_racks
                .iter()
                .map(|r| racks.iter().filter(|x| *x == r).count())
                .collect();
            if sizes.len() == 1 {
                let (min, max) = (leaders.values().min().unwrap(), leaders.values().max().unwrap());
                proptest::prop_assert!(max - min <= 1, "per broker {:?}", leaders);
            }
        }
    }
}
