//! The auth service's user status sync written in Rust (the engine's example
//! `auth_status_sync`, `examples/auth-status-sync` for its schema and data) on a real
//! PostgreSQL: the example's `schema.sql` and `seed.sql` loaded into a fresh database, a fake
//! organisation-registration service answering the batch status lookups, and the sync run as a
//! Rust job through a real scheduler, with its retries.

mod support;
#[path = "../examples/auth_status_sync/sync.rs"]
mod sync;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, RunContext, RustJobs};
use cronwarden::model::{
    Action, JobName, JobSpec, OverlapPolicy, RetryPolicy, Run, RunStatus, Trigger,
};
use cronwarden_test_support::PgDatabase;
use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use support::Running;

const JOB: &str = "user-status-sync";
/// Smaller than the 12 linked organisation users of `seed.sql`: three batches (5, 5, 2).
const BATCH_SIZE: i64 = 5;
const MAX_ATTEMPTS: u32 = 4;

// ---- the database ----

/// A fresh database of its own on the test server, dropped by [`TestDatabase::drop`].
struct TestDatabase {
    pool: PgPool,
    /// Dropped (with `FORCE`) after the pool is closed.
    database: PgDatabase,
}

impl TestDatabase {
    /// `None` (after saying why) when no PostgreSQL answers, except under `CI=true`.
    async fn create() -> Option<TestDatabase> {
        let database = PgDatabase::create("cw_auth")?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database.url)
            .await
            .unwrap();
        Some(TestDatabase { pool, database })
    }

    /// Runs an example's SQL file.
    async fn load(&self, file: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/auth-status-sync")
            .join(file);
        let sql =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Every user's email and status, in id order.
    async fn statuses(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT email, status FROM users ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// The audit trail: (email, old status, new status, registration status, source).
    async fn audit(&self) -> Vec<(String, String, String, String, String)> {
        sqlx::query_as(
            "SELECT u.email, a.old_status, a.new_status, a.registration_status, a.source \
             FROM user_status_audit a JOIN users u ON u.id = a.user_id ORDER BY a.id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn drop(self) {
        self.pool.close().await;
        drop(self.database);
    }
}

/// The users as `seed.sql` has them.
const SEEDED: [(&str, &str); 15] = [
    ("admin@auth.example", "active"),
    ("greenfields@org.example", "pending_registration"),
    ("bluewater@org.example", "pending_registration"),
    ("northwind@org.example", "pending_registration"),
    ("redbrick@org.example", "active"),
    ("silverline@org.example", "pending_registration"),
    ("oakridge@org.example", "suspended"),
    ("sunrise@org.example", "active"),
    ("harbor@org.example", "active"),
    ("quarry@org.example", "active"),
    ("ghost@org.example", "active"),
    ("maple@org.example", "pending_registration"),
    ("newcomer@org.example", "pending_registration"),
    ("asha@mail.example", "active"),
    ("lost@org.example", "suspended"),
];

fn owned(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    rows.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

// ---- the fake organisation service ----

/// The organisation service's registrations, by number. ORG-2024-0010 is unknown to it;
/// ORG-2024-0012 is known without a status.
const REGISTRATIONS: [(&str, Option<&str>); 11] = [
    ("ORG-2024-0001", Some("approved")),
    ("ORG-2024-0002", Some("rejected")),
    ("ORG-2024-0003", Some("certified")),
    ("ORG-2024-0004", Some("draft")),
    ("ORG-2024-0005", Some("submitted")),
    ("ORG-2024-0006", Some("under_review")),
    ("ORG-2024-0007", Some("clarification")),
    ("ORG-2024-0008", Some("approved")),
    ("ORG-2024-0009", Some("rejected")),
    ("ORG-2024-0011", Some("withdrawn")),
    ("ORG-2024-0012", None),
];

const SERVICE_TOKEN: &str = "org-service-token";

/// `POST /api/registrations/batch/status`, answering from [`REGISTRATIONS`]; the calls listed
/// in `fail` (1 for the first) get that status instead.
#[derive(Clone, Default)]
struct OrgService {
    calls: Arc<AtomicU32>,
    /// The registration numbers asked for, call by call (failed calls included).
    requests: Arc<Mutex<Vec<Vec<String>>>>,
    fail: Arc<HashMap<u32, StatusCode>>,
}

async fn batch_status(
    State(org): State<OrgService>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let call = org.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let numbers: Vec<String> = body["registrationNumbers"]
        .as_array()
        .expect("a registrationNumbers array")
        .iter()
        .map(|n| n.as_str().expect("numbers are strings").to_owned())
        .collect();
    org.requests.lock().unwrap().push(numbers.clone());
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {SERVICE_TOKEN}"));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "missing service token").into_response();
    }
    if let Some(status) = org.fail.get(&call) {
        let message = match *status {
            StatusCode::UNAUTHORIZED => "invalid service token",
            _ => "registration database unavailable",
        };
        return (*status, message).into_response();
    }
    let known: HashMap<&str, Option<&str>> = REGISTRATIONS.into_iter().collect();
    let registrations: Vec<Value> = numbers
        .iter()
        .filter_map(|n| {
            known
                .get(n.as_str())
                .map(|status| json!({"registrationNumber": n, "status": status}))
        })
        .collect();
    Json(json!({ "registrations": registrations })).into_response()
}

async fn serve(org: OrgService) -> String {
    support::serve(
        Router::new()
            .route(sync::BATCH_STATUS_PATH, post(batch_status))
            .with_state(org),
    )
    .await
}

// ---- the scheduler ----

/// The example's job, run by a scheduler on a fresh store: the sync registered as a Rust job,
/// 4 attempts (retries 10 ms apart here), no overlap. It has no schedule here, so that only the
/// test's triggers run it.
async fn start(pool: PgPool, org_url: String) -> Running {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {SERVICE_TOKEN}").parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let jobs = RustJobs::new().register(JOB, move |ctx: RunContext| {
        let (pool, http, org_url) = (pool.clone(), http.clone(), org_url.clone());
        async move {
            sync::sync_statuses(&pool, &http, &org_url, BATCH_SIZE, &ctx.cancel)
                .await
                .map(|report| report.to_string())
        }
    });
    let mut spec = JobSpec::new(
        JobName::new(JOB).unwrap(),
        None,
        Action::Rust {
            handler: JOB.to_owned(),
        },
    );
    spec.timeout = Some(SignedDuration::from_mins(1));
    spec.overlap = OverlapPolicy::Skip;
    spec.retry = RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        initial_delay: SignedDuration::from_millis(10),
        multiplier: 2.0,
        max_delay: SignedDuration::from_millis(100),
        jitter: 0.0,
    };
    Running::start(vec![spec], Executors::new(jobs), Arc::new(SystemClock)).await
}

