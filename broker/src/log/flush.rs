//! Group commit: appends write to the page cache; whoever needs durability calls
//! [`Flusher::flush_to`]. One caller at a time runs the fsync, for everything appended so far;
//! the others wait for it and usually find their offsets covered when it ends, so N concurrent
//! appenders cost about one fsync per round instead of N.
//!
//! An fsync error fails the log for good: after a failed fsync the kernel may have dropped the
//! dirty pages, so nothing written since the last good fsync can be trusted as durable.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::segment::Segment;

#[derive(Debug)]
struct FlushState {
    /// Log end offset: everything below it has been written to the page cache.
    appended: i64,
    /// Everything below it is on disk.
    durable: i64,
    /// Segments whose files may hold bytes not yet fsynced, oldest first.
    pending: Vec<Arc<Segment>>,
    flushing: bool,
    failed: Option<io::ErrorKind>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<FlushState>,
    done: Condvar,
}

/// Cloneable handle that makes appended bytes durable. Used off the appender's thread.
#[derive(Debug, Clone)]
pub struct Flusher {
    shared: Arc<Shared>,
}

/// What went wrong making bytes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    #[error("fsync failed ({kind}); the log accepts no more writes")]
    Failed { kind: io::ErrorKind },
}

impl Flusher {
    pub(crate) fn new(log_end_offset: i64, active: Arc<Segment>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(FlushState {
                    appended: log_end_offset,
                    durable: log_end_offset,
                    pending: vec![active],
                    flushing: false,
                    failed: None,
                }),
                done: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FlushState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that everything below `log_end_offset` is written, the newest part to `segment`.
    pub(crate) fn appended(&self, log_end_offset: i64, segment: &Arc<Segment>) {
        let mut state = self.lock();
        state.appended = log_end_offset;
        if !state
            .pending
            .last()
            .is_some_and(|last| Arc::ptr_eq(last, segment))
        {
            state.pending.push(Arc::clone(segment));
        }
    }

    /// Records a truncation: offsets at and above `log_end_offset` are gone.
    pub(crate) fn truncated(&self, log_end_offset: i64, active: &Arc<Segment>) {
        let mut state = self.lock();
        state.appended = log_end_offset;
        state.durable = state.durable.min(log_end_offset);
        state
            .pending
            .retain(|segment| segment.base_offset() < log_end_offset);
        if !state
            .pending
            .last()
            .is_some_and(|last| Arc::ptr_eq(last, active))
        {
            state.pending.push(Arc::clone(active));
        }
    }

    /// Offsets below this are on disk.
    pub fn durable_offset(&self) -> i64 {
        self.lock().durable
    }

    /// Offsets below this are written (page cache at least).
    pub fn appended_offset(&self) -> i64 {
        self.lock().appended
    }

    pub(crate) fn check(&self) -> Result<(), FlushError> {
        match self.lock().failed {
            Some(kind) => Err(FlushError::Failed { kind }),
            None => Ok(()),
        }
    }

    /// Blocks until every offset below `offset` is on disk, running the fsync itself if no one
    /// else is. Returns at once if they already are.
    pub fn flush_to(&self, offset: i64) -> Result<(), FlushError> {
        let mut state = self.lock();
        loop {
            if let Some(kind) = state.failed {
                return Err(FlushError::Failed { kind });
            }
            if state.durable >= offset.min(state.appended) {
                return Ok(());
            }
            if state.flushing {
                state = self
                    .shared
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.flushing = true;
            let target = state.appended;
            let segments = state.pending.clone();
            drop(state);

            let result = segments.iter().try_for_each(|segment| segment.sync());

            state = self.lock();
            state.flushing = false;
            match result {
                Ok(()) => {
                    state.durable = state.durable.max(target);
                    // Older segments are sealed: once synced they never need it again.
                    let synced_older = segments.len().saturating_sub(1);
                    let drop_count = state
                        .pending
                        .iter()
                        .take(synced_older)
                        .zip(&segments)
                        .take_while(|(a, b)| Arc::ptr_eq(a, b))
                        .count();
                    state.pending.drain(..drop_count);
                }
                Err(error) => {
                    tracing::error!(%error, "fsync of the log failed; failing the log");
                    state.failed = Some(error.kind());
                }
            }
            self.shared.done.notify_all();
        }
    }
}
