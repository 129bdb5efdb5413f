//! The auth service's user status sync (`examples/auth-status-sync`) as Rust code embedding the
//! engine: the sync is registered as a Rust job and scheduled every 2 hours, with the seed's
//! retries (`CRON_MAX_RETRIES=3`: 4 attempts with exponential backoff) and no overlap.
//!
//! ```sh
//! psql "$DATABASE_URL" -f examples/auth-status-sync/schema.sql \
//!     -f examples/auth-status-sync/seed.sql
//! DATABASE_URL=postgres://... ORG_SERVICE_URL=http://... \
//!     cargo run -p cronwarden --example auth_status_sync -- --now
//! ```
//!
//! Environment:
//! - `DATABASE_URL`: the auth service's PostgreSQL database (its `users` table).
//! - `ORG_SERVICE_URL`: the organisation-registration service's base URL.
//! - `ORG_SERVICE_TOKEN` (optional): sent as `Authorization: Bearer ...` to the organisation
//!   service (its service-to-service authentication).
//! - `CRON_BATCH_SIZE` (optional, default 50): users per batch, as in the seed.
//! - `CRONWARDEN_DATABASE` (optional, default `auth-status-sync.db`): the scheduler's SQLite
//!   store (run history, job state).
//!
//! `--now` also runs the sync once at start. Ctrl-C or SIGTERM stops: a sync in flight gets the
//! scheduler's shutdown grace to finish its batch, and is cancelled between batches after that.

mod sync;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, JobError, RunContext, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, MisfirePolicy, OverlapPolicy, RetryPolicy};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::SqliteStore;
use jiff::SignedDuration;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use sqlx::postgres::PgPoolOptions;

/// The Rust handler's name, and the job's.
const JOB: &str = "user-status-sync";

/// The job: every 2 hours (UTC), 4 attempts, never two syncs at once, one catch-up run after
/// downtime, cancelled after 30 minutes.
fn job_spec() -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(JOB).expect("a valid job name"),
        Some("0 */2 * * *"),
        Action::Rust {
            handler: JOB.to_owned(),
        },
    );
    spec.description = "Map registration status to account status (approved/certified -> \
                        active, rejected -> suspended, draft..clarification -> \
                        pending_registration)"
        .to_owned();
    spec.timeout = Some(SignedDuration::from_mins(30));
    spec.overlap = OverlapPolicy::Skip;
    spec.misfire = MisfirePolicy::RunOnce;
    spec.retry = RetryPolicy {
        max_attempts: 4,
        initial_delay: SignedDuration::from_secs(30),
        multiplier: 2.0,
        max_delay: SignedDuration::from_mins(10),
        jitter: 0.1,
    };
    spec.tags = vec!["auth".to_owned(), "sync".to_owned()];
    spec
}

fn required(name: &str) -> Result<String, Box<dyn Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let database_url = required("DATABASE_URL")?;
    let org_url = required("ORG_SERVICE_URL")?;
    let batch_size: i64 = match std::env::var("CRON_BATCH_SIZE") {
        Ok(size) => size
            .parse()
            .map_err(|_| format!("CRON_BATCH_SIZE: {size:?} is not a number"))?,
        Err(_) => 50,
    };
    let store_path =
        std::env::var("CRONWARDEN_DATABASE").unwrap_or_else(|_| "auth-status-sync.db".to_owned());

    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&database_url)
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(token) = std::env::var("ORG_SERVICE_TOKEN") {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()?;

    let rust_jobs = RustJobs::new().register(JOB, move |ctx: RunContext| {
        let (pool, http, org_url) = (pool.clone(), http.clone(), org_url.clone());
        async move {
            let report =
                sync::sync_statuses(&pool, &http, &org_url, batch_size, &ctx.cancel).await?;
            Ok::<_, JobError>(report.to_string())
        }
    });
    let store = SqliteStore::open(&store_path).await?;
    let scheduler = Scheduler::new(
        Arc::new(store),
        Arc::new(SystemClock),
        Executors::new(rust_jobs),
        SchedulerConfig {
            shutdown_grace: SignedDuration::from_mins(2),
            ..SchedulerConfig::default()
        },
    );

    // What the runs did, on stderr (the run history keeps it too).
    let mut events = scheduler.subscribe();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(SchedulerEvent::RunFinished(run)) => eprintln!(
                    "{} run {} (attempt {}): {} {}",
                    run.job,
                    run.id,
                    run.attempt,
                    run.status,
                    run.error.or(run.output).unwrap_or_default()
                ),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });

    scheduler.start();
    let name = JobName::new(JOB)?;
    scheduler.upsert_job(job_spec()).await?;
    if let Some(next) = scheduler.next_fire(&name) {
        eprintln!("{JOB}: next run at {next}");
    }
    if std::env::args().any(|arg| arg == "--now") {
        scheduler.trigger(&name).await?;
    }

    stopped().await;
    eprintln!("stopping");
    scheduler.stop().await;
    Ok(())
}

/// Waits for Ctrl-C or, on Unix, SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be handled");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
