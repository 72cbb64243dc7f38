//! Certificates the operator issues for a Cluster whose `listeners.tls` names no Secret: a CA
//! it keeps in Secret `<name>-ca` (valid ten years, renewed as [`super::authority`] says), and
//! the brokers' certificate in Secret `<name>-tls` (`tls.crt`, `tls.key`, and `ca.crt`, the
//! trusted CAs), signed by it for the bootstrap Service and every broker pod, valid a year (and
//! never past its CA). The brokers' certificate is issued again when it is missing, unreadable,
//! within 30 days of its end, names other hosts than the Cluster needs, or the trusted CAs
//! changed; the brokers re-read the files, so a renewal needs no restart.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use super::authority::ensure_authority;
use super::validate::ValidatedCluster;
use crate::controller::{Context, Error, kube_error};

/// How long before its end the brokers' certificate is issued again.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
const CERTIFICATE_DAYS: i64 = 365;
const CA_DAYS: i64 = 3650;

/// The names the brokers' certificate carries: the bootstrap Service and, through the headless
/// Service, every broker pod (what clients and other brokers dial), short and fully qualified.
pub fn broker_names(cluster: &ValidatedCluster) -> Vec<String> {
    let bootstrap = format!("{}-bootstrap.{}.svc", cluster.name, cluster.namespace);
    let pods = format!("*.{}.{}.svc", cluster.headless_service(), cluster.namespace);
    vec![
        bootstrap.clone(),
        format!("{bootstrap}.cluster.local"),
        pods.clone(),
        format!("{pods}.cluster.local"),
    ]
}

pub fn failed(name: &str, problem: impl std::fmt::Display) -> Error {
    Error::Secret {
        name: name.to_owned(),
        problem: problem.to_string(),
    }
}

fn validity(params: &mut rcgen::CertificateParams, days: i64) {
    validity_from(params, time::OffsetDateTime::now_utc(), days);
}

fn validity_from(params: &mut rcgen::CertificateParams, now: time::OffsetDateTime, days: i64) {
    // An hour back: clocks of the nodes that check it may be behind the operator's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// A new CA named `common_name`: certificate and key, PEM.
pub fn new_ca(common_name: &str) -> Result<(String, String), rcgen::Error> {
    new_ca_at(common_name, time::OffsetDateTime::now_utc())
}

/// [`new_ca`], valid from `now`.
pub fn new_ca_at(
    common_name: &str,
    now: time::OffsetDateTime,
) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    // Each CA its own subject (the moment it was made): while two are trusted during a renewal,
    // OpenSSL-based clients pick a certificate's issuer by subject name.
    let made = now
        .replace_nanosecond(0)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{common_name} {made}"));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    validity_from(&mut params, now, CA_DAYS);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A client certificate for the subject `CN=<common_name>` (the principal
/// `User:CN=<common_name>`), signed by the CA `ca_cert`/`ca_key` (PEM): certificate and key, PEM.
pub fn issue_client(
    ca_cert: &str,
    ca_key: &str,
    common_name: &str,
) -> Result<(String, String), rcgen::Error> {
    sign(
        (ca_cert, ca_key),
        &[],
        common_name,
        vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
    )
}

/// Makes sure the clients CA of `cluster` exists and is current (Secret `<name>-clients-ca`),
/// before the brokers that trust it start. Returns what changed, if anything.
pub async fn ensure_clients_ca(
    context: &Context,
    cluster: &ValidatedCluster,
    metadata: impl Fn(&str) -> ObjectMeta,
) -> Result<Option<String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &cluster.namespace);
    let common_name = format!("Fjord clients CA {}/{}", cluster.namespace, cluster.name);
    let (_, changed) = ensure_authority(
        &secrets,
        &cluster.clients_ca_secret(),
        &common_name,
        metadata,
    )
    .await?;
    Ok(changed)
}

