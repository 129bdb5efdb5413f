//! The SQLite store: a single file in WAL mode, migrated on open. The zero-set-up default.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, SqlitePool};

use super::rows::{
    self, audit_from_row, claim_from_row, claimed_run, fencing_token, job_from_row, micros,
    opt_instant, request_from_row, rescued_claim, run_from_row, summary_from_row, token_from_row,
    RESCUED_REMEMBERED,
};
use super::{
    ClaimFire, FinishRun, JobFilter, JobRecord, JobStats, JobSummary, NewAudit, NewRun, RunFilter,
    RunRequest, StartRun, Store, StoreError,
};
use crate::model::{ApiToken, AuditEntry, JobName, JobSpec, Role, Run, RunId, RunStatus, Trigger};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
/// Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,              -- the JobSpec as JSON
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,           -- microseconds since the Unix epoch, as all instants
    updated_at    INTEGER NOT NULL,
    last_fire_at  INTEGER                     -- latest scheduled instant claimed; survives pruning
);
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job           TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
    scheduled_at  INTEGER NOT NULL,
    trigger       TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    node          TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    exit_code     INTEGER,
    error         TEXT,
    output        TEXT
);
-- Each fire is claimed once: the heart of "never runs twice".
CREATE UNIQUE INDEX runs_one_claim_per_fire ON runs (job, scheduled_at, attempt)
    WHERE trigger IN ('schedule', 'catch_up', 'retry');
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
"#,
    r#"
-- Runs asked for from outside the daemon (the CLI), taken by the scheduler.
CREATE TABLE run_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job           TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
    requested_at  INTEGER NOT NULL,
    requested_by  TEXT NOT NULL
);
-- One number that moves whenever a job's definition changes or a run is requested: what a
-- running scheduler polls (a one-row read) to see changes made by another process.
CREATE TABLE changes (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO changes (id, seq) VALUES (1, 0);
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs BEGIN UPDATE changes SET seq = seq + 1; END;
CREATE TRIGGER jobs_changed AFTER UPDATE OF spec ON jobs WHEN OLD.spec IS NOT NEW.spec
    BEGIN UPDATE changes SET seq = seq + 1; END;
CREATE TRIGGER jobs_deleted AFTER DELETE ON jobs BEGIN UPDATE changes SET seq = seq + 1; END;
CREATE TRIGGER run_requested AFTER INSERT ON run_requests BEGIN UPDATE changes SET seq = seq + 1; END;
"#,
    r#"
-- An operator's pause (its reason), kept apart from the definition: re-applying a config file
-- at start-up must not lift it.
ALTER TABLE jobs ADD COLUMN paused TEXT;
CREATE TRIGGER jobs_paused AFTER UPDATE OF paused ON jobs WHEN OLD.paused IS NOT NEW.paused
    BEGIN UPDATE changes SET seq = seq + 1; END;
"#,
    r#"
-- API tokens: only a hash of each is kept.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
-- Who changed what, when and from where.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    source  TEXT,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT
);
"#,
    r#"
CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    lease_until INTEGER NOT NULL
);
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);
"#,
    // A rescued node is remembered, not forgotten at once, so that its claims can be refused
    // until it heartbeats again.
    r#"
ALTER TABLE nodes ADD COLUMN rescued_at INTEGER;
"#,
];

/// The columns of `runs`, in the order [`run_from_row`] reads them.
const RUN_COLUMNS: &str = "id, job, scheduled_at, trigger, attempt, status, node, fencing_token, \
                           started_at, finished_at, exit_code, error, output";

