//! SASL on the Kafka listener (Kafka's SASL_PLAINTEXT, or SASL_SSL over TLS): one
//! [`Authenticator`] per connection, the state machine of Kafka's SaslServerAuthenticator.
//!
//! ```text
//! ApiVersions (any time) . SaslHandshake(mechanism) . SaslAuthenticate(token)... . other requests
//!                          `- v0: the tokens follow as raw size-prefixed frames, no headers
//! ```
//!
//! Until a login succeeds only ApiVersions, SaslHandshake and SaslAuthenticate are served;
//! anything else closes the connection, as Kafka does. A failed login is answered with
//! SASL_AUTHENTICATION_FAILED (or, in v0 framing, the connection is closed) and the connection
//! closed. With a session lifetime (`--connections-max-reauth-ms`, KIP-368) the client is told
//! when its session ends; it re-authenticates on the same connection (SaslHandshake and
//! SaslAuthenticate again, as the same principal), or its next request after the end closes
//! the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Principal;
use super::oauth::{TokenError, bearer_token};
use super::scram::{ScramCredential, ScramError, ScramMechanism, ScramServer, parse_plain};
use crate::cluster::MetadataImage;

/// A SASL mechanism the listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    /// KIP-255, with JSON Web Tokens (see [`super::oauth`]).
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(scram) => scram.name(),
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            "OAUTHBEARER" => Some(Self::OAuthBearer),
            name => ScramMechanism::from_name(name).map(Self::Scram),
        }
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or_else(|| {
            format!(
                "unknown SASL mechanism '{name}' (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
            )
        })
    }
}

/// How a listener's SASL is set up.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// Offered in this order.
    pub mechanisms: Vec<Mechanism>,
    /// How long a login lasts before the client must re-authenticate (none: for the
    /// connection's life).
    pub session_lifetime: Option<Duration>,
    /// What OAUTHBEARER tokens are checked against.
    pub oauth: Option<OAuthConfig>,
}

/// Where an OAUTHBEARER token's keys come from and what it must say.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer's JSON Web Key Set, read at each login (a rotated file is used at once).
    pub jwks: std::path::PathBuf,
    pub expected: super::oauth::Expectations,
}

/// What the connection may do with a request, as the authenticator stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Served as `principal`.
    Serve(Principal),
    /// Not served: the connection closes, for this reason.
    Close(&'static str),
}

/// A login step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The server's token; the exchange goes on.
    Continue(Vec<u8>),
    /// Logged in as `principal`; the server's last token, and how long the session lasts.
    Done {
        token: Vec<u8>,
        principal: Principal,
        session_lifetime: Option<Duration>,
    },
    /// Refused: the client is told `message` (nothing that tells users apart), the broker
    /// logs `reason`, and the connection closes.
    Failed {
        message: String,
        reason: String,
        user: Option<String>,
    },
}

/// Why a SaslHandshake is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("unsupported SASL mechanism {0}")]
    Unsupported(String),
    #[error("SaslHandshake in the middle of a SASL exchange")]
    IllegalState,
}

#[derive(Debug)]
enum State {
    /// No login started (or, after one, none in progress).
    Idle,
    /// A SaslHandshake chose `mechanism`; SaslAuthenticate (or raw tokens, `raw`) follow.
    Negotiated {
        mechanism: Mechanism,
        raw: bool,
        scram: Option<ScramServer>,
    },
}

/// One connection's SASL state.
#[derive(Debug)]
pub struct Authenticator {
    config: Arc<SaslConfig>,
    state: State,
    /// The principal of the last successful login, and when its session ends.
    session: Option<(Principal, Option<Instant>)>,
}

impl Authenticator {
    pub fn new(config: Arc<SaslConfig>) -> Self {
        Self {
            config,
            state: State::Idle,
            session: None,
        }
    }

    /// What OAUTHBEARER tokens are checked against, if set up.
    pub fn oauth(&self) -> Option<OAuthConfig> {
        self.config.oauth.clone()
    }

