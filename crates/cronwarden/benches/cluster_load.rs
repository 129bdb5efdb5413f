//! Load driver for several nodes on one PostgreSQL: fires per second with 1, 2 and 3 nodes.
//!
//! Run with `cargo bench -p cronwarden --bench cluster_load` (PostgreSQL from
//! `CRONWARDEN_TEST_POSTGRES_URL`, default on 127.0.0.1). Each round creates a database of its
//! own, stores `JOBS` in-process no-op jobs that fire every second, starts the nodes (each a
//! scheduler with its own connection pool, in this one process), lets them run for
//! `SECONDS`, stops them, and counts from the database: fires claimed per node and in all,
//! and duplicates (a (job, instant) claimed twice: must be 0). The nodes, PostgreSQL and this
//! driver share the machine's cores.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, RunStatus};
use cronwarden::scheduler::{Scheduler, SchedulerConfig};
use cronwarden::store::{PostgresStore, RunFilter, Store};
use cronwarden_test_support::PgDatabase;
use jiff::Timestamp;

const SECONDS: u64 = 20;

async fn round(nodes: usize, jobs: usize) {
    // Dropped (with `FORCE`) at the end of the round.
    let database = PgDatabase::create("cw_cluster_load")
        .expect("a PostgreSQL server for the benchmark (CRONWARDEN_TEST_POSTGRES_URL)");
    let url = database.url.clone();
    let seed = PostgresStore::connect(&url).await.unwrap();
    for i in 0..jobs {
        let spec = JobSpec::new(
            JobName::new(format!("job-{i:05}")).unwrap(),
            Some("* * * * * *"),
            Action::Rust {
                handler: "noop".into(),
            },
        );
        seed.upsert_job(&spec, Timestamp::now()).await.unwrap();
    }
    let mut schedulers = Vec::new();
    for n in 0..nodes {
        let store = Arc::new(PostgresStore::connect(&url).await.unwrap());
        let rust =
            RustJobs::new().register("noop", |_ctx| async { Ok::<_, JobError>(String::new()) });
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(SystemClock),
            Executors::new(rust),
            SchedulerConfig {
                node: format!("node-{}", n + 1),
                max_concurrent_runs: 100_000,
                ..SchedulerConfig::default()
            },
        );
        scheduler.start();
        schedulers.push((scheduler, store));
    }
    // Measured from a whole second after start-up, for SECONDS seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = Timestamp::now();
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    let to = Timestamp::now();
    let elapsed = began.elapsed().as_secs_f64();
    for (scheduler, store) in &schedulers {
        scheduler.stop().await;
        store.close().await;
    }
    let runs = seed
        .list_runs(&RunFilter {
            limit: Some(10_000_000),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let window: Vec<_> = runs
        .iter()
        .filter(|r| r.scheduled_at >= from && r.scheduled_at < to && r.attempt == 1)
        .collect();
    let distinct: HashSet<_> = window
        .iter()
        .map(|r| (r.job.clone(), r.scheduled_at))
        .collect();
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &window {
        *per_node.entry(run.node.as_str()).or_default() += 1;
    }
    let succeeded = window
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .count();
    let expected = jobs as f64 * elapsed;
    println!(
        "{nodes} node(s), {jobs} jobs every second, {elapsed:.1} s: {} fires claimed = {:.0} fires/s ({:.1}% of the {:.0}/s due), {} succeeded, duplicates {}, per node (fires/s): {}",
        window.len(),
        window.len() as f64 / elapsed,
        100.0 * window.len() as f64 / expected,
        expected / elapsed,
        succeeded,
        window.len() - distinct.len(),
        per_node
            .iter()
            .map(|(node, n)| format!("{node} {:.0}", *n as f64 / elapsed))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // What became of the fires that did not succeed, and why (one error each).
    let mut others: BTreeMap<&str, (usize, Option<&str>)> = BTreeMap::new();
    for run in window.iter().filter(|r| r.status != RunStatus::Succeeded) {
        let entry = others.entry(run.status.as_str()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.or(run.error.as_deref());
    }
    for (status, (count, error)) in &others {
        println!("  {count} {status}: {}", error.unwrap_or("(no error)"));
    }
    assert_eq!(window.len(), distinct.len(), "a fire was claimed twice");
    seed.close().await;
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::var("CLUSTER_LOAD_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(5_000);
    for nodes in [1, 2, 3] {
        round(nodes, jobs).await;
    }
}
