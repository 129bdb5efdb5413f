//! HTTP jobs against a real HTTP server started by each test.
//!
//! Outcome rules (which statuses succeed, which may be retried) are checked on the executor;
//! retries, `Retry-After` and timeouts through a running scheduler.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::Router;
use cronwarden::clock::{Clock, SystemClock, TestClock};
use cronwarden::executor::{http, Executor, Executors, Outcome, RunContext, RustJobs};
use cronwarden::model::{
    Action, HttpAction, JobName, JobSpec, RetryPolicy, RunId, RunStatus, Trigger,
};
use jiff::{SignedDuration, Timestamp};
use support::{serve, Running};
use tokio_util::sync::CancellationToken;

fn http_action(url: String) -> HttpAction {
    HttpAction {
        method: "GET".to_owned(),
        url,
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
        body: None,
        json: None,
        timeout: None,
        success_status: Vec::new(),
        hmac_secret: None,
        keep_headers: Vec::new(),
    }
}

fn job(name: &str, action: HttpAction) -> JobSpec {
    JobSpec::new(JobName::new(name).unwrap(), None, Action::Http(action))
}

fn ctx() -> RunContext {
    RunContext {
        run_id: RunId(41),
        job: JobName::new("call").unwrap(),
        scheduled_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        attempt: 2,
        trigger: Trigger::Retry,
        cancel: CancellationToken::new(),
    }
}

async fn execute(action: HttpAction) -> Outcome {
    Executors::new(RustJobs::new())
        .execute(&Action::Http(action), &ctx())
        .await
}

/// Requests seen by the test server: their headers and bodies.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(HeaderMap, String)>>>);

