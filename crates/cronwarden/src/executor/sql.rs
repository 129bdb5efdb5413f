//! SQL jobs: statements run against named connections (PostgreSQL, MySQL/MariaDB, SQLite).
//!
//! Each connection is one pool, created on first use (a database that is down when the daemon
//! starts fails its jobs' runs, retryably, rather than the start) and shared by every job that
//! names it. Statements are sent as written, over the simple-query protocol, so any statement
//! the database accepts works, and their results come back as text, which is what a run keeps.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Connection as _;
use sqlx::{AssertSqlSafe, Column, Database, Either, Pool, Row, TypeInfo, ValueRef};
use tokio::sync::Mutex;

use super::{Outcome, RunContext};
use crate::model::{SpecError, SqlAction};
use crate::secret::{self, Redactor};

/// A database SQL jobs run against: a `[connections.NAME]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// `postgres://`, `mysql://` (or `mariadb://`) or `sqlite:` URL. May hold secret
    /// references (`postgres://app:${env:DB_PASSWORD}@db/app`).
    pub url: String,
    /// The most connections the pool opens (default 4).
    #[serde(default = "four")]
    pub max_connections: u32,
    /// How long a run waits to connect before it fails, retryably (default 10 s).
    #[serde(default)]
    pub connect_timeout: Option<SignedDuration>,
}

fn four() -> u32 {
    4
}

/// The kinds of database a connection can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Postgres,
    MySql,
    Sqlite,
}

impl Kind {
    fn of(url: &str) -> Option<Kind> {
        let scheme = url.split(':').next()?;
        match scheme {
            "postgres" | "postgresql" => Some(Kind::Postgres),
            "mysql" | "mariadb" => Some(Kind::MySql),
            "sqlite" => Some(Kind::Sqlite),
            _ => None,
        }
    }
}

impl ConnectionSpec {
    /// A connection to `url` with the default pool settings.
    pub fn new(url: impl Into<String>) -> ConnectionSpec {
        ConnectionSpec {
            url: url.into(),
            max_connections: four(),
            connect_timeout: None,
        }
    }

    /// Checks the fields; the field names are relative to the connection's table.
    pub fn validate(&self) -> Result<(), SpecError> {
        secret::check_references(&self.url).map_err(|reason| SpecError::new("url", reason))?;
        // A URL that is one reference (`${env:DATABASE_URL}`) is checked when first used.
        if Kind::of(&self.url).is_none() && !self.url.starts_with("${") {
            return Err(SpecError::new(
                "url",
                "must start with postgres://, mysql://, mariadb:// or sqlite:",
            ));
        }
        if self.max_connections == 0 {
            return Err(SpecError::new("max_connections", "must be at least 1"));
        }
        if let Some(t) = self.connect_timeout {
            if !t.is_positive() {
                return Err(SpecError::new("connect_timeout", "must be positive"));
            }
        }
        Ok(())
    }
}

enum AnyPool {
    Postgres(Pool<Postgres>),
    MySql(Pool<MySql>),
    Sqlite(Pool<Sqlite>),
}

impl AnyPool {
    async fn close(&self) {
        match self {
            AnyPool::Postgres(p) => p.close().await,
            AnyPool::MySql(p) => p.close().await,
            AnyPool::Sqlite(p) => p.close().await,
        }
    }
}

struct NamedConnection {
    spec: ConnectionSpec,
    // Created on first use; the values its URL's secrets resolved to are redacted from every
    // run on it.
    pool: Mutex<Option<(Arc<AnyPool>, Redactor)>>,
}

/// The named connections SQL jobs run against, each a pool shared by its jobs.
#[derive(Default)]
pub struct SqlExecutor {
    connections: BTreeMap<String, NamedConnection>,
}

