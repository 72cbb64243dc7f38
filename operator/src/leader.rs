//! Leader election through a `coordination.k8s.io/v1` Lease, so several operator replicas can
//! run and exactly one reconciles. The holder renews the lease every few seconds; another
//! replica takes it over only once it has seen the lease unchanged for its whole duration, timed
//! on its own monotonic clock (as client-go does): the `renewTime` a holder writes is never
//! compared with another machine's clock, so skewed clocks cannot hand the lease to two
//! replicas. Every write carries the resource version it read, so two replicas racing for the
//! lease cannot both win. A leader that cannot renew in time stops (and the process exits): it
//! must not keep acting on a lease someone else may already hold.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The part of the lease a leader that cannot renew keeps for stopping its controllers: it gives
/// up this long before a standby may take over (client-go's defaults leave the same 5 s).
const RENEW_MARGIN: Duration = Duration::from_secs(5);

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

/// Decides from the lease's spec and how long this replica has seen it unchanged (pure). The
/// holder's own duration counts, not ours: a holder configured with a longer lease keeps it.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => LeaseDecision::Renew,
        None | Some("") => LeaseDecision::TakeOver,
        Some(_) => {
            let seconds = spec.lease_duration_seconds.unwrap_or(15);
            let duration = Duration::from_secs(u64::try_from(seconds).unwrap_or(15));
            if unchanged_for >= duration {
                LeaseDecision::TakeOver
            } else {
                LeaseDecision::Wait
            }
        }
    }
}

/// The last version of the lease this replica read, and since when (its own clock) it has been
/// that version.
#[derive(Debug, Default)]
struct Observed {
    version: Option<String>,
    since: Option<tokio::time::Instant>,
}

impl Observed {
    /// Records a read; returns how long the lease has been unchanged.
    fn see(&mut self, lease: Option<&Lease>) -> Duration {
        let now = tokio::time::Instant::now();
        let version = lease.and_then(|l| l.metadata.resource_version.clone());
        match self.since {
            Some(since) if self.version == version => now.duration_since(since),
            _ => {
                self.version = version;
                self.since = Some(now);
                Duration::ZERO
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
    observed: Arc<Mutex<Observed>>,
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

impl Error {
    /// The API server refused to create the Lease because its namespace is being deleted
    /// (admission's `NamespaceTerminating` cause): nobody can create a Lease there.
    pub fn namespace_terminating(&self) -> bool {
        let Self::Lease { source, .. } = self;
        let kube::Error::Api(status) = source else {
            return false;
        };
        status.code == 403
            && status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
    }
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            lease_duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            observed: Arc::default(),
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

    /// Renews until shutdown (returns) or until the lease could not be renewed within the renew
    /// deadline (returns too: the caller must stop acting as leader). The deadline leaves
    /// [`RENEW_MARGIN`] of the lease for the controllers to stop before a standby may take over.
    pub async fn hold(&self, shutdown: &CancellationToken) {
        let deadline = self.lease_duration.saturating_sub(RENEW_MARGIN);
        // When the last successful renewal was sent: a standby may have seen its new version
        // as soon as it was written, so the lease is counted from the send, not the answer.
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.retry) => {}
            }
            // A renewal that hangs must not outlive the deadline.
            let left = deadline.saturating_sub(last_renewed.elapsed());
            let sent = tokio::time::Instant::now();
            let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            let Ok(attempt) = attempt else {
                tracing::error!(lease = %self.name, "renewing the lease timed out");
                return;
            };
            match attempt {
                Ok(true) => last_renewed = sent,
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    return;
                }
                // The Lease went with its namespace, which is being deleted: no replica can
                // create a Lease there, so none can lead instead of this one, and stopping now
                // would leave nobody to release the finalizers holding that very namespace.
                // Lead on, recreating the Lease at each renewal: once the namespace is gone
                // the create fails otherwise and the deadline applies again; a Lease another
                // replica created meanwhile stops this one (`Ok(false)` above).
                Err(error) if error.namespace_terminating() => {
                    tracing::warn!(
                        lease = %self.name,
                        "the Lease's namespace is being deleted and took the Lease: leading on, as no replica can hold a Lease there"
                    );
                    last_renewed = sent;
                }
                Err(error) => {
                    tracing::warn!(error = %crate::controller::DisplayChain(&error), "renewing the lease failed");
                    if last_renewed.elapsed() + self.retry >= deadline {
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
            .replace(&self.name, &crate::controller::post_params(), &lease)
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
        let unchanged_for = self.observed.lock().map_or(Duration::ZERO, |mut observed| {
            observed.see(current.as_ref())
        });
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            unchanged_for,
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
                    .create(&crate::controller::post_params(), &lease)
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
                    .replace(&self.name, &crate::controller::post_params(), &lease)
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

    fn lease(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            // Long ago by this machine's clock: it must not matter.
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            ..LeaseSpec::default()
        }
    }

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn another_holder_loses_the_lease_only_after_it_was_seen_unchanged_for_its_duration() {
        assert_eq!(decide(None, "a", secs(0)), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&lease("a")), "a", secs(0)),
            LeaseDecision::Renew
        );
        assert_eq!(decide(Some(&lease("b")), "a", secs(0)), LeaseDecision::Wait);
        assert_eq!(
            decide(Some(&lease("b")), "a", secs(14)),
            LeaseDecision::Wait
        );
        assert_eq!(
            decide(Some(&lease("b")), "a", secs(15)),
            LeaseDecision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("")), "a", secs(0)),
            LeaseDecision::TakeOver
        );
        let longer = LeaseSpec {
            lease_duration_seconds: Some(60),
            ..lease("b")
        };
        assert_eq!(decide(Some(&longer), "a", secs(30)), LeaseDecision::Wait);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_version_restarts_the_observation() {
        let version = |v: &str| Lease {
            metadata: ObjectMeta {
                resource_version: Some(v.into()),
                ..ObjectMeta::default()
            },
            spec: None,
        };
        let mut observed = Observed::default();
        assert_eq!(observed.see(Some(&version("1"))), Duration::ZERO);
        tokio::time::advance(secs(10)).await;
        assert_eq!(observed.see(Some(&version("1"))), secs(10));
        assert_eq!(observed.see(Some(&version("2"))), Duration::ZERO);
        tokio::time::advance(secs(3)).await;
        assert_eq!(observed.see(Some(&version("2"))), secs(3));
    }
}
