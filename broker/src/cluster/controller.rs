//! What the controller (the metadata quorum's leader) decides from the brokers it hears from:
//! which brokers to fence and unfence, and which partitions get a new leader. Pure: the image and
//! the set of brokers heard from recently in, conditional records out. Each record names the
//! epochs it was computed from, so a decision made on an image that has moved on is refused when
//! applied, not applied twice.
//!
//! Leaders are chosen from the ISR only (no unclean election): a partition whose in-sync replicas
//! are all fenced has no leader (-1) until one of them is heard from again, and then it leads in a
//! new leader epoch. A fenced broker leaves the ISR unless it is the last member (Kafka keeps the
//! last one, so the partition knows whose return brings its data back).

use std::collections::BTreeSet;

use super::{MetadataImage, MetadataRecord};

/// The changes the controller makes now, given the brokers `alive` (heard from within the session
/// timeout). Each is applied on its own: one refused as stale does not hold back the others.
pub fn decide(image: &MetadataImage, alive: &BTreeSet<i32>) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for broker in image.brokers.values() {
        let heard = alive.contains(&broker.id);
        if broker.fenced == heard {
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
    // The brokers that may lead once these changes apply.
    let usable: BTreeSet<i32> = image
        .brokers
        .keys()
        .copied()
        .filter(|id| alive.contains(id))
        .collect();
    for topic in image.topics.values() {
        for (index, partition) in (0..).zip(&topic.partitions) {
            let mut isr: Vec<i32> = partition
                .isr
                .iter()
                .copied()
                .filter(|id| usable.contains(id))
                .collect();
            if isr.is_empty() {
                // The last in-sync replica stays in the ISR while it is away.
                isr.clone_from(&partition.isr);
            }
            let leader = if usable.contains(&partition.leader) {
                partition.leader
            } else {
                // The preferred order (replicas) among the in-sync replicas that may lead.
                partition
                    .replicas
                    .iter()
                    .copied()
                    .find(|id| usable.contains(id) && partition.isr.contains(id))
                    .unwrap_or(-1)
            };
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
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerRegistration, PartitionImage};

    fn image(brokers: &[i32], partitions: &[&[i32]]) -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        for id in brokers {
            image
                .apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                    id: *id,
                    rack: None,
                    host: "h".to_owned(),
                    port: 1,
                    fenced: false,
                    incarnation: uuid::Uuid::from_u128(1),
                    epoch: 0,
                }))
                .unwrap();
            image.offset += 1;
        }
        image
            .apply(&MetadataRecord::CreateTopic {
                name: "t".to_owned(),
                id: uuid::Uuid::from_u128(9),
                configs: Default::default(),
                partitions: partitions
                    .iter()
                    .map(|r| PartitionImage::new(r.to_vec()))
                    .collect(),
            })
            .unwrap();
        image
    }

    fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for record in records {
            image.apply(record).unwrap();
        }
    }

    #[test]
    fn nothing_changes_while_every_broker_is_heard() {
        let image = image(&[1, 2, 3], &[&[1, 2, 3], &[2]]);
        assert!(decide(&image, &BTreeSet::from([1, 2, 3])).is_empty());
    }

    /// A single-replica partition goes offline with its broker and returns, in a new leader
    /// epoch, when its broker is heard from again.
    #[test]
    fn a_lost_broker_is_fenced_and_its_partitions_wait_for_it() {
        let mut image = image(&[1, 2], &[&[2], &[1]]);
        let records = decide(&image, &BTreeSet::from([1]));
        apply_all(&mut image, &records);
        assert!(image.brokers[&2].fenced);
        let lost = image.topic("t").unwrap().partition(0).unwrap().clone();
        assert_eq!((lost.leader, lost.leader_epoch, lost.isr), (-1, 1, vec![2]));
        assert_eq!(image.partition_summary(1).offline, 1);
        assert!(decide(&image, &BTreeSet::from([1])).is_empty(), "settled");

        let records = decide(&image, &BTreeSet::from([1, 2]));
        apply_all(&mut image, &records);
        assert!(!image.brokers[&2].fenced);
        let back = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (2, 2));
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
        let records = decide(&image, &BTreeSet::from([2, 3]));
        apply_all(&mut image, &records);
        let partition = image.topic("t").unwrap().partition(0).unwrap();
        assert_eq!(partition.leader, 3, "2 is not in sync: never elected");
        assert_eq!(partition.isr, [3]);
        assert_eq!(partition.leader_epoch, 1);
    }

    /// A decision applied twice (a retried write that had been committed) changes nothing the
    /// second time: a partition change is refused as stale, a fence is already in place.
    #[test]
    fn decisions_applied_twice_change_nothing() {
        let mut image = image(&[1, 2], &[&[2]]);
        let records = decide(&image, &BTreeSet::from([1]));
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
