//! PostgreSQL databases of their own for tests.
use std::sync::Arc;

use cronwarden::store::PostgresStore;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The server's URL, for a database from which others are created.
fn server_url() -> String {
    std::env::var("CRONWARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
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

/// A database of its own for one test, dropped (best effort) when this is.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    server: String,
}

impl TestDatabase {
    /// A new empty database, or `None` (after saying so) when there is no server to
    /// test against; under `CI=true` a missing server fails the test instead.
    pub async fn create() -> Option<TestDatabase> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = server_url();
        let mut conn = match PgConnection::connect(&server).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL (CRONWARDEN_TEST_POSTGRES_URL) is unreachable under CI: {e}")
            }
            Err(e) => {
                eprintln!(
                    "skipping: PostgreSQL (CRONWARDEN_TEST_POSTGRES_URL) is unreachable: {e}"
                );
                return None;
            }
        };
        let name = format!(
            "cw_store_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // A database left by an earlier run of the same process id goes first.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        Some(TestDatabase {
            url: with_database(&server, &name),
            name,
            server,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // No async drop: the database is dropped from a thread with a runtime of its own.
        // `FORCE` ends the sessions of stores still open on it.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&server).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let done = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
                let _ = conn.close().await;
                done.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A store on a database of its own, with the database's guard.
pub async fn store() -> Option<(Arc<PostgresStore>, TestDatabase)> {
    let database = TestDatabase::create().await?;
    let store = PostgresStore::connect(&database.url).await.unwrap();
    Some((Arc::new(store), database))
}