/// Stops the scheduler; returns every run of the job it recorded, oldest first.
async fn stop(running: Running) -> Vec<Run> {
    running.scheduler.stop().await;
    running.runs(JOB).await
}

// ---- the tests ----

#[test]
fn seed_auth_status_sync_maps_every_registration_status() {
    for (registration, account) in [
        ("approved", Some("active")),
        ("rejected", Some("suspended")),
        ("certified", Some("active")),
        ("draft", Some("pending_registration")),
        ("submitted", Some("pending_registration")),
        ("under_review", Some("pending_registration")),
        ("clarification", Some("pending_registration")),
        // As the service may write them.
        ("Approved", Some("active")),
        (" REJECTED ", Some("suspended")),
        // Unknown: the user is left alone.
        ("withdrawn", None),
        ("under review", None),
        ("", None),
    ] {
        assert_eq!(
            sync::account_status(registration),
            account,
            "{registration:?}"
        );
    }
}

#[tokio::test]
async fn seed_auth_status_sync_updates_every_linked_user_in_batches_after_a_retry() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    db.load("schema.sql").await;
    db.load("seed.sql").await;
    assert_eq!(db.statuses().await, owned(&SEEDED));
    // The first call fails as a busy service would: the first attempt fails, retryably.
    let org = OrgService {
        fail: Arc::new(HashMap::from([(1, StatusCode::INTERNAL_SERVER_ERROR)])),
        ..OrgService::default()
    };
    let org_url = serve(org.clone()).await;
    let mut running = start(db.pool.clone(), org_url).await;

    let attempts = running.trigger_to_the_end(JOB, MAX_ATTEMPTS).await;
    let summary: Vec<_> = attempts
        .iter()
        .map(|r| (r.attempt, r.trigger, r.status))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Trigger::Manual, RunStatus::Failed),
            (2, Trigger::Retry, RunStatus::Succeeded),
        ],
        "{attempts:#?}"
    );
    assert_eq!(
        attempts[0].error.as_deref(),
        Some(
            "batch 1 (users after id 0): the organisation service answered 500 Internal Server \
             Error: registration database unavailable; committed before it: 0 users checked in \
             0 batches: 0 updated, 0 unchanged, 0 not known to the organisation service, 0 with \
             an unknown registration status"
        )
    );
    assert_eq!(
        attempts[1].output.as_deref(),
        Some(
            "12 users checked in 3 batches: 7 updated (active 2, pending_registration 3, \
             suspended 2), 2 unchanged, 2 not known to the organisation service, 1 with an \
             unknown registration status (withdrawn 1)"
        )
    );

    // Only linked organisation users were asked for, in id order, at most a batch at a time.
    let numbers = |range: std::ops::RangeInclusive<u32>| -> Vec<String> {
        range.map(|n| format!("ORG-2024-{n:04}")).collect()
    };
    assert_eq!(
        *org.requests.lock().unwrap(),
        [
            numbers(1..=5), // the call that failed
            numbers(1..=5),
            numbers(6..=10),
            numbers(11..=12),
        ]
    );

    assert_eq!(
        db.statuses().await,
        owned(&[
            ("admin@auth.example", "active"), // not an organisation: untouched
            ("greenfields@org.example", "active"), // approved
            ("bluewater@org.example", "suspended"), // rejected
            ("northwind@org.example", "active"), // certified
            ("redbrick@org.example", "pending_registration"), // draft
            ("silverline@org.example", "pending_registration"), // submitted
            ("oakridge@org.example", "pending_registration"), // under_review
            ("sunrise@org.example", "pending_registration"), // clarification
            ("harbor@org.example", "active"), // approved (already)
            ("quarry@org.example", "suspended"), // rejected
            ("ghost@org.example", "active"),  // unknown to the service: untouched
            ("maple@org.example", "pending_registration"), // "withdrawn": untouched
            ("newcomer@org.example", "pending_registration"), // no registration number
            ("asha@mail.example", "active"),  // not an organisation: untouched
            ("lost@org.example", "suspended"), // no status at the service: untouched
        ])
    );
    let audited = |email: &str, old: &str, new: &str, registration: &str| {
        (
            email.to_owned(),
            old.to_owned(),
            new.to_owned(),
            registration.to_owned(),
            sync::AUDIT_SOURCE.to_owned(),
        )
    };
    let trail = [
        audited(
            "greenfields@org.example",
            "pending_registration",
            "active",
            "approved",
        ),
        audited(
            "bluewater@org.example",
            "pending_registration",
            "suspended",
            "rejected",
        ),
        audited(
            "northwind@org.example",
            "pending_registration",
            "active",
            "certified",
        ),
        audited(
            "redbrick@org.example",
            "active",
            "pending_registration",
            "draft",
        ),
        audited(
            "oakridge@org.example",
            "suspended",
            "pending_registration",
            "under_review",
        ),
        audited(
            "sunrise@org.example",
            "active",
            "pending_registration",
            "clarification",
        ),
        audited("quarry@org.example", "active", "suspended", "rejected"),
    ];
    assert_eq!(db.audit().await, trail);
    let synced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE status_synced_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(synced, 7);

    // Run again, nothing changes: the sync converges and can always be run once more.
    let attempts = running.trigger_to_the_end(JOB, MAX_ATTEMPTS).await;
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].status, RunStatus::Succeeded);
    assert_eq!(
        attempts[0].output.as_deref(),
        Some(
            "12 users checked in 3 batches: 0 updated, 9 unchanged, 2 not known to the \
             organisation service, 1 with an unknown registration status (withdrawn 1)"
        )
    );
    assert_eq!(db.audit().await, trail);

    assert_eq!(stop(running).await.len(), 3);
    db.drop().await;
}

