//! Cluster reconcile, scale-in: brokers leave (`brokersPerZone` lowered, or a zone removed) only
//! after their replicas have been drained off them through the brokers' admin API, by broker id.
//! Until then their StatefulSets keep their size; a drain the brokers refuse (a partition could
//! not keep its replication factor on distinct zones) or a voter leaving stops the scale-in with
//! the reason, and nothing is removed. Pure decisions here, the calls in `reconcile`.

use std::collections::{BTreeMap, BTreeSet};

use fjord_admin_api::{BrokerState, Drain};

use super::validate::ValidatedCluster;

/// A StatefulSet of the Cluster as it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSet {
    pub name: String,
    pub first_node_id: i32,
    pub replicas: i32,
    /// The node ids its pods name as voters (`FJORD_VOTERS`).
    pub voters: BTreeSet<i32>,
}

/// A broker that exists and that the spec no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingBroker {
    pub node_id: i32,
    pub statefulset: String,
    /// Its pod, and its volume claim (`data-<pod>`).
    pub pod: String,
}

impl LeavingBroker {
    pub fn claim(&self) -> String {
        format!("data-{}", self.pod)
    }
}

/// The brokers that exist and that `validated` no longer has: the highest ordinals of a zone
/// whose broker count went down, every broker of a zone removed.
pub fn leaving(validated: &ValidatedCluster, existing: &[ExistingSet]) -> Vec<LeavingBroker> {
    let mut leaving = Vec::new();
    for set in existing {
        let kept = validated
            .zones
            .iter()
            .find(|z| z.statefulset == set.name)
            .map_or(0, |z| z.brokers);
        for ordinal in kept..set.replicas {
            let node_id = set.first_node_id + ordinal;
            leaving.push(LeavingBroker {
                node_id,
                statefulset: set.name.clone(),
                pod: format!("{}-{node_id}", set.name),
            });
        }
    }
    leaving
}

/// What a leaving broker's drain says, as the brokers' admin API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainAnswer {
    Drain(Drain),
    /// The brokers refuse the drain, with the reason (nothing was changed).
    Refused(String),
    /// No answer.
    Unknown,
}

/// The scale-in's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleIn {
    /// Every leaving broker is drained: shrink the StatefulSets, delete removed zones' ones.
    Shrink,
    /// Not yet: the StatefulSets keep their size. `refused` when it cannot go on by itself.
    Hold {
        reason: &'static str,
        message: String,
        refused: bool,
    },
}

/// Why the scale-in cannot start: a leaving broker is a voter of the metadata quorum. Fjord does
/// not change its voter set (see docs/operator.md): a zone or broker that holds a voter stays.
pub fn voter_refusal(leaving: &[LeavingBroker], existing: &[ExistingSet]) -> Option<String> {
    let voters: BTreeSet<i32> = existing.iter().flat_map(|s| s.voters.clone()).collect();
    let named: Vec<String> = leaving
        .iter()
        .filter(|b| voters.contains(&b.node_id))
        .map(|b| format!("{} (broker {})", b.pod, b.node_id))
        .collect();
    (!named.is_empty()).then(|| {
        format!(
            "{} would leave, but {} a voter of the metadata quorum, and the voter set does not change: keep the zone and at least as many brokers in it as its voters need",
            named.join(", "),
            if named.len() == 1 { "it is" } else { "each is" }
        )
    })
}

/// The next step, from each leaving broker's drain.
pub fn step(answers: &[(LeavingBroker, DrainAnswer)]) -> ScaleIn {
    let mut draining = Vec::new();
    for (broker, answer) in answers {
        match answer {
            DrainAnswer::Refused(reason) => {
                return ScaleIn::Hold {
                    reason: "ScaleInRefused",
                    message: format!("broker {} cannot be drained: {reason}", broker.node_id),
                    refused: true,
                };
            }
            DrainAnswer::Unknown => {
                return ScaleIn::Hold {
                    reason: "BrokerHealthUnknown",
                    message: format!(
                        "scale-in waits: the drain of broker {} did not answer",
                        broker.node_id
                    ),
                    refused: false,
                };
            }
            DrainAnswer::Drain(drain) if drain.state == BrokerState::Drained => {}
            DrainAnswer::Drain(drain) => draining.push(format!(
                "broker {}: {} partitions left, {} moving",
                drain.broker, drain.replicas_left, drain.moving
            )),
        }
    }
    if draining.is_empty() {
        ScaleIn::Shrink
    } else {
        ScaleIn::Hold {
            reason: "DrainingBrokers",
            message: format!("scale-in drains {}", draining.join("; ")),
            refused: false,
        }
    }
}

/// The broker counts to build the StatefulSets with while leaving brokers are not drained yet:
/// the larger of the spec's and the existing one, per StatefulSet of a zone still in the spec.
pub fn held_sizes(validated: &ValidatedCluster, existing: &[ExistingSet]) -> BTreeMap<String, i32> {
    validated
        .zones
        .iter()
        .map(|zone| {
            let now = existing
                .iter()
                .find(|s| s.name == zone.statefulset)
                .map_or(0, |s| s.replicas);
            (zone.statefulset.clone(), zone.brokers.max(now))
        })
        .collect()
}