/// Sets a certificate's validity to `days` from now, and no later than its CA's end.
fn validity_under(params: &mut rcgen::CertificateParams, days: i64, ca_cert: &str) {
    validity(params, days);
    if let Some(end) = super::authority::not_after(ca_cert) {
        params.not_after = params.not_after.min(end);
    }
}

/// A certificate for `names`, for servers and clients alike (brokers are both to each other),
/// signed by the CA `ca_cert`/`ca_key` (PEM): certificate and key, PEM.
pub fn issue(
    ca_cert: &str,
    ca_key: &str,
    names: &[String],
) -> Result<(String, String), rcgen::Error> {
    sign(
        (ca_cert, ca_key),
        names,
        "fjord-broker",
        vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )
}

/// A new key and a certificate for it (`names`, `CN=<common_name>`, `usages`), valid a year and
/// no longer than the CA, signed by the CA (certificate and key, PEM).
fn sign(
    (ca_cert, ca_key): (&str, &str),
    names: &[String],
    common_name: &str,
    usages: Vec<rcgen::ExtendedKeyUsagePurpose>,
) -> Result<(String, String), rcgen::Error> {
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert, rcgen::KeyPair::from_pem(ca_key)?)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = usages;
    // Names the CA's key: with two CAs trusted during a renewal, clients find the right one.
    params.use_authority_key_identifier_extension = true;
    validity_under(&mut params, CERTIFICATE_DAYS, ca_cert);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A Secret of type `kubernetes.io/tls`: a certificate, its key, and the CAs to trust.
pub fn tls_secret(metadata: ObjectMeta, cert: &str, key: &str, ca: &str) -> Secret {
    Secret {
        metadata,
        data: Some(secret_data(&[
            ("tls.crt", cert),
            ("tls.key", key),
            ("ca.crt", ca),
        ])),
        type_: Some("kubernetes.io/tls".into()),
        ..Secret::default()
    }
}

/// Why `cert` (PEM) must be issued again for `names`, if it must: unreadable, ending within
/// [`RENEW_BEFORE`], or naming other hosts.
pub fn renewal_reason(cert: &[u8], names: &[String]) -> Option<String> {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert) else {
        return Some("the certificate is not PEM".into());
    };
    let Ok(parsed) = pem.parse_x509() else {
        return Some("the certificate does not parse".into());
    };
    let remaining = parsed.validity().time_to_expiration();
    let renew_before =
        time::Duration::seconds(i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX));
    if remaining.is_none_or(|left| left < renew_before) {
        return Some("the certificate ends within 30 days".into());
    }
    let mut named: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    named.sort();
    let mut wanted = names.to_vec();
    wanted.sort();
    (named != wanted).then(|| "the certificate names other hosts".into())
}

pub fn secret_data(entries: &[(&str, &str)]) -> std::collections::BTreeMap<String, ByteString> {
    entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), ByteString(value.as_bytes().to_vec())))
        .collect()
}

pub fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|value| value.0.as_slice())
}

/// Makes sure the CA and the brokers' certificate Secrets of `cluster` exist and the
/// certificate is current. `metadata` gives a Secret's name its labels and owner. Returns what
/// was issued (for an Event), if anything.
pub async fn ensure_certificates(
    context: &Context,
    cluster: &ValidatedCluster,
    metadata: impl Fn(&str) -> ObjectMeta,
) -> Result<Option<String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &cluster.namespace);
    let common_name = format!("Fjord CA {}/{}", cluster.namespace, cluster.name);
    let (ca, changed) =
        ensure_authority(&secrets, &cluster.ca_secret(), &common_name, &metadata).await?;
    let bundle = ca.bundle();

    let name = cluster.tls_secret();
    let names = broker_names(cluster);
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(kube_error::<Secret>("getting", &name))?;
    let reason = match &existing {
        None => "no certificate yet".to_owned(),
        Some(secret) => match value(secret, "tls.crt").map_or_else(
            || Some("no tls.crt".to_owned()),
            |c| renewal_reason(c, &names),
        ) {
            Some(reason) => reason,
            None if value(secret, "ca.crt") == Some(bundle.as_bytes()) => return Ok(changed),
            None => "the trusted CAs changed".to_owned(),
        },
    };
    let (cert, key) = issue(&ca.cert, &ca.key, &names).map_err(|e| failed(&name, e))?;
    let secret = tls_secret(metadata(&name), &cert, &key, &bundle);
    write_secret(&secrets, existing, secret).await?;
    let issued = format!("issued the brokers' certificate ({reason})");
    Ok(Some(match changed {
        Some(changed) => format!("{changed}; {issued}"),
        None => issued,
    }))
}

