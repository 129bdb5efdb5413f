//! What the SQL backends share: how a row becomes a model value, and how a job's history
//! becomes its statistics. Both store the same columns the same way (instants as microseconds
//! since the Unix epoch, enums and names as text, definitions as JSON), so one mapping serves
//! both; only the SQL differs between them.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{ClaimFire, JobRecord, JobStats, JobSummary, RunRequest, StoreError};
use crate::model::{ApiToken, AuditEntry, JobName, Role, Run, RunId, RunStatus, Trigger};

/// A row read by column name, in the column types the stores use. Implemented for the rows of
/// every sqlx database that decodes those types; a value that does not decode is corruption,
/// reported with its column.
pub(super) trait Columns {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn opt_small_int(&self, column: &str) -> Result<Option<i32>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
}

impl<R: Row> Columns for R
where
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        decoded(self.try_get(column), column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        decoded(self.try_get(column), column)
    }
    fn opt_small_int(&self, column: &str) -> Result<Option<i32>, StoreError> {
        decoded(self.try_get(column), column)
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        decoded(self.try_get(column), column)
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        decoded(self.try_get(column), column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        decoded(self.try_get(column), column)
    }
}

fn decoded<T>(value: Result<T, sqlx::Error>, column: &str) -> Result<T, StoreError> {
    value.map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// An instant as stored: microseconds since the Unix epoch.
pub(super) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(super) fn instant(us: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(us).map_err(|e| StoreError::Corrupt(format!("instant {us}: {e}")))
}

pub(super) fn opt_instant(us: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    us.map(instant).transpose()
}

/// How long a rescued node is remembered as such (its claims refused until it heartbeats
/// again): far longer than a claim can be in flight.
pub(super) const RESCUED_REMEMBERED: SignedDuration = SignedDuration::from_hours(1);

/// The error of a running run abandoned by a rescue of its node, before its status.
pub(super) const RESCUED_RUN: &str = "the node running it stopped heartbeating while this run was ";

/// The error of a running run abandoned by its own node's recovery, before its status.
pub(super) const STOPPED_RUN: &str = "the scheduler stopped while this run was ";

/// Why a claim by a rescued node fails.
pub(super) fn rescued_claim(node: &str) -> String {
    format!(
        "node {node:?} was presumed dead and its runs were rescued: it claims nothing until it \
         heartbeats again"
    )
}

/// A fresh fencing token: random, so that no two claims share one even across restarts.
pub(super) fn fencing_token() -> i64 {
    fastrand::i64(1..i64::MAX)
}

/// A run, from a row of the columns `RUN_COLUMNS` names.
pub(super) fn run_from_row(row: &impl Columns) -> Result<Run, StoreError> {
    let job = row.text("job")?;
    let trigger = row.text("trigger")?;
    let status = row.text("status")?;
    Ok(Run {
        id: RunId(row.int("id")?),
        job: JobName::new(job).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        scheduled_at: instant(row.int("scheduled_at")?)?,
        trigger: Trigger::from_str(&trigger).map_err(StoreError::Corrupt)?,
        attempt: row.int("attempt")? as u32,
        status: RunStatus::from_str(&status).map_err(StoreError::Corrupt)?,
        node: row.text("node")?,
        fencing_token: row.int("fencing_token")?,
        started_at: opt_instant(row.opt_int("started_at")?)?,
        finished_at: opt_instant(row.opt_int("finished_at")?)?,
        exit_code: row.opt_small_int("exit_code")?,
        error: row.opt_text("error")?,
        output: row.opt_text("output")?,
    })
}

pub(super) fn job_from_row(row: &impl Columns) -> Result<JobRecord, StoreError> {
    let spec = row.text("spec")?;
    Ok(JobRecord {
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("job spec: {e}")))?,
        version: row.int("version")?,
        created_at: instant(row.int("created_at")?)?,
        updated_at: instant(row.int("updated_at")?)?,
        paused: row.opt_text("paused")?,
        last_fire: opt_instant(row.opt_int("last_fire_at")?)?,
    })
}

pub(super) fn token_from_row(row: &impl Columns) -> Result<ApiToken, StoreError> {
    let role = row.text("role")?;
    Ok(ApiToken {
        id: row.int("id")?,
        name: row.text("name")?,
        role: Role::from_str(&role).map_err(StoreError::Corrupt)?,
        created_at: instant(row.int("created_at")?)?,
        revoked_at: opt_instant(row.opt_int("revoked_at")?)?,
    })
}

