//! The recorder: writes run starts and results to the store in batches, off the runs' path.
//!
//! At thousands of runs a second, one transaction per record is what limits throughput (each
//! SQLite commit serialises on the write lock). Runs hand their records to this task instead; it
//! writes whatever has accumulated while the previous batch was being written, in one
//! transaction, so the batch size adapts to the load and a lone record waits for nothing.
//!
//! A start is fire-and-forget: a run never waits for the store before its action begins. A
//! result is acknowledged: the run learns whether it was recorded (its fencing token may have
//! been superseded) before it decides on a retry. A start whose result is in the same batch is
//! not written separately; the result carries the start time.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::shares::{self, Share, Shares};
use super::writes::StoreWrites;

use crate::store::{FinishRun, StartRun, Store, StoreError};

/// The largest batch written in one transaction.
const MAX_BATCH: usize = 16_384;

enum Record {
    Start(StartRun),
    /// The starts of runs begun together (at one instant, by one slice).
    Starts(Vec<StartRun>),
    Finish(FinishRun, oneshot::Sender<Result<bool, StoreError>>),
}

impl Record {
    /// How many runs it records.
    fn runs(&self) -> usize {
        match self {
            Record::Starts(starts) => starts.len(),
            Record::Start(_) | Record::Finish(..) => 1,
        }
    }
}

/// The handle runs use to send records.
#[derive(Clone)]
pub(super) struct Recorder {
    records: mpsc::UnboundedSender<Record>,
    /// The holds that are on (see [`Recorder::hold`]).
    holds: Arc<Shares>,
}

/// The recorder's task: write until stopped, then write what is left.
///
/// A start or result that cannot be written (the store is out of reach, its disk is full) is
/// kept and tried again, with backoff, until it is written or refused; once `stopping` is
/// cancelled, a few more times only, so that a stop during an outage ends. Every outcome is
/// noted in `writes`, for readiness.
pub(super) fn spawn(
    store: Arc<dyn Store>,
    stop: CancellationToken,
    stopping: CancellationToken,
    writes: Arc<StoreWrites>,
) -> (Recorder, JoinHandle<()>) {
    let (records, mut inbox) = mpsc::unbounded_channel();
    let holds = Arc::new(Shares::new());
    let mut held = holds.watch();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                // Records first: a stop still writes everything sent before it.
                biased;
                received = inbox.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                () = stop.cancelled() => {
                    while let Ok(record) = inbox.try_recv() {
                        batch.push(record);
                    }
                    write(&*store, &mut batch, &stopping, &writes).await;
                    return;
                }
            }
            // Let every task that is ready run first: at a busy instant those are runs about to
            // start, and their records join this batch instead of waiting behind it.
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            if batch.iter().map(Record::runs).sum::<usize>() >= BUSY_BATCH {
                gather(&mut inbox, &mut batch, &stop).await;
            }
            // Not while runs are being started (at most `HOLD_LIMIT`).
            shares::all_back(&mut held, HOLD_LIMIT).await;
            write(&*store, &mut batch, &stopping, &writes).await;
        }
    });
    (Recorder { records, holds }, task)
}

/// At a busy instant (a batch of this many runs), the recorder gathers records until they stop
/// coming, so that thousands of results make a few transactions, not hundreds. Gathering also
/// drops the start records of runs whose results arrive meanwhile.
const BUSY_BATCH: usize = 256;

/// How long records must stop coming before a busy batch is written.
const BUSY_QUIET: std::time::Duration = std::time::Duration::from_millis(3);

/// The longest a busy batch waits, however busy: results are acknowledged, and their runs
/// wait for it.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest a hold delays a write: a hold is over within milliseconds, unless a job's
/// first poll blocks its thread (a bug in the job), which must not stop the recording.
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

