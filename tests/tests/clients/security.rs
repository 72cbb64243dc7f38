//! The Kafka listener secured: real clients (confluent-kafka, kafka-python, kafkajs, kcat)
//! against a `fjord-broker` process started with `--tls-cert` and `--tls-key` (Kafka's SSL
//! listener), and with `--tls-client-ca` (mutual TLS). Certificates come from a test CA made
//! here with rcgen; a second CA stands for everything the broker must not trust.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_tests::{BrokerProcess, KillOnDrop, clients_dir, free_port, require_tool};

/// A test certificate authority, with the PEM files it issued in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca: PathBuf,
}

/// A certificate and its key, as PEM files.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, cert.pem()).unwrap();
        Self {
            dir,
            issuer: rcgen::Issuer::new(params, key),
            ca,
        }
    }

    /// A certificate for the broker on loopback (`localhost` and `127.0.0.1`), in files named
    /// after `name`.
    fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            &["localhost", "127.0.0.1"],
            &[(rcgen::DnType::CommonName, "fjord-broker")],
        )
    }

    /// A client certificate with subject `subject` (in the order given: most general first).
    fn client(&self, name: &str, subject: &[(rcgen::DnType, &str)]) -> Issued {
        self.issue(name, &[], subject)
    }

    fn issue(&self, name: &str, hosts: &[&str], subject: &[(rcgen::DnType, &str)]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(hosts).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.crt")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// A broker process with its admin endpoint's address.
struct SecureBroker {
    process: BrokerProcess,
    admin: String,
}

impl SecureBroker {
    fn bootstrap(&self) -> String {
        self.process.bootstrap()
    }
}

/// A broker process started with `args` (and an admin endpoint of its own).
fn secure_broker(data: &Path, args: &[String]) -> SecureBroker {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["--admin-listen".to_owned(), admin.clone()];
    all.extend(args.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    SecureBroker {
        process: BrokerProcess::start(data, &all),
        admin,
    }
}

/// The flags of a TLS listener with `server`'s certificate (and, with `client_ca`, asking
/// clients for certificates that CA signed).
fn tls_args(server: &Issued, client_ca: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--tls-cert".to_owned(),
        server.cert.display().to_string(),
        "--tls-key".to_owned(),
        server.key.display().to_string(),
    ];
    if let Some(ca) = client_ca {
        args.extend(["--tls-client-ca".to_owned(), ca.display().to_string()]);
    }
    args
}

fn tls_broker(data: &Path, server: &Issued, client_ca: Option<&Path>) -> SecureBroker {
    secure_broker(data, &tls_args(server, client_ca))
}

/// How a client connects: TLS trusting `ca`, presenting `certificate`, logging in with
/// `login` (mechanism, user, password).
#[derive(Clone, Copy, Default)]
struct Connect<'a> {
    ca: Option<&'a Path>,
    certificate: Option<&'a Issued>,
    login: Option<(&'a str, &'a str, &'a str)>,
    /// The client gives up after this long (seconds; 0: the default, 10).
    patience: u32,
}

impl<'a> Connect<'a> {
    /// For a connection expected to fail: the client gives up sooner.
    fn doomed(self) -> Self {
        Self {
            patience: 4,
            ..self
        }
    }

    fn tls(ca: &'a Path) -> Self {
        Self {
            ca: Some(ca),
            ..Self::default()
        }
    }

    fn presenting(self, certificate: &'a Issued) -> Self {
        Self {
            certificate: Some(certificate),
            ..self
        }
    }

    /// OAUTHBEARER with `token`.
    fn bearer(self, token: &'a str) -> Self {
        self.login("OAUTHBEARER", "", token)
    }

    fn login(self, mechanism: &'a str, user: &'a str, password: &'a str) -> Self {
        Self {
            login: Some((mechanism, user, password)),
            ..self
        }
    }
}

/// Runs `program args` from `tests/clients` to its exit (within 90 s, or the test fails):
/// `Ok(stdout)` on success, `Err(stdout and stderr)` otherwise.
fn client(program: &str, args: &[&str]) -> Result<String, String> {
    let (stdout, stderr) = (
        tempfile::NamedTempFile::new().unwrap(),
        tempfile::NamedTempFile::new().unwrap(),
    );
    let mut child = KillOnDrop(
        Command::new(require_tool(program))
            .args(args)
            .current_dir(clients_dir())
            // cargo points the dynamic loader at the build's own librdkafka for the test
            // binaries: kcat must load the system's, the one it was built against.
            .env_remove("LD_LIBRARY_PATH")
            .stdout(stdout.reopen().unwrap())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{program} {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(stdout.path()).unwrap();
    if status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{out}{}",
            std::fs::read_to_string(stderr.path()).unwrap()
        ))
    }
}

