//! What several operator test binaries share.

/// A test CA and a certificate it signed for `127.0.0.1`: (CA, certificate, key), PEM.
pub(crate) fn loopback_certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A broker as a secured Cluster runs it, in `dir`: TLS (a certificate for 127.0.0.1 from a test
/// CA), SCRAM-SHA-512 logins seeded with `fjord-operator`'s credential for `password`, ACLs with
/// `User:fjord-operator` a super user. Returns the broker and the CA (PEM).
pub(crate) async fn secured_broker(
    dir: &std::path::Path,
    password: &str,
) -> (fjord_broker::RunningBroker, String) {
    secured_broker_with(dir, password, None).await
}

/// [`secured_broker`] with, given the PEM of a clients CA, a second listener `CLIENT_CERTS`
/// (TLS, client certificates that CA signed), as a Cluster's `listeners.clientCertificates`.
#[allow(dead_code)]
pub(crate) async fn secured_broker_with(
    dir: &std::path::Path,
    password: &str,
    clients_ca: Option<&str>,
) -> (fjord_broker::RunningBroker, String) {
    let (ca, cert, key) = loopback_certificate();
    let write = |name: &str, content: String| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let mut config = fjord_broker::BrokerConfig::for_tests(dir.join("data"));
    config.security.tls_cert = Some(write("tls.crt", cert));
    config.security.tls_key = Some(write("tls.key", key));
    config.security.sasl_mechanisms = vec![fjord_broker::security::sasl::Mechanism::Scram(
        fjord_broker::security::scram::ScramMechanism::Sha512,
    )];
    config.security.initial_scram_credentials = Some(write(
        "initial",
        format!("SCRAM-SHA-512 fjord-operator {password}\n"),
    ));
    config.security.authorizer = Some(fjord_broker::security::AuthorizerKind::Acl);
    config.security.super_users = vec!["User:fjord-operator".to_owned()];
    if let Some(clients_ca) = clients_ca {
        config.security.tls_client_ca = Some(write("clients-ca.crt", clients_ca.to_owned()));
        config.listeners = vec!["CLIENT_CERTS:SSL://127.0.0.1:0".parse().unwrap()];
    }
    let broker = fjord_broker::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    (broker, ca)
}
