//! The scheduler's policies, driven by a test clock: no test waits for wall-clock time to pass
//! (one gives the recorder a bounded window to do what it must not, and says why).
//!
//! Jobs are in-process Rust jobs whose runs the test controls (a gate that holds a run until the
//! test opens it, outcomes scripted per attempt), or real commands where processes matter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronwarden::clock::{Clock, TestClock};
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{
    Action, JobName, JobSpec, MisfirePolicy, OverlapPolicy, Run, RunStatus, Trigger,
};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::{ClaimFire, RunFilter, SqliteStore, Store};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{broadcast, Semaphore};

const T0: &str = "2026-01-01T00:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn rust_job(name: &str, schedule: Option<&str>) -> JobSpec {
    JobSpec::new(
        JobName::new(name).unwrap(),
        schedule,
        Action::Rust {
            handler: name.to_owned(),
        },
    )
}

/// `count` jobs due every minute (`{handler}-000`, ...), all running the Rust job `handler`:
/// a busy instant.
fn every_minute(handler: &str, count: usize) -> Vec<JobSpec> {
    (0..count)
        .map(|i| {
            let mut job = rust_job(&format!("{handler}-{i:03}"), Some("* * * * *"));
            job.action = Action::Rust {
                handler: handler.to_owned(),
            };
            job
        })
        .collect()
}

/// A scheduler on a fresh in-memory store and a test clock standing at `T0`.
struct Harness {
    scheduler: Scheduler,
    clock: TestClock,
    store: Arc<SqliteStore>,
    events: broadcast::Receiver<SchedulerEvent>,
}

impl Harness {
    async fn new(jobs: Vec<JobSpec>, rust: RustJobs) -> Harness {
        Harness::configured(jobs, rust, SchedulerConfig::default()).await
    }

    /// [`Harness::new`] with settings of the test's own.
    async fn configured(jobs: Vec<JobSpec>, rust: RustJobs, config: SchedulerConfig) -> Harness {
        Harness::with(
            jobs,
            rust,
            config,
            Arc::new(temp_store().await),
            TestClock::new(ts(T0)),
        )
        .await
    }

    async fn with(
        jobs: Vec<JobSpec>,
        rust: RustJobs,
        config: SchedulerConfig,
        store: Arc<SqliteStore>,
        clock: TestClock,
    ) -> Harness {
        for job in &jobs {
            store.upsert_job(job, clock.now()).await.unwrap();
        }
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(clock.clone()),
            Executors::new(rust),
            config,
        );
        let events = scheduler.subscribe();
        scheduler.start();
        Harness {
            scheduler,
            clock,
            store,
            events,
        }
    }

    /// The next event, failing the test if none comes within 10 s of real time (a safety net
    /// against hangs, not a wait for behaviour).
    async fn event(&mut self) -> SchedulerEvent {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event within 10 s")
            .unwrap()
    }

    async fn finished(&mut self) -> Run {
        loop {
            if let SchedulerEvent::RunFinished(run) = self.event().await {
                return run;
            }
        }
    }

    async fn started(&mut self) -> Run {
        loop {
            if let SchedulerEvent::RunStarted(run) = self.event().await {
                return run;
            }
        }
    }

    /// Moves the clock once the loop is asleep on it (so the move is seen as time passing).
    async fn advance(&self, by: SignedDuration) {
        eventually(|| async { self.clock.sleepers() > 0 }).await;
        self.clock.advance(by);
    }

    /// Stops the scheduler while moving the clock on, so that runs sleeping on it can end.
    async fn stop_letting_time_pass(&self) {
        let stopping = tokio::spawn({
            let scheduler = self.scheduler.clone();
            async move { scheduler.stop().await }
        });
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while !stopping.is_finished() {
            assert!(std::time::Instant::now() < give_up, "stop did not return");
            self.clock.advance(SignedDuration::from_millis(100));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn runs(&self, job: &str) -> Vec<Run> {
        let filter = RunFilter {
            job: Some(JobName::new(job).unwrap()),
            limit: Some(10_000),
            ..RunFilter::default()
        };
        let mut runs = self.store.list_runs(&filter).await.unwrap();
        runs.reverse();
        runs
    }
}

/// A store in a fresh database file (WAL mode, several connections, as in production).
async fn temp_store() -> SqliteStore {
    SqliteStore::open(&temp_db_path()).await.unwrap()
}

fn temp_db_path() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = cronwarden_test_support::scratch_dir("scheduler");
    let path = dir.join(format!("{}.db", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path);
    path.to_str().unwrap().to_owned()
}

/// Waits (yielding, then napping a millisecond) until `check` holds; fails after 10 s.
async fn eventually<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < give_up,
            "condition not reached within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A Rust job whose runs wait until the test lets them through, one permit per run.
fn gated(name: &str, gate: Arc<Semaphore>) -> RustJobs {
    RustJobs::new().register(name, move |ctx: cronwarden::executor::RunContext| {
        let gate = gate.clone();
        async move {
            tokio::select! {
                permit = gate.acquire() => { permit.unwrap().forget(); Ok("done".to_owned()) }
                () = ctx.cancel.cancelled() => Err(JobError::Retryable("cancelled".into())),
            }
        }
    })
}

/// A Rust job whose successive runs return the scripted results (then succeed).
fn scripted(name: &str, script: Vec<Result<String, JobError>>) -> RustJobs {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    RustJobs::new().register(name, move |_ctx| {
        let next = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok("ok".into()));
        async move { next }
    })
}

#[tokio::test]
async fn fires_at_each_scheduled_instant() {
    let mut h = Harness::new(
        vec![rust_job("tick", Some("* * * * *"))],
        scripted("tick", vec![]),
    )
    .await;
    for minute in 1..=3 {
        h.advance(secs(60)).await;
        let run = h.finished().await;
        assert_eq!(run.scheduled_at, ts(T0) + secs(60 * minute));
        assert_eq!(
            (run.status, run.trigger, run.attempt),
            (RunStatus::Succeeded, Trigger::Schedule, 1)
        );
    }
    assert_eq!(
        h.scheduler
            .next_fires(&JobName::new("tick").unwrap(), 2)
            .unwrap(),
        [ts("2026-01-01T00:04:00Z"), ts("2026-01-01T00:05:00Z")]
    );
    h.scheduler.stop().await;
}

#[tokio::test]
async fn overlap_skip_records_a_skipped_run() {
    let gate = Arc::new(Semaphore::new(0));
    let mut h = Harness::new(
        vec![rust_job("slow", Some("* * * * *"))],
        gated("slow", gate.clone()),
    )
    .await;
    h.advance(secs(60)).await;
    let first = h.started().await;
    h.advance(secs(60)).await;
    let skipped = h.finished().await;
    assert_eq!(
        (skipped.status, skipped.scheduled_at),
        (RunStatus::Skipped, ts("2026-01-01T00:02:00Z"))
    );
    assert!(skipped.error.unwrap().contains("still going"));
    gate.add_permits(1);
    let done = h.finished().await;
    assert_eq!((done.id, done.status), (first.id, RunStatus::Succeeded));
    h.scheduler.stop().await;
}

#[tokio::test]
async fn overlap_allow_runs_side_by_side_up_to_the_limit() {
    let gate = Arc::new(Semaphore::new(0));
    let mut job = rust_job("wide", Some("* * * * *"));
    job.overlap = OverlapPolicy::Allow;
    job.max_concurrency = 2;
    let mut h = Harness::new(vec![job], gated("wide", gate.clone())).await;
    h.advance(secs(60)).await;
    h.started().await;
    h.advance(secs(60)).await;
    let second = h.started().await;
    assert_eq!(second.scheduled_at, ts("2026-01-01T00:02:00Z"));
    h.advance(secs(60)).await;
    let third = h.finished().await;
    assert_eq!(third.status, RunStatus::Skipped);
    assert!(third.error.unwrap().contains("max_concurrency"));
    gate.add_permits(2);
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    h.scheduler.stop().await;
}

