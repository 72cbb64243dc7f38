//! Status conditions (`metav1.Condition`) as both controllers write them: built fresh each
//! reconcile, keeping `lastTransitionTime` when a condition's status did not change, so
//! `kubectl wait --for=condition=Ready` and dashboards see real transitions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// A condition of `type_` with `status` True or False, observed at `generation`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// `fresh` with transition times: carried over from `previous` where the status is unchanged,
/// `now` otherwise.
pub fn with_transitions(
    previous: &[Condition],
    fresh: Vec<Condition>,
    now: Timestamp,
) -> Vec<Condition> {
    fresh
        .into_iter()
        .map(|mut condition| {
            condition.last_transition_time = previous
                .iter()
                .find(|old| old.type_ == condition.type_ && old.status == condition.status)
                .map_or(Time(now), |old| old.last_transition_time.clone());
            condition
        })
        .collect()
}

/// The status (`"True"`, `"False"`) of condition `type_`, if present.
pub fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let then = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let now = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let previous = with_transitions(
            &[],
            vec![
                condition(READY, false, "BrokersNotReady", "", Some(1)),
                condition(DEGRADED, false, "Healthy", "", Some(1)),
            ],
            then,
        );
        let next = with_transitions(
            &previous,
            vec![
                condition(READY, true, "BrokersReady", "", Some(1)),
                condition(DEGRADED, false, "Healthy", "", Some(1)),
            ],
            now,
        );
        assert_eq!(next[0].last_transition_time, Time(now));
        assert_eq!(next[1].last_transition_time, Time(then));
        assert_eq!(status_of(&next, READY), Some("True"));
        assert_eq!(status_of(&next, PROGRESSING), None);
    }
}
