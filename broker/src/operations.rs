//! What the admin API does to a running cluster, behind the contract of `fjord-admin-api`: the
//! status an operator reads, the pre-restart check, leadership drains and broker drains. The
//! changes are metadata records committed through the quorum (forwarded to the controller);
//! the controller does the moving ([`crate::cluster::controller::decide`]).

use std::time::Duration;

use fjord_admin_api::{
    Balance, BrokerInfo, BrokerState, Drain, LeadershipDrain, MetadataLag, PreRestartCheck, Status,
};

use crate::broker::Broker;
use crate::cluster::{MetadataError, MetadataImage, MetadataRecord, balance};

/// How long a leadership drain waits for the controller to move the leaderships.
const LEADERSHIP_DRAIN_WAIT: Duration = Duration::from_secs(15);

/// Why an admin operation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// The drain would break the rack rule or the replication factor of these partitions.
    #[error("the drain of broker {broker} is refused, nothing changed: {}", reasons.join("; "))]
    Refused { broker: i32, reasons: Vec<String> },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// What broker `id` is doing, as the image has it.
pub fn broker_state(image: &MetadataImage, id: i32) -> BrokerState {
    let Some(broker) = image.brokers.get(&id) else {
        return BrokerState::Fenced;
    };
    if image.draining.contains(&id) {
        if balance::replicas_on(image, id).0 == 0 {
            BrokerState::Drained
        } else {
            BrokerState::Draining
        }
    } else if broker.fenced || broker.shut_down {
        BrokerState::Fenced
    } else if image.is_leadership_drained(id) {
        BrokerState::LeadershipDrained
    } else {
        BrokerState::Active
    }
}

impl Broker {
    /// `GET /v1/status`.
    pub fn status(&self) -> Status {
        let image = self.image();
        let cluster = self.cluster_sample();
        let session = Duration::from_millis(self.config().broker_session_timeout_ms);
        let node_id = self.node_id();
        let all = image.topics.values().flat_map(|t| &t.partitions);
        let replicas_out_of_sync = all
            .clone()
            .filter(|p| {
                p.replicas.contains(&node_id)
                    && !p.adding.contains(&node_id)
                    && !p.isr.contains(&node_id)
            })
            .count();
        let reassigning_partitions = all.clone().filter(|p| p.is_reassigning()).count();
        let cluster_under_replicated_partitions =
            all.filter(|p| p.isr.len() < p.replicas.len()).count();
        let brokers = image
            .brokers
            .values()
            .map(|b| BrokerInfo {
                id: b.id,
                rack: b.rack.clone(),
                host: b.host.clone(),
                port: b.port,
                fenced: b.fenced,
                shut_down: b.shut_down,
                state: broker_state(&image, b.id),
                replicas: balance::replicas_on(&image, b.id).0,
                leaders: cluster
                    .leaders_per_broker
                    .iter()
                    .find(|(id, _)| *id == b.id)
                    .map_or(0, |(_, led)| *led),
            })
            .collect();
        Status {
            node_id,
            cluster_id: image.cluster_id.clone(),
            ready: self.is_ready(),
            controller: cluster.controller,
            voters: self.quorum().voter_ids(),
            brokers,
            fenced_brokers: cluster.fenced_brokers,
            metadata_offset: cluster.metadata_applied,
            metadata_lag: MetadataLag {
                entries: cluster.metadata_lag_entries,
                ms: self
                    .metadata_lag()
                    .since_current
                    .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
            },
            partitions: self.partition_samples().len(),
            leader_partitions: cluster.leader_partitions,
            under_replicated_partitions: cluster.under_replicated_partitions,
            offline_partitions: cluster.offline_partitions,
            cluster_under_replicated_partitions,
            leaders_per_broker: cluster
                .leaders_per_broker
                .iter()
                .map(|(id, led)| (id.to_string(), *led))
                .collect(),
            caught_up: self.metadata_lag().current_within(session),
            replicas_out_of_sync,
            reassigning_partitions,
            balancing: image.balancing,
        }
    }

