//! Persistence: jobs, claimed fires and run history, behind one trait.
//!
//! The store is a flat list of verbs, each taking what it needs and doing its work in one
//! transaction. Every backend (SQLite now, PostgreSQL for several nodes) implements the same
//! [`Store`] trait and passes the same conformance suite (`tests/store_conformance.rs`).
//!
//! The guarantee the scheduler builds on: [`Store::claim_fire`] inserts a run under a unique key
//! on (job, scheduled instant, attempt), so each fire is claimed once however many loops race for
//! it; and [`Store::finish_run`] records a result only with the run's current fencing token, so
//! a run that was given up for dead cannot overwrite what replaced it.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use crate::model::{ApiToken, AuditEntry, JobName, JobSpec, Role, Run, RunId, RunStatus, Trigger};

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;

/// A store failure. Expected outcomes (a fire already claimed, a stale token) are not errors:
/// the verbs report them in their return values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be read back (a bug or a foreign write).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The write would break a uniqueness rule (a token name in use, ...).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// An entry for the audit log.
#[derive(Clone, Debug)]
pub struct NewAudit<'a> {
    /// When it happened.
    pub at: Timestamp,
    /// Who: a token's name, or the CLI and its user.
    pub actor: &'a str,
    /// From where, when known.
    pub source: Option<&'a str>,
    /// What: `job.pause`, `token.create`, ...
    pub action: &'a str,
    /// On what.
    pub target: Option<&'a str>,
    /// The change, as JSON, secrets redacted.
    pub detail: Option<serde_json::Value>,
}

/// A job as stored: its spec and bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// The definition.
    pub spec: JobSpec,
    /// Increases with every change to the spec.
    pub version: i64,
    /// When the job was first stored.
    pub created_at: Timestamp,
    /// When the spec last changed.
    pub updated_at: Timestamp,
    /// Paused by an operator (`jobs pause`, the API), with the reason given. Kept apart from
    /// the spec's own `enabled`, which says what the definition (a config file) wants:
    /// re-applying the definition does not lift an operator's pause.
    pub paused: Option<String>,
    /// The latest scheduled instant claimed for it ([`Store::last_fire`]), read with the
    /// record so that loading every job does not take a query per job.
    pub last_fire: Option<Timestamp>,
}

impl JobRecord {
    /// The spec as the scheduler runs it: disabled, with the operator's reason, while paused.
    pub fn effective_spec(&self) -> JobSpec {
        let mut spec = self.spec.clone();
        if let Some(reason) = &self.paused {
            spec.enabled = false;
            spec.pause_reason = Some(reason.clone());
        }
        spec
    }
}

/// A fire to claim: the run is created `queued` (or `running` when `start` is set) only if no run
/// holds the same (job, scheduled instant, attempt) for a scheduled, catch-up or retry trigger.
#[derive(Clone, Debug)]
pub struct ClaimFire<'a> {
    /// The job.
    pub job: &'a JobName,
    /// The fire's instant.
    pub scheduled_at: Timestamp,
    /// `Schedule`, `CatchUp` or `Retry` (others are recorded with [`Store::record_run`]).
    pub trigger: Trigger,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The claiming node.
    pub node: &'a str,
}

/// A run recorded without a uniqueness claim: manual and chained runs, or a fire's final
/// `skipped` / `missed` record.
#[derive(Clone, Debug)]
pub struct NewRun<'a> {
    /// The job.
    pub job: &'a JobName,
    /// When it was due.
    pub scheduled_at: Timestamp,
    /// Why it exists.
    pub trigger: Trigger,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Its initial status: `queued`, or a final one (`skipped`, `missed`).
    pub status: RunStatus,
    /// The recording node.
    pub node: &'a str,
    /// When it was recorded, for final statuses.
    pub at: Timestamp,
    /// Why, for `skipped` and `missed`.
    pub error: Option<String>,
}

/// A claimed run starting, recorded with its fencing token.
#[derive(Clone, Copy, Debug)]
pub struct StartRun {
    /// The run.
    pub id: RunId,
    /// The token the run was claimed with.
    pub fencing_token: i64,
    /// When it started.
    pub at: Timestamp,
}

