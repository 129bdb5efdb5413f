//! The HTTP API, served for real on a free port over a fresh store and driven with an HTTP
//! client. The route table is taken from the OpenAPI document the router generates, never
//! from a list kept by hand.

use std::sync::Arc;

use cronwarden::clock::SystemClock;
use cronwarden::executor::{Executors, JobError, RustJobs};
use cronwarden::model::{Action, JobName, JobSpec, Role, RunStatus, Trigger};
use cronwarden::scheduler::{Scheduler, SchedulerConfig};
use cronwarden::store::{SqliteStore, Store};
use cronwarden_daemon::api::{self, hash_token};
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct App {
    base: String,
    doc: Value,
    store: Arc<SqliteStore>,
    scheduler: Scheduler,
    client: reqwest::Client,
    /// The store's directory, removed when the test ends.
    _dir: cronwarden_test_support::TestDir,
}

/// The token of each role: "<role>-secret-token-0123456789".
fn token(role: Role) -> String {
    format!("{role}-secret-token-0123456789")
}

async fn app() -> App {
    app_with(false).await
}

/// The app, with `/metrics` open to callers without a token or not.
async fn app_with(metrics_public: bool) -> App {
    let dir = cronwarden_test_support::TestDir::new("api");
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
    let rust = RustJobs::new().register("report", |_ctx| async {
        Ok::<_, JobError>("reported".to_owned())
    });
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(SystemClock),
        Executors::new(rust),
        SchedulerConfig::default(),
    );
    scheduler.upsert_job(report_job()).await.unwrap();
    scheduler.start();
    let (router, doc) = api::router(api::AppState {
        scheduler: scheduler.clone(),
        store: store.clone(),
        node: "test-node".into(),
        started_at: Timestamp::now(),
        openapi: Default::default(),
        metrics: api::metrics(),
        metrics_public,
        job_pages: Default::default(),
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
        scheduler,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

fn report_job() -> JobSpec {
    JobSpec::new(
        JobName::new("report").unwrap(),
        Some("0 0 1 1 *"),
        Action::Rust {
            handler: "report".into(),
        },
    )
}

/// Every operation in the document: method, path with its parameters filled in, and the role
/// it declares (`x-required-role`; `None` for open routes).
fn operations(doc: &Value) -> Vec<(String, String, Option<Role>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let filled = path.replace("{name}", "report").replace("{id}", "1");
            let role = op["x-required-role"]
                .as_str()
                .map(|r| r.parse::<Role>().unwrap());
            ops.push((method.to_uppercase(), filled, role));
        }
    }
    ops.sort();
    ops
}

