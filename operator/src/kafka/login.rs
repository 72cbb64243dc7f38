//! How the admin client reaches a secured listener: TLS (trusting the cluster's CA, presenting a
//! certificate when the listener asks for one) and a SASL SCRAM-SHA-512 login (SaslHandshake v1
//! and SaslAuthenticate, RFC 5802 with the server's signature checked), after ApiVersions and
//! before any other request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use ring::{digest, hmac, pbkdf2};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::{Connection, KafkaError, ProtocolError, decode, str_bytes};

/// How the admin client connects to the brokers.
#[derive(Clone, Default)]
pub struct AdminSecurity {
    /// TLS with this configuration (trusted CA, client certificate if any); plaintext without.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// A SASL SCRAM-SHA-512 login as this user with this password.
    pub scram_sha_512: Option<(String, String)>,
}

impl std::fmt::Debug for AdminSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSecurity")
            .field("tls", &self.tls.is_some())
            .field(
                "scram_sha_512",
                &self.scram_sha_512.as_ref().map(|(user, _)| user),
            )
            .finish()
    }
}

impl AdminSecurity {
    /// A TLS configuration trusting the PEM CA bundle `ca`, presenting `identity` (PEM chain and
    /// key) when given.
    pub fn tls_config(
        ca: &[u8],
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| format!("the CA bundle: {e}"))?;
            roots.add(cert).map_err(|e| format!("the CA bundle: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA bundle holds no certificate".to_owned());
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let config = match identity {
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("the client certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| format!("the client key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// A connection to a broker, plaintext or TLS (`Either` reads and writes whichever it holds).
pub(super) type AdminStream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// `stream` to `addr` (`host:port`), through the TLS handshake if `tls` is set.
pub(super) async fn over(
    stream: TcpStream,
    addr: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<AdminStream> {
    let Some(config) = tls else {
        return Ok(Either::Left(stream));
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, stream)
        .await?;
    Ok(Either::Right(Box::new(stream)))
}

/// The broker's address at the other end of `stream`.
pub(super) fn peer_addr(stream: &AdminStream) -> io::Result<std::net::SocketAddr> {
    match stream {
        Either::Left(stream) => stream.peer_addr(),
        Either::Right(stream) => stream.get_ref().0.peer_addr(),
    }
}

/// A refused or broken login, as the error of the SASL API it happened in.
fn login_error(api: ApiKey, reason: impl Into<String>) -> KafkaError {
    KafkaError::Decode {
        api,
        source: ProtocolError::Codec {
            reason: reason.into(),
        },
    }
}

impl Connection {
    /// Logs in with SCRAM-SHA-512 as `user` (RFC 5802, no channel binding).
    pub(super) async fn login_scram_sha_512(
        &mut self,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let handshake = ApiKey::SaslHandshake;
        let version = self
            .version(handshake)
            .filter(|v| *v >= 1)
            .ok_or(KafkaError::UnsupportedVersion { api: handshake })?;
        let request = SaslHandshakeRequest::default().with_mechanism(str_bytes("SCRAM-SHA-512"));
        let body = self.exchange(handshake, &request, version, timeout).await?;
        let response: SaslHandshakeResponse = decode(handshake, body, version)?;
        if response.error_code != 0 {
            return Err(KafkaError::broker(handshake, response.error_code, None));
        }

        let nonce = super::random_bytes::<24>()
            .map(|bytes| STANDARD.encode(bytes))
            .ok_or_else(|| login_error(handshake, "the system's random source failed"))?;
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let server_first = self
            .authenticate(format!("n,,{client_first_bare}").into_bytes(), timeout)
            .await?;
        let authenticate = ApiKey::SaslAuthenticate;
        let (server_nonce, salt, iterations) =
            parse_server_first(&server_first, &nonce).map_err(|e| login_error(authenticate, e))?;
        let server_first = String::from_utf8_lossy(&server_first);
        // Up to 2^20 iterations of the server's choosing: off the async worker threads.
        let secret = password.as_bytes().to_vec();
        let salted = tokio::task::spawn_blocking(move || {
            let mut salted = [0u8; 64];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA512,
                iterations,
                &salt,
                &secret,
                &mut salted,
            );
            salted
        })
        .await
        .map_err(|_| login_error(authenticate, "deriving the salted password failed"))?;
        let key = hmac::Key::new(hmac::HMAC_SHA512, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA512, client_key.as_ref());
        let without_proof = format!("c=biws,r={server_nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let client_final = format!("{without_proof},p={}", STANDARD.encode(proof));
        let server_final = self
            .authenticate(client_final.into_bytes(), timeout)
            .await?;
        let server_key = hmac::sign(&key, b"Server Key");
        let expected = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        if !server_final_verifies(&server_final, expected.as_ref()) {
            return Err(login_error(
                authenticate,
                "the server did not prove it knows the credential",
            ));
        }
        Ok(())
    }

    /// One SaslAuthenticate round: the server's answer, or its refusal.
    async fn authenticate(
        &mut self,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, KafkaError> {
        let api = ApiKey::SaslAuthenticate;
        let version = self
            .version(api)
            .ok_or(KafkaError::UnsupportedVersion { api })?;
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
        let body = self.exchange(api, &request, version, timeout).await?;
        let response: SaslAuthenticateResponse = decode(api, body, version)?;
        if response.error_code != 0 {
            return Err(KafkaError::broker(
                api,
                response.error_code,
                response.error_message.as_ref(),
            ));
        }
        Ok(response.auth_bytes.to_vec())
    }
}

/// The server-first message's nonce (which must extend ours), salt and iteration count (at
/// most 2^20: a hostile count would keep the operator busy for ever).
pub(super) fn parse_server_first(
    message: &[u8],
    client_nonce: &str,
) -> Result<(String, Vec<u8>, std::num::NonZeroU32), &'static str> {
    let message =
        std::str::from_utf8(message).map_err(|_| "the server's first message is not UTF-8")?;
    let field = |key: &str| {
        message
            .split(',')
            .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let (Some(nonce), Some(salt), Some(iterations)) = (field("r"), field("s"), field("i")) else {
        return Err("a malformed server-first message");
    };
    if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
        return Err("the server's nonce does not extend ours");
    }
    let salt = STANDARD
        .decode(salt)
        .map_err(|_| "the salt is not base64")?;
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .and_then(std::num::NonZeroU32::new)
        .filter(|i| i.get() <= 1 << 20)
        .ok_or("an unusable iteration count")?;
    Ok((nonce.to_owned(), salt, iterations))
}

/// Whether the server-final message carries `expected`, the server's signature.
pub(super) fn server_final_verifies(message: &[u8], expected: &[u8]) -> bool {
    std::str::from_utf8(message)
        .ok()
        .and_then(|m| m.strip_prefix("v="))
        .and_then(|v| STANDARD.decode(v).ok())
        .is_some_and(|v| v == expected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn server_messages_are_checked() {
        let (nonce, salt, iterations) =
            parse_server_first(b"r=abcXYZ,s=c2FsdA==,i=4096", "abc").unwrap();
        assert_eq!(
            (nonce.as_str(), salt.as_slice(), iterations.get()),
            ("abcXYZ", &b"salt"[..], 4096)
        );
        for (message, why) in [
            (
                &b"r=xyz,s=c2FsdA==,i=4096"[..],
                "the server's nonce does not extend ours",
            ),
            (
                b"r=abc,s=c2FsdA==,i=4096",
                "the server's nonce does not extend ours",
            ),
            (b"r=abcX,s=!!,i=4096", "the salt is not base64"),
            (b"r=abcX,s=c2FsdA==,i=0", "an unusable iteration count"),
            (
                b"r=abcX,s=c2FsdA==,i=99999999",
                "an unusable iteration count",
            ),
            (b"r=abcX,i=4096", "a malformed server-first message"),
            (b"\xff", "the server's first message is not UTF-8"),
        ] {
            assert_eq!(parse_server_first(message, "abc").unwrap_err(), why);
        }
        assert!(server_final_verifies(b"v=c2ln", b"sig"));
        assert!(!server_final_verifies(b"v=c2ln", b"other"));
        assert!(!server_final_verifies(b"e=invalid-proof", b"sig"));
    }
}