/// The result of a run, recorded with its fencing token.
#[derive(Clone, Debug)]
pub struct FinishRun {
    /// The run.
    pub id: RunId,
    /// The token the run was claimed with.
    pub fencing_token: i64,
    /// A final status.
    pub status: RunStatus,
    /// When it started, if it did: recorded unless a start was recorded already, so that a
    /// short run needs no separate start record.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// A command's exit code.
    pub exit_code: Option<i32>,
    /// The error, if it did not succeed.
    pub error: Option<String>,
    /// The tail of its output.
    pub output: Option<String>,
}

/// A run asked for from outside the scheduler (the CLI), waiting to be taken.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRequest {
    /// Its identifier.
    pub id: i64,
    /// The job to run.
    pub job: JobName,
    /// When it was asked for.
    pub requested_at: Timestamp,
    /// Who asked (for the record).
    pub requested_by: String,
}

/// A job as listed: its bookkeeping and its definition still in stored (JSON) form, for
/// callers that pass definitions on without looking inside (the API's job list).
#[derive(Clone, Debug, PartialEq)]
pub struct JobSummary {
    /// The job's name.
    pub name: JobName,
    /// Whether it fires: its definition enables it and no operator paused it.
    pub enabled: bool,
    /// The operator's pause reason.
    pub paused: Option<String>,
    /// Increases with every change to the definition.
    pub version: i64,
    /// When the job was first stored.
    pub created_at: Timestamp,
    /// When the definition last changed.
    pub updated_at: Timestamp,
    /// The definition as JSON, exactly as stored.
    pub spec_json: String,
}

/// Which jobs to list, by name.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only jobs whose names sort after this one (for paging on).
    pub after: Option<JobName>,
    /// Only jobs that fire (`true`: enabled and not paused) or that do not (`false`).
    pub enabled: Option<bool>,
    /// Only jobs with this tag.
    pub tag: Option<String>,
    /// Only jobs whose name or description contains this text (any case).
    pub text: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// Which runs to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only this job's.
    pub job: Option<JobName>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs with this trigger.
    pub trigger: Option<Trigger>,
    /// Only runs scheduled at or after this instant.
    pub since: Option<Timestamp>,
    /// Only runs scheduled before this instant.
    pub until: Option<Timestamp>,
    /// Only runs with ids below this (for paging back).
    pub before_id: Option<RunId>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// A job's run statistics over its retained history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobStats {
    /// Runs with a final status, skipped and missed included.
    pub runs: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed, timed out, were interrupted or abandoned.
    pub failed: u64,
    /// Failures since the last success, counting back from the newest run.
    pub consecutive_failures: u64,
    /// Median duration of finished runs.
    pub duration_p50: Option<SignedDuration>,
    /// 95th percentile duration of finished runs.
    pub duration_p95: Option<SignedDuration>,
    /// Longest duration of finished runs.
    pub duration_max: Option<SignedDuration>,
    /// When the last successful run finished.
    pub last_success: Option<Timestamp>,
    /// When the last failed run finished.
    pub last_failure: Option<Timestamp>,
}

impl JobStats {
    /// Succeeded runs over runs that succeeded or failed (skipped and missed runs do not count).
    pub fn success_rate(&self) -> Option<f64> {
        let decided = self.succeeded + self.failed;
        (decided > 0).then(|| self.succeeded as f64 / decided as f64)
    }
}

