//! Cluster reconcile, the disruptive step: replacing broker pods whose StatefulSet template has
//! changed. The StatefulSets use `OnDelete`, so nothing restarts until this step deletes a pod,
//! and it deletes one only when every broker is Ready and the brokers' admin API reports no
//! under-replicated partitions and that they have caught up; the next one waits for the
//! replaced pod to be back (pure decisions here, the calls in `reconcile`).

use serde::Deserialize;

/// What the rollout needs to know of one broker pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPod {
    pub name: String,
    pub uid: Option<String>,
    pub node_id: i32,
    pub ready: bool,
    /// Being deleted already.
    pub terminating: bool,
    /// Its `controller-revision-hash` differs from its StatefulSet's `updateRevision`.
    pub outdated: bool,
}

/// The broker admin endpoint's answer (`GET /v1/status`), the fields the gate reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BrokerStatus {
    pub under_replicated_partitions: i64,
    pub caught_up: bool,
}

/// The next rollout action before the brokers' health is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutPlan {
    /// Every pod runs the current template.
    UpToDate,
    /// Pods are outdated, but a broker is missing, not Ready or still terminating.
    WaitForBrokers { waiting_on: String },
    /// `pod` is next, if the brokers are healthy.
    Restart { pod: String, uid: Option<String> },
    /// `pod` is outdated and not Ready: replace it now (it serves nothing).
    ReplaceUnready { pod: String, uid: Option<String> },
}

/// Why a restart is held back after asking the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthGate {
    Open,
    UnderReplicated { pod: String, partitions: i64 },
    NotCaughtUp { pod: String },
    Unknown { pod: String },
}

/// Chooses the next pod to replace. An outdated pod that is not Ready serves nothing, so it goes
/// first and without asking the brokers (the fix for a broken broker is often the very template
/// change waiting to roll out); otherwise the outdated pod with the lowest node id, once all
/// `expected` brokers exist and are Ready. Never while any pod is terminating: one at a time.
pub fn plan_rollout(pods: &[BrokerPod], expected: usize) -> RolloutPlan {
    let mut outdated: Vec<&BrokerPod> = pods
        .iter()
        .filter(|p| p.outdated && !p.terminating)
        .collect();
    outdated.sort_by_key(|p| (p.ready, p.node_id));
    let Some(next) = outdated.first() else {
        return RolloutPlan::UpToDate;
    };
    if let Some(terminating) = pods.iter().find(|p| p.terminating) {
        return RolloutPlan::WaitForBrokers {
            waiting_on: terminating.name.clone(),
        };
    }
    if !next.ready {
        return RolloutPlan::ReplaceUnready {
            pod: next.name.clone(),
            uid: next.uid.clone(),
        };
    }
    if let Some(waiting) = pods.iter().find(|p| !p.ready) {
        return RolloutPlan::WaitForBrokers {
            waiting_on: waiting.name.clone(),
        };
    }
    if pods.len() < expected {
        return RolloutPlan::WaitForBrokers {
            waiting_on: format!("{} of {expected} brokers", pods.len()),
        };
    }
    RolloutPlan::Restart {
        pod: next.name.clone(),
        uid: next.uid.clone(),
    }
}

/// The gate over every broker's answer (`None`: the broker did not answer).
pub fn health_gate(statuses: &[(String, Option<BrokerStatus>)]) -> HealthGate {
    for (pod, status) in statuses {
        match status {
            None => return HealthGate::Unknown { pod: pod.clone() },
            Some(s) if s.under_replicated_partitions > 0 => {
                return HealthGate::UnderReplicated {
                    pod: pod.clone(),
                    partitions: s.under_replicated_partitions,
                };
            }
            Some(s) if !s.caught_up => return HealthGate::NotCaughtUp { pod: pod.clone() },
            Some(_) => {}
        }
    }
    HealthGate::Open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node_id: i32, ready: bool, outdated: bool) -> BrokerPod {
        BrokerPod {
            name: format!("events-a-{node_id}"),
            uid: Some(format!("uid-{node_id}")),
            node_id,
            ready,
            terminating: false,
            outdated,
        }
    }

    #[test]
    fn nothing_to_do_when_every_pod_is_current() {
        let pods = [pod(0, true, false), pod(1, false, false)];
        assert_eq!(plan_rollout(&pods, 2), RolloutPlan::UpToDate);
    }

    #[test]
    fn one_pod_at_a_time_lowest_node_id_first() {
        let pods = [
            pod(101, true, true),
            pod(1, true, true),
            pod(0, true, false),
        ];
        assert_eq!(
            plan_rollout(&pods, 3),
            RolloutPlan::Restart {
                pod: "events-a-1".into(),
                uid: Some("uid-1".into())
            }
        );
    }

    #[test]
    fn an_outdated_broker_that_is_down_is_replaced_first() {
        // A crash-looping broker whose fix is the pending template: replaced at once, before a
        // healthy outdated one.
        let pods = [pod(0, true, true), pod(1, false, true), pod(2, true, false)];
        assert_eq!(
            plan_rollout(&pods, 3),
            RolloutPlan::ReplaceUnready {
                pod: "events-a-1".into(),
                uid: Some("uid-1".into())
            }
        );
    }

    #[test]
    fn waits_while_any_broker_is_down_missing_or_terminating() {
        // The pod just replaced is not Ready yet: the next one waits.
        let pods = [pod(0, false, false), pod(1, true, true)];
        assert_eq!(
            plan_rollout(&pods, 2),
            RolloutPlan::WaitForBrokers {
                waiting_on: "events-a-0".into()
            }
        );
        let mut terminating = pod(0, true, true);
        terminating.terminating = true;
        assert_eq!(
            plan_rollout(&[terminating, pod(1, true, true)], 2),
            RolloutPlan::WaitForBrokers {
                waiting_on: "events-a-0".into()
            }
        );
        assert_eq!(
            plan_rollout(&[pod(1, true, true)], 2),
            RolloutPlan::WaitForBrokers {
                waiting_on: "1 of 2 brokers".into()
            }
        );
    }

    #[test]
    fn the_health_gate_needs_every_broker_caught_up_without_under_replication() {
        let healthy = Some(BrokerStatus {
            under_replicated_partitions: 0,
            caught_up: true,
        });
        assert_eq!(
            health_gate(&[("a".into(), healthy.clone()), ("b".into(), healthy.clone())]),
            HealthGate::Open
        );
        assert_eq!(
            health_gate(&[
                ("a".into(), healthy.clone()),
                (
                    "b".into(),
                    Some(BrokerStatus {
                        under_replicated_partitions: 4,
                        caught_up: true
                    })
                )
            ]),
            HealthGate::UnderReplicated {
                pod: "b".into(),
                partitions: 4
            }
        );
        assert_eq!(
            health_gate(&[(
                "a".into(),
                Some(BrokerStatus {
                    under_replicated_partitions: 0,
                    caught_up: false
                })
            )]),
            HealthGate::NotCaughtUp { pod: "a".into() }
        );
        assert_eq!(
            health_gate(&[("a".into(), None)]),
            HealthGate::Unknown { pod: "a".into() }
        );
    }
}
