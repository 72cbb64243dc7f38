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

/// A broker process whose Kafka listener speaks TLS with `server`'s certificate (and, with
/// `client_ca`, asks clients for certificates that CA signed).
fn tls_broker(data: &Path, server: &Issued, client_ca: Option<&Path>) -> SecureBroker {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--admin-listen".to_owned(),
        admin.clone(),
        "--tls-cert".to_owned(),
        server.cert.display().to_string(),
        "--tls-key".to_owned(),
        server.key.display().to_string(),
    ];
    if let Some(ca) = client_ca {
        args.extend(["--tls-client-ca".to_owned(), ca.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    SecureBroker {
        process: BrokerProcess::start(data, &args),
        admin,
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
            // cargo points the dynamic loader at the build's own librdkafka (built without
            // TLS) for the test binaries: kcat must load the system's.
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

/// `tests/clients/secure_clients.py`: `python_client` produces and reads back five records
/// over TLS, trusting `ca`, presenting `certificate` if given.
fn secure_python(
    python_client: &str,
    bootstrap: &str,
    topic: &str,
    ca: &Path,
    certificate: Option<&Issued>,
) -> Result<String, String> {
    let mut args = vec![
        "secure_clients.py".to_owned(),
        python_client.to_owned(),
        bootstrap.to_owned(),
        topic.to_owned(),
        "--ca".to_owned(),
        ca.display().to_string(),
        "--timeout".to_owned(),
        "10".to_owned(),
    ];
    if let Some(issued) = certificate {
        args.extend([
            "--cert".to_owned(),
            issued.cert.display().to_string(),
            "--key".to_owned(),
            issued.key.display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    client("python3", &args)
}

/// kcat over TLS (`extra` for anything beyond the CA and the client certificate).
fn secure_kcat(
    bootstrap: &str,
    ca: &Path,
    certificate: Option<&Issued>,
    extra: &[&str],
) -> Result<String, String> {
    let mut args = vec![
        "-b".to_owned(),
        bootstrap.to_owned(),
        "-X".to_owned(),
        "security.protocol=ssl".to_owned(),
        "-X".to_owned(),
        format!("ssl.ca.location={}", ca.display()),
        "-m".to_owned(),
        "10".to_owned(),
    ];
    if let Some(issued) = certificate {
        args.extend([
            "-X".to_owned(),
            format!("ssl.certificate.location={}", issued.cert.display()),
            "-X".to_owned(),
            format!("ssl.key.location={}", issued.key.display()),
        ]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    client("kcat", &args)
}

/// kcat over TLS reads partition 0 of `topic` back: the five records a client of the same name
/// wrote to it (`key-<i>` = `<topic>-<i>` at offset i).
fn assert_kcat_reads_back(bootstrap: &str, ca: &Path, certificate: Option<&Issued>, topic: &str) {
    let args = ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e"];
    let read = secure_kcat(
        bootstrap,
        ca,
        certificate,
        &[&args[..], &["-f", "%k=%s@%o\n"]].concat(),
    )
    .unwrap_or_else(|e| panic!("kcat reading {topic} over TLS: {e}"));
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
        let out = secure_python(python_client, &bootstrap, python_client, &pki.ca, None)
            .unwrap_or_else(|e| panic!("{python_client} over TLS: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }
    let out = client(
        "node",
        &[
            "kafkajs_secure.js",
            &bootstrap,
            "kafkajs",
            &pki.ca.display().to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("kafkajs over TLS: {e}"));
    assert_eq!(out.trim(), "ok 0 1 2 3 4");
    assert_kcat_reads_back(&bootstrap, &pki.ca, None, "kafkajs");

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
    let untrusted = secure_python("confluent-kafka", &bootstrap, "untrusted", &other.ca, None);
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
    let out = secure_python("confluent-kafka", &bootstrap, "rotated", &pki.ca, None)
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
            &pki.ca,
            Some(&writer),
        )
        .unwrap_or_else(|e| panic!("{python_client} with a client certificate: {e}"));
        assert_eq!(out.trim(), "ok 0 1 2 3 4", "{python_client}");
    }
    assert_kcat_reads_back(&bootstrap, &pki.ca, Some(&writer), "kafka-python");

    let refused_before = refused_handshakes(&broker);
    let anonymous = secure_python("confluent-kafka", &bootstrap, "anonymous", &pki.ca, None);
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
        &pki.ca,
        Some(&stranger),
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
