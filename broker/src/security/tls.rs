//! TLS on the Kafka listener (Kafka's SSL listener): rustls on the ring provider, a certificate
//! chain and key from PEM files, and, with a client CA, mutual TLS: a client must present a
//! certificate the CA signed, and its principal is `User:` plus the certificate's subject as
//! Kafka writes it (RFC 2253, most specific part first: `CN=writer,OU=eng,O=Fjord`).
//!
//! The files are re-read while the broker runs: Kubernetes rotates a mounted Secret by swapping
//! its files in place, and new connections get the new certificate without a restart.
//! Connections already open keep the session they have. A rotation that leaves the files
//! unreadable or inconsistent (a key that does not match the certificate, half-written files)
//! keeps the last good configuration, with a log line, until the files are whole again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::Principal;
use crate::metrics::Metrics;

/// The PEM files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the listener's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// With it, clients must present a certificate this CA (bundle) signed.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what}")]
    Missing { path: PathBuf, what: &'static str },
    #[error("{path} is not valid PEM")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the client CA in {path} is refused")]
    ClientCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the certificate and key are refused")]
    Config(#[source] rustls::Error),
    #[error("building the client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The bytes of the files, as last read: a rotation is a change of these.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    pub(super) client_ca: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Loaded {
    contents: Contents,
    config: Arc<ServerConfig>,
}

/// A TLS listener's configuration, kept in step with its files.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    loaded: ArcSwap<Loaded>,
}