    /// The mechanisms offered, for SaslHandshake's answer.
    pub fn mechanisms(&self) -> Vec<&'static str> {
        self.config.mechanisms.iter().map(|m| m.name()).collect()
    }

    /// Whether a login has succeeded on this connection (its session may have ended since).
    pub fn has_logged_in(&self) -> bool {
        self.session.is_some()
    }

    /// Whether the next frame is a raw token (after a SaslHandshake v0), not a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Negotiated { raw: true, .. })
    }

    /// A SaslHandshake for `mechanism`; `raw` for version 0 (the tokens then follow as raw
    /// frames).
    pub fn handshake(&mut self, mechanism: &str, raw: bool) -> Result<(), HandshakeError> {
        if matches!(self.state, State::Negotiated { .. }) {
            return Err(HandshakeError::IllegalState);
        }
        let chosen = Mechanism::from_name(mechanism)
            .filter(|m| self.config.mechanisms.contains(m))
            .ok_or_else(|| HandshakeError::Unsupported(mechanism.to_owned()))?;
        self.state = State::Negotiated {
            mechanism: chosen,
            raw,
            scram: match chosen {
                Mechanism::Scram(scram) => Some(ScramServer::new(scram)),
                Mechanism::Plain | Mechanism::OAuthBearer => None,
            },
        };
        Ok(())
    }

    /// The mechanism of the exchange in progress, for counting a failure.
    pub fn mechanism(&self) -> Option<Mechanism> {
        match &self.state {
            State::Negotiated { mechanism, .. } => Some(*mechanism),
            State::Idle => None,
        }
    }

    /// A PLAIN login in progress: the user and password of `token`, to be checked (PBKDF2:
    /// off the request path) with [`Authenticator::plain_checked`].
    /// An OAUTHBEARER login in progress: its token, to be checked (reading the key set) with
    /// [`Authenticator::bearer_checked`].
    pub fn bearer_login(&self, message: &[u8]) -> Option<Result<String, TokenError>> {
        matches!(
            self.state,
            State::Negotiated {
                mechanism: Mechanism::OAuthBearer,
                ..
            }
        )
        .then(|| bearer_token(message).map(str::to_owned))
    }

    pub fn plain_login(&self, token: &[u8]) -> Option<Result<(String, Vec<u8>), ScramError>> {
        matches!(
            self.state,
            State::Negotiated {
                mechanism: Mechanism::Plain,
                ..
            }
        )
        .then(|| parse_plain(token))
    }

    /// Takes one client token of the exchange in progress (SCRAM; PLAIN goes through
    /// [`Authenticator::plain_login`]), looking credentials up in `image`.
    pub fn authenticate(&mut self, token: &[u8], image: &MetadataImage, now: Instant) -> Step {
        let State::Negotiated {
            mechanism: Mechanism::Scram(scram_mechanism),
            scram: Some(scram),
            ..
        } = &mut self.state
        else {
            self.state = State::Idle;
            return failed(
                None,
                "SaslAuthenticate without a SaslHandshake before it",
                None,
            );
        };
        let scram_mechanism = *scram_mechanism;
        if scram.user().is_none() {
            let first = scram.client_first(token, |user| {
                image.scram_credential(user, scram_mechanism).cloned()
            });
            return match first {
                Ok(server_first) => Step::Continue(server_first),
                Err(error) => {
                    self.state = State::Idle;
                    failed(Some(scram_mechanism), &error.to_string(), None)
                }
            };
        }
        let user = scram.user().map(str::to_owned);
        let last = scram.client_final(token);
        self.state = State::Idle;
        match last {
            Ok((user, server_final)) => self.logged_in(&user, server_final, now),
            Err(error) => failed(Some(scram_mechanism), &error.to_string(), user),
        }
    }

    /// A PLAIN login whose message could not be read: refused as a wrong password is.
    pub fn plain_malformed(&mut self, error: &ScramError) -> Step {
        self.state = State::Idle;
        Step::Failed {
            message: PLAIN_FAILED.to_owned(),
            reason: error.to_string(),
            user: None,
        }
    }

    /// The outcome of a PLAIN login as `user` whose password was checked ([`verify_plain`]):
    /// `verified` whether it matched the user's stored credential (false for an unknown user).
    pub fn plain_checked(&mut self, user: &str, verified: bool, now: Instant) -> Step {
        self.state = State::Idle;
        if verified {
            self.logged_in(user, Vec::new(), now)
        } else {
            Step::Failed {
                message: PLAIN_FAILED.to_owned(),
                reason: "invalid username or password".to_owned(),
                user: Some(user.to_owned()),
            }
        }
    }

    /// The outcome of an OAUTHBEARER login whose token was checked: the token's subject and
    /// how long it stays valid (the session ends then, or sooner with a session lifetime), or
    /// why it was refused.
    pub fn bearer_checked(
        &mut self,
        checked: Result<(String, Duration), String>,
        now: Instant,
    ) -> Step {
        self.state = State::Idle;
        match checked {
            Ok((subject, valid_for)) => {
                self.logged_in_until(&subject, Vec::new(), now, Some(valid_for))
            }
            Err(reason) => Step::Failed {
                message: "Authentication failed: invalid or expired token".to_owned(),
                reason,
                user: None,
            },
        }
    }

    fn logged_in(&mut self, user: &str, token: Vec<u8>, now: Instant) -> Step {
        self.logged_in_until(user, token, now, None)
    }

    /// A login as `user`, its session no longer than `valid_for` (a token's remaining life).
    fn logged_in_until(
        &mut self,
        user: &str,
        token: Vec<u8>,
        now: Instant,
        valid_for: Option<Duration>,
    ) -> Step {
        let principal = Principal::user(user);
        // Re-authentication keeps the principal (KIP-368).
        if let Some((before, _)) = self.session.as_ref().filter(|(p, _)| *p != principal) {
            return Step::Failed {
                message: "Cannot change principals during re-authentication".to_owned(),
                reason: format!("re-authentication as {principal} on a connection of {before}"),
                user: Some(user.to_owned()),
            };
        }
        let lifetime = match (self.config.session_lifetime, valid_for) {
            (Some(configured), Some(token)) => Some(configured.min(token)),
            (configured, token) => configured.or(token),
        };
        self.session = Some((principal.clone(), lifetime.map(|l| now + l)));
        Step::Done {
            token,
            principal,
            session_lifetime: lifetime,
        }
    }

    /// Whether a request of `api` is served now, and as whom.
    pub fn admit(&self, api: kafka_protocol::messages::ApiKey, now: Instant) -> Admission {
        use kafka_protocol::messages::ApiKey;
        let sasl = matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        match &self.session {
            _ if sasl => Admission::Serve(
                self.session
                    .as_ref()
                    .map_or_else(Principal::anonymous, |(p, _)| p.clone()),
            ),
            _ if matches!(self.state, State::Negotiated { .. }) => {
                Admission::Close("a request in the middle of a SASL exchange")
            }
            None => Admission::Close("a request before SASL authentication"),
            Some((_, Some(ends))) if now >= *ends => {
                Admission::Close("a request after the SASL session expired")
            }
            Some((principal, _)) => Admission::Serve(principal.clone()),
        }
    }
}

