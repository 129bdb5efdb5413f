//! SQL jobs against real databases: PostgreSQL and MariaDB on this machine (URLs from
//! `CRONWARDEN_TEST_POSTGRES_URL` and `CRONWARDEN_TEST_MYSQL_URL`; skipped if unreachable,
//! except under `CI=true`) and SQLite in a temporary file.
//!
//! Every check runs on each of the three; effects are read back over a connection of the
//! test's own, not through the executor under test.

mod support;

use cronwarden::executor::{
    ConnectionSpec, Executor, Executors, Outcome, RunContext, RustJobs, SqlExecutor,
};
use cronwarden::model::{Action, JobName, RunId, SqlAction, Trigger};
use jiff::SignedDuration;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dialect {
    Postgres,
    MariaDb,
    Sqlite,
}

/// A database under test: the URL jobs use, and the test's own pool.
struct Db {
    url: String,
    dialect: Dialect,
    pool: AnyPool,
}

impl Db {
    async fn postgres() -> Option<Db> {
        let url = support::postgres_url().await?;
        Some(Db::connect(url.clone(), url, Dialect::Postgres).await)
    }

    async fn mariadb() -> Option<Db> {
        let url = support::mysql_url().await?;
        Some(Db::connect(url.clone(), url, Dialect::MariaDb).await)
    }

    async fn sqlite() -> Option<Db> {
        let path = support::temp_db_path("sql-jobs");
        Some(
            Db::connect(
                format!("sqlite:{path}"),
                format!("sqlite://{path}?mode=rwc"),
                Dialect::Sqlite,
            )
            .await,
        )
    }

    async fn connect(url: String, own_url: String, dialect: Dialect) -> Db {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(&own_url)
            .await
            .unwrap();
        Db { url, dialect, pool }
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A fresh table `name(id, label, expires, active)` with `rows` rows; row i expires at i.
    async fn table(&self, rows: i64) -> String {
        let name = support::unique("cw_sql");
        self.exec(&format!(
            "CREATE TABLE {name} (id INTEGER PRIMARY KEY, label VARCHAR(40) NOT NULL, expires INTEGER NOT NULL, active BOOLEAN NOT NULL)"
        ))
        .await;
        let mut start = 1;
        while start <= rows {
            let end = (start + 499).min(rows);
            let values: Vec<String> = (start..=end)
                .map(|i| {
                    format!(
                        "({i}, 'row {i}', {i}, {})",
                        if i % 2 == 0 { "TRUE" } else { "FALSE" }
                    )
                })
                .collect();
            self.exec(&format!(
                "INSERT INTO {name} (id, label, expires, active) VALUES {}",
                values.join(", ")
            ))
            .await;
            start = end + 1;
        }
        name
    }

    /// A statement deleting at most `limit` rows matching `condition`, as this database
    /// writes it.
    fn bounded_delete(&self, table: &str, condition: &str, limit: u32) -> String {
        match self.dialect {
            Dialect::MariaDb => format!("DELETE FROM {table} WHERE {condition} LIMIT {limit}"),
            _ => format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {condition} LIMIT {limit})"
            ),
        }
    }

    fn executors(&self) -> Executors {
        Executors::new(RustJobs::new()).with_sql(SqlExecutor::new([(
            "app".to_owned(),
            ConnectionSpec::new(self.url.clone()),
        )]))
    }

    async fn run(&self, action: SqlAction) -> Outcome {
        self.executors().execute(&Action::Sql(action), &ctx()).await
    }
}

fn ctx() -> RunContext {
    RunContext {
        run_id: RunId(1),
        job: JobName::new("sql").unwrap(),
        scheduled_at: jiff::Timestamp::now(),
        attempt: 1,
        trigger: Trigger::Manual,
        cancel: CancellationToken::new(),
    }
}

fn statement(sql: String) -> SqlAction {
    SqlAction {
        connection: "app".to_owned(),
        statement: Some(sql),
        script: Vec::new(),
        batch: false,
        batch_pause: None,
        max_batches: None,
        statement_timeout: None,
        keep_rows: 10,
        fail_when_rows: false,
    }
}

fn output(outcome: Outcome) -> String {
    match outcome {
        Outcome::Succeeded { output, .. } => output.unwrap_or_default(),
        other => panic!("expected success, got {other:?}"),
    }
}

