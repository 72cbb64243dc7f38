//! Who is on the other end of a connection: the client's address and its principal, as Kafka
//! names principals (`User:<name>`). A connection starts as `User:ANONYMOUS` (Kafka's name for a
//! client that has not authenticated); the connection edge replaces that with the principal a
//! client certificate or a SASL login proves.

pub mod acl;
pub mod cluster_tls;
pub mod oauth;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::listener::SecurityProtocol;

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
    /// PEM CA bundle: clients of a TLS listener without SASL (Kafka's SSL) must present a
    /// certificate it signed (mutual TLS), and their principal is `User:` and the
    /// certificate's subject (`User:CN=writer,O=Fjord`). A SASL_SSL listener does not ask for
    /// one: the login names the client.
    #[arg(long, env = "FJORD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// SASL mechanisms clients log in with, comma-separated: `PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`, `OAUTHBEARER` (with the `--oauth-*` flags). With any, every client must log in first (Kafka's SASL_PLAINTEXT
    /// listener, or SASL_SSL with `--tls-cert`); PLAIN checks passwords against the SCRAM
    /// credentials in the cluster metadata.
    #[arg(long, env = "FJORD_SASL_MECHANISMS", value_delimiter = ',')]
    pub sasl_mechanisms: Vec<sasl::Mechanism>,
    /// OAUTHBEARER: the token issuer's JSON Web Key Set (a Kubernetes API server serves its
    /// service-account keys at `/openid/v1/jwks`), read at each login.
    #[arg(long, env = "FJORD_OAUTH_JWKS_FILE", requires_all = ["oauth_issuer", "oauth_audience"])]
    pub oauth_jwks_file: Option<PathBuf>,
    /// OAUTHBEARER: the `iss` a token must carry (a Kubernetes cluster's service-account
    /// issuer, e.g. `https://kubernetes.default.svc.cluster.local`).
    #[arg(long, env = "FJORD_OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,
    /// OAUTHBEARER: the audience a token must name, so a token minted for another purpose is
    /// refused (a projected service-account token's `audience`).
    #[arg(long, env = "FJORD_OAUTH_AUDIENCE")]
    pub oauth_audience: Option<String>,
    /// How long a SASL login lasts before the client must re-authenticate, in milliseconds
    /// (`connections.max.reauth.ms`, KIP-368); 0: for the connection's life.
    #[arg(long, env = "FJORD_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,
    /// SCRAM credentials a new cluster starts with, one per line: `MECHANISM user password`
    /// (`SCRAM-SHA-256` or `SCRAM-SHA-512`; `#` starts a comment). Read when this broker forms
    /// the cluster, and ignored by a cluster that already exists; only the salted keys are
    /// kept. Kafka's `kafka-storage format --add-scram`.
    #[arg(long, env = "FJORD_INITIAL_SCRAM_CREDENTIALS")]
    pub initial_scram_credentials: Option<PathBuf>,
    /// PEM certificate chain this broker presents to other brokers, as server and as client, on
    /// the cluster listener. With `--cluster-tls-key` and `--cluster-tls-ca` every connection
    /// between brokers is mutual TLS: both ends present a certificate the CA signed, for the
    /// address the other dials (Kafka's inter-broker SSL listener with client authentication).
    #[arg(long, env = "FJORD_CLUSTER_TLS_CERT", requires_all = ["cluster_tls_key", "cluster_tls_ca"])]
    pub cluster_tls_cert: Option<PathBuf>,
    /// PEM private key of `--cluster-tls-cert`.
    #[arg(long, env = "FJORD_CLUSTER_TLS_KEY", requires = "cluster_tls_cert")]
    pub cluster_tls_key: Option<PathBuf>,
    /// PEM CA bundle that signs every broker's cluster certificate.
    #[arg(long, env = "FJORD_CLUSTER_TLS_CA", requires = "cluster_tls_cert")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// Authorises every request against the ACLs in the cluster metadata (`acl`: Kafka's
    /// standard authorizer; a request no ACL allows is denied, as with
    /// `allow.everyone.if.no.acl.found=false`). Without it every client may do everything.
    #[arg(long, env = "FJORD_AUTHORIZER", value_enum)]
    pub authorizer: Option<AuthorizerKind>,
    /// Principals allowed everything whatever the ACLs say, separated by `;` or `,`
    /// (`User:admin,User:CN=operator,O=Fjord`: a comma not followed by `User:` is part of a
    /// certificate subject; Kafka's `super.users`). Needs `--authorizer`.
    #[arg(long, env = "FJORD_SUPER_USERS")]
    pub super_users: Vec<String>,
}

