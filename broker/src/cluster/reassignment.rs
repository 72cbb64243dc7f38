//! Partition reassignment as Kafka's KIP-455 defines it, as pure functions of a partition's
//! image: a reassignment toward a target replica list first adds the target's new replicas to
//! the partition (they follow the leader and catch up), and once every target replica is in
//! sync it drops the others, moving leadership to a target replica if the leader is one of
//! those. While it runs, `replicas` is the target followed by the replicas being removed,
//! `adding` the target's replicas the partition did not have, and `removing` those it had that
//! the target lacks; the original replicas are `replicas` without `adding`.
//!
//! The state lives in the metadata image, so a reassignment outlives the controller that
//! started it: whichever broker controls next completes it ([`super::controller::decide`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{BrokerRegistration, MetadataRecord, PartitionImage, TopicImage};

/// Why a reassignment request leaves a partition as it is (Kafka's error codes in brackets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassignError {
    /// INVALID_REPLICA_ASSIGNMENT.
    #[error("{0}")]
    InvalidAssignment(String),
    /// INVALID_REPLICATION_FACTOR: the request did not allow the partition's replication factor
    /// to change (AlterPartitionReassignments v1, KIP-860).
    #[error("the replication factor would change from {from} to {to}")]
    ReplicationFactorChange { from: usize, to: usize },
    /// NO_REASSIGNMENT_IN_PROGRESS: a cancellation of a partition that is not moving.
    #[error("no reassignment of this partition is in progress")]
    NoneInProgress,
}

/// The replicas the partition had before the reassignment that is moving it (all of them if
/// none is).
pub fn original(partition: &PartitionImage) -> Vec<i32> {
    without(&partition.replicas, &partition.adding)
}

/// The replicas the partition will have once its reassignment completes (all of them if none
/// is running).
pub fn target(partition: &PartitionImage) -> Vec<i32> {
    without(&partition.replicas, &partition.removing)
}

/// The partition a request to move `current` to `target` makes (`None`: nothing changes), given
/// the registered `brokers`, those `draining` (which take no new replicas) and those `usable` to
/// lead. A reassignment already running is
/// replaced: the new one starts from the original replicas. If every target replica is in sync
/// already (the target only drops replicas, or reorders them) it completes at once.
pub fn start(
    current: &PartitionImage,
    target: &[i32],
    brokers: &BTreeMap<i32, BrokerRegistration>,
    draining: &BTreeSet<i32>,
    usable: &BTreeSet<i32>,
) -> Result<Option<PartitionImage>, ReassignError> {
    if target.is_empty() {
        return Err(ReassignError::InvalidAssignment(
            "the target replica list is empty".to_owned(),
        ));
    }
    let mut seen = BTreeSet::new();
    if let Some(twice) = target.iter().find(|id| !seen.insert(**id)) {
        return Err(ReassignError::InvalidAssignment(format!(
            "broker {twice} is named twice in the target replicas"
        )));
    }
    if let Some(unknown) = target.iter().find(|id| !brokers.contains_key(id)) {
        return Err(ReassignError::InvalidAssignment(format!(
            "broker {unknown} is not registered"
        )));
    }
    let original = original(current);
    let adding = without(target, &original);
    if let Some(draining) = adding.iter().find(|id| draining.contains(id)) {
        return Err(ReassignError::InvalidAssignment(format!(
            "broker {draining} is being drained: it takes no new replicas"
        )));
    }
    let removing = without(&original, target);
    let mut next = current.clone();
    next.adding = adding;
    next.removing.clone_from(&removing);
    next.replicas = target.iter().copied().chain(removing).collect();
    // A replica a replaced reassignment was adding, and this one does not want, goes.
    keep_to_replicas(
        &mut next,
        usable,
        "no replica of the target and the current replicas is in sync",
    )?;
    let next = complete(&next, usable).unwrap_or(next);
    Ok((next != *current).then_some(next))
}

/// The partition a cancellation of its reassignment makes: back on its original replicas, the
/// ones being added dropped.
pub fn cancel(
    current: &PartitionImage,
    usable: &BTreeSet<i32>,
) -> Result<PartitionImage, ReassignError> {
    if !current.is_reassigning() {
        return Err(ReassignError::NoneInProgress);
    }
    let mut next = current.clone();
    next.replicas = original(current);
    next.adding.clear();
    next.removing.clear();
    keep_to_replicas(
        &mut next,
        usable,
        "cancelling would leave the partition without an in-sync replica",
    )?;
    Ok(next)
}

/// Drops from `next`'s ISR the brokers its replicas no longer name (`empty`: why none is left),
/// and gives a leader no longer among them the first usable in-sync replica's place.
fn keep_to_replicas(
    next: &mut PartitionImage,
    usable: &BTreeSet<i32>,
    empty: &str,
) -> Result<(), ReassignError> {
    let replicas = next.replicas.clone();
    next.isr.retain(|id| replicas.contains(id));
    if next.isr.is_empty() {
        return Err(ReassignError::InvalidAssignment(empty.to_owned()));
    }
    if next.leader >= 0 && !replicas.contains(&next.leader) {
        next.leader = first_usable(&next.isr, usable);
    }
    Ok(())
}

