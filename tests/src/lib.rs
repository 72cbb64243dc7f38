//! Shared helpers for Fjord's integration tests, crash tests and benchmark drivers.

pub mod bench;

use fjord_broker::record::batch::set_offset_and_epoch;
use fjord_broker::record::{ProducerInfo, Record, build_batch};

/// Leader epoch the crash appender writes into every batch.
pub const CRASH_LEADER_EPOCH: i32 = 7;

/// The batch the crash appender appends when the log ends at `base_offset`: 1 to 7 records of
/// up to ~1.5 KiB whose bytes all derive from `base_offset`, so a reader can regenerate exactly
/// what must be stored at any offset.
pub fn crash_batch(base_offset: i64) -> Vec<u8> {
    let count = 1 + (base_offset % 7) as usize;
    let value_len = ((base_offset.wrapping_mul(7919)) % 1500) as usize;
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let seed = format!("{base_offset}:{i}:");
            let mut value = seed.repeat(value_len / seed.len() + 1).into_bytes();
            value.truncate(value_len);
            Record {
                key: Some(format!("key-{}", (base_offset + i as i64) % 13).into_bytes()),
                value: (i % 5 != 4).then_some(value),
                headers: vec![(b"origin".to_vec(), Some(seed.into_bytes()))],
                timestamp: 1_700_000_000_000 + base_offset + i as i64,
            }
        })
        .collect();
    build_batch(&records, ProducerInfo::NONE)
}

/// [`crash_batch`] as the log stores it: with its base offset and leader epoch written in.
pub fn stored_crash_batch(base_offset: i64) -> Vec<u8> {
    let mut batch = crash_batch(base_offset);
    set_offset_and_epoch(&mut batch, base_offset, CRASH_LEADER_EPOCH);
    batch
}

/// A broker running in this process on its own runtime, on an ephemeral loopback port, for
/// tests that drive real client processes against it.
#[derive(Debug)]
pub struct TestBroker {
    pub addr: std::net::SocketAddr,
    pub data_dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    running: Option<fjord_broker::RunningBroker>,
}

impl TestBroker {
    /// Starts a broker with the test defaults, adjusted by `configure`.
    pub fn start(configure: impl FnOnce(&mut fjord_broker::BrokerConfig)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = fjord_broker::BrokerConfig::for_tests(data_dir.path().to_path_buf());
        configure(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let running = runtime
            .block_on(fjord_broker::start(
                config,
                tokio_util::sync::CancellationToken::new(),
            ))
            .expect("starting the broker");
        Self {
            addr: running.kafka_addr,
            data_dir,
            runtime: Some(runtime),
            running: Some(running),
        }
    }

    /// `host:port` for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let (Some(runtime), Some(running)) = (self.runtime.take(), self.running.take()) {
            runtime.block_on(running.shutdown());
        }
    }
}

/// Path of a required external tool, or a panic that says how to install it.
pub fn require_tool(name: &str) -> std::path::PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/install-test-deps.sh (make deps)")
        })
}

/// The `fjord-broker` binary of this workspace, built (debug profile) if it is not there yet.
pub fn broker_binary() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "fjord-broker",
            "--bin",
            "fjord-broker",
        ])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building fjord-broker failed");
    // Test binaries live in target/<profile>/deps; the broker in target/<profile>.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let debug = profile_dir
        .parent()
        .expect("target")
        .join("debug")
        .join("fjord-broker");
    assert!(
        debug.is_file(),
        "{} missing after the build",
        debug.display()
    );
    debug
}

/// Waits until something accepts TCP connections on `addr`, up to `limit`.
pub fn wait_for_listener(addr: &str, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A loopback port that was free a moment ago, for a process the test starts next.
///
/// Taken below the kernel's ephemeral range, so no outgoing connection and no listener bound to
/// port 0 (clients, peers and other tests running beside this one) can take it between this call
/// and the process binding it; and never the same port twice in one test process.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = 10_000;
    let span = ephemeral_low.saturating_sub(low).max(1000);
    // Processes started one after another (test binaries) start at different places.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = low + (start + offset) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {low} and {ephemeral_low}");
}

/// A `fjord-broker` process (the real binary), restartable on the same port and data directory.
#[derive(Debug)]
pub struct BrokerProcess {
    pub port: u16,
    pub data_dir: std::path::PathBuf,
    extra_args: Vec<String>,
    child: Option<std::process::Child>,
}