fn status_router(seen: Seen) -> Router {
    Router::new()
        .route(
            "/status/{code}",
            any(
                |State(seen): State<Seen>,
                 axum::extract::Path(code): axum::extract::Path<u16>,
                 headers: HeaderMap,
                 body: String| async move {
                    seen.0.lock().unwrap().push((headers, body));
                    let status = StatusCode::from_u16(code).unwrap();
                    (
                        status,
                        [("x-request-id", "req-7")],
                        format!("answer {code}"),
                    )
                },
            ),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .with_state(seen)
}

#[tokio::test]
async fn a_success_keeps_status_chosen_headers_and_body_and_sends_the_run_identity() {
    let seen = Seen::default();
    let base = serve(status_router(seen.clone())).await;
    let mut action = http_action(format!("{base}/status/200"));
    action.method = "post".to_owned();
    action.json = Some(serde_json::json!({"since": "1h"}));
    action.query = BTreeMap::from([("batch".to_owned(), "50".to_owned())]);
    action.headers = BTreeMap::from([("x-team".to_owned(), "auth".to_owned())]);
    action.keep_headers = vec!["X-Request-Id".to_owned()];
    let Outcome::Succeeded { output, .. } = execute(action).await else {
        panic!("expected success");
    };
    let output = output.unwrap();
    assert!(output.contains("-> 200 OK"), "{output}");
    assert!(output.contains("x-request-id: req-7"), "{output}");
    assert!(output.ends_with("answer 200"), "{output}");

    let (headers, body) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(body, r#"{"since":"1h"}"#);
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("x-team").as_deref(), Some("auth"));
    assert_eq!(header(http::headers::JOB).as_deref(), Some("call"));
    assert_eq!(header(http::headers::RUN_ID).as_deref(), Some("41"));
    assert_eq!(header(http::headers::ATTEMPT).as_deref(), Some("2"));
    assert_eq!(
        header(http::headers::SCHEDULED_AT).as_deref(),
        Some("2026-11-23T12:00:00Z")
    );
    assert_eq!(
        header(http::headers::IDEMPOTENCY_KEY).as_deref(),
        Some("call@2026-11-23T12:00:00Z")
    );
    assert!(header("user-agent").unwrap().starts_with("cronwarden/"));
}

#[tokio::test]
async fn statuses_decide_success_retry_or_a_fatal_failure() {
    let base = serve(status_router(Seen::default())).await;
    for (code, expected) in [
        (204, None),
        (500, Some(true)),
        (503, Some(true)),
        (502, Some(true)),
        (408, Some(true)),
        (429, Some(true)),
        (404, Some(false)),
        (400, Some(false)),
        (401, Some(false)),
    ] {
        let outcome = execute(http_action(format!("{base}/status/{code}"))).await;
        match (outcome, expected) {
            (Outcome::Succeeded { .. }, None) => {}
            (
                Outcome::Failed {
                    retryable,
                    error,
                    output,
                    ..
                },
                Some(expected_retryable),
            ) => {
                assert_eq!(retryable, expected_retryable, "status {code}");
                assert!(error.starts_with(&format!("HTTP {code}")), "{error}");
                assert!(output.unwrap().contains(&format!("answer {code}")));
            }
            (outcome, _) => panic!("status {code}: {outcome:?}"),
        }
    }
    // success_status replaces "any 2xx".
    let mut action = http_action(format!("{base}/status/404"));
    action.success_status = vec![200, 404];
    assert!(matches!(execute(action).await, Outcome::Succeeded { .. }));
    let mut action = http_action(format!("{base}/status/201"));
    action.success_status = vec![200];
    assert!(matches!(
        execute(action).await,
        Outcome::Failed {
            retryable: false,
            ..
        }
    ));
}

#[tokio::test]
async fn network_errors_and_request_timeouts_may_be_retried() {
    // A port nothing listens on: bind one, note it, close it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    match execute(http_action(format!("http://127.0.0.1:{port}/"))).await {
        Outcome::Failed {
            retryable, error, ..
        } => {
            assert!(retryable);
            assert!(error.to_lowercase().contains("connect"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let base = serve(status_router(Seen::default())).await;
    let mut action = http_action(format!("{base}/slow"));
    action.timeout = Some(SignedDuration::from_millis(200));
    match execute(action).await {
        Outcome::Failed {
            retryable, error, ..
        } => {
            assert!(retryable);
            assert_eq!(error, "the request timed out after 200ms");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_500_then_a_success_on_retry() {
    let calls = Arc::new(AtomicU32::new(0));
    let router = Router::new()
        .route(
            "/flaky",
            get(|State(calls): State<Arc<AtomicU32>>| async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => (StatusCode::INTERNAL_SERVER_ERROR, "database down"),
                    _ => (StatusCode::OK, "synced 12 users"),
                }
            }),
        )
        .with_state(calls.clone());
    let base = serve(router).await;
    let mut spec = job("flaky", http_action(format!("{base}/flaky")));
    spec.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: SignedDuration::from_millis(10),
        ..RetryPolicy::default()
    };
    let mut running = Running::start(
        vec![spec],
        Executors::new(RustJobs::new()),
        Arc::new(SystemClock),
    )
    .await;
    let attempts = running.trigger_to_the_end("flaky", 3).await;
    let summary: Vec<_> = attempts
        .iter()
        .map(|r| (r.attempt, r.status, r.error.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                1,
                RunStatus::Failed,
                Some("HTTP 500 Internal Server Error".to_owned())
            ),
            (2, RunStatus::Succeeded, None),
        ]
    );
    assert!(attempts[1]
        .output
        .as_deref()
        .unwrap()
        .contains("synced 12 users"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    running.stop().await;
}

#[tokio::test]
async fn a_429_retry_after_holds_the_retry_back_longer_than_the_backoff() {
    let calls = Arc::new(AtomicU32::new(0));
    let router = Router::new()
        .route(
            "/limited",
            get(|State(calls): State<Arc<AtomicU32>>| async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "30")],
                        "slow down",
                    )
                        .into_response(),
                    _ => "ok".into_response(),
                }
            }),
        )
        .with_state(calls.clone());
    let base = serve(router).await;
    let mut spec = job("limited", http_action(format!("{base}/limited")));
    spec.retry = RetryPolicy {
        max_attempts: 2,
        initial_delay: SignedDuration::from_secs(1),
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    // A test clock: the 30 s pass when the test says so.
    let clock = TestClock::new("2026-11-23T12:00:00Z".parse().unwrap());
    let mut running = Running::start(
        vec![spec],
        Executors::new(RustJobs::new()),
        Arc::new(clock.clone()),
    )
    .await;
    running
        .scheduler
        .trigger(&JobName::new("limited").unwrap())
        .await
        .unwrap();
    let first = running.finished("limited").await;
    assert_eq!(first.error.as_deref(), Some("HTTP 429 Too Many Requests"));
    let failed_at = first.finished_at.unwrap();
    // Move time on in 5 s steps until the retry has run.
    let retry = loop {
        clock.advance(SignedDuration::from_secs(5));
        if let Ok(Ok(cronwarden::scheduler::SchedulerEvent::RunFinished(run))) =
            tokio::time::timeout(Duration::from_millis(50), running.events.recv()).await
        {
            break run;
        }
        assert!(clock.now() < failed_at + SignedDuration::from_secs(120));
    };
    assert_eq!(retry.status, RunStatus::Succeeded);
    let waited = retry.started_at.unwrap().duration_since(failed_at);
    assert!(
        waited >= SignedDuration::from_secs(30) && waited <= SignedDuration::from_secs(35),
        "the retry came {waited:#} after the 429, not 30 s (Retry-After) to 35 s"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_job_timeout_cancels_the_call_and_records_timed_out() {
    let base = serve(status_router(Seen::default())).await;
    let mut spec = job("slow", http_action(format!("{base}/slow")));
    spec.timeout = Some(SignedDuration::from_millis(300));
    let mut running = Running::start(
        vec![spec],
        Executors::new(RustJobs::new()),
        Arc::new(SystemClock),
    )
    .await;
    let attempts = running.trigger_to_the_end("slow", 1).await;
    assert_eq!(attempts[0].status, RunStatus::TimedOut);
    assert_eq!(attempts[0].error.as_deref(), Some("timed out after 300ms"));
    running.stop().await;
}

/// A receiver that accepts a call only with a valid signature made in the last five minutes.
fn signed_router(secret: &'static str) -> Router {
    Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| async move {
            let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let (Some(timestamp), Some(signature)) =
                (get(http::headers::TIMESTAMP), get(http::headers::SIGNATURE))
            else {
                return (StatusCode::UNAUTHORIZED, "unsigned");
            };
            let age = Timestamp::now().as_second() - timestamp.parse::<i64>().unwrap();
            let expected = http::signature(secret.as_bytes(), timestamp, body.as_bytes());
            if age.abs() > 300 || expected != signature {
                return (StatusCode::UNAUTHORIZED, "bad signature");
            }
            (StatusCode::OK, "verified")
        }),
    )
}

#[tokio::test]
async fn the_receiver_verifies_the_hmac_signature_made_with_the_shared_secret() {
    std::env::set_var("CW_TEST_HOOK_SECRET", "hook-shared-secret");
    let base = serve(signed_router("hook-shared-secret")).await;
    let mut action = http_action(format!("{base}/hook"));
    action.method = "POST".to_owned();
    action.body = Some("payload".to_owned());
    action.hmac_secret = Some("${env:CW_TEST_HOOK_SECRET}".to_owned());
    match execute(action.clone()).await {
        Outcome::Succeeded { output, .. } => assert!(output.unwrap().ends_with("verified")),
        other => panic!("{other:?}"),
    }
    action.hmac_secret = Some("another-secret".to_owned());
    assert!(matches!(
        execute(action.clone()).await,
        Outcome::Failed { retryable: false, error, .. } if error.starts_with("HTTP 401")
    ));
    action.hmac_secret = None;
    assert!(matches!(
        execute(action).await,
        Outcome::Failed {
            retryable: false,
            ..
        }
    ));
}

#[tokio::test]
async fn secret_values_are_sent_but_redacted_from_what_the_run_keeps() {
    std::env::set_var("CW_TEST_API_TOKEN", "tok-5f2a9c81e7");
    // A careless endpoint that echoes the credentials back, in a header and the body.
    let router = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let auth = headers["authorization"].to_str().unwrap().to_owned();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("x-echo", auth.clone())],
                format!("you sent {auth}"),
            )
        }),
    );
    let base = serve(router).await;
    let mut action = http_action(format!("{base}/echo"));
    action.headers = BTreeMap::from([(
        "Authorization".to_owned(),
        "Bearer ${env:CW_TEST_API_TOKEN}".to_owned(),
    )]);
    action.keep_headers = vec!["x-echo".to_owned()];
    let mut spec = job("echo", action);
    spec.retry.max_attempts = 1;
    let mut running = Running::start(
        vec![spec],
        Executors::new(RustJobs::new()),
        Arc::new(SystemClock),
    )
    .await;
    let run = running.trigger_to_the_end("echo", 1).await.remove(0);
    let output = run.output.clone().unwrap();
    assert!(output.contains("you sent Bearer [redacted]"), "{output}");
    assert!(output.contains("x-echo: Bearer [redacted]"), "{output}");
    let db_path = running.db_path.clone();
    running.stop().await;
    // Neither the database nor its write-ahead log holds the value anywhere.
    for file in [db_path.clone(), format!("{db_path}-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            let found = bytes.windows(14).any(|w| w == b"tok-5f2a9c81e7");
            assert!(!found, "{file} holds the secret");
        }
    }
}

