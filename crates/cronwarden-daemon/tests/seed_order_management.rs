//! The order management system's scheduler (`examples/order-management`): its own
//! `cronwarden.toml` run through the scheduler against a fake of the application's API (the two
//! syncs are HTTP calls to its manual trigger endpoints) and a fresh PostgreSQL database
//! holding the example's schema and seed data (the daily cleanup is SQL).

mod seed_support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cronwarden::model::{Action, JobName, Run, RunStatus, Trigger};
use cronwarden::scheduler::SchedulerEvent;
use jiff::SignedDuration;
use seed_support::{example_dir, Engine, Example, TestDatabase};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// The admin token the daemon holds: `${env:OMS_ADMIN_TOKEN}` in the example stays a
/// reference, resolved at each run from this variable.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.oms-admin.c2lnbmF0dXJl";

/// Sets `OMS_ADMIN_TOKEN`, once for every test of this file (they run on parallel threads).
fn set_token() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var("OMS_ADMIN_TOKEN", TOKEN));
}

/// A call the fake API received.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    authorization: Option<String>,
    job: Option<String>,
    run_id: Option<String>,
    scheduled_at: Option<String>,
    attempt: Option<String>,
    idempotency_key: Option<String>,
}

/// The application's scheduler endpoints, as far as cronwarden sees them: admin only (a
/// bearer token), and each trigger answers once its sync is over.
#[derive(Clone)]
struct FakeOms {
    /// The token the API accepts.
    token: String,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Statuses to answer, one per call, before the API is healthy again.
    failures: Arc<Mutex<VecDeque<StatusCode>>>,
}

impl FakeOms {
    fn new(token: &str) -> FakeOms {
        FakeOms {
            token: token.to_owned(),
            calls: Arc::default(),
            failures: Arc::default(),
        }
    }