impl BrokerProcess {
    /// Starts the broker and waits until it accepts connections.
    pub fn start(data_dir: &std::path::Path, extra_args: &[&str]) -> Self {
        let mut process = Self {
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        process.restart();
        process
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process and waits for its listener.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut command = std::process::Command::new(broker_binary());
        command
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(&self.data_dir);
        // Ephemeral ports for the listeners a test does not name, so brokers run side by side.
        for flag in ["--admin-listen", "--cluster-listen"] {
            if !self.extra_args.iter().any(|a| a == flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        let child = command
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("starting fjord-broker");
        self.child = Some(child);
        assert!(
            wait_for_listener(&self.bootstrap(), std::time::Duration::from_secs(60)),
            "the broker did not start listening"
        );
    }

    /// Sends a signal (by name, as `kill -s` takes it) to the running broker.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-s", name, &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGKILL: no shutdown, no flush, no checkpoint.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaping the broker");
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process that is killed (SIGKILL) if it is still running when this is dropped, so a
/// failing test never leaves a broker behind.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Assigns every partition of `topic` to `consumer` from the beginning and returns each
/// partition's high watermark (where reading it is complete).
pub fn assign_from_beginning(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partitions: i32,
) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::consumer::Consumer;
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut ends = std::collections::BTreeMap::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .expect("adding a partition");
        ends.insert(partition, latest_offset(consumer, topic, partition));
    }
    consumer.assign(&assignment).expect("assigning partitions");
    ends
}

/// The latest offset of `topic`-`partition` (its high watermark), asked until the leader answers
/// (up to 30 s): a leader just elected answers OFFSET_NOT_AVAILABLE until its high watermark has
/// caught up (KIP-207). After a failed try the topic's metadata is asked for again: librdkafka
/// answers a watermark query from its metadata cache, and a partition cached without a leader
/// (a broker that answered during an election, or while unsure its metadata was current) fails
/// every query at once until something refreshes it.
pub fn latest_offset(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partition: i32,
) -> i64 {
    use rdkafka::consumer::Consumer;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, std::time::Duration::from_secs(5)) {
            Ok((_, high)) => return high,
            Err(error) => assert!(
                std::time::Instant::now() < deadline,
                "the latest offset of {topic}-{partition}: {error}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Refreshes the cache; a failure here shows as the next query's error.
        let _ = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(5));
    }
}

/// `GET path` on a broker's admin endpoint: status code and body (`None` if nothing answers).
pub fn admin_get(addr: &str, path: &str) -> Option<(u16, String)> {
    admin_request(addr, "GET", path)
}

/// `method path` (no body) on a broker's admin endpoint: status code and body (`None` if nothing
/// answers within 30 s).
pub fn admin_request(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: fjord\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// `method path` on a broker's admin endpoint, its JSON answer read as `T` of the admin API's
/// contract, with the status code (`None` if nothing answers or the body is not a `T`).
pub fn admin_call<T: serde::de::DeserializeOwned>(
    addr: &str,
    method: &str,
    path: &str,
) -> Option<(u16, T)> {
    let (code, body) = admin_request(addr, method, path)?;
    Some((code, serde_json::from_str(&body).ok()?))
}

/// Several `fjord-broker` processes on loopback forming one cluster: each with its node id,
/// rack, Kafka, admin and cluster listeners on ports of its own, and its data directory; the
/// first `voters` of them vote in the metadata quorum. Tests stop, SIGKILL, SIGSTOP and restart
/// them.
#[derive(Debug)]
pub struct ClusterProcesses {
    pub brokers: Vec<ClusterBroker>,
    _dir: tempfile::TempDir,
}

/// One broker of a [`ClusterProcesses`].
#[derive(Debug)]
pub struct ClusterBroker {
    pub node_id: i32,
    /// The loopback address its listeners are on.
    pub host: String,
    pub rack: String,
    pub kafka_port: u16,
    pub admin_port: u16,
    pub cluster_port: u16,
    pub data_dir: std::path::PathBuf,
    args: Vec<String>,
    /// The `fjord-broker` binary it runs (the workspace's debug build if `None`).
    binary: Option<std::path::PathBuf>,
    child: Option<KillOnDrop>,
}

impl ClusterBroker {
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.kafka_port)
    }

    pub fn admin(&self) -> String {
        format!("{}:{}", self.host, self.admin_port)
    }

