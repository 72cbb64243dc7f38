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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
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
        let child = std::process::Command::new(broker_binary())
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(&self.data_dir)
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
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))
            .expect("high watermark");
        ends.insert(partition, high);
    }
    consumer.assign(&assignment).expect("assigning partitions");
    ends
}