impl std::fmt::Debug for SqlExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlExecutor")
            .field("connections", &self.connections.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a run did: rows affected and, for a query, the first rows.
struct Report {
    rows_affected: u64,
    rows: Vec<serde_json::Value>,
    rows_returned: u64,
    batches: Option<(u32, u64)>,
}

impl SqlExecutor {
    /// Connections by name.
    pub fn new(connections: impl IntoIterator<Item = (String, ConnectionSpec)>) -> SqlExecutor {
        SqlExecutor {
            connections: connections
                .into_iter()
                .map(|(name, spec)| {
                    let connection = NamedConnection {
                        spec,
                        pool: Mutex::new(None),
                    };
                    (name, connection)
                })
                .collect(),
        }
    }

    /// The names of the declared connections.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.connections.keys().map(String::as_str)
    }

    /// Whether a connection of this name is declared.
    pub fn has(&self, name: &str) -> bool {
        self.connections.contains_key(name)
    }

    /// Closes every pool (on shutdown; a later run would open it again).
    pub async fn close(&self) {
        for connection in self.connections.values() {
            if let Some((pool, _)) = connection.pool.lock().await.take() {
                pool.close().await;
            }
        }
    }

    async fn pool(&self, name: &str) -> Result<(Arc<AnyPool>, Redactor), Outcome> {
        let Some(connection) = self.connections.get(name) else {
            let known: Vec<&str> = self.names().collect();
            return Err(Outcome::fatal(format!(
                "action.connection: no connection is named {name:?} (declared: {known:?})"
            )));
        };
        let mut slot = connection.pool.lock().await;
        if let Some((pool, redactor)) = &*slot {
            return Ok((pool.clone(), redactor.clone()));
        }
        let spec = &connection.spec;
        let mut redactor = Redactor::default();
        let url = secret::resolve(&spec.url, &mut redactor)
            .map_err(|e| Outcome::fatal(format!("connection {name:?}: url: {e}")))?;
        let bad_url = |e: sqlx::Error| {
            Outcome::fatal(
                redactor.redact(&format!("connection {name:?}: url: not a valid URL: {e}")),
            )
        };
        let timeout = spec
            .connect_timeout
            .map_or(Duration::from_secs(10), |t| t.unsigned_abs());
        fn options<DB: Database>(spec: &ConnectionSpec, timeout: Duration) -> PoolOptions<DB> {
            PoolOptions::new()
                .max_connections(spec.max_connections)
                .acquire_timeout(timeout)
        }
        let pool = match Kind::of(&url) {
            Some(Kind::Postgres) => {
                let opts = PgConnectOptions::from_str(&url).map_err(bad_url)?;
                let pool: PgPoolOptions = options(spec, timeout);
                AnyPool::Postgres(pool.connect_lazy_with(opts))
            }
            Some(Kind::MySql) => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let opts = MySqlConnectOptions::from_str(&url).map_err(bad_url)?;
                let pool: MySqlPoolOptions = options(spec, timeout);
                AnyPool::MySql(pool.connect_lazy_with(opts))
            }
            Some(Kind::Sqlite) => {
                // The application's database must exist: a typo in the path must not create
                // an empty one for the job to "clean".
                let opts = SqliteConnectOptions::from_str(&url)
                    .map_err(bad_url)?
                    .create_if_missing(false)
                    .busy_timeout(timeout);
                let pool: SqlitePoolOptions = options(spec, timeout);
                AnyPool::Sqlite(pool.connect_lazy_with(opts))
            }
            None => {
                return Err(Outcome::fatal(format!(
                    "connection {name:?}: url: must start with postgres://, mysql://, mariadb:// or sqlite:"
                )))
            }
        };
        let pool = Arc::new(pool);
        *slot = Some((pool.clone(), redactor.clone()));
        Ok((pool, redactor))
    }

    /// Runs `action` for one run; secrets in the action are already resolved.
    pub async fn execute(&self, action: &SqlAction, ctx: &RunContext) -> Outcome {
        let (pool, redactor) = match self.pool(&action.connection).await {
            Ok(pool) => pool,
            Err(outcome) => return outcome,
        };
        let work = async {
            match &*pool {
                AnyPool::Postgres(pool) => run(pool, action, ctx, Dialect::Postgres).await,
                AnyPool::MySql(pool) => run(pool, action, ctx, Dialect::MySql).await,
                AnyPool::Sqlite(pool) => run(pool, action, ctx, Dialect::Sqlite).await,
            }
        };
        let result = tokio::select! {
            result = work => result,
            () = ctx.cancel.cancelled() => return Outcome::retryable("cancelled"),
        };
        let outcome = match result {
            Ok(report) if action.fail_when_rows && report.rows_returned > 0 => Outcome::Failed {
                error: format!("{} returned (fail_when_rows)", rows(report.rows_returned)),
                retryable: false,
                output: Some(report.render()),
                exit_code: None,
                retry_after: None,
            },
            Ok(report) => Outcome::Succeeded {
                output: Some(report.render()),
                exit_code: None,
            },
            Err(e) => Outcome::Failed {
                retryable: retryable(&e),
                error: describe(&e, action),
                output: None,
                exit_code: None,
                retry_after: None,
            },
        };
        outcome.redacted(&redactor)
    }
}