impl App {
    /// Calls a route with a body that suits it: a new job for `POST /jobs`, the job itself for
    /// `PUT`, a change for `PATCH`, a reason for the rest.
    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
        self.call_with(&self.client, method, path, token).await
    }

    /// [`App::call`] through `client`.
    async fn call_with(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        use std::sync::atomic::{AtomicU32, Ordering};
        static MADE: AtomicU32 = AtomicU32::new(0);
        let body = match (method, path) {
            ("POST", "/api/v1/jobs") => json!({
                "name": format!("made-{}", MADE.fetch_add(1, Ordering::Relaxed)),
                "schedule": "0 0 1 1 *",
                "action": { "type": "command", "argv": ["true"] },
            }),
            ("PUT", _) => serde_json::to_value(report_job()).unwrap(),
            ("PATCH", _) => json!({ "description": "patched" }),
            _ => json!({ "reason": "a test" }),
        };
        let url = format!("{}{path}", self.base);
        let mut request = client.request(method.parse().unwrap(), url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn every_route_but_healthz_needs_a_valid_token() {
    let app = app().await;
    let ops = operations(&app.doc);
    assert!(ops.len() >= 20, "the document lists the routes: {ops:?}");
    for (i, (method, path, role)) in ops.iter().enumerate() {
        let open = path == "/healthz";
        assert_eq!(role.is_none(), open, "{method} {path} declares its role");
        // Each route from an address of its own: past a burst of failures, an address is
        // answered 429 (tests/api_limits.rs).
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 1, i as u8 + 1]))
            .build()
            .unwrap();
        for token in [None, Some("not-a-token"), Some("Bearer")] {
            let response = app.call_with(&client, method, path, token).await;
            if open {
                assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
                continue;
            }
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["status"], 401);
        }
    }
    // A revoked token stops working at once.
    assert!(app
        .store
        .revoke_token("admin", Timestamp::now())
        .await
        .unwrap());
    let response = app
        .call("GET", "/api/v1/jobs", Some(&token(Role::Admin)))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_role_reaches_exactly_the_routes_it_should() {
    let app = app().await;
    for (method, path, needed) in operations(&app.doc) {
        let Some(needed) = needed else { continue };
        for role in Role::ALL {
            // The job as it was (a DELETE or PATCH may have changed it).
            app.scheduler.upsert_job(report_job()).await.unwrap();
            app.scheduler
                .resume(&JobName::new("report").unwrap())
                .await
                .unwrap();
            // And a run of it, for `/runs/{id}`.
            let run = app
                .scheduler
                .trigger(&JobName::new("report").unwrap())
                .await
                .unwrap();
            let path = path.replace("/runs/1", &format!("/runs/{}", run.id));
            let response = app.call(&method, &path, Some(&token(role))).await;
            let status = response.status();
            if role >= needed {
                // Cancelling a run that has already finished is a conflict, not a refusal.
                let finished_run = path.ends_with("/cancel") && status == StatusCode::CONFLICT;
                assert!(
                    status.is_success() || finished_run,
                    "{role} on {method} {path}: {status} {}",
                    response.text().await.unwrap()
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {method} {path}");
                let problem: Value = response.json().await.unwrap();
                assert!(
                    problem["detail"]
                        .as_str()
                        .unwrap()
                        .contains(needed.as_str()),
                    "{problem}"
                );
            }
        }
    }
}

#[tokio::test]
async fn trigger_pause_and_resume_act_and_are_audited() {
    let app = app().await;
    let operator = token(Role::Operator);
    let response = app
        .call("POST", "/api/v1/jobs/report/trigger", Some(&operator))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["trigger"], "manual");
    let id = run["id"].as_i64().unwrap();
    // The run finishes and shows up in the history.
    let mut finished = None;
    for _ in 0..500 {
        let r: Value = app
            .call("GET", &format!("/api/v1/runs/{id}"), Some(&operator))
            .await
            .json()
            .await
            .unwrap();
        if r["status"] == "succeeded" {
            finished = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let finished = finished.unwrap_or_else(|| {
        panic!(
            "the triggered run did not finish: {:?}",
            futures_util::FutureExt::now_or_never(app.store.get_run(cronwarden::model::RunId(id)))
        )
    });
    assert_eq!(finished["output"], "reported");
    let page: Value = app
        .call(
            "GET",
            "/api/v1/runs?job=report&trigger=manual",
            Some(&operator),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);

    let paused: Value = app
        .call("POST", "/api/v1/jobs/report/pause", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (paused["enabled"].clone(), paused["paused"].clone()),
        (json!(false), json!("a test"))
    );
    let held = app.scheduler.job(&JobName::new("report").unwrap()).unwrap();
    assert!(!held.enabled, "the scheduler stopped firing it");
    let resumed: Value = app
        .call("POST", "/api/v1/jobs/report/resume", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["enabled"], true);
    assert!(resumed["next_fire"].is_string());

    let audit: Value = app
        .call("GET", "/api/v1/audit", Some(&token(Role::Admin)))
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("job.resume", "operator", "127.0.0.1"),
            ("job.pause", "operator", "127.0.0.1"),
            ("job.trigger", "operator", "127.0.0.1"),
        ]
    );
    let stored = app.store.list_runs(&Default::default()).await.unwrap();
    assert!(stored
        .iter()
        .any(|r| r.trigger == Trigger::Manual && r.status == RunStatus::Succeeded));
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_unknown_names_a_404() {
    let app = app().await;
    let viewer = token(Role::Viewer);
    for (path, field) in [
        ("/api/v1/jobs?limit=0", "limit"),
        ("/api/v1/runs?status=exploded", "status"),
        ("/api/v1/runs?since=yesterday", "since"),
        ("/api/v1/jobs/report/next?count=5000", "count"),
        ("/api/v1/jobs/Not%20A%20Name", "name"),
    ] {
        let response = app.call("GET", path, Some(&viewer)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field, "{path}: {problem}");
    }
    let response = app.call("GET", "/api/v1/jobs/nobody", Some(&viewer)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app.call("GET", "/api/v1/runs/999999", Some(&viewer)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // A pause without a reason, or with a malformed body, is a 400, never a 500.
    let operator = token(Role::Operator);
    for body in ["", "{", "{\"reason\": \"  \"}", "[1,2]"] {
        let response = app
            .client
            .post(format!("{}/api/v1/jobs/report/pause", app.base))
            .bearer_auth(&operator)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], "reason");
    }
}

#[tokio::test]
async fn jobs_are_created_changed_and_deleted_with_their_errors_named() {
    let app = app().await;
    let admin = token(Role::Admin);
    let post = |body: Value| {
        let request = app
            .client
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&admin)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let job = json!({
        "name": "nightly",
        "schedule": "30 2 * * *",
        "time_zone": "Europe/Berlin",
        "action": { "type": "command", "argv": ["true"] },
    });
    let response = post(job.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["version"], 1);
    assert!(created["next_fire"].is_string());
    assert_eq!(post(job.clone()).await.status(), StatusCode::CONFLICT);

    // An invalid schedule: a 400 naming the field, with the engine's own message.
    let mut bad = job.clone();
    bad["name"] = json!("bad-schedule");
    bad["schedule"] = json!("61 * * * *");
    let response = post(bad).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "schedule");
    assert!(
        problem["detail"].as_str().unwrap().contains("0-59"),
        "{problem}"
    );
    for (body, field) in [
        (
            json!({ "name": "x", "schedule": "* * * * *", "action": { "type": "command", "argv": [] } }),
            "action.argv",
        ),
        (
            json!({ "name": "x", "schedule": "* * * * *", "time_zone": "Mars/Olympus", "action": { "type": "command", "argv": ["true"] } }),
            "time_zone",
        ),
        (
            json!({ "name": "x", "schedule": "* * * * *", "action": { "type": "command", "argv": ["true"] }, "timeout": "soon" }),
            "timeout",
        ),
        (
            json!({ "name": "Not A Slug", "schedule": "* * * * *", "action": { "type": "command", "argv": ["true"] } }),
            "name",
        ),
    ] {
        let response = post(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["field"].as_str().unwrap().starts_with(field),
            "{body}: {problem}"
        );
    }

    // PATCH changes one field; the version moves and history is kept.
    let response = app
        .client
        .patch(format!("{}/api/v1/jobs/nightly", app.base))
        .bearer_auth(&admin)
        .json(&json!({ "schedule": "45 3 * * *" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["version"], 2);
    assert_eq!(changed["spec"]["schedule"], "45 3 * * *");
    assert_eq!(changed["spec"]["time_zone"], "Europe/Berlin");

    let response = app
        .client
        .delete(format!("{}/api/v1/jobs/nightly", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(app
        .scheduler
        .job(&JobName::new("nightly").unwrap())
        .is_none());
    let response = app
        .call("DELETE", "/api/v1/jobs/nightly", Some(&admin))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_trigger_shows_up_as_live_events() {
    use futures_util::StreamExt;

    let app = app().await;
    let response = app
        .client
        .get(format!("{}/api/v1/events", app.base))
        .bearer_auth(token(Role::Viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = response.bytes_stream();
    let run: Value = app
        .call(
            "POST",
            "/api/v1/jobs/report/trigger",
            Some(&token(Role::Operator)),
        )
        .await
        .json()
        .await
        .unwrap();
    let paused = app
        .call(
            "POST",
            "/api/v1/jobs/report/pause",
            Some(&token(Role::Operator)),
        )
        .await;
    assert_eq!(paused.status(), StatusCode::OK);
    // Read events (name, data) until the three expected ones have come.
    let mut text = String::new();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let wanted = |seen: &[(String, Value)]| {
        let has = |name: &str, check: &dyn Fn(&Value) -> bool| {
            seen.iter().any(|(n, d)| n == name && check(d))
        };
        has("run.started", &|d| d["id"] == run["id"])
            && has("run.finished", &|d| {
                d["id"] == run["id"] && d["status"] == "succeeded"
            })
            && has("job.changed", &|d| {
                d["job"] == "report" && d["change"] == "paused"
            })
    };
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !wanted(&seen) {
        let chunk = tokio::time::timeout_at(give_up, stream.next())
            .await
            .expect("the events within 10 s")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_owned();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                seen.push((name, serde_json::from_str(data).unwrap()));
            }
        }
    }
}

/// Checks the Prometheus text format line by line: `# HELP`/`# TYPE` comments, and samples
/// `name{label="value",...} number`. Returns the samples.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1]
                .split("\",")
                .filter(|p| !p.is_empty())
            {
                let (key, value) = pair.split_once('=').expect(line);
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(value.starts_with('"'), "{line}");
            }
        }
        samples.push((series.to_owned(), value));
    }
    samples
}

#[tokio::test]
async fn metrics_parse_and_move_when_jobs_run() {
    let app = app().await;
    let viewer = token(Role::Viewer);
    let scrape = || async {
        let response = app.call("GET", "/metrics", Some(&viewer)).await;
        assert_eq!(response.status(), StatusCode::OK);
        parse_exposition(&response.text().await.unwrap())
    };
    let count = |samples: &[(String, f64)], series: &str| {
        samples
            .iter()
            .filter(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let series = "cronwarden_runs_total{job=\"report\",status=\"succeeded\"}";
    let before = count(&scrape().await, series);
    // One after the other: a trigger while the job runs would be skipped (overlap = skip).
    let mut events = app.scheduler.subscribe();
    for _ in 0..3 {
        app.scheduler
            .trigger(&JobName::new("report").unwrap())
            .await
            .unwrap();
        loop {
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
                .await
                .expect("the run finishes")
                .unwrap();
            if matches!(event, cronwarden::scheduler::SchedulerEvent::RunFinished(_)) {
                break;
            }
        }
    }
    let mut after = before;
    for _ in 0..500 {
        after = count(&scrape().await, series);
        if after >= before + 3.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(after >= before + 3.0, "{before} -> {after}");
    let samples = scrape().await;
    assert!(count(&samples, "cronwarden_run_lateness_seconds_count") >= 3.0);
    assert!(samples
        .iter()
        .any(|(s, _)| s.starts_with("cronwarden_run_duration_seconds_bucket{job=\"report\"")));
    assert_eq!(
        app.call("GET", "/metrics", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_job_list_pages_and_filters() {
    let app = app().await;
    for (name, tag) in [("alpha", "disk"), ("bravo", "net"), ("charlie", "disk")] {
        let mut spec = report_job();
        spec.name = JobName::new(name).unwrap();
        spec.tags = vec![tag.to_owned()];
        app.scheduler.upsert_job(spec).await.unwrap();
    }
    let viewer = token(Role::Viewer);
    let get = |path: String| {
        let request = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(&viewer);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let names = |page: &Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = get("/api/v1/jobs?limit=2".into()).await;
    assert_eq!(names(&first), ["alpha", "bravo"]);
    let next = first["next"].as_str().unwrap();
    let second = get(format!("/api/v1/jobs?limit=2&after={next}")).await;
    assert_eq!(names(&second), ["charlie", "report"]);
    assert!(second["next"].is_null());
    let disk = get("/api/v1/jobs?tag=disk".into()).await;
    assert_eq!(names(&disk), ["alpha", "charlie"]);
}

#[tokio::test]
async fn the_scheduler_shows_its_state_and_can_stop_firing() {
    let app = app().await;
    let operator = token(Role::Operator);
    let view: Value = app
        .call("GET", "/api/v1/scheduler", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            view["node"].clone(),
            view["state"].clone(),
            view["jobs"].clone()
        ),
        (json!("test-node"), json!("running"), json!(1))
    );
    assert_eq!(view["next_fires"][0]["job"], "report");
    let paused: Value = app
        .call("POST", "/api/v1/scheduler/pause", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["state"], "paused");
    assert!(app.scheduler.firing_paused());
    let resumed: Value = app
        .call("POST", "/api/v1/scheduler/resume", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["state"], "running");
}

#[tokio::test]
async fn readiness_follows_the_loop() {
    let app = app().await;
    let viewer = token(Role::Viewer);
    let mut ready = Value::Null;
    for _ in 0..500 {
        ready = app
            .call("GET", "/readyz", Some(&viewer))
            .await
            .json()
            .await
            .unwrap();
        if ready["ready"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        (
            ready["ready"].clone(),
            ready["store"].clone(),
            ready["loop_running"].clone()
        ),
        (json!(true), json!("ok"), json!(true)),
        "{ready}"
    );
    app.scheduler.stop().await;
    let response = app.call("GET", "/readyz", Some(&viewer)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let not_ready: Value = response.json().await.unwrap();
    assert_eq!(not_ready["loop_running"], false);
}

#[tokio::test]
async fn literal_credentials_in_definitions_never_appear_in_responses_or_the_audit_log() {
    let app = app().await;
    let admin = token(Role::Admin);
    let job = json!({
        "name": "webhook",
        "action": {
            "type": "http",
            "method": "POST",
            "url": "https://hooks:pa55word-literal@hooks.example/notify",
            "headers": {"Authorization": "Bearer literal-bearer-9f8e", "X-Org-Key": "${env:ORG_KEY}"},
            "hmac_secret": "literal-hmac-7d6c",
        },
    });
    let created = app
        .client
        .post(format!("{}/api/v1/jobs", app.base))
        .bearer_auth(&admin)
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let literals = [
        "pa55word-literal",
        "literal-bearer-9f8e",
        "literal-hmac-7d6c",
    ];
    let read = |path: &str| {
        let request = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(&admin);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let created = created.text().await.unwrap();
    for (what, text) in [
        ("the create response", created),
        ("GET /jobs/webhook", read("/api/v1/jobs/webhook").await),
        ("GET /jobs", read("/api/v1/jobs").await),
        ("GET /audit", read("/api/v1/audit").await),
    ] {
        for literal in literals {
            assert!(!text.contains(literal), "{what} shows {literal}: {text}");
        }
        assert!(text.contains("[redacted]"), "{what}: {text}");
    }
    let shown: Value = serde_json::from_str(&read("/api/v1/jobs/webhook").await).unwrap();
    assert_eq!(
        shown["spec"]["action"]["headers"]["X-Org-Key"],
        "${env:ORG_KEY}"
    );

    // Written back as read, with a change: the stored credentials are the originals.
    let mut spec = shown["spec"].clone();
    spec["description"] = json!("notify the hooks service");
    let put = app
        .client
        .put(format!("{}/api/v1/jobs/webhook", app.base))
        .bearer_auth(&admin)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let stored = app
        .store
        .get_job(&JobName::new("webhook").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spec.description, "notify the hooks service");
    let Action::Http(http) = stored.spec.action else {
        panic!("an HTTP job");
    };
    assert_eq!(
        http.url,
        "https://hooks:pa55word-literal@hooks.example/notify"
    );
    assert_eq!(http.headers["Authorization"], "Bearer literal-bearer-9f8e");
    assert_eq!(http.hmac_secret.as_deref(), Some("literal-hmac-7d6c"));
}

#[tokio::test]
async fn metrics_can_be_served_without_a_token_when_so_configured() {
    let closed = app().await;
    assert_eq!(
        closed.call("GET", "/metrics", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let open = app_with(true).await;
    let response = open.call("GET", "/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!parse_exposition(&response.text().await.unwrap()).is_empty());
    // Only /metrics: the rest still needs a token.
    assert_eq!(
        open.call("GET", "/api/v1/jobs", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_job_page_shows_every_change_however_often_it_is_read() {
    // Pages are reused while they hold: each change, through the API or straight into the
    // store by another process, must show on the very next read.
    let app = app().await;
    let viewer = token(Role::Viewer);
    let page = || async {
        let response = app
            .call("GET", "/api/v1/jobs?limit=10", Some(&viewer))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };
    let report = |page: &Value| page["jobs"][0].clone();
    let first = page().await;
    assert_eq!(page().await, first, "nothing changed");
    assert_eq!(report(&first)["spec"]["description"], "");

    let response = app
        .call("PATCH", "/api/v1/jobs/report", Some(&token(Role::Admin)))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(report(&page().await)["spec"]["description"], "patched");

    // Another process pauses it, straight in the store.
    app.store
        .set_paused(&JobName::new("report").unwrap(), Some("maintenance"))
        .await
        .unwrap();
    let paused = report(&page().await);
    assert_eq!(paused["paused"], "maintenance");
    assert_eq!(paused["enabled"], false);

    // A job created through the scheduler (not the API) appears.
    app.scheduler
        .upsert_job(report_job_named("report-2"))
        .await
        .unwrap();
    let names: Vec<String> = page().await["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["report", "report-2"]);
}

fn report_job_named(name: &str) -> JobSpec {
    let mut job = report_job();
    job.name = JobName::new(name).unwrap();
    job
}
