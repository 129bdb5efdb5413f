//! Whether the store takes this scheduler's writes, as its last writes found: what readiness
//! reports. A store can answer reads and refuse every write (a full disk, a read-only file
//! system, a lost write lock); a probe that only reads would call it ready while every
//! claim and result fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use jiff::Timestamp;

use crate::store::StoreError;

/// The outcome of the latest writes (claims, starts, results), and the results held in memory
/// until the store takes them.
#[derive(Debug, Default)]
pub(super) struct StoreWrites {
    // A std mutex: held for a copy, never across an await.
    failing: Mutex<Option<WriteFailure>>,
    unwritten: AtomicU64,
}

/// Since when writes fail, and the latest error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFailure {
    /// The first failure of the current streak.
    pub since: Timestamp,
    /// The latest error.
    pub error: String,
}

impl StoreWrites {
    /// Notes a write's outcome. Only database errors count: a conflict or a refused token is
    /// the store working.
    pub(super) fn observe<T>(&self, outcome: &Result<T, StoreError>) {
        match outcome {
            Ok(_) => self.succeeded(),
            Err(StoreError::Database(e)) => self.failed(e),
            Err(_) => {}
        }
    }

    pub(super) fn succeeded(&self) {
        let mut failing = self.failing.lock().unwrap();
        if failing.take().is_some() {
            tracing::info!("the store takes writes again");
        }
    }

    pub(super) fn failed(&self, error: &str) {
        let mut failing = self.failing.lock().unwrap();
        match &mut *failing {
            Some(failure) => failure.error = error.to_owned(),
            None => {
                *failing = Some(WriteFailure {
                    since: Timestamp::now(),
                    error: error.to_owned(),
                })
            }
        }
    }

    /// Results waiting in memory for the store, `n` more (or fewer) than before.
    pub(super) fn unwritten_add(&self, n: i64) {
        if n >= 0 {
            self.unwritten.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            self.unwritten
                .fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// The current failure streak, if writes fail.
    pub(super) fn failing(&self) -> Option<WriteFailure> {
        self.failing.lock().unwrap().clone()
    }

    /// Results waiting in memory for the store.
    pub(super) fn unwritten(&self) -> u64 {
        self.unwritten.load(Ordering::Relaxed)
    }
}
