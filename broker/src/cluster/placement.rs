//! Where a partition's replicas go. Manual assignments (the `assignments` of CreateTopics and
//! CreatePartitions) are checked as Kafka's controller checks them, with its messages: every
//! replica a registered broker, none twice, every partition with the same number of replicas,
//! partitions numbered from 0 without gaps. The checked lists are what the topic's partitions are
//! placed on.

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
}
