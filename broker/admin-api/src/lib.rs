//! The broker's HTTP admin API (port 9644 by default) as one typed contract: the paths and the
//! JSON bodies the broker serves and the operator reads. Kept in its own small crate so the
//! operator depends on the contract, not on the broker.
//!
//! | Method and path | Body of the answer |
//! |---|---|
//! | `GET /v1/status` | [`Status`] |
//! | `GET /v1/brokers/{id}/pre-restart` | [`PreRestartCheck`] |
//! | `POST /v1/brokers/{id}/leadership-drain` | [`LeadershipDrain`] (`DELETE` ends the drain) |
//! | `POST /v1/brokers/{id}/drain`, `GET` to follow it | [`Drain`], or [`Refusal`] with 409 |
//! | `POST /v1/balance` to start the balancer, `GET` to follow it | [`Balance`] |
//!
//! Every body reads with defaults for missing fields, so an operator reads a broker of an older
//! release, and the other way round.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET`: this broker's view of the cluster.
pub const STATUS_PATH: &str = "/v1/status";

/// `POST`: start the balancer; `GET`: how far it has come.
pub const BALANCE_PATH: &str = "/v1/balance";

/// `GET`: whether restarting broker `id` now is safe.
pub fn pre_restart_path(id: i32) -> String {
    format!("/v1/brokers/{id}/pre-restart")
}

/// `POST`: move the leaderships of broker `id` to other in-sync replicas, and keep them away
/// until it restarts; `DELETE`: let it lead again.
pub fn leadership_drain_path(id: i32) -> String {
    format!("/v1/brokers/{id}/leadership-drain")
}

/// `POST`: move every replica off broker `id`; `GET`: how far that has come.
pub fn drain_path(id: i32) -> String {
    format!("/v1/brokers/{id}/drain")
}

/// The admin paths that name a broker: `(id, what)` for `/v1/brokers/{id}/{what}`.
pub fn parse_broker_path(path: &str) -> Option<(i32, &str)> {
    let rest = path.strip_prefix("/v1/brokers/")?;
    let (id, what) = rest.split_once('/')?;
    Some((id.parse().ok()?, what))
}

/// The answer of [`STATUS_PATH`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub node_id: i32,
    pub cluster_id: String,
    /// `/readyz`'s answer.
    pub ready: bool,
    /// The metadata quorum's leader (the controller), -1 while none is known (or not said).
    #[serde(default = "unknown_controller")]
    pub controller: i32,
    /// The metadata quorum's voters.
    pub voters: Vec<i32>,
    pub brokers: Vec<BrokerInfo>,
    pub fenced_brokers: usize,
    /// The index of the last metadata log entry applied here.
    pub metadata_offset: u64,
    pub metadata_lag: MetadataLag,
    /// Partitions hosted here.
    pub partitions: usize,
    /// Partitions this broker leads, and of those, with fewer in-sync replicas than replicas.
    pub leader_partitions: usize,
    pub under_replicated_partitions: usize,
    /// Partitions without a leader, in the whole cluster.
    pub offline_partitions: usize,
    /// Partitions with fewer in-sync replicas than replicas, in the whole cluster.
    pub cluster_under_replicated_partitions: usize,
    /// Partitions each registered broker leads, by broker id.
    pub leaders_per_broker: BTreeMap<String, usize>,
    /// The broker has applied the metadata as far as the controller had, at an answer within
    /// the session timeout.
    pub caught_up: bool,
    /// Partitions this broker is a replica of (not one being added by a reassignment) whose ISR
    /// lacks it: 0 once a restarted broker has caught up with every leader.
    pub replicas_out_of_sync: usize,
    /// Partitions being reassigned, in the whole cluster.
    pub reassigning_partitions: usize,
    /// Whether the balancer is running.
    pub balancing: bool,
}

fn unknown_controller() -> i32 {
    -1
}

/// The metadata lag of a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetadataLag {
    /// Entries the controller had applied, at its last heartbeat answer, that this broker has
    /// not.
    pub entries: u64,
    /// Milliseconds since this broker was last known current (`None`: never yet).
    pub ms: Option<u64>,
}