/// SQL built from this module's own constants and integers, never from user input.
fn audited(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// A [`Store`] in a SQLite database.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Taken by every write. SQLite has one writer at a time; writers of this process queue
    /// here, in order, instead of in SQLite's busy handler, which polls with sleeps of up to
    /// 100 ms and so adds that much latency under load. (Other processes, such as the CLI,
    /// still meet the busy handler.)
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The single row of a `RETURNING` statement. Such statements are read with `fetch_all`: a
/// statement stepped only to its first row is not finished, and in SQLite an unfinished write
/// keeps its transaction, and the database's write lock, open.
fn one(rows: &[SqliteRow]) -> Result<&SqliteRow, StoreError> {
    rows.first()
        .ok_or_else(|| StoreError::Corrupt("a RETURNING statement returned no row".to_owned()))
}

/// Rows per statement in batch writes: well under SQLite's limit of 32,766 bound values.
const BATCH_ROWS: usize = 500;

/// `count` copies of a `VALUES` row, comma-separated.
fn placeholders(count: usize, row: &str) -> String {
    let mut sql = String::with_capacity(count * (row.len() + 2));
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

impl SqliteStore {
    async fn find_job_rows(&self, filter: &JobFilter) -> Result<Vec<SqliteRow>, StoreError> {
        sqlx::query(
            "SELECT name, spec, version, created_at, updated_at, paused, last_fire_at,
                    (paused IS NULL AND json_extract(spec, '$.enabled') = 1) AS fires
             FROM jobs
             WHERE name > ?1
               AND (?2 IS NULL OR (paused IS NULL AND json_extract(spec, '$.enabled') = 1) = ?2)
               AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(spec, '$.tags') WHERE value = ?3))
               AND (?4 IS NULL OR instr(lower(name), ?4) > 0
                    OR instr(lower(json_extract(spec, '$.description')), ?4) > 0)
             ORDER BY name LIMIT ?5",
        )
        // `name > ''` for the first page: a plain range, so the scan starts at the page
        // (an `?1 IS NULL OR` would make SQLite walk the index from its start).
        .bind(filter.after.as_ref().map_or("", JobName::as_str))
        .bind(filter.enabled)
        .bind(filter.tag.as_deref())
        .bind(filter.text.as_deref().map(str::to_lowercase))
        .bind(i64::from(filter.limit.unwrap_or(100)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only a power loss can
            // lose the last transactions, and FULL would cost an fsync per claim.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A write that failed part-way (a full disk, an I/O error) can leave its connection
            // inside a transaction that SQLite or the failed COMMIT left open: back in the
            // pool, it would hold the database's write lock, and every later write would fail
            // with "database is locked" until a restart. Such a connection is closed instead;
            // closing rolls the transaction back and releases the lock.
            .after_release(|conn, _| {
                Box::pin(async move { Ok::<_, sqlx::Error>(!conn.is_in_transaction()) })
            })
            .connect_with(options)
            .await
            .map_err(db)?;
        Self::migrated(pool).await
    }

    /// A private in-memory database (for tests and trials): one connection, kept open.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db)?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db)?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<SqliteStore, StoreError> {
        let mut conn = pool.acquire().await.map_err(db)?;
        loop {
            // BEGIN IMMEDIATE takes the write lock before the version is read, so that two
            // processes opening a new database at once migrate it once, one after the other.
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            let applied: i64 = match sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *conn)
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                    return Err(db(e));
                }
            };
            let Some(migration) = MIGRATIONS.get(applied as usize) else {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                break;
            };
            let applied_ok = async {
                sqlx::raw_sql(*migration).execute(&mut *conn).await?;
                // PRAGMA takes no bind parameters; the value is our own integer.
                sqlx::raw_sql(audited(format!("PRAGMA user_version = {}", applied + 1)))
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await
            }
            .await;
            if let Err(e) = applied_ok {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                return Err(db(e));
            }
        }
        drop(conn);
        Ok(SqliteStore {
            pool,
            write_gate: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The statement that takes `node`'s unfinished runs over for `by` (see
/// [`Store::take_over_runs`]): a `running` run is recorded `abandoned` with `error` (followed
/// by its status); a `queued` one becomes `by`'s under a fresh random (positive) token.
fn take_over<'q>(
    node: &'q str,
    by: &'q str,
    at: Timestamp,
    error: &'q str,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(audited(format!(
        "UPDATE runs SET
             status = CASE WHEN status = 'running' THEN 'abandoned' ELSE status END,
             finished_at = CASE WHEN status = 'running' THEN ?3 ELSE finished_at END,
             error = CASE WHEN status = 'running' THEN ?4 || status ELSE error END,
             node = CASE WHEN status = 'queued' THEN ?2 ELSE node END,
             fencing_token = CASE WHEN status = 'queued'
                 THEN (random() & 9223372036854775806) + 1 ELSE fencing_token END
         WHERE status IN ('queued', 'running') AND node = ?1
         RETURNING {RUN_COLUMNS}"
    )))
    .bind(node)
    .bind(by)
    .bind(micros(at))
    .bind(error)
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_job(&self, spec: &JobSpec, now: Timestamp) -> Result<JobRecord, StoreError> {
        let _writing = self.write_gate.lock().await;
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The version moves only when the spec changes, so re-applying the same config at every
        // start-up is a no-op.
        let row = sqlx::query(
            "INSERT INTO jobs (name, spec, version, created_at, updated_at) VALUES (?1, ?2, 1, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET
                 spec = excluded.spec,
                 version = jobs.version + (jobs.spec IS NOT excluded.spec),
                 updated_at = CASE WHEN jobs.spec IS excluded.spec THEN jobs.updated_at ELSE excluded.updated_at END
             RETURNING spec, version, created_at, updated_at, paused, last_fire_at",
        )
        .bind(spec.name.as_str())
        .bind(&json)
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        job_from_row(one(&row)?)
    }

    async fn get_job(&self, name: &JobName) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT spec, version, created_at, updated_at, paused, last_fire_at FROM jobs WHERE name = ?1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT spec, version, created_at, updated_at, paused, last_fire_at FROM jobs ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn set_paused(
        &self,
        name: &JobName,
        reason: Option<&str>,
    ) -> Result<Option<JobRecord>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let rows = sqlx::query(
            "UPDATE jobs SET paused = ?2 WHERE name = ?1
             RETURNING spec, version, created_at, updated_at, paused, last_fire_at",
        )
        .bind(name.as_str())
        .bind(reason)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.first().map(job_from_row).transpose()
    }

    async fn find_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let rows = self.find_job_rows(filter).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn find_job_summaries(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, StoreError> {
        let rows = self.find_job_rows(filter).await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn delete_job(&self, name: &JobName) -> Result<bool, StoreError> {
        let _writing = self.write_gate.lock().await;
        let done = sqlx::query("DELETE FROM jobs WHERE name = ?1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_fires(&self, claims: &[ClaimFire<'_>]) -> Result<Vec<Option<Run>>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let mut claimed: HashMap<(String, i64, u32), (RunId, i64)> = HashMap::new();
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Writes are serialised, so a rescue is either wholly before this or wholly after it.
        let mut nodes: Vec<&str> = claims.iter().map(|c| c.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            let rescued: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM nodes WHERE name = ?1 AND rescued_at IS NOT NULL",
            )
            .bind(node)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if rescued.is_some() {
                return Err(StoreError::Database(rescued_claim(node)));
            }
        }
        for chunk in claims.chunks(BATCH_ROWS) {
            // `DO NOTHING` leaves out fires claimed before and repeats within the chunk;
            // `RETURNING` names the rows that went in.
            let sql = format!(
                "INSERT INTO runs (job, scheduled_at, trigger, attempt, status, node, fencing_token)
                 VALUES {} ON CONFLICT DO NOTHING RETURNING id, job, scheduled_at, attempt, fencing_token",
                placeholders(chunk.len(), "(?, ?, ?, ?, 'queued', ?, ?)")
            );
            let mut query = sqlx::query(audited(sql));
            for claim in chunk {
                query = query
                    .bind(claim.job.as_str())
                    .bind(micros(claim.scheduled_at))
                    .bind(claim.trigger.as_str())
                    .bind(i64::from(claim.attempt))
                    .bind(claim.node)
                    .bind(fencing_token());
            }
            let rows = query.fetch_all(&mut *tx).await.map_err(db)?;
            for row in &rows {
                let (key, value) = claim_from_row(row)?;
                claimed.insert(key, value);
            }
        }
        // Where each job's schedule stands: the latest scheduled or catch-up instant claimed.
        let mut last_fire: HashMap<&str, i64> = HashMap::new();
        let runs: Vec<Option<Run>> = claims
            .iter()
            .map(|claim| {
                let at = micros(claim.scheduled_at);
                let key = (claim.job.as_str().to_owned(), at, claim.attempt);
                // `remove`: a fire repeated within the batch is claimed by its first mention.
                let (id, fencing_token) = claimed.remove(&key)?;
                if matches!(claim.trigger, Trigger::Schedule | Trigger::CatchUp) {
                    let last = last_fire.entry(claim.job.as_str()).or_insert(at);
                    *last = (*last).max(at);
                }
                Some(claimed_run(claim, id, fencing_token))
            })
            .collect();
        let last_fire: Vec<(&str, i64)> = last_fire.into_iter().collect();
        for chunk in last_fire.chunks(BATCH_ROWS) {
            let sql = format!(
                "UPDATE jobs SET last_fire_at = MAX(COALESCE(last_fire_at, v.column2), v.column2)
                 FROM (VALUES {}) AS v WHERE jobs.name = v.column1",
                placeholders(chunk.len(), "(?, ?)")
            );
            let mut query = sqlx::query(audited(sql));
            for (job, at) in chunk {
                query = query.bind(*job).bind(*at);
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(runs)
    }

    async fn record_run(&self, run: NewRun<'_>) -> Result<Run, StoreError> {
        let _writing = self.write_gate.lock().await;
        let final_at = run.status.is_final().then(|| micros(run.at));
        let row = sqlx::query(audited(format!(
            "INSERT INTO runs (job, scheduled_at, trigger, attempt, status, node, fencing_token, finished_at, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             RETURNING {RUN_COLUMNS}"
        )))
        .bind(run.job.as_str())
        .bind(micros(run.scheduled_at))
        .bind(run.trigger.as_str())
        .bind(i64::from(run.attempt))
        .bind(run.status.as_str())
        .bind(run.node)
        .bind(fencing_token())
        .bind(final_at)
        .bind(&run.error)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        run_from_row(one(&row)?)
    }

    async fn start_runs(&self, starts: &[StartRun]) -> Result<Vec<bool>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let mut started = HashSet::new();
        let mut tx = self.pool.begin().await.map_err(db)?;
        for chunk in starts.chunks(BATCH_ROWS) {
            let sql = format!(
                "UPDATE runs SET status = 'running', started_at = v.column3
                 FROM (VALUES {}) AS v
                 WHERE runs.id = v.column1 AND runs.fencing_token = v.column2 AND runs.status = 'queued'
                 RETURNING runs.id",
                placeholders(chunk.len(), "(?, ?, ?)")
            );
            let mut query = sqlx::query_scalar::<_, i64>(audited(sql));
            for start in chunk {
                query = query
                    .bind(start.id.0)
                    .bind(start.fencing_token)
                    .bind(micros(start.at));
            }
            started.extend(query.fetch_all(&mut *tx).await.map_err(db)?);
        }
        tx.commit().await.map_err(db)?;
        Ok(starts.iter().map(|s| started.remove(&s.id.0)).collect())
    }

    async fn finish_runs(&self, finishes: &[FinishRun]) -> Result<Vec<bool>, StoreError> {
        let _writing = self.write_gate.lock().await;
        if let Some(f) = finishes.iter().find(|f| !f.status.is_final()) {
            return Err(StoreError::Corrupt(format!(
                "run {}: {} is not a final status",
                f.id, f.status
            )));
        }
        let mut finished = HashSet::new();
        let mut tx = self.pool.begin().await.map_err(db)?;
        for chunk in finishes.chunks(BATCH_ROWS) {
            let sql = format!(
                "UPDATE runs SET status = v.column3, finished_at = v.column4, exit_code = v.column5,
                     error = v.column6, output = v.column7, started_at = COALESCE(runs.started_at, v.column8)
                 FROM (VALUES {}) AS v
                 WHERE runs.id = v.column1 AND runs.fencing_token = v.column2
                   AND runs.status IN ('queued', 'running')
                 RETURNING runs.id",
                placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?)")
            );
            let mut query = sqlx::query_scalar::<_, i64>(audited(sql));
            for f in chunk {
                query = query
                    .bind(f.id.0)
                    .bind(f.fencing_token)
                    .bind(f.status.as_str())
                    .bind(micros(f.finished_at))
                    .bind(f.exit_code)
                    .bind(&f.error)
                    .bind(&f.output)
                    .bind(f.started_at.map(micros));
            }
            finished.extend(query.fetch_all(&mut *tx).await.map_err(db)?);
        }
        tx.commit().await.map_err(db)?;
        Ok(finishes.iter().map(|f| finished.remove(&f.id.0)).collect())
    }

    async fn request_run(
        &self,
        job: &JobName,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let _writing = self.write_gate.lock().await;
        let done = sqlx::query(
            "INSERT INTO run_requests (job, requested_at, requested_by)
             SELECT name, ?2, ?3 FROM jobs WHERE name = ?1",
        )
        .bind(job.as_str())
        .bind(micros(at))
        .bind(by)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_run_requests(&self) -> Result<Vec<RunRequest>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let rows =
            sqlx::query("DELETE FROM run_requests RETURNING id, job, requested_at, requested_by")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut requests = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        requests.sort_by_key(|r| r.id);
        Ok(requests)
    }

    async fn change_seq(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT seq FROM changes WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn get_run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(audited(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR trigger = ?3)
               AND (?4 IS NULL OR scheduled_at >= ?4) AND (?5 IS NULL OR scheduled_at < ?5)
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7"
        )))
        .bind(filter.job.as_ref().map(JobName::as_str))
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.trigger.map(Trigger::as_str))
        .bind(filter.since.map(micros))
        .bind(filter.until.map(micros))
        .bind(filter.before_id.map(|id| id.0))
        .bind(i64::from(filter.limit.unwrap_or(100)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn abandon_runs(
        &self,
        node: Option<&str>,
        at: Timestamp,
    ) -> Result<Vec<Run>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let rows = sqlx::query(audited(format!(
            "UPDATE runs SET status = 'abandoned', finished_at = ?2,
                 error = 'the scheduler stopped while this run was ' || status
             WHERE status IN ('queued', 'running') AND (?1 IS NULL OR node = ?1)
             RETURNING {RUN_COLUMNS}"
        )))
        .bind(node)
        .bind(micros(at))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut runs: Vec<Run> = rows.iter().map(run_from_row).collect::<Result<_, _>>()?;
        runs.sort_by_key(|r| r.id);
        Ok(runs)
    }

    async fn take_over_runs(
        &self,
        node: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<Vec<Run>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let rows = take_over(node, by, at, rows::STOPPED_RUN)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut runs: Vec<Run> = rows.iter().map(run_from_row).collect::<Result<_, _>>()?;
        runs.sort_by_key(|r| r.id);
        Ok(runs)
    }

    async fn last_fire(&self, job: &JobName) -> Result<Option<Timestamp>, StoreError> {
        let us: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_fire_at FROM jobs WHERE name = ?1")
                .bind(job.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        opt_instant(us.flatten())
    }

    async fn job_stats(&self, job: &JobName) -> Result<JobStats, StoreError> {
        let rows = sqlx::query(
            "SELECT status, started_at, finished_at FROM runs
             WHERE job = ?1 AND status NOT IN ('queued', 'running') ORDER BY id DESC",
        )
        .bind(job.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows::stats_from_rows(&rows)
    }

    async fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: Timestamp,
    ) -> Result<ApiToken, StoreError> {
        let _writing = self.write_gate.lock().await;
        let rows = sqlx::query(
            "INSERT INTO api_tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING
             RETURNING id, name, role, created_at, revoked_at",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(micros(at))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        match rows.first() {
            Some(row) => token_from_row(row),
            None => Err(StoreError::Conflict(format!(
                "a token named {name:?} exists already"
            ))),
        }
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let _writing = self.write_gate.lock().await;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(micros(at))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens
             WHERE hash = ?1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn record_audit(&self, entry: NewAudit<'_>) -> Result<AuditEntry, StoreError> {
        let _writing = self.write_gate.lock().await;
        let detail = entry.detail.as_ref().map(|d| d.to_string());
        let rows = sqlx::query(
            "INSERT INTO audit_log (at, actor, source, action, target, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             RETURNING id, at, actor, source, action, target, detail",
        )
        .bind(micros(entry.at))
        .bind(entry.actor)
        .bind(entry.source)
        .bind(entry.action)
        .bind(entry.target)
        .bind(detail)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        audit_from_row(one(&rows)?)
    }

    async fn list_audit(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, source, action, target, detail FROM audit_log
             WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn prune_runs(&self, keep_last: u32, older_than: Timestamp) -> Result<u64, StoreError> {
        let _writing = self.write_gate.lock().await;
        let done = sqlx::query(
            "DELETE FROM runs WHERE status NOT IN ('queued', 'running') AND (
                 finished_at < ?2 OR id IN (
                     SELECT id FROM (
                         SELECT id, ROW_NUMBER() OVER (PARTITION BY job ORDER BY id DESC) AS newest
                         FROM runs WHERE status NOT IN ('queued', 'running')
                     ) WHERE newest > ?1))",
        )
        .bind(i64::from(keep_last))
        .bind(micros(older_than))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn heartbeat(
        &self,
        node: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let _writing = self.write_gate.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A rescued node counts as forgotten.
        let was: Option<i64> = sqlx::query_scalar(
            "SELECT lease_until FROM nodes WHERE name = ?1 AND rescued_at IS NULL",
        )
        .bind(node)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO nodes (name, lease_until) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET lease_until = excluded.lease_until,
                 rescued_at = NULL",
        )
        .bind(node)
        .bind(micros(until))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(was.is_some_and(|was| was >= micros(now)))
    }

    async fn live_nodes(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM nodes WHERE lease_until >= ?1 AND rescued_at IS NULL ORDER BY name",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn dead_nodes(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM nodes WHERE lease_until < ?1 AND rescued_at IS NULL ORDER BY name",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn rescue_node(
        &self,
        node: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<Run>>, StoreError> {
        let _writing = self.write_gate.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Remembered as rescued; those rescued long ago are forgotten.
        let forgotten = sqlx::query(
            "UPDATE nodes SET rescued_at = ?2
             WHERE name = ?1 AND lease_until < ?2 AND rescued_at IS NULL",
        )
        .bind(node)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if forgotten == 0 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM nodes WHERE rescued_at < ?1")
            .bind(micros(now - RESCUED_REMEMBERED))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let rows = take_over(node, by, now, rows::RESCUED_RUN)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut runs: Vec<Run> = rows.iter().map(run_from_row).collect::<Result<_, _>>()?;
        runs.sort_by_key(|r| r.id);
        Ok(Some(runs))
    }

    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let _writing = self.write_gate.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Nothing of a node that leaves may stay unfinished: nobody would rescue it.
        sqlx::query(
            "UPDATE runs SET status = 'abandoned', finished_at = ?2,
                 error = 'the node left while this run was ' || status
             WHERE status IN ('queued', 'running') AND node = ?1",
        )
        .bind(node)
        .bind(micros(Timestamp::now()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM nodes WHERE name = ?1")
            .bind(node)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let _writing = self.write_gate.lock().await;
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leases.holder = excluded.holder OR leases.until < ?3",
        )
        .bind(name)
        .bind(holder)
        .bind(micros(now))
        .bind(micros(until))
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _writing = self.write_gate.lock().await;
        sqlx::query("DELETE FROM leases WHERE name = ?1 AND holder = ?2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
