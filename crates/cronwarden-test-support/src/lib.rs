//! Databases on real servers for the workspace's integration tests: the servers' URLs (from
//! the environment, or this machine's defaults), whether they answer, and PostgreSQL databases
//! of a test's own; and scratch directories that do not pile up over runs.
//!
//! A test without its server is skipped (after saying so), except under `CI=true`, where that
//! fails it: CI has the servers, and a skipped test there would pass unnoticed.

pub mod daemon;
mod dirs;
mod disk;

use std::time::Duration;

pub use self::dirs::{scratch_dir, TestDir};
pub use self::disk::SmallDisk;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The variable naming the PostgreSQL server the tests use.
pub const POSTGRES_VAR: &str = "CRONWARDEN_TEST_POSTGRES_URL";
/// The PostgreSQL server the tests use when [`POSTGRES_VAR`] is unset.
pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The variable naming the MariaDB (or MySQL) server the tests use.
pub const MYSQL_VAR: &str = "CRONWARDEN_TEST_MYSQL_URL";
/// The MariaDB (or MySQL) server the tests use when [`MYSQL_VAR`] is unset.
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// The URL in the environment variable `var`, or `default` when it is unset.
pub fn server_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// `url` with its database replaced by `database` (its query, if any, kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    format!("{}/{database}{query}", &base[..path])
}

/// A name unique to this test process and call: `{prefix}_{pid}_{n}`, for a database or the
/// tables that tests share one with.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `None` after saying why the test is skipped; under `CI=true`, fails the test instead.
pub(crate) fn unavailable<T>(message: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}

/// The URL of a test database server, from `var` or `default`; `None` (after saying why)
/// when nothing answers there, except under `CI=true`, where that fails the test.
pub async fn reachable(var: &str, default: &str) -> Option<String> {
    let url = server_url(var, default);
    // scheme://[user[:password]@]host[:port][/database][?query]
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url.as_str()));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let has_port = !host.ends_with(']')
        && host
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let host_port = match (has_port, scheme) {
        (true, _) => host.to_owned(),
        (false, "mysql" | "mariadb") => format!("{host}:3306"),
        (false, _) => format!("{host}:5432"),
    };
    let answers = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(host_port.as_str()),
    )
    .await
    .is_ok_and(|connected| connected.is_ok());
    if answers {
        return Some(url);
    }
    unavailable(&format!(
        "no database answers at {host_port} (set {var} to its URL)"
    ))
}

/// The PostgreSQL server for tests ([`POSTGRES_VAR`]), if it answers; see [`reachable`].
pub async fn postgres_url() -> Option<String> {
    reachable(POSTGRES_VAR, POSTGRES_DEFAULT).await
}

/// The MariaDB (or MySQL) server for tests ([`MYSQL_VAR`]), if it answers; see [`reachable`].
pub async fn mysql_url() -> Option<String> {
    reachable(MYSQL_VAR, MYSQL_DEFAULT).await
}

/// Runs `work` to its end on a thread with a runtime of its own: callers may be inside a
/// runtime (where blocking on another one panics) or outside any. `Err` holds a panic of it.
fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the test database")
            .block_on(work)
    })
    .join()
}

/// A PostgreSQL database of its own for one test, on the server [`POSTGRES_VAR`] names;
/// dropped (with `FORCE`, ending any session left on it) when this is, on a panic too.
pub struct PgDatabase {
    /// Its URL, straight to the server.
    pub url: String,
    /// Its name: `{prefix}_{pid}_{n}` (see [`unique`]).
    pub name: String,
    server: String,
}

impl PgDatabase {
    /// A new, empty database named after `prefix`; `None` (after saying why) when no server
    /// answers, except under `CI=true`, where that fails the test. Blocks, inside a runtime or
    /// outside any.
    pub fn create(prefix: &str) -> Option<PgDatabase> {
        let name = unique(prefix);
        let sql = [
            // One left by an earlier run with the same process id goes first.
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ];
        let server = on_own_runtime(async move {
            let server = postgres_url().await?;
            let connected =
                tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&server))
                    .await
                    .unwrap_or(Err(sqlx::Error::PoolTimedOut));
            let mut conn = match connected {
                Ok(conn) => conn,
                Err(e) => {
                    return unavailable(&format!("PostgreSQL ({POSTGRES_VAR}) is unreachable: {e}"))
                }
            };
            for sql in sql {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            let _ = conn.close().await;
            Some(server)
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Some(PgDatabase {
            url: with_database(&server, &name),
            name,
            server,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // No async drop, and this may run inside a (panicking) test's runtime.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = on_own_runtime(async move {
            let mut conn = PgConnection::connect(&server).await.ok()?;
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let done = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
            let _ = conn.close().await;
            done.ok()
        });
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
