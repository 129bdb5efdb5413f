//! Running one claimed run: overlap, the global limit, jitter, timeout, cancellation, the
//! result, retries and chained jobs. On a shared store, its start is recorded before its
//! action begins ([`StartWrites`]), and a start the store refuses (another node took the run
//! over) means the run is given up here, unrecorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{Inner, SchedulerEvent};
use crate::executor::{Execution, Outcome, RunContext};
use crate::model::{Action, JobName, JobSpec, OverlapPolicy, Run, RunStatus, Trigger};
use crate::store::{ClaimFire, NewRun, StartRun, Store, StoreError};

/// How long a cancelled action may take to stop: long enough for a command's SIGTERM, its
/// grace and the SIGKILL of its process group; a Rust job that ignores its token is dropped
/// after it.
const ACTION_CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the overlap policy decided for a new run.
pub(super) enum Admission {
    Start(CancellationToken, Arc<JobSpec>),
    Wait,
    Skip(String),
}

impl Inner {
    /// Starts a claimed run on its own task, or queues or skips it per the job's overlap
    /// policy. Never waits: releasing thousands of runs at one instant must not queue them
    /// behind one another.
    pub(super) fn dispatch(self: &Arc<Self>, run: Run) {
        let admission = {
            let mut jobs = self.jobs.lock().unwrap();
            match jobs.get_mut(&run.job) {
                None => Admission::Skip("skipped: the job was deleted".to_owned()),
                Some(job) => self.admit(job, &run),
            }
        };
        self.start_admitted(admission, run);
    }

    /// Carries out an admission decision on a task of its own: executes the run, or records
    /// it skipped.
    pub(super) fn start_admitted(self: &Arc<Self>, admission: Admission, run: Run) {
        if !matches!(admission, Admission::Wait) {
            self.tasks.spawn(self.clone().admitted(admission, run));
        }
    }

    /// Carries out an admission decision on this task: executes the run, or records it skipped.
    pub(super) async fn admitted(self: Arc<Self>, admission: Admission, run: Run) {
        match admission {
            Admission::Start(token, spec) => self.execute(spec, run, token).await,
            Admission::Wait => {}
            Admission::Skip(reason) => {
                self.finish(run, RunStatus::Skipped, None, Some(reason), None)
                    .await;
            }
        }
    }

    /// The overlap policy's decision for `run`, given what its job is running now.
    pub(super) fn admit(&self, job: &mut super::JobState, run: &Run) -> Admission {
        self.admit_with(job, run, CancellationToken::new())
    }

    /// [`Self::admit`], with the token the run gets if it starts (made ahead of a busy
    /// instant, so that the instant allocates nothing for it).
    pub(super) fn admit_with(
        &self,
        job: &mut super::JobState,
        run: &Run,
        token: CancellationToken,
    ) -> Admission {
        let policy = job.spec.overlap;
        // A run whose action has ended but whose result is still being written is not going
        // any more; only a queue waits for it too, so that queued runs keep their order.
        let busy = match policy {
            OverlapPolicy::Queue => !job.running.is_empty(),
            _ => job.running.going() > 0,
        };
        let admit = |job: &mut super::JobState| {
            if self.cancel_runs.is_cancelled() {
                token.cancel();
            }
            job.running.insert(run.id, token.clone());
            Admission::Start(token, job.spec.clone())
        };
        match (busy, policy) {
            (false, _) => admit(job),
            (true, OverlapPolicy::Allow)
                if job.running.going() < job.spec.max_concurrency as usize =>
            {
                admit(job)
            }
            (true, OverlapPolicy::Allow) => Admission::Skip(format!(
                "skipped: {} runs of this job were going (max_concurrency)",
                job.running.going()
            )),
            (true, OverlapPolicy::Skip) => {
                Admission::Skip("skipped: the previous run was still going".to_owned())
            }
            (true, OverlapPolicy::Queue) if job.waiting.is_none() => {
                job.waiting = Some(run.clone());
                metrics::gauge!("cronwarden_runs_waiting").increment(1.0);
                Admission::Wait
            }
            (true, OverlapPolicy::Queue) => {
                Admission::Skip("skipped: a run was already waiting for the current one".to_owned())
            }
            (true, OverlapPolicy::Replace) => {
                for token in job.running.tokens() {
                    token.cancel();
                }
                admit(job)
            }
        }
    }

