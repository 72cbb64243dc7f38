//! Cluster reconcile, the disruptive step: replacing broker pods whose StatefulSet template has
//! changed. The StatefulSets use `OnDelete`, so nothing restarts until this step deletes a pod,
//! and it deletes one only when every broker is Ready and the brokers' admin API reports no
//! under-replicated partitions and that they have caught up (metadata, and every replica back in
//! its ISR); then the pod's leaderships are drained and its broker's pre-restart check must say
//! yes. Voters go after the other brokers, the controller last; the next pod waits for the
//! replaced one to be back (pure decisions here, the calls in `reconcile`).

use std::collections::BTreeSet;

use fjord_admin_api::{PreRestartCheck, Status};

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
    UnderReplicated { pod: String, partitions: usize },
    NotCaughtUp { pod: String },
    Unknown { pod: String },
}

/// What the pre-restart check of the pod about to be restarted says, fail closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartCheck {
    Safe,
    /// The broker says no, with its reasons.
    Unsafe {
        reasons: Vec<String>,
    },
    /// No answer: no restart.
    Unknown,
}

impl RestartCheck {
    pub fn of(answer: Option<&PreRestartCheck>) -> Self {
        match answer {
            None => Self::Unknown,
            Some(check) if check.restart_safe && check.reasons.is_empty() => Self::Safe,
            Some(check) => Self::Unsafe {
                reasons: check.reasons.clone(),
            },
        }
    }
}

/// Chooses the next pod to replace. An outdated pod that is not Ready serves nothing, so it goes
/// first and without asking the brokers (the fix for a broken broker is often the very template
/// change waiting to roll out); otherwise, once all `expected` brokers exist and are Ready, the
/// outdated pod with the lowest node id among the brokers that are not `voters`, then among the
/// voters, the `controller` (the metadata quorum's leader, if known) last of all. Never while any
/// pod is terminating: one at a time.
pub fn plan_rollout(
    pods: &[BrokerPod],
    expected: usize,
    voters: &BTreeSet<i32>,
    controller: Option<i32>,
) -> RolloutPlan {
    let mut outdated: Vec<&BrokerPod> = pods
        .iter()
        .filter(|p| p.outdated && !p.terminating)
        .collect();
    outdated.sort_by_key(|p| {
        (
            p.ready,
            voters.contains(&p.node_id),
            controller == Some(p.node_id),
            p.node_id,
        )
    });
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

/// The gate over every broker's answer (`None`: the broker did not answer): none may report
/// under-replicated partitions, and each must have caught up, its metadata and its replicas
/// (a broker just restarted is back in every ISR).
pub fn health_gate(statuses: &[(String, Option<Status>)]) -> HealthGate {
    for (pod, status) in statuses {
        match status {
            None => return HealthGate::Unknown { pod: pod.clone() },
            Some(s) if s.under_replicated_partitions > 0 => {
                return HealthGate::UnderReplicated {
                    pod: pod.clone(),
                    partitions: s.under_replicated_partitions,
                };
            }
            Some(s) if !s.caught_up || s.replicas_out_of_sync > 0 => {
                return HealthGate::NotCaughtUp { pod: pod.clone() };
            }
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
        assert_eq!(
            plan_rollout(&pods, 2, &BTreeSet::new(), None),
            RolloutPlan::UpToDate
        );
    }

    #[test]
    fn one_pod_at_a_time_lowest_node_id_first() {
        let pods = [
            pod(101, true, true),
            pod(1, true, true),
            pod(0, true, false),
        ];
        assert_eq!(
            plan_rollout(&pods, 3, &BTreeSet::new(), None),
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
            plan_rollout(&pods, 3, &BTreeSet::new(), None),
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
            plan_rollout(&pods, 2, &BTreeSet::new(), None),
            RolloutPlan::WaitForBrokers {
                waiting_on: "events-a-0".into()
            }
        );
        let mut terminating = pod(0, true, true);
        terminating.terminating = true;
        assert_eq!(
            plan_rollout(
                &[terminating, pod(1, true, true)],
                2,
                &BTreeSet::new(),
                None
            ),
            RolloutPlan::WaitForBrokers {
                waiting_on: "events-a-0".into()
            }
        );
        assert_eq!(
            plan_rollout(&[pod(1, true, true)], 2, &BTreeSet::new(), None),
            RolloutPlan::WaitForBrokers {
                waiting_on: "1 of 2 brokers".into()
            }
        );
    }

    /// Voters go after the other brokers, and the controller last of all.
    #[test]
    fn voters_go_last_and_the_controller_very_last() {
        let pods = [
            pod(0, true, true),
            pod(1, true, true),
            pod(100, true, true),
            pod(101, true, true),
        ];
        let voters = BTreeSet::from([0, 100]);
        let next = |pods: &[BrokerPod], controller| match plan_rollout(
            pods,
            pods.len(),
            &voters,
            controller,
        ) {
            RolloutPlan::Restart { pod, .. } => pod,
            other => panic!("{other:?}"),
        };
        assert_eq!(next(&pods, Some(0)), "events-a-1");
        let voters_left = [
            pod(0, true, true),
            pod(100, true, true),
            pod(1, true, false),
        ];
        assert_eq!(next(&voters_left, Some(0)), "events-a-100");
        assert_eq!(next(&voters_left, Some(100)), "events-a-0");
    }

    fn status(under_replicated_partitions: usize, caught_up: bool, out_of_sync: usize) -> Status {
        Status {
            under_replicated_partitions,
            caught_up,
            replicas_out_of_sync: out_of_sync,
            ..Status::default()
        }
    }

    #[test]
    fn the_health_gate_needs_every_broker_caught_up_without_under_replication() {
        let healthy = Some(status(0, true, 0));
        assert_eq!(
            health_gate(&[("a".into(), healthy.clone()), ("b".into(), healthy.clone())]),
            HealthGate::Open
        );
        assert_eq!(
            health_gate(&[
                ("a".into(), healthy.clone()),
                ("b".into(), Some(status(4, true, 0)))
            ]),
            HealthGate::UnderReplicated {
                pod: "b".into(),
                partitions: 4
            }
        );
        for behind in [status(0, false, 0), status(0, true, 2)] {
            assert_eq!(
                health_gate(&[("a".into(), Some(behind))]),
                HealthGate::NotCaughtUp { pod: "a".into() }
            );
        }
        assert_eq!(
            health_gate(&[("a".into(), None)]),
            HealthGate::Unknown { pod: "a".into() }
        );
    }

    /// The pre-restart check fails closed: no answer, or an answer that is not a clean yes, is
    /// no restart.
    #[test]
    fn the_pre_restart_check_fails_closed() {
        assert_eq!(RestartCheck::of(None), RestartCheck::Unknown);
        let safe = PreRestartCheck {
            broker: 1,
            restart_safe: true,
            reasons: Vec::new(),
            // What no wait removes does not hold the restart back.
            risks: vec!["t-3: one replica, offline while it restarts".into()],
        };
        assert_eq!(RestartCheck::of(Some(&safe)), RestartCheck::Safe);
        let unsafe_check = PreRestartCheck {
            restart_safe: false,
            reasons: vec!["t-0: below min.insync.replicas".into()],
            ..safe
        };
        assert_eq!(
            RestartCheck::of(Some(&unsafe_check)),
            RestartCheck::Unsafe {
                reasons: vec!["t-0: below min.insync.replicas".into()]
            }
        );
    }
}