    /// Starts the process (again, on the same ports and data directory).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "broker {} is running", self.node_id);
        let binary = self.binary.clone().unwrap_or_else(broker_binary);
        let child = std::process::Command::new(binary)
            .args(&self.args)
            // openraft logs every unreachable peer as an error while a cluster forms.
            .env("RUST_LOG", "warn,openraft=off")
            .env_remove("FJORD_VOTERS")
            .spawn()
            .expect("starting fjord-broker");
        self.child = Some(KillOnDrop(child));
    }

    /// A second process claiming this broker's node id, rack and voters, on fresh ports and
    /// `data_dir`.
    pub fn twin(&self, data_dir: &std::path::Path) -> std::process::Command {
        let mut args = self.args.clone();
        let fresh = || format!("127.0.0.1:{}", free_port());
        for (flag, value) in [
            ("--listen", fresh()),
            ("--admin-listen", fresh()),
            ("--cluster-listen", fresh()),
            ("--data-dir", data_dir.display().to_string()),
        ] {
            let at = args.iter().position(|a| a == flag).expect("flag given");
            args[at + 1] = value;
        }
        let mut command = std::process::Command::new(broker_binary());
        command
            .args(args)
            .env("RUST_LOG", "warn,openraft=off")
            .env_remove("FJORD_VOTERS");
        command
    }

    /// Waits until `/readyz` answers 200 (the broker has joined and caught up), up to `limit`;
    /// false at once if the process has exited (its error is on stderr).
    pub fn wait_ready(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if admin_get(&self.admin(), "/readyz").is_some_and(|(code, _)| code == 200) {
                return true;
            }
            if self.exited() {
                eprintln!("broker {} exited before it was ready", self.node_id);
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// Whether the started process has exited (a zombie not yet reaped, or gone).
    fn exited(&self) -> bool {
        self.child.as_ref().is_some_and(|child| {
            std::fs::read_to_string(format!("/proc/{}/stat", child.0.id())).map_or(true, |stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
        })
    }

    /// `/v1/status` as JSON.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = admin_get(&self.admin(), "/v1/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Sends a signal (by name, as `kill -s` takes it).
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-s", name, &child.0.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.0.kill().expect("SIGKILL");
            child.0.wait().expect("reaping the broker");
        }
    }

    /// Waits for the process to exit on its own (after a SIGTERM) and asserts it exited 0.
    pub fn wait_exit(&mut self, limit: std::time::Duration) {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.0.try_wait().expect("waiting for the broker") {
                assert!(
                    status.success(),
                    "broker {} exited with {status}",
                    self.node_id
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker {} did not exit",
                self.node_id
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl ClusterProcesses {
    /// Starts one broker per entry of `racks` (node ids 0, 1, ...), the first `voters` of them
    /// voters, with `extra` flags each, and waits until every one is ready.
    pub fn start(racks: &[&str], voters: usize, extra: &[&str]) -> Self {
        Self::prepare(racks, voters, extra).start_all()
    }

    /// [`ClusterProcesses::start`] with broker `i` on its own loopback address, `127.0.0.(11 + i)`,
    /// for its listeners and its connections to other brokers: what [`LinkCut`] cuts apart.
    pub fn start_apart(racks: &[&str], voters: usize, extra: &[&str]) -> Self {
        Self::prepare_on(racks, voters, extra, |i| format!("127.0.0.{}", 11 + i)).start_all()
    }

    /// Runs `binary` (a release build, say) instead of the workspace's debug build.
    pub fn using(mut self, binary: &std::path::Path) -> Self {
        for broker in &mut self.brokers {
            broker.binary = Some(binary.to_owned());
        }
        self
    }

    /// The process ids of the running brokers.
    pub fn pids(&self) -> Vec<u32> {
        self.brokers
            .iter()
            .filter_map(|b| b.child.as_ref().map(|c| c.0.id()))
            .collect()
    }

    /// Starts every broker and waits until each is ready.
    pub fn start_all(mut self) -> Self {
        for broker in &mut self.brokers {
            broker.start();
        }
        for broker in &self.brokers {
            assert!(
                broker.wait_ready(std::time::Duration::from_secs(60)),
                "broker {} did not become ready",
                broker.node_id
            );
        }
        self
    }

    /// [`ClusterProcesses::start`] without starting any broker: the test starts them.
    pub fn prepare(racks: &[&str], voters: usize, extra: &[&str]) -> Self {
        Self::prepare_on(racks, voters, extra, |_| "127.0.0.1".to_owned())
    }

    /// [`ClusterProcesses::prepare`] with broker `i` listening on `host(i)`.
    pub fn prepare_on(
        racks: &[&str],
        voters: usize,
        extra: &[&str],
        host: impl Fn(usize) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::prepare_in(dir, racks, voters, extra, host)
    }

    /// [`ClusterProcesses::prepare_on`] with the data directories in `dir`.
    pub fn prepare_in(
        dir: tempfile::TempDir,
        racks: &[&str],
        voters: usize,
        extra: &[&str],
        host: impl Fn(usize) -> String,
    ) -> Self {
        let ports: Vec<[u16; 3]> = racks
            .iter()
            .map(|_| [free_port(), free_port(), free_port()])
            .collect();
        let voter_list = ports
            .iter()
            .take(voters)
            .enumerate()
            .map(|(id, [_, _, cluster])| format!("{id}@{}:{cluster}", host(id)))
            .collect::<Vec<_>>()
            .join(",");
        let brokers: Vec<ClusterBroker> = (0..)
            .zip(racks.iter().zip(&ports))
            .map(|(node_id, (rack, [kafka, admin, cluster]))| {
                let host = host(usize::try_from(node_id).unwrap_or_default());
                let data_dir = dir.path().join(format!("broker-{node_id}"));
                let mut args: Vec<String> = [
                    "--node-id",
                    &node_id.to_string(),
                    "--rack",
                    rack,
                    "--listen",
                    &format!("{host}:{kafka}"),
                    "--admin-listen",
                    &format!("{host}:{admin}"),
                    "--cluster-listen",
                    &format!("{host}:{cluster}"),
                    "--voters",
                    &voter_list,
                    "--data-dir",
                ]
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
                args.push(data_dir.display().to_string());
                args.extend(extra.iter().map(|a| (*a).to_owned()));
                ClusterBroker {
                    node_id,
                    host,
                    rack: (*rack).to_owned(),
                    kafka_port: *kafka,
                    admin_port: *admin,
                    cluster_port: *cluster,
                    data_dir,
                    args,
                    binary: None,
                    child: None,
                }
            })
            .collect();
        Self { brokers, _dir: dir }
    }

    /// Every broker's Kafka address, for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(ClusterBroker::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The controller as the running brokers report it, once they agree on one.
    pub fn controller(&self, limit: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let seen: Vec<i64> = self
                .brokers
                .iter()
                .filter(|b| b.child.is_some())
                .filter_map(|b| b.status()?["controller"].as_i64())
                .collect();
            if let Some(first) = seen.first()
                && *first >= 0
                && seen.iter().all(|c| c == first)
            {
                return i32::try_from(*first).ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

/// Runs `command` to its exit, which must come within `limit` (the process is killed and the test
/// fails otherwise); returns its exit status and what it wrote to stderr.
pub fn run_to_exit(
    command: &mut std::process::Command,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, String) {
    let stderr = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = KillOnDrop(
        command
            .stdout(std::process::Stdio::null())
            .stderr(stderr.reopen().expect("reopening the temp file"))
            .spawn()
            .expect("starting the process"),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the process") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the process did not exit within {limit:?}; stderr: {}",
            std::fs::read_to_string(stderr.path()).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (
        status,
        std::fs::read_to_string(stderr.path()).unwrap_or_default(),
    )
}

/// The client scripts' directory (`tests/clients`).
pub fn clients_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs `program args` in `tests/clients` and returns its stdout; a failure panics with both
/// outputs.
pub fn run_client(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(require_tool(program))
        .args(args)
        .current_dir(clients_dir())
        .output()
        .expect("running a client");
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A network partition between brokers on loopback, made with nftables: every packet between
/// the addresses of one side and those of the other is dropped (no reset: the connections hang,
/// as when a link or a zone goes), in both directions; clients on 127.0.0.1 still reach both
/// sides. Healed when dropped. Needs root and `nft` (`scripts/install-test-deps.sh`).
#[derive(Debug)]
pub struct LinkCut {
    table: String,
}

impl LinkCut {
    /// Cuts the brokers at `one` off from those at `other`.
    pub fn between(one: &[&str], other: &[&str]) -> Self {
        Self::with_rules(&[drop_rule(one, other, None), drop_rule(other, one, None)])
    }

    /// Drops the packets from the brokers at `from` to those at `to` only: the other way works.
    pub fn one_way(from: &[&str], to: &[&str]) -> Self {
        Self::with_rules(&[drop_rule(from, to, None)])
    }

    /// Drops about `percent` % of the packets between `one` and `other`, each way, at random.
    pub fn lossy(one: &[&str], other: &[&str], percent: u32) -> Self {
        Self::with_rules(&[
            drop_rule(one, other, Some(percent)),
            drop_rule(other, one, Some(percent)),
        ])
    }

    fn with_rules(rules: &[String]) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let table = format!(
            "fjord_cut_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let script = format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{}  }}\n}}\n",
            rules
                .iter()
                .map(|rule| format!("    {rule}\n"))
                .collect::<String>()
        );
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("running nft (nftables; run as root)");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), script.as_bytes())
            .expect("writing the nft script");
        let status = child.wait().expect("waiting for nft");
        assert!(status.success(), "nft refused:\n{script}");
        Self { table }
    }
}

/// An nftables rule dropping packets from `from` to `to` (a `percent` of them, if given).
fn drop_rule(from: &[&str], to: &[&str], percent: Option<u32>) -> String {
    let sample = percent.map_or(String::new(), |p| format!("numgen random mod 100 < {p} "));
    format!(
        "ip saddr {{ {} }} ip daddr {{ {} }} {sample}drop",
        from.join(", "),
        to.join(", ")
    )
}

impl Drop for LinkCut {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}