    /// Executes a run admitted by [`Self::dispatch`] and records its result, then starts what
    /// follows from it: a waiting run, chained jobs, a retry.
    ///
    /// This future is what thousands of runs due at one instant each allocate and touch as
    /// they start, so it is kept small: what it holds across an await is the run and its
    /// action's state, and the rarer paths (waiting for a permit, jitter, stopping an action)
    /// are boxed.
    async fn execute(self: Arc<Self>, spec: Arc<JobSpec>, mut run: Run, token: CancellationToken) {
        let ending = self.run_action(&spec, &mut run, &token).await;
        self.conclude(spec, run, ending).await;
    }

    /// [`Self::execute`] for a run whose action was begun where it was released.
    async fn execute_begun(
        self: Arc<Self>,
        spec: Arc<JobSpec>,
        run: Run,
        token: CancellationToken,
        begun: Begun,
    ) {
        let ending = self.drive(&spec, &run, &token, begun).await;
        self.conclude(spec, run, ending).await;
    }

    /// Records how a run ended, then starts what follows from it: a waiting run, chained
    /// jobs, a retry.
    async fn conclude(self: Arc<Self>, spec: Arc<JobSpec>, run: Run, ending: Ending) {
        let (job, id) = (run.job.clone(), run.id);
        // Its action has ended: for the overlap policy the run is no longer going, even while
        // its result is being written (a slow write must not make the next fire a skipped one).
        if let Some(job) = self.jobs.lock().unwrap().get_mut(&job) {
            job.running.end(id);
        }
        let result = if ending.taken_over {
            tracing::warn!(job = %run.job, run = %run.id, "claim given up: another node took the run over before it started");
            None
        } else {
            self.record_result(
                run,
                ending.status,
                ending.exit_code,
                ending.error,
                ending.output,
            )
            .await
            .map(|finished| (finished, ending.retry))
        };
        let (next, idle) = {
            let mut jobs = self.jobs.lock().unwrap();
            match jobs.get_mut(&job) {
                Some(job) => {
                    job.running.remove(id);
                    (job.waiting.take(), Some(job.idle.clone()))
                }
                None => (None, None),
            }
        };
        if let Some(waiting) = next {
            metrics::gauge!("cronwarden_runs_waiting").decrement(1.0);
            self.dispatch(waiting);
        }
        if let Some(idle) = idle {
            idle.notify_waiters();
        }
        // The run was taken over (its node presumed dead) if its result was not recorded.
        let Some((finished, retry)) = result else {
            return;
        };
        if finished.status == RunStatus::Succeeded {
            if self.observed() {
                self.emit(SchedulerEvent::RunFinished(finished));
            }
            let followers = self.followers_to_start(&spec.name);
            if !followers.is_empty() {
                Box::pin(self.clone().start_chained(followers)).await;
            }
        } else {
            // The retry is claimed before the run is announced: a watcher that sees a failed
            // run finish finds its next attempt in the store, or knows none is coming.
            if let Some(retry) = retry {
                Box::pin(self.clone().retry_if_allowed(&spec, &finished, retry)).await;
            } else if finished.status == RunStatus::Interrupted && self.cancel_runs.is_cancelled() {
                Box::pin(self.retry_at_next_start(&spec, &finished)).await;
            }
            if self.observed() {
                self.emit(SchedulerEvent::RunFinished(finished));
            }
        }
    }