impl Report {
    fn render(&self) -> String {
        if self.rows_returned > 0 {
            // A query: what it returned is the news (for a SELECT, PostgreSQL counts the rows
            // returned as "affected").
            let mut text = format!("{} returned", rows(self.rows_returned));
            if self.rows_returned > self.rows.len() as u64 {
                text.push_str(&format!(", the first {} kept", self.rows.len()));
            }
            if self.rows_affected > 0 && self.rows_affected != self.rows_returned {
                text.push_str(&format!("; {} affected", rows(self.rows_affected)));
            }
            for row in &self.rows {
                text.push('\n');
                text.push_str(&row.to_string());
            }
            return text;
        }
        match self.batches {
            Some((rounds, largest)) => format!(
                "{} affected in {rounds} {} (at most {largest} in one)",
                rows(self.rows_affected),
                if rounds == 1 { "batch" } else { "batches" }
            ),
            None => format!("{} affected", rows(self.rows_affected)),
        }
    }
}

#[derive(Clone, Copy)]
enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

/// The statement that sets the server-side statement timeout for what follows in the
/// transaction (PostgreSQL) or session (MySQL, MariaDB; always set, so a pooled connection
/// does not keep the previous run's value).
fn timeout_statements(dialect: Dialect, timeout: Option<SignedDuration>) -> Vec<String> {
    let ms = timeout.map_or(0, |t| t.as_millis().max(1));
    match dialect {
        Dialect::Postgres if ms > 0 => vec![format!("SET LOCAL statement_timeout = {ms}")],
        Dialect::Postgres | Dialect::Sqlite => Vec::new(),
        // MariaDB counts seconds (fractions allowed), MySQL milliseconds; each ignores the
        // other's variable only by failing, so the first that works wins.
        Dialect::MySql => vec![
            format!("SET SESSION max_statement_time = {}", ms as f64 / 1000.0),
            format!("SET SESSION max_execution_time = {ms}"),
        ],
    }
}

