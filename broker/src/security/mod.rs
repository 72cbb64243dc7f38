//! Who is on the other end of a connection: the client's address and its principal, as Kafka
//! names principals (`User:<name>`). A connection starts as `User:ANONYMOUS` (Kafka's name for a
//! client that has not authenticated); the connection edge replaces that with the principal a
//! client certificate or a SASL login proves.

pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How the Kafka listener authenticates clients.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityFlags {
    /// PEM certificate chain of the Kafka listener (its own certificate first). With
    /// `--tls-key` the listener speaks TLS only (Kafka's SSL listener); the files are re-read
    /// when they change, so a rotated Secret is served to new connections without a restart.
    #[arg(long, env = "FJORD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "FJORD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS), and their
    /// principal is `User:` and the certificate's subject (`User:CN=writer,O=Fjord`).
    #[arg(long, env = "FJORD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl SecurityFlags {
    /// The TLS files of the Kafka listener, when it speaks TLS.
    pub fn tls_files(&self) -> Option<tls::TlsFiles> {
        Some(tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}

/// Lets through a bounded number of log lines per minute (failed logins, refused handshakes):
/// a flood of bad connections must not flood the log. What it held back is counted and said
/// with the next line let through.
#[derive(Debug)]
pub struct LogLimit {
    per_minute: u32,
    window: std::sync::Mutex<(std::time::Instant, u32, u64)>,
}

impl LogLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: std::sync::Mutex::new((std::time::Instant::now(), 0, 0)),
        }
    }

    /// `Some(lines held back since the last one let through)` when a line may be logged now.
    pub fn admit(&self) -> Option<u64> {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (started, lines, held) = &mut *window;
        if started.elapsed() >= std::time::Duration::from_secs(60) {
            (*started, *lines) = (std::time::Instant::now(), 0);
        }
        if *lines < self.per_minute {
            *lines += 1;
            Some(std::mem::take(held))
        } else {
            *held += 1;
            None
        }
    }
}

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
    fn the_log_limit_lets_a_few_lines_through_and_counts_the_rest() {
        let limit = LogLimit::new(2);
        assert_eq!(limit.admit(), Some(0));
        assert_eq!(limit.admit(), Some(0));
        assert_eq!(limit.admit(), None);
        assert_eq!(limit.admit(), None);
        // A new window says how many lines it held back.
        limit.window.lock().unwrap().0 -= std::time::Duration::from_secs(61);
        assert_eq!(limit.admit(), Some(2));
        assert_eq!(limit.admit(), Some(0));
    }

    #[test]
    fn principals_read_as_kafka_writes_them() {
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(
            Principal::user("CN=writer,O=Fjord").to_string(),
            "User:CN=writer,O=Fjord"
        );
    }
}
