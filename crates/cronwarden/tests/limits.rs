//! The bounds of a job definition (each absurd value refused, naming its field) and time
//! arithmetic that saturates rather than panics, for definitions stored before the bounds.

use std::sync::Arc;
use std::time::Duration;

use cronwarden::clock::{saturating_add, Clock, TestClock};
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{
    limits, Action, HttpAction, JobName, JobSpec, MisfirePolicy, RunStatus, SqlAction, Trigger,
};
use cronwarden::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use cronwarden::store::{RunFilter, SqliteStore, Store};
use jiff::{SignedDuration, Timestamp};

fn command(argv: Vec<String>) -> JobSpec {
    JobSpec::new(
        JobName::new("job").unwrap(),
        Some("* * * * *"),
        Action::Command {
            argv,
            env: Default::default(),
            cwd: None,
            inherit_env: Vec::new(),
        },
    )
}

fn http() -> HttpAction {
    serde_json::from_value(serde_json::json!({ "url": "https://example.test/hook" })).unwrap()
}

fn sql() -> SqlAction {
    serde_json::from_value(serde_json::json!({ "connection": "db", "statement": "SELECT 1" }))
        .unwrap()
}

fn with_http(change: impl FnOnce(&mut HttpAction)) -> JobSpec {
    let mut action = http();
    change(&mut action);
    JobSpec {
        action: Action::Http(action),
        ..command(vec!["true".into()])
    }
}

fn with_sql(change: impl FnOnce(&mut SqlAction)) -> JobSpec {
    let mut action = sql();
    change(&mut action);
    JobSpec {
        action: Action::Sql(action),
        ..command(vec!["true".into()])
    }
}

