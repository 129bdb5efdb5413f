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

use std::sync::atomic::{AtomicUsize, Ordering};

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, JobError, RunContext, RustJob, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, OverlapPolicy, Run, RunStatus};
use cronwarden::scheduler::{Scheduler, SchedulerConfig};
use cronwarden::store::{RunFilter, SqliteStore, Store};
use jiff::Timestamp;

// The daemon's allocator: the burst measures what it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A new database file for each scenario (and each round of one: a file reused while the
/// last round's WAL is still beside it would read stale pages).
async fn store(name: &str) -> Arc<SqliteStore> {
    static OPENED: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("cronwarden-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = OPENED.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{name}-{n}.db"));
    Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap())
}

/// Lateness of each run, taken by the action itself as it begins: wall clock minus the
/// scheduled instant, in microseconds, with the run's scheduled second.
///
/// Each thread records into a shard of its own: runs start on both worker threads at once,
/// and a counter or an array that both write would move cache lines between the cores at
/// every run, so that measuring would slow down what it measures.
#[derive(Clone)]
struct Lateness(Arc<[Shard]>);

/// One thread's records, on cache lines of their own.
#[repr(align(128))]
struct Shard(std::sync::Mutex<Vec<(i64, i64)>>);

const SHARDS: usize = 8;

impl Lateness {
    /// Room for `capacity` records on any one thread, reserved ahead (memory that is not
    /// written is not resident, so this does not count as the scheduler's).
    fn new(capacity: usize) -> Lateness {
        Lateness(
            (0..SHARDS)
                .map(|_| Shard(std::sync::Mutex::new(Vec::with_capacity(capacity))))
                .collect(),
        )
    }

    fn record(&self, scheduled_at: Timestamp) {
        static THREADS: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = THREADS.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        let late = Timestamp::now().duration_since(scheduled_at).as_micros() as i64;
        let shard = SHARD.with(|shard| *shard);
        self.0[shard]
            .0
            .lock()
            .unwrap()
            .push((late, scheduled_at.as_second()));
    }

    fn count(&self) -> usize {
        self.0
            .iter()
            .map(|shard| shard.0.lock().unwrap().len())
            .sum()
    }

    /// The recorded values in milliseconds, sorted.
    fn sorted_ms(&self) -> Vec<f64> {
        self.sorted_ms_from(i64::MIN)
    }

    /// The values of runs scheduled at or after `second`, in milliseconds, sorted.
    fn sorted_ms_from(&self, second: i64) -> Vec<f64> {
        let mut all: Vec<f64> = Vec::new();
        for shard in self.0.iter() {
            let records = shard.0.lock().unwrap();
            all.extend(
                records
                    .iter()
                    .filter(|(_, s)| *s >= second)
                    .map(|(late, _)| *late as f64 / 1000.0),
            );
        }
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        all
    }
}

/// The in-process job of the load: it notes its lateness and returns. A job of its own type
/// (not a closure), so that a run borrows the recorder instead of cloning a shared handle:
/// a reference count that both cores change at every run is the same cost as above.
struct Noop(Lateness);

#[async_trait::async_trait]
impl RustJob for Noop {
    async fn run(&self, ctx: RunContext) -> Result<String, JobError> {
        // Taken inside the job's future, when its code first runs: that is when the job starts.
        self.0.record(ctx.scheduled_at);
        Ok(String::new())
    }
}

fn noop_jobs(lateness: &Lateness) -> RustJobs {
    RustJobs::new().register("noop", Noop(lateness.clone()))
}

fn job(i: usize, schedule: &str, action: &Action) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(format!("job-{i:05}")).unwrap(),
        Some(schedule),
        action.clone(),
    );
    spec.overlap = OverlapPolicy::Allow;
    spec
}

fn noop_action() -> Action {
    Action::Rust {
        handler: "noop".into(),
    }
}

/// A command that records its own lateness: `date` prints the instant it ran, to be compared
/// with the run's scheduled instant.
fn command_action() -> Action {
    Action::Command {
        argv: vec!["date".into(), "+%s%N".into()],
        env: Default::default(),
        inherit_env: Vec::new(),
        cwd: None,
    }
}

/// Stores `count` jobs with `schedule`.
async fn populate(store: &SqliteStore, count: usize, schedule: &str, action: &Action) {
    for i in 0..count {
        store
            .upsert_job(&job(i, schedule, action), Timestamp::now())
            .await
            .unwrap();
    }
}

