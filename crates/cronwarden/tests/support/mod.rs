//! Helpers shared by the integration tests that run jobs against real servers.
#![allow(dead_code)] // each test file uses its own part

#[cfg(feature = "postgres")]
pub mod pg;

use std::sync::Arc;
use std::time::Duration;

use cronwarden::clock::Clock;
use cronwarden::executor::Executors;
use cronwarden::model::{JobName, JobSpec, Run, RunStatus};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::{RunFilter, SqliteStore, Store};
use tokio::sync::broadcast;

/// A fresh SQLite database file for a test.
pub fn temp_db_path(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = cronwarden_test_support::scratch_dir(prefix);
    let path = dir.join(format!("{}.db", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path);
    path.to_str().unwrap().to_owned()
}

/// A running scheduler on a fresh store, with its event stream.
pub struct Running {
    pub scheduler: Scheduler,
    pub store: Arc<SqliteStore>,
    pub events: broadcast::Receiver<SchedulerEvent>,
    pub db_path: String,
}

impl Running {
    pub async fn start(jobs: Vec<JobSpec>, executors: Executors, clock: Arc<dyn Clock>) -> Running {
        let db_path = temp_db_path("jobs");
        let store = Arc::new(SqliteStore::open(&db_path).await.unwrap());
        let scheduler = Scheduler::new(store.clone(), clock, executors, SchedulerConfig::default());
        let events = scheduler.subscribe();
        scheduler.start();
        for job in jobs {
            scheduler.upsert_job(job).await.unwrap();
        }
        Running {
            scheduler,
            store,
            events,
            db_path,
        }
    }

    /// The next run of `job` to finish; fails the test after 30 s of real time (a safety net,
    /// not a wait for behaviour).
    pub async fn finished(&mut self, job: &str) -> Run {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), self.events.recv())
                .await
                .expect("a run finished within 30 s")
                .unwrap();
            if let SchedulerEvent::RunFinished(run) = event {
                if run.job.as_str() == job {
                    return run;
                }
            }
        }
    }

    /// Triggers `job` and follows it through its retries until an attempt ends without another
    /// one coming: succeeded, or failed with no retry left. Returns every attempt, in order.
    pub async fn trigger_to_the_end(&mut self, job: &str, max_attempts: u32) -> Vec<Run> {
        self.scheduler
            .trigger(&JobName::new(job).unwrap())
            .await
            .unwrap();
        let mut attempts = Vec::new();
        loop {
            let run = self.finished(job).await;
            let last = run.status != RunStatus::Failed && run.status != RunStatus::TimedOut
                || run.attempt >= max_attempts;
            attempts.push(run);
            if last {
                return attempts;
            }
        }
    }

    /// The stored history of `job`, oldest first.
    pub async fn runs(&self, job: &str) -> Vec<Run> {
        let filter = RunFilter {
            job: Some(JobName::new(job).unwrap()),
            limit: Some(1000),
            ..RunFilter::default()
        };
        let mut runs = self.store.list_runs(&filter).await.unwrap();
        runs.reverse();
        runs
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

// The servers' URLs (skipping a test when nothing answers) and unique names.
#[allow(unused_imports)] // each test file uses its own part
pub use cronwarden_test_support::{mysql_url, postgres_url, unique};