    /// Waits for a permit and the jitter, then runs the action under the timeout; `run` is
    /// marked running as the action starts. Returns how it ended (interrupted, if it never
    /// started).
    async fn run_action(
        &self,
        spec: &Arc<JobSpec>,
        run: &mut Run,
        token: &CancellationToken,
    ) -> Ending {
        // Most runs find a permit free: take it without the select's wake-up registrations.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let permits = self.permits.clone();
                let waited = Box::pin(async move {
                    tokio::select! {
                        permit = permits.acquire_owned() => permit.ok(),
                        () = token.cancelled() => None,
                    }
                })
                .await;
                match waited {
                    Some(permit) => permit,
                    None => return Ending::interrupted(self.interruption()),
                }
            }
        };
        if let (Some(jitter), Trigger::Schedule) = (spec.jitter, run.trigger) {
            let delay =
                SignedDuration::from_nanos((jitter.as_nanos() as f64 * fastrand::f64()) as i64);
            // From the scheduled instant: the spread must not depend on how late we got here.
            let until = crate::clock::saturating_add(run.scheduled_at, delay);
            let waited = Box::pin(async {
                tokio::select! {
                    () = self.clock.sleep_until(until) => true,
                    () = token.cancelled() => false,
                }
            })
            .await;
            if !waited {
                return Ending::interrupted(self.interruption());
            }
        }
        // On a shared store the start is recorded first, unless it was already (at its
        // instant, with others): see `record_starts_here`.
        if self.membership.shared() && run.status != RunStatus::Running {
            match Box::pin(self.record_start(run, token)).await {
                StartRecord::Recorded => {}
                StartRecord::TakenOver => return Ending::taken_over(),
                StartRecord::Cancelled => return Ending::interrupted(self.interruption()),
            }
        }
        let begun = self.begin(spec, run, token, permit, None, None);
        self.drive(spec, run, token, begun).await
    }

    /// Whether `run` can begin where it is released (see [`Self::begin_here`]): a Rust job
    /// with no jitter to wait for.
    pub(super) fn begins_inline(spec: &JobSpec, run: &Run) -> bool {
        matches!(spec.action, Action::Rust { .. })
            && (spec.jitter.is_none() || run.trigger != Trigger::Schedule)
    }

    /// Begins `run` where it is released, if it can begin there and then: a Rust job with a
    /// permit free and no jitter to wait for. Its action is polled once here, so that it
    /// starts at once, before the run's task is woken (at a busy instant, thousands of task
    /// wake-ups cost more than the starts themselves). The run's task polls it from then on.
    ///
    /// `prepared` is the action's execution made ahead (at the claim) from `spec`, if it was.
    pub(super) fn begin_here(
        &self,
        spec: &Arc<JobSpec>,
        run: &mut Run,
        token: &CancellationToken,
        batch: &mut StartBatch,
        prepared: Option<Execution>,
    ) -> Option<Begun> {
        // On a shared store, only a run whose start is recorded may begin.
        let unrecorded = self.membership.shared() && run.status != RunStatus::Running;
        if !Self::begins_inline(spec, run) || token.is_cancelled() || unrecorded {
            return None;
        }
        let permit = batch.permit(&self.permits)?;
        let mut begun = self.begin(spec, run, token, permit, Some(batch), prepared);
        // No waker to give: the run's task polls the action again, with its own, whatever
        // happened meanwhile (a future must only wake the waker of its latest poll).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match begun.execution.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(outcome) => {
                begun.outcome = Some(outcome);
                // Done executing: its slot under the global limit goes to the next run begun
                // here, not back to the semaphore once its task gets to record it.
                if let Some(permit) = begun.permit.take() {
                    batch.hand_back(permit);
                }
            }
            std::task::Poll::Pending => batch.going += 1,
        }
        Some(begun)
    }

    /// Marks `run` started, announces it and starts its action (not polled yet; `prepared`
    /// if it was made ahead). Its start record goes to `batch` if given (to be sent with
    /// others), else to the recorder; none, if it was recorded before (the run is `running`
    /// already: on a shared store).
    fn begin(
        &self,
        spec: &Arc<JobSpec>,
        run: &mut Run,
        token: &CancellationToken,
        permit: OwnedSemaphorePermit,
        batch: Option<&mut StartBatch>,
        prepared: Option<Execution>,
    ) -> Begun {
        // Alone on its store, the start is recorded in the background: the action does not
        // wait for the store. A run taken over meanwhile (its node presumed dead) still cannot
        // record its result: that needs the current fencing token.
        let now = self.clock.now();
        let recorded = run.status == RunStatus::Running;
        let started_at = run.started_at.filter(|_| recorded).unwrap_or(now);
        let lateness = now.duration_since(run.scheduled_at).as_secs_f64().max(0.0);
        let start = (!recorded).then_some(StartRun {
            id: run.id,
            fencing_token: run.fencing_token,
            at: started_at,
        });
        let unsent = match batch {
            Some(batch) => {
                batch.lateness.record(lateness);
                batch.starts.extend(start);
                None
            }
            None => {
                metrics::histogram!("cronwarden_run_lateness_seconds").record(lateness);
                metrics::gauge!("cronwarden_runs_running").increment(1.0);
                match (start, self.recorder.get()) {
                    (None, _) => None,
                    (Some(start), Some(recorder)) => recorder.start(start).err(),
                    (Some(start), None) => Some(start),
                }
            }
        };
        run.status = RunStatus::Running;
        run.started_at = Some(started_at);
        if self.observed() {
            self.emit(SchedulerEvent::RunStarted(run.clone()));
        }
        let execution = prepared.unwrap_or_else(|| self.executors.start(spec, context(run, token)));
        Begun {
            permit: Some(permit),
            started_at,
            unsent,
            execution,
            outcome: None,
        }
    }

    /// Drives a begun action to its end under the run's cancellation and timeout, and returns
    /// how it ended.
    async fn drive(
        &self,
        spec: &JobSpec,
        run: &Run,
        token: &CancellationToken,
        begun: Begun,
    ) -> Ending {
        let Begun {
            permit,
            started_at,
            unsent,
            mut execution,
            outcome,
        } = begun;
        if let Some(start) = unsent {
            // The recorder has stopped: write directly.
            let written = Box::pin(
                self.store
                    .start_run(start.id, start.fencing_token, start.at),
            );
            if let Err(e) = written.await {
                tracing::error!(run = %run.id, error = %e, "cannot record a run's start");
            }
        }
        let deadline = spec
            .timeout
            .map(|t| crate::clock::saturating_add(started_at, t));
        let ended = match outcome {
            // Finished in its first poll, where it was released.
            Some(outcome) => Ok(outcome),
            None => tokio::select! {
                // Cancellation first: an action that notices the cancel and returns in the
                // same instant must still be recorded as interrupted, not as its own error.
                biased;
                () = token.cancelled() => Err(RunStatus::Interrupted),
                () = async {
                    match deadline {
                        Some(at) => self.clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Err(RunStatus::TimedOut),
                outcome = &mut execution => Ok(outcome),
            },
        };
        let ending = match ended {
            Ok(Outcome::Succeeded { output, exit_code }) => Ending {
                taken_over: false,
                status: RunStatus::Succeeded,
                retry: None,
                exit_code,
                error: None,
                output,
            },
            Ok(Outcome::Failed {
                error,
                retryable,
                output,
                exit_code,
                retry_after,
            }) => Ending {
                taken_over: false,
                status: RunStatus::Failed,
                retry: retryable.then_some(RetryWait::Backoff {
                    at_least: retry_after.unwrap_or(SignedDuration::ZERO),
                }),
                exit_code,
                error: Some(error),
                output,
            },
            Err(status) => {
                // Let the action clean up before recording: a command's process group is
                // signalled and killed; a Rust job that watches its token returns. One that
                // does not is dropped (at its await point) once the grace is over.
                token.cancel();
                let stopped = Box::pin(tokio::time::timeout(ACTION_CANCEL_GRACE, execution));
                if stopped.await.is_err() {
                    tracing::warn!(run = %run.id, "the action did not stop within {ACTION_CANCEL_GRACE:?} of its cancellation; dropped");
                }
                let error = match status {
                    RunStatus::TimedOut => {
                        format!("timed out after {:#}", spec.timeout.unwrap_or_default())
                    }
                    _ => self.interruption(),
                };
                Ending {
                    taken_over: false,
                    status,
                    retry: (status == RunStatus::TimedOut).then_some(RetryWait::Backoff {
                        at_least: SignedDuration::ZERO,
                    }),
                    exit_code: None,
                    error: Some(error),
                    output: None,
                }
            }
        };
        Begun::release_permit(permit);
        // Bookkeeping goes to the back of the queue: at a busy instant, runs waiting to start
        // come before the records of runs that are done.
        tokio::task::yield_now().await;
        ending
    }

    fn interruption(&self) -> String {
        if self.cancel_runs.is_cancelled() {
            "interrupted: the scheduler stopped before the run finished".to_owned()
        } else {
            "interrupted: cancelled (by an operator or a newer run replacing it)".to_owned()
        }
    }

    /// Claims and schedules the next attempt of a failed or abandoned run, if its job's retry
    /// policy allows one more.
    pub(super) async fn retry_if_allowed(
        self: Arc<Self>,
        spec: &JobSpec,
        failed: &Run,
        wait: RetryWait,
    ) {
        if failed.attempt >= spec.retry.max_attempts || self.stop_firing.is_cancelled() {
            return;
        }
        // A job that does not fire now (paused, disabled, deleted) is not retried either.
        let retries = match self.jobs.lock().unwrap().get(&failed.job) {
            Some(job) if job.spec.enabled => job.retries.clone(),
            _ => {
                tracing::info!(job = %failed.job, run = %failed.id, "not retried: the job is paused, disabled or deleted");
                return;
            }
        };
        let attempt = failed.attempt + 1;
        metrics::counter!("cronwarden_retries_total", "job" => failed.job.shared()).increment(1);
        let claim = ClaimFire {
            job: &failed.job,
            scheduled_at: failed.scheduled_at,
            trigger: Trigger::Retry,
            attempt,
            node: &self.config.node,
        };
        let run = match self.store.claim_fire(claim).await {
            Ok(Some(run)) => run,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(job = %failed.job, error = %e, "cannot claim a retry");
                return;
            }
        };
        let delay = match wait {
            RetryWait::Now => SignedDuration::ZERO,
            // The policy's backoff, unless the other side asked for a longer wait.
            RetryWait::Backoff { at_least } => spec
                .retry
                .delay_after(failed.attempt, fastrand::f64())
                .max(at_least),
        };
        // Counted from when the attempt ended, not from whenever this code gets to run.
        let due = crate::clock::saturating_add(
            failed.finished_at.unwrap_or_else(|| self.clock.now()),
            delay,
        );
        let inner = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = inner.clock.sleep_until(due) => inner.dispatch(run),
                () = retries.cancelled() => {
                    let reason = Some("skipped: the job was paused, disabled or deleted before this retry was due".to_owned());
                    inner.finish(run, RunStatus::Skipped, None, reason, None).await;
                }
                () = inner.stop_firing.cancelled() => {
                    // Left queued for the next start (see `Scheduler::stop`).
                    inner.left_for_next_start.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tracing::info!(job = %run.job, run = %run.id, attempt = run.attempt, "stopping: this retry runs at the next start");
                }
            }
        });
    }

    /// Claims the next attempt of a run that a stop cut short, if its job's retry policy
    /// allows one more, and leaves it queued for the next start: a stop is not the job's
    /// failure (see `Scheduler::stop`).
    async fn retry_at_next_start(&self, spec: &JobSpec, interrupted: &Run) {
        if interrupted.attempt >= spec.retry.max_attempts {
            return;
        }
        let fires = self
            .jobs
            .lock()
            .unwrap()
            .get(&interrupted.job)
            .is_some_and(|j| j.spec.enabled);
        if !fires {
            return;
        }
        let claim = ClaimFire {
            job: &interrupted.job,
            scheduled_at: interrupted.scheduled_at,
            trigger: Trigger::Retry,
            attempt: interrupted.attempt + 1,
            node: &self.config.node,
        };
        match self.store.claim_fire(claim).await {
            Ok(Some(run)) => {
                self.left_for_next_start
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(job = %run.job, run = %run.id, attempt = run.attempt, "cut short by the stop; its retry runs at the next start");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(job = %interrupted.job, error = %e, "cannot claim the retry of a run cut short by the stop")
            }
        }
    }

    /// The enabled jobs that run after `job` succeeds.
    fn followers_to_start(&self, job: &JobName) -> Vec<JobName> {
        let followers: Vec<JobName> = match self.followers.lock().unwrap().get(job) {
            Some(names) => names.iter().cloned().collect(),
            None => return Vec::new(),
        };
        let jobs = self.jobs.lock().unwrap();
        followers
            .into_iter()
            .filter(|name| jobs.get(name).is_some_and(|j| j.spec.enabled))
            .collect()
    }

    /// Starts `followers`, the jobs that run after a job that succeeded.
    async fn start_chained(self: Arc<Self>, followers: Vec<JobName>) {
        for name in followers {
            let now = self.clock.now();
            let new = NewRun {
                job: &name,
                scheduled_at: now,
                trigger: Trigger::Chain,
                attempt: 1,
                status: RunStatus::Queued,
                node: &self.config.node,
                at: now,
                error: None,
            };
            match self.store.record_run(new).await {
                Ok(run) => self.dispatch(run),
                Err(e) => tracing::error!(job = %name, error = %e, "cannot record a chained run"),
            }
        }
    }
}

