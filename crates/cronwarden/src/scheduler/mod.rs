//! The scheduler: fires jobs on time, applies their policies and records every run.
//!
//! One loop owns the timetable. It sleeps until shortly before the earliest due fire (or until a
//! job changes, or a stop is asked for), claims every fire due by then in one store transaction,
//! and spawns each claimed run's task. At the instant, one timer releases all of its runs: they
//! are admitted in slices, an in-process job is begun (polled once) right there, and each run's
//! task takes it from there once every run of the instant has begun. Starts and results go to
//! the store in batches through the [`recorder`], so no run waits for the store to begin, and
//! nothing is written while an instant's runs are starting. (On a store shared by several
//! nodes a run's start is recorded before it begins, so that a run still queued is known not
//! to have begun: see [`cluster`].) The next fire is always computed from
//! the *scheduled* instant, never from "now", so a slow run or a slow loop never shifts a
//! schedule; fires that are found late (the process was down or stalled) go through the job's
//! misfire policy.
//!
//! Lifecycle, as for every background service here: [`Scheduler::start`] returns at once;
//! [`Scheduler::stop`] stops firing, lets running runs finish within the grace period, cancels
//! the rest (recording them `interrupted`) and returns when everything has ended. Stopping twice,
//! or stopping a scheduler that never started, is harmless.

mod cluster;
mod recorder;
mod runner;
mod shares;
mod writes;

use self::runner::{Admission, Release, StartBatch};
pub use self::writes::WriteFailure;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{broadcast, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::executor::Executors;
use crate::model::{JobName, JobSpec, MisfirePolicy, Run, RunId, RunStatus, SpecError, Trigger};
use crate::schedule::Schedule;
use crate::store::{ClaimFire, FinishRun, JobRecord, NewRun, RunFilter, Store, StoreError};

/// How many runs of one instant one task admits and spawns: small enough that every worker
/// thread gets a share of a busy instant's starts and the first start comes soon, large enough
/// that the slices' own tasks and locks cost little.
const START_SLICE: usize = 256;

/// Settings of a scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// This node's name, recorded with every run it claims.
    pub node: String,
    /// At most this many runs execute at once, across all jobs.
    pub max_concurrent_runs: usize,
    /// How long a stop waits for running runs before cancelling them.
    pub shutdown_grace: SignedDuration,
    /// At most this many `missed` records are written for one job's backlog of missed fires
    /// (the newest ones); older ones are counted in the log.
    pub max_missed_records: usize,
    /// How long before their instant fires are claimed. Claiming is a store transaction; doing
    /// it ahead lets a run start at its instant. Fires claimed ahead are run even if a stop
    /// comes before their instant (within the shutdown grace), like runs already going.
    pub claim_ahead: SignedDuration,
    /// How often (in real time) the store is checked for changes made by other processes,
    /// such as `cronwarden jobs pause` or `jobs trigger`.
    pub watch_interval: SignedDuration,
    /// On a shared store, how long before their instant fires are claimed by a node that is
    /// not the job's preferred one (when that node died or lags): well after `claim_ahead`.
    pub claim_ahead_others: SignedDuration,
    /// On a shared store, how often (in real time) the node heartbeats.
    pub heartbeat_interval: SignedDuration,
    /// On a shared store, how long a heartbeat holds: a node silent for this long is presumed
    /// dead and its runs are rescued by another node.
    pub node_lease: SignedDuration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            node: "local".to_owned(),
            max_concurrent_runs: 64,
            shutdown_grace: SignedDuration::from_secs(30),
            max_missed_records: 1000,
            claim_ahead: SignedDuration::from_millis(500),
            watch_interval: SignedDuration::from_secs(1),
            claim_ahead_others: SignedDuration::from_millis(100),
            heartbeat_interval: SignedDuration::from_secs(2),
            node_lease: SignedDuration::from_secs(10),
        }
    }
}

/// What happened, for observers (tests, the API's live events, metrics).
#[derive(Clone, Debug, PartialEq)]
pub enum SchedulerEvent {
    /// A run started executing.
    RunStarted(Run),
    /// A run reached a final status (including `skipped` and `missed` records).
    RunFinished(Run),
    /// Firing was paused or resumed for the whole scheduler.
    Firing {
        /// True when paused.
        paused: bool,
    },
    /// A job was created, changed, paused, resumed or deleted (through this scheduler, or by
    /// another process, noticed in the store).
    JobChanged {
        /// The job.
        job: JobName,
        /// What happened to it.
        change: JobChange,
    },
}

/// The loop's health, for readiness checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// The loop is running (not stopped, not crashed).
    pub loop_running: bool,
    /// The start-up recovery is over.
    pub recovered: bool,
    /// How late the loop last woke for a deadline.
    pub loop_lag: SignedDuration,
    /// Since when the store refuses this scheduler's writes (claims, starts, results), and
    /// why; `None` when the latest write went through.
    pub store_writes_failing: Option<WriteFailure>,
    /// Results held in memory until the store takes them.
    pub unwritten_results: u64,
}

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobChange {
    /// Stored for the first time.
    Created,
    /// Its definition changed.
    Changed,
    /// An operator paused it.
    Paused,
    /// An operator lifted its pause.
    Resumed,
    /// Deleted, with its history.
    Deleted,
}