async fn gather(
    inbox: &mut mpsc::UnboundedReceiver<Record>,
    batch: &mut Vec<Record>,
    stop: &CancellationToken,
) {
    let until = tokio::time::Instant::now() + BUSY_WAIT;
    while batch.len() < MAX_BATCH && !stop.is_cancelled() {
        let quiet = (tokio::time::Instant::now() + BUSY_QUIET).min(until);
        let room = MAX_BATCH - batch.len();
        match tokio::time::timeout_at(quiet, inbox.recv_many(batch, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn write(
    store: &dyn Store,
    batch: &mut Vec<Record>,
    stopping: &CancellationToken,
    writes: &StoreWrites,
) {
    if batch.is_empty() {
        return;
    }
    let timer = std::time::Instant::now();
    write_batch(store, batch, stopping, writes).await;
    metrics::histogram!("cronwarden_store_seconds", "op" => "record")
        .record(timer.elapsed().as_secs_f64());
}

async fn write_batch(
    store: &dyn Store,
    batch: &mut Vec<Record>,
    stopping: &CancellationToken,
    writes: &StoreWrites,
) {
    let finishing: HashSet<_> = batch
        .iter()
        .filter_map(|r| match r {
            Record::Finish(f, _) => Some(f.id),
            Record::Start(_) | Record::Starts(_) => None,
        })
        .collect();
    let mut starts = Vec::new();
    let mut finishes = Vec::new();
    let mut replies = Vec::new();
    for record in batch.drain(..) {
        match record {
            Record::Start(s) if !finishing.contains(&s.id) => starts.push(s),
            Record::Start(_) => {}
            Record::Starts(many) => {
                starts.extend(many.into_iter().filter(|s| !finishing.contains(&s.id)));
            }
            Record::Finish(f, reply) => {
                finishes.push(f);
                replies.push(reply);
            }
        }
    }
    if !starts.is_empty() {
        let started = until_written("starts", starts.len(), stopping, writes, || {
            store.start_runs(&starts)
        })
        .await;
        match started {
            Ok(started) => {
                for (start, ok) in starts.iter().zip(started) {
                    if !ok {
                        tracing::warn!(run = %start.id, "start not recorded: the run was taken over");
                    }
                }
            }
            // A start not recorded is not lost for good: the run's result carries its start.
            Err(e) => tracing::error!(error = %e, runs = starts.len(), "cannot record run starts"),
        }
    }
    if finishes.is_empty() {
        return;
    }
    let unwritten = finishes.len() as i64;
    writes.unwritten_add(unwritten);
    let written = until_written("results", finishes.len(), stopping, writes, || {
        store.finish_runs(&finishes)
    })
    .await;
    writes.unwritten_add(-unwritten);
    match written {
        Ok(recorded) => {
            for (reply, ok) in replies.into_iter().zip(recorded) {
                // A run that stopped waiting (its task was dropped) needs no answer.
                let _ = reply.send(Ok(ok));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Database(message.clone())));
            }
        }
    }
}

impl Recorder {
    /// Holds off writing until the hold is dropped (for at most `HOLD_LIMIT` at a time):
    /// SQLite writes on a thread of its own, and on two cores, a write while thousands of runs
    /// start takes a core from them for milliseconds. Records are still taken meanwhile.
    pub(super) fn hold(&self) -> Share {
        self.holds.share()
    }

    /// Queues a start record.
    pub(super) fn start(&self, start: StartRun) -> Result<(), StartRun> {
        self.records
            .send(Record::Start(start))
            .map_err(|e| match e.0 {
                Record::Start(s) => s,
                _ => unreachable!("sent a start"),
            })
    }

    /// Queues the start records of runs begun together.
    pub(super) fn start_many(&self, starts: Vec<StartRun>) -> Result<(), Vec<StartRun>> {
        self.records
            .send(Record::Starts(starts))
            .map_err(|e| match e.0 {
                Record::Starts(s) => s,
                _ => unreachable!("sent starts"),
            })
    }

    /// Records a result and waits until it is written; `Err(finish)` back if the recorder has
    /// stopped.
    pub(super) async fn finish(
        &self,
        finish: FinishRun,
    ) -> Result<Result<bool, StoreError>, FinishRun> {
        let (reply, written) = oneshot::channel();
        if let Err(e) = self.records.send(Record::Finish(finish, reply)) {
            return match e.0 {
                Record::Finish(f, _) => Err(f),
                _ => unreachable!("sent a finish"),
            };
        }
        Ok(written.await.unwrap_or_else(|_| {
            Err(StoreError::Database(
                "the recorder stopped before writing this result".to_owned(),
            ))
        }))
    }
}

/// Writes starts or results, trying again with backoff while the store refuses them (out of
/// reach, a full disk): a result lost here would leave its run `running` in the store, with
/// nobody to rescue it (its node is alive). Only a stop limits the tries.
async fn until_written<T, W, F>(
    what: &str,
    runs: usize,
    stopping: &CancellationToken,
    writes: &StoreWrites,
    mut write: W,
) -> Result<T, StoreError>
where
    W: FnMut() -> F,
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    const TRIES_WHEN_STOPPING: u32 = 5;
    let mut backoff = std::time::Duration::from_millis(100);
    let mut tries_when_stopping = 0;
    loop {
        let written = write().await;
        writes.observe(&written);
        match written {
            Err(StoreError::Database(e)) => {
                if stopping.is_cancelled() {
                    tries_when_stopping += 1;
                    if tries_when_stopping >= TRIES_WHEN_STOPPING {
                        tracing::error!(error = %e, runs, "cannot record run {what}; giving up (stopping)");
                        return Err(StoreError::Database(e));
                    }
                }
                tracing::warn!(error = %e, runs, "cannot record run {what} yet; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