/// The partition once its reassignment completes, if it can now: every target replica is in
/// sync and usable (registered, unfenced, not stopping). The replicas being removed leave the replicas and the ISR; a leader among them hands
/// over to the first in-sync target replica usable to lead.
pub fn complete(current: &PartitionImage, usable: &BTreeSet<i32>) -> Option<PartitionImage> {
    if !current.is_reassigning() {
        return None;
    }
    let target = target(current);
    // In sync and usable: a fenced target replica would leave the partition without them.
    if !target
        .iter()
        .all(|id| current.isr.contains(id) && usable.contains(id))
    {
        return None;
    }
    let mut next = current.clone();
    next.isr.retain(|id| target.contains(id));
    if !target.contains(&next.leader) {
        next.leader = first_usable(&target, usable);
    }
    next.replicas = target;
    next.adding.clear();
    next.removing.clear();
    Some(next)
}

/// The record that takes partition `index` of `topic` from `from` to `to`.
pub fn record(
    topic: &TopicImage,
    index: i32,
    from: &PartitionImage,
    to: PartitionImage,
) -> MetadataRecord {
    MetadataRecord::ReassignPartition {
        topic: topic.name.clone(),
        topic_id: topic.id,
        partition: index,
        partition_epoch: from.partition_epoch,
        replicas: to.replicas,
        adding: to.adding,
        removing: to.removing,
        leader: to.leader,
        isr: to.isr,
    }
}

fn first_usable(candidates: &[i32], usable: &BTreeSet<i32>) -> i32 {
    candidates
        .iter()
        .copied()
        .find(|id| usable.contains(id))
        .unwrap_or(-1)
}

