//! Crash-test appender: appends [`fjord_tests::crash_batch`] batches to a partition log from
//! several threads with the durable default flush policy, and prints `ack <base> <last>` for each
//! batch once `flush_to` has returned, i.e. once the log has acknowledged it. The crash test kills
//! this process with SIGKILL at random moments and checks every acknowledged batch survived.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fjord_broker::log::{Log, LogConfig, SystemClock};
use fjord_tests::{CRASH_LEADER_EPOCH, crash_batch};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: log-appender <dir> [threads]")?);
    let threads: usize = args
        .next()
        .map_or(Ok(4), |t| t.parse())
        .context("threads")?;
    // Small segments so kills land in rolls, index writes and checkpoint writes too.
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    };
    let log = Log::open(&dir, config, Arc::new(SystemClock)).context("opening the log")?;
    let flusher = log.flusher();
    let log = Mutex::new(log);
    let stdout = Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| -> anyhow::Result<()> {
                loop {
                    let info = {
                        let mut log = log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        let mut batch = crash_batch(log.log_end_offset());
                        log.append(&mut batch, CRASH_LEADER_EPOCH)
                            .context("append")?
                    };
                    flusher.flush_to(info.last_offset + 1).context("flush")?;
                    let mut out = stdout.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    writeln!(out, "ack {} {}", info.base_offset, info.last_offset)?;
                    out.flush()?;
                }
            });
        }
    });
    Ok(())
}
