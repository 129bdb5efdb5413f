//! The user status sync of the auth service (`UserStatusSyncJob`): every organisation account
//! linked to a registration gets the account status its registration's status maps to.
//!
//! The users are walked in id order, `batch_size` at a time. For each batch the registration
//! statuses come from the organisation service in one call (`POST
//! /api/registrations/batch/status`), then the batch's changes are written in one transaction,
//! with a row of `user_status_audit` for each status changed. A batch is committed before the
//! next begins, so a failure keeps the batches before it, and the whole sync can simply be run
//! again: users already in the right status are left as they are.
//!
//! Errors carry the retry decision ([`JobError`]): an unreachable organisation service, its
//! 408/429/5xx answers and lost database connections are retryable; its other 4xx answers (a
//! rejected service token), an answer that is not the expected JSON and SQL errors are fatal.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use cronwarden::executor::JobError;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The organisation service's batch status lookup (its SyncRoutes), under its base URL.
pub const BATCH_STATUS_PATH: &str = "/api/registrations/batch/status";

/// Written to `user_status_audit.source`.
pub const AUDIT_SOURCE: &str = "user-status-sync";

/// The account status a registration status maps to; `None` for a registration status this
/// sync does not know (such a user is left as it is, and counted).
pub fn account_status(registration_status: &str) -> Option<&'static str> {
    match registration_status.trim().to_ascii_lowercase().as_str() {
        "approved" | "certified" => Some("active"),
        "rejected" => Some("suspended"),
        "draft" | "submitted" | "under_review" | "clarification" => Some("pending_registration"),
        _ => None,
    }
}

/// The body of a batch status lookup.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchStatusRequest {
    /// The registration numbers to look up.
    pub registration_numbers: Vec<String>,
}

/// The organisation service's answer: one entry per registration it knows; numbers it does not
/// know are absent (or have no status).
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchStatusResponse {
    /// The registrations found.
    pub registrations: Vec<RegistrationStatus>,
}

/// One registration's status.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationStatus {
    /// Its registration number.
    pub registration_number: String,
    /// `approved`, `rejected`, `certified`, `draft`, `submitted`, `under_review`,
    /// `clarification` (or whatever else the service says).
    pub status: Option<String>,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Batches committed.
    pub batches: u32,
    /// Linked organisation users looked at.
    pub checked: u64,
    /// Users whose status changed, by their new status.
    pub updated: BTreeMap<&'static str, u64>,
    /// Users already in the status their registration maps to.
    pub unchanged: u64,
    /// Users whose registration number the organisation service does not know.
    pub not_found: u64,
    /// Users whose registration has a status the mapping does not know, by that status.
    pub unknown_status: BTreeMap<String, u64>,
}

impl SyncReport {
    /// Users whose status changed.
    pub fn updated_total(&self) -> u64 {
        self.updated.values().sum()
    }