#[tokio::test]
async fn overlap_queue_holds_one_run_for_after_the_current() {
    let gate = Arc::new(Semaphore::new(0));
    let mut job = rust_job("serial", Some("* * * * *"));
    job.overlap = OverlapPolicy::Queue;
    let mut h = Harness::new(vec![job], gated("serial", gate.clone())).await;
    h.advance(secs(60)).await;
    let first = h.started().await;
    h.advance(secs(60)).await; // queued behind the first
    eventually(|| async { h.runs("serial").await.len() == 2 }).await;
    h.advance(secs(60)).await; // nothing more may wait: skipped
    let skipped = h.finished().await;
    assert_eq!(
        (skipped.status, skipped.scheduled_at),
        (RunStatus::Skipped, ts("2026-01-01T00:03:00Z"))
    );
    gate.add_permits(1);
    assert_eq!(h.finished().await.id, first.id);
    let second = h.started().await;
    assert_eq!(second.scheduled_at, ts("2026-01-01T00:02:00Z"));
    gate.add_permits(1);
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    h.scheduler.stop().await;
}

#[tokio::test]
async fn overlap_replace_cancels_the_running_one() {
    let gate = Arc::new(Semaphore::new(0));
    let mut job = rust_job("latest", Some("* * * * *"));
    job.overlap = OverlapPolicy::Replace;
    let mut h = Harness::new(vec![job], gated("latest", gate.clone())).await;
    h.advance(secs(60)).await;
    let first = h.started().await;
    h.advance(secs(60)).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match h.event().await {
            SchedulerEvent::RunFinished(run) => seen.push(("finished", run)),
            SchedulerEvent::RunStarted(run) => seen.push(("started", run)),
            SchedulerEvent::JobChanged { .. } | SchedulerEvent::Firing { .. } => {}
        }
    }
    let interrupted = seen.iter().find(|(kind, _)| *kind == "finished").unwrap();
    assert_eq!(
        (interrupted.1.id, interrupted.1.status),
        (first.id, RunStatus::Interrupted)
    );
    let replacement = seen.iter().find(|(kind, _)| *kind == "started").unwrap();
    assert_eq!(replacement.1.scheduled_at, ts("2026-01-01T00:02:00Z"));
    gate.add_permits(1);
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    h.scheduler.stop().await;
}

#[tokio::test]
async fn retries_back_off_and_a_fatal_error_stops_them() {
    let mut flaky = rust_job("flaky", Some("0 * * * *"));
    flaky.retry.max_attempts = 4;
    flaky.retry.jitter = 0.0;
    let script = vec![
        Err(JobError::Retryable("busy".into())),
        Err(JobError::Retryable("busy".into())),
        Ok("third time".into()),
    ];
    let mut h = Harness::new(vec![flaky], scripted("flaky", script)).await;
    h.advance(secs(3600)).await;
    let first = h.finished().await;
    assert_eq!(
        (first.status, first.attempt, first.error.as_deref()),
        (RunStatus::Failed, 1, Some("busy"))
    );
    // 10 s, then 20 s: the default backoff, with jitter off.
    eventually(|| async { h.runs("flaky").await.len() == 2 }).await;
    h.advance(secs(9)).await;
    h.advance(secs(1)).await;
    let second = h.finished().await;
    assert_eq!(
        (second.status, second.attempt, second.trigger),
        (RunStatus::Failed, 2, Trigger::Retry)
    );
    assert_eq!(
        second.scheduled_at, first.scheduled_at,
        "a retry belongs to the same fire"
    );
    assert_eq!(second.started_at, Some(ts("2026-01-01T01:00:10Z")));
    h.advance(secs(20)).await;
    let third = h.finished().await;
    assert_eq!(
        (third.status, third.attempt, third.output.as_deref()),
        (RunStatus::Succeeded, 3, Some("third time"))
    );
    assert_eq!(third.started_at, Some(ts("2026-01-01T01:00:30Z")));
    h.scheduler.stop().await;

    let mut fatal = rust_job("fatal", Some("0 * * * *"));
    fatal.retry.max_attempts = 5;
    let mut h = Harness::new(
        vec![fatal],
        scripted("fatal", vec![Err(JobError::Fatal("bad input".into()))]),
    )
    .await;
    h.advance(secs(3600)).await;
    assert_eq!(h.finished().await.status, RunStatus::Failed);
    h.scheduler.stop().await;
    assert_eq!(
        h.runs("fatal").await.len(),
        1,
        "no retry after a fatal error"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_tree() {
    let dir = cronwarden_test_support::TestDir::new("timeout");
    let pid_file = dir.join("child.pid");
    let script = format!("sleep 300 & echo $! > {}; sleep 300", pid_file.display());
    let mut job = JobSpec::new(
        JobName::new("stuck").unwrap(),
        Some("0 * * * *"),
        Action::Command {
            argv: vec!["sh".into(), "-c".into(), script],
            env: Default::default(),
            inherit_env: Vec::new(),
            cwd: None,
        },
    );
    job.timeout = Some(secs(30));
    let mut h = Harness::new(vec![job], RustJobs::new()).await;
    h.advance(secs(3600)).await;
    h.started().await;
    eventually(|| async { std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n')) })
        .await;
    let child: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(child));
    h.advance(secs(30)).await;
    let run = h.finished().await;
    assert_eq!(run.status, RunStatus::TimedOut);
    assert!(run.error.unwrap().contains("timed out after"));
    // The background grandchild was in the command's process group: it is gone too.
    eventually(|| async { !process_alive(child) }).await;
    h.scheduler.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether `pid` is a live process (a zombie counts as dead).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Runs a scheduler until the clock reaches 00:01, stops it, moves the clock to 00:11 and starts
/// a new scheduler on the same store: the fires of 00:02-00:11 were due while nothing ran.
async fn after_ten_minutes_down(policy: MisfirePolicy) -> Vec<Run> {
    let mut job = rust_job("minutely", Some("* * * * *"));
    job.misfire = policy;
    // Fires more than 30 s late are misfires: on restart at 00:11, only 00:11 is on time.
    job.misfire_grace = secs(30);
    let store = Arc::new(temp_store().await);
    let clock = TestClock::new(ts(T0));
    let mut h = Harness::with(
        vec![job],
        scripted("minutely", vec![]),
        SchedulerConfig::default(),
        store.clone(),
        clock.clone(),
    )
    .await;
    h.advance(secs(60)).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    h.scheduler.stop().await;
    clock.advance(secs(600));
    let mut h = Harness::with(
        vec![],
        scripted("minutely", vec![]),
        SchedulerConfig::default(),
        store,
        clock,
    )
    .await;
    eventually(|| async {
        h.runs("minutely")
            .await
            .iter()
            .filter(|r| r.status.is_final())
            .count()
            >= 11
    })
    .await;
    while let Ok(event) = h.events.try_recv() {
        drop(event);
    }
    h.scheduler.stop().await;
    h.runs("minutely").await
}

#[tokio::test]
async fn misfires_skip_run_once_or_run_all() {
    // In each case the 00:11 fire is on time (the scheduler is up again at 00:11) and runs as an
    // ordinary fire; 00:02-00:10 were missed.
    let on_time = |runs: &[Run]| {
        let last = runs
            .iter()
            .find(|r| r.scheduled_at == ts("2026-01-01T00:11:00Z"))
            .unwrap();
        assert_eq!(
            (last.trigger, last.status),
            (Trigger::Schedule, RunStatus::Succeeded)
        );
    };
    let runs = after_ten_minutes_down(MisfirePolicy::Skip).await;
    let missed: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Missed)
        .collect();
    assert_eq!(missed.len(), 9);
    assert_eq!(missed[0].scheduled_at, ts("2026-01-01T00:02:00Z"));
    assert_eq!(missed[8].scheduled_at, ts("2026-01-01T00:10:00Z"));
    assert!(runs.iter().all(|r| r.trigger != Trigger::CatchUp));
    on_time(&runs);

    let runs = after_ten_minutes_down(MisfirePolicy::RunOnce).await;
    let caught_up: Vec<_> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::CatchUp)
        .collect();
    assert_eq!(caught_up.len(), 1);
    assert_eq!(
        (caught_up[0].scheduled_at, caught_up[0].status),
        (ts("2026-01-01T00:10:00Z"), RunStatus::Succeeded)
    );
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count(),
        8
    );
    on_time(&runs);

    // The window reaches back five minutes from 00:11, to 00:06.
    let runs = after_ten_minutes_down(MisfirePolicy::RunAll { window: secs(300) }).await;
    let caught_up: Vec<_> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::CatchUp)
        .collect();
    assert_eq!(
        caught_up
            .iter()
            .map(|r| r.scheduled_at.strftime("%M").to_string())
            .collect::<Vec<_>>(),
        ["06", "07", "08", "09", "10"]
    );
    assert!(
        caught_up.iter().all(|r| r.status == RunStatus::Succeeded),
        "catch-up runs go one after another, none skipped"
    );
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count(),
        4
    );
    on_time(&runs);
}

