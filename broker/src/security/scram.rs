//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka's SCRAM-SHA-256 and
//! SCRAM-SHA-512 use it (KIP-84): the stored credential, and the server side of one exchange.
//!
//! A credential is what the cluster metadata keeps for a user and mechanism: the salt, the
//! iteration count and two keys derived from the password (`StoredKey`, `ServerKey`), never the
//! password. The exchange is two round trips:
//!
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>          -> server-first r=<client+server nonce>,s=<salt>,i=<iterations>
//! client-final  c=biws,r=<nonce>,p=<proof>            -> server-final v=<server signature>
//! ```
//!
//! The server checks the nonce (so a client-final from another exchange, replayed, fails), the
//! channel-binding header and the proof. An unknown user goes through the same steps with a
//! made-up credential and fails at the proof, as a wrong password does: the answers do not tell
//! which users exist.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

/// A SCRAM mechanism Kafka names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

/// The fewest iterations a credential may have (Kafka's bound, RFC 7677's recommendation).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most iterations a credential may have (Kafka's bound).
pub const MAX_ITERATIONS: u32 = 16384;

impl ScramMechanism {
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The number AlterUserScramCredentials and DescribeUserScramCredentials give it.
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(value: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == value)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    /// The length of its keys and proofs.
    pub fn key_len(self) -> usize {
        self.digest().output_len()
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn hmac_sign(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(mechanism.hmac(), key), data)
        .as_ref()
        .to_vec()
}

/// What the cluster keeps for one user and mechanism.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for `SaltedPassword` (`Hi(password, salt, iterations)`), as
    /// AlterUserScramCredentials sends it.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        iterations: u32,
        salted_password: &[u8],
    ) -> Self {
        let client_key = hmac_sign(mechanism, salted_password, b"Client Key");
        let stored_key = digest::digest(mechanism.digest(), &client_key)
            .as_ref()
            .to_vec();
        let server_key = hmac_sign(mechanism, salted_password, b"Server Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key,
            server_key,
        }
    }

    /// `Hi(password, salt, iterations)`.
    pub fn salted_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        let mut salted = vec![0; mechanism.key_len()];
        let rounds =
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(mechanism.pbkdf2(), rounds, salt, password, &mut salted);
        salted
    }

    /// The credential for `password`, with `salt` and `iterations`.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = Self::salted_password(mechanism, password, salt, iterations);
        Self::from_salted_password(mechanism, salt, iterations, &salted)
    }

    /// The credential for `password` with a new random salt and [`MIN_ITERATIONS`].
    pub fn new(mechanism: ScramMechanism, password: &[u8]) -> Self {
        let mut salt = [0; 32];
        random(&mut salt);
        Self::from_password(mechanism, password, &salt, MIN_ITERATIONS)
    }

    /// Whether `password` is the one this credential was made from (PLAIN checks a password
    /// against the stored SCRAM credentials). Compared in constant time.
    pub fn verifies(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let candidate = Self::from_password(mechanism, password, &self.salt, self.iterations);
        same_bytes(&candidate.stored_key, &self.stored_key)
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |differ, (x, y)| differ | (x ^ y)) == 0
}

fn random(buffer: &mut [u8]) {
    // The system's random source failing is not something a broker can go on without.
    #[allow(clippy::expect_used)]
    ring::rand::SystemRandom::new()
        .fill(buffer)
        .expect("the system random source");
}

/// Why an exchange failed. The client is told only that authentication failed; the reason is
/// for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM {0} message")]
    Malformed(&'static str),
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM delegation-token authentication is not supported")]
    TokenAuth,
    #[error("the SCRAM nonce does not match this exchange's")]
    Nonce,
    #[error("invalid credentials")]
    Credentials,
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    step: Step,
}

enum Step {
    First,
    Final(Box<Pending>),
    Done,
}

/// An exchange between its first and final messages.
struct Pending {
    user: String,
    known: bool,
    client_first_bare: String,
    server_first: String,
    /// The client's nonce and the server's, in that order.
    nonce: String,
    /// The length of the client's part of `nonce`.
    client_nonce_len: usize,
    gs2_header: String,
    credential: ScramCredential,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::First => "First",
            Self::Final(_) => "Final",
            Self::Done => "Done",
        })
    }
}

/// A made-up credential for a user the cluster does not know, stable for the life of the
/// process, so the salt does not vary from one attempt to the next and give the user away.
fn unknown_user_credential(mechanism: ScramMechanism, user: &str) -> ScramCredential {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0; 32];
        random(&mut key);
        key
    });
    let salt = hmac_sign(ScramMechanism::Sha256, key, user.as_bytes());
    let mut keys = vec![0; mechanism.key_len()];
    random(&mut keys);
    ScramCredential {
        salt,
        iterations: MIN_ITERATIONS,
        stored_key: keys.clone(),
        server_key: keys,
    }
}

