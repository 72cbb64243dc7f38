//! How current this broker's metadata is. The controller answers every heartbeat with how far
//! it has applied the metadata log; a broker that has applied as far as an answer received at
//! time T knows its view was current at T. Its lag is how many entries it is behind the last
//! answer, and how long ago it was last known current (Kafka's `last-applied-record-lag-ms`).
//! A broker not known current within the session timeout (cut off from the controller, or
//! falling behind) reports not ready rather than serve a stale view as current.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// This broker's lag behind the controller, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Entries of the metadata log the controller had applied, at its last answer, that this
    /// broker has not.
    pub entries: u64,
    /// How long ago this broker was last known current (`None`: never yet).
    pub since_current: Option<Duration>,
}

impl Lag {
    /// Whether the broker was known current within `limit`.
    pub fn current_within(&self, limit: Duration) -> bool {
        self.since_current.is_some_and(|since| since < limit)
    }
}

#[derive(Debug, Default)]
struct State {
    /// The controller's applied index at its last answer.
    controller_applied: u64,
    /// An answer this broker has not applied as far as yet: its index and arrival.
    pending: Option<(u64, Instant)>,
    /// When this broker was last known current.
    current_at: Option<Instant>,
}

/// What the broker knows of its metadata's freshness; updated by heartbeats and by applying.
#[derive(Debug, Default)]
pub struct Freshness {
    state: Mutex<State>,
}

impl Freshness {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The controller answered, at `at`, that it had applied up to `controller_applied`, when
    /// this broker had applied up to `applied`.
    pub fn answered(&self, controller_applied: u64, applied: u64, at: Instant) {
        let mut state = self.state();
        state.controller_applied = state.controller_applied.max(controller_applied);
        if applied >= controller_applied {
            state.current_at = Some(at);
            state.pending = None;
        } else if state.pending.is_none() {
            // The oldest answer not yet reached: reaching it later says the broker was current
            // as of then, not as of the newer answers.
            state.pending = Some((controller_applied, at));
        }
    }

    /// This broker has applied up to `applied`.
    pub fn applied(&self, applied: u64) {
        let mut state = self.state();
        if let Some((index, at)) = state.pending
            && applied >= index
        {
            state.current_at = Some(at);
            state.pending = None;
        }
    }

    /// The lag as of `now`, with this broker at `applied`.
    pub fn lag(&self, applied: u64, now: Instant) -> Lag {
        let state = self.state();
        Lag {
            entries: state.controller_applied.saturating_sub(applied),
            since_current: state.current_at.map(|at| now.saturating_duration_since(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_is_current_as_of_the_answers_it_has_reached() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let freshness = Freshness::default();
        assert_eq!(freshness.lag(0, at(0)).since_current, None);
        assert!(
            !freshness
                .lag(0, at(0))
                .current_within(Duration::from_secs(9))
        );

        freshness.answered(10, 10, at(100));
        assert_eq!(
            freshness.lag(10, at(300)),
            Lag {
                entries: 0,
                since_current: Some(Duration::from_millis(200))
            }
        );

        // Behind: the next answers do not make it current until it reaches the first of them.
        freshness.answered(15, 12, at(2100));
        freshness.answered(18, 13, at(4100));
        let behind = freshness.lag(13, at(5000));
        assert_eq!(behind.entries, 5);
        assert_eq!(behind.since_current, Some(Duration::from_millis(4900)));
        freshness.applied(15);
        assert_eq!(
            freshness.lag(15, at(5000)).since_current,
            Some(Duration::from_millis(2900)),
            "current as of the answer it reached, not as of now"
        );
        assert!(
            !freshness
                .lag(15, at(12_000))
                .current_within(Duration::from_secs(9))
        );
    }
}