/// What a client is told when a PLAIN login fails (Kafka's words).
const PLAIN_FAILED: &str = "Authentication failed: Invalid username or password";

fn failed(mechanism: Option<ScramMechanism>, reason: &str, user: Option<String>) -> Step {
    Step::Failed {
        message: match mechanism {
            Some(mechanism) => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
            ),
            None => "Authentication failed".to_owned(),
        },
        reason: reason.to_owned(),
        user,
    }
}

/// Checks an OAUTHBEARER token against the key set `oauth` names (read now, so a rotated file
/// is used at once): the subject and how long the token stays valid, or why it is refused.
/// Reads a file: run it off the request path.
pub fn check_token(oauth: &OAuthConfig, token: &str) -> Result<(String, Duration), String> {
    let json = std::fs::read(&oauth.jwks)
        .map_err(|error| format!("reading {}: {error}", oauth.jwks.display()))?;
    let keys = super::oauth::Jwks::parse(&json)
        .map_err(|error| format!("{}: {error}", oauth.jwks.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let validated =
        super::oauth::validate(token, &keys, &oauth.expected, now).map_err(|e| e.to_string())?;
    Ok((
        validated.subject,
        Duration::from_secs(validated.expires_at.saturating_sub(now)),
    ))
}

/// Checks a PLAIN password against the user's stored SCRAM credentials (the strongest one it
/// has). Costs a PBKDF2 derivation: run it off the request path.
pub fn verify_plain(image: &MetadataImage, user: &str, password: &[u8]) -> bool {
    let stored: Option<(ScramMechanism, ScramCredential)> =
        [ScramMechanism::Sha512, ScramMechanism::Sha256]
            .into_iter()
            .find_map(|m| image.scram_credential(user, m).map(|c| (m, c.clone())));
    match stored {
        Some((mechanism, credential)) => credential.verifies(mechanism, password),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::cluster::{MetadataRecord, UserScramCredential};

    fn image() -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        image
            .apply(&MetadataRecord::SetScramCredential(UserScramCredential {
                user: "alice".to_owned(),
                mechanism: ScramMechanism::Sha256,
                credential: ScramCredential::from_password(
                    ScramMechanism::Sha256,
                    b"secret",
                    b"salt",
                    4096,
                ),
            }))
            .unwrap();
        image
    }

    fn config(lifetime: Option<Duration>) -> Arc<SaslConfig> {
        Arc::new(SaslConfig {
            mechanisms: vec![Mechanism::Scram(ScramMechanism::Sha256), Mechanism::Plain],
            session_lifetime: lifetime,
            oauth: None,
        })
    }

    #[test]
    fn only_sasl_requests_are_served_before_a_login() {
        let now = Instant::now();
        let mut auth = Authenticator::new(config(None));
        assert_eq!(
            auth.admit(ApiKey::ApiVersions, now),
            Admission::Serve(Principal::anonymous())
        );
        assert!(matches!(
            auth.admit(ApiKey::Metadata, now),
            Admission::Close(_)
        ));
        assert_eq!(
            auth.handshake("SCRAM-SHA-512", false),
            Err(HandshakeError::Unsupported("SCRAM-SHA-512".to_owned()))
        );
        auth.handshake("PLAIN", false).unwrap();
        assert_eq!(
            auth.handshake("PLAIN", false),
            Err(HandshakeError::IllegalState)
        );
        assert!(matches!(
            auth.admit(ApiKey::Produce, now),
            Admission::Close(_)
        ));
        let (user, password) = auth.plain_login(b"\0alice\0secret").unwrap().unwrap();
        let verified = verify_plain(&image(), &user, &password);
        assert!(matches!(
            auth.plain_checked(&user, verified, now),
            Step::Done { .. }
        ));
        assert_eq!(
            auth.admit(ApiKey::Produce, now),
            Admission::Serve(Principal::user("alice"))
        );
    }

    #[test]
    fn a_wrong_plain_password_or_unknown_user_fails() {
        let image = image();
        assert!(!verify_plain(&image, "alice", b"wrong"));
        assert!(!verify_plain(&image, "nobody", b"secret"));
        let mut auth = Authenticator::new(config(None));
        auth.handshake("PLAIN", true).unwrap();
        assert!(auth.expects_raw_token());
        let Step::Failed { message, .. } = auth.plain_checked("alice", false, Instant::now())
        else {
            panic!()
        };
        assert_eq!(
            message,
            "Authentication failed: Invalid username or password"
        );
        assert!(!auth.expects_raw_token());
    }

    #[test]
    fn a_session_ends_and_re_authentication_keeps_the_principal() {
        let image = image();
        let start = Instant::now();
        let mut auth = Authenticator::new(config(Some(Duration::from_secs(60))));
        let login = |auth: &mut Authenticator, user: &str, at: Instant| {
            auth.handshake("PLAIN", false).unwrap();
            let (user, password) = auth
                .plain_login(format!("\0{user}\0secret").as_bytes())
                .unwrap()
                .unwrap();
            let verified = verify_plain(&image, &user, &password) || user == "bob";
            auth.plain_checked(&user, verified, at)
        };
        let Step::Done {
            session_lifetime, ..
        } = login(&mut auth, "alice", start)
        else {
            panic!()
        };
        assert_eq!(session_lifetime, Some(Duration::from_secs(60)));
        let later = start + Duration::from_secs(61);
        assert!(matches!(
            auth.admit(ApiKey::Fetch, later),
            Admission::Close(_)
        ));
        // Re-authenticating renews the session...
        assert!(matches!(
            login(&mut auth, "alice", later),
            Step::Done { .. }
        ));
        assert_eq!(
            auth.admit(ApiKey::Fetch, later),
            Admission::Serve(Principal::user("alice"))
        );
        // ...but not as someone else.
        assert!(matches!(
            login(&mut auth, "bob", later),
            Step::Failed { .. }
        ));
    }

    #[test]
    fn a_token_login_lasts_no_longer_than_its_token() {
        let now = Instant::now();
        for (configured, token, expected) in
            [(None, 300, 300), (Some(60), 300, 60), (Some(600), 300, 300)]
        {
            let mut auth = Authenticator::new(Arc::new(SaslConfig {
                mechanisms: vec![Mechanism::OAuthBearer],
                session_lifetime: configured.map(Duration::from_secs),
                oauth: None,
            }));
            auth.handshake("OAUTHBEARER", false).unwrap();
            assert_eq!(
                auth.bearer_login(b"n,,\x01auth=Bearer a.b.c\x01\x01"),
                Some(Ok("a.b.c".to_owned()))
            );
            let Step::Done {
                principal,
                session_lifetime,
                ..
            } = auth.bearer_checked(
                Ok((
                    "system:serviceaccount:ns:app".to_owned(),
                    Duration::from_secs(token),
                )),
                now,
            )
            else {
                panic!()
            };
            assert_eq!(principal.to_string(), "User:system:serviceaccount:ns:app");
            assert_eq!(session_lifetime, Some(Duration::from_secs(expected)));
            let after = now + Duration::from_secs(expected);
            assert!(matches!(
                auth.admit(ApiKey::Fetch, after),
                Admission::Close(_)
            ));
        }
        let mut auth = Authenticator::new(config(None));
        assert_eq!(auth.bearer_login(b"x"), None, "not negotiated");
        auth.handshake("PLAIN", false).unwrap();
        assert!(matches!(
            auth.bearer_checked(Err("expired".to_owned()), now),
            Step::Failed { .. }
        ));
    }

    #[test]
    fn scram_logs_in_through_the_authenticator() {
        use base64::Engine;
        let base64 = base64::engine::general_purpose::STANDARD;
        let image = image();
        let now = Instant::now();
        let mut auth = Authenticator::new(config(None));
        auth.handshake("SCRAM-SHA-256", false).unwrap();
        let Step::Continue(first) = auth.authenticate(b"n,,n=alice,r=abc", &image, now) else {
            panic!()
        };
        let first = String::from_utf8(first).unwrap();
        let nonce = first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        // The client's proof, as RFC 5802 computes it.
        let mechanism = ScramMechanism::Sha256;
        let salted = ScramCredential::salted_password(mechanism, b"secret", b"salt", 4096);
        let key = |k: &[u8], d: &[u8]| {
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k), d)
                .as_ref()
                .to_vec()
        };
        let client_key = key(&salted, b"Client Key");
        let stored = ring::digest::digest(&ring::digest::SHA256, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=alice,r=abc,{first},{without_proof}");
        let signature = key(stored.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let last = format!("{without_proof},p={}", base64.encode(proof));
        let Step::Done { principal, .. } = auth.authenticate(last.as_bytes(), &image, now) else {
            panic!()
        };
        assert_eq!(principal, Principal::user("alice"));
        assert_eq!(
            auth.admit(ApiKey::Metadata, now),
            Admission::Serve(Principal::user("alice"))
        );
    }
}