/// A run's action, begun: what the run holds while it executes.
pub(super) struct Begun {
    /// Its slot under the global limit, while it executes.
    permit: Option<OwnedSemaphorePermit>,
    started_at: Timestamp,
    /// The start record, if the recorder could not take it (it has stopped).
    unsent: Option<StartRun>,
    execution: Execution,
    /// Its outcome, if it finished in its first poll.
    outcome: Option<Outcome>,
}

impl Begun {
    fn release_permit(permit: Option<OwnedSemaphorePermit>) {
        if let Some(permit) = permit {
            drop(permit);
            metrics::gauge!("cronwarden_runs_running").decrement(1.0);
        }
    }
}

/// What a run's task (spawned at the claim) receives when its instant comes.
pub(super) enum Release {
    /// Admitted: carry out the admission.
    Admitted(Admission, Run),
    /// Admitted and begun where it was released: drive it to its end.
    Begun {
        spec: Arc<JobSpec>,
        run: Run,
        token: CancellationToken,
        begun: Begun,
    },
}

impl Inner {
    /// Carries out a release on the run's own task.
    pub(super) async fn released(self: Arc<Self>, release: Release) {
        match release {
            Release::Admitted(admission, run) => self.admitted(admission, run).await,
            Release::Begun {
                spec,
                run,
                token,
                begun,
            } => self.execute_begun(spec, run, token, begun).await,
        }
    }

