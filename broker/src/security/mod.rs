//! Who is on the other end of a connection: the client's address and its principal, as Kafka
//! names principals (`User:<name>`). A connection starts as `User:ANONYMOUS` (Kafka's name for a
//! client that has not authenticated); the connection edge replaces that with the principal a
//! client certificate or a SASL login proves.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A Kafka principal of type `User` (the only type Kafka's authenticators produce).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    name: Arc<str>,
}

impl Principal {
    /// The principal of a client that has not authenticated.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// `User:<name>`.
    pub fn user(name: &str) -> Self {
        Self { name: name.into() }
    }

    /// The name after `User:`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.name)
    }
}

/// One client connection as requests see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The client's address (DescribeGroups shows it as a member's host; ACLs match its host).
    pub peer: SocketAddr,
    pub principal: Principal,
}

impl Session {
    /// A connection from `peer` that has not authenticated.
    pub fn anonymous(peer: SocketAddr) -> Self {
        Self {
            peer,
            principal: Principal::anonymous(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_read_as_kafka_writes_them() {
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(
            Principal::user("CN=writer,O=Fjord").to_string(),
            "User:CN=writer,O=Fjord"
        );
    }
}
