//! The HTTP API: `/api/v1` (JSON, bearer tokens with roles), `/healthz` and `/readyz`.
//!
//! Routes are registered through `utoipa-axum`, which builds the OpenAPI document from the
//! same handler annotations: the document served at `/api/v1/openapi.json` cannot drift from
//! the routes.

mod auth;
mod error;
mod failures;
mod pages;
mod routes;

use std::sync::Arc;

use axum::Router;
use cronwarden::scheduler::Scheduler;
use cronwarden::store::Store;
use jiff::Timestamp;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use self::auth::{hash_token, new_token};
pub use self::error::MAX_REQUEST_BODY;
pub use self::failures::{
    AuthFailures, FAILURES_PER_SECOND, FAILURE_BURST, MAX_CLIENTS, MAX_REPORTS, REPORT_EVERY,
};
pub use self::pages::{PageCache, PAGE_CACHE_BYTES};

/// What every handler can reach.
pub struct AppState {
    /// The running scheduler.
    pub scheduler: Scheduler,
    /// The store it uses: SQLite or PostgreSQL.
    pub store: Arc<dyn Store>,
    /// This node's name.
    pub node: String,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// The API's own OpenAPI document, served to callers with a token.
    pub openapi: std::sync::OnceLock<OpenApi>,
    /// Renders the metrics at `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Whether `/metrics` is served without a token.
    pub metrics_public: bool,
    /// Job pages as rendered, reused while they still hold; bounded by bytes.
    pub job_pages: Arc<PageCache>,
    /// Failed authentications per client address: limited, and reported at a bounded rate.
    pub auth_failures: AuthFailures,
}

/// The process's Prometheus recorder, installed on first use: every metric the engine emits
/// through the `metrics` facade from then on is kept and rendered at `/metrics`.
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0, 900.0, 3600.0,
            ];
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&seconds)
                .expect("bucket bounds are given")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            describe_metrics();
            handle
        })
        .clone()
}

fn describe_metrics() {
    use metrics::Unit;
    metrics::describe_counter!(
        "cronwarden_fires_claimed_total",
        "Scheduled fires this node claimed (each fire is claimed once across nodes)"
    );
    metrics::describe_counter!(
        "cronwarden_runs_total",
        "Runs that reached a final status, by job and status (succeeded, failed, timed_out, skipped, missed, interrupted, abandoned)"
    );
    metrics::describe_counter!("cronwarden_retries_total", "Retry attempts claimed, by job");
    metrics::describe_histogram!(
        "cronwarden_run_duration_seconds",
        Unit::Seconds,
        "How long runs took, by job"
    );
    metrics::describe_histogram!(
        "cronwarden_run_lateness_seconds",
        Unit::Seconds,
        "A run's start minus its scheduled instant"
    );
    metrics::describe_gauge!("cronwarden_runs_running", "Runs executing now");
    metrics::describe_gauge!(
        "cronwarden_runs_waiting",
        "Runs queued behind the run before them (overlap = queue): the queue depth"
    );
    metrics::describe_histogram!(
        "cronwarden_store_seconds",
        Unit::Seconds,
        "Store operations' latency, by operation (claim, record)"
    );
}

/// The API's routes and its OpenAPI document.
pub fn router(state: AppState) -> (Router, OpenApi) {
    let state = Arc::new(state);
    let (app, mut doc) = OpenApiRouter::new()
        .merge(routes::routes())
        .with_state(state.clone())
        .split_for_parts();
    let app = app.layer(axum::extract::DefaultBodyLimit::max(
        error::MAX_REQUEST_BODY,
    ));
    doc.info.title = "cronwarden".to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "Scheduled jobs: their definitions, runs and the scheduler. Every route except \
         /healthz needs `Authorization: Bearer <token>`."
            .to_owned(),
    );
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            utoipa::openapi::security::SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                    .build(),
            ),
        );
    declare_limits(&mut doc);
    let _ = state.openapi.set(doc.clone());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(report_auth_failures(Arc::downgrade(&state)));
    }
    (app, doc)
}

/// How often failed authentications are looked over for reports that are due.
const REPORT_SWEEP: std::time::Duration = std::time::Duration::from_secs(15);

/// Reports (logs and audits) failed authentications not reported at once, until the app is
/// dropped.
async fn report_auth_failures(state: std::sync::Weak<AppState>) {
    let mut sweep = tokio::time::interval(REPORT_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        sweep.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        for report in state.auth_failures.due_reports(std::time::Instant::now()) {
            auth::record(&*state.store, report).await;
        }
    }
}

/// Declares what every route may answer besides its own responses, in one place so that no
/// route misses it: 429 (with `Retry-After`) wherever a token is checked, 413 wherever a body is
/// read. Each is a problem document, like the route's 401.
fn declare_limits(doc: &mut OpenApi) {
    use utoipa::openapi::RefOr;

    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            let Some(RefOr::T(unauthorized)) = responses.get("401").cloned() else {
                continue;
            };
            let mut limited = unauthorized.clone();
            limited.description = format!(
                "too many requests with an invalid token from this address (at most {FAILURE_BURST} \
                 at once, then {:.0} a minute); a valid token is still accepted",
                FAILURES_PER_SECOND * 60.0
            );
            let retry_after = utoipa::openapi::HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer),
                )
                .description(Some("seconds until another attempt is counted"))
                .build();
            limited
                .headers
                .insert("Retry-After".to_owned(), retry_after);
            responses.insert("429".to_owned(), RefOr::T(limited));
            if operation.request_body.is_some() {
                let mut too_large = unauthorized;
                too_large.description = format!(
                    "the request body is larger than {} KiB",
                    MAX_REQUEST_BODY / 1024
                );
                responses.insert("413".to_owned(), RefOr::T(too_large));
            }
        }
    }
}