    /// What to send to the task of a run admitted at its instant: the run begun here when it
    /// can be, else the admission. `prepared` is its execution made at the claim, from the
    /// definition it was claimed under, if it was.
    ///
    /// The start record of a run begun here goes to `batch`: the caller sends them together
    /// ([`StartBatch::send`]), before it sends any release.
    pub(super) fn release_admitted(
        &self,
        admission: Admission,
        mut run: Run,
        batch: &mut StartBatch,
        prepared: Option<(Arc<JobSpec>, Execution)>,
    ) -> Release {
        match admission {
            Admission::Start(token, spec) => {
                // Made from the definition the job still has (the common case), or not used.
                let prepared = prepared
                    .filter(|(claimed_under, _)| Arc::ptr_eq(claimed_under, &spec))
                    .map(|(_, execution)| execution);
                match self.begin_here(&spec, &mut run, &token, batch, prepared) {
                    Some(begun) => Release::Begun {
                        spec,
                        run,
                        token,
                        begun,
                    },
                    None => Release::Admitted(Admission::Start(token, spec), run),
                }
            }
            admission => Release::Admitted(admission, run),
        }
    }

    /// The execution of a claimed run, made ahead of its instant when the run will begin
    /// where it is released: making it allocates, and at a busy instant thousands of
    /// allocations (and the page faults of fresh memory) would come at the worst moment.
    /// Nothing of the job runs until it is polled.
    pub(super) fn prepare(
        &self,
        spec: &Arc<JobSpec>,
        run: &Run,
        token: &CancellationToken,
    ) -> Option<Execution> {
        Self::begins_inline(spec, run).then(|| self.executors.start(spec, context(run, token)))
    }
}

