//! The machine's ceiling, measured in the same run as the brokers: how fast a plain sender can
//! push bytes to a plain receiver over loopback TCP, and how fast the data disk takes
//! sequential writes made durable with an fsync.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 20;

/// Loopback TCP throughput in MB/s over `duration`.
pub fn loopback_mb_per_s(duration: Duration) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    let addr = listener.local_addr().expect("listener address");
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepting");
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        total
    });
    let mut stream = TcpStream::connect(addr).expect("connecting");
    let chunk = vec![7u8; CHUNK];
    let started = Instant::now();
    while started.elapsed() < duration {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(stream);
    let total = receiver.join().unwrap_or(0);
    total as f64 / started.elapsed().as_secs_f64() / 1e6
}

/// Sequential 1 MiB writes to a new file in `dir` for `duration`, then one fdatasync: MB/s of
/// durable sequential writing, fsync included. (An fsync per MiB is slower than the broker's
/// group commit, which fsyncs whatever accumulated meanwhile, often several MiB at once.)
pub fn disk_mb_per_s(dir: &Path, duration: Duration) -> f64 {
    std::fs::create_dir_all(dir).expect("creating the ceiling directory");
    let path = dir.join("ceiling.dat");
    let mut file = std::fs::File::create(&path).expect("creating the ceiling file");
    let chunk = vec![7u8; CHUNK];
    let started = Instant::now();
    let mut total = 0u64;
    while started.elapsed() < duration {
        file.write_all(&chunk).expect("writing");
        total += CHUNK as u64;
    }
    file.sync_data().expect("fdatasync");
    let elapsed = started.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    total as f64 / elapsed.as_secs_f64() / 1e6
}
