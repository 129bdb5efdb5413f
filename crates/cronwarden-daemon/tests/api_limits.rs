//! What the API bounds, served for real on a free port and driven over HTTP: absurd job
//! definitions and bodies (400 naming the field, 413), failed logins per client address (429
//! with `Retry-After`, audited a bounded number of times, valid tokens unaffected) and the
//! bytes its page cache holds.

use std::net::IpAddr;
use std::sync::Arc;

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, Role};
use cronwarden::scheduler::{Scheduler, SchedulerConfig};
use cronwarden::store::{SqliteStore, Store};
use cronwarden_daemon::api::{self, hash_token, PageCache, FAILURE_BURST, PAGE_CACHE_BYTES};
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct App {
    base: String,
    doc: Value,
    store: Arc<SqliteStore>,
    job_pages: Arc<PageCache>,
    _dir: cronwarden_test_support::TestDir,
}

/// The token of each role: "<role>-secret-token-0123456789".
fn token(role: Role) -> String {
    format!("{role}-secret-token-0123456789")
}

async fn app() -> App {
    let dir = cronwarden_test_support::TestDir::new("api-limits");
    let store = Arc::new(
        SqliteStore::open(dir.join("state.db").to_str().unwrap())
            .await
            .unwrap(),
    );
    for role in Role::ALL {
        store
            .create_token(
                role.as_str(),
                role,
                &hash_token(&token(role)),
                Timestamp::now(),
            )
            .await
            .unwrap();
    }
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(SystemClock),
        Executors::new(RustJobs::new()),
        SchedulerConfig::default(),
    );
    scheduler.start();
    let job_pages = Arc::new(PageCache::default());
    let (router, doc) = api::router(api::AppState {
        scheduler,
        store: store.clone(),
        node: "test-node".into(),
        started_at: Timestamp::now(),
        openapi: Default::default(),
        metrics: api::metrics(),
        metrics_public: false,
        job_pages: job_pages.clone(),
        auth_failures: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    App {
        base,
        doc: serde_json::to_value(doc).unwrap(),
        store,
        job_pages,
        _dir: dir,
    }
}

/// A client whose requests come from `local` (any 127.x.y.z is this machine's loopback).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

fn job(extra: Value) -> Value {
    let mut job = json!({
        "name": "absurd",
        "schedule": "0 0 1 1 *",
        "action": { "type": "command", "argv": ["true"] },
    });
    for (key, value) in extra.as_object().unwrap() {
        job[key] = value.clone();
    }
    job
}

#[tokio::test]
async fn absurd_definitions_are_refused_naming_the_field_and_huge_bodies_are_413s() {
    let app = app().await;
    let client = reqwest::Client::new();
    let admin = token(Role::Admin);
    let absurd = "70000000h";
    let cases = [
        (job(json!({ "timeout": absurd })), "timeout"),
        (
            job(json!({ "retry": { "max_attempts": 3, "initial_delay": absurd } })),
            "retry.initial_delay",
        ),
        (
            job(json!({ "misfire": { "mode": "run_all", "window": absurd } })),
            "misfire.window",
        ),
        (
            job(json!({ "description": "d".repeat(100_000) })),
            "description",
        ),
        (
            job(json!({ "action": { "type": "command", "argv": vec!["a"; 100_000] } })),
            "action.argv",
        ),
        (job(json!({ "tags": vec!["t"; 100_000] })), "tags"),
    ];
    for (body, field) in cases {
        let response = client
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        let problem = problem(response).await;
        assert_eq!(problem["field"], field, "{problem}");
    }

    // A body over the limit is refused before it is parsed, as a problem document.
    let huge = job(json!({ "description": "d".repeat(1_900_000) }));
    for (method, path) in [
        ("POST", "/api/v1/jobs"),
        ("PUT", "/api/v1/jobs/absurd"),
        ("PATCH", "/api/v1/jobs/absurd"),
    ] {
        let response = client
            .request(method.parse().unwrap(), format!("{}{path}", app.base))
            .bearer_auth(&admin)
            .json(&huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{method}");
        let problem = problem(response).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("larger than 1024 KiB"),
            "{problem}"
        );
    }
    // Nothing was stored.
    assert!(app
        .store
        .get_job(&JobName::new("absurd").unwrap())
        .await
        .unwrap()
        .is_none());

    // A pause reason is bounded too.
    let spec = JobSpec::new(
        JobName::new("report").unwrap(),
        Some("0 0 1 1 *"),
        Action::Command {
            argv: vec!["true".into()],
            env: Default::default(),
            cwd: None,
            inherit_env: Vec::new(),
        },
    );
    app.store.upsert_job(&spec, Timestamp::now()).await.unwrap();
    let pause = |reason: String| {
        client
            .post(format!("{}/api/v1/jobs/report/pause", app.base))
            .bearer_auth(&admin)
            .json(&json!({ "reason": reason }))
            .send()
    };
    let response = pause("r".repeat(10_000)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem(response).await["field"], "reason");
    let response = pause("r".repeat(2_000_000)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// The `auth.failure` entries of the audit log, by source address.
async fn failure_audits(app: &App) -> Vec<(String, Value)> {
    let page: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/audit?limit=1000", app.base))
        .bearer_auth(token(Role::Admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.failure")
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_owned(),
                e["detail"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn failed_logins_are_limited_per_address_and_audited_a_bounded_number_of_times() {
    let app = app().await;
    let burst = FAILURE_BURST as usize;
    let attacker = client_from("127.0.0.1");
    let get = |client: &reqwest::Client, auth: Option<&str>| {
        let mut request = client.get(format!("{}/api/v1/jobs", app.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    for i in 0..burst {
        let response = get(&attacker, Some("Bearer wrong-token")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let response = get(&attacker, Some("Bearer wrong-token")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    assert_eq!(problem(response).await["status"], 429);
    // A malformed header is limited (and counted) like a wrong token; no header at all guesses
    // nothing and is a plain 401.
    let response = get(&attacker, Some("Basic d3Jvbmc6d3Jvbmc="))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = get(&attacker, None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A flood does not lock out a valid token, from this address or another.
    let viewer = format!("Bearer {}", token(Role::Viewer));
    let response = get(&attacker, Some(&viewer)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let neighbour = client_from("127.0.0.2");
    let response = get(&neighbour, Some(&viewer)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Another address has its own allowance.
    let response = get(&neighbour, Some("Bearer wrong-token")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Malformed headers alone use up an address's allowance.
    let sloppy = client_from("127.0.0.3");
    for _ in 0..burst {
        let response = get(&sloppy, Some("Bearer")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = get(&sloppy, Some("Bearer")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // The flood goes on; the audit log does not fill with it.
    for _ in 0..200 {
        let response = get(&attacker, Some("Bearer wrong-token")).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let mut audits = failure_audits(&app).await;
    audits.sort_by(|a, b| a.0.cmp(&b.0));
    let first = |malformed: u64| json!({ "failures": 1, "limited": 0, "malformed": malformed });
    assert_eq!(
        audits,
        [
            ("127.0.0.1".to_owned(), first(0)),
            ("127.0.0.2".to_owned(), first(0)),
            ("127.0.0.3".to_owned(), first(1)),
        ],
        "the first failure of each address, at once; the rest with the next report"
    );
}

#[tokio::test]
async fn the_job_page_cache_holds_no_more_than_its_budget() {
    let app = app().await;
    // 400 jobs of about 1.5 KiB each: a page of all of them is about 0.7 MiB.
    let description = "a job with a long description ".repeat(50);
    for i in 0..400 {
        let mut spec = JobSpec::new(
            JobName::new(format!("job-{i:04}")).unwrap(),
            None,
            Action::Command {
                argv: vec!["true".into()],
                env: Default::default(),
                cwd: None,
                inherit_env: Vec::new(),
            },
        );
        spec.description = description.clone();
        app.store.upsert_job(&spec, Timestamp::now()).await.unwrap();
    }
    let client = reqwest::Client::new();
    let mut served = 0;
    // 40 distinct pages of 0.6-0.7 MiB each: 26 MiB, past the budget of 16 MiB.
    for after in 0..40 {
        let body = client
            .get(format!(
                "{}/api/v1/jobs?limit=1000&after=job-{after:04}",
                app.base
            ))
            .bearer_auth(token(Role::Viewer))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        served += body.len();
        assert!(
            app.job_pages.bytes() <= PAGE_CACHE_BYTES,
            "{} bytes held",
            app.job_pages.bytes()
        );
    }
    assert!(served > PAGE_CACHE_BYTES, "{served} bytes served");
    // Full, not emptied: it keeps as much as it may.
    assert!(
        app.job_pages.bytes() > PAGE_CACHE_BYTES / 2,
        "{} bytes held",
        app.job_pages.bytes()
    );
}

#[tokio::test]
async fn the_document_declares_the_limits_of_every_route() {
    let app = app().await;
    let mut limited = 0;
    for (path, item) in app.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            let checks_token = responses.get("401").is_some();
            assert_eq!(
                responses.get("429").is_some(),
                checks_token,
                "{method} {path}: 429 wherever a token is checked"
            );
            if checks_token {
                limited += 1;
                let too_many = &responses["429"];
                assert_eq!(
                    too_many["headers"]["Retry-After"]["schema"]["type"], "integer",
                    "{method} {path}"
                );
                assert!(too_many["content"]["application/problem+json"].is_object());
            }
            assert_eq!(
                responses.get("413").is_some(),
                op.get("requestBody").is_some(),
                "{method} {path}: 413 wherever a body is read"
            );
        }
    }
    assert!(limited >= 20, "{limited}");
    assert!(app.doc["paths"]["/api/v1/jobs"]["post"]["responses"]["413"].is_object());
}
