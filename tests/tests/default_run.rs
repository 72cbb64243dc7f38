//! The README's run command: `fjord-broker` with no flags is a single-node cluster on
//! 127.0.0.1:9092 (admin endpoint on 127.0.0.1:9644, cluster listener on 127.0.0.1:9093, a
//! metadata quorum of itself) with its data in ./fjord-data, listed by
//! kcat, and SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::time::Duration;

use fjord_tests::{KillOnDrop, broker_binary, require_tool, wait_for_listener};

#[test]
fn no_flags_serves_on_9092_and_sigterm_exits_zero() {
    let cwd = tempfile::tempdir().unwrap();
    let mut broker = KillOnDrop(
        Command::new(broker_binary())
            .current_dir(cwd.path())
            .env_remove("FJORD_LISTEN")
            .env_remove("FJORD_DATA_DIR")
            .spawn()
            .expect("starting fjord-broker"),
    );
    assert!(
        wait_for_listener("127.0.0.1:9092", Duration::from_secs(30)),
        "nothing listens on 9092"
    );
    assert!(
        wait_for_listener("127.0.0.1:9093", Duration::from_secs(30)),
        "no cluster listener on 9093"
    );

    // The admin endpoint on its default port says the broker is ready once its logs are open
    // (503 until then: the listeners are bound first).
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut admin =
            std::net::TcpStream::connect("127.0.0.1:9644").expect("admin endpoint on 9644");
        admin
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: fjord\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut readiness = String::new();
        admin.read_to_string(&mut readiness).unwrap();
        if readiness.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            readiness.starts_with("HTTP/1.1 503") && std::time::Instant::now() < deadline,
            "{readiness}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let kcat = require_tool("kcat");
    let produce = Command::new(&kcat)
        .args(["-b", "127.0.0.1:9092", "-P", "-t", "readme"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"hello\n")?;
            child.wait()
        })
        .unwrap();
    assert!(produce.success(), "kcat -P failed");
    let listing = Command::new(&kcat)
        .args(["-b", "127.0.0.1:9092", "-L"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("broker 1 at 127.0.0.1:9092"), "{listing}");
    assert!(
        listing.contains("topic \"readme\" with 1 partitions"),
        "{listing}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = broker.0.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean shutdown");
    assert!(
        cwd.path()
            .join("fjord-data/readme-0/partition.checkpoint")
            .is_file()
    );
    // The metadata quorum of one voter keeps its log and vote in the data directory.
    for file in ["log", "vote.json"] {
        assert!(
            cwd.path()
                .join("fjord-data/metadata-quorum")
                .join(file)
                .is_file(),
            "{file}"
        );
    }
}

/// A voter set the broker cannot use is refused with a clear error before anything is written.
#[test]
fn a_malformed_voter_set_is_refused_with_a_clear_error() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(broker_binary())
            .current_dir(cwd.path())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--cluster-listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("FJORD_VOTERS")
            .output()
            .expect("running fjord-broker")
    };

    let malformed = run(&["--voters", "fjord-a-0:9093"]);
    assert!(!malformed.status.success());
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(stderr.contains("not of the form id@host:port"), "{stderr}");

    let twice = run(&["--node-id", "1", "--voters", "1@a:9093,1@b:9093"]);
    assert!(!twice.status.success());
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(stderr.contains("names node 1 twice"), "{stderr}");
    assert!(
        !cwd.path()
            .join("fjord-data")
            .join("metadata-quorum")
            .exists(),
        "a refused broker wrote metadata"
    );
}