/// A job on `schedule` with `policy` and `grace`: it runs its fire at 00:00:01 (every-second)
/// or 00:01 (every-minute), the scheduler is down for `down`, and comes back. Returns the
/// job's runs once `expected` of them are final, with the instant it came back.
async fn after_down(
    schedule: &str,
    policy: MisfirePolicy,
    grace: SignedDuration,
    first: SignedDuration,
    down: SignedDuration,
    expected: usize,
) -> Vec<Run> {
    let mut job = rust_job("frequent", Some(schedule));
    job.misfire = policy;
    job.misfire_grace = grace;
    let store = Arc::new(temp_store().await);
    let clock = TestClock::new(ts(T0));
    let mut h = Harness::with(
        vec![job],
        scripted("frequent", vec![]),
        SchedulerConfig::default(),
        store.clone(),
        clock.clone(),
    )
    .await;
    h.advance(first).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    h.scheduler.stop().await;
    clock.advance(down);
    let h = Harness::with(
        vec![],
        scripted("frequent", vec![]),
        SchedulerConfig::default(),
        store,
        clock,
    )
    .await;
    eventually(|| async {
        let runs = h.runs("frequent").await;
        runs.len() >= expected && runs.iter().all(|r| r.status.is_final())
    })
    .await;
    h.scheduler.stop().await;
    h.runs("frequent").await
}

/// Each run as (second or minute of its instant, trigger, status), oldest first.
fn outline(runs: &[Run], unit: &str) -> Vec<(String, Trigger, RunStatus)> {
    let mut rows: Vec<_> = runs
        .iter()
        .map(|r| {
            (
                r.scheduled_at.strftime(unit).to_string(),
                r.trigger,
                r.status,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[tokio::test]
async fn a_short_outage_of_a_frequent_job_runs_its_latest_fire_once() {
    use RunStatus::{Missed, Succeeded};
    use Trigger::{CatchUp, Schedule};
    let s = |n: &str, t, st| (n.to_owned(), t, st);
    // Every second, grace 5 s, down from 00:00:01 to 00:00:05: 02-05 are all within the grace,
    // and 05 supersedes the others. No fire is recorded `skipped`.
    let runs = after_down(
        "* * * * * *",
        MisfirePolicy::Skip,
        secs(5),
        secs(1),
        secs(4),
        5,
    )
    .await;
    assert_eq!(
        outline(&runs, "%S"),
        [
            s("01", Schedule, Succeeded),
            s("02", Schedule, Missed),
            s("03", Schedule, Missed),
            s("04", Schedule, Missed),
            s("05", Schedule, Succeeded),
        ]
    );
    let runs = after_down(
        "* * * * * *",
        MisfirePolicy::RunOnce,
        secs(5),
        secs(1),
        secs(4),
        5,
    )
    .await;
    assert_eq!(
        outline(&runs, "%S"),
        [
            s("01", Schedule, Succeeded),
            s("02", Schedule, Missed),
            s("03", Schedule, Missed),
            s("04", CatchUp, Succeeded),
            s("05", Schedule, Succeeded),
        ]
    );
    let window = MisfirePolicy::RunAll { window: secs(2) };
    let runs = after_down("* * * * * *", window, secs(5), secs(1), secs(4), 5).await;
    assert_eq!(
        outline(&runs, "%S"),
        [
            s("01", Schedule, Succeeded),
            s("02", Schedule, Missed),
            s("03", CatchUp, Succeeded),
            s("04", CatchUp, Succeeded),
            s("05", Schedule, Succeeded),
        ]
    );
}

#[tokio::test]
async fn the_latest_fire_runs_on_time_up_to_the_grace_and_is_a_misfire_past_it() {
    use RunStatus::{Missed, Succeeded};
    use Trigger::{CatchUp, Schedule};
    let s = |n: &str, t, st| (n.to_owned(), t, st);
    // Every minute, grace 30 s. Back at 00:02:30, the 00:02 fire is exactly 30 s late: on time.
    for policy in [
        MisfirePolicy::Skip,
        MisfirePolicy::RunOnce,
        MisfirePolicy::RunAll { window: secs(600) },
    ] {
        let runs = after_down("* * * * *", policy, secs(30), secs(60), secs(90), 2).await;
        assert_eq!(
            outline(&runs, "%M:%S"),
            [
                s("01:00", Schedule, Succeeded),
                s("02:00", Schedule, Succeeded)
            ],
            "{policy:?}"
        );
    }
    // Back at 00:02:31, it is a misfire: the policy decides.
    let late = |policy| after_down("* * * * *", policy, secs(30), secs(60), secs(91), 2);
    assert_eq!(
        outline(&late(MisfirePolicy::Skip).await, "%M:%S"),
        [
            s("01:00", Schedule, Succeeded),
            s("02:00", Schedule, Missed)
        ]
    );
    assert_eq!(
        outline(&late(MisfirePolicy::RunOnce).await, "%M:%S"),
        [
            s("01:00", Schedule, Succeeded),
            s("02:00", CatchUp, Succeeded)
        ]
    );
    assert_eq!(
        outline(
            &late(MisfirePolicy::RunAll { window: secs(600) }).await,
            "%M:%S"
        ),
        [
            s("01:00", Schedule, Succeeded),
            s("02:00", CatchUp, Succeeded)
        ]
    );
    // Past the window too, run_all records it missed.
    assert_eq!(
        outline(
            &late(MisfirePolicy::RunAll { window: secs(30) }).await,
            "%M:%S"
        ),
        [
            s("01:00", Schedule, Succeeded),
            s("02:00", Schedule, Missed)
        ]
    );
}

#[tokio::test]
async fn a_clock_stepped_back_runs_no_fire_twice_and_one_stepped_forward_misfires() {
    let mut job = rust_job("minutely", Some("* * * * *"));
    job.misfire = MisfirePolicy::Skip;
    let mut h = Harness::new(vec![job], scripted("minutely", vec![])).await;
    h.advance(secs(60)).await;
    assert_eq!(h.finished().await.scheduled_at, ts("2026-01-01T00:01:00Z"));
    h.advance(secs(60)).await;
    assert_eq!(h.finished().await.scheduled_at, ts("2026-01-01T00:02:00Z"));
    // Stepped back 90 s, to 00:00:30: 00:01 and 00:02 come round again and are not run again;
    // the next run is 00:03, once the clock gets there.
    h.clock.set(ts("2026-01-01T00:00:30Z"));
    h.advance(secs(90)).await;
    h.advance(secs(60)).await;
    let next = h.finished().await;
    assert_eq!(
        (next.scheduled_at, next.status),
        (ts("2026-01-01T00:03:00Z"), RunStatus::Succeeded)
    );
    // Stepped forward an hour, to 01:03:30: 01:03 is within its grace and runs, late; 00:04 to
    // 01:02 are misfires (recorded `missed` under this job's policy).
    h.clock.set(ts("2026-01-01T01:03:30Z"));
    let after = loop {
        let run = h.finished().await;
        if run.status != RunStatus::Missed {
            break run;
        }
    };
    assert_eq!(
        (after.scheduled_at, after.trigger, after.status),
        (
            ts("2026-01-01T01:03:00Z"),
            Trigger::Schedule,
            RunStatus::Succeeded
        )
    );
    eventually(|| async { h.runs("minutely").await.len() >= 63 }).await;
    h.scheduler.stop().await;
    let runs = h.runs("minutely").await;
    let by_instant: std::collections::BTreeMap<_, Vec<_>> =
        runs.iter().fold(Default::default(), |mut m, r| {
            m.entry(r.scheduled_at)
                .or_insert_with(Vec::new)
                .push(r.status);
            m
        });
    assert!(
        by_instant.values().all(|v| v.len() == 1),
        "a fire ran twice: {by_instant:?}"
    );
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count(),
        59,
        "00:04 to 01:02"
    );
}

#[tokio::test]
async fn runs_left_running_are_abandoned_then_retried() {
    let store = Arc::new(temp_store().await);
    let mut job = rust_job("crashed", Some("0 3 * * *"));
    job.retry.max_attempts = 2;
    store.upsert_job(&job, ts(T0)).await.unwrap();
    let name = JobName::new("crashed").unwrap();
    // What a process killed with SIGKILL mid-run leaves behind.
    let claim = ClaimFire {
        job: &name,
        scheduled_at: ts("2025-12-31T03:00:00Z"),
        trigger: Trigger::Schedule,
        attempt: 1,
        node: "old",
    };
    let orphan = store.claim_fire(claim).await.unwrap().unwrap();
    store
        .start_run(orphan.id, orphan.fencing_token, ts("2025-12-31T03:00:00Z"))
        .await
        .unwrap();
    let mut h = Harness::with(
        vec![],
        scripted("crashed", vec![]),
        SchedulerConfig::default(),
        store,
        TestClock::new(ts(T0)),
    )
    .await;
    let abandoned = h.finished().await;
    assert_eq!(
        (abandoned.id, abandoned.status),
        (orphan.id, RunStatus::Abandoned)
    );
    let retried = h.finished().await;
    assert_eq!(
        (retried.status, retried.attempt, retried.trigger),
        (RunStatus::Succeeded, 2, Trigger::Retry)
    );
    assert_eq!(retried.scheduled_at, ts("2025-12-31T03:00:00Z"));
    h.scheduler.stop().await;
}

#[tokio::test]
async fn jitter_delays_the_start_within_its_bound() {
    let mut job = rust_job("spread", Some("0 * * * *"));
    job.jitter = Some(secs(20));
    let mut h = Harness::new(vec![job], scripted("spread", vec![])).await;
    h.advance(secs(3600)).await;
    for _ in 0..20 {
        if !h
            .runs("spread")
            .await
            .iter()
            .any(|r| r.status == RunStatus::Succeeded)
        {
            h.advance(secs(1)).await;
        }
    }
    let run = h.finished().await;
    let delay = run.started_at.unwrap().duration_since(run.scheduled_at);
    assert!(
        delay >= SignedDuration::ZERO && delay <= secs(20),
        "{delay:#}"
    );
    h.scheduler.stop().await;
}

#[tokio::test]
async fn chained_jobs_run_after_a_success_only() {
    let mut first = rust_job("extract", Some("0 * * * *"));
    first.retry.max_attempts = 1;
    let mut then = rust_job("load", None);
    then.after = vec![JobName::new("extract").unwrap()];
    let rust = scripted("extract", vec![Err(JobError::Fatal("source down".into()))]);
    let rust = rust.register("load", |_ctx| async {
        Ok::<_, JobError>("loaded".to_owned())
    });
    let mut h = Harness::new(vec![first, then], rust).await;
    h.advance(secs(3600)).await;
    assert_eq!(h.finished().await.status, RunStatus::Failed);
    h.advance(secs(3600)).await;
    let ok = h.finished().await;
    assert_eq!(
        (ok.job.as_str(), ok.status),
        ("extract", RunStatus::Succeeded)
    );
    let chained = h.finished().await;
    assert_eq!(
        (chained.job.as_str(), chained.trigger, chained.status),
        ("load", Trigger::Chain, RunStatus::Succeeded)
    );
    h.scheduler.stop().await;
    assert_eq!(
        h.runs("load").await.len(),
        1,
        "the failed run started nothing"
    );
}

#[tokio::test]
async fn the_global_limit_bounds_runs_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let mut rust = RustJobs::new();
    let mut jobs = Vec::new();
    for name in ["a", "b", "c"] {
        jobs.push(rust_job(name, Some("* * * * *")));
        let gate = gate.clone();
        rust = rust.register(name, move |_ctx| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, JobError>(String::new())
            }
        });
    }
    let config = SchedulerConfig {
        max_concurrent_runs: 2,
        ..SchedulerConfig::default()
    };
    let mut h = Harness::configured(jobs, rust, config).await;
    h.advance(secs(60)).await;
    h.started().await;
    h.started().await;
    // The third is claimed and waits for a slot, still queued.
    eventually(|| async {
        let runs = h.store.list_runs(&RunFilter::default()).await.unwrap();
        runs.len() == 3
            && runs
                .iter()
                .filter(|r| r.status == RunStatus::Queued)
                .count()
                == 1
    })
    .await;
    gate.add_permits(1);
    h.started().await;
    gate.add_permits(2);
    eventually(|| async {
        let runs = h.store.list_runs(&RunFilter::default()).await.unwrap();
        runs.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            == 3
    })
    .await;
    h.scheduler.stop().await;
}