    /// `GET /v1/balance`.
    pub fn balance_status(&self) -> Balance {
        let image = self.image();
        let cluster = self.cluster_sample();
        Balance {
            balancing: image.balancing,
            moving: image
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.is_reassigning())
                .count(),
            replicas_per_broker: image
                .brokers
                .keys()
                .map(|id| (id.to_string(), balance::replicas_on(&image, *id).0))
                .collect(),
            leaders_per_broker: cluster
                .leaders_per_broker
                .iter()
                .map(|(id, led)| (id.to_string(), *led))
                .collect(),
        }
    }

    /// `POST /v1/balance`: starts the balancer (the controller stops it once balanced).
    pub async fn start_balance(&self) -> Result<Balance, OperationError> {
        if !self.image().balancing {
            self.quorum()
                .propose(vec![MetadataRecord::Balance { balancing: true }])
                .await?;
            tracing::info!("balancer started");
        }
        Ok(self.balance_status())
    }

    /// `GET /v1/brokers/{id}/pre-restart`, from this broker's image.
    pub fn pre_restart_check(&self, id: i32) -> Result<PreRestartCheck, OperationError> {
        let image = self.image();
        if !image.brokers.contains_key(&id) {
            return Err(OperationError::UnknownBroker(id));
        }
        let check = balance::pre_restart_check(&image, id, &self.quorum().voter_ids());
        Ok(PreRestartCheck {
            broker: id,
            restart_safe: check.reasons.is_empty(),
            reasons: check.reasons,
            risks: check.risks,
        })
    }

    /// `POST` (`drained`) or `DELETE /v1/brokers/{id}/leadership-drain`: keeps broker `id` from
    /// leading until it registers again (its next start), or lets it lead again. A drain waits
    /// (up to 15 s) until the controller has moved every leadership another in-sync replica can
    /// take.
    pub async fn drain_leadership(
        &self,
        id: i32,
        drained: bool,
    ) -> Result<LeadershipDrain, OperationError> {
        let image = self.image();
        let epoch = image
            .brokers
            .get(&id)
            .map(|b| b.epoch)
            .ok_or(OperationError::UnknownBroker(id))?;
        if image.is_leadership_drained(id) != drained {
            let record = MetadataRecord::DrainLeadership { id, epoch, drained };
            self.quorum().propose(vec![record]).await?;
            tracing::info!(broker = id, drained, "leadership drain changed");
        }
        let mut applied = self.quorum().applied();
        let deadline = tokio::time::Instant::now() + LEADERSHIP_DRAIN_WAIT;
        loop {
            let image = self.image();
            let movable = movable_leaderships(&image, id);
            if !drained || movable == 0 {
                return Ok(LeadershipDrain {
                    broker: id,
                    drained: image.is_leadership_drained(id),
                    leaders_left: leaderships(&image, id),
                });
            }
            if tokio::time::timeout_at(deadline, applied.changed())
                .await
                .is_err()
            {
                return Ok(LeadershipDrain {
                    broker: id,
                    drained: true,
                    leaders_left: leaderships(&image, id),
                });
            }
        }
    }

    /// `POST /v1/brokers/{id}/drain`: starts moving every replica off broker `id`, if every one
    /// of them has somewhere to go by the rack rule (otherwise refused, nothing changed). The
    /// controller moves them a bounded number at a time.
    pub async fn drain_broker(&self, id: i32) -> Result<Drain, OperationError> {
        let image = self.image();
        if !image.brokers.contains_key(&id) {
            return Err(OperationError::UnknownBroker(id));
        }
        let mut leaving = image.draining.clone();
        leaving.insert(id);
        let reasons: Vec<String> = balance::drain_plan(&image, &leaving)
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if !reasons.is_empty() {
            return Err(OperationError::Refused {
                broker: id,
                reasons,
            });
        }
        if !image.draining.contains(&id) {
            let record = MetadataRecord::DrainBroker { id, draining: true };
            self.quorum().propose(vec![record]).await?;
            tracing::info!(broker = id, "drain started");
        }
        self.drain_status(id)
    }

    /// `DELETE /v1/brokers/{id}/drain`: no further replicas are moved off broker `id` (moves
    /// running complete).
    pub async fn end_drain(&self, id: i32) -> Result<Drain, OperationError> {
        let image = self.image();
        if !image.brokers.contains_key(&id) {
            return Err(OperationError::UnknownBroker(id));
        }
        if image.draining.contains(&id) {
            let record = MetadataRecord::DrainBroker {
                id,
                draining: false,
            };
            self.quorum().propose(vec![record]).await?;
            tracing::info!(broker = id, "drain ended");
        }
        self.drain_status(id)
    }

    /// `GET /v1/brokers/{id}/drain`.
    pub fn drain_status(&self, id: i32) -> Result<Drain, OperationError> {
        let image = self.image();
        if !image.brokers.contains_key(&id) {
            return Err(OperationError::UnknownBroker(id));
        }
        let (replicas_left, moving) = balance::replicas_on(&image, id);
        Ok(Drain {
            broker: id,
            state: broker_state(&image, id),
            replicas_left,
            moving,
        })
    }
}

/// Partitions broker `id` leads.
fn leaderships(image: &MetadataImage, id: i32) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader == id)
        .count()
}

/// Partitions broker `id` leads that another usable in-sync replica could lead.
fn movable_leaderships(image: &MetadataImage, id: i32) -> usize {
    let usable = image.usable_brokers();
    image
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| {
            p.leader == id
                && p.isr
                    .iter()
                    .any(|member| *member != id && usable.contains(member))
        })
        .count()
}
