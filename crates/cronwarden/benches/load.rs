//! Load driver for the scheduler (not a criterion benchmark: it measures a whole system on the
//! real clock). Run with `cargo bench -p cronwarden --bench load`.
//!
//! 1. burst: 10,000 in-process no-op jobs due at the same second; lateness (start minus the
//!    scheduled instant) percentiles and how long the burst took;
//! 2. idle: 10,000 jobs that are not due; CPU used over 10 s.
//!
//! It prints the numbers recorded in BENCHMARKS.md, with CPU time and peak memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cronwarden::clock::{Clock, SystemClock};
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, OverlapPolicy};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::{SqliteStore, Store};
use jiff::SignedDuration;

const JOBS: usize = 10_000;

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn store(name: &str) -> Arc<SqliteStore> {
    let dir = std::env::temp_dir().join(format!("cronwarden-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap())
}

fn noop_jobs() -> RustJobs {
    RustJobs::new().register("noop", |_ctx| async { Ok::<_, JobError>(String::new()) })
}

fn job(i: usize, schedule: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(format!("job-{i:05}")).unwrap(),
        Some(schedule),
        Action::Rust {
            handler: "noop".into(),
        },
    );
    spec.overlap = OverlapPolicy::Allow;
    spec
}

async fn burst() {
    let store = store("burst").await;
    let clock = SystemClock;
    // All jobs fire at the same second, a few seconds from now (once a minute).
    let target = clock.now() + SignedDuration::from_secs(4);
    let second = target.as_second().rem_euclid(60);
    let schedule = format!("{second} * * * * *");
    for i in 0..JOBS {
        store
            .upsert_job(&job(i, &schedule), clock.now())
            .await
            .unwrap();
    }
    let config = SchedulerConfig {
        max_concurrent_runs: 256,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(clock),
        Executors::new(noop_jobs()),
        config,
    );
    let mut events = scheduler.subscribe();
    let cpu_before = cpu_time();
    scheduler.start();
    let mut lateness = Vec::with_capacity(JOBS);
    let mut last_finish = None;
    let mut finished = 0;
    while finished < JOBS {
        match events.recv().await {
            Ok(SchedulerEvent::RunStarted(run)) => {
                lateness.push(
                    run.started_at
                        .unwrap()
                        .duration_since(run.scheduled_at)
                        .as_secs_f64()
                        * 1000.0,
                );
            }
            Ok(SchedulerEvent::RunFinished(run)) => {
                finished += 1;
                last_finish = run.finished_at;
            }
            Err(e) => panic!("events lost: {e}"),
        }
    }
    let cpu = cpu_time() - cpu_before;
    scheduler.stop().await;
    lateness.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let span = last_finish
        .unwrap()
        .duration_since(jiff::Timestamp::from_second(target.as_second()).unwrap());
    println!(
        "burst: {JOBS} jobs due at one second: lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         all finished {:.2} s after the second ({:.0} fires/s); CPU {:.2} s",
        percentile(&lateness, 0.50),
        percentile(&lateness, 0.99),
        lateness.last().unwrap(),
        span.as_secs_f64(),
        JOBS as f64 / span.as_secs_f64(),
        cpu.as_secs_f64()
    );
}

async fn idle() {
    let store = store("idle").await;
    let clock = SystemClock;
    for i in 0..JOBS {
        store
            .upsert_job(&job(i, "0 0 1 1 *"), clock.now())
            .await
            .unwrap();
    }
    let scheduler = Scheduler::new(
        store,
        Arc::new(clock),
        Executors::new(noop_jobs()),
        SchedulerConfig::default(),
    );
    scheduler.start();
    tokio::time::sleep(Duration::from_secs(2)).await; // let start-up finish
    let before = cpu_time();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = cpu_time() - before;
    scheduler.stop().await;
    println!(
        "idle: {JOBS} jobs not due: {:.2} s CPU over {:.1} s ({:.2}% of one core)",
        cpu.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.elapsed().as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        burst().await;
        idle().await;
    });
    println!("peak memory: {:.0} MiB", peak_rss_mib());
}