    /// Users left alone because of an unknown registration status.
    pub fn unknown_total(&self) -> u64 {
        self.unknown_status.values().sum()
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |counts: Vec<(&str, u64)>| {
            counts
                .iter()
                .map(|(status, n)| format!("{status} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "{} users checked in {} {}: {} updated",
            self.checked,
            self.batches,
            if self.batches == 1 {
                "batch"
            } else {
                "batches"
            },
            self.updated_total()
        )?;
        if !self.updated.is_empty() {
            let counts = self.updated.iter().map(|(s, n)| (*s, *n)).collect();
            write!(f, " ({})", list(counts))?;
        }
        write!(
            f,
            ", {} unchanged, {} not known to the organisation service, {} with an unknown \
             registration status",
            self.unchanged,
            self.not_found,
            self.unknown_total()
        )?;
        if !self.unknown_status.is_empty() {
            let counts = self
                .unknown_status
                .iter()
                .map(|(s, n)| (s.as_str(), *n))
                .collect();
            write!(f, " ({})", list(counts))?;
        }
        Ok(())
    }
}

/// Syncs every linked organisation user, `batch_size` at a time, against the organisation
/// service at `org_url` (its base URL). Stops between batches, and during a call to the
/// organisation service, when `cancel` fires (retryably: the next run carries on).
pub async fn sync_statuses(
    pool: &PgPool,
    http: &reqwest::Client,
    org_url: &str,
    batch_size: i64,
    cancel: &CancellationToken,
) -> Result<SyncReport, JobError> {
    if batch_size < 1 {
        return Err(JobError::Fatal(format!(
            "the batch size must be at least 1, got {batch_size}"
        )));
    }
    let url = format!("{}{BATCH_STATUS_PATH}", org_url.trim_end_matches('/'));
    let mut report = SyncReport::default();
    let mut after_id = 0_i64;
    loop {
        if cancel.is_cancelled() {
            return Err(failed(
                &report,
                after_id,
                JobError::Retryable("cancelled".into()),
            ));
        }
        let batch = next_batch(pool, after_id, batch_size)
            .await
            .map_err(|e| failed(&report, after_id, e))?;
        let Some(&(last_id, _)) = batch.last() else {
            return Ok(report);
        };
        let numbers: Vec<String> = batch.iter().map(|(_, number)| number.clone()).collect();
        let statuses = fetch_statuses(http, &url, numbers, cancel)
            .await
            .map_err(|e| failed(&report, after_id, e))?;
        apply(pool, &batch, &statuses, &mut report)
            .await
            .map_err(|e| failed(&report, after_id, e))?;
        after_id = last_id;
    }
}

/// The next `batch_size` linked organisation users after `after_id`: (id, registration number).
async fn next_batch(
    pool: &PgPool,
    after_id: i64,
    batch_size: i64,
) -> Result<Vec<(i64, String)>, JobError> {
    sqlx::query_as(
        "SELECT id, registration_number FROM users \
         WHERE role = 'organization' AND registration_number IS NOT NULL AND id > $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(batch_size)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("reading the next batch of users", e))
}

/// The statuses of `numbers` by registration number, from one batch lookup.
async fn fetch_statuses(
    http: &reqwest::Client,
    url: &str,
    numbers: Vec<String>,
    cancel: &CancellationToken,
) -> Result<HashMap<String, String>, JobError> {
    let body = serde_json::to_vec(&BatchStatusRequest {
        registration_numbers: numbers,
    })
    .expect("a list of strings serializes");
    let call = async {
        let response = http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.bytes().await?))
    };
    let (status, body) = tokio::select! {
        answer = call => answer.map_err(|e| {
            let cause = chain(&e);
            JobError::Retryable(format!("the organisation service cannot be reached: {cause}"))
        })?,
        () = cancel.cancelled() => return Err(JobError::Retryable("cancelled".into())),
    };
    if !status.is_success() {
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        let message = format!("the organisation service answered {status}: {excerpt}");
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        return Err(if retryable {
            JobError::Retryable(message)
        } else {
            JobError::Fatal(message)
        });
    }
    let answer: BatchStatusResponse = serde_json::from_slice(&body).map_err(|e| {
        JobError::Fatal(format!(
            "the organisation service's answer is not the expected JSON: {e}"
        ))
    })?;
    Ok(answer
        .registrations
        .into_iter()
        .filter_map(|r| Some((r.registration_number, r.status?)))
        .collect())
}

/// Writes one batch's changes in one transaction. The users' current statuses are read again
/// under a row lock, so a status changed since the batch was read (by an admin) is compared
/// as it is now.
async fn apply(
    pool: &PgPool,
    batch: &[(i64, String)],
    statuses: &HashMap<String, String>,
    report: &mut SyncReport,
) -> Result<(), JobError> {
    let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| db_error("starting a transaction", e))?;
    let current: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, registration_number FROM users WHERE id = ANY($1) \
         ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| db_error("locking the batch's users", e))?;
    let mut batch_report = SyncReport::default();
    for (id, old_status, number) in current {
        batch_report.checked += 1;
        let Some(registration_status) = number.and_then(|n| statuses.get(&n)) else {
            batch_report.not_found += 1;
            continue;
        };
        let Some(new_status) = account_status(registration_status) else {
            *batch_report
                .unknown_status
                .entry(registration_status.clone())
                .or_default() += 1;
            continue;
        };
        if new_status == old_status {
            batch_report.unchanged += 1;
            continue;
        }
        sqlx::query(
            "UPDATE users SET status = $1, status_synced_at = now(), updated_at = now() \
             WHERE id = $2",
        )
        .bind(new_status)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("updating a user's status", e))?;
        sqlx::query(
            "INSERT INTO user_status_audit \
             (user_id, old_status, new_status, registration_status, source) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&old_status)
        .bind(new_status)
        .bind(registration_status)
        .bind(AUDIT_SOURCE)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("writing the audit trail", e))?;
        *batch_report.updated.entry(new_status).or_default() += 1;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("committing the batch", e))?;
    // Counted only once committed: the report says what is in the database.
    report.batches += 1;
    report.checked += batch_report.checked;
    report.unchanged += batch_report.unchanged;
    report.not_found += batch_report.not_found;
    for (status, n) in batch_report.updated {
        *report.updated.entry(status).or_default() += n;
    }
    for (status, n) in batch_report.unknown_status {
        *report.unknown_status.entry(status).or_default() += n;
    }
    Ok(())
}

/// `error`, saying which batch failed and what the batches before it did.
fn failed(report: &SyncReport, after_id: i64, error: JobError) -> JobError {
    let context = |message: String| {
        format!(
            "batch {} (users after id {after_id}): {message}; committed before it: {report}",
            report.batches + 1
        )
    };
    match error {
        JobError::Retryable(message) => JobError::Retryable(context(message)),
        JobError::Fatal(message) => JobError::Fatal(context(message)),
    }
}

/// A database error, retryable when another attempt may succeed: lost connections and
/// timeouts, and the PostgreSQL classes of connection exceptions, transaction rollbacks
/// (serialization failures, deadlocks), insufficient resources and operator intervention.
fn db_error(doing: &str, e: sqlx::Error) -> JobError {
    let retryable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c))
        }
        _ => false,
    };
    let message = format!("{doing}: {e}");
    if retryable {
        JobError::Retryable(message)
    } else {
        JobError::Fatal(message)
    }
}

/// An error with its causes (reqwest's own message is often only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
