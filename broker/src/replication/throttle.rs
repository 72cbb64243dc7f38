//! Replication throttles, as Kafka's reassignment tool sets them: a topic names replicas
//! (`partition:broker` pairs, or `*`) in `leader.replication.throttled.replicas`, those that as
//! leader throttle what they serve (the tool lists a moving partition's current replicas), and
//! in `follower.replication.throttled.replicas`, those that as follower throttle what they fetch
//! (the tool lists the replicas being added); each broker caps those bytes per second
//! (`leader.replication.throttled.rate`, `follower.replication.throttled.rate`). Only fetches of
//! followers out of sync are held back, so a throttle slows a reassignment or a catch-up without
//! slowing `acks=all` produces.
//!
//! One [`Throttle`] per broker and direction: a token bucket holding at most one second of the
//! rate. A fetch may take a batch larger than what is left (it never splits one); the debt is
//! waited out before the next throttled fetch.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::cluster::MetadataImage;
use crate::cluster::broker_config::{self, DYNAMIC_BROKER_CONFIGS};

/// The throttle rate `key` (a `*.replication.throttled.rate`) applies on broker `node_id`, in
/// bytes per second; `None` when unthrottled (Kafka's default, Long.MAX).
pub fn rate(image: &MetadataImage, node_id: i32, key: &str) -> Option<u64> {
    let config = DYNAMIC_BROKER_CONFIGS.iter().find(|c| c.key == key)?;
    let (_, value) = broker_config::dynamic_values(image, node_id, config)
        .into_iter()
        .next()?;
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|rate| *rate > 0 && *rate < i64::MAX as u64)
}

/// One direction's token bucket on a broker.
#[derive(Debug, Default)]
pub struct Throttle {
    bucket: Mutex<Option<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes that may go now; negative: a debt to wait out.
    tokens: f64,
    refilled: Instant,
}

impl Throttle {
    /// How long throttled fetches must wait at `rate` (bytes per second) before the next one:
    /// zero when they may go now, or when there is no rate.
    pub fn delay(&self, rate: Option<u64>) -> Duration {
        let Some(rate) = rate else {
            *self.bucket.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Duration::ZERO;
        };
        let rate = rate as f64;
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let current = bucket.get_or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        let elapsed = now.duration_since(current.refilled).as_secs_f64();
        current.tokens = (current.tokens + elapsed * rate).min(rate);
        current.refilled = now;
        if current.tokens > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-current.tokens / rate)
        }
    }

    /// Counts `bytes` of throttled fetches against the rate.
    pub fn charge(&self, bytes: usize) {
        if let Some(bucket) = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            bucket.tokens -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second's worth of the rate goes at once; beyond it, the debt is waited out at the rate.
    #[test]
    fn the_bucket_holds_a_second_of_the_rate_and_debts_are_waited_out() {
        let throttle = Throttle::default();
        assert_eq!(throttle.delay(None), Duration::ZERO);
        throttle.charge(1 << 30);
        assert_eq!(throttle.delay(None), Duration::ZERO, "no rate, no debt");
        assert_eq!(throttle.delay(Some(1000)), Duration::ZERO);
        throttle.charge(600);
        assert_eq!(throttle.delay(Some(1000)), Duration::ZERO);
        throttle.charge(2400);
        let wait = throttle.delay(Some(1000));
        assert!(
            wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
    }

    #[test]
    fn the_rate_comes_from_the_broker_or_the_cluster_default() {
        use crate::cluster::MetadataRecord;
        let mut image = MetadataImage::new("c".to_owned());
        let key = broker_config::LEADER_THROTTLED_RATE;
        assert_eq!(rate(&image, 1, key), None);
        for (resource, value) in [("", "5000"), ("1", "2000")] {
            image
                .apply(&MetadataRecord::SetBrokerConfigs {
                    resource: resource.to_owned(),
                    configs: [(key.to_owned(), value.to_owned())].into(),
                    from: None,
                })
                .unwrap();
        }
        assert_eq!(rate(&image, 1, key), Some(2000));
        assert_eq!(rate(&image, 2, key), Some(5000));
        assert_eq!(
            rate(&image, 2, broker_config::FOLLOWER_THROTTLED_RATE),
            None
        );
    }
}