#[tokio::test]
async fn seed_auth_status_sync_keeps_committed_batches_and_does_not_retry_a_refusal() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    db.load("schema.sql").await;
    db.load("seed.sql").await;
    // The second batch's call is refused: no retry can fix a rejected service token.
    let org = OrgService {
        fail: Arc::new(HashMap::from([(2, StatusCode::UNAUTHORIZED)])),
        ..OrgService::default()
    };
    let org_url = serve(org.clone()).await;
    let mut running = start(db.pool.clone(), org_url).await;

    running
        .scheduler
        .trigger(&JobName::new(JOB).unwrap())
        .await
        .unwrap();
    let run = running.finished(JOB).await;
    assert_eq!(
        (run.attempt, run.status),
        (1, RunStatus::Failed),
        "{run:#?}"
    );
    assert_eq!(
        run.error.as_deref(),
        Some(
            "batch 2 (users after id 6): the organisation service answered 401 Unauthorized: \
             invalid service token; committed before it: 5 users checked in 1 batch: 4 updated \
             (active 2, pending_registration 1, suspended 1), 1 unchanged, 0 not known to the \
             organisation service, 0 with an unknown registration status"
        )
    );
    // The fatal error was not retried: the scheduler recorded that one attempt only.
    let runs = stop(running).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(org.calls.load(Ordering::SeqCst), 2);

    // The first batch is committed; the users after it are as they were.
    let mut expected = owned(&SEEDED);
    for (email, status) in [
        ("greenfields@org.example", "active"),
        ("bluewater@org.example", "suspended"),
        ("northwind@org.example", "active"),
        ("redbrick@org.example", "pending_registration"),
    ] {
        let row = expected.iter_mut().find(|(e, _)| e == email).unwrap();
        row.1 = status.to_owned();
    }
    assert_eq!(db.statuses().await, expected);
    assert_eq!(db.audit().await.len(), 4);
    db.drop().await;
}