#[tokio::test]
async fn slow_runs_do_not_shift_the_schedule() {
    let clock = TestClock::new(ts(T0));
    let job_clock = clock.clone();
    let rust = RustJobs::new().register(
        "every-second",
        move |ctx: cronwarden::executor::RunContext| {
            let clock = job_clock.clone();
            async move {
                // Each run takes 1.5 s of (test) time.
                clock
                    .sleep_until(ctx.scheduled_at + SignedDuration::from_millis(1500))
                    .await;
                Ok::<_, JobError>(String::new())
            }
        },
    );
    let mut job = rust_job("every-second", Some("* * * * * *"));
    job.overlap = OverlapPolicy::Allow;
    job.max_concurrency = 3;
    let h = Harness::with(
        vec![job],
        rust,
        SchedulerConfig::default(),
        Arc::new(temp_store().await),
        clock.clone(),
    )
    .await;
    // Half a second at a time; before each step, let everything due by now happen (the fire of
    // each whole second, the end of each run 1.5 s after its start), as it would in real time.
    for _ in 0..20 {
        h.advance(SignedDuration::from_millis(500)).await;
        let now = h.clock.now();
        eventually(|| async {
            let runs = h.runs("every-second").await;
            // Fires are claimed a little ahead (`claim_ahead`): count those due by now, and
            // each of them must have started.
            let due: Vec<&Run> = runs.iter().filter(|r| r.scheduled_at <= now).collect();
            let fired = due.len() as i64 == now.as_second() - ts(T0).as_second()
                && due.iter().all(|r| r.status != RunStatus::Queued);
            let ended = runs
                .iter()
                .filter(|r| r.scheduled_at + SignedDuration::from_millis(1500) <= now)
                .all(|r| r.status == RunStatus::Succeeded);
            fired && ended
        })
        .await;
    }
    h.stop_letting_time_pass().await;
    let runs = h.runs("every-second").await;
    let seconds: Vec<i64> = runs
        .iter()
        .map(|r| r.scheduled_at.as_second() - ts(T0).as_second())
        .collect();
    assert_eq!(
        seconds,
        (1..=10).collect::<Vec<_>>(),
        "one run per whole second, none shifted"
    );
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
}

#[tokio::test]
async fn pausing_a_job_stops_its_retries() {
    let mut flaky = rust_job("flaky", Some("0 * * * *"));
    flaky.retry.max_attempts = 3;
    flaky.retry.jitter = 0.0;
    let script = vec![
        Err(JobError::Retryable("busy".into())),
        Err(JobError::Retryable("busy".into())),
        Err(JobError::Retryable("busy".into())),
    ];
    let mut h = Harness::new(vec![flaky], scripted("flaky", script)).await;
    let name = JobName::new("flaky").unwrap();
    h.advance(secs(3600)).await;
    assert_eq!(h.finished().await.status, RunStatus::Failed);
    // Attempt 2 is claimed, waiting for its time (10 s), when the job is paused.
    eventually(|| async { h.runs("flaky").await.len() == 2 }).await;
    h.scheduler.pause(&name, "flapping").await.unwrap();
    let retry = h.finished().await;
    assert_eq!(
        (retry.attempt, retry.status, retry.trigger),
        (2, RunStatus::Skipped, Trigger::Retry)
    );
    assert!(retry.error.unwrap().contains("paused"));
    // Nothing more runs, however long it stays paused.
    h.clock.advance(secs(120));
    tokio::task::yield_now().await;
    let runs = h.runs("flaky").await;
    assert_eq!(
        runs.iter()
            .map(|r| (r.attempt, r.status))
            .collect::<Vec<_>>(),
        [(1, RunStatus::Failed), (2, RunStatus::Skipped)]
    );

    // A run that fails while its job is paused (an operator's manual run) is not retried.
    h.scheduler.trigger(&name).await.unwrap();
    let manual = h.finished().await;
    assert_eq!(
        (manual.status, manual.trigger),
        (RunStatus::Failed, Trigger::Manual)
    );
    h.clock.advance(secs(120));
    tokio::task::yield_now().await;
    assert_eq!(h.runs("flaky").await.len(), 3, "no retry of a paused job");
    h.scheduler.stop().await;
}