/// `saslname` of RFC 5802: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_name(name: &str) -> Option<String> {
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        decoded.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    Some(decoded)
}

/// The attributes of a SCRAM message (`a=value` separated by commas), in order.
fn attributes(message: &str) -> Option<Vec<(char, &str)>> {
    message
        .split(',')
        .map(|part| {
            let mut chars = part.chars();
            let name = chars.next()?;
            (chars.next()? == '=' && name.is_ascii_alphabetic()).then(|| (name, &part[2..]))
        })
        .collect()
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self {
            mechanism,
            step: Step::First,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the client-first message; answers the server-first message. `credential` looks
    /// up the stored credential of a user for this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        credential: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.step, Step::First) {
            return Err(ScramError::OutOfOrder);
        }
        self.step = Step::Done;
        let malformed = ScramError::Malformed("client-first");
        let message = std::str::from_utf8(message).map_err(|_| malformed.clone())?;
        // gs2-header: the channel-binding flag, an optional authzid, then the bare message.
        let mut parts = message.splitn(3, ',');
        let (flag, authzid, bare) = (
            parts.next().ok_or(malformed.clone())?,
            parts.next().ok_or(malformed.clone())?,
            parts.next().ok_or(malformed.clone())?,
        );
        match flag {
            "n" | "y" => {}
            flag if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(malformed),
        }
        // n=<user>,r=<nonce>, then Kafka's extensions as key=value.
        let mut fields = bare.split(',');
        let (Some(user), Some(client_nonce)) = (
            fields.next().and_then(|f| f.strip_prefix("n=")),
            fields.next().and_then(|f| f.strip_prefix("r=")),
        ) else {
            return Err(malformed);
        };
        let user = decode_name(user).ok_or(malformed.clone())?;
        if user.is_empty()
            || client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(malformed);
        }
        // The authzid, if any, must name the same user (Kafka's rule).
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_name(authzid).as_deref() != Some(user.as_str()) {
                return Err(ScramError::Credentials);
            }
        } else if !authzid.is_empty() {
            return Err(malformed);
        }
        for extension in fields {
            let (key, value) = extension.split_once('=').ok_or(malformed.clone())?;
            // Kafka's delegation tokens: there are none here.
            if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(ScramError::TokenAuth);
            }
        }
        let (credential, known) = match credential(&user) {
            Some(credential) => (credential, true),
            None => (unknown_user_credential(self.mechanism, &user), false),
        };
        let mut server_nonce = [0; 24];
        random(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let response = server_first.clone().into_bytes();
        self.step = Step::Final(Box::new(Pending {
            user,
            known,
            client_first_bare: bare.to_owned(),
            server_first,
            client_nonce_len: client_nonce.len(),
            nonce,
            gs2_header: format!("{flag},{authzid},"),
            credential,
        }));
        Ok(response)
    }

    /// Takes the client-final message; answers the server-final message and the user, who is
    /// then authenticated.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let Step::Final(pending) = std::mem::replace(&mut self.step, Step::Done) else {
            return Err(ScramError::OutOfOrder);
        };
        let Pending {
            user,
            known,
            client_first_bare,
            server_first,
            nonce,
            client_nonce_len,
            gs2_header,
            credential,
        } = *pending;
        let malformed = ScramError::Malformed("client-final");
        let message = std::str::from_utf8(message).map_err(|_| malformed.clone())?;
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or(malformed.clone())?;
        let attributes = attributes(without_proof).ok_or(malformed.clone())?;
        let (binding, client_nonce) = match attributes.as_slice() {
            [('c', binding), ('r', nonce), ..] => (*binding, *nonce),
            _ => return Err(malformed),
        };
        // librdkafka before 2.6.1 sends its own nonce again in front of the whole nonce
        // (confluentinc/librdkafka#4895; Kafka 3.8.1 to 3.9 took it, Kafka 4 refuses it). That
        // exact form is taken too: it still echoes this exchange's fresh server nonce, so a
        // replayed message fails all the same.
        let doubled = client_nonce.strip_prefix(&nonce[..client_nonce_len]) == Some(nonce.as_str());
        if client_nonce != nonce && !doubled {
            return Err(ScramError::Nonce);
        }
        if BASE64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        let proof = BASE64.decode(proof).map_err(|_| malformed.clone())?;
        if proof.len() != self.mechanism.key_len() {
            return Err(malformed);
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sign(
            self.mechanism,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored_key = digest::digest(self.mechanism.digest(), &client_key);
        let matches = same_bytes(stored_key.as_ref(), &credential.stored_key);
        if !(matches && known) {
            return Err(ScramError::Credentials);
        }
        let server_signature = hmac_sign(
            self.mechanism,
            &credential.server_key,
            auth_message.as_bytes(),
        );
        Ok((
            user,
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        ))
    }

    /// The user of the exchange once its client-first message was taken.
    pub fn user(&self) -> Option<&str> {
        match &self.step {
            Step::Final(pending) => Some(&pending.user),
            _ => None,
        }
    }
}