/// The authorizers `--authorizer` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizerKind {
    /// ACLs in the cluster metadata, managed with CreateAcls, DescribeAcls and DeleteAcls.
    Acl,
}

/// Why the initial SCRAM credentials file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}, line {line}: {problem} (expected `SCRAM-SHA-256|SCRAM-SHA-512 user password`)"
    )]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

impl SecurityFlags {
    /// What is wrong with these flags together, if anything.
    pub fn problem(&self) -> Option<String> {
        let bearer = self.sasl_mechanisms.contains(&sasl::Mechanism::OAuthBearer);
        if bearer && self.oauth_jwks_file.is_none() {
            return Some(
                "--sasl-mechanisms OAUTHBEARER needs --oauth-jwks-file, --oauth-issuer and --oauth-audience"
                    .to_owned(),
            );
        }
        if !self.super_users.is_empty() && self.authorizer.is_none() {
            return Some("--super-users needs --authorizer acl".to_owned());
        }
        self.super_users()
            .find(|user| !user.starts_with("User:") || user.len() == "User:".len())
            .map(|user| format!("--super-users: '{user}' is not a principal (User:<name>)"))
    }

    /// The principals of `--super-users`, each trimmed.
    fn super_users(&self) -> impl Iterator<Item = String> + '_ {
        self.super_users
            .iter()
            .flat_map(|users| split_principals(users))
    }

    /// The broker's authorizer, when requests are authorised.
    pub fn authorizer(&self) -> Option<acl::Authorizer> {
        self.authorizer
            .map(|AuthorizerKind::Acl| acl::Authorizer::new(self.super_users()))
    }

    /// The listener's SASL, when it asks clients to log in.
    pub fn sasl_config(&self) -> Option<sasl::SaslConfig> {
        if self.sasl_mechanisms.is_empty() {
            return None;
        }
        // Offered in the order given, each once.
        let mut mechanisms = self.sasl_mechanisms.clone();
        let mut seen = std::collections::BTreeSet::new();
        mechanisms.retain(|m| seen.insert(*m));
        let oauth = match (
            &self.oauth_jwks_file,
            &self.oauth_issuer,
            &self.oauth_audience,
        ) {
            (Some(jwks), Some(issuer), Some(audience)) => Some(sasl::OAuthConfig {
                jwks: jwks.clone(),
                expected: oauth::Expectations {
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                },
            }),
            _ => None,
        };
        Some(sasl::SaslConfig {
            mechanisms,
            session_lifetime: (self.connections_max_reauth_ms > 0)
                .then(|| std::time::Duration::from_millis(self.connections_max_reauth_ms)),
            oauth,
        })
    }

    /// The credentials of `--initial-scram-credentials` (none without the flag).
    pub fn initial_scram_credentials(
        &self,
    ) -> Result<Vec<crate::cluster::UserScramCredential>, CredentialsFileError> {
        let Some(path) = &self.initial_scram_credentials else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsFileError::Read {
            path: path.clone(),
            source,
        })?;
        parse_credentials(&text).map_err(|(line, problem)| CredentialsFileError::Line {
            path: path.clone(),
            line,
            problem,
        })
    }

    /// The TLS files of the cluster listener, when brokers speak TLS to each other.
    pub fn cluster_tls_files(&self) -> Option<cluster_tls::ClusterTlsFiles> {
        Some(cluster_tls::ClusterTlsFiles {
            cert: self.cluster_tls_cert.clone()?,
            key: self.cluster_tls_key.clone()?,
            ca: self.cluster_tls_ca.clone()?,
        })
    }

    /// The first Kafka listener's protocol: TLS with `--tls-cert`, a login with
    /// `--sasl-mechanisms`.
    pub fn protocol(&self) -> SecurityProtocol {
        SecurityProtocol::of(self.tls_cert.is_some(), !self.sasl_mechanisms.is_empty())
    }

    /// The TLS files of a Kafka listener of `protocol`, when it speaks TLS. Only an `SSL`
    /// listener asks for client certificates: on a `SASL_SSL` one the login names the client.
    pub fn tls_files(&self, protocol: SecurityProtocol) -> Option<tls::TlsFiles> {
        if !protocol.tls() {
            return None;
        }
        Some(tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self
                .tls_client_ca
                .clone()
                .filter(|_| protocol == SecurityProtocol::Ssl),
        })
    }
}

