//! The controller quorum a broker is told to join (`--voters`, Kafka's
//! `controller.quorum.voters`): parsed from `id@host:port` entries and checked against what this
//! build can serve before anything binds or opens. The operator passes the voter set it computes
//! from the stable per-broker DNS names; until brokers replicate, only a quorum of exactly this
//! node can be served, and anything else is refused with a message that says so, instead of a
//! broker that starts and silently acts alone.

use std::fmt;
use std::str::FromStr;

/// One `id@host:port` entry of `--voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.node_id, self.host, self.port)
    }
}

/// Why an `id@host:port` entry did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoterParseError {
    #[error("voter '{0}' is not of the form id@host:port")]
    Shape(String),
    #[error("voter '{entry}' has a node id that is not a non-negative integer")]
    NodeId { entry: String },
    #[error("voter '{entry}' has a port that is not a number from 1 to 65535")]
    Port { entry: String },
}

impl FromStr for Voter {
    type Err = VoterParseError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let shape = || VoterParseError::Shape(entry.to_owned());
        let (id, address) = entry.split_once('@').ok_or_else(shape)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
        if host.is_empty() {
            return Err(shape());
        }
        let node_id = id
            .parse::<i32>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| VoterParseError::NodeId {
                entry: entry.to_owned(),
            })?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| VoterParseError::Port {
                entry: entry.to_owned(),
            })?;
        Ok(Self {
            node_id,
            host: host.to_owned(),
            port,
        })
    }
}

/// A voter set this broker refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("--voters names node {node_id} twice")]
    DuplicateVoter { node_id: i32 },
    #[error(
        "--voters names {count} voters ({voters}), but this version of Fjord runs a single-node \
         cluster and cannot form a quorum across brokers yet; run one broker with --voters \
         naming only itself, or leave --voters out"
    )]
    MultiNodeNotSupported { count: usize, voters: String },
    #[error(
        "--voters is {voter}, which does not include this broker (--node-id {node_id}); \
         a broker can only serve a quorum it votes in"
    )]
    NotAVoter { voter: String, node_id: i32 },
}

/// Checks the voter set against this node. An empty set means "a single-node cluster of this
/// node" (the laptop default).
pub fn check_voters(node_id: i32, voters: &[Voter]) -> Result<(), QuorumError> {
    for (index, voter) in voters.iter().enumerate() {
        if voters[..index].iter().any(|v| v.node_id == voter.node_id) {
            return Err(QuorumError::DuplicateVoter {
                node_id: voter.node_id,
            });
        }
    }
    match voters {
        [] => Ok(()),
        [only] if only.node_id == node_id => Ok(()),
        [only] => Err(QuorumError::NotAVoter {
            voter: only.to_string(),
            node_id,
        }),
        many => Err(QuorumError::MultiNodeNotSupported {
            count: many.len(),
            voters: many
                .iter()
                .map(Voter::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(list: &str) -> Vec<Voter> {
        list.split(',').map(|v| v.parse().unwrap()).collect()
    }

    #[test]
    fn parses_kafka_style_entries() {
        let voter: Voter = "3@fjord-a-3.fjord-brokers.prod.svc:9093".parse().unwrap();
        assert_eq!(voter.node_id, 3);
        assert_eq!(voter.host, "fjord-a-3.fjord-brokers.prod.svc");
        assert_eq!(voter.port, 9093);
        assert_eq!(voter.to_string(), "3@fjord-a-3.fjord-brokers.prod.svc:9093");
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        assert!(matches!(
            "fjord:9093".parse::<Voter>(),
            Err(VoterParseError::Shape(_))
        ));
        assert!(matches!(
            "1@:9093".parse::<Voter>(),
            Err(VoterParseError::Shape(_))
        ));
        assert!(matches!(
            "-1@h:9093".parse::<Voter>(),
            Err(VoterParseError::NodeId { .. })
        ));
        assert!(matches!(
            "1@h:0".parse::<Voter>(),
            Err(VoterParseError::Port { .. })
        ));
        assert!(matches!(
            "1@h:99999".parse::<Voter>(),
            Err(VoterParseError::Port { .. })
        ));
    }

    #[test]
    fn a_quorum_of_this_node_alone_is_served() {
        assert_eq!(check_voters(1, &[]), Ok(()));
        assert_eq!(check_voters(7, &voters("7@localhost:9093")), Ok(()));
    }

    #[test]
    fn other_voter_sets_are_refused() {
        let refused = check_voters(0, &voters("0@a:9093,1@b:9093,2@c:9093")).unwrap_err();
        assert!(matches!(
            refused,
            QuorumError::MultiNodeNotSupported { count: 3, .. }
        ));
        assert!(refused.to_string().contains("0@a:9093,1@b:9093,2@c:9093"));
        assert!(matches!(
            check_voters(0, &voters("1@a:9093")),
            Err(QuorumError::NotAVoter { node_id: 0, .. })
        ));
        assert!(matches!(
            check_voters(1, &voters("1@a:9093,1@b:9093")),
            Err(QuorumError::DuplicateVoter { node_id: 1 })
        ));
    }
}