#[tokio::test]
async fn a_secret_that_the_body_limit_falls_in_is_cut_out_whole() {
    // From a file, so that no test changes the process's environment.
    let secret = "Zq7-secret-4be1f0c9d2a7-83hk0Lmw";
    assert_eq!(secret.len(), 32);
    let dir = cronwarden_test_support::TestDir::new("http-straddle");
    std::fs::write(dir.join("token"), format!("{secret}\n")).unwrap();
    // The body's first 8 KiB (the part kept) end 20 bytes into the secret it echoes.
    let router = Router::new().route(
        "/padded",
        get(|headers: HeaderMap| async move {
            let auth = headers["authorization"].to_str().unwrap().to_owned();
            format!("{}{auth}{}", ".".repeat(8 * 1024 - 20), "-".repeat(100))
        }),
    );
    let base = serve(router).await;
    let mut action = http_action(format!("{base}/padded"));
    action.headers = BTreeMap::from([(
        "Authorization".to_owned(),
        format!("${{file:{}}}", dir.join("token").display()),
    )]);
    let Outcome::Succeeded { output, .. } = execute(action).await else {
        panic!("expected success");
    };
    let output = output.unwrap();
    assert!(
        output.contains("the rest of the body was not kept"),
        "{output}"
    );
    for part in secret.as_bytes().windows(8) {
        let part = std::str::from_utf8(part).unwrap();
        assert!(!output.contains(part), "{part:?} of the secret was kept");
    }
}