/// One registered broker, as [`Status`] lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerInfo {
    pub id: i32,
    pub rack: Option<String>,
    pub host: String,
    pub port: i32,
    pub fenced: bool,
    pub shut_down: bool,
    /// What the broker is doing, as an operator shows it.
    pub state: BrokerState,
    /// Replicas it holds (those being added included).
    pub replicas: usize,
    /// Partitions it leads.
    pub leaders: usize,
}

/// What a broker is doing, as an operator shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerState {
    /// Serving, and may lead.
    #[default]
    Active,
    /// Serving, its leaderships moved away (before a restart).
    LeadershipDrained,
    /// Its replicas are being moved to other brokers.
    Draining,
    /// Drained: it holds no replica, and may be removed.
    Drained,
    /// Not heard from within the session timeout, or stopping.
    Fenced,
}

/// The answer of [`pre_restart_path`]: restarting the broker now would leave no partition below
/// `min.insync.replicas` or without a leader, and the metadata quorum with a majority, where
/// waiting could change that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreRestartCheck {
    pub broker: i32,
    pub restart_safe: bool,
    /// Why not, one line each (empty when safe): what waiting would clear (replicas catching
    /// up, brokers coming back).
    pub reasons: Vec<String>,
    /// What the restart costs whenever it happens, so it does not hold it back: partitions with
    /// one replica go offline, a quorum of one or two voters has no majority meanwhile.
    pub risks: Vec<String>,
}

/// The answer of [`leadership_drain_path`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeadershipDrain {
    pub broker: i32,
    /// Whether the broker is kept from leading.
    pub drained: bool,
    /// Partitions it still leads (those with no other in-sync replica to take over stay).
    pub leaders_left: usize,
}

/// The answer of [`drain_path`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Drain {
    pub broker: i32,
    pub state: BrokerState,
    /// Partitions that still have a replica on the broker.
    pub replicas_left: usize,
    /// Of those, partitions being moved now.
    pub moving: usize,
}

/// The answer of [`BALANCE_PATH`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Balance {
    /// Whether the balancer is running (it stops once replicas and leaders are even).
    pub balancing: bool,
    /// Partitions being reassigned now.
    pub moving: usize,
    /// Replicas and partitions led per registered broker, by broker id.
    pub replicas_per_broker: BTreeMap<String, usize>,
    pub leaders_per_broker: BTreeMap<String, usize>,
}

/// The body of a refused request (HTTP 409, 404 or 503): why, and that nothing changed. Its
/// fields are those of a Kubernetes `Status`, so a client reading the API through the API
/// server's pod proxy (the operator) finds the code and the reason where it looks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Refusal {
    /// The HTTP status code.
    pub code: u16,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_paths_round_trip() {
        assert_eq!(parse_broker_path(&drain_path(4)), Some((4, "drain")));
        assert_eq!(
            parse_broker_path(&pre_restart_path(12)),
            Some((12, "pre-restart"))
        );
        assert_eq!(
            parse_broker_path(&leadership_drain_path(0)),
            Some((0, "leadership-drain"))
        );
        for bad in ["/v1/brokers/x/drain", "/v1/brokers/4", "/v1/status"] {
            assert_eq!(parse_broker_path(bad), None, "{bad}");
        }
    }

    /// A status of a release before the later fields reads with their defaults.
    #[test]
    fn an_older_status_reads_with_defaults() {
        let old = r#"{"node_id":1,"cluster_id":"c","ready":true,"controller":1,"voters":[1],
            "brokers":[{"id":1,"rack":null,"host":"h","port":9092,"fenced":false,"shut_down":false}],
            "fenced_brokers":0,"metadata_offset":5,"metadata_lag":{"entries":0,"ms":3},
            "partitions":2,"leader_partitions":2,"under_replicated_partitions":0,
            "offline_partitions":0,"leaders_per_broker":{"1":2},"caught_up":true}"#;
        let status: Status = serde_json::from_str(old).unwrap();
        assert_eq!(status.brokers[0].state, BrokerState::Active);
        let bare: Status = serde_json::from_str(r#"{"caught_up":true}"#).unwrap();
        assert_eq!(
            bare.controller, -1,
            "an answer without a controller names none"
        );
        assert_eq!(status.replicas_out_of_sync, 0);
        assert!(status.caught_up);
    }
}