#[tokio::test]
async fn a_run_cut_short_by_a_stop_and_a_waiting_retry_run_at_the_next_start() {
    let store = Arc::new(temp_store().await);
    let clock = TestClock::new(ts(T0));
    let mut long = rust_job("long", Some("0 * * * *"));
    long.retry.max_attempts = 2;
    let mut flaky = rust_job("flaky", Some("0 * * * *"));
    flaky.retry.max_attempts = 3;
    flaky.retry.jitter = 0.0;
    let gate = Arc::new(Semaphore::new(0));
    let jobs = |gate: Arc<Semaphore>, script: Vec<Result<String, JobError>>| {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        gated("long", gate).register("flaky", move |_ctx| {
            let next = script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok("ok".into()));
            async move { next }
        })
    };
    let h = Harness::with(
        vec![long, flaky],
        jobs(gate.clone(), vec![Err(JobError::Retryable("busy".into()))]),
        SchedulerConfig::default(),
        store.clone(),
        clock.clone(),
    )
    .await;
    h.advance(secs(3600)).await;
    // `flaky` fails and its retry waits 10 s; `long` is still going when the stop comes.
    eventually(|| async { h.runs("flaky").await.len() == 2 }).await;
    h.stop_letting_time_pass().await;
    let runs = |job: &'static str| {
        let store = store.clone();
        async move {
            let filter = RunFilter {
                job: Some(JobName::new(job).unwrap()),
                ..RunFilter::default()
            };
            let mut runs = store.list_runs(&filter).await.unwrap();
            runs.reverse();
            runs.iter()
                .map(|r| (r.attempt, r.trigger, r.status))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        runs("long").await,
        [
            (1, Trigger::Schedule, RunStatus::Interrupted),
            (2, Trigger::Retry, RunStatus::Queued)
        ],
        "the run cut short gets its next attempt, left for the next start"
    );
    assert_eq!(
        runs("flaky").await,
        [
            (1, Trigger::Schedule, RunStatus::Failed),
            (2, Trigger::Retry, RunStatus::Queued)
        ],
        "the waiting retry is left for the next start"
    );

    // The next start runs both at once, as they are (no attempt is spent on the stop).
    gate.add_permits(1);
    let h = Harness::with(
        vec![],
        jobs(gate.clone(), vec![]),
        SchedulerConfig::default(),
        store.clone(),
        clock.clone(),
    )
    .await;
    eventually(|| async {
        runs("long").await.last().unwrap().2 == RunStatus::Succeeded
            && runs("flaky").await.last().unwrap().2 == RunStatus::Succeeded
    })
    .await;
    assert_eq!(runs("long").await.len(), 2);
    assert_eq!(runs("flaky").await.len(), 2);
    h.scheduler.stop().await;
}