/// `list` without the members of `gone`, in its order.
fn without(list: &[i32], gone: &[i32]) -> Vec<i32> {
    list.iter()
        .copied()
        .filter(|id| !gone.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> BTreeMap<i32, BrokerRegistration> {
        ids.iter()
            .map(|id| (*id, BrokerRegistration::for_tests(*id, None)))
            .collect()
    }

    fn partition(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionImage {
        PartitionImage {
            leader,
            isr: isr.to_vec(),
            ..PartitionImage::new(replicas.to_vec())
        }
    }

    /// Kafka's example: [1, 2, 3] to [4, 5, 6] runs as replicas [4, 5, 6, 1, 2, 3], adding
    /// [4, 5, 6], removing [1, 2, 3]; the leader stays until the new replicas are in sync, then
    /// the first of them leads.
    #[test]
    fn a_move_adds_first_and_removes_once_the_target_is_in_sync() {
        let all = BTreeSet::from([1, 2, 3, 4, 5, 6]);
        let current = partition(&[1, 2, 3], 2, &[1, 2, 3]);
        let moving = start(
            &current,
            &[4, 5, 6],
            &brokers(&[1, 2, 3, 4, 5, 6]),
            &BTreeSet::new(),
            &all,
        )
        .unwrap()
        .unwrap();
        assert_eq!(moving.replicas, [4, 5, 6, 1, 2, 3]);
        assert_eq!(
            (moving.adding.as_slice(), moving.removing.as_slice()),
            (&[4, 5, 6][..], &[1, 2, 3][..])
        );
        assert_eq!((moving.leader, moving.isr.as_slice()), (2, &[1, 2, 3][..]));
        assert_eq!(
            (original(&moving), target(&moving)),
            (vec![1, 2, 3], vec![4, 5, 6])
        );

        let mut catching_up = moving.clone();
        catching_up.isr = vec![1, 2, 3, 4, 5];
        assert_eq!(complete(&catching_up, &all), None, "6 is not in sync yet");
        catching_up.isr.push(6);
        let done = complete(&catching_up, &all).unwrap();
        assert_eq!(
            (done.replicas.as_slice(), done.isr.as_slice()),
            (&[4, 5, 6][..], &[4, 5, 6][..])
        );
        assert!(!done.is_reassigning());
        assert_eq!(done.leader, 4);
        // A leader that stays keeps its place.
        let mut staying = catching_up.clone();
        staying.replicas = vec![2, 5, 6, 1, 3];
        staying.adding = vec![5, 6];
        staying.removing = vec![1, 3];
        assert_eq!(complete(&staying, &all).unwrap().leader, 2);
        // A target replica fenced (not usable) holds the completion back, though in the ISR.
        assert_eq!(
            complete(&catching_up, &BTreeSet::from([1, 2, 3, 5, 6])),
            None
        );
    }

    /// A target that only drops replicas, or reorders them, needs nothing to catch up: it
    /// completes at once. The same target again changes nothing.
    #[test]
    fn shrinking_and_reordering_complete_at_once() {
        let all = BTreeSet::from([1, 2, 3]);
        let registered = brokers(&[1, 2, 3]);
        let current = partition(&[1, 2, 3], 1, &[1, 2, 3]);
        let shrunk = start(&current, &[2], &registered, &BTreeSet::new(), &all)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                shrunk.replicas.as_slice(),
                shrunk.isr.as_slice(),
                shrunk.leader
            ),
            (&[2][..], &[2][..], 2)
        );
        assert!(!shrunk.is_reassigning());
        let reordered = start(&current, &[3, 1, 2], &registered, &BTreeSet::new(), &all)
            .unwrap()
            .unwrap();
        assert_eq!(
            (reordered.replicas.as_slice(), reordered.leader),
            (&[3, 1, 2][..], 1)
        );
        assert_eq!(
            start(&current, &[1, 2, 3], &registered, &BTreeSet::new(), &all),
            Ok(None)
        );
        // Growing waits for the new replica.
        let grown = start(
            &partition(&[1], 1, &[1]),
            &[1, 2, 3],
            &registered,
            &BTreeSet::new(),
            &all,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (grown.adding.as_slice(), grown.removing.as_slice()),
            (&[2, 3][..], &[][..])
        );
    }

    /// A new target replaces a running reassignment from the original replicas: a replica the
    /// first one was adding, and the second does not want, leaves the ISR it may have joined.
    #[test]
    fn a_new_target_replaces_the_running_one() {
        let all = BTreeSet::from([1, 2, 3, 4, 5]);
        let registered = brokers(&[1, 2, 3, 4, 5]);
        let mut moving = start(
            &partition(&[1, 2, 3], 1, &[1, 2, 3]),
            &[1, 2, 4],
            &registered,
            &BTreeSet::new(),
            &all,
        )
        .unwrap()
        .unwrap();
        moving.isr = vec![1, 2, 3];
        let replaced = start(&moving, &[1, 2, 5], &registered, &BTreeSet::new(), &all)
            .unwrap()
            .unwrap();
        assert_eq!(replaced.replicas, [1, 2, 5, 3]);
        assert_eq!(
            (replaced.adding.as_slice(), replaced.removing.as_slice()),
            (&[5][..], &[3][..])
        );
        let back = start(&moving, &[1, 2, 3], &registered, &BTreeSet::new(), &all)
            .unwrap()
            .unwrap();
        assert_eq!(
            (back.replicas.as_slice(), back.is_reassigning()),
            (&[1, 2, 3][..], false)
        );
    }

    /// Cancelling returns to the original replicas; there must be a reassignment to cancel.
    #[test]
    fn a_cancellation_returns_to_the_original_replicas() {
        let all = BTreeSet::from([1, 2, 3, 4]);
        let current = partition(&[1, 2, 3], 3, &[1, 2, 3]);
        assert_eq!(cancel(&current, &all), Err(ReassignError::NoneInProgress));
        let mut moving = start(
            &current,
            &[1, 2, 4],
            &brokers(&[1, 2, 3, 4]),
            &BTreeSet::new(),
            &all,
        )
        .unwrap()
        .unwrap();
        moving.isr = vec![1, 2, 3, 4];
        let cancelled = cancel(&moving, &all).unwrap();
        assert_eq!(
            (
                cancelled.replicas.as_slice(),
                cancelled.isr.as_slice(),
                cancelled.leader
            ),
            (&[1, 2, 3][..], &[1, 2, 3][..], 3)
        );
        assert!(!cancelled.is_reassigning());
    }

    /// A broker being drained takes no new replica; one it holds may stay.
    #[test]
    fn a_draining_broker_takes_no_new_replica() {
        let all = BTreeSet::from([1, 2, 3]);
        let current = partition(&[1, 2], 1, &[1, 2]);
        let refused = start(
            &current,
            &[1, 3],
            &brokers(&[1, 2, 3]),
            &BTreeSet::from([3]),
            &all,
        );
        assert!(
            matches!(&refused, Err(ReassignError::InvalidAssignment(m)) if m.contains("broker 3 is being drained")),
            "{refused:?}"
        );
        assert!(
            start(
                &current,
                &[2, 1],
                &brokers(&[1, 2, 3]),
                &BTreeSet::from([1]),
                &all
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_targets_are_refused_with_the_reason() {
        let all = BTreeSet::from([1, 2]);
        let registered = brokers(&[1, 2]);
        let current = partition(&[1, 2], 1, &[1, 2]);
        for (target, reason) in [
            (&[][..], "empty"),
            (&[1, 1][..], "named twice"),
            (&[1, 9][..], "broker 9 is not registered"),
        ] {
            match start(&current, target, &registered, &BTreeSet::new(), &all) {
                Err(ReassignError::InvalidAssignment(message)) => {
                    assert!(message.contains(reason), "{message}");
                }
                other => panic!("{target:?}: {other:?}"),
            }
        }
    }
}