fn spec(change: impl FnOnce(&mut JobSpec)) -> JobSpec {
    let mut spec = command(vec!["true".into()]);
    change(&mut spec);
    spec
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

/// One past each bound, and the field the refusal must name.
fn over_the_bounds() -> Vec<(&'static str, JobSpec)> {
    let long = |n: usize| "x".repeat(n + 1);
    let absurd = hours(70_000_000);
    vec![
        ("timeout", spec(|s| s.timeout = Some(absurd))),
        ("timeout", spec(|s| s.timeout = Some(hours(721)))),
        (
            "retry.initial_delay",
            spec(|s| s.retry.initial_delay = absurd),
        ),
        ("retry.max_delay", spec(|s| s.retry.max_delay = absurd)),
        ("retry.max_attempts", spec(|s| s.retry.max_attempts = 101)),
        ("misfire_grace", spec(|s| s.misfire_grace = absurd)),
        (
            "misfire.window",
            spec(|s| s.misfire = MisfirePolicy::RunAll { window: absurd }),
        ),
        ("jitter", spec(|s| s.jitter = Some(absurd))),
        ("max_concurrency", spec(|s| s.max_concurrency = 10_001)),
        (
            "description",
            spec(|s| s.description = "x".repeat(1_900_000)),
        ),
        ("schedule", spec(|s| s.schedule = Some(long(8 * 1024)))),
        ("time_zone", spec(|s| s.time_zone = long(256))),
        (
            "pause_reason",
            spec(|s| s.pause_reason = Some(long(8 * 1024))),
        ),
        ("tags", spec(|s| s.tags = vec!["t".into(); 100_000])),
        ("tags[1]", spec(|s| s.tags = vec!["t".into(), long(256)])),
        (
            "after",
            spec(|s| {
                s.after = (0..257)
                    .map(|i| JobName::new(format!("j{i}")).unwrap())
                    .collect()
            }),
        ),
        ("action.argv", command(vec!["a".into(); 100_000])),
        // 2 x 200 KiB: each argument is fine, together they are too much.
        ("action.argv", command(vec!["y".repeat(200 * 1024); 2])),
        (
            "action.env",
            spec(|s| {
                s.action = Action::Command {
                    argv: vec!["true".into()],
                    env: (0..257).map(|i| (format!("V{i}"), String::new())).collect(),
                    cwd: None,
                    inherit_env: Vec::new(),
                }
            }),
        ),
        (
            "action.inherit_env",
            spec(|s| {
                s.action = Action::Command {
                    argv: vec!["true".into()],
                    env: Default::default(),
                    cwd: None,
                    inherit_env: (0..257).map(|i| format!("V{i}")).collect(),
                }
            }),
        ),
        (
            "action.cwd",
            spec(|s| {
                s.action = Action::Command {
                    argv: vec!["true".into()],
                    env: Default::default(),
                    cwd: Some(long(8 * 1024).into()),
                    inherit_env: Vec::new(),
                }
            }),
        ),
        (
            "action.handler",
            spec(|s| s.action = Action::Rust { handler: long(256) }),
        ),
        (
            "action.url",
            with_http(|h| h.url = format!("https://{}", long(8 * 1024))),
        ),
        (
            "action.headers",
            with_http(|h| h.headers = (0..257).map(|i| (format!("h{i}"), "v".into())).collect()),
        ),
        (
            "action.headers",
            with_http(|h| h.headers = [(long(256), "v".into())].into()),
        ),
        (
            "action.headers.x-big",
            with_http(|h| h.headers = [("x-big".into(), long(8 * 1024))].into()),
        ),
        (
            "action.query",
            with_http(|h| h.query = (0..257).map(|i| (format!("q{i}"), "v".into())).collect()),
        ),
        (
            "action.body",
            with_http(|h| h.body = Some(long(256 * 1024))),
        ),
        (
            "action.json",
            with_http(|h| h.json = Some(serde_json::json!({ "big": long(256 * 1024) }))),
        ),
        ("action.timeout", with_http(|h| h.timeout = Some(absurd))),
        (
            "action.success_status",
            with_http(|h| h.success_status = vec![200; 257]),
        ),
        (
            "action.hmac_secret",
            with_http(|h| h.hmac_secret = Some(long(8 * 1024))),
        ),
        (
            "action.keep_headers",
            with_http(|h| h.keep_headers = vec!["a".into(); 257]),
        ),
        ("action.connection", with_sql(|q| q.connection = long(256))),
        (
            "action.statement",
            with_sql(|q| q.statement = Some(long(256 * 1024))),
        ),
        (
            "action.script",
            with_sql(|q| {
                q.statement = None;
                q.script = vec!["SELECT 1".into(); 257];
            }),
        ),
        (
            "action.statement_timeout",
            with_sql(|q| q.statement_timeout = Some(hours(25))),
        ),
        (
            "action.batch_pause",
            with_sql(|q| {
                q.batch = true;
                q.batch_pause = Some(absurd);
            }),
        ),
        ("action.keep_rows", with_sql(|q| q.keep_rows = 1_001)),
    ]
}

#[test]
fn each_bound_is_checked_naming_the_field() {
    for (field, spec) in over_the_bounds() {
        let e = spec.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert!(
            e.reason.contains("the most is") || e.reason.contains("at most"),
            "{e}"
        );
        // A message, not an echo of the input: it stays short however large the value.
        assert!(e.to_string().len() < 200, "{e}");
    }
    assert_eq!(
        spec(|s| s.timeout = Some(hours(70_000_000)))
            .validate()
            .unwrap_err()
            .to_string(),
        "timeout: must be at most 720h, got 70000000h"
    );
    assert_eq!(
        spec(|s| s.description = "x".repeat(1_900_000))
            .validate()
            .unwrap_err()
            .to_string(),
        "description: is 1.8 MiB long; the most is 8 KiB"
    );
}

#[test]
fn values_at_the_bounds_are_accepted() {
    let at_most = [
        spec(|s| {
            s.timeout = Some(limits::MAX_DURATION);
            s.retry.initial_delay = limits::MAX_DURATION;
            s.retry.max_delay = limits::MAX_DURATION;
            s.retry.max_attempts = limits::MAX_ATTEMPTS;
            s.misfire_grace = limits::MAX_DURATION;
            s.misfire = MisfirePolicy::RunAll {
                window: limits::MAX_DURATION,
            };
            s.jitter = Some(limits::MAX_DURATION);
            s.max_concurrency = limits::MAX_CONCURRENCY;
            s.description = "x".repeat(limits::MAX_TEXT_BYTES);
            s.tags = vec!["t".repeat(limits::MAX_NAME_BYTES); limits::MAX_ENTRIES];
        }),
        command(vec!["a".into(); limits::MAX_ARGS]),
        with_http(|h| h.body = Some("b".repeat(limits::MAX_PAYLOAD_BYTES))),
        with_sql(|q| {
            q.statement = Some("x".repeat(limits::MAX_PAYLOAD_BYTES));
            q.statement_timeout = Some(limits::MAX_STATEMENT_TIMEOUT);
            q.keep_rows = limits::MAX_KEEP_ROWS;
        }),
    ];
    for spec in at_most {
        spec.validate().unwrap();
    }
}

#[test]
fn adding_time_saturates_at_the_ends_of_time() {
    let near_end = Timestamp::MAX - hours(1);
    assert_eq!(saturating_add(near_end, hours(2)), Timestamp::MAX);
    assert_eq!(
        saturating_add(near_end, SignedDuration::MAX),
        Timestamp::MAX
    );
    assert_eq!(
        saturating_add(Timestamp::MIN + hours(1), -hours(110_000_000)),
        Timestamp::MIN
    );
    assert_eq!(saturating_add(near_end, hours(1)), Timestamp::MAX);
    let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(saturating_add(t, hours(1)), t + hours(1));
}

/// A definition stored before its values were bounded (so never validated): its timeout, its
/// retry's delay and its jitter reach past the end of representable time, and so does the
/// scheduler's shutdown grace. Nothing panics: each deadline saturates.
#[tokio::test]
async fn deadlines_past_the_end_of_time_do_not_panic_the_scheduler() {
    let absurd = hours(70_000_000);
    let mut failing = JobSpec::new(
        JobName::new("failing").unwrap(),
        None,
        Action::Rust {
            handler: "fail".into(),
        },
    );
    failing.timeout = Some(absurd);
    failing.retry.max_attempts = 3;
    failing.retry.initial_delay = absurd;
    failing.retry.max_delay = absurd;
    failing.retry.jitter = 0.0;
    let mut jittery = JobSpec::new(
        JobName::new("jittery").unwrap(),
        Some("* * * * * *"),
        Action::Rust {
            handler: "fail".into(),
        },
    );
    jittery.jitter = Some(absurd);

    let dir = cronwarden_test_support::TestDir::new("limits");
    let store = Arc::new(
        SqliteStore::open(dir.join("state.db").to_str().unwrap())
            .await
            .unwrap(),
    );
    // Schedules fire up to the year 9998.
    let clock = TestClock::new("9998-06-01T00:00:00Z".parse().unwrap());
    for job in [&failing, &jittery] {
        // Straight into the store, as an older version would have kept it.
        store.upsert_job(job, clock.now()).await.unwrap();
    }
    let rust = RustJobs::new().register("fail", |_ctx| async {
        Err::<String, _>(JobError::Retryable("down".into()))
    });
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(clock.clone()),
        Executors::new(rust),
        SchedulerConfig {
            shutdown_grace: SignedDuration::MAX,
            ..SchedulerConfig::default()
        },
    );
    let mut events = scheduler.subscribe();
    scheduler.start();
    let run = scheduler
        .trigger(&JobName::new("failing").unwrap())
        .await
        .unwrap();
    // The run ends, recorded; a panic in the runner would leave it going for ever.
    let finished = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the run finishes within 10 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(finished) = event {
            if finished.id == run.id {
                break finished;
            }
        }
    };
    assert_eq!(finished.status, RunStatus::Failed);
    // The retry is claimed, due at the end of time; the scheduled job waits out its jitter.
    let runs = || async {
        store
            .list_runs(&RunFilter {
                limit: Some(100),
                ..RunFilter::default()
            })
            .await
            .unwrap()
    };
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !runs().await.iter().any(|r| r.trigger == Trigger::Retry) {
        assert!(std::time::Instant::now() < give_up, "no retry was claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The scheduled job fires and waits out its jitter, until cancelled.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let jittered = loop {
        let found = runs()
            .await
            .into_iter()
            .find(|r| r.job.as_str() == "jittery" && r.status == RunStatus::Queued);
        if let Some(run) = found {
            break run;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the jittery job never fired"
        );
        clock.advance(SignedDuration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(scheduler.cancel_run(jittered.id));
    // The stop's deadline (now + the grace) is past the end of time as well; with nothing
    // going, the stop ends at once.
    tokio::time::timeout(Duration::from_secs(10), scheduler.stop())
        .await
        .expect("the scheduler stops");
    // Every run accounted for: final, but for the retry waiting for its time, which the stop
    // leaves queued for the next start.
    let left = runs().await;
    let unfinished: Vec<_> = left.iter().filter(|r| !r.status.is_final()).collect();
    assert!(
        matches!(unfinished[..], [r] if r.trigger == Trigger::Retry && r.status == RunStatus::Queued && r.job.as_str() == "failing"),
        "every run accounted for: {left:#?}"
    );
    store.close().await;
    drop(dir);
}