fn failure(outcome: Outcome) -> (String, bool) {
    match outcome {
        Outcome::Failed {
            error, retryable, ..
        } => (error, retryable),
        other => panic!("expected a failure, got {other:?}"),
    }
}

async fn a_statement_reports_the_rows_it_affected(db: Db) {
    let t = db.table(10).await;
    let out = output(
        db.run(statement(format!("DELETE FROM {t} WHERE expires <= 4")))
            .await,
    );
    assert_eq!(out, "4 rows affected");
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM {t}")).await, 6);
    assert_eq!(db.count(&format!("SELECT MIN(id) FROM {t}")).await, 5);
    db.exec(&format!("DROP TABLE {t}")).await;
}

async fn a_query_keeps_its_first_rows_as_json(db: Db) {
    let t = db.table(5).await;
    let mut action = statement(format!(
        "SELECT id, label, expires * 1.5 AS weight, NULL AS missing FROM {t} ORDER BY id"
    ));
    action.keep_rows = 2;
    let out = output(db.run(action).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "5 rows returned, the first 2 kept", "{out}");
    let first: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(first["id"], 1);
    assert_eq!(first["label"], "row 1");
    // An exact decimal (PostgreSQL, MariaDB) stays text; SQLite's REAL is a float.
    match db.dialect {
        Dialect::Sqlite => assert_eq!(first["weight"], 1.5),
        _ => assert_eq!(
            first["weight"].as_str().map(|w| w.trim_end_matches('0')),
            Some("1.5")
        ),
    }
    assert_eq!(first["missing"], serde_json::Value::Null);
    assert_eq!(lines.len(), 3, "{out}");
    // As a check: rows fail the run, and are kept.
    let mut check = statement(format!("SELECT id FROM {t} WHERE expires > 3 ORDER BY id"));
    check.fail_when_rows = true;
    match db.run(check.clone()).await {
        Outcome::Failed {
            error,
            retryable,
            output,
            ..
        } => {
            assert_eq!(error, "2 rows returned (fail_when_rows)");
            assert!(!retryable);
            assert!(output.unwrap().ends_with("{\"id\":4}\n{\"id\":5}"));
        }
        other => panic!("{other:?}"),
    }
    check.statement = Some(format!("SELECT id FROM {t} WHERE expires > 99"));
    output(db.run(check).await);
    db.exec(&format!("DROP TABLE {t}")).await;
}

async fn a_script_is_one_transaction(db: Db) {
    let t = db.table(3).await;
    let mut action = statement(String::new());
    action.statement = None;
    action.script = vec![
        format!("UPDATE {t} SET label = 'changed' WHERE id = 1"),
        format!("INSERT INTO {t} (id, label, expires, active) VALUES (2, 'duplicate', 0, TRUE)"),
    ];
    let (error, retryable) = failure(db.run(action.clone()).await);
    assert!(!retryable, "a constraint violation is fatal: {error}");
    // The first statement's change was rolled back with the second's failure.
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM {t} WHERE label = 'changed'"))
            .await,
        0
    );
    action.script[1] =
        format!("INSERT INTO {t} (id, label, expires, active) VALUES (4, 'new', 0, TRUE)");
    assert_eq!(output(db.run(action).await), "2 rows affected");
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM {t} WHERE label IN ('changed', 'new')"
        ))
        .await,
        2
    );
    db.exec(&format!("DROP TABLE {t}")).await;
}

async fn syntax_errors_are_fatal_and_lost_connections_retryable(db: Db) {
    let (error, retryable) = failure(db.run(statement("DELETE FRM nowhere".into())).await);
    assert!(!retryable, "{error}");
    assert!(error.to_lowercase().contains("syntax"), "{error}");

    // A server that is not there: a port nothing listens on (SQLite has no server: a file
    // that does not exist is the same kind of trouble, but not one a retry fixes).
    let url = match db.dialect {
        Dialect::Postgres => "postgres://postgres@127.0.0.1:1/test".to_owned(),
        Dialect::MariaDb => "mysql://root@127.0.0.1:1/test".to_owned(),
        Dialect::Sqlite => return,
    };
    let mut spec = ConnectionSpec::new(url);
    spec.connect_timeout = Some(SignedDuration::from_secs(2));
    let executors =
        Executors::new(RustJobs::new()).with_sql(SqlExecutor::new([("app".to_owned(), spec)]));
    let outcome = executors
        .execute(&Action::Sql(statement("SELECT 1".into())), &ctx())
        .await;
    let (error, retryable) = failure(outcome);
    assert!(retryable, "{error}");
}