/// Principals separated by `;` or `,`; a comma not followed by `User:` belongs to the
/// principal before it (a certificate subject, `User:CN=ops,O=Fjord`).
fn split_principals(list: &str) -> Vec<String> {
    let mut principals: Vec<String> = Vec::new();
    for (index, part) in list.split(';').flat_map(|p| p.split(',').enumerate()) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match principals.last_mut() {
            Some(last) if index > 0 && !part.starts_with("User:") => {
                last.push(',');
                last.push_str(part);
            }
            _ => principals.push(part.to_owned()),
        }
    }
    principals
}

/// The lines of an initial credentials file, or the line number (from 1) and what is wrong.
fn parse_credentials(
    text: &str,
) -> Result<Vec<crate::cluster::UserScramCredential>, (usize, String)> {
    let mut credentials = Vec::new();
    for (number, line) in (1..).zip(text.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, char::is_whitespace);
        let (Some(mechanism), Some(user), Some(password)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err((number, "fewer than three fields".to_owned()));
        };
        let mechanism = scram::ScramMechanism::from_name(mechanism)
            .ok_or_else(|| (number, format!("unknown mechanism '{mechanism}'")))?;
        let password = password.trim_start();
        if user.is_empty() || password.is_empty() {
            return Err((number, "an empty user or password".to_owned()));
        }
        credentials.push(crate::cluster::UserScramCredential {
            user: user.to_owned(),
            mechanism,
            credential: scram::ScramCredential::new(mechanism, password.as_bytes()),
        });
    }
    Ok(credentials)
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
    /// The `--listener` it came in on; `None` for the first listener.
    pub listener: Option<Arc<str>>,
}

impl Session {
    /// A connection from `peer` that has not authenticated.
    pub fn anonymous(peer: SocketAddr) -> Self {
        Self {
            peer,
            principal: Principal::anonymous(),
            listener: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_users_split_on_semicolons_and_commas_but_not_inside_a_subject() {
        assert_eq!(
            split_principals("User:admin,User:CN=ops,O=Fjord ; User:b,"),
            ["User:admin", "User:CN=ops,O=Fjord", "User:b"]
        );
        assert_eq!(split_principals("User:a;User:b"), ["User:a", "User:b"]);
        assert_eq!(split_principals(""), Vec::<String>::new());
    }

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
    fn initial_credentials_are_read_line_by_line() {
        let parsed = parse_credentials(
            "# administrators\nSCRAM-SHA-512 admin s3cret pass\n\n  SCRAM-SHA-256 app  pw\n",
        )
        .unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            (parsed[0].user.as_str(), parsed[0].mechanism),
            ("admin", scram::ScramMechanism::Sha512)
        );
        // The password is the rest of the line.
        assert!(
            parsed[0]
                .credential
                .verifies(scram::ScramMechanism::Sha512, b"s3cret pass")
        );
        assert!(
            parsed[1]
                .credential
                .verifies(scram::ScramMechanism::Sha256, b"pw")
        );
        assert_eq!(parse_credentials("SCRAM-SHA-512 admin\n").unwrap_err().0, 1);
        let (line, problem) = parse_credentials("\nSCRAM-MD5 a b\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(problem.contains("SCRAM-MD5"), "{problem}");
    }

    #[test]
    fn mechanisms_are_offered_in_the_order_given_each_once() {
        use sasl::Mechanism::{OAuthBearer, Plain};
        let flags = SecurityFlags {
            sasl_mechanisms: vec![Plain, OAuthBearer, Plain],
            ..SecurityFlags::default()
        };
        assert_eq!(
            flags.sasl_config().unwrap().mechanisms,
            [Plain, OAuthBearer]
        );
        assert!(SecurityFlags::default().sasl_config().is_none());
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