/// Why an API call on the scheduler failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// No job has that name.
    #[error("no job is named {0:?}")]
    UnknownJob(String),
    /// The job definition is invalid.
    #[error("invalid job: {0}")]
    Invalid(#[from] SpecError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What becomes of one job's due fires.
struct Plan {
    /// Late fires recorded `missed`.
    missed: Vec<Timestamp>,
    /// Late fires run as catch-up runs.
    catch_up: Vec<Timestamp>,
    /// Fires within the grace period (or not yet due): ordinary fires.
    on_time: Vec<Timestamp>,
}

impl Plan {
    /// The latest due fire within the job's grace period is on time (it runs, late); older
    /// fires were missed (the process was down, stalled, or could not reach the store) and go
    /// through the misfire policy. So do earlier fires within the grace: the latest fire
    /// supersedes them. A frequent job back from a short outage thus runs once on time, with
    /// its misfire policy for the rest, instead of starting every fire of the outage at once
    /// (which its overlap policy would mostly record `skipped`). `fires` are in order.
    fn new(spec: &JobSpec, fires: Vec<Timestamp>, now: Timestamp) -> Plan {
        let (mut on_time, mut late): (Vec<Timestamp>, Vec<Timestamp>) = fires
            .into_iter()
            .partition(|at| now.duration_since(*at) <= spec.misfire_grace);
        let due = on_time.iter().take_while(|at| **at <= now).count();
        if due > 1 {
            late.extend(on_time.drain(..due - 1));
        }
        let (catch_up, missed) = match spec.misfire {
            MisfirePolicy::Skip => (Vec::new(), late),
            MisfirePolicy::RunOnce => {
                let mut late = late;
                let last = late.pop().into_iter().collect();
                (last, late)
            }
            MisfirePolicy::RunAll { window } => late
                .into_iter()
                .partition(|at| now.duration_since(*at) <= window),
        };
        Plan {
            missed,
            catch_up,
            on_time,
        }
    }
}

/// One slice of an instant's runs, with room made at the claim for what the instant makes of
/// them: memory written for the first time costs a page fault, and at a busy instant
/// thousands of them came at the worst moment.
#[derive(Default)]
struct Slice {
    tickets: Vec<Ticket>,
    admissions: Vec<Admission>,
    releases: Vec<(tokio::sync::oneshot::Sender<Release>, Release)>,
    starts: Vec<crate::store::StartRun>,
}

impl Slice {
    /// Makes room for as many admissions, releases and starts as there are tickets, and
    /// writes it, so that it is resident before the instant.
    fn make_room(&mut self) {
        let n = self.tickets.len();
        self.admissions = written_room(n);
        self.releases = written_room(n);
        self.starts = written_room(n);
    }
}

/// An empty vector with room for `n` items, that room written (with zeros) now.
fn written_room<T>(n: usize) -> Vec<T> {
    let mut room = Vec::with_capacity(n);
    room.spare_capacity_mut()
        .fill_with(std::mem::MaybeUninit::zeroed);
    room
}

/// A run claimed for an instant, and the way to start its task (spawned at the claim).
struct Ticket {
    run: Run,
    claimed_under: Arc<JobSpec>,
    /// The token the run gets if it starts, made ahead.
    token: Option<CancellationToken>,
    /// Its action's execution, made ahead from `claimed_under` (for a run that begins where
    /// it is released).
    prepared: Option<crate::executor::Execution>,
    start: tokio::sync::oneshot::Sender<Release>,
}

/// The runs of one job executing now, with the tokens that cancel them, until their results
/// are recorded. The first is held in place, not in a map or a list: a job rarely has more
/// than one, and admitting a run must touch as little memory as it can (thousands are admitted
/// at a busy instant).
#[derive(Default)]
struct RunningRuns {
    first: Option<RunningRun>,
    more: Vec<RunningRun>,
}

struct RunningRun {
    id: RunId,
    token: CancellationToken,
    /// Its action has ended; its result is being recorded.
    ended: bool,
}

impl RunningRuns {
    fn insert(&mut self, id: RunId, token: CancellationToken) {
        let run = RunningRun {
            id,
            token,
            ended: false,
        };
        if self.first.is_none() {
            self.first = Some(run);
        } else {
            self.more.push(run);
        }
    }

    /// Marks the run's action ended.
    fn end(&mut self, id: RunId) {
        if let Some(run) = self.iter_mut().find(|run| run.id == id) {
            run.ended = true;
        }
    }

    fn remove(&mut self, id: RunId) {
        if self.first.as_ref().is_some_and(|first| first.id == id) {
            self.first = self.more.pop();
        } else {
            self.more.retain(|run| run.id != id);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &RunningRun> {
        self.first.iter().chain(&self.more)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut RunningRun> {
        self.first.iter_mut().chain(&mut self.more)
    }

    /// The token of the run, while its action is going.
    fn get(&self, id: RunId) -> Option<&CancellationToken> {
        self.iter()
            .find(|run| run.id == id && !run.ended)
            .map(|run| &run.token)
    }

    fn tokens(&self) -> impl Iterator<Item = &CancellationToken> {
        self.iter().map(|run| &run.token)
    }

    /// Runs whose action has not ended.
    fn going(&self) -> usize {
        self.iter().filter(|run| !run.ended).count()
    }

    /// Runs whose action has not ended or whose result is not recorded yet.
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// A job as the loop holds it.
struct JobState {
    spec: Arc<JobSpec>,
    schedule: Option<Schedule>,
    /// The next scheduled instant not yet handled.
    next_fire: Option<Timestamp>,
    /// Runs executing now, with the tokens that cancel them.
    running: RunningRuns,
    /// A claimed run waiting for the current one (`overlap = queue`).
    waiting: Option<Run>,
    /// Signalled whenever one of the job's runs ends.
    idle: Arc<Notify>,
    /// Cancelled when the job stops firing (paused, disabled, deleted): its retries waiting
    /// for their time are then recorded skipped instead of running.
    retries: CancellationToken,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    executors: Executors,
    config: SchedulerConfig,
    // A std mutex, not a tokio one: it is never held across an await. A hash map: at a busy
    // instant thousands of runs are admitted, and a tree's search touches a cold key (behind
    // a pointer) at every step.
    jobs: Mutex<HashMap<JobName, JobState>>,
    /// Held across a change to a job (store write, then timetable) and across a reload from
    /// the store, so that a reload never sees a store older than the timetable: without it, a
    /// job created while the reload read the store would be taken for one deleted elsewhere.
    job_changes: tokio::sync::Mutex<()>,
    /// This node's view of the cluster (on a shared store).
    membership: cluster::Membership,
    /// Run starts being written before their actions begin (on a shared store).
    start_writes: Arc<runner::StartWrites>,
    /// Counts changes to the set of jobs on the timetable and their definitions (not the
    /// fires): what a cache of job views is valid for.
    timetable_version: std::sync::atomic::AtomicU64,
    /// For each job, the jobs that run after it succeeds (the reverse of `after`), so that a
    /// success looks up its followers instead of scanning every job.
    followers: Mutex<HashMap<JobName, BTreeSet<JobName>>>,
    /// Wakes the loop when the timetable changes.
    wake: Notify,
    /// Stops new fires (the first step of a stop).
    stop_firing: CancellationToken,
    /// Set when running runs are cancelled (the last step of a stop). Runs do not hold child
    /// tokens of it: one shared parent would serialise thousands of runs starting at once.
    cancel_runs: CancellationToken,
    tasks: TaskTracker,
    permits: Arc<Semaphore>,
    events: broadcast::Sender<SchedulerEvent>,
    /// Set while the loop runs.
    loop_running: std::sync::atomic::AtomicBool,
    /// How late (µs) the loop last woke for a deadline.
    loop_lag_us: std::sync::atomic::AtomicI64,
    /// Set while all firing is paused ([`Scheduler::pause_firing`]).
    firing_paused: std::sync::atomic::AtomicBool,
    /// Whether anyone ever subscribed to the events: a lock-free check, so that events nobody
    /// listens to are not built (the channel's own count takes a lock both cores contend for).
    subscribed: std::sync::atomic::AtomicBool,
    /// Batches run records; set when the scheduler starts.
    recorder: OnceLock<recorder::Recorder>,
    /// How the latest writes to the store went (for readiness).
    store_writes: Arc<writes::StoreWrites>,
    /// Retries a stop left queued for the next start (see [`Scheduler::stop`]).
    left_for_next_start: std::sync::atomic::AtomicUsize,
    recorder_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Stops the recorder once every run has ended (the very last step of a stop).
    stop_recorder: CancellationToken,
    /// Set once the start-up recovery is over; API calls wait for it.
    recovered: tokio::sync::watch::Sender<bool>,
}

/// The scheduler. Cheap to clone; clones share one scheduler.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl Scheduler {
    /// A scheduler over `store`, timed by `clock`, running actions with `executors`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        executors: Executors,
        config: SchedulerConfig,
    ) -> Scheduler {
        let (events, _) = broadcast::channel(4096);
        let shared = store.shared();
        Scheduler {
            inner: Arc::new(Inner {
                store,
                clock,
                executors,
                permits: Arc::new(Semaphore::new(config.max_concurrent_runs.max(1))),
                config,
                jobs: Mutex::new(HashMap::new()),
                job_changes: tokio::sync::Mutex::new(()),
                membership: cluster::Membership::new(shared),
                start_writes: Arc::default(),
                timetable_version: std::sync::atomic::AtomicU64::new(0),
                followers: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                stop_firing: CancellationToken::new(),
                cancel_runs: CancellationToken::new(),
                tasks: TaskTracker::new(),
                events,
                subscribed: false.into(),
                firing_paused: false.into(),
                loop_running: false.into(),
                loop_lag_us: 0.into(),
                recorder: OnceLock::new(),
                store_writes: Arc::default(),
                left_for_next_start: std::sync::atomic::AtomicUsize::new(0),
                recorder_task: Mutex::new(None),
                stop_recorder: CancellationToken::new(),
                recovered: tokio::sync::watch::Sender::new(false),
            }),
            started: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.inner
            .subscribed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.events.subscribe()
    }

    /// Starts the loop and returns at once. The loop first recovers what a previous process
    /// left behind: runs still `queued` or `running` are recorded `abandoned` and retried per
    /// their job's policy; fires missed while nothing ran go through each job's misfire policy.
    pub fn start(&self) {
        if self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (recorder, task) = recorder::spawn(
            self.inner.store.clone(),
            self.inner.stop_recorder.clone(),
            self.inner.stop_firing.clone(),
            self.inner.store_writes.clone(),
        );
        let _ = self.inner.recorder.set(recorder);
        *self.inner.recorder_task.lock().unwrap() = Some(task);
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = inner.recover().await {
                tracing::error!(error = %e, "recovery after start failed; continuing with the timetable");
            }
            inner.recovered.send_replace(true);
            inner.tasks.spawn(inner.clone().watch_store());
            if inner.store.shared() {
                inner.tasks.spawn(inner.clone().cluster_duty());
            }
            inner.run_loop().await;
        });
    }

    /// Stops: no new fires; running runs get the grace period to finish, then are cancelled and
    /// recorded `interrupted`. Returns when every task has ended.
    ///
    /// A stop is not the job's failure: a run it cut short gets its next attempt (when its job's
    /// retry policy allows one more), and that attempt, like a retry waiting for its time, is
    /// left `queued` for the next start, which runs it at once. On a shared store, a node that
    /// leaves such retries does not sign off, so that if it does not come back, another node
    /// takes them over once its lease runs out.
    pub async fn stop(&self) {
        let inner = &self.inner;
        inner.stop_firing.cancel();
        inner.wake.notify_one();
        inner.tasks.close();
        let deadline = crate::clock::saturating_add(inner.clock.now(), inner.config.shutdown_grace);
        tokio::select! {
            () = inner.tasks.wait() => {}
            () = inner.clock.sleep_until(deadline) => {
                inner.cancel_all_runs();
                inner.tasks.wait().await;
            }
        }
        inner.cancel_all_runs();
        // Every run has ended and sent its result: now the recorder can write the last ones.
        inner.stop_recorder.cancel();
        let task = inner.recorder_task.lock().unwrap().take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the run recorder failed");
            }
        }
        inner.executors.close().await;
        let left = inner
            .left_for_next_start
            .load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            tracing::info!(runs = left, "retries left queued for the next start");
        }
        if inner.store.shared() && left == 0 {
            // Every run of this node has ended: nothing of it is left to rescue.
            if let Err(e) = inner.store.leave(&inner.config.node).await {
                tracing::warn!(error = %e, "cannot sign this node off the store");
            }
        }
        // With retries left queued, the node does not sign off: should it not come back, its
        // lease runs out and another node takes them over and runs them.
    }

    /// Stores a job (creating or changing it) and puts it on the timetable at once. A changed
    /// schedule takes effect from now; history is kept.
    pub async fn upsert_job(&self, spec: JobSpec) -> Result<JobRecord, SchedulerError> {
        spec.validate()?;
        self.inner.executors.check(&spec.action)?;
        self.recovered().await;
        let _change = self.inner.job_changes.lock().await;
        let record = self
            .inner
            .store
            .upsert_job(&spec, self.inner.clock.now())
            .await?;
        self.inner.put_job(&record.effective_spec(), None)?;
        self.inner.wake.notify_one();
        let change = if record.version == 1 && record.created_at == record.updated_at {
            JobChange::Created
        } else {
            JobChange::Changed
        };
        self.inner.emit(SchedulerEvent::JobChanged {
            job: record.spec.name.clone(),
            change,
        });
        Ok(record)
    }

    /// Deletes a job and its history, and takes it off the timetable; false if there was no
    /// such job. Its runs in flight carry on, but their results are not kept.
    pub async fn delete_job(&self, name: &JobName) -> Result<bool, SchedulerError> {
        self.recovered().await;
        let _change = self.inner.job_changes.lock().await;
        let deleted = self.inner.store.delete_job(name).await?;
        self.inner.take_off(name);
        self.inner.wake.notify_one();
        if deleted {
            self.inner.emit(SchedulerEvent::JobChanged {
                job: name.clone(),
                change: JobChange::Deleted,
            });
        }
        Ok(deleted)
    }

    /// Pauses a job: it stops firing until [`Scheduler::resume`], whatever its definition says
    /// and across restarts. Runs already going carry on.
    pub async fn pause(&self, name: &JobName, reason: &str) -> Result<JobRecord, SchedulerError> {
        self.set_paused(name, Some(reason)).await
    }

    /// Lifts a pause made with [`Scheduler::pause`]. The job fires again from now on; fires
    /// that fell due while it was paused are not caught up.
    pub async fn resume(&self, name: &JobName) -> Result<JobRecord, SchedulerError> {
        self.set_paused(name, None).await
    }

    async fn set_paused(
        &self,
        name: &JobName,
        reason: Option<&str>,
    ) -> Result<JobRecord, SchedulerError> {
        self.recovered().await;
        let _change = self.inner.job_changes.lock().await;
        let record = self
            .inner
            .store
            .set_paused(name, reason)
            .await?
            .ok_or_else(|| SchedulerError::UnknownJob(name.to_string()))?;
        self.inner.put_job(&record.effective_spec(), None)?;
        self.inner.wake.notify_one();
        self.inner.emit(SchedulerEvent::JobChanged {
            job: name.clone(),
            change: if reason.is_some() {
                JobChange::Paused
            } else {
                JobChange::Resumed
            },
        });
        Ok(record)
    }

    /// Runs a job now, whatever its schedule (and even when it is paused).
    pub async fn trigger(&self, name: &JobName) -> Result<Run, SchedulerError> {
        self.recovered().await;
        self.inner.trigger(name).await
    }

    /// Waits until the start-up recovery is over (if the scheduler was started): until then,
    /// a run recorded now could be taken for one a previous process left behind.
    async fn recovered(&self) {
        if self.started.load(std::sync::atomic::Ordering::SeqCst) {
            let mut recovered = self.inner.recovered.subscribe();
            let _ = recovered.wait_for(|done| *done).await;
        }
    }

    /// Stops all firing, without a restart: no fire is claimed until [`Scheduler::resume_firing`].
    /// Runs already going carry on; triggered runs still run. Not persisted: a restart fires
    /// again.
    pub fn pause_firing(&self) {
        if !self
            .inner
            .firing_paused
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::info!("firing paused");
            self.inner.wake.notify_one();
            self.inner.emit(SchedulerEvent::Firing { paused: true });
        }
    }

    /// Fires again after [`Scheduler::pause_firing`], from now on: fires that fell due while
    /// paused are not caught up (as for a job that is resumed).
    pub fn resume_firing(&self) {
        if self
            .inner
            .firing_paused
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let now = self.inner.clock.now();
            for job in self.inner.jobs.lock().unwrap().values_mut() {
                job.next_fire = job.schedule.as_ref().and_then(|s| s.next_after(now));
            }
            tracing::info!("firing resumed");
            self.inner.wake.notify_one();
            self.inner.emit(SchedulerEvent::Firing { paused: false });
        }
    }

    /// Whether this node does the maintenance work, such as pruning the history: always when
    /// alone on its store; on a shared store, while it holds the maintenance lease.
    pub fn is_maintainer(&self) -> bool {
        self.inner.membership.maintainer()
    }

    /// Whether firing is paused.
    pub fn firing_paused(&self) -> bool {
        self.inner
            .firing_paused
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cancels a run that is executing (or waiting for a permit); it is recorded
    /// `interrupted`. False if no such run is going on this scheduler.
    pub fn cancel_run(&self, id: RunId) -> bool {
        let jobs = self.inner.jobs.lock().unwrap();
        for job in jobs.values() {
            if let Some(token) = job.running.get(id) {
                token.cancel();
                return true;
            }
        }
        false
    }

    /// How many runs are executing, and how many wait for the run before them
    /// (`overlap = queue`).
    pub fn load(&self) -> (usize, usize) {
        let jobs = self.inner.jobs.lock().unwrap();
        let running = jobs.values().map(|j| j.running.len()).sum();
        let waiting = jobs.values().filter(|j| j.waiting.is_some()).count();
        (running, waiting)
    }

    /// The jobs on the timetable, and the next `count` fires across all enabled jobs,
    /// earliest first.
    pub fn upcoming(&self, count: usize) -> (usize, Vec<(Timestamp, JobName)>) {
        let jobs = self.inner.jobs.lock().unwrap();
        let mut fires: Vec<(Timestamp, JobName)> = jobs
            .values()
            .filter(|j| j.spec.enabled)
            .filter_map(|j| Some((j.next_fire?, j.spec.name.clone())))
            .collect();
        fires.sort();
        fires.truncate(count);
        (jobs.len(), fires)
    }

    /// Whether the loop is running and has finished the start-up recovery, and how late it
    /// last woke for a deadline: what readiness checks look at.
    pub fn health(&self) -> Health {
        Health {
            loop_running: self
                .inner
                .loop_running
                .load(std::sync::atomic::Ordering::SeqCst),
            recovered: *self.inner.recovered.borrow(),
            loop_lag: SignedDuration::from_micros(
                self.inner
                    .loop_lag_us
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            store_writes_failing: self.inner.store_writes.failing(),
            unwritten_results: self.inner.store_writes.unwritten(),
        }
    }

    /// A job's next fire, from the timetable.
    pub fn next_fire(&self, name: &JobName) -> Option<Timestamp> {
        self.inner.jobs.lock().unwrap().get(name)?.next_fire
    }

    /// The next fire of each of these jobs (`None` for a job with none, or unknown), under one
    /// look at the timetable.
    pub fn next_fire_of(&self, names: &[&JobName]) -> Vec<Option<Timestamp>> {
        let jobs = self.inner.jobs.lock().unwrap();
        names
            .iter()
            .map(|name| jobs.get(*name).and_then(|j| j.next_fire))
            .collect()
    }

    /// A number that changes whenever a job is put on or taken off the timetable, or its
    /// definition changes there (not when it fires). With the store's change number, it
    /// tells a cache of job views whether they still hold.
    pub fn timetable_version(&self) -> u64 {
        self.inner
            .timetable_version
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The definition of a job as the scheduler holds it now.
    pub fn job(&self, name: &JobName) -> Option<Arc<JobSpec>> {
        self.inner
            .jobs
            .lock()
            .unwrap()
            .get(name)
            .map(|j| j.spec.clone())
    }

    /// The next `count` fires of a job, from the loop's own timetable.
    pub fn next_fires(&self, name: &JobName, count: usize) -> Option<Vec<Timestamp>> {
        let jobs = self.inner.jobs.lock().unwrap();
        let job = jobs.get(name)?;
        let (Some(schedule), Some(first)) = (&job.schedule, job.next_fire) else {
            return Some(Vec::new());
        };
        let mut fires = vec![first];
        fires.extend(schedule.fires_after(first).take(count.saturating_sub(1)));
        fires.truncate(count);
        Some(fires)
    }
}

impl Inner {
    async fn trigger(self: &Arc<Self>, name: &JobName) -> Result<Run, SchedulerError> {
        if !self.jobs.lock().unwrap().contains_key(name) {
            return Err(SchedulerError::UnknownJob(name.to_string()));
        }
        let now = self.clock.now();
        let run = self
            .store
            .record_run(NewRun {
                job: name,
                scheduled_at: now,
                trigger: Trigger::Manual,
                attempt: 1,
                status: RunStatus::Queued,
                node: &self.config.node,
                at: now,
                error: None,
            })
            .await?;
        self.dispatch(run.clone());
        Ok(run)
    }

    /// Follows changes other processes make in the store (the CLI pausing a job, asking for a
    /// run): polls the store's change number, a one-row read, every `watch_interval` of real
    /// time, and on a change reloads the jobs and takes the run requests.
    async fn watch_store(self: Arc<Self>) {
        let mut seen = None;
        // A change another node makes is seen at once where the store notifies (PostgreSQL),
        // at the next poll otherwise.
        let signal = self.store.change_signal();
        loop {
            match self.store.change_seq().await {
                Ok(seq) if seen != Some(seq) => {
                    seen = Some(seq);
                    if let Err(e) = self.sync_jobs().await {
                        tracing::error!(error = %e, "cannot reload the jobs from the store");
                    }
                    self.take_run_requests().await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the store's change number"),
            }
            tokio::select! {
                () = self.stop_firing.cancelled() => return,
                () = tokio::time::sleep(self.config.watch_interval.unsigned_abs()) => {}
                () = async {
                    match &signal {
                        Some(signal) => signal.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Puts on the timetable every job whose stored definition differs from the one held, and
    /// takes off jobs deleted from the store.
    async fn sync_jobs(&self) -> Result<(), StoreError> {
        let _changes = self.job_changes.lock().await;
        let records = self.store.list_jobs().await?;
        let stored: BTreeSet<&JobName> = records.iter().map(|r| &r.spec.name).collect();
        let mut changed = false;
        for record in &records {
            let held = self
                .jobs
                .lock()
                .unwrap()
                .get(&record.spec.name)
                .map(|j| j.spec.clone());
            let spec = record.effective_spec();
            if held.as_deref() == Some(&spec) {
                continue;
            }
            tracing::info!(job = %record.spec.name, version = record.version, "job changed in the store; rescheduled");
            let change = match held {
                None => JobChange::Created,
                Some(held) if held.enabled && !spec.enabled => JobChange::Paused,
                Some(held) if !held.enabled && spec.enabled => JobChange::Resumed,
                Some(_) => JobChange::Changed,
            };
            match self.put_job(&spec, None) {
                Ok(()) => {
                    changed = true;
                    self.emit(SchedulerEvent::JobChanged {
                        job: record.spec.name.clone(),
                        change,
                    });
                }
                Err(e) => {
                    tracing::error!(job = %record.spec.name, error = %e, "stored job is invalid; it will not fire")
                }
            }
        }
        let gone: Vec<JobName> = self
            .jobs
            .lock()
            .unwrap()
            .keys()
            .filter(|name| !stored.contains(name))
            .cloned()
            .collect();
        for name in gone {
            tracing::info!(job = %name, "job deleted from the store; taken off the timetable");
            self.take_off(&name);
            changed = true;
            self.emit(SchedulerEvent::JobChanged {
                job: name,
                change: JobChange::Deleted,
            });
        }
        if changed {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Takes a job off the timetable. Its runs in flight carry on; fires claimed ahead are
    /// recorded skipped at their instant.
    fn take_off(&self, name: &JobName) {
        self.timetable_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let removed = self.jobs.lock().unwrap().remove(name);
        if let Some(job) = removed {
            job.retries.cancel();
            // A run waiting behind the current one goes with the job (and its history).
            if job.waiting.is_some() {
                metrics::gauge!("cronwarden_runs_waiting").decrement(1.0);
            }
            let mut followers = self.followers.lock().unwrap();
            for before in &job.spec.after {
                if let Some(set) = followers.get_mut(before) {
                    set.remove(name);
                }
            }
        }
    }

    async fn take_run_requests(self: &Arc<Self>) {
        let requests = match self.store.take_run_requests().await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!(error = %e, "cannot take run requests");
                return;
            }
        };
        for request in requests {
            match self.trigger(&request.job).await {
                Ok(run) => {
                    tracing::info!(job = %request.job, run = %run.id, by = %request.requested_by, "run requested")
                }
                Err(e) => {
                    tracing::error!(job = %request.job, error = %e, "cannot start a requested run")
                }
            }
        }
    }

    /// Cancels every run: those executing, and any admitted from now on.
    fn cancel_all_runs(&self) {
        self.cancel_runs.cancel();
        // Under the lock that admission takes: a run admitted concurrently either sees the
        // cancellation or has its token in `running` by now.
        for job in self.jobs.lock().unwrap().values() {
            for token in job.running.tokens() {
                token.cancel();
            }
        }
    }

    /// Whether events are worth building.
    fn observed(&self) -> bool {
        self.subscribed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn emit(&self, event: SchedulerEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Puts a job on the timetable; `resume_after` is where its schedule stood (the last fire
    /// claimed) when known, else it fires from now on.
    fn put_job(&self, spec: &JobSpec, resume_after: Option<Timestamp>) -> Result<(), SpecError> {
        let schedule = spec.schedule()?;
        self.timetable_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let now = self.clock.now();
        let mut jobs = self.jobs.lock().unwrap();
        let previous = jobs.remove(&spec.name);
        let next_fire = match (&schedule, resume_after) {
            (Some(s), Some(last)) => s.next_after(last),
            (Some(s), None) => s.next_after(now),
            (None, _) => None,
        };
        {
            let mut followers = self.followers.lock().unwrap();
            for before in previous.iter().flat_map(|p| &p.spec.after) {
                if let Some(set) = followers.get_mut(before) {
                    set.remove(&spec.name);
                }
            }
            for before in &spec.after {
                followers
                    .entry(before.clone())
                    .or_default()
                    .insert(spec.name.clone());
            }
        }
        // A changed job keeps its runs in flight (and their bookkeeping).
        let (running, waiting, idle, retries) = match previous {
            Some(p) => {
                // Pausing a job stops its retries too: an operator who pauses a failing job
                // means it to stop now, not after its remaining attempts.
                if p.spec.enabled && !spec.enabled {
                    p.retries.cancel();
                }
                let retries = if p.retries.is_cancelled() {
                    CancellationToken::new()
                } else {
                    p.retries
                };
                (p.running, p.waiting, p.idle, retries)
            }
            None => Default::default(),
        };
        jobs.insert(
            spec.name.clone(),
            JobState {
                spec: Arc::new(spec.clone()),
                schedule,
                next_fire,
                running,
                waiting,
                idle,
                retries,
            },
        );
        Ok(())
    }

    async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        // What the commands of a daemon that died left running is ended first: nothing of its
        // runs may still be at work when they are retried or their jobs fire again.
        self.executors.reap_leftovers().await;
        let now = self.clock.now();
        for record in self.store.list_jobs().await? {
            if let Err(e) = self.put_job(&record.effective_spec(), record.last_fire) {
                tracing::error!(job = %record.spec.name, error = %e, "stored job is invalid; it will not fire");
            }
        }
        // Alone on the store, every unfinished run belongs to a process that is gone, and may
        // have begun (starts are recorded after their action begins). On a shared store only
        // this node's own (under the same name, before a restart): other nodes' runs are
        // theirs, or are rescued once their heartbeat runs out; and a run still queued there
        // cannot have begun (its start would have been recorded first), so it runs now.
        let node = self.config.node.as_str();
        let runs = if self.store.shared() {
            self.store.take_over_runs(node, node, now).await?
        } else {
            self.take_over_alone(now).await?
        };
        let (unbegun, abandoned): (Vec<Run>, Vec<Run>) = runs
            .into_iter()
            .partition(|r| r.status == RunStatus::Queued);
        for run in &abandoned {
            tracing::warn!(job = %run.job, run = %run.id, "run was left unfinished by a previous process; recorded abandoned");
        }
        self.retry_abandoned(abandoned).await;
        self.run_unbegun(unbegun);
        Ok(())
    }

    /// Takes over what the previous processes on a store of this one's alone (SQLite) left
    /// unfinished: a `running` run is recorded `abandoned` (to be retried per policy), and so
    /// is a `queued` one, which may have begun (starts are recorded after their action begins
    /// there) - except a queued retry, which is returned still queued, to run now. A retry is
    /// queued when it waits for its time or a stop left it for the next start; a job that
    /// retries accepts that its action runs again, and had such a retry begun before a crash,
    /// abandoning it would run the action again as well, only as one attempt more.
    async fn take_over_alone(&self, now: Timestamp) -> Result<Vec<Run>, StoreError> {
        let mut nodes = BTreeSet::new();
        for status in [RunStatus::Queued, RunStatus::Running] {
            let filter = RunFilter {
                status: Some(status),
                limit: Some(u32::MAX),
                ..RunFilter::default()
            };
            nodes.extend(
                self.store
                    .list_runs(&filter)
                    .await?
                    .into_iter()
                    .map(|r| r.node),
            );
        }
        let mut runs = Vec::new();
        let mut may_have_begun = Vec::new();
        for node in nodes {
            let taken = self
                .store
                .take_over_runs(&node, &self.config.node, now)
                .await?;
            for run in taken {
                if run.status == RunStatus::Queued && run.trigger != Trigger::Retry {
                    may_have_begun.push(run);
                } else {
                    runs.push(run);
                }
            }
        }
        // In one transaction: a crash just before a busy instant leaves thousands.
        let error = "the scheduler stopped while this run was queued";
        let finishes: Vec<FinishRun> = may_have_begun
            .iter()
            .map(|run| FinishRun {
                id: run.id,
                fencing_token: run.fencing_token,
                status: RunStatus::Abandoned,
                started_at: None,
                finished_at: now,
                exit_code: None,
                error: Some(error.to_owned()),
                output: None,
            })
            .collect();
        let recorded = if finishes.is_empty() {
            Vec::new()
        } else {
            self.store.finish_runs(&finishes).await?
        };
        for (mut run, recorded) in may_have_begun.into_iter().zip(recorded) {
            if recorded {
                run.status = RunStatus::Abandoned;
                run.finished_at = Some(now);
                run.error = Some(error.to_owned());
                runs.push(run);
            }
        }
        runs.sort_by_key(|r| r.id);
        Ok(runs)
    }

    /// Announces runs just recorded `abandoned` and retries each at once, per its job's retry
    /// policy (its wait has passed already): after a restart, and for a dead node's runs.
    async fn retry_abandoned(self: &Arc<Self>, runs: Vec<Run>) {
        if !runs.is_empty() {
            // A dead node may have run on this host too.
            self.executors.reap_leftovers().await;
        }
        for run in runs {
            self.emit(SchedulerEvent::RunFinished(run.clone()));
            let spec = self
                .jobs
                .lock()
                .unwrap()
                .get(&run.job)
                .map(|j| j.spec.clone());
            if let Some(spec) = spec {
                self.clone()
                    .retry_if_allowed(&spec, &run, runner::RetryWait::Now)
                    .await;
            }
        }
    }

    async fn run_loop(self: Arc<Self>) {
        self.loop_running
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Cleared however the loop ends.
        struct Ended<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _ended = Ended(&self.loop_running);
        // After a store failure, the loop retries no sooner than this.
        let mut retry_at: Option<Timestamp> = None;
        loop {
            let now = self.clock.now();
            let paused = self.firing_paused.load(std::sync::atomic::Ordering::SeqCst);
            if !paused && retry_at.is_none_or(|at| at <= now) {
                retry_at = None;
                let due = self.take_due(now);
                if !due.is_empty() {
                    if let Err(e) = self.fire(due, now).await {
                        tracing::error!(error = %e, "cannot claim due fires; retrying in 1s (fires that become late go through their misfire policy)");
                        retry_at = Some(crate::clock::saturating_add(
                            now,
                            SignedDuration::from_secs(1),
                        ));
                    }
                }
            }
            let members = self.membership.members();
            let earliest = self
                .jobs
                .lock()
                .unwrap()
                .values()
                .filter_map(|j| {
                    let at = j.next_fire.filter(|_| j.spec.enabled)?;
                    Some(at - self.claim_ahead_for(&members, &j.spec.name))
                })
                .min();
            let wake_at = match (earliest, retry_at) {
                // Paused: nothing to wake for until resumed (which wakes the loop).
                _ if paused => None,
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                () = self.stop_firing.cancelled() => return,
                () = self.wake.notified() => {}
                () = async {
                    match wake_at {
                        Some(at) => self.clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    // How late the loop woke: a busy or starved process shows here first.
                    if let Some(at) = wake_at {
                        let lag = self.clock.now().duration_since(at);
                        self.loop_lag_us.store(
                            lag.as_micros().max(0) as i64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                }
            }
        }
    }

    /// Handles due fires (some of them up to `claim_ahead` in the future): every fire is
    /// claimed in one transaction, then released at its instant. Fires past their job's grace
    /// period (the process was down or stalled) go through the job's misfire policy: recorded
    /// `missed`, or run as a backlog of catch-up runs, one after another, before the job's
    /// on-time fires.
    ///
    /// On a store error nothing was claimed: the jobs' timetables are put back so the loop can
    /// try again, and fires that become late meanwhile meet the misfire policy then.
    async fn fire(
        self: &Arc<Self>,
        due: Vec<(Arc<JobSpec>, Vec<Timestamp>)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let plans: Vec<(Arc<JobSpec>, Plan)> = due
            .into_iter()
            .map(|(spec, fires)| {
                let plan = Plan::new(&spec, fires, now);
                (spec, plan)
            })
            .collect();
        let mut claims = Vec::new();
        for (spec, plan) in &plans {
            let claim = |at: &Timestamp, trigger| ClaimFire {
                job: &spec.name,
                scheduled_at: *at,
                trigger,
                attempt: 1,
                node: &self.config.node,
            };
            claims.extend(plan.missed.iter().map(|at| claim(at, Trigger::Schedule)));
            claims.extend(plan.catch_up.iter().map(|at| claim(at, Trigger::CatchUp)));
            claims.extend(plan.on_time.iter().map(|at| claim(at, Trigger::Schedule)));
        }
        if !self
            .membership
            .may_claim(now, self.config.heartbeat_interval)
        {
            // This node's heartbeat is not current (the store was out of reach, or the process
            // stopped): it may have been presumed dead and rescued. Claim after the next one.
            self.rewind(&claims);
            self.membership.heartbeat_soon();
            return Err(StoreError::Database(
                "this node's heartbeat is not current; claiming after the next one".to_owned(),
            ));
        }
        let timer = std::time::Instant::now();
        let claimed = self.store.claim_fires(&claims).await;
        self.store_writes.observe(&claimed);
        metrics::histogram!("cronwarden_store_seconds", "op" => "claim")
            .record(timer.elapsed().as_secs_f64());
        let claimed = match claimed {
            Ok(claimed) => {
                let won = claimed.iter().filter(|c| c.is_some()).count();
                metrics::counter!("cronwarden_fires_claimed_total").increment(won as u64);
                claimed
            }
            Err(e) => {
                self.rewind(&claims);
                // The store may have refused this node (presumed dead and rescued): the next
                // heartbeat tells, and lets it claim again.
                self.membership.heartbeat_soon();
                return Err(e);
            }
        };
        let mut claimed = claims.iter().zip(claimed).map(|(claim, run)| {
            if run.is_none() {
                tracing::debug!(job = %claim.job, at = %claim.scheduled_at, "fire already claimed");
            }
            run
        });
        let mut on_time_runs = Vec::new();
        for (spec, plan) in &plans {
            let missed: Vec<Run> = claimed.by_ref().take(plan.missed.len()).flatten().collect();
            let backlog: Vec<Run> = claimed
                .by_ref()
                .take(plan.catch_up.len())
                .flatten()
                .collect();
            let on_time = claimed.by_ref().take(plan.on_time.len()).flatten();
            if !missed.is_empty() {
                let inner = self.clone();
                self.tasks.spawn(async move {
                    let error = "missed: the scheduler was not running when this fire was due";
                    for run in missed {
                        inner
                            .finish(run, RunStatus::Missed, None, Some(error.to_owned()), None)
                            .await;
                    }
                });
            }
            if backlog.is_empty() {
                on_time_runs.extend(on_time.map(|run| (run, spec.clone())));
            } else {
                // Catch-up runs go one after another, whatever the overlap policy: they are one
                // backlog, and the job's on-time fires wait behind it.
                let mut runs = backlog;
                runs.extend(on_time);
                let (inner, spec) = (self.clone(), spec.clone());
                self.tasks.spawn(async move {
                    for run in runs {
                        inner.wait_idle(&run.job).await;
                        inner.clone().release(run, spec.clone()).await;
                    }
                });
            }
        }
        // One timer per instant, not one per run: at a busy instant, thousands of timers firing
        // together cost more than the runs' own starts. Each run's task is spawned now, ahead
        // of its instant, so that the instant itself allocates (and faults in) no memory.
        let mut instants: BTreeMap<Timestamp, Vec<Slice>> = BTreeMap::new();
        for (run, claimed_under) in on_time_runs {
            let (start, released) = tokio::sync::oneshot::channel::<Release>();
            let inner = self.clone();
            self.tasks.spawn(async move {
                // Nothing comes if the run is not to start here (see `release_instant`).
                if let Ok(release) = released.await {
                    inner.released(release).await;
                }
            });
            let slices = instants.entry(run.scheduled_at).or_default();
            if slices
                .last()
                .is_none_or(|slice| slice.tickets.len() == START_SLICE)
            {
                slices.push(Slice::default());
            }
            let token = CancellationToken::new();
            let prepared = self.prepare(&claimed_under, &run, &token);
            slices.last_mut().unwrap().tickets.push(Ticket {
                run,
                claimed_under,
                token: Some(token),
                prepared,
                start,
            });
        }
        for slice in instants.values_mut().flatten() {
            slice.make_room();
        }
        for (at, slices) in instants {
            self.tasks.spawn(self.clone().release_instant(at, slices));
        }
        Ok(())
    }

    /// Starts the runs claimed for one instant, at that instant: [`Self::release`] for a
    /// whole instant at once, on one timer. Each run's admission is sent to its task.
    ///
    /// The runs come in slices, each admitted under one lock from a task of its own: every
    /// worker thread starts runs, and the first start waits for one slice's admission, not
    /// the whole instant's.
    async fn release_instant(self: Arc<Self>, at: Timestamp, slices: Vec<Slice>) {
        self.clock.sleep_until(at).await;
        if let Some((status, reason)) = self.release_refused() {
            for ticket in slices.into_iter().flat_map(|slice| slice.tickets) {
                self.finish(ticket.run, status, None, Some(reason.to_owned()), None)
                    .await;
            }
            return;
        }
        // No run's task is woken until every run of the instant has begun: woken earlier,
        // they would take the cores (and the job table's lock) from the runs still to start.
        // Each slice holds a share of the instant's slices until its runs have begun (or it
        // failed), then waits for the others' (a second at most: a job whose first poll blocks
        // its thread, a bug in the job, must not hold back the other slices for good).
        let starting = shares::Shares::new();
        for slice in slices {
            let inner = self.clone();
            let starting = starting.share();
            // Nor is anything written to the store until every slice is done.
            let hold = self.recorder.get().map(|recorder| recorder.hold());
            self.tasks.spawn(async move {
                let _hold = hold;
                // Decided under the lock, carried out after it: the other workers' slices wait
                // for the lock only as long as the decisions take.
                let Slice {
                    mut tickets,
                    mut admissions,
                    mut releases,
                    starts,
                } = slice;
                {
                    let mut jobs = inner.lock_jobs_spinning();
                    admissions.extend(tickets.iter_mut().map(|t| {
                        let token = t.token.take().unwrap_or_default();
                        inner.admit_released(&mut jobs, &t.run, &t.claimed_under, token)
                    }));
                }
                if inner.membership.shared() {
                    inner
                        .record_starts_here(tickets.iter_mut().map(|t| &mut t.run), &admissions)
                        .await;
                }
                let mut batch = StartBatch::new(starts);
                for (admission, ticket) in admissions.into_iter().zip(tickets) {
                    // A run that waits for the one before it is started by that one's end.
                    if matches!(admission, Admission::Wait) {
                        continue;
                    }
                    let prepared = ticket.prepared.map(|p| (ticket.claimed_under, p));
                    let release =
                        inner.release_admitted(admission, ticket.run, &mut batch, prepared);
                    releases.push((ticket.start, release));
                }
                batch.send(&inner);
                starting
                    .give_back_and_wait(std::time::Duration::from_secs(1))
                    .await;
                for (start, release) in releases {
                    if let Err(release) = start.send(release) {
                        // Its task is gone (the runtime is shutting down): carry it out anew.
                        inner.tasks.spawn(inner.clone().released(release));
                    }
                }
            });
        }
    }

    /// The job table, for a slice of a busy instant: the other worker holds it at most for
    /// another slice's admissions (tens of microseconds), so this waits spinning. Put to sleep
    /// instead, this thread would be woken on the core of the thread that woke it, and wait
    /// there for that thread's time slice to end (4 ms) while the other core idled.
    fn lock_jobs_spinning(&self) -> std::sync::MutexGuard<'_, HashMap<JobName, JobState>> {
        let give_up = std::time::Instant::now() + std::time::Duration::from_millis(1);
        loop {
            match self.jobs.try_lock() {
                Ok(jobs) => return jobs,
                Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                    std::hint::spin_loop();
                }
                // Held longer (its holder was preempted), or poisoned: wait as usual.
                Err(_) => return self.jobs.lock().unwrap(),
            }
        }
    }

    /// Why claimed runs may not start now, if they may not: the status and reason to record
    /// them with instead.
    ///
    /// (On a shared store, a claim whose node was presumed dead meanwhile is not refused
    /// here: another node may have taken it over, or not, and the store says which when the
    /// run's start is recorded, before its action begins.)
    fn release_refused(&self) -> Option<(RunStatus, &'static str)> {
        if self.cancel_runs.is_cancelled() {
            return Some((
                RunStatus::Interrupted,
                "interrupted: the scheduler stopped before this fire was due",
            ));
        }
        None
    }

    /// The admission of a run released at its instant: skipped if its job was deleted, paused
    /// or rescheduled since the claim, else what the overlap policy decides.
    fn admit_released(
        &self,
        jobs: &mut HashMap<JobName, JobState>,
        run: &Run,
        claimed_under: &Arc<JobSpec>,
        token: CancellationToken,
    ) -> Admission {
        match jobs.get_mut(&run.job) {
            None => Admission::Skip("skipped: the job was deleted".to_owned()),
            Some(job) if !job.spec.enabled => Admission::Skip(
                "skipped: the job was paused after this fire was claimed".to_owned(),
            ),
            // The same definition as at the claim (the common case) needs no check.
            Some(job)
                if !Arc::ptr_eq(&job.spec, claimed_under)
                    && !job
                        .schedule
                        .as_ref()
                        .is_some_and(|s| s.fires_at(run.scheduled_at)) =>
            {
                Admission::Skip(
                    "skipped: the job's schedule changed after this fire was claimed".to_owned(),
                )
            }
            Some(job) => self.admit_with(job, run, token),
        }
    }

    /// Starts a claimed run at its instant. It was claimed, so it ends with a record whatever
    /// happens: run, skipped (its job was paused, deleted or rescheduled meanwhile; or the
    /// overlap policy), or interrupted (a stop ran out of grace before the instant came).
    ///
    /// The run executes on this task: at a busy instant, the work of starting thousands of runs
    /// is already done (tasks spawned, timers set) when the instant comes.
    async fn release(self: Arc<Self>, run: Run, claimed_under: Arc<JobSpec>) {
        self.clock.sleep_until(run.scheduled_at).await;
        if let Some((status, reason)) = self.release_refused() {
            self.finish(run, status, None, Some(reason.to_owned()), None)
                .await;
            return;
        }
        let admission = {
            let mut jobs = self.jobs.lock().unwrap();
            self.admit_released(&mut jobs, &run, &claimed_under, CancellationToken::new())
        };
        self.admitted(admission, run).await;
    }

    /// Puts claims that failed back on their jobs' timetables.
    fn rewind(&self, claims: &[ClaimFire<'_>]) {
        let mut jobs = self.jobs.lock().unwrap();
        for claim in claims {
            if let Some(job) = jobs.get_mut(claim.job) {
                if job.next_fire.is_none_or(|next| claim.scheduled_at < next) {
                    job.next_fire = Some(claim.scheduled_at);
                }
            }
        }
    }

    /// Every enabled job's fires at or before `now`, advancing each timetable past them.
    /// How long before its instant this node claims a fire of `job`: `claim_ahead` if it is
    /// the job's preferred node among `members`, `claim_ahead_others` if not.
    fn claim_ahead_for(&self, members: &[String], job: &JobName) -> SignedDuration {
        if cluster::Membership::prefers(members, &self.config.node, job) {
            self.config.claim_ahead
        } else {
            self.config.claim_ahead_others
        }
    }

    /// Takes off the timetable every fire due for claiming at `now`.
    fn take_due(&self, now: Timestamp) -> Vec<(Arc<JobSpec>, Vec<Timestamp>)> {
        let members = self.membership.members();
        let mut jobs = self.jobs.lock().unwrap();
        let mut due = Vec::new();
        for job in jobs.values_mut() {
            let (Some(schedule), true) = (&job.schedule, job.spec.enabled) else {
                continue;
            };
            let now =
                crate::clock::saturating_add(now, self.claim_ahead_for(&members, &job.spec.name));
            let mut fires = Vec::new();
            let mut skipped = 0usize;
            while let Some(at) = job.next_fire.filter(|at| *at <= now) {
                if fires.len() == self.config.max_missed_records + 1 {
                    fires.remove(0);
                    skipped += 1;
                }
                fires.push(at);
                job.next_fire = schedule.next_after(at);
            }
            if skipped > 0 {
                tracing::warn!(job = %job.spec.name, skipped, "older missed fires were not recorded");
            }
            if !fires.is_empty() {
                due.push((job.spec.clone(), fires));
            }
        }
        // Claimed in name order, the same on every node: two nodes inserting the same claims
        // in different orders could deadlock on the unique key.
        due.sort_unstable_by(|(a, _), (b, _)| a.name.cmp(&b.name));
        due
    }

    /// Records a final status for `run` and announces it; returns the run as recorded, or
    /// `None` if the result was not recorded (the run was taken over, or the store failed).
    async fn finish(
        &self,
        run: Run,
        status: RunStatus,
        exit_code: Option<i32>,
        error: Option<String>,
        output: Option<String>,
    ) -> Option<Run> {
        let done = self
            .record_result(run, status, exit_code, error, output)
            .await?;
        if self.observed() {
            self.emit(SchedulerEvent::RunFinished(done.clone()));
        }
        Some(done)
    }

    /// Records a final status for `run`, without announcing it: the runner announces an
    /// executed run once its retry, if any, is claimed, so that whoever sees a failed run
    /// finish can tell from the store whether another attempt is coming.
    async fn record_result(
        &self,
        mut run: Run,
        status: RunStatus,
        exit_code: Option<i32>,
        error: Option<String>,
        output: Option<String>,
    ) -> Option<Run> {
        let finished_at = self.clock.now();
        let finish = FinishRun {
            id: run.id,
            fencing_token: run.fencing_token,
            status,
            started_at: run.started_at,
            finished_at,
            exit_code,
            error: error.clone(),
            output: output.clone(),
        };
        let recorded = match self.recorder.get() {
            Some(recorder) => match recorder.finish(finish).await {
                Ok(recorded) => recorded,
                // The recorder has stopped: write directly.
                Err(finish) => self.store.finish_run(finish).await,
            },
            None => self.store.finish_run(finish).await,
        };
        match recorded {
            Ok(true) => {
                let job = run.job.shared();
                if let Some(started) = run.started_at {
                    metrics::histogram!("cronwarden_run_duration_seconds", "job" => job.clone())
                        .record(finished_at.duration_since(started).as_secs_f64().max(0.0));
                }
                metrics::counter!("cronwarden_runs_total", "job" => job, "status" => status.as_str())
                    .increment(1);
                // Failures are worth a line in the log; successes only at debug level (a busy
                // scheduler finishes thousands a second). The error is redacted already.
                match status {
                    RunStatus::Succeeded | RunStatus::Skipped => tracing::debug!(
                        job = %run.job, run = %run.id, attempt = run.attempt, status = status.as_str(), "run finished"
                    ),
                    _ => tracing::warn!(
                        job = %run.job, run = %run.id, attempt = run.attempt, status = status.as_str(),
                        error = error.as_deref().unwrap_or(""), "run did not succeed"
                    ),
                }
                run.status = status;
                run.finished_at = Some(finished_at);
                run.exit_code = exit_code;
                run.error = error;
                run.output = output;
                Some(run)
            }
            Ok(false) => {
                tracing::warn!(run = %run.id, "result not recorded: the run was taken over or finished elsewhere");
                None
            }
            Err(e) => {
                tracing::error!(run = %run.id, error = %e, "cannot record a run's result");
                None
            }
        }
    }

    /// Waits until no run of `job` is executing.
    async fn wait_idle(&self, job: &JobName) {
        loop {
            let idle = self.jobs.lock().unwrap().get(job).map(|j| j.idle.clone());
            let Some(idle) = idle else { return };
            let notified = idle.notified();
            tokio::pin!(notified);
            // Register before checking, so that a run ending in between still wakes us.
            notified.as_mut().enable();
            if self
                .jobs
                .lock()
                .unwrap()
                .get(job)
                .is_none_or(|j| j.running.is_empty() && j.waiting.is_none())
            {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::executor::RustJobs;

    /// Every run of a busy instant allocates its task's future ahead and touches it as it
    /// starts: a future that grows (an action's state held inline, say) made 10,000 runs start
    /// tens of milliseconds later once (BENCHMARKS.md). This keeps it in bounds.
    #[tokio::test]
    async fn a_run_task_stays_small() {
        let store = Arc::new(crate::store::SqliteStore::open_in_memory().await.unwrap());
        let scheduler = Scheduler::new(
            store,
            Arc::new(SystemClock),
            Executors::new(RustJobs::new()),
            SchedulerConfig::default(),
        );
        let inner = scheduler.inner.clone();
        let (_start, released) = tokio::sync::oneshot::channel::<Release>();
        // What `fire` spawns for each run.
        let task = async move {
            if let Ok(release) = released.await {
                inner.released(release).await;
            }
        };
        // About 3.8 KB in a test (debug) build and 1.5 KB optimized, today; with an HTTP
        // call's state inline it was some 18 KB.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 8 * 1024, "a run's task future is {size} bytes");
    }
}