async fn batch_mode_repeats_until_nothing_is_left_one_transaction_per_batch(db: Db) {
    let t = db.table(2_500).await;
    let mut action = statement(db.bounded_delete(&t, "expires <= 2400", 1000));
    action.batch = true;
    let out = output(db.run(action.clone()).await);
    // 1000 + 1000 + 400, then a round that finds nothing.
    assert_eq!(out, "2400 rows affected in 4 batches (at most 1000 in one)");
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM {t}")).await, 100);
    action.statement = Some(db.bounded_delete(&t, "expires > 0", 30));
    action.max_batches = Some(2);
    let out = output(db.run(action).await);
    assert_eq!(out, "60 rows affected in 2 batches (at most 30 in one)");
    db.exec(&format!("DROP TABLE {t}")).await;
}

async fn the_statement_timeout_is_enforced_by_the_server(db: Db) {
    let sleep = match db.dialect {
        Dialect::Postgres => "SELECT pg_sleep(5)",
        Dialect::MariaDb => "SELECT SLEEP(5) FROM DUAL WHERE 1 = (SELECT 1)",
        // SQLite has no server to enforce one; the job's own timeout covers it.
        Dialect::Sqlite => return,
    };
    let mut action = statement(sleep.to_owned());
    action.statement_timeout = Some(SignedDuration::from_millis(300));
    let began = std::time::Instant::now();
    let (error, retryable) = failure(db.run(action).await);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(4),
        "the server stopped it"
    );
    assert!(retryable, "{error}");
    assert!(
        error.starts_with("the statement ran longer than its statement_timeout (300ms)"),
        "{error}"
    );
    // The pooled connection does not keep the limit for the next run.
    let quick = match db.dialect {
        Dialect::Postgres => "SELECT pg_sleep(0.5)",
        _ => "SELECT SLEEP(0.5)",
    };
    let executors = db.executors();
    let mut limited = statement("SELECT 1".into());
    limited.statement_timeout = Some(SignedDuration::from_millis(100));
    executors.execute(&Action::Sql(limited), &ctx()).await;
    let out = executors
        .execute(&Action::Sql(statement(quick.into())), &ctx())
        .await;
    assert!(matches!(out, Outcome::Succeeded { .. }), "{out:?}");
}

async fn the_connection_url_may_hold_a_secret_that_never_shows(db: Db) {
    // The URL's user, put in a variable; an error that quotes the URL must not show it.
    if db.dialect == Dialect::Sqlite {
        return;
    }
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    let var = format!("CW_TEST_DB_USER_{}", std::process::id());
    std::env::set_var(&var, user);
    let spec = ConnectionSpec::new(format!("{scheme}://${{env:{var}}}@{host}"));
    let executors =
        Executors::new(RustJobs::new()).with_sql(SqlExecutor::new([("app".to_owned(), spec)]));
    let out = executors
        .execute(
            &Action::Sql(statement("SELECT 42 AS answer".into())),
            &ctx(),
        )
        .await;
    assert!(output(out).contains(r#"{"answer":42}"#));
    let out = executors
        .execute(
            &Action::Sql(statement(format!("SELECT '{user}' AS who"))),
            &ctx(),
        )
        .await;
    let text = output(out);
    assert!(text.contains(r#"{"who":"[redacted]"}"#), "{text}");
}

macro_rules! on_each_database {
    ($($check:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $check() {
                if let Some(db) = super::Db::postgres().await { super::$check(db).await }
            })*
        }
        mod mariadb {
            $(#[tokio::test] async fn $check() {
                if let Some(db) = super::Db::mariadb().await { super::$check(db).await }
            })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $check() {
                if let Some(db) = super::Db::sqlite().await { super::$check(db).await }
            })*
        }
    };
}

on_each_database!(
    a_statement_reports_the_rows_it_affected,
    a_query_keeps_its_first_rows_as_json,
    a_script_is_one_transaction,
    syntax_errors_are_fatal_and_lost_connections_retryable,
    batch_mode_repeats_until_nothing_is_left_one_transaction_per_batch,
    the_statement_timeout_is_enforced_by_the_server,
    the_connection_url_may_hold_a_secret_that_never_shows,
);