/// Runs with a final status so far.
async fn finished_runs(store: &SqliteStore) -> Vec<Run> {
    let filter = RunFilter {
        limit: Some(u32::MAX),
        ..RunFilter::default()
    };
    let mut runs = store.list_runs(&filter).await.unwrap();
    runs.retain(|r| r.status.is_final());
    runs
}

/// How many runs succeeded, read a page at a time (a sustained run records hundreds of
/// thousands; holding them all would dwarf the memory being measured).
async fn succeeded_runs(store: &SqliteStore) -> usize {
    let mut count = 0;
    let mut before_id = None;
    loop {
        let filter = RunFilter {
            before_id,
            limit: Some(50_000),
            ..RunFilter::default()
        };
        let page = store.list_runs(&filter).await.unwrap();
        let Some(last) = page.last() else {
            return count;
        };
        before_id = Some(last.id);
        count += page
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count();
    }
}

/// Starts a new peak-memory measurement (Linux: resets the peak resident set size).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn scheduler(store: Arc<SqliteStore>, rust: RustJobs, max_concurrent_runs: usize) -> Scheduler {
    let config = SchedulerConfig {
        max_concurrent_runs,
        ..SchedulerConfig::default()
    };
    Scheduler::new(store, Arc::new(SystemClock), Executors::new(rust), config)
}

/// The whole second a few seconds from now, as a once-a-minute schedule firing at it.
fn next_burst() -> (Timestamp, String) {
    let target = Timestamp::from_second(Timestamp::now().as_second() + 8).unwrap();
    let schedule = format!("{} * * * * *", target.as_second().rem_euclid(60));
    (target, schedule)
}

/// `jobs` jobs all due at one second; reports lateness and how long until every result was
/// recorded.
/// Returns the p99 lateness, in milliseconds.
async fn burst(label: &str, jobs: usize, action: Action, max_concurrent_runs: usize) -> f64 {
    let store = store(label).await;
    let (target, schedule) = next_burst();
    populate(&store, jobs, &schedule, &action).await;
    let lateness = Lateness::new(jobs);
    reset_peak_memory();
    let scheduler = scheduler(store.clone(), noop_jobs(&lateness), max_concurrent_runs);
    let cpu_before = cpu_time();
    scheduler.start();
    // Until every run has begun, then a graceful stop: it returns once every result is written.
    // (No polling of the store meanwhile: that would compete with what is measured.)
    tokio::time::sleep_until(
        tokio::time::Instant::now()
            + Duration::try_from(target.duration_since(Timestamp::now())).unwrap_or_default(),
    )
    .await;
    let begun = Instant::now();
    if std::env::var_os("BURST_TRACE").is_some() {
        println!(
            "instant: {:?} is {} after the target",
            begun,
            Timestamp::now().duration_since(target)
        );
    }
    while started_runs(&lateness, &store, &action).await < jobs {
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "runs did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scheduler.stop().await;
    let cpu = cpu_time() - cpu_before;
    let peak = peak_rss_mib();
    let runs = finished_runs(&store).await;
    assert_eq!(runs.len(), jobs, "every run recorded");
    let last = runs.iter().filter_map(|r| r.finished_at).max().unwrap();
    let span = last.duration_since(target).as_secs_f64();
    let late = match action {
        Action::Command { .. } => command_lateness(&runs),
        _ => lateness.sorted_ms(),
    };
    let failed = runs
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .count();
    println!(
        "{label}: {jobs} jobs due at one second: lateness min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         every result recorded {span:.2} s after the second ({:.0} fires/s); {failed} not succeeded; CPU {:.2} s; \
         peak memory {peak:.0} MiB",
        late[0],
        percentile(&late, 0.50),
        percentile(&late, 0.90),
        percentile(&late, 0.99),
        late.last().unwrap(),
        jobs as f64 / span,
        cpu.as_secs_f64()
    );
    percentile(&late, 0.99)
}

/// `rounds` bursts one after another (a shared machine's noise varies from one to the next),
/// then the median and range of their p99 lateness.
async fn bursts(
    rounds: usize,
    label: &str,
    jobs: usize,
    action: Action,
    max_concurrent_runs: usize,
) {
    let mut p99s = Vec::new();
    for _ in 0..rounds {
        p99s.push(burst(label, jobs, action.clone(), max_concurrent_runs).await);
    }
    p99s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{label}: p99 lateness over {rounds} bursts: median {:.1} ms, from {:.1} to {:.1} ms",
        p99s[p99s.len() / 2],
        p99s[0],
        p99s[p99s.len() - 1]
    );
}