/// Creates `secret`, or replaces `existing` with it as it was read: a concurrent change fails
/// and is retried.
pub async fn write_secret(
    secrets: &Api<Secret>,
    existing: Option<Secret>,
    mut secret: Secret,
) -> Result<(), Error> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    match existing {
        None => {
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(kube_error::<Secret>("creating", &name))?;
        }
        Some(old) => {
            secret.metadata.resource_version = old.metadata.resource_version;
            secrets
                .replace(&name, &PostParams::default(), &secret)
                .await
                .map_err(kube_error::<Secret>("replacing", &name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_issued_certificate_names_the_brokers_and_is_renewed_when_it_must_be() {
        let cluster = crate::cluster::validate::validate_cluster(
            &crate::cluster::validate::tests::cluster(&["a"], None),
            "img",
        )
        .unwrap();
        let names = broker_names(&cluster);
        assert_eq!(
            names,
            [
                "events-bootstrap.streaming.svc",
                "events-bootstrap.streaming.svc.cluster.local",
                "*.events-brokers.streaming.svc",
                "*.events-brokers.streaming.svc.cluster.local",
            ]
        );
        let (ca_cert, ca_key) = new_ca("Fjord CA streaming/events").unwrap();
        let (cert, key) = issue(&ca_cert, &ca_key, &names).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        // It names its CA's key (clients trusting two CAs during a renewal find the right one).
        let key_ids = |pem: &str| {
            let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            let parsed = pem.parse_x509().unwrap();
            let mut subject = None;
            let mut authority = None;
            for extension in parsed.extensions() {
                match extension.parsed_extension() {
                    x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                        subject = Some(id.0.to_vec());
                    }
                    x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(id) => {
                        authority = id.key_identifier.as_ref().map(|k| k.0.to_vec());
                    }
                    _ => {}
                }
            }
            (subject, authority)
        };
        let ca_key_id = key_ids(&ca_cert).0.unwrap();
        assert_eq!(key_ids(&cert).1, Some(ca_key_id.clone()));
        let (client, _) = issue_client(&ca_cert, &ca_key, "billing").unwrap();
        assert_eq!(key_ids(&client).1, Some(ca_key_id));
        assert_eq!(renewal_reason(cert.as_bytes(), &names), None);
        assert_eq!(
            renewal_reason(cert.as_bytes(), &names[..2]).as_deref(),
            Some("the certificate names other hosts")
        );
        assert!(renewal_reason(b"garbage", &names).is_some());

        // It chains to the CA for a broker's name, as rustls checks it.
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(ca_cert.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        for host in [
            "events-eu-0.events-brokers.streaming.svc",
            "events-bootstrap.streaming.svc",
        ] {
            let name = rustls_pki_types::ServerName::try_from(host).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &name, &[], rustls_pki_types::UnixTime::now())
                .unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        let elsewhere =
            rustls_pki_types::ServerName::try_from("events-bootstrap.other.svc").unwrap();
        assert!(
            verifier
                .verify_server_cert(
                    &leaf,
                    &[],
                    &elsewhere,
                    &[],
                    rustls_pki_types::UnixTime::now()
                )
                .is_err()
        );
    }
}