/// A SASL/PLAIN message (RFC 4616): `authzid NUL authcid NUL password`, the authzid empty or
/// the same user (Kafka's rule). Returns the user and the password.
pub fn parse_plain(message: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
    let malformed = ScramError::Malformed("PLAIN");
    let mut parts = message.split(|b| *b == 0);
    let (authzid, user, password) = (
        parts.next().ok_or(malformed.clone())?,
        parts.next().ok_or(malformed.clone())?,
        parts.next().ok_or(malformed.clone())?,
    );
    if parts.next().is_some() || user.is_empty() {
        return Err(malformed);
    }
    let user = std::str::from_utf8(user).map_err(|_| malformed.clone())?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(ScramError::Credentials);
    }
    Ok((user.to_owned(), password.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, as RFC 5802 computes it, for the tests.
    fn client_proof(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
        auth_message: &str,
    ) -> (Vec<u8>, Vec<u8>) {
        let salted =
            ScramCredential::salted_password(mechanism, password.as_bytes(), salt, iterations);
        let credential =
            ScramCredential::from_salted_password(mechanism, salt, iterations, &salted);
        let client_key = hmac_sign(mechanism, &salted, b"Client Key");
        let signature = hmac_sign(mechanism, &credential.stored_key, auth_message.as_bytes());
        let proof = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server = hmac_sign(mechanism, &credential.server_key, auth_message.as_bytes());
        (proof, server)
    }

    /// Runs one exchange for `user` with `password` against the stored `credential`; the
    /// server-final message, or the error.
    fn exchange(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        stored: Option<ScramCredential>,
    ) -> Result<(String, Vec<u8>), ScramError> {
        let mut server = ScramServer::new(mechanism);
        let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let first = server.client_first(format!("n,,{bare}").as_bytes(), |name| {
            assert_eq!(name, user.replace("=2C", ",").replace("=3D", "="));
            stored
        })?;
        let first = String::from_utf8(first).unwrap();
        let attrs = attributes(&first).unwrap();
        let (nonce, salt, iterations) = (
            attrs[0].1,
            BASE64.decode(attrs[1].1).unwrap(),
            attrs[2].1.parse().unwrap(),
        );
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{first},{without_proof}");
        let (proof, expected_server) =
            client_proof(mechanism, password, &salt, iterations, &auth_message);
        let (authenticated, last) = server
            .client_final(format!("{without_proof},p={}", BASE64.encode(proof)).as_bytes())?;
        assert_eq!(
            last,
            format!("v={}", BASE64.encode(expected_server)).into_bytes()
        );
        Ok((authenticated, last))
    }

    #[test]
    fn rfc_7677_test_vector_derives_the_same_keys() {
        // RFC 7677, section 3: user "user", password "pencil", this salt, 4096 iterations.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let (proof, server) =
            client_proof(ScramMechanism::Sha256, "pencil", &salt, 4096, auth_message);
        assert_eq!(
            BASE64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            BASE64.encode(server),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(credential.verifies(ScramMechanism::Sha256, b"pencil"));
        assert!(!credential.verifies(ScramMechanism::Sha256, b"pen"));
    }

    #[test]
    fn a_right_password_authenticates_and_a_wrong_one_or_an_unknown_user_does_not() {
        for mechanism in ScramMechanism::ALL {
            let stored = ScramCredential::new(mechanism, b"secret");
            let (user, _) = exchange(mechanism, "alice", "secret", Some(stored.clone())).unwrap();
            assert_eq!(user, "alice");
            assert_eq!(
                exchange(mechanism, "alice", "wrong", Some(stored.clone())).unwrap_err(),
                ScramError::Credentials
            );
            // Unknown: the same steps, the same failure.
            assert_eq!(
                exchange(mechanism, "mallory", "secret", None).unwrap_err(),
                ScramError::Credentials
            );
            // Escaped names.
            let (user, _) = exchange(mechanism, "a=2Cb=3Dc", "secret", Some(stored)).unwrap();
            assert_eq!(user, "a,b=c");
        }
    }

    #[test]
    fn an_unknown_user_gets_the_same_salt_every_time() {
        let salt_of = || {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            let first = server.client_first(b"n,,n=nobody,r=abc", |_| None).unwrap();
            let first = String::from_utf8(first).unwrap();
            attributes(&first).unwrap()[1].1.to_owned()
        };
        assert_eq!(salt_of(), salt_of());
    }

    /// librdkafka before 2.6.1 (Debian's kcat has 2.0.2) repeats its nonce in front of the
    /// whole nonce: taken, with the proof computed over the message as sent.
    #[test]
    fn old_librdkafka_s_doubled_nonce_is_taken() {
        let mechanism = ScramMechanism::Sha512;
        let stored = ScramCredential::from_password(mechanism, b"secret", b"salt", 4096);
        let mut server = ScramServer::new(mechanism);
        let first = server
            .client_first(b"n,,n=admin,r=cnonce", |_| Some(stored.clone()))
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let nonce = attributes(&first).unwrap()[0].1.to_owned();
        let without_proof = format!("c=biws,r=cnonce{nonce}");
        let auth_message = format!("n=admin,r=cnonce,{first},{without_proof}");
        let (proof, _) = client_proof(mechanism, "secret", b"salt", 4096, &auth_message);
        let (user, _) = server
            .client_final(format!("{without_proof},p={}", BASE64.encode(proof)).as_bytes())
            .unwrap();
        assert_eq!(user, "admin");
        // Anything else around the nonce is not.
        let mut server = ScramServer::new(mechanism);
        server
            .client_first(b"n,,n=admin,r=cnonce", |_| Some(stored.clone()))
            .unwrap();
        let padded = format!("c=biws,r=x{nonce},p={}", BASE64.encode([0; 64]));
        assert_eq!(
            server.client_final(padded.as_bytes()).unwrap_err(),
            ScramError::Nonce
        );
    }

    #[test]
    fn a_replayed_final_message_or_one_out_of_order_fails() {
        let mechanism = ScramMechanism::Sha256;
        let stored = ScramCredential::new(mechanism, b"secret");
        // A final message made for another exchange's nonce.
        let mut server = ScramServer::new(mechanism);
        server
            .client_first(b"n,,n=alice,r=abc", |_| Some(stored.clone()))
            .unwrap();
        let replayed = format!("c=biws,r=abcOTHER,p={}", BASE64.encode([0; 32]));
        assert_eq!(
            server.client_final(replayed.as_bytes()).unwrap_err(),
            ScramError::Nonce
        );
        // After a failure (or success) the exchange is over.
        assert_eq!(
            server.client_final(replayed.as_bytes()).unwrap_err(),
            ScramError::OutOfOrder
        );
        assert_eq!(
            ScramServer::new(mechanism)
                .client_final(b"c=biws,r=a,p=AAAA")
                .unwrap_err(),
            ScramError::OutOfOrder
        );
    }

    #[test]
    fn malformed_and_unsupported_first_messages_are_refused() {
        let cases: [(&[u8], ScramError); 9] = [
            (b"", ScramError::Malformed("client-first")),
            (b"n,,", ScramError::Malformed("client-first")),
            (b"x,,n=a,r=b", ScramError::Malformed("client-first")),
            (b"n,,r=b,n=a", ScramError::Malformed("client-first")),
            (b"n,,n=a=4,r=b", ScramError::Malformed("client-first")),
            (b"n,,n=a,r=", ScramError::Malformed("client-first")),
            (b"p=tls-unique,,n=a,r=b", ScramError::ChannelBinding),
            (b"n,a=b,n=a,r=b", ScramError::Credentials),
            (b"n,,n=a,r=b,tokenauth=true", ScramError::TokenAuth),
        ];
        for (message, expected) in cases {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            assert_eq!(
                server.client_first(message, |_| None).unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(message)
            );
        }
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        assert!(server.client_first(&[0xff, 0xfe], |_| None).is_err());
    }

    #[test]
    fn plain_messages_parse_as_rfc_4616_has_them() {
        assert_eq!(
            parse_plain(b"\0alice\0secret").unwrap(),
            ("alice".to_owned(), b"secret".to_vec())
        );
        assert_eq!(
            parse_plain(b"alice\0alice\0pw").unwrap(),
            ("alice".to_owned(), b"pw".to_vec())
        );
        assert_eq!(
            parse_plain(b"bob\0alice\0pw").unwrap_err(),
            ScramError::Credentials
        );
        for bad in [&b""[..], b"\0alice", b"\0\0pw", b"\0a\0b\0c", b"\0\xff\0pw"] {
            assert!(parse_plain(bad).is_err(), "{bad:?}");
        }
    }
}