/// How many runs have begun: counted by the in-process action, or (for commands, which
/// report nothing in-process) the runs recorded as started or finished.
async fn started_runs(lateness: &Lateness, store: &SqliteStore, action: &Action) -> usize {
    match action {
        Action::Command { .. } => {
            let filter = RunFilter {
                status: Some(RunStatus::Queued),
                limit: Some(u32::MAX),
                ..RunFilter::default()
            };
            let queued = store.list_runs(&filter).await.unwrap().len();
            let all = RunFilter {
                limit: Some(u32::MAX),
                ..RunFilter::default()
            };
            store.list_runs(&all).await.unwrap().len() - queued
        }
        _ => lateness.count(),
    }
}

/// Lateness of command runs, from the instant each printed.
fn command_lateness(runs: &[Run]) -> Vec<f64> {
    let mut late: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let nanos: i128 = r.output.as_deref()?.trim().parse().ok()?;
            let ran = Timestamp::from_nanosecond(nanos).ok()?;
            Some(ran.duration_since(r.scheduled_at).as_secs_f64() * 1000.0)
        })
        .collect();
    late.sort_by(|a, b| a.partial_cmp(b).unwrap());
    late
}

/// `jobs` jobs firing every second for `seconds` seconds: the sustained rate is the number of
/// results recorded for fires in the window, over the window.
async fn sustained(label: &str, jobs: usize, seconds: i64) {
    let store = store(label).await;
    populate(&store, jobs, "* * * * * *", &noop_action()).await;
    let lateness = Lateness::new(jobs * (seconds as usize + 2));
    reset_peak_memory();
    let scheduler = scheduler(store.clone(), noop_jobs(&lateness), 256);
    let cpu_before = cpu_time();
    let wall = Instant::now();
    // Steady state: runs scheduled from 3 s after the start (the first fires after a start
    // cannot be claimed ahead; they are reported apart).
    let steady_from = Timestamp::now().as_second() + 3;
    scheduler.start();
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    scheduler.stop().await;
    let cpu = cpu_time() - cpu_before;
    let elapsed = wall.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let succeeded = succeeded_runs(&store).await;
    let all = lateness.sorted_ms();
    let late = lateness.sorted_ms_from(steady_from);
    println!(
        "{label}: all runs, start-up included: lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().unwrap()
    );
    println!(
        "{label}: {jobs} jobs every second for {seconds} s: {succeeded} runs succeeded ({:.0} fires/s); \
         steady-state lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; CPU {:.2} s ({:.0}% of one core); peak memory {peak:.0} MiB",
        succeeded as f64 / elapsed,
        percentile(&late, 0.50),
        percentile(&late, 0.99),
        late.last().unwrap(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed
    );
}

/// The floor under the burst: 10,000 bare tokio tasks sleeping until one instant, each noting
/// its lateness when it wakes. No scheduler, no store: what the runtime alone costs here.
async fn tokio_floor() {
    let lateness = Lateness::new(JOBS);
    let at = Timestamp::now() + jiff::SignedDuration::from_millis(500);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let tasks: Vec<_> = (0..JOBS)
        .map(|_| {
            let lateness = lateness.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                lateness.record(at);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let late = lateness.sorted_ms();
    println!(
        "tokio-floor: {JOBS} bare tasks woken at one instant: lateness min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms",
        late[0],
        percentile(&late, 0.50),
        percentile(&late, 0.99)
    );
}

async fn idle() {
    let store = store("idle").await;
    populate(&store, JOBS, "0 0 1 1 *", &noop_action()).await;
    reset_peak_memory();
    let scheduler = scheduler(store, noop_jobs(&Lateness::new(0)), 64);
    scheduler.start();
    tokio::time::sleep(Duration::from_secs(2)).await; // let start-up finish
    let before = cpu_time();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = cpu_time() - before;
    scheduler.stop().await;
    println!(
        "idle: {JOBS} jobs not due: {:.2} s CPU over {:.1} s ({:.2}% of one core); peak memory {:.0} MiB",
        cpu.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    runtime.block_on(async {
        if wanted("tokio-floor") {
            tokio_floor().await;
        }
        if wanted("burst") {
            let rounds = std::env::var("BURST_ROUNDS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(5);
            bursts(rounds, "burst", JOBS, noop_action(), 256).await;
        }
        if wanted("command-burst") {
            let _p99 = burst("command-burst", 1_000, command_action(), 64).await;
        }
        if wanted("sustained") {
            sustained("sustained", JOBS, 30).await;
            sustained("sustained-20k", 2 * JOBS, 30).await;
        }
        if wanted("idle") {
            idle().await;
        }
    });
    // The scenarios' databases.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("cronwarden-load-{}", std::process::id())),
    );
}