/// The persistence verbs the scheduler, the API and the CLI use.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or updates a job; the version increases only when the spec changes. History is
    /// kept across changes.
    async fn upsert_job(&self, spec: &JobSpec, now: Timestamp) -> Result<JobRecord, StoreError>;

    /// The job with this name.
    async fn get_job(&self, name: &JobName) -> Result<Option<JobRecord>, StoreError>;

    /// All jobs, by name.
    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// A page of jobs matching the filter, by name.
    async fn find_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// The same page as [`Store::find_jobs`], with the definitions left as stored JSON: no
    /// parsing for callers that only pass them on.
    async fn find_job_summaries(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, StoreError>;

    /// Pauses a job (with a reason) or, with `None`, lifts an operator's pause. `None` if there
    /// is no such job.
    async fn set_paused(
        &self,
        name: &JobName,
        reason: Option<&str>,
    ) -> Result<Option<JobRecord>, StoreError>;

    /// Deletes a job and its history; false if there was none.
    async fn delete_job(&self, name: &JobName) -> Result<bool, StoreError>;

    /// Claims fires in one transaction: element `i` of the result is the run claimed for
    /// `claims[i]`, or `None` if that fire was claimed already (by this or another loop or
    /// node, or earlier in the same batch).
    ///
    /// A node that was presumed dead and rescued ([`Store::rescue_node`]) claims nothing
    /// until it heartbeats again: the claim fails as a whole. A claim and a rescue of its
    /// node are ordered: either the rescue comes first (and the claim fails), or the claim
    /// does (and the rescue finds its runs). Otherwise a claim in flight while its node was
    /// rescued would leave runs that nobody rescues.
    async fn claim_fires(&self, claims: &[ClaimFire<'_>]) -> Result<Vec<Option<Run>>, StoreError>;

    /// Claims one fire. `None` if it was claimed already.
    async fn claim_fire(&self, claim: ClaimFire<'_>) -> Result<Option<Run>, StoreError> {
        Ok(self.claim_fires(&[claim]).await?.pop().flatten())
    }

    /// Records a run that needs no claim.
    async fn record_run(&self, run: NewRun<'_>) -> Result<Run, StoreError>;

    /// Marks claimed runs `running`, in one transaction. Element `i` of the result is false if
    /// `starts[i]`'s token is not current or its run is no longer queued.
    async fn start_runs(&self, starts: &[StartRun]) -> Result<Vec<bool>, StoreError>;

    /// Marks one claimed run `running` from `at`; false if the token is not current or the run
    /// is no longer queued.
    async fn start_run(
        &self,
        id: RunId,
        fencing_token: i64,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let start = StartRun {
            id,
            fencing_token,
            at,
        };
        Ok(self.start_runs(&[start]).await?.pop().unwrap_or(false))
    }

    /// Records runs' results in one transaction. Element `i` of the result is false (and
    /// nothing was written for it) if `finishes[i]`'s token is not current or its run already
    /// has a final status. An error if any status is not final.
    async fn finish_runs(&self, finishes: &[FinishRun]) -> Result<Vec<bool>, StoreError>;

    /// Records one run's result; false (and nothing written) if the token is not current or
    /// the run already has a final status.
    async fn finish_run(&self, finish: FinishRun) -> Result<bool, StoreError> {
        Ok(self
            .finish_runs(std::slice::from_ref(&finish))
            .await?
            .pop()
            .unwrap_or(false))
    }

    /// Asks for a run of `job` outside its schedule, to be started by whichever scheduler
    /// takes the request (see [`Store::take_run_requests`]). False if there is no such job.
    async fn request_run(&self, job: &JobName, by: &str, at: Timestamp)
        -> Result<bool, StoreError>;

    /// Removes and returns the pending run requests, oldest first. Each is returned once.
    async fn take_run_requests(&self) -> Result<Vec<RunRequest>, StoreError>;

    /// A number that changes whenever a job is created, changed or deleted, or a run is
    /// requested: cheap to read, so that a scheduler can notice what other processes did.
    async fn change_seq(&self) -> Result<i64, StoreError>;

    /// One run.
    async fn get_run(&self, id: RunId) -> Result<Option<Run>, StoreError>;

    /// Runs matching the filter, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError>;

    /// Marks every `queued` or `running` run of `node` (of every node when `None`) `abandoned`,
    /// and returns them as they are now.
    async fn abandon_runs(&self, node: Option<&str>, at: Timestamp)
        -> Result<Vec<Run>, StoreError>;

    /// Takes `node`'s unfinished runs over for node `by` (which may be `node` itself, restarted),
    /// in one transaction, and returns them as they are now, by id. A `running` run may have
    /// begun: it is recorded `abandoned` (to be retried per its job's policy). A `queued` one
    /// cannot have begun, as long as every scheduler on the store records a start before it
    /// begins the action (see [`Store::shared`]): it becomes `by`'s, still `queued`, under a
    /// fresh fencing token, so that `node` can neither start nor finish it any more.
    async fn take_over_runs(
        &self,
        node: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<Vec<Run>, StoreError>;

    /// The latest scheduled instant claimed for the job by a schedule or catch-up fire: where
    /// misfire detection starts after a restart.
    async fn last_fire(&self, job: &JobName) -> Result<Option<Timestamp>, StoreError>;

    /// The job's statistics.
    async fn job_stats(&self, job: &JobName) -> Result<JobStats, StoreError>;

    /// Stores a new API token by its hash (the token itself is never stored).
    /// [`StoreError::Conflict`] if the name is in use.
    async fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: Timestamp,
    ) -> Result<ApiToken, StoreError>;

    /// All tokens, revoked ones included, by name.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;

    /// Revokes the token with this name; false if there is no such token not yet revoked.
    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool, StoreError>;

    /// The token, not revoked, whose hash this is.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;

    /// Appends to the audit log.
    async fn record_audit(&self, entry: NewAudit<'_>) -> Result<AuditEntry, StoreError>;

    /// The audit log, newest first: entries with ids below `before_id` when given, at most
    /// `limit`.
    async fn list_audit(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Deletes final runs beyond the newest `keep_last` per job, and final runs that finished
    /// before `older_than`. Returns how many were deleted.
    async fn prune_runs(&self, keep_last: u32, older_than: Timestamp) -> Result<u64, StoreError>;

    /// Whether nodes on several machines may share this store. Each node then heartbeats,
    /// recovers only its own runs at start-up, and the runs of a node whose heartbeat ran out
    /// are rescued by another ([`Store::rescue_node`]); and a run's action begins only once
    /// its start is recorded, so that a run still `queued` is known not to have begun. A store
    /// on one machine (SQLite) answers false: whatever a previous process left unfinished is
    /// its successor's, and starts are recorded after the action begins (a busy instant's runs
    /// start sooner), so a `queued` run may have begun.
    fn shared(&self) -> bool {
        false
    }

    /// Signalled when the store may have changed (a job, a pause, a run request), by this
    /// process or another: PostgreSQL's LISTEN/NOTIFY. `None` when the store has no such
    /// signal; the scheduler then polls [`Store::change_seq`] only.
    fn change_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Records that `node` is alive until `until`. Returns whether it was alive at `now`
    /// already (false for its first heartbeat, and after its heartbeat ran out: its runs may
    /// have been rescued by another node since).
    async fn heartbeat(
        &self,
        node: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The nodes alive at `now`, by name.
    async fn live_nodes(&self, now: Timestamp) -> Result<Vec<String>, StoreError>;

    /// The nodes whose heartbeat ran out before `now`, by name.
    async fn dead_nodes(&self, now: Timestamp) -> Result<Vec<String>, StoreError>;

    /// If `node`'s heartbeat ran out before `now`, forgets the node and takes its unfinished
    /// runs over for node `by` ([`Store::take_over_runs`]: `running` ones are recorded
    /// `abandoned`, `queued` ones become `by`'s), in one transaction, and returns them; `None`
    /// if the node is alive (it heartbeated in the meantime) or unknown. The node is
    /// remembered as rescued (for an hour) so that it cannot claim again before it heartbeats.
    async fn rescue_node(
        &self,
        node: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<Run>>, StoreError>;

    /// Forgets `node` (it stopped cleanly); any run of it still `queued` or `running` (a
    /// result that could not be written) is recorded `abandoned`, as nobody would rescue it.
    async fn leave(&self, node: &str) -> Result<(), StoreError>;

    /// Takes the lease `name` for `holder` until `until` if it is free, ran out before `now`,
    /// or is `holder`'s already (a renewal). Returns whether `holder` holds it now.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives the lease `name` up, if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}