/// The brokers whose drain to end: reported draining or drained, yet the spec keeps them (a
/// scale-in reverted before it shrank anything, or node ids taken again by a scale-out). On
/// Kubernetes drains are the operator's: a broker the spec keeps is not left draining.
pub fn drains_to_end(
    validated: &ValidatedCluster,
    leaving: &[LeavingBroker],
    reported: &[(i32, String)],
) -> Vec<i32> {
    reported
        .iter()
        .filter(|(_, state)| state == "draining" || state == "drained")
        .map(|(id, _)| *id)
        .filter(|id| !leaving.iter().any(|b| b.node_id == *id))
        .filter(|id| {
            validated
                .zones
                .iter()
                .any(|z| (z.first_node_id..z.first_node_id + z.brokers).contains(id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::validate::ValidatedZone;

    fn set(name: &str, first: i32, replicas: i32, voters: &[i32]) -> ExistingSet {
        ExistingSet {
            name: name.to_owned(),
            first_node_id: first,
            replicas,
            voters: voters.iter().copied().collect(),
        }
    }

    fn zone(name: &str, first: i32, brokers: i32) -> ValidatedZone {
        ValidatedZone {
            zone: Some(name.trim_start_matches("events-").to_owned()),
            statefulset: name.to_owned(),
            first_node_id: first,
            brokers,
        }
    }

    fn validated(zones: Vec<ValidatedZone>) -> ValidatedCluster {
        let spec = crate::cluster::validate::tests::cluster(&["a", "b", "c"], Some(1));
        let mut cluster = crate::cluster::validate::validate_cluster(&spec, "img").unwrap();
        cluster.zones = zones;
        cluster
    }

    #[test]
    fn the_highest_ordinals_and_removed_zones_leave() {
        let existing = [
            set("events-a", 0, 2, &[0]),
            set("events-b", 100, 2, &[100]),
            set("events-c", 200, 1, &[200]),
        ];
        let spec = validated(vec![zone("events-a", 0, 1), zone("events-b", 100, 2)]);
        let ids: Vec<i32> = leaving(&spec, &existing)
            .iter()
            .map(|b| b.node_id)
            .collect();
        assert_eq!(ids, [1, 200]);
        assert_eq!(leaving(&spec, &existing)[0].claim(), "data-events-a-1");
        assert_eq!(
            held_sizes(&spec, &existing),
            BTreeMap::from([("events-a".to_owned(), 2), ("events-b".to_owned(), 2)])
        );
        let refusal = voter_refusal(&leaving(&spec, &existing), &existing).unwrap();
        assert!(refusal.contains("events-c-200 (broker 200)"), "{refusal}");
        let without_c = validated(vec![
            zone("events-a", 0, 1),
            zone("events-b", 100, 2),
            zone("events-c", 200, 1),
        ]);
        assert_eq!(
            voter_refusal(&leaving(&without_c, &existing), &existing),
            None
        );
    }

    #[test]
    fn the_stateful_sets_shrink_only_once_every_leaving_broker_is_drained() {
        let broker = |id: i32| LeavingBroker {
            node_id: id,
            statefulset: "events-a".into(),
            pod: format!("events-a-{id}"),
        };
        let drain = |id, state, left| {
            DrainAnswer::Drain(Drain {
                broker: id,
                state,
                replicas_left: left,
                moving: left.min(8),
            })
        };
        assert_eq!(
            step(&[
                (broker(1), drain(1, BrokerState::Drained, 0)),
                (broker(2), drain(2, BrokerState::Drained, 0))
            ]),
            ScaleIn::Shrink
        );
        match step(&[
            (broker(1), drain(1, BrokerState::Drained, 0)),
            (broker(2), drain(2, BrokerState::Draining, 5)),
        ]) {
            ScaleIn::Hold {
                reason, message, ..
            } => {
                assert_eq!(reason, "DrainingBrokers");
                assert!(message.contains("broker 2: 5 partitions left"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            step(&[(broker(1), DrainAnswer::Refused("orders-0 ...".into()))]),
            ScaleIn::Hold {
                reason: "ScaleInRefused",
                refused: true,
                ..
            }
        ));
        assert!(matches!(
            step(&[(broker(1), DrainAnswer::Unknown)]),
            ScaleIn::Hold { refused: false, .. }
        ));
    }

    #[test]
    fn drains_of_brokers_the_spec_keeps_are_ended() {
        let spec = validated(vec![zone("events-a", 0, 2), zone("events-b", 100, 1)]);
        let leaving = [LeavingBroker {
            node_id: 101,
            statefulset: "events-b".into(),
            pod: "events-b-101".into(),
        }];
        let reported: Vec<(i32, String)> = [
            (0, "active"),
            (1, "draining"),
            (100, "drained"),
            (101, "draining"),
            (300, "drained"),
        ]
        .iter()
        .map(|(id, state)| (*id, (*state).to_owned()))
        .collect();
        assert_eq!(drains_to_end(&spec, &leaving, &reported), [1, 100]);
    }
}