#[tokio::test]
async fn a_missing_secret_fails_the_run_naming_the_field_and_the_variable() {
    let mut action = http_action("http://127.0.0.1:9/".to_owned());
    action.headers = BTreeMap::from([(
        "Authorization".to_owned(),
        "Bearer ${env:CW_TEST_NEVER_SET}".to_owned(),
    )]);
    match execute(action).await {
        Outcome::Failed {
            retryable, error, ..
        } => {
            assert!(!retryable);
            assert_eq!(
                error,
                "action.headers.Authorization: ${env:CW_TEST_NEVER_SET}: the environment variable is not set"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn http_actions_are_checked_when_the_job_is_defined() {
    let check = |edit: fn(&mut HttpAction)| {
        let mut action = http_action("https://example.com/".to_owned());
        edit(&mut action);
        job("j", action).validate().unwrap_err().to_string()
    };
    assert_eq!(
        check(|a| a.url = "ftp://example.com".to_owned()),
        "action.url: must be an http:// or https:// URL, got \"ftp://example.com\""
    );
    assert_eq!(
        check(|a| a.method = "GE T".to_owned()),
        "action.method: \"GE T\" is not an HTTP method"
    );
    assert_eq!(
        check(|a| {
            a.body = Some("x".into());
            a.json = Some(serde_json::json!(1));
        }),
        "action.json: give either body (text) or json, not both"
    );
    assert_eq!(
        check(|a| a.success_status = vec![200, 700]),
        "action.success_status: 700 is not an HTTP status"
    );
    assert_eq!(
        check(|a| {
            a.headers
                .insert("Authorization".into(), "Bearer ${env:TOKEN".into());
        }),
        "action.headers.Authorization: ${env:... is not closed with }"
    );
}
