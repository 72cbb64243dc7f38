//! Leader election through a `coordination.k8s.io/v1` Lease, so several operator replicas can
//! run and exactly one reconciles. The holder renews the lease every few seconds; another
//! replica takes it over only once it has not been renewed for its whole duration. Every write
//! carries the resource version it read, so two replicas racing for the lease cannot both win.
//! A leader that cannot renew in time stops (and the process exits): it must not keep acting
//! on a lease someone else may already hold.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// What to do with the lease as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it and renews it.
    Wait,
}

/// Decides from the lease's spec (pure).
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => LeaseDecision::Renew,
        None | Some("") => LeaseDecision::TakeOver,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let renewed = spec.renew_time.as_ref().map(|t| t.0);
            match renewed {
                Some(renewed) if renewed + duration > now => LeaseDecision::Wait,
                _ => LeaseDecision::TakeOver,
            }
        }
    }
}

/// One replica's view of the election.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    retry: Duration,
}

/// Failures of the lease calls (a lost race is not one: it is a `false`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} lease '{name}'")]
    Lease {
        verb: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            lease_duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }

    /// Waits until this replica holds the lease (`false`: shutdown came first).
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %crate::controller::DisplayChain(&error), "leader election")
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.retry) => {}
            }
        }
    }

    /// Renews until shutdown (returns) or until the lease could not be renewed within its
    /// duration (returns too: the caller must stop acting as leader).
    pub async fn hold(&self, shutdown: &CancellationToken) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.retry) => {}
            }
            // A renewal that hangs must not outlive the lease: bound it by what is left of it.
            let left = self
                .lease_duration
                .saturating_sub(last_renewed.elapsed())
                .saturating_sub(self.retry);
            let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            let Ok(attempt) = attempt else {
                tracing::error!(lease = %self.name, "renewing the lease timed out");
                return;
            };
            match attempt {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %crate::controller::DisplayChain(&error), "renewing the lease failed");
                    // Give up before the lease can expire in other replicas' eyes.
                    if last_renewed.elapsed() + self.retry >= self.lease_duration {
                        tracing::error!(lease = %self.name, "could not renew the lease in time");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (a clean shutdown), so a standby takes over at once instead of after
    /// the lease duration. Only a lease this replica still holds is touched.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the lease"),
            Err(error) => tracing::warn!(%error, lease = %self.name, "releasing the lease failed"),
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| Error::Lease {
                verb: "reading",
                name: self.name.clone(),
                source,
            })?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        let result = match (decision, current) {
            (LeaseDecision::Wait, _) => return Ok(false),
            (LeaseDecision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == LeaseDecision::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    tracing::info!(lease = %self.name, identity = %self.identity, "taking over the lease");
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(MicroTime(now));
                // `replace` sends the resource version read above: a concurrent writer wins
                // and this one gets 409 Conflict.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(Error::Lease {
                verb: "writing",
                name: self.name.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Timestamp::from_second(renewed_secs).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
            ..LeaseSpec::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_live_holder_keeps_the_lease_and_an_expired_one_loses_it() {
        assert_eq!(decide(None, "a", at(100)), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&lease("a", 90)), "a", at(100)),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", 90)), "a", at(100)),
            LeaseDecision::Wait
        );
        assert_eq!(
            decide(Some(&lease("b", 90)), "a", at(104)),
            LeaseDecision::Wait
        );
        assert_eq!(
            decide(Some(&lease("b", 90)), "a", at(105)),
            LeaseDecision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("", 90)), "a", at(91)),
            LeaseDecision::TakeOver
        );
    }
}