/// How often the files are checked for a rotation.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// How long a client has to complete the handshake: an unauthenticated connection holds a
/// connection slot and its buffers only this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ServerTls {
    /// Loads `files`; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let contents = read(&files)?;
        let config = server_config(&files, &contents)?;
        Ok(Self {
            files,
            loaded: ArcSwap::from_pointee(Loaded { contents, config }),
        })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration new connections get.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.loaded.load().config))
    }

    /// Re-reads the files: `Ok(true)` when they changed and the new configuration is in use,
    /// `Ok(false)` when they are as before, an error (the old configuration stays) when they
    /// changed into something unusable.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = read(&self.files)?;
        if contents == self.loaded.load().contents {
            return Ok(false);
        }
        let config = server_config(&self.files, &contents)?;
        self.loaded.store(Arc::new(Loaded { contents, config }));
        Ok(true)
    }

    /// Reloads on a rotation of the files, counting each in `metrics`, until `shutdown`.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
        // A failure is logged once per distinct failure, not every interval.
        let mut failing: Option<String> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RELOAD_INTERVAL) => {}
            }
            let tls = Arc::clone(&self);
            let reloaded = tokio::task::spawn_blocking(move || tls.reload()).await;
            match reloaded {
                Ok(Ok(changed)) => {
                    if changed {
                        metrics.certificate_reload(true);
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed: new connections get the new certificate");
                    }
                    failing = None;
                }
                Ok(Err(error)) => {
                    let message = format!("{:#}", anyhow::Error::new(error));
                    if failing.as_ref() != Some(&message) {
                        metrics.certificate_reload(false);
                        tracing::warn!(error = %message, "TLS certificate files changed but cannot be used; the previous certificate stays in use");
                        failing = Some(message);
                    }
                }
                Err(error) => tracing::warn!(%error, "reloading the TLS certificate files failed"),
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
    Ok(Contents {
        cert: read_file(&files.cert)?,
        key: read_file(&files.key)?,
        client_ca: files.client_ca.as_deref().map(read_file).transpose()?,
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The ring provider, the one rustls is built with here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain and private key of `files`, as `contents` holds them.
pub(super) fn identity(
    files: &TlsFiles,
    contents: &Contents,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(&files.cert, &contents.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            path: files.key.clone(),
            what: "private key",
        },
        source => TlsError::Pem {
            path: files.key.clone(),
            source,
        },
    })?;
    Ok((chain, key))
}

/// The CA bundle `pem` (read from `path`) as trust roots.
pub(super) fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(path, pem)? {
        roots.add(ca).map_err(|source| TlsError::ClientCa {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

fn server_config(files: &TlsFiles, contents: &Contents) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = identity(files, contents)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match (&files.client_ca, &contents.client_ca) {
        (Some(path), Some(pem)) => {
            let roots = roots(path, pem)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(TlsError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// The principal of a client that presented `certificates` (its own first): `User:` and the
/// subject of its certificate in RFC 2253 form, as Kafka's default principal builder names it;
/// `User:ANONYMOUS` without a certificate (or one whose subject cannot be read, which the
/// verifier would have refused).
pub fn principal(certificates: Option<&[CertificateDer<'_>]>) -> Principal {
    certificates
        .and_then(|certs| certs.first())
        .and_then(|cert| subject(cert.as_ref()))
        .map_or_else(Principal::anonymous, |name| Principal::user(&name))
}

/// The subject of the DER certificate `der` in RFC 2253 form.
fn subject(der: &[u8]) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::ToDer;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let value = attribute.attr_value();
                    match (keyword(&oid), value.as_str()) {
                        (Some(keyword), Ok(text)) => format!("{keyword}={}", escape(text)),
                        // Unknown attribute types, or values that are not strings: the OID and
                        // the value's DER in hex (RFC 2253, 2.4).
                        _ => format!("{oid}=#{}", hex(&value.to_der_vec().unwrap_or_default())),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // RFC 2253 writes the last RDN of the sequence first.
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The keywords RFC 2253 (and Java's `X500Principal`) write for these attribute types.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// Escapes an attribute value as RFC 2253, 2.4 asks.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a certificate it signed for `subject`.
    struct Issued {
        cert_pem: String,
        key_pem: String,
    }

    fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let cert = params.self_signed(&key).unwrap();
        (rcgen::Issuer::new(params, key), cert.pem())
    }

    fn issue(
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        names: &[(rcgen::DnType, &str)],
    ) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let cert = params.signed_by(&key, issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_certificate_subject_reads_as_kafka_names_it() {
        let (issuer, _) = ca();
        let client = issue(
            &issuer,
            &[
                (rcgen::DnType::CountryName, "NO"),
                (rcgen::DnType::OrganizationName, "Fjord, Inc."),
                (rcgen::DnType::OrganizationalUnitName, "eng"),
                (rcgen::DnType::CommonName, "writer"),
            ],
        );
        let cert = der(&client.cert_pem);
        assert_eq!(
            principal(Some(std::slice::from_ref(&cert))).to_string(),
            "User:CN=writer,OU=eng,O=Fjord\\, Inc.,C=NO"
        );
        assert_eq!(principal(None), Principal::anonymous());
        assert_eq!(principal(Some(&[])), Principal::anonymous());
        assert_eq!(
            principal(Some(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])])),
            Principal::anonymous()
        );
    }

    #[test]
    fn rfc_2253_escapes() {
        assert_eq!(
            escape("a,b+c\"d\\e<f>g;h"),
            "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"
        );
        assert_eq!(escape("#lead "), "\\#lead\\ ");
        assert_eq!(escape(" x"), "\\ x");
        assert_eq!(escape(""), "");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_a_rotation_is_taken_up() {
        let dir = tempfile::tempdir().unwrap();
        let (issuer, ca_pem) = ca();
        let first = issue(&issuer, &[(rcgen::DnType::CommonName, "broker")]);
        let files = TlsFiles {
            cert: write(dir.path(), "tls.crt", &first.cert_pem),
            key: write(dir.path(), "tls.key", &first.key_pem),
            client_ca: Some(write(dir.path(), "ca.crt", &ca_pem)),
        };
        let tls = ServerTls::load(files.clone()).unwrap();
        assert!(tls.requires_client_certificates());
        assert!(!tls.reload().unwrap(), "nothing changed");

        // A rotation: new certificate and key.
        let second = issue(&issuer, &[(rcgen::DnType::CommonName, "broker")]);
        std::fs::write(&files.cert, &second.cert_pem).unwrap();
        // Half done (the key is still the old one): refused, the old configuration stays.
        let half = tls.reload().unwrap_err();
        assert!(matches!(half, TlsError::Config(_)), "{half:?}");
        std::fs::write(&files.key, &second.key_pem).unwrap();
        assert!(tls.reload().unwrap());

        let missing = TlsFiles {
            cert: dir.path().join("none.crt"),
            ..files.clone()
        };
        let error = ServerTls::load(missing).unwrap_err();
        assert!(error.to_string().contains("none.crt"), "{error}");
        let garbage = TlsFiles {
            key: write(dir.path(), "garbage.key", "not a key"),
            ..files.clone()
        };
        let error = ServerTls::load(garbage).unwrap_err();
        assert!(
            error.to_string().contains("garbage.key") && error.to_string().contains("private key"),
            "{error}"
        );
        let no_ca = TlsFiles {
            client_ca: Some(write(dir.path(), "empty.crt", "")),
            ..files
        };
        let error = ServerTls::load(no_ca).unwrap_err();
        assert!(error.to_string().contains("empty.crt"), "{error}");
    }
}