async fn run<DB>(
    pool: &Pool<DB>,
    action: &SqlAction,
    ctx: &RunContext,
    dialect: Dialect,
) -> Result<Report, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut conn = pool.acquire().await?;
    let setup = timeout_statements(dialect, action.statement_timeout);
    if matches!(dialect, Dialect::MySql) {
        let mut set = Err(None);
        for statement in &setup {
            match sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => {
                    set = Ok(());
                    break;
                }
                Err(e) => set = Err(Some(e)),
            }
        }
        if let (Err(Some(e)), Some(_)) = (set, action.statement_timeout) {
            return Err(e);
        }
    }
    let statements: Vec<&str> = match &action.statement {
        Some(statement) => vec![statement.as_str()],
        None => action.script.iter().map(String::as_str).collect(),
    };
    let mut report = Report {
        rows_affected: 0,
        rows: Vec::new(),
        rows_returned: 0,
        batches: None,
    };
    if !action.batch {
        let mut tx = conn.begin().await?;
        if matches!(dialect, Dialect::Postgres) {
            for statement in &setup {
                sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for statement in statements {
            let mut results = sqlx::raw_sql(AssertSqlSafe(statement)).fetch_many(&mut *tx);
            while let Some(item) = results.try_next().await? {
                match item {
                    Either::Left(result) => report.rows_affected += rows_affected::<DB>(&result),
                    Either::Right(row) => {
                        report.rows_returned += 1;
                        if report.rows.len() < action.keep_rows as usize {
                            report.rows.push(row_json(&row));
                        }
                    }
                }
            }
        }
        tx.commit().await?;
        return Ok(report);
    }
    // Batch mode: one transaction per round, until a round affects nothing.
    let statement = statements[0];
    let (mut rounds, mut largest) = (0u32, 0u64);
    loop {
        let mut tx = conn.begin().await?;
        if matches!(dialect, Dialect::Postgres) {
            for statement in &setup {
                sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let result = sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let affected = rows_affected::<DB>(&result);
        rounds += 1;
        largest = largest.max(affected);
        report.rows_affected += affected;
        report.batches = Some((rounds, largest));
        if affected == 0 || action.max_batches.is_some_and(|max| rounds >= max) {
            return Ok(report);
        }
        if ctx.cancel.is_cancelled() {
            return Ok(report);
        }
        if let Some(pause) = action.batch_pause {
            tokio::time::sleep(pause.unsigned_abs()).await;
        }
    }
}

fn rows_affected<DB: Database>(result: &DB::QueryResult) -> u64 {
    // Each driver's QueryResult has `rows_affected`, but not through a common trait.
    let any: &dyn std::any::Any = result;
    if let Some(r) = any.downcast_ref::<sqlx::postgres::PgQueryResult>() {
        r.rows_affected()
    } else if let Some(r) = any.downcast_ref::<sqlx::mysql::MySqlQueryResult>() {
        r.rows_affected()
    } else if let Some(r) = any.downcast_ref::<sqlx::sqlite::SqliteQueryResult>() {
        r.rows_affected()
    } else {
        0
    }
}

/// A row as a JSON object. Values arrive as text; integers, floats, booleans and JSON columns
/// are given their JSON type, everything else stays text.
fn row_json<R>(row: &R) -> serde_json::Value
where
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let mut object = serde_json::Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = match row.try_get_raw(i) {
            Ok(raw) if raw.is_null() => serde_json::Value::Null,
            Ok(raw) => {
                let type_name = raw.type_info().name().to_ascii_uppercase();
                match row.try_get_unchecked::<String, _>(i) {
                    Ok(text) => typed(&type_name, text),
                    Err(_) => serde_json::Value::String(format!("<{type_name}>")),
                }
            }
            Err(e) => serde_json::Value::String(format!("<{e}>")),
        };
        object.insert(column.name().to_owned(), value);
    }
    serde_json::Value::Object(object)
}

fn typed(type_name: &str, text: String) -> serde_json::Value {
    // Exact decimals (NUMERIC, DECIMAL: money) stay text: a JSON number would be read as a
    // binary float.
    let numeric = ["INT", "FLOAT", "DOUBLE", "REAL"]
        .iter()
        .any(|t| type_name.contains(t));
    if numeric {
        if let Ok(n) = serde_json::Number::from_str(&text) {
            return serde_json::Value::Number(n);
        }
    } else if type_name == "BOOL" || type_name == "BOOLEAN" {
        match text.as_str() {
            "t" | "true" | "1" => return serde_json::Value::Bool(true),
            "f" | "false" | "0" => return serde_json::Value::Bool(false),
            _ => {}
        }
    } else if type_name.starts_with("JSON") {
        if let Ok(value) = serde_json::from_str(&text) {
            return value;
        }
    }
    serde_json::Value::String(text)
}

/// Whether another attempt may succeed: lost connections, timeouts, deadlocks and lock
/// waits may clear; syntax, permission and constraint errors will not.
fn retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
                // Lock wait timeout, deadlock, statement time limits (MariaDB, MySQL), too many
                // connections, shutdown in progress, server gone away, connection lost.
                return matches!(
                    my.number(),
                    1205 | 1213 | 1969 | 3024 | 1040 | 1053 | 2006 | 2013
                );
            }
            let code = db.code().unwrap_or_default();
            match db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                // SQLITE_BUSY and SQLITE_LOCKED, plain or extended (the low byte is the
                // primary code).
                Some(_) => code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
                // PostgreSQL SQLSTATE classes: connection exception, transaction rollback
                // (serialization, deadlock), insufficient resources, operator intervention
                // (including statement_timeout), system error; and lock_not_available.
                None => {
                    ["08", "40", "53", "57", "58"]
                        .iter()
                        .any(|c| code.starts_with(c))
                        || code == "55P03"
                }
            }
        }
        _ => false,
    }
}

fn describe(e: &sqlx::Error, action: &SqlAction) -> String {
    let timed_out = match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("57014")
                || db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .is_some_and(|my| matches!(my.number(), 1969 | 3024))
        }
        _ => false,
    };
    match (timed_out, action.statement_timeout) {
        (true, Some(t)) => {
            format!("the statement ran longer than its statement_timeout ({t:#}): {e}")
        }
        _ => match e {
            sqlx::Error::PoolTimedOut => {
                "could not connect to the database in time (connect_timeout)".to_owned()
            }
            e => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    let shown = cause.to_string();
                    if !text.contains(&shown) {
                        text.push_str(": ");
                        text.push_str(&shown);
                    }
                    source = cause.source();
                }
                text
            }
        },
    }
}