pub(super) fn audit_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    let detail = row.opt_text("detail")?;
    Ok(AuditEntry {
        id: row.int("id")?,
        at: instant(row.int("at")?)?,
        actor: row.text("actor")?,
        source: row.opt_text("source")?,
        action: row.text("action")?,
        target: row.opt_text("target")?,
        detail: detail
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
    })
}

/// A job's statistics, from its finished runs (`status`, `started_at`, `finished_at`), newest
/// first.
pub(super) fn stats_from_rows<'a, R: Columns + 'a>(
    rows: impl IntoIterator<Item = &'a R>,
) -> Result<JobStats, StoreError> {
    let mut stats = JobStats::default();
    let mut durations = Vec::new();
    // Failures count as consecutive until the newest success.
    let mut streak_open = true;
    for row in rows {
        let status = row.text("status")?;
        let status = RunStatus::from_str(&status).map_err(StoreError::Corrupt)?;
        let started = opt_instant(row.opt_int("started_at")?)?;
        let finished = opt_instant(row.opt_int("finished_at")?)?;
        stats.runs += 1;
        match status {
            RunStatus::Succeeded => {
                stats.succeeded += 1;
                streak_open = false;
                stats.last_success = stats.last_success.or(finished);
            }
            RunStatus::Failed
            | RunStatus::TimedOut
            | RunStatus::Interrupted
            | RunStatus::Abandoned => {
                stats.failed += 1;
                if streak_open {
                    stats.consecutive_failures += 1;
                }
                stats.last_failure = stats.last_failure.or(finished);
            }
            _ => {}
        }
        if let (Some(s), Some(f)) = (started, finished) {
            durations.push(f.duration_since(s));
        }
    }
    durations.sort();
    stats.duration_p50 = percentile(&durations, 50);
    stats.duration_p95 = percentile(&durations, 95);
    stats.duration_max = durations.last().copied();
    Ok(stats)
}

pub(super) fn summary_from_row(row: &impl Columns) -> Result<JobSummary, StoreError> {
    let name = row.text("name")?;
    Ok(JobSummary {
        name: JobName::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        enabled: row.flag("fires")?,
        paused: row.opt_text("paused")?,
        version: row.int("version")?,
        created_at: instant(row.int("created_at")?)?,
        updated_at: instant(row.int("updated_at")?)?,
        spec_json: row.text("spec")?,
    })
}

pub(super) fn request_from_row(row: &impl Columns) -> Result<RunRequest, StoreError> {
    let job = row.text("job")?;
    Ok(RunRequest {
        id: row.int("id")?,
        job: JobName::new(job).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        requested_at: instant(row.int("requested_at")?)?,
        requested_by: row.text("requested_by")?,
    })
}

/// The key of a claimed fire (job, instant in microseconds, attempt) and the run it made (id,
/// fencing token), from a row a claim's `INSERT ... RETURNING` gave back.
pub(super) type ClaimKey = (String, i64, u32);

pub(super) fn claim_from_row(row: &impl Columns) -> Result<(ClaimKey, (RunId, i64)), StoreError> {
    let key = (
        row.text("job")?,
        row.int("scheduled_at")?,
        row.int("attempt")? as u32,
    );
    Ok((key, (RunId(row.int("id")?), row.int("fencing_token")?)))
}

/// The run a successful claim created: `queued`, on the claiming node.
pub(super) fn claimed_run(claim: &ClaimFire<'_>, id: RunId, fencing_token: i64) -> Run {
    Run {
        id,
        job: claim.job.clone(),
        // As stored: to the microsecond.
        scheduled_at: Timestamp::from_microsecond(claim.scheduled_at.as_microsecond())
            .unwrap_or(claim.scheduled_at),
        trigger: claim.trigger,
        attempt: claim.attempt,
        status: RunStatus::Queued,
        node: claim.node.to_owned(),
        fencing_token,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        output: None,
    }
}

/// Percentile `p` (0-100) of sorted durations, nearest-rank.
fn percentile(sorted: &[SignedDuration], p: u32) -> Option<SignedDuration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}