    fn fail_next(&self, status: StatusCode) {
        self.failures.lock().unwrap().push_back(status);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Serves the API; returns its base URL (what `OMS_URL` holds).
    async fn serve(&self) -> String {
        let router = Router::new()
            .route("/api/v1/scheduler/trigger/{sync}", post(trigger))
            .with_state(self.clone());
        seed_support::serve(router).await
    }
}

async fn trigger(
    State(oms): State<FakeOms>,
    Path(sync): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    oms.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        job: header("x-cronwarden-job"),
        run_id: header("x-cronwarden-run-id"),
        scheduled_at: header("x-cronwarden-scheduled-at"),
        attempt: header("x-cronwarden-attempt"),
        idempotency_key: header("idempotency-key"),
    });
    // The admin authentication comes first.
    if header("authorization") != Some(format!("Bearer {}", oms.token)) {
        let body = json!({"success": false, "message": "Invalid or expired token"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let name = match sync.as_str() {
        "ecomanager" => "EcoManager",
        "shipping" => "Shipping Status",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if let Some(status) = oms.failures.lock().unwrap().pop_front() {
        let body = json!({
            "success": false,
            "message": format!("Failed to trigger {name} sync"),
            "error": "Connection is closed."
        });
        return (status, Json(body)).into_response();
    }
    let body = json!({
        "success": true,
        "message": format!("{name} sync triggered successfully"),
        "data": {"success": true, "message": format!("{name} sync completed")}
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// A run's output split into its first line (`POST <url> -> <status> in N ms`) and the
/// response body, parsed.
fn response(output: &str) -> (&str, Value) {
    let (first, body) = output.split_once("\n\n").unwrap_or((output, ""));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {output}"));
    (first, body)
}

/// Asserts the first line of an HTTP job's output: method, URL and status (the time varies).
fn assert_status_line(line: &str, url: &str, status: &str) {
    let prefix = format!("POST {url} -> {status} in ");
    let millis = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" ms"));
    assert!(
        millis.is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "{line:?} is not {prefix:?}N ms"
    );
}

/// Asserts that the fake API got exactly the call `run` made.
fn assert_call(call: &Call, run: &Run, path: &str) {
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, path);
    assert_eq!(
        call.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let job = run.job.as_str();
    let scheduled_at = run.scheduled_at.to_string();
    assert_eq!(call.job.as_deref(), Some(job));
    assert_eq!(call.run_id, Some(run.id.to_string()));
    assert_eq!(call.attempt, Some(run.attempt.to_string()));
    assert_eq!(call.scheduled_at.as_deref(), Some(scheduled_at.as_str()));
    assert_eq!(call.idempotency_key, Some(format!("{job}@{scheduled_at}")));
}

/// Starts the example against the fake API (and, when given, the test database), with the
/// jobs' own schedules paused: only the runs a test triggers happen.
async fn start(base_url: &str, database_url: Option<&str>) -> Example {
    set_token();
    let mut substitute = vec![("${env:OMS_URL}", base_url.to_owned())];
    if let Some(url) = database_url {
        substitute.push(("${env:DATABASE_URL}", url.to_owned()));
    }
    let example = Example::start("order-management", &substitute).await;
    example.scheduler.pause_firing();
    // The token stays a reference in the job as the scheduler (and its store) holds it.
    for job in ["ecomanager-order-sync", "shipping-status-sync"] {
        let spec = example.scheduler.job(&JobName::new(job).unwrap()).unwrap();
        let Action::Http(http) = &spec.action else {
            panic!("{job} is not an HTTP job: {:?}", spec.action);
        };
        assert_eq!(
            http.headers["Authorization"],
            "Bearer ${env:OMS_ADMIN_TOKEN}"
        );
    }
    example
}

/// Triggers `job` and returns its first attempt once it has finished, without waiting for the
/// retries its policy may schedule (`events` must be subscribed before).
async fn first_attempt(
    example: &Example,
    events: &mut broadcast::Receiver<SchedulerEvent>,
    job: &str,
) -> Run {
    let triggered = example
        .scheduler
        .trigger(&JobName::new(job).unwrap())
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .unwrap_or_else(|_| panic!("{job} did not finish within 60 s"))
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            if run.id == triggered.id {
                return run;
            }
        }
    }
}

/// The runs of `job` finished after those already read from `events`, up to now.
fn finished_since(events: &mut broadcast::Receiver<SchedulerEvent>, job: &str) -> Vec<Run> {
    let mut runs = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let SchedulerEvent::RunFinished(run) = event {
            if run.job.as_str() == job {
                runs.push(run);
            }
        }
    }
    runs
}

#[tokio::test]
async fn seed_order_management_syncs_call_the_api_and_the_cleanup_deletes_old_logs() {
    let Some(db) = TestDatabase::create(Engine::Postgres, "cw_oms").await else {
        return;
    };
    let dir = example_dir("order-management");
    db.load(&dir.join("schema.sql")).await;
    db.load(&dir.join("seed.sql")).await;
    let oms = FakeOms::new(TOKEN);
    let base = oms.serve().await;
    let mut example = start(&base, Some(&db.url)).await;

    // EcoManager: one POST to the trigger endpoint with the admin token and the run's
    // identity; the app's answer is kept, the token is not.
    let output = example.succeeds("ecomanager-order-sync").await;
    assert!(!output.contains(TOKEN), "{output}");
    let (line, body) = response(&output);
    assert_status_line(
        line,
        &format!("{base}/api/v1/scheduler/trigger/ecomanager"),
        "200 OK",
    );
    assert_eq!(
        body,
        json!({
            "success": true,
            "message": "EcoManager sync triggered successfully",
            "data": {"success": true, "message": "EcoManager sync completed"}
        })
    );

    // Maystro shipping status: the same, on its own endpoint.
    let output = example.succeeds("shipping-status-sync").await;
    assert!(!output.contains(TOKEN), "{output}");
    let (line, body) = response(&output);
    assert_status_line(
        line,
        &format!("{base}/api/v1/scheduler/trigger/shipping"),
        "200 OK",
    );
    assert_eq!(
        body["message"],
        "Shipping Status sync triggered successfully"
    );

    let calls = oms.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].job.as_deref(), Some("ecomanager-order-sync"));
    assert_eq!(calls[0].path, "/api/v1/scheduler/trigger/ecomanager");
    assert_eq!(calls[1].job.as_deref(), Some("shipping-status-sync"));
    assert_eq!(calls[1].path, "/api/v1/scheduler/trigger/shipping");
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(call.attempt.as_deref(), Some("1"));
        let job = call.job.as_deref().unwrap();
        let scheduled_at = call.scheduled_at.as_deref().unwrap();
        scheduled_at
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{scheduled_at}: {e}"));
        assert_eq!(call.idempotency_key, Some(format!("{job}@{scheduled_at}")));
        assert!(call.run_id.as_deref().unwrap().parse::<i64>().is_ok());
    }

    // The cleanup: the 2502 logs over 30 days old go, in rounds of 1000; the three younger
    // ones (one only a minute under the limit) stay.
    assert_eq!(db.count("SELECT count(*) FROM activity_logs").await, 2505);
    assert_eq!(
        example.succeeds("daily-cleanup").await,
        "2502 rows affected in 4 batches (at most 1000 in one)"
    );
    assert_eq!(
        db.strings(r#"SELECT id FROM activity_logs ORDER BY "timestamp""#)
            .await,
        ["just-under", "yesterday", "this-hour"]
    );

    // Run again, it finds nothing left to do.
    assert_eq!(
        example.succeeds("daily-cleanup").await,
        "0 rows affected in 1 batch (at most 0 in one)"
    );
    example.stop().await;
    db.drop().await;
}