/// What a run's action is given.
fn context(run: &Run, token: &CancellationToken) -> RunContext {
    // The action watches the run's own token: cancelled by a stop, an operator, `overlap =
    // replace`, or a timeout (the outcome is decided by then).
    RunContext {
        run_id: run.id,
        job: run.job.clone(),
        scheduled_at: run.scheduled_at,
        attempt: run.attempt,
        trigger: run.trigger,
        cancel: token.clone(),
    }
}

/// What the runs begun together (a slice of a busy instant) share, so that each costs as
/// little as it can: their start records, sent as one; the slots under the global limit that
/// runs finishing in their first poll hand on to the next ones (instead of one semaphore
/// round trip per run, which both cores contend for); the metrics, updated once.
pub(super) struct StartBatch {
    starts: Vec<StartRun>,
    /// Slots taken from the semaphore and free again.
    spare: Option<OwnedSemaphorePermit>,
    lateness: metrics::Histogram,
    /// Runs begun here still executing after their first poll.
    going: usize,
}

impl StartBatch {
    /// A batch whose start records go to `starts` (empty, with room made ahead).
    pub(super) fn new(starts: Vec<StartRun>) -> StartBatch {
        StartBatch {
            starts,
            spare: None,
            lateness: metrics::histogram!("cronwarden_run_lateness_seconds"),
            going: 0,
        }
    }

    /// A slot under the global limit, if one is free.
    fn permit(&mut self, permits: &Arc<tokio::sync::Semaphore>) -> Option<OwnedSemaphorePermit> {
        match &mut self.spare {
            Some(spare) if spare.num_permits() > 1 => spare.split(1),
            Some(_) => self.spare.take(),
            None => permits.clone().try_acquire_owned().ok(),
        }
    }

    fn hand_back(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.spare {
            Some(spare) => spare.merge(permit),
            None => self.spare = Some(permit),
        }
    }

