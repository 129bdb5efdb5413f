//! The harness of the seed-system tests: each loads an example's schema and data into a fresh
//! database on a real server, starts a scheduler on the example's own `cronwarden.toml`, runs
//! its jobs and lets the test check their effects over a connection of its own.
#![allow(dead_code)] // each seed test uses its own part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, RustJobs, SqlExecutor};
use cronwarden::model::{JobName, Run, RunStatus};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::SqliteStore;
use cronwarden_daemon::config::Config;
use cronwarden_test_support::{mysql_url, postgres_url, unique, with_database};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe};
use tokio::sync::broadcast;

/// The database servers a seed system can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
    Sqlite,
}

/// A fresh database of its own on a real server (or a fresh SQLite file), dropped by
/// [`TestDatabase::drop`].
pub struct TestDatabase {
    /// The URL jobs connect with.
    pub url: String,
    pub engine: Engine,
    name: String,
    server_url: String,
    pub pool: AnyPool,
}

impl TestDatabase {
    /// A new, empty database; `None` when the server is not reachable (outside CI).
    pub async fn create(engine: Engine, prefix: &str) -> Option<TestDatabase> {
        sqlx::any::install_default_drivers();
        let name = unique(prefix);
        let (server_url, url) = match engine {
            Engine::Postgres => {
                let server = postgres_url().await?;
                (server.clone(), with_database(&server, &name))
            }
            Engine::MariaDb => {
                let server = mysql_url().await?;
                (server.clone(), with_database(&server, &name))
            }
            Engine::Sqlite => {
                let dir = cronwarden_test_support::scratch_dir("seeds");
                let path = dir.join(format!("{name}.db"));
                let _ = std::fs::remove_file(&path);
                (String::new(), format!("sqlite:{}", path.display()))
            }
        };
        if engine != Engine::Sqlite {
            let admin = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&server_url)
                .await
                .unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
        let own = match engine {
            Engine::Sqlite => format!("{url}?mode=rwc"),
            _ => url.clone(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(&own)
            .await
            .unwrap();
        Some(TestDatabase {
            url,
            engine,
            name,
            server_url,
            pool,
        })
    }

    /// Runs a file of SQL statements (a schema, seed data).
    pub async fn load(&self, file: &Path) {
        let sql =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row, as an integer.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of every row, as text.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Drops the database.
    pub async fn drop(self) {
        self.pool.close().await;
        if self.engine != Engine::Sqlite {
            let admin = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&self.server_url)
                .await
                .unwrap();
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {}", self.name)))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}

/// The folder of an example.
pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// An example's jobs running on a scheduler, against the test's database and servers.
pub struct Example {
    pub config: Config,
    pub scheduler: Scheduler,
    pub store: Arc<SqliteStore>,
    events: broadcast::Receiver<SchedulerEvent>,
}

impl Example {
    /// Loads `examples/NAME/cronwarden.toml`, replaces each `(text, value)` of `substitute` in
    /// every connection URL and job action string (the `${env:...}` references that point at
    /// the real services), and starts a scheduler on a fresh store with those jobs, its
    /// firing paused: the test triggers each run.
    pub async fn start(name: &str, substitute: &[(&str, String)]) -> Example {
        let path = example_dir(name).join("cronwarden.toml");
        let mut config = Config::load(&path).unwrap_or_else(|errors| {
            panic!("{}: {errors:?}", path.display());
        });
        let swap = |text: &mut String| {
            for (from, to) in substitute {
                if text.contains(from) {
                    *text = text.replace(from, to);
                }
            }
        };
        for connection in config.connections.values_mut() {
            swap(&mut connection.url);
        }
        for job in &mut config.jobs {
            for (_, text) in job.action.strings_mut() {
                swap(text);
            }
        }
        let dir = cronwarden_test_support::scratch_dir("seeds");
        let store_path = dir.join(format!("{}.db", unique("store")));
        let store = Arc::new(
            SqliteStore::open(store_path.to_str().unwrap())
                .await
                .unwrap(),
        );
        let executors =
            Executors::new(RustJobs::new()).with_sql(SqlExecutor::new(config.connections.clone()));
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(SystemClock),
            executors,
            SchedulerConfig::default(),
        );
        let events = scheduler.subscribe();
        // The test runs the jobs: no scheduled fire may land among its triggered runs.
        scheduler.pause_firing();
        scheduler.start();
        for job in &config.jobs {
            scheduler.upsert_job(job.clone()).await.unwrap();
        }
        Example {
            config,
            scheduler,
            store,
            events,
        }
    }

    /// Triggers `job` and waits for its last attempt: one that succeeds, or a failure with no
    /// further attempt claimed (the scheduler claims a retry before it announces the failed
    /// run). Real retry delays pass, so tests run jobs whose retryable failures they expect
    /// with the retry policy they have.
    pub async fn run(&mut self, job: &str) -> Run {
        let name = JobName::new(job).unwrap();
        assert!(
            self.config.jobs.iter().any(|j| j.name == name),
            "the example has no job {job:?}"
        );
        // Its attempts share the fire's instant; other runs of the job do not.
        let fire = self.scheduler.trigger(&name).await.unwrap().scheduled_at;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{job} did not finish within 60 s"))
                .unwrap();
            if let SchedulerEvent::RunFinished(run) = event {
                if run.job != name || run.scheduled_at != fire {
                    continue;
                }
                let failed = matches!(run.status, RunStatus::Failed | RunStatus::TimedOut);
                if !failed || !self.retried(&run).await {
                    return run;
                }
            }
        }
    }

    /// Whether a next attempt of `run`'s fire is in the store.
    async fn retried(&self, run: &Run) -> bool {
        use cronwarden::store::{RunFilter, Store};
        let filter = RunFilter {
            job: Some(run.job.clone()),
            limit: Some(1000),
            ..RunFilter::default()
        };
        self.store
            .list_runs(&filter)
            .await
            .unwrap()
            .iter()
            .any(|r| r.scheduled_at == run.scheduled_at && r.attempt == run.attempt + 1)
    }

    /// Like [`Example::run`], and the run must have succeeded; returns its output.
    pub async fn succeeds(&mut self, job: &str) -> String {
        let run = self.run(job).await;
        assert_eq!(
            run.status,
            RunStatus::Succeeded,
            "{job}: {:?} {:?}",
            run.error,
            run.output
        );
        run.output.unwrap_or_default()
    }

    pub async fn stop(self) {
        self.scheduler.stop().await;
    }
}

/// Serves `router` on a free port of 127.0.0.1; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}