/// A 500 (the app's sync threw: Redis or the database went away) fails the attempt retryably.
/// The job's retries wait a minute (1m, then 2m), longer than a test should, so the test checks
/// the failed first attempt and that its retry is claimed for later: when the scheduler stops
/// first, that retry is recorded interrupted. The retry's own call is not made here.
#[tokio::test]
async fn seed_order_management_a_server_error_fails_the_attempt_and_leaves_a_retry() {
    let oms = FakeOms::new(TOKEN);
    oms.fail_next(StatusCode::INTERNAL_SERVER_ERROR);
    let base = oms.serve().await;
    let example = start(&base, None).await;
    let job = "ecomanager-order-sync";
    let retry = example
        .config
        .jobs
        .iter()
        .find(|j| j.name.as_str() == job)
        .unwrap()
        .retry;
    assert_eq!(retry.max_attempts, 3);
    assert_eq!(retry.initial_delay, SignedDuration::from_mins(1));
    let mut events = example.scheduler.subscribe();

    let failed = first_attempt(&example, &mut events, job).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.attempt, 1);
    assert_eq!(
        failed.error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    let output = failed.output.clone().unwrap();
    assert!(!output.contains(TOKEN), "{output}");
    let (line, body) = response(&output);
    assert_status_line(
        line,
        &format!("{base}/api/v1/scheduler/trigger/ecomanager"),
        "500 Internal Server Error",
    );
    assert_eq!(body["message"], "Failed to trigger EcoManager sync");

    // The API is back; an operator triggers the sync by hand, which succeeds.
    let manual = first_attempt(&example, &mut events, job).await;
    assert_eq!(manual.status, RunStatus::Succeeded, "{:?}", manual.error);
    let calls = oms.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_call(&calls[0], &failed, "/api/v1/scheduler/trigger/ecomanager");
    assert_call(&calls[1], &manual, "/api/v1/scheduler/trigger/ecomanager");

    // The failed fire's retry was still waiting for its minute: the stop leaves it queued, for
    // the next start to run.
    let store = example.store.clone();
    example.stop().await;
    assert!(finished_since(&mut events, job).is_empty());
    let filter = cronwarden::store::RunFilter {
        job: Some(failed.job.clone()),
        ..Default::default()
    };
    let retry = cronwarden::store::Store::list_runs(&*store, &filter)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.attempt == 2)
        .expect("the retry, in the store");
    assert_eq!(
        (retry.trigger, retry.status, retry.scheduled_at),
        (Trigger::Retry, RunStatus::Queued, failed.scheduled_at)
    );
    assert_eq!(oms.calls().len(), 2);
}

/// A 401 (the admin token expired or was rotated in the app) fails the run at once: no retry
/// is claimed, even though the job allows three attempts.
#[tokio::test]
async fn seed_order_management_an_unauthorized_sync_fails_without_retries() {
    // The app now expects another token than the one the daemon holds.
    let oms = FakeOms::new("eyJhbGciOiJIUzI1NiJ9.rotated.c2lnbmF0dXJl");
    let base = oms.serve().await;
    let example = start(&base, None).await;
    let job = "shipping-status-sync";
    let mut events = example.scheduler.subscribe();

    let failed = first_attempt(&example, &mut events, job).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.attempt, 1);
    assert_eq!(failed.error.as_deref(), Some("HTTP 401 Unauthorized"));
    let output = failed.output.clone().unwrap();
    assert!(!output.contains(TOKEN), "{output}");
    let (line, body) = response(&output);
    assert_status_line(
        line,
        &format!("{base}/api/v1/scheduler/trigger/shipping"),
        "401 Unauthorized",
    );
    assert_eq!(body["message"], "Invalid or expired token");

    // A second run, triggered by hand, fails the same way; by the time it has, a retry of the
    // first would have been claimed (as the 500 test shows), and none is.
    let again = first_attempt(&example, &mut events, job).await;
    assert_eq!(again.error.as_deref(), Some("HTTP 401 Unauthorized"));
    let calls = oms.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_call(&calls[0], &failed, "/api/v1/scheduler/trigger/shipping");
    assert_call(&calls[1], &again, "/api/v1/scheduler/trigger/shipping");
    example.stop().await;
    let later = finished_since(&mut events, job);
    assert!(later.is_empty(), "{later:#?}");
    assert_eq!(oms.calls().len(), 2);
}