    /// Frees the spare slots and sends the start records, as one record; before any of the
    /// runs' releases (a start written after its run's result would be refused).
    pub(super) fn send(self, inner: &Arc<Inner>) {
        drop(self.spare);
        if self.going > 0 {
            metrics::gauge!("cronwarden_runs_running").increment(self.going as f64);
        }
        inner.record_starts(self.starts);
    }
}

impl Inner {
    /// Sends the start records of runs begun together, as one record.
    pub(super) fn record_starts(self: &Arc<Self>, starts: Vec<StartRun>) {
        if starts.is_empty() {
            return;
        }
        let unsent = match self.recorder.get() {
            Some(recorder) => recorder.start_many(starts).err(),
            None => Some(starts),
        };
        if let Some(starts) = unsent {
            // The recorder has stopped: write directly.
            let inner = self.clone();
            self.tasks.spawn(async move {
                if let Err(e) = inner.store.start_runs(&starts).await {
                    tracing::error!(runs = starts.len(), error = %e, "cannot record runs' starts");
                }
            });
        }
    }
}

/// How a run's action ended, to be recorded.
struct Ending {
    /// It never started: another node took it over, and its record is that node's to write.
    taken_over: bool,
    status: RunStatus,
    /// Whether another attempt may help, and when.
    retry: Option<RetryWait>,
    exit_code: Option<i32>,
    error: Option<String>,
    output: Option<String>,
}

impl Ending {
    /// A run that never started: the scheduler stopped or an operator cancelled it first.
    fn interrupted(error: String) -> Ending {
        Ending {
            taken_over: false,
            status: RunStatus::Interrupted,
            retry: None,
            exit_code: None,
            error: Some(error),
            output: None,
        }
    }
}

impl Ending {
    /// A run that never started: its start was refused, as another node took it over.
    fn taken_over() -> Ending {
        Ending {
            taken_over: true,
            status: RunStatus::Abandoned,
            retry: None,
            exit_code: None,
            error: None,
            output: None,
        }
    }
}

/// Where a start's outcome goes: whether it was recorded, or why it could not be written.
type StartWritten = oneshot::Sender<Result<bool, String>>;

/// Run starts waiting to be written (on a shared store), each with the one waiting for its
/// outcome. A few writers take them in batches, side by side: the runs that start while the
/// writers are busy are written together by the next write, so that many runs starting at
/// once make a few writes rather than one each, and the writes of a busy instant still go
/// over several connections at once.
#[derive(Default)]
pub(super) struct StartWrites {
    pending: Mutex<Vec<(StartRun, StartWritten)>>,
    /// How many writer tasks are going.
    writers: AtomicUsize,
}

impl StartWrites {
    /// At most this many writes at once.
    const WRITERS: usize = 4;
    /// At most this many starts in one write (one statement on PostgreSQL).
    const BATCH: usize = 500;