#[tokio::test]
async fn stop_waits_for_runs_then_interrupts_what_is_left() {
    let gate = Arc::new(Semaphore::new(0));
    let mut h = Harness::new(
        vec![rust_job("long", Some("* * * * *"))],
        gated("long", gate.clone()),
    )
    .await;
    h.advance(secs(60)).await;
    let run = h.started().await;
    let stop_at = h.clock.now();
    let stopping = tokio::spawn({
        let scheduler = h.scheduler.clone();
        async move { scheduler.stop().await }
    });
    // The grace period (30 s by default) runs on the test clock: step through it.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !stopping.is_finished() {
        assert!(
            std::time::Instant::now() < give_up,
            "stop did not return after the grace period"
        );
        if h.clock.sleepers() > 0 {
            h.clock.advance(secs(1));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let interrupted = h.finished().await;
    assert_eq!(
        (interrupted.id, interrupted.status),
        (run.id, RunStatus::Interrupted)
    );
    let waited = interrupted.finished_at.unwrap().duration_since(stop_at);
    assert!(
        waited >= secs(30) && waited <= secs(32),
        "waited {waited:#}"
    );
    assert!(interrupted.error.unwrap().contains("stopped"));
    // Nothing fires after a stop.
    h.clock.advance(secs(3600));
    tokio::task::yield_now().await;
    assert_eq!(h.runs("long").await.len(), 1);
    // A second stop is harmless.
    h.scheduler.stop().await;
}

#[tokio::test]
async fn fires_are_claimed_ahead_and_start_at_their_instant() {
    let mut h = Harness::new(
        vec![rust_job("tick", Some("* * * * *"))],
        scripted("tick", vec![]),
    )
    .await;
    let claim_ahead = SchedulerConfig::default().claim_ahead;
    // Just inside the claim window: the fire is claimed, but it is not due yet.
    h.advance(secs(60) - claim_ahead + SignedDuration::from_millis(100))
        .await;
    eventually(|| async { !h.runs("tick").await.is_empty() }).await;
    let claimed = h.runs("tick").await;
    assert_eq!(
        (claimed.len(), claimed[0].status, claimed[0].scheduled_at),
        (1, RunStatus::Queued, ts("2026-01-01T00:01:00Z"))
    );
    assert!(
        h.events.try_recv().is_err(),
        "nothing started before its instant"
    );
    h.advance(claim_ahead - SignedDuration::from_millis(100))
        .await;
    let started = h.started().await;
    assert_eq!(started.id, claimed[0].id);
    assert_eq!(
        started.started_at,
        Some(ts("2026-01-01T00:01:00Z")),
        "started exactly at its instant"
    );
    let finished = h.finished().await;
    assert_eq!(finished.status, RunStatus::Succeeded);
    h.stop_letting_time_pass().await;
}

#[tokio::test]
async fn a_fire_claimed_ahead_is_skipped_if_the_job_is_paused_before_its_instant() {
    let mut h = Harness::new(
        vec![rust_job("tick", Some("* * * * *"))],
        scripted("tick", vec![]),
    )
    .await;
    h.advance(secs(60) - SignedDuration::from_millis(100)).await;
    eventually(|| async { !h.runs("tick").await.is_empty() }).await;
    let mut paused = rust_job("tick", Some("* * * * *"));
    paused.enabled = false;
    paused.pause_reason = Some("maintenance".into());
    h.scheduler.upsert_job(paused).await.unwrap();
    h.advance(SignedDuration::from_millis(100)).await;
    let run = h.finished().await;
    assert_eq!(run.status, RunStatus::Skipped);
    assert!(
        run.error.as_deref().unwrap().contains("paused"),
        "{:?}",
        run.error
    );
    assert_eq!(h.runs("tick").await, vec![run]);
    h.stop_letting_time_pass().await;
}

/// A store that can be taken down: while down, every claim fails as a lost database would.
/// It can also hold each listing of the jobs after reading it, until the test lets it go.
struct Outage {
    store: SqliteStore,
    down: std::sync::atomic::AtomicBool,
    /// While `holding`, each `list_jobs` waits for a permit after it has read the jobs.
    hold_listings: Option<Arc<Semaphore>>,
    holding: std::sync::atomic::AtomicBool,
    /// Listings begun.
    listings: std::sync::atomic::AtomicU32,
    /// If set, each write of results waits for a permit first.
    hold_finishes: Option<Arc<Semaphore>>,
    /// Writes of run starts and results so far.
    run_writes: std::sync::atomic::AtomicUsize,
}

impl Outage {
    async fn new(down: bool) -> Outage {
        Outage {
            store: temp_store().await,
            down: down.into(),
            hold_listings: None,
            holding: false.into(),
            listings: 0.into(),
            hold_finishes: None,
            run_writes: 0.into(),
        }
    }
}

impl Outage {
    fn check(&self) -> Result<(), cronwarden::store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(cronwarden::store::StoreError::Database(
                "connection refused (test outage)".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for Outage {
    async fn upsert_job(
        &self,
        spec: &JobSpec,
        now: Timestamp,
    ) -> Result<cronwarden::store::JobRecord, cronwarden::store::StoreError> {
        self.store.upsert_job(spec, now).await
    }
    async fn find_jobs(
        &self,
        filter: &cronwarden::store::JobFilter,
    ) -> Result<Vec<cronwarden::store::JobRecord>, cronwarden::store::StoreError> {
        self.store.find_jobs(filter).await
    }
    async fn find_job_summaries(
        &self,
        filter: &cronwarden::store::JobFilter,
    ) -> Result<Vec<cronwarden::store::JobSummary>, cronwarden::store::StoreError> {
        self.store.find_job_summaries(filter).await
    }
    async fn get_job(
        &self,
        name: &JobName,
    ) -> Result<Option<cronwarden::store::JobRecord>, cronwarden::store::StoreError> {
        self.store.get_job(name).await
    }
    async fn list_jobs(
        &self,
    ) -> Result<Vec<cronwarden::store::JobRecord>, cronwarden::store::StoreError> {
        let jobs = self.store.list_jobs().await;
        self.listings
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(gate) = &self.hold_listings {
            if self.holding.load(std::sync::atomic::Ordering::SeqCst) {
                gate.acquire().await.unwrap().forget();
            }
        }
        jobs
    }
    async fn set_paused(
        &self,
        name: &JobName,
        reason: Option<&str>,
    ) -> Result<Option<cronwarden::store::JobRecord>, cronwarden::store::StoreError> {
        self.store.set_paused(name, reason).await
    }
    async fn delete_job(&self, name: &JobName) -> Result<bool, cronwarden::store::StoreError> {
        self.store.delete_job(name).await
    }
    async fn claim_fires(
        &self,
        claims: &[ClaimFire<'_>],
    ) -> Result<Vec<Option<Run>>, cronwarden::store::StoreError> {
        self.check()?;
        self.store.claim_fires(claims).await
    }
    async fn record_run(
        &self,
        run: cronwarden::store::NewRun<'_>,
    ) -> Result<Run, cronwarden::store::StoreError> {
        self.check()?;
        self.store.record_run(run).await
    }
    async fn start_runs(
        &self,
        starts: &[cronwarden::store::StartRun],
    ) -> Result<Vec<bool>, cronwarden::store::StoreError> {
        self.run_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.store.start_runs(starts).await
    }
    async fn finish_runs(
        &self,
        finishes: &[cronwarden::store::FinishRun],
    ) -> Result<Vec<bool>, cronwarden::store::StoreError> {
        if let Some(gate) = &self.hold_finishes {
            gate.acquire().await.unwrap().forget();
        }
        self.run_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.store.finish_runs(finishes).await
    }
    async fn request_run(
        &self,
        job: &JobName,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, cronwarden::store::StoreError> {
        self.store.request_run(job, by, at).await
    }
    async fn take_run_requests(
        &self,
    ) -> Result<Vec<cronwarden::store::RunRequest>, cronwarden::store::StoreError> {
        self.store.take_run_requests().await
    }
    async fn change_seq(&self) -> Result<i64, cronwarden::store::StoreError> {
        self.store.change_seq().await
    }
    async fn get_run(
        &self,
        id: cronwarden::model::RunId,
    ) -> Result<Option<Run>, cronwarden::store::StoreError> {
        self.store.get_run(id).await
    }
    async fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> Result<Vec<Run>, cronwarden::store::StoreError> {
        self.store.list_runs(filter).await
    }
    async fn abandon_runs(
        &self,
        node: Option<&str>,
        at: Timestamp,
    ) -> Result<Vec<Run>, cronwarden::store::StoreError> {
        self.store.abandon_runs(node, at).await
    }
    async fn last_fire(
        &self,
        job: &JobName,
    ) -> Result<Option<Timestamp>, cronwarden::store::StoreError> {
        self.store.last_fire(job).await
    }
    async fn job_stats(
        &self,
        job: &JobName,
    ) -> Result<cronwarden::store::JobStats, cronwarden::store::StoreError> {
        self.store.job_stats(job).await
    }
    async fn prune_runs(
        &self,
        keep_last: u32,
        older_than: Timestamp,
    ) -> Result<u64, cronwarden::store::StoreError> {
        self.store.prune_runs(keep_last, older_than).await
    }
    async fn create_token(
        &self,
        name: &str,
        role: cronwarden::model::Role,
        hash: &str,
        at: Timestamp,
    ) -> Result<cronwarden::model::ApiToken, cronwarden::store::StoreError> {
        self.store.create_token(name, role, hash, at).await
    }
    async fn list_tokens(
        &self,
    ) -> Result<Vec<cronwarden::model::ApiToken>, cronwarden::store::StoreError> {
        self.store.list_tokens().await
    }
    async fn revoke_token(
        &self,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, cronwarden::store::StoreError> {
        self.store.revoke_token(name, at).await
    }
    async fn token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<cronwarden::model::ApiToken>, cronwarden::store::StoreError> {
        self.store.token_by_hash(hash).await
    }
    async fn record_audit(
        &self,
        entry: cronwarden::store::NewAudit<'_>,
    ) -> Result<cronwarden::model::AuditEntry, cronwarden::store::StoreError> {
        self.store.record_audit(entry).await
    }
    async fn list_audit(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<cronwarden::model::AuditEntry>, cronwarden::store::StoreError> {
        self.store.list_audit(before_id, limit).await
    }
    async fn heartbeat(
        &self,
        node: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, cronwarden::store::StoreError> {
        self.check()?;
        self.store.heartbeat(node, now, until).await
    }
    async fn live_nodes(
        &self,
        now: Timestamp,
    ) -> Result<Vec<String>, cronwarden::store::StoreError> {
        self.store.live_nodes(now).await
    }
    async fn dead_nodes(
        &self,
        now: Timestamp,
    ) -> Result<Vec<String>, cronwarden::store::StoreError> {
        self.store.dead_nodes(now).await
    }
    async fn take_over_runs(
        &self,
        node: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<Vec<Run>, cronwarden::store::StoreError> {
        self.store.take_over_runs(node, by, at).await
    }
    async fn rescue_node(
        &self,
        node: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<Run>>, cronwarden::store::StoreError> {
        self.store.rescue_node(node, by, now).await
    }
    async fn leave(&self, node: &str) -> Result<(), cronwarden::store::StoreError> {
        self.store.leave(node).await
    }
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, cronwarden::store::StoreError> {
        self.store.try_lease(name, holder, now, until).await
    }
    async fn release_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> Result<(), cronwarden::store::StoreError> {
        self.store.release_lease(name, holder).await
    }
}

#[tokio::test]
async fn fires_that_could_not_be_claimed_are_retried_then_follow_the_misfire_policy() {
    let store = Arc::new(Outage::new(true).await);
    let clock = TestClock::new(ts(T0));
    let job = rust_job("sync", Some("* * * * *"));
    store.upsert_job(&job, clock.now()).await.unwrap();
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(clock.clone()),
        Executors::new(scripted("sync", vec![])),
        SchedulerConfig::default(),
    );
    scheduler.start();
    let advance = |by: SignedDuration| {
        let clock = clock.clone();
        async move {
            eventually(|| async { clock.sleepers() > 0 }).await;
            clock.advance(by);
        }
    };
    // The database is unreachable across the fires of 00:01, 00:02 and 00:03; the loop keeps
    // trying (once a second) without losing them.
    for _ in 0..200 {
        advance(secs(1)).await;
    }
    assert!(store
        .store
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .is_empty());
    store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    advance(secs(1)).await;
    let runs = || async {
        let mut runs = store.store.list_runs(&RunFilter::default()).await.unwrap();
        runs.reverse();
        runs
    };
    // At 00:03:21 the 00:03 fire is within its 60 s grace and runs as scheduled; 00:01 and
    // 00:02 are late, so `run_once` catches up the latest and records the other missed.
    eventually(|| async {
        let runs = runs().await;
        runs.len() == 3 && runs.iter().all(|r| r.status.is_final())
    })
    .await;
    let seen: Vec<(String, Trigger, RunStatus)> = runs()
        .await
        .iter()
        .map(|r| {
            (
                r.scheduled_at.strftime("%H:%M").to_string(),
                r.trigger,
                r.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("00:01".to_owned(), Trigger::Schedule, RunStatus::Missed),
            ("00:02".to_owned(), Trigger::CatchUp, RunStatus::Succeeded),
            ("00:03".to_owned(), Trigger::Schedule, RunStatus::Succeeded),
        ]
    );
    let stopping = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.stop().await }
    });
    while !stopping.is_finished() {
        clock.advance(SignedDuration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// An in-process job is begun (polled once) where its instant's runs are released, then handed
/// to its run's task: a job still waiting after that first poll must be woken on that task.
#[tokio::test]
async fn a_job_waiting_after_its_first_poll_finishes_on_its_own_task() {
    let (go, wait) = tokio::sync::watch::channel(false);
    let rust = RustJobs::new().register("waits", move |_ctx| {
        let mut wait = wait.clone();
        async move {
            // Pending at the first poll: `go` is sent only once the run has started.
            wait.wait_for(|go| *go)
                .await
                .map_err(|e| JobError::Fatal(e.to_string()))?;
            Ok::<_, JobError>("went".into())
        }
    });
    let mut h = Harness::new(vec![rust_job("waits", Some("* * * * *"))], rust).await;
    h.advance(secs(60)).await;
    let started = h.started().await;
    assert_eq!(started.scheduled_at, ts("2026-01-01T00:01:00Z"));
    go.send(true).unwrap();
    let finished = h.finished().await;
    assert_eq!(
        (finished.status, finished.output.as_deref()),
        (RunStatus::Succeeded, Some("went"))
    );
    h.stop_letting_time_pass().await;
}

/// A job that panics in `run` itself, before it returns its future (a hand-written
/// [`RustJob`], not an `async fn`).
struct PanicsBeforeItsFuture;

impl cronwarden::executor::RustJob for PanicsBeforeItsFuture {
    fn run<'job, 'future>(
        &'job self,
        _ctx: cronwarden::executor::RunContext,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, JobError>> + Send + 'future>,
    >
    where
        'job: 'future,
        Self: 'future,
    {
        panic!("no future for you")
    }
}

/// At a busy instant, a job that panics before its future exists fails its own run; the
/// runs begun beside it (in its slice of the instant and the others) carry on.
#[tokio::test]
async fn a_job_panicking_before_its_future_fails_its_own_run_only() {
    const STEADY: usize = 300; // more than one slice of an instant
    let mut jobs = every_minute("steady", STEADY);
    jobs.push(rust_job("explodes", Some("* * * * *")));
    let rust = RustJobs::new()
        .register("explodes", PanicsBeforeItsFuture)
        .register("steady", |_ctx| async { Ok::<_, JobError>("fine".into()) });
    let config = SchedulerConfig {
        max_concurrent_runs: 1_000,
        ..SchedulerConfig::default()
    };
    let mut h = Harness::configured(jobs, rust, config).await;
    h.advance(secs(60)).await;
    let mut failed = Vec::new();
    for _ in 0..=STEADY {
        let run = h.finished().await;
        match run.status {
            RunStatus::Succeeded => assert_eq!(run.output.as_deref(), Some("fine")),
            _ => failed.push(run),
        }
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0].job.as_str(), failed[0].status),
        ("explodes", RunStatus::Failed)
    );
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("panicked: no future for you"),
        "{:?}",
        failed[0].error
    );
    h.stop_letting_time_pass().await;
}

#[tokio::test]
async fn a_panicking_job_fails_its_own_run_only() {
    let rust = RustJobs::new()
        .register("explodes", |_ctx| async {
            if true {
                panic!("boom");
            }
            Ok::<_, JobError>(String::new())
        })
        .register("steady", |_ctx| async { Ok::<_, JobError>("fine".into()) });
    let mut h = Harness::new(
        vec![
            rust_job("explodes", Some("* * * * *")),
            rust_job("steady", Some("* * * * *")),
        ],
        rust,
    )
    .await;
    h.advance(secs(60)).await;
    let mut finished = [h.finished().await, h.finished().await];
    finished.sort_by(|a, b| a.job.cmp(&b.job));
    assert_eq!(finished[0].job.as_str(), "explodes");
    assert_eq!(finished[0].status, RunStatus::Failed);
    assert!(
        finished[0]
            .error
            .as_deref()
            .unwrap()
            .contains("panicked: boom"),
        "{:?}",
        finished[0].error
    );
    assert_eq!(
        (finished[1].status, finished[1].output.as_deref()),
        (RunStatus::Succeeded, Some("fine"))
    );
    // The scheduler carries on: the next minute fires both again.
    h.advance(secs(60)).await;
    let next = [h.finished().await, h.finished().await];
    assert!(next
        .iter()
        .all(|r| r.scheduled_at == ts("2026-01-01T00:02:00Z")));
    h.stop_letting_time_pass().await;
}

#[tokio::test]
async fn changes_made_by_another_process_are_followed() {
    // The CLI opens the same database file and writes to it; the scheduler notices.
    let path = temp_db_path();
    let daemon_store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let cli_store = SqliteStore::open(&path).await.unwrap();
    let config = SchedulerConfig {
        watch_interval: SignedDuration::from_millis(5),
        ..SchedulerConfig::default()
    };
    let mut h = Harness::with(
        vec![rust_job("report", Some("* * * * *"))],
        scripted("report", vec![]),
        config,
        daemon_store,
        TestClock::new(ts(T0)),
    )
    .await;
    // A run asked for from outside starts without the clock moving.
    assert!(cli_store
        .request_run(&JobName::new("report").unwrap(), "cli", ts(T0))
        .await
        .unwrap());
    let run = h.finished().await;
    assert_eq!(
        (run.trigger, run.status, run.scheduled_at),
        (Trigger::Manual, RunStatus::Succeeded, ts(T0))
    );
    assert!(
        cli_store.take_run_requests().await.unwrap().is_empty(),
        "taken once"
    );
    // Paused from outside: the next minute does not fire, and re-applying the definition (as a
    // restart with the same config file does) does not lift the pause...
    let report = JobName::new("report").unwrap();
    cli_store
        .set_paused(&report, Some("maintenance"))
        .await
        .unwrap()
        .unwrap();
    cli_store
        .upsert_job(&rust_job("report", Some("* * * * *")), ts(T0))
        .await
        .unwrap();
    eventually(|| async {
        h.scheduler
            .job(&report)
            .is_some_and(|s| !s.enabled && s.pause_reason.as_deref() == Some("maintenance"))
    })
    .await;
    // (Nothing is on the timetable, so the loop sleeps on no deadline: move the clock directly.)
    h.clock.advance(secs(120));
    // ...and resumed from outside, the one after does.
    cli_store.set_paused(&report, None).await.unwrap().unwrap();
    eventually(|| async {
        h.scheduler
            .job(&JobName::new("report").unwrap())
            .is_some_and(|s| s.enabled)
    })
    .await;
    h.advance(secs(60)).await;
    let run = h.finished().await;
    assert_eq!(
        (run.trigger, run.scheduled_at),
        (Trigger::Schedule, ts("2026-01-01T00:03:00Z"))
    );
    let scheduled = h
        .runs("report")
        .await
        .into_iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .count();
    assert_eq!(scheduled, 1, "nothing fired while paused");
    // Deleted from outside: taken off the timetable.
    cli_store
        .delete_job(&JobName::new("report").unwrap())
        .await
        .unwrap();
    eventually(|| async { h.scheduler.job(&JobName::new("report").unwrap()).is_none() }).await;
    h.stop_letting_time_pass().await;
}

#[tokio::test]
async fn a_run_triggered_during_start_up_is_not_taken_for_a_leftover() {
    // Recovery after start abandons what a previous process left unfinished; a run triggered
    // while it is going must not be among them.
    for _ in 0..20 {
        let mut h = Harness::new(
            vec![rust_job("now", Some("0 0 1 1 *"))],
            scripted("now", vec![]),
        )
        .await;
        let run = h
            .scheduler
            .trigger(&JobName::new("now").unwrap())
            .await
            .unwrap();
        let finished = h.finished().await;
        assert_eq!(
            (finished.id, finished.status),
            (run.id, RunStatus::Succeeded)
        );
        h.stop_letting_time_pass().await;
    }
}

#[tokio::test]
async fn pausing_firing_stops_every_job_until_resumed() {
    let mut h = Harness::new(
        vec![
            rust_job("a", Some("* * * * *")),
            rust_job("b", Some("*/2 * * * *")),
        ],
        RustJobs::new()
            .register("a", |_ctx| async { Ok::<_, JobError>(String::new()) })
            .register("b", |_ctx| async { Ok::<_, JobError>(String::new()) }),
    )
    .await;
    h.scheduler.pause_firing();
    assert!(h.scheduler.firing_paused());
    // Nothing is on the loop's timetable while paused: move the clock directly.
    eventually(|| async { h.clock.sleepers() == 0 }).await;
    h.clock.advance(secs(300));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(h.runs("a").await.is_empty() && h.runs("b").await.is_empty());
    // A trigger still runs.
    h.scheduler
        .trigger(&JobName::new("a").unwrap())
        .await
        .unwrap();
    assert_eq!(h.finished().await.trigger, Trigger::Manual);
    h.scheduler.resume_firing();
    h.advance(secs(60)).await;
    let run = h.finished().await;
    assert_eq!(
        (run.trigger, run.scheduled_at),
        (Trigger::Schedule, ts("2026-01-01T00:06:00Z")),
        "the fires due while paused were not caught up"
    );
    h.stop_letting_time_pass().await;
}

#[tokio::test]
async fn a_running_run_can_be_cancelled() {
    let gate = Arc::new(Semaphore::new(0));
    let mut h = Harness::new(
        vec![rust_job("long", Some("* * * * *"))],
        gated("long", gate),
    )
    .await;
    h.advance(secs(60)).await;
    let run = h.started().await;
    assert_eq!(h.scheduler.load(), (1, 0));
    assert!(h.scheduler.cancel_run(run.id));
    let finished = h.finished().await;
    assert_eq!(
        (finished.id, finished.status),
        (run.id, RunStatus::Interrupted)
    );
    assert!(!h.scheduler.cancel_run(run.id), "not running any more");
    h.stop_letting_time_pass().await;
}

/// The next run to start; fails the test if a run finishes first, or nothing comes within
/// 10 s of real time.
async fn started_only(events: &mut broadcast::Receiver<SchedulerEvent>) -> Run {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .unwrap();
        match event {
            SchedulerEvent::RunStarted(run) => return run,
            SchedulerEvent::RunFinished(run) => {
                panic!("no result can be written, yet {run:?} finished")
            }
            _ => {}
        }
    }
}

/// While the runs of a busy instant are starting, nothing is written to the store: SQLite
/// writes on a thread of its own, which on two cores takes the core the runs start on. Here
/// one job stalls its thread in its first poll (as a job that computes before its first await
/// does) until every other run has begun, and then for 50 ms more, while the start records of
/// those runs are waiting in the recorder. Unheld, the recorder writes them 3 ms after the last
/// one came; the 50 ms are the window it is given to do so. (A wait on the wall clock, but one
/// that can only make the test pass wrongly on a starved machine, never fail wrongly.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_while_the_runs_of_an_instant_are_starting() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const QUICK: usize = 300; // more than one slice of an instant
    let store = Arc::new(Outage::new(false).await);
    let begun = Arc::new(AtomicUsize::new(0));
    let writes_seen = Arc::new(AtomicUsize::new(usize::MAX));
    let rust = RustJobs::new()
        .register("quick", {
            let begun = begun.clone();
            move |_ctx| {
                begun.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, JobError>(String::new()) }
            }
        })
        .register("stalls", {
            let (begun, store, writes_seen) = (begun.clone(), store.clone(), writes_seen.clone());
            move |_ctx| {
                let (begun, store, writes_seen) =
                    (begun.clone(), store.clone(), writes_seen.clone());
                async move {
                    let give_up = std::time::Instant::now() + Duration::from_secs(10);
                    while begun.load(Ordering::SeqCst) < QUICK
                        && std::time::Instant::now() < give_up
                    {
                        std::thread::yield_now();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    writes_seen.store(store.run_writes.load(Ordering::SeqCst), Ordering::SeqCst);
                    Ok::<_, JobError>(String::new())
                }
            }
        });
    let mut jobs = every_minute("quick", QUICK);
    // Last in name order: claimed last, so in the instant's last slice.
    jobs.push(rust_job("stalls", Some("* * * * *")));
    let clock = TestClock::new(ts(T0));
    for job in &jobs {
        store.upsert_job(job, clock.now()).await.unwrap();
    }
    let config = SchedulerConfig {
        max_concurrent_runs: 1_000,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(clock.clone()),
        Executors::new(rust),
        config,
    );
    let mut events = scheduler.subscribe();
    scheduler.start();
    eventually(|| async { clock.sleepers() > 0 }).await;
    clock.advance(secs(60));
    let mut succeeded = 0;
    while succeeded < QUICK + 1 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
            succeeded += 1;
        }
    }
    assert_eq!(begun.load(Ordering::SeqCst), QUICK);
    assert_eq!(
        writes_seen.load(Ordering::SeqCst),
        0,
        "run records were written while a run of the instant was still starting"
    );
    scheduler.stop().await;
}

/// A run whose action has ended is no longer going, even while the store is slow to take its
/// result: the next fire of an `overlap = skip` job runs rather than being skipped for it.
#[tokio::test]
async fn a_result_still_being_written_does_not_make_the_next_fire_skip() {
    let gate = Arc::new(Semaphore::new(0));
    let mut store = Outage::new(false).await;
    store.hold_finishes = Some(gate.clone());
    let store = Arc::new(store);
    let clock = TestClock::new(ts(T0));
    let job = rust_job("quick", Some("* * * * *"));
    assert_eq!(job.overlap, OverlapPolicy::Skip);
    store.upsert_job(&job, clock.now()).await.unwrap();
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(clock.clone()),
        Executors::new(
            RustJobs::new().register("quick", |_ctx| async { Ok::<_, JobError>(String::new()) }),
        ),
        SchedulerConfig::default(),
    );
    let mut events = scheduler.subscribe();
    scheduler.start();
    eventually(|| async { clock.sleepers() > 0 }).await;
    clock.advance(secs(60));
    assert_eq!(
        started_only(&mut events).await.scheduled_at,
        ts("2026-01-01T00:01:00Z")
    );
    // Its result is held at the store; the next minute comes.
    eventually(|| async { clock.sleepers() > 0 }).await;
    clock.advance(secs(60));
    assert_eq!(
        started_only(&mut events).await.scheduled_at,
        ts("2026-01-01T00:02:00Z")
    );
    gate.add_permits(1_000);
    scheduler.stop().await;
    let runs = store
        .list_runs(&RunFilter {
            limit: Some(100),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:?}"
    );
}

#[tokio::test]
async fn a_job_created_while_the_store_is_being_reloaded_is_kept() {
    // The reload that follows other processes' changes reads the jobs, then applies what it
    // read. A job created here between the two must not be taken for one deleted elsewhere.
    let gate = Arc::new(Semaphore::new(0));
    let mut store = Outage::new(false).await;
    store.hold_listings = Some(gate.clone());
    let store = Arc::new(store);
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(TestClock::new(ts(T0))),
        Executors::new(
            scripted("early", vec![])
                .register("fresh", |_ctx| async { Ok::<_, JobError>(String::new()) }),
        ),
        SchedulerConfig {
            watch_interval: SignedDuration::from_millis(1),
            ..SchedulerConfig::default()
        },
    );
    scheduler.start();
    let listings = || store.listings.load(std::sync::atomic::Ordering::SeqCst);
    // Past the start-up recovery (which lists the jobs too), a reload has read the (empty)
    // list of jobs and is held there.
    scheduler.upsert_job(rust_job("early", None)).await.unwrap();
    store
        .holding
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // A change made by another process (straight into the store) sets a reload off.
    let start = listings();
    store
        .store
        .set_paused(&JobName::new("early").unwrap(), Some("elsewhere"))
        .await
        .unwrap();
    eventually(|| async { listings() > start }).await;
    let creating = tokio::spawn({
        let scheduler = scheduler.clone();
        async move {
            scheduler
                .upsert_job(rust_job("fresh", Some("0 0 1 1 *")))
                .await
                .unwrap()
        }
    });
    // Unhindered, the creation ends within a millisecond or so; the scheduler must make it
    // wait for the reload instead (or the reload must not act on what it read). Nothing
    // signals "waiting on the reload", hence a bounded poll: it passes with a correct
    // scheduler whatever the timing, and catches a wrong one when the creation gets ahead.
    for _ in 0..200 {
        if creating.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let the held reload finish, and wait for the next one to begin: the first is over.
    let before = listings();
    gate.add_permits(1);
    creating.await.unwrap();
    // (The next reload is held after its listing: it cannot put right what the first did.)
    eventually(|| async { listings() > before }).await;
    assert!(
        scheduler.job(&JobName::new("fresh").unwrap()).is_some(),
        "the job was dropped from the timetable by a reload that read the store before it"
    );
    store
        .holding
        .store(false, std::sync::atomic::Ordering::SeqCst);
    gate.add_permits(1_000);
    scheduler.stop().await;
}

#[tokio::test]
async fn a_job_naming_a_handler_or_connection_that_does_not_exist_is_refused() {
    let h = Harness::new(Vec::new(), RustJobs::new()).await;
    let error = h
        .scheduler
        .upsert_job(rust_job("unregistered", None))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid job: action.handler: no Rust handler is registered as \"unregistered\""
    );
    let sql = JobSpec::new(
        JobName::new("report").unwrap(),
        None,
        Action::Sql(
            serde_json::from_value(
                serde_json::json!({"connection": "warehouse", "statement": "SELECT 1"}),
            )
            .unwrap(),
        ),
    );
    let error = h.scheduler.upsert_job(sql).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid job: action.connection: no connection is named \"warehouse\" (declared: [])"
    );
    h.stop_letting_time_pass().await;
}