/// `tests/clients/secure_clients.py`: `python_client` produces and reads back five records,
/// connecting as `connect` says.
fn secure_python(
    python_client: &str,
    bootstrap: &str,
    topic: &str,
    connect: Connect<'_>,
) -> Result<String, String> {
    let mut args = vec![
        "secure_clients.py".to_owned(),
        python_client.to_owned(),
        bootstrap.to_owned(),
        topic.to_owned(),
        "--timeout".to_owned(),
        if connect.patience == 0 {
            10
        } else {
            connect.patience
        }
        .to_string(),
    ];
    if let Some(ca) = connect.ca {
        args.extend(["--ca".to_owned(), ca.display().to_string()]);
    }
    if let Some(issued) = connect.certificate {
        args.extend([
            "--cert".to_owned(),
            issued.cert.display().to_string(),
            "--key".to_owned(),
            issued.key.display().to_string(),
        ]);
    }
    match connect.login {
        Some(("OAUTHBEARER", _, token)) => {
            args.extend(["--sasl", "OAUTHBEARER", "--oauth-token", token].map(str::to_owned));
        }
        Some((mechanism, user, password)) => args.extend(
            ["--sasl", mechanism, "--user", user, "--password", password].map(str::to_owned),
        ),
        None => {}
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    client("python3", &args)
}

/// kafkajs producing five records to topic `kafkajs` over TLS, connecting as `connect` says (a
/// CA, and a certificate or a login): `Ok(stdout)` (`ok` and the offsets) or why not.
fn secure_kafkajs(bootstrap: &str, connect: Connect<'_>) -> Result<String, String> {
    let ca = connect.ca.expect("kafkajs_secure.js speaks TLS");
    let mut args = vec![
        "kafkajs_secure.js".to_owned(),
        bootstrap.to_owned(),
        "kafkajs".to_owned(),
        ca.display().to_string(),
    ];
    if let Some(issued) = connect.certificate {
        args.extend([
            issued.cert.display().to_string(),
            issued.key.display().to_string(),
        ]);
    }
    if let Some((mechanism, user, password)) = connect.login {
        args.extend(["--sasl", mechanism, user, password].map(str::to_owned));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    client("node", &args)
}

/// kcat connecting as `connect` says (`extra`: what it is to do).
fn secure_kcat(bootstrap: &str, connect: Connect<'_>, extra: &[&str]) -> Result<String, String> {
    let protocol = match (connect.ca.is_some(), connect.login.is_some()) {
        (true, true) => "sasl_ssl",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (false, false) => "plaintext",
    };
    let mut args = vec![
        "-b".to_owned(),
        bootstrap.to_owned(),
        "-X".to_owned(),
        format!("security.protocol={protocol}"),
        "-m".to_owned(),
        "10".to_owned(),
    ];
    if let Some(ca) = connect.ca {
        args.extend(["-X".to_owned(), format!("ssl.ca.location={}", ca.display())]);
    }
    if let Some(issued) = connect.certificate {
        args.extend([
            "-X".to_owned(),
            format!("ssl.certificate.location={}", issued.cert.display()),
            "-X".to_owned(),
            format!("ssl.key.location={}", issued.key.display()),
        ]);
    }
    if let Some((mechanism, user, password)) = connect.login {
        for setting in [
            format!("sasl.mechanisms={mechanism}"),
            format!("sasl.username={user}"),
            format!("sasl.password={password}"),
        ] {
            args.extend(["-X".to_owned(), setting]);
        }
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    client("kcat", &args)
}

/// kcat reads partition 0 of `topic` back: the five records a client of the same name wrote
/// to it (`key-<i>` = `<topic>-<i>` at offset i).
fn assert_kcat_reads_back(bootstrap: &str, connect: Connect<'_>, topic: &str) {
    let args = ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e"];
    let read = secure_kcat(
        bootstrap,
        connect,
        &[&args[..], &["-f", "%k=%s@%o\n"]].concat(),
    )
    .unwrap_or_else(|e| panic!("kcat reading {topic}: {e}"));
    let expected: String = (0..5)
        .map(|i| format!("key-{i}={topic}-{i}@{i}\n"))
        .collect();
    assert_eq!(read, expected);
}

/// Sends a Kafka ApiVersions v0 request in plaintext and returns what came back before the
/// connection closed (within 15 s).
fn plaintext_api_versions(bootstrap: &str) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(bootstrap).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // size, api key 18, version 0, correlation id 7, client id "plain"
    let mut request = vec![0, 18, 0, 0, 0, 0, 0, 7, 0, 5];
    request.extend_from_slice(b"plain");
    let mut frame = u32::try_from(request.len()).unwrap().to_be_bytes().to_vec();
    frame.extend(request);
    stream.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => answer,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => answer,
        Err(error) => panic!("the broker neither answered nor closed the connection: {error}"),
    }
}

/// The value of counter `name` with `labels` on the broker's `/metrics` (0 when absent).
fn counter(broker: &SecureBroker, name: &str, labels: &str) -> u64 {
    let (_, text) = fjord_tests::admin_get(&broker.admin, "/metrics").unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}{{{labels}}} ")))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// Connections the broker refused in the TLS handshake, as `/metrics` counts them.
fn refused_handshakes(broker: &SecureBroker) -> u64 {
    counter(
        broker,
        "fjord_authentication_failures_total",
        "mechanism=\"SSL\"",
    )
}

/// Waits (up to 30 s) until counter `fjord_<name>_total{labels}` reaches `at_least`.
fn wait_counter(broker: &SecureBroker, name: &str, labels: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = format!("fjord_{name}_total");
    while counter(broker, &name, labels) < at_least {
        assert!(
            Instant::now() < deadline,
            "{name}{{{labels}}} never reached {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The DER of the certificate the listener at `bootstrap` presents to a new connection that
/// trusts `ca` (a rustls client: the handshake verifies the chain and the address).
fn served_certificate(bootstrap: &str, ca: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = std::net::TcpStream::connect(bootstrap).unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).unwrap();
    }
    connection.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(pem)
        .unwrap()
        .to_vec()
}

/// A TLS listener (Kafka's SSL) serves confluent-kafka, kafka-python, kafkajs and kcat, each
/// producing records and reading them back (kafkajs's with kcat). It refuses a plaintext client
/// (kcat; and raw ApiVersions bytes get a TLS alert and a closed connection, no Kafka answer)
/// and a client that trusts another CA, and counts the refusals on `/metrics`.
#[test]
fn a_tls_listener_serves_real_clients_and_refuses_plaintext() {
    let pki = Pki::new("Fjord test CA");
    let server = pki.server("broker");
    let data = tempfile::tempdir().unwrap();
    let broker = tls_broker(data.path(), &server, None);
    let bootstrap = broker.bootstrap();

    for python_client in ["confluent-kafka", "kafka-python"] {
        let out = secure_python(
            python_client,
            &bootstrap,
            python_client,
            Connect::tls(&pki.ca),
        )
        .unwrap_or_else(|e| panic!("{python_client} over TLS: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }
    let out = secure_kafkajs(&bootstrap, Connect::tls(&pki.ca))
        .unwrap_or_else(|e| panic!("kafkajs over TLS: {e}"));
    assert_eq!(out.trim(), "ok 0 1 2 3 4");
    assert_kcat_reads_back(&bootstrap, Connect::tls(&pki.ca), "kafkajs");

    let refused_before = refused_handshakes(&broker);
    // A plaintext client: kcat cannot get metadata; raw bytes get the connection closed.
    let plaintext = client("kcat", &["-b", &bootstrap, "-L", "-m", "5"]);
    assert!(
        plaintext.is_err(),
        "a plaintext kcat was served: {plaintext:?}"
    );
    // What comes back is a fatal TLS alert (content type 21, level 2), then the close.
    let answer = plaintext_api_versions(&bootstrap);
    assert!(
        answer.is_empty() || (answer.len() == 7 && answer[0] == 21 && answer[5] == 2),
        "a plaintext request got {answer:?}"
    );
    // A client that trusts another CA refuses the broker's certificate.
    let other = Pki::new("Another CA");
    let untrusted = secure_python(
        "confluent-kafka",
        &bootstrap,
        "untrusted",
        Connect::tls(&other.ca).doomed(),
    );
    assert!(untrusted.is_err(), "{untrusted:?}");
    let refused = refused_handshakes(&broker);
    assert!(
        refused >= refused_before + 3,
        "{refused_before} then {refused} refused handshakes counted"
    );
}

/// The certificate and key files are replaced while the broker runs (as Kubernetes rotates a
/// mounted Secret): a half-done rotation (a key that does not match) is refused and leaves the
/// previous certificate in use; once whole, new connections get the new certificate, with no
/// restart, and clients keep working. `/metrics` counts both reloads.
#[test]
fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let pki = Pki::new("Fjord test CA");
    let first = pki.server("first");
    let live = Issued {
        cert: pki.dir.path().join("tls.crt"),
        key: pki.dir.path().join("tls.key"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let data = tempfile::tempdir().unwrap();
    let broker = tls_broker(data.path(), &live, None);
    let bootstrap = broker.bootstrap();
    assert_eq!(served_certificate(&bootstrap, &pki.ca), der_of(&first.cert));

    let second = pki.server("second");
    // Half a rotation: the new certificate with the old key. Once the broker has seen it (and
    // refused it), the first certificate is still the one served.
    std::fs::copy(&second.cert, &live.cert).unwrap();
    wait_counter(&broker, "tls_certificate_reloads", "outcome=\"refused\"", 1);
    assert_eq!(served_certificate(&bootstrap, &pki.ca), der_of(&first.cert));
    std::fs::copy(&second.key, &live.key).unwrap();
    wait_counter(&broker, "tls_certificate_reloads", "outcome=\"loaded\"", 1);
    assert_eq!(
        served_certificate(&bootstrap, &pki.ca),
        der_of(&second.cert)
    );
    let out = secure_python(
        "confluent-kafka",
        &bootstrap,
        "rotated",
        Connect::tls(&pki.ca),
    )
    .unwrap_or_else(|e| panic!("after the rotation: {e}"));
    assert_eq!(out.trim(), "ok 0 1 2 3 4");
}

/// With `--tls-client-ca` (mutual TLS), clients presenting a certificate that CA signed are
/// served (confluent-kafka, kafka-python, kcat); a client without a certificate, and one whose
/// certificate another CA signed, are refused, and the refusals counted.
#[test]
fn mutual_tls_serves_only_clients_with_a_certificate_the_ca_signed() {
    let pki = Pki::new("Fjord test CA");
    let server = pki.server("broker");
    let data = tempfile::tempdir().unwrap();
    let broker = tls_broker(data.path(), &server, Some(&pki.ca));
    let bootstrap = broker.bootstrap();
    let writer = pki.client(
        "writer",
        &[
            (rcgen::DnType::OrganizationName, "Fjord"),
            (rcgen::DnType::CommonName, "writer"),
        ],
    );
    for python_client in ["confluent-kafka", "kafka-python"] {
        let out = secure_python(
            python_client,
            &bootstrap,
            python_client,
            Connect::tls(&pki.ca).presenting(&writer),
        )
        .unwrap_or_else(|e| panic!("{python_client} with a client certificate: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }
    assert_kcat_reads_back(
        &bootstrap,
        Connect::tls(&pki.ca).presenting(&writer),
        "kafka-python",
    );

    let refused_before = refused_handshakes(&broker);
    let anonymous = secure_python(
        "confluent-kafka",
        &bootstrap,
        "anonymous",
        Connect::tls(&pki.ca).doomed(),
    );
    assert!(
        anonymous.is_err(),
        "served without a certificate: {anonymous:?}"
    );
    let other = Pki::new("Another CA");
    let stranger = other.client("stranger", &[(rcgen::DnType::CommonName, "writer")]);
    let foreign = secure_python(
        "confluent-kafka",
        &bootstrap,
        "foreign",
        Connect::tls(&pki.ca).presenting(&stranger).doomed(),
    );
    assert!(
        foreign.is_err(),
        "served with a foreign certificate: {foreign:?}"
    );
    let refused = refused_handshakes(&broker);
    assert!(
        refused >= refused_before + 2,
        "{refused_before} then {refused} refused handshakes counted"
    );
}

/// A credentials file for `--initial-scram-credentials` in `dir`.
fn credentials_file(dir: &Path, lines: &str) -> String {
    let path = dir.join("credentials");
    std::fs::write(&path, lines).unwrap();
    path.display().to_string()
}

/// Connections the broker refused at a SASL login with `mechanism`, as `/metrics` counts them.
fn failed_logins(broker: &SecureBroker, mechanism: &str) -> u64 {
    counter(
        broker,
        "fjord_authentication_failures_total",
        &format!("mechanism=\"{mechanism}\""),
    )
}

/// A broker with a SASL_SSL listener offering `mechanisms`, its cluster formed with the
/// credentials `lines` (`--initial-scram-credentials`).
fn sasl_ssl_broker(pki: &Pki, data: &Path, mechanisms: &str, lines: &str) -> SecureBroker {
    let server = pki.server("broker");
    let mut args = tls_args(&server, None);
    args.extend(
        [
            "--sasl-mechanisms",
            mechanisms,
            "--initial-scram-credentials",
            &credentials_file(pki.dir.path(), lines),
        ]
        .map(str::to_owned),
    );
    secure_broker(data, &args)
}

/// SASL_SSL with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, the users seeded from
/// `--initial-scram-credentials`: confluent-kafka (SCRAM-SHA-512), kafka-python (SCRAM-SHA-256)
/// and kafkajs (PLAIN) produce and read back, kcat (SCRAM-SHA-512) reads kafkajs's records. A
/// wrong password, an unknown user, a TLS client that does not log in and a plaintext client
/// are refused, and the failed logins counted.
#[test]
fn sasl_ssl_logs_clients_in_with_scram_and_plain_and_refuses_wrong_passwords() {
    let pki = Pki::new("Fjord test CA");
    let data = tempfile::tempdir().unwrap();
    let broker = sasl_ssl_broker(
        &pki,
        data.path(),
        "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "SCRAM-SHA-512 admin admin-secret\nSCRAM-SHA-256 app app secret\n",
    );
    let bootstrap = broker.bootstrap();
    let tls = Connect::tls(&pki.ca);

    for (python_client, mechanism, user, password) in [
        ("confluent-kafka", "SCRAM-SHA-512", "admin", "admin-secret"),
        ("kafka-python", "SCRAM-SHA-256", "app", "app secret"),
    ] {
        let out = secure_python(
            python_client,
            &bootstrap,
            python_client,
            tls.login(mechanism, user, password),
        )
        .unwrap_or_else(|e| panic!("{python_client} with {mechanism}: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }
    let out = secure_kafkajs(&bootstrap, tls.login("PLAIN", "admin", "admin-secret"))
        .unwrap_or_else(|e| panic!("kafkajs with PLAIN: {e}"));
    assert_eq!(out.trim(), "ok 0 1 2 3 4");
    assert_kcat_reads_back(
        &bootstrap,
        tls.login("SCRAM-SHA-512", "admin", "admin-secret"),
        "kafkajs",
    );

    // A wrong password and an unknown user: the authentication error.
    for (user, password) in [("admin", "not-the-password"), ("mallory", "admin-secret")] {
        let refused = secure_python(
            "confluent-kafka",
            &bootstrap,
            "refused",
            tls.login("SCRAM-SHA-512", user, password).doomed(),
        )
        .unwrap_err();
        assert!(
            refused.contains("Authentication failed"),
            "{user}: {refused}"
        );
    }
    let plain_wrong = secure_python(
        "kafka-python",
        &bootstrap,
        "wrong",
        tls.login("PLAIN", "app", "wrong").doomed(),
    );
    assert!(plain_wrong.is_err(), "{plain_wrong:?}");
    assert!(failed_logins(&broker, "SCRAM-SHA-512") >= 2);
    assert!(failed_logins(&broker, "PLAIN") >= 1);
    // TLS without a login: the connection is closed at its first request past ApiVersions.
    let anonymous = secure_python("confluent-kafka", &bootstrap, "anonymous", tls.doomed());
    assert!(anonymous.is_err(), "served without a login: {anonymous:?}");
    // Plaintext on the SASL_SSL port.
    let plaintext = secure_kcat(
        &bootstrap,
        Connect::default().login("SCRAM-SHA-512", "admin", "admin-secret"),
        &["-L"],
    );
    assert!(plaintext.is_err(), "{plaintext:?}");
}

/// SCRAM credentials managed with confluent-kafka's admin client over SASL_SSL: a user is
/// created (AlterUserScramCredentials), described (mechanism and iterations), logs in and
/// produces; once its credential is deleted it can no longer log in.
#[test]
fn scram_credentials_are_managed_with_a_real_admin_client() {
    let pki = Pki::new("Fjord test CA");
    let data = tempfile::tempdir().unwrap();
    let broker = sasl_ssl_broker(
        &pki,
        data.path(),
        "SCRAM-SHA-512,SCRAM-SHA-256",
        "SCRAM-SHA-512 admin admin-secret\n",
    );
    let bootstrap = broker.bootstrap();
    let ca = pki.ca.display().to_string();
    let admin = |action: &[&str]| {
        let mut args = vec!["scram_admin.py", &bootstrap, &ca, "admin", "admin-secret"];
        args.extend(action);
        client("python3", &args)
    };
    let tls = Connect::tls(&pki.ca);

    let before = secure_python(
        "kafka-python",
        &bootstrap,
        "kafka-python",
        tls.login("SCRAM-SHA-256", "app", "app-secret").doomed(),
    );
    assert!(before.is_err(), "app logged in before it had a credential");
    assert_eq!(
        admin(&["set", "app", "SCRAM-SHA-256", "app-secret"])
            .unwrap()
            .trim(),
        "ok"
    );
    assert_eq!(
        admin(&["describe", "app"]).unwrap().trim(),
        "SCRAM_SHA_256 8192"
    );
    let out = secure_python(
        "kafka-python",
        &bootstrap,
        "kafka-python",
        tls.login("SCRAM-SHA-256", "app", "app-secret"),
    )
    .unwrap_or_else(|e| panic!("app with its new credential: {e}"));
    assert_eq!(out.trim(), "ok 0 1 2 3 4");

    assert_eq!(
        admin(&["delete", "app", "SCRAM-SHA-256"]).unwrap().trim(),
        "ok"
    );
    let described = admin(&["describe", "app"]).unwrap_err();
    assert!(
        described.contains("RESOURCE_NOT_FOUND") || described.contains("not exist"),
        "{described}"
    );
    let after = secure_python(
        "confluent-kafka",
        &bootstrap,
        "after",
        tls.login("SCRAM-SHA-256", "app", "app-secret").doomed(),
    )
    .unwrap_err();
    assert!(after.contains("Authentication failed"), "{after}");
}

/// ACLs end to end (`tests/clients/acl_scenario.py`, confluent-kafka over SASL_SSL with
/// SCRAM-SHA-512) on a broker started with `--authorizer acl` and `--super-users User:admin`:
/// `app`, with no ACL, is refused with TOPIC_AUTHORIZATION_FAILED; once the administrator grants
/// it WRITE and READ on `orders` and READ on groups prefixed `orders-`, it produces and reads
/// back with such a group, and nothing else: another group is GROUP_AUTHORIZATION_FAILED,
/// another topic TOPIC_AUTHORIZATION_FAILED, a listing of topics shows only `orders`, deleting
/// the topic is refused, and granting itself more is CLUSTER_AUTHORIZATION_FAILED. DescribeAcls
/// shows the grants; after DeleteAcls takes WRITE away, producing is refused again. The
/// denials are counted on `/metrics`.
#[test]
fn acls_allow_a_user_exactly_what_they_grant() {
    let pki = Pki::new("Fjord test CA");
    let data = tempfile::tempdir().unwrap();
    let server = pki.server("broker");
    let mut args = tls_args(&server, None);
    args.extend(
        [
            "--sasl-mechanisms",
            "SCRAM-SHA-512",
            "--initial-scram-credentials",
            &credentials_file(
                pki.dir.path(),
                "SCRAM-SHA-512 admin admin-secret\nSCRAM-SHA-512 app app-secret\n",
            ),
            "--authorizer",
            "acl",
            "--super-users",
            "User:admin",
        ]
        .map(str::to_owned),
    );
    let broker = secure_broker(data.path(), &args);
    let bootstrap = broker.bootstrap();
    let ca = pki.ca.display().to_string();
    let out = client(
        "python3",
        &[
            "acl_scenario.py",
            &bootstrap,
            &ca,
            "admin-secret",
            "app-secret",
        ],
    )
    .unwrap_or_else(|e| panic!("the ACL scenario: {e}"));
    let seen: Vec<&str> = out.lines().collect();
    assert_eq!(
        seen,
        [
            "admin creates orders and payments: ok",
            "app produces to orders: TOPIC_AUTHORIZATION_FAILED",
            "admin grants app: ok ok ok",
            "app produces to orders: ok",
            "app reads orders as orders-readers: second",
            "app reads orders as other: GROUP_AUTHORIZATION_FAILED",
            "app produces to payments: TOPIC_AUTHORIZATION_FAILED",
            "app lists topics: orders",
            "app deletes orders: TOPIC_AUTHORIZATION_FAILED",
            "app grants itself payments: CLUSTER_AUTHORIZATION_FAILED",
            "admin describes app's ACLs: GROUP:orders-:PREFIXED:READ TOPIC:orders:LITERAL:READ \
             TOPIC:orders:LITERAL:WRITE",
            "admin revokes app's WRITE: 1 deleted",
            "app produces to orders: TOPIC_AUTHORIZATION_FAILED",
        ]
    );
    let denied = |operation: &str, resource_type: &str| {
        counter(
            &broker,
            "fjord_authorization_denials_total",
            &format!("operation=\"{operation}\",resource_type=\"{resource_type}\""),
        )
    };
    assert!(
        denied("DESCRIBE", "TOPIC") >= 1,
        "the first produce's metadata"
    );
    assert!(
        denied("WRITE", "TOPIC") >= 1,
        "the produce after the revoke"
    );
    assert!(denied("DESCRIBE", "GROUP") + denied("READ", "GROUP") >= 1);
    assert!(denied("ALTER", "CLUSTER") >= 1);
}

/// A second listener for clients with certificates beside the SASL_SSL one
/// (`--listener CLIENT_CERTS:SSL://...`): a client bootstrapping on either is told that
/// listener's address of the broker, so confluent-kafka, kafka-python and kafkajs with a
/// certificate stay on the certificate listener, named by their certificate (a super user here),
/// while a
/// SCRAM login on the first listener is not asked for a certificate. A client without one is
/// refused on the certificate listener.
#[test]
fn a_certificate_listener_serves_beside_the_sasl_listener() {
    let pki = Pki::new("Fjord test CA");
    let data = tempfile::tempdir().unwrap();
    let server = pki.server("broker");
    let certificate_port = free_port();
    let mut args = tls_args(&server, Some(&pki.ca));
    args.extend(
        [
            "--sasl-mechanisms",
            "SCRAM-SHA-512",
            "--initial-scram-credentials",
            &credentials_file(pki.dir.path(), "SCRAM-SHA-512 admin admin-secret\n"),
            "--listener",
            &format!("client_certs:SSL://127.0.0.1:{certificate_port}"),
            "--authorizer",
            "acl",
            "--super-users",
            "User:admin,User:CN=writer,O=Fjord",
        ]
        .map(str::to_owned),
    );
    let broker = secure_broker(data.path(), &args);
    let sasl = broker.bootstrap();
    let certificates = format!("127.0.0.1:{certificate_port}");
    let writer = pki.client(
        "writer",
        &[
            (rcgen::DnType::OrganizationName, "Fjord"),
            (rcgen::DnType::CommonName, "writer"),
        ],
    );
    let with_certificate = Connect::tls(&pki.ca).presenting(&writer);
    let listed = secure_kcat(&certificates, with_certificate, &["-L"])
        .unwrap_or_else(|e| panic!("kcat -L on the certificate listener: {e}"));
    assert!(
        listed.contains(&format!("at {certificates}")) && !listed.contains(&sasl),
        "the certificate listener's metadata: {listed}"
    );
    for python_client in ["confluent-kafka", "kafka-python"] {
        let out = secure_python(
            python_client,
            &certificates,
            python_client,
            with_certificate,
        )
        .unwrap_or_else(|e| panic!("{python_client} on the certificate listener: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }
    let out = secure_kafkajs(&certificates, with_certificate)
        .unwrap_or_else(|e| panic!("kafkajs on the certificate listener: {e}"));
    assert_eq!(out.trim(), "ok 0 1 2 3 4");
    let login = Connect::tls(&pki.ca).login("SCRAM-SHA-512", "admin", "admin-secret");
    let listed = secure_kcat(&sasl, login, &["-L"])
        .unwrap_or_else(|e| panic!("kcat -L on the SASL listener: {e}"));
    assert!(
        listed.contains(&format!("at {sasl}")) && !listed.contains(&certificates),
        "the SASL listener's metadata: {listed}"
    );
    assert_kcat_reads_back(&sasl, login, "confluent-kafka");

    let refused_before = refused_handshakes(&broker);
    let anonymous = secure_python(
        "confluent-kafka",
        &certificates,
        "anonymous",
        Connect::tls(&pki.ca).doomed(),
    );
    assert!(
        anonymous.is_err(),
        "served without a certificate: {anonymous:?}"
    );
    assert!(refused_handshakes(&broker) > refused_before);
}

/// What the cluster listener at `address` answers an HTTP/2 client (a preface and an empty
/// SETTINGS frame) that connects over TLS trusting `ca` and presenting `certificate`, or
/// without TLS at all (`ca` `None`): the first bytes of the answer, or why there is none.
fn cluster_answer(
    address: &str,
    ca: Option<&Path>,
    certificate: Option<&Issued>,
) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0; 9];
    let Some(ca) = ca else {
        socket.write_all(PREFACE).map_err(|e| e.to_string())?;
        return match socket.read(&mut answer) {
            Ok(0) => Err("closed".to_owned()),
            Ok(n) => Ok(answer[..n].to_vec()),
            Err(e) => Err(e.to_string()),
        };
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match certificate {
        Some(issued) => builder
            .with_client_auth_cert(
                rustls_pki_types::CertificateDer::pem_file_iter(&issued.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_file(&issued.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(PREFACE).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    match tls.read(&mut answer) {
        Ok(0) => Err("closed".to_owned()),
        Ok(n) => Ok(answer[..n].to_vec()),
        Err(e) => Err(e.to_string()),
    }
}

/// Three brokers started with `--cluster-tls-cert`, `--cluster-tls-key` and `--cluster-tls-ca`
/// form a cluster over mutual TLS (every Raft message and replica fetch): a topic of three
/// replicas takes `acks=all` records and every copy ends byte-identical. On the cluster listener
/// an HTTP/2 client with a certificate the CA signed is answered; one without a certificate, one
/// with a certificate another CA signed, and one without TLS are not.
#[test]
fn brokers_speak_mutual_tls_to_each_other() {
    let pki = Pki::new("Fjord cluster CA");
    let issued = pki.server("cluster");
    let (cert, key, ca) = (
        issued.cert.display().to_string(),
        issued.key.display().to_string(),
        pki.ca.display().to_string(),
    );
    let cluster = fjord_tests::ClusterProcesses::start(
        &["a", "b", "c"],
        3,
        &[
            "--cluster-tls-cert",
            &cert,
            "--cluster-tls-key",
            &key,
            "--cluster-tls-ca",
            &ca,
        ],
    );
    let bootstrap = cluster.bootstrap();
    super::replication::create_replicated(&bootstrap, "over-tls", 1, None, &[0, 1, 2]);
    let values: Vec<String> = (0..200).map(|i| format!("record-{i}")).collect();
    assert_eq!(
        super::replication::produce_all(&bootstrap, "over-tls", &values),
        0
    );
    super::replication::wait_identical(&cluster, "over-tls", 0);
    let read = super::replication::read_partition(&bootstrap, "over-tls", 0);
    assert_eq!(read.len(), values.len());

    let listener = format!("127.0.0.1:{}", cluster.brokers[0].cluster_port);
    let answered = cluster_answer(&listener, Some(&pki.ca), Some(&issued)).unwrap();
    assert_eq!(
        answered.get(3),
        Some(&4),
        "an HTTP/2 SETTINGS frame: {answered:?}"
    );
    let anonymous = cluster_answer(&listener, Some(&pki.ca), None);
    assert!(
        anonymous.is_err(),
        "served without a certificate: {anonymous:?}"
    );
    let other = Pki::new("Another CA");
    let foreign = other.server("foreign");
    let foreign = cluster_answer(&listener, Some(&pki.ca), Some(&foreign));
    assert!(
        foreign.is_err(),
        "served another CA's certificate: {foreign:?}"
    );
    let plaintext = cluster_answer(&listener, None, None);
    assert!(
        !plaintext
            .as_ref()
            .is_ok_and(|bytes| bytes.get(3) == Some(&4)),
        "answered HTTP/2 without TLS: {plaintext:?}"
    );
}

/// A Kafka connection spoken by hand, for what no client library lets a test choose: the
/// SaslHandshake version, raw SASL frames, when to re-authenticate.
struct RawConnection {
    stream: std::net::TcpStream,
    correlation: i32,
}

impl RawConnection {
    fn open(bootstrap: &str) -> Self {
        let stream = std::net::TcpStream::connect(bootstrap).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Self {
            stream,
            correlation: 0,
        }
    }

    fn write_frame(&mut self, body: &[u8]) {
        let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).unwrap();
    }

    /// The next frame, or `None` once the broker has closed the connection.
    fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut size = [0; 4];
        match self.stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return None;
            }
            Err(error) => panic!("the broker neither answered nor closed: {error}"),
        }
        let mut body = vec![0; usize::try_from(u32::from_be_bytes(size)).unwrap()];
        self.stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    /// Sends `request` at `version` and decodes the answer; `None` if the connection closed.
    fn call<R>(&mut self, request: &R, version: i16) -> Option<R::Response>
    where
        R: kafka_protocol::protocol::Request,
        R::Response: kafka_protocol::protocol::Decodable,
    {
        use kafka_protocol::messages::{RequestHeader, ResponseHeader};
        use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
        self.correlation += 1;
        let mut body = bytes::BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        self.write_frame(&body);
        let mut answer = bytes::Bytes::from(self.read_frame()?);
        let header =
            ResponseHeader::decode(&mut answer, R::Response::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Some(R::Response::decode(&mut answer, version).unwrap())
    }

    /// A Metadata request; whether it was answered.
    fn metadata(&mut self) -> bool {
        self.call(&kafka_protocol::messages::MetadataRequest::default(), 1)
            .is_some()
    }

    fn handshake(&mut self, mechanism: &str, version: i16) -> i16 {
        let request = kafka_protocol::messages::SaslHandshakeRequest::default().with_mechanism(
            kafka_protocol::protocol::StrBytes::from_string(mechanism.to_owned()),
        );
        self.call(&request, version).unwrap().error_code
    }

    /// A PLAIN login through SaslHandshake v1 and SaslAuthenticate v1: the error code and the
    /// session lifetime, or `None` if the connection closed.
    fn plain_login(&mut self, user: &str, password: &str) -> Option<(i16, i64)> {
        assert_eq!(self.handshake("PLAIN", 1), 0);
        let token = format!("\0{user}\0{password}");
        let request = kafka_protocol::messages::SaslAuthenticateRequest::default()
            .with_auth_bytes(bytes::Bytes::from(token.into_bytes()));
        let answer = self.call(&request, 1)?;
        Some((answer.error_code, answer.session_lifetime_ms))
    }
}

/// What no client library lets a test pick, on a SASL_PLAINTEXT listener with
/// `--connections-max-reauth-ms 2000`, spoken by hand: SaslHandshake v0 with raw SASL frames
/// (the old framing) logs in and is served; a wrong password in that framing closes the
/// connection without an answer. With SaslAuthenticate v1 the session lifetime is 2000 ms; a
/// client that re-authenticates before then (KIP-368) is served past it, one that does not has
/// its connection closed at its next request; re-authenticating as another user is refused.
/// Before any login, requests close the connection, as does a frame over 512 KiB. A listener
/// without SASL answers SaslHandshake with ILLEGAL_SASL_STATE.
#[test]
fn sasl_framing_v0_and_v1_and_sessions_that_end_unless_renewed() {
    use kafka_protocol::error::ResponseError;
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_file(
        dir.path(),
        "SCRAM-SHA-512 alice alice-secret\nSCRAM-SHA-512 bob bob-secret\n",
    );
    let data = dir.path().join("data");
    let broker = secure_broker(
        &data,
        &[
            "--sasl-mechanisms",
            "PLAIN,SCRAM-SHA-512",
            "--initial-scram-credentials",
            &credentials,
            "--connections-max-reauth-ms",
            "2000",
        ]
        .map(str::to_owned),
    );
    let bootstrap = broker.bootstrap();

    // No login: a Metadata request closes the connection, and so does a frame larger than a
    // SASL message needs (512 KiB), before the broker reads it.
    let mut anonymous = RawConnection::open(&bootstrap);
    assert!(!anonymous.metadata());
    let mut greedy = RawConnection::open(&bootstrap);
    greedy
        .stream
        .write_all(&(1u32 << 20).to_be_bytes())
        .unwrap();
    assert_eq!(greedy.read_frame(), None);

    // v0: the token goes as a raw frame, and the answer comes as one (empty, for PLAIN).
    let mut old = RawConnection::open(&bootstrap);
    assert_eq!(old.handshake("PLAIN", 0), 0);
    old.write_frame(b"\0alice\0alice-secret");
    assert_eq!(old.read_frame(), Some(Vec::new()));
    assert!(old.metadata(), "served after a v0 login");
    let mut wrong = RawConnection::open(&bootstrap);
    assert_eq!(wrong.handshake("PLAIN", 0), 0);
    wrong.write_frame(b"\0alice\0wrong");
    assert_eq!(wrong.read_frame(), None, "closed without an answer");
    // An unknown mechanism is refused with the ones offered.
    let mut unknown = RawConnection::open(&bootstrap);
    assert_eq!(
        unknown.handshake("GSSAPI", 1),
        ResponseError::UnsupportedSaslMechanism.code()
    );

    // v1: told the session's lifetime.
    let mut renewing = RawConnection::open(&bootstrap);
    let mut lapsing = RawConnection::open(&bootstrap);
    let logged_in_at = Instant::now();
    assert_eq!(
        renewing.plain_login("alice", "alice-secret"),
        Some((0, 2000))
    );
    assert_eq!(
        lapsing.plain_login("alice", "alice-secret"),
        Some((0, 2000))
    );
    assert!(renewing.metadata() && lapsing.metadata());
    // Re-authenticated halfway: served past the first session's end.
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(logged_in_at.elapsed()));
    assert_eq!(
        renewing.plain_login("alice", "alice-secret"),
        Some((0, 2000))
    );
    std::thread::sleep(Duration::from_millis(2300).saturating_sub(logged_in_at.elapsed()));
    assert!(renewing.metadata(), "the renewed session is still on");
    assert!(
        !lapsing.metadata(),
        "the lapsed session's connection is closed"
    );
    // Re-authenticating as someone else: refused, and the connection closed.
    let (code, _) = renewing.plain_login("bob", "bob-secret").unwrap();
    assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
    assert!(!renewing.metadata());

    // A listener without SASL answers a SaslHandshake as Kafka's do, and goes on serving.
    let open = secure_broker(&dir.path().join("open"), &[]);
    let mut plain = RawConnection::open(&open.bootstrap());
    assert_eq!(
        plain.handshake("PLAIN", 1),
        ResponseError::IllegalSaslState.code()
    );
    assert!(plain.metadata());
}

/// A P-256 signing key standing for a Kubernetes cluster's service-account issuer, with its
/// JSON Web Key Set.
struct Issuer {
    pair: ring::signature::EcdsaKeyPair,
    jwks: serde_json::Value,
}

impl Issuer {
    const URL: &'static str = "https://kubernetes.default.svc.cluster.local";

    fn new() -> Self {
        use base64::Engine;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let base64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "sa-key",
            "x": base64.encode(&point[1..33]), "y": base64.encode(&point[33..]),
        }]});
        Self { pair, jwks }
    }

    /// A service-account token for `namespace`/`name`, for `audience`, expiring `expires_in`
    /// seconds from now (negative: already expired).
    fn token(&self, namespace: &str, name: &str, audience: &str, expires_in: i64) -> String {
        use base64::Engine;
        let base64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let header = serde_json::json!({"alg": "ES256", "kid": "sa-key", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": Self::URL, "aud": [audience],
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "iat": now - 60, "nbf": now - 60, "exp": now + expires_in,
        });
        let signed = format!(
            "{}.{}",
            base64.encode(header.to_string()),
            base64.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", base64.encode(signature.as_ref()))
    }
}

/// OAUTHBEARER with Kubernetes service-account tokens, over SASL_SSL: the broker is given the
/// issuer's key set, the issuer and the audience `fjord`. A token for `fjord` signed by the
/// issuer logs confluent-kafka and kafka-python in (through their token callbacks); an expired
/// token, a token for another audience and one signed by another key of the same id are
/// refused with the authentication error, and counted.
#[test]
fn service_account_tokens_log_in_through_oauthbearer_and_bad_ones_are_refused() {
    let pki = Pki::new("Fjord test CA");
    let server = pki.server("broker");
    let issuer = Issuer::new();
    let jwks = pki.dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks.to_string()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut args = tls_args(&server, None);
    args.extend(
        [
            "--sasl-mechanisms",
            "OAUTHBEARER",
            "--oauth-jwks-file",
            &jwks.display().to_string(),
            "--oauth-issuer",
            Issuer::URL,
            "--oauth-audience",
            "fjord",
        ]
        .map(str::to_owned),
    );
    let broker = secure_broker(data.path(), &args);
    let bootstrap = broker.bootstrap();
    let tls = Connect::tls(&pki.ca);

    let token = issuer.token("payments", "writer", "fjord", 600);
    for python_client in ["confluent-kafka", "kafka-python"] {
        let out = secure_python(python_client, &bootstrap, python_client, tls.bearer(&token))
            .unwrap_or_else(|e| panic!("{python_client} with a service-account token: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }

    let expired = issuer.token("payments", "writer", "fjord", -600);
    let foreign = issuer.token("payments", "writer", "vault", 600);
    let forged = Issuer::new().token("payments", "writer", "fjord", 600);
    for (what, bad) in [
        ("expired", &expired),
        ("foreign audience", &foreign),
        ("forged", &forged),
    ] {
        let refused = secure_python(
            "confluent-kafka",
            &bootstrap,
            "refused",
            tls.bearer(bad).doomed(),
        )
        .unwrap_err();
        assert!(
            refused.contains("Authentication failed"),
            "{what}: {refused}"
        );
    }
    let refused = secure_python(
        "kafka-python",
        &bootstrap,
        "refused",
        tls.bearer(&expired).doomed(),
    );
    assert!(refused.is_err(), "{refused:?}");
    assert!(failed_logins(&broker, "OAUTHBEARER") >= 4);
}
