//! One actor per hosted partition owns its [`Log`]. Produce requests reach it through a
//! [`PartitionHandle`]; it appends everything queued in one blocking step and, under the
//! durable flush policy, fsyncs once for all of them (group commit) before answering. The high
//! watermark (what consumers may read) is published on a `watch` channel so fetch long-polls
//! wait without polling. Reads go straight to the log's [`LogReader`], never through the actor.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::log::{self, AppendInfo, FlushPolicy, Log, LogConfig, LogReader};

/// The most appends handled in one step (one fsync).
const MAX_APPENDS_PER_STEP: usize = 256;
/// How often retention runs.
const RETENTION_CHECK: Duration = Duration::from_secs(60);

/// Why the partition did not append.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Log(#[from] log::Error),
    #[error("the partition is shutting down")]
    Closed,
}

enum Command {
    Append {
        records: Vec<u8>,
        reply: oneshot::Sender<Result<AppendInfo, log::Error>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Cloneable handle to a partition actor.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    commands: mpsc::Sender<Command>,
    reader: LogReader,
    high_watermark: watch::Receiver<i64>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Append { .. } => "Append",
            Self::Close { .. } => "Close",
        })
    }
}

impl PartitionHandle {
    /// Opens (recovering if needed) the log in `dir` and starts its actor on the runtime.
    pub async fn open(
        dir: std::path::PathBuf,
        config: LogConfig,
        clock: std::sync::Arc<dyn log::Clock>,
        leader_epoch: i32,
    ) -> Result<Self, log::Error> {
        let log = tokio::task::spawn_blocking(move || Log::open(dir, config, clock))
            .await
            .map_err(|join| log::Error::Io {
                op: log::IoOp::OpenSegment,
                path: Default::default(),
                source: std::io::Error::other(join),
            })??;
        let reader = log.reader();
        let (hw_tx, high_watermark) = watch::channel(log.log_end_offset());
        let (commands, rx) = mpsc::channel(1024);
        tokio::spawn(
            PartitionActor {
                log: Some(log),
                rx,
                high_watermark: hw_tx,
                leader_epoch,
            }
            .run(),
        );
        Ok(Self {
            commands,
            reader,
            high_watermark,
        })
    }

    /// Appends record batches; returns once they are acknowledged under the topic's flush
    /// policy (fsynced, by default).
    pub async fn append(&self, records: Vec<u8>) -> Result<AppendInfo, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Append { records, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        Ok(rx.await.map_err(|_| AppendError::Closed)??)
    }

    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Offsets below this are readable by consumers.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that changes when the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.clone()
    }

    /// Flushes and closes the log (clean shutdown: the next start recovers nothing).
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct PartitionActor {
    /// `None` only while a blocking step holds it.
    log: Option<Log>,
    rx: mpsc::Receiver<Command>,
    high_watermark: watch::Sender<i64>,
    leader_epoch: i32,
}

impl PartitionActor {
    /// Runs until closed. It does not watch the broker's shutdown token: on shutdown the
    /// connections finish their in-flight produce requests first, then the broker closes
    /// every partition.
    async fn run(mut self) {
        let interval_ms = match self.log.as_ref().map(|log| log.config().flush) {
            Some(FlushPolicy::Interval { interval_ms }) => interval_ms,
            _ => u64::MAX / 2,
        };
        let mut flush_timer = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
        let mut retention_timer = tokio::time::interval(RETENTION_CHECK);
        loop {
            tokio::select! {
                biased;
                command = self.rx.recv() => match command {
                    None => break,
                    Some(Command::Close { reply }) => {
                        self.close().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(Command::Append { records, reply }) => {
                        if let Some(reply) = self.append_step(records, reply).await {
                            self.close().await;
                            let _ = reply.send(());
                            return;
                        }
                    }
                },
                _ = flush_timer.tick() => {
                    self.blocking(|log| {
                        if let Err(error) = log.flush() {
                            tracing::error!(dir = %log.dir().display(), %error, "interval flush failed");
                        }
                    }).await;
                }
                _ = retention_timer.tick() => {
                    self.blocking(|log| {
                        if let Err(error) = log.enforce_retention() {
                            tracing::warn!(dir = %log.dir().display(), %error, "retention failed");
                        }
                    }).await;
                }
            }
        }
        self.close().await;
    }

    /// Runs `f` on the log off the async workers.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Log) -> R + Send + 'static,
    ) -> Option<R> {
        let mut log = self.log.take()?;
        match tokio::task::spawn_blocking(move || {
            let result = f(&mut log);
            (log, result)
        })
        .await
        {
            Ok((log, result)) => {
                self.log = Some(log);
                Some(result)
            }
            Err(error) => {
                tracing::error!(%error, "a log operation panicked; the partition stops");
                None
            }
        }
    }

    /// Appends the first request and everything else already queued, then makes them durable
    /// with one flush, then answers them all. Returns a close request met while gathering.
    async fn append_step(
        &mut self,
        records: Vec<u8>,
        reply: oneshot::Sender<Result<AppendInfo, log::Error>>,
    ) -> Option<oneshot::Sender<()>> {
        let mut inputs = vec![records];
        let mut replies = vec![reply];
        let mut close = None;
        while inputs.len() < MAX_APPENDS_PER_STEP {
            match self.rx.try_recv() {
                Ok(Command::Append { records, reply }) => {
                    inputs.push(records);
                    replies.push(reply);
                }
                Ok(Command::Close { reply }) => {
                    close = Some(reply);
                    break;
                }
                Err(_) => break,
            }
        }
        let epoch = self.leader_epoch;
        let outcome = self
            .blocking(move |log| {
                let mut results: Vec<Result<AppendInfo, log::Error>> = inputs
                    .into_iter()
                    .map(|mut records| log.append(&mut records, epoch))
                    .collect();
                let durable = log.config().flush == FlushPolicy::EveryAppend;
                if durable
                    && results.iter().any(Result::is_ok)
                    && let Err(error) = log.flush()
                {
                    tracing::error!(dir = %log.dir().display(), %error, "flush failed");
                    let failure = match error {
                        log::Error::Flush(failure) => failure,
                        _ => log::FlushError::Failed {
                            kind: std::io::ErrorKind::Other,
                        },
                    };
                    for result in results.iter_mut().filter(|r| r.is_ok()) {
                        *result = Err(log::Error::Flush(failure));
                    }
                }
                let visible = if durable {
                    log.flusher().durable_offset()
                } else {
                    log.log_end_offset()
                };
                (results, visible)
            })
            .await;
        if let Some((results, visible)) = outcome {
            self.high_watermark.send_if_modified(|hw| {
                let moved = visible > *hw;
                *hw = (*hw).max(visible);
                moved
            });
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        close
    }

    /// Clean close: flush, write indexes and the checkpoint.
    async fn close(&mut self) {
        let Some(log) = self.log.take() else { return };
        let dir = log.dir().to_path_buf();
        match tokio::task::spawn_blocking(move || log.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(dir = %dir.display(), %error, "closing the log failed")
            }
            Err(error) => tracing::error!(dir = %dir.display(), %error, "closing the log panicked"),
        }
    }
}