    /// Writes `start` (with whatever else is pending) and returns whether it was recorded.
    fn write(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        start: StartRun,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + use<> {
        let (reply, written) = oneshot::channel();
        self.pending.lock().unwrap().push((start, reply));
        if self.enlist() {
            tokio::spawn(self.clone().drain(store.clone()));
        }
        async move {
            match written.await {
                Ok(written) => written.map_err(StoreError::Database),
                Err(_) => Err(StoreError::Database(
                    "the start was not written (the runtime is stopping)".to_owned(),
                )),
            }
        }
    }

    /// Counts one more writer, if there is room for one.
    fn enlist(&self) -> bool {
        self.writers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < Self::WRITERS).then_some(w + 1)
            })
            .is_ok()
    }

    /// Writes what is pending, a batch at a time, until nothing is.
    async fn drain(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            let batch: Vec<(StartRun, StartWritten)> = {
                let mut pending = self.pending.lock().unwrap();
                let take = pending.len().min(Self::BATCH);
                pending.drain(..take).collect()
            };
            if batch.is_empty() {
                self.writers.fetch_sub(1, Ordering::SeqCst);
                // A start that came after the look above either found the writers busy (this
                // one still counted) and left its write to them, or started a writer itself.
                if self.pending.lock().unwrap().is_empty() || !self.enlist() {
                    return;
                }
                continue;
            }
            let (starts, replies): (Vec<StartRun>, Vec<_>) = batch.into_iter().unzip();
            match store.start_runs(&starts).await {
                Ok(started) => {
                    for (reply, started) in replies.into_iter().zip(started) {
                        let _ = reply.send(Ok(started));
                    }
                }
                Err(e) => {
                    let error = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}

/// What became of a run's start, recorded before its action begins.
enum StartRecord {
    /// Recorded: the run is `running`; its action may begin.
    Recorded,
    /// Refused: another node took the run over (its node was presumed dead meanwhile).
    TakenOver,
    /// Not recorded before the run was cancelled (a stop, an operator).
    Cancelled,
}

impl Inner {
    /// Records `run`'s start, before its action begins (on a shared store: a run still
    /// `queued` is then known not to have begun, and another node may take it over if this
    /// one dies). While the store is out of reach it tries again, and the action waits: it
    /// may begin only if no other node took the run over meanwhile, which only the store can
    /// tell.
    async fn record_start(&self, run: &mut Run, token: &CancellationToken) -> StartRecord {
        const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let start = StartRun {
                id: run.id,
                fencing_token: run.fencing_token,
                at: self.clock.now(),
            };
            // Written with the starts of other runs that start meanwhile, on a task of its
            // own: a cancellation does not cut the write short (its outcome stands).
            let written = self.start_writes.write(&self.store, start);
            let written = tokio::select! {
                biased;
                () = token.cancelled() => return StartRecord::Cancelled,
                written = written => written,
            };
            match written {
                Ok(true) => {
                    run.status = RunStatus::Running;
                    run.started_at = Some(start.at);
                    return StartRecord::Recorded;
                }
                // Refused: the run is another node's now, unless an earlier try was written
                // after all (its answer lost with the connection).
                Ok(false) => {
                    return match self.store.get_run(run.id).await {
                        Ok(Some(stored))
                            if stored.status == RunStatus::Running
                                && stored.fencing_token == run.fencing_token =>
                        {
                            run.status = RunStatus::Running;
                            run.started_at = stored.started_at.or(Some(start.at));
                            StartRecord::Recorded
                        }
                        _ => StartRecord::TakenOver,
                    };
                }
                // Said once per run: during an outage, every run due waits here.
                Err(e) if backoff == FIRST_BACKOFF => {
                    tracing::warn!(job = %run.job, run = %run.id, error = %e, "cannot record a run's start; it waits until the store is back");
                }
                Err(e) => {
                    tracing::debug!(run = %run.id, error = %e, "cannot record a run's start yet")
                }
            }
            tokio::select! {
                () = token.cancelled() => return StartRecord::Cancelled,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
        }
    }

    /// On a shared store, records the starts of a slice's runs that are to begin where they
    /// are released (see [`Self::begin_here`]), together, before any of them begins. A run whose start is refused (another node
    /// took it over) or could not be written is left `queued`: its own task tries again and
    /// learns what became of it ([`Self::record_start`]).
    pub(super) async fn record_starts_here<'r>(
        &self,
        runs: impl Iterator<Item = &'r mut Run>,
        admissions: &[Admission],
    ) {
        let at = self.clock.now();
        let mut here: Vec<&mut Run> = runs
            .zip(admissions)
            .filter_map(|(run, admission)| match admission {
                Admission::Start(token, spec)
                    if Self::begins_inline(spec, run) && !token.is_cancelled() =>
                {
                    Some(run)
                }
                _ => None,
            })
            .collect();
        if here.is_empty() {
            return;
        }
        // With the other slices' (and any other run's starting meanwhile): an instant's slices
        // start together, and make a write or two rather than one each.
        let written = futures_util::future::join_all(here.iter().map(|run| {
            let start = StartRun {
                id: run.id,
                fencing_token: run.fencing_token,
                at,
            };
            self.start_writes.write(&self.store, start)
        }));
        // A stop does not wait for the store (it may be out of reach): the runs go to their
        // tasks, which find themselves cancelled.
        let written = tokio::select! {
            written = written => written,
            () = self.cancel_runs.cancelled() => return,
        };
        let mut failed = None;
        for (run, written) in here.iter_mut().zip(written) {
            match written {
                Ok(true) => {
                    run.status = RunStatus::Running;
                    run.started_at = Some(at);
                }
                Ok(false) => {}
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "cannot record the starts of runs due now; each tries again on its own");
        }
    }
}

/// When the next attempt of a failed run may start.
#[derive(Clone, Copy, Debug)]
pub(super) enum RetryWait {
    /// At once (a run abandoned by a node that died: its wait has passed already).
    Now,
    /// After the job's backoff, and no sooner than `at_least` (what the other side asked for).
    Backoff { at_least: SignedDuration },
}
