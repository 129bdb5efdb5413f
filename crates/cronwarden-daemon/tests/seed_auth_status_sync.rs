//! The auth system's status sync (`examples/auth-status-sync`) as HTTP jobs: its own
//! `cronwarden.toml` run through the scheduler against a fake auth service, which checks what
//! each call carries (method, path, the admin token, cronwarden's run identity) and echoes the
//! token back, so that the tests can check it never reaches the run history.

mod seed_support;

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use cronwarden::model::{JobName, Run, RunStatus};
use cronwarden::scheduler::SchedulerEvent;
use seed_support::Example;
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

/// The admin token the jobs read from `${env:CRON_ADMIN_TOKEN}`.
const TOKEN: &str = "admin-token-5f2c9d71";

/// Sets `CRON_ADMIN_TOKEN` once for the whole test binary (every test uses the same value, so
/// the tests running side by side never see it change).
fn set_token() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var("CRON_ADMIN_TOKEN", TOKEN));
}

/// A call the fake auth service received.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    headers: HeaderMap,
}

/// The auth service's admin API (`/api/cron/...`), as far as the jobs use it.
#[derive(Clone)]
struct AuthService {
    /// The token it accepts.
    token: String,
    /// What its health check answers.
    health: StatusCode,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl AuthService {
    fn new(token: &str, health: StatusCode) -> AuthService {
        AuthService {
            token: token.to_owned(),
            health,
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Records the call; `Err` with the `Authorization` header it got when the token is
    /// wrong.
    fn admit(&self, method: Method, path: String, headers: HeaderMap) -> Result<String, String> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.calls.lock().unwrap().push(Call {
            method,
            path,
            headers,
        });
        if authorization == format!("Bearer {}", self.token) {
            Ok(authorization)
        } else {
            Err(authorization)
        }
    }

    fn router(self) -> Router {
        Router::new()
            .route("/api/cron/{job}/trigger", post(trigger))
            .route("/api/cron/health", get(health))
            .with_state(self)
    }
}

/// `POST /api/cron/:job/trigger`. Like a careless service, it echoes the caller's
/// `Authorization` header in its answer.
async fn trigger(
    State(auth): State<AuthService>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> axum::response::Response {
    let path = format!("/api/cron/{job}/trigger");
    match auth.admit(Method::POST, path, headers) {
        Ok(authorization) => Json(json!({
            "success": true,
            "message": format!("{job} triggered"),
            "requestedBy": authorization,
        }))
        .into_response(),
        Err(sent) => refused(&sent),
    }
}

/// `GET /api/cron/health`.
async fn health(State(auth): State<AuthService>, headers: HeaderMap) -> axum::response::Response {
    let status = auth.health;
    match auth.admit(Method::GET, "/api/cron/health".to_owned(), headers) {
        Ok(_) if status.is_success() => {
            Json(json!({"status": "healthy", "organizationService": "up"})).into_response()
        }
        Ok(_) => (
            status,
            Json(json!({"status": "unhealthy", "organizationService": "down"})),
        )
            .into_response(),
        Err(sent) => refused(&sent),
    }
}

/// 401, echoing the header the service got.
fn refused(authorization: &str) -> axum::response::Response {
    let message = format!("invalid admin token ({authorization})");
    let body = json!({"success": false, "message": message});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// Asserts that `call` is `method path`, carries the admin token and the identity of `run`.
fn assert_call(call: &Call, method: Method, path: &str, run: &Run) {
    assert_eq!(call.method, method, "{call:?}");
    assert_eq!(call.path, path, "{call:?}");
    let header = |name: &str| {
        call.headers
            .get(name)
            .unwrap_or_else(|| panic!("{path}: no {name} header: {call:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("authorization"), format!("Bearer {TOKEN}"));
    let scheduled_at = run.scheduled_at.to_string();
    assert_eq!(header("x-cronwarden-job"), run.job.as_str());
    assert_eq!(header("x-cronwarden-run-id"), run.id.to_string());
    assert_eq!(header("x-cronwarden-scheduled-at"), scheduled_at);
    assert_eq!(header("x-cronwarden-attempt"), "1");
    assert_eq!(
        header("idempotency-key"),
        format!("{}@{scheduled_at}", run.job)
    );
}

/// Asserts that nothing the run left behind holds the token.
fn assert_no_token(run: &Run) {
    for text in [&run.output, &run.error].into_iter().flatten() {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

/// The run `example` keeps of the last call to `job`.
async fn run_job(example: &mut Example, job: &str) -> Run {
    let run = example.run(job).await;
    assert_no_token(&run);
    run
}

#[tokio::test]
async fn seed_auth_status_sync_jobs_call_the_auth_service_with_the_admin_token() {
    set_token();
    let auth = AuthService::new(TOKEN, StatusCode::OK);
    let base = seed_support::serve(auth.clone().router()).await;
    let mut example = Example::start(
        "auth-status-sync",
        &[("${env:AUTH_SYSTEM_URL}", base.clone())],
    )
    .await;

    let triggers = [
        ("user-status-sync", "userStatusSync"),
        ("registration-number-sync", "userRegistrationNumberSync"),
        // Paused in the config (as in the seed); a manual trigger still runs it.
        ("account-cleanup", "accountCleanup"),
    ];
    for (n, (job, seed_job)) in triggers.into_iter().enumerate() {
        let run = run_job(&mut example, job).await;
        assert_eq!(
            (run.status, run.attempt),
            (RunStatus::Succeeded, 1),
            "{job}: {run:#?}"
        );
        let path = format!("/api/cron/{seed_job}/trigger");
        let output = run.output.clone().unwrap();
        let first_line = output.lines().next().unwrap();
        assert!(
            first_line.starts_with(&format!("POST {base}{path} -> 200 OK in "))
                && first_line.ends_with(" ms"),
            "{output}"
        );
        // The service's answer is kept, with the token it echoed cut out.
        assert!(
            output.contains(&format!(r#""message":"{seed_job} triggered""#)),
            "{output}"
        );
        assert!(
            output.contains(r#""requestedBy":"Bearer [redacted]""#),
            "{output}"
        );
        let calls = auth.calls();
        assert_eq!(calls.len(), n + 1, "{calls:#?}");
        assert_call(&calls[n], Method::POST, &path, &run);
    }

    let run = run_job(&mut example, "health-check").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let output = run.output.clone().unwrap();
    assert!(
        output.starts_with(&format!("GET {base}/api/cron/health -> 200 OK in ")),
        "{output}"
    );
    assert!(output.contains(r#""status":"healthy""#), "{output}");
    assert_call(
        auth.calls().last().unwrap(),
        Method::GET,
        "/api/cron/health",
        &run,
    );
    assert_eq!(auth.calls().len(), 4);
    example.stop().await;
}

#[tokio::test]
async fn seed_auth_status_sync_unhealthy_service_is_a_failed_check_not_retried() {
    set_token();
    let auth = AuthService::new(TOKEN, StatusCode::SERVICE_UNAVAILABLE);
    let base = seed_support::serve(auth.clone().router()).await;
    let mut example = Example::start("auth-status-sync", &[("${env:AUTH_SYSTEM_URL}", base)]).await;

    let run = run_job(&mut example, "health-check").await;
    assert_eq!(
        (run.status, run.attempt),
        (RunStatus::Failed, 1),
        "{run:#?}"
    );
    assert_eq!(run.error.as_deref(), Some("HTTP 503 Service Unavailable"));
    let output = run.output.clone().unwrap();
    assert!(output.contains(r#""status":"unhealthy""#), "{output}");
    // The health check has no retries: one call only.
    assert_eq!(auth.calls().len(), 1);
    example.stop().await;
}

#[tokio::test]
async fn seed_auth_status_sync_refused_token_fails_at_once() {
    set_token();
    // The service expects a token the daemon does not have (it was rotated there only).
    let auth = AuthService::new("rotated-token", StatusCode::OK);
    let base = seed_support::serve(auth.clone().router()).await;
    let example = Example::start("auth-status-sync", &[("${env:AUTH_SYSTEM_URL}", base)]).await;
    // `Example::run` waits for every attempt the retry policy allows, and a 401 is fatal: this
    // follows the first attempt itself.
    let mut events = example.scheduler.subscribe();
    let name = JobName::new("user-status-sync").unwrap();
    example.scheduler.trigger(&name).await.unwrap();
    let run = loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("the run finished within 30 s")
            .unwrap();
        if let SchedulerEvent::RunFinished(run) = event {
            break run;
        }
    };
    assert_eq!(
        (run.status, run.attempt),
        (RunStatus::Failed, 1),
        "{run:#?}"
    );
    assert_eq!(run.error.as_deref(), Some("HTTP 401 Unauthorized"));
    assert_no_token(&run);
    let output = run.output.clone().unwrap();
    assert!(
        output.contains("invalid admin token (Bearer [redacted])"),
        "{output}"
    );
    assert_call(
        &auth.calls()[0],
        Method::POST,
        "/api/cron/userStatusSync/trigger",
        &run,
    );

    // No retry was planned: stopping interrupts a retry still waiting, which would show here.
    example.scheduler.stop().await;
    loop {
        match events.try_recv() {
            Ok(SchedulerEvent::RunFinished(other)) => panic!("another attempt: {other:#?}"),
            Ok(_) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            Err(TryRecvError::Lagged(n)) => panic!("{n} events lost"),
        }
    }
    assert_eq!(auth.calls().len(), 1);
}
